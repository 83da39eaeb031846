//! The in-memory model the pages render from: what the repository declares ([`RepoView`],
//! fixed at start) and what the buckets and clusters say ([`Live`], updated by the watches).
//!
//! Conditions are never decided here: every row goes through
//! [`harmony_executor::fleet::device_report`], the function `harmony status` uses.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use ed25519_dalek::VerifyingKey;
use harmony_compiler::model::{MatchExpression, Selector};
use harmony_compiler::{CompiledRepo, UnitContent};
use harmony_executor::fleet::observe::{ObservedEntry, RawEntry, Warning, decode_plans};
use harmony_executor::fleet::{ChainKeys, Condition, DeviceReport, StatusThresholds, device_report, flag_foreign_keys};
use harmony_schemas::fleet::{DeviceStatus, Heartbeat, PLANS_BUCKET};
use serde::Serialize;

/// How many status changes are kept per device.
pub const HISTORY_PER_DEVICE: usize = 20;
/// How many events the live tail keeps for a page opened later.
pub const TAIL_LEN: usize = 200;

/// A device the repository declares.
#[derive(Debug, Clone, Serialize)]
pub struct RepoDevice {
    /// Fleet.
    pub fleet: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Deployments whose selector matches it.
    pub deployments: Vec<String>,
}

/// A deployment the repository declares (as it lands on devices).
#[derive(Debug, Clone, Serialize)]
pub struct RepoDeployment {
    /// Name.
    pub name: String,
    /// Tenant.
    pub tenant: String,
    /// Fleet.
    pub fleet: String,
    /// The selector, as written.
    pub selector: String,
    /// Containers (init first), by name.
    pub containers: Vec<String>,
    /// Rollout steps (percent), when the deployment declares a rollout.
    pub rollout_steps: Vec<u8>,
    /// Matching devices.
    pub devices: Vec<String>,
}

/// A release the repository declares.
#[derive(Debug, Clone, Serialize)]
pub struct RepoRelease {
    /// Release name.
    pub name: String,
    /// Tenant.
    pub tenant: String,
    /// Cluster.
    pub cluster: String,
    /// kubeconfig context.
    pub context: String,
    /// Namespace.
    pub namespace: String,
}

/// A fleet the repository declares.
#[derive(Debug, Clone)]
pub struct RepoFleet {
    /// Name.
    pub name: String,
    /// NATS URLs.
    pub nats: Vec<String>,
    /// Keys its plans verify with.
    pub trusted: Vec<VerifyingKey>,
    /// Its key chain's keys by id (devices trusting others are flagged); empty: not known.
    pub chain: ChainKeys,
}

/// What the repository declares, as the dashboard needs it.
#[derive(Debug, Clone, Default)]
pub struct RepoView {
    /// Fleets by name.
    pub fleets: BTreeMap<String, RepoFleet>,
    /// Devices by id.
    pub devices: BTreeMap<String, RepoDevice>,
    /// Deployments by (fleet, name).
    pub deployments: BTreeMap<(String, String), RepoDeployment>,
    /// Releases.
    pub releases: Vec<RepoRelease>,
}

fn selector_text(s: &Selector) -> String {
    let mut parts: Vec<String> = s.match_labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    for e in &s.match_expressions {
        parts.push(match e {
            MatchExpression::In { key, values } => format!("{key} in ({})", values.join(",")),
            MatchExpression::NotIn { key, values } => format!("{key} notin ({})", values.join(",")),
            MatchExpression::Exists { key } => key.clone(),
            MatchExpression::DoesNotExist { key } => format!("!{key}"),
        });
    }
    parts.join(",")
}

