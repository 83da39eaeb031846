//! Kubernetes objects keyed by kind/namespace/name.

use serde_json::Value as Json;

/// Kubernetes' built-in cluster-scoped kinds by API group (`kubectl api-resources
/// --namespaced=false` on v1.33), plus the CSI snapshot classes every distribution installs.
/// Any other kind is namespaced unless a CustomResourceDefinition says otherwise
/// ([`crate::scope`]).
const CLUSTER_SCOPED: &[(&str, &str)] = &[
    ("", "ComponentStatus"),
    ("", "Namespace"),
    ("", "Node"),
    ("", "PersistentVolume"),
    ("admissionregistration.k8s.io", "MutatingAdmissionPolicy"),
    ("admissionregistration.k8s.io", "MutatingAdmissionPolicyBinding"),
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"),
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ("apiregistration.k8s.io", "APIService"),
    ("authentication.k8s.io", "SelfSubjectReview"),
    ("authentication.k8s.io", "TokenReview"),
    ("authorization.k8s.io", "SelfSubjectAccessReview"),
    ("authorization.k8s.io", "SelfSubjectRulesReview"),
    ("authorization.k8s.io", "SubjectAccessReview"),
    ("certificates.k8s.io", "CertificateSigningRequest"),
    ("certificates.k8s.io", "ClusterTrustBundle"),
    ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
    ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
    ("internal.apiserver.k8s.io", "StorageVersion"),
    ("networking.k8s.io", "IPAddress"),
    ("networking.k8s.io", "IngressClass"),
    ("networking.k8s.io", "ServiceCIDR"),
    ("node.k8s.io", "RuntimeClass"),
    ("rbac.authorization.k8s.io", "ClusterRole"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ("resource.k8s.io", "DeviceClass"),
    ("resource.k8s.io", "ResourceSlice"),
    ("scheduling.k8s.io", "PriorityClass"),
    ("snapshot.storage.k8s.io", "VolumeSnapshotClass"),
    ("snapshot.storage.k8s.io", "VolumeSnapshotContent"),
    ("storage.k8s.io", "CSIDriver"),
    ("storage.k8s.io", "CSINode"),
    ("storage.k8s.io", "StorageClass"),
    ("storage.k8s.io", "VolumeAttachment"),
    ("storage.k8s.io", "VolumeAttributesClass"),
    ("storagemigration.k8s.io", "StorageVersionMigration"),
];

/// The API group of an object (`""` for the core group).
pub(crate) fn group_of(v: &Json) -> &str {
    v.get("apiVersion").and_then(Json::as_str).and_then(|a| a.rsplit_once('/')).map_or("", |(g, _)| g)
}

/// Whether (`group`, `kind`) is one of Kubernetes' built-in cluster-scoped kinds.
pub(crate) fn builtin_cluster_scoped(group: &str, kind: &str) -> bool {
    CLUSTER_SCOPED.iter().any(|(g, k)| *g == group && *k == kind)
}

/// One object with its key.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// `Kind/namespace/name`, or `Kind/name` for cluster-scoped kinds.
    pub key: String,
    /// The object.
    pub value: Json,
    /// JSON pointers (RFC 6901) of the values in `value` that were computed from a
    /// `secret-value` in a way plaintext scrubbing cannot see (`upper`, `b64enc | b64enc`,
    /// …): plans show them as fingerprints ([`crate::redact::follow_secrets`]).
    pub derived: Vec<String>,
}

impl Object {
    /// Keys an object; objects without a namespace are in `default_namespace` unless their
    /// kind is cluster-scoped (as Helm applies them). Objects without kind or name are keyed by
    /// `fallback` (e.g. the template path).
    pub fn new(value: Json, default_namespace: &str, fallback: &str) -> Object {
        Object { key: key_of(&value, default_namespace).unwrap_or_else(|| fallback.to_string()), value, derived: Vec::new() }
    }
}

/// The key of an object, when it has a kind and a name.
pub fn key_of(v: &Json, default_namespace: &str) -> Option<String> {
    let kind = v.get("kind")?.as_str()?;
    let meta = v.get("metadata")?;
    let name = meta.get("name")?.as_str()?;
    if builtin_cluster_scoped(group_of(v), kind) {
        return Some(format!("{kind}/{name}"));
    }
    let ns = meta.get("namespace").and_then(|n| n.as_str()).filter(|n| !n.is_empty()).unwrap_or(default_namespace);
    Some(format!("{kind}/{ns}/{name}"))
}

/// An object's identity: its API group and [`key_of`]. Two objects are the same object exactly
/// when their identities are equal (as Helm compares group, kind, namespace and name): across a
/// release's revisions, and between a manifest and the live objects.
pub fn identity(v: &Json, default_namespace: &str) -> Option<(String, String)> {
    Some((group_of(v).to_string(), key_of(v, default_namespace)?))
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
