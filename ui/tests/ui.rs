//! The dashboard against a real nats-server: HTML, JSON and server-sent events reflect what
//! agents write into the buckets.

mod common;

use std::time::Duration;

use common::{get, request, start};
use harmony_schemas::fleet::DeviceState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_load_and_list_the_repository() {
    let env = start(None).await;
    for path in ["/", "/devices", "/deployments", "/releases", "/live", "/devices/pi-001", "/static/ui.css", "/static/ui.js", "/api/overview"] {
        let r = get(env.addr(), path, &[]).await;
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        assert!(r.header("server-timing").is_some_and(|v| v.starts_with("app;dur=")), "GET {path}: Server-Timing");
    }
    let devices = get(env.addr(), "/devices", &[]).await.body;
    for d in ["pi-001", "pi-002", "nuc-001", "pi-101", "pi-103"] {
        assert!(devices.contains(&format!("data-device=\"{d}\"")), "{d} listed");
    }
    // Nothing heard from: every device is unknown.
    assert!(devices.contains("8 of 8 devices"), "{devices}");
    let overview = get(env.addr(), "/", &[]).await.body;
    assert!(overview.contains("Rollouts in progress") && overview.contains("pico"));
    let deployments = get(env.addr(), "/deployments", &[]).await.body;
    assert!(deployments.contains("sensor-hub"), "{deployments}");
    let releases = get(env.addr(), "/releases", &[]).await.body;
    assert!(releases.contains("clusters-off"), "clusters are not configured in this test: {releases}");
    assert_eq!(get(env.addr(), "/devices/no-such-device", &[]).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_list_reflects_a_device_added() {
    let env = start(None).await;
    let before = get(env.addr(), "/devices", &[]).await.body;
    assert!(!before.contains("pi-900"));
    env.status("pi-900", 1, DeviceState::Applied, None).await;
    env.heartbeat("pi-900", 1, &[("site", "ottawa")]).await;
    // Status and heartbeat arrive on separate watches: wait for both (the labels come from the
    // heartbeat).
    let html = env.get_until("/devices", |b| b.contains("data-device=\"pi-900\"") && b.contains("site=ottawa")).await;
    assert!(html.contains("9 of 9 devices"), "{html}");
    // A device no repository declares takes its labels from its heartbeat.
    let json = get(env.addr(), "/api/devices?selector=site%3Dottawa", &[]).await;
    let v: serde_json::Value = serde_json::from_str(&json.body).unwrap();
    let devices = v["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1, "{v}");
    assert_eq!(devices[0]["device"], "pi-900");
    assert_eq!(devices[0]["condition"], "ready");
    assert_eq!(devices[0]["fleet"], "-");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_by_label_selector_and_condition_and_sorts() {
    let env = start(None).await;
    env.plan("pi-001", 1).await;
    env.status("pi-001", 1, DeviceState::Applied, None).await;
    env.heartbeat("pi-001", 1, &[]).await;
    env.plan("pi-101", 2).await;
    env.status("pi-101", 1, DeviceState::Degraded, Some("hub: exited with code 1")).await;
    env.heartbeat("pi-101", 1, &[]).await;
    env.get_until("/api/devices?condition=degraded", |b| b.contains("pi-101")).await;
    env.get_until("/api/devices?condition=ready", |b| b.contains("pi-001")).await;

    let ready = get(env.addr(), "/devices?condition=ready", &[]).await.body;
    assert!(ready.contains("data-device=\"pi-001\"") && !ready.contains("data-device=\"pi-002\""), "{ready}");
    assert!(ready.contains("1 of 8 devices"), "{ready}");

    let toronto = get(env.addr(), "/devices?selector=site%3Dtoronto", &[]).await.body;
    assert!(toronto.contains("data-device=\"pi-101\"") && !toronto.contains("data-device=\"pi-001\""), "{toronto}");
    assert!(toronto.contains("4 of 8 devices"), "{toronto}");
    let canary_montreal = get(env.addr(), "/devices?selector=tier%3Dcanary%2Csite%21%3Dtoronto", &[]).await.body;
    assert!(canary_montreal.contains("1 of 8 devices") && canary_montreal.contains("data-device=\"pi-001\""), "{canary_montreal}");
    let in_set = get(env.addr(), "/api/devices?selector=arch%20in%20(amd64)", &[]).await.body;
    let v: serde_json::Value = serde_json::from_str(&in_set).unwrap();
    let ids: Vec<&str> = v["devices"].as_array().unwrap().iter().map(|d| d["device"].as_str().unwrap()).collect();
    assert_eq!(ids, ["nuc-001", "nuc-101"]);

    let both = get(env.addr(), "/api/devices?selector=site%3Dtoronto&condition=degraded", &[]).await.body;
    let v: serde_json::Value = serde_json::from_str(&both).unwrap();
    assert_eq!(v["devices"].as_array().unwrap().len(), 1);
    assert_eq!(v["devices"][0]["last_error"], "hub: exited with code 1");

    // Sorted by condition: ready first; descending: unknown first.
    let sorted = get(env.addr(), "/api/devices?sort=condition", &[]).await.body;
    let v: serde_json::Value = serde_json::from_str(&sorted).unwrap();
    assert_eq!(v["devices"][0]["device"], "pi-001");
    let sorted = get(env.addr(), "/api/devices?sort=condition&order=desc", &[]).await.body;
    let v: serde_json::Value = serde_json::from_str(&sorted).unwrap();
    assert_eq!(v["devices"][0]["condition"], "unknown");

    let bad = get(env.addr(), "/devices?selector=a%20b", &[]).await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("is not a selector term"), "{}", bad.body);
    assert_eq!(get(env.addr(), "/devices?condition=sleepy", &[]).await.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_down_shows_desired_and_applied_generation() {
    let env = start(None).await;
    env.plan("pi-002", 7).await;
    env.status("pi-002", 6, DeviceState::Applying, None).await;
    env.heartbeat("pi-002", 6, &[]).await;
    // The dashboard watches three buckets independently: wait until it has seen the plan, the
    // status and the heartbeat (the badge needs the heartbeat; without it the device is unknown).
    let html = env
        .get_until("/devices/pi-002", |b| {
            b.contains("id=\"desired-generation\">7<") && b.contains("id=\"applied-generation\">6<") && !b.contains("id=\"heartbeat-age\">never<")
        })
        .await;
    assert!(html.contains("badge converging"), "{html}");
    assert!(html.contains("site=montreal"), "labels: {html}");
    assert!(html.contains("id=\"agent-version\">0.1.0<"), "{html}");
    assert!(html.contains("sensor-hub"), "deployments the repository puts on it: {html}");
    assert!(html.contains("desired generation 7"), "recent changes: {html}");
    let v: serde_json::Value = serde_json::from_str(&get(env.addr(), "/api/devices/pi-002", &[]).await.body).unwrap();
    assert_eq!(v["device"]["desired_generation"], 7);
    assert_eq!(v["device"]["applied_generation"], 6);
    assert_eq!(v["heartbeat"]["uptime_s"], 4242);
    // Applied: ready.
    env.status("pi-002", 7, DeviceState::Applied, None).await;
    env.get_until("/devices/pi-002", |b| b.contains("id=\"applied-generation\">7<") && b.contains("badge ready")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_deliver_a_heartbeat() {
    let env = start(None).await;
    let mut s = tokio::net::TcpStream::connect(env.addr()).await.unwrap();
    s.write_all(b"GET /events HTTP/1.1\r\nHost: ui\r\nAccept: text/event-stream\r\n\r\n").await.unwrap();
    // Headers first: the subscription exists once they arrive.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&buf).contains("\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk)).await.expect("headers").unwrap();
        assert!(n > 0, "closed");
        buf.extend_from_slice(&chunk[..n]);
    }
    assert!(String::from_utf8_lossy(&buf).to_ascii_lowercase().contains("content-type: text/event-stream"));
    env.heartbeat("pi-003", 3, &[]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if text.contains("event: heartbeat") && text.contains("\"subject\":\"pi-003\"") {
            assert!(text.contains("generation 3"), "{text}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no heartbeat event in 10 s: {text}");
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(500), s.read(&mut chunk)).await {
            buf.extend_from_slice(&chunk[..n]);
        }
    }
    // The live page (opened later) lists it too.
    let live = get(env.addr(), "/live", &[]).await.body;
    assert!(live.contains("data-subject=\"pi-003\""), "{live}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_and_escaped() {
    let env = start(None).await;
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let r = request(env.addr(), method, "/devices", &[]).await;
        assert_eq!(r.status, 405, "{method} /devices");
    }
    env.heartbeat("pi-666", 1, &[("note", "<script>alert(1)</script>")]).await;
    let html = env.get_until("/devices", |b| b.contains("pi-666")).await;
    assert!(!html.contains("<script>alert(1)"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    let r = get(env.addr(), "/devices", &[]).await;
    assert!(r.header("content-security-policy").is_some_and(|v| v.contains("default-src 'self'")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_required_when_set() {
    let env = start(Some("s3cret-token")).await;
    let r = get(env.addr(), "/devices", &[]).await;
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_some_and(|v| v.starts_with("Basic")));
    assert_eq!(get(env.addr(), "/events", &[]).await.status, 401);
    assert_eq!(get(env.addr(), "/devices", &[("Authorization", "Bearer wrong")]).await.status, 401);
    assert_eq!(get(env.addr(), "/devices", &[("Authorization", "Bearer s3cret-token")]).await.status, 200);
    // Basic auth: any user, the token as password ("ops:s3cret-token").
    assert_eq!(get(env.addr(), "/devices", &[("Authorization", "Basic b3BzOnMzY3JldC10b2tlbg==")]).await.status, 200);
    assert_eq!(get(env.addr(), "/healthz", &[]).await.status, 200);

    // Off loopback, no token: refused.
    let err = harmony_ui::check_listen("0.0.0.0:8080".parse().unwrap(), None).unwrap_err().to_string();
    assert!(err.contains("refusing to listen on 0.0.0.0:8080 without authentication") && err.contains("HARMONY_UI_TOKEN"), "{err}");
    assert!(harmony_ui::check_listen("0.0.0.0:8080".parse().unwrap(), Some("t")).is_ok());
    assert!(harmony_ui::check_listen("[::1]:8080".parse().unwrap(), None).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_shows_a_staged_rollout_from_its_record() {
    use harmony_schemas::fleet::{RolloutFailure, RolloutRecord, RolloutState, RolloutWave, WaveState};
    let env = start(None).await;
    let before = get(env.addr(), "/", &[]).await.body;
    assert!(!before.contains("Staged rollouts"), "no record, no section");
    let record = RolloutRecord {
        version: 1,
        fleet: "pico".into(),
        id: "sha256:00".into(),
        source_revision: "4f1c2e9".into(),
        what: vec!["deployment sensor-hub".into()],
        state: RolloutState::InProgress,
        max_failed: 1,
        health_timeout_s: 120,
        auto_revert: true,
        waves: vec![
            RolloutWave { percent: 10, devices: vec!["pi-003".into()], state: WaveState::Healthy },
            RolloutWave { percent: 50, devices: vec!["nuc-001".into()], state: WaveState::Waiting },
            RolloutWave { percent: 100, devices: vec!["pi-002".into(), "pi-001".into()], state: WaveState::Pending },
        ],
        previous: Default::default(),
        failed: vec![RolloutFailure { device: "nuc-001".into(), wave: 1, reason: "not healthy within 120 s: no heartbeat yet".into() }],
        started_ms: 1,
        updated_ms: 2,
    };
    let client = async_nats::connect(env.nats.url()).await.expect("connect");
    let store = harmony_executor::fleet::connect::ensure_rollouts_bucket(&async_nats::jetstream::new(client), &Default::default()).await.expect("bucket");
    store.put("pico", serde_json::to_vec(&record).expect("json").into()).await.expect("put");
    let page = env.get_until("/", |b| b.contains("Staged rollouts")).await;
    assert!(
        page.contains("rollout deployment sensor-hub (4f1c2e9): in-progress, 1/3 steps healthy, waiting for step 2 (50 %, 1 devices), 1 failed (max 1)"),
        "{page}"
    );
    assert!(page.contains("nuc-001 (step 2): not healthy within 120 s: no heartbeat yet"), "{page}");
}

/// The device list shows each device's drift (what its agent found changed behind its back and
/// what it did): the latest finding and how many more, not only on the device's page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_list_shows_drift() {
    use harmony_schemas::fleet::{Drift, now_ms};
    let env = start(None).await;
    let finding = |found: &str, action: &str| Drift { deployment: "sensor-hub".into(), container: "hub".into(), found: found.into(), action: action.into(), at_ms: now_ms() };
    let mut s = common::status_of("pi-001", 1, DeviceState::Applied, None);
    s.drift = vec![finding("missing", "recreated"), finding("exited (code 137)", "started <now>")];
    env.plan("pi-001", 1).await;
    env.put_status(&s).await;
    env.heartbeat("pi-001", 1, &[]).await;
    let html = env.get_until("/devices", |b| b.contains("data-drift=\"2\"")).await;
    let row = html.split("<tr").find(|r| r.contains("data-device=\"pi-001\"")).expect("pi-001's row");
    assert!(row.contains("sensor-hub/hub: exited (code 137) → started &lt;now&gt;") && row.contains("+1 more"), "the latest finding, escaped: {row}");
    let other = html.split("<tr").find(|r| r.contains("data-device=\"pi-002\"")).expect("pi-002's row");
    assert!(!other.contains("data-drift"), "no drift, nothing shown: {other}");
}
