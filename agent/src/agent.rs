//! The agent's event loop: learn of plans, verify, reconcile, report, answer commands.
//!
//! Tasks, all on one tokio runtime:
//! - the **plan reader** subscribes (core NATS) to `$KV.<plans>.<device>` and, on start, on
//!   every reconnect and after a failed read, fetches the key's current entry (direct get);
//! - the **reconciler** owns the persisted state: it verifies each candidate plan, reconciles,
//!   persists and hands the resulting status to the publisher;
//! - the **status publisher** writes the newest status to the status bucket, retrying with
//!   backoff while NATS is unreachable (older unsent statuses are superseded);
//! - the **runtime watch** asks the reconciler to look at podman again on every `podman events`
//!   line about this device's containers and every `observe_interval_s` (the safety net): the
//!   look repairs drift and publishes the status it observed;
//! - **heartbeats** on an interval;
//! - the **command server** answers `device-commands.<device>.{ping,logs,exec}`.
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::StreamExt as _;
use harmony_schemas::fleet::{
    DevicePlan, DeviceState, DeviceStatus, HEARTBEATS_BUCKET, Heartbeat, MAX_REJECTIONS, PLANS_BUCKET, PROTOCOL_VERSION, Rejection, RejectionReason,
    STATUS_BUCKET, SignedDevicePlan, UpgradeReport, UpgradeState, device_inbox_prefix, kv_subject, now_ms, sha256_digest,
};
use harmony_schemas::trust::{Followed, SignedKeyAnnouncement, TrustState};
use tokio::sync::{mpsc, watch};

use crate::config::{Config, NatsAuth, RuntimeKind};
use crate::podman::Podman;
use crate::reconcile::{Runtime, Watch, reconcile};
use crate::state::{Floor, PersistedState, payload_digest};

/// This agent's version: the crate's, or `<crate>-next` when built with the `next-version`
/// feature (a second, different build for the upgrade tests).
pub const AGENT_VERSION: &str = if cfg!(feature = "next-version") { concat!(env!("CARGO_PKG_VERSION"), "-next") } else { env!("CARGO_PKG_VERSION") };

/// Shared, read-mostly facts for the command server.
#[derive(Debug)]
pub struct Shared {
    /// Config.
    pub config: Config,
    /// Runtime.
    pub runtime: Runtime,
    /// When the agent started.
    pub started: Instant,
    /// The same, Unix milliseconds (signed commands issued earlier are refused: the nonce cache
    /// is in memory, so this closes replays across restarts).
    pub started_ms: u64,
    /// The applied plan.
    pub applied: watch::Receiver<Option<Arc<DevicePlan>>>,
    /// Set while an upgrade's new agent runs beside this one: no heartbeats, `retire` accepted.
    pub upgrading: std::sync::atomic::AtomicBool,
    /// A verified `retire` for this version, while upgrading.
    pub retire: mpsc::UnboundedSender<()>,
    /// The nkey seed the NATS connection authenticates with (on every reconnect), when the
    /// config gives `nats.nkey_file`; `rotate-credentials` replaces it.
    pub nkey: Option<SeedCell>,
    /// The fleet signing key(s) plans must be signed with now (the key chain's current key, or
    /// the configured keys before any chain): what a `retire` must be signed with.
    pub fleet_keys: std::sync::RwLock<Vec<harmony_schemas::fleet::VerifyingKey>>,
}

/// The nkey seeds the NATS auth callback chooses from at every (re)connection.
pub type SeedCell = Arc<std::sync::Mutex<Seeds>>;

/// The device's nkey seeds: the current one and, after a `rotate-credentials` until the current
/// one has been seen to work, the one it replaced (kept in `<nkey_file>.previous`, mode 0600).
/// Harmony admits a rotated key on the servers only after the device answered; if that never
/// happens (a lost reply, a failed reload), the device still gets in with the previous key
/// instead of being locked out at its next reconnection.
#[derive(Debug, Clone)]
pub struct Seeds {
    /// The seed in `nats.nkey_file`.
    pub current: String,
    /// The seed that worked before the current one, until the current one is seen to work.
    pub fallback: Option<String>,
    /// The seed offered at the last connection attempt.
    last: Option<String>,
    /// Attempts since the last connection: with a fallback, they alternate between the two.
    attempts: u64,
}

impl Seeds {
    /// The seeds of `nkey_file` (already read: `current`) and its `.previous` file, if any.
    pub fn load(current: String, nkey_file: Option<&std::path::Path>) -> Seeds {
        let fallback = nkey_file.and_then(|p| std::fs::read_to_string(previous_seed_path(p)).ok()).map(|s| s.trim().to_string()).filter(|s| {
            let ok = nkeys::KeyPair::from_seed(s).is_ok();
            if !ok {
                tracing::warn!("ignoring the previous nkey seed file: it does not hold an nkey seed");
            }
            ok && *s != current
        });
        Seeds { current, fallback, last: None, attempts: 0 }
    }

    /// The seed to offer at the next connection attempt.
    fn next(&mut self) -> String {
        let pick = match &self.fallback {
            Some(f) if self.attempts % 2 == 1 => f.clone(),
            _ => self.current.clone(),
        };
        self.attempts += 1;
        self.last = Some(pick.clone());
        pick
    }

    /// Connected with the last seed offered: a current seed that works retires the fallback.
    /// True when the fallback was just retired (its file is to be removed).
    fn connected(&mut self) -> bool {
        self.attempts = 0;
        if self.fallback.is_some() && self.last.as_deref() == Some(self.current.as_str()) {
            self.fallback = None;
            return true;
        }
        false
    }

