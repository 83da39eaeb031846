//! `harmony device ping|logs|exec`: talk to one device's agent over NATS request/reply.
//!
//! `logs` and `exec` are signed with the operator's command key (`--command-key-file` or
//! `$HARMONY_COMMAND_KEY`, never the repository), issued now with a fresh nonce; the agent
//! refuses anything else. The device's fleet (hence its NATS servers) comes from the repository.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use harmony_compiler::CompiledRepo;
use harmony_executor::fleet::command::{COMMAND_KEY_ENV, load_command_key, ping, send};
use harmony_executor::fleet::convert::fleet_info;
use harmony_executor::fleet::{connect, desired_fleet};
use harmony_schemas::fleet::{Command, CommandReply, DevicePlan, SigningKey};

use crate::apply::{NatsArgs, compiled, parse_duration};
use crate::cli::Global;

#[derive(Debug, clap::Args)]
pub struct DeviceArgs {
    #[command(subcommand)]
    pub command: DeviceCommand,
}

/// Where the device is: its fleet (found in the repository) and how to reach its NATS servers.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// The device id.
    #[arg(value_name = "DEVICE", add = crate::completion::devices())]
    pub device: String,
    /// The device's fleet (default: the fleet of the repository that has the device).
    #[arg(long, value_name = "NAME", add = crate::completion::fleets())]
    pub fleet: Option<String>,
    #[command(flatten)]
    pub nats: NatsArgs,
}

