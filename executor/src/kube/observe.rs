//! What a cluster holds, as the planner sees it, and what Harmony may prune from it.
//!
//! Cluster-wide lists (read in pages, [`list_all`]), whatever the number of releases: the release records
//! (`owner=helm`, as Helm labels them; only deployed ones are decoded, the others' labels give
//! each release's latest revision) and the objects of tenant access
//! (`app.kubernetes.io/managed-by=harmony`). Releases are pruned only when their deployed record
//! carries Harmony's seal: a release someone installed with `helm` is never touched, nor a record
//! a tenant wrote (tenants can write Secrets in their namespaces, so they can write records).
//!
//! What a tenant can write is read for what it is: a record belongs to the namespace of its
//! Secret, whatever it says inside; an access object (ServiceAccount, Role, RoleBinding) counts
//! for a tenant only inside a namespace labelled as that tenant's (namespaces are cluster-scoped:
//! only Harmony labels them). A record that cannot be read is a warning, not a failure: one
//! tenant's garbage must not stop every tenant's plan.

use std::collections::{BTreeMap, BTreeSet};

use harmony_planner::observed::{ObservedRelease, ObservedTenantAccess};
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ListParams};
use serde_json::Value;

use super::record::{Release, SECRET_TYPE};
use super::release::{UNIT_HASH_FIELD, UNIT_ID_FIELD, parse_manifest, written_by_harmony};
use super::tenant::{Access, MANAGED_BY, TENANT_LABEL, role_name};
use super::{Cluster, KubeError, api_err};
use harmony_planner::drift::project;

/// A release found on a cluster: its deployed revision, or its latest record when none is
/// deployed (`observed.undeployed`).
#[derive(Clone, Debug)]
pub struct LiveRelease {
    /// What the planner compares with.
    pub observed: ObservedRelease,
    /// Whether Harmony wrote the deployed record: it carries the cluster's seal.
    pub harmony: bool,
    /// The unit Harmony applied it from (`release/<cluster>/<namespace>/<name>`).
    pub unit: Option<String>,
    /// The values the release was applied with (the record's `config`, as Helm keeps them).
    pub config: serde_json::Map<String, Value>,
}

impl LiveRelease {
    /// The value at a dotted values path (`auth.password`), when it is a string: a
    /// `secret-value` as it was applied, for the planner's fingerprints (never shown).
    pub fn value_at(&self, dotted: &str) -> Option<&str> {
        config_value_at(&self.config, dotted)
    }

    /// Whether Harmony may uninstall it when `cluster` no longer declares it: Harmony wrote the
    /// deployed record, from a unit of this cluster. Releases installed or last upgraded with
    /// `helm`, or applied through another cluster name, are never pruned.
    pub fn prunable_by(&self, cluster: &str) -> bool {
        self.harmony
            && self.unit.as_deref().is_some_and(|u| u.strip_prefix("release/").and_then(|r| r.strip_prefix(cluster)).is_some_and(|r| r.starts_with('/')))
    }
}

