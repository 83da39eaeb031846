//! Live observation for `harmony plan`: the clusters' release records and tenant access, and
//! the fleets' device plans in NATS, turned into the planner's [`ObservedState`]. Read-only:
//! nothing is created (not even a missing bucket) and no lock is taken.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use harmony_compiler::{CompiledRepo, UnitContent};
use harmony_executor::fleet::convert::device_plan;
use harmony_executor::fleet::observe::{decode_plans, read_bucket};
use harmony_executor::fleet::plan::same_content;
use harmony_executor::kube::observe::{ClusterObservation, observe_cluster};
use harmony_executor::kube::tenant::Access;
use harmony_executor::kube::{Cluster, KubeError, error_chain};
use harmony_planner::object::Object;
use harmony_planner::observed::ObservedEntry;
use harmony_planner::{ObservedState, Rendered};
use harmony_schemas::fleet::{DevicePlan, PLANS_BUCKET, parse_public_key};
use serde_json::{Value, json};

use crate::apply::NatsArgs;

/// Where live state comes from.
#[derive(Debug, Clone, clap::Args)]
pub struct LiveArgs {
    /// kubeconfig for the repository's clusters (default: `KUBECONFIG`, then `~/.kube/config`).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    #[command(flatten)]
    pub nats: NatsArgs,
}

/// What was observed, and what the planner needs besides: the desired objects of tenant access
/// and the desired wire plans of devices (compared with their live counterparts), by unit id.
pub struct Live {
    pub observed: ObservedState,
    pub desired: Rendered,
    /// `cluster okd-prod`, `fleet pico`: what was read.
    pub targets: Vec<String>,
    /// The phased rollouts `harmony apply` would run, per fleet.
    pub rollouts: Vec<harmony_schemas::plan::PlannedRollout>,
    /// Units of devices the repository declares but that were revoked: apply writes them no
    /// plan, so the plan leaves them out.
    pub revoked_units: Vec<harmony_compiler::compile::UnitId>,
}

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
pub fn observe(compiled: &CompiledRepo, a: &LiveArgs, rt: &tokio::runtime::Runtime) -> anyhow::Result<Live> {
    let mut live = Live { observed: ObservedState::default(), desired: Rendered::new(), targets: Vec::new(), rollouts: Vec::new(), revoked_units: Vec::new() };
    let clusters = rt.block_on(futures::future::join_all(compiled.clusters.iter().map(|(name, info)| async move {
        let r = async {
            let c = Cluster::from_kubeconfig(a.kubeconfig.as_deref(), &info.context).await?;
            if let Err(e) = c.client().apiserver_version().await {
                return Err(KubeError::Unreachable(format!("cannot reach the API server at {}: {}", c.url(), error_chain(&e))));
            }
            let caps = c.capabilities().await?;
            Ok((observe_cluster(&c).await?, caps))
        };
        (name.as_str().to_string(), info.context.clone(), r.await)
    })));
    for (name, context, r) in clusters {
        let (obs, caps) = r.map_err(|e| {
            anyhow::anyhow!("cluster {name} (context {context}): {e}\n  plan without live state with `harmony plan --offline`, or fix the kubeconfig (--kubeconfig, KUBECONFIG)")
        })?;
        for w in &obs.warnings {
            eprintln!("warning: cluster {name}: {w}");
        }
        add_cluster(compiled, &name, &obs, &mut live);
        live.observed.capabilities.insert(name.clone(), caps);
        live.targets.push(format!("cluster {name}"));
    }
    for (fleet, info) in &compiled.fleets {
        let fleet = fleet.as_str();
        let public = parse_public_key(&info.signing_key).map_err(|e| anyhow::anyhow!("fleet `{fleet}` declares an invalid public key: {e}"))?;
        let opts = a.nats.read_options_for_fleet(fleet, &info.nats)?;
        // After a signing-key rotation plans are signed by a newer key and carry the key chain.
        let security = crate::fleet::FleetSecurity::load(&a.nats, fleet, info)?;
        let keys = security.observe_keys(public)?;
        let entries = rt
            .block_on(async {
                let client = harmony_executor::fleet::connect(&opts).await?;
                let js = async_nats::jetstream::new(client.clone());
                let Ok(store) = js.get_key_value(PLANS_BUCKET).await else { return Ok(None) };
                let raw = read_bucket(&client, &store).await?;
                let mut warnings = Vec::new();
                let plans = decode_plans(PLANS_BUCKET, raw, fleet, &keys, &mut warnings);
                // The fleet's rollout record: an unfinished rollout is resumed (or its revert
                // finished) by apply, and the plan says so.
                let record = match js.get_key_value(harmony_schemas::fleet::ROLLOUTS_BUCKET).await {
                    Ok(rollouts) => harmony_executor::fleet::rollout::read_record(&rollouts, fleet).await?.map(|(r, _)| r),
                    Err(_) => None,
                };
                Ok::<_, harmony_executor::fleet::FleetError>(Some((plans, warnings, record)))
            })
            .with_context(|| format!("fleet {fleet}: reading its device plans\n  plan without live state with `harmony plan --offline`, or pass --nats-url"))?;
        if let Some((plans, warnings, record)) = entries {
            for w in warnings {
                eprintln!("warning: {w}");
            }
            add_fleet(compiled, fleet, &plans, &security, &mut live);
            if let Some(r) = rollout(compiled, fleet, plans, &security, record.as_ref()) {
                live.rollouts.push(r);
            }
        }
        live.targets.push(format!("fleet {fleet}"));
    }
    Ok(live)
}

fn add_cluster(compiled: &CompiledRepo, cluster: &str, obs: &ClusterObservation, live: &mut Live) {
    let mut ours = std::collections::BTreeSet::new();
    let mut tenants = std::collections::BTreeSet::new();
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

/// The rollout `harmony apply` would run for `fleet` against its observed plans and its rollout
/// record (a new one, or an unfinished one it continues).
fn rollout(
    compiled: &CompiledRepo,
    fleet: &str,
    plans: BTreeMap<String, harmony_executor::fleet::ObservedEntry>,
    security: &crate::fleet::FleetSecurity,
    record: Option<&harmony_schemas::fleet::RolloutRecord>,
) -> Option<harmony_schemas::plan::PlannedRollout> {
    let mut desired = harmony_executor::fleet::desired_fleet(compiled, fleet, "").ok()?;
    // As apply: revoked devices get no plan, so no step either.
    desired.plans.retain(|device, _| !security.is_revoked(device));
    let specs = harmony_executor::fleet::rollout::rollout_specs(compiled, fleet);
    let observed = harmony_executor::fleet::ObservedFleet { plans, ..Default::default() };
    harmony_executor::fleet::rollout::plan_rollout(&desired, &specs, &observed, record).map(|r| r.planned(fleet, record))
}

fn add_fleet(
    compiled: &CompiledRepo,
    fleet: &str,
    plans: &BTreeMap<String, harmony_executor::fleet::ObservedEntry>,
    security: &crate::fleet::FleetSecurity,
    live: &mut Live,
) {
    let mut ours = std::collections::BTreeSet::new();
    for u in compiled.units.values() {
        let id = u.id.as_str().to_string();
        match &u.content {
            UnitContent::DevicePlan(p) if p.fleet.as_str() == fleet => {
                let device = p.device.as_str();
                if security.is_revoked(device) {
                    // As apply: no plan for it (a leftover entry is deleted), no agent upgrade.
                    crate::fleet::warn_revoked_declared(fleet, device);
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