/// The operator's command key (signs `logs` and `exec`).
#[derive(Debug, clap::Args)]
pub struct KeyArgs {
    /// File holding an Ed25519 command key (hex or base64) the device trusts (its agent's
    /// `command_keys`); or set $HARMONY_COMMAND_KEY.
    #[arg(long, value_name = "FILE", env = "HARMONY_COMMAND_KEY_FILE")]
    pub command_key_file: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
pub enum DeviceCommand {
    /// Ask the device's agent for its version and uptime (exit 1 when it does not answer).
    Ping {
        #[command(flatten)]
        target: Target,
        /// How long to wait for the reply.
        #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Print the last lines of a planned service's logs (signed request).
    Logs {
        #[command(flatten)]
        target: Target,
        /// `DEPLOYMENT/CONTAINER`, or `CONTAINER` when one deployment of the device has it.
        #[arg(value_name = "CONTAINER")]
        container: String,
        /// Lines from the end.
        #[arg(long, default_value_t = 100)]
        tail: u32,
        #[command(flatten)]
        key: KeyArgs,
        /// How long to wait for the reply.
        #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Run a command in a planned, running service (signed request); exits with its exit code
    /// (124 when it timed out, 1 when refused).
    Exec {
        #[command(flatten)]
        target: Target,
        /// `DEPLOYMENT/CONTAINER`, or `CONTAINER` when one deployment of the device has it.
        #[arg(value_name = "CONTAINER")]
        container: String,
        /// The agent kills the command after this long.
        #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
        timeout: Duration,
        #[command(flatten)]
        key: KeyArgs,
        /// The command and its arguments (after `--`), passed as an argv list (no shell).
        #[arg(last = true, required = true, value_name = "CMD")]
        argv: Vec<String>,
    },
}

/// The device's desired plan in the repository, and its fleet.
fn find_device(repo: &CompiledRepo, t: &Target) -> anyhow::Result<Option<(String, DevicePlan)>> {
    let fleets = crate::apply::fleets(repo, &t.fleet)?;
    for fleet in fleets {
        let mut desired = desired_fleet(repo, &fleet, "")?;
        if let Some(plan) = desired.plans.remove(&t.device) {
            return Ok(Some((fleet, plan)));
        }
    }
    Ok(None)
}

/// `DEPLOYMENT/CONTAINER`, or a bare `CONTAINER` looked up among the plan's services.
fn resolve_container(spec: &str, device: &str, plan: Option<&DevicePlan>) -> anyhow::Result<(String, String)> {
    if let Some((d, c)) = spec.split_once('/') {
        return Ok((d.to_string(), c.to_string()));
    }
    let Some(plan) = plan else {
        anyhow::bail!("device `{device}` is not in the repository: name the container as DEPLOYMENT/CONTAINER");
    };
    let all: Vec<String> = plan.deployments.iter().flat_map(|d| d.services.iter().map(move |s| format!("{}/{}", d.name, s.container.name))).collect();
    let matching: Vec<&String> = all.iter().filter(|x| x.rsplit('/').next() == Some(spec)).collect();
    match matching.as_slice() {
        [one] => {
            let (d, c) = one.split_once('/').unwrap_or_default();
            Ok((d.to_string(), c.to_string()))
        }
        [] => anyhow::bail!(
            "device `{device}` runs no service `{spec}` in the repository (services: {})",
            if all.is_empty() { "none".to_string() } else { all.join(", ") }
        ),
        many => anyhow::bail!(
            "several deployments of device `{device}` have a service `{spec}`: {}; name one as DEPLOYMENT/CONTAINER",
            many.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        ),
    }
}

fn key(k: &KeyArgs) -> anyhow::Result<SigningKey> {
    Ok(load_command_key(k.command_key_file.as_deref(), std::env::var(COMMAND_KEY_ENV).ok())?)
}

pub fn run(g: &Global, a: DeviceArgs, rt: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    let repo = compiled(g)?;
    let target = match &a.command {
        DeviceCommand::Ping { target, .. } | DeviceCommand::Logs { target, .. } | DeviceCommand::Exec { target, .. } => target,
    };
    let found = find_device(&repo, target)?;
    let fleet_urls = match &found {
        Some((fleet, _)) => fleet_info(&repo, fleet)?.nats.clone(),
        None if !target.nats.urls.is_empty() => Vec::new(),
        None => anyhow::bail!("no fleet of the repository has device `{}` (pass --nats-url to reach a device the repository does not declare)", target.device),
    };
    let opts = match &found {
        Some((fleet, _)) => target.nats.options_for_fleet(fleet, &fleet_urls)?,
        None => target.nats.options(&fleet_urls)?,
    };
    let device = target.device.clone();
    let plan = found.as_ref().map(|(_, p)| p);
    let client = rt.block_on(connect(&opts))?;
    match a.command {
        DeviceCommand::Ping { timeout, .. } => {
            let started = Instant::now();
            let reply = rt.block_on(ping(&client, &device, timeout))?;
            println!("{}: agent {}, up {}s, replied in {} ms", reply.device_id, reply.agent_version, reply.uptime_s, started.elapsed().as_millis());
            Ok(ExitCode::SUCCESS)
        }
        DeviceCommand::Logs { container, tail, key: k, timeout, .. } => {
            let (deployment, container) = resolve_container(&container, &device, plan)?;
            let key = key(&k)?;
            let reply = rt.block_on(send(&client, &device, Command::Logs { deployment, container, tail }, &key, timeout))?;
            match reply {
                CommandReply::Logs { lines } => {
                    let mut out = std::io::stdout().lock();
                    for l in lines {
                        writeln!(out, "{l}")?;
                    }
                    Ok(ExitCode::SUCCESS)
                }
                other => Ok(failed(&device, other)),
            }
        }
        DeviceCommand::Exec { container, timeout, key: k, argv, .. } => {
            let (deployment, container) = resolve_container(&container, &device, plan)?;
            let key = key(&k)?;
            let timeout_s = timeout.as_secs().max(1);
            // The agent answers at the latest when its own timeout kills the command.
            let wait = Duration::from_secs(timeout_s) + Duration::from_secs(10);
            let reply = rt.block_on(send(&client, &device, Command::Exec { deployment, container, argv, timeout_s }, &key, wait))?;
            match reply {
                CommandReply::Exec { exit_code, timed_out, stdout, stderr } => {
                    std::io::stdout().lock().write_all(stdout.as_bytes())?;
                    std::io::stderr().lock().write_all(stderr.as_bytes())?;
                    if timed_out {
                        eprintln!("error: the command did not finish within {timeout_s}s and was killed");
                        return Ok(ExitCode::from(124));
                    }
                    Ok(ExitCode::from(exit_code.map_or(1, |c| u8::try_from(c.clamp(0, 255)).unwrap_or(1))))
                }
                other => Ok(failed(&device, other)),
            }
        }
    }
}

fn failed(device: &str, reply: CommandReply) -> ExitCode {
    match reply {
        CommandReply::Refused { reason } => eprintln!("error: device `{device}` refused the command: {reason}"),
        CommandReply::Error { message } => eprintln!("error: device `{device}`: {message}"),
        other => eprintln!("error: device `{device}` sent an unexpected reply: {other:?}"),
    }
    ExitCode::from(1)
}