/// The string at a dotted values path (`auth.password`) of a release record's `config`.
pub fn config_value_at<'a>(config: &'a serde_json::Map<String, Value>, dotted: &str) -> Option<&'a str> {
    let mut parts = dotted.split('.');
    let mut cur = config.get(parts.next()?)?;
    for p in parts {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

/// What one cluster holds.
#[derive(Clone, Debug, Default)]
pub struct ClusterObservation {
    /// Deployed releases by (namespace, name).
    pub releases: BTreeMap<(String, String), LiveRelease>,
    /// Tenant access objects Harmony applied, live, by `Kind/namespace/name` (`Kind/name` for
    /// namespaces), per tenant.
    pub tenant_objects: BTreeMap<String, BTreeMap<String, Value>>,
    /// What was read but ignored, and why (records that cannot be decoded or that claim another
    /// namespace): for the user, never a reason to fail.
    pub warnings: Vec<String>,
}

/// The key tenant access objects are compared by.
pub fn object_key(obj: &Value) -> String {
    let kind = obj["kind"].as_str().unwrap_or_default();
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    match obj["metadata"]["namespace"].as_str() {
        Some(ns) if !ns.is_empty() => format!("{kind}/{ns}/{name}"),
        _ => format!("{kind}/{name}"),
    }
}

/// A release record as the planner sees it: revision, the record's resourceVersion, the unit
/// hash Harmony recorded, the manifest's objects. Secret values are filled in by the caller,
/// which knows the unit's `secret-value` paths.
pub fn observed_release(r: &Release, resource_version: &str) -> Result<ObservedRelease, KubeError> {
    Ok(ObservedRelease {
        revision: u64::from(r.version),
        resource_version: resource_version.to_string(),
        hash: r.extra.get(UNIT_HASH_FIELD).and_then(Value::as_str).map(String::from),
        objects: parse_manifest(&r.manifest)?,
        secret_values: BTreeMap::new(),
        content: None,
        latest_revision: None,
        undeployed: false,
        live: None,
        unserved: Vec::new(),
    })
}

/// Reads a cluster's deployed releases and Harmony's tenant access objects (and the cluster's
/// seal key, to tell Harmony's records from others).
pub async fn observe_cluster(cluster: &Cluster) -> Result<ClusterObservation, KubeError> {
    let mut out = ClusterObservation::default();
    let seal = match cluster.seal_key() {
        Some(k) => Some(k.clone()),
        None => super::seal::load(cluster).await?,
    };
    let list = list_all(&Api::<Secret>::all(cluster.client().clone()), "owner=helm", "list release records").await?;
    let records: Vec<&Secret> = list.iter().filter(|s| s.type_.as_deref() == Some(SECRET_TYPE)).collect();
    // The latest revision of every release, from the labels alone (only deployed records are
    // decoded): a failed upgrade after the deployed revision numbers the next one after it.
    let label = |s: &Secret, k: &str| s.metadata.labels.as_ref().and_then(|l| l.get(k)).cloned();
    let mut latest: BTreeMap<(String, String), (u64, &Secret)> = BTreeMap::new();
    for s in &records {
        let (Some(ns), Some(name), Some(version)) = (s.metadata.namespace.clone(), label(s, "name"), label(s, "version").and_then(|v| v.parse::<u64>().ok())) else {
            continue;
        };
        let e = latest.entry((ns, name)).or_insert((version, s));
        if version > e.0 {
            *e = (version, s);
        }
    }
    // A record as the planner sees it, keyed by its Secret's namespace; one that cannot be read,
    // or that claims another namespace, is a warning.
    let read = |s: &Secret, warnings: &mut Vec<String>| {
        let (ns, secret) = (s.metadata.namespace.clone().unwrap_or_default(), s.metadata.name.clone().unwrap_or_default());
        let r = Release::from_secret(s).map_err(|e| e.to_string()).and_then(|r| {
            if r.namespace == ns {
                Ok(r)
            } else {
                Err(format!("it claims namespace `{}`, but a record belongs to its Secret's namespace", r.namespace))
            }
        });
        let observed = r.and_then(|r| Ok((observed_release(&r, s.metadata.resource_version.as_deref().unwrap_or_default()).map_err(|e| e.to_string())?, r)));
        match observed {
            Ok((observed, r)) => {
                let unit = r.extra.get(UNIT_ID_FIELD).and_then(Value::as_str).map(String::from);
                let harmony = written_by_harmony(&r) && seal.as_ref().is_some_and(|k| k.verifies(&r, &ns, &secret));
                Some(((ns, r.name.clone()), u64::from(r.version), LiveRelease { observed, harmony, unit, config: r.config }))
            }
            Err(e) => {
                warnings.push(format!("ignored release record {ns}/{secret}: {e}"));
                None
            }
        }
    };
    for s in records.into_iter().filter(|s| label(s, "status").as_deref() == Some("deployed")) {
        let Some((key, version, mut live)) = read(s, &mut out.warnings) else { continue };
        // Two records labelled deployed (an interrupted Helm operation): the newest counts.
        if out.releases.get(&key).is_some_and(|l| l.observed.revision > version) {
            continue;
        }
        live.observed.latest_revision = latest.get(&key).map(|(l, _)| *l).filter(|l| *l > live.observed.revision);
        out.releases.insert(key, live);
    }
    // Releases with a history but no deployed revision (a failed install, a failed rollback):
    // seen through their latest record, so a plan never shows them as a fresh install, and one
    // Harmony wrote that left the repository is pruned.
    for (key, (_, s)) in latest {
        if out.releases.contains_key(&key) {
            continue;
        }
        let Some((_, _, mut live)) = read(s, &mut out.warnings) else { continue };
        live.observed.undeployed = true;
        out.releases.insert(key, live);
    }
    read_live(cluster, &mut out).await?;
    let selector = format!("app.kubernetes.io/managed-by={MANAGED_BY},{TENANT_LABEL}");
    let c = cluster.client().clone();
    let mut live: Vec<Value> = Vec::new();
    let typed = |v: Value, api_version: &str, kind: &str| {
        let mut v = v;
        v["apiVersion"] = api_version.into();
        v["kind"] = kind.into();
        v
    };
    let what = "list tenant access objects";
    for o in list_all(&Api::<Namespace>::all(c.clone()), &selector, what).await? {
        live.push(typed(serde_json::to_value(o).expect("serialises"), "v1", "Namespace"));
    }
    for o in list_all(&Api::<ServiceAccount>::all(c.clone()), &selector, what).await? {
        live.push(typed(serde_json::to_value(o).expect("serialises"), "v1", "ServiceAccount"));
    }
    for o in list_all(&Api::<Role>::all(c.clone()), &selector, what).await? {
        live.push(typed(serde_json::to_value(o).expect("serialises"), "rbac.authorization.k8s.io/v1", "Role"));
    }
    for o in list_all(&Api::<RoleBinding>::all(c), &selector, what).await? {
        live.push(typed(serde_json::to_value(o).expect("serialises"), "rbac.authorization.k8s.io/v1", "RoleBinding"));
    }
    // Namespaces are cluster-scoped: only Harmony's credentials label them. A namespaced object
    // counts for the tenant whose label its namespace carries, whatever its own label says.
    let owner: BTreeMap<String, String> = live
        .iter()
        .filter(|o| o["kind"] == "Namespace")
        .filter_map(|o| Some((o["metadata"]["name"].as_str()?.to_string(), o["metadata"]["labels"][TENANT_LABEL].as_str()?.to_string())))
        .collect();
    for o in live {
        let Some(tenant) = o["metadata"]["labels"][TENANT_LABEL].as_str().map(String::from) else { continue };
        if let Some(ns) = o["metadata"]["namespace"].as_str()
            && owner.get(ns) != Some(&tenant)
        {
            continue;
        }
        out.tenant_objects.entry(tenant).or_default().insert(object_key(&o), o);
    }
    Ok(out)
}

/// The label Helm's install puts on every object of a release (and Harmony with it): live
/// objects are listed by it.
const HELM_MANAGED: &str = "app.kubernetes.io/managed-by=Helm";

/// How many objects missing from the lists are read one by one at a time.
const CONCURRENT_GETS: usize = 16;

/// Items per page of a cluster-wide list (`limit`; kubectl's chunk size).
const PAGE: u32 = 500;

/// At most this many pages of one list (100,000 objects of one kind): a bound on what one plan
/// reads into memory.
const MAX_PAGES: usize = 200;

/// Every object of `api` matching label `selector`, read page by page (`limit` [`PAGE`] and the
/// `continue` token the server returns, as kubectl and client-go's pager read large lists).
/// More than [`MAX_PAGES`] pages is an error naming what was listed. `what`: what the list is
/// for, for errors.
pub(crate) async fn list_all<K>(api: &Api<K>, selector: &str, what: &str) -> Result<Vec<K>, KubeError>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut lp = ListParams::default().labels(selector).limit(PAGE);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = api.list(&lp).await.map_err(api_err(what.to_string()))?;
        items.extend(page.items);
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            return Ok(items);
        }
    }
    Err(KubeError::Release(format!(
        "{what}: more than {} objects (the bound of one plan's read, {MAX_PAGES} pages of {PAGE}); narrow what the label `{selector}` selects",
        MAX_PAGES * PAGE as usize
    )))
}

