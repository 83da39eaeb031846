//! Server-rendered pages (maud: every interpolated value is HTML-escaped).

use std::collections::BTreeMap;

use harmony_executor::fleet::{Condition, StatusThresholds};
use maud::{DOCTYPE, Markup, html};

use crate::model::{Change, DeviceQuery, DeviceRow, Live, RepoView, SORT_COLUMNS, counts, device_row, device_rows};

/// Seconds as `42s`, `3m`, `5h`, `2d`; `never` for none.
pub fn age(s: Option<u64>) -> String {
    match s {
        None => "never".into(),
        Some(s) if s < 120 => format!("{s}s"),
        Some(s) if s < 7200 => format!("{}m", s / 60),
        Some(s) if s < 172_800 => format!("{}h", s / 3600),
        Some(s) => format!("{}d", s / 86_400),
    }
}

/// Unix ms as `2026-11-28 22:31:05Z`.
pub fn time(ms: u64) -> String {
    jiff::Timestamp::from_millisecond(ms as i64).map(|t| t.strftime("%Y-%m-%d %H:%M:%SZ").to_string()).unwrap_or_else(|_| ms.to_string())
}

fn opt(g: Option<u64>) -> String {
    g.map_or("-".into(), |g| g.to_string())
}

const CONDITIONS: [Condition; 5] = [Condition::Ready, Condition::Converging, Condition::Degraded, Condition::Stale, Condition::Unknown];

fn badge(c: Condition) -> Markup {
    html! { span class={ "badge " (c.as_str()) } { (c.as_str()) } }
}

fn layout(title: &str, active: &str, body: Markup) -> Markup {
    let nav = [("/", "Overview"), ("/devices", "Devices"), ("/deployments", "Deployments"), ("/releases", "Releases"), ("/live", "Live")];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · harmony" }
                link rel="stylesheet" href="/static/ui.css";
                script src="/static/ui.js" defer {}
            }
            body {
                header {
                    a.brand href="/" { "harmony" }
                    nav {
                        @for (href, name) in nav {
                            a href=(href) class=[(name == active).then_some("active")] { (name) }
                        }
                    }
                    span #sse-state title="live updates (server-sent events)" { "connecting…" }
                    span #live-count {}
                }
                main { (body) }
            }
        }
    }
}

/// A page saying what went wrong (e.g. an invalid selector), with a way back.
pub fn error_page(title: &str, message: &str) -> Markup {
    layout(title, "", html! { h1 { (title) } p.error { (message) } p { a href="/devices" { "All devices" } } })
}

fn query_string(q: &DeviceQuery, sort: Option<&str>, order: Option<&str>) -> String {
    let mut parts = Vec::new();
    let mut push = |k: &str, v: Option<&str>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            parts.push(format!("{k}={}", urlencode(v)));
        }
    };
    push("selector", q.selector.as_deref());
    push("condition", q.condition.as_deref());
    push("fleet", q.fleet.as_deref());
    push("deployment", q.deployment.as_deref());
    push("sort", sort);
    push("order", order);
    if parts.is_empty() { String::new() } else { format!("?{}", parts.join("&")) }
}

