//! Go's `fmt.Sprintf` and `strconv.Quote`, as far as templates can reach them.

use std::fmt::Write as _;

use crate::value::{Value, decimal_digits, format_float_g};

/// Go's `strconv.Quote`.
pub fn go_quote(s: &str) -> String {
    quote_with(s, '"', false)
}

/// Go's `strconv.QuoteToASCII`.
pub fn go_quote_ascii(s: &str) -> String {
    quote_with(s, '"', true)
}

fn is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(c as u32, 0xAD | 0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB | 0xE000..=0xF8FF | 0xF0000..=0x10FFFF)
}

fn quote_with(s: &str, q: char, ascii: bool) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push(q);
    for c in s.chars() {
        quote_char(&mut out, c, q, ascii);
    }
    out.push(q);
    out
}

fn quote_char(out: &mut String, c: char, q: char, ascii: bool) {
    if c == q || c == '\\' {
        out.push('\\');
        out.push(c);
        return;
    }
    if c == '\u{FFFD}' {
        out.push_str("\\ufffd");
        return;
    }
    if ascii {
        if (c as u32) < 0x80 && is_print(c) {
            out.push(c);
            return;
        }
    } else if is_print(c) {
        out.push(c);
        return;
    }
    match c {
        '\x07' => out.push_str("\\a"),
        '\x08' => out.push_str("\\b"),
        '\x0c' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\x0b' => out.push_str("\\v"),
        c if (c as u32) < 0x20 || c as u32 == 0x7f => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if (c as u32) < 0x10000 => {
            let _ = write!(out, "\\u{:04x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\U{:08x}", c as u32);
        }
    }
}

/// Go's `strconv.QuoteRune`.
pub fn quote_rune(c: char) -> String {
    let mut out = String::from("'");
    quote_char(&mut out, c, '\'', false);
    out.push('\'');
    out
}

#[derive(Default, Clone, Copy)]
struct Flags {
    plus: bool,
    minus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    width: Option<usize>,
    prec: Option<usize>,
    plus_v: bool,
    sharp_v: bool,
}

/// Go's `fmt` bound on widths and precisions (`tooLarge`): beyond ±1e6 they are refused.
fn too_large(n: i64) -> bool {
    !(-1_000_000..=1_000_000).contains(&n)
}

/// Go's `fmt.parsenum`: the number at `i` (if any) and where it ends; a number that grows
/// too large consumes the rest of the format, as Go's does.
fn parsenum(b: &[u8], mut i: usize) -> (Option<usize>, usize) {
    let mut num: i64 = 0;
    let mut isnum = false;
    while i < b.len() && b[i].is_ascii_digit() {
        if too_large(num) {
            return (None, b.len());
        }
        num = num * 10 + i64::from(b[i] - b'0');
        isnum = true;
        i += 1;
    }
    (isnum.then_some(num as usize), i)
}

