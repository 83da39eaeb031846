//! Live observation for `harmony plan`: the clusters' release records and tenant access, and
//! the fleets' device plans in NATS, turned into the planner's [`ObservedState`]. Read-only:
//! nothing is created (not even a missing bucket) and no lock is taken.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use harmony_compiler::compile::UnitId;
use harmony_compiler::{CompiledRepo, UnitContent};
use harmony_planner::object::Object;
use harmony_planner::observed::ObservedEntry;
use harmony_planner::{ObservedState, Rendered};
use harmony_schemas::fleet::{DevicePlan, parse_public_key};
use harmony_schemas::plan::{DeviceDrift, PlannedRollout};
use serde_json::{Value, json};

use crate::fleet::convert::device_plan;
use crate::fleet::plan::same_content;
use crate::fleet::security::{FleetSecurity, revoked_declared};
use crate::fleet::{FleetError, NatsOptions};
use crate::kube::observe::{ClusterObservation, observe_cluster};
use crate::kube::tenant::Access;
use crate::kube::{Cluster, KubeError, error_chain};

/// Where live state comes from.
pub struct LiveOptions<'a> {
    /// kubeconfig for the repository's clusters (default: `KUBECONFIG`, then `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
    /// The operator's auth directory: the fleets' key chains and revocations.
    pub auth_dir: Option<PathBuf>,
    /// Connection options for reading a fleet (its name, its declared NATS URLs); an error is
    /// reported as it is.
    pub read_options: &'a dyn Fn(&str, &[String]) -> Result<NatsOptions, String>,
}

/// What was observed, and what the planner needs besides: the desired objects of tenant access
/// and the desired wire plans of devices (compared with their live counterparts), by unit id.
pub struct Live {
    /// The observed state.
    pub observed: ObservedState,
    /// Desired objects that are not rendered releases (tenant access, device plans).
    pub desired: Rendered,
    /// `cluster okd-prod`, `fleet pico`: what was read.
    pub targets: Vec<String>,
    /// The API server URL each cluster's context led to, by cluster name (recorded in the plan:
    /// `apply PLANFILE` refuses a context that now leads elsewhere).
    pub servers: std::collections::BTreeMap<String, String>,
    /// The device plans `harmony apply` would write (unsigned, generation set), by unit id, for
    /// the plan file ([`planned_device_plans`]).
    pub device_plans: std::collections::BTreeMap<String, DevicePlan>,
    /// The phased rollouts `harmony apply` would run, per fleet.
    pub rollouts: Vec<PlannedRollout>,
    /// The repository's devices whose latest status reports drift (shown by the plan, no action).
    pub device_drift: Vec<DeviceDrift>,
    /// Units of devices the repository declares but that were revoked: apply writes them no
    /// plan, so the plan leaves them out.
    pub revoked_units: Vec<UnitId>,
    /// Warnings for the operator, in the order they arose (without a `warning: ` prefix).
    pub warnings: Vec<String>,
}

/// A target that could not be read, and the warnings gathered before.
#[derive(Debug)]
pub struct LiveError {
    /// What failed, naming the target and what to do.
    pub message: String,
    /// Warnings that arose before the failure (without a `warning: ` prefix).
    pub warnings: Vec<String>,
}

impl std::fmt::Display for LiveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for LiveError {}

/// A device plan without what changes on every write (generation, source revision): the part
/// a plan diff is about.
fn comparable(p: &DevicePlan) -> Value {
    let mut v = serde_json::to_value(p).unwrap_or(Value::Null);
    if let Some(m) = v.as_object_mut() {
        m.remove("generation");
        m.remove("source_revision");
    }
    v
}

/// Observes every cluster and fleet the repository declares. Any target that cannot be read is
/// an error naming it: a plan against half the state would be wrong, not partial.
pub async fn observe(compiled: &CompiledRepo, a: &LiveOptions<'_>) -> Result<Live, LiveError> {
    let mut live = Live {
        observed: ObservedState::default(),
        desired: Rendered::new(),
        targets: Vec::new(),
        servers: Default::default(),
        device_plans: Default::default(),
        rollouts: Vec::new(),
        device_drift: Vec::new(),
        revoked_units: Vec::new(),
        warnings: Vec::new(),
    };
    match observe_into(compiled, a, &mut live).await {
        Ok(()) => Ok(live),
        Err(message) => Err(LiveError { message, warnings: live.warnings }),
    }
}

