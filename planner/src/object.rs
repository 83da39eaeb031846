//! Kubernetes objects keyed by kind/namespace/name.

use serde_json::Value as Json;

/// Kinds that live outside namespaces (the common ones; anything else is namespaced).
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "Node",
    "PersistentVolume",
    "StorageClass",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "PriorityClass",
    "IngressClass",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "RuntimeClass",
    "CSIDriver",
    "VolumeSnapshotClass",
];

/// One object with its key.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// `Kind/namespace/name`, or `Kind/name` for cluster-scoped kinds.
    pub key: String,
    /// The object.
    pub value: Json,
}

impl Object {
    /// Keys an object; objects without a namespace are in `default_namespace` unless their
    /// kind is cluster-scoped (as Helm applies them). Objects without kind or name are keyed by
    /// `fallback` (e.g. the template path).
    pub fn new(value: Json, default_namespace: &str, fallback: &str) -> Object {
        Object { key: key_of(&value, default_namespace).unwrap_or_else(|| fallback.to_string()), value }
    }
}

/// The key of an object, when it has a kind and a name.
pub fn key_of(v: &Json, default_namespace: &str) -> Option<String> {
    let kind = v.get("kind")?.as_str()?;
    let meta = v.get("metadata")?;
    let name = meta.get("name")?.as_str()?;
    if CLUSTER_SCOPED.contains(&kind) {
        return Some(format!("{kind}/{name}"));
    }
    let ns = meta.get("namespace").and_then(|n| n.as_str()).filter(|n| !n.is_empty()).unwrap_or(default_namespace);
    Some(format!("{kind}/{ns}/{name}"))
}

/// Keys a list of objects, making duplicate keys unique (`#2`, `#3`, … in order).
pub fn key_all(values: impl IntoIterator<Item = (Json, String)>, default_namespace: &str) -> Vec<Object> {
    let mut seen: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    values
        .into_iter()
        .map(|(v, fallback)| {
            let mut o = Object::new(v, default_namespace, &fallback);
            let n = seen.entry(o.key.clone()).or_default();
            *n += 1;
            if *n > 1 {
                o.key = format!("{}#{}", o.key, n);
            }
            o
        })
        .collect()
}

/// A copy with object keys sorted at every level (stable YAML whatever the source order).
pub fn sorted(v: &Json) -> Json {
    match v {
        Json::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Json::Object(keys.into_iter().map(|k| (k.clone(), sorted(&m[k]))).collect())
        }
        Json::Array(a) => Json::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// YAML text of a value, keys sorted.
pub fn to_yaml(v: &Json) -> String {
    serde_yaml_ng::to_string(&sorted(v)).unwrap_or_else(|e| format!("# cannot show as YAML: {e}\n"))
}
