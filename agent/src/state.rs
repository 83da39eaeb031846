//! What the agent persists in its state directory (`state.json`), written atomically
//! (temporary file, fsync, rename) after every accepted plan and every reconcile.
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use harmony_schemas::fleet::{DeploymentFailure, Rejection, SignedDevicePlan, UpgradeReport, sha256_digest};
use harmony_schemas::trust::TrustState;
use serde::{Deserialize, Serialize};

/// The persisted state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PersistedState {
    /// Format version (1).
    pub version: u32,
    /// The device this state belongs to (a state dir of another device is refused).
    pub device_id: String,
    /// The last accepted plan, exactly as signed (re-verified on load).
    pub applied: Option<SignedDevicePlan>,
    /// Deployments whose init containers completed, with the deployment spec hash they completed for.
    #[serde(default)]
    pub inits_done: BTreeMap<String, String>,
    /// Deployments that failed for the applied plan (retried only when a newer plan arrives).
    #[serde(default)]
    pub failed: BTreeMap<String, Failed>,
    /// Recent rejections (newest last).
    #[serde(default)]
    pub rejections: Vec<Rejection>,
    /// The last agent upgrade attempted (retried only as [`crate::upgrade::next_attempt`] allows).
    #[serde(default)]
    pub upgrade: Option<UpgradeReport>,
    /// The attempts made at that upgrade.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade_attempts: Option<crate::upgrade::Attempts>,
    /// Signing keys trusted and retired through the key chain of the accepted plans (merged over
    /// the configured `fleet_keys` at start; a retired key stays retired).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<TrustState>,
    /// After a lost or unreadable state file, until a plan is accepted: the floor recovered from
    /// the floor file (`docs/agent.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<Floor>,
}

/// The plan an agent last accepted, as far as replay is concerned: no plan of an older
/// generation, nor another plan of the same generation, is accepted after it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Floor {
    /// The generation of the last accepted plan.
    pub generation: u64,
    /// [`payload_digest`] of its signed payload (the same plan read again is accepted).
    pub payload_sha256: String,
}

/// `sha256:<hex>` of a signed plan's payload, as a [`Floor`] keeps it.
pub(crate) fn payload_digest(signed: &SignedDevicePlan) -> String {
    sha256_digest(&serde_json::to_vec(&signed.payload).unwrap_or_default())
}

/// The floor file: what `state.json` knows about replay and the key chain, kept beside the
/// device's NATS seed (`<nats.nkey_file>.floor`), so that losing the state directory or an
/// unreadable `state.json` resets neither. Losing it too means losing the seed's directory: the
/// device is enrolled again.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FloorFile {
    version: u32,
    device_id: String,
    floor: Floor,
    /// What the key chain settled (retired keys stay retired).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trust: Option<TrustState>,
}

/// Where the agent's floor file is: beside the device's seed (`<nkey_file>.floor`), else beside
/// the state directory (`<state_dir>.floor`) — outside the state directory either way, so that
/// losing it does not lose the floor.
pub(crate) fn floor_path(nkey_file: Option<&Path>, state_dir: &Path) -> PathBuf {
    let base = nkey_file.unwrap_or(state_dir);
    let mut p = base.as_os_str().to_owned();
    p.push(".floor");
    PathBuf::from(p)
}

/// The most bytes of a floor file read (it holds a few keys and digests).
const MAX_FLOOR_FILE: u64 = 64 * 1024;

/// A failed deployment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failed {
    /// The deployment's spec hash when it failed.
    pub spec_hash: String,
    /// Why.
    pub failure: DeploymentFailure,
}

/// The state file in `dir`.
pub fn state_path(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

impl PersistedState {
    /// Loads the state; a missing file is an empty state, an unreadable one is an error.
    pub fn load(dir: &Path, device_id: &str) -> Result<PersistedState, String> {
        let path = state_path(dir);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(PersistedState { version: 1, device_id: device_id.into(), ..Default::default() }),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let state: PersistedState = serde_json::from_slice(&text).map_err(|e| format!("{} is corrupt: {e}", path.display()))?;
        if state.device_id != device_id {
            return Err(format!("{} belongs to device `{}`, not `{device_id}`", path.display(), state.device_id));
        }
        Ok(state)
    }

    /// Loads the state for running. A missing `state.json` (a first start, or a wiped state
    /// directory) or an unreadable one (moved aside to `state.json.unreadable`) gives a state
    /// with only what the floor file `floor` (if any) recovers: its floor and key-chain state;
    /// the second value says why. A state of another device, a file that cannot be read or moved
    /// aside, or a floor file that exists but does not decode or names another device is an error:
    /// the agent does not start without its floor.
    pub(crate) fn load_or_recover(dir: &Path, device_id: &str, floor: Option<&Path>) -> Result<(PersistedState, Option<String>), String> {
        let path = state_path(dir);
        let why = match std::fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => format!("{} does not exist", path.display()),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
            Ok(text) => match serde_json::from_slice::<PersistedState>(&text) {
                Ok(state) if state.device_id != device_id => return Err(format!("{} belongs to device `{}`, not `{device_id}`", path.display(), state.device_id)),
                Ok(state) => return Ok((state, None)),
                Err(e) => {
                    let aside = dir.join("state.json.unreadable");
                    std::fs::rename(&path, &aside).map_err(|r| format!("{} is corrupt ({e}) and cannot be moved aside: {r}", path.display()))?;
                    format!("{} was unreadable ({e}); moved to {}", path.display(), aside.display())
                }
            },
        };
        let mut state = PersistedState { version: 1, device_id: device_id.into(), ..Default::default() };
        if let Some(floor) = floor
            && let Some(file) = read_floor(floor)?
        {
            if file.device_id != device_id {
                return Err(format!("floor file {} belongs to device `{}`, not `{device_id}`", floor.display(), file.device_id));
            }
            state.floor = Some(file.floor);
            state.trust = file.trust;
        }
        Ok((state, Some(why)))
    }

    /// Writes the floor file `path` for the accepted plan `signed` of `generation` (after
    /// `state.json`, so the floor file is never ahead of a state that could be lost).
    pub(crate) fn save_floor(&self, path: &Path, generation: u64, signed: &SignedDevicePlan) -> Result<(), String> {
        let file = FloorFile { version: 1, device_id: self.device_id.clone(), floor: Floor { generation, payload_sha256: payload_digest(signed) }, trust: self.trust.clone() };
        write_atomic(path, &serde_json::to_vec_pretty(&file).map_err(|e| e.to_string())?)
    }

    /// Writes the state atomically.
    pub fn save(&self, dir: &Path) -> Result<(), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        write_atomic(&state_path(dir), &serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?)
    }
}

