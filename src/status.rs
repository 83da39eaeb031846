//! `harmony status`: per fleet and device, desired vs applied generation, heartbeat age, agent
//! version, deployments, last error and condition (thresholds in docs/fleet.md).

use std::process::ExitCode;
use std::time::Duration;

use harmony_executor::fleet::convert::fleet_info;
use harmony_executor::fleet::observe::{observe_all, read_signed_history};
use harmony_executor::fleet::security::FleetSecurity;
use harmony_executor::fleet::{FleetStatus, StatusThresholds, connect, fleet_status};
use harmony_schemas::fleet::parse_public_key;
use serde::Serialize;

use crate::apply::{NatsArgs, compiled, fleets, parse_duration};
use crate::cli::Global;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusFormat {
    /// A table per fleet.
    Human,
    /// One JSON document (versioned).
    Json,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Only this fleet (default: every fleet of the repository).
    #[arg(long, value_name = "NAME", add = crate::completion::fleets())]
    pub fleet: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = StatusFormat::Human)]
    pub format: StatusFormat,
    /// Exit 0 when every device is ready, 2 when one is not, 1 on errors.
    #[arg(long)]
    pub detailed_exitcode: bool,
    #[command(flatten)]
    pub thresholds: ThresholdArgs,
    #[command(flatten)]
    pub nats: NatsArgs,
}

/// When a device's heartbeat counts as stale or unknown (`harmony status`, `harmony ui`).
#[derive(Debug, Clone, clap::Args)]
pub struct ThresholdArgs {
    /// A device whose last heartbeat is older than this is stale.
    #[arg(long, value_name = "DURATION", default_value = "90s", value_parser = parse_duration)]
    pub stale_after: Duration,
    /// A device whose last heartbeat is older than this (or that never sent one) is unknown.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub unknown_after: Duration,
}

impl ThresholdArgs {
    /// As the executor's thresholds.
    pub fn thresholds(&self) -> StatusThresholds {
        StatusThresholds { stale_after: self.stale_after, unknown_after: self.unknown_after }
    }
}

#[derive(Serialize)]
struct Report {
    version: u32,
    fleets: Vec<FleetStatus>,
}

fn age(s: Option<u64>) -> String {
    match s {
        None => "never".into(),
        Some(s) if s < 120 => format!("{s}s"),
        Some(s) if s < 7200 => format!("{}m", s / 60),
        Some(s) => format!("{}h", s / 3600),
    }
}