    /// Before `new` replaces the current seed: the seed to keep as the fallback (the one the
    /// live connection authenticated with, or the fallback still unretired).
    pub fn rotating(&self) -> String {
        self.fallback.clone().or_else(|| self.last.clone()).unwrap_or_else(|| self.current.clone())
    }

    /// `new` is the current seed now; `fallback` (from [`Seeds::rotating`]) stays until it works.
    pub fn rotated(&mut self, new: String, fallback: String) {
        self.fallback = Some(fallback).filter(|f| *f != new);
        self.current = new;
        // The next attempt offers the new seed first.
        self.attempts = 0;
    }
}

/// Where the seed a rotation replaced is kept: `<nkey_file>.previous`.
pub fn previous_seed_path(nkey_file: &std::path::Path) -> std::path::PathBuf {
    let mut name = nkey_file.as_os_str().to_owned();
    name.push(".previous");
    name.into()
}

impl Shared {
    /// Seconds since start.
    pub fn uptime_s(&self) -> u64 {
        self.started.elapsed().as_secs()
    }
}

/// Builds the runtime named by the config.
pub fn runtime_for(config: &Config) -> Runtime {
    match config.runtime {
        RuntimeKind::Podman => Runtime::Podman(Podman::new(config.podman.clone(), config.podman_timeout)),
        RuntimeKind::None => Runtime::Disabled,
    }
}

/// Connects to NATS (in the background: never fails for an unreachable server) and reports
/// every (re)connection on the returned channel.
pub async fn connect(config: &Config, name: &str) -> Result<(async_nats::Client, mpsc::UnboundedReceiver<()>), String> {
    connect_with_seed(config, name).await.map(|(c, rx, _)| (c, rx))
}

/// [`connect`], also returning the seed cell of an nkey connection: the auth callback signs the
/// server's nonce with whatever seed the cell holds at each (re)connection, so rotated
/// credentials are used from the next reconnection on without restarting the client.
pub async fn connect_with_seed(config: &Config, name: &str) -> Result<(async_nats::Client, mpsc::UnboundedReceiver<()>, Option<SeedCell>), String> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut seed_cell = None;
    let base = match &config.nats_auth {
        NatsAuth::Nkey(seed) => {
            let cell: SeedCell = Arc::new(std::sync::Mutex::new(Seeds::load(seed.clone(), config.nkey_file.as_deref())));
            seed_cell = Some(cell.clone());
            async_nats::ConnectOptions::with_auth_callback(move |nonce: Vec<u8>| {
                let seed = cell.lock().map(|mut s| s.next()).unwrap_or_default();
                async move {
                    let kp = nkeys::KeyPair::from_seed(&seed).map_err(async_nats::AuthError::new)?;
                    let signature = kp.sign(&nonce).map_err(async_nats::AuthError::new)?;
                    let mut auth = async_nats::Auth::new();
                    auth.nkey = Some(kp.public_key());
                    auth.signature = Some(signature);
                    Ok(auth)
                }
            })
        }
        _ => async_nats::ConnectOptions::new(),
    };
    let nkey_file = config.nkey_file.clone();
    let seeds_on_connect = seed_cell.clone();
    let mut opts = base
        .name(name)
        // Replies (JetStream API, acks) come to `_INBOX_<device>.…`, the only inbox the device's
        // generated NATS permissions let it subscribe to (docs/security.md).
        .custom_inbox_prefix(device_inbox_prefix(&config.device_id))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        // Exponential backoff 100 ms .. 5 s between reconnect attempts.
        .reconnect_delay_callback(|attempts| Duration::from_millis((100u64 << attempts.min(6) as u64).min(5_000)))
        .event_callback(move |event| {
            let tx = tx.clone();
            let seeds = seeds_on_connect.clone();
            let nkey_file = nkey_file.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        tracing::info!("connected to NATS");
                        if let Some(cell) = seeds
                            && cell.lock().map(|mut s| s.connected()).unwrap_or(false)
                            && let Some(p) = nkey_file
                        {
                            tracing::info!("the rotated NATS credentials work; the previous ones are forgotten");
                            let _ = std::fs::remove_file(previous_seed_path(&p));
                        }
                        let _ = tx.send(());
                    }
                    async_nats::Event::Disconnected => tracing::warn!("disconnected from NATS; containers keep running, reconnecting"),
                    other => tracing::debug!("NATS event: {other}"),
                }
            }
        });
    opts = match &config.nats_auth {
        NatsAuth::None => opts,
        NatsAuth::UserPassword(u, p) => opts.user_and_password(u.clone(), p.clone()),
        NatsAuth::Token(t) => opts.token(t.clone()),
        NatsAuth::Nkey(_) => opts,
        NatsAuth::CredsFile(path) => opts.credentials_file(path).await.map_err(|e| format!("config: `nats.creds_file`: {e}"))?,
    };
    let urls: Vec<async_nats::ServerAddr> = config
        .nats_urls
        .iter()
        .map(|u| u.parse::<async_nats::ServerAddr>().map_err(|e| format!("config: `nats.urls`: `{u}`: {e}")))
        .collect::<Result<_, _>>()?;
    let client = opts.connect(urls).await.map_err(|e| format!("NATS: {e}"))?;
    Ok((client, rx, seed_cell))
}

/// How long the last flush of NATS messages may take at shutdown (it waits for a connection,
/// which may never come back).
const FINAL_FLUSH: Duration = Duration::from_secs(2);