impl RepoView {
    /// From a compiled repository. Fleet public keys that do not parse are left out (the
    /// compiler has checked them).
    pub fn from_compiled(repo: &CompiledRepo) -> RepoView {
        let mut v = RepoView::default();
        for (name, info) in &repo.fleets {
            let trusted = harmony_schemas::fleet::parse_public_key(&info.signing_key).into_iter().collect();
            v.fleets.insert(name.as_str().to_string(), RepoFleet { name: name.as_str().to_string(), nats: info.nats.clone(), trusted, chain: ChainKeys::default() });
        }
        for unit in repo.units.values() {
            match &unit.content {
                UnitContent::DevicePlan(p) => {
                    let fleet = p.fleet.as_str().to_string();
                    let device = p.device.as_str().to_string();
                    for w in &p.workloads {
                        let key = (fleet.clone(), w.deployment.as_str().to_string());
                        let d = v.deployments.entry(key).or_insert_with(|| RepoDeployment {
                            name: w.deployment.as_str().to_string(),
                            tenant: w.tenant.as_str().to_string(),
                            fleet: fleet.clone(),
                            selector: selector_text(&w.selector),
                            containers: w
                                .init_containers
                                .iter()
                                .map(|i| i.container.name.as_str().to_string())
                                .chain(w.containers.iter().map(|c| c.container.name.as_str().to_string()))
                                .collect(),
                            rollout_steps: w.rollout.as_ref().map(|r| r.steps.clone()).unwrap_or_default(),
                            devices: Vec::new(),
                        });
                        d.devices.push(device.clone());
                    }
                    v.devices.insert(
                        device,
                        RepoDevice { fleet, labels: p.labels.clone(), deployments: p.workloads.iter().map(|w| w.deployment.as_str().to_string()).collect() },
                    );
                }
                UnitContent::Release(r) => v.releases.push(RepoRelease {
                    name: r.name.as_str().to_string(),
                    tenant: r.tenant.as_str().to_string(),
                    cluster: r.cluster.as_str().to_string(),
                    context: r.context.clone(),
                    namespace: r.namespace.as_str().to_string(),
                }),
                _ => {}
            }
        }
        v
    }

    /// The keys a fleet's plans verify with.
    pub fn trusted(&self, fleet: &str) -> &[VerifyingKey] {
        self.fleets.get(fleet).map(|f| f.trusted.as_slice()).unwrap_or(&[])
    }
}

/// One change of a device, for its drill-down and the live tail.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Change {
    /// When it was observed (the KV entry's time), Unix ms.
    pub at_ms: u64,
    /// `status`, `heartbeat`, `plan`, `deleted`, `release`.
    pub kind: String,
    /// Device id (or `cluster/namespace/release`).
    pub subject: String,
    /// One line.
    pub summary: String,
}

/// A release as last read from its cluster.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LiveRelease {
    /// Deployed (or latest) revision; `None`: not installed.
    pub revision: Option<u32>,
    /// Helm status of the latest record (`deployed`, `failed`, `pending-upgrade`, …).
    pub status: String,
    /// `info.last_deployed`.
    pub updated: String,
    /// `info.description`.
    pub description: String,
    /// Why it could not be read.
    pub error: Option<String>,
    /// When it was read, Unix ms.
    pub read_at_ms: u64,
}

/// What the buckets and clusters hold now.
#[derive(Debug, Default)]
pub struct Live {
    /// Plans entries by device id.
    pub plans: BTreeMap<String, ObservedEntry>,
    /// Statuses by device id.
    pub statuses: BTreeMap<String, DeviceStatus>,
    /// Heartbeats by device id, with the entry's time (Unix ms).
    pub heartbeats: BTreeMap<String, (Heartbeat, u64)>,
    /// Entries that could not be read, by (bucket, key).
    pub warnings: BTreeMap<(String, String), Warning>,
    /// Recent changes per device, newest last.
    pub history: BTreeMap<String, VecDeque<Change>>,
    /// Recent changes of everything, newest last.
    pub tail: VecDeque<Change>,
    /// Releases by (cluster, namespace, name).
    pub releases: BTreeMap<(String, String, String), LiveRelease>,
    /// The last watch error, if the watches are not running.
    pub nats_error: Option<String>,
    /// Each fleet's current or last staged rollout (`harmony-rollouts`).
    pub rollouts: BTreeMap<String, harmony_schemas::fleet::RolloutRecord>,
}

impl Live {
    fn record(&mut self, change: Change, per_device: bool) {
        if per_device {
            let h = self.history.entry(change.subject.clone()).or_default();
            h.push_back(change.clone());
            while h.len() > HISTORY_PER_DEVICE {
                h.pop_front();
            }
        }
        self.tail.push_back(change);
        while self.tail.len() > TAIL_LEN {
            self.tail.pop_front();
        }
    }

