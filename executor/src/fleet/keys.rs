//! Operator actions on a fleet's credentials (ADR 0010, docs/security.md): enrolling a device
//! (its nkey seed, `agent.toml`, the key it trusts), rotating the fleet's signing key (announce a
//! new key, then retire the old ones once every device trusts the new one) and rotating a
//! device's NATS key through a signed command. The CLI only passes flags in and prints results.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use harmony_compiler::CompiledRepo;
use harmony_compiler::compile::FleetInfo;
use harmony_schemas::agent_config::{ConfigFile, NatsFile};
use harmony_schemas::fleet::{Command, CommandReply, VerifyingKey, encode_key, generate_signing_key, key_id, parse_public_key};
use harmony_schemas::trust::{KeyAction, announce};

use super::auth::{AuthError, FleetAuth, chain_head, current_signing_key, new_user_nkey, write_private};
use super::command::{CommandError, ping, send};
use super::security::FleetSecurity;
use super::{FleetError, NatsOptions, connect, desired_fleet};

/// Why a key operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The auth directory.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The fleet, its keys or NATS.
    #[error(transparent)]
    Fleet(#[from] FleetError),
    /// A command to the device.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The request is refused, with why and what to do.
    #[error("{0}")]
    Refused(String),
}

fn refused(message: String) -> KeyError {
    KeyError::Refused(message)
}

/// Refuses to write secrets (`what`, given by `flag`) to `path` inside the repository at `repo`:
/// private keys never enter the repository, not even as untracked files a `git add .` would pick
/// up. Paths that do not exist yet are judged by their nearest existing ancestor.
pub fn outside_repo(repo: &Path, path: &Path, flag: &str, what: &str) -> Result<(), AuthError> {
    let resolve = |p: &Path| -> Option<PathBuf> {
        let p = std::path::absolute(p).ok()?;
        let mut rest = Vec::new();
        let mut cur = p.as_path();
        loop {
            if let Ok(c) = cur.canonicalize() {
                return Some(rest.iter().rev().fold(c, |acc: PathBuf, part| acc.join(part)));
            }
            rest.push(cur.file_name()?.to_owned());
            cur = cur.parent()?;
        }
    };
    if let (Some(root), Some(target)) = (resolve(repo), resolve(path))
        && target.starts_with(&root)
    {
        return Err(AuthError::Refused(format!(
            "{flag} {} is inside the repository {}: {what} would be written there, and private keys never enter the repository; \
             choose a directory outside it",
            path.display(),
            repo.display()
        )));
    }
    Ok(())
}

/// The fleet's public key as the repository declares it.
fn root_key(fleet: &str, info: &FleetInfo) -> Result<VerifyingKey, KeyError> {
    parse_public_key(&info.signing_key).map_err(|e| refused(format!("fleet `{fleet}` declares an invalid public key: {e}")))
}

/// What `harmony fleet enroll` is asked to do.
#[derive(Debug)]
pub struct Enrolment<'a> {
    /// The repository's root (the output directory must be outside it).
    pub repo_root: &'a Path,
    /// Device id, declared in the repository.
    pub device: &'a str,
    /// Where the device's files are written.
    pub out: &'a Path,
    /// Where they will live on the device (paths in `agent.toml`).
    pub device_dir: &'a Path,
    /// The agent's state directory on the device.
    pub state_dir: &'a Path,
    /// Command keys the device trusts (validated here).
    pub command_keys: &'a [String],
    /// NATS URLs for the agent (empty: the fleet's declared ones).
    pub nats_urls: &'a [String],
    /// Where agent versions and the `current` symlink live on the device (`install_dir`).
    pub install_dir: &'a Path,
    /// The device's labels as the repository declares them (reported in heartbeats).
    pub labels: &'a std::collections::BTreeMap<String, String>,
}

/// A device enrolled.
#[derive(Debug)]
pub struct Enrolled {
    /// Its public nkey, now admitted in the fleet's NATS authorisation.
    pub nkey: String,
    /// The seed file's name in the output directory (mode 0600).
    pub seed_file: String,
}