/// Go's `fmt.Sprintf`.
pub fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let b = format.as_bytes();
    let mut i = 0;
    let mut argn = 0usize;
    let mut reordered = false;
    let mut good_argnum = true;
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i] != b'%' {
            i += 1;
        }
        out.push_str(&format[start..i]);
        if i >= b.len() {
            break;
        }
        i += 1; // skip %
        let mut f = Flags::default();
        // flags
        while i < b.len() {
            match b[i] {
                b'#' => f.sharp = true,
                b'0' => f.zero = true,
                b'+' => f.plus = true,
                b'-' => f.minus = true,
                b' ' => f.space = true,
                _ => break,
            }
            i += 1;
        }
        // argument index
        let parse_argnum = |i: &mut usize, argn: &mut usize, reordered: &mut bool, good: &mut bool| {
            if *i < b.len() && b[*i] == b'[' {
                *reordered = true;
                let close = format[*i..].find(']');
                match close {
                    Some(c) => {
                        let inner = &format[*i + 1..*i + c];
                        match inner.parse::<usize>() {
                            Ok(n) if n >= 1 && n <= args.len() => {
                                *argn = n - 1;
                                *good = true;
                            }
                            _ => *good = false,
                        }
                        *i += c + 1;
                    }
                    None => *good = false,
                }
            }
        };
        parse_argnum(&mut i, &mut argn, &mut reordered, &mut good_argnum);
        // width
        if i < b.len() && b[i] == b'*' {
            i += 1;
            match args.get(argn) {
                Some(Value::Int(n)) | Some(Value::Int64(n)) if !too_large(*n) => {
                    let mut n = *n;
                    if n < 0 {
                        f.minus = true;
                        n = -n;
                    }
                    f.width = Some(n as usize);
                }
                _ => out.push_str("%!(BADWIDTH)"),
            }
            argn += 1;
        } else {
            let (n, next) = parsenum(b, i);
            f.width = n;
            i = next;
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            parse_argnum(&mut i, &mut argn, &mut reordered, &mut good_argnum);
            if i < b.len() && b[i] == b'*' {
                i += 1;
                match args.get(argn) {
                    Some(Value::Int(n)) | Some(Value::Int64(n)) if *n >= 0 && !too_large(*n) => f.prec = Some(*n as usize),
                    _ => out.push_str("%!(BADPREC)"),
                }
                argn += 1;
            } else {
                let (n, next) = parsenum(b, i);
                f.prec = Some(n.unwrap_or(0));
                i = next;
            }
        }
        parse_argnum(&mut i, &mut argn, &mut reordered, &mut good_argnum);
        if i >= b.len() {
            out.push_str("%!(NOVERB)");
            break;
        }
        let verb = format[i..].chars().next().unwrap_or('v');
        i += verb.len_utf8();
        if verb == '%' {
            out.push('%');
            continue;
        }
        if !good_argnum {
            let _ = write!(out, "%!{verb}(BADINDEX)");
            continue;
        }
        let Some(arg) = args.get(argn) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        argn += 1;
        // Go's printArg: a nil interface is `<nil>` for %v (even %#v) and %T, a bad verb otherwise
        if arg.is_nil() {
            match verb {
                'v' | 'T' => pad(&mut out, "<nil>", f),
                _ => bad_verb(&mut out, arg, verb, f),
            }
            continue;
        }
        if verb == 'v' {
            if f.sharp {
                f.sharp = false;
                f.sharp_v = true;
            }
            if f.plus {
                f.plus = false;
                f.plus_v = true;
            }
        }
        fmt_arg(&mut out, arg, verb, f);
    }
    if !reordered && argn < args.len() {
        out.push_str("%!(EXTRA ");
        for (k, a) in args[argn..].iter().enumerate() {
            if k > 0 {
                out.push_str(", ");
            }
            match a {
                Value::Nil | Value::Invalid => out.push_str("<nil>"),
                _ => {
                    out.push_str(&a.type_name());
                    out.push('=');
                    fmt_arg(&mut out, a, 'v', Flags::default());
                }
            }
        }
        out.push(')');
    }
    out
}

fn pad(out: &mut String, s: &str, f: Flags) {
    let n = s.chars().count();
    let w = f.width.unwrap_or(0);
    if n >= w {
        out.push_str(s);
        return;
    }
    let padn = w - n;
    if f.minus {
        out.push_str(s);
        out.extend(std::iter::repeat_n(' ', padn));
    } else if f.zero {
        // zero padding goes after the sign
        let (sign, rest) = if s.starts_with(['-', '+', ' ']) { s.split_at(1) } else { ("", s) };
        out.push_str(sign);
        out.extend(std::iter::repeat_n('0', padn));
        out.push_str(rest);
    } else {
        out.extend(std::iter::repeat_n(' ', padn));
        out.push_str(s);
    }
}

/// Go's `badVerb`: `%!verb(type=value)`, the value printed with `%v` and the directive's
/// flags, width and precision still set (Go keeps `p.fmt` as parsed), e.g. `%!d(string=  str)`.
fn bad_verb(out: &mut String, v: &Value, verb: char, f: Flags) {
    match v {
        Value::Nil | Value::Invalid => {
            let _ = write!(out, "%!{verb}(<nil>)");
        }
        _ => {
            let _ = write!(out, "%!{verb}({}=", v.type_name());
            fmt_arg(out, v, 'v', f);
            out.push(')');
        }
    }
}

