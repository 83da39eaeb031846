//! `harmony status` for a fleet: per device, desired vs applied generation, heartbeat age,
//! agent version, deployments, last error and a condition.
//!
//! Conditions (thresholds in [`StatusThresholds`], documented in `docs/fleet.md`):
//! - `unknown`: no heartbeat, or the last one is older than `unknown_after` (default 10 min);
//! - `stale`: the last heartbeat is older than `stale_after` (default 90 s, three heartbeat intervals);
//! - `ready`: fresh heartbeat, the applied generation is the desired one and every deployment runs;
//! - `degraded`: fresh heartbeat, the agent reports a failure (or rejected the desired plan);
//! - `converging`: fresh heartbeat, the desired generation is not applied yet.

use std::collections::BTreeSet;
use std::time::Duration;

use harmony_schemas::fleet::{DeploymentFailure, DeploymentState, DeviceState, DeviceStatus, Heartbeat, RejectionReason};
use serde::Serialize;

use super::observe::{ObservedEntry, ObservedFleet, Warning};

/// Heartbeat age thresholds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct StatusThresholds {
    /// Older than this: stale.
    pub stale_after: Duration,
    /// Older than this (or none): unknown.
    pub unknown_after: Duration,
}

impl Default for StatusThresholds {
    fn default() -> Self {
        StatusThresholds { stale_after: Duration::from_secs(90), unknown_after: Duration::from_secs(600) }
    }
}

/// A device's condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Condition {
    /// Converged and heard from recently.
    Ready,
    /// Heard from recently, still applying the desired generation.
    Converging,
    /// Heard from recently, reports a failure.
    Degraded,
    /// Not heard from for longer than `stale_after`.
    Stale,
    /// Never heard from, or not for longer than `unknown_after`.
    Unknown,
    /// Its NATS credentials were revoked (`harmony fleet revoke`): it gets no plan and cannot
    /// connect.
    Revoked,
}

impl Condition {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Ready => "ready",
            Condition::Converging => "converging",
            Condition::Degraded => "degraded",
            Condition::Stale => "stale",
            Condition::Unknown => "unknown",
            Condition::Revoked => "revoked",
        }
    }
}

/// One deployment's state on a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeploymentReport {
    /// Name.
    pub name: String,
    /// State as the agent reports it.
    pub state: String,
    /// Failure, if any, in words.
    pub failure: Option<String>,
    /// The same, typed as the agent reports it (`kind`: `init-exited`, `init-timed-out`, `runtime`).
    pub failure_detail: Option<DeploymentFailure>,
}

/// One device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceReport {
    /// Device id.
    pub device: String,
    /// Generation in the plans bucket.
    pub desired_generation: Option<u64>,
    /// Generation the agent applied.
    pub applied_generation: Option<u64>,
    /// Seconds since the last heartbeat.
    pub heartbeat_age_s: Option<u64>,
    /// Agent version reported.
    pub agent_version: Option<String>,
    /// Overall state the agent reports.
    pub state: Option<String>,
    /// Per deployment.
    pub deployments: Vec<DeploymentReport>,
    /// The agent's last error.
    pub last_error: Option<String>,
    /// The most recent plan the agent rejected (tampered, replayed, wrong device, …), if any.
    pub last_rejection: Option<RejectionReport>,
    /// Whether the plan now in the bucket (the desired generation) is one the agent rejected.
    pub desired_rejected: bool,
    /// The last agent upgrade the device attempted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<harmony_schemas::fleet::UpgradeReport>,
    /// Ids of signing keys the device reports trusting that the fleet's key chain does not
    /// ([`flag_foreign_keys`]): a chain forked with a stolen key, or a device set up by hand.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub foreign_keys: Vec<String>,
    /// Condition.
    pub condition: Condition,
}