/// Enrols a device: writes its nkey seed (0600), `fleet.pub` (the chain's current key, so a new
/// device trusts neither a retired key nor one about to be retired), a complete `agent.toml`
/// (labels, `install_dir`: upgrades work from the start) and `harmony-agent.service` to the
/// output directory, then admits its public nkey. A revoked device id is never enrolled again.
pub fn enroll(auth: &FleetAuth, fleet: &str, info: &FleetInfo, e: &Enrolment<'_>) -> Result<Enrolled, KeyError> {
    let device = e.device;
    for (i, k) in e.command_keys.iter().enumerate() {
        parse_public_key(k).map_err(|err| refused(format!("--command-key #{}: {err}", i + 1)))?;
    }
    if auth.registry()?.is_revoked(device) {
        return Err(refused(format!("device `{device}` of fleet `{fleet}` was revoked; a revoked device id is never enrolled again")));
    }
    let current = current_signing_key(fleet, &root_key(fleet, info)?, &auth.key_chain()?).map_err(refused)?;
    outside_repo(e.repo_root, e.out, "--out", "the device's nkey seed")?;
    // Checked before anything is written.
    let unit = super::unit_file::AgentUnit { install_dir: e.install_dir, config: &e.device_dir.join("agent.toml"), device }.render().map_err(|err| refused(err.to_string()))?;
    let io = |what: &Path, err: std::io::Error| KeyError::Auth(AuthError::File { path: what.display().to_string(), detail: err.to_string() });
    std::fs::create_dir_all(e.out).map_err(|err| io(e.out, err))?;
    let seed_file = format!("{device}.nk");
    let (seed, public) = new_user_nkey();
    // The seed goes to the enrolment output only; the auth dir keeps the public key.
    write_private(&e.out.join(&seed_file), format!("{seed}\n").as_bytes(), false)?;
    let key = encode_key(current.as_bytes());
    let pubfile = e.out.join("fleet.pub");
    std::fs::write(&pubfile, format!("{key}\n")).map_err(|err| io(&pubfile, err))?;
    let config = ConfigFile {
        device_id: Some(device.to_string()),
        state_dir: Some(e.state_dir.to_path_buf()),
        fleet_keys: vec![key],
        command_keys: e.command_keys.to_vec(),
        labels: e.labels.clone(),
        install_dir: Some(e.install_dir.to_path_buf()),
        nats: NatsFile {
            urls: if e.nats_urls.is_empty() { info.nats.clone() } else { e.nats_urls.to_vec() },
            nkey_file: Some(e.device_dir.join(&seed_file)),
            ..Default::default()
        },
        ..Default::default()
    };
    let text = config.to_toml().map_err(|err| refused(format!("agent.toml cannot hold the paths given (TOML needs UTF-8): {err}")))?;
    let toml = e.out.join("agent.toml");
    let header = format!("# harmony-agent configuration for device `{device}` of fleet `{fleet}` (harmony fleet enroll).\n");
    std::fs::write(&toml, header + &text).map_err(|err| io(&toml, err))?;
    let unit_path = e.out.join("harmony-agent.service");
    std::fs::write(&unit_path, unit).map_err(|err| io(&unit_path, err))?;
    auth.enroll(device, &public)?;
    Ok(Enrolled { nkey: public, seed_file })
}

/// The chain's current key must sign any change to it.
fn check_current(auth: &FleetAuth, fleet: &str, info: &FleetInfo, key: &SigningKey) -> Result<(), KeyError> {
    FleetSecurity::with_chain(fleet, auth.key_chain()?).check_signing_key(key, fleet, &info.signing_key)?;
    Ok(())
}

/// Step 1 of a signing-key rotation: writes a new private key to `path` (0600, outside the
/// repository, must not exist) and appends its announcement, signed by `key`, to the chain.
pub fn announce_new_key(auth: &FleetAuth, fleet: &str, info: &FleetInfo, key: &SigningKey, path: &Path, repo_root: &Path) -> Result<VerifyingKey, KeyError> {
    check_current(auth, fleet, info, key)?;
    outside_repo(repo_root, path, "--new-key-file", "the new signing key")?;
    let root = root_key(fleet, info)?;
    let mut chain = auth.key_chain()?;
    let new = generate_signing_key().map_err(|e| refused(format!("cannot generate a key: {e}")))?;
    chain.push(announce(fleet, KeyAction::Trust, &new.verifying_key(), key).map_err(|e| refused(e.to_string()))?);
    chain_head(fleet, &root, &chain).map_err(refused)?;
    write_private(path, format!("{}\n", encode_key(new.as_bytes())).as_bytes(), false)?;
    auth.save_key_chain(&chain)?;
    Ok(new.verifying_key())
}

/// Step 2 of a signing-key rotation: retires every key but `key` (the new one), once every
/// device of the repository that is not revoked reports trusting it (`force` skips that check:
/// devices that do not trust it refuse plans until they receive the chain). Returns the ids of
/// the keys retired (none when `key` is already the only trusted key).
pub async fn retire_old_keys(
    repo: &CompiledRepo,
    auth: &FleetAuth,
    fleet: &str,
    key: &SigningKey,
    force: bool,
    nats: &NatsOptions,
) -> Result<Vec<String>, KeyError> {
    let info = super::convert::fleet_info(repo, fleet)?;
    check_current(auth, fleet, info, key)?;
    let root = root_key(fleet, info)?;
    let mut chain = auth.key_chain()?;
    let trusted = chain_head(fleet, &root, &chain).map_err(refused)?.keys();
    let old: Vec<VerifyingKey> = trusted.into_iter().filter(|k| *k != key.verifying_key()).collect();
    if old.is_empty() {
        return Ok(Vec::new());
    }
    let new_id = key_id(&key.verifying_key());
    let security = FleetSecurity::with_chain(fleet, chain.clone());
    let keys = security.observe_keys(root)?;
    let client = connect(nats).await?;
    let observed = super::observe::observe_all(&client, fleet, &keys).await?;
    let revoked = auth.registry()?.revoked();
    let missing: Vec<String> = desired_fleet(repo, fleet, "")?
        .plans
        .into_keys()
        .filter(|d| !revoked.contains(d))
        .filter(|d| !observed.statuses.get(d).is_some_and(|s| s.trusted_keys.contains(&new_id)))
        .collect();
    if !missing.is_empty() && !force {
        return Err(refused(format!(
            "not retiring: {} device(s) do not report trusting key {new_id} yet: {} (run `harmony apply` with the new key and wait, or pass --force)",
            missing.len(),
            missing.join(", ")
        )));
    }
    // The first retirement settles the devices on the current key (every other key is retired
    // with it); one link per old key keeps the record explicit.
    for k in &old {
        chain.push(announce(fleet, KeyAction::Retire, k, key).map_err(|e| refused(e.to_string()))?);
    }
    chain_head(fleet, &root, &chain).map_err(refused)?;
    auth.save_key_chain(&chain)?;
    Ok(old.iter().map(key_id).collect())
}