    /// Applies one KV entry of `bucket` (`None` value: deleted or purged). Returns the change
    /// to announce on the live tail, if any.
    pub fn apply(&mut self, repo: &RepoView, bucket: &str, key: &str, revision: u64, created_ms: u64, value: Option<&[u8]>) -> Option<Change> {
        let wkey = (bucket.to_string(), key.to_string());
        self.warnings.remove(&wkey);
        let change = |kind: &str, summary: String| Change { at_ms: created_ms, kind: kind.into(), subject: key.to_string(), summary };
        let Some(value) = value else {
            let removed = match bucket {
                PLANS_BUCKET => self.plans.remove(key).is_some(),
                harmony_schemas::fleet::STATUS_BUCKET => self.statuses.remove(key).is_some(),
                harmony_schemas::fleet::ROLLOUTS_BUCKET => {
                    self.rollouts.remove(key);
                    return None;
                }
                _ => self.heartbeats.remove(key).is_some(),
            };
            if !removed {
                return None;
            }
            let c = change("deleted", format!("{bucket} entry deleted"));
            self.record(c.clone(), true);
            return Some(c);
        };
        let mut warnings = Vec::new();
        let c = match bucket {
            PLANS_BUCKET => {
                #[derive(serde::Deserialize)]
                struct Fleet {
                    payload: FleetField,
                }
                #[derive(serde::Deserialize)]
                struct FleetField {
                    fleet: Option<String>,
                }
                let fleet = serde_json::from_slice::<Fleet>(value).ok().and_then(|f| f.payload.fleet).unwrap_or_default();
                let raw = RawEntry { key: key.to_string(), revision, created_ms, value: value.to_vec() };
                let decoded = decode_plans(bucket, vec![raw], &fleet, repo.trusted(&fleet), &mut warnings);
                match decoded.into_iter().next() {
                    Some((_, entry)) => {
                        let before = self.plans.get(key).and_then(ObservedEntry::generation);
                        let generation = entry.generation();
                        self.plans.insert(key.to_string(), entry);
                        (before != generation).then(|| change("plan", format!("desired generation {}", generation.map_or("?".into(), |g| g.to_string()))))
                    }
                    None => None,
                }
            }
            harmony_schemas::fleet::STATUS_BUCKET => {
                let decoded = harmony_executor::fleet::observe::decode_json::<DeviceStatus>(
                    bucket,
                    vec![RawEntry { key: key.to_string(), revision, created_ms, value: value.to_vec() }],
                    &mut warnings,
                );
                match decoded.into_iter().next() {
                    Some((_, (s, _))) => {
                        let summary = format!(
                            "{} at generation {}{}",
                            harmony_executor::fleet::status::kebab(&s.state),
                            s.applied_generation.map_or("-".into(), |g| g.to_string()),
                            s.last_error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
                        );
                        let prev = self.statuses.get(key);
                        let moved = prev.is_none_or(|p| p.state != s.state || p.applied_generation != s.applied_generation || p.last_error != s.last_error);
                        self.statuses.insert(key.to_string(), s);
                        Some(change("status", summary)).filter(|_| moved)
                    }
                    None => None,
                }
            }
            harmony_schemas::fleet::ROLLOUTS_BUCKET => match serde_json::from_slice::<harmony_schemas::fleet::RolloutRecord>(value) {
                Ok(r) => {
                    let c = Change {
                        at_ms: created_ms,
                        kind: "rollout".into(),
                        subject: key.to_string(),
                        summary: harmony_executor::fleet::rollout::progress_line(&r),
                    };
                    self.rollouts.insert(key.to_string(), r);
                    self.record(c.clone(), false);
                    return Some(c);
                }
                Err(e) => {
                    warnings.push(harmony_executor::fleet::Warning {
                        bucket: bucket.into(),
                        key: key.into(),
                        revision,
                        message: format!("undecodable rollout record ({e}); skipped"),
                    });
                    None
                }
            },
            _ => {
                let decoded = harmony_executor::fleet::observe::decode_json::<Heartbeat>(
                    bucket,
                    vec![RawEntry { key: key.to_string(), revision, created_ms, value: value.to_vec() }],
                    &mut warnings,
                );
                match decoded.into_iter().next() {
                    Some((_, (h, at))) => {
                        let summary =
                            format!("agent {} up {}s, generation {}", h.agent_version, h.uptime_s, h.applied_generation.map_or("-".into(), |g| g.to_string()));
                        self.heartbeats.insert(key.to_string(), (h, at));
                        // Heartbeats go to the live tail only; the drill-down shows the last one.
                        let c = change("heartbeat", summary);
                        self.record(c.clone(), false);
                        return Some(c);
                    }
                    None => None,
                }
            }
        };
        for w in warnings {
            self.warnings.insert(wkey.clone(), w);
        }
        if let Some(c) = &c {
            self.record(c.clone(), true);
        }
        c
    }

