//! The fleet's action list: pure, desired + observed → one [`FleetAction`] per device.

use harmony_compiler::CompiledRepo;
use harmony_schemas::fleet::DevicePlan;
use serde::Serialize;

use super::observe::ObservedFleet;
use super::{DesiredFleet, FleetError, desired_fleet};

/// What apply does to one device's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FleetOp {
    /// Create the key (KV `create`: fails if it exists).
    Create,
    /// Update with the expected revision.
    Update,
    /// Delete the pruned device's entry with the expected revision.
    Delete,
    /// Nothing to write.
    Noop,
}

/// One device's action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FleetAction {
    /// Device id (the key).
    pub device: String,
    /// What to do.
    pub op: FleetOp,
    /// The revision observed when planning (`None` for creates).
    pub expected_revision: Option<u64>,
    /// The plan to sign and write (creates and updates), generation set.
    #[serde(skip)]
    pub plan: Option<DevicePlan>,
    /// Why (for display).
    pub reason: String,
}

/// Content equality: everything but the generation and the source revision (the key chain counts:
/// a rotation re-signs every plan) (a new commit that
/// changes nothing for a device writes nothing).
pub fn same_content(a: &DevicePlan, b: &DevicePlan) -> bool {
    a.version == b.version
        && a.device_id == b.device_id
        && a.fleet == b.fleet
        && a.agent_version == b.agent_version
        && a.deployments == b.deployments
        && a.key_chain == b.key_chain
}

/// Plans every device of `desired` against `observed`, plus deletions of observed devices of the
/// fleet that left the repository. Generation = max(observed plan's, device's applied) + 1 when
/// the content changed; unchanged content (signed by the fleet's key) is a no-op.
pub fn plan_fleet(desired: &DesiredFleet, observed: &ObservedFleet) -> Vec<FleetAction> {
    plan_fleet_owned(desired.clone(), observed)
}

/// [`plan_fleet`], consuming `desired`: the plans to write are moved into the actions, not copied.
pub fn plan_fleet_owned(desired: DesiredFleet, observed: &ObservedFleet) -> Vec<FleetAction> {
    let DesiredFleet { fleet, plans } = desired;
    let mut actions = Vec::with_capacity(plans.len());
    for (device, entry) in &observed.plans {
        let ours = entry.fleet.as_deref() == Some(fleet.as_str());
        if ours && !plans.contains_key(device) {
            actions.push(FleetAction {
                device: device.clone(),
                op: FleetOp::Delete,
                expected_revision: Some(entry.revision),
                plan: None,
                reason: "device left the repository".into(),
            });
        }
    }
    for (device, want) in plans {
        let applied = observed.statuses.get(&device).and_then(|s| s.applied_generation).unwrap_or(0);
        match observed.plans.get(&device) {
            None => {
                let mut plan = want;
                plan.generation = applied + 1;
                actions.push(FleetAction { device, op: FleetOp::Create, expected_revision: None, plan: Some(plan), reason: "new device".into() });
            }
            Some(entry) => {
                if let Some(have) = &entry.plan
                    && same_content(have, &want)
                {
                    actions.push(FleetAction { device, op: FleetOp::Noop, expected_revision: Some(entry.revision), plan: None, reason: "up to date".into() });
                    continue;
                }
                let reason = match &entry.plan {
                    Some(have) if have.agent_version != want.agent_version => format!("agent version {} → {}", have.agent_version, want.agent_version),
                    Some(have) => changed_deployments(have, &want),
                    None => "entry does not verify or decode".into(),
                };
                let mut plan = want;
                plan.generation = entry.generation.unwrap_or(0).max(applied) + 1;
                actions.push(FleetAction { device, op: FleetOp::Update, expected_revision: Some(entry.revision), plan: Some(plan), reason });
            }
        }
    }
    actions.sort_by(|a, b| a.device.cmp(&b.device));
    actions
}

fn changed_deployments(have: &DevicePlan, want: &DevicePlan) -> String {
    let mut changed = Vec::new();
    for d in &want.deployments {
        match have.deployments.iter().find(|h| h.name == d.name) {
            None => changed.push(format!("+{}", d.name)),
            Some(h) if h != d => changed.push(format!("~{}", d.name)),
            Some(_) => {}
        }
    }
    for h in &have.deployments {
        if !want.deployments.iter().any(|d| d.name == h.name) {
            changed.push(format!("-{}", h.name));
        }
    }
    if changed.is_empty() { "content changed".into() } else { format!("deployments {}", changed.join(" ")) }
}

