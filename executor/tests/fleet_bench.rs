//! Benchmark (ignored by default): apply 10,000 signed device plans to a local nats-server, vs raw
//! async-nats KV puts of the same bytes at the same concurrency, in the same run: rounds alternate
//! the two sides, each on an empty bucket, and medians are compared. The `_r3_cluster` variant
//! does the same on a 3-node JetStream cluster with R3 buckets on both sides.
//!
//! `cargo test -p harmony-executor --test fleet_bench -- --ignored --nocapture`
//! (figures in docs/performance.md).

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use harmony_executor::fleet::connect::FleetStorage;
use harmony_executor::fleet::{ApplyRequest, DesiredFleet, LockOptions, NatsOptions, connect, ensure_buckets, run_apply};
use harmony_schemas::fleet::{ContainerSpec, DeploymentPlan, DevicePlan, PROTOCOL_VERSION, RestartPolicy, Service, SignedDevicePlan, generate_signing_key};
use harmony_testkit::NatsServer;

const DEVICES: usize = 10_000;
const PARALLELISM: usize = 64;
const ROUNDS: usize = 5;

fn median(ts: &[Duration]) -> Duration {
    let mut v = ts.to_vec();
    v.sort();
    v[v.len() / 2]
}

/// CPU time (user + system) of a process so far, in ms (`/proc/<pid>/stat`, 10 ms ticks).
fn cpu_ms(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th fields.
    let f: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    (f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0)) * 10
}

fn desired() -> DesiredFleet {
    let svc = |name: &str, image: &str| {
        Service::new(
            ContainerSpec {
                name: name.into(),
                image: image.into(),
                command: vec![],
                args: vec!["--listen=:8080".into(), "--log=info".into()],
                env: [("LOG_LEVEL".to_string(), "info".to_string()), ("SITE".to_string(), "montreal".to_string())].into_iter().collect(),
                ports: vec![],
                volumes: vec![],
            },
            RestartPolicy::Always,
        )
    };
    let dep = DeploymentPlan::new(
        "sensor-hub",
        "acme",
        vec![],
        vec![svc("hub", "registry.example/acme/hub:2.0"), svc("exporter", "registry.example/acme/exporter:1.4")],
    );
    let plans = (0..DEVICES)
        .map(|i| {
            let id = format!("pi-{i:05}");
            let p = DevicePlan {
                agent: None,
                version: PROTOCOL_VERSION,
                device_id: id.clone(),
                fleet: "pico".into(),
                generation: 0,
                source_revision: "4f1c2e9a0b1c".into(),
                agent_version: "0.1.0".into(),
                deployments: vec![dep.clone()],
                key_chain: vec![],
            };
            (id, p)
        })
        .collect();
    DesiredFleet { fleet: "pico".into(), plans }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn apply_10k_signed_plans_vs_raw_puts() {
    let server = NatsServer::start();
    bench(&[&server], &FleetStorage::default()).await;
}

/// The same on a 3-node JetStream cluster, both sides writing R3 buckets (issue 22).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn apply_10k_signed_plans_vs_raw_puts_r3_cluster() {
    let cluster = harmony_testkit::NatsCluster::start(3);
    let nodes: Vec<&NatsServer> = (0..cluster.len()).map(|i| cluster.node(i)).collect();
    bench(&nodes, &FleetStorage { replicas: 3, ..Default::default() }).await;
}

/// CPU ms of every server so far.
fn servers_cpu_ms(pids: &[String]) -> u64 {
    pids.iter().map(|p| cpu_ms(p)).sum()
}