/// Runs the agent until `shutdown` resolves; then it returns within [`FINAL_FLUSH`] (the
/// binary also bounds the whole shutdown by `shutdown_timeout_s`: see `main.rs`). Dropping the
/// loop kills the podman processes in flight (never the containers).
pub async fn run(config: Config, shutdown: impl std::future::Future<Output = ()>) -> Result<(), String> {
    // Outside the state directory: survives losing it (`docs/agent.md`).
    let floor_file = Some(config.floor_file.clone());
    let (mut state, lost) = PersistedState::load_or_recover(&config.state_dir, &config.device_id, floor_file.as_deref())?;
    if let Some(why) = &lost {
        match &state.floor {
            Some(f) => tracing::warn!(
                generation = f.generation,
                "no usable state: {why}; recovered from the floor file: no plan below generation {}, nor another plan of that generation, nor one the recovered key chain does not lead to, is accepted",
                f.generation
            ),
            None if floor_file.is_some() => tracing::warn!("no usable state: {why}; no floor file either: starting afresh (a first start)"),
            None => tracing::warn!("no usable state: {why}; without `nats.nkey_file` there is no floor file: starting afresh"),
        }
    }
    let runtime = runtime_for(&config);
    let (client, mut connected, nkey) = connect_with_seed(&config, &format!("harmony-agent {}", config.device_id)).await?;
    let js = jetstream::new(client.clone());
    let device = config.device_id.clone();

    let (applied_tx, applied_rx) = watch::channel(None);
    let (retire_tx, mut retire_rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        config: config.clone(),
        runtime: runtime.clone(),
        started: Instant::now(),
        started_ms: now_ms(),
        applied: applied_rx,
        upgrading: std::sync::atomic::AtomicBool::new(false),
        retire: retire_tx,
        nkey,
        fleet_keys: std::sync::RwLock::new(config.fleet_keys.clone()),
    });
    let (status_tx, status_rx) = watch::channel::<Option<DeviceStatus>>(None);
    let (trust_tx, trust_rx) = watch::channel::<Vec<String>>(Vec::new());
    let (published_tx, published_rx) = watch::channel(0u64);
    // This agent is the new version of an upgrade: the upgrade took.
    if let Some(u) = state.upgrade.as_mut()
        && u.to == AGENT_VERSION
        && u.state == UpgradeState::Started
    {
        u.state = UpgradeState::Completed;
        u.at_ms = now_ms();
        tracing::info!(from = %u.from, "upgraded");
    }
    let (plan_tx, mut plan_rx) = mpsc::channel::<Vec<u8>>(16);
    // Capacity 1: looks asked for while one is pending are one look.
    let (look_tx, mut look_rx) = mpsc::channel::<()>(1);
    let (read_tx, mut read_rx) = mpsc::unbounded_channel::<()>();

    // Subscribe before the first read so no update is missed in between.
    let mut updates = client.subscribe(kv_subject(PLANS_BUCKET, &device)).await.map_err(|e| format!("subscribe: {e}"))?;
    let commands = client.subscribe(format!("{}.{device}.*", harmony_schemas::fleet::COMMAND_SUBJECT_PREFIX)).await.map_err(|e| format!("subscribe: {e}"))?;

    let mut tasks = tokio::task::JoinSet::new();
    // Reconnect → re-read.
    {
        let read_tx = read_tx.clone();
        tasks.spawn(async move {
            while connected.recv().await.is_some() {
                let _ = read_tx.send(());
            }
        });
    }
    // Update notifications: the message carries the new value; deletes are reported, not applied.
    {
        let plan_tx = plan_tx.clone();
        tasks.spawn(async move {
            while let Some(msg) = updates.next().await {
                let op = msg.headers.as_ref().and_then(|h| h.get("KV-Operation")).map(|v| v.as_str().to_string());
                match op.as_deref() {
                    Some("DEL") | Some("PURGE") => tracing::warn!("plan entry deleted; keeping the last applied plan (sign an empty plan to stop workloads)"),
                    _ => {
                        let _ = plan_tx.send(msg.payload.to_vec()).await;
                    }
                }
            }
        });
    }
    // Reader: current entry on start, on reconnect, retried with backoff on failure.
    {
        let client = client.clone();
        let device = device.clone();
        let plan_tx = plan_tx.clone();
        let _ = read_tx.send(());
        tasks.spawn(async move {
            let mut backoff = Duration::from_millis(200);
            while read_rx.recv().await.is_some() {
                while read_rx.try_recv().is_ok() {}
                loop {
                    match read_entry(&client, &device).await {
                        Ok(Some(bytes)) => {
                            let _ = plan_tx.send(bytes).await;
                            break;
                        }
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!("reading plan entry: {e}; retrying in {backoff:?}");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(10));
                        }
                    }
                }
                backoff = Duration::from_millis(200);
            }
        });
    }
    tasks.spawn(watch_runtime(runtime.clone(), device.clone(), config.observe_interval, look_tx));
    // Status publisher.
    tasks.spawn(publish_status(js.clone(), device.clone(), status_rx, trust_rx, published_tx));
    // Heartbeats.
    {
        let js = js.clone();
        let shared = shared.clone();
        let status = status_tx.subscribe();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(shared.config.heartbeat_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if shared.upgrading.load(std::sync::atomic::Ordering::SeqCst) {
                    continue;
                }
                let (applied_generation, observed_at_ms) = status.borrow().as_ref().map_or((None, None), |s| (s.applied_generation, s.observed_at_ms));
                let hb = Heartbeat {
                    version: PROTOCOL_VERSION,
                    device_id: shared.config.device_id.clone(),
                    agent_version: AGENT_VERSION.into(),
                    uptime_s: shared.uptime_s(),
                    labels: shared.config.labels.clone(),
                    applied_generation,
                    observed_at_ms,
                    timestamp_ms: now_ms(),
                };
                if let Err(e) = put(&js, HEARTBEATS_BUCKET, &shared.config.device_id, serde_json::to_vec(&hb).unwrap_or_default()).await {
                    tracing::debug!("heartbeat not sent: {e}");
                }
            }
        });
    }
    // Commands.
    tasks.spawn(crate::commands::serve(client.clone(), shared.clone(), commands));
    // Under systemd with Type=notify: running (NATS may still be connecting in the background).
    crate::sdnotify::notify("READY=1");

    // Reconciler (this task): resume from the persisted plan first, without NATS.
    let reconciler = async {
        let mut current: Option<DevicePlan> = None;
        let mut watch = Watch::default();
        // Where the device stands in the key chain: the configured keys, or what it settled at
        // the last key retirement it followed (persisted, so a retired key stays retired across
        // restarts). Every plan's chain is followed from it.
        let mut base = TrustState::merged(&config.fleet_keys, state.trust.as_ref());
        let mut followed = base.unfollowed();
        if let Some(signed) = state.applied.clone() {
            match verify(&signed, &base).and_then(|(p, f)| check(&p, &signed.payload, &config).map(|()| (p, f))) {
                Ok((plan, f)) => {
                    tracing::info!(generation = plan.generation, "resuming persisted plan");
                    current = Some(plan);
                    followed = f;
                }
                Err(reason) => {
                    tracing::error!("persisted plan no longer verifies ({reason}); ignoring it");
                    state.applied = None;
                }
            }
        }
        if let Some(plan) = &current {
            // An agent that kept its state but has no floor file yet (an older agent) writes one.
            save_floor(&state, floor_file.as_deref(), plan.generation);
        } else if lost.is_some() && state.floor.is_some() {
            if let Err(e) = state.save(&config.state_dir) {
                tracing::error!("{e}");
            }
        }
        let mut up = Upgrades { js: &js, config: &config, shared: &shared, status_tx: &status_tx, published: published_rx, retire: &mut retire_rx, reread: read_tx.clone() };
        let _ = trust_tx.send(followed.key_ids());
        set_fleet_keys(&shared, &followed);
        if let Some(plan) = &current {
            let _ = applied_tx.send(Some(Arc::new(plan.clone())));
            // What changed while the agent was not running is drift.
            let status = apply(&runtime, &device, plan, &mut state, &config, &mut watch, Pass::Again).await;
            let _ = status_tx.send(Some(status));
            if up.run(plan, &mut state).await {
                return;
            }
        } else {
            let _ = status_tx.send(Some(make_status(&device, None, DeviceState::Pending, vec![], None, &state)));
        }
        // The entry just rejected, so a re-read (or the notification racing the first read) does
        // not report it again.
        let mut last_rejected: Option<Vec<u8>> = None;
        loop {
            let bytes = tokio::select! {
                bytes = plan_rx.recv() => match bytes {
                    Some(b) => b,
                    None => break,
                },
                Some(()) = look_rx.recv() => {
                    // A look at podman: repair drift, publish what is there.
                    if let Some(plan) = &current {
                        let status = apply(&runtime, &device, plan, &mut state, &config, &mut watch, Pass::Look).await;
                        let _ = status_tx.send(Some(status));
                    }
                    continue;
                }
            };
            if last_rejected.as_deref() == Some(bytes.as_slice()) {
                continue;
            }
            let applied = current.as_ref().map(|p| p.generation).zip(state.applied.as_ref().map(|s| &s.payload));
            match accept(&bytes, &config, &base, applied, state.floor.as_ref()) {
                Accepted::Same => {
                    // Re-read of the applied plan (reconnect): heal drift, normally a no-op.
                    if let Some(plan) = &current {
                        let status = apply(&runtime, &device, plan, &mut state, &config, &mut watch, Pass::Again).await;
                        let _ = status_tx.send(Some(status));
                        if up.run(plan, &mut state).await {
                            return;
                        }
                    }
                }
                Accepted::New(accepted) => {
                    let (signed, plan, new) = *accepted;
                    tracing::info!(generation = plan.generation, source_revision = %plan.source_revision, "accepted plan");
                    if new != followed {
                        tracing::info!(trusted = ?new.key_ids(), retired = new.settled.retired.len(), "signing keys changed by the plan's key chain");
                        let _ = trust_tx.send(new.key_ids());
                        set_fleet_keys(&shared, &new);
                    }
                    // The accepted plan is the floor from now on.
                    state.floor = None;
                    // Only what the chain settled is kept: links after its last retirement are
                    // followed again from this base with every plan.
                    base = new.settled.clone();
                    followed = new;
                    state.trust = Some(base.clone());
                    state.applied = Some(signed);
                    state.failed.clear();
                    if let Err(e) = state.save(&config.state_dir) {
                        tracing::error!("{e}");
                    }
                    save_floor(&state, floor_file.as_deref(), plan.generation);
                    let _ = applied_tx.send(Some(Arc::new(plan.clone())));
                    let mut applying = status_tx.borrow().clone().unwrap_or_else(|| make_status(&device, None, DeviceState::Applying, vec![], None, &state));
                    applying.state = DeviceState::Applying;
                    applying.updated_at_ms = now_ms();
                    let _ = status_tx.send(Some(applying));
                    let status = apply(&runtime, &device, &plan, &mut state, &config, &mut watch, Pass::New).await;
                    let _ = status_tx.send(Some(status));
                    if up.run(&plan, &mut state).await {
                        return;
                    }
                    current = Some(plan);
                }
                Accepted::Rejected(generation, reason) => {
                    // Bounded: the reason may quote the (unsigned) entry.
                    let reason = reason.bounded();
                    tracing::warn!(?generation, "rejected plan: {reason}");
                    state.rejections.push(Rejection { generation, reason: reason.clone(), at_ms: now_ms(), digest: Some(sha256_digest(&bytes)) });
                    last_rejected = Some(bytes);
                    let excess = state.rejections.len().saturating_sub(MAX_REJECTIONS);
                    state.rejections.drain(..excess);
                    if let Err(e) = state.save(&config.state_dir) {
                        tracing::error!("{e}");
                    }
                    let mut status = status_tx.borrow().clone().unwrap_or_else(|| make_status(&device, None, DeviceState::Pending, vec![], None, &state));
                    status.rejections = state.rejections.clone();
                    status.last_error = Some(reason.to_string());
                    status.updated_at_ms = now_ms();
                    let _ = status_tx.send(Some(status));
                }
            }
        }
    };
    tokio::select! {
        () = reconciler => {},
        () = shutdown => tracing::info!("shutting down; containers keep running"),
    }
    tasks.abort_all();
    if tokio::time::timeout(FINAL_FLUSH.min(config.shutdown_timeout / 2), client.flush()).await.is_err() {
        tracing::warn!("NATS unreachable: the last status may not have been sent");
    }
    Ok(())
}

