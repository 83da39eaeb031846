//! The plan file as the contract between review and execution (docs/adr/0013): what `apply`
//! needs to write each action is in the plan ([`Payload`]s, the charts by digest, the targets),
//! the identity covers all of it, and a seal under the fingerprint key makes an edited and
//! re-hashed file fail to verify. Pure: the caller loads charts and reads servers.

use std::collections::BTreeMap;

use base64::Engine as _;
use harmony_compiler::{CompiledRepo, UnitContent};
use harmony_schemas::plan::*;

use crate::redact::FingerprintKey;

/// What [`complete`] needs besides the plan and the repository.
#[derive(Debug, Clone, Default)]
pub struct ContractInputs {
    /// The chart of each release unit the plan rendered, by unit id.
    pub charts: BTreeMap<String, ChartArchive>,
    /// The API server URL each cluster's context led to when planning, by cluster name.
    pub servers: BTreeMap<String, String>,
    /// The device plans apply would write (unsigned, generation set, agent artifact named),
    /// by unit id.
    pub device_plans: BTreeMap<String, harmony_schemas::fleet::DevicePlan>,
    /// The phased rollouts apply runs, per fleet.
    pub rollouts: Vec<PlannedRollout>,
}

/// A chart's files as a plan stores them.
pub fn chart_archive(files: &[harmony_helm::chart::File]) -> ChartArchive {
    let b64 = base64::engine::general_purpose::STANDARD;
    ChartArchive { files: files.iter().map(|f| ChartFile { name: f.name.clone(), data: b64.encode(&f.data) }).collect() }
}

/// The chart a plan stores, loaded in memory (Helm's size limits apply to what is decoded).
pub fn chart_of(archive: &ChartArchive) -> Result<harmony_helm::Chart, String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut total: u64 = 0;
    let mut files = Vec::with_capacity(archive.files.len());
    for f in &archive.files {
        let data = b64.decode(&f.data).map_err(|e| format!("chart file {}: not base64: {e}", f.name))?;
        let len = data.len() as u64;
        if len > harmony_helm::chart::MAX_FILE_SIZE {
            return Err(format!("chart file {} is larger than the maximum file size {}", f.name, harmony_helm::chart::MAX_FILE_SIZE));
        }
        total = total.saturating_add(len);
        if total > harmony_helm::chart::MAX_CHART_SIZE {
            return Err(format!("the chart is larger than the maximum size {}", harmony_helm::chart::MAX_CHART_SIZE));
        }
        files.push(harmony_helm::chart::File { name: f.name.clone(), data });
    }
    harmony_helm::Chart::from_files(files).map_err(|e| e.to_string())
}

/// `sha256:` over what drives apply: the format version, per action in plan order its unit and
/// [`ApplyFields`] (payloads included, charts by digest), the capabilities releases were
/// rendered against, the repository's name, the targets and the rollouts (apply runs their
/// steps as planned). Explanations, the summary, the filters and the source revision are not
/// part of it (the seal covers them: [`seal`]).
pub fn identity(p: &PlanFile) -> String {
    let drive: Vec<(&str, &ApplyFields)> = p.actions.iter().map(|a| (a.unit.as_str(), &a.apply)).collect();
    let charts: Vec<&String> = p.charts.keys().collect();
    harmony_schemas::encoding::content_hash(&(PLAN_FORMAT_VERSION, drive, &p.capabilities, &p.repository, &p.targets, charts, &p.rollouts))
}

/// The source revision device plans record (`source_revision`): the plan's commit, abbreviated
/// to 12 characters, or `unknown`.
pub fn source_revision(p: &PlanFile) -> String {
    p.source.commit.as_deref().map_or_else(|| "unknown".to_string(), |c| c.chars().take(12).collect())
}

