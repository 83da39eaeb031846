//! Planning: compiled units × observed state → one action per unit.

use std::collections::{BTreeMap, BTreeSet};

use harmony_compiler::{CompiledRepo, Unit, UnitContent};
use harmony_schemas::plan::*;
use serde_json::Value as Json;

use crate::drift::LiveObject;
use crate::object::{Object, to_yaml};
use crate::observed::ObservedState;
use crate::redact::{FingerprintKey, Needles, redact_derived, redact_object_as};
use crate::render::SecretValues;

/// Rendered releases by unit id. A release missing here (a remote chart, or one `diff`
/// did not need to render) is compared by content hash and diffed by unit content.
pub type Rendered = BTreeMap<String, Vec<Object>>;

/// Everything besides the repository and the observed state.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// `--target` values.
    pub targets: Vec<String>,
    /// `--exclude` values.
    pub excludes: Vec<String>,
    /// Targets left out whole (`clusters`, `fleets`).
    pub skipped: Vec<String>,
    /// Key of secret fingerprints.
    pub key: FingerprintKey,
    /// Resolved `secret-value`s by release unit id, then values path.
    pub secret_values: BTreeMap<String, SecretValues>,
    /// Where the repository came from.
    pub source: SourceRevision,
    /// What the observed state is.
    pub observed_source: ObservedSource,
    /// What each cluster's releases were rendered against, by cluster name.
    pub capabilities: BTreeMap<String, Capabilities>,
    /// How each rendered release was rendered, by unit id (its manifest fingerprint filled).
    pub release_renders: BTreeMap<String, ReleaseRender>,
}

/// Why no plan could be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A `--target`/`--exclude` value matches no unit.
    #[error(
        "{flag} {value}: no unit matches{hint}; unit ids look like release/<cluster>/<namespace>/<name>, device-plan/<fleet>/<device>, agent/<fleet>/<device>, tenant-access/<tenant>/<cluster>, and a prefix such as release/<cluster> selects every unit under it"
    )]
    UnknownUnit {
        /// `--target` or `--exclude`.
        flag: &'static str,
        /// The value.
        value: String,
        /// `; did you mean …?` or nothing.
        hint: String,
    },
    /// Releases whose rendered objects reach outside their tenant's namespaces
    /// ([`crate::scope`]).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    OutOfScope(Vec<crate::scope::OutOfScope>),
}

fn matches(filter: &str, id: &str) -> bool {
    let f = filter.trim_end_matches('/');
    id == f || (id.starts_with(f) && id.as_bytes().get(f.len()) == Some(&b'/'))
}

/// The unit ids a plan covers: targets with everything they depend on (or every unit), minus
/// the excluded units and everything that depends on them.
pub fn select_units(compiled: &CompiledRepo, observed: &ObservedState, targets: &[String], excludes: &[String]) -> Result<BTreeSet<String>, PlanError> {
    let all: BTreeSet<String> = compiled.units.keys().map(|k| k.as_str().to_string()).chain(observed.unit_ids().cloned()).collect();
    let check = |flag: &'static str, values: &[String]| -> Result<(), PlanError> {
        for v in values {
            if !all.iter().any(|id| matches(v, id)) {
                let best = all.iter().map(|id| (strsim::jaro_winkler(v, id), id)).filter(|(s, _)| *s > 0.8).max_by(|a, b| a.0.total_cmp(&b.0));
                let hint = best.map(|(_, id)| format!("; did you mean {id}?")).unwrap_or_default();
                return Err(PlanError::UnknownUnit { flag, value: v.clone(), hint });
            }
        }
        Ok(())
    };
    check("--target", targets)?;
    check("--exclude", excludes)?;
    let mut selected: BTreeSet<String> = if targets.is_empty() {
        all.clone()
    } else {
        let by_id: std::collections::HashMap<&str, &Unit> = compiled.units.values().map(|u| (u.id.as_str(), u)).collect();
        let mut sel = BTreeSet::new();
        let mut stack: Vec<String> = all.iter().filter(|id| targets.iter().any(|t| matches(t, id))).cloned().collect();
        while let Some(id) = stack.pop() {
            if !sel.insert(id.clone()) {
                continue;
            }
            if let Some(u) = by_id.get(id.as_str()) {
                stack.extend(u.deps.iter().map(|d| d.as_str().to_string()));
            }
        }
        sel
    };
    if !excludes.is_empty() {
        let mut dependents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for u in compiled.units.values() {
            for d in &u.deps {
                dependents.entry(d.as_str()).or_default().push(u.id.as_str());
            }
        }
        let mut stack: Vec<String> = all.iter().filter(|id| excludes.iter().any(|x| matches(x, id))).cloned().collect();
        let mut gone = BTreeSet::new();
        while let Some(id) = stack.pop() {
            if !gone.insert(id.clone()) {
                continue;
            }
            stack.extend(dependents.get(id.as_str()).into_iter().flatten().map(|s| s.to_string()));
        }
        selected.retain(|id| !gone.contains(id));
    }
    Ok(selected)
}