/// Rotates a device's NATS key without touching it: a signed `rotate-credentials` command makes
/// the agent generate a new nkey (the seed never leaves the device) and reply with its public
/// key; it is admitted beside the old one, `reload` runs, the old key is removed and `reload`
/// runs again (the server closes the old connection). With `wait`, returns once the agent
/// answers a ping again (within 30 s). Returns the new public key.
pub async fn rotate_device_key(
    client: &async_nats::Client,
    auth: &FleetAuth,
    fleet: &str,
    device: &str,
    command_key: &SigningKey,
    reload: impl Fn() -> Result<(), AuthError>,
    wait: bool,
) -> Result<String, KeyError> {
    if !auth.registry()?.devices.get(device).is_some_and(|d| d.revoked_at_ms.is_none()) {
        return Err(refused(format!("device `{device}` is not enrolled in fleet `{fleet}` (or was revoked)")));
    }
    let new = match send(client, device, Command::RotateCredentials, command_key, Duration::from_secs(10)).await? {
        CommandReply::Credentials { nkey } => nkey,
        CommandReply::Refused { reason } => return Err(refused(format!("device `{device}` refused: {reason}"))),
        CommandReply::Error { message } => return Err(refused(format!("device `{device}`: {message}"))),
        other => return Err(refused(format!("device `{device}` answered with something else than a public nkey: {other:?}"))),
    };
    // Admit the new key next to the old one first (the device may reconnect at any time from
    // now on), then remove the old one. A key of another identity (device, Harmony, the reader)
    // is refused.
    auth.admit_rotated_key(device, &new)?;
    reload()?;
    auth.set_device_keys(device, vec![new.clone()])?;
    reload()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while wait {
        if ping(client, device, Duration::from_secs(2)).await.is_ok() {
            break;
        }
        if Instant::now() > deadline {
            return Err(refused(format!("device `{device}` did not answer after its old key was removed; it uses {new} from its next connection")));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(new)
}

/// A key pair written by [`keygen`].
#[derive(Debug)]
pub struct GeneratedKey {
    /// The private key (the 32-byte Ed25519 seed, hex; mode 0600).
    pub private: PathBuf,
    /// The public key (32 bytes, hex: the format `signing-key` files and `command_keys` take).
    pub public: PathBuf,
    /// The public key's text.
    pub public_text: String,
    /// Its key id.
    pub key_id: String,
}

/// Makes an Ed25519 key pair (a fleet's signing key or a command key) from the operating
/// system's random source: `DIR/NAME.key` (mode 0600) and `DIR/NAME.pub`. `dir` must be outside
/// the repository at `repo` (the public key is copied into the repository by whoever reviews
/// it); neither file may exist already, so a key is never overwritten.
pub fn keygen(repo: &Path, dir: &Path, name: &str) -> Result<GeneratedKey, KeyError> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.') || name.starts_with('.') {
        return Err(refused(format!("--name `{}`: use letters, digits, `-`, `_` and `.` (not first)", harmony_schemas::printable(name))));
    }
    outside_repo(repo, dir, "--out", "a private key")?;
    std::fs::create_dir_all(dir).map_err(|e| refused(format!("cannot create {}: {e}", dir.display())))?;
    let private = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    for p in [&private, &public] {
        if p.exists() {
            return Err(refused(format!("{} already exists: keys are never overwritten; choose another --name or --out", p.display())));
        }
    }
    let key = generate_signing_key().map_err(|e| refused(format!("cannot generate a key: {e}")))?;
    let verifying = key.verifying_key();
    let public_text = encode_key(verifying.as_bytes());
    write_private(&private, format!("{}\n", encode_key(&key.to_bytes())).as_bytes(), false)?;
    if let Err(e) = std::fs::OpenOptions::new().write(true).create_new(true).open(&public).and_then(|mut f| {
        use std::io::Write as _;
        f.write_all(format!("{public_text}\n").as_bytes()).and_then(|()| f.sync_all())
    }) {
        // No half pair: the private key alone would be an orphan.
        let _ = std::fs::remove_file(&private);
        return Err(refused(format!("cannot write {}: {e}", public.display())));
    }
    Ok(GeneratedKey { private, public, key_id: key_id(&verifying), public_text })
}
