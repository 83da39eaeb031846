//! The fleet's action list: pure, desired + observed → one [`FleetAction`] per device.

use harmony_compiler::CompiledRepo;
use harmony_schemas::fleet::DevicePlan;
use serde::Serialize;

use super::observe::ObservedFleet;
use super::{DesiredFleet, FleetError, desired_fleet};

/// The largest generation Harmony signs: 2^53 − 1, the largest integer every JSON reader keeps
/// exact. One generation per change, a million changes a day, lasts 24 million years; anything
/// near it is a forgery or a lie.
pub const MAX_GENERATION: u64 = (1 << 53) - 1;

/// The newest generation Harmony signed for `device`, as far as the plans bucket shows: its
/// entry's, if that verifies, or the newest verified one of the key's history when it was read
/// ([`ObservedFleet::signed_history`]). Unverified entries never count.
pub fn newest_signed(observed: &ObservedFleet, device: &str) -> Option<u64> {
    observed.plans.get(device).and_then(|e| e.generation()).max(observed.signed_history.get(device).copied())
}

/// The applied generation `device` reports: its status's (or, from an agent that lost its state
/// file, the floor it refuses to go below: the next plan must be above it), or its heartbeat's.
/// Written by the device (or anyone with the bucket's write permission): judged with
/// [`judge_applied`] before use.
pub fn reported_applied(observed: &ObservedFleet, device: &str) -> Option<u64> {
    observed.statuses.get(device).and_then(|s| s.applied_generation.max(s.generation_floor)).or_else(|| observed.heartbeats.get(device).and_then(|(h, _)| h.applied_generation))
}

/// Whether the key's history must be read to judge `device` ([`newest_signed`]): its entry does
/// not verify, or it reports an applied generation above the entry's (a replayed older plan, a
/// forged entry, or a lie).
pub fn needs_history(observed: &ObservedFleet, device: &str) -> bool {
    let entry = observed.plans.get(device);
    let current = entry.and_then(|e| e.generation());
    entry.is_some_and(|e| e.plan.is_none()) || reported_applied(observed, device).is_some_and(|r| Some(r) > current)
}

/// How far above the newest generation Harmony signed for a device its reported applied
/// generation is still believed (and flagged): a device that applied plans signed with a key the
/// fleet does not trust (one planted with a stolen key) still gets newer plans.
pub const MAX_UNSIGNED_AHEAD: u64 = 1000;

/// A device's reported applied generation, judged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AppliedJudgement {
    /// The generation believed (`None`: none reported, or ignored).
    pub believed: Option<u64>,
    /// Why the report is suspect (believed or not): shown by apply and `harmony status`.
    pub flag: Option<String>,
}

/// The rule for a device's reported applied generation. An agent applies only plans signed
/// with keys it trusts, so a report above the newest generation Harmony signed for it
/// ([`newest_signed`]) is a lie (a compromised device, a forged status) or the sign of a plan
/// signed with another key: it is always flagged, believed when at most
/// [`MAX_UNSIGNED_AHEAD`] above, and ignored beyond. With no signed generation on record (a new
/// device, a deleted entry, a lost bucket) the report is believed below [`MAX_GENERATION`].
/// A lie therefore moves a device's generations by at most [`MAX_UNSIGNED_AHEAD`] per apply,
/// never past [`MAX_GENERATION`].
pub fn judge_applied(newest_signed: Option<u64>, reported: Option<u64>) -> AppliedJudgement {
    let flagged = |believed: Option<u64>, why: String| AppliedJudgement { believed, flag: Some(why) };
    match (reported, newest_signed) {
        (None, _) => AppliedJudgement::default(),
        (Some(r), Some(v)) if r > v && r - v <= MAX_UNSIGNED_AHEAD => flagged(
            Some(r),
            format!(
                "applied generation {r} is above generation {v}, the newest plan Harmony signed for it (a plan signed with another key?): believed, within {MAX_UNSIGNED_AHEAD}"
            ),
        ),
        (Some(r), Some(v)) if r > v => flagged(
            None,
            format!("applied generation {r} ignored: above generation {v}, the newest plan Harmony signed for it, by more than {MAX_UNSIGNED_AHEAD}"),
        ),
        (Some(r), None) if r >= MAX_GENERATION => flagged(
            None,
            format!(
                "applied generation {r} ignored: no plan Harmony signed for it is on record, and it is not below {MAX_GENERATION}, the largest generation Harmony signs"
            ),
        ),
        (Some(r), _) => AppliedJudgement { believed: Some(r), flag: None },
    }
}

