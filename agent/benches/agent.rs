//! Agent benchmarks (`cargo bench -p harmony-agent --bench agent`); results in docs/performance.md.
//!
//! 1. plan written → status reports it applied, with real podman (local image, no pull):
//!    a no-op generation (nothing to change) and a replacing generation (env change: rm + create
//!    + start); p50/p95 over `HARMONY_BENCH_ROUNDS` (default 20) rounds each.
//! 2. idle RSS of the `harmony-agent` process after those rounds.
//! 3. `HARMONY_BENCH_AGENTS` (default 1000) agents with the runtime disabled, as in-process
//!    tasks of this bench process (one NATS connection each), converging to a new plan.
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use harmony_agent::config::{Overrides, parse, resolve};
use harmony_schemas::fleet::{DevicePlan, DeviceStatus, PLANS_BUCKET, PROTOCOL_VERSION, STATUS_BUCKET, SignedDevicePlan, generate_signing_key, kv_subject};
use support::{busybox_image, deployment, spec};

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn latency(rounds: usize) {
    let img = busybox_image("1");
    let d = support::Device::start("bench").await;
    let mut status = d.client.subscribe(kv_subject(STATUS_BUCKET, &d.id)).await.unwrap();
    let svc = |v: &str| vec![deployment("web", vec![], vec![spec("app", &img, &["sleep", "3600"], &[("V", v)])])];
    let mut g = 1;
    d.put_plan(&d.plan(g, svc("0"))).await;
    d.wait_generation(g).await;
    let mut noop = Vec::new();
    let mut replace = Vec::new();
    for i in 0..rounds * 2 {
        g += 1;
        // Even rounds change the env (replace), odd rounds repeat it (no-op).
        let deployments = svc(&(i / 2 + 1).to_string());
        let changed = i % 2 == 0;
        let t = Instant::now();
        d.put_plan(&d.plan(g, deployments)).await;
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(60), status.next()).await.expect("status in time").unwrap();
            let s: DeviceStatus = serde_json::from_slice(&msg.payload).unwrap();
            if s.applied_generation == Some(g) && s.state == harmony_schemas::fleet::DeviceState::Applied {
                break;
            }
        }
        if changed { replace.push(t.elapsed()) } else { noop.push(t.elapsed()) }
    }
    for (name, mut v) in [("no-op generation", noop), ("replace one service", replace)] {
        v.sort();
        println!("latency {name}: n={} p50={:.1} ms p95={:.1} ms max={:.1} ms", v.len(), ms(pct(&v, 0.5)), ms(pct(&v, 0.95)), ms(*v.last().unwrap()));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid = d.agent_pid().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or("VmRSS: ?");
    let hwm = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap_or("VmHWM: ?");
    println!("idle agent (podman runtime, 1 service, after {} reconciles): {rss}, peak {hwm}", rounds * 2 + 1);
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn many(n: usize) {
    let nats = harmony_testkit::NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    support::create_buckets(&js).await;
    let key = generate_signing_key().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..n).map(|i| format!("load-{i:05}")).collect();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    for id in &ids {
        // Through the config file's parser, as the agent binary does: new settings take their
        // defaults here too.
        let toml = format!(
            "device_id = {id:?}\nstate_dir = {:?}\nfleet_keys = [{:?}]\nruntime = \"none\"\n[nats]\nurls = [{:?}]\n",
            dir.path().join(id).display().to_string(),
            harmony_schemas::encoding::hex(key.verifying_key().as_bytes()),
            nats.url(),
        );
        let config = resolve(parse(&toml, std::path::Path::new("bench.toml")).unwrap(), Overrides::default()).unwrap();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _ = harmony_agent::run(config, async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        });
    }
    // Wait until every agent published its first (pending) status.
    let mut sub = client.subscribe(kv_subject(STATUS_BUCKET, "*")).await.unwrap();
    let kv_status = js.get_key_value(STATUS_BUCKET).await.unwrap();
    loop {
        let keys: Vec<String> = kv_status.keys().await.unwrap().filter_map(|k| async { k.ok() }).collect().await;
        if keys.len() == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("{n} agents started and reported in {:.2} s", started.elapsed().as_secs_f64());
    while tokio::time::timeout(Duration::from_millis(200), sub.next()).await.is_ok() {}
    let img = "localhost/harmony-test/busybox:1";
    let plans: Vec<Vec<u8>> = ids
        .iter()
        .map(|id| {
            let p = DevicePlan {
                agent: None,
                version: PROTOCOL_VERSION,
                device_id: id.clone(),
                fleet: "load".into(),
                generation: 1,
                source_revision: "r1".into(),
                agent_version: harmony_agent::AGENT_VERSION.into(),
                deployments: vec![deployment("web", vec![], vec![spec("app", img, &["sleep", "3600"], &[])])],
                key_chain: vec![],
            };
            SignedDevicePlan::sign(&p, &key).unwrap().to_vec()
        })
        .collect();
    let kv = js.get_key_value(PLANS_BUCKET).await.unwrap();
    let t = Instant::now();
    let writes = futures::stream::iter(ids.clone().into_iter().zip(plans)).map(move |(id, p)| {
        let kv = kv.clone();
        async move { kv.put(&id, p.into()).await.unwrap() }
    });
    let writer = tokio::spawn(async move { writes.buffer_unordered(64).collect::<Vec<_>>().await.len() });
    let mut done = HashSet::new();
    while done.len() < n {
        let msg = tokio::time::timeout(Duration::from_secs(120), sub.next()).await.expect("statuses in time").unwrap();
        if let Ok(s) = serde_json::from_slice::<DeviceStatus>(&msg.payload)
            && s.applied_generation == Some(1)
            && s.state == harmony_schemas::fleet::DeviceState::Applied
        {
            done.insert(s.device_id);
        }
    }
    let converge = t.elapsed();
    let written = writer.await.unwrap();
    let me = std::fs::read_to_string("/proc/self/status").unwrap();
    let rss = me.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or("?").to_string();
    println!(
        "{n} agents (runtime disabled, in-process tasks, one connection each): {written} plans written, all applied in {:.2} s; bench process {rss}",
        converge.as_secs_f64()
    );
    let _ = stop_tx.send(true);
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    rt.block_on(async {
        if only.as_deref().is_none_or(|o| o == "latency") {
            latency(env_num("HARMONY_BENCH_ROUNDS", 20)).await;
        }
        if only.as_deref().is_none_or(|o| o == "many") {
            many(env_num("HARMONY_BENCH_AGENTS", 1000)).await;
        }
    });
}
