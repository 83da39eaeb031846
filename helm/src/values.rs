//! Values: user value merging (`-f`, `--set`, `--set-string`), Helm's coalescing with chart
//! defaults (null deletes a key, globals flow down, subchart sections), dependency
//! conditions/tags/aliases and `import-values`.

use std::collections::BTreeMap;
use std::rc::Rc;

use crate::chart::Chart;
use crate::value::{Map, Value};

fn new_map() -> Map {
    Rc::new(std::cell::RefCell::new(BTreeMap::new()))
}

fn as_map(v: &Value) -> Option<Map> {
    match v {
        Value::Map(m) => Some(m.clone()),
        _ => None,
    }
}

fn is_table(v: &Value) -> bool {
    matches!(v, Value::Map(_))
}

/// `mergeMaps` used for `-f` files.
pub fn merge_maps(a: &Map, b: &Map) -> Map {
    let out = new_map();
    for (k, v) in a.borrow().iter() {
        out.borrow_mut().insert(k.clone(), v.clone());
    }
    for (k, v) in b.borrow().iter() {
        if let Value::Map(vm) = v {
            let existing = out.borrow().get(k).cloned();
            if let Some(Value::Map(bv)) = existing {
                let merged = merge_maps(&bv, vm);
                out.borrow_mut().insert(k.clone(), Value::Map(merged));
                continue;
            }
        }
        out.borrow_mut().insert(k.clone(), v.clone());
    }
    out
}

/// `coalesceTablesFullKey`: merges `src` into `dst`; `dst` wins.
pub fn coalesce_tables(dst: &Map, src: &Map, merge: bool) {
    if Rc::ptr_eq(dst, src) {
        return;
    }
    if merge {
        let nil_keys: Vec<String> = dst.borrow().iter().filter(|(_, v)| v.is_nil()).map(|(k, _)| k.clone()).collect();
        for k in nil_keys {
            src.borrow_mut().insert(k, Value::Nil);
        }
    }
    let src_entries: Vec<(String, Value)> = src.borrow().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    for (key, val) in src_entries {
        let dv = dst.borrow().get(&key).cloned();
        match dv {
            Some(d) if !merge && d.is_nil() => {
                dst.borrow_mut().remove(&key);
            }
            None => {
                dst.borrow_mut().insert(key, val);
            }
            Some(Value::Map(dm)) => {
                if let Value::Map(sm) = &val {
                    coalesce_tables(&dm, sm, merge);
                }
            }
            Some(_) => {}
        }
    }
}

fn coalesce_globals(dest: &Map, src: &Map) {
    let dg = match dest.borrow().get("global").cloned() {
        None => new_map(),
        Some(Value::Map(m)) => m,
        Some(_) => return,
    };
    let sg = match src.borrow().get("global").cloned() {
        None => new_map(),
        Some(Value::Map(m)) => m,
        Some(_) => return,
    };
    let entries: Vec<(String, Value)> = sg.borrow().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    for (key, val) in entries {
        if let Value::Map(vm) = &val {
            let vv = as_map(&val.deep_copy()).unwrap_or_else(new_map);
            let _ = vm;
            let existing = dg.borrow().get(&key).cloned();
            match existing {
                None => {
                    dg.borrow_mut().insert(key, Value::Map(vv));
                }
                Some(Value::Map(destv)) => {
                    coalesce_tables(&vv, &destv, true);
                    dg.borrow_mut().insert(key, Value::Map(vv));
                }
                Some(_) => {}
            }
        } else if dg.borrow().get(&key).is_some_and(is_table) {
        } else {
            dg.borrow_mut().insert(key, val);
        }
    }
    dest.borrow_mut().insert("global".into(), Value::Map(dg));
}

fn coalesce_values(c: &Chart, v: &Map, merge: bool) {
    // Helm 4: a user-supplied null deletes the chart's key, but nulls in a chart's own
    // values.yaml are dropped when copied and never delete anything (Helm issue 9027).
    // Merging (import-values) keeps every null.
    let vc = as_map(&c.values.deep_copy()).unwrap_or_else(new_map);
    let entries: Vec<(String, Value)> = vc.borrow().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    for (key, val) in entries {
        let existing = v.borrow().get(&key).cloned();
        match existing {
            Some(value) => {
                if value.is_nil() && !merge {
                    v.borrow_mut().remove(&key);
                } else if let Value::Map(dest) = &value
                    && let Value::Map(src) = &val
                {
                    let merge = merge || c.dependencies.iter().any(|d| d.name() == key);
                    let src = if merge { src.clone() } else { trim_nil(src) };
                    coalesce_tables(dest, &src, merge);
                }
            }
            None => {
                if merge {
                    v.borrow_mut().insert(key, val);
                } else if !val.is_nil() {
                    let val = match &val {
                        Value::Map(m) => Value::Map(trim_nil(m)),
                        other => other.clone(),
                    };
                    v.borrow_mut().insert(key, val);
                }
            }
        }
    }
}

