//! `harmony status` for a fleet: per device, desired vs applied generation, heartbeat age,
//! agent version, deployments, last error and a condition.
//!
//! Conditions (thresholds in [`StatusThresholds`], documented in `docs/fleet.md`):
//! - `unknown`: no heartbeat, or the last one is older than `unknown_after` (default 10 min);
//! - `stale`: the last heartbeat is older than `stale_after` (default 90 s, three heartbeat intervals);
//! - `ready`: fresh heartbeat, the applied generation is the desired one and every deployment runs;
//! - `degraded`: fresh heartbeat, the agent reports a failure, rejected the plan now in the
//!   bucket, or reports an applied generation Harmony does not believe ([`super::plan::judge_applied`]);
//! - `converging`: fresh heartbeat, the desired generation is not applied yet.

use std::collections::BTreeSet;
use std::time::Duration;

use harmony_schemas::fleet::{DeploymentFailure, DeploymentState, DeviceState, DeviceStatus, Heartbeat, Rejection, RejectionReason};
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
    /// Generation of the plan in the plans bucket, when it verifies (none for an entry that
    /// does not: it claims what it likes).
    pub desired_generation: Option<u64>,
    /// Generation the agent reports it applied (its status, else its heartbeat).
    pub applied_generation: Option<u64>,
    /// Why that report is suspect: above the newest generation Harmony signed for the device
    /// (believed within [`super::plan::MAX_UNSIGNED_AHEAD`], ignored beyond:
    /// [`super::plan::judge_applied`]). The device is then `degraded`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_generation_flag: Option<String>,
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
    /// Whether the entry now in the bucket is one the agent rejected (the rejection names the
    /// entry's digest; for agents whose rejections carry none, its generation).
    pub desired_rejected: bool,
    /// The last agent upgrade the device attempted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<harmony_schemas::fleet::UpgradeReport>,
    /// Ids of signing keys the device reports trusting that the fleet's key chain does not
    /// ([`flag_foreign_keys`]): a chain forked with a stolen key, or a device set up by hand.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub foreign_keys: Vec<String>,
    /// Set while the agent recovers from a lost state file: it accepts no plan below this
    /// generation, nor another plan of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation_floor: Option<u64>,
    /// Seconds since the agent last looked at its runtime (podman) for its status (none from
    /// agents that do not observe).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_age_s: Option<u64>,
    /// Device drift the agent found recently and what it did about it (containers removed,
    /// stopped or replaced behind its back), newest last.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<harmony_schemas::fleet::Drift>,
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
    let devices = ids
        .into_iter()
        .map(|id| {
            let plan = observed.plans.get(id);
            let signed = super::plan::newest_signed(observed, id);
            device_report(id, plan, signed, observed.statuses.get(id), observed.heartbeats.get(id), now_ms, t)
        })
        .collect();
    FleetStatus { fleet: fleet.to_string(), devices, warnings: observed.warnings.clone(), rollout: None }
}

/// Whether `r` rejected the entry with `digest` and (verified) `generation`: the same digest;
/// when either is unknown (a rejection of an older agent), the same generation.
pub fn rejects(r: &Rejection, digest: Option<&str>, generation: Option<u64>) -> bool {
    match (&r.digest, digest) {
        (Some(a), Some(b)) => a == b,
        _ => r.generation.is_some() && r.generation == generation,
    }
}