fn fmt_arg(out: &mut String, v: &Value, verb: char, f: Flags) {
    if verb == 'T' {
        // Go: `p.fmt.fmtS(reflect.TypeOf(arg).String())`, so a precision truncates the type name
        // (in runes) like a string's: `%.3T` of a string is `str`, `%.T` prints nothing.
        let t = v.type_name();
        let t: String = match f.prec {
            Some(p) => t.chars().take(p).collect(),
            None => t.to_string(),
        };
        pad(out, &t, f);
        return;
    }
    if verb == 'p' {
        bad_verb(out, v, verb, f);
        return;
    }
    match v {
        Value::Nil | Value::Invalid if f.sharp_v => pad(out, "interface {}(nil)", f),
        Value::Nil | Value::Invalid => match verb {
            'v' => pad(out, "<nil>", f),
            _ => bad_verb(out, v, verb, f),
        },
        Value::Bool(b) => match verb {
            't' | 'v' => pad(out, if *b { "true" } else { "false" }, f),
            _ => bad_verb(out, v, verb, f),
        },
        Value::Int(i) | Value::Int64(i) => fmt_int(out, *i as i128, v, verb, f),
        Value::Uint(u) => fmt_int(out, *u as i128, v, verb, f),
        Value::Float(x) => fmt_float(out, *x, v, verb, f),
        Value::Complex(r, i) => match verb {
            'v' | 'g' | 'G' | 'e' | 'E' | 'f' | 'F' => {
                let mut re = String::new();
                let mut im = String::new();
                let fv = if verb == 'v' { 'g' } else { verb };
                fmt_float(&mut re, *r, v, fv, Flags { width: None, ..f });
                fmt_float(&mut im, *i, v, fv, Flags { width: None, plus: true, ..f });
                pad(out, &format!("({re}{im}i)"), f);
            }
            _ => bad_verb(out, v, verb, f),
        },
        Value::Str(s) => fmt_str(out, s, v, verb, f),
        Value::List(l, crate::value::SliceTy::NilIface | crate::value::SliceTy::NilStr) if f.sharp_v && l.is_empty() => {
            out.push_str(crate::value::slice_ty_name(match v {
                Value::List(_, t) => *t,
                _ => crate::value::SliceTy::Iface,
            }));
            out.push_str("(nil)");
        }
        Value::List(l, t) => {
            if f.sharp_v {
                let mut s = String::new();
                s.push_str(crate::value::slice_ty_name(*t));
                s.push('{');
                for (k, e) in l.iter().enumerate() {
                    if k > 0 {
                        s.push_str(", ");
                    }
                    fmt_arg(&mut s, e, 'v', Flags { sharp_v: true, ..Flags::default() });
                }
                s.push('}');
                out.push_str(&s);
                return;
            }
            if *t == crate::value::SliceTy::Byte && matches!(verb, 's' | 'q' | 'x' | 'X') {
                let bytes: Vec<u8> = l.iter().map(|e| if let Value::Int(i) = e { *i as u8 } else { 0 }).collect();
                fmt_str(out, &String::from_utf8_lossy(&bytes), v, verb, f);
                return;
            }
            out.push('[');
            for (k, e) in l.iter().enumerate() {
                if k > 0 {
                    out.push(' ');
                }
                if e.is_nil() {
                    out.push_str("<nil>");
                    continue;
                }
                fmt_arg(out, e, verb, Flags { width: f.width, prec: f.prec, plus_v: f.plus_v, ..f });
            }
            out.push(']');
        }
        Value::Map(m) => {
            if f.sharp_v {
                // `map[string]interface {}{…}`, or the map's named type (`common.Values{…}`)
                sharp_map(out, &v.type_name(), &m.borrow());
                return;
            }
            out.push_str("map[");
            let Ok(b) = m.try_borrow() else { return };
            for (k, (key, e)) in b.iter().enumerate() {
                if k > 0 {
                    out.push(' ');
                }
                // a map[string]interface{} key is a string: `%!d(string=k)`
                fmt_str(out, key, &Value::from(key.as_str()), verb, f);
                out.push(':');
                if e.is_nil() {
                    out.push_str("<nil>");
                    continue;
                }
                fmt_arg(out, e, verb, f);
            }
            out.push(']');
        }
        Value::Object(o) => {
            // Go's printValue for a struct: `{` each field with the verb, width and precision `}`,
            // named under `%+v` and `%#v` (which also prints the type and quotes).
            if let Some(fields) = o.struct_fields() {
                if f.sharp_v {
                    out.push_str(&o.type_name());
                }
                out.push('{');
                for (k, (name, e)) in fields.iter().enumerate() {
                    if k > 0 {
                        out.push_str(if f.sharp_v { ", " } else { " " });
                    }
                    if f.plus_v || f.sharp_v {
                        out.push_str(name);
                        out.push(':');
                    }
                    if f.sharp_v {
                        fmt_arg(out, e, 'v', Flags { sharp_v: true, ..Flags::default() });
                    } else {
                        fmt_arg(out, e, verb, f);
                    }
                }
                out.push('}');
                return;
            }
            // Slices and maps element by element, like a plain list or map (`%#v` names the
            // object's own type: `common.VersionSet{"v1", …}`).
            match (verb, o.as_plain()) {
                (_, Some(Value::List(l, _))) if f.sharp_v => {
                    out.push_str(&o.type_name());
                    out.push('{');
                    for (k, e) in l.iter().enumerate() {
                        if k > 0 {
                            out.push_str(", ");
                        }
                        fmt_arg(out, e, 'v', Flags { sharp_v: true, ..Flags::default() });
                    }
                    out.push('}');
                }
                (_, Some(Value::Map(m))) if f.sharp_v => sharp_map(out, &o.type_name(), &m.borrow()),
                (_, Some(plain)) => fmt_arg(out, &plain, verb, f),
                ('v' | 's', None) => pad(out, &o.display(), f),
                _ => bad_verb(out, v, verb, f),
            }
        }
    }
}

