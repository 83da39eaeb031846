//! Sprig's list functions.

use std::rc::Rc;

use super::convert::to_int64;
use super::{FResult, FnError, FuncMap, Ty, i, reg};
use crate::value::{SliceTy, Value};

use Ty::*;

fn list_of(v: &Value) -> Option<&Rc<Vec<Value>>> {
    match v {
        Value::List(l, _) => Some(l),
        _ => None,
    }
}

/// reflect.TypeOf(v).Kind() — panics on nil in Go.
fn kind_or_panic(v: &Value) -> Result<&'static str, FnError> {
    if v.is_nil() {
        return Err("runtime error: invalid memory address or nil pointer dereference".into());
    }
    Ok(v.kind())
}

fn need_list<'a>(v: &'a Value, what: &str) -> Result<&'a Rc<Vec<Value>>, FnError> {
    match list_of(v) {
        Some(l) => Ok(l),
        None => {
            let k = kind_or_panic(v)?;
            Err(format!("Cannot {what} on type {k}").into())
        }
    }
}

fn iface(v: Vec<Value>) -> Value {
    Value::list(v)
}

/// Keeps the slice type of the input (Go's reflect.Append/Slice keep the element type).
fn same_ty(orig: &Value, v: Vec<Value>) -> Value {
    match orig {
        Value::List(_, t) => Value::List(Rc::new(v), t.non_nil()),
        _ => iface(v),
    }
}

/// reflect.DeepEqual
pub fn deep_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::List(x, t), Value::List(y, u)) => {
            (t == u || (t.non_nil() == u.non_nil() && !x.is_empty())) && x.len() == y.len() && x.iter().zip(y.iter()).all(|(p, q)| deep_equal(p, q))
        }
        (Value::Map(x), Value::Map(y)) => {
            if Rc::ptr_eq(x, y) {
                return true;
            }
            let (x, y) = (x.borrow(), y.borrow());
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| deep_equal(v, w)))
        }
        (Value::Nil | Value::Invalid, Value::Nil | Value::Invalid) => true,
        _ => a == b,
    }
}

fn in_list(l: &[Value], v: &Value) -> bool {
    l.iter().any(|x| deep_equal(x, v))
}