/// The generation of `device`'s next plan: one above the newest Harmony signed and the applied
/// one believed, checked: never above [`MAX_GENERATION`], never wrapping.
pub fn next_generation(device: &str, newest_signed: Option<u64>, believed_applied: Option<u64>) -> Result<u64, FleetError> {
    let base = newest_signed.unwrap_or(0).max(believed_applied.unwrap_or(0));
    base.checked_add(1).filter(|g| *g <= MAX_GENERATION).ok_or_else(|| FleetError::Generation {
        device: device.to_string(),
        detail: format!(
            "its generation is {base}, and Harmony signs no generation above {MAX_GENERATION}: the agent will take no newer plan; re-enrol the device (a new state directory) to start again from 1"
        ),
    })
}

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
/// fleet that left the repository. When the content changed, the generation is
/// [`next_generation`] of the newest Harmony signed ([`newest_signed`]) and the device's applied
/// one ([`judge_applied`]: a suspect report is said in the action's reason, an absurd one ignored);
/// unchanged content (signed by the fleet's key) is a no-op. Fails only when a device's
/// generations are exhausted.
pub fn plan_fleet(desired: &DesiredFleet, observed: &ObservedFleet) -> Result<Vec<FleetAction>, FleetError> {
    plan_fleet_owned(desired.clone(), observed)
}