enum Accepted {
    Same,
    New(Box<(SignedDevicePlan, DevicePlan, Followed)>),
    Rejected(Option<u64>, RejectionReason),
}

fn check(plan: &DevicePlan, payload: &serde_json::Value, config: &Config) -> Result<(), RejectionReason> {
    if plan.device_id != config.device_id {
        return Err(RejectionReason::WrongDevice { plan_device: plan.device_id.clone() });
    }
    plan.validate().map_err(|e| RejectionReason::Invalid { detail: e.to_string() })?;
    // Host paths as written (resolved again before each container is created) and options
    // the format does not define (`mounts`).
    config.mounts().check_plan(plan, payload)
}

/// Verifies a signed plan from the device's key-chain `base`: follows the plan's chain (each
/// link signed by the chain's current key at that point, extending what the device settled),
/// then checks the plan's signature with the key the chain leads to.
pub(crate) fn verify(signed: &SignedDevicePlan, base: &TrustState) -> Result<(DevicePlan, Followed), RejectionReason> {
    let (fleet, chain) = key_chain(signed).map_err(|detail| RejectionReason::Malformed { detail })?;
    let followed = base.follow(&fleet, &chain).map_err(|e| RejectionReason::KeyChain { detail: e.to_string() })?;
    let plan = signed.verify(&followed.signers())?;
    Ok((plan, followed))
}