fn coalesce_deps(c: &Chart, dest: &Map, merge: bool) -> Result<(), String> {
    for sub in &c.dependencies {
        let name = sub.name().to_string();
        let existing = dest.borrow().get(&name).cloned();
        let dv = match existing {
            None => {
                let m = new_map();
                dest.borrow_mut().insert(name.clone(), Value::Map(m.clone()));
                m
            }
            Some(Value::Map(m)) => m,
            Some(other) => return Err(format!("type mismatch on {}: %!t({}={})", name, other.type_name(), other.fmt_v())),
        };
        coalesce_globals(&dv, dest);
        coalesce(sub, &dv, merge)?;
    }
    Ok(())
}

fn coalesce(c: &Chart, dest: &Map, merge: bool) -> Result<(), String> {
    coalesce_values(c, dest, merge);
    coalesce_deps(c, dest, merge)
}

/// `chartutil.CoalesceValues(chart, vals)`.
pub fn coalesce_values_of(c: &Chart, vals: &Value) -> Result<Map, String> {
    let copy = as_map(&vals.deep_copy()).unwrap_or_else(new_map);
    coalesce(c, &copy, false)?;
    Ok(copy)
}

/// `chartutil.MergeValues(chart, vals)`.
pub fn merge_values_of(c: &Chart, vals: &Value) -> Result<Map, String> {
    let copy = as_map(&vals.deep_copy()).unwrap_or_else(new_map);
    coalesce(c, &copy, true)?;
    Ok(copy)
}

/// `Values.Table("a.b")`.
pub fn table(v: &Map, path: &str) -> Option<Map> {
    let mut cur = v.clone();
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        let next = cur.borrow().get(seg).cloned();
        match next {
            Some(Value::Map(m)) => cur = m,
            _ => return None,
        }
    }
    Some(cur)
}

fn path_value(v: &Map, path: &str) -> Option<Value> {
    let parts: Vec<&str> = path.split('.').collect();
    let (key, rest) = parts.split_last()?;
    let t = if rest.is_empty() { v.clone() } else { table(v, &rest.join("."))? };
    let val = t.borrow().get(*key).cloned()?;
    if is_table(&val) { None } else { Some(val) }
}

fn is_compatible_range(constraint: &str, version: &str) -> bool {
    let Ok(v) = crate::semver::Version::parse(version) else { return false };
    let Ok(c) = crate::semver::Constraints::parse(constraint) else { return false };
    c.check(&v)
}

/// `processDependencyEnabled`: aliases, conditions and tags.
pub fn process_dependency_enabled(c: &mut Chart, v: &Value, path: &str) -> Result<(), String> {
    if c.metadata.dependencies.is_empty() {
        return Ok(());
    }
    let mut chart_deps: Vec<Chart> = Vec::new();
    'outer: for existing in &c.dependencies {
        for req in &c.metadata.dependencies {
            if existing.name() == req.name && is_compatible_range(&req.version, &existing.metadata.version) {
                continue 'outer;
            }
        }
        chart_deps.push(existing.clone());
    }
    for req in c.metadata.dependencies.iter_mut() {
        if let Some(dep) = c.dependencies.iter().find(|d| d.name() == req.name && is_compatible_range(&req.version, &d.metadata.version)) {
            let mut out = dep.clone();
            if !req.alias.is_empty() {
                out.metadata.name = req.alias.clone();
            }
            chart_deps.push(out);
        }
        if !req.alias.is_empty() {
            req.name = req.alias.clone();
        }
    }
    c.dependencies = chart_deps;
    for r in c.metadata.dependencies.iter_mut() {
        r.enabled = true;
    }
    let cvals = coalesce_values_of(c, v)?;
    // tags
    if let Some(vt) = table(&cvals, "tags") {
        for r in c.metadata.dependencies.iter_mut() {
            let (mut has_true, mut has_false) = (false, false);
            for k in &r.tags {
                if let Some(Value::Bool(b)) = vt.borrow().get(k) {
                    if *b {
                        has_true = true;
                    } else {
                        has_false = true;
                    }
                }
            }
            if !has_true && has_false {
                r.enabled = false;
            } else if has_true || !has_false {
                r.enabled = true;
            }
        }
    }
    // conditions
    for r in c.metadata.dependencies.iter_mut() {
        for cond in r.condition.trim().split(',') {
            let cond = cond.trim();
            if cond.is_empty() {
                continue;
            }
            if let Some(Value::Bool(b)) = path_value(&cvals, &format!("{path}{cond}")) {
                r.enabled = b;
                break;
            }
        }
    }
    let rm: Vec<String> = c.metadata.dependencies.iter().filter(|r| !r.enabled).map(|r| r.name.clone()).collect();
    c.dependencies.retain(|d| !rm.contains(&d.metadata.name));
    c.metadata.dependencies.retain(|d| !rm.contains(&d.name));
    let cv = Value::Map(cvals);
    for t in c.dependencies.iter_mut() {
        let sub = format!("{path}{}.", t.metadata.name);
        process_dependency_enabled(t, &cv, &sub)?;
    }
    Ok(())
}

