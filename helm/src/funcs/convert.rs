//! Sprig's loose conversions (spf13/cast): `toInt64`, `toFloat64`, `strval`.

use crate::value::Value;

fn trim_zero_decimal(s: &str) -> &str {
    let mut found_zero = false;
    let b = s.as_bytes();
    for i in (0..b.len()).rev() {
        match b[i] {
            b'.' => {
                if found_zero {
                    return &s[..i];
                }
                return s;
            }
            b'0' => found_zero = true,
            _ => return s,
        }
    }
    s
}

/// Go's `strconv.ParseInt(s, 0, 64)`.
pub fn parse_int_base0(s: &str) -> Option<i64> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if body.is_empty() {
        return None;
    }
    let lower = body.to_ascii_lowercase();
    let (radix, digits, prefixed) = if let Some(r) = lower.strip_prefix("0x") {
        (16, r.to_string(), true)
    } else if let Some(r) = lower.strip_prefix("0o") {
        (8, r.to_string(), true)
    } else if let Some(r) = lower.strip_prefix("0b") {
        (2, r.to_string(), true)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_string(), true)
    } else {
        (10, lower.clone(), false)
    };
    // underscores only allowed with base prefix (base 0)
    if digits.contains('_') {
        if !prefixed && radix == 10 {
            // base-0 parsing allows underscores between digits for any base
        }
        if digits.starts_with('_') && !prefixed || digits.ends_with('_') || digits.contains("__") {
            return None;
        }
    }
    let digits: String = digits.replace('_', "");
    if digits.is_empty() {
        return None;
    }
    let u = u64::from_str_radix(&digits, radix).ok()?;
    if neg {
        if u > i64::MAX as u64 + 1 {
            return None;
        }
        Some(-(u as i128) as i64)
    } else {
        if u > i64::MAX as u64 {
            return None;
        }
        Some(u as i64)
    }
}

/// `cast.ToInt64` (errors become 0).
pub fn to_int64(v: &Value) -> i64 {
    match v {
        Value::Int(i) | Value::Int64(i) => *i,
        Value::Uint(u) => *u as i64,
        Value::Float(f) => float_to_i64(*f),
        Value::Str(s) => parse_int_base0(trim_zero_decimal(s)).unwrap_or(0),
        Value::Bool(b) => i64::from(*b),
        _ => 0,
    }
}

/// Go's `int64(f)` conversion (saturating like amd64's CVTTSD2SI: out of range gives MinInt64).
pub fn float_to_i64(f: f64) -> i64 {
    if f.is_nan() || !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f) { i64::MIN } else { f as i64 }
}

/// `cast.ToFloat64` (errors become 0).
pub fn to_float64(v: &Value) -> f64 {
    match v {
        Value::Int(i) | Value::Int64(i) => *i as f64,
        Value::Uint(u) => *u as f64,
        Value::Float(f) => *f,
        Value::Str(s) => parse_go_float(s).unwrap_or(0.0),
        Value::Bool(b) => f64::from(u8::from(*b)),
        _ => 0.0,
    }
}

/// Go's `strconv.ParseFloat(s, 64)`: inf/nan spellings, `_` between digits (Go's
/// `underscoreOK`, e.g. `1_000`), and an out-of-range value (`1e400`) is an error.
pub fn parse_go_float(s: &str) -> Option<f64> {
    let t = s.to_ascii_lowercase();
    let body = t.trim_start_matches(['+', '-']);
    match body {
        "inf" | "infinity" => return Some(if t.starts_with('-') { f64::NEG_INFINITY } else { f64::INFINITY }),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    if body.starts_with("0x") {
        // Go's ParseFloat needs a 'p' exponent for hex mantissas
        return None;
    }
    if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-' | '_')) {
        return None;
    }
    let owned;
    let s = if s.contains('_') {
        // each underscore must sit between two digits
        let b = s.as_bytes();
        let ok = b.iter().enumerate().all(|(k, &c)| c != b'_' || (k > 0 && b[k - 1].is_ascii_digit() && b.get(k + 1).is_some_and(u8::is_ascii_digit)));
        if !ok {
            return None;
        }
        owned = s.replace('_', "");
        owned.as_str()
    } else {
        s
    };
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// Sprig's `strval`.
pub fn strval(v: &Value) -> String {
    match v {
        Value::Str(s) => s.to_string(),
        Value::List(l, crate::value::SliceTy::Byte) => {
            let b: Vec<u8> = l.iter().map(|x| super::i(x) as u8).collect();
            String::from_utf8_lossy(&b).into_owned()
        }
        Value::Object(o) => o.display(),
        Value::Invalid => "<nil>".into(),
        v => v.fmt_v(),
    }
}

/// Sprig's `toStrings`-style slice view: `[]interface{}`/`[]string` → items; otherwise `None`.
pub fn as_list(v: &Value) -> Option<Vec<Value>> {
    match v {
        Value::List(l, _) => Some(l.as_ref().clone()),
        _ => None,
    }
}
