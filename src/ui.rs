//! `harmony ui`: the read-only dashboard (crate `harmony-ui`, docs/ui.md).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use harmony_executor::fleet::connect;
use harmony_ui::{RepoView, UiOptions, demo};

use crate::apply::{NatsArgs, compiled, parse_duration};
use crate::cli::Global;

#[derive(Debug, clap::Args)]
pub struct UiArgs {
    /// Address to listen on. Anything but a loopback address requires a token.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// File holding the token clients must present (bearer, or basic auth password); or set $HARMONY_UI_TOKEN.
    #[arg(long = "token-file", value_name = "FILE")]
    pub auth_token_file: Option<PathBuf>,
    /// Serve the example repository (tenants/, unless --repo is given) against a local
    /// nats-server (or --nats-url) with simulated devices.
    #[arg(long)]
    pub demo: bool,
    /// kubeconfig for reading release records (default: `KUBECONFIG`, then `~/.kube/config`).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Do not read releases from clusters.
    #[arg(long)]
    pub skip_clusters: bool,
    /// How often release records are read.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_duration)]
    pub release_interval: Duration,
    #[command(flatten)]
    pub thresholds: crate::status::ThresholdArgs,
    #[command(flatten)]
    pub nats: NatsArgs,
}

/// Whether a kubeconfig is there to read releases with.
fn kubeconfig_present(explicit: &Option<PathBuf>) -> bool {
    explicit.is_some()
        || std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty())
        || std::env::var_os("HOME").is_some_and(|h| PathBuf::from(h).join(".kube/config").is_file())
}

pub fn run(g: &Global, a: UiArgs, rt: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    let token = match &a.auth_token_file {
        Some(f) => Some(std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?.trim().to_string()),
        None => std::env::var("HARMONY_UI_TOKEN").ok().filter(|t| !t.trim().is_empty()),
    };
    // Refuse before compiling anything or starting a server.
    harmony_ui::check_listen(a.listen, token.as_deref())?;
    let global;
    let g = if a.demo && g.repo.as_os_str() == "." && !g.repo.join("harmony.kdl").is_file() && std::path::Path::new("tenants/harmony.kdl").is_file() {
        global = Global { repo: PathBuf::from("tenants"), verbose: g.verbose, quiet: g.quiet, color: g.color };
        &global
    } else {
        g
    };
    let repo = compiled(g)?;
    let mut view = RepoView::from_compiled(&repo);
    let mut urls: Vec<String> = Vec::new();
    for f in view.fleets.values() {
        for u in &f.nats {
            if !urls.contains(u) {
                urls.push(u.clone());
            }
        }
    }
    // Plans re-signed after a signing-key rotation verify with the keys of the fleet's chain.
    for (name, f) in view.fleets.iter_mut() {
        if let Some(info) = repo.fleets.iter().find(|(n, _)| n.as_str() == name).map(|(_, i)| i) {
            let security = harmony_executor::fleet::security::FleetSecurity::load(a.nats.auth_dir.as_deref(), name, info)?;
            if let Some(root) = f.trusted.first().copied() {
                f.trusted = security.observe_keys(root)?;
                f.chain = security.chain_keys(root)?;
            }
        }
    }
    let single_fleet = if view.fleets.len() == 1 { view.fleets.keys().next().cloned() } else { None };
    let thresholds = a.thresholds.thresholds();
    rt.block_on(async move {
        // One fleet: its read-only identity from the auth directory when no credential is given.
        let mut nats = match &single_fleet {
            Some(fleet) if !a.demo => a.nats.read_options_for_fleet(fleet, &urls)?,
            _ => a.nats.options(&urls)?,
        };
        let mut _demo_server = None;
        let mut _simulation = None;
        let clusters = if a.skip_clusters || a.demo || !kubeconfig_present(&a.kubeconfig) { None } else { Some(a.kubeconfig.clone()) };
        if a.demo {
            if a.nats.urls.is_empty() {
                let bin = demo::find_nats_server(&g.repo).ok_or_else(|| {
                    anyhow::anyhow!(
                        "--demo needs nats-server: run scripts/install-test-deps.sh (it installs one into .venv), set HARMONY_NATS_SERVER, or pass --nats-url"
                    )
                })?;
                let server = demo::start_nats_server(&bin).await?;
                nats.urls = vec![server.url.clone()];
                _demo_server = Some(server);
            }
            let key = demo::demo_key()?;
            demo::trust(&mut view, key.verifying_key());
            let client = connect(&nats).await?;
            _simulation = Some(demo::simulate(&repo, client, key).await?);
            eprintln!("demo: NATS at {}, simulated devices of {}", nats.urls.join(", "), g.repo.display());
        }
        let running = harmony_ui::start(view, UiOptions { listen: a.listen, token, nats, clusters, thresholds, release_interval: a.release_interval }).await?;
        if !g.quiet {
            eprintln!("harmony ui: serving {} on {} (read-only; Ctrl-C to stop)", g.repo.display(), running.url());
        }
        // SIGINT or SIGTERM: stop cleanly (the demo's nats-server is killed on the way out).
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
            _ = running.wait() => {}
        }
        if let Some(s) = _simulation {
            s.abort();
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