/// A live object without what the server maintains and drift never looks at (managedFields,
/// status, uid, timestamps), keeping its resourceVersion.
pub(crate) fn live_form(mut o: Value, api_version: &str, kind: &str) -> Value {
    if let Some(m) = o.as_object_mut() {
        m.remove("status");
        m.insert("apiVersion".into(), api_version.into());
        m.insert("kind".into(), kind.into());
    }
    if let Some(m) = o["metadata"].as_object_mut() {
        for f in ["managedFields", "uid", "creationTimestamp", "generation", "selfLink"] {
            m.remove(f);
        }
    }
    o
}

/// Reads the live objects every deployed release's manifest names, for the planner's drift
/// check ([`harmony_planner::drift`]): one cluster-wide list per kind the manifests hold, read in
/// pages ([`list_all`]), of the objects labelled `app.kubernetes.io/managed-by=Helm` (as Helm's
/// install and Harmony label them), then one GET per object those lists did not return
/// (deleted, or its label removed: both drift, rare). Objects are matched by
/// [`harmony_planner::object::identity`]. Read-only. A kind the server does not serve (a
/// removed CustomResourceDefinition) is not drift — nothing could recreate its objects — but a
/// warning per release naming the kind and its objects (`observed.unserved`); any other failure
/// fails the observation.
async fn read_live(cluster: &Cluster, out: &mut ClusterObservation) -> Result<(), KubeError> {
    use futures::StreamExt as _;
    use harmony_planner::object::identity;
    use kube::api::DynamicObject;
    use kube::discovery::Scope;
    let deployed = || out.releases.iter().filter(|(_, l)| !l.observed.undeployed);
    let kind_of = |o: &Value| Some((o["apiVersion"].as_str()?.to_string(), o["kind"].as_str()?.to_string()));
    let kinds: BTreeSet<(String, String)> = deployed().flat_map(|(_, l)| l.observed.objects.iter()).filter_map(kind_of).collect();
    let listed = futures::future::join_all(kinds.iter().map(|(api_version, kind)| async move {
        let (ar, caps) = match cluster.resource(api_version, kind).await {
            Ok(r) => r,
            Err(e) if super::unserved(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let api: Api<DynamicObject> = Api::all_with(cluster.client().clone(), &ar);
        let what = format!("list {kind} ({api_version}) labelled {HELM_MANAGED}, to compare releases with their live objects");
        let items: Vec<Value> =
            list_all(&api, HELM_MANAGED, &what).await?.into_iter().map(|o| live_form(serde_json::to_value(o).unwrap_or(Value::Null), api_version, kind)).collect();
        Ok(Some((caps.scope == Scope::Namespaced, items)))
    }))
    .await;
    let mut namespaced: BTreeMap<(String, String), bool> = BTreeMap::new();
    let mut unserved: BTreeSet<(String, String)> = BTreeSet::new();
    let mut live: BTreeMap<(String, String), Value> = BTreeMap::new();
    for ((api_version, kind), r) in kinds.iter().zip(listed) {
        match r? {
            Some((is_namespaced, items)) => {
                namespaced.insert((api_version.clone(), kind.clone()), is_namespaced);
                for o in items {
                    if let Some(id) = identity(&o, "") {
                        live.insert(id, o);
                    }
                }
            }
            None => _ = unserved.insert((api_version.clone(), kind.clone())),
        }
    }
    // Where each manifest object lives (its identity as the lists key it: a cluster-scoped
    // kind has no namespace), and what the lists did not return.
    let place = |o: &Value, release_ns: &str| -> Option<((String, String), String)> {
        let is_namespaced = *namespaced.get(&kind_of(o)?)?;
        if is_namespaced {
            let ns = o["metadata"]["namespace"].as_str().filter(|n| !n.is_empty()).unwrap_or(release_ns);
            return Some((identity(o, ns)?, ns.to_string()));
        }
        if o["metadata"]["namespace"].as_str().is_none_or(str::is_empty) {
            return Some((identity(o, "")?, String::new()));
        }
        // A namespace on a cluster-scoped object means nothing (Helm ignores it).
        let mut placed = o.clone();
        placed["metadata"]["namespace"] = "".into();
        Some((identity(&placed, "")?, String::new()))
    };
    let mut missing: BTreeMap<(String, String), (Value, String)> = BTreeMap::new();
    for ((ns, _), l) in deployed() {
        for o in &l.observed.objects {
            if let Some((id, at)) = place(o, ns)
                && !live.contains_key(&id)
            {
                missing.entry(id).or_insert_with(|| (o.clone(), at));
            }
        }
    }
    let fetched: Vec<((String, String), Value, Result<Option<Value>, KubeError>)> = futures::stream::iter(missing)
        .map(|(id, (o, ns))| async move {
            let got = cluster.get(&o, &ns).await;
            (id, o, got)
        })
        .buffer_unordered(CONCURRENT_GETS)
        .collect()
        .await;
    for (id, o, got) in fetched {
        if let Some(v) = got? {
            let (api_version, kind) = kind_of(&o).unwrap_or_default();
            live.insert(id, live_form(v, &api_version, &kind));
        }
    }
    let found: Vec<((String, String), Vec<Value>, Vec<String>)> = deployed()
        .map(|((ns, name), l)| {
            let objs = l.observed.objects.iter().filter_map(|o| live.get(&place(o, ns)?.0).cloned()).collect();
            let gone = l.observed.objects.iter().filter(|o| kind_of(o).is_some_and(|k| unserved.contains(&k))).filter_map(|o| harmony_planner::object::key_of(o, ns)).collect();
            ((ns.clone(), name.clone()), objs, gone)
        })
        .collect();
    for (key, objs, gone) in found {
        let Some(l) = out.releases.get_mut(&key) else { continue };
        if !gone.is_empty() {
            let kinds: BTreeSet<String> =
                l.observed.objects.iter().filter_map(kind_of).filter(|k| unserved.contains(k)).map(|(a, k)| format!("{k} ({a})")).collect();
            out.warnings.push(format!(
                "release {}/{} (revision {}): the API server does not serve {} (a removed CustomResourceDefinition?), so its object{} {} cannot be compared with the cluster or recreated by apply; they are not planned as drift. Serve the kind again, or upgrade the release to a chart without them",
                key.0,
                key.1,
                l.observed.revision,
                kinds.into_iter().collect::<Vec<_>>().join(", "),
                if gone.len() == 1 { "" } else { "s" },
                gone.join(", ")
            ));
        }
        l.observed.live = Some(objs);
        l.observed.unserved = gone;
    }
    Ok(())
}

/// What Harmony applied to a cluster that the repository no longer declares there.
#[derive(Debug, Default)]
pub struct Leftovers<'a> {
    /// Releases it may uninstall, by (namespace, name), in name order.
    pub releases: Vec<(&'a (String, String), &'a LiveRelease)>,
    /// Tenants whose access it may remove.
    pub tenants: Vec<&'a str>,
}

impl ClusterObservation {
    /// What is left on `cluster` of what Harmony applied there, given what the repository
    /// declares on it: releases (namespace, name) and tenants with access. `harmony plan` shows
    /// these as destroys and `harmony apply` destroys them: one rule for both.
    pub fn leftovers<'a>(&'a self, cluster: &str, releases: &BTreeSet<(String, String)>, tenants: &BTreeSet<&str>) -> Leftovers<'a> {
        Leftovers {
            releases: self.releases.iter().filter(|(key, l)| l.prunable_by(cluster) && !releases.contains(*key)).collect(),
            tenants: self.tenant_objects.keys().map(String::as_str).filter(|t| !tenants.contains(t)).collect(),
        }
    }

    /// A tenant's access as it is on the cluster (for removing a tenant that left the
    /// repository): its ServiceAccount, and the namespaces it was granted (its Roles' and its
    /// labelled namespaces). `None` when the cluster holds nothing of the tenant's.
    pub fn tenant_access(&self, tenant: &str) -> Option<Access> {
        let objs = self.tenant_objects.get(tenant)?;
        let sa = objs.values().find(|o| o["kind"] == "ServiceAccount");
        let mut namespaces: BTreeSet<String> = BTreeSet::new();
        for o in objs.values() {
            match o["kind"].as_str() {
                Some("Namespace") => _ = namespaces.insert(o["metadata"]["name"].as_str().unwrap_or_default().to_string()),
                Some("Role" | "RoleBinding") if o["metadata"]["name"].as_str() == Some(role_name(tenant).as_str()) => {
                    _ = namespaces.insert(o["metadata"]["namespace"].as_str().unwrap_or_default().to_string())
                }
                _ => {}
            }
        }
        let (sa_name, sa_ns) = match sa {
            Some(sa) => (sa["metadata"]["name"].as_str().unwrap_or_default().to_string(), sa["metadata"]["namespace"].as_str().unwrap_or_default().to_string()),
            None => (String::new(), namespaces.iter().next().cloned().unwrap_or_default()),
        };
        // The level does not matter for what this is used for (removal, impersonation).
        Some(Access {
            tenant: tenant.to_string(),
            namespaces: namespaces.into_iter().collect(),
            service_account: sa_name,
            service_account_namespace: sa_ns,
            pod_security: Default::default(),
        })
    }

    /// The user Harmony impersonates for what lives in namespace `ns`: the ServiceAccount of
    /// the tenant whose label the namespace carries (`None`: no tenant's, or no ServiceAccount).
    pub fn namespace_user(&self, ns: &str) -> Option<String> {
        let key = format!("Namespace/{ns}");
        let (tenant, _) = self.tenant_objects.iter().find(|(_, objs)| objs.contains_key(&key))?;
        let access = self.tenant_access(tenant)?;
        (!access.service_account.is_empty()).then(|| access.username())
    }

    /// A tenant's access as the planner sees it: the live objects, cut down to the fields
    /// `desired` sets (what the server adds — uid, resourceVersion, managedFields — is not a
    /// difference), their resourceVersions, and `unit_hash` as the hash when every desired object
    /// is there as desired (otherwise a hash no unit has, so the planner plans an update).
    pub fn observed_access(&self, desired: &Access, unit_hash: &str) -> Option<ObservedTenantAccess> {
        let live = self.tenant_objects.get(&desired.tenant)?;
        let mut objects = Vec::new();
        let mut resource_versions = BTreeMap::new();
        let mut as_desired = true;
        let wanted = desired.objects();
        let wanted_keys: BTreeSet<String> = wanted.iter().map(object_key).collect();
        for want in &wanted {
            let key = object_key(want);
            match live.get(&key) {
                Some(have) => {
                    let p = project(want, have);
                    as_desired &= p == *want;
                    resource_versions.insert(key, have["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_string());
                    objects.push(p);
                }
                None => as_desired = false,
            }
        }
        // Objects of the tenant the repository no longer grants (a namespace it left).
        for (key, have) in live.iter().filter(|(k, _)| !wanted_keys.contains(*k)) {
            as_desired = false;
            resource_versions.insert(key.clone(), have["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_string());
            objects.push(strip_server_fields(have));
        }
        let hash = if as_desired { unit_hash.to_string() } else { "live:differs".to_string() };
        Some(ObservedTenantAccess { resource_versions, hash, content: None, objects })
    }

    /// A tenant that left the repository, as the planner sees it (to be removed).
    pub fn observed_leftover(&self, tenant: &str) -> Option<ObservedTenantAccess> {
        let live = self.tenant_objects.get(tenant)?;
        let resource_versions = live.iter().map(|(k, o)| (k.clone(), o["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_string())).collect();
        let objects = live.values().map(strip_server_fields).collect();
        Some(ObservedTenantAccess { resource_versions, hash: "live:leftover".into(), content: None, objects })
    }
}

/// An object without what the server maintains (for showing one Harmony did not ask for).
fn strip_server_fields(o: &Value) -> Value {
    let mut o = o.clone();
    if let Some(m) = o["metadata"].as_object_mut() {
        for f in ["uid", "resourceVersion", "managedFields", "creationTimestamp", "generation"] {
            m.remove(f);
        }
    }
    if let Some(m) = o.as_object_mut() {
        m.remove("status");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_name_kind_namespace_and_name() {
        assert_eq!(object_key(&json!({"kind": "Namespace", "metadata": {"name": "a"}})), "Namespace/a");
        assert_eq!(object_key(&json!({"kind": "Role", "metadata": {"name": "r", "namespace": "a"}})), "Role/a/r");
    }
}