/// A plan the agent refused to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectionReport {
    /// The generation the plan claimed (none when it did not decode).
    pub generation: Option<u64>,
    /// Why, as the agent reports it (`kind`: `bad-signature`, `stale-generation`, `wrong-device`, …).
    pub reason: RejectionReason,
    /// The same, in words.
    pub message: String,
    /// When, Unix ms.
    pub at_ms: u64,
}

/// A fleet's status.
#[derive(Debug, Clone, Serialize)]
pub struct FleetStatus {
    /// Fleet.
    pub fleet: String,
    /// Devices, by id.
    pub devices: Vec<DeviceReport>,
    /// Entries that could not be read.
    pub warnings: Vec<Warning>,
    /// The fleet's current or last rollout (`harmony-rollouts`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<harmony_schemas::fleet::RolloutRecord>,
}

impl FleetStatus {
    /// Whether every device is ready.
    pub fn all_ready(&self) -> bool {
        self.devices.iter().all(|d| matches!(d.condition, Condition::Ready | Condition::Revoked))
    }
}

/// The wire name of a unit enum variant (`"in-progress"`, `"running"`…), as serde writes it.
pub fn kebab<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// Builds the status of `devices` (the repository's devices of the fleet; devices with an entry
/// in the plans bucket are added) at `now_ms`.
pub fn fleet_status(fleet: &str, devices: &[String], observed: &ObservedFleet, now_ms: u64, t: StatusThresholds) -> FleetStatus {
    let mut ids: BTreeSet<&str> = devices.iter().map(String::as_str).collect();
    ids.extend(observed.plans.keys().map(String::as_str));
    let devices =
        ids.into_iter().map(|id| device_report(id, observed.plans.get(id), observed.statuses.get(id), observed.heartbeats.get(id), now_ms, t)).collect();
    FleetStatus { fleet: fleet.to_string(), devices, warnings: observed.warnings.clone(), rollout: None }
}