/// Whether the plan persisted in `state` still verifies with `config`'s keys and the persisted
/// key-chain state (`--self-test`): its generation if it does.
pub fn verify_persisted(config: &Config, state: &PersistedState) -> Option<Result<u64, RejectionReason>> {
    let base = TrustState::merged(&config.fleet_keys, state.trust.as_ref());
    state.applied.as_ref().map(|signed| verify(signed, &base).map(|(p, _)| p.generation))
}

fn accept(bytes: &[u8], config: &Config, base: &TrustState, applied: Option<(u64, &serde_json::Value)>, floor: Option<&Floor>) -> Accepted {
    if bytes.len() > config.max_plan_bytes {
        return Accepted::Rejected(None, RejectionReason::TooLarge { bytes: bytes.len() as u64, max_bytes: config.max_plan_bytes as u64 });
    }
    let signed = match SignedDevicePlan::from_slice(bytes) {
        Ok(s) => s,
        Err(e) => return Accepted::Rejected(None, e.into()),
    };
    let claimed = signed.payload.get("generation").and_then(serde_json::Value::as_u64);
    // What the chain leads to is kept only if the plan is accepted.
    let (plan, followed) = match verify(&signed, base) {
        Ok(v) => v,
        Err(reason) => return Accepted::Rejected(claimed, reason),
    };
    if let Err(reason) = check(&plan, &signed.payload, config) {
        return Accepted::Rejected(Some(plan.generation), reason);
    }
    // After a lost state: nothing older than the floor, and of its generation only the plan it
    // recorded (`base` is the key chain it recorded: a retired key stays retired).
    if let Some(f) = floor
        && (plan.generation < f.generation || (plan.generation == f.generation && payload_digest(&signed) != f.payload_sha256))
    {
        return Accepted::Rejected(Some(plan.generation), RejectionReason::StaleGeneration { generation: plan.generation, applied: f.generation });
    }
    match applied {
        // The applied plan itself (a re-read after reconnect).
        Some((a, payload)) if plan.generation == a && signed.payload == *payload => Accepted::Same,
        // Older, or the same generation with other content: replay or rollback.
        Some((a, _)) if plan.generation <= a => {
            Accepted::Rejected(Some(plan.generation), RejectionReason::StaleGeneration { generation: plan.generation, applied: a })
        }
        _ => Accepted::New(Box::new((signed, plan, followed))),
    }
}

/// The (not yet verified) plan's fleet and key chain.
fn key_chain(signed: &SignedDevicePlan) -> Result<(String, Vec<SignedKeyAnnouncement>), String> {
    let fleet = signed.payload.get("fleet").and_then(serde_json::Value::as_str).unwrap_or_default().to_string();
    match signed.payload.get("key_chain") {
        None => Ok((fleet, Vec::new())),
        Some(v) => serde_json::from_value(v.clone()).map(|c| (fleet, c)).map_err(|e| format!("key_chain: {e}")),
    }
}