fn path_to_map(path: &str, data: Map) -> Map {
    if path == "." {
        return data;
    }
    let parts: Vec<&str> = path.split('.').filter(|p| !p.is_empty()).collect();
    let mut cur = data;
    for p in parts.iter().rev() {
        let m = new_map();
        m.borrow_mut().insert(p.to_string(), Value::Map(cur));
        cur = m;
    }
    cur
}

fn trim_nil(m: &Map) -> Map {
    let out = new_map();
    for (k, v) in m.borrow().iter() {
        if v.is_nil() {
            continue;
        }
        let v = match v {
            Value::Map(mm) => Value::Map(trim_nil(mm)),
            v => v.clone(),
        };
        out.borrow_mut().insert(k.clone(), v);
    }
    out
}

fn process_import_values(c: &mut Chart, merge: bool) -> Result<(), String> {
    if c.metadata.dependencies.is_empty() {
        return Ok(());
    }
    let cvals = if merge { merge_values_of(c, &Value::empty_map())? } else { coalesce_values_of(c, &Value::empty_map())? };
    let b = new_map();
    for r in c.metadata.dependencies.iter() {
        for riv in &r.import_values {
            match riv {
                Value::Map(iv) => {
                    let child = iv.borrow().get("child").and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
                    let parent = iv.borrow().get("parent").and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
                    let Some(vv) = table(&cvals, &format!("{}.{}", r.name, child)) else { continue };
                    let pm = path_to_map(&parent, as_map(&Value::Map(vv).deep_copy()).unwrap_or_else(new_map));
                    coalesce_tables(&b, &pm, merge);
                }
                Value::Str(s) => {
                    let Some(vm) = table(&cvals, &format!("{}.exports.{}", r.name, s)) else { continue };
                    let vm = as_map(&Value::Map(vm).deep_copy()).unwrap_or_else(new_map);
                    coalesce_tables(&b, &vm, merge);
                }
                _ => {}
            }
        }
    }
    let cvals = if merge { as_map(&Value::Map(cvals).deep_copy()).unwrap_or_else(new_map) } else { trim_nil(&cvals) };
    coalesce_tables(&cvals, &b, merge);
    c.values = Value::Map(cvals);
    Ok(())
}

/// `processDependencyImportValues`.
pub fn process_dependency_import_values(c: &mut Chart, merge: bool) -> Result<(), String> {
    for d in c.dependencies.iter_mut() {
        process_dependency_import_values(d, merge)?;
    }
    process_import_values(c, merge)
}

/// `ProcessDependenciesWithMerge`.
pub fn process_dependencies(c: &mut Chart, vals: &Value) -> Result<(), String> {
    process_dependency_enabled(c, vals, "")?;
    process_dependency_import_values(c, true)
}

// ---------------------------------------------------------------------------------------
// --set parsing (helm's strvals)

/// Parses one `--set` (or `--set-string` when `as_string`) expression into `base`.
pub fn parse_set(expr: &str, base: &Map, as_string: bool) -> Result<(), String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut p = SetParser { s: chars, i: 0, st: as_string };
    while p.i < p.s.len() {
        p.key(base, 0)?;
    }
    Ok(())
}

struct SetParser {
    s: Vec<char>,
    i: usize,
    st: bool,
}

fn typed(v: &str, st: bool) -> Value {
    if st {
        return Value::from(v);
    }
    if v.eq_ignore_ascii_case("true") {
        return Value::Bool(true);
    }
    if v.eq_ignore_ascii_case("false") {
        return Value::Bool(false);
    }
    if v.eq_ignore_ascii_case("null") {
        return Value::Nil;
    }
    if v == "0" {
        return Value::Int64(0);
    }
    if !v.is_empty()
        && !v.starts_with('0')
        && let Ok(i) = v.parse::<i64>()
    {
        return Value::Int64(i);
    }
    Value::from(v)
}

