//! Harness for the agent's end-to-end tests: a real nats-server (JetStream), the real
//! `harmony-agent` binary, real podman. Plans are signed with the schemas' helpers and written
//! straight into the plans bucket (what `harmony apply` will do).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use harmony_schemas::fleet::{
    ContainerSpec, DeploymentPlan, DevicePlan, DeviceState, DeviceStatus, HEARTBEATS_BUCKET, InitContainer, PLANS_BUCKET, PROTOCOL_VERSION, RestartPolicy,
    STATUS_BUCKET, Service, SignedDevicePlan, SigningKey, encode_key, generate_signing_key,
};
use harmony_testkit::NatsServer;

#[allow(unused_imports)]
pub use harmony_testkit::{ForeignContainer, busybox_image};

/// Creates the buckets `harmony apply` would.
pub async fn create_buckets(js: &jetstream::Context) {
    create_buckets_replicated(js, 1).await;
}

/// Creates the buckets `harmony apply` would for a fleet declaring `replicas`.
pub async fn create_buckets_replicated(js: &jetstream::Context, replicas: usize) {
    for bucket in [PLANS_BUCKET, STATUS_BUCKET, HEARTBEATS_BUCKET] {
        js.create_key_value(kv::Config { bucket: bucket.into(), history: 1, num_replicas: replicas, ..Default::default() }).await.expect("create bucket");
    }
}

