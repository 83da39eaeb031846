//! Go `text/template` builtins: and or not len index print printf println eq ne lt le gt
//! ge call html js urlquery. (`slice` is Sprig's in Helm, which overrides Go's.)

use super::{FResult, FuncMap, Ty, reg};
use crate::template::fmt::{sprint, sprintf, sprintln};
use crate::value::Value;

use Ty::*;

pub fn register(m: &mut FuncMap) {
    reg(m, "and", &[RValue], Some(RValue), |_, _| Ok(Value::Invalid));
    reg(m, "or", &[RValue], Some(RValue), |_, _| Ok(Value::Invalid));
    reg(m, "not", &[RValue], None, |_, a| Ok(Value::Bool(!a[0].truthy())));
    reg(m, "len", &[RValue], None, |_, a| len(&a[0]));
    reg(m, "index", &[RValue], Some(RValue), |_, a| index(&a[0], &a[1..]));
    reg(m, "print", &[], Some(Any), |_, a| Ok(sprint(a).into()));
    reg(m, "printf", &[Str], Some(Any), |_, a| Ok(sprintf(super::s(&a[0]), &a[1..]).into()));
    reg(m, "println", &[], Some(Any), |_, a| Ok(sprintln(a).into()));
    reg(m, "eq", &[RValue], Some(RValue), |_, a| {
        if a.len() < 2 {
            return Err("missing argument for comparison".into());
        }
        for b in &a[1..] {
            if eq(&a[0], b)? {
                return Ok(Value::Bool(true));
            }
        }
        Ok(Value::Bool(false))
    });
    reg(m, "ne", &[RValue, RValue], None, |_, a| Ok(Value::Bool(!eq(&a[0], &a[1])?)));
    reg(m, "lt", &[RValue, RValue], None, |_, a| Ok(Value::Bool(lt(&a[0], &a[1])?)));
    reg(m, "le", &[RValue, RValue], None, |_, a| Ok(Value::Bool(lt(&a[0], &a[1])? || eq(&a[0], &a[1])?)));
    reg(m, "gt", &[RValue, RValue], None, |_, a| {
        let le = lt(&a[0], &a[1])? || eq(&a[0], &a[1])?;
        Ok(Value::Bool(!le))
    });
    reg(m, "ge", &[RValue, RValue], None, |_, a| Ok(Value::Bool(!lt(&a[0], &a[1])?)));
    reg(m, "call", &[RValue], Some(RValue), |_, a| match &a[0] {
        Value::Invalid | Value::Nil => Err("call of nil".into()),
        v => Err(format!("non-function of type {}", v.type_name()).into()),
    });
    reg(m, "html", &[], Some(Any), |_, a| Ok(html_escape(&eval_args(a)).into()));
    reg(m, "js", &[], Some(Any), |_, a| Ok(js_escape(&eval_args(a)).into()));
    reg(m, "urlquery", &[], Some(Any), |_, a| Ok(query_escape(&eval_args(a)).into()));
}

fn eval_args(a: &[Value]) -> String {
    if a.len() == 1
        && let Value::Str(s) = &a[0]
    {
        return s.to_string();
    }
    let conv: Vec<Value> = a.iter().map(|v| if v.is_nil() { Value::from("<no value>") } else { v.clone() }).collect();
    sprint(&conv)
}

fn len(v: &Value) -> FResult {
    match v {
        Value::Invalid => Err("reflect: call of reflect.Value.Type on zero Value".into()),
        Value::Nil => Err("len of nil pointer".into()),
        Value::Str(s) => Ok(Value::Int(s.len() as i64)),
        Value::List(l, _) => Ok(Value::Int(l.len() as i64)),
        Value::Map(m) => Ok(Value::Int(m.borrow().len() as i64)),
        Value::Object(o) if o.entries().is_some() => Ok(Value::Int(o.entries().map(|e| e.len()).unwrap_or(0) as i64)),
        // slice-kinded objects (`.Capabilities.APIVersions`, a []string)
        Value::Object(o) if o.kind() == "slice" => match o.to_json() {
            Value::List(l, _) => Ok(Value::Int(l.len() as i64)),
            _ => Err(format!("len of type {}", o.type_name()).into()),
        },
        v => Err(format!("len of type {}", v.type_name()).into()),
    }
}

fn index_arg(i: &Value, cap: usize) -> Result<usize, String> {
    let x: i64 = match i {
        Value::Int(n) | Value::Int64(n) => *n,
        Value::Uint(u) => *u as i64,
        Value::Invalid | Value::Nil => return Err("cannot index slice/array with nil".into()),
        v => return Err(format!("cannot index slice/array with type {}", v.type_name())),
    };
    if x < 0 || x as u64 > cap as u64 {
        return Err(format!("index out of range: {x}"));
    }
    Ok(x as usize)
}

fn index(item: &Value, idx: &[Value]) -> FResult {
    let mut item = item.clone();
    if item.is_nil() {
        return Err("index of untyped nil".into());
    }
    for i in idx {
        item = match &item {
            Value::Nil | Value::Invalid => return Err("index of nil pointer".into()),
            Value::List(l, _) => {
                let x = index_arg(i, l.len())?;
                match l.get(x) {
                    Some(v) => v.clone(),
                    None => return Err("reflect: slice index out of range".into()),
                }
            }
            Value::Str(s) => {
                let x = index_arg(i, s.len())?;
                match s.as_bytes().get(x) {
                    Some(b) => Value::Uint(*b as u64),
                    None => return Err("reflect: string index out of range".into()),
                }
            }
            Value::Map(m) => match i {
                Value::Str(k) => m.borrow().get(&**k).cloned().unwrap_or(Value::Nil),
                Value::Invalid | Value::Nil => return Err("value is nil; should be of type string".into()),
                v => return Err(format!("value has type {}; should be string", v.type_name()).into()),
            },
            v => return Err(format!("can't index item of type {}", v.type_name()).into()),
        };
    }
    Ok(item)
}

