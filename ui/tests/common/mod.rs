//! Shared by the dashboard's tests: a real nats-server, the example repository, a dashboard
//! in-process, a plain HTTP/1.1 client, and helpers that write what agents write.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use ed25519_dalek::SigningKey;
use harmony_compiler::{CompiledRepo, DiskFs, compile_repo};
use harmony_executor::fleet::{NatsOptions, StatusThresholds, desired_fleet, ensure_buckets};
use harmony_schemas::fleet::{DeviceState, DeviceStatus, Heartbeat, SignedDevicePlan, now_ms};
use harmony_testkit::NatsServer;
use harmony_ui::{RepoView, Running, UiOptions, demo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub fn example() -> CompiledRepo {
    let root = harmony_testkit::repo_root().join("tenants");
    let out = compile_repo(&DiskFs::new(&root)).expect("read tenants/");
    out.repo.expect("tenants/ compiles")
}

pub struct Env {
    pub nats: NatsServer,
    pub ui: Running,
    pub repo: CompiledRepo,
    pub key: SigningKey,
    pub stores: [kv::Store; 3],
}

pub async fn start(token: Option<&str>) -> Env {
    let nats = NatsServer::start();
    let repo = example();
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let mut view = RepoView::from_compiled(&repo);
    demo::trust(&mut view, key.verifying_key());
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let stores = ensure_buckets(&jetstream::new(client), &Default::default()).await.expect("buckets");
    let opts = UiOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        token: token.map(str::to_string),
        nats: NatsOptions { urls: vec![nats.url()], ..Default::default() },
        clusters: None,
        thresholds: StatusThresholds::default(),
        release_interval: Duration::from_secs(15),
    };
    let ui = harmony_ui::start(view, opts).await.expect("ui starts");
    Env { nats, ui, repo, key, stores }
}

impl Env {
    pub fn addr(&self) -> SocketAddr {
        self.ui.addr
    }

    /// Writes `device`'s plan at `generation`, signed with the test key.
    pub async fn plan(&self, device: &str, generation: u64) {
        let mut plan = desired_fleet(&self.repo, "pico", "test").unwrap().plans.remove(device).expect("device of pico");
        plan.generation = generation;
        let signed = SignedDevicePlan::sign(&plan, &self.key).unwrap();
        self.stores[0].put(device, serde_json::to_vec(&signed).unwrap().into()).await.unwrap();
    }

    pub async fn status(&self, device: &str, applied: u64, state: DeviceState, error: Option<&str>) {
        self.put_status(&status_of(device, applied, state, error)).await;
    }

    /// Writes `s` as its device's status entry.
    pub async fn put_status(&self, s: &DeviceStatus) {
        self.stores[1].put(&s.device_id, serde_json::to_vec(s).unwrap().into()).await.unwrap();
    }

    pub async fn heartbeat(&self, device: &str, applied: u64, labels: &[(&str, &str)]) {
        let h = Heartbeat {
            version: 1,
            device_id: device.into(),
            agent_version: "0.1.0".into(),
            uptime_s: 4242,
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            applied_generation: Some(applied),
            observed_at_ms: None,
            timestamp_ms: now_ms(),
        };
        self.stores[2].put(device, serde_json::to_vec(&h).unwrap().into()).await.unwrap();
    }

    /// GETs `path` until `pred` holds on the body (the watches are asynchronous), at most 10 s.
    pub async fn get_until(&self, path: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let r = get(self.addr(), path, &[]).await;
            if pred(&r.body) {
                return r.body;
            }
            assert!(std::time::Instant::now() < deadline, "GET {path}: condition not met in 10 s; last body:\n{}", r.body);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

pub async fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    request_body(addr, method, path, headers, "").await
}

pub async fn request_body(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).await.unwrap();
    // Read to the end of the body (Content-Length) or of the connection: some servers keep it open.
    let read = async {
        let mut raw = Vec::new();
        let mut chunk = [0u8; 16384];
        loop {
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
                let len = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse::<usize>().ok());
                if len.is_some_and(|n| raw.len() >= end + 4 + n) {
                    return raw;
                }
            }
            let n = s.read(&mut chunk).await.unwrap();
            if n == 0 {
                return raw;
            }
            raw.extend_from_slice(&chunk[..n]);
        }
    };
    let raw = tokio::time::timeout(Duration::from_secs(60), read).await.expect("response in 60 s");
    parse(&raw)
}

pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Resp {
    request(addr, "GET", path, headers).await
}

fn parse(raw: &[u8]) -> Resp {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw.get(split + 4..).unwrap_or(&[]);
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    let chunked = headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_vec() };
    Resp { status, headers, body: String::from_utf8_lossy(&body).into_owned() }
}

fn dechunk(mut s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = s.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&s[..eol]).trim(), 16).unwrap_or(0);
        let rest = &s[eol + 2..];
        if n == 0 || rest.len() < n {
            break;
        }
        out.extend_from_slice(&rest[..n]);
        s = rest[n..].strip_prefix(b"\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// A device status as an agent writes it.
pub fn status_of(device: &str, applied: u64, state: DeviceState, error: Option<&str>) -> DeviceStatus {
    DeviceStatus {
        upgrade: None,
        version: 1,
        device_id: device.into(),
        agent_version: "0.1.0".into(),
        applied_generation: Some(applied),
        applied_source_revision: Some("test".into()),
        state,
        deployments: vec![],
        last_error: error.map(str::to_string),
        rejections: vec![],
        trusted_keys: vec![],
        generation_floor: None,
        observed_at_ms: None,
        drift: vec![],
        updated_at_ms: now_ms(),
    }
}
