//! Server-side apply with field ownership, for the cases Harmony uses.
//!
//! Follows sigs.k8s.io/structured-merge-diff's model: each manager owns a set of field paths;
//! applying a configuration makes the manager own exactly the fields in it, removes fields the
//! manager owned before and no longer applies (unless another manager owns them too), and
//! fails with a conflict when it would change a field another manager owns (unless forced,
//! which takes ownership). Simplification, documented in the crate docs: lists are atomic
//! (owned and replaced as a whole), where the real server merges lists with merge keys such as
//! containers by `name`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

/// A field path: map keys from the object's root.
pub type FieldPath = Vec<String>;

/// Managers and the fields they own.
pub type Managers = BTreeMap<String, (Operation, BTreeSet<FieldPath>)>;

/// How a manager last wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Server-side apply.
    Apply,
    /// Create, update or patch.
    Update,
}

/// Fields no manager owns: identity and server-maintained metadata.
fn ignored(path: &[String]) -> bool {
    match path {
        [a] => a == "apiVersion" || a == "kind" || a == "status",
        [m, f, ..] if m == "metadata" => {
            matches!(
                f.as_str(),
                "name" | "namespace" | "resourceVersion" | "uid" | "creationTimestamp" | "generation" | "managedFields" | "deletionTimestamp" | "selfLink"
            )
        }
        [s, ..] => s == "status",
        [] => true,
    }
}