async fn bench(servers: &[&NatsServer], storage: &FleetStorage) {
    let key = generate_signing_key().expect("key");
    let urls: Vec<String> = servers.iter().map(|s| s.url()).collect();
    let c = connect(&NatsOptions { urls, ..Default::default() }).await.expect("connect");
    let js = jetstream::new(c.clone());
    let d = desired();
    // The same bytes apply writes (generation 1), signed up front for the raw run.
    let t = Instant::now();
    let values: Vec<(String, bytes::Bytes)> = d
        .plans
        .iter()
        .map(|(k, p)| {
            let mut p = p.clone();
            p.generation = 1;
            (k.clone(), SignedDevicePlan::sign(&p, &key).expect("sign").to_vec().into())
        })
        .collect();
    let sign_t = t.elapsed();
    // Where signing time goes: canonical JSON alone, Ed25519 alone.
    let t = Instant::now();
    let canon: Vec<Vec<u8>> = d.plans.values().map(|p| harmony_schemas::fleet::canonical_json(p).expect("canonical")).collect();
    let canon_t = t.elapsed();
    let t = Instant::now();
    for c in &canon {
        use ed25519_dalek::Signer;
        std::hint::black_box(key.sign(c));
    }
    let ed_t = t.elapsed();
    let sign_all = |signer: &harmony_schemas::fleet::PayloadSigner| {
        let t = Instant::now();
        for p in d.plans.values() {
            std::hint::black_box(signer.sign_to_vec(p).expect("sign"));
        }
        t.elapsed()
    };
    let dalek_signer_t = sign_all(&harmony_schemas::fleet::PayloadSigner::new(&key));
    let signer_t = sign_all(&harmony_executor::fleet::sign::bulk_signer(&key));
    let avg = values.iter().map(|(_, v)| v.len()).sum::<usize>() / values.len();

    let req = |d: &DesiredFleet| ApplyRequest {
        holder: harmony_executor::fleet::LockHolder::this_command("test"),
        rollouts: Default::default(),
        rollout_progress: None,
        rollout_poll: None,
        storage: storage.clone(),
        desired: d.clone(),
        signing_key: key.clone(),
        trusted: vec![],
        parallelism: PARALLELISM,
        lock: LockOptions::default(),
        state_dir: Some(std::env::temp_dir().join(format!("harmony-bench-{}", std::process::id()))),
        confirm: None,
        progress: None,
        request_timeout: None,
    };
    // Rounds alternate raw and apply, each on an empty bucket, so that both sides see the same
    // machine (this 2-core VM's speed drifts by ±20 % between seconds); medians are compared.
    let spids: Vec<String> = servers.iter().map(|s| s.pid().expect("server pid").to_string()).collect();
    let (mut raw_ts, mut apply_ts, mut raw_cpu, mut apply_cpu) = (vec![], vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        let bucket = format!("bench-raw-{round}");
        let raw = js
            .create_key_value(kv::Config { bucket: bucket.clone(), history: 5, num_replicas: usize::from(storage.replicas), ..Default::default() })
            .await
            .expect("bucket");
        let cpu0 = (servers_cpu_ms(&spids), cpu_ms("self"));
        let t = Instant::now();
        futures::stream::iter(values.iter().cloned())
            .map(|(k, v)| {
                let raw = raw.clone();
                async move { raw.put(k, v).await.expect("put") }
            })
            .buffer_unordered(PARALLELISM)
            .collect::<Vec<_>>()
            .await;
        raw_ts.push(t.elapsed());
        raw_cpu.push((servers_cpu_ms(&spids) - cpu0.0, cpu_ms("self") - cpu0.1));
        js.delete_key_value(&bucket).await.expect("delete raw bucket");

        // A first apply into an empty plans bucket, made beforehand like the raw side's (both
        // sides time writing 10,000 entries, not creating a stream). The request owns its copy
        // of the desired plans (as `harmony apply` owns the compiled fleet); making it is not
        // apply's work either.
        let _ = js.delete_key_value(harmony_schemas::fleet::PLANS_BUCKET).await;
        ensure_buckets(&js, storage).await.expect("buckets");
        let first = req(&d);
        let cpu0 = (servers_cpu_ms(&spids), cpu_ms("self"));
        let t = Instant::now();
        let run = run_apply(&c, first).await.expect("apply");
        apply_ts.push(t.elapsed());
        apply_cpu.push((servers_cpu_ms(&spids) - cpu0.0, cpu_ms("self") - cpu0.1));
        assert_eq!(run.report.written(), DEVICES);
    }
    // Both sides wrote the same bytes.
    let plans = js.get_key_value(harmony_schemas::fleet::PLANS_BUCKET).await.expect("plans bucket");
    for (k, v) in values.iter().step_by(997) {
        assert_eq!(plans.get(k).await.expect("get").as_ref(), Some(v), "apply wrote other bytes than the raw run for {k}");
    }
    let second = req(&d);
    let t = Instant::now();
    let again = run_apply(&c, second).await.expect("apply");
    let noop_t = t.elapsed();
    assert_eq!(again.report.written(), 0);

    let rate = |d: Duration| DEVICES as f64 / d.as_secs_f64();
    let (raw_t, apply_t) = (median(&raw_ts), median(&apply_ts));
    let ms = |ts: &[Duration]| ts.iter().map(|t| format!("{:.0}", t.as_secs_f64() * 1000.0)).collect::<Vec<_>>().join(", ");
    let cpu = |c: &[(u64, u64)]| c.iter().map(|(s, c)| format!("{s}/{c}")).collect::<Vec<_>>().join(", ");
    println!("plans: {DEVICES}, average signed value {avg} bytes, parallelism {PARALLELISM}, {ROUNDS} rounds, {} server(s), buckets {storage}", servers.len());
    println!("signing {DEVICES} plans on one core: {sign_t:?} (canonical JSON alone {canon_t:?}, Ed25519 alone {ed_t:?})");
    println!(
        "PayloadSigner::sign_to_vec (one canonical encoding, signed and written) on one core: {signer_t:?} with the bulk signer apply uses (AWS-LC), {dalek_signer_t:?} with ed25519-dalek"
    );
    println!("raw async-nats KV puts, ms per round: {}; CPU ms server/client: {}", ms(&raw_ts), cpu(&raw_cpu));
    println!("harmony apply (lock, observe, plan, sign, CAS create, journal), ms per round: {}; CPU ms server/client: {}", ms(&apply_ts), cpu(&apply_cpu));
    println!(
        "per round apply / raw rate: {}",
        raw_ts.iter().zip(&apply_ts).map(|(r, a)| format!("{:.0} %", 100.0 * r.as_secs_f64() / a.as_secs_f64())).collect::<Vec<_>>().join(", ")
    );
    println!(
        "medians: raw {raw_t:?} ({:.0}/s), apply {apply_t:?} ({:.0}/s) = {:.0} % of raw",
        rate(raw_t),
        rate(apply_t),
        100.0 * raw_t.as_secs_f64() / apply_t.as_secs_f64()
    );
    println!("second apply (no-op, observe 10k entries): {noop_t:?}");
    let _ = std::fs::remove_dir_all(std::env::temp_dir().join(format!("harmony-bench-{}", std::process::id())));
}