/// Release unit ids whose charts must be rendered for a plan: selected releases whose
/// observed content hash differs from the desired one (or that carry `secret-value`s, whose
/// change the hash cannot see).
pub fn releases_to_render(compiled: &CompiledRepo, observed: &ObservedState, selected: &BTreeSet<String>) -> Vec<String> {
    compiled
        .units
        .values()
        .filter(|u| selected.contains(u.id.as_str()))
        .filter_map(|u| match &u.content {
            UnitContent::Release(r) => {
                let same = observed.releases.get(u.id.as_str()).is_some_and(|o| o.hash.as_deref() == Some(u.hash.as_str()) && !o.undeployed);
                (!same || !r.secrets.is_empty()).then(|| u.id.as_str().to_string())
            }
            _ => None,
        })
        .collect()
}

/// Observed releases gone from the repository whose objects a `diff` should show.
pub fn deleted_releases(compiled: &CompiledRepo, base: &CompiledRepo) -> Vec<String> {
    base.units.keys().filter(|id| id.kind() == "release" && !compiled.units.contains_key(*id)).map(|id| id.as_str().to_string()).collect()
}

/// Object pairs of one unit: key → (observed, desired).
type Pairs = BTreeMap<String, (Option<Json>, Option<Json>)>;

struct UnitPlan {
    action: Action,
    observed: Option<ObservedRevision>,
    reason: String,
    pairs: Pairs,
    secret_values: Vec<SecretFingerprint>,
    /// Live objects that drifted from what Harmony applied ([`crate::drift`]).
    drift: Vec<DriftedObject>,
}

