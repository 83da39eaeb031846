//! `harmony fleet enroll | revoke | rotate-signing-key | auth-config`: the fleet's NATS
//! credentials and signing-key chain, kept in the operator's auth directory (docs/security.md,
//! ADR 0010). The mechanics live in `harmony_executor::fleet::auth`; this is flags and output.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use harmony_compiler::{CompiledRepo, UnitContent};
use harmony_executor::fleet::auth::{self, AUTH_DIR_ENV, FleetAuth};
use harmony_executor::fleet::convert::{SIGNING_KEY_ENV, fleet_info};
use harmony_executor::fleet::keys::{self, Enrolment, outside_repo};
use harmony_executor::fleet::observe::purge_plan;
use harmony_executor::fleet::{connect, load_signing_key};
use harmony_schemas::fleet::key_id;

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
        #[arg(add = crate::completion::devices())]
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
        /// Where agent versions (`harmony-agent-<version>`) and the `current` symlink the service
        /// runs live on the device (agent.toml's `install_dir`; upgrades need it).
        #[arg(long, value_name = "DIR", default_value = "/opt/harmony")]
        install_dir: PathBuf,
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
        #[arg(add = crate::completion::devices())]
        device: String,
        /// Its fleet (default: the repository's fleet declaring it).
        #[arg(long, value_name = "NAME", add = crate::completion::fleets())]
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
        #[arg(long, value_name = "NAME", add = crate::completion::fleets())]
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
        #[arg(add = crate::completion::devices())]
        device: String,
        /// File holding a command key the device trusts (or $HARMONY_COMMAND_KEY).
        #[arg(long, value_name = "FILE", env = "HARMONY_COMMAND_KEY_FILE")]
        command_key_file: Option<PathBuf>,
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        reload: ReloadArgs,
    },
    /// Make an Ed25519 key pair from the system's random source: the fleet's signing key, or a
    /// command key for `device logs`/`exec` (`--command`). Writes DIR/NAME.key (private, mode
    /// 0600; DIR must be outside the repository) and DIR/NAME.pub (hex); never overwrites.
    Keygen {
        /// Directory for the key pair (created; outside the repository).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// File name of the pair (default: `signing`, or `command` with --command).
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// A command key (trusted by agents through `command_keys` / `fleet enroll --command-key`).
        #[arg(long)]
        command: bool,
    },
    /// Regenerate the fleet's NATS authorisation (`<auth-dir>/<fleet>/nats-auth.conf`), print its
    /// path, and reload the servers if a reload command is given.
    AuthConfig {
        /// Fleet (default: every fleet of the repository).
        #[arg(long, value_name = "NAME", add = crate::completion::fleets())]
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

/// The fleet's part of the auth directory, which must be outside the repository (it holds
/// harmony's NATS seeds).
fn open_auth(g: &Global, nats: &NatsArgs, fleet: &str) -> anyhow::Result<FleetAuth> {
    let dir = auth_dir(nats)?;
    outside_repo(&g.repo, dir, "the auth directory", "harmony's NATS seeds")?;
    Ok(FleetAuth::open(dir, fleet)?)
}

/// The device plan unit of `device`.
fn device_unit<'a>(repo: &'a CompiledRepo, device: &str) -> Option<&'a harmony_compiler::compile::DevicePlanUnit> {
    repo.units.values().find_map(|u| match &u.content {
        UnitContent::DevicePlan(p) if p.device.as_str() == device => Some(p),
        _ => None,
    })
}

/// The fleet declaring `device`.
fn fleet_of(repo: &CompiledRepo, device: &str) -> anyhow::Result<String> {
    device_unit(repo, device)
        .map(|p| p.fleet.as_str().to_string())
        .with_context(|| format!("the repository declares no device `{device}` (declare it with `device {device} {{ fleet NAME }}` first)"))
}

/// The labels the repository declares for `device`.
fn device_labels(repo: &CompiledRepo, device: &str) -> std::collections::BTreeMap<String, String> {
    device_unit(repo, device).map(|p| p.labels.clone()).unwrap_or_default()
}

fn one_fleet(repo: &CompiledRepo, fleet: &Option<String>) -> anyhow::Result<String> {
    match fleet {
        Some(f) => Ok(f.clone()),
        None if repo.fleets.len() == 1 => Ok(repo.fleets.keys().next().map(|n| n.as_str().to_string()).unwrap_or_default()),
        None => bail!("the repository declares {} fleets: pass --fleet NAME", repo.fleets.len()),
    }
}