/// [`plan_fleet`], consuming `desired`: the plans to write are moved into the actions, not copied.
pub fn plan_fleet_owned(desired: DesiredFleet, observed: &ObservedFleet) -> Result<Vec<FleetAction>, FleetError> {
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
        let newest = newest_signed(observed, &device);
        let applied = judge_applied(newest, reported_applied(observed, &device));
        let with_flag = |reason: String| match &applied.flag {
            Some(why) => format!("{reason}; {why}"),
            None => reason,
        };
        match observed.plans.get(&device) {
            None => {
                let mut plan = want;
                plan.generation = next_generation(&device, newest, applied.believed)?;
                actions.push(FleetAction { device, op: FleetOp::Create, expected_revision: None, plan: Some(plan), reason: with_flag("new device".into()) });
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
                plan.generation = next_generation(&device, newest, applied.believed)?;
                actions.push(FleetAction { device, op: FleetOp::Update, expected_revision: Some(entry.revision), plan: Some(plan), reason: with_flag(reason) });
            }
        }
    }
    actions.sort_by(|a, b| a.device.cmp(&b.device));
    Ok(actions)
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
    plan_fleet(&desired_fleet(compiled, fleet, source_revision)?, observed)
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
        ObservedEntry { revision, signed: Some(signed), plan: Some(p.clone()), fleet: Some(p.fleet.clone()), digest: String::new() }
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
        let actions = plan_fleet(&desired, &observed).unwrap();
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
        let n = |op| actions.iter().filter(|a| a.op == op).count();
        assert_eq!((n(FleetOp::Create), n(FleetOp::Update), n(FleetOp::Delete), n(FleetOp::Noop)), (1, 1, 1, 1));
    }

    #[test]
    fn undecodable_entry_is_replaced() {
        let desired = DesiredFleet { fleet: "pico".into(), plans: [("a".to_string(), plan("a", 0, vec![]))].into_iter().collect() };
        let mut observed = ObservedFleet::default();
        observed.plans.insert("a".into(), ObservedEntry { revision: 3, signed: None, plan: None, fleet: None, digest: String::new() });
        let actions = plan_fleet(&desired, &observed).unwrap();
        assert_eq!(actions.len(), 1);
        assert_eq!((actions[0].op, actions[0].expected_revision), (FleetOp::Update, Some(3)));
        assert_eq!(actions[0].plan.as_ref().map(|p| p.generation), Some(1));
    }

    fn status(applied: u64) -> harmony_schemas::fleet::DeviceStatus {
        serde_json::from_value(serde_json::json!({"version":1,"device_id":"a","agent_version":"0.1.0","applied_generation":applied,"applied_source_revision":null,"state":"applied","last_error":null,"updated_at_ms":0}))
            .expect("status")
    }

    #[test]
    fn generations_come_from_verified_plans_only() {
        let web = DeploymentPlan::new("web", "acme", vec![], vec![]);
        let desired = DesiredFleet { fleet: "pico".into(), plans: [("a".to_string(), plan("a", 0, vec![web]))].into_iter().collect() };
        // A forged entry claiming 2^64 − 2 (it does not verify: `plan` is none), the agent at 4.
        let mut forged = observed_entry(&plan("a", u64::MAX - 1, vec![]), 9);
        forged.plan = None;
        let mut observed = ObservedFleet::default();
        observed.plans.insert("a".into(), forged);
        observed.statuses.insert("a".into(), status(4));
        let generation = |o: &ObservedFleet| plan_fleet(&desired, o).unwrap()[0].plan.as_ref().map(|p| p.generation);
        assert_eq!(generation(&observed), Some(5), "the forged claim counts for nothing");
        // The key's history shows generation 6 signed (the agent's status lags): above both.
        observed.signed_history.insert("a".into(), 6);
        assert_eq!(generation(&observed), Some(7));
        // A replayed older plan (verified, generation 2) with the agent at 6: 7, the report believed.
        observed.plans.insert("a".into(), observed_entry(&plan("a", 2, vec![]), 10));
        observed.statuses.insert("a".into(), status(6));
        assert_eq!(generation(&observed), Some(7));
        assert!(needs_history(&observed, "a"), "a report above the entry's generation sends apply to the history");
    }

    #[test]
    fn an_absurd_applied_generation_is_flagged_and_ignored() {
        let desired = DesiredFleet { fleet: "pico".into(), plans: [("a".to_string(), plan("a", 0, vec![]))].into_iter().collect() };
        let mut observed = ObservedFleet::default();
        observed.plans.insert("a".into(), observed_entry(&plan("a", 3, vec![DeploymentPlan::new("web", "acme", vec![], vec![])]), 9));
        observed.statuses.insert("a".into(), status(u64::MAX));
        let actions = plan_fleet(&desired, &observed).expect("no overflow, no error");
        assert_eq!(actions[0].plan.as_ref().map(|p| p.generation), Some(4));
        assert_eq!(
            actions[0].reason,
            format!("deployments -web; applied generation {} ignored: above generation 3, the newest plan Harmony signed for it, by more than 1000", u64::MAX)
        );
        // Nothing signed on record: believed below MAX_GENERATION only.
        assert_eq!(judge_applied(None, Some(41)), AppliedJudgement { believed: Some(41), flag: None });
        // A little ahead (a plan signed with a key planted with a stolen one): believed, flagged.
        let j = judge_applied(Some(3), Some(3 + MAX_UNSIGNED_AHEAD));
        assert_eq!(j.believed, Some(3 + MAX_UNSIGNED_AHEAD));
        assert!(j.flag.is_some_and(|w| w.contains("believed")));
        assert_eq!(judge_applied(Some(3), Some(4 + MAX_UNSIGNED_AHEAD)).believed, None);
        let j = judge_applied(None, Some(MAX_GENERATION));
        assert_eq!(j.believed, None);
        assert!(j.flag.is_some_and(|w| w.contains("the largest generation Harmony signs")));
        assert_eq!(judge_applied(Some(5), Some(5)), AppliedJudgement { believed: Some(5), flag: None });
        assert_eq!(judge_applied(Some(5), None), AppliedJudgement::default());
    }

    #[test]
    fn next_generation_is_checked() {
        assert_eq!(next_generation("a", None, None).unwrap(), 1);
        assert_eq!(next_generation("a", Some(3), Some(7)).unwrap(), 8);
        assert_eq!(next_generation("a", Some(MAX_GENERATION - 1), None).unwrap(), MAX_GENERATION);
        for base in [MAX_GENERATION, u64::MAX] {
            let e = next_generation("a", Some(base), None).unwrap_err().to_string();
            assert!(e.starts_with("device `a`: its generation is") && e.contains("re-enrol"), "{e}");
        }
    }

    #[test]
    fn the_next_plan_is_above_the_floor_of_an_agent_that_lost_its_state() {
        let desired = DesiredFleet { fleet: "pico".into(), plans: [("a".to_string(), plan("a", 0, vec![]))].into_iter().collect() };
        let mut observed = ObservedFleet::default();
        // A replayed old plan in the entry; the agent reports no applied generation, floor 9.
        observed.plans.insert("a".into(), ObservedEntry { revision: 3, signed: None, plan: None, fleet: Some("pico".into()), digest: String::new() });
        observed.statuses.insert(
            "a".into(),
            serde_json::from_value(serde_json::json!({"version":1,"device_id":"a","agent_version":"0.1.0","applied_generation":null,"applied_source_revision":null,"state":"pending","last_error":null,"generation_floor":9,"updated_at_ms":0}))
                .expect("status"),
        );
        let actions = plan_fleet(&desired, &observed).unwrap();
        assert_eq!(actions[0].plan.as_ref().map(|p| p.generation), Some(10));
    }
}
