//! Go's `encoding/json` encoder and decoder, as Helm's `toJson`/`fromJson` see them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::value::{SliceTy, Value};

/// Options for [`encode`].
#[derive(Clone, Copy, Default)]
pub struct JsonOpts {
    /// Escape `<`, `>`, `&` as `\u003c` etc (Go's default).
    pub escape_html: bool,
    /// `MarshalIndent(v, "", "  ")`.
    pub pretty: bool,
}

/// Go's `json.Marshal` (errors for NaN/Inf and cycles, like Go).
pub fn encode(v: &Value, opts: JsonOpts) -> Result<String, String> {
    let mut out = String::new();
    enc(&mut out, v, opts, 0)?;
    Ok(out)
}

/// Go's float formatting in encoding/json.
pub fn float_str(f: f64) -> Result<String, String> {
    if !f.is_finite() {
        return Err(format!("json: unsupported value: {}", crate::value::format_float_g(f, -1, 'e')));
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = crate::template::fmt::format_e(f, 0, 'e');
        // shortest 'e'
        let (neg, digits, dp) = crate::value::decimal_digits(f, None);
        let _ = s;
        let mut r = String::new();
        if neg {
            r.push('-');
        }
        r.push_str(&digits[..1]);
        if digits.len() > 1 {
            r.push('.');
            r.push_str(&digits[1..]);
        }
        let exp = dp - 1;
        let _ = write!(r, "e{}{}", if exp < 0 { '-' } else { '+' }, exp.abs());
        return Ok(r);
    }
    Ok(crate::template::fmt::format_f(f, None))
}

fn enc(out: &mut String, v: &Value, o: JsonOpts, depth: usize) -> Result<(), String> {
    stacker::maybe_grow(64 * 1024, 2 * 1024 * 1024, || enc_inner(out, v, o, depth))
}

fn enc_inner(out: &mut String, v: &Value, o: JsonOpts, depth: usize) -> Result<(), String> {
    if depth > 1000 {
        return Err("json: unsupported value: encountered a cycle via map[string]interface {}".into());
    }
    match v {
        Value::Invalid | Value::Nil => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) | Value::Int64(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Uint(u) => {
            let _ = write!(out, "{u}");
        }
        Value::Float(f) => out.push_str(&float_str(*f)?),
        Value::Complex(..) => return Err("json: unsupported type: complex128".into()),
        Value::Str(s) => quote_into(out, s, o.escape_html),
        Value::List(l, SliceTy::Byte) => {
            use base64::Engine;
            let b: Vec<u8> = l.iter().map(|x| crate::funcs::i(x) as u8).collect();
            quote_into(out, &base64::engine::general_purpose::STANDARD.encode(b), o.escape_html);
        }
        Value::List(l, SliceTy::NilIface | SliceTy::NilStr) if l.is_empty() => out.push_str("null"),
        Value::List(l, _) => {
            if l.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (k, e) in l.iter().enumerate() {
                if k > 0 {
                    out.push(',');
                }
                newline(out, o, depth + 1);
                enc(out, e, o, depth + 1)?;
            }
            newline(out, o, depth);
            out.push(']');
        }
        Value::Map(m) => {
            let Ok(b) = m.try_borrow() else { return Err("json: unsupported value: encountered a cycle via map[string]interface {}".into()) };
            members(out, b.iter().map(|(k, v)| (k.as_str(), v)), o, depth)?;
        }
        Value::Object(obj) => match obj.json_fields() {
            // A struct: its fields in declaration order, as encoding/json writes them.
            Some(fields) => members(out, fields.iter().map(|(k, v)| (*k, v)), o, depth)?,
            None => enc(out, &obj.to_json(), o, depth)?,
        },
    }
    Ok(())
}