async fn observe_into(compiled: &CompiledRepo, a: &LiveOptions<'_>, live: &mut Live) -> Result<(), String> {
    let clusters = futures::future::join_all(compiled.clusters.iter().map(|(name, info)| async move {
        let r = async {
            let c = Cluster::from_kubeconfig(a.kubeconfig.as_deref(), &info.context).await?;
            if let Err(e) = c.client().apiserver_version().await {
                return Err(KubeError::Unreachable(format!("cannot reach the API server at {}: {}", c.url(), error_chain(&e))));
            }
            let caps = c.capabilities().await?;
            Ok((observe_cluster(&c).await?, caps, c.url()))
        };
        (name.as_str().to_string(), info.context.clone(), r.await)
    }))
    .await;
    for (name, context, r) in clusters {
        let (obs, caps, server) = r.map_err(|e| {
            format!("cluster {name} (context {context}): {e}\n  plan without live state with `harmony plan --offline`, or fix the kubeconfig (--kubeconfig, KUBECONFIG)")
        })?;
        for w in &obs.warnings {
            live.warnings.push(format!("cluster {name}: {w}"));
        }
        add_cluster(compiled, &name, &obs, live);
        live.observed.capabilities.insert(name.clone(), caps);
        live.targets.push(format!("cluster {name}"));
        live.servers.insert(name.clone(), server);
    }
    for (fleet, info) in &compiled.fleets {
        let fleet = fleet.as_str();
        let public = parse_public_key(&info.signing_key).map_err(|e| format!("fleet `{fleet}` declares an invalid public key: {e}"))?;
        let opts = (a.read_options)(fleet, &info.nats)?;
        // After a signing-key rotation plans are signed by a newer key and carry the key chain.
        let security = FleetSecurity::load(a.auth_dir.as_deref(), fleet, info).map_err(|e| e.to_string())?;
        let keys = security.observe_keys(public).map_err(|e| e.to_string())?;
        let own = security.current_key(public).map_err(|e| e.to_string())?;
        let mut desired = crate::fleet::desired_fleet(compiled, fleet, "").map_err(|e| e.to_string())?;
        let _revoked_warned_by_add_fleet = security.apply_to(&mut desired);
        let specs = crate::fleet::rollout::rollout_specs(compiled, fleet);
        // What the fleet runner reads before planning, read-only (a missing bucket reads as
        // empty): the buckets, the published agents, the rollout record.
        let read = async {
            let client = crate::fleet::connect(&opts).await?;
            let js = async_nats::jetstream::new(client.clone());
            let versions: BTreeSet<String> = desired.plans.values().map(|p| p.agent_version.clone()).collect();
            let own = [own];
            let (observed, published, record, drift) = tokio::try_join!(
                crate::fleet::observe::observe_all(&client, fleet, &keys),
                crate::fleet::agents::lookup_agents(&js, versions.iter().map(String::as_str), &own),
                crate::fleet::rollout::observe_record(&client, fleet),
                crate::fleet::connect::storage_drift(&js, &info.storage),
            )?;
            Ok::<_, FleetError>((client, observed, published, record, drift))
        }
        .await
        .map_err(|e| format!("fleet {fleet}: reading its device plans\n  plan without live state with `harmony plan --offline`, or pass --nats-url: {e}"))?;
        let (client, mut observed, published, record, drift) = read;
        // A bucket whose replicas or placement differ from the fleet's: said, never changed.
        live.warnings.extend(drift.into_iter().map(|d| format!("fleet {fleet}: {d}")));
        add_fleet(compiled, fleet, &observed.plans, &security, live);
        live.device_drift.extend(device_drift(fleet, &desired, &observed));
        // Planned as the fleet runner plans it (one implementation: generations, agents, rollout).
        let shown = crate::fleet::rollout::plan_rollout(&desired, &specs, &observed, record.as_ref().map(|(r, _)| r));
        match crate::fleet::run::plan_observed(&client, &mut observed, desired, &published, &specs, record.as_ref().map(|(r, _)| r), &keys).await {
            Ok((actions, rollout)) => {
                for a in actions {
                    // A suspect applied generation the device reports (docs/security.md): said
                    // with the write it affects, as the fleet runner's reason says it.
                    let judged = crate::fleet::plan::judge_applied(
                        crate::fleet::plan::newest_signed(&observed, &a.device),
                        crate::fleet::plan::reported_applied(&observed, &a.device),
                    );
                    if let (Some(flag), Some(_)) = (judged.flag, &a.plan) {
                        live.warnings.push(format!("fleet {fleet}: device {}: {flag}", a.device));
                    }
                    if let Some(p) = a.plan {
                        live.device_plans.insert(format!("device-plan/{fleet}/{}", a.device), p);
                    }
                }
                if let Some(r) = rollout {
                    live.rollouts.push(r.planned(fleet, record.as_ref()));
                }
            }
            Err(e @ FleetError::AgentNotPublished { .. }) => {
                // Shown, but nothing the plan could write: `apply PLANFILE` refuses it.
                live.warnings.push(format!("{e}; until then this plan cannot be applied"));
                live.rollouts.extend(shown.map(|r| r.planned(fleet, record.as_ref())));
            }
            Err(e) => return Err(format!("fleet {fleet}: {e}")),
        }
        // After planning: reading the key's history adds warnings (a report of a generation
        // Harmony never signed, ignored).
        live.warnings.extend(observed.warnings.iter().map(|w| w.to_string()));
        live.targets.push(format!("fleet {fleet}"));
    }
    Ok(())
}