    /// Records a release read and returns the change to announce when it moved.
    pub fn set_release(&mut self, key: (String, String, String), r: LiveRelease) -> Option<Change> {
        let moved = self.releases.get(&key).is_none_or(|p| p.revision != r.revision || p.status != r.status || p.error != r.error);
        let summary = match (&r.error, r.revision) {
            (Some(e), _) => format!("cannot read: {e}"),
            (None, Some(rev)) => format!("revision {rev} {}", r.status),
            (None, None) => "not installed".into(),
        };
        let c = Change { at_ms: r.read_at_ms, kind: "release".into(), subject: format!("{}/{}/{}", key.0, key.1, key.2), summary };
        self.releases.insert(key, r);
        moved.then(|| {
            self.record(c.clone(), false);
            c
        })
    }
}

/// One row of the device list.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceRow {
    /// Fleet (`-` for a device no fleet of the repository declares nor has a plan of).
    pub fleet: String,
    /// Labels (the repository's, or the heartbeat's for a device the repository lacks).
    pub labels: BTreeMap<String, String>,
    /// The report `harmony status` prints.
    #[serde(flatten)]
    pub report: DeviceReport,
}

/// Every device: the repository's, those with a plan entry and those heard from.
pub fn device_rows(repo: &RepoView, live: &Live, now_ms: u64, t: StatusThresholds) -> Vec<DeviceRow> {
    let mut ids: BTreeSet<&str> = repo.devices.keys().map(String::as_str).collect();
    ids.extend(live.plans.keys().map(String::as_str));
    ids.extend(live.statuses.keys().map(String::as_str));
    ids.extend(live.heartbeats.keys().map(String::as_str));
    ids.into_iter().map(|id| device_row(repo, live, id, now_ms, t)).collect()
}

/// One device's row.
pub fn device_row(repo: &RepoView, live: &Live, id: &str, now_ms: u64, t: StatusThresholds) -> DeviceRow {
    let plan = live.plans.get(id);
    let hb = live.heartbeats.get(id);
    let declared = repo.devices.get(id);
    let fleet = declared.map(|d| d.fleet.clone()).or_else(|| plan.and_then(|p| p.fleet.clone())).unwrap_or_else(|| "-".into());
    let labels = declared.map(|d| d.labels.clone()).or_else(|| hb.map(|(h, _)| h.labels.clone())).unwrap_or_default();
    let status = live.statuses.get(id);
    let mut report = device_report(id, plan, None, status, hb, now_ms, t);
    if let Some(f) = repo.fleets.get(&fleet) {
        flag_foreign_keys(&mut report, status, &f.chain);
    }
    DeviceRow { fleet, labels, report }
}

/// Parses a label selector as `kubectl -l` writes it: `k=v`, `k==v`, `k!=v`, `k`, `!k`,
/// `k in (a,b)`, `k notin (a,b)`, comma-separated.
pub fn parse_selector(s: &str) -> Result<Selector, String> {
    let mut sel = Selector::default();
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&s[start..]);
    let valid_key = |k: &str| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    for term in terms.into_iter().map(str::trim).filter(|t| !t.is_empty()) {
        let values = |rest: &str| -> Result<Vec<String>, String> {
            let rest = rest.trim();
            let inner = rest.strip_prefix('(').and_then(|r| r.strip_suffix(')')).ok_or_else(|| format!("`{term}`: expected a list like (a,b)"))?;
            Ok(inner.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect())
        };
        if let Some(k) = term.strip_prefix('!') {
            let k = k.trim();
            if !valid_key(k) {
                return Err(format!("`{term}`: invalid label key"));
            }
            sel.match_expressions.push(MatchExpression::DoesNotExist { key: k.into() });
        } else if let Some((k, v)) = term.split_once("!=") {
            sel.match_expressions.push(MatchExpression::NotIn { key: k.trim().into(), values: vec![v.trim().into()] });
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            if !valid_key(k.trim()) {
                return Err(format!("`{term}`: invalid label key"));
            }
            sel.match_labels.insert(k.trim().into(), v.trim().into());
        } else if let Some((k, rest)) = term.split_once(" notin ") {
            sel.match_expressions.push(MatchExpression::NotIn { key: k.trim().into(), values: values(rest)? });
        } else if let Some((k, rest)) = term.split_once(" in ") {
            sel.match_expressions.push(MatchExpression::In { key: k.trim().into(), values: values(rest)? });
        } else if valid_key(term) {
            sel.match_expressions.push(MatchExpression::Exists { key: term.into() });
        } else {
            return Err(format!("`{term}` is not a selector term (k=v, k!=v, k, !k, k in (a,b), k notin (a,b))"));
        }
    }
    Ok(sel)
}

