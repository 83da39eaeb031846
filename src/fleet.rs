//! `harmony fleet enroll | revoke | rotate-signing-key | auth-config`: the fleet's NATS
//! credentials and signing-key chain, kept in the operator's auth directory (docs/security.md,
//! ADR 0010). The mechanics live in `harmony_executor::fleet::auth`; this is flags and output.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use harmony_compiler::{CompiledRepo, UnitContent};
use harmony_executor::fleet::auth::{self, AUTH_DIR_ENV, FleetAuth, chain_head, current_signing_key, write_private};
use harmony_executor::fleet::convert::{SIGNING_KEY_ENV, fleet_info};
use harmony_executor::fleet::observe::{observe_all, purge_plan};
use harmony_executor::fleet::security::{FleetSecurity, existing_auth};
use harmony_executor::fleet::{connect, load_signing_key};
use harmony_schemas::fleet::{VerifyingKey, encode_key, generate_signing_key, key_id, parse_public_key};
use harmony_schemas::trust::{KeyAction, announce};

use crate::apply::{NatsArgs, compiled};
use crate::cli::Global;

#[derive(Debug, clap::Args)]
pub struct FleetArgs {
    #[command(subcommand)]
    pub command: FleetCommand,
}

/// Where the reload command comes from.
#[derive(Debug, Clone, clap::Args)]
pub struct ReloadArgs {
    /// Command (run with `sh -c`) that installs the regenerated `nats-auth.conf` on the fleet's
    /// NATS servers and reloads them, e.g. `nats-server --signal reload=PID`; the file's path is
    /// in $HARMONY_NATS_AUTH_CONF. Without it, harmony prints what to reload.
    #[arg(long, value_name = "CMD", env = "HARMONY_NATS_RELOAD")]
    pub reload_command: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum FleetCommand {
    /// Publish a `harmony-agent` binary to the fleet's object store (signed, SHA-256), so that
    /// plans naming its version upgrade the agents (docs/operations.md).
    PublishAgent(crate::publish::PublishAgentArgs),
    /// Give a device of the repository its own NATS credentials: writes the agent config, the
    /// device's nkey seed (mode 0600) and the fleet's public key to --out, admits its public
    /// nkey in the generated NATS authorisation and reloads the servers.
    Enroll {
        /// Device id (declared in the repository).
        device: String,
        /// Directory to write the device's files to (created; must not already hold them).
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
        /// Where the files will live on the device (paths written into agent.toml).
        #[arg(long, value_name = "DIR", default_value = "/etc/harmony")]
        device_dir: PathBuf,
        /// The agent's state directory on the device.
        #[arg(long, value_name = "DIR", default_value = "/var/lib/harmony-agent")]
        state_dir: PathBuf,
        /// Public key(s) trusted to sign logs/exec commands (hex or base64; repeatable).
        #[arg(long = "command-key", value_name = "KEY")]
        command_keys: Vec<String>,
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        reload: ReloadArgs,
    },
    /// Revoke a device: remove its NATS user (regenerate + reload: its connections are closed),
    /// delete its plan, and never write it a plan again.
    Revoke {
        /// Device id.
        device: String,
        /// Its fleet (default: the repository's fleet declaring it).
        #[arg(long, value_name = "NAME")]
        fleet: Option<String>,
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        reload: ReloadArgs,
    },
    /// Rotate the fleet's signing key in two steps, with `harmony apply` after each: first
    /// announce a new key signed by the current one (`--new-key-file`); once every device reports
    /// trusting it, `--retire` the old key (announced by the new one).
    RotateSigningKey {
        /// Fleet (default: the repository's only fleet).
        #[arg(long, value_name = "NAME")]
        fleet: Option<String>,
        /// The current private key (or $HARMONY_SIGNING_KEY): signs the announcement.
        #[arg(long, value_name = "FILE", env = "HARMONY_SIGNING_KEY_FILE")]
        signing_key_file: Option<PathBuf>,
        /// Step 1: write a new private key here (mode 0600, must not exist) and announce it.
        #[arg(long, value_name = "FILE", required_unless_present = "retire", conflicts_with = "retire")]
        new_key_file: Option<PathBuf>,
        /// Step 2: retire every other key; --signing-key-file is then the new key.
        #[arg(long)]
        retire: bool,
        /// Retire even if some devices do not report trusting the new key yet (they will refuse
        /// plans until they receive the chain).
        #[arg(long, requires = "retire")]
        force: bool,
        #[command(flatten)]
        nats: NatsArgs,
    },
    /// Rotate a device's NATS credentials without touching it: a signed `rotate-credentials`
    /// command makes the agent generate a new nkey (the seed never leaves the device) and reply
    /// with its public key; harmony admits it, removes the old one and reloads; the server closes
    /// the old connection and the agent reconnects with the new key.
    RotateDeviceKey {
        /// Device id.
        device: String,
        /// File holding a command key the device trusts (or $HARMONY_COMMAND_KEY).
        #[arg(long, value_name = "FILE", env = "HARMONY_COMMAND_KEY_FILE")]
        command_key_file: Option<PathBuf>,
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        reload: ReloadArgs,
    },
    /// Regenerate the fleet's NATS authorisation (`<auth-dir>/<fleet>/nats-auth.conf`), print its
    /// path, and reload the servers if a reload command is given.
    AuthConfig {
        /// Fleet (default: every fleet of the repository).
        #[arg(long, value_name = "NAME")]
        fleet: Option<String>,
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        reload: ReloadArgs,
    },
}

fn auth_dir(nats: &NatsArgs) -> anyhow::Result<&Path> {
    nats.auth_dir.as_deref().with_context(|| {
        format!("no auth directory: pass --auth-dir DIR or set {AUTH_DIR_ENV} (it holds harmony's NATS key and the fleet's credentials; keep it private)")
    })
}

/// Refuses to write secrets (`what`, given by `flag`) to `path` inside the repository at
/// `repo`: private keys never enter the repository, not even as untracked files a `git add .`
/// would pick up. Paths that do not exist yet are judged by their nearest existing ancestor.
fn outside_repo(repo: &Path, path: &Path, flag: &str, what: &str) -> anyhow::Result<()> {
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
        bail!(
            "{flag} {} is inside the repository {}: {what} would be written there, and private keys never enter the repository; \
             choose a directory outside it",
            path.display(),
            repo.display()
        );
    }
    Ok(())
}