/// Every leaf field path of a configuration (maps are walked, everything else is a leaf).
pub fn leaves(v: &Value) -> BTreeSet<FieldPath> {
    fn walk(v: &Value, path: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, child) in m {
                    path.push(k.clone());
                    walk(child, path, out);
                    path.pop();
                }
            }
            _ => {
                if !ignored(path) {
                    out.insert(path.clone());
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

fn get<'v>(v: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(v, |v, k| v.as_object()?.get(k))
}

fn remove(v: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut cur = &mut *v;
    for k in parents {
        match cur.as_object_mut().and_then(|m| m.get_mut(k)) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
    // Drop maps left empty by the removal.
    if parents.len() > 1 && get(v, parents).is_some_and(|p| p.as_object().is_some_and(Map::is_empty)) {
        remove(v, parents);
    }
}

/// Deep merge: maps merge recursively, everything else replaces.
pub fn merge(live: &mut Value, config: &Value) {
    match (live, config) {
        (Value::Object(l), Value::Object(c)) => {
            for (k, v) in c {
                match l.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        l.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (l, c) => *l = c.clone(),
    }
}

fn overlaps(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// A field another manager owns with a different value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager.
    pub manager: String,
    /// `.spec.replicas`.
    pub field: String,
}

/// `.spec.replicas`, as the API server prints paths.
pub fn dotted(path: &[String]) -> String {
    path.iter().map(|k| format!(".{k}")).collect()
}

/// Applies `config` as `manager` to `live` (None when the object does not exist yet).
pub fn apply(live: Option<&Value>, managers: &mut Managers, config: &Value, manager: &str, force: bool) -> Result<Value, Vec<Conflict>> {
    let new_paths = leaves(config);
    let mut result = live.cloned().unwrap_or_else(|| Value::Object(Map::new()));
    let mut conflicts = Vec::new();
    for (other, (_, owned)) in managers.iter_mut() {
        if other == manager {
            continue;
        }
        let mut taken = Vec::new();
        for p in owned.iter() {
            for np in new_paths.iter().filter(|np| overlaps(np, p)) {
                if get(&result, np) != get(config, np) {
                    if force {
                        taken.push(p.clone());
                    } else {
                        conflicts.push(Conflict { manager: other.clone(), field: dotted(np) });
                    }
                }
            }
        }
        for p in taken {
            owned.remove(&p);
        }
    }
    if !conflicts.is_empty() {
        conflicts.sort_by(|a, b| (&a.manager, &a.field).cmp(&(&b.manager, &b.field)));
        conflicts.dedup();
        return Err(conflicts);
    }
    managers.retain(|_, (_, owned)| !owned.is_empty());
    // Fields this manager applied before and no longer does, that nobody else owns: removed.
    if let Some((_, before)) = managers.get(manager) {
        for p in before.difference(&new_paths) {
            let owned_elsewhere = managers.iter().any(|(m, (_, o))| m != manager && o.iter().any(|q| overlaps(q, p)));
            if !owned_elsewhere {
                remove(&mut result, p);
            }
        }
    }
    merge(&mut result, config);
    managers.insert(manager.to_string(), (Operation::Apply, new_paths));
    Ok(result)
}

/// Records an update (create, replace, patch) by `manager`: it owns every field whose value
/// it set or changed, and loses nothing else.
pub fn record_update(before: Option<&Value>, after: &Value, managers: &mut Managers, manager: &str) {
    let changed: BTreeSet<FieldPath> = leaves(after).into_iter().filter(|p| before.and_then(|b| get(b, p)) != get(after, p)).collect();
    // Fields that disappeared are no longer owned by anyone.
    let present = leaves(after);
    for (_, (_, owned)) in managers.iter_mut() {
        owned.retain(|p| present.iter().any(|q| overlaps(p, q)));
        for c in &changed {
            owned.remove(c);
        }
    }
    if !changed.is_empty() {
        let entry = managers.entry(manager.to_string()).or_insert((Operation::Update, BTreeSet::new()));
        entry.0 = Operation::Update;
        entry.1.extend(changed);
    }
    managers.retain(|_, (_, owned)| !owned.is_empty());
}

/// `metadata.managedFields` entries in the API's `FieldsV1` form (`{"f:spec":{"f:replicas":{}}}`).
pub fn managed_fields(managers: &Managers, api_version: &str, time: &str) -> Value {
    let entries: Vec<Value> = managers
        .iter()
        .map(|(name, (op, paths))| {
            let mut fields = Map::new();
            for p in paths {
                let mut cur = &mut fields;
                for k in p {
                    cur = cur.entry(format!("f:{k}")).or_insert_with(|| Value::Object(Map::new())).as_object_mut().expect("built as objects");
                }
            }
            serde_json::json!({
                "manager": name,
                "operation": match op { Operation::Apply => "Apply", Operation::Update => "Update" },
                "apiVersion": api_version,
                "time": time,
                "fieldsType": "FieldsV1",
                "fieldsV1": Value::Object(fields),
            })
        })
        .collect();
    Value::Array(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn apply_owns_removes_and_conflicts() {
        let mut m = Managers::new();
        let cfg1 = json!({"metadata": {"name": "a", "labels": {"x": "1", "y": "2"}}, "spec": {"replicas": 2}});
        let live = apply(None, &mut m, &cfg1, "harmony", false).unwrap();
        assert_eq!(live["metadata"]["labels"]["y"], "2");
        // Someone else scales it with an update.
        let mut scaled = live.clone();
        scaled["spec"]["replicas"] = json!(5);
        record_update(Some(&live), &scaled, &mut m, "kubectl");
        // Re-applying a different replicas value conflicts with kubectl ...
        let cfg2 = json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"replicas": 3}});
        let err = apply(Some(&scaled), &mut m.clone(), &cfg2, "harmony", false).unwrap_err();
        assert_eq!(err, vec![Conflict { manager: "kubectl".into(), field: ".spec.replicas".into() }]);
        // ... unless forced; then label y, no longer applied, is removed.
        let forced = apply(Some(&scaled), &mut m, &cfg2, "harmony", true).unwrap();
        assert_eq!(forced["spec"]["replicas"], 3);
        assert!(forced["metadata"]["labels"].get("y").is_none());
        assert!(!m.contains_key("kubectl"));
    }

    #[test]
    fn fields_owned_by_another_manager_survive_removal() {
        let mut m = Managers::new();
        let live = apply(None, &mut m, &json!({"data": {"a": "1", "b": "2"}}), "one", false).unwrap();
        let live = apply(Some(&live), &mut m, &json!({"data": {"b": "2"}}), "two", false).unwrap();
        let live = apply(Some(&live), &mut m, &json!({"data": {"a": "1"}}), "one", false).unwrap();
        assert_eq!(live["data"], json!({"a": "1", "b": "2"}));
    }
}