fn reload(r: &ReloadArgs, auth: &FleetAuth, quiet: bool) -> Result<(), auth::AuthError> {
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

pub fn run(g: &Global, a: FleetArgs, rt: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    // Compiled per command: a key pair is made before the repository can name it.
    let repo = || compiled(g);
    match a.command {
        FleetCommand::PublishAgent(p) => crate::publish::publish_agent(g, p, rt),
        FleetCommand::Keygen { out, name, command } => {
            let name = name.as_deref().unwrap_or(if command { "command" } else { "signing" });
            let k = keys::keygen(&g.repo, &out, name)?;
            if !g.quiet {
                println!("private key: {} (mode 0600; keep it out of the repository)", k.private.display());
                println!("public key:  {} (key id {})", k.public.display(), k.key_id);
                if command {
                    println!("trust it on devices with `harmony fleet enroll DEVICE --command-key {}` (or command_keys in agent.toml); sign with --command-key-file {}", k.public_text, k.private.display());
                } else {
                    println!("copy the public key into the repository and name it in the fleet's `signing-key`; apply with --signing-key-file {}", k.private.display());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        FleetCommand::Enroll { device, out, device_dir, state_dir, install_dir, command_keys, nats, reload: r } => {
            let repo = repo()?;
            let fleet = fleet_of(&repo, &device)?;
            let info = fleet_info(&repo, &fleet)?;
            let auth = open_auth(g, &nats, &fleet)?;
            let request = Enrolment {
                repo_root: &g.repo,
                device: &device,
                out: &out,
                device_dir: &device_dir,
                state_dir: &state_dir,
                command_keys: &command_keys,
                nats_urls: &nats.urls,
                install_dir: &install_dir,
                labels: &device_labels(&repo, &device),
            };
            let keys::Enrolled { nkey: public, seed_file: seed_name } = keys::enroll(&auth, &fleet, info, &request)?;
            if !g.quiet {
                println!("enrolled device {device} of fleet {fleet}: NATS user {public}");
                println!(
                    "wrote {} (agent.toml, {seed_name} (secret, mode 0600), fleet.pub, harmony-agent.service): copy the first three to {} on the device, the unit to /etc/systemd/system, and the agent binary to {}/harmony-agent-VERSION with {}/current linking to it (docs/operations.md)",
                    out.display(),
                    device_dir.display(),
                    install_dir.display(),
                    install_dir.display()
                );
            }
            reload(&r, &auth, g.quiet)?;
            Ok(ExitCode::SUCCESS)
        }
        FleetCommand::Revoke { device, fleet, nats, reload: r } => {
            let repo = repo()?;
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
            let repo = repo()?;
            let fleet = one_fleet(&repo, &fleet)?;
            let info = fleet_info(&repo, &fleet)?;
            let key = load_signing_key(signing_key_file.as_deref(), std::env::var(SIGNING_KEY_ENV).ok())?;
            let auth = open_auth(g, &nats, &fleet)?;
            if let Some(path) = new_key_file {
                let new = keys::announce_new_key(&auth, &fleet, info, &key, &path, &g.repo)?;
                println!(
                    "fleet {fleet}: new signing key {} written to {} (secret, mode 0600), announced with key {}.\n\
                     next: `harmony apply --signing-key-file {}` (every plan carries the announcement), then once every device trusts it, \
                     `harmony fleet rotate-signing-key --retire --signing-key-file {}` and `harmony apply` again",
                    key_id(&new),
                    path.display(),
                    key_id(&key.verifying_key()),
                    path.display(),
                    path.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            debug_assert!(retire);
            let opts = nats.options_for_fleet(&fleet, &info.nats)?;
            let retired = rt.block_on(keys::retire_old_keys(&repo, &auth, &fleet, &key, force, &opts))?;
            let new_id = key_id(&key.verifying_key());
            if retired.is_empty() {
                println!("fleet {fleet}: key {new_id} is the only trusted key; nothing to retire");
            } else {
                println!("fleet {fleet}: key(s) {} retired by key {new_id}; run `harmony apply` to deliver the retirement", retired.join(", "));
            }
            Ok(ExitCode::SUCCESS)
        }
        FleetCommand::RotateDeviceKey { device, command_key_file, nats, reload: r } => {
            let repo = repo()?;
            use harmony_executor::fleet::command::{COMMAND_KEY_ENV, load_command_key};
            let fleet = fleet_of(&repo, &device)?;
            let info = fleet_info(&repo, &fleet)?;
            let key = load_command_key(command_key_file.as_deref(), std::env::var(COMMAND_KEY_ENV).ok())?;
            let auth = open_auth(g, &nats, &fleet)?;
            let opts = nats.options_for_fleet(&fleet, &info.nats)?;
            let new = rt.block_on(async {
                let client = connect(&opts).await?;
                // With a reload command the servers pick the new key up now; wait for the agent.
                let wait = r.reload_command.is_some();
                anyhow::Ok(keys::rotate_device_key(&client, &auth, &fleet, &device, &key, || reload(&r, &auth, true), wait).await?)
            })?;
            println!("rotated NATS credentials of device {device}: now {new} (old key(s) removed)");
            Ok(ExitCode::SUCCESS)
        }
        FleetCommand::AuthConfig { fleet, nats, reload: r } => {
            let repo = repo()?;
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
