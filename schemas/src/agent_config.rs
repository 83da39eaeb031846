//! The agent's configuration file (`agent.toml`) as written: a contract between `harmony fleet
//! enroll`, which writes it, and `harmony-agent`, which reads and validates it. One type for
//! both, so what enroll writes is what the agent parses (`deny_unknown_fields` on both sides).
use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The config file as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Device id (RFC 1123 label); its key in the plans bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Where the agent persists its last applied plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<PathBuf>,
    /// Directory whose `<tenant>/` subdirectories that tenant's deployments may bind-mount
    /// (default `/var/lib/harmony/data`, the path `harmony check` allows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_root: Option<PathBuf>,
    /// The fleet's Ed25519 public keys (hex or base64); a plan must be signed by one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fleet_keys: Vec<String>,
    /// Keys trusted to sign `logs`/`exec` commands.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command_keys: Vec<String>,
    /// Labels reported in heartbeats.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Seconds between heartbeats (default 30).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_s: Option<u64>,
    /// `podman` (default) or `none` (runtime disabled: reports plans as applied, runs nothing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeKind>,
    /// The podman executable (default `podman` on PATH).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub podman: Option<PathBuf>,
    /// How old a signed command may be, seconds (default 60).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_max_age_s: Option<u64>,
    /// Where agent versions are kept for upgrades: `harmony-agent-<version>` files and the
    /// `current` symlink the service runs (unset: upgrades are refused and reported).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub install_dir: Option<PathBuf>,
    /// Seconds an upgrade waits for the executor to retire this agent once the new one runs
    /// (default 120); then the new one is stopped and `current` is switched back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upgrade_timeout_s: Option<u64>,
    /// The largest plans entry the agent decodes, bytes (default 256 KiB);
    /// larger ones are rejected as `too-large` unread.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_plan_bytes: Option<usize>,
    /// Seconds between two full looks at podman (default 15; `podman events` triggers looks in
    /// between): each repairs drift and publishes the status observed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observe_interval_s: Option<u64>,
    /// Seconds SIGTERM/SIGINT may take to stop the agent (default 10); past it, it exits anyway.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shutdown_timeout_s: Option<u64>,
    /// Seconds any one podman call may take (default 300: `create` may pull an image) before
    /// it is killed and reported as failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub podman_timeout_s: Option<u64>,
    /// NATS connection.
    #[serde(default)]
    pub nats: NatsFile,
}

/// `[nats]` as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsFile {
    /// Server URLs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// User name (with `password_file`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// File holding the password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// File holding a token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// A `.creds` file (JWT + nkey seed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creds_file: Option<PathBuf>,
    /// File holding an nkey seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nkey_file: Option<PathBuf>,
}

/// Container runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// podman CLI.
    Podman,
    /// No runtime: plans are reported as applied, nothing runs (load tests).
    None,
}


impl ConfigFile {
    /// The file's TOML text, as `harmony fleet enroll` writes it (unset fields left out). Fails
    /// only on a path that is not UTF-8, which TOML cannot hold.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back_the_same() {
        let c = ConfigFile {
            device_id: Some("nuc-001".into()),
            state_dir: Some("/var/lib/harmony-agent".into()),
            fleet_keys: vec!["key \"quoted\"".into()],
            labels: BTreeMap::from([("site".into(), "mtl = 1".into())]),
            runtime: Some(RuntimeKind::None),
            nats: NatsFile { urls: vec!["nats://a:4222".into(), "nats://b:4222".into()], nkey_file: Some("/etc/harmony/nuc-001.nk".into()), ..Default::default() },
            ..Default::default()
        };
        let text = c.to_toml().unwrap();
        assert_eq!(toml::from_str::<ConfigFile>(&text).unwrap(), c, "{text}");
        assert!(!text.contains("command_keys"), "unset fields are left out: {text}");
    }
}