/// Makes the plan. Pure: same inputs, byte-identical output.
pub fn plan(compiled: &CompiledRepo, rendered: &Rendered, observed: &ObservedState, opts: &PlanOptions) -> Result<PlanFile, PlanError> {
    let selected = select_units(compiled, observed, &opts.targets, &opts.excludes)?;
    let out_of_scope: Vec<_> = crate::scope::check(compiled, rendered).into_iter().filter(|o| selected.contains(&o.release)).collect();
    if !out_of_scope.is_empty() {
        return Err(PlanError::OutOfScope(out_of_scope));
    }
    // Scrub list: every secret-value and every secret field on either side.
    let mut needles = Needles::default();
    for values in opts.secret_values.values() {
        for v in values.values().flatten() {
            needles.add(v);
        }
    }
    for (id, r) in &observed.releases {
        for v in r.secret_values.values() {
            needles.add(v);
        }
        for o in &r.objects {
            needles.add_fields_of(o);
        }
        // Live objects: what someone changed a secret to is as secret as what was applied, also
        // where someone removed the annotation that marks the chart's object sensitive.
        if let Some(live) = &r.live {
            let ns = release_of(id).0;
            let sensitive: std::collections::HashSet<String> =
                r.objects.iter().filter(|o| crate::redact::is_sensitive(o)).filter_map(|o| crate::object::key_of(o, ns)).collect();
            for o in live {
                needles.add_fields_of_as(o, crate::redact::is_sensitive(o) || crate::object::key_of(o, ns).is_some_and(|k| sensitive.contains(&k)));
            }
        }
    }
    for objs in rendered.values() {
        for o in objs {
            needles.add_fields_of(&o.value);
            needles.add_derived_of(o);
        }
    }
    let mut actions = Vec::new();
    // Destroys first: units observed but gone, dependents before what they depend on.
    let desired: std::collections::HashSet<&str> = compiled.units.keys().map(|k| k.as_str()).collect();
    let mut gone: Vec<&String> = observed.unit_ids().filter(|id| selected.contains(*id) && !desired.contains(id.as_str())).collect();
    let rank = |id: &str| match id.split('/').next().unwrap_or("") {
        "device-plan" => 0,
        "agent" => 1,
        "release" => 2,
        _ => 3,
    };
    gone.sort_by(|a, b| rank(a).cmp(&rank(b)).then(b.cmp(a)));
    gone.dedup();
    for id in gone {
        let up = plan_delete(id, observed);
        actions.push(finish(id, None, Vec::new(), up, &opts.key, &needles, &BTreeMap::new()));
    }
    for id in compiled.apply_order() {
        if !selected.contains(id.as_str()) {
            continue;
        }
        let Some(u) = compiled.units.get(id) else { continue };
        let empty = SecretValues::new();
        let secrets = opts.secret_values.get(id.as_str()).unwrap_or(&empty);
        let up = plan_unit(u, rendered.get(id.as_str()), observed, secrets, &opts.key);
        let deps = u.deps.iter().map(|d| d.as_str().to_string()).collect();
        // Where each object holds values computed from a secret-value.
        let derived: BTreeMap<&str, &[String]> =
            rendered.get(id.as_str()).into_iter().flatten().filter(|o| !o.derived.is_empty()).map(|o| (o.key.as_str(), o.derived.as_slice())).collect();
        let mut action = finish(id.as_str(), Some(&u.hash), deps, up, &opts.key, &needles, &derived);
        action.apply.release = opts.release_renders.get(id.as_str()).cloned();
        actions.push(action);
    }
    let summary = Summary::of(&actions);
    let mut p = PlanFile {
        kind: PLAN_FILE_KIND.to_string(),
        format_version: PLAN_FORMAT_VERSION,
        source: opts.source.clone(),
        observed: opts.observed_source.clone(),
        identity: String::new(),
        fingerprint_key_id: opts.key.id(),
        filters: Filters { targets: opts.targets.clone(), excludes: opts.excludes.clone(), skipped: opts.skipped.clone() },
        summary,
        capabilities: opts.capabilities.clone(),
        actions,
        rollouts: Vec::new(),
        device_drift: Vec::new(),
        repository: None,
        targets: PlanTargets::default(),
        charts: BTreeMap::new(),
        seal: None,
    };
    p.identity = crate::contract::identity(&p);
    Ok(p)
}

fn content_json(u: &Unit) -> Json {
    serde_json::to_value(&u.content).unwrap_or(Json::Null)
}

fn observed_revision(id: &str, observed: &ObservedState) -> Option<ObservedRevision> {
    let compiled = |hash: Option<&String>| hash.map(|h| ObservedRevision::Compiled { hash: h.clone() });
    if let Some(r) = observed.releases.get(id) {
        return if observed.compiled {
            compiled(r.hash.as_ref())
        } else {
            Some(ObservedRevision::HelmRelease { revision: r.revision, resource_version: r.resource_version.clone() })
        };
    }
    if let Some(e) = observed.device_plans.get(id).or_else(|| observed.agents.get(id)) {
        return if observed.compiled { compiled(Some(&e.hash)) } else { Some(ObservedRevision::KvEntry { revision: e.revision }) };
    }
    if let Some(t) = observed.tenant_access.get(id) {
        return if observed.compiled { compiled(Some(&t.hash)) } else { Some(ObservedRevision::Objects { resource_versions: t.resource_versions.clone() }) };
    }
    None
}