/// [`plan_fleet`] from a compiled repository.
pub fn plan_fleet_compiled(compiled: &CompiledRepo, fleet: &str, source_revision: &str, observed: &ObservedFleet) -> Result<Vec<FleetAction>, FleetError> {
    Ok(plan_fleet(&desired_fleet(compiled, fleet, source_revision)?, observed))
}

/// Counts per op: (create, update, delete, noop).
pub fn summary(actions: &[FleetAction]) -> (usize, usize, usize, usize) {
    let n = |op| actions.iter().filter(|a| a.op == op).count();
    (n(FleetOp::Create), n(FleetOp::Update), n(FleetOp::Delete), n(FleetOp::Noop))
}

#[cfg(test)]
mod tests {
    use super::super::observe::ObservedEntry;
    use super::*;
    use harmony_schemas::fleet::{DeploymentPlan, PROTOCOL_VERSION, SignedDevicePlan, generate_signing_key};

    fn plan(device: &str, gen_: u64, deployments: Vec<DeploymentPlan>) -> DevicePlan {
        DevicePlan {
            agent: None,
            version: PROTOCOL_VERSION,
            device_id: device.into(),
            fleet: "pico".into(),
            generation: gen_,
            source_revision: "r".into(),
            agent_version: "0.1.0".into(),
            deployments,
            key_chain: vec![],
        }
    }

    fn observed_entry(p: &DevicePlan, revision: u64) -> ObservedEntry {
        let key = generate_signing_key().expect("key");
        let signed = SignedDevicePlan::sign(p, &key).expect("sign");
        ObservedEntry { revision, signed: Some(signed), plan: Some(p.clone()), generation: Some(p.generation), fleet: Some(p.fleet.clone()) }
    }

    #[test]
    fn create_update_noop_delete() {
        let web = DeploymentPlan::new("web", "acme", vec![], vec![]);
        let api = DeploymentPlan::new("api", "acme", vec![], vec![]);
        let desired = DesiredFleet {
            fleet: "pico".into(),
            plans: [("a", vec![web.clone()]), ("b", vec![web.clone()]), ("c", vec![api.clone()])]
                .into_iter()
                .map(|(d, ds)| (d.to_string(), plan(d, 0, ds)))
                .collect(),
        };
        let mut observed = ObservedFleet::default();
        let mut b = plan("b", 4, vec![web.clone()]);
        b.source_revision = "older".into();
        observed.plans.insert("b".into(), observed_entry(&b, 10));
        observed.plans.insert("c".into(), observed_entry(&plan("c", 2, vec![web.clone()]), 11));
        observed.plans.insert("gone".into(), observed_entry(&plan("gone", 1, vec![]), 12));
        let mut other = plan("other-fleet", 1, vec![]);
        other.fleet = "elsewhere".into();
        observed.plans.insert("other-fleet".into(), observed_entry(&other, 13));
        observed.statuses.insert(
            "a".into(),
            serde_json::from_value(serde_json::json!({"version":1,"device_id":"a","agent_version":"0.1.0","applied_generation":7,"applied_source_revision":null,"state":"applied","last_error":null,"updated_at_ms":0}))
                .expect("status"),
        );
        let actions = plan_fleet(&desired, &observed);
        let ops: Vec<(&str, FleetOp, Option<u64>, Option<u64>)> =
            actions.iter().map(|a| (a.device.as_str(), a.op, a.expected_revision, a.plan.as_ref().map(|p| p.generation))).collect();
        assert_eq!(
            ops,
            vec![
                ("a", FleetOp::Create, None, Some(8)),
                ("b", FleetOp::Noop, Some(10), None),
                ("c", FleetOp::Update, Some(11), Some(3)),
                ("gone", FleetOp::Delete, Some(12), None),
            ]
        );
        assert_eq!(actions[2].reason, "deployments +api -web");
        assert_eq!(summary(&actions), (1, 1, 1, 1));
    }

    #[test]
    fn undecodable_entry_is_replaced() {
        let desired = DesiredFleet { fleet: "pico".into(), plans: [("a".to_string(), plan("a", 0, vec![]))].into_iter().collect() };
        let mut observed = ObservedFleet::default();
        observed.plans.insert("a".into(), ObservedEntry { revision: 3, signed: None, plan: None, generation: None, fleet: None });
        let actions = plan_fleet(&desired, &observed);
        assert_eq!(actions.len(), 1);
        assert_eq!((actions[0].op, actions[0].expected_revision), (FleetOp::Update, Some(3)));
        assert_eq!(actions[0].plan.as_ref().map(|p| p.generation), Some(1));
    }
}