impl SetParser {
    /// Reads until one of `stops`, handling backslash escapes. Returns (text, stop char).
    fn run_until(&mut self, stops: &[char]) -> (String, Option<char>) {
        let mut out = String::new();
        while self.i < self.s.len() {
            let c = self.s[self.i];
            self.i += 1;
            if c == '\\' {
                if self.i < self.s.len() {
                    out.push(self.s[self.i]);
                    self.i += 1;
                }
                continue;
            }
            if stops.contains(&c) {
                return (out, Some(c));
            }
            out.push(c);
        }
        (out, None)
    }

    fn key(&mut self, data: &Map, depth: usize) -> Result<(), String> {
        if depth > 64 {
            return Err("value name nested level is greater than maximum supported nested level of 64".into());
        }
        let (k, stop) = self.run_until(&['=', '[', ',', '.']);
        match stop {
            None => {
                if k.is_empty() {
                    return Ok(());
                }
                Err(format!("key {} has no value", crate::template::fmt::go_quote(&k)))
            }
            Some(',') => {
                if k.is_empty() {
                    return Ok(());
                }
                Err(format!("key {} has no value (cannot end with ,)", crate::template::fmt::go_quote(&k)))
            }
            Some('=') => {
                if self.i < self.s.len() && self.s[self.i] == '{' {
                    self.i += 1;
                    let list = self.list_values()?;
                    data.borrow_mut().insert(k, Value::list(list));
                    return Ok(());
                }
                let (v, _) = self.run_until(&[',']);
                data.borrow_mut().insert(k, typed(&v, self.st));
                Ok(())
            }
            Some('.') => {
                let inner = match data.borrow().get(&k) {
                    Some(Value::Map(m)) => Some(m.clone()),
                    _ => None,
                };
                let inner = inner.unwrap_or_else(new_map);
                data.borrow_mut().insert(k, Value::Map(inner.clone()));
                self.key(&inner, depth + 1)
            }
            Some('[') => {
                let (idx, _) = self.run_until(&[']']);
                let idx: usize = idx.parse().map_err(|_| format!("failed to parse index: {idx}"))?;
                let list = match data.borrow().get(&k) {
                    Some(Value::List(l, _)) => l.as_ref().clone(),
                    _ => vec![],
                };
                let list = self.list_item(list, idx, depth)?;
                data.borrow_mut().insert(k, Value::list(list));
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn list_item(&mut self, mut list: Vec<Value>, idx: usize, depth: usize) -> Result<Vec<Value>, String> {
        if idx > 65536 {
            return Err(format!("index of {idx} is greater than maximum supported index of 65536"));
        }
        while list.len() <= idx {
            list.push(Value::Nil);
        }
        let c = self.s.get(self.i).copied();
        self.i += 1;
        match c {
            Some('=') => {
                if self.i < self.s.len() && self.s[self.i] == '{' {
                    self.i += 1;
                    list[idx] = Value::list(self.list_values()?);
                } else {
                    let (v, _) = self.run_until(&[',']);
                    list[idx] = typed(&v, self.st);
                }
            }
            Some('.') => {
                let inner = match &list[idx] {
                    Value::Map(m) => m.clone(),
                    _ => new_map(),
                };
                self.key(&inner, depth + 1)?;
                list[idx] = Value::Map(inner);
            }
            Some('[') => {
                let (i2, _) = self.run_until(&[']']);
                let i2: usize = i2.parse().map_err(|_| format!("failed to parse index: {i2}"))?;
                let inner = match &list[idx] {
                    Value::List(l, _) => l.as_ref().clone(),
                    _ => vec![],
                };
                list[idx] = Value::list(self.list_item(inner, i2, depth)?);
            }
            _ => return Err("error parsing index".into()),
        }
        Ok(list)
    }

    fn list_values(&mut self) -> Result<Vec<Value>, String> {
        let mut out = Vec::new();
        loop {
            let (v, stop) = self.run_until(&[',', '}']);
            match stop {
                Some('}') => {
                    if !v.is_empty() || !out.is_empty() {
                        out.push(typed(&v, self.st));
                    }
                    if self.i < self.s.len() && self.s[self.i] == ',' {
                        self.i += 1;
                    }
                    return Ok(out);
                }
                Some(',') => out.push(typed(&v, self.st)),
                _ => return Err("list must terminate with '}'".into()),
            }
        }
    }
}
