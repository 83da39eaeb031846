//! Sprig's string functions.

use super::convert::{strval, to_int64};
use super::{FResult, FuncMap, Ty, b, i, ok_str, reg, s};
use crate::template::fmt::{go_quote, sprintf};
use crate::value::{SliceTy, Value};

use Ty::*;

fn bytes_str(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn register(m: &mut FuncMap) {
    reg(m, "hello", &[], None, |_, _| ok_str("Hello!"));
    reg(m, "abbrev", &[Int, Str], None, |_, a| {
        let (w, st) = (i(&a[0]), s(&a[1]));
        if w < 4 {
            return ok_str(st);
        }
        ok_str(abbreviate_full(st, 0, w).unwrap_or_default())
    });
    reg(m, "abbrevboth", &[Int, Int, Str], None, |_, a| {
        let (l, r, st) = (i(&a[0]), i(&a[1]), s(&a[2]));
        if r < 4 || l > 0 && r < 7 {
            return ok_str(st);
        }
        ok_str(abbreviate_full(st, l, r).unwrap_or_default())
    });
    reg(m, "trunc", &[Int, Str], None, |_, a| {
        let (c, st) = (i(&a[0]), s(&a[1]).as_bytes());
        let n = st.len() as i64;
        if c < 0 && n + c > 0 {
            return ok_str(bytes_str(&st[(n + c) as usize..]));
        }
        if c >= 0 && n > c {
            return ok_str(bytes_str(&st[..c as usize]));
        }
        ok_str(bytes_str(st))
    });
    reg(m, "trim", &[Str], None, |_, a| ok_str(go_trim_space(s(&a[0]))));
    reg(m, "upper", &[Str], None, |_, a| ok_str(go_upper(s(&a[0]))));
    reg(m, "lower", &[Str], None, |_, a| ok_str(go_lower(s(&a[0]))));
    reg(m, "title", &[Str], None, |_, a| ok_str(title(s(&a[0]))));
    reg(m, "untitle", &[Str], None, |_, a| ok_str(untitle(s(&a[0]))));
    reg(m, "substr", &[Int, Int, Str], None, |_, a| substr(i(&a[0]), i(&a[1]), s(&a[2])));
    reg(m, "repeat", &[Int, Str], None, |c, a| {
        let n = i(&a[0]);
        if n < 0 {
            return Err("strings: negative Repeat count".into());
        }
        let st = s(&a[1]);
        let len = (st.len() as u128) * (n as u128);
        if len > i64::MAX as u128 {
            return Err("strings: Repeat output length overflow".into());
        }
        c.budget.check_elements(len, 1)?;
        ok_str(st.repeat(n as usize))
    });
    reg(m, "trimAll", &[Str, Str], None, |_, a| ok_str(s(&a[1]).trim_matches(|c| s(&a[0]).contains(c))));
    reg(m, "trimall", &[Str, Str], None, |_, a| ok_str(s(&a[1]).trim_matches(|c| s(&a[0]).contains(c))));
    reg(m, "trimSuffix", &[Str, Str], None, |_, a| ok_str(s(&a[1]).strip_suffix(s(&a[0])).unwrap_or(s(&a[1]))));
    reg(m, "trimPrefix", &[Str, Str], None, |_, a| ok_str(s(&a[1]).strip_prefix(s(&a[0])).unwrap_or(s(&a[1]))));
    // goutils works on bytes, turning each byte into a rune
    reg(m, "nospace", &[Str], None, |_, a| {
        let st = s(&a[0]);
        if !st.bytes().any(|b| (b as char).is_whitespace()) {
            return ok_str(st);
        }
        ok_str(st.bytes().map(|b| b as char).filter(|c| !c.is_whitespace()).collect::<String>())
    });
    reg(m, "initials", &[Str], None, |_, a| {
        let mut out = String::new();
        let mut last_space = true;
        for b in s(&a[0]).bytes() {
            let c = b as char;
            if c.is_whitespace() {
                last_space = true;
            } else if last_space {
                out.push(c);
                last_space = false;
            }
        }
        ok_str(out)
    });
    reg(m, "swapcase", &[Str], None, |_, a| ok_str(swapcase(s(&a[0]))));
    reg(m, "snakecase", &[Str], None, |_, a| ok_str(snake_case(s(&a[0]), '_')));
    reg(m, "kebabcase", &[Str], None, |_, a| ok_str(snake_case(s(&a[0]), '-')));
    reg(m, "camelcase", &[Str], None, |_, a| ok_str(camel_case(s(&a[0]))));
    reg(m, "wrap", &[Int, Str], None, |c, a| {
        c.budget.check_elements(s(&a[1]).len() as u128 * 2 + 1, 1)?;
        ok_str(wrap_custom(s(&a[1]), i(&a[0]), "\n", false))
    });
    reg(m, "wrapWith", &[Int, Str, Str], None, |c, a| {
        // at most one separator per input byte
        c.budget.check_elements((s(&a[2]).len() as u128 + 1) * (s(&a[1]).len() as u128 + 1), 1)?;
        ok_str(wrap_custom(s(&a[2]), i(&a[0]), s(&a[1]), true))
    });
    reg(m, "contains", &[Str, Str], None, |_, a| Ok(Value::Bool(s(&a[1]).contains(s(&a[0])))));
    reg(m, "hasPrefix", &[Str, Str], None, |_, a| Ok(Value::Bool(s(&a[1]).starts_with(s(&a[0])))));
    reg(m, "hasSuffix", &[Str, Str], None, |_, a| Ok(Value::Bool(s(&a[1]).ends_with(s(&a[0])))));
    reg(m, "quote", &[], Some(Any), |_, a| {
        let v: Vec<String> = a.iter().filter(|v| !v.is_nil()).map(|v| go_quote(&strval(v))).collect();
        ok_str(v.join(" "))
    });
    reg(m, "squote", &[], Some(Any), |_, a| {
        let v: Vec<String> = a.iter().filter(|v| !v.is_nil()).map(|v| format!("'{}'", strval(v))).collect();
        ok_str(v.join(" "))
    });
    reg(m, "cat", &[], Some(Any), |_, a| {
        let v: Vec<Value> = a.iter().filter(|v| !v.is_nil()).cloned().collect();
        let f = vec!["%v"; v.len()].join(" ");
        ok_str(sprintf(&f, &v))
    });
    reg(m, "indent", &[Int, Str], None, |c, a| indent(c, i(&a[0]), s(&a[1])).map(Value::from));
    reg(m, "nindent", &[Int, Str], None, |c, a| indent(c, i(&a[0]), s(&a[1])).map(|x| Value::from(format!("\n{x}"))));
    reg(m, "replace", &[Str, Str, Str], None, |c, a| {
        let (st, old, new) = (s(&a[2]), s(&a[0]), s(&a[1]));
        if new.len() > old.len() {
            let count = if old.is_empty() { st.chars().count() + 1 } else { st.matches(old).count() };
            c.budget.check_elements(st.len() as u128 + count as u128 * (new.len() - old.len()) as u128, 1)?;
        }
        ok_str(go_replace(st, old, new))
    });
    reg(m, "plural", &[Str, Str, Int], None, |_, a| ok_str(if i(&a[2]) == 1 { s(&a[0]) } else { s(&a[1]) }));
    reg(m, "toString", &[Any], None, |_, a| ok_str(strval(&a[0])));
    reg(m, "atoi", &[Str], None, |_, a| Ok(Value::Int(go_atoi(s(&a[0])).unwrap_or(0))));
    reg(m, "seq", &[], Some(Int), |c, a| {
        let p: Vec<i64> = a.iter().map(i).collect();
        // every number and a space: at most 21 bytes each
        c.budget.check_elements(seq_count(&p), 21)?;
        ok_str(seq(&p))
    });
    reg(m, "split", &[Str, Str], None, |c, a| {
        check_split(c, s(&a[1]), s(&a[0]))?;
        let parts = go_split(s(&a[1]), s(&a[0]), -1);
        Ok(string_map(parts))
    });
    reg(m, "splitn", &[Str, Int, Str], None, |c, a| {
        check_split(c, s(&a[2]), s(&a[0]))?;
        let parts = go_split(s(&a[2]), s(&a[0]), i(&a[1]));
        Ok(string_map(parts))
    });
    reg(m, "splitList", &[Str, Str], None, |c, a| {
        check_split(c, s(&a[1]), s(&a[0]))?;
        Ok(Value::str_list(go_split(s(&a[1]), s(&a[0]), -1)))
    });
    reg(m, "join", &[Str, Any], None, |_, a| ok_str(strslice(&a[1]).join(s(&a[0]))));
    reg(m, "toStrings", &[Any], None, |_, a| Ok(Value::str_list(strslice(&a[0]))));
    reg(m, "sortAlpha", &[Any], None, |_, a| match &a[0] {
        Value::List(..) => {
            let mut v = strslice(&a[0]);
            v.sort();
            Ok(Value::str_list(v))
        }
        v => Ok(Value::str_list(vec![strval(v)])),
    });
    reg(m, "until", &[Int], None, |c, a| {
        let n = i(&a[0]);
        let step = if n < 0 { -1 } else { 1 };
        c.budget.check_elements(until_count(0, n, step), 16)?;
        Ok(int_list(until_step(0, n, step)))
    });
    reg(m, "untilStep", &[Int, Int, Int], None, |c, a| {
        c.budget.check_elements(until_count(i(&a[0]), i(&a[1]), i(&a[2])), 16)?;
        Ok(int_list(until_step(i(&a[0]), i(&a[1]), i(&a[2]))))
    });
    reg(m, "toDecimal", &[Any], None, |_, a| {
        let st = strval(&a[0]);
        Ok(Value::Int64(i64::from_str_radix(&st, 8).unwrap_or(0)))
    });
    reg(m, "shuffle", &[Str], None, |c, a| {
        let mut chars: Vec<char> = s(&a[0]).chars().collect();
        let n = chars.len();
        let r = c.random_bytes(n * 4);
        for k in (1..n).rev() {
            let x = u32::from_le_bytes([r[k * 4], r[k * 4 + 1], r[k * 4 + 2], r[k * 4 + 3]]) as usize % (k + 1);
            chars.swap(k, x);
        }
        ok_str(chars.into_iter().collect::<String>())
    });
    reg(m, "randAlphaNum", &[Int], None, |c, a| rand_from(c, i(&a[0]), "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"));
    reg(m, "randAlpha", &[Int], None, |c, a| rand_from(c, i(&a[0]), "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"));
    reg(m, "randNumeric", &[Int], None, |c, a| rand_from(c, i(&a[0]), "0123456789"));
    reg(m, "randAscii", &[Int], None, |c, a| {
        let all: String = (32u8..127).map(|b| b as char).collect();
        rand_from(c, i(&a[0]), &all)
    });
    reg(m, "randBytes", &[Int], None, |c, a| {
        use base64::Engine;
        let n = i(&a[0]);
        if !(0..=1 << 24).contains(&n) {
            return Err("runtime error: makeslice: len out of range".into());
        }
        c.budget.check_elements(n as u128 * 2, 1)?;
        ok_str(base64::engine::general_purpose::STANDARD.encode(c.random_bytes(n as usize)))
    });
    reg(m, "regexMatch", &[Str, Str], None, |_, a| Ok(Value::Bool(compile(s(&a[0])).map(|r| r.is_match(s(&a[1]))).unwrap_or(false))));
    reg(m, "mustRegexMatch", &[Str, Str], None, |_, a| Ok(Value::Bool(compile(s(&a[0]))?.is_match(s(&a[1])))));
    reg(m, "regexFindAll", &[Str, Str, Int], None, |c, a| {
        must_compile(s(&a[0]))?;
        check_regex_list(c, s(&a[1]))?;
        regex_find_all(a)
    });
    reg(m, "mustRegexFindAll", &[Str, Str, Int], None, |c, a| {
        check_regex_list(c, s(&a[1]))?;
        regex_find_all(a)
    });
    reg(m, "regexFind", &[Str, Str], None, |_, a| ok_str(must_compile(s(&a[0]))?.find(s(&a[1])).map(|m| m.as_str()).unwrap_or("")));
    reg(m, "mustRegexFind", &[Str, Str], None, |_, a| ok_str(compile(s(&a[0]))?.find(s(&a[1])).map(|m| m.as_str()).unwrap_or("")));
    reg(m, "regexReplaceAll", &[Str, Str, Str], None, |c, a| {
        let r = must_compile(s(&a[0]))?;
        check_regex_output(c, s(&a[1]), s(&a[2]))?;
        ok_str(r.replace_all(s(&a[1]), go_expand(s(&a[2]))).into_owned())
    });
    reg(m, "mustRegexReplaceAll", &[Str, Str, Str], None, |c, a| {
        let r = compile(s(&a[0]))?;
        check_regex_output(c, s(&a[1]), s(&a[2]))?;
        ok_str(r.replace_all(s(&a[1]), go_expand(s(&a[2]))).into_owned())
    });
    reg(m, "regexReplaceAllLiteral", &[Str, Str, Str], None, |c, a| {
        let r = must_compile(s(&a[0]))?;
        check_regex_output(c, s(&a[1]), s(&a[2]))?;
        ok_str(r.replace_all(s(&a[1]), regex::NoExpand(s(&a[2]))).into_owned())
    });
    reg(m, "mustRegexReplaceAllLiteral", &[Str, Str, Str], None, |c, a| {
        let r = compile(s(&a[0]))?;
        check_regex_output(c, s(&a[1]), s(&a[2]))?;
        ok_str(r.replace_all(s(&a[1]), regex::NoExpand(s(&a[2]))).into_owned())
    });
    reg(m, "regexSplit", &[Str, Str, Int], None, |c, a| {
        must_compile(s(&a[0]))?;
        check_regex_list(c, s(&a[1]))?;
        regex_split(a)
    });
    reg(m, "mustRegexSplit", &[Str, Str, Int], None, |c, a| {
        check_regex_list(c, s(&a[1]))?;
        regex_split(a)
    });
    reg(m, "regexQuoteMeta", &[Str], None, |_, a| ok_str(go_quote_meta(s(&a[0]))));
    let _ = b;
}

fn go_quote_meta(s: &str) -> String {
    let mut o = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

/// Converts Go's `$1`/`${name}` template syntax into Rust regex's (mostly identical).
fn go_expand(s: &str) -> String {
    s.to_string()
}

/// Go's RE2 Perl classes are ASCII-only (`\d` is `[0-9]`, `\w` is `[0-9A-Za-z_]`, `\s` is
/// `[\t\n\f\r ]`, `\b` an ASCII word boundary; regexp/syntax perl_groups.go), the `regex`
/// crate's are Unicode: spell Go's meaning out before compiling.
fn go_regex_syntax(re: &str) -> std::borrow::Cow<'_, str> {
    if !re.contains('\\') {
        return re.into();
    }
    let mut out = String::with_capacity(re.len() + 16);
    let mut chars = re.chars().peekable();
    let mut in_class = false;
    let mut class_start = false;
    while let Some(c) = chars.next() {
        let at_start = class_start;
        class_start = false;
        match c {
            '\\' => {
                let Some(e) = chars.next() else {
                    out.push(c);
                    break;
                };
                let rep = match (e, in_class) {
                    ('d', false) => "[0-9]",
                    ('D', false) => "[^0-9]",
                    ('w', false) => "[0-9A-Za-z_]",
                    ('W', false) => "[^0-9A-Za-z_]",
                    ('s', false) => "[\\t\\n\\f\\r ]",
                    ('S', false) => "[^\\t\\n\\f\\r ]",
                    ('b', false) => "(?-u:\\b)",
                    ('B', false) => "(?-u:\\B)",
                    ('d', true) => "0-9",
                    ('w', true) => "0-9A-Za-z_",
                    ('s', true) => "\\t\\n\\f\\r ",
                    _ => "",
                };
                if rep.is_empty() {
                    out.push(c);
                    out.push(e);
                } else {
                    out.push_str(rep);
                }
            }
            '[' if !in_class => {
                in_class = true;
                class_start = true;
                out.push(c);
                if chars.peek() == Some(&'^') {
                    out.push('^');
                    chars.next();
                }
            }
            '[' if in_class && chars.peek() == Some(&':') => {
                // `[:alpha:]` inside a class
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == ']' {
                        break;
                    }
                }
            }
            ']' if in_class && !at_start => {
                in_class = false;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out.into()
}

fn compile(re: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(&go_regex_syntax(re)).map_err(|e| {
        let detail = match &e {
            regex::Error::Syntax(m) => m.lines().last().unwrap_or("").trim().to_string(),
            _ => e.to_string(),
        };
        let detail = detail.trim_start_matches("error: ");
        let (what, arg) = match detail {
            "unclosed character class" => ("missing closing ]".to_string(), re.to_string()),
            "unclosed group" => ("missing closing )".to_string(), re.to_string()),
            "unopened group" => ("unexpected )".to_string(), re.to_string()),
            "repetition operator missing expression" => ("missing argument to repetition operator".to_string(), re.to_string()),
            d => (d.to_string(), re.to_string()),
        };
        format!("error parsing regexp: {what}: `{arg}`")
    })
}

/// `regexp.MustCompile` (its panic message).
fn must_compile(re: &str) -> Result<regex::Regex, String> {
    compile(re).map_err(|e| format!("regexp: Compile({}): {e}", backquote(re)))
}

fn backquote(s: &str) -> String {
    if s.contains('`') { crate::template::fmt::go_quote(s) } else { format!("`{s}`") }
}

fn regex_find_all(a: &[Value]) -> FResult {
    let r = compile(s(&a[0]))?;
    let n = i(&a[2]);
    let mut v: Vec<String> = Vec::new();
    for m in r.find_iter(s(&a[1])) {
        if n >= 0 && v.len() as i64 >= n {
            break;
        }
        v.push(m.as_str().to_string());
    }
    if v.is_empty() {
        // Go's FindAllString returns nil without a match
        return Ok(Value::List(std::rc::Rc::new(vec![]), SliceTy::NilStr));
    }
    Ok(Value::str_list(v))
}

fn regex_split(a: &[Value]) -> FResult {
    let r = compile(s(&a[0]))?;
    let n = i(&a[2]);
    let st = s(&a[1]);
    if n == 0 {
        // Go's Regexp.Split: `if n == 0 { return nil }`
        return Ok(Value::List(std::rc::Rc::new(vec![]), SliceTy::NilStr));
    }
    if r.as_str().is_empty() && st.is_empty() {
        return Ok(Value::str_list(vec![String::new()]));
    }
    // Go's Regexp.Split
    let matches: Vec<(usize, usize)> = r.find_iter(st).map(|m| (m.start(), m.end())).collect();
    let mut strings = Vec::new();
    let mut beg = 0;
    let mut end;
    for (ms, me) in matches {
        if n > 0 && strings.len() as i64 == n - 1 {
            break;
        }
        end = ms;
        if me == 0 || (ms == me && ms == st.len()) {
            continue;
        }
        strings.push(st[beg..end].to_string());
        beg = me;
    }
    strings.push(st[beg..].to_string());
    Ok(Value::str_list(strings))
}

fn rand_from(c: &mut super::Ctx<'_>, n: i64, alphabet: &str) -> FResult {
    if n < 0 {
        return ok_str("");
    }
    if n > 1 << 24 {
        return Err("runtime error: makeslice: len out of range".into());
    }
    c.budget.check_elements(n as u128, 1)?;
    let chars: Vec<char> = alphabet.chars().collect();
    let r = c.random_bytes(n as usize);
    ok_str(r.iter().map(|b| chars[*b as usize % chars.len()]).collect::<String>())
}

pub fn int_list(v: Vec<i64>) -> Value {
    Value::List(std::rc::Rc::new(v.into_iter().map(Value::Int).collect()), SliceTy::Int)
}

/// How many numbers [`until_step`] returns (checked before making them: counts come from
/// templates).
pub fn until_count(start: i64, stop: i64, step: i64) -> u128 {
    let (start, stop, step) = (i128::from(start), i128::from(stop), i128::from(step));
    if (stop < start && step >= 0) || (stop >= start && step <= 0) {
        return 0;
    }
    let span = (stop - start).unsigned_abs();
    let step = step.unsigned_abs();
    span.div_ceil(step)
}

/// Sprig's `untilStep` (callers check [`until_count`] against the render's budget first).
pub fn until_step(start: i64, stop: i64, step: i64) -> Vec<i64> {
    let mut v = Vec::new();
    if stop < start {
        if step >= 0 {
            return v;
        }
        let mut k = start;
        while k > stop {
            v.push(k);
            let Some(n) = k.checked_add(step) else { break };
            k = n;
        }
        return v;
    }
    if step <= 0 {
        return v;
    }
    let mut k = start;
    while k < stop {
        v.push(k);
        let Some(n) = k.checked_add(step) else { break };
        k = n;
    }
    v
}

/// Sprig's `seq` arguments as `untilStep`'s (start, stop, step); `None` prints nothing.
fn seq_range(p: &[i64]) -> Option<(i64, i64, i64)> {
    match p.len() {
        1 => {
            let (start, end) = (1, p[0]);
            let inc = if end < start { -1 } else { 1 };
            Some((start, end.saturating_add(inc), inc))
        }
        3 => {
            let (start, step, end) = (p[0], p[1], p[2]);
            let mut inc = 1;
            if end < start {
                inc = -1;
                if step > 0 {
                    return None;
                }
            }
            Some((start, end.saturating_add(inc), step))
        }
        2 => {
            let (start, end) = (p[0], p[1]);
            let step = if end < start { -1 } else { 1 };
            Some((start, end.saturating_add(step), step))
        }
        _ => None,
    }
}

/// How many numbers `seq` prints.
fn seq_count(p: &[i64]) -> u128 {
    seq_range(p).map_or(0, |(a, b, c)| until_count(a, b, c))
}

fn seq(p: &[i64]) -> String {
    let Some((start, stop, step)) = seq_range(p) else { return String::new() };
    until_step(start, stop, step).iter().map(|x| x.to_string()).collect::<Vec<_>>().join(" ")
}

/// Sprig's `strslice`.
pub fn strslice(v: &Value) -> Vec<String> {
    match v {
        Value::List(l, _) => l.iter().filter(|x| !x.is_nil()).map(strval).collect(),
        Value::Nil | Value::Invalid => vec![],
        v => vec![strval(v)],
    }
}

/// Go's strings.Split / SplitN.
pub fn go_split(st: &str, sep: &str, n: i64) -> Vec<String> {
    if n == 0 {
        return vec![];
    }
    if sep.is_empty() {
        let chars: Vec<String> = st.chars().map(String::from).collect();
        if n > 0 && (n as usize) < chars.len() {
            let mut v: Vec<String> = chars[..n as usize - 1].to_vec();
            let rest: usize = v.iter().map(|x| x.len()).sum();
            v.push(st[rest..].to_string());
            return v;
        }
        return chars;
    }
    if n < 0 { st.split(sep).map(String::from).collect() } else { st.splitn(n as usize, sep).map(String::from).collect() }
}

fn go_replace(st: &str, old: &str, new: &str) -> String {
    if old.is_empty() {
        // Go inserts `new` before every rune and at the end
        let mut o = String::new();
        for c in st.chars() {
            o.push_str(new);
            o.push(c);
        }
        o.push_str(new);
        return o;
    }
    st.replace(old, new)
}

pub fn go_trim_space(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || c == '\u{85}' || c == '\u{A0}')
}

/// `strconv.Atoi`; Sprig ignores the error, and on overflow Go still returns the clamped value.
fn go_atoi(s: &str) -> Option<i64> {
    let b = s.strip_prefix('+').unwrap_or(s);
    if b.is_empty() || b.starts_with('+') {
        return None;
    }
    match s.parse::<i64>() {
        Ok(n) => Some(n),
        Err(_) => {
            let digits = b.strip_prefix('-').unwrap_or(b);
            if !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()) { Some(if b.starts_with('-') { i64::MIN } else { i64::MAX }) } else { None }
        }
    }
}

/// How many elements splitting `st` at `sep` makes (16 bytes each, plus the bytes).
fn check_split(c: &super::Ctx<'_>, st: &str, sep: &str) -> Result<(), super::FnError> {
    let count = if sep.is_empty() { st.chars().count() } else { st.matches(sep).count() + 1 };
    Ok(c.budget.check_elements(count as u128 * 16 + st.len() as u128, 1)?)
}

/// A regular expression can match between every two bytes of `st`: that many elements.
fn check_regex_list(c: &super::Ctx<'_>, st: &str) -> Result<(), super::FnError> {
    Ok(c.budget.check_elements((st.len() as u128 + 1) * 16 + st.len() as u128, 1)?)
}

/// A replacement can happen between every two bytes of `st`; what it adds is its literal
/// text plus the groups it names, which lie within its match (matches do not overlap): a
/// bound on the result.
fn check_regex_output(c: &super::Ctx<'_>, st: &str, repl: &str) -> Result<(), super::FnError> {
    let n = st.len() as u128;
    Ok(c.budget.check_elements(n + (n + 1) * repl.len() as u128 * 2, 1)?)
}

fn indent(c: &super::Ctx<'_>, n: i64, v: &str) -> Result<String, super::FnError> {
    if n < 0 {
        return Err("strings: negative Repeat count".into());
    }
    let lines = v.matches('\n').count() as u128 + 1;
    c.budget.check_elements(n as u128 * lines + v.len() as u128, 1)?;
    let pad = " ".repeat(n as usize);
    Ok(format!("{pad}{}", v.replace('\n', &format!("\n{pad}"))))
}

fn substr(start: i64, end: i64, st: &str) -> FResult {
    let b = st.as_bytes();
    let n = b.len() as i64;
    if start < 0 {
        if end < 0 || end > n {
            // Go's runtime names the length only when the bound is past it
            return Err(if end < 0 {
                format!("runtime error: slice bounds out of range [:{end}]")
            } else {
                format!("runtime error: slice bounds out of range [:{end}] with length {n}")
            }
            .into());
        }
        return ok_str(bytes_str(&b[..end as usize]));
    }
    if end < 0 || end > n {
        if start > n {
            return Err(format!("runtime error: slice bounds out of range [{start}:{n}]").into());
        }
        return ok_str(bytes_str(&b[start as usize..]));
    }
    if start > end {
        return Err(format!("runtime error: slice bounds out of range [{start}:{end}]").into());
    }
    ok_str(bytes_str(&b[start as usize..end as usize]))
}

fn abbreviate_full(s: &str, offset: i64, max_width: i64) -> Option<String> {
    if s.is_empty() {
        return Some(String::new());
    }
    if max_width < 4 {
        return None;
    }
    let b = s.as_bytes();
    let n = b.len() as i64;
    if n <= max_width {
        return Some(s.to_string());
    }
    let mut offset = offset.min(n);
    if n - offset < max_width - 3 {
        offset = n - (max_width - 3);
    }
    let offset = offset.max(0);
    if offset <= 4 {
        return Some(format!("{}...", bytes_str(&b[..(max_width - 3) as usize])));
    }
    if max_width < 7 {
        return None;
    }
    if offset.saturating_add(max_width - 3) < n {
        let rest = bytes_str(&b[offset as usize..]);
        return Some(format!("...{}", abbreviate_full(&rest, 0, max_width - 3)?));
    }
    Some(format!("...{}", bytes_str(&b[(n - (max_width - 3)) as usize..])))
}

fn is_separator(c: char) -> bool {
    if (c as u32) <= 0x7f {
        if c.is_ascii_alphanumeric() || c == '_' {
            return false;
        }
        return true;
    }
    if c.is_alphabetic() || c.is_numeric() {
        return false;
    }
    c.is_whitespace()
}

/// Go's deprecated `strings.Title`.
pub fn title(s: &str) -> String {
    let mut prev = ' ';
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        if is_separator(prev) {
            o.extend(to_title(c));
        } else {
            o.push(c);
        }
        prev = c;
    }
    o
}

