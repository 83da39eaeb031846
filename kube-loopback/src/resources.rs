//! The resource types the server knows: group, version, kind, plural, scope.

/// One API resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    /// API group (`""` for core).
    pub group: String,
    /// Version (`v1`).
    pub version: String,
    /// Kind (`Secret`).
    pub kind: String,
    /// Plural resource name (`secrets`), the URL segment.
    pub plural: String,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
}

impl ResourceType {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }

    fn new(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Self {
        ResourceType { group: group.into(), version: version.into(), kind: kind.into(), plural: plural.into(), namespaced }
    }
}

/// The built-in types served from the start. More (CRDs) can be registered at run time.
pub fn builtin() -> Vec<ResourceType> {
    let n = true;
    let c = false;
    let t = ResourceType::new;
    vec![
        t("", "v1", "Namespace", "namespaces", c),
        t("", "v1", "Secret", "secrets", n),
        t("", "v1", "ConfigMap", "configmaps", n),
        t("", "v1", "ServiceAccount", "serviceaccounts", n),
        t("", "v1", "Service", "services", n),
        t("", "v1", "Pod", "pods", n),
        t("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", n),
        t("", "v1", "PersistentVolume", "persistentvolumes", c),
        t("", "v1", "Endpoints", "endpoints", n),
        t("", "v1", "Event", "events", n),
        t("", "v1", "LimitRange", "limitranges", n),
        t("", "v1", "ResourceQuota", "resourcequotas", n),
        t("", "v1", "Node", "nodes", c),
        t("apps", "v1", "Deployment", "deployments", n),
        t("apps", "v1", "StatefulSet", "statefulsets", n),
        t("apps", "v1", "DaemonSet", "daemonsets", n),
        t("apps", "v1", "ReplicaSet", "replicasets", n),
        t("batch", "v1", "Job", "jobs", n),
        t("batch", "v1", "CronJob", "cronjobs", n),
        t("rbac.authorization.k8s.io", "v1", "Role", "roles", n),
        t("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", n),
        t("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", c),
        t("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", c),
        t("coordination.k8s.io", "v1", "Lease", "leases", n),
        t("networking.k8s.io", "v1", "Ingress", "ingresses", n),
        t("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", n),
        t("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", n),
        t("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", n),
        t("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", c),
        t("storage.k8s.io", "v1", "StorageClass", "storageclasses", c),
    ]
}
