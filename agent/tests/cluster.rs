//! Agents on a 3-node JetStream cluster (issue 22): `AGENTS` (default 50) agents, runtime
//! disabled, as in-process tasks with one connection each and every node's URL, on R3 buckets.
//! The node leading the plans stream is killed while they run and a new generation is written:
//! every agent converges to it (reconnecting to another node, re-reading its plan with a direct
//! get, which any replica answers: async-nats creates KV buckets with `allow_direct`); the node
//! comes back and the next generation converges too.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use harmony_agent::config::{Overrides, parse, resolve};
use harmony_schemas::fleet::{DevicePlan, DeviceState, DeviceStatus, PLANS_BUCKET, PROTOCOL_VERSION, STATUS_BUCKET, SignedDevicePlan, SigningKey, generate_signing_key};
use harmony_testkit::NatsCluster;
use support::{deployment, spec};

fn agents() -> usize {
    std::env::var("AGENTS").ok().and_then(|s| s.parse().ok()).unwrap_or(50)
}

fn signed(id: &str, generation: u64, key: &SigningKey) -> Vec<u8> {
    let p = DevicePlan {
        agent: None,
        version: PROTOCOL_VERSION,
        device_id: id.to_string(),
        fleet: "load".into(),
        generation,
        source_revision: format!("r{generation}"),
        agent_version: harmony_agent::AGENT_VERSION.into(),
        deployments: vec![deployment("web", vec![], vec![spec("app", "localhost/app:1", &["sleep", "3600"], &[("G", &generation.to_string())])])],
        key_chain: vec![],
    };
    SignedDevicePlan::sign(&p, key).expect("sign").to_vec()
}

/// Writes generation `generation` for every device, retrying a write while the cluster elects a leader.
async fn write_all(kv: &jetstream::kv::Store, ids: &[String], generation: u64, key: &SigningKey) {
    for id in ids {
        let bytes = signed(id, generation, key);
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Err(e) = kv.put(id, bytes.clone().into()).await {
            assert!(Instant::now() < deadline, "writing {id}'s plan: {e}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Waits until every device's status says `generation` applied; returns the time since `t`.
async fn converged(kv: &jetstream::kv::Store, ids: &[String], generation: u64, t: Instant, within: Duration) -> Duration {
    let mut pending: BTreeSet<&String> = ids.iter().collect();
    while !pending.is_empty() {
        let mut done = Vec::new();
        for id in &pending {
            if let Ok(Some(v)) = kv.get(id.as_str()).await
                && let Ok(s) = serde_json::from_slice::<DeviceStatus>(&v)
                && s.applied_generation == Some(generation)
                && s.state == DeviceState::Applied
            {
                done.push(*id);
            }
        }
        for id in done {
            pending.remove(id);
        }
        assert!(t.elapsed() < within, "{} agents did not apply generation {generation}: {:?}", pending.len(), pending.iter().take(5).collect::<Vec<_>>());
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    t.elapsed()
}

/// A process's resident memory (`VmRSS`, KiB).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_converge_when_the_plans_leader_node_dies() {
    let n = agents();
    let cluster = NatsCluster::start(3);
    let client = async_nats::ConnectOptions::new().connect(cluster.urls()).await.expect("connect");
    let js = jetstream::new(client.clone());
    support::create_buckets_replicated(&js, 3).await;
    let key = generate_signing_key().expect("key");
    let dir = tempfile::tempdir().expect("tmp");
    let ids: Vec<String> = (0..n).map(|i| format!("agent-{i:04}")).collect();
    let urls: Vec<String> = cluster.urls();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for id in &ids {
        let toml = format!(
            "device_id = {id:?}\nstate_dir = {:?}\nfleet_keys = [{:?}]\nruntime = \"none\"\n[nats]\nurls = {urls:?}\n",
            dir.path().join(id).display().to_string(),
            harmony_schemas::encoding::hex(key.verifying_key().as_bytes()),
        );
        let config = resolve(parse(&toml, std::path::Path::new("agent.toml")).expect("config"), Overrides::default()).expect("config");
        let mut stop = stop_rx.clone();
        tasks.spawn(async move {
            let _ = harmony_agent::run(config, async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        });
    }
    let plans = js.get_key_value(PLANS_BUCKET).await.expect("plans");
    let status = js.get_key_value(STATUS_BUCKET).await.expect("status");
    let t = Instant::now();
    write_all(&plans, &ids, 1, &key).await;
    let t1 = converged(&status, &ids, 1, t, Duration::from_secs(60)).await;
    let rss: Vec<String> = (0..cluster.len()).map(|i| rss_kib(cluster.node(i).pid().expect("running")).map_or("?".into(), |k| format!("{} MiB", k / 1024))).collect();

    // Kill the node leading the plans stream, then write the next generation.
    let leader = js.get_stream(format!("KV_{PLANS_BUCKET}")).await.expect("stream").cached_info().cluster.as_ref().and_then(|c| c.leader.clone()).expect("leader");
    let victim = cluster.index_of(&leader).expect("node");
    cluster.kill(victim);
    let t = Instant::now();
    write_all(&plans, &ids, 2, &key).await;
    let t2 = converged(&status, &ids, 2, t, Duration::from_secs(60)).await;

    // The node comes back; the next generation converges too.
    cluster.restart(victim);
    let t = Instant::now();
    write_all(&plans, &ids, 3, &key).await;
    let t3 = converged(&status, &ids, 3, t, Duration::from_secs(60)).await;
    eprintln!(
        "{n} agents on 3 nodes (server RSS after generation 1: {}), written one by one and applied: generation 1 in {t1:?}; {leader} killed, generation 2 in {t2:?}; node back, generation 3 in {t3:?}",
        rss.join(", ")
    );
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
}