/// Why a plan is reconciled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// A newly accepted plan.
    New,
    /// The applied plan again: at start (resume) or re-read after a reconnect.
    Again,
    /// A look at podman (an event or the interval).
    Look,
}

/// Reconciles `plan` and returns the status observed after it; unless the plan is new, every
/// change made is drift (see [`reconcile`]).
async fn apply(runtime: &Runtime, device: &str, plan: &DevicePlan, state: &mut PersistedState, config: &Config, watch: &mut Watch, pass: Pass) -> DeviceStatus {
    let outcome = reconcile(runtime, device, plan, state, &config.mounts(), watch, pass != Pass::New).await;
    // A look that changed nothing is not news (one every `observe_interval_s`).
    if pass != Pass::Look || outcome.writes > 0 {
        tracing::info!(generation = plan.generation, writes = outcome.writes, "reconciled: podman writes={}", outcome.writes);
        if let Err(e) = state.save(&config.state_dir) {
            tracing::error!("{e}");
        }
    } else {
        tracing::debug!(generation = plan.generation, "looked at podman: nothing to change");
    }
    let failed = outcome.deployments.iter().find_map(|d| d.failure.as_ref().map(|f| format!("deployment `{}`: {f}", d.name)));
    let last_error = outcome.error.clone().map(|e| format!("runtime: {e}")).or(failed);
    let all_ok = outcome.error.is_none() && outcome.deployments.iter().all(|d| d.failure.is_none());
    let st = if all_ok { DeviceState::Applied } else { DeviceState::Degraded };
    let mut status = make_status(device, Some(plan), st, outcome.deployments, last_error, state);
    status.observed_at_ms = outcome.observed_at_ms;
    status.drift = watch.drift();
    status
}

fn make_status(
    device: &str,
    plan: Option<&DevicePlan>,
    state: DeviceState,
    deployments: Vec<harmony_schemas::fleet::DeploymentStatus>,
    last_error: Option<String>,
    s: &PersistedState,
) -> DeviceStatus {
    DeviceStatus {
        version: PROTOCOL_VERSION,
        device_id: device.into(),
        agent_version: AGENT_VERSION.into(),
        applied_generation: plan.map(|p| p.generation),
        applied_source_revision: plan.map(|p| p.source_revision.clone()),
        state,
        deployments,
        last_error,
        rejections: s.rejections.clone(),
        upgrade: s.upgrade.clone(),
        trusted_keys: Vec::new(),
        generation_floor: s.floor.as_ref().map(|f| f.generation),
        observed_at_ms: None,
        drift: Vec::new(),
        updated_at_ms: now_ms(),
    }
}

