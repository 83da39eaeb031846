//! Sprig's dict functions (with mergo's merge semantics).

use std::collections::BTreeMap;

use super::convert::strval;
use super::{FuncMap, Ty, reg, s};
use crate::value::{Map, Value};

use Ty::*;

fn map_of(v: &Value) -> Option<Map> {
    match v {
        Value::Map(m) => Some(m.clone()),
        _ => None,
    }
}

fn is_empty_value(v: &Value) -> bool {
    !v.truthy()
}

/// mergo's deepMerge of maps (`Merge` / `Merge(WithOverride)`).
pub fn mergo(dst: &Map, src: &Map, overwrite: bool, depth: usize) {
    if depth > 64 || std::rc::Rc::ptr_eq(dst, src) {
        return;
    }
    let entries: Vec<(String, Value)> = src.borrow().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    for (k, sv) in entries {
        let dv = dst.borrow().get(&k).cloned();
        if sv.is_nil() {
            if overwrite {
                dst.borrow_mut().insert(k, Value::Nil);
            }
            continue;
        }
        if let (Value::Map(sm), Some(Value::Map(dm))) = (&sv, &dv) {
            mergo(dm, sm, overwrite, depth + 1);
        }
        if matches!(sv, Value::List(..)) && overwrite {
            dst.borrow_mut().insert(k, sv);
            continue;
        }
        // mergo skips a non-empty destination for a slice, and for a map only when the
        // destination is a map too (dario.cat/mergo merge.go, deepMerge's map case)
        if let Some(d) = &dv
            && !is_empty_value(d)
            && (matches!(sv, Value::List(..)) || matches!((&sv, d), (Value::Map(_), Value::Map(_))))
        {
            continue;
        }
        if overwrite || dv.is_none() || dv.as_ref().is_some_and(is_empty_value) {
            dst.borrow_mut().insert(k, sv);
        }
    }
}

pub fn register(m: &mut FuncMap) {
    reg(m, "dict", &[], Some(Any), |_, a| {
        let mut d = BTreeMap::new();
        let mut k = 0;
        while k < a.len() {
            let key = strval(&a[k]);
            if k + 1 >= a.len() {
                d.insert(key, Value::from(""));
            } else {
                d.insert(key, a[k + 1].clone());
            }
            k += 2;
        }
        Ok(Value::map(d))
    });
    reg(m, "get", &[Map, Str], None, |_, a| {
        let Some(d) = map_of(&a[0]) else { return Ok(Value::from("")) };
        let r = d.borrow().get(s(&a[1])).cloned();
        Ok(r.unwrap_or_else(|| Value::from("")))
    });
    reg(m, "set", &[Map, Str, Any], None, |_, a| {
        let Some(d) = map_of(&a[0]) else { return Err("assignment to entry in nil map".into()) };
        d.borrow_mut().insert(s(&a[1]).to_string(), a[2].clone());
        Ok(Value::Map(d))
    });
    reg(m, "unset", &[Map, Str], None, |_, a| {
        let Some(d) = map_of(&a[0]) else { return Ok(a[0].clone()) };
        d.borrow_mut().remove(s(&a[1]));
        Ok(Value::Map(d))
    });
    reg(m, "hasKey", &[Map, Str], None, |_, a| Ok(Value::Bool(map_of(&a[0]).is_some_and(|d| d.borrow().contains_key(s(&a[1]))))));
    reg(m, "pluck", &[Str], Some(Map), |_, a| {
        let key = s(&a[0]);
        let mut out = Vec::new();
        for d in &a[1..] {
            if let Some(d) = map_of(d)
                && let Some(v) = d.borrow().get(key)
            {
                out.push(v.clone());
            }
        }
        Ok(Value::list(out))
    });
    reg(m, "keys", &[], Some(Map), |_, a| {
        let mut out = Vec::new();
        for d in a {
            if let Some(d) = map_of(d) {
                out.extend(d.borrow().keys().cloned());
            }
        }
        Ok(Value::str_list(out))
    });
    reg(m, "values", &[Map], None, |_, a| {
        let out: Vec<Value> = map_of(&a[0]).map(|d| d.borrow().values().cloned().collect()).unwrap_or_default();
        Ok(Value::list(out))
    });
    reg(m, "pick", &[Map], Some(Str), |_, a| {
        let mut out = BTreeMap::new();
        if let Some(d) = map_of(&a[0]) {
            for k in &a[1..] {
                if let Some(v) = d.borrow().get(s(k)) {
                    out.insert(s(k).to_string(), v.clone());
                }
            }
        }
        Ok(Value::map(out))
    });
    reg(m, "omit", &[Map], Some(Str), |_, a| {
        let mut out = BTreeMap::new();
        if let Some(d) = map_of(&a[0]) {
            for (k, v) in d.borrow().iter() {
                if !a[1..].iter().any(|x| s(x) == k) {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        Ok(Value::map(out))
    });
    for (name, ow) in [("merge", false), ("mustMerge", false), ("mergeOverwrite", true), ("mustMergeOverwrite", true)] {
        let f: super::NativeFn = if ow { |_, a| merge_impl(a, true) } else { |_, a| merge_impl(a, false) };
        reg(m, name, &[Map], Some(Map), f);
    }
    for name in ["deepCopy", "mustDeepCopy"] {
        reg(m, name, &[Any], None, |_, a| {
            if a[0].is_nil() {
                return Err("reflect: call of reflect.Value.Type on zero Value".into());
            }
            Ok(a[0].deep_copy())
        });
    }
}

fn merge_impl(a: &[Value], overwrite: bool) -> super::FResult {
    let dst = match map_of(&a[0]) {
        Some(d) => d,
        None => std::rc::Rc::new(std::cell::RefCell::new(BTreeMap::new())),
    };
    for src in &a[1..] {
        if let Some(sm) = map_of(src) {
            mergo(&dst, &sm, overwrite, 0);
        }
    }
    Ok(Value::Map(dst))
}