pub fn register(m: &mut FuncMap) {
    reg(m, "list", &[], Some(Any), |_, a| Ok(iface(a.to_vec())));
    reg(m, "tuple", &[], Some(Any), |_, a| Ok(iface(a.to_vec())));
    for (name, must) in [("push", false), ("append", false), ("mustPush", true), ("mustAppend", true)] {
        let _ = must;
        reg(m, name, &[Any, Any], None, |_, a| {
            let l = need_list(&a[0], "push")?;
            let mut v = l.as_ref().clone();
            v.push(a[1].clone());
            Ok(iface(v))
        });
    }
    for name in ["prepend", "mustPrepend"] {
        reg(m, name, &[Any, Any], None, |_, a| {
            let l = need_list(&a[0], "prepend")?;
            let mut v = vec![a[1].clone()];
            v.extend(l.iter().cloned());
            Ok(iface(v))
        });
    }
    for name in ["first", "mustFirst"] {
        reg(m, name, &[Any], None, |_, a| {
            let l = need_list(&a[0], "find first")?;
            Ok(l.first().cloned().unwrap_or(Value::Nil))
        });
    }
    for name in ["last", "mustLast"] {
        reg(m, name, &[Any], None, |_, a| {
            let l = need_list(&a[0], "find last")?;
            Ok(l.last().cloned().unwrap_or(Value::Nil))
        });
    }
    for name in ["rest", "mustRest"] {
        reg(m, name, &[Any], None, |_, a| {
            let l = need_list(&a[0], "find rest")?;
            if l.is_empty() {
                // Sprig: `if l == 0 { return nil, nil }`
                return Ok(Value::List(Rc::new(vec![]), SliceTy::NilIface));
            }
            Ok(same_ty(&a[0], l[1..].to_vec()))
        });
    }
    for name in ["initial", "mustInitial"] {
        reg(m, name, &[Any], None, |_, a| {
            let l = need_list(&a[0], "find initial")?;
            if l.is_empty() {
                return Ok(Value::List(Rc::new(vec![]), SliceTy::NilIface));
            }
            Ok(same_ty(&a[0], l[..l.len() - 1].to_vec()))
        });
    }
    for name in ["reverse", "mustReverse"] {
        reg(m, name, &[Any], None, |_, a| {
            let l = need_list(&a[0], "find reverse")?;
            let mut v = l.as_ref().clone();
            v.reverse();
            Ok(iface(v))
        });
    }
    for name in ["compact", "mustCompact"] {
        reg(m, name, &[Any], None, |_, a| {
            let l = need_list(&a[0], "compact")?;
            Ok(iface(l.iter().filter(|v| v.truthy()).cloned().collect()))
        });
    }
    for name in ["uniq", "mustUniq"] {
        reg(m, name, &[Any], None, |_, a| {
            let l = need_list(&a[0], "find uniq")?;
            let mut out: Vec<Value> = Vec::new();
            for v in l.iter() {
                if !in_list(&out, v) {
                    out.push(v.clone());
                }
            }
            Ok(iface(out))
        });
    }
    for name in ["without", "mustWithout"] {
        reg(m, name, &[Any], Some(Any), |_, a| {
            let l = need_list(&a[0], "find without")?;
            Ok(iface(l.iter().filter(|v| !in_list(&a[1..], v)).cloned().collect()))
        });
    }
    for name in ["has", "mustHas"] {
        reg(m, name, &[Any, Any], None, |_, a| {
            if a[1].is_nil() {
                return Ok(Value::Bool(false));
            }
            let l = need_list(&a[1], "find has")?;
            Ok(Value::Bool(in_list(l, &a[0])))
        });
    }
    for name in ["slice", "mustSlice"] {
        reg(m, name, &[Any], Some(Any), |_, a| {
            let l = match &a[0] {
                Value::List(l, _) => l,
                v => {
                    let k = kind_or_panic(v)?;
                    return Err(format!("list should be type of slice or array but {k}").into());
                }
            };
            if l.is_empty() {
                return Ok(Value::Nil);
            }
            let n = l.len() as i64;
            let start = if a.len() > 1 { to_int64(&a[1]) } else { 0 };
            let end = if a.len() > 2 { to_int64(&a[2]) } else { n };
            if start < 0 || end < start || end > n {
                return Err("reflect.Value.Slice: slice index out of bounds".into());
            }
            Ok(same_ty(&a[0], l[start as usize..end as usize].to_vec()))
        });
    }
    reg(m, "concat", &[], Some(Any), |c, a| {
        let total: u128 = a.iter().map(|l| if let Value::List(x, _) = l { x.len() as u128 } else { 0 }).sum();
        c.budget.check_elements(total, 16)?;
        let mut out = Vec::new();
        for l in a {
            match l {
                Value::List(x, _) => out.extend(x.iter().cloned()),
                v => {
                    let k = kind_or_panic(v)?;
                    return Err(format!("Cannot concat type {k} as list").into());
                }
            }
        }
        Ok(iface(out))
    });
    for name in ["chunk", "mustChunk"] {
        reg(m, name, &[Int, Any], None, |_, a| {
            let size = i(&a[0]);
            let l = match &a[1] {
                Value::List(x, _) => x,
                v => {
                    let k = kind_or_panic(v)?;
                    return Err(format!("Cannot chunk type {k}").into());
                }
            };
            // Sprig: cs := int(math.Floor(float64(l-1)/float64(size)) + 1); make([][]interface{}, cs)
            let cs = ((l.len() as f64 - 1.0) / size as f64).floor() + 1.0;
            if !cs.is_finite() || cs < 0.0 {
                return Err("runtime error: makeslice: len out of range".into());
            }
            if cs == 0.0 || size <= 0 {
                return Ok(Value::List(Rc::new(vec![]), SliceTy::Lists));
            }
            let out: Vec<Value> = l.chunks(size as usize).map(|c| iface(c.to_vec())).collect();
            Ok(Value::List(Rc::new(out), SliceTy::Lists))
        });
    }
    reg(m, "dig", &[], Some(Any), |_, a| {
        if a.len() < 3 {
            return Err("dig needs at least three arguments".to_string().into());
        }
        let dict = match &a[a.len() - 1] {
            Value::Map(m) => m.clone(),
            // Go's type-assertion panic names a nil interface `nil`, not `<nil>`
            Value::Nil | Value::Invalid => return Err("interface conversion: interface {} is nil, not map[string]interface {}".to_string().into()),
            v => return Err(format!("interface conversion: interface {{}} is {}, not map[string]interface {{}}", v.type_name()).into()),
        };
        let def = a[a.len() - 2].clone();
        let keys = &a[..a.len() - 2];
        let mut cur = Value::Map(dict);
        for (k, key) in keys.iter().enumerate() {
            let ks = match key {
                Value::Str(s) => s.to_string(),
                v => return Err(format!("interface conversion: interface {{}} is {}, not string", v.type_name()).into()),
            };
            let m = match &cur {
                Value::Map(m) => m.clone(),
                v => return Err(format!("interface conversion: interface {{}} is {}, not map[string]interface {{}}", v.type_name()).into()),
            };
            let next = m.borrow().get(&ks).cloned();
            match next {
                Some(v) => {
                    if k == keys.len() - 1 {
                        return Ok(v);
                    }
                    cur = v;
                }
                None => return Ok(def),
            }
        }
        Ok(def)
    });
}

pub fn _unused(_: FResult) {}