/// The fleet's part of the auth directory, which must be outside the repository (it holds
/// harmony's NATS seeds).
fn open_auth(g: &Global, nats: &NatsArgs, fleet: &str) -> anyhow::Result<FleetAuth> {
    let dir = auth_dir(nats)?;
    outside_repo(&g.repo, dir, "the auth directory", "harmony's NATS seeds")?;
    Ok(FleetAuth::open(dir, fleet)?)
}

/// The fleet declaring `device`.
fn fleet_of(repo: &CompiledRepo, device: &str) -> anyhow::Result<String> {
    repo.units
        .values()
        .find_map(|u| match &u.content {
            UnitContent::DevicePlan(p) if p.device.as_str() == device => Some(p.fleet.as_str().to_string()),
            _ => None,
        })
        .with_context(|| format!("the repository declares no device `{device}` (declare it with `device {device} {{ fleet NAME }}` first)"))
}

fn one_fleet(repo: &CompiledRepo, fleet: &Option<String>) -> anyhow::Result<String> {
    match fleet {
        Some(f) => Ok(f.clone()),
        None if repo.fleets.len() == 1 => Ok(repo.fleets.keys().next().map(|n| n.as_str().to_string()).unwrap_or_default()),
        None => bail!("the repository declares {} fleets: pass --fleet NAME", repo.fleets.len()),
    }
}

fn reload(r: &ReloadArgs, auth: &FleetAuth, quiet: bool) -> anyhow::Result<()> {
    let conf = auth.config_path();
    match &r.reload_command {
        Some(cmd) => {
            auth::reload(cmd, &conf)?;
            if !quiet {
                println!("reloaded NATS authorisation ({})", conf.display());
            }
        }
        None => println!("install {} on the fleet's NATS servers and reload them (nats-server --signal reload): it takes effect then", conf.display()),
    }
    Ok(())
}

fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

