//! The agent's configuration: a TOML file, overridden by command-line flags.
//!
//! Every error names the field (`nats.urls`, `fleet_keys[1]`, …). Secrets (NATS password, token,
//! credentials) are read from files named in the config, never logged.
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use harmony_schemas::fleet::{VerifyingKey, parse_public_key, valid_device_id};
use harmony_schemas::host_path;

pub use harmony_schemas::agent_config::{ConfigFile, NatsFile, RuntimeKind};

/// Flags that override the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--device-id`.
    pub device_id: Option<String>,
    /// `--nats-url` (repeatable; replaces the file's list).
    pub nats_urls: Vec<String>,
    /// `--state-dir`.
    pub state_dir: Option<PathBuf>,
    /// `--data-root`.
    pub data_root: Option<PathBuf>,
    /// `--fleet-key` (repeatable; replaces the file's list).
    pub fleet_keys: Vec<String>,
    /// `--command-key` (repeatable; replaces the file's list).
    pub command_keys: Vec<String>,
    /// `--runtime`.
    pub runtime: Option<RuntimeKind>,
    /// `--heartbeat-interval`.
    pub heartbeat_interval_s: Option<u64>,
    /// `--label k=v` (repeatable; added to the file's).
    pub labels: Vec<(String, String)>,
    /// `--install-dir`.
    pub install_dir: Option<PathBuf>,
    /// `--upgrade-timeout`.
    pub upgrade_timeout_s: Option<u64>,
    /// `--shutdown-timeout`.
    pub shutdown_timeout_s: Option<u64>,
    /// `--observe-interval`.
    pub observe_interval_s: Option<u64>,
}

/// NATS authentication, resolved.
#[derive(Clone, Default)]
pub enum NatsAuth {
    /// None.
    #[default]
    None,
    /// User and password.
    UserPassword(String, String),
    /// Token.
    Token(String),
    /// Credentials file.
    CredsFile(PathBuf),
    /// Nkey seed.
    Nkey(String),
}

impl fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print secrets.
        match self {
            NatsAuth::None => write!(f, "none"),
            NatsAuth::UserPassword(u, _) => write!(f, "user {u} with password"),
            NatsAuth::Token(_) => write!(f, "token"),
            NatsAuth::CredsFile(p) => write!(f, "creds file {}", p.display()),
            NatsAuth::Nkey(_) => write!(f, "nkey"),
        }
    }
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Device id.
    pub device_id: String,
    /// The file holding the nkey seed (`nats.nkey_file`), rewritten by `rotate-credentials`.
    pub nkey_file: Option<PathBuf>,
    /// NATS URLs.
    pub nats_urls: Vec<String>,
    /// NATS authentication.
    pub nats_auth: NatsAuth,
    /// State directory.
    pub state_dir: PathBuf,
    /// The floor file (`docs/agent.md`): beside the seed, else beside the state directory.
    pub floor_file: PathBuf,
    /// Tenants' data directories on this device (`<data_root>/<tenant>`).
    pub data_root: PathBuf,
    /// The agent's own files and directories (state, install directory, credentials, config
    /// file): no workload may bind-mount them or a directory holding them.
    pub own_paths: Vec<PathBuf>,
    /// Trusted plan keys.
    pub fleet_keys: Vec<VerifyingKey>,
    /// Trusted command keys.
    pub command_keys: Vec<VerifyingKey>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Heartbeat interval.
    pub heartbeat_interval: Duration,
    /// Runtime.
    pub runtime: RuntimeKind,
    /// podman executable.
    pub podman: PathBuf,
    /// Freshness window of signed commands.
    pub command_max_age: Duration,
    /// Agent versions and the `current` symlink (upgrades).
    pub install_dir: Option<PathBuf>,
    /// How long an upgrade waits to be retired.
    pub upgrade_timeout: Duration,
    /// The largest plans entry decoded, bytes.
    pub max_plan_bytes: usize,
    /// Between two full looks at podman.
    pub observe_interval: Duration,
    /// How long SIGTERM/SIGINT may take to stop the agent.
    pub shutdown_timeout: Duration,
    /// How long one podman call may take.
    pub podman_timeout: Duration,
}

/// Default `max_plan_bytes`: 256 KiB, a quarter of nats-server's default `max_payload` (1 MiB)
/// and far above any real plan (a few KiB per deployment).
pub const DEFAULT_MAX_PLAN_BYTES: usize = 256 * 1024;

