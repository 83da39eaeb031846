//! `harmony ui --demo`: a local nats-server and simulated devices, so the dashboard has
//! something to show without a fleet. Demo mode is the only place Harmony itself writes
//! statuses and heartbeats (normally the agents' job), and only to a server it was pointed at
//! or started itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream;
use ed25519_dalek::{SigningKey, VerifyingKey};
use harmony_compiler::CompiledRepo;
use harmony_executor::fleet::{desired_fleet, ensure_buckets};
use harmony_schemas::fleet::{
    ContainerKind, ContainerState, ContainerStatus, DeploymentFailure, DeploymentState, DeploymentStatus, DevicePlan, DeviceState, DeviceStatus, Heartbeat,
    PROTOCOL_VERSION, SignedDevicePlan, now_ms,
};
use tokio::task::JoinHandle;

use crate::UiError;
use crate::model::RepoView;

/// A nats-server started for the demo; killed (and its store removed) on drop.
pub struct DemoNats {
    child: tokio::process::Child,
    dir: PathBuf,
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
}

impl Drop for DemoNats {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Finds `nats-server`: `$HARMONY_NATS_SERVER`, `.venv/bin/nats-server` here or next to the
/// repository (where `scripts/install-test-deps.sh` puts it), then `PATH`.
pub fn find_nats_server(repo: &Path) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HARMONY_NATS_SERVER") {
        return Some(PathBuf::from(p));
    }
    let mut candidates = vec![PathBuf::from(".venv/bin/nats-server")];
    if let Ok(abs) = std::fs::canonicalize(repo) {
        for dir in abs.ancestors() {
            candidates.push(dir.join(".venv/bin/nats-server"));
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("nats-server")));
    }
    candidates.into_iter().find(|p| p.is_file())
}

/// Starts `binary` with JetStream on a free loopback port and waits until it is ready.
pub async fn start_nats_server(binary: &Path) -> Result<DemoNats, UiError> {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| UiError::Demo(format!("no free port: {e}")))?.port();
    let dir = std::env::temp_dir().join(format!("harmony-ui-demo-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| UiError::Demo(format!("{}: {e}", dir.display())))?;
    let log = dir.join("nats.log");
    let child = tokio::process::Command::new(binary)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(dir.join("js"))
        .arg("-l")
        .arg(&log)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| UiError::Demo(format!("cannot start {}: {e}", binary.display())))?;
    let nats = DemoNats { child, dir, url: format!("nats://127.0.0.1:{port}") };
    for _ in 0..100 {
        if std::fs::read_to_string(&log).is_ok_and(|s| s.contains("Server is ready")) {
            return Ok(nats);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(UiError::Demo(format!("nats-server did not start: {}", std::fs::read_to_string(&log).unwrap_or_default())))
}

/// A throwaway fleet key for the demo: its plans are signed with it and the dashboard trusts it
/// (the example's private key is not in the repository).
pub fn demo_key() -> Result<SigningKey, UiError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| UiError::Demo(format!("no randomness: {e}")))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Makes `repo` trust `key` for every fleet.
pub fn trust(repo: &mut RepoView, key: VerifyingKey) {
    for f in repo.fleets.values_mut() {
        f.trusted = vec![key];
    }
}

struct Sim {
    plan: DevicePlan,
    labels: BTreeMap<String, String>,
    applied: u64,
    state: DeviceState,
    started_ms: u64,
    failing: bool,
}

fn status_of(s: &Sim, now: u64) -> DeviceStatus {
    let deployments = s
        .plan
        .deployments
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let failed = s.failing && i == 0;
            let mut containers: Vec<ContainerStatus> = d.init_containers.iter().map(ContainerStatus::init_completed).collect();
            containers.extend(d.services.iter().enumerate().map(|(j, c)| ContainerStatus {
                name: c.container.name.clone(),
                kind: ContainerKind::Service,
                state: if failed && j == 0 { ContainerState::Failed } else { ContainerState::Running },
                container_id: Some(format!("{:0>12x}", (now ^ (i as u64 * 7919 + j as u64 * 104_729)) & 0xffff_ffff_ffff)),
                spec_hash: c.spec_hash.clone(),
                exit_code: if failed && j == 0 { Some(137) } else { None },
                observed: None,
            }));
            let first = d.services.first().map(|c| c.container.name.clone()).unwrap_or_default();
            DeploymentStatus {
                name: d.name.clone(),
                spec_hash: d.spec_hash.clone(),
                state: if failed { DeploymentState::Failed } else { DeploymentState::Running },
                failure: failed.then(|| DeploymentFailure::Runtime { container: first.clone(), message: "exited with code 137 (out of memory)".into() }),
                containers,
            }
        })
        .collect();
    DeviceStatus {
        upgrade: None,
        version: PROTOCOL_VERSION,
        device_id: s.plan.device_id.clone(),
        agent_version: s.plan.agent_version.clone(),
        applied_generation: Some(s.applied),
        applied_source_revision: Some("demo".into()),
        state: s.state,
        deployments,
        last_error: s.failing.then(|| "deployment failed: container exited with code 137 (out of memory)".into()),
        rejections: vec![],
        trusted_keys: vec![],
        generation_floor: None,
        observed_at_ms: None,
        drift: vec![],
        updated_at_ms: now,
    }
}