/// One device's report from its plans entry, status and heartbeat (with the heartbeat entry's
/// write time, Unix ms) at `now_ms`: the one place conditions are decided (`harmony status`
/// and `harmony ui` both use it).
pub fn device_report(
    id: &str,
    plan: Option<&ObservedEntry>,
    status: Option<&DeviceStatus>,
    hb: Option<&(Heartbeat, u64)>,
    now_ms: u64,
    t: StatusThresholds,
) -> DeviceReport {
    let desired_generation = plan.and_then(|e| e.plan.as_ref().map(|p| p.generation).or(e.generation));
    let heartbeat_age_s = hb.map(|(h, created)| now_ms.saturating_sub(h.timestamp_ms.max(*created)) / 1000);
    let applied_generation = status.and_then(|s| s.applied_generation).or(hb.and_then(|(h, _)| h.applied_generation));
    let rejected = status.is_some_and(|s| desired_generation.is_some_and(|g| s.rejections.iter().any(|r| r.generation == Some(g))));
    let condition = match heartbeat_age_s {
        None => Condition::Unknown,
        Some(age) if age > t.unknown_after.as_secs() => Condition::Unknown,
        Some(age) if age > t.stale_after.as_secs() => Condition::Stale,
        Some(_) => match status {
            _ if rejected => Condition::Degraded,
            Some(s) if s.state == DeviceState::Degraded => Condition::Degraded,
            Some(s) if s.state == DeviceState::Applied && applied_generation.is_some() && applied_generation == desired_generation => Condition::Ready,
            Some(s) if s.state == DeviceState::Applied && desired_generation.is_none() => Condition::Ready,
            _ => Condition::Converging,
        },
    };
    DeviceReport {
        device: id.to_string(),
        desired_generation,
        applied_generation,
        heartbeat_age_s,
        agent_version: status.map(|s| s.agent_version.clone()).or(hb.map(|(h, _)| h.agent_version.clone())),
        state: status.map(|s| kebab(&s.state)),
        deployments: status
            .map(|s| {
                s.deployments
                    .iter()
                    .map(|d| DeploymentReport {
                        name: d.name.clone(),
                        state: kebab(&d.state),
                        failure: d.failure.as_ref().map(|f| f.to_string()).or_else(|| (d.state == DeploymentState::Failed).then(|| "failed".into())),
                        failure_detail: d.failure.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        last_error: status.and_then(|s| s.last_error.clone()),
        last_rejection: status.and_then(|s| s.rejections.last()).map(|r| RejectionReport {
            generation: r.generation,
            reason: r.reason.clone(),
            message: r.reason.to_string(),
            at_ms: r.at_ms,
        }),
        desired_rejected: rejected,
        upgrade: status.and_then(|s| s.upgrade.clone()),
        foreign_keys: Vec::new(),
        condition,
    }
}

/// The signing keys of a fleet's key chain by [`harmony_schemas::fleet::key_id`]: what its
/// devices may report trusting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainKeys {
    /// Not retired (after a retirement: exactly the current key).
    pub trusted: Vec<String>,
    /// Retired.
    pub retired: Vec<String>,
}

impl ChainKeys {
    /// The key ids of `followed` (the chain as Harmony follows it from the repository's key).
    pub fn of(followed: &harmony_schemas::trust::Followed) -> ChainKeys {
        let ids = |hex: &[String]| hex.iter().filter_map(|k| harmony_schemas::fleet::parse_public_key(k).ok()).map(|k| harmony_schemas::fleet::key_id(&k)).collect();
        ChainKeys { trusted: ids(&followed.trusted), retired: ids(&followed.settled.retired) }
    }
}

/// Most foreign key ids kept per device, and their longest length (device-written input).
const MAX_FOREIGN_KEYS: usize = 8;
const MAX_KEY_ID_LEN: usize = 64;

/// Flags the keys a device reports trusting (`DeviceStatus.trusted_keys`) that `chain` does not
/// trust: any key the chain never trusted, and a retired key once the device applied the desired
/// plan (before, it may simply not have received the retirement yet). A flagged device that is
/// heard from is `degraded`. Nothing is flagged without a chain (`chain.trusted` empty).
pub fn flag_foreign_keys(report: &mut DeviceReport, status: Option<&DeviceStatus>, chain: &ChainKeys) {
    let Some(s) = status else { return };
    if chain.trusted.is_empty() {
        return;
    }
    let converged = report.applied_generation.is_some() && report.applied_generation == report.desired_generation;
    report.foreign_keys = s
        .trusted_keys
        .iter()
        .filter(|k| !chain.trusted.contains(k) && (converged || !chain.retired.contains(k)))
        .take(MAX_FOREIGN_KEYS)
        .map(|k| if k.len() > MAX_KEY_ID_LEN { format!("{}…", k.chars().take(MAX_KEY_ID_LEN).collect::<String>()) } else { k.clone() })
        .collect();
    if !report.foreign_keys.is_empty() && matches!(report.condition, Condition::Ready | Condition::Converging) {
        report.condition = Condition::Degraded;
    }
}

impl FleetStatus {
    /// [`flag_foreign_keys`] for every device of `observed`.
    pub fn flag_foreign_keys(&mut self, observed: &ObservedFleet, chain: &ChainKeys) {
        for d in &mut self.devices {
            flag_foreign_keys(d, observed.statuses.get(&d.device), chain);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(applied: Option<u64>, state: DeviceState) -> DeviceStatus {
        DeviceStatus {
            upgrade: None,
            version: 1,
            device_id: "d".into(),
            agent_version: "0.1.0".into(),
            applied_generation: applied,
            applied_source_revision: None,
            state,
            deployments: vec![],
            last_error: None,
            rejections: vec![],
            trusted_keys: vec![],
            updated_at_ms: 0,
        }
    }

    fn hb(ts: u64) -> Heartbeat {
        Heartbeat {
            version: 1,
            device_id: "d".into(),
            agent_version: "0.1.0".into(),
            uptime_s: 1,
            labels: Default::default(),
            applied_generation: Some(1),
            timestamp_ms: ts,
        }
    }

    #[test]
    fn conditions_follow_thresholds() {
        let now = 1_000_000_000;
        let t = StatusThresholds::default();
        let mut o = ObservedFleet::default();
        o.plans
            .insert("d".into(), super::super::observe::ObservedEntry { revision: 1, signed: None, plan: None, generation: Some(1), fleet: Some("f".into()) });
        let cond = |o: &ObservedFleet| fleet_status("f", &["d".into()], o, now, t).devices[0].condition;
        assert_eq!(cond(&o), Condition::Unknown);
        o.statuses.insert("d".into(), status(Some(1), DeviceState::Applied));
        o.heartbeats.insert("d".into(), (hb(now - 5_000), now - 5_000));
        assert_eq!(cond(&o), Condition::Ready);
        o.heartbeats.insert("d".into(), (hb(now - 91_000), now - 91_000));
        assert_eq!(cond(&o), Condition::Stale);
        o.heartbeats.insert("d".into(), (hb(now - 601_000), now - 601_000));
        assert_eq!(cond(&o), Condition::Unknown);
        o.heartbeats.insert("d".into(), (hb(now), now));
        if let Some(e) = o.plans.get_mut("d") {
            e.generation = Some(2);
        }
        assert_eq!(cond(&o), Condition::Converging);
        o.statuses.insert("d".into(), status(Some(1), DeviceState::Degraded));
        assert_eq!(cond(&o), Condition::Degraded);
    }

    #[test]
    fn devices_trusting_keys_outside_the_chain_are_flagged() {
        let now = 1_000_000_000;
        let mut o = ObservedFleet::default();
        o.plans.insert("d".into(), super::super::observe::ObservedEntry { revision: 1, signed: None, plan: None, generation: Some(2), fleet: Some("f".into()) });
        o.heartbeats.insert("d".into(), (hb(now), now));
        let chain = ChainKeys { trusted: vec!["k2".into()], retired: vec!["k1".into()] };
        let report = |o: &ObservedFleet, chain: &ChainKeys| {
            let mut s = fleet_status("f", &["d".into()], o, now, StatusThresholds::default());
            s.flag_foreign_keys(o, chain);
            s.devices.remove(0)
        };
        let with_keys = |applied: u64, keys: &[&str]| {
            let mut s = status(Some(applied), DeviceState::Applied);
            s.trusted_keys = keys.iter().map(|k| k.to_string()).collect();
            s
        };
        // Exactly the chain's key: ready.
        o.statuses.insert("d".into(), with_keys(2, &["k2"]));
        assert_eq!((report(&o, &chain).condition, report(&o, &chain).foreign_keys), (Condition::Ready, vec![]));
        // Still trusting the retired key before it received the retirement: converging, not flagged.
        o.statuses.insert("d".into(), with_keys(1, &["k1", "k2"]));
        assert_eq!((report(&o, &chain).condition, report(&o, &chain).foreign_keys), (Condition::Converging, vec![]));
        // …and after it applied the plan carrying it: flagged.
        o.statuses.insert("d".into(), with_keys(2, &["k1", "k2"]));
        assert_eq!((report(&o, &chain).condition, report(&o, &chain).foreign_keys), (Condition::Degraded, vec!["k1".to_string()]));
        // A key the chain never trusted (planted with a stolen key): flagged at once, bounded.
        let long = "x".repeat(10_000);
        o.statuses.insert("d".into(), with_keys(1, &["evil", &long]));
        let r = report(&o, &chain);
        assert_eq!((r.condition, r.foreign_keys[0].as_str()), (Condition::Degraded, "evil"));
        assert!(r.foreign_keys[1].len() < 100);
        // Without a known chain nothing is flagged.
        assert_eq!(report(&o, &ChainKeys::default()).foreign_keys, Vec::<String>::new());
    }
}