/// The drift the latest status of each of `desired`'s devices reports (bounded as a status is:
/// at most [`harmony_schemas::fleet::MAX_DRIFT`] findings, each text cut to 512 bytes).
fn device_drift(fleet: &str, desired: &crate::fleet::DesiredFleet, observed: &crate::fleet::observe::ObservedFleet) -> Vec<DeviceDrift> {
    desired
        .plans
        .keys()
        .filter_map(|device| {
            let s = observed.statuses.get(device).filter(|s| !s.drift.is_empty())?;
            let drift = harmony_schemas::fleet::bounded_drift(s.drift.clone());
            Some(DeviceDrift { fleet: fleet.to_string(), device: device.clone(), drift })
        })
        .collect()
}

fn add_cluster(compiled: &CompiledRepo, cluster: &str, obs: &ClusterObservation, live: &mut Live) {
    let mut ours = BTreeSet::new();
    let mut tenants = BTreeSet::new();
    for u in compiled.units.values() {
        let id = u.id.as_str().to_string();
        match &u.content {
            UnitContent::Release(r) if r.cluster.as_str() == cluster => {
                let key = (r.namespace.to_string(), r.name.as_str().to_string());
                if let Some(l) = obs.releases.get(&key) {
                    let mut o = l.observed.clone();
                    o.secret_values = r.secrets.iter().filter_map(|s| l.value_at(&s.key).map(|v| (s.key.clone(), v.to_string()))).collect();
                    live.observed.releases.insert(id, o);
                }
                ours.insert(key);
            }
            UnitContent::TenantAccess(t) if t.cluster.as_str() == cluster => {
                tenants.insert(t.tenant.as_str());
                let access = Access::from_unit(t);
                if let Some(o) = obs.observed_access(&access, &u.hash) {
                    live.observed.tenant_access.insert(id.clone(), o);
                }
                let objects = access.objects().into_iter().map(|v| Object::new(v, "default", &id)).collect();
                live.desired.insert(id, objects);
            }
            _ => {}
        }
    }
    // What Harmony applied that left the repository: releases it wrote, tenants it granted.
    let gone = obs.leftovers(cluster, &ours, &tenants);
    for ((ns, name), l) in gone.releases {
        live.observed.releases.insert(format!("release/{cluster}/{ns}/{name}"), l.observed.clone());
    }
    for tenant in gone.tenants {
        if let Some(o) = obs.observed_leftover(tenant) {
            live.observed.tenant_access.insert(format!("tenant-access/{tenant}/{cluster}"), o);
        }
    }
}

fn add_fleet(compiled: &CompiledRepo, fleet: &str, plans: &BTreeMap<String, crate::fleet::ObservedEntry>, security: &FleetSecurity, live: &mut Live) {
    let mut ours = BTreeSet::new();
    for u in compiled.units.values() {
        let id = u.id.as_str().to_string();
        match &u.content {
            UnitContent::DevicePlan(p) if p.fleet.as_str() == fleet => {
                let device = p.device.as_str();
                if security.is_revoked(device) {
                    // As apply: no plan for it (a leftover entry is deleted), no agent upgrade.
                    live.warnings.push(revoked_declared(fleet, device));
                    live.revoked_units.push(u.id.clone());
                    live.revoked_units.extend(u.deps.iter().cloned());
                    continue;
                }
                ours.insert(device.to_string());
                let mut want = device_plan(p, 0, "");
                security.set_chain(&mut want);
                live.desired.insert(id.clone(), vec![Object { key: id.clone(), value: comparable(&want), derived: Vec::new() }]);
                let Some(e) = plans.get(device) else { continue };
                let same = e.plan.as_ref().is_some_and(|have| same_content(have, &want));
                let hash = if same { u.hash.clone() } else { format!("live:revision-{}", e.revision) };
                let content = e.plan.as_ref().map(comparable).or_else(|| Some(json!({"unverified": "the entry does not verify or decode"})));
                live.observed.device_plans.insert(id, ObservedEntry { revision: e.revision, hash, content });
            }
            UnitContent::Agent(ag) if ag.fleet.as_str() == fleet && !security.is_revoked(ag.device.as_str()) => {
                let Some(e) = plans.get(ag.device.as_str()) else { continue };
                let version = e.plan.as_ref().map(|p| p.agent_version.clone());
                let hash = if version.as_deref() == Some(ag.version.as_str()) { u.hash.clone() } else { format!("live:revision-{}", e.revision) };
                let content = Some(json!({"fleet": fleet, "device": ag.device.as_str(), "version": version}));
                live.observed.agents.insert(id, ObservedEntry { revision: e.revision, hash, content });
            }
            _ => {}
        }
    }
    for (device, e) in plans {
        if !ours.contains(device) && e.fleet.as_deref() == Some(fleet) {
            let content = e.plan.as_ref().map(comparable);
            live.observed
                .device_plans
                .insert(format!("device-plan/{fleet}/{device}"), ObservedEntry { revision: e.revision, hash: "live:leftover".into(), content });
        }
    }
}
