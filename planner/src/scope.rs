//! Where a tenant's release may write, checked on what the chart renders: only namespaced
//! objects, only in the namespaces the tenant has access to on the release's cluster (its
//! `tenant-access` unit: its exact namespaces and those its releases there use). `check` cannot
//! know (the objects come out of the chart); `plan` and `diff` render, so they refuse a release
//! that reaches further, naming each object. Harmony applies a release as the tenant's
//! ServiceAccount, so the API server's RBAC refuses the same objects at apply: the plan says so
//! before anyone approves it.
//!
//! Cluster scope is decided without a cluster (the planner is pure): Kubernetes' built-in
//! cluster-scoped kinds ([`crate::object`]), and the kinds a CustomResourceDefinition rendered by
//! the same chart declares (`spec.scope`). Any other kind is taken as namespaced: most custom
//! resources are, and one that is not is refused by RBAC at apply.

use std::collections::BTreeMap;

use harmony_compiler::compile::{ReleaseUnit, TenantAccess};
use harmony_compiler::{CompiledRepo, UnitContent};
use serde_json::Value as Json;

use crate::object::{Object, builtin_cluster_scoped, group_of};

/// A release whose rendered objects reach outside its tenant's namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutOfScope {
    /// Unit id of the release.
    pub release: String,
    /// Its tenant.
    pub tenant: String,
    /// Its cluster.
    pub cluster: String,
    /// The namespaces the tenant has access to on the cluster.
    pub allowed: Vec<String>,
    /// `(Kind name, why)` per object, in render order.
    pub objects: Vec<(String, String)>,
}

impl std::fmt::Display for OutOfScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let OutOfScope { release, tenant, cluster, allowed, objects } = self;
        writeln!(f, "{release}: tenant {tenant}'s release would reach outside the tenant's namespaces on cluster {cluster}:")?;
        for (object, why) in objects {
            writeln!(f, "  - {object}: {why}")?;
        }
        write!(
            f,
            "  tenant {tenant} may hold namespaced objects in: {}. Harmony applies the release as the tenant's ServiceAccount, whose rights end there (the API server would refuse these objects at apply); cluster-scoped objects and other namespaces are the cluster administrator's",
            allowed.join(", ")
        )
    }
}

/// Kinds the release's own CustomResourceDefinitions declare: (group, kind) → cluster-scoped.
fn chart_crds(objects: &[Object]) -> BTreeMap<(String, String), bool> {
    objects
        .iter()
        .map(|o| &o.value)
        .filter(|v| v["kind"] == "CustomResourceDefinition" && group_of(v) == "apiextensions.k8s.io")
        .filter_map(|v| {
            let spec = &v["spec"];
            Some(((spec["group"].as_str()?.to_string(), spec["names"]["kind"].as_str()?.to_string()), spec["scope"] == "Cluster"))
        })
        .collect()
}

/// Why `v` is out of reach for a release in `release_ns` whose tenant may use `allowed`, if it is.
fn out_of_reach(v: &Json, release_ns: &str, allowed: &[String], tenant: &str, crds: &BTreeMap<(String, String), bool>) -> Option<String> {
    let kind = v["kind"].as_str()?;
    let group = group_of(v);
    let cluster_scoped = crds.get(&(group.to_string(), kind.to_string())).copied().unwrap_or_else(|| builtin_cluster_scoped(group, kind));
    if cluster_scoped {
        return Some("cluster-scoped".into());
    }
    let ns = v["metadata"]["namespace"].as_str().filter(|n| !n.is_empty()).unwrap_or(release_ns);
    (!allowed.iter().any(|a| a == ns)).then(|| format!("in namespace {ns}, which is not tenant {tenant}'s"))
}

