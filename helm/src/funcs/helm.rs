//! Helm's own functions: include, tpl, required, fail, toYaml/fromYaml, toJson/fromJson,
//! toToml/fromToml and an offline `lookup`.

use std::collections::BTreeMap;
use std::rc::Rc;

use super::{FResult, FnError, FuncMap, Ty, WARN_END, WARN_START, ok_str, reg, s};
use crate::json::{JsonOpts, encode};
use crate::template::{TemplateError, TemplateSet, execute, parse::parse};
use crate::value::Value;

use Ty::*;

const RECURSION_MAX: usize = 1000;

fn warn_wrap(s: &str) -> String {
    format!("{WARN_START}{s}{WARN_END}")
}

/// `include NAME DATA`.
pub fn include(c: &mut super::Ctx<'_>, name: &str, data: Value) -> FResult {
    let n = c.include_counts.entry(name.to_string()).or_insert(0);
    if *n > RECURSION_MAX {
        return Err(format!("rendering template has a nested reference name: {name}: unable to execute template").into());
    }
    *n += 1;
    let r = execute(c, name, data);
    if let Some(n) = c.include_counts.get_mut(name) {
        *n -= 1;
    }
    match r {
        Ok(s) => ok_str(s),
        Err(e) => Err(FnError::Nested(Box::new(e))),
    }
}

/// `tpl TEXT DATA`.
pub fn tpl(c: &mut super::Ctx<'_>, text: &str, data: Value) -> FResult {
    let funcs = c.funcs;
    let trees = parse(&c.set_name, text, &|n| funcs.contains_key(n))
        .map_err(|e| FnError::Msg(format!("cannot parse template {}: {}", crate::template::fmt::go_quote(text), e)))?;
    let mut set = TemplateSet { trees: Default::default(), parent: Some(c.set.clone()) };
    set.add_trees(trees);
    let saved = std::mem::replace(&mut c.set, Rc::new(set));
    let name = c.set_name.clone();
    let r = execute(c, &name, data);
    c.set = saved;
    match r {
        Ok(s) => ok_str(s.replace("<no value>", "")),
        Err(e) => Err(FnError::Msg(format!("error during tpl function execution for {}: {}", crate::template::fmt::go_quote(text), e.go_string()))),
    }
}

fn from_yaml_map(st: &str) -> Value {
    let mut m = BTreeMap::new();
    match crate::yaml::decode(st) {
        Ok(Value::Map(x)) => return Value::Map(x),
        Ok(Value::Nil) => {}
        Ok(v) => {
            m.insert(
                "Error".into(),
                Value::from(format!(
                    "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
                    json_kind(&v)
                )),
            );
        }
        Err(e) => {
            m.insert("Error".into(), Value::from(e));
        }
    }
    Value::map(m)
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::List(..) => "array",
        Value::Str(_) => "string",
        Value::Float(_) | Value::Int(_) => "number",
        Value::Bool(_) => "bool",
        Value::Map(_) => "object",
        _ => "null",
    }
}