/// The floor file at `path`: `None` when there is none; an error when it cannot be read or
/// does not decode.
fn read_floor(path: &Path) -> Result<Option<FloorFile>, String> {
    let unreadable = |e: String| format!("floor file {} is unreadable ({e}): the agent cannot prove which plans it must refuse; restore it, or delete it to start afresh and accept the current plan of any generation", path.display());
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unreadable(e.to_string())),
    };
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(f, MAX_FLOOR_FILE + 1), &mut bytes).map_err(|e| unreadable(e.to_string()))?;
    if bytes.len() as u64 > MAX_FLOOR_FILE {
        return Err(unreadable(format!("larger than {MAX_FLOOR_FILE} bytes")));
    }
    serde_json::from_slice(&bytes).map(Some).map_err(|e| unreadable(e.to_string()))
}

/// Writes `bytes` to `path` atomically (temporary file beside it, fsync, rename).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(generation: u64) -> SignedDevicePlan {
        let key = harmony_schemas::fleet::generate_signing_key().expect("key");
        let plan: harmony_schemas::fleet::DevicePlan = serde_json::from_value(serde_json::json!({
            "version": 1, "device_id": "pi", "fleet": "f", "generation": generation, "source_revision": "r", "agent_version": "0.1.0", "deployments": []
        }))
        .expect("plan");
        SignedDevicePlan::sign(&plan, &key).expect("sign")
    }

    #[test]
    fn a_lost_or_unreadable_state_recovers_the_floor_file_or_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        let (state_dir, floor) = (dir.path().join("state"), dir.path().join("pi.nk.floor"));
        // No state, no floor file: a first start.
        let (s, why) = PersistedState::load_or_recover(&state_dir, "pi", Some(&floor)).unwrap();
        assert!(why.is_some() && s.floor.is_none() && s.trust.is_none());
        // An accepted plan: state and floor file.
        let plan = signed(7);
        let trust = TrustState { trusted: vec!["k2".into()], retired: vec!["k1".into()], current: Some("k2".into()), ..Default::default() };
        let s = PersistedState { version: 1, device_id: "pi".into(), applied: Some(plan.clone()), trust: Some(trust.clone()), ..Default::default() };
        s.save(&state_dir).unwrap();
        s.save_floor(&floor, 7, &plan).unwrap();
        let (s, why) = PersistedState::load_or_recover(&state_dir, "pi", Some(&floor)).unwrap();
        assert!(why.is_none() && s.applied.is_some() && s.floor.is_none(), "a readable state is used as is");
        // The state directory is wiped, or its file unreadable: the floor and key chain come back.
        let losses: [fn(&Path); 2] = [|d| std::fs::remove_dir_all(d).unwrap(), |d| std::fs::write(state_path(d), b"{ not json").unwrap()];
        for lose in losses {
            s.save(&state_dir).unwrap();
            lose(&state_dir);
            let (r, why) = PersistedState::load_or_recover(&state_dir, "pi", Some(&floor)).unwrap();
            assert!(why.is_some() && r.applied.is_none(), "{why:?}");
            assert_eq!(r.floor, Some(Floor { generation: 7, payload_sha256: payload_digest(&plan) }));
            assert_eq!(r.trust, Some(trust.clone()), "retired keys stay retired");
        }
        assert!(state_dir.join("state.json.unreadable").is_file());
        // A floor file that does not decode, or of another device: the agent does not start.
        std::fs::write(&floor, b"{").unwrap();
        let e = PersistedState::load_or_recover(&state_dir, "pi", Some(&floor)).unwrap_err();
        assert!(e.contains("pi.nk.floor") && e.contains("unreadable") && e.contains("delete it"), "{e}");
        s.save_floor(&floor, 7, &plan).unwrap();
        let e = PersistedState::load_or_recover(&state_dir, "other", Some(&floor)).unwrap_err();
        assert!(e.contains("belongs to device `pi`"), "{e}");
        // Without a seed file there is no floor file.
        assert_eq!(floor_path(None, Path::new("/var/lib/harmony-agent")), PathBuf::from("/var/lib/harmony-agent.floor"));
        assert_eq!(floor_path(Some(Path::new("/etc/harmony/pi.nk")), Path::new("/var/lib/harmony-agent")), PathBuf::from("/etc/harmony/pi.nk.floor"));
    }
}