/// The releases among `rendered` (unit id → objects) that reach outside their tenant's
/// namespaces, in unit-id order.
pub fn check(compiled: &CompiledRepo, rendered: &BTreeMap<String, Vec<Object>>) -> Vec<OutOfScope> {
    let access: BTreeMap<(&str, &str), &TenantAccess> = compiled
        .units
        .values()
        .filter_map(|u| match &u.content {
            UnitContent::TenantAccess(t) => Some(((t.tenant.as_str(), t.cluster.as_str()), t)),
            _ => None,
        })
        .collect();
    let releases = compiled.units.values().filter_map(|u| match &u.content {
        UnitContent::Release(r) => Some((u.id.as_str(), r)),
        _ => None,
    });
    let mut out = Vec::new();
    for (id, r) in releases {
        let Some(objects) = rendered.get(id) else { continue };
        let allowed = allowed_namespaces(r, access.get(&(r.tenant.as_str(), r.cluster.as_str())).copied());
        let crds = chart_crds(objects);
        let bad: Vec<(String, String)> = objects
            .iter()
            .filter_map(|o| {
                let why = out_of_reach(&o.value, r.namespace.as_str(), &allowed, r.tenant.as_str(), &crds)?;
                let name = o.value["metadata"]["name"].as_str().unwrap_or("(unnamed)");
                Some((format!("{} {name}", o.value["kind"].as_str().unwrap_or_default()), why))
            })
            .collect();
        if !bad.is_empty() {
            out.push(OutOfScope { release: id.to_string(), tenant: r.tenant.to_string(), cluster: r.cluster.to_string(), allowed, objects: bad });
        }
    }
    out
}

/// What the tenant's access unit grants on the release's cluster (its own namespace at least).
fn allowed_namespaces(r: &ReleaseUnit, access: Option<&TenantAccess>) -> Vec<String> {
    let mut allowed: Vec<String> = access.map(|a| a.namespaces.iter().map(ToString::to_string).collect()).unwrap_or_default();
    if !allowed.iter().any(|n| n == r.namespace.as_str()) {
        allowed.push(r.namespace.to_string());
    }
    allowed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reach(v: Json, crds: &[Json]) -> Option<String> {
        let objs: Vec<Object> = crds.iter().map(|c| Object::new(c.clone(), "acme", "crd")).collect();
        out_of_reach(&v, "acme", &["acme".to_string(), "acme-jobs".to_string()], "acme", &chart_crds(&objs))
    }

    #[test]
    fn namespaced_objects_stay_in_the_tenants_namespaces() {
        assert_eq!(reach(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}), &[]), None, "the release's namespace");
        assert_eq!(reach(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "acme-jobs"}}), &[]), None);
        assert_eq!(
            reach(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "globex"}}), &[]).as_deref(),
            Some("in namespace globex, which is not tenant acme's")
        );
    }

    #[test]
    fn cluster_scope_from_the_builtin_list_and_the_charts_crds() {
        let crb = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "x"}});
        assert_eq!(reach(crb, &[]).as_deref(), Some("cluster-scoped"));
        assert_eq!(reach(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}), &[]).as_deref(), Some("cluster-scoped"));
        // A kind named like a built-in one in another group is not it.
        assert_eq!(reach(json!({"apiVersion": "example.com/v1", "kind": "Namespace", "metadata": {"name": "x"}}), &[]), None);
        let crd = |scope: &str| {
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "widgets.example.com"},
                "spec": {"group": "example.com", "scope": scope, "names": {"kind": "Widget", "plural": "widgets"}}})
        };
        let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}});
        assert_eq!(reach(widget.clone(), &[crd("Cluster")]).as_deref(), Some("cluster-scoped"));
        assert_eq!(reach(widget.clone(), &[crd("Namespaced")]), None);
        assert_eq!(reach(widget, &[]), None, "an unknown kind is taken as namespaced (RBAC is the wall at apply)");
        assert_eq!(reach(crd("Namespaced"), &[]).as_deref(), Some("cluster-scoped"), "a CustomResourceDefinition itself is cluster-scoped");
    }
}