fn observed_objects(id: &str, observed: &ObservedState) -> Pairs {
    let mut pairs = Pairs::new();
    if let Some(r) = observed.releases.get(id) {
        let ns = id.split('/').nth(2).unwrap_or("default");
        if r.objects.is_empty()
            && let Some(c) = &r.content
        {
            pairs.insert(id.to_string(), (Some(c.clone()), None));
        }
        let keyed = crate::object::key_all(r.objects.iter().enumerate().map(|(i, o)| (o.clone(), format!("object #{i}"))), ns);
        for o in keyed {
            pairs.insert(o.key, (Some(o.value), None));
        }
    }
    if let Some(t) = observed.tenant_access.get(id).filter(|t| !t.objects.is_empty()) {
        for o in crate::object::key_all(t.objects.iter().enumerate().map(|(i, o)| (o.clone(), format!("object #{i}"))), "default") {
            pairs.insert(o.key, (Some(o.value), None));
        }
        return pairs;
    }
    let content = observed
        .device_plans
        .get(id)
        .or_else(|| observed.agents.get(id))
        .and_then(|e| e.content.clone())
        .or_else(|| observed.tenant_access.get(id).and_then(|t| t.content.clone()));
    if let Some(c) = content {
        pairs.insert(id.to_string(), (Some(c), None));
    }
    pairs
}

fn plan_delete(id: &str, observed: &ObservedState) -> UnitPlan {
    let why = if observed.compiled { "no longer in the repository" } else { "observed but no longer in the repository (prune)" };
    UnitPlan {
        action: Action::Delete,
        observed: observed_revision(id, observed),
        reason: why.to_string(),
        pairs: observed_objects(id, observed),
        secret_values: vec![],
        drift: vec![],
    }
}

fn observed_content(id: &str, observed: &ObservedState) -> Option<Json> {
    if let Some(r) = observed.releases.get(id) {
        return r.content.clone();
    }
    observed
        .device_plans
        .get(id)
        .or_else(|| observed.agents.get(id))
        .and_then(|e| e.content.clone())
        .or_else(|| observed.tenant_access.get(id).and_then(|t| t.content.clone()))
}

fn observed_hash<'a>(id: &str, observed: &'a ObservedState) -> Option<&'a str> {
    if let Some(r) = observed.releases.get(id) {
        return r.hash.as_deref();
    }
    observed
        .device_plans
        .get(id)
        .or_else(|| observed.agents.get(id))
        .map(|e| e.hash.as_str())
        .or_else(|| observed.tenant_access.get(id).map(|t| t.hash.as_str()))
}

fn is_observed(id: &str, observed: &ObservedState) -> bool {
    observed.releases.contains_key(id) || observed.device_plans.contains_key(id) || observed.agents.contains_key(id) || observed.tenant_access.contains_key(id)
}