/// An object's members in the order given.
fn members<'a>(out: &mut String, mut it: impl ExactSizeIterator<Item = (&'a str, &'a Value)>, o: JsonOpts, depth: usize) -> Result<(), String> {
    if it.len() == 0 {
        out.push_str("{}");
        return Ok(());
    }
    out.push('{');
    let mut first = true;
    for (key, e) in it.by_ref() {
        if !first {
            out.push(',');
        }
        first = false;
        newline(out, o, depth + 1);
        quote_into(out, key, o.escape_html);
        out.push(':');
        if o.pretty {
            out.push(' ');
        }
        enc(out, e, o, depth + 1)?;
    }
    newline(out, o, depth);
    out.push('}');
    Ok(())
}

fn newline(out: &mut String, o: JsonOpts, depth: usize) {
    if o.pretty {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("  ");
        }
    }
}

/// Go's JSON string quoting.
pub fn quote_into(out: &mut String, s: &str, escape_html: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' if escape_html => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Go's `json.Unmarshal` into `interface{}` (numbers become float64).
/// Go's `json.Unmarshal` into `interface{}` values: a number beyond float64 (`1e400`) does not
/// stop decoding; it becomes nil and the first such error is returned next to the value
/// (encoding/json decode.go, `literalStore` saves the `UnmarshalTypeError` and goes on).
pub fn decode_lenient(s: &str) -> Result<(Value, Option<String>), String> {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut first_err = None;
    let (mut i, mut last) = (0, 0);
    let mut in_str = false;
    let mut prev = b'[';
    while i < b.len() {
        let c = b[i];
        if in_str {
            if c == b'\\' {
                i += 2;
                continue;
            }
            if c == b'"' {
                in_str = false;
                prev = c;
            }
            i += 1;
            continue;
        }
        if c == b'"' {
            in_str = true;
        } else if (c == b'-' || c.is_ascii_digit()) && matches!(prev, b'[' | b',' | b':') {
            let start = i;
            while i < b.len() && matches!(b[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                i += 1;
            }
            let tok = &s[start..i];
            if tok.parse::<f64>().is_ok_and(f64::is_infinite) {
                out.push_str(&s[last..start]);
                out.push_str("null");
                last = i;
                first_err.get_or_insert_with(|| format!("json: cannot unmarshal number {tok} into Go value of type float64"));
            }
            prev = b'0';
            continue;
        }
        if !c.is_ascii_whitespace() {
            prev = c;
        }
        i += 1;
    }
    if first_err.is_none() {
        return decode(s).map(|v| (v, None));
    }
    out.push_str(&s[last..]);
    let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| go_json_error(s, &e))?;
    Ok((from_serde(&v), first_err))
}

pub fn decode(s: &str) -> Result<Value, String> {
    let v: serde_json::Value = serde_json::from_str(s).map_err(|e| go_json_error(s, &e))?;
    Ok(from_serde(&v))
}

fn go_json_error(s: &str, e: &serde_json::Error) -> String {
    let t = s.trim();
    if t.is_empty() {
        return "unexpected end of JSON input".into();
    }
    if let Some(msg) = go_scan_error(t) {
        return msg;
    }
    let first = t.chars().next().unwrap_or(' ');
    let lit = match first {
        't' => Some("true"),
        'f' => Some("false"),
        'n' => Some("null"),
        _ => None,
    };
    if let Some(lit) = lit {
        let mut chars = t.chars();
        for expect in lit.chars() {
            match chars.next() {
                None => return "unexpected end of JSON input".into(),
                Some(c) if c == expect => {}
                Some(c) => {
                    return format!(
                        "invalid character {} in literal {lit} (expecting {})",
                        crate::template::fmt::quote_rune(c),
                        crate::template::fmt::quote_rune(expect)
                    );
                }
            }
        }
    } else if !(first == '{' || first == '[' || first == '"' || first == '-' || first.is_ascii_digit()) {
        return format!("invalid character {} looking for beginning of value", crate::template::fmt::quote_rune(first));
    }
    match e.classify() {
        serde_json::error::Category::Eof => "unexpected end of JSON input".into(),
        _ => {
            // Go: "invalid character 'x' looking for beginning of value"
            let msg = e.to_string();
            if msg.starts_with("trailing characters") {
                let idx = byte_offset(s, e.line(), e.column());
                let c = s[idx.saturating_sub(1)..].chars().next().unwrap_or(' ');
                return format!("invalid character {} after top-level value", crate::template::fmt::quote_rune(c));
            }
            let idx = byte_offset(s, e.line(), e.column());
            let c = s[idx.saturating_sub(1).min(s.len())..].chars().next().unwrap_or(' ');
            format!("invalid character {} looking for beginning of value", crate::template::fmt::quote_rune(c))
        }
    }
}

fn byte_offset(s: &str, line: usize, col: usize) -> usize {
    let mut off = 0;
    for (n, l) in s.split_inclusive('\n').enumerate() {
        if n + 1 == line {
            return (off + col).min(s.len());
        }
        off += l.len();
    }
    s.len()
}

/// serde_json → Value (numbers as float64).
pub fn from_serde(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => Value::Float(n.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(a) => Value::list(a.iter().map(from_serde).collect()),
        serde_json::Value::Object(o) => Value::map(o.iter().map(|(k, v)| (k.clone(), from_serde(v))).collect::<BTreeMap<_, _>>()),
    }
}

fn byte_char(b: u8) -> String {
    crate::template::fmt::quote_rune(b as char)
}

/// The errors of Go's JSON scanner for malformed numbers, object keys and stray bytes
/// (reported byte-wise, as Go does).
fn go_scan_error(t: &str) -> Option<String> {
    let b = t.as_bytes();
    let first = *b.first()?;
    match first {
        b'-' | b'0'..=b'9' => {
            let mut i = 0;
            if b[i] == b'-' {
                i += 1;
                match b.get(i) {
                    Some(c) if c.is_ascii_digit() => {}
                    Some(&c) => return Some(format!("invalid character {} in numeric literal", byte_char(c))),
                    None => return Some("unexpected end of JSON input".into()),
                }
            }
            if b[i] == b'0' {
                i += 1;
            } else {
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            }
            if i < b.len() && b[i] == b'.' {
                i += 1;
                match b.get(i) {
                    Some(c) if c.is_ascii_digit() => {}
                    Some(&c) => return Some(format!("invalid character {} after decimal point in numeric literal", byte_char(c))),
                    None => return Some("unexpected end of JSON input".into()),
                }
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            }
            if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
                i += 1;
                if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
                    i += 1;
                }
                match b.get(i) {
                    Some(c) if c.is_ascii_digit() => {}
                    Some(&c) => return Some(format!("invalid character {} in exponent of numeric literal", byte_char(c))),
                    None => return Some("unexpected end of JSON input".into()),
                }
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            }
            let rest = &b[i..];
            let j = rest.iter().position(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r'))?;
            Some(format!("invalid character {} after top-level value", byte_char(rest[j])))
        }
        b'{' => {
            let rest = &b[1..];
            let j = rest.iter().position(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r'))?;
            if rest[j] != b'"' && rest[j] != b'}' {
                return Some(format!("invalid character {} looking for beginning of object key string", byte_char(rest[j])));
            }
            None
        }
        b'[' | b'"' | b't' | b'f' | b'n' => None,
        c => Some(format!("invalid character {} looking for beginning of value", byte_char(c))),
    }
}

#[cfg(test)]
mod lenient_tests {
    use super::decode_lenient;

    #[test]
    fn out_of_range_numbers_decode_as_nil_with_go_error() {
        let (v, e) = decode_lenient(r#"{"a": "1e400", "b": [1e400, -1e999], "c": 2}"#).unwrap();
        assert_eq!(e.as_deref(), Some("json: cannot unmarshal number 1e400 into Go value of type float64"));
        assert_eq!(super::encode(&v, super::JsonOpts { escape_html: false, pretty: false }).unwrap(), r#"{"a":"1e400","b":[null,null],"c":2}"#);
        assert!(decode_lenient("[1, 2.5]").unwrap().1.is_none());
    }
}
