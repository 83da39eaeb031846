//! RBAC authorization of impersonated requests, evaluated against the stored Role,
//! RoleBinding, ClusterRole and ClusterRoleBinding objects as the real authorizer does
//! (k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac: a request is allowed when any rule
//! of any role bound to the user or one of its groups covers it; there are no deny rules).

use serde_json::Value;

/// Who is asking: the impersonated user and groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// `system:serviceaccount:<ns>:<name>` or any user name.
    pub name: String,
    /// Groups, including the implicit ones.
    pub groups: Vec<String>,
}

impl UserInfo {
    /// A user with the groups the API server adds: service accounts get
    /// `system:serviceaccounts` and `system:serviceaccounts:<ns>`; everyone `system:authenticated`.
    pub fn new(name: &str, extra_groups: Vec<String>) -> Self {
        let mut groups = extra_groups;
        if let Some(ns) = name.strip_prefix("system:serviceaccount:").and_then(|r| r.split_once(':')).map(|(ns, _)| ns) {
            groups.push("system:serviceaccounts".into());
            groups.push(format!("system:serviceaccounts:{ns}"));
        }
        groups.push("system:authenticated".into());
        UserInfo { name: name.into(), groups }
    }

    fn service_account(&self) -> Option<(&str, &str)> {
        self.name.strip_prefix("system:serviceaccount:")?.split_once(':')
    }
}

/// What is being done.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    /// get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: &'a str,
    /// API group.
    pub group: &'a str,
    /// Plural resource.
    pub resource: &'a str,
    /// Subresource (`status`), if any.
    pub subresource: Option<&'a str>,
    /// Namespace (`""` for cluster scope).
    pub namespace: &'a str,
    /// Object name, if the request names one.
    pub name: Option<&'a str>,
}

/// Roles and bindings, read from the store.
pub trait RbacSource {
    /// Every object of (group, plural) in `namespace` (`None`: cluster-scoped objects).
    fn objects(&self, group: &str, plural: &str, namespace: Option<&str>) -> Vec<&Value>;
    /// One object.
    fn object(&self, group: &str, plural: &str, namespace: &str, name: &str) -> Option<&Value>;
}

const RBAC: &str = "rbac.authorization.k8s.io";

/// Whether `user` may do `attrs`.
pub fn allowed(src: &dyn RbacSource, user: &UserInfo, attrs: &Attributes) -> bool {
    let mut bindings: Vec<(&Value, Option<&str>)> = src.objects(RBAC, "clusterrolebindings", None).into_iter().map(|b| (b, None)).collect();
    if !attrs.namespace.is_empty() {
        bindings.extend(src.objects(RBAC, "rolebindings", Some(attrs.namespace)).into_iter().map(|b| (b, Some(attrs.namespace))));
    }
    bindings.into_iter().any(|(binding, ns)| binds(binding, ns, user) && role_rules(src, binding, ns).iter().any(|rule| covers(rule, attrs)))
}

fn binds(binding: &Value, binding_ns: Option<&str>, user: &UserInfo) -> bool {
    let subjects = binding["subjects"].as_array().map(Vec::as_slice).unwrap_or_default();
    subjects.iter().any(|s| {
        let name = s["name"].as_str().unwrap_or_default();
        match s["kind"].as_str() {
            Some("ServiceAccount") => {
                let ns = s["namespace"].as_str().or(binding_ns).unwrap_or_default();
                user.service_account() == Some((ns, name))
            }
            Some("User") => user.name == name,
            Some("Group") => user.groups.iter().any(|g| g == name),
            _ => false,
        }
    })
}

fn role_rules<'v>(src: &'v dyn RbacSource, binding: &Value, binding_ns: Option<&str>) -> Vec<&'v Value> {
    let role_ref = &binding["roleRef"];
    let name = role_ref["name"].as_str().unwrap_or_default();
    let role = match (role_ref["kind"].as_str(), binding_ns) {
        (Some("Role"), Some(ns)) => src.object(RBAC, "roles", ns, name),
        (Some("ClusterRole"), _) => src.object(RBAC, "clusterroles", "", name),
        _ => None,
    };
    role.and_then(|r| r["rules"].as_array()).map(|rules| rules.iter().collect()).unwrap_or_default()
}

fn list_has(rule: &Value, field: &str, want: &str) -> bool {
    rule[field].as_array().is_some_and(|l| l.iter().any(|v| v.as_str() == Some("*") || v.as_str() == Some(want)))
}

fn covers(rule: &Value, a: &Attributes) -> bool {
    let resource = match a.subresource {
        Some(sub) => format!("{}/{sub}", a.resource),
        None => a.resource.to_string(),
    };
    let names_ok = match rule["resourceNames"].as_array() {
        Some(names) if !names.is_empty() => a.name.is_some_and(|n| names.iter().any(|v| v.as_str() == Some(n))),
        _ => true,
    };
    list_has(rule, "verbs", a.verb) && list_has(rule, "apiGroups", a.group) && list_has(rule, "resources", &resource) && names_ok
}

/// The API server's Forbidden message (staging/src/k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors.go).
pub fn forbidden_message(user: &UserInfo, a: &Attributes) -> String {
    let resource = match a.subresource {
        Some(sub) => format!("{}/{sub}", a.resource),
        None => a.resource.to_string(),
    };
    let what = match a.name {
        Some(n) => format!("{resource} \"{n}\" is forbidden"),
        None => format!("{resource} is forbidden"),
    };
    let scope = if a.namespace.is_empty() { "at the cluster scope".to_string() } else { format!("in the namespace \"{}\"", a.namespace) };
    format!("{what}: User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}", user.name, a.verb, a.group)
}