fn plan_unit(u: &Unit, rendered: Option<&Vec<Object>>, observed: &ObservedState, secrets: &SecretValues, key: &FingerprintKey) -> UnitPlan {
    let id = u.id.as_str();
    // secret-value fingerprints.
    let mut secret_values = Vec::new();
    if let UnitContent::Release(r) = &u.content {
        let before = observed.releases.get(id).map(|o| &o.secret_values);
        for s in &r.secrets {
            let source = s.from.to_string();
            let after = secrets.get(&s.key).cloned().flatten().map(|v| key.fingerprint(v.as_bytes()));
            let before = before.and_then(|b| b.get(&s.key)).map(|v| key.fingerprint(v.as_bytes()));
            let status = match (&before, &after) {
                (_, None) => SecretStatus::Unresolved,
                (None, Some(_)) => SecretStatus::Added,
                (Some(b), Some(a)) if a == b => SecretStatus::Unchanged,
                _ => SecretStatus::Changed,
            };
            secret_values.push(SecretFingerprint { name: format!("secret-value {}", s.key), source: Some(source), before, after, status });
        }
    }
    let observed_rev = observed_revision(id, observed);
    if !is_observed(id, observed) {
        let mut pairs = Pairs::new();
        desired_pairs(u, rendered, &mut pairs);
        let reason = if observed.compiled { "new in the repository" } else { "not observed: create" };
        return UnitPlan { action: Action::Create, observed: observed_rev, reason: reason.into(), pairs, secret_values, drift: vec![] };
    }
    // A release with a history but nothing deployed is never as desired, whatever its record says.
    let undeployed = observed.releases.get(id).is_some_and(|r| r.undeployed);
    let same_hash = observed_hash(id, observed) == Some(u.hash.as_str()) && !undeployed;
    let secrets_changed = secret_values.iter().any(|s| matches!(s.status, SecretStatus::Changed | SecretStatus::Added));
    // The live objects of the deployed revision, beside what Harmony applied (live plans).
    let live = live_view(id, observed);
    let drift: Vec<&LiveObject> = live.iter().flatten().filter(|o| o.drifted()).collect();
    if same_hash && !secrets_changed {
        if drift.is_empty() {
            return UnitPlan { action: Action::Noop, observed: observed_rev, reason: "as desired".into(), pairs: Pairs::new(), secret_values, drift: vec![] };
        }
        // Unchanged, not rendered: the deployed manifest is what Harmony applied.
        let pairs = drift.iter().map(|o| (o.key.clone(), (o.live.clone(), Some(o.applied.clone())))).collect();
        let reason = format!("{}; apply re-applies them as `harmony` (server-side apply, force), no new revision", drift_text(&drift));
        return UnitPlan { action: Action::Update, observed: observed_rev, reason, pairs, secret_values, drift: drifted_objects(&drift) };
    }
    let observed_has_objects =
        observed.releases.get(id).is_some_and(|r| !r.objects.is_empty()) || observed.tenant_access.get(id).is_some_and(|t| !t.objects.is_empty());
    let mut pairs = Pairs::new();
    if let (Some(objs), Some(live)) = (rendered, &live) {
        // Three-way: the live objects (cut down to what Harmony applied, where they drifted)
        // against the rendered objects as Harmony applies them.
        let (ns, name) = release_of(id);
        for o in live {
            pairs.insert(o.key.clone(), (if o.drifted() { o.live.clone() } else { Some(o.applied.clone()) }, None));
        }
        for o in objs {
            let is_hook = o.value.pointer("/metadata/annotations/helm.sh~1hook").is_some();
            let want = if is_hook { o.value.clone() } else { crate::drift::stored_form(&crate::drift::applied(&o.value, name, ns)) };
            pairs.entry(o.key.clone()).or_insert((None, None)).1 = Some(want);
        }
    } else if rendered.is_some() && observed_has_objects {
        pairs = observed_objects(id, observed);
        desired_pairs(u, rendered, &mut pairs);
    } else {
        // One side has no objects: compare the unit contents (or what the unit was rendered to,
        // e.g. a device's wire plan, when it was rendered as one object keyed by the unit id).
        let desired = rendered.and_then(|objs| objs.iter().find(|o| o.key == id)).map_or_else(|| content_json(u), |o| o.value.clone());
        pairs.insert(id.to_string(), (observed_content(id, observed), Some(desired)));
    }
    pairs.retain(|_, (a, b)| a != b);
    // Rendered, compared object by object, and nothing differs: not a change of the cluster.
    if pairs.is_empty() && !secrets_changed && rendered.is_some() && observed_has_objects && !undeployed && drift.is_empty() {
        return UnitPlan { action: Action::Noop, observed: observed_rev, reason: RECORD_ONLY_REASON.into(), pairs, secret_values, drift: vec![] };
    }
    let mut replace = Vec::new();
    for (k, (a, b)) in &pairs {
        if let (Some(a), Some(b)) = (a, b)
            && let Some(field) = immutable_change(a, b)
        {
            replace.push(format!("{k}: {field} cannot be changed in place"));
        }
    }
    let action = if !replace.is_empty() { Action::Replace } else { Action::Update };
    let reason = if undeployed {
        let r = &observed.releases[id];
        format!("no revision is deployed (the latest, {}, did not deploy): apply installs revision {} over the history", r.revision, r.revision.saturating_add(1))
    } else if !replace.is_empty() {
        replace.join("; ")
    } else if pairs.is_empty() && secrets_changed {
        "a secret-value changed".into()
    } else if pairs.is_empty() {
        "content hash changed; rendered objects are identical".into()
    } else {
        let n = pairs.len();
        format!("{n} object{} changed", if n == 1 { "" } else { "s" })
    };
    let reason = if drift.is_empty() { reason } else { format!("{reason}; {}", drift_text(&drift)) };
    UnitPlan { action, observed: observed_rev, reason, pairs, secret_values, drift: drifted_objects(&drift) }
}