/// One device's report from its plans entry (`signed_history`: the newest generation Harmony
/// signed for it in the key's history, when read), status and heartbeat (with the heartbeat
/// entry's write time, Unix ms) at `now_ms`: the one place conditions are decided (`harmony
/// status` and `harmony ui` both use it).
pub fn device_report(
    id: &str,
    plan: Option<&ObservedEntry>,
    signed_history: Option<u64>,
    status: Option<&DeviceStatus>,
    hb: Option<&(Heartbeat, u64)>,
    now_ms: u64,
    t: StatusThresholds,
) -> DeviceReport {
    let desired_generation = plan.and_then(ObservedEntry::generation);
    let heartbeat_age_s = hb.map(|(h, created)| now_ms.saturating_sub(h.timestamp_ms.max(*created)) / 1000);
    let applied_generation = status.and_then(|s| s.applied_generation).or(hb.and_then(|(h, _)| h.applied_generation));
    let judged = super::plan::judge_applied(desired_generation.max(signed_history), applied_generation);
    let rejected = status.zip(plan).is_some_and(|(s, e)| s.rejections.iter().any(|r| rejects(r, Some(&e.digest), e.generation())));
    // An entry that does not verify is not the device's desired state yet (the agent will reject it).
    let unverified = plan.is_some_and(|e| e.plan.is_none());
    let condition = match heartbeat_age_s {
        None => Condition::Unknown,
        Some(age) if age > t.unknown_after.as_secs() => Condition::Unknown,
        Some(age) if age > t.stale_after.as_secs() => Condition::Stale,
        Some(_) => match status {
            _ if rejected || judged.flag.is_some() => Condition::Degraded,
            Some(s) if s.state == DeviceState::Degraded => Condition::Degraded,
            _ if unverified => Condition::Converging,
            Some(s) if s.state == DeviceState::Applied && judged.believed.is_some() && judged.believed == desired_generation => Condition::Ready,
            Some(s) if s.state == DeviceState::Applied && plan.is_none() => Condition::Ready,
            _ => Condition::Converging,
        },
    };
    DeviceReport {
        device: id.to_string(),
        desired_generation,
        applied_generation,
        applied_generation_flag: judged.flag,
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
        generation_floor: status.and_then(|s| s.generation_floor),
        observed_age_s: status.and_then(|s| s.observed_at_ms).map(|at| now_ms.saturating_sub(at) / 1000),
        drift: status.map(|s| s.drift.clone()).unwrap_or_default(),
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
            generation_floor: None,
            observed_at_ms: None,
            drift: vec![],
            updated_at_ms: 0,
        }
    }

    fn plan(generation: u64) -> harmony_schemas::fleet::DevicePlan {
        super::super::observe::tests::plan("d", "f", generation)
    }

    fn hb(ts: u64) -> Heartbeat {
        Heartbeat {
            version: 1,
            device_id: "d".into(),
            agent_version: "0.1.0".into(),
            uptime_s: 1,
            labels: Default::default(),
            applied_generation: Some(1),
            observed_at_ms: None,
            timestamp_ms: ts,
        }
    }

    #[test]
    fn conditions_follow_thresholds() {
        let now = 1_000_000_000;
        let t = StatusThresholds::default();
        let mut o = ObservedFleet::default();
        o.plans.insert(
            "d".into(),
            super::super::observe::ObservedEntry { revision: 1, signed: None, plan: Some(plan(1)), fleet: Some("f".into()), digest: "sha256:1".into() },
        );
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
            e.plan = Some(plan(2));
        }
        assert_eq!(cond(&o), Condition::Converging);
        o.statuses.insert("d".into(), status(Some(1), DeviceState::Degraded));
        assert_eq!(cond(&o), Condition::Degraded);
    }

    #[test]
    fn devices_trusting_keys_outside_the_chain_are_flagged() {
        let now = 1_000_000_000;
        let mut o = ObservedFleet::default();
        o.plans.insert("d".into(), super::super::observe::ObservedEntry { revision: 1, signed: None, plan: Some(plan(2)), fleet: Some("f".into()), digest: "sha256:2".into() });
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

    /// Finding 9: the condition describes the entry now in the bucket, told apart by digest.
    #[test]
    fn a_rejection_counts_only_for_the_entry_it_rejected() {
        let now = 1_000_000_000;
        let entry = |digest: &str, p: Option<harmony_schemas::fleet::DevicePlan>| ObservedEntry {
            revision: 1,
            signed: None,
            plan: p,
            fleet: Some("f".into()),
            digest: digest.into(),
        };
        let mut s = status(Some(1), DeviceState::Applied);
        s.rejections.push(Rejection { generation: Some(1), reason: RejectionReason::BadSignature, at_ms: 1, digest: Some("sha256:forged".into()) });
        let hb = (hb(now), now);
        let report = |e: &ObservedEntry, s: &DeviceStatus| device_report("d", Some(e), None, Some(s), Some(&hb), now, StatusThresholds::default());
        // The forged entry (claiming generation 1) is in the bucket: rejected, degraded.
        let r = report(&entry("sha256:forged", None), &s);
        assert_eq!((r.desired_rejected, r.condition, r.desired_generation), (true, Condition::Degraded, None));
        // The genuine plan of generation 1 is back: ready, the rejection kept as history.
        let r = report(&entry("sha256:genuine", Some(plan(1))), &s);
        assert_eq!((r.desired_rejected, r.condition), (false, Condition::Ready));
        assert!(r.last_rejection.is_some());
        // An older agent's rejection (no digest) falls back to the verified generation.
        s.rejections[0].digest = None;
        assert!(report(&entry("sha256:genuine", Some(plan(1))), &s).desired_rejected);
        assert!(!report(&entry("sha256:other", None), &s).desired_rejected, "an unverified entry has no generation to match");
    }

    /// Finding 7: an absurd applied generation is flagged, not believed.
    #[test]
    fn an_absurd_applied_generation_is_flagged() {
        let now = 1_000_000_000;
        let e = ObservedEntry { revision: 1, signed: None, plan: Some(plan(3)), fleet: Some("f".into()), digest: "sha256:x".into() };
        let s = status(Some(u64::MAX), DeviceState::Applied);
        let r = device_report("d", Some(&e), None, Some(&s), Some(&(hb(now), now)), now, StatusThresholds::default());
        assert_eq!(r.applied_generation, Some(u64::MAX));
        assert_eq!(r.condition, Condition::Degraded);
        assert_eq!(
            r.applied_generation_flag.as_deref(),
            Some("applied generation 18446744073709551615 ignored: above generation 3, the newest plan Harmony signed for it, by more than 1000")
        );
        // The key's history shows a newer signed generation than the entry (a replayed older plan): believed.
        let s = status(Some(5), DeviceState::Applied);
        let r = device_report("d", Some(&e), Some(5), Some(&s), Some(&(hb(now), now)), now, StatusThresholds::default());
        assert_eq!((r.applied_generation_flag, r.condition), (None, Condition::Converging));
    }
}
