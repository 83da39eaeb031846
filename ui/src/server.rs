//! The HTTP server: GET routes only, optional authentication, server-sent events.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use futures::Stream;
use harmony_executor::fleet::StatusThresholds;
use harmony_schemas::fleet::now_ms;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::broadcast;

use crate::UiError;
use crate::model::{Change, DeviceQuery, Live, LiveRelease, RepoView, counts, device_row, device_rows, filter_rows};
use crate::pages;

/// Everything the handlers share: the repository, the live model, the event channel.
pub struct Shared {
    /// What the repository declares.
    pub repo: RepoView,
    /// What the buckets and clusters say now.
    pub live: RwLock<Live>,
    /// Changes, as they are applied (the live tail).
    pub events: broadcast::Sender<Change>,
    /// Condition thresholds (the same as `harmony status`'s).
    pub thresholds: StatusThresholds,
    /// Whether releases are read from clusters.
    pub clusters_configured: bool,
    /// SHA-256 of the token, when authentication is required.
    token_hash: Option<[u8; 32]>,
}

impl Shared {
    /// A model of `repo` with nothing observed yet.
    pub fn new(repo: RepoView, thresholds: StatusThresholds, clusters_configured: bool, token: Option<&str>) -> Arc<Shared> {
        let (events, _) = broadcast::channel(1024);
        Arc::new(Shared {
            repo,
            live: RwLock::new(Live::default()),
            events,
            thresholds,
            clusters_configured,
            token_hash: token.map(|t| Sha256::digest(t.as_bytes()).into()),
        })
    }

    /// Reads the live model (a poisoned lock is still read: the model has no invariants a
    /// panicking writer could break halfway).
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, Live> {
        self.live.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Live> {
        self.live.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies one KV entry (`None`: deleted) and announces the change.
    pub fn apply_entry(&self, bucket: &str, key: &str, revision: u64, created_ms: u64, value: Option<&[u8]>) {
        let change = self.write().apply(&self.repo, bucket, key, revision, created_ms, value);
        if let Some(c) = change {
            let _ = self.events.send(c);
        }
    }

    /// Records a release read and announces it when it moved.
    pub fn set_release(&self, key: (String, String, String), r: LiveRelease) {
        let change = self.write().set_release(key, r);
        if let Some(c) = change {
            let _ = self.events.send(c);
        }
    }

    /// Records (or clears) the NATS connection problem shown on the overview.
    pub fn set_nats_error(&self, e: Option<String>) {
        self.write().nats_error = e;
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.token_hash else { return true };
        let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else { return false };
        let presented = if let Some(t) = value.strip_prefix("Bearer ") {
            t.trim().to_string()
        } else if let Some(b) = value.strip_prefix("Basic ") {
            // Any user name; the token is the password.
            let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(b.trim()) else { return false };
            let Ok(text) = String::from_utf8(decoded) else { return false };
            match text.split_once(':') {
                Some((_, p)) => p.to_string(),
                None => return false,
            }
        } else {
            return false;
        };
        let got: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        // Constant time over the digests.
        got.iter().zip(expected.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

/// Refuses a non-loopback listen address without a token.
pub fn check_listen(addr: SocketAddr, token: Option<&str>) -> Result<(), UiError> {
    if !addr.ip().is_loopback() && token.is_none_or(|t| t.trim().is_empty()) {
        return Err(UiError::Unauthenticated(addr));
    }
    Ok(())
}

/// The routes. Every one is GET (HEAD too): the dashboard has no write path.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(overview))
        .route("/devices", get(devices))
        .route("/devices/{id}", get(device))
        .route("/deployments", get(deployments))
        .route("/releases", get(releases))
        .route("/live", get(live))
        .route("/events", get(events))
        .route("/api/overview", get(api_overview))
        .route("/api/devices", get(api_devices))
        .route("/api/devices/{id}", get(api_device))
        .route("/api/releases", get(api_releases))
        .route("/static/ui.css", get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], pages::CSS) }))
        .route("/static/ui.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], pages::JS) }))
        .layer(axum::middleware::from_fn_with_state(shared.clone(), guard))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(shared)
}

/// Authentication, security headers and `Server-Timing` (time spent producing the response).
async fn guard(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    if !s.authorized(req.headers()) {
        let mut r = (StatusCode::UNAUTHORIZED, "authentication required: a bearer token, or basic auth with the token as password\n").into_response();
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"harmony ui\", charset=\"UTF-8\""));
        return r;
    }
    let started = Instant::now();
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("app;dur={:.3}", started.elapsed().as_secs_f64() * 1000.0)) {
        h.insert("server-timing", v);
    }
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

type S = State<Arc<Shared>>;

