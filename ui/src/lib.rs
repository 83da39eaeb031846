//! `harmony ui`: a read-only live dashboard of fleets, devices, deployments and releases.
//!
//! - [`model`]: what the repository declares ([`model::RepoView`]) and what the buckets and
//!   clusters say ([`model::Live`]); rows, filters, selectors. Conditions come from
//!   `harmony_executor::fleet::device_report`, the function `harmony status` uses.
//! - [`watch`]: one KV watch per bucket (plans, status, heartbeats) and a poll of release records.
//! - [`pages`]: server-rendered HTML (maud, escaped), the stylesheet and the small script that
//!   follows `/events`.
//! - [`server`]: the axum router (GET only), authentication, server-sent events, JSON.
//! - [`demo`]: a local nats-server and simulated devices for `harmony ui --demo`.
//!
//! See `docs/ui.md` and ADR 0008.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod demo;
pub mod model;
pub mod pages;
pub mod server;
pub mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use harmony_executor::fleet::{NatsOptions, StatusThresholds};
use tokio::task::JoinHandle;

pub use model::RepoView;
pub use server::{Shared, check_listen, router};

/// What can stop the dashboard from starting.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// A non-loopback address without a token.
    #[error(
        "refusing to listen on {0} without authentication: it is not a loopback address. Set HARMONY_UI_TOKEN or pass --token-file FILE (clients then send `Authorization: Bearer <token>`, or basic auth with any user name and the token as password), or listen on 127.0.0.1"
    )]
    Unauthenticated(SocketAddr),
    /// The address cannot be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// Demo set-up.
    #[error("demo: {0}")]
    Demo(String),
}

/// How to run the dashboard.
#[derive(Debug, Clone)]
pub struct UiOptions {
    /// Where to listen (port 0: any free port).
    pub listen: SocketAddr,
    /// Token required from clients (bearer, or basic auth password). Required off loopback.
    pub token: Option<String>,
    /// NATS connection (the buckets every fleet shares).
    pub nats: NatsOptions,
    /// Read releases from clusters: `Some(kubeconfig)` (`None` inside: `KUBECONFIG` or
    /// `~/.kube/config`); `None`: do not.
    pub clusters: Option<Option<PathBuf>>,
    /// Condition thresholds.
    pub thresholds: StatusThresholds,
    /// How often release records are read.
    pub release_interval: Duration,
}

/// A running dashboard; dropping it stops the server and the watches.
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The model (tests write into it or read it).
    pub shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until the server stops (it does not by itself).
    pub async fn wait(mut self) {
        if let Some(server) = self.tasks.pop() {
            let _ = server.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

/// Binds, starts the watches (and the release poller when clusters are configured) and serves.
pub async fn start(repo: RepoView, opts: UiOptions) -> Result<Running, UiError> {
    check_listen(opts.listen, opts.token.as_deref())?;
    let listener = tokio::net::TcpListener::bind(opts.listen).await.map_err(|e| UiError::Bind(opts.listen, e))?;
    let addr = listener.local_addr().map_err(|e| UiError::Bind(opts.listen, e))?;
    let shared = Shared::new(repo, opts.thresholds, opts.clusters.is_some(), opts.token.as_deref());
    let mut tasks = vec![watch::spawn_watches(shared.clone(), opts.nats)];
    if let Some(kubeconfig) = opts.clusters
        && !shared.repo.releases.is_empty()
    {
        tasks.push(watch::spawn_release_poller(shared.clone(), kubeconfig, opts.release_interval));
    }
    let app = router(shared.clone());
    // Last: `wait` awaits it.
    tasks.push(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("ui server: {e}");
        }
    }));
    Ok(Running { addr, shared, tasks })
}
