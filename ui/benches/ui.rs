//! `cargo bench -p harmony-ui --bench ui [-- --devices N --iterations N]`
//!
//! The device list of `harmony ui` with 1,000 devices (default): a model with every device's
//! plan, status and heartbeat, served by the real router on loopback; each query is requested
//! `--iterations` times and the median of the server's own `Server-Timing` (request in to
//! response out, rendering included) is printed, with the median wall time of the whole HTTP
//! round trip for reference. Target: under 300 ms server time for list and filter.
//! Results are reported in `docs/performance.md`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use harmony_executor::fleet::StatusThresholds;
use harmony_executor::fleet::observe::ObservedEntry;
use harmony_schemas::fleet::{
    ContainerKind, ContainerState, ContainerStatus, DeploymentState, DeploymentStatus, DevicePlan, DeviceState, DeviceStatus, Heartbeat, now_ms,
};
use harmony_ui::model::{RepoDevice, RepoFleet, RepoView};
use harmony_ui::{Shared, router};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn model(n: usize) -> (RepoView, harmony_ui::model::Live) {
    let mut repo = RepoView::default();
    repo.fleets.insert("pico".into(), RepoFleet { name: "pico".into(), nats: vec!["nats://127.0.0.1:4222".into()], trusted: vec![], chain: Default::default() });
    let mut live = harmony_ui::model::Live::default();
    let now = now_ms();
    for i in 0..n {
        let id = format!("dev-{i:05}");
        let labels: BTreeMap<String, String> = [
            ("site".to_string(), format!("site-{}", i % 20)),
            ("arch".to_string(), if i % 3 == 0 { "amd64".into() } else { "arm64".into() }),
            ("tier".to_string(), if i % 50 == 0 { "canary".into() } else { "main".into() }),
        ]
        .into_iter()
        .collect();
        repo.devices
            .insert(id.clone(), RepoDevice { fleet: "pico".into(), labels: labels.clone(), deployments: vec!["sensor-hub".into(), "telemetry".into()] });
        let generation = 3 + (i % 4) as u64;
        let plan = DevicePlan {
            version: 1,
            device_id: id.clone(),
            fleet: "pico".into(),
            generation,
            source_revision: "bench".into(),
            agent_version: "0.1.0".into(),
            agent: None,
            deployments: vec![],
            key_chain: vec![],
        };
        live.plans.insert(
            id.clone(),
            ObservedEntry { revision: i as u64 + 1, signed: None, plan: Some(plan), fleet: Some("pico".into()), digest: format!("sha256:{i}") },
        );
        let applied = if i % 10 == 0 { generation - 1 } else { generation };
        let state = match i % 25 {
            0 => DeviceState::Degraded,
            _ if applied < generation => DeviceState::Applying,
            _ => DeviceState::Applied,
        };
        let deployments = ["sensor-hub", "telemetry"]
            .iter()
            .map(|d| DeploymentStatus {
                name: d.to_string(),
                spec_hash: "sha256:00".into(),
                state: DeploymentState::Running,
                failure: None,
                containers: vec![ContainerStatus {
                    name: "main".into(),
                    kind: ContainerKind::Service,
                    state: ContainerState::Running,
                    container_id: Some("0123456789ab".into()),
                    spec_hash: "sha256:00".into(),
                    exit_code: None,
                    observed: None,
                }],
            })
            .collect();
        live.statuses.insert(
            id.clone(),
            DeviceStatus {
                upgrade: None,
                version: 1,
                device_id: id.clone(),
                agent_version: "0.1.0".into(),
                applied_generation: Some(applied),
                applied_source_revision: Some("bench".into()),
                state,
                deployments,
                last_error: (state == DeviceState::Degraded).then(|| "container `main`: exited with code 1".into()),
                rejections: vec![],
                trusted_keys: vec![],
                generation_floor: None,
                observed_at_ms: None,
                drift: vec![],
                updated_at_ms: now,
            },
        );
        // Some heartbeats are old: stale and unknown devices too.
        let age_ms = match i % 40 {
            0 => 700_000,
            1 => 120_000,
            _ => (i % 30) as u64 * 1000,
        };
        let hb = Heartbeat {
            version: 1,
            device_id: id.clone(),
            agent_version: "0.1.0".into(),
            uptime_s: 86_400,
            labels,
            applied_generation: Some(applied),
            observed_at_ms: None,
            timestamp_ms: now - age_ms,
        };
        live.heartbeats.insert(id, (hb, now - age_ms));
    }
    (repo, live)
}

async fn get(addr: SocketAddr, path: &str) -> (Duration, Duration, usize) {
    let started = Instant::now();
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n").as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read");
    let wall = started.elapsed();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "GET {path}: {}", &text[..text.len().min(300)]);
    let ms: f64 = text
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("server-timing: app;dur=").map(str::to_string))
        .and_then(|v| v.trim().parse().ok())
        .expect("Server-Timing header");
    let rows = text.matches("<tr data-device=").count();
    (Duration::from_secs_f64(ms / 1000.0), wall, rows)
}

fn main() {
    let n = arg("--devices", 1000);
    let iterations = arg("--iterations", 30).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let (repo, live) = model(n);
        let shared = Shared::new(repo, StatusThresholds::default(), false, None);
        *shared.live.write().expect("model lock") = live;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, router(shared)).await.expect("serve") });
        println!("harmony ui device list, {n} devices, median of {iterations} requests (server time = Server-Timing)");
        println!("{:<58} {:>6} {:>12} {:>12}", "query", "rows", "server", "round trip");
        let queries = [
            "/devices",
            "/devices?selector=site%3Dsite-7",
            "/devices?condition=degraded",
            "/devices?selector=arch%3Darm64%2Ctier%21%3Dcanary&condition=ready",
            "/devices?selector=site%20in%20(site-1%2Csite-2)&sort=heartbeat&order=desc",
            "/api/devices?selector=site%3Dsite-7",
            "/",
        ];
        let mut worst = Duration::ZERO;
        for q in queries {
            let _ = get(addr, q).await; // warm-up
            let mut server = Vec::new();
            let mut wall = Vec::new();
            let mut rows = 0;
            for _ in 0..iterations {
                let (s, w, r) = get(addr, q).await;
                server.push(s);
                wall.push(w);
                rows = r;
            }
            let (s, w) = (median(server), median(wall));
            if q.starts_with("/devices") {
                worst = worst.max(s);
            }
            println!("{q:<58} {rows:>6} {:>9.2} ms {:>9.2} ms", s.as_secs_f64() * 1000.0, w.as_secs_f64() * 1000.0);
        }
        println!(
            "slowest device list: {:.2} ms (target < 300 ms): {}",
            worst.as_secs_f64() * 1000.0,
            if worst < Duration::from_millis(300) { "ok" } else { "OVER" }
        );
    });
}