pub fn register(m: &mut FuncMap) {
    reg(m, "include", &[Str, Any], None, |c, a| include(c, s(&a[0]), a[1].clone()));
    reg(m, "tpl", &[Str, Any], None, |c, a| tpl(c, s(&a[0]), a[1].clone()));
    reg(m, "required", &[Str, Any], None, |_, a| {
        match &a[1] {
            Value::Nil | Value::Invalid => return Err(warn_wrap(s(&a[0])).into()),
            Value::Str(x) if x.is_empty() => return Err(warn_wrap(s(&a[0])).into()),
            _ => {}
        }
        Ok(a[1].clone())
    });
    reg(m, "fail", &[Str], None, |_, a| Err(warn_wrap(s(&a[0])).into()));
    reg(m, "toYaml", &[Any], None, |_, a| ok_str(crate::yaml::encode(&a[0]).map(|s| s.strip_suffix('\n').unwrap_or(&s).to_string()).unwrap_or_default()));
    reg(m, "mustToYaml", &[Any], None, |_, a| ok_str(crate::yaml::encode(&a[0]).map(|s| s.strip_suffix('\n').unwrap_or(&s).to_string())?));
    reg(m, "toYamlPretty", &[Any], None, |_, a| {
        ok_str(crate::yaml::encode_pretty(&a[0]).map(|s| s.strip_suffix('\n').unwrap_or(&s).to_string()).unwrap_or_default())
    });
    reg(m, "fromYaml", &[Str], None, |_, a| Ok(from_yaml_map(s(&a[0]))));
    reg(m, "fromYamlArray", &[Str], None, |_, a| {
        Ok(match crate::yaml::decode(s(&a[0])) {
            Ok(Value::List(l, _)) => Value::List(l, crate::value::SliceTy::Iface),
            Ok(Value::Nil) => Value::list(vec![]),
            Ok(v) => Value::list(vec![Value::from(format!(
                "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal {} into Go value of type []interface {{}}",
                json_kind(&v)
            ))]),
            Err(e) => Value::list(vec![Value::from(e)]),
        })
    });
    reg(m, "toJson", &[Any], None, |_, a| ok_str(encode(&a[0], JsonOpts { escape_html: true, pretty: false }).unwrap_or_default()));
    reg(m, "fromJson", &[Str], None, |_, a| {
        let mut m = BTreeMap::new();
        match crate::json::decode_lenient(s(&a[0])) {
            // Helm's fromJSON: what decoded, plus `Error`
            Ok((Value::Map(x), Some(e))) => {
                x.borrow_mut().insert("Error".into(), Value::from(e));
                return Ok(Value::Map(x));
            }
            Ok((Value::Map(x), None)) => return Ok(Value::Map(x)),
            Ok((_, Some(e))) => {
                m.insert("Error".into(), Value::from(e));
            }
            Ok((v, None)) => match v {
                Value::Nil => {}
                v => {
                    m.insert("Error".into(), Value::from(format!("json: cannot unmarshal {} into Go value of type map[string]interface {{}}", json_kind(&v))));
                }
            },
            Err(e) => {
                m.insert("Error".into(), Value::from(e));
            }
        }
        Ok(Value::map(m))
    });
    reg(m, "fromJsonArray", &[Str], None, |_, a| {
        Ok(match crate::json::decode_lenient(s(&a[0])) {
            // an object is reported as such before its numbers are converted
            Ok((Value::List(_, _), Some(e))) => Value::list(vec![Value::from(e)]),
            Ok((Value::List(l, _), None)) => Value::List(l, crate::value::SliceTy::Iface),
            // json.Unmarshal of `null` leaves the slice nil
            Ok((Value::Nil, None)) => Value::List(std::rc::Rc::new(vec![]), crate::value::SliceTy::NilIface),
            Ok((v, _)) => Value::list(vec![Value::from(format!("json: cannot unmarshal {} into Go value of type []interface {{}}", json_kind(&v)))]),
            Err(e) => Value::list(vec![Value::from(e)]),
        })
    });
    reg(m, "toToml", &[Any], None, |_, a| {
        if a[0].is_nil() {
            return Err("reflect: call of reflect.Value.Type on zero Value".into());
        }
        ok_str(crate::toml::encode(&a[0]).unwrap_or_else(|e| e))
    });
    reg(m, "mustToToml", &[Any], None, |_, a| ok_str(crate::toml::encode(&a[0])?));
    reg(m, "fromToml", &[Str], None, |_, a| {
        Ok(match crate::toml::decode(s(&a[0])) {
            Ok(v) => v,
            Err(e) => {
                let mut m = BTreeMap::new();
                m.insert("Error".into(), Value::from(e));
                Value::map(m)
            }
        })
    });
    reg(m, "lookup", &[Str, Str, Str, Str], None, |_, _| Ok(Value::empty_map()));
    let _ = TemplateError::Plain(String::new());
}
