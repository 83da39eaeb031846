//! TOML for Helm's `toToml` (BurntSushi/toml's encoder layout) and `fromToml`.

use std::collections::BTreeMap;

use crate::value::Value;

/// BurntSushi/toml `Encode`.
pub fn encode(v: &Value) -> Result<String, String> {
    let mut out = String::new();
    match v {
        Value::Invalid | Value::Nil => return Err("reflect: call of reflect.Value.Type on zero Value".into()),
        Value::Map(_) => emit_table(&mut out, v, &mut Vec::new(), 0)?,
        // BurntSushi's eArrayOfTables has no key for a top-level array of tables (errNoKey)
        Value::List(..) if is_table(v) => return Err("toml: top-level values must be Go maps or structs".into()),
        other => out.push_str(&inline(other, 0)?),
    }
    Ok(out)
}

fn is_table(v: &Value) -> bool {
    match v {
        Value::Map(_) => true,
        Value::List(l, _) => !l.is_empty() && l.iter().all(|e| matches!(e, Value::Map(_))),
        _ => false,
    }
}

fn key_str(k: &str) -> String {
    if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') { k.to_string() } else { quote(k) }
}

fn quote(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            '\r' => o.push_str("\\r"),
            '\u{8}' => o.push_str("\\b"),
            '\u{c}' => o.push_str("\\f"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => o.push_str(&format!("\\u{:04X}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn float(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let s = crate::value::format_float_g(f, -1, 'e');
    // BurntSushi's floatAddDecimal: `.0` only when there is neither a point nor an exponent
    if s.contains(['.', 'e']) { s } else { format!("{s}.0") }
}

fn inline(v: &Value, depth: usize) -> Result<String, String> {
    if depth > 100 {
        return Err("toml: too deep".into());
    }
    Ok(match v {
        Value::Bool(b) => b.to_string(),
        Value::Int(i) | Value::Int64(i) => i.to_string(),
        Value::Uint(u) => u.to_string(),
        Value::Float(f) => float(*f),
        Value::Complex(..) => return Err("toml: unsupported type: complex128".into()),
        Value::Str(s) => quote(s),
        Value::List(l, _) => {
            let mut parts = Vec::new();
            for e in l.iter() {
                if e.is_nil() {
                    return Err("toml: cannot encode array with nil element".into());
                }
                parts.push(inline(e, depth + 1)?);
            }
            format!("[{}]", parts.join(", "))
        }
        Value::Map(m) => {
            let b = m.borrow();
            let mut parts = Vec::new();
            for (k, e) in b.iter() {
                if e.is_nil() {
                    continue;
                }
                parts.push(format!("{} = {}", key_str(k), inline(e, depth + 1)?));
            }
            format!("{{{}}}", parts.join(", "))
        }
        Value::Object(o) => inline(&o.to_json(), depth + 1)?,
        Value::Nil | Value::Invalid => return Err("toml: cannot encode a nil value".into()),
    })
}

fn emit_table(out: &mut String, v: &Value, path: &mut Vec<String>, depth: usize) -> Result<(), String> {
    if depth > 100 {
        return Err("toml: too deep".into());
    }
    let Value::Map(m) = v else { return Ok(()) };
    let entries: Vec<(String, Value)> = m.borrow().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let indent = "  ".repeat(path.len());
    for (k, e) in &entries {
        if e.is_nil() || is_table(e) {
            continue;
        }
        out.push_str(&indent);
        out.push_str(&key_str(k));
        out.push_str(" = ");
        out.push_str(&inline(e, depth + 1)?);
        out.push('\n');
    }
    for (k, e) in &entries {
        if e.is_nil() || !is_table(e) {
            continue;
        }
        path.push(k.clone());
        let full: Vec<String> = path.iter().map(|p| key_str(p)).collect();
        let hdr_indent = "  ".repeat(path.len() - 1);
        match e {
            Value::Map(_) => {
                // BurntSushi's eTable: the blank line only before top-level tables
                if path.len() == 1 && !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(&format!("{hdr_indent}[{}]\n", full.join(".")));
                emit_table(out, e, path, depth + 1)?;
            }
            Value::List(l, _) => {
                for item in l.iter() {
                    if !out.is_empty() {
                        out.push('\n');
                    }
                    out.push_str(&format!("{hdr_indent}[[{}]]\n", full.join(".")));
                    emit_table(out, item, path, depth + 1)?;
                }
            }
            _ => {}
        }
        path.pop();
    }
    Ok(())
}

/// `toml.Unmarshal` into a map.
pub fn decode(s: &str) -> Result<Value, String> {
    let v: toml::Table = match s.parse::<toml::Table>() {
        Ok(v) => v,
        Err(e) => return Err(burntsushi_error(s).unwrap_or_else(|| format!("toml: {}", e.message()))),
    };
    Ok(conv(&toml::Value::Table(v)))
}

fn conv(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::from(s.as_str()),
        toml::Value::Integer(i) => Value::Int64(*i),
        toml::Value::Float(f) => Value::Float(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::from(d.to_string()),
        toml::Value::Array(a) => Value::list(a.iter().map(conv).collect()),
        toml::Value::Table(t) => Value::map(t.iter().map(|(k, v)| (k.clone(), conv(v))).collect::<BTreeMap<_, _>>()),
    }
}

/// BurntSushi/toml's wording for the commonest key and table-header syntax errors (its lexer,
/// lex.go: `lexKeyEnd` "expected '.' or '=', but got %q instead", `lexTableNameEnd` "expected
/// '.' or ']' to end table name, but got %q instead"; only tabs and spaces are whitespace there).
fn burntsushi_error(s: &str) -> Option<String> {
    let lines: Vec<&str> = s.split('\n').collect();
    for (n, line) in lines.iter().enumerate() {
        let l = line.trim_start_matches([' ', '\t']);
        let line_no = n + 1;
        let last = n + 1 == lines.len();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        // the character after `rest` as the lexer sees it: `\n` unless this is the last line
        let next_char = |rest: &str| rest.chars().next().or(if last { None } else { Some('\n') });
        if let Some(h) = l.strip_prefix('[') {
            let mut rest = h.strip_prefix('[').unwrap_or(h);
            loop {
                rest = rest.trim_start_matches([' ', '\t']);
                rest = take_key_part(rest)?;
                rest = rest.trim_start_matches([' ', '\t']);
                match next_char(rest) {
                    Some('.') => rest = &rest[1..],
                    Some(']') => break,
                    Some(c) => {
                        return Some(format!(
                            "toml: line {line_no}: expected '.' or ']' to end table name, but got {} instead",
                            crate::template::fmt::quote_rune(c)
                        ));
                    }
                    None => return None,
                }
            }
            continue;
        }
        let mut rest = l;
        let mut key = String::new();
        loop {
            let before = rest;
            rest = take_key_part(rest).unwrap_or(rest);
            key.push_str(&before[..before.len() - rest.len()]);
            rest = rest.trim_start_matches([' ', '\t']);
            match next_char(rest) {
                Some('.') => {
                    rest = &rest[1..];
                    key.push('.');
                    rest = rest.trim_start_matches([' ', '\t']);
                }
                Some('=') => {
                    let v = rest[1..].trim();
                    if v.is_empty() && last {
                        return Some(format!("toml: line {line_no} (last key {}): unexpected EOF; expected value", crate::template::fmt::go_quote(&key)));
                    }
                    break;
                }
                None => return Some(format!("toml: line {line_no}: unexpected EOF; expected key separator '='")),
                Some(c) => return Some(format!("toml: line {line_no}: expected '.' or '=', but got {} instead", crate::template::fmt::quote_rune(c))),
            }
        }
    }
    None
}

/// One bare or quoted key part; `None` for an unterminated quoted key.
fn take_key_part(s: &str) -> Option<&str> {
    if let Some(q @ ('"' | '\'')) = s.chars().next() {
        let body = &s[1..];
        let mut esc = false;
        for (i, c) in body.char_indices() {
            if esc {
                esc = false;
            } else if c == '\\' && q == '"' {
                esc = true;
            } else if c == q {
                return Some(&body[i + 1..]);
            } else if c == '\n' {
                return None;
            }
        }
        return None;
    }
    let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-')).unwrap_or(s.len());
    Some(&s[end..])
}
