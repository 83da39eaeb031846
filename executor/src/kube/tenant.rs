//! A tenant's access on a cluster: its namespaces, the ServiceAccount Harmony impersonates for
//! its releases, and a Role + RoleBinding in each of its namespaces. Applied with Harmony's own
//! credentials; everything else of the tenant is applied impersonating the ServiceAccount, so
//! the API server's RBAC, not only the compiler, keeps a tenant inside its namespaces.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use harmony_compiler::validate::PodSecurityLevel;
use serde_json::Value;

use super::{Cluster, KubeError};

/// `app.kubernetes.io/managed-by` of every tenant access object.
pub const MANAGED_BY: &str = "harmony";
/// The label naming the tenant an access object belongs to.
pub const TENANT_LABEL: &str = "harmony.dev/tenant";

/// The prefix of the Pod Security Admission labels Harmony puts on a tenant's namespaces
/// (`…/enforce`, `…/warn`, `…/audit`, each with `…-version: latest`).
pub const POD_SECURITY: &str = "pod-security.kubernetes.io";

/// The name of a tenant's Role and RoleBinding in each of its namespaces.
pub fn role_name(tenant: &str) -> String {
    format!("harmony-tenant-{tenant}")
}

/// What a tenant gets on one cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    /// Tenant name.
    pub tenant: String,
    /// Namespaces to create and grant (exact ones, and those a pattern's releases use).
    pub namespaces: Vec<String>,
    /// ServiceAccount name.
    pub service_account: String,
    /// ServiceAccount namespace (one of `namespaces`).
    pub service_account_namespace: String,
    /// The Pod Security level its namespaces enforce.
    pub pod_security: PodSecurityLevel,
}

impl Access {
    /// From the compiler's unit.
    pub fn from_unit(u: &harmony_compiler::compile::TenantAccess) -> Access {
        Access {
            tenant: u.tenant.to_string(),
            namespaces: u.namespaces.iter().map(ToString::to_string).collect(),
            service_account: u.service_account.name.to_string(),
            service_account_namespace: u.service_account.namespace.to_string(),
            pod_security: u.pod_security,
        }
    }

    /// The user Harmony impersonates for this tenant.
    pub fn username(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.service_account_namespace, self.service_account)
    }

    fn meta(&self, name: &str, namespace: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_string()),
            namespace: namespace.map(String::from),
            labels: Some(BTreeMap::from([
                ("app.kubernetes.io/managed-by".to_string(), MANAGED_BY.to_string()),
                (TENANT_LABEL.to_string(), self.tenant.clone()),
            ])),
            ..Default::default()
        }
    }

    /// The objects, in the order they must be applied: namespaces (labelled for Pod Security
    /// Admission at the tenant's level), the ServiceAccount, then a Role (every verb on every
    /// resource, inside the namespace only) and its RoleBinding per namespace.
    pub fn objects(&self) -> Vec<Value> {
        let role_name = role_name(&self.tenant);
        let mut out: Vec<Value> = Vec::new();
        let typed = |v: Value, api_version: &str, kind: &str| {
            let mut v = v;
            v["apiVersion"] = api_version.into();
            v["kind"] = kind.into();
            v
        };
        for ns in &self.namespaces {
            let mut metadata = self.meta(ns, None);
            let labels = metadata.labels.get_or_insert_with(BTreeMap::new);
            let level = self.pod_security.as_str();
            for (label, value) in [("enforce", level), ("enforce-version", "latest"), ("warn", level), ("warn-version", "latest"), ("audit", level), ("audit-version", "latest")] {
                labels.insert(format!("{POD_SECURITY}/{label}"), value.to_string());
            }
            let n = Namespace { metadata, ..Default::default() };
            out.push(typed(serde_json::to_value(n).expect("serialises"), "v1", "Namespace"));
        }
        let sa = ServiceAccount { metadata: self.meta(&self.service_account, Some(&self.service_account_namespace)), ..Default::default() };
        out.push(typed(serde_json::to_value(sa).expect("serialises"), "v1", "ServiceAccount"));
        for ns in &self.namespaces {
            let role = Role {
                metadata: self.meta(&role_name, Some(ns)),
                rules: Some(vec![PolicyRule {
                    api_groups: Some(vec!["*".into()]),
                    resources: Some(vec!["*".into()]),
                    verbs: vec!["*".into()],
                    ..Default::default()
                }]),
            };
            out.push(typed(serde_json::to_value(role).expect("serialises"), "rbac.authorization.k8s.io/v1", "Role"));
            let binding = RoleBinding {
                metadata: self.meta(&role_name, Some(ns)),
                role_ref: RoleRef { api_group: "rbac.authorization.k8s.io".into(), kind: "Role".into(), name: role_name.clone() },
                subjects: Some(vec![Subject {
                    kind: "ServiceAccount".into(),
                    name: self.service_account.clone(),
                    namespace: Some(self.service_account_namespace.clone()),
                    ..Default::default()
                }]),
            };
            out.push(typed(serde_json::to_value(binding).expect("serialises"), "rbac.authorization.k8s.io/v1", "RoleBinding"));
        }
        out
    }
}

/// Applies a tenant's access (server-side apply; unchanged objects are not rewritten).
pub async fn apply(cluster: &Cluster, access: &Access) -> Result<(), KubeError> {
    for obj in access.objects() {
        cluster.apply(&obj, &access.service_account_namespace).await?;
    }
    Ok(())
}

/// Removes a tenant's RoleBindings, Roles and ServiceAccount (in reverse order). Namespaces
/// are left in place: deleting one deletes everything in it, which Harmony never does on its
/// own; `harmony plan` says so, and an operator deletes them deliberately. They lose Harmony's
/// labels, so they are no longer the tenant's, but keep their Pod Security labels (what runs
/// there stays as confined as it was).
pub async fn remove(cluster: &Cluster, access: &Access) -> Result<(), KubeError> {
    for obj in access.objects().iter().rev().filter(|o| o["kind"] != "Namespace" && o["metadata"]["name"] != "") {
        cluster.delete(obj, &access.service_account_namespace).await?;
    }
    let namespaces: kube::Api<Namespace> = kube::Api::all(cluster.client().clone());
    let unlabel = serde_json::json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": null, TENANT_LABEL: null}}});
    for ns in &access.namespaces {
        match namespaces.patch(ns, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&unlabel)).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(super::api_err(format!("remove the labels of tenant {} from namespace {ns}", access.tenant))(e)),
        }
    }
    Ok(())
}