/// Percent-encodes a query value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `/`: fleets, counts by condition, rollouts in progress.
pub fn overview(repo: &RepoView, live: &Live, now_ms: u64, t: StatusThresholds) -> Markup {
    let rows = device_rows(repo, live, now_ms, t);
    let mut by_fleet: BTreeMap<&str, Vec<&DeviceRow>> = repo.fleets.keys().map(|f| (f.as_str(), Vec::new())).collect();
    for r in &rows {
        by_fleet.entry(r.fleet.as_str()).or_default().push(r);
    }
    let total = counts(&rows);
    let rollouts = rollouts(repo, live);
    let in_progress: Vec<&Rollout> = rollouts.iter().filter(|r| r.updated < r.total).collect();
    layout(
        "Overview",
        "Overview",
        html! {
            h1 { "Overview" }
            @if let Some(e) = &live.nats_error { p.error { "NATS: " (e) } }
            section.cards {
                @for c in CONDITIONS {
                    a.card href={ "/devices?condition=" (c.as_str()) } {
                        span.count data-condition=(c.as_str()) { (total.get(&c).copied().unwrap_or(0)) }
                        (badge(c))
                    }
                }
            }
            h2 { "Fleets" }
            table {
                thead { tr { th { "fleet" } th { "devices" } @for c in CONDITIONS { th { (c.as_str()) } } th { "NATS (repository)" } } }
                tbody {
                    @for (fleet, rows) in &by_fleet {
                        @let c = counts(rows.iter().copied());
                        tr {
                            td { a href={ "/devices?fleet=" (urlencode(fleet)) } { (fleet) } }
                            td.num { (rows.len()) }
                            @for k in CONDITIONS { td.num { (c.get(&k).copied().unwrap_or(0)) } }
                            td.mono { (repo.fleets.get(*fleet).map(|f| f.nats.join(", ")).unwrap_or_default()) }
                        }
                    }
                }
            }
            @if !live.rollouts.is_empty() {
                h2 { "Staged rollouts" }
                table.staged {
                    thead { tr { th { "fleet" } th { "progress" } th { "failed devices" } } }
                    tbody {
                        @for (fleet, r) in &live.rollouts {
                            tr data-rollout=(fleet) {
                                td { (fleet) }
                                td { (harmony_executor::fleet::rollout::progress_line(r)) }
                                td { @for f in &r.failed { div { (f.device) " (step " (f.wave + 1) "): " (f.reason) } } }
                            }
                        }
                    }
                }
            }
            h2 { "Rollouts in progress" }
            @if in_progress.is_empty() {
                p.muted #rollouts-none { "None: every deployment runs its desired spec on every matching device that reports." }
            } @else {
                (rollout_table(&in_progress))
            }
            @if !live.warnings.is_empty() {
                h2 { "Unreadable entries" }
                ul.warnings { @for w in live.warnings.values() { li { (w.to_string()) } } }
            }
        },
    )
}

/// Rollout progress of one deployment: devices running the desired spec.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rollout {
    /// Fleet.
    pub fleet: String,
    /// Deployment.
    pub deployment: String,
    /// Matching devices.
    pub total: usize,
    /// Devices whose status reports it running with the spec hash of their current plan.
    pub updated: usize,
    /// Devices that report it failed.
    pub failed: usize,
}

/// Per deployment: how many matching devices run its desired spec (from the plans bucket) as
/// their status reports (the staged rollout `harmony apply` drives is shown from its record).
pub fn rollouts(repo: &RepoView, live: &Live) -> Vec<Rollout> {
    repo.deployments
        .values()
        .map(|d| {
            let (mut updated, mut failed) = (0, 0);
            for dev in &d.devices {
                let desired = live
                    .plans
                    .get(dev)
                    .and_then(|e| e.plan.as_ref())
                    .and_then(|p| p.deployments.iter().find(|x| x.name == d.name))
                    .map(|x| x.spec_hash.as_str());
                let reported = live.statuses.get(dev).and_then(|s| s.deployments.iter().find(|x| x.name == d.name));
                match reported {
                    Some(r) if r.state == harmony_schemas::fleet::DeploymentState::Failed => failed += 1,
                    Some(r) if desired == Some(r.spec_hash.as_str()) => updated += 1,
                    _ => {}
                }
            }
            Rollout { fleet: d.fleet.clone(), deployment: d.name.clone(), total: d.devices.len(), updated, failed }
        })
        .collect()
}

fn rollout_table(rs: &[&Rollout]) -> Markup {
    html! {
        table.rollouts {
            thead { tr { th { "fleet" } th { "deployment" } th { "progress" } th { "updated" } th { "failed" } } }
            tbody {
                @for r in rs {
                    tr {
                        td { (r.fleet) }
                        td { a href={ "/devices?deployment=" (urlencode(&r.deployment)) "&fleet=" (urlencode(&r.fleet)) } { (r.deployment) } }
                        td { progress max=(r.total) value=(r.updated) {} }
                        td.num { (r.updated) "/" (r.total) }
                        td.num { (r.failed) }
                    }
                }
            }
        }
    }
}