/// Go's `%#v` of a map: its type, then `"key":value` pairs in `%#v`.
fn sharp_map(out: &mut String, type_name: &str, m: &std::collections::BTreeMap<String, Value>) {
    out.push_str(type_name);
    out.push('{');
    for (k, (key, e)) in m.iter().enumerate() {
        if k > 0 {
            out.push_str(", ");
        }
        out.push_str(&go_quote(key));
        out.push(':');
        fmt_arg(out, e, 'v', Flags { sharp_v: true, ..Flags::default() });
    }
    out.push('}');
}

fn fmt_int(out: &mut String, i: i128, v: &Value, verb: char, f: Flags) {
    let neg = i < 0;
    let a = i.unsigned_abs();
    let mut digits = match verb {
        'v' | 'd' => a.to_string(),
        'x' => format!("{a:x}"),
        'X' => format!("{a:X}"),
        'o' | 'O' => format!("{a:o}"),
        'b' => format!("{a:b}"),
        // Go's fmtC/fmtQc/fmtUnicode: the operand as uint64, runes past U+10FFFF are U+FFFD
        'c' => {
            pad(out, &rune_of(i).to_string(), f);
            return;
        }
        'q' => {
            let c = rune_of(i);
            let q = if f.sharp && is_print(c) {
                format!("'{c}'")
            } else if c == '\u{FFFD}' && !f.plus {
                "'\u{FFFD}'".to_string()
            } else {
                let mut q = String::from("'");
                quote_char(&mut q, c, '\'', f.plus);
                q.push('\'');
                q
            };
            pad(out, &q, f);
            return;
        }
        'U' => {
            let u = if i < 0 { i as i64 as u64 } else { a as u64 };
            let mut s = format!("U+{u:04X}");
            if f.sharp
                && u <= 0x10FFFF
                && let Some(c) = char::from_u32(u as u32)
                && is_print(c)
            {
                s.push_str(&format!(" '{c}'"));
            }
            pad(out, &s, f);
            return;
        }
        // Every other verb ('e', 'f', 'g', 's', 't', …) is wrong for this operand.
        _ => {
            bad_verb(out, v, verb, f);
            return;
        }
    };
    if let Some(p) = f.prec {
        while digits.len() < p {
            digits.insert(0, '0');
        }
        if p == 0 && a == 0 {
            digits.clear();
        }
    }
    let mut prefix = String::new();
    if f.sharp {
        match verb {
            'x' => prefix.push_str("0x"),
            'X' => prefix.push_str("0X"),
            'o' if !digits.starts_with('0') => prefix.push('0'),
            'b' => prefix.push_str("0b"),
            _ => {}
        }
    }
    if verb == 'O' {
        prefix.push_str("0o");
    }
    let sign = if neg {
        "-"
    } else if f.plus {
        "+"
    } else if f.space {
        " "
    } else {
        ""
    };
    let body = format!("{prefix}{digits}");
    let w = f.width.unwrap_or(0);
    let total = sign.len() + body.len();
    if f.zero && !f.minus && f.prec.is_none() && total < w {
        out.push_str(sign);
        out.extend(std::iter::repeat_n('0', w - total));
        out.push_str(&body);
    } else {
        pad(out, &format!("{sign}{body}"), Flags { zero: false, ..f });
    }
}