/// A configuration error naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The field (`nats.urls`, `fleet_keys[0]`, …), or the file for I/O and syntax errors.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config: `{}`: {}", self.field, self.message)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// The host-path policy of this device.
    pub fn mounts(&self) -> crate::mounts::MountPolicy {
        crate::mounts::MountPolicy::new(&self.data_root, &self.own_paths)
    }
}

fn err(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError { field: field.into(), message: message.into() }
}

fn read_secret(field: &str, path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).map_err(|e| err(field, format!("cannot read {}: {e}", path.display())))
}

/// The dotted key (`[table]` prefix included) of the `key = value` line holding byte `pos`.
fn key_at(text: &str, pos: usize) -> Option<String> {
    let pos = pos.min(text.len());
    let start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next()?;
    let key = line.split_once('=')?.0.trim();
    if key.is_empty() {
        return None;
    }
    let table = text[..start].lines().rev().find_map(|l| l.trim().strip_prefix('[').and_then(|l| l.strip_suffix(']')).map(str::trim));
    Some(match table {
        Some(t) => format!("{t}.{key}"),
        None => key.to_string(),
    })
}

/// Parses `agent.toml` text; syntax errors and unknown fields name the field.
pub fn parse(text: &str, origin: &Path) -> Result<ConfigFile, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let msg = e.message().to_string();
        let named = (msg.starts_with("unknown field") || msg.starts_with("missing field")).then(|| msg.split('`').nth(1)).flatten();
        let field = match (named, e.span()) {
            (Some(f), _) => Some(f.to_string()),
            (None, Some(span)) => key_at(text, span.start),
            _ => None,
        };
        let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        let at = line.map(|l| format!("{}:{l}", origin.display())).unwrap_or_else(|| origin.display().to_string());
        err(field.unwrap_or_else(|| at.clone()), format!("{msg} ({at})"))
    })
}

/// Reads and parses a file.
pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| err(path.display().to_string(), format!("cannot read config file: {e}")))?;
    parse(&text, path)
}