/// `/devices`: the filtered, sorted list (or the error of an invalid filter).
pub fn devices(repo: &RepoView, rows: &[DeviceRow], q: &DeviceQuery, total: usize) -> Markup {
    let sort = q.sort.as_deref().unwrap_or("device");
    let desc = q.order.as_deref() == Some("desc");
    layout(
        "Devices",
        "Devices",
        html! {
            h1 { "Devices" }
            form.filters method="get" action="/devices" {
                label { "selector " input type="text" name="selector" value=[q.selector.as_deref()] placeholder="site=montreal,tier!=canary"; }
                label { "condition "
                    select name="condition" {
                        option value="" { "any" }
                        @for c in CONDITIONS { option value=(c.as_str()) selected[q.condition.as_deref() == Some(c.as_str())] { (c.as_str()) } }
                    }
                }
                label { "fleet "
                    select name="fleet" {
                        option value="" { "any" }
                        @for f in repo.fleets.keys() { option value=(f) selected[q.fleet.as_deref() == Some(f.as_str())] { (f) } }
                    }
                }
                @if let Some(d) = q.deployment.as_deref().filter(|d| !d.is_empty()) { input type="hidden" name="deployment" value=(d); }
                input type="hidden" name="sort" value=(sort);
                button type="submit" { "Filter" }
                " " a href="/devices" { "clear" }
            }
            p.muted #device-count { (rows.len()) " of " (total) " devices" }
            table #devices {
                thead { tr {
                    @for col in SORT_COLUMNS {
                        @let next = if sort == *col && !desc { Some("desc") } else { None };
                        th { a href={ "/devices" (query_string(q, Some(col), next)) } { (col) @if sort == *col { @if desc { " ▼" } @else { " ▲" } } } }
                    }
                    th { "state" } th { "drift" } th { "labels" } th { "last error" }
                } }
                tbody {
                    @for r in rows {
                        tr data-device=(r.report.device) data-condition=(r.report.condition.as_str()) data-drift=[(!r.report.drift.is_empty()).then_some(r.report.drift.len())] {
                            td { a href={ "/devices/" (urlencode(&r.report.device)) } { (r.report.device) } }
                            td { (r.fleet) }
                            td { (badge(r.report.condition)) }
                            td.num { (age(r.report.heartbeat_age_s)) }
                            td.num.desired { (opt(r.report.desired_generation)) }
                            td.num.applied { (opt(r.report.applied_generation)) }
                            td { (r.report.agent_version.as_deref().unwrap_or("-")) }
                            td { (r.report.state.as_deref().unwrap_or("-")) }
                            // The latest finding of what the agent repaired (the device's page lists them all).
                            td.drift { @if let Some(x) = r.report.drift.last() {
                                span title={ "newest of " (r.report.drift.len()) " drift findings, " (time(x.at_ms)) } { (x.to_string()) }
                                @if r.report.drift.len() > 1 { " " span.muted { "(+" (r.report.drift.len() - 1) " more)" } }
                            } }
                            td.labels { @for (k, v) in &r.labels { span.label { (k) "=" (v) } " " } }
                            td.error { (r.report.last_error.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        },
    )
}

/// `/devices/{id}`: everything about one device.
pub fn device(repo: &RepoView, live: &Live, id: &str, now_ms: u64, t: StatusThresholds) -> Option<Markup> {
    let known = repo.devices.contains_key(id) || live.plans.contains_key(id) || live.statuses.contains_key(id) || live.heartbeats.contains_key(id);
    if !known {
        return None;
    }
    let row = device_row(repo, live, id, now_ms, t);
    let r = &row.report;
    let status = live.statuses.get(id);
    let hb = live.heartbeats.get(id);
    let plan = live.plans.get(id);
    let empty = Default::default();
    let history = live.history.get(id).unwrap_or(&empty);
    Some(layout(
        id,
        "Devices",
        html! {
            h1 data-device=(id) { "Device " (id) " " (badge(r.condition)) }
            @if let Some(e) = &r.last_error { p.error #last-error { "Last error: " (e) } }
            dl.facts {
                dt { "fleet" } dd { (row.fleet) }
                dt { "desired generation" } dd #desired-generation { (opt(r.desired_generation)) }
                dt { "applied generation" } dd #applied-generation { (opt(r.applied_generation)) }
                dt { "state" } dd { (r.state.as_deref().unwrap_or("-")) }
                dt { "agent version" } dd #agent-version { (r.agent_version.as_deref().unwrap_or("-")) }
                dt { "uptime" } dd #uptime { (hb.map(|(h, _)| age(Some(h.uptime_s))).unwrap_or_else(|| "-".into())) }
                dt { "last heartbeat" } dd #heartbeat-age { (age(r.heartbeat_age_s)) @if r.heartbeat_age_s.is_some() { " ago" } }
                dt { "plan entry revision" } dd { (plan.map(|p| p.revision.to_string()).unwrap_or_else(|| "-".into())) @if plan.is_some_and(|p| p.plan.is_none()) { " (not verified)" } }
                dt { "applied source revision" } dd.mono { (status.and_then(|s| s.applied_source_revision.as_deref()).unwrap_or("-")) }
                dt { "status updated" } dd { (status.map(|s| time(s.updated_at_ms)).unwrap_or_else(|| "-".into())) }
                dt { "podman observed" } dd #observed-age { (age(r.observed_age_s)) @if r.observed_age_s.is_some() { " ago" } }
            }
            @if !r.drift.is_empty() {
                h2 { "Drift" }
                p.muted { "Found on the device and repaired by the agent (newest last)." }
                ul #drift { @for x in &r.drift { li { (time(x.at_ms)) ": " (x.to_string()) } } }
            }
            h2 { "Labels" }
            p.labels { @for (k, v) in &row.labels { span.label { (k) "=" (v) } " " } @if row.labels.is_empty() { span.muted { "none" } } }
            h2 { "Deployments" }
            @let reported = status.map(|s| s.deployments.as_slice()).unwrap_or(&[]);
            @let desired: Vec<String> = repo.devices.get(id).map(|d| d.deployments.clone()).unwrap_or_default();
            @if reported.is_empty() && desired.is_empty() { p.muted { "none" } }
            @for name in &desired {
                @if !reported.iter().any(|d| &d.name == name) { h3 { (name) " " span.muted { "(not reported yet)" } } }
            }
            @for d in reported {
                h3 { (d.name) " " span class={ "state " (state_str(&d.state)) } { (state_str(&d.state)) } }
                @if let Some(f) = &d.failure { p.error { (f.to_string()) } }
                table.containers {
                    thead { tr { th { "container" } th { "kind" } th { "state" } th { "exit code" } th { "container id" } th { "spec hash" } } }
                    tbody {
                        @for c in &d.containers {
                            tr {
                                td { (c.name) } td { (state_str(&c.kind)) } td { (state_str(&c.state)) }
                                td.num { (c.exit_code.map(|e| e.to_string()).unwrap_or_else(|| "-".into())) }
                                td.mono { (c.container_id.as_deref().map(|c| &c[..c.len().min(12)]).unwrap_or("-")) }
                                td.mono { (short_hash(&c.spec_hash)) }
                            }
                        }
                    }
                }
            }
            @if let Some(s) = status.filter(|s| !s.rejections.is_empty()) {
                h2 { "Rejected plans" }
                table { thead { tr { th { "generation" } th { "reason" } th { "at" } } }
                    tbody { @for j in &s.rejections { tr { td.num { (opt(j.generation)) } td { (j.reason.to_string()) } td { (time(j.at_ms)) } } } } }
            }
            h2 { "Recent changes" }
            table #history {
                thead { tr { th { "at" } th { "what" } th { "" } } }
                tbody {
                    @for c in history.iter().rev() { tr { td { (time(c.at_ms)) } td { (c.kind) } td { (c.summary) } } }
                }
            }
            @if history.is_empty() { p.muted { "none since the dashboard started" } }
            p { a href={ "/api/devices/" (urlencode(id)) } { "JSON" } }
        },
    ))
}

fn state_str<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

fn short_hash(h: &str) -> &str {
    let h = h.strip_prefix("sha256:").unwrap_or(h);
    &h[..h.len().min(12)]
}

/// `/deployments`: each deployment with its matching devices and rollout progress.
pub fn deployments(repo: &RepoView, live: &Live, now_ms: u64, t: StatusThresholds) -> Markup {
    let progress: BTreeMap<(String, String), Rollout> = rollouts(repo, live).into_iter().map(|r| ((r.fleet.clone(), r.deployment.clone()), r)).collect();
    layout(
        "Deployments",
        "Deployments",
        html! {
            h1 { "Deployments" }
            @if repo.deployments.is_empty() { p.muted { "The repository declares no deployment that matches a device." } }
            @for ((fleet, name), d) in &repo.deployments {
                @let p = &progress[&(fleet.clone(), name.clone())];
                section.deployment id={ "deployment-" (name) } {
                    h2 { (name) " " span.muted { "fleet " (fleet) ", tenant " (d.tenant) } }
                    p { "selector " code { (d.selector) } " · containers " (d.containers.join(", "))
                        @if !d.rollout_steps.is_empty() { " · rollout steps " (d.rollout_steps.iter().map(|s| format!("{s}%")).collect::<Vec<_>>().join(" → ")) } }
                    p { progress max=(p.total) value=(p.updated) {} " " (p.updated) "/" (p.total) " devices run the desired spec" @if p.failed > 0 { ", " span.error { (p.failed) " failed" } } }
                    table {
                        thead { tr { th { "device" } th { "condition" } th { "deployment state" } th { "failure" } } }
                        tbody {
                            @for dev in &d.devices {
                                @let row = device_row(repo, live, dev, now_ms, t);
                                @let ds = row.report.deployments.iter().find(|x| &x.name == name);
                                tr {
                                    td { a href={ "/devices/" (urlencode(dev)) } { (dev) } }
                                    td { (badge(row.report.condition)) }
                                    td { (ds.map(|x| x.state.as_str()).unwrap_or("-")) }
                                    td.error { (ds.and_then(|x| x.failure.as_deref()).unwrap_or("")) }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// `/releases`: each release of the repository with what its cluster holds.
pub fn releases(repo: &RepoView, live: &Live, clusters_configured: bool) -> Markup {
    layout(
        "Releases",
        "Releases",
        html! {
            h1 { "Releases" }
            @if repo.releases.is_empty() { p.muted { "The repository declares no release." } }
            @else if !clusters_configured { p.muted #clusters-off { "Clusters are not configured (no kubeconfig, or --skip-clusters): only what the repository declares is shown." } }
            @if !repo.releases.is_empty() {
                table #releases {
                    thead { tr { th { "release" } th { "tenant" } th { "cluster" } th { "namespace" } th { "revision" } th { "status" } th { "updated" } th { "description" } } }
                    tbody {
                        @for r in &repo.releases {
                            @let l = live.releases.get(&(r.cluster.clone(), r.namespace.clone(), r.name.clone()));
                            tr {
                                td { (r.name) } td { (r.tenant) } td { (r.cluster) } td { (r.namespace) }
                                @match l {
                                    None => { td { "-" } td.muted { @if clusters_configured { "reading…" } @else { "-" } } td {} td {} }
                                    Some(l) => {
                                        td.num { (l.revision.map(|v| v.to_string()).unwrap_or_else(|| "-".into())) }
                                        td { @if let Some(e) = &l.error { span.error { "unreadable: " (e) } } @else if l.revision.is_none() { "not installed" } @else { span class={ "state " (l.status) } { (l.status) } } }
                                        td { (l.updated) }
                                        td { (l.description) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// `/live`: the live tail (newest first; the script adds events as they arrive).
pub fn live_tail(tail: &[Change]) -> Markup {
    layout(
        "Live",
        "Live",
        html! {
            h1 { "Live tail" }
            p.muted { "Status, heartbeat, plan and release updates as they arrive (server-sent events from " code { "/events" } "); no reload needed." }
            table #tail-table {
                thead { tr { th { "at" } th { "what" } th { "device / release" } th { "" } } }
                tbody #tail {
                    @for c in tail.iter().rev() { (tail_row(c)) }
                }
            }
        },
    )
}

fn tail_row(c: &Change) -> Markup {
    html! {
        tr class=(c.kind) data-subject=(c.subject) {
            td { (time(c.at_ms)) } td { (c.kind) }
            td { @if c.kind == "release" { (c.subject) } @else { a href={ "/devices/" (urlencode(&c.subject)) } { (c.subject) } } }
            td { (c.summary) }
        }
    }
}

/// The stylesheet.
pub const CSS: &str = r#"
:root { --fg:#1d2430; --muted:#6b7480; --line:#e2e6ea; --bg:#f7f8fa; --accent:#2f5fd0; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color:var(--fg); background:var(--bg); }
header { display:flex; gap:1.2rem; align-items:center; padding:.6rem 1.2rem; background:#1d2430; color:#fff; }
header a { color:#cfd6e0; text-decoration:none; } header a.active, header a:hover { color:#fff; }
header .brand { font-weight:700; color:#fff; } header nav { display:flex; gap:1rem; flex:1; }
#sse-state, #live-count { font-size:12px; color:#9aa4b2; }
main { padding:1rem 1.4rem 3rem; max-width:1400px; }
h1 { font-size:1.4rem; margin:.4rem 0 1rem; } h2 { font-size:1.1rem; margin:1.6rem 0 .6rem; } h3 { font-size:1rem; margin:1rem 0 .4rem; }
table { border-collapse:collapse; width:100%; background:#fff; border:1px solid var(--line); }
th, td { text-align:left; padding:.3rem .6rem; border-bottom:1px solid var(--line); vertical-align:top; }
th { background:#eef1f4; font-weight:600; white-space:nowrap; } th a { color:inherit; text-decoration:none; }
td.num { text-align:right; font-variant-numeric:tabular-nums; } .mono, code { font-family:ui-monospace, monospace; font-size:12px; }
a { color:var(--accent); } .muted { color:var(--muted); } .error { color:#b3261e; }
.badge { display:inline-block; padding:0 .5rem; border-radius:9px; font-size:12px; font-weight:600; }
.badge.ready { background:#d8f3df; color:#1b6b34; } .badge.converging { background:#dde8ff; color:#2446a0; }
.badge.degraded { background:#fde0dd; color:#a1261b; } .badge.stale { background:#fff1c7; color:#7a5a00; } .badge.unknown { background:#e6e8eb; color:#4b5563; }
.cards { display:flex; gap:.8rem; flex-wrap:wrap; } .card { display:flex; flex-direction:column; align-items:center; gap:.3rem; background:#fff; border:1px solid var(--line); border-radius:8px; padding:.8rem 1.4rem; text-decoration:none; color:inherit; }
.card .count { font-size:1.8rem; font-weight:700; }
.label { display:inline-block; background:#eef1f4; border-radius:4px; padding:0 .35rem; font-size:12px; margin:1px 0; }
.filters { display:flex; gap:1rem; align-items:center; flex-wrap:wrap; margin-bottom:.6rem; } .filters input[type=text] { width:22rem; }
dl.facts { display:grid; grid-template-columns:max-content 1fr; gap:.2rem 1.2rem; background:#fff; border:1px solid var(--line); padding:.8rem 1rem; max-width:46rem; }
dl.facts dt { color:var(--muted); } dl.facts dd { margin:0; }
.state.running, .state.deployed { color:#1b6b34; } .state.failed { color:#a1261b; }
tr.new { animation: flash 2s ease-out; } @keyframes flash { from { background:#fff6c2; } to { background:#fff; } }
progress { width:10rem; }
"#;

/// The script: subscribes to `/events` and updates the page (text only, never HTML).
pub const JS: &str = r#"
(function () {
  "use strict";
  var state = document.getElementById("sse-state");
  var count = document.getElementById("live-count");
  var tail = document.getElementById("tail");
  var h1 = document.querySelector("h1[data-device]");
  var device = h1 ? h1.getAttribute("data-device") : null;
  if (!window.EventSource) { if (state) state.textContent = "no live updates in this browser"; return; }
  var n = 0;
  var es = new EventSource("/events");
  es.onopen = function () { if (state) state.textContent = "live"; };
  es.onerror = function () { if (state) state.textContent = "reconnecting…"; };
  function cell(tr, text, href) {
    var td = document.createElement("td");
    if (href) { var a = document.createElement("a"); a.href = href; a.textContent = text; td.appendChild(a); }
    else { td.textContent = text; }
    tr.appendChild(td);
  }
  function onEvent(ev) {
    var c;
    try { c = JSON.parse(ev.data); } catch (e) { return; }
    n += 1;
    if (count) count.textContent = n + (n === 1 ? " update" : " updates") + " since load";
    if (tail) {
      var tr = document.createElement("tr");
      tr.className = "new " + c.kind;
      tr.setAttribute("data-subject", c.subject);
      cell(tr, new Date(c.at_ms).toISOString().replace("T", " ").slice(0, 19) + "Z");
      cell(tr, c.kind);
      cell(tr, c.subject, c.kind === "release" ? null : "/devices/" + encodeURIComponent(c.subject));
      cell(tr, c.summary);
      tail.insertBefore(tr, tail.firstChild);
      while (tail.children.length > 500) tail.removeChild(tail.lastChild);
    }
    if (device && c.subject === device && c.kind === "heartbeat") {
      var age = document.getElementById("heartbeat-age");
      if (age) age.textContent = "just now";
    }
  }
  ["heartbeat", "status", "plan", "deleted", "release"].forEach(function (k) { es.addEventListener(k, onEvent); });
})();
"#;