fn rune_of(i: i128) -> char {
    if (0..=0x10FFFF).contains(&i) { char::from_u32(i as u32).unwrap_or('\u{FFFD}') } else { '\u{FFFD}' }
}

/// strconv.FormatFloat(x, 'e', prec, 64)
pub fn format_e(x: f64, prec: usize, e: char) -> String {
    let s = format!("{:.*e}", prec, x.abs());
    let (m, ex) = s.split_once('e').unwrap_or((&s, "0"));
    let ex: i32 = ex.parse().unwrap_or(0);
    let sign = if x.is_sign_negative() { "-" } else { "" };
    format!("{sign}{m}{e}{}{:02}", if ex < 0 { '-' } else { '+' }, ex.abs())
}

/// strconv.FormatFloat(x, 'f', prec, 64); `None` = shortest.
pub fn format_f(x: f64, prec: Option<usize>) -> String {
    match prec {
        Some(p) => format!("{:.*}", p, x),
        None => {
            let (neg, digits, dp) = decimal_digits(x, None);
            let mut s = String::new();
            if neg {
                s.push('-');
            }
            let nd = digits.len() as i64;
            if dp <= 0 {
                s.push_str("0.");
                for _ in 0..-dp {
                    s.push('0');
                }
                s.push_str(&digits);
            } else if dp >= nd {
                s.push_str(&digits);
                for _ in 0..dp - nd {
                    s.push('0');
                }
            } else {
                s.push_str(&digits[..dp as usize]);
                s.push('.');
                s.push_str(&digits[dp as usize..]);
            }
            if s == "0" || s == "-0" {
                return s;
            }
            s
        }
    }
}

/// strconv.FormatFloat(x, 'x'/'X', prec, 64): `-0x1.yyyyp±dd` (Go's `fmtX`; `prec` -1 = shortest).
pub fn format_hex_float(x: f64, prec: i64, upper: bool) -> String {
    let (neg, mut mant, mut exp) = float_parts(x);
    if mant == 0 {
        exp = 0;
    }
    mant <<= 60 - 52;
    while mant != 0 && mant & (1u64 << 60) == 0 {
        mant <<= 1;
        exp -= 1;
    }
    if (0..15).contains(&prec) {
        let shift = (prec * 4) as u32;
        let extra = (mant << shift) & ((1u64 << 60) - 1);
        mant >>= 60 - shift;
        if extra | (mant & 1) > 1u64 << 59 {
            mant += 1;
        }
        mant <<= 60 - shift;
        if mant & (1u64 << 61) != 0 {
            mant >>= 1;
            exp += 1;
        }
    }
    let digits: &[u8] = if upper { b"0123456789ABCDEF" } else { b"0123456789abcdef" };
    let mut s = String::new();
    if neg {
        s.push('-');
    }
    s.push('0');
    s.push(if upper { 'X' } else { 'x' });
    s.push((b'0' + ((mant >> 60) & 1) as u8) as char);
    mant <<= 4;
    if prec < 0 && mant != 0 {
        s.push('.');
        while mant != 0 {
            s.push(digits[((mant >> 60) & 15) as usize] as char);
            mant <<= 4;
        }
    } else if prec > 0 {
        s.push('.');
        for _ in 0..prec {
            s.push(digits[((mant >> 60) & 15) as usize] as char);
            mant <<= 4;
        }
    }
    s.push(if upper { 'P' } else { 'p' });
    s.push(if exp < 0 { '-' } else { '+' });
    let _ = write!(s, "{:02}", exp.abs());
    s
}