/// (namespace, name) of a release unit id (`release/<cluster>/<namespace>/<name>`).
fn release_of(id: &str) -> (&str, &str) {
    let mut parts = id.splitn(4, '/').skip(2);
    (parts.next().unwrap_or("default"), parts.next().unwrap_or_default())
}

/// The objects of a release's deployed revision beside their live state, when the live objects
/// were observed (not for a release without a deployed revision).
fn live_view(id: &str, observed: &ObservedState) -> Option<Vec<LiveObject>> {
    let r = observed.releases.get(id).filter(|r| !r.undeployed)?;
    let (ns, name) = release_of(id);
    let live = r.live.as_ref()?;
    let served: Vec<Json> = r.objects.iter().filter(|o| crate::object::key_of(o, ns).is_none_or(|k| !r.unserved.contains(&k))).cloned().collect();
    Some(crate::drift::live_objects(name, ns, &served, live))
}

/// `drift: 2 objects changed live (ConfigMap/a/b, …), 1 deleted live (to be recreated)`.
fn drift_text(drift: &[&LiveObject]) -> String {
    let list = |missing: bool| drift.iter().filter(|o| o.live.is_none() == missing).map(|o| o.key.as_str()).collect::<Vec<_>>();
    let (changed, deleted) = (list(false), list(true));
    let mut parts = Vec::new();
    let n = |v: &[&str]| format!("{} object{}", v.len(), if v.len() == 1 { "" } else { "s" });
    if !changed.is_empty() {
        parts.push(format!("{} changed live ({})", n(&changed), changed.join(", ")));
    }
    if !deleted.is_empty() {
        parts.push(format!("{} deleted live, to be recreated ({})", n(&deleted), deleted.join(", ")));
    }
    format!("drift: {}", parts.join(", "))
}

fn drifted_objects(drift: &[&LiveObject]) -> Vec<DriftedObject> {
    drift.iter().map(|o| DriftedObject { key: o.key.clone(), resource_version: o.resource_version.clone() }).collect()
}

fn desired_pairs(u: &Unit, rendered: Option<&Vec<Object>>, pairs: &mut Pairs) {
    match (rendered, &u.content) {
        (Some(objs), _) => {
            for o in objs {
                pairs.entry(o.key.clone()).or_insert((None, None)).1 = Some(o.value.clone());
            }
        }
        (None, _) => {
            pairs.entry(u.id.as_str().to_string()).or_insert((None, None)).1 = Some(content_json(u));
        }
    }
}

/// Fields Kubernetes refuses to change in place, by kind.
fn immutable_change(a: &Json, b: &Json) -> Option<&'static str> {
    let kind = b.get("kind")?.as_str()?;
    let fields: &[(&str, &'static str)] = match kind {
        "Deployment" | "ReplicaSet" | "DaemonSet" => &[("/spec/selector", "spec.selector")],
        "StatefulSet" => &[
            ("/spec/selector", "spec.selector"),
            ("/spec/serviceName", "spec.serviceName"),
            ("/spec/volumeClaimTemplates", "spec.volumeClaimTemplates"),
            ("/spec/podManagementPolicy", "spec.podManagementPolicy"),
        ],
        "Job" => &[("/spec/selector", "spec.selector"), ("/spec/template", "spec.template"), ("/spec/completionMode", "spec.completionMode")],
        "Service" => &[("/spec/clusterIP", "spec.clusterIP")],
        "PersistentVolumeClaim" => &[("/spec/storageClassName", "spec.storageClassName"), ("/spec/accessModes", "spec.accessModes")],
        "Secret" | "ConfigMap" if a.get("immutable") == Some(&Json::Bool(true)) => &[("/data", "data (immutable)"), ("/stringData", "stringData (immutable)")],
        _ => &[],
    };
    if a.pointer("/apiVersion") != b.pointer("/apiVersion") && a.pointer("/apiVersion").is_some() && kind == "Job" {
        return Some("apiVersion");
    }
    fields.iter().find(|(p, _)| a.pointer(p) != b.pointer(p)).map(|(_, name)| *name)
}

