//! `harmony-agent`: see `docs/agent.md`.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use harmony_agent::config::{ConfigFile, Overrides, RuntimeKind, load, resolve};
use harmony_agent::reconcile::Runtime;

/// The Harmony edge agent: runs this device's signed plan with podman.
#[derive(Debug, Parser)]
#[command(name = "harmony-agent", version = harmony_agent::AGENT_VERSION, about)]
struct Cli {
    /// `run` (the default), or `completion SHELL`: print a completion script for bash, zsh,
    /// fish, powershell or elvish (e.g. `harmony-agent completion bash > /etc/bash_completion.d/harmony-agent`).
    #[arg(value_parser = ["run", "completion"], value_name = "ACTION")]
    action: Option<String>,
    /// The shell, for `completion`.
    #[arg(value_enum, value_name = "SHELL", required_if_eq("action", "completion"))]
    shell: Option<clap_complete::Shell>,
    /// Config file (TOML); see docs/agent.md.
    #[arg(long, short, env = "HARMONY_AGENT_CONFIG")]
    config: Option<PathBuf>,
    /// Device id (overrides `device_id`).
    #[arg(long)]
    device_id: Option<String>,
    /// NATS server URL (repeatable; overrides `nats.urls`).
    #[arg(long = "nats-url")]
    nats_urls: Vec<String>,
    /// State directory (overrides `state_dir`).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Tenants' data directories: `<DIR>/<tenant>` is all a deployment may bind-mount besides
    /// its fleet's grants (overrides `data_root`; default /var/lib/harmony/data).
    #[arg(long)]
    data_root: Option<PathBuf>,
    /// Fleet public key, hex or base64 (repeatable; overrides `fleet_keys`).
    #[arg(long = "fleet-key")]
    fleet_keys: Vec<String>,
    /// Trusted command key (repeatable; overrides `command_keys`).
    #[arg(long = "command-key")]
    command_keys: Vec<String>,
    /// Container runtime (overrides `runtime`); `none` runs nothing and reports plans as applied.
    #[arg(long, value_parser = parse_runtime)]
    runtime: Option<RuntimeKind>,
    /// Seconds between heartbeats (overrides `heartbeat_interval_s`).
    #[arg(long)]
    heartbeat_interval: Option<u64>,
    /// A label `key=value` reported in heartbeats (repeatable; added to `labels`).
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Directory of agent versions (`harmony-agent-<version>`) and the `current` symlink the
    /// service runs; needed for upgrades (overrides `install_dir`).
    #[arg(long)]
    install_dir: Option<PathBuf>,
    /// Seconds an upgrade waits to be retired before switching back (overrides `upgrade_timeout_s`).
    #[arg(long)]
    upgrade_timeout: Option<u64>,
    /// Seconds between full looks at podman (overrides `observe_interval_s`).
    #[arg(long)]
    observe_interval: Option<u64>,
    /// Seconds SIGTERM/SIGINT may take to stop the agent (overrides `shutdown_timeout_s`).
    #[arg(long)]
    shutdown_timeout: Option<u64>,
    /// Log lines as `text` (colours only on a terminal, never with NO_COLOR) or `json` (one
    /// object a line).
    #[arg(long, value_enum, default_value = "text")]
    log_format: harmony_agent::logging::LogFormat,
    /// Check the config, the keys, the state directory and podman, then exit (0 = healthy).
    #[arg(long)]
    self_test: bool,
}