/// strconv.FormatFloat(x, 'b', -1, 64): `-ddddp±ddd` (Go's `fmtB`).
fn format_binary_float(x: f64) -> String {
    let (neg, mant, exp) = float_parts(x);
    let exp = exp - 52;
    format!("{}{mant}p{}{exp}", if neg { "-" } else { "" }, if exp >= 0 { "+" } else { "" })
}

/// A float64's sign, mantissa (implicit bit set for normal numbers) and unbiased exponent, as
/// Go's strconv `fmtX`/`fmtB` split them (subnormals get exponent 1 - 1023).
fn float_parts(x: f64) -> (bool, u64, i64) {
    let bits = x.to_bits();
    let mut exp = ((bits >> 52) & 0x7ff) as i64;
    let mut mant = bits & ((1u64 << 52) - 1);
    if exp == 0 {
        exp += 1;
    } else {
        mant |= 1u64 << 52;
    }
    (bits >> 63 != 0, mant, exp - 1023)
}

/// Go's `(*fmt).fmtFloat` (fmt/format.go): sign, `#` (keep the point and trailing zeros,
/// counting significant digits like Go, even the `x` of a hex float), zero padding after the
/// sign, and `NaN`/`Inf` never zero-padded.
fn fmt_float(out: &mut String, x: f64, v: &Value, verb: char, f: Flags) {
    let (body, gverb, prec) = match verb {
        'v' => {
            if f.sharp_v {
                (format_float_g(x, -1, 'e'), 'g', -1)
            } else {
                (format_float_g(x, f.prec.map(|p| p as i32).unwrap_or(-1), 'e'), 'g', f.prec.map(|p| p as i32).unwrap_or(-1))
            }
        }
        'g' => (format_float_g(x, f.prec.map(|p| p as i32).unwrap_or(-1), 'e'), 'g', f.prec.map(|p| p as i32).unwrap_or(-1)),
        'G' => (format_float_g(x, f.prec.map(|p| p as i32).unwrap_or(-1), 'E'), 'G', f.prec.map(|p| p as i32).unwrap_or(-1)),
        'e' => (format_e(x, f.prec.unwrap_or(6), 'e'), 'e', 6),
        'E' => (format_e(x, f.prec.unwrap_or(6), 'E'), 'E', 6),
        'f' | 'F' => (format_f(x, Some(f.prec.unwrap_or(6))), 'f', 6),
        'x' | 'X' if x.is_finite() => (format_hex_float(x, f.prec.map_or(-1, |p| p as i64), verb == 'X'), verb, -1),
        'b' if x.is_finite() => (format_binary_float(x), 'b', -1),
        'x' | 'X' | 'b' => (format_float_g(x, -1, 'e'), verb, -1),
        _ => {
            bad_verb(out, v, verb, f);
            return;
        }
    };
    // num[0] is the sign slot, as in Go.
    let mut num = if let Some(rest) = body.strip_prefix('-') {
        format!("-{rest}")
    } else if let Some(rest) = body.strip_prefix('+') {
        format!("+{rest}")
    } else {
        format!("+{body}")
    };
    if f.space && num.starts_with('+') && !f.plus {
        num.replace_range(0..1, " ");
    }
    if num[1..].starts_with(['I', 'N']) {
        if num[1..].starts_with('N') && !f.space && !f.plus {
            num.remove(0);
        }
        pad(out, &num, Flags { zero: false, ..f });
        return;
    }
    if f.sharp && gverb != 'b' {
        let mut digits: i64 = match gverb {
            'g' | 'G' | 'x' => {
                if prec == -1 && f.prec.is_none() {
                    6
                } else {
                    f.prec.map(|p| p as i64).unwrap_or(prec as i64)
                }
            }
            _ => 0,
        };
        let mut tail = String::new();
        let mut has_point = false;
        let mut saw_nonzero = false;
        let bytes: Vec<char> = num.chars().collect();
        let mut cut = bytes.len();
        for (i, &c) in bytes.iter().enumerate().skip(1) {
            match c {
                '.' => has_point = true,
                'p' | 'P' => {
                    tail = bytes[i..].iter().collect();
                    cut = i;
                    break;
                }
                'e' | 'E' if gverb != 'x' && gverb != 'X' => {
                    tail = bytes[i..].iter().collect();
                    cut = i;
                    break;
                }
                _ => {
                    if c != '0' {
                        saw_nonzero = true;
                    }
                    if saw_nonzero {
                        digits -= 1;
                    }
                }
            }
        }
        let mut n: String = bytes[..cut].iter().collect();
        if !has_point {
            if n.len() == 2 && n.ends_with('0') {
                digits -= 1;
            }
            n.push('.');
        }
        while digits > 0 {
            n.push('0');
            digits -= 1;
        }
        n.push_str(&tail);
        num = n;
    }
    let shown = if f.plus || !num.starts_with('+') { num.as_str() } else { &num[1..] };
    let w = f.width.unwrap_or(0);
    let len = shown.chars().count();
    if f.zero && !f.minus && len < w {
        let (sign, rest) = if shown.starts_with(['-', '+', ' ']) { shown.split_at(1) } else { ("", shown) };
        out.push_str(sign);
        out.extend(std::iter::repeat_n('0', w - len));
        out.push_str(rest);
    } else {
        pad(out, shown, Flags { zero: false, ..f });
    }
}

