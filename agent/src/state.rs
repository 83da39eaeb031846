//! What the agent persists in its state directory (`state.json`), written atomically
//! (temporary file, fsync, rename) after every accepted plan and every reconcile.
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use harmony_schemas::fleet::{DeploymentFailure, Rejection, SignedDevicePlan, UpgradeReport};
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
}

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

    /// Writes the state atomically.
    pub fn save(&self, dir: &Path) -> Result<(), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let path = state_path(dir);
        let tmp = dir.join("state.json.tmp");
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}