/// Applies overrides to the file and validates the result.
pub fn resolve(mut file: ConfigFile, o: Overrides) -> Result<Config, ConfigError> {
    if o.device_id.is_some() {
        file.device_id = o.device_id;
    }
    if !o.nats_urls.is_empty() {
        file.nats.urls = o.nats_urls;
    }
    if o.state_dir.is_some() {
        file.state_dir = o.state_dir;
    }
    if o.data_root.is_some() {
        file.data_root = o.data_root;
    }
    if !o.fleet_keys.is_empty() {
        file.fleet_keys = o.fleet_keys;
    }
    if !o.command_keys.is_empty() {
        file.command_keys = o.command_keys;
    }
    if o.runtime.is_some() {
        file.runtime = o.runtime;
    }
    if o.heartbeat_interval_s.is_some() {
        file.heartbeat_interval_s = o.heartbeat_interval_s;
    }
    file.labels.extend(o.labels);
    if o.install_dir.is_some() {
        file.install_dir = o.install_dir;
    }
    if o.upgrade_timeout_s.is_some() {
        file.upgrade_timeout_s = o.upgrade_timeout_s;
    }
    if o.shutdown_timeout_s.is_some() {
        file.shutdown_timeout_s = o.shutdown_timeout_s;
    }
    if o.observe_interval_s.is_some() {
        file.observe_interval_s = o.observe_interval_s;
    }

    let device_id = file.device_id.ok_or_else(|| err("device_id", "missing (set it in the config file or with --device-id)"))?;
    if !valid_device_id(&device_id) {
        return Err(err("device_id", format!("`{device_id}` is not an RFC 1123 label (1-63 of a-z, 0-9, '-', alphanumeric at both ends)")));
    }
    if file.nats.urls.is_empty() {
        return Err(err("nats.urls", "missing: give at least one NATS URL (or --nats-url)"));
    }
    for (i, u) in file.nats.urls.iter().enumerate() {
        let ok = ["nats://", "tls://", "ws://", "wss://"].iter().any(|p| u.starts_with(p) && u.len() > p.len());
        if !ok {
            return Err(err(format!("nats.urls[{i}]"), format!("`{u}` is not a nats://, tls://, ws:// or wss:// URL")));
        }
    }
    let state_dir = file.state_dir.ok_or_else(|| err("state_dir", "missing (or --state-dir)"))?;
    let keys = |field: &str, list: &[String]| -> Result<Vec<VerifyingKey>, ConfigError> {
        list.iter().enumerate().map(|(i, k)| parse_public_key(k).map_err(|e| err(format!("{field}[{i}]"), e.to_string()))).collect()
    };
    let fleet_keys = keys("fleet_keys", &file.fleet_keys)?;
    if fleet_keys.is_empty() {
        return Err(err("fleet_keys", "missing: the fleet's Ed25519 public key (hex or base64) is required to verify plans"));
    }
    let command_keys = keys("command_keys", &file.command_keys)?;
    for k in file.labels.keys() {
        if k.is_empty() || k.len() > 63 {
            return Err(err(format!("labels.{k}"), "label keys are 1-63 characters"));
        }
    }
    let heartbeat = file.heartbeat_interval_s.unwrap_or(30);
    if heartbeat == 0 {
        return Err(err("heartbeat_interval_s", "must be at least 1"));
    }
    let max_age = file.command_max_age_s.unwrap_or(60);
    if max_age == 0 {
        return Err(err("command_max_age_s", "must be at least 1"));
    }
    let observe = file.observe_interval_s.unwrap_or(15);
    if !(1..=300).contains(&observe) {
        return Err(err("observe_interval_s", format!("{observe} is out of range: give 1 to 300 seconds (default 15)")));
    }
    let shutdown_timeout = file.shutdown_timeout_s.unwrap_or(10);
    if !(1..=300).contains(&shutdown_timeout) {
        return Err(err("shutdown_timeout_s", format!("{shutdown_timeout} is out of range: give 1 to 300 seconds (default 10)")));
    }
    let podman_timeout = file.podman_timeout_s.unwrap_or(300);
    if !(5..=3600).contains(&podman_timeout) {
        return Err(err("podman_timeout_s", format!("{podman_timeout} is out of range: give 5 to 3600 seconds (default 300)")));
    }
    let max_plan_bytes = file.max_plan_bytes.unwrap_or(DEFAULT_MAX_PLAN_BYTES);
    if max_plan_bytes < 4096 {
        return Err(err("max_plan_bytes", format!("{max_plan_bytes} is too small for a plan: give at least 4096 (default {DEFAULT_MAX_PLAN_BYTES})")));
    }
    let n = &file.nats;
    let methods = [n.password_file.is_some(), n.token_file.is_some(), n.creds_file.is_some(), n.nkey_file.is_some()].iter().filter(|b| **b).count();
    if methods > 1 {
        return Err(err("nats", "give at most one of password_file, token_file, creds_file, nkey_file"));
    }
    let nats_auth = if let Some(p) = &n.password_file {
        let user = n.user.clone().ok_or_else(|| err("nats.user", "required with nats.password_file"))?;
        NatsAuth::UserPassword(user, read_secret("nats.password_file", p)?)
    } else if let Some(p) = &n.token_file {
        NatsAuth::Token(read_secret("nats.token_file", p)?)
    } else if let Some(p) = &n.creds_file {
        if !p.is_file() {
            return Err(err("nats.creds_file", format!("{} does not exist", p.display())));
        }
        NatsAuth::CredsFile(p.clone())
    } else if let Some(p) = &n.nkey_file {
        let seed = read_secret("nats.nkey_file", p)?;
        if nkeys::KeyPair::from_seed(seed.trim()).is_err() {
            return Err(err("nats.nkey_file", format!("{} does not hold an nkey seed (`SU…`)", p.display())));
        }
        NatsAuth::Nkey(seed.trim().to_string())
    } else if n.user.is_some() {
        return Err(err("nats.password_file", "required with nats.user"));
    } else {
        NatsAuth::None
    };
    let nkey_file = n.nkey_file.clone();
    let floor_file = crate::state::floor_path(nkey_file.as_deref(), &state_dir);
    let own_paths: Vec<PathBuf> = [Some(&state_dir), Some(&floor_file), file.install_dir.as_ref(), n.password_file.as_ref(), n.token_file.as_ref(), n.creds_file.as_ref(), n.nkey_file.as_ref()]
        .into_iter()
        .flatten()
        .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
        .collect();
    let data_root = file.data_root.unwrap_or_else(|| PathBuf::from(host_path::DATA_ROOT));
    let root = data_root.to_str().ok_or_else(|| err("data_root", "must be valid UTF-8")).and_then(|r| host_path::normalize(r).map_err(|e| err("data_root", e.to_string())))?;
    let own: Vec<String> = own_paths.iter().filter_map(|p| host_path::normalize(p.to_str()?).ok()).collect();
    if let Some(p) = host_path::protected_overlap(&root, &own) {
        return Err(err("data_root", format!("`{root}` overlaps `{p}`, which no workload may mount (the agent's own files, or a system directory)")));
    }
    Ok(Config {
        device_id,
        nkey_file,
        nats_urls: file.nats.urls,
        nats_auth,
        state_dir,
        floor_file,
        data_root,
        own_paths,
        fleet_keys,
        command_keys,
        labels: file.labels,
        heartbeat_interval: Duration::from_secs(heartbeat),
        runtime: file.runtime.unwrap_or(RuntimeKind::Podman),
        podman: file.podman.unwrap_or_else(|| PathBuf::from("podman")),
        command_max_age: Duration::from_secs(max_age),
        install_dir: file.install_dir,
        upgrade_timeout: Duration::from_secs(file.upgrade_timeout_s.unwrap_or(120).max(1)),
        max_plan_bytes,
        shutdown_timeout: Duration::from_secs(shutdown_timeout),
        observe_interval: Duration::from_secs(observe),
        podman_timeout: Duration::from_secs(podman_timeout),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29";

    fn resolve_text(text: &str) -> Result<Config, ConfigError> {
        resolve(parse(text, Path::new("agent.toml"))?, Overrides::default())
    }

    #[test]
    fn good_config_and_overrides() {
        let text = format!(
            "device_id = \"pi-001\"\nstate_dir = \"/tmp/x\"\nfleet_keys = [\"{KEY}\"]\n[nats]\nurls = [\"nats://127.0.0.1:4222\"]\n[labels]\nsite = \"mtl\"\n"
        );
        let c = resolve_text(&text).unwrap();
        assert_eq!(c.device_id, "pi-001");
        assert_eq!((c.runtime, c.max_plan_bytes), (RuntimeKind::Podman, DEFAULT_MAX_PLAN_BYTES));
        assert_eq!(resolve_text(&format!("max_plan_bytes = 65536\n{text}")).unwrap().max_plan_bytes, 65536);
        let o = Overrides { device_id: Some("pi-002".into()), runtime: Some(RuntimeKind::None), ..Default::default() };
        let c = resolve(parse(&text, Path::new("a")).unwrap(), o).unwrap();
        assert_eq!((c.device_id.as_str(), c.runtime), ("pi-002", RuntimeKind::None));
    }

    #[test]
    fn errors_name_the_field() {
        let field = |t: &str| resolve_text(t).unwrap_err().field;
        assert_eq!(field("state_dir = \"/x\""), "device_id");
        assert_eq!(field("device_id = \"Pi_1\""), "device_id");
        assert_eq!(field("device_id = \"pi\"\nstate_dir=\"/x\""), "nats.urls");
        assert_eq!(field("device_id = \"pi\"\nstate_dir=\"/x\"\n[nats]\nurls=[\"http://x\"]"), "nats.urls[0]");
        assert_eq!(field("device_id = \"pi\"\nstate_dir=\"/x\"\nfleet_keys=[\"zz\"]\n[nats]\nurls=[\"nats://x\"]"), "fleet_keys[0]");
        assert_eq!(field("device_id = \"pi\"\nstate_dir=\"/x\"\n[nats]\nurls=[\"nats://x\"]"), "fleet_keys");
        assert_eq!(field("devise_id = \"pi\""), "devise_id");
        assert_eq!(field("device_id = 3"), "device_id");
        assert_eq!(field("device_id = \"pi\"\n[nats]\nurls = 3"), "nats.urls");
        let base = format!("device_id = \"pi\"\nstate_dir = \"/srv/agent\"\nfleet_keys = [\"{KEY}\"]\n[nats]\nurls = [\"nats://x\"]\n");
        for bad in ["data_root = \"relative\"", "data_root = \"/etc/data\"", "data_root = \"/srv\"", "data_root = \"/srv/agent/data\"", "data_root = \"/x/../y\""] {
            assert_eq!(field(&format!("{bad}\n{base}")), "data_root", "{bad}");
        }
        assert_eq!(resolve_text(&format!("data_root = \"/srv/data/\"\n{base}")).unwrap().data_root, PathBuf::from("/srv/data/"));
        assert_eq!(
            field(&format!("max_plan_bytes = 100\ndevice_id = \"pi\"\nstate_dir=\"/x\"\nfleet_keys=[\"{KEY}\"]\n[nats]\nurls=[\"nats://x\"]")),
            "max_plan_bytes"
        );
        assert_eq!(field(&format!("shutdown_timeout_s = 0\n{base}")), "shutdown_timeout_s");
        assert_eq!(field(&format!("podman_timeout_s = 1\n{base}")), "podman_timeout_s");
        assert_eq!(resolve_text(&base).unwrap().shutdown_timeout, Duration::from_secs(10));
        let e = resolve_text("heartbeat_interval_s = \"x\"").unwrap_err();
        assert!(e.to_string().contains("agent.toml"), "{e}");
    }
}