pub fn run(g: &Global, a: FleetArgs, rt: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    let repo = compiled(g)?;
    match a.command {
        FleetCommand::PublishAgent(p) => crate::publish::publish_agent(g, p, rt),
        FleetCommand::Enroll { device, out, device_dir, state_dir, command_keys, nats, reload: r } => {
            let fleet = fleet_of(&repo, &device)?;
            let info = fleet_info(&repo, &fleet)?;
            for (i, k) in command_keys.iter().enumerate() {
                parse_public_key(k).map_err(|e| anyhow::anyhow!("--command-key #{}: {e}", i + 1))?;
            }
            let auth = open_auth(g, &nats, &fleet)?;
            if auth.registry()?.is_revoked(&device) {
                bail!("device `{device}` of fleet `{fleet}` was revoked; a revoked device id is never enrolled again");
            }
            // The key the device trusts: the chain's current key (after any rotation), so a
            // newly enrolled device trusts neither a retired key nor one about to be retired.
            let root = parse_public_key(&info.signing_key).map_err(|e| anyhow::anyhow!("fleet `{fleet}` declares an invalid public key: {e}"))?;
            let fleet_keys = [current_signing_key(&fleet, &root, &auth.key_chain()?).map_err(anyhow::Error::msg)?];
            outside_repo(&g.repo, &out, "--out", "the device's nkey seed")?;
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            let seed_name = format!("{device}.nk");
            let (seed, public) = auth::new_user_nkey();
            // The seed goes to the enrolment output only (mode 0600); the auth dir keeps the public key.
            write_private(&out.join(&seed_name), format!("{seed}\n").as_bytes(), false)?;
            let keys: Vec<String> = fleet_keys.iter().map(|k| encode_key(k.as_bytes())).collect();
            std::fs::write(out.join("fleet.pub"), keys.iter().map(|k| format!("{k}\n")).collect::<String>())?;
            let list = |v: &[String]| v.iter().map(|k| toml_str(k)).collect::<Vec<_>>().join(", ");
            let config = format!(
                "# harmony-agent configuration for device `{device}` of fleet `{fleet}` (harmony fleet enroll).\n\
                 device_id = {}\nstate_dir = {}\nfleet_keys = [{}]\ncommand_keys = [{}]\n\n[nats]\nurls = [{}]\nnkey_file = {}\n",
                toml_str(&device),
                toml_str(&state_dir.to_string_lossy()),
                list(&keys),
                list(&command_keys),
                list(if nats.urls.is_empty() { &info.nats } else { &nats.urls }),
                toml_str(&device_dir.join(&seed_name).to_string_lossy()),
            );
            std::fs::write(out.join("agent.toml"), config)?;
            auth.enroll(&device, &public)?;
            if !g.quiet {
                println!("enrolled device {device} of fleet {fleet}: NATS user {public}");
                println!(
                    "wrote {} (agent.toml, {seed_name} (secret, mode 0600), fleet.pub): copy them to {} on the device",
                    out.display(),
                    device_dir.display()
                );
            }
            reload(&r, &auth, g.quiet)?;
            Ok(ExitCode::SUCCESS)
        }
        FleetCommand::Revoke { device, fleet, nats, reload: r } => {
            let fleet = match fleet {
                Some(f) => f,
                None => fleet_of(&repo, &device)?,
            };
            let info = fleet_info(&repo, &fleet)?;
            let auth = open_auth(g, &nats, &fleet)?;
            auth.revoke(&device)?;
            reload(&r, &auth, g.quiet)?;
            // Delete its plan (as harmony).
            let opts = nats.options_for_fleet(&fleet, &info.nats)?;
            rt.block_on(async {
                let client = connect(&opts).await?;
                purge_plan(&client, &device).await.map_err(|e| anyhow::anyhow!("deleting the plan of {device}: {e}"))
            })?;
            println!("revoked device {device} of fleet {fleet}: NATS user removed, plan deleted");
            Ok(ExitCode::SUCCESS)
        }
        FleetCommand::RotateSigningKey { fleet, signing_key_file, new_key_file, retire, force, nats } => {
            let fleet = one_fleet(&repo, &fleet)?;
            let info = fleet_info(&repo, &fleet)?;
            let key = load_signing_key(signing_key_file.as_deref(), std::env::var(SIGNING_KEY_ENV).ok())?;
            let auth = open_auth(g, &nats, &fleet)?;
            let mut chain = auth.key_chain()?;
            // Only the chain's current key may extend it.
            let security = FleetSecurity::with_chain(&fleet, chain.clone());
            security.check_signing_key(&key, &fleet, &info.signing_key)?;
            let root = parse_public_key(&info.signing_key).map_err(|e| anyhow::anyhow!("fleet `{fleet}` declares an invalid public key: {e}"))?;
            let trusted = chain_head(&fleet, &root, &chain).map_err(anyhow::Error::msg)?.keys();
            if let Some(path) = new_key_file {
                outside_repo(&g.repo, &path, "--new-key-file", "the new signing key")?;
                let new = generate_signing_key()?;
                chain.push(announce(&fleet, KeyAction::Trust, &new.verifying_key(), &key)?);
                chain_head(&fleet, &root, &chain).map_err(anyhow::Error::msg)?;
                write_private(&path, format!("{}\n", encode_key(new.as_bytes())).as_bytes(), false)?;
                auth.save_key_chain(&chain)?;
                println!(
                    "fleet {fleet}: new signing key {} written to {} (secret, mode 0600), announced with key {}.\n\
                     next: `harmony apply --signing-key-file {}` (every plan carries the announcement), then once every device trusts it, \
                     `harmony fleet rotate-signing-key --retire --signing-key-file {}` and `harmony apply` again",
                    key_id(&new.verifying_key()),
                    path.display(),
                    key_id(&key.verifying_key()),
                    path.display(),
                    path.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            debug_assert!(retire);
            let old: Vec<VerifyingKey> = trusted.into_iter().filter(|k| *k != key.verifying_key()).collect();
            if old.is_empty() {
                println!("fleet {fleet}: key {} is the only trusted key; nothing to retire", key_id(&key.verifying_key()));
                return Ok(ExitCode::SUCCESS);
            }
            // Every device must trust the new key before the old one goes.
            let new_id = key_id(&key.verifying_key());
            let devices: Vec<String> = harmony_executor::fleet::desired_fleet(&repo, &fleet, "")?.plans.into_keys().collect();
            let registry_revoked = existing_auth(nats.auth_dir.as_deref(), &fleet)?.map(|a| a.registry().map(|r| r.revoked())).transpose()?.unwrap_or_default();
            let opts = nats.options_for_fleet(&fleet, &info.nats)?;
            let keys = security.observe_keys(root)?;
            let observed = rt.block_on(async {
                let client = connect(&opts).await?;
                observe_all(&client, &fleet, &keys).await
            })?;
            let missing: Vec<&String> = devices
                .iter()
                .filter(|d| !registry_revoked.contains(d))
                .filter(|d| !observed.statuses.get(*d).is_some_and(|s| s.trusted_keys.contains(&new_id)))
                .collect();
            if !missing.is_empty() && !force {
                bail!(
                    "not retiring: {} device(s) do not report trusting key {new_id} yet: {} (run `harmony apply` with the new key and wait, or pass --force)",
                    missing.len(),
                    missing.iter().map(|d| d.as_str()).collect::<Vec<_>>().join(", ")
                );
            }
            // The first retirement settles the devices on the current key (every other key is
            // retired with it); one link per old key keeps the record explicit.
            for k in &old {
                chain.push(announce(&fleet, KeyAction::Retire, k, &key)?);
            }
            chain_head(&fleet, &root, &chain).map_err(anyhow::Error::msg)?;
            auth.save_key_chain(&chain)?;
            let ids: Vec<String> = old.iter().map(key_id).collect();
            println!("fleet {fleet}: key(s) {} retired by key {new_id}; run `harmony apply` to deliver the retirement", ids.join(", "));
            Ok(ExitCode::SUCCESS)
        }
        FleetCommand::RotateDeviceKey { device, command_key_file, nats, reload: r } => {
            use harmony_executor::fleet::command::{COMMAND_KEY_ENV, load_command_key, ping, send};
            use harmony_schemas::fleet::{Command, CommandReply};
            let fleet = fleet_of(&repo, &device)?;
            let info = fleet_info(&repo, &fleet)?;
            let key = load_command_key(command_key_file.as_deref(), std::env::var(COMMAND_KEY_ENV).ok())?;
            let auth = open_auth(g, &nats, &fleet)?;
            let registry = auth.registry()?;
            if !registry.devices.get(&device).is_some_and(|d| d.revoked_at_ms.is_none()) {
                bail!("device `{device}` is not enrolled in fleet `{fleet}` (or was revoked)");
            }
            let opts = nats.options_for_fleet(&fleet, &info.nats)?;
            let client = rt.block_on(connect(&opts))?;
            let timeout = std::time::Duration::from_secs(10);
            let new = match rt.block_on(send(&client, &device, Command::RotateCredentials, &key, timeout))? {
                CommandReply::Credentials { nkey } => nkey,
                CommandReply::Refused { reason } => bail!("device `{device}` refused: {reason}"),
                CommandReply::Error { message } => bail!("device `{device}`: {message}"),
                other => bail!("device `{device}` answered with something else than a public nkey: {other:?}"),
            };
            // Admit the new key next to the old one first (the device may reconnect at any time
            // from now on), then remove the old one: the server closes the old connection. A key
            // of another identity (device, Harmony, the reader) is refused.
            auth.admit_rotated_key(&device, &new)?;
            reload(&r, &auth, true)?;
            auth.set_device_keys(&device, vec![new.clone()])?;
            reload(&r, &auth, true)?;
            // With the servers reloaded, the agent is back with the new key once it answers a ping.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while r.reload_command.is_some() {
                if rt.block_on(ping(&client, &device, std::time::Duration::from_secs(2))).is_ok() {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    bail!("device `{device}` did not answer after its old key was removed; it uses {new} from its next connection");
                }
                std::thread::sleep(std::time::Duration::from_millis(300));
            }
            println!("rotated NATS credentials of device {device}: now {new} (old key(s) removed)");
            Ok(ExitCode::SUCCESS)
        }
        FleetCommand::AuthConfig { fleet, nats, reload: r } => {
            let fleets = crate::apply::fleets(&repo, &fleet)?;
            for fleet in fleets {
                let auth = open_auth(g, &nats, &fleet)?;
                let reg = auth.registry()?;
                auth.save(&reg)?;
                println!("{}", auth.config_path().display());
                reload(&r, &auth, g.quiet)?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