fn parse_runtime(s: &str) -> Result<RuntimeKind, String> {
    match s {
        "podman" => Ok(RuntimeKind::Podman),
        "none" => Ok(RuntimeKind::None),
        _ => Err(format!("`{s}` is not a runtime: use podman or none")),
    }
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("`{s}` is not key=value"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let (Some("completion"), Some(shell)) = (cli.action.as_deref(), cli.shell) {
        use clap::CommandFactory;
        clap_complete::generate(shell, &mut Cli::command(), "harmony-agent", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    harmony_agent::logging::init(cli.log_format);
    let file = match &cli.config {
        Some(p) => match load(p) {
            Ok(f) => f,
            Err(e) => return fail(&e.to_string()),
        },
        None => ConfigFile::default(),
    };
    let overrides = Overrides {
        device_id: cli.device_id,
        nats_urls: cli.nats_urls,
        state_dir: cli.state_dir,
        data_root: cli.data_root,
        fleet_keys: cli.fleet_keys,
        command_keys: cli.command_keys,
        runtime: cli.runtime,
        heartbeat_interval_s: cli.heartbeat_interval,
        labels: cli.labels,
        install_dir: cli.install_dir,
        upgrade_timeout_s: cli.upgrade_timeout,
        shutdown_timeout_s: cli.shutdown_timeout,
        observe_interval_s: cli.observe_interval,
    };
    let mut config = match resolve(file, overrides) {
        Ok(c) => c,
        Err(e) => return fail(&e.to_string()),
    };
    config.own_paths.extend(cli.config.iter().map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone())));
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    if cli.self_test {
        return rt.block_on(self_test(config));
    }
    let limit = config.shutdown_timeout;
    // Registered before anything can block: from here on SIGTERM/SIGINT always start a
    // shutdown that ends within `shutdown_timeout_s` (docs/agent.md), whatever the agent awaits.
    let signals = rt.block_on(async {
        let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
        let int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
        term.and_then(|t| int.map(|i| (t, i)))
    });
    let (mut term, mut int) = match signals {
        Ok(s) => s,
        Err(e) => return fail(&format!("cannot install the signal handlers: {e}")),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // A task of its own: the watchdog starts at the signal even while `run` is still connecting.
    rt.spawn(async move {
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
        }
        watchdog(limit);
        let _ = stop_tx.send(());
    });
    let shutdown = async move {
        let _ = stop_rx.await;
    };
    let result = rt.block_on(harmony_agent::run(config, shutdown));
    // Tasks still blocked (a DNS lookup, a file write) do not hold the process.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// Ends the process `limit` after a shutdown began, whatever it still waits for (containers
/// keep running: they are podman's, not the agent's children).
fn watchdog(limit: std::time::Duration) {
    let _ = std::thread::Builder::new().name("shutdown-watchdog".into()).spawn(move || {
        std::thread::sleep(limit);
        eprintln!("harmony-agent: shutdown took longer than {} s (shutdown_timeout_s); exiting now", limit.as_secs());
        std::process::exit(1);
    });
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("harmony-agent: error: {msg}");
    ExitCode::FAILURE
}

async fn self_test(config: harmony_agent::Config) -> ExitCode {
    // Config and keys were validated by resolve(); check the state dir and the runtime.
    println!("harmony-agent {}", harmony_agent::AGENT_VERSION);
    println!("config: ok (device {}, {} fleet key(s), {} command key(s))", config.device_id, config.fleet_keys.len(), config.command_keys.len());
    if let Err(e) = std::fs::create_dir_all(&config.state_dir).and_then(|()| std::fs::write(config.state_dir.join(".self-test"), b"ok")) {
        return fail(&format!("state_dir {} is not writable: {e}", config.state_dir.display()));
    }
    let _ = std::fs::remove_file(config.state_dir.join(".self-test"));
    match harmony_agent::state::PersistedState::load(&config.state_dir, &config.device_id) {
        Err(e) => return fail(&e),
        // The applied plan must still verify with the configured keys (e.g. after an upgrade or a key change).
        Ok(state) => match harmony_agent::agent::verify_persisted(&config, &state) {
            Some(Err(e)) => return fail(&format!("the persisted plan does not verify with fleet_keys and the key chain: {e}")),
            Some(Ok(generation)) => println!("state_dir: ok ({}, applied generation {generation})", config.state_dir.display()),
            None => println!("state_dir: ok ({}, no plan yet)", config.state_dir.display()),
        },
    }
    match harmony_agent::agent::runtime_for(&config) {
        Runtime::Disabled => println!("runtime: disabled"),
        Runtime::Podman(p) => match p.version().await {
            Ok(v) => println!("podman: ok ({v})"),
            Err(e) => return fail(&format!("podman: {e}")),
        },
    }
    println!("self-test passed");
    ExitCode::SUCCESS
}