fn heartbeat_of(s: &Sim, now: u64, at: u64) -> Heartbeat {
    Heartbeat {
        version: PROTOCOL_VERSION,
        device_id: s.plan.device_id.clone(),
        agent_version: s.plan.agent_version.clone(),
        uptime_s: at.saturating_sub(s.started_ms) / 1000,
        labels: s.labels.clone(),
        applied_generation: Some(s.applied),
        observed_at_ms: None,
        timestamp_ms: at.min(now),
    }
}

fn sign(plan: &DevicePlan, key: &SigningKey) -> Result<Vec<u8>, UiError> {
    let signed = SignedDevicePlan::sign(plan, key).map_err(|e| UiError::Demo(e.to_string()))?;
    serde_json::to_vec(&signed).map_err(|e| UiError::Demo(e.to_string()))
}

/// Writes signed plans (generation 1) for every device of the repository, then runs the
/// simulated agents until aborted: heartbeats every 5 s; one device degraded, one silent after
/// its first heartbeat (stale after `--stale-after`), devices labelled `decommissioned=yes`
/// never heard from; every 20 s a device gets a new generation,
/// reports `applying`, then `applied`.
pub async fn simulate(compiled: &CompiledRepo, client: async_nats::Client, key: SigningKey) -> Result<JoinHandle<()>, UiError> {
    let nats = |e: harmony_executor::fleet::FleetError| UiError::Demo(e.to_string());
    let [plans, status, heartbeats] = ensure_buckets(&jetstream::new(client), &Default::default()).await.map_err(nats)?;
    let now = now_ms();
    let mut sims = Vec::new();
    for fleet in compiled.fleets.keys() {
        let desired = desired_fleet(compiled, fleet.as_str(), "demo").map_err(nats)?;
        for (i, (id, mut plan)) in desired.plans.into_iter().enumerate() {
            let labels = compiled
                .units
                .values()
                .find_map(|u| match &u.content {
                    harmony_compiler::UnitContent::DevicePlan(p) if p.device.as_str() == id => Some(p.labels.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            plan.generation = 1;
            plans.put(id.as_str(), sign(&plan, &key)?.into()).await.map_err(|e| UiError::Demo(e.to_string()))?;
            let failing = i == 3;
            sims.push(Sim {
                plan,
                labels,
                applied: 1,
                state: if failing { DeviceState::Degraded } else { DeviceState::Applied },
                started_ms: now - 3_600_000 * (i as u64 + 1),
                failing,
            });
        }
    }
    let put = |store: &jetstream::kv::Store, key: String, v: Vec<u8>| {
        let store = store.clone();
        async move {
            if let Err(e) = store.put(key.as_str(), v.into()).await {
                tracing::warn!("demo: {e}");
            }
        }
    };
    for s in &sims {
        if s.labels.get("decommissioned").is_some_and(|v| v == "yes") {
            continue;
        }
        put(&status, s.plan.device_id.clone(), serde_json::to_vec(&status_of(s, now)).unwrap_or_default()).await;
        // The device at index 1 sends this one heartbeat and goes quiet: stale after
        // --stale-after (90 s by default), unknown after --unknown-after.
        put(&heartbeats, s.plan.device_id.clone(), serde_json::to_vec(&heartbeat_of(s, now, now)).unwrap_or_default()).await;
    }
    Ok(tokio::spawn(async move {
        let mut tick: u64 = 0;
        let mut next_rollout = 0usize;
        let mut applying: Option<(usize, u64)> = None;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            tick += 1;
            let now = now_ms();
            let live: Vec<usize> = (0..sims.len()).filter(|&i| i != 1 && sims[i].labels.get("decommissioned").is_none_or(|v| v != "yes")).collect();
            // Heartbeats, staggered over five seconds.
            for &i in &live {
                if (tick + i as u64).is_multiple_of(5) {
                    put(&heartbeats, sims[i].plan.device_id.clone(), serde_json::to_vec(&heartbeat_of(&sims[i], now, now)).unwrap_or_default()).await;
                }
            }
            if let Some((i, done_at)) = applying
                && tick >= done_at
            {
                let s = &mut sims[i];
                s.applied = s.plan.generation;
                s.state = DeviceState::Applied;
                put(&status, s.plan.device_id.clone(), serde_json::to_vec(&status_of(s, now)).unwrap_or_default()).await;
                applying = None;
            }
            if tick.is_multiple_of(20) && applying.is_none() {
                let healthy: Vec<usize> = live.iter().copied().filter(|&i| !sims[i].failing).collect();
                if healthy.is_empty() {
                    continue;
                }
                let i = healthy[next_rollout % healthy.len()];
                next_rollout += 1;
                let s = &mut sims[i];
                s.plan.generation += 1;
                if let Ok(bytes) = sign(&s.plan, &key) {
                    put(&plans, s.plan.device_id.clone(), bytes).await;
                }
                s.state = DeviceState::Applying;
                put(&status, s.plan.device_id.clone(), serde_json::to_vec(&status_of(s, now)).unwrap_or_default()).await;
                applying = Some((i, tick + 4));
            }
        }
    }))
}