/// A short random suffix.
pub fn suffix() -> String {
    let mut b = [0u8; 3];
    getrandom::fill(&mut b).expect("random");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A container spec.
pub fn spec(name: &str, image: &str, args: &[&str], env: &[(&str, &str)]) -> ContainerSpec {
    ContainerSpec {
        name: name.into(),
        image: image.into(),
        command: vec![],
        args: args.iter().map(|s| s.to_string()).collect(),
        env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ports: vec![],
        volumes: vec![],
    }
}

/// A deployment.
pub fn deployment(name: &str, inits: Vec<(ContainerSpec, u64)>, services: Vec<ContainerSpec>) -> DeploymentPlan {
    DeploymentPlan::new(
        name,
        "acme",
        inits.into_iter().map(|(c, t)| InitContainer::new(c, t)).collect(),
        services.into_iter().map(|c| Service::new(c, RestartPolicy::Always)).collect(),
    )
}

/// One device under test: nats-server, keys, the agent process.
pub struct Device {
    pub nats: NatsServer,
    pub id: String,
    pub fleet_key: SigningKey,
    pub command_key: SigningKey,
    pub state_dir: tempfile::TempDir,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    agent: Option<Child>,
    runtime: &'static str,
    /// `--observe-interval` and any further flags of the agent.
    flags: Vec<String>,
    starts: u32,
}

impl Device {
    /// Starts nats-server, creates the buckets and starts the agent.
    pub async fn start(prefix: &str) -> Device {
        Device::start_with(prefix, "podman").await
    }

    /// With a given runtime (`podman` or `none`).
    pub async fn start_with(prefix: &str, runtime: &'static str) -> Device {
        Device::start_flags(prefix, runtime, 2, &[]).await
    }

    /// With a given runtime, seconds between full looks at podman, and further agent flags
    /// (e.g. `--config FILE`).
    pub async fn start_flags(prefix: &str, runtime: &'static str, observe_interval_s: u64, flags: &[&str]) -> Device {
        let nats = NatsServer::start();
        let client = async_nats::connect(nats.url()).await.expect("connect");
        let js = jetstream::new(client.clone());
        create_buckets(&js).await;
        let mut d = Device {
            id: format!("{prefix}-{}", suffix()),
            fleet_key: generate_signing_key().unwrap(),
            command_key: generate_signing_key().unwrap(),
            state_dir: tempfile::tempdir().unwrap(),
            nats,
            client,
            js,
            agent: None,
            runtime,
            flags: ["--observe-interval".to_string(), observe_interval_s.to_string()].into_iter().chain(flags.iter().map(|f| f.to_string())).collect(),
            starts: 0,
        };
        d.start_agent();
        d
    }

    /// The agent's log file of its latest start.
    pub fn log_path(&self) -> PathBuf {
        self.state_dir.path().join(format!("agent-{}.log", self.starts))
    }

    /// The agent's log (latest start).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Starts the agent binary.
    pub fn start_agent(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.log_path()).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_harmony-agent"))
            .args(["--device-id", &self.id, "--nats-url", &self.nats.url(), "--runtime", self.runtime, "--heartbeat-interval", "1", "--label", "site=test"])
            .args(&self.flags)
            .arg("--state-dir")
            .arg(self.state_dir.path().join("state"))
            .arg("--data-root")
            .arg(self.data_root())
            .args(["--fleet-key", &encode_key(self.fleet_key.verifying_key().as_bytes())])
            .args(["--command-key", &encode_key(self.command_key.verifying_key().as_bytes())])
            .env("HARMONY_AGENT_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start harmony-agent");
        self.agent = Some(child);
    }

    /// The agent's data root (`<data root>/<tenant>` is what a tenant may bind-mount).
    pub fn data_root(&self) -> PathBuf {
        self.state_dir.path().join("data")
    }

    /// The agent's process id.
    pub fn agent_pid(&self) -> Option<u32> {
        self.agent.as_ref().map(Child::id)
    }

    /// Kills the agent (SIGKILL).
    pub fn kill_agent(&mut self) {
        if let Some(mut c) = self.agent.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM to the agent and waits up to `within` for it to exit: how long it took,
    /// or `None` when it still ran (it is then killed).
    pub fn terminate_agent(&mut self, within: Duration) -> Option<Duration> {
        let mut child = self.agent.take()?;
        let sent = Instant::now();
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        while sent.elapsed() < within {
            if let Ok(Some(_)) = child.try_wait() {
                return Some(sent.elapsed());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// A plan for this device.
    pub fn plan(&self, generation: u64, deployments: Vec<DeploymentPlan>) -> DevicePlan {
        DevicePlan {
            agent: None,
            version: PROTOCOL_VERSION,
            device_id: self.id.clone(),
            fleet: "pico".into(),
            generation,
            source_revision: format!("rev-{generation}"),
            agent_version: harmony_agent::AGENT_VERSION.into(),
            deployments,
            key_chain: vec![],
        }
    }

    /// Signs with the fleet key.
    pub fn sign(&self, plan: &DevicePlan) -> SignedDevicePlan {
        SignedDevicePlan::sign(plan, &self.fleet_key).unwrap()
    }

    /// Writes raw bytes as this device's plan entry.
    pub async fn put_raw(&self, bytes: Vec<u8>) {
        let kv = self.js.get_key_value(PLANS_BUCKET).await.unwrap();
        kv.put(&self.id, bytes.into()).await.unwrap();
    }

    /// Signs and writes a plan.
    pub async fn put_plan(&self, plan: &DevicePlan) {
        self.put_raw(self.sign(plan).to_vec()).await;
    }

    /// The current status, if any.
    pub async fn status(&self) -> Option<DeviceStatus> {
        let kv = self.js.get_key_value(STATUS_BUCKET).await.ok()?;
        let e = kv.get(&self.id).await.ok()??;
        Some(serde_json::from_slice(&e).expect("status decodes"))
    }

    /// Waits for a status matching `pred`.
    pub async fn wait_status(&self, what: &str, timeout: Duration, pred: impl Fn(&DeviceStatus) -> bool) -> DeviceStatus {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        while Instant::now() < deadline {
            if let Some(s) = self.status().await {
                if pred(&s) {
                    return s;
                }
                last = Some(s);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("timed out waiting for {what}; last status: {last:#?}\nagent log:\n{}", self.log());
    }

    /// Waits until generation `g` is applied or degraded (reconcile finished).
    pub async fn wait_generation(&self, g: u64) -> DeviceStatus {
        self.wait_status(&format!("generation {g} reconciled"), Duration::from_secs(60), |s| {
            s.applied_generation == Some(g) && matches!(s.state, DeviceState::Applied | DeviceState::Degraded)
        })
        .await
    }

    /// Waits until `n` rejections are reported.
    pub async fn wait_rejections(&self, n: usize) -> DeviceStatus {
        self.wait_status(&format!("{n} rejections"), Duration::from_secs(30), |s| s.rejections.len() >= n).await
    }

    /// This device's containers: (deployment/container/kind) → (id, state).
    pub fn containers(&self) -> BTreeMap<String, (String, String)> {
        harmony_testkit::harmony_containers(&self.id)
    }

    /// The number of `writes=N` log lines of reconciles, and the last N.
    pub fn last_writes(&self) -> Option<u64> {
        self.log().lines().filter_map(|l| l.split("podman writes=").nth(1)).filter_map(|r| r.split_whitespace().next()?.parse().ok()).next_back()
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.kill_agent();
        let ids: Vec<String> = self.containers().into_values().map(|(id, _)| id).collect();
        for id in ids {
            let _ = Command::new("podman").args(["rm", "-f", "-t", "0", &id]).output();
        }
    }
}