/// Device list filters and order (the query string of `/devices`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct DeviceQuery {
    /// Label selector.
    #[serde(default)]
    pub selector: Option<String>,
    /// Condition (`ready`, `converging`, `degraded`, `stale`, `unknown`).
    #[serde(default)]
    pub condition: Option<String>,
    /// Fleet.
    #[serde(default)]
    pub fleet: Option<String>,
    /// Deployment name: only devices it matches.
    #[serde(default)]
    pub deployment: Option<String>,
    /// Sort column: `device` (default), `fleet`, `condition`, `heartbeat`, `desired`, `applied`, `agent`.
    #[serde(default)]
    pub sort: Option<String>,
    /// `asc` (default) or `desc`.
    #[serde(default)]
    pub order: Option<String>,
}

/// The columns the device list sorts by.
pub const SORT_COLUMNS: &[&str] = &["device", "fleet", "condition", "heartbeat", "desired", "applied", "agent"];

/// Filters and sorts rows; an invalid selector is an error to show.
pub fn filter_rows(repo: &RepoView, mut rows: Vec<DeviceRow>, q: &DeviceQuery) -> Result<Vec<DeviceRow>, String> {
    let selector = match q.selector.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => Some(parse_selector(s)?),
        None => None,
    };
    let condition = q.condition.as_deref().filter(|c| !c.is_empty());
    if let Some(c) = condition
        && ![Condition::Ready, Condition::Converging, Condition::Degraded, Condition::Stale, Condition::Unknown].iter().any(|x| x.as_str() == c)
    {
        return Err(format!("unknown condition `{c}` (ready, converging, degraded, stale, unknown)"));
    }
    let fleet = q.fleet.as_deref().filter(|c| !c.is_empty());
    let deployment = q.deployment.as_deref().filter(|c| !c.is_empty());
    rows.retain(|r| {
        selector.as_ref().is_none_or(|s| s.matches(&r.labels))
            && condition.is_none_or(|c| r.report.condition.as_str() == c)
            && fleet.is_none_or(|f| r.fleet == f)
            && deployment.is_none_or(|d| repo.devices.get(&r.report.device).is_some_and(|x| x.deployments.iter().any(|n| n == d)))
    });
    let sort = q.sort.as_deref().unwrap_or("device");
    match sort {
        "fleet" => rows.sort_by(|a, b| a.fleet.cmp(&b.fleet)),
        "condition" => rows.sort_by_key(|r| r.report.condition),
        // Never heard from sorts after every heartbeat.
        "heartbeat" => rows.sort_by_key(|r| r.report.heartbeat_age_s.unwrap_or(u64::MAX)),
        "desired" => rows.sort_by_key(|r| r.report.desired_generation),
        "applied" => rows.sort_by_key(|r| r.report.applied_generation),
        "agent" => rows.sort_by(|a, b| a.report.agent_version.cmp(&b.report.agent_version)),
        "device" => {}
        other => return Err(format!("cannot sort by `{other}` ({})", SORT_COLUMNS.join(", "))),
    }
    if q.order.as_deref() == Some("desc") {
        rows.reverse();
    }
    Ok(rows)
}

/// Device counts by condition.
pub fn counts<'a>(rows: impl IntoIterator<Item = &'a DeviceRow>) -> BTreeMap<Condition, usize> {
    let mut m = BTreeMap::new();
    for r in rows {
        *m.entry(r.report.condition).or_insert(0) += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse_like_kubectl() {
        let labels: BTreeMap<String, String> = [("site", "montreal"), ("arch", "arm64")].into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        let m = |s: &str| parse_selector(s).unwrap().matches(&labels);
        assert!(m("site=montreal"));
        assert!(m("site==montreal,arch=arm64"));
        assert!(!m("site!=montreal"));
        assert!(m("arch in (arm64, amd64)"));
        assert!(!m("arch notin (arm64)"));
        assert!(m("site"));
        assert!(m("!tier"));
        assert!(!m("tier"));
        assert!(m(""));
        assert!(parse_selector("a b").is_err());
    }
}