async fn overview(State(s): S) -> Html<String> {
    let live = s.read();
    Html(pages::overview(&s.repo, &live, now_ms(), s.thresholds).into_string())
}

/// Renders the device list for `q` (the work `/devices` does; the benchmark times it).
pub fn render_devices(s: &Shared, q: &DeviceQuery, now_ms: u64) -> Result<String, String> {
    let rows = device_rows(&s.repo, &s.read(), now_ms, s.thresholds);
    let total = rows.len();
    let rows = filter_rows(&s.repo, rows, q)?;
    Ok(pages::devices(&s.repo, &rows, q, total).into_string())
}

async fn devices(State(s): S, Query(q): Query<DeviceQuery>) -> Response {
    match render_devices(&s, &q, now_ms()) {
        Ok(html) => Html(html).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, Html(pages::error_page("Devices", &e).into_string())).into_response(),
    }
}

async fn device(State(s): S, Path(id): Path<String>) -> Response {
    let live = s.read();
    match pages::device(&s.repo, &live, &id, now_ms(), s.thresholds) {
        Some(m) => Html(m.into_string()).into_response(),
        None => {
            (StatusCode::NOT_FOUND, Html(pages::error_page("Device not found", &format!("no device `{id}` in the repository or the buckets")).into_string()))
                .into_response()
        }
    }
}

async fn deployments(State(s): S) -> Html<String> {
    let live = s.read();
    Html(pages::deployments(&s.repo, &live, now_ms(), s.thresholds).into_string())
}

async fn releases(State(s): S) -> Html<String> {
    let live = s.read();
    Html(pages::releases(&s.repo, &live, s.clusters_configured).into_string())
}

async fn live(State(s): S) -> Html<String> {
    let tail: Vec<Change> = s.read().tail.iter().cloned().collect();
    Html(pages::live_tail(&tail).into_string())
}

async fn events(State(s): S) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = s.events.subscribe();
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(c) => {
                    let data = serde_json::to_string(&c).unwrap_or_default();
                    return Some((Ok(Event::default().event(c.kind.as_str()).data(data)), rx));
                }
                // A slow reader misses events rather than holding the others back.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[derive(Serialize)]
struct OverviewJson {
    version: u32,
    counts: std::collections::BTreeMap<&'static str, usize>,
    fleets: std::collections::BTreeMap<String, std::collections::BTreeMap<&'static str, usize>>,
    rollouts: Vec<pages::Rollout>,
}

async fn api_overview(State(s): S) -> Response {
    let live = s.read();
    let rows = device_rows(&s.repo, &live, now_ms(), s.thresholds);
    let named = |m: std::collections::BTreeMap<harmony_executor::fleet::Condition, usize>| m.into_iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut fleets = std::collections::BTreeMap::new();
    for f in s.repo.fleets.keys() {
        fleets.insert(f.clone(), named(counts(rows.iter().filter(|r| &r.fleet == f))));
    }
    let doc = OverviewJson { version: 1, counts: named(counts(&rows)), fleets, rollouts: pages::rollouts(&s.repo, &live) };
    axum::Json(doc).into_response()
}

async fn api_devices(State(s): S, Query(q): Query<DeviceQuery>) -> Response {
    let rows = device_rows(&s.repo, &s.read(), now_ms(), s.thresholds);
    match filter_rows(&s.repo, rows, &q) {
        Ok(rows) => axum::Json(serde_json::json!({ "version": 1, "devices": rows })).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, axum::Json(serde_json::json!({ "version": 1, "error": e }))).into_response(),
    }
}

async fn api_device(State(s): S, Path(id): Path<String>) -> Response {
    let live = s.read();
    let known = s.repo.devices.contains_key(&id) || live.plans.contains_key(&id) || live.statuses.contains_key(&id) || live.heartbeats.contains_key(&id);
    if !known {
        return (StatusCode::NOT_FOUND, axum::Json(serde_json::json!({ "version": 1, "error": format!("no device `{id}`") }))).into_response();
    }
    let row = device_row(&s.repo, &live, &id, now_ms(), s.thresholds);
    axum::Json(serde_json::json!({
        "version": 1,
        "device": row,
        "status": live.statuses.get(&id),
        "heartbeat": live.heartbeats.get(&id).map(|(h, _)| h),
        "history": live.history.get(&id),
    }))
    .into_response()
}

async fn api_releases(State(s): S) -> Response {
    let live = s.read();
    let rows: Vec<serde_json::Value> = s
        .repo
        .releases
        .iter()
        .map(|r| {
            let l = live.releases.get(&(r.cluster.clone(), r.namespace.clone(), r.name.clone()));
            serde_json::json!({ "release": r, "observed": l })
        })
        .collect();
    axum::Json(serde_json::json!({ "version": 1, "clusters_configured": s.clusters_configured, "releases": rows })).into_response()
}