/// Asks the reconciler for a look at podman (`look`) on each `podman events` line about this
/// device's containers (at most one a second) and every `every`; `podman events` is restarted
/// when it ends (at most every 30 s).
async fn watch_runtime(runtime: Runtime, device: String, every: Duration, look: mpsc::Sender<()>) {
    use tokio::io::AsyncBufReadExt as _;
    let Runtime::Podman(podman) = runtime else { return };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate: the reconciler has just looked.
    tick.tick().await;
    let mut events = None;
    let mut restart_at = Instant::now();
    loop {
        if events.is_none() && Instant::now() >= restart_at {
            restart_at = Instant::now() + Duration::from_secs(30);
            match podman.events(&device) {
                Ok(mut child) => events = child.stdout.take().map(|out| (child, tokio::io::BufReader::new(out).lines())),
                Err(e) => tracing::warn!("{e}; looking every {} s only", every.as_secs()),
            }
        }
        let line = async {
            match events.as_mut() {
                Some((_, lines)) => lines.next_line().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tick.tick() => {}
            line = line => {
                if !matches!(line, Ok(Some(_))) {
                    tracing::debug!("podman events ended; looking every {} s until it runs again", every.as_secs());
                    events = None;
                    continue;
                }
                // Let the burst (a removal is several events) end first.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        if look.try_send(()).is_ok() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// The JetStream API subject of a direct get of the last message on `$KV.<plans>.<device>`:
/// the key is part of the subject, so NATS permissions can allow a device its own key only
/// (a request body naming another key does not get it: `tests/fleet_security.rs`).
pub fn plan_direct_get_subject(device: &str) -> String {
    format!("$JS.API.DIRECT.GET.KV_{PLANS_BUCKET}.{}", kv_subject(PLANS_BUCKET, device))
}

/// Reads the device's plan entry with one direct get (no stream info: the device's permissions
/// do not allow it). `None` when there is no entry or it was deleted.
async fn read_entry(client: &async_nats::Client, device: &str) -> Result<Option<Vec<u8>>, String> {
    let msg = client.request(plan_direct_get_subject(device), Vec::new().into()).await.map_err(|e| format!("plans bucket: {e}"))?;
    if let Some(status) = msg.status {
        if status == async_nats::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if status != async_nats::StatusCode::OK {
            return Err(format!("plans bucket: direct get: {status} {}", msg.description.as_deref().unwrap_or("")));
        }
    }
    let op = msg.headers.as_ref().and_then(|h| h.get("KV-Operation")).map(|v| v.as_str().to_string());
    match op.as_deref() {
        Some("DEL") | Some("PURGE") => Ok(None),
        _ => Ok(Some(msg.payload.to_vec())),
    }
}

/// Writes the floor file for the applied plan of `generation` (an error is logged: the agent
/// runs on, without the protection of a floor file).
fn save_floor(state: &PersistedState, floor_file: Option<&std::path::Path>, generation: u64) {
    if let (Some(path), Some(signed)) = (floor_file, &state.applied)
        && let Err(e) = state.save_floor(path, generation, signed)
    {
        tracing::error!("{e}");
    }
}

/// What an upgrade needs from the agent's loop.
struct Upgrades<'a> {
    js: &'a jetstream::Context,
    config: &'a Config,
    shared: &'a Shared,
    status_tx: &'a watch::Sender<Option<DeviceStatus>>,
    published: watch::Receiver<u64>,
    retire: &'a mut mpsc::UnboundedReceiver<()>,
    /// Asks for the plan entry to be read again (which runs the upgrade again): a retry.
    reread: mpsc::UnboundedSender<()>,
}

impl Upgrades<'_> {
    /// After a reconcile: when `plan` names another agent version, upgrades (see [`crate::upgrade`]).
    /// True when this agent was retired and must exit. A failed upgrade is reported, and retried
    /// only as [`crate::upgrade::next_attempt`] allows.
    async fn run(&mut self, plan: &DevicePlan, state: &mut PersistedState) -> bool {
        use crate::upgrade::{Attempts, Failure, MAX_ATTEMPTS, Next, backoff, next_attempt};
        if plan.agent_version == AGENT_VERSION {
            return false;
        }
        match next_attempt(state.upgrade_attempts.as_ref(), state.upgrade.as_ref(), &plan.agent_version, plan.generation, now_ms()) {
            Next::Attempt => {}
            Next::Wait(wait) => {
                self.retry_after(wait);
                return false;
            }
            Next::Done => return false,
            Next::GiveUp => {
                if let Some(report) = state.upgrade.clone() {
                    self.failed(plan, state, report, format!("the agent stopped during each of the {MAX_ATTEMPTS} attempts; not tried again for this plan"));
                }
                return false;
            }
        }
        let count = state.upgrade_attempts.as_ref().filter(|a| a.to == plan.agent_version && a.generation == plan.generation).map_or(0, |a| a.count) + 1;
        state.upgrade_attempts = Some(Attempts { to: plan.agent_version.clone(), generation: plan.generation, count, retry_at_ms: None });
        let report = UpgradeReport {
            from: AGENT_VERSION.into(),
            to: plan.agent_version.clone(),
            generation: plan.generation,
            state: UpgradeState::Started,
            error: None,
            at_ms: now_ms(),
        };
        tracing::info!(to = %plan.agent_version, generation = plan.generation, "upgrading the agent");
        // Drain retires meant for an earlier attempt.
        while self.retire.try_recv().is_ok() {}
        let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
        let outcome = async {
            // The status naming the upgrade is published before the new agent starts, so it
            // cannot overwrite the new agent's first status.
            // Persisted too: the new agent reads it, reports where it came from, and the
            // executor retires exactly that version.
            state.upgrade = Some(report.clone());
            if let Err(e) = state.save(&self.config.state_dir) {
                return crate::upgrade::Outcome::Failed(Failure { error: e, transient: true });
            }
            let status = self.status_with(state);
            let at = status.updated_at_ms;
            let _ = self.status_tx.send(Some(status));
            if tokio::time::timeout(Duration::from_secs(10), self.published.wait_for(|t| *t >= at)).await.is_err() {
                return crate::upgrade::Outcome::Failed(Failure { error: "the status could not be published (is NATS reachable?)".into(), transient: true });
            }
            self.shared.upgrading.store(true, std::sync::atomic::Ordering::SeqCst);
            match crate::upgrade::start(self.js, self.config, plan, &args).await {
                Ok(started) => started.wait(self.retire, self.config.upgrade_timeout).await,
                Err(e) => crate::upgrade::Outcome::Failed(e),
            }
        }
        .await;
        self.shared.upgrading.store(false, std::sync::atomic::Ordering::SeqCst);
        match outcome {
            crate::upgrade::Outcome::Retired { new_pid } => {
                tracing::info!(to = %plan.agent_version, new_pid, "retired: the new agent runs; exiting");
                // Under systemd (Type=notify, NotifyAccess=all) the unit follows the new agent.
                crate::sdnotify::notify(&format!("MAINPID={new_pid}"));
                true
            }
            crate::upgrade::Outcome::Failed(f) => {
                let error = if !f.transient {
                    f.error
                } else if count < MAX_ATTEMPTS {
                    let wait = backoff(count);
                    if let Some(a) = state.upgrade_attempts.as_mut() {
                        a.retry_at_ms = Some(now_ms().saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)));
                    }
                    self.retry_after(wait);
                    format!("{} (attempt {count} of {MAX_ATTEMPTS}; trying again in {} s)", f.error, wait.as_secs())
                } else {
                    format!("{} (attempt {count} of {MAX_ATTEMPTS}; not tried again for this plan)", f.error)
                };
                self.failed(plan, state, report, error);
                false
            }
        }
    }

    /// Reports the upgrade failed (persisted, and in the status until another plan arrives).
    fn failed(&self, plan: &DevicePlan, state: &mut PersistedState, mut report: UpgradeReport, e: String) {
        tracing::error!(to = %plan.agent_version, "agent upgrade failed: {e}");
        report.state = UpgradeState::Failed;
        report.error = Some(e.clone());
        report.at_ms = now_ms();
        state.upgrade = Some(report);
        if let Err(e) = state.save(&self.config.state_dir) {
            tracing::error!("{e}");
        }
        let mut status = self.status_with(state);
        status.last_error = Some(format!("agent upgrade to {} failed: {e}", plan.agent_version));
        let _ = self.status_tx.send(Some(status));
    }

    /// Reads the plan entry again after `wait` (the upgrade then runs again).
    fn retry_after(&self, wait: Duration) {
        let reread = self.reread.clone();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let _ = reread.send(());
        });
    }

    fn status_with(&self, state: &PersistedState) -> DeviceStatus {
        let mut status =
            self.status_tx.borrow().clone().unwrap_or_else(|| make_status(&self.config.device_id, None, DeviceState::Pending, vec![], None, state));
        status.upgrade = state.upgrade.clone();
        status.updated_at_ms = now_ms();
        status
    }
}