fn fmt_str(out: &mut String, s: &str, v: &Value, verb: char, f: Flags) {
    let s: String = match f.prec {
        Some(p) if matches!(verb, 's' | 'v' | 'q') => s.chars().take(p).collect(),
        _ => s.to_string(),
    };
    match verb {
        'v' => {
            if f.sharp_v {
                pad(out, &go_quote(&s), f)
            } else {
                pad(out, &s, f)
            }
        }
        's' => pad(out, &s, f),
        'q' => {
            if f.sharp && !s.contains('`') {
                pad(out, &format!("`{s}`"), f)
            } else if f.plus {
                pad(out, &go_quote_ascii(&s), f)
            } else {
                pad(out, &go_quote(&s), f)
            }
        }
        'x' | 'X' => {
            let mut h = String::new();
            let bytes = s.as_bytes();
            let bytes = match f.prec {
                Some(p) => &bytes[..p.min(bytes.len())],
                None => bytes,
            };
            for (k, byte) in bytes.iter().enumerate() {
                if f.space && k > 0 {
                    h.push(' ');
                }
                if f.sharp && (f.space || k == 0) {
                    h.push_str(if verb == 'x' { "0x" } else { "0X" });
                }
                if verb == 'x' {
                    let _ = write!(h, "{byte:02x}");
                } else {
                    let _ = write!(h, "{byte:02X}");
                }
            }
            pad(out, &h, f)
        }
        _ => bad_verb(out, v, verb, f),
    }
}

/// Go's `fmt.Sprint(args...)`: spaces between operands when neither is a string.
pub fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        let is_str = matches!(a, Value::Str(_));
        if i > 0 && !is_str && !matches!(args[i - 1], Value::Str(_)) {
            out.push(' ');
        }
        fmt_arg(&mut out, a, 'v', Flags::default());
    }
    out
}

/// Go's `fmt.Sprintln(args...)`.
pub fn sprintln(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        fmt_arg(&mut out, a, 'v', Flags::default());
    }
    out.push('\n');
    out
}