fn human(f: &FleetStatus) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for d in &f.devices {
        *counts.entry(d.condition.as_str()).or_insert(0) += 1;
    }
    let counts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let mut s = format!("fleet {}: {} devices ({})\n", f.fleet, f.devices.len(), counts.join(", "));
    s.push_str(&format!(
        "  {:<20} {:<11} {:>7} {:>7} {:>9} {:<8} {:<9} {:<30} {}\n",
        "DEVICE", "CONDITION", "DESIRED", "APPLIED", "HEARTBEAT", "AGENT", "STATE", "DEPLOYMENTS", "LAST ERROR"
    ));
    for d in &f.devices {
        let opt = |g: Option<u64>| g.map_or("-".into(), |g| g.to_string());
        let deps: Vec<String> = d
            .deployments
            .iter()
            .map(|x| match &x.failure {
                Some(fl) => format!("{}={} ({fl})", x.name, x.state),
                None => format!("{}={}", x.name, x.state),
            })
            .collect();
        s.push_str(&format!(
            "  {:<20} {:<11} {:>7} {:>7} {:>9} {:<8} {:<9} {:<30} {}\n",
            d.device,
            d.condition.as_str(),
            opt(d.desired_generation),
            opt(d.applied_generation),
            age(d.heartbeat_age_s),
            d.agent_version.as_deref().unwrap_or("-"),
            d.state.as_deref().unwrap_or("-"),
            if deps.is_empty() { "-".into() } else { deps.join(", ") },
            d.last_error.as_deref().unwrap_or("-")
        ));
        if let Some(u) = &d.upgrade {
            let state = match u.state {
                harmony_schemas::fleet::UpgradeState::Started => "in progress".to_string(),
                harmony_schemas::fleet::UpgradeState::Completed => "completed".to_string(),
                harmony_schemas::fleet::UpgradeState::Failed => format!("failed: {}", u.error.as_deref().unwrap_or("no reason given")),
            };
            if u.state != harmony_schemas::fleet::UpgradeState::Completed
                && (u.state == harmony_schemas::fleet::UpgradeState::Failed || d.agent_version.as_deref() != Some(u.to.as_str()))
            {
                s.push_str(&format!("    agent upgrade {} → {} (generation {}): {state}\n", u.from, u.to, u.generation));
            }
        }
        if let Some(why) = &d.applied_generation_flag {
            s.push_str(&format!("    {why}\n"));
        }
        if let Some(floor) = d.generation_floor {
            s.push_str(&format!(
                "    lost its state file: accepts no plan below generation {floor} nor another plan of that generation (the next apply writes one above it)\n"
            ));
        }
        if !d.foreign_keys.is_empty() {
            s.push_str(&format!(
                "    trusts signing key(s) {} that the fleet's key chain does not (a chain forked with a stolen key, or set up by hand): re-provision the device\n",
                d.foreign_keys.join(", ")
            ));
        }
        for x in &d.drift {
            let ago = age(Some(harmony_schemas::fleet::now_ms().saturating_sub(x.at_ms) / 1000));
            s.push_str(&format!("    drift {ago} ago: {x}\n"));
        }
        if let Some(r) = d.last_rejection.as_ref().filter(|_| d.desired_rejected) {
            let generation = r.generation.map_or("?".into(), |g| g.to_string());
            s.push_str(&format!("    rejected plan generation {generation}: {} (nothing of it runs)\n", r.message));
        }
    }
    if let Some(r) = &f.rollout {
        s.push_str(&format!("  {}\n", harmony_executor::fleet::rollout::progress_line(r)));
        for x in &r.failed {
            s.push_str(&format!("    {} failed in step {}: {}\n", x.device, x.wave + 1, x.reason));
        }
    }
    for w in &f.warnings {
        s.push_str(&format!("  warning: {w}\n"));
    }
    s
}

pub fn run(g: &Global, a: StatusArgs, rt: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    let repo = compiled(g)?;
    let thresholds = a.thresholds.thresholds();
    let mut out = Vec::new();
    for fleet in fleets(&repo, &a.fleet)? {
        let info = fleet_info(&repo, &fleet)?;
        let public = parse_public_key(&info.signing_key).map_err(|e| anyhow::anyhow!("fleet `{fleet}` declares an invalid public key: {e}"))?;
        let devices: Vec<String> = harmony_executor::fleet::desired_fleet(&repo, &fleet, "")?.plans.into_keys().collect();
        let opts = a.nats.read_options_for_fleet(&fleet, &info.nats)?;
        // Plans signed with any key of the fleet's chain verify (a rotation re-signs them).
        let security = FleetSecurity::load(a.nats.auth_dir.as_deref(), &fleet, info)?;
        let keys = security.observe_keys(public)?;
        let chain = security.chain_keys(public)?;
        let (observed, rollout) = rt.block_on(async {
            let client = connect(&opts).await?;
            let mut observed = observe_all(&client, &fleet, &keys).await?;
            read_signed_history(&client, &mut observed, &fleet, &keys, devices.iter().map(String::as_str)).await?;
            let rollout = harmony_executor::fleet::rollout::observe_record(&client, &fleet).await?;
            Ok::<_, harmony_executor::fleet::FleetError>((observed, rollout))
        })?;
        let mut status = fleet_status(&fleet, &devices, &observed, harmony_schemas::fleet::now_ms(), thresholds);
        status.flag_foreign_keys(&observed, &chain);
        security.mark_revoked(&mut status);
        status.rollout = rollout.map(|(r, _)| r);
        out.push(status);
    }
    let all_ready = out.iter().all(FleetStatus::all_ready);
    match a.format {
        StatusFormat::Human => {
            for f in &out {
                print!("{}", human(f));
            }
        }
        StatusFormat::Json => println!("{}", serde_json::to_string_pretty(&Report { version: 1, fleets: out })?),
    }
    Ok(if a.detailed_exitcode && !all_ready { ExitCode::from(2) } else { ExitCode::SUCCESS })
}