/// Keeps [`Shared::fleet_keys`] in step with the key chain.
fn set_fleet_keys(shared: &Shared, followed: &Followed) {
    if let Ok(mut k) = shared.fleet_keys.write() {
        *k = followed.signers();
    }
}

/// Puts `value` under `key` in `bucket`: a JetStream publish on `$KV.<bucket>.<key>` awaiting its
/// ack (no stream info: the device's permissions allow publishing on its own keys only).
async fn put(js: &jetstream::Context, bucket: &str, key: &str, value: Vec<u8>) -> Result<(), String> {
    let ack = js.publish(kv_subject(bucket, key), value.into()).await.map_err(|e| format!("{bucket}: {e}"))?;
    ack.await.map(|_| ()).map_err(|e| format!("{bucket}: {e}"))
}

async fn publish_status(
    js: jetstream::Context,
    device: String,
    mut rx: watch::Receiver<Option<DeviceStatus>>,
    trust: watch::Receiver<Vec<String>>,
    published: watch::Sender<u64>,
) {
    while rx.changed().await.is_ok() {
        let mut backoff = Duration::from_millis(200);
        loop {
            let Some(mut status) = rx.borrow_and_update().clone() else { break };
            status.trusted_keys = trust.borrow().clone();
            // Whatever the agent was sent, its status fits a NATS message.
            let status = status.bounded();
            match put(&js, STATUS_BUCKET, &device, serde_json::to_vec(&status).unwrap_or_default()).await {
                Ok(()) => {
                    published.send_replace(status.updated_at_ms);
                    break;
                }
                Err(e) => {
                    tracing::warn!("status not published: {e}; retrying in {backoff:?}");
                    // Wait for the backoff or a newer status, whichever comes first.
                    let _ = tokio::time::timeout(backoff, rx.changed()).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Accepted, Seeds, accept};
    use harmony_schemas::fleet::{RejectionReason, encode_key, generate_signing_key};
    use harmony_schemas::trust::TrustState;

    #[test]
    fn an_entry_over_max_plan_bytes_is_rejected_unread() {
        let key = generate_signing_key().unwrap();
        let text = format!(
            "device_id = \"pi\"\nstate_dir = \"/tmp/x\"\nmax_plan_bytes = 4096\nfleet_keys = [\"{}\"]\n[nats]\nurls = [\"nats://127.0.0.1:1\"]\n",
            encode_key(key.verifying_key().as_bytes())
        );
        let config = crate::config::resolve(crate::config::parse(&text, std::path::Path::new("t")).unwrap(), Default::default()).unwrap();
        let trust = TrustState::new(&config.fleet_keys);
        let big = format!("{{\"payload\":{{\"generation\":5}},\"signature\":{{\"key_id\":\"{}\"}}}}", "k".repeat(4096));
        assert!(matches!(
            accept(big.as_bytes(), &config, &trust, None, None),
            Accepted::Rejected(None, RejectionReason::TooLarge { bytes, max_bytes: 4096 }) if bytes == big.len() as u64
        ));
        // Under the limit it is read (and rejected for what it is).
        let small = format!("{{\"payload\":{{\"generation\":5}},\"signature\":{{\"alg\":\"ed25519\",\"key_id\":\"{}\",\"sig\":\"\"}}}}", "k".repeat(1000));
        assert!(matches!(accept(small.as_bytes(), &config, &trust, None, None), Accepted::Rejected(Some(5), RejectionReason::UnknownKey { .. })));
    }

    #[test]
    fn a_rotated_seed_falls_back_to_the_previous_one_until_it_works() {
        let mut s = Seeds::load("old".into(), None);
        assert_eq!((s.next(), s.next()), ("old".to_string(), "old".to_string()), "no fallback: always the current seed");
        assert!(!s.connected());
        // Rotated while connected with `old`: `new` first, `old` on the next attempt, and so on.
        let keep = s.rotating();
        assert_eq!(keep, "old");
        s.rotated("new".into(), keep);
        assert_eq!([s.next(), s.next(), s.next()], ["new", "old", "new"].map(String::from));
        // Connected with `old` (the new key was never admitted): the fallback stays, and the
        // next reconnection tries `new` first again.
        s.next();
        assert!(!s.connected());
        assert_eq!(s.next(), "new");
        // Rotated again before `new` ever worked: `old` (known to work) stays the fallback.
        let keep = s.rotating();
        assert_eq!(keep, "old");
        s.rotated("newer".into(), keep);
        assert_eq!([s.next(), s.next()], ["newer", "old"].map(String::from));
        // `newer` works: the fallback is retired.
        s.next();
        assert!(s.connected(), "retires the fallback");
        assert_eq!(s.fallback, None);
        assert_eq!([s.next(), s.next()], ["newer", "newer"].map(String::from));
    }
}
