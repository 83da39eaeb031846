//! Edge fleets: signed device plans in NATS JetStream KV (see `docs/fleet.md` and
//! `docs/fleet-protocol.md`).
//!
//! - [`agents`]: agent binaries in the object store (publish, look up, signed).
//! - [`convert`]: compiled `DevicePlanUnit` → wire `DevicePlan`; the signing key.
//! - [`connect`]: NATS connection options (repository URLs plus secrets from flags/env), buckets.
//! - [`observe`]: every entry of the plans, status and heartbeat buckets (bad entries are warnings).
//! - [`plan`]: [`plan_fleet`], pure: desired + observed → [`FleetAction`]s.
//! - [`apply`]: compare-and-set writes with bounded parallelism, journalled.
//! - [`lock`]: one apply per fleet (create-only entry with a TTL in `harmony-locks`).
//! - [`journal`]: what an apply did, so an interrupted apply can be re-run safely.
//! - [`rollout`]: phased, health-gated rollouts (waves, halt, auto-revert, resume) and agent retirement.
//! - [`sign`]: the bulk signer for device plans (AWS-LC's Ed25519, checked against ed25519-dalek).
//! - [`run`]: one whole apply (lock, observe, plan, confirm, write, journal, release).
//! - [`status`]: desired vs applied per device, with Ready / Stale / Unknown conditions.
//! - [`command`]: ping, signed logs/exec requests to one device's agent.
//! - [`auth`]: per-device NATS nkey users and permissions, the auth directory, the key chain.
//! - [`security`]: what the auth directory means for a fleet: which keys sign and verify, revoked devices.
//! - [`keys`]: operator actions on credentials: enrol a device, rotate the signing key, rotate a device key.

pub mod agents;
pub mod apply;
pub mod auth;
pub mod command;
pub mod connect;
pub mod convert;
pub mod journal;
pub mod keys;
pub mod lock;
pub mod observe;
pub mod plan;
pub mod rollout;
pub mod run;
pub mod security;
pub mod sign;
pub mod status;
mod unit_file;

pub use apply::{ActionOutcome, ApplyOptions, ApplyReport, apply_actions, apply_actions_returning};
pub use connect::{NatsOptions, connect, ensure_buckets};
pub use convert::{DesiredFleet, check_key_matches, desired_fleet, device_plan, load_signing_key};
pub use lock::{FleetLock, LockHolder, LockOptions};
pub use observe::{ObservedEntry, ObservedFleet, Warning, observe_fleet};
pub use plan::{FleetAction, FleetOp, plan_fleet, plan_fleet_compiled, plan_fleet_owned};
pub use run::{ApplyRequest, ApplyRun, run_apply};
pub use status::{ChainKeys, Condition, DeviceReport, FleetStatus, StatusThresholds, device_report, fleet_status, flag_foreign_keys};

/// What can go wrong talking to a fleet.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The repository declares no such fleet.
    #[error("the repository declares no fleet `{fleet}` (fleets: {known})")]
    UnknownFleet {
        /// Asked for.
        fleet: String,
        /// Declared.
        known: String,
    },
    /// Signing key missing, unusable or not the fleet's.
    #[error("{0}")]
    SigningKey(String),
    /// Connection options or the connection itself.
    #[error("NATS connection: {0}")]
    Connect(String),
    /// A NATS or JetStream request failed.
    #[error("NATS {what}: {detail}")]
    Nats {
        /// What was being done.
        what: String,
        /// The error.
        detail: String,
    },
    /// The fleet's apply lock is held by someone else (the holder as its entry says, which any
    /// writer of the locks bucket chose: printed escaped).
    #[error(
        "fleet `{fleet}` is locked by {} since {}; the lock expires in {}s unless renewed (use --lock-timeout to wait, or `harmony unlock {fleet}` if that apply is known to be dead)",
        harmony_schemas::printable(&holder.describe()), lock::format_ms(holder.since_ms), expires_in_s
    )]
    Locked {
        /// Fleet.
        fleet: String,
        /// Who holds it.
        holder: LockHolder,
        /// Seconds until it expires if not renewed.
        expires_in_s: u64,
    },
    /// A device plan asks for an agent version nobody published.
    #[error(
        "fleet `{fleet}` upgrades agents to {version}, which is not published: run `harmony fleet publish-agent --fleet {fleet} --agent-version {version} PATH` first"
    )]
    AgentNotPublished {
        /// Fleet.
        fleet: String,
        /// Version.
        version: String,
    },
    /// The journal could not be written.
    #[error("journal {path}: {detail}")]
    Journal {
        /// File.
        path: String,
        /// The error.
        detail: String,
    },
    /// The fleet's rollout record moved since the plan was made: the planned rollout is not run.
    #[error(
        "fleet `{fleet}`: the rollout record moved since planning ({}, {} now): another apply started, resumed, finished or reverted a rollout; make the plan again",
        revision(*expected), revision(*found)
    )]
    RolloutMoved {
        /// Fleet.
        fleet: String,
        /// The record's KV revision when planned (`None`: no record).
        expected: Option<u64>,
        /// Its revision now.
        found: Option<u64>,
    },
    /// A device's plan generations are exhausted.
    #[error("device `{device}`: {detail}")]
    Generation {
        /// Device.
        device: String,
        /// Why, and what to do.
        detail: String,
    },
}

/// A rollout record's KV revision in words.
pub(crate) fn revision(r: Option<u64>) -> String {
    r.map_or_else(|| "no record".to_string(), |r| format!("revision {r}"))
}

pub(crate) fn nats_err(what: impl Into<String>, e: impl std::fmt::Display) -> FleetError {
    FleetError::Nats { what: what.into(), detail: e.to_string() }
}

#[cfg(test)]
mod tests {
    /// A lock entry's holder is written by whoever can write the locks bucket: a forged one
    /// cannot steer the operator's terminal (escape sequences, line breaks, direction marks).
    #[test]
    fn a_forged_lock_holder_is_printed_escaped() {
        let holder = super::LockHolder { user: "eve\u{1b}[2J".into(), host: "h\nerror: forged line".into(), command: "x\u{202e}y".into(), ..Default::default() };
        let e = super::FleetError::Locked { fleet: "pico".into(), holder, expires_in_s: 3 };
        let text = e.to_string();
        assert!(!text.chars().any(|c| c.is_control() || c == '\u{202e}'), "{text:?}");
        assert!(text.contains("eve\\u{1b}[2J@h\\nerror: forged line"), "{text}");
        assert!(text.contains("x\\u{202e}y"), "{text}");
    }
}