/// Makes a plan applicable: each action's [`Payload`] from the compiled repository, the charts
/// stored once by digest, the repository's name, the targets and the fleets' rollouts, then the
/// identity and the seal. An action without a payload (a no-op, a release whose chart was not rendered) is not
/// written by `apply`; a record-only no-op ([`RECORD_ONLY_REASON`]) has one.
pub fn complete(p: &mut PlanFile, compiled: &CompiledRepo, inputs: &ContractInputs, key: &FingerprintKey) {
    p.rollouts = inputs.rollouts.clone();
    let by_id: BTreeMap<&str, &harmony_compiler::Unit> = compiled.units.values().map(|u| (u.id.as_str(), u)).collect();
    let context_of = |cluster: &str| compiled.clusters.iter().find(|(n, _)| n.as_str() == cluster).map_or_else(|| cluster.to_string(), |(_, c)| c.context.clone());
    // The tenant whose access covers a namespace of a cluster (for uninstalling a release that
    // left the repository as the tenant that installed it).
    let tenant_user = |cluster: &str, ns: &str| {
        compiled.units.values().find_map(|u| match &u.content {
            UnitContent::TenantAccess(t) if t.cluster.as_str() == cluster && t.namespaces.iter().any(|n| n.as_str() == ns) => {
                Some(t.service_account.username())
            }
            _ => None,
        })
    };
    let source_revision = source_revision(p);
    let mut charts = BTreeMap::new();
    for a in &mut p.actions {
        a.apply.payload = None;
        // A no-op writes nothing, except a release whose values changed without changing its
        // objects: apply records the new values in a new revision, as Helm's upgrade would.
        if a.apply.action == Action::Noop && a.explain.reason != RECORD_ONLY_REASON {
            continue;
        }
        let parts: Vec<&str> = a.unit.split('/').collect();
        let payload = match (a.apply.action, by_id.get(a.unit.as_str()).map(|u| (&u.content, u.hash.as_str()))) {
            (Action::Delete, _) => match parts.as_slice() {
                ["release", cluster, ns, name] => Some(Payload::ReleaseDelete(ReleaseTarget {
                    cluster: cluster.to_string(),
                    context: context_of(cluster),
                    namespace: ns.to_string(),
                    name: name.to_string(),
                    impersonate: tenant_user(cluster, ns),
                })),
                ["tenant-access", tenant, cluster] => {
                    Some(Payload::TenantAccessDelete(TenantTarget { cluster: cluster.to_string(), context: context_of(cluster), tenant: tenant.to_string() }))
                }
                ["device-plan", fleet, device] => Some(Payload::DevicePlanDelete(DeviceTarget { fleet: fleet.to_string(), device: device.to_string() })),
                _ => None,
            },
            // Drift of a release that was not rendered (its unit did not change): the deployed
            // revision's objects are re-applied, nothing is rendered.
            (_, Some((UnitContent::Release(r), _))) if !a.apply.drift.is_empty() && !inputs.charts.contains_key(a.unit.as_str()) => Some(Payload::ReleaseRepair(ReleaseTarget {
                cluster: r.cluster.to_string(),
                context: r.context.clone(),
                namespace: r.namespace.to_string(),
                name: r.name.as_str().to_string(),
                impersonate: Some(r.impersonate.username()),
            })),
            (_, Some((UnitContent::Release(r), hash))) => inputs.charts.get(a.unit.as_str()).map(|chart| {
                let digest = chart.digest();
                charts.insert(digest.clone(), chart.clone());
                Payload::Release(ReleasePayload {
                    target: ReleaseTarget {
                        cluster: r.cluster.to_string(),
                        context: r.context.clone(),
                        namespace: r.namespace.to_string(),
                        name: r.name.as_str().to_string(),
                        impersonate: Some(r.impersonate.username()),
                    },
                    tenant: r.tenant.to_string(),
                    chart: digest,
                    values: r.values.clone(),
                    secret_values: r
                        .secrets
                        .iter()
                        .map(|s| SecretValueRef { key: s.key.clone(), from: s.from.to_string() })
                        .collect(),
                    unit_hash: hash.to_string(),
                })
            }),
            // An agent upgrade is written by the device's plan (its version and artifact).
            (_, Some((UnitContent::Agent(ag), _))) => {
                let plan_unit = format!("device-plan/{}/{}", ag.fleet, ag.device);
                inputs.device_plans.get(&plan_unit).filter(|p| p.agent_version == ag.version).map(|_| {
                    Payload::Agent(DeviceTarget { fleet: ag.fleet.to_string(), device: ag.device.to_string() })
                })
            }
            (_, Some((UnitContent::DevicePlan(d), _))) => inputs.device_plans.get(a.unit.as_str()).map(|plan| {
                let mut plan = plan.clone();
                plan.source_revision = source_revision.clone();
                Payload::DevicePlan(DevicePlanPayload { target: DeviceTarget { fleet: d.fleet.to_string(), device: d.device.to_string() }, plan })
            }),
            (_, Some((UnitContent::TenantAccess(t), _))) => Some(Payload::TenantAccess(TenantAccessPayload {
                cluster: t.cluster.to_string(),
                context: t.context.clone(),
                tenant: t.tenant.to_string(),
                namespaces: t.namespaces.iter().map(ToString::to_string).collect(),
                service_account: t.service_account.name.to_string(),
                service_account_namespace: t.service_account.namespace.to_string(),
                pod_security: t.pod_security.as_str().to_string(),
            })),
            _ => None,
        };
        a.apply.payload = payload;
    }
    p.charts = charts;
    p.repository = compiled.settings.name.clone();
    p.targets = PlanTargets {
        clusters: compiled
            .clusters
            .iter()
            .map(|(n, c)| (n.to_string(), ClusterTarget { context: c.context.clone(), server: inputs.servers.get(n.as_str()).cloned() }))
            .collect(),
        fleets: compiled.fleets.iter().map(|(n, f)| (n.to_string(), FleetTarget { nats: f.nats.clone(), signing_key: f.signing_key.clone(), storage: f.storage.clone() })).collect(),
    };
    p.identity = identity(p);
    seal(p, key);
}