fn to_title(c: char) -> Vec<char> {
    match c {
        'ǆ' | 'ǅ' | 'Ǆ' => vec!['ǅ'],
        'ǉ' | 'ǈ' | 'Ǉ' => vec!['ǈ'],
        'ǌ' | 'ǋ' | 'Ǌ' => vec!['ǋ'],
        'ǳ' | 'ǲ' | 'Ǳ' => vec!['ǲ'],
        c => {
            let u: Vec<char> = c.to_uppercase().collect();
            if u.len() == 1 { u } else { vec![c] }
        }
    }
}

fn untitle(s: &str) -> String {
    let mut o = String::new();
    let mut cap_next = true;
    for c in s.chars() {
        if c.is_whitespace() {
            cap_next = true;
            o.push(c);
        } else if cap_next {
            o.push_str(&go_lower(&c.to_string()));
            cap_next = false;
        } else {
            o.push(c);
        }
    }
    o
}

fn swapcase(s: &str) -> String {
    // goutils.SwapCase
    let mut o = String::new();
    let mut whitespace = true;
    for c in s.chars() {
        // unicode.IsUpper or unicode.IsTitle (Lt: `ǅ`, `ᾈ`…) both become lower case
        let title = matches!(c as u32, 0x1C5 | 0x1C8 | 0x1CB | 0x1F2 | 0x1F88..=0x1F8F | 0x1F98..=0x1F9F | 0x1FA8..=0x1FAF | 0x1FBC | 0x1FCC | 0x1FFC);
        if c.is_uppercase() || title {
            o.push_str(&go_lower(&c.to_string()));
            whitespace = false;
        } else if c.is_lowercase() {
            if whitespace {
                o.extend(to_title(c));
                whitespace = false;
            } else {
                o.push_str(&go_upper(&c.to_string()));
            }
        } else {
            whitespace = c.is_whitespace();
            o.push(c);
        }
    }
    o
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum WordType {
    Invalid,
    Number,
    UpperCase,
    Alphabet,
    Connector,
    Punct,
}

fn is_connector(c: char) -> bool {
    c == '-' || c == '_' || c.is_whitespace()
}
fn is_alphabet(c: char) -> bool {
    c.is_alphabetic()
}
fn is_punct(c: char) -> bool {
    c.is_ascii_punctuation() && !is_connector(c) && !matches!(c, '$' | '+' | '<' | '=' | '>' | '^' | '`' | '|' | '~')
        || (!c.is_ascii() && !c.is_alphanumeric() && !c.is_whitespace() && !is_symbol(c))
}
fn is_symbol(c: char) -> bool {
    matches!(c, '$' | '+' | '<' | '=' | '>' | '^' | '`' | '|' | '~')
        || (!c.is_ascii() && matches!(c as u32, 0x2190..=0x2BFF | 0xA2..=0xA9 | 0xAC | 0xAE..=0xB1 | 0xB4 | 0xB8 | 0xD7 | 0xF7))
}

/// xstrings' `nextWord`.
fn next_word(s: &[char]) -> (WordType, usize) {
    if s.is_empty() {
        return (WordType::Invalid, 0);
    }
    let r = s[0];
    let mut n = 1;
    let wt;
    if is_connector(r) {
        wt = WordType::Connector;
        while n < s.len() && is_connector(s[n]) {
            n += 1;
        }
    } else if is_punct(r) {
        wt = WordType::Punct;
        while n < s.len() && is_punct(s[n]) {
            n += 1;
        }
    } else if r.is_uppercase() {
        wt = WordType::UpperCase;
        if n < s.len() {
            let r2 = s[n];
            if r2.is_uppercase() {
                let mut prev = 1;
                n += 1;
                let _ = prev;
                while n < s.len() && s[n].is_uppercase() {
                    prev = 1;
                    n += 1;
                }
                let _ = prev;
                if n < s.len() && is_alphabet(s[n]) {
                    n -= 1;
                }
            } else if is_alphabet(r2) {
                n += 1;
                while n < s.len() && is_alphabet(s[n]) && !s[n].is_uppercase() {
                    n += 1;
                }
            }
        }
    } else if is_alphabet(r) {
        wt = WordType::Alphabet;
        while n < s.len() && is_alphabet(s[n]) && !s[n].is_uppercase() {
            n += 1;
        }
    } else if r.is_numeric() {
        wt = WordType::Number;
        while n < s.len() && s[n].is_numeric() {
            n += 1;
        }
    } else {
        wt = WordType::Invalid;
        while n < s.len() && !(is_connector(s[n]) || is_alphabet(s[n]) || s[n].is_numeric() || is_punct(s[n])) {
            n += 1;
        }
    }
    (wt, n)
}

fn to_lower_word(buf: &mut String, wt: WordType, w: &[char], connector: char) {
    if wt != WordType::UpperCase && wt != WordType::Connector {
        for c in w {
            buf.extend(c.to_lowercase());
        }
        return;
    }
    for &c in w {
        if is_connector(c) {
            buf.push(connector);
        } else if c.is_uppercase() {
            buf.extend(c.to_lowercase());
        } else {
            buf.push(c);
        }
    }
}

/// huandu/xstrings `ToSnakeCase` / `ToKebabCase` (`camelCaseToLowerCase`).
pub fn snake_case(s: &str, connector: char) -> String {
    use WordType::*;
    let chars: Vec<char> = s.chars().collect();
    if chars.is_empty() {
        return String::new();
    }
    let mut buf = String::new();
    let mut pos = 0;
    let next = |pos: &mut usize| -> (WordType, std::ops::Range<usize>) {
        let (wt, n) = next_word(&chars[*pos..]);
        let r = *pos..*pos + n;
        *pos += n;
        (wt, r)
    };
    let (mut wt, mut word) = next(&mut pos);
    while pos < chars.len() {
        if wt != Connector {
            to_lower_word(&mut buf, wt, &chars[word.clone()], connector);
        }
        let prev = wt;
        let last = word.clone();
        (wt, word) = next(&mut pos);
        match prev {
            Number => {
                while wt == Alphabet || wt == Number {
                    to_lower_word(&mut buf, wt, &chars[word.clone()], connector);
                    (wt, word) = next(&mut pos);
                }
                if wt != Invalid && wt != Punct && wt != Connector {
                    buf.push(connector);
                }
            }
            Connector => to_lower_word(&mut buf, prev, &chars[last], connector),
            Punct => {}
            _ => {
                if wt != Number {
                    if wt != Connector && wt != Punct {
                        buf.push(connector);
                    }
                    continue;
                }
                if pos >= chars.len() {
                    continue;
                }
                let last = word.clone();
                (wt, word) = next(&mut pos);
                if wt != Alphabet {
                    to_lower_word(&mut buf, Number, &chars[last], connector);
                    if wt != Connector && wt != Punct {
                        buf.push(connector);
                    }
                    continue;
                }
                buf.push(connector);
                to_lower_word(&mut buf, Number, &chars[last], connector);
                while wt == Alphabet || wt == Number {
                    to_lower_word(&mut buf, wt, &chars[word.clone()], connector);
                    (wt, word) = next(&mut pos);
                }
                if wt != Invalid && wt != Connector && wt != Punct {
                    buf.push(connector);
                }
            }
        }
    }
    to_lower_word(&mut buf, wt, &chars[word], connector);
    buf
}

/// huandu/xstrings `ToCamelCase`.
pub fn camel_case(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.is_empty() {
        return String::new();
    }
    let mut buf = String::new();
    let mut i = 0;
    let mut r0 = ' ';
    // leading connectors appear in the output
    while i < chars.len() {
        r0 = chars[i];
        i += 1;
        if !is_connector(r0) {
            r0 = super::sprig_strings::go_upper(&r0.to_string()).chars().next().unwrap_or(r0);
            break;
        }
        buf.push(r0);
    }
    if i >= chars.len() {
        // xstrings writes the last rune again when the string is all connectors
        buf.push(r0);
        return buf;
    }
    while i < chars.len() {
        let r1 = r0;
        let prev_upper = i >= 1 && chars[i - 1].is_uppercase();
        r0 = chars[i];
        i += 1;
        if is_connector(r0) && is_connector(r1) {
            buf.push(r1);
            continue;
        }
        if is_connector(r1) {
            r0 = super::sprig_strings::go_upper(&r0.to_string()).chars().next().unwrap_or(r0);
        } else {
            if prev_upper {
                r0 = go_lower(&r0.to_string()).chars().next().unwrap_or(r0);
            }
            buf.push(r1);
        }
    }
    buf.push(r0);
    buf
}

/// goutils.WrapCustom.
pub fn wrap_custom(s: &str, wrap_length: i64, new_line: &str, wrap_long_words: bool) -> String {
    if s.is_empty() {
        return String::new();
    }
    let new_line = if new_line.is_empty() { "\n" } else { new_line };
    let wrap_length = if wrap_length < 1 { 1 } else { wrap_length as usize };
    let b = s.as_bytes();
    let input_len = b.len();
    let mut offset = 0usize;
    let mut out = String::new();
    while input_len - offset > wrap_length {
        if b[offset] == b' ' {
            offset += 1;
            continue;
        }
        let end = wrap_length + offset + 1;
        let spaceto_wrap_at = b[offset..end.min(input_len)].iter().rposition(|c| *c == b' ').map(|x| x + offset);
        match spaceto_wrap_at {
            Some(sp) if sp >= offset => {
                out.push_str(&bytes_str(&b[offset..sp]));
                out.push_str(new_line);
                offset = sp + 1;
            }
            _ => {
                if wrap_long_words {
                    out.push_str(&bytes_str(&b[offset..wrap_length + offset]));
                    out.push_str(new_line);
                    offset += wrap_length;
                } else {
                    let sp = b[(wrap_length + offset).min(input_len)..].iter().position(|c| *c == b' ').map(|x| x + wrap_length + offset);
                    match sp {
                        Some(sp) => {
                            out.push_str(&bytes_str(&b[offset..sp]));
                            out.push_str(new_line);
                            offset = sp + 1;
                        }
                        None => {
                            out.push_str(&bytes_str(&b[offset..]));
                            offset = input_len;
                        }
                    }
                }
            }
        }
    }
    out.push_str(&bytes_str(&b[offset.min(input_len)..]));
    out
}

pub fn to_int64_any(v: &Value) -> i64 {
    to_int64(v)
}

/// Go's `strings.ToUpper` (no multi-rune expansions such as ß → SS).
pub fn go_upper(s: &str) -> String {
    s.chars()
        .map(|c| {
            let mut u = c.to_uppercase();
            match (u.next(), u.next()) {
                (Some(x), None) => x,
                _ => c,
            }
        })
        .collect()
}

/// Go's `strings.ToLower`.
pub fn go_lower(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c == '\u{130}' {
                return 'i';
            }
            let mut u = c.to_lowercase();
            match (u.next(), u.next()) {
                (Some(x), None) => x,
                _ => c,
            }
        })
        .collect()
}

/// A `map[string]string` of `_0`, `_1`, … (Sprig's `split`).
fn string_map(parts: Vec<String>) -> Value {
    let v = Value::map(parts.into_iter().enumerate().map(|(k, v)| (format!("_{k}"), Value::from(v))).collect());
    if let Value::Map(m) = &v {
        crate::value::mark_map_type(m, "map[string]string");
    }
    v
}

#[cfg(test)]
mod tests {
    use super::{compile, go_regex_syntax};

    #[test]
    fn perl_classes_are_ascii_like_go() {
        assert_eq!(go_regex_syntax(r"^\w+\d\s$"), r"^[0-9A-Za-z_]+[0-9][\t\n\f\r ]$");
        assert_eq!(go_regex_syntax(r"[\w.-]+[^\d]"), r"[0-9A-Za-z_.-]+[^0-9]");
        assert_eq!(go_regex_syntax(r"[]\d][[:alpha:]\w]\\d"), r"[]0-9][[:alpha:]0-9A-Za-z_]\\d");
        assert!(!compile(r"^\w+$").unwrap().is_match("héllo"));
        assert!(compile(r"\bab\b").unwrap().is_match("x ab y"));
        assert!(!compile(r"\d").unwrap().is_match("٣"));
    }
}