fn finish(
    id: &str,
    desired_hash: Option<&String>,
    deps: Vec<String>,
    up: UnitPlan,
    key: &FingerprintKey,
    needles: &Needles,
    derived: &BTreeMap<&str, &[String]>,
) -> PlannedAction {
    let mut secrets: BTreeMap<String, SecretFingerprint> = BTreeMap::new();
    let mut objects = Vec::new();
    for (k, (before, after)) in &up.pairs {
        // The same places of the observed object are hidden too.
        let pointers = derived.get(k.as_str()).copied().unwrap_or_default();
        // Both sides alike: a live object whose sensitivity marker was removed stays redacted.
        let sensitive = [before, after].into_iter().flatten().any(crate::redact::is_sensitive);
        let red = |v: &Option<Json>, side: &mut Vec<(String, String)>| -> String {
            match v {
                Some(v) => {
                    let (r, fps) = redact_object_as(&redact_derived(v, pointers, key), key, needles, sensitive);
                    side.extend(fps);
                    to_yaml(&r)
                }
                None => String::new(),
            }
        };
        let (mut fb, mut fa) = (Vec::new(), Vec::new());
        let old = red(before, &mut fb);
        let new = red(after, &mut fa);
        let skey = needles.scrub(k);
        for (field, fp) in fb {
            secrets.entry(format!("{skey} {field}")).or_insert_with(|| blank(&skey, &field)).before = Some(fp);
        }
        for (field, fp) in fa {
            secrets.entry(format!("{skey} {field}")).or_insert_with(|| blank(&skey, &field)).after = Some(fp);
        }
        let action = match (before, after) {
            (None, _) => Action::Create,
            (_, None) => Action::Delete,
            (Some(a), Some(b)) if immutable_change(a, b).is_some() => Action::Replace,
            _ => Action::Update,
        };
        let (diff, added, removed) = unified(&skey, &old, &new);
        let replace_reason = match (before, after) {
            (Some(a), Some(b)) => immutable_change(a, b).map(|f| format!("{f} cannot be changed in place")),
            _ => None,
        };
        let drift = up.drift.iter().any(|d| d.key == *k);
        objects.push(ObjectChange { key: skey, action, diff, added, removed, replace_reason, drift });
    }
    // Unchanged secret fields of changed objects are already paired; for a no-op nothing is listed.
    let mut list: Vec<SecretFingerprint> = up.secret_values;
    for (_, mut s) in secrets {
        s.status = match (&s.before, &s.after) {
            (None, Some(_)) => SecretStatus::Added,
            (Some(_), None) => SecretStatus::Removed,
            (Some(a), Some(b)) if a == b => SecretStatus::Unchanged,
            _ => SecretStatus::Changed,
        };
        list.push(s);
    }
    PlannedAction {
        unit: id.to_string(),
        apply: ApplyFields {
            action: up.action,
            observed: up.observed,
            desired_hash: if up.action == Action::Delete { None } else { desired_hash.cloned() },
            depends_on: deps,
            secrets: list,
            release: None,
            payload: None,
            drift: up.drift,
        },
        explain: Explanation { reason: up.reason, objects },
    }
}

fn blank(key: &str, field: &str) -> SecretFingerprint {
    SecretFingerprint { name: format!("{key} {field}"), source: None, before: None, after: None, status: SecretStatus::Unchanged }
}

/// Unified diff with 3 lines of context, and the counts of added and removed lines.
pub fn unified(key: &str, old: &str, new: &str) -> (String, usize, usize) {
    let d = similar::TextDiff::from_lines(old, new);
    let (mut added, mut removed) = (0, 0);
    for op in d.ops() {
        for c in d.iter_changes(op) {
            match c.tag() {
                similar::ChangeTag::Insert => added += 1,
                similar::ChangeTag::Delete => removed += 1,
                similar::ChangeTag::Equal => {}
            }
        }
    }
    let text = d.unified_diff().context_radius(3).header(&format!("a/{key}"), &format!("b/{key}")).missing_newline_hint(false).to_string();
    (text, added, removed)
}