/// `sha256:` over the whole plan file but its seal, the identity included: what the seal covers,
/// so that what a reviewer reads (explanations and their object diffs, the summary, the filters,
/// the source revision, the observed state) cannot be edited without the key either. `None` if
/// the plan cannot be serialised (no plan Harmony makes).
fn sealed_digest(p: &PlanFile) -> Option<String> {
    let mut v = serde_json::to_value(p).ok()?;
    v.as_object_mut()?.remove("seal");
    Some(harmony_schemas::encoding::content_hash(&v))
}

/// Seals a plan whose identity is set: the HMAC under the fingerprint key of the whole file but
/// the seal (`hmac-sha256:<hex>`).
pub fn seal(p: &mut PlanFile, key: &FingerprintKey) {
    p.seal = sealed_digest(p).map(|d| key.seal(&d));
}

/// Why a plan file is refused before anything is written.
#[derive(Debug, thiserror::Error)]
#[error("plan refused, nothing written: {0}")]
pub struct Refused(pub String);

/// Checks a loaded plan before anything is written: made with this fingerprint key, its
/// identity recomputed from its content, its seal over the whole file (explanations included),
/// its charts' digests, and the repository's
/// name when the applier names one. The message names what differs.
pub fn verify(p: &PlanFile, key: &FingerprintKey, repository: Option<&str>) -> Result<(), Refused> {
    if let ObservedSource::Revision { base, .. } = &p.observed {
        return Err(Refused(format!("this plan compares the repository with revision {base} (`harmony diff`): it was not planned against the targets and cannot be applied")));
    }
    if p.fingerprint_key_id != key.id() {
        return Err(Refused(format!(
            "the plan was made with fingerprint key {} and this apply has key {}: apply with the key the plan was made with (--fingerprint-key FILE)",
            p.fingerprint_key_id,
            key.id()
        )));
    }
    let recomputed = identity(p);
    if recomputed != p.identity {
        return Err(Refused(format!(
            "the plan's identity {} does not match its content ({recomputed}): the file was edited after planning",
            p.identity
        )));
    }
    // Named before the seal (which covers the charts' files too): the message says which.
    for (digest, chart) in &p.charts {
        let found = chart.digest();
        if &found != digest {
            return Err(Refused(format!("chart {digest}: its files hash to {found}: the file was edited after planning")));
        }
    }
    match &p.seal {
        None => return Err(Refused("the plan has no seal: it was not made by `harmony plan --out` and cannot be applied".into())),
        Some(s) if !sealed_digest(p).is_some_and(|d| key.verify_seal(&d, s)) => {
            return Err(Refused(
                "the plan's seal does not verify under the fingerprint key: the file was edited after planning (its explanation, summary, filters or source, or its content with the identity recomputed)".into(),
            ));
        }
        Some(_) => {}
    }
    for a in &p.actions {
        if let Some(Payload::Release(r)) = &a.apply.payload
            && !p.charts.contains_key(&r.chart)
        {
            return Err(Refused(format!("{}: chart {} is not in the plan", a.unit, r.chart)));
        }
    }
    if let (Some(planned), Some(here)) = (p.repository.as_deref(), repository)
        && planned != here
    {
        return Err(Refused(format!("the plan is for repository {planned}, not for repository {here}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(key: &FingerprintKey) -> PlanFile {
        let mut p = PlanFile {
            kind: PLAN_FILE_KIND.into(),
            format_version: PLAN_FORMAT_VERSION,
            source: SourceRevision::default(),
            observed: ObservedSource::None,
            identity: String::new(),
            fingerprint_key_id: key.id(),
            filters: Filters::default(),
            summary: Summary::default(),
            capabilities: BTreeMap::new(),
            actions: vec![PlannedAction {
                unit: "tenant-access/acme/prod".into(),
                apply: ApplyFields {
                    action: Action::Create,
                    observed: None,
                    desired_hash: Some("sha256:00".into()),
                    depends_on: vec![],
                    secrets: vec![],
                    release: None,
                    drift: vec![],
                    payload: Some(Payload::TenantAccess(TenantAccessPayload {
                        cluster: "prod".into(),
                        context: "prod".into(),
                        tenant: "acme".into(),
                        namespaces: vec!["acme-prod".into()],
                        service_account: "deployer".into(),
                        service_account_namespace: "acme-prod".into(),
                        pod_security: "baseline".into(),
                    })),
                },
                explain: Explanation::default(),
            }],
            rollouts: vec![],
            device_drift: vec![],
            repository: Some("contract".into()),
            targets: PlanTargets::default(),
            charts: BTreeMap::from([(String::new(), ChartArchive { files: vec![ChartFile { name: "Chart.yaml".into(), data: "bmFtZTogeAo=".into() }] })]),
            seal: None,
        };
        let chart = p.charts.remove("").unwrap();
        p.charts.insert(chart.digest(), chart);
        p.identity = identity(&p);
        seal(&mut p, &key);
        p
    }

    #[test]
    fn an_edited_plan_is_refused_naming_what_differs() {
        let key = FingerprintKey::from_bytes([7; 32]);
        let p = plan(&key);
        verify(&p, &key, Some("contract")).unwrap();
        verify(&p, &key, None).unwrap();
        // A payload edited, identity not recomputed.
        let mut edited = p.clone();
        let Some(Payload::TenantAccess(t)) = &mut edited.actions[0].apply.payload else { unreachable!() };
        t.namespaces.push("kube-system".into());
        assert!(verify(&edited, &key, None).unwrap_err().0.contains("does not match its content"));
        // … and recomputed: the seal no longer verifies.
        edited.identity = identity(&edited);
        assert!(verify(&edited, &key, None).unwrap_err().0.contains("seal does not verify"));
        // A chart's file edited.
        let mut edited = p.clone();
        edited.charts.values_mut().next().unwrap().files[0].data = "bmFtZTogeQo=".into();
        assert!(verify(&edited, &key, None).unwrap_err().0.contains("hash to"));
        // What only explains it: the identity holds, the seal does not.
        let mut edited = p.clone();
        edited.actions[0].explain.reason = "nothing to see".into();
        assert_eq!(identity(&edited), edited.identity);
        assert!(verify(&edited, &key, None).unwrap_err().0.contains("seal does not verify"));
        let mut edited = p.clone();
        edited.source.commit = Some("0123456789ab".into());
        assert!(verify(&edited, &key, None).unwrap_err().0.contains("seal does not verify"));
        // Another key, another repository.
        let other = FingerprintKey::from_bytes([8; 32]);
        assert!(verify(&p, &other, None).unwrap_err().0.contains("made with fingerprint key"));
        assert!(verify(&p, &key, Some("other")).unwrap_err().0.contains("for repository contract, not for repository other"));
    }
}