#[derive(PartialEq, Clone, Copy)]
enum Kind {
    Bool,
    Int,
    Uint,
    Float,
    Str,
    Other,
    Invalid,
}

fn basic_kind(v: &Value) -> Kind {
    match v {
        Value::Bool(_) => Kind::Bool,
        Value::Int(_) | Value::Int64(_) => Kind::Int,
        Value::Uint(_) => Kind::Uint,
        Value::Float(_) => Kind::Float,
        Value::Str(_) => Kind::Str,
        Value::Invalid | Value::Nil => Kind::Invalid,
        _ => Kind::Other,
    }
}

fn ival(v: &Value) -> i64 {
    super::i(v)
}
fn uval(v: &Value) -> u64 {
    match v {
        Value::Uint(u) => *u,
        _ => 0,
    }
}
fn fval(v: &Value) -> f64 {
    match v {
        Value::Float(f) => *f,
        _ => 0.0,
    }
}

/// Go's builtin `eq` for two values.
pub fn eq(a: &Value, b: &Value) -> Result<bool, String> {
    let (k1, k2) = (basic_kind(a), basic_kind(b));
    if k1 != k2 {
        return match (k1, k2) {
            (Kind::Int, Kind::Uint) => Ok(ival(a) >= 0 && ival(a) as u64 == uval(b)),
            (Kind::Uint, Kind::Int) => Ok(ival(b) >= 0 && uval(a) == ival(b) as u64),
            _ => {
                if !a.is_nil() && !b.is_nil() {
                    Err(format!("incompatible types for comparison: {} and {}", a.type_name(), b.type_name()))
                } else {
                    Ok(false)
                }
            }
        };
    }
    Ok(match k1 {
        Kind::Bool => a.truthy() == b.truthy(),
        Kind::Float => fval(a) == fval(b),
        Kind::Int => ival(a) == ival(b),
        Kind::Uint => uval(a) == uval(b),
        Kind::Str => a.as_str() == b.as_str(),
        Kind::Invalid => true,
        Kind::Other => {
            if a.type_name() != b.type_name() {
                return Err(format!("non-comparable types {}: {}, {}: {}", sprintf("%s", std::slice::from_ref(a)), a.type_name(), b.type_name(), b.fmt_v()));
            }
            let non_comparable = || Err(format!("non-comparable type {}: {}", sprintf("%s", std::slice::from_ref(b)), b.type_name()));
            match (a, b) {
                // Go compares by the dynamic type: slices and maps (`.Capabilities.APIVersions`,
                // `.Files`) are not comparable, structs (`.Capabilities.KubeVersion`) compare
                // field by field (all strings here, as `format` prints them), pointers by address.
                (Value::Object(x), Value::Object(y)) => match y.kind() {
                    "slice" | "map" | "func" => return non_comparable(),
                    "struct" => x.format() == y.format(),
                    _ => std::rc::Rc::ptr_eq(x, y),
                },
                _ => return non_comparable(),
            }
        }
    })
}

/// Go's builtin `lt`.
pub fn lt(a: &Value, b: &Value) -> Result<bool, String> {
    let bad = || "invalid type for comparison".to_string();
    let (k1, k2) = (basic_kind(a), basic_kind(b));
    if matches!(k1, Kind::Invalid | Kind::Other) || matches!(k2, Kind::Invalid | Kind::Other) {
        return Err(bad());
    }
    if k1 != k2 {
        return match (k1, k2) {
            (Kind::Int, Kind::Uint) => Ok(ival(a) < 0 || (ival(a) as u64) < uval(b)),
            (Kind::Uint, Kind::Int) => Ok(ival(b) >= 0 && uval(a) < ival(b) as u64),
            _ => Err(format!("incompatible types for comparison: {} and {}", a.type_name(), b.type_name())),
        };
    }
    match k1 {
        Kind::Bool => Err(bad()),
        Kind::Float => Ok(fval(a) < fval(b)),
        Kind::Int => Ok(ival(a) < ival(b)),
        Kind::Uint => Ok(uval(a) < uval(b)),
        Kind::Str => Ok(a.as_str() < b.as_str()),
        _ => Err(bad()),
    }
}

/// Go's `template.HTMLEscapeString`.
pub fn html_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => o.push_str("&#34;"),
            '\'' => o.push_str("&#39;"),
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '\0' => o.push('\u{FFFD}'),
            c => o.push(c),
        }
    }
    o
}

/// Go's `template.JSEscapeString`.
pub fn js_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '\'' => o.push_str("\\'"),
            '"' => o.push_str("\\\""),
            '<' => o.push_str("\\u003C"),
            '>' => o.push_str("\\u003E"),
            '&' => o.push_str("\\u0026"),
            '=' => o.push_str("\\u003D"),
            c if (c as u32) < 0x80 => {
                if (c as u32) >= 0x20 && (c as u32) < 0x7f {
                    o.push(c)
                } else {
                    o.push_str(&format!("\\u{:04X}", c as u32))
                }
            }
            c => {
                if c.is_control() || c.is_whitespace() && c != ' ' {
                    o.push_str(&format!("\\u{:04X}", c as u32))
                } else {
                    o.push(c)
                }
            }
        }
    }
    o
}

/// Go's `url.QueryEscape`.
pub fn query_escape(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => o.push(b as char),
            b' ' => o.push('+'),
            b => o.push_str(&format!("%{b:02X}")),
        }
    }
    o
}
