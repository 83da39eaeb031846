//! Phased rollouts: a deployment's (or the fleet's agent version's) change reaches its devices
//! in waves, each health-gated before the next is written (`docs/fleet.md#rollouts`).
//!
//! - [`plan_rollout`] (pure): which deployments and agent version this apply rolls out, the
//!   rollout's devices in a deterministic order (SHA-256 of the device id, so re-planning gives
//!   the same waves) and the waves (`step` percentages are cumulative, rounded up).
//! - [`device_health`] (pure): healthy, failed (with why), degraded (waited for: a crash loop
//!   may recover) or still pending, from a device's status and heartbeat.
//! - [`run_waves`]: writes each wave, waits for it, halts after more than `max-failed` failures
//!   and, with `auto-revert`, writes the previous plans back as new signed generations. Progress
//!   is kept in [`ROLLOUTS_BUCKET`] so an interrupted rollout resumes where it stopped.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use async_nats::jetstream::kv;
use ed25519_dalek::SigningKey;
use harmony_compiler::CompiledRepo;
use harmony_schemas::fleet::{
    Command, CommandReply, CommandRequest, ContainerKind, ContainerState, DeploymentFailure, DevicePlan, DeviceState, DeviceStatus, Heartbeat, PROTOCOL_VERSION, PayloadSigner,
    RolloutFailure, RolloutRecord, RolloutState, RolloutWave, SignedCommand, SignedDevicePlan, UpgradeState, Verb, WaveState, command_subject, now_ms,
    sha256_digest,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::apply::{ActionOutcome, ApplyOptions, ApplyReport, apply_actions_returning};
use super::journal::Journal;
use super::observe::{ObservedFleet, decode_json, read_bucket, read_keys};
use super::plan::{FleetAction, FleetOp};
use super::{DesiredFleet, FleetError, nats_err};

/// A rollout strategy (the language's `rollout` block).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RolloutSpec {
    /// Cumulative percentages, increasing, ending at 100.
    pub steps: Vec<u8>,
    /// Failures tolerated before halting.
    pub max_failed: u32,
    /// How long one wave may take to become healthy.
    pub health_timeout: Duration,
    /// How long every planned service must have been observed running before a device of a
    /// wave counts healthy ([`device_health`]).
    pub settle: Duration,
    /// Write the previous plans back when halting.
    pub auto_revert: bool,
}

impl RolloutSpec {
    /// Agent upgrades of a fleet without a `rollout` block: every device at once, still
    /// health-gated (the old agent is retired only once the new one reports).
    pub fn agent_default() -> RolloutSpec {
        RolloutSpec {
            steps: vec![100],
            max_failed: 0,
            health_timeout: Duration::from_secs(120),
            settle: harmony_compiler::model::DEFAULT_SETTLE.to_std(),
            auto_revert: false,
        }
    }
}

impl From<&harmony_compiler::model::Rollout> for RolloutSpec {
    fn from(r: &harmony_compiler::model::Rollout) -> RolloutSpec {
        RolloutSpec {
            steps: r.steps.clone(),
            max_failed: r.max_failed,
            health_timeout: r.health_timeout.to_std(),
            settle: r.settle.to_std(),
            auto_revert: r.auto_revert,
        }
    }
}

/// A fleet's strategies, from the repository.
#[derive(Debug, Clone, Default)]
pub struct RolloutSpecs {
    /// By deployment name.
    pub deployments: BTreeMap<String, RolloutSpec>,
    /// Agent-version changes (`None`: [`RolloutSpec::agent_default`]).
    pub agent: Option<RolloutSpec>,
}

/// The strategies of `fleet`'s deployments and agent upgrades.
pub fn rollout_specs(compiled: &CompiledRepo, fleet: &str) -> RolloutSpecs {
    let mut specs = RolloutSpecs::default();
    for u in compiled.units.values() {
        if let harmony_compiler::UnitContent::DevicePlan(p) = &u.content
            && p.fleet.as_str() == fleet
        {
            for w in &p.workloads {
                if let Some(r) = &w.rollout {
                    specs.deployments.entry(w.deployment.as_str().to_string()).or_insert_with(|| r.into());
                }
            }
        }
    }
    specs.agent = compiled.fleets.iter().find(|(n, _)| n.as_str() == fleet).and_then(|(_, f)| f.agent_rollout.as_ref()).map(Into::into);
    specs
}

/// What one apply rolls out, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RolloutPlan {
    /// `sha256:` over `what` with the desired content ([`RolloutRecord::id`]).
    pub id: String,
    /// `deployment <name>`, `agent <version>`.
    pub what: Vec<String>,
    /// The strategy (several rolled-out items at once: the most cautious of theirs).
    pub spec: RolloutSpec,
    /// Waves: (cumulative percent, devices first reached).
    pub waves: Vec<(u8, Vec<String>)>,
    /// The KV revision of the fleet's rollout record it was planned against (none: no record).
    pub record_revision: Option<u64>,
}

impl RolloutPlan {
    /// The wave of each device.
    pub fn wave_of(&self) -> HashMap<&str, usize> {
        self.waves.iter().enumerate().flat_map(|(i, (_, ds))| ds.iter().map(move |d| (d.as_str(), i))).collect()
    }
}

/// Devices in rollout order: by SHA-256 of the device id (then the id), so the order is stable,
/// independent of names' alphabetical order, and the same for every rollout of the fleet.
pub fn rollout_order<'a>(devices: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut v: Vec<([u8; 32], &str)> = devices.into_iter().map(|d| (Sha256::digest(d.as_bytes()).into(), d)).collect();
    v.sort();
    v.dedup();
    v.into_iter().map(|(_, d)| d.to_string()).collect()
}

/// Splits `ordered` devices into waves by cumulative percentages: step `p` reaches the first
/// ⌈p·N/100⌉ devices. Empty waves (small fleets) are kept, so wave numbers match the steps.
pub fn waves(ordered: &[String], steps: &[u8]) -> Vec<(u8, Vec<String>)> {
    let n = ordered.len();
    let mut start = 0;
    steps
        .iter()
        .map(|&p| {
            let end = (usize::from(p) * n).div_ceil(100).clamp(start, n);
            let wave = ordered[start..end].to_vec();
            start = end;
            (p, wave)
        })
        .collect()
}

/// What is rolled out.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Item {
    Deployment(String),
    Agent(String),
}

impl Item {
    fn label(&self) -> String {
        match self {
            Item::Deployment(d) => format!("deployment {d}"),
            Item::Agent(v) => format!("agent {v}"),
        }
    }
    fn parse(label: &str) -> Option<Item> {
        if let Some(d) = label.strip_prefix("deployment ") {
            return Some(Item::Deployment(d.to_string()));
        }
        label.strip_prefix("agent ").map(|v| Item::Agent(v.to_string()))
    }
}

/// Plans the rollout of this apply: the deployments with a `rollout` block whose content changes
/// on some device, and an agent-version change. `None` when nothing is rolled out, unless
/// `resume` is an unfinished rollout of the same desired state (its writes were done before an
/// interruption; the rest is only waiting): then that rollout again.
pub fn plan_rollout(desired: &DesiredFleet, specs: &RolloutSpecs, observed: &ObservedFleet, resume: Option<&RolloutRecord>) -> Option<RolloutPlan> {
    let mut items = BTreeSet::new();
    for (device, want) in &desired.plans {
        let Some(have) = observed.plans.get(device).and_then(|e| e.plan.as_ref()) else { continue };
        for d in &want.deployments {
            if specs.deployments.contains_key(&d.name) && have.deployments.iter().find(|h| h.name == d.name) != Some(d) {
                items.insert(Item::Deployment(d.name.clone()));
            }
        }
        if have.agent_version != want.agent_version {
            items.insert(Item::Agent(want.agent_version.clone()));
        }
    }
    let from_record = items.is_empty();
    if from_record {
        let r = resume.filter(|r| r.state == RolloutState::InProgress)?;
        items = r.what.iter().filter_map(|w| Item::parse(w)).collect();
        if items.is_empty() {
            return None;
        }
    }
    let plan = rollout_for(desired, specs, &items);
    match resume {
        Some(r) if r.state == RolloutState::InProgress && r.id == plan.id => Some(plan),
        // New changes: a new rollout (an unfinished one of another desired state is superseded).
        _ if !from_record => Some(plan),
        _ => None,
    }
}

fn rollout_for(desired: &DesiredFleet, specs: &RolloutSpecs, items: &BTreeSet<Item>) -> RolloutPlan {
    let mut members: BTreeSet<&str> = BTreeSet::new();
    let mut chosen: Vec<RolloutSpec> = Vec::new();
    let mut id_parts: Vec<(String, String)> = Vec::new();
    for item in items {
        match item {
            Item::Deployment(name) => {
                let mut hash = String::new();
                for (device, p) in &desired.plans {
                    if let Some(d) = p.deployments.iter().find(|d| &d.name == name) {
                        members.insert(device);
                        hash = d.spec_hash.clone();
                    }
                }
                id_parts.push((item.label(), hash));
                chosen.push(specs.deployments.get(name).cloned().unwrap_or_else(RolloutSpec::agent_default));
            }
            Item::Agent(v) => {
                members.extend(desired.plans.keys().map(String::as_str));
                id_parts.push((item.label(), v.clone()));
                chosen.push(specs.agent.clone().unwrap_or_else(RolloutSpec::agent_default));
            }
        }
    }
    // The most cautious: the most steps (then the smallest first step), the fewest failures
    // tolerated, the longest wait and settle time, and a revert if any asks for one.
    let steps = chosen.iter().map(|s| &s.steps).max_by(|a, b| a.len().cmp(&b.len()).then(b.first().cmp(&a.first()))).cloned().unwrap_or_else(|| vec![100]);
    let spec = RolloutSpec {
        steps,
        max_failed: chosen.iter().map(|s| s.max_failed).min().unwrap_or(0),
        health_timeout: chosen.iter().map(|s| s.health_timeout).max().unwrap_or(Duration::from_secs(120)),
        settle: chosen.iter().map(|s| s.settle).max().unwrap_or(harmony_compiler::model::DEFAULT_SETTLE.to_std()),
        auto_revert: chosen.iter().any(|s| s.auto_revert),
    };
    let ordered = rollout_order(members);
    let id_json = serde_json::to_vec(&(&desired.fleet, &id_parts)).unwrap_or_default();
    RolloutPlan {
        id: harmony_schemas::fleet::sha256_digest(&id_json),
        what: id_parts.into_iter().map(|(l, _)| l).collect(),
        waves: waves(&ordered, &spec.steps),
        spec,
        record_revision: None,
    }
}

impl RolloutPlan {
    /// As a plan file shows it, with how apply continues `record` (the fleet's rollout record)
    /// when it is of the same desired state.
    pub fn planned(&self, fleet: &str, record: Option<&(RolloutRecord, u64)>) -> harmony_schemas::plan::PlannedRollout {
        harmony_schemas::plan::PlannedRollout {
            fleet: fleet.to_string(),
            id: self.id.clone(),
            what: self.what.clone(),
            steps: self.waves.iter().map(|(p, d)| harmony_schemas::plan::PlannedStep { percent: *p, devices: d.clone() }).collect(),
            max_failed: self.spec.max_failed,
            health_timeout_s: self.spec.health_timeout.as_secs(),
            settle_s: self.spec.settle.as_secs(),
            auto_revert: self.spec.auto_revert,
            continues: continuation(self, record.map(|(r, _)| r)),
            record_revision: record.map(|(_, rev)| *rev),
        }
    }
}

impl RolloutPlan {
    /// The rollout a plan file holds ([`RolloutPlan::planned`]), as apply runs it: nothing is
    /// re-planned (the steps' devices are the planned ones).
    pub fn from_planned(p: &harmony_schemas::plan::PlannedRollout) -> RolloutPlan {
        RolloutPlan {
            id: p.id.clone(),
            what: p.what.clone(),
            spec: RolloutSpec {
                steps: p.steps.iter().map(|s| s.percent).collect(),
                max_failed: p.max_failed,
                health_timeout: Duration::from_secs(p.health_timeout_s),
                settle: Duration::from_secs(p.settle_s),
                auto_revert: p.auto_revert,
            },
            waves: p.steps.iter().map(|s| (s.percent, s.devices.clone())).collect(),
            record_revision: p.record_revision,
        }
    }
}

/// How an apply continues `record` if `plan` is of the same desired state (see
/// [`run_waves`]): resumed while in progress, its revert finished while reverting.
fn continuation(plan: &RolloutPlan, record: Option<&RolloutRecord>) -> Option<harmony_schemas::plan::RolloutContinuation> {
    use harmony_schemas::plan::RolloutContinuation;
    let r = record.filter(|r| r.id == plan.id)?;
    match r.state {
        RolloutState::InProgress => Some(RolloutContinuation::Resume { healthy_steps: r.waves.iter().filter(|w| w.state == WaveState::Healthy).count() }),
        RolloutState::Reverting => Some(RolloutContinuation::FinishRevert),
        RolloutState::Complete | RolloutState::Halted | RolloutState::Reverted => None,
    }
}

/// A record's progress in one line.
pub fn progress_line(r: &RolloutRecord) -> String {
    let healthy = r.waves.iter().filter(|w| w.state == WaveState::Healthy).count();
    let state = super::status::kebab(&r.state);
    let current = r.waves.iter().position(|w| matches!(w.state, WaveState::Waiting | WaveState::Failed));
    let mut line = format!("rollout {} ({}): {state}, {healthy}/{} steps healthy", r.what.join(", "), r.source_revision, r.waves.len());
    if let Some(i) = current {
        let w = &r.waves[i];
        let verb = if w.state == WaveState::Waiting { "waiting for" } else { "failed in" };
        line.push_str(&format!(", {verb} step {} ({} %, {} devices)", i + 1, w.percent, w.devices.len()));
    }
    if !r.failed.is_empty() {
        line.push_str(&format!(", {} failed (max {})", r.failed.len(), r.max_failed));
    }
    line
}


/// A device's health for the rollout gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Applied the generation, every deployment running, heartbeat fresh, right agent version.
    Healthy,
    /// Not yet; why (shown when the wait times out).
    Pending(String),
    /// Applied but degraded (a service crash-looping, a failed deployment); why. A crash loop
    /// may recover, so the step keeps waiting; at its deadline the device fails with this reason.
    Degraded(String),
    /// Failed; why.
    Failed(String),
}

/// What the gate waits for on one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    /// Device.
    pub device: String,
    /// The plan generation now in its entry.
    pub generation: u64,
    /// The agent version its plan names.
    pub agent_version: String,
    /// Digest of the entry written (what a rejection of it names), when known.
    pub digest: Option<String>,
}

/// `device`'s health against `expect`, from its status and heartbeat (with the heartbeat entry's
/// write time) at `now_ms`; a heartbeat older than `fresh` does not count. From an agent that
/// observes its runtime (`observed_at_ms`), only a look at podman showing every service running
/// for `settle` (the rollout's [`RolloutSpec::settle`]) counts, not the agent's "I started it".
pub fn device_health(expect: &Expect, status: Option<&DeviceStatus>, hb: Option<&(Heartbeat, u64)>, now_ms: u64, fresh: Duration, settle: Duration) -> Health {
    let g = expect.generation;
    let Some(s) = status else { return Health::Pending("no status reported yet".into()) };
    if let Some(r) = s.rejections.iter().rev().find(|r| super::status::rejects(r, expect.digest.as_deref(), Some(g))) {
        return Health::Failed(format!("rejected generation {g}: {}", r.reason));
    }
    if let Some(u) = &s.upgrade
        && u.to == expect.agent_version
        && u.generation >= g
        && u.state == UpgradeState::Failed
    {
        return Health::Failed(format!("agent upgrade {} → {} failed: {}", u.from, u.to, u.error.as_deref().unwrap_or("no reason given")));
    }
    let applied = s.applied_generation.unwrap_or(0);
    if applied < g {
        return Health::Pending(format!("applied generation {}, waiting for {g}", s.applied_generation.map_or("none".into(), |a| a.to_string())));
    }
    if s.state == DeviceState::Degraded {
        let why: Vec<String> = s.deployments.iter().filter_map(|d| d.failure.as_ref().map(|f| format!("{}: {f}", d.name))).collect();
        let why = if why.is_empty() { s.last_error.clone().unwrap_or_else(|| "degraded".into()) } else { why.join("; ") };
        // A failed init container stands until a newer plan (the agent does not run it again):
        // failed at once. Anything else (a crash loop, a runtime error) is retried by the agent.
        let permanent = s.deployments.iter().any(|d| matches!(d.failure, Some(DeploymentFailure::InitExited { .. } | DeploymentFailure::InitTimedOut { .. })));
        let why = format!("generation {applied} degraded: {why}");
        return if permanent { Health::Failed(why) } else { Health::Degraded(why) };
    }
    if s.state != DeviceState::Applied {
        return Health::Pending(format!("generation {applied} is {}", super::status::kebab(&s.state)));
    }
    if s.agent_version != expect.agent_version {
        return Health::Pending(format!("agent {} reports, waiting for {}", s.agent_version, expect.agent_version));
    }
    // Every container as the plan wants it: services running, init containers completed.
    let off: Vec<String> = s
        .deployments
        .iter()
        .flat_map(|d| {
            d.containers
                .iter()
                .filter(|c| c.state != if c.kind == ContainerKind::Init { ContainerState::Completed } else { ContainerState::Running })
                .map(move |c| format!("{}/{} {}", d.name, c.name, super::status::kebab(&c.state)))
        })
        .collect();
    if !off.is_empty() {
        return Health::Pending(format!("generation {applied}: not running: {}", off.join(", ")));
    }
    if let Some(seen) = s.observed_at_ms {
        let settle_ms = u64::try_from(settle.as_millis()).unwrap_or(u64::MAX);
        let young: Vec<String> = s
            .deployments
            .iter()
            .flat_map(|d| {
                d.containers.iter().filter(|c| c.kind == ContainerKind::Service).filter_map(move |c| match c.observed.as_ref().and_then(|o| o.running_since_ms) {
                    Some(t) if seen.saturating_sub(t) >= settle_ms => None,
                    Some(t) => Some(format!("{}/{} running for {} s", d.name, c.name, seen.saturating_sub(t) / 1000)),
                    None => Some(format!("{}/{} not observed running", d.name, c.name)),
                })
            })
            .collect();
        if !young.is_empty() {
            return Health::Pending(format!("generation {applied}: settling ({} s): {}", settle.as_secs(), young.join(", ")));
        }
    }
    match hb {
        None => Health::Pending("no heartbeat yet".into()),
        Some((h, created)) => {
            let age = now_ms.saturating_sub(h.timestamp_ms.max(*created));
            if age > fresh.as_millis() as u64 {
                Health::Pending(format!("last heartbeat {} s ago", age / 1000))
            } else if h.agent_version != expect.agent_version {
                Health::Pending(format!("heartbeat from agent {}, waiting for {}", h.agent_version, expect.agent_version))
            } else {
                Health::Healthy
            }
        }
    }
}

/// Everything [`run_waves`] needs besides the actions.
pub struct WaveContext<'a> {
    /// The fleet.
    pub fleet: &'a str,
    /// The connection.
    pub client: &'a async_nats::Client,
    /// Plans, status, heartbeats.
    pub stores: &'a [kv::Store; 3],
    /// The rollouts bucket.
    pub rollouts: &'a kv::Store,
    /// The fleet's key (plans, reverts, retire commands).
    pub key: &'a SigningKey,
    /// Keys plans in the bucket may be signed with (the signing key's among them).
    pub trusted: &'a [ed25519_dalek::VerifyingKey],
    /// Journal.
    pub journal: Option<&'a Journal>,
    /// Write options.
    pub opts: &'a ApplyOptions,
    /// What the plan was made against.
    pub observed: &'a ObservedFleet,
    /// The fleet's previous rollout record and its revision, if any.
    pub record: Option<(RolloutRecord, u64)>,
    /// Source revision.
    pub source_revision: &'a str,
    /// Heartbeats older than this do not count as healthy.
    pub fresh: Duration,
    /// How often statuses are read while waiting.
    pub poll: Duration,
    /// Called with the record after every change (progress display).
    pub on_progress: Option<&'a (dyn Fn(&RolloutRecord) + Send + Sync)>,
}

/// What [`run_waves`] did.
#[derive(Debug)]
pub struct RolloutOutcome {
    /// The final record.
    pub record: RolloutRecord,
    /// Every write's result.
    pub report: ApplyReport,
    /// The actions, handed back.
    pub actions: Vec<FleetAction>,
    /// Revert writes (device, outcome).
    pub reverted: Vec<(String, Result<u64, String>)>,
}

/// Writes `actions` as `plan` says: first what is not rolled out (new devices, deletions,
/// changes of deployments without a strategy), then each wave, waiting until its devices are
/// healthy. Halts after more than `max_failed` failures (reverting with `auto_revert`). The
/// record in [`ROLLOUTS_BUCKET`] is updated after every step.
pub async fn run_waves(ctx: WaveContext<'_>, plan: &RolloutPlan, actions: Vec<FleetAction>) -> Result<RolloutOutcome, FleetError> {
    let now = now_ms();
    let (mut record, mut record_rev) = match ctx.record.clone() {
        // An interrupted revert is finished below, on the same record.
        Some((r, rev)) if r.id == plan.id && r.state == RolloutState::Reverting => (r, Some(rev)),
        Some((mut r, rev)) if r.id == plan.id && r.state == RolloutState::InProgress => {
            // Resumed. The devices of each step follow the repository (a device added since
            // joins its step); a step whose devices changed is waited for again.
            if r.waves.len() != plan.waves.len() {
                r.waves = plan.waves.iter().map(|(p, ds)| RolloutWave { percent: *p, devices: ds.clone(), state: WaveState::Pending }).collect();
            }
            for (w, (_, devices)) in r.waves.iter_mut().zip(&plan.waves) {
                if &w.devices != devices {
                    w.devices = devices.clone();
                    w.state = WaveState::Pending;
                }
            }
            (r, Some(rev))
        }
        other => {
            let rev = other.map(|(_, rev)| rev);
            let record = RolloutRecord {
                version: PROTOCOL_VERSION,
                fleet: ctx.fleet.to_string(),
                id: plan.id.clone(),
                source_revision: ctx.source_revision.to_string(),
                what: plan.what.clone(),
                state: RolloutState::InProgress,
                max_failed: plan.spec.max_failed,
                health_timeout_s: plan.spec.health_timeout.as_secs(),
                auto_revert: plan.spec.auto_revert,
                waves: plan.waves.iter().map(|(p, ds)| RolloutWave { percent: *p, devices: ds.clone(), state: WaveState::Pending }).collect(),
                previous: BTreeMap::new(),
                failed: Vec::new(),
                started_ms: now,
                updated_ms: now,
            };
            (record, rev)
        }
    };
    if record.id == plan.id && record.state == RolloutState::Reverting {
        // An apply died while writing the previous plans back: finish that, and write nothing
        // of the rollout (only what is not rolled out, as always first).
        let (first, rest): (Vec<FleetAction>, Vec<FleetAction>) = {
            let wave_of = plan.wave_of();
            actions.into_iter().partition(|a| !(a.op == FleetOp::Update && wave_of.contains_key(a.device.as_str())))
        };
        let (report, mut handed_back) = apply_actions_returning(&ctx.stores[0], first, ctx.key, ctx.journal, ctx.opts).await;
        handed_back.extend(rest);
        let reverted = revert_and_wait(&ctx, &mut record, &mut record_rev, &plan.spec).await?;
        return Ok(RolloutOutcome::sorted(record, report, handed_back, reverted));
    }
    let wave_of = plan.wave_of();
    let mut groups: Vec<Vec<FleetAction>> = vec![Vec::new(); plan.waves.len() + 1];
    for a in actions {
        let slot = match (a.op, wave_of.get(a.device.as_str())) {
            (FleetOp::Update | FleetOp::Noop, Some(w)) => w + 1,
            _ => 0,
        };
        groups[slot].push(a);
    }
    let mut report = ApplyReport::default();
    let mut handed_back = Vec::new();
    let mut reverted = Vec::new();
    // Not rolled out: at once, no gate.
    let first = std::mem::take(&mut groups[0]);
    let (r, a) = apply_actions_returning(&ctx.stores[0], first, ctx.key, ctx.journal, ctx.opts).await;
    report.results.extend(r.results);
    handed_back.extend(a);
    let mut halted = false;
    // Asked to stop (interrupted, or the fleet's lock lost) while a step was waited for: the
    // record is left in progress at that step, which the next apply resumes.
    let mut stopped = false;
    // A step's devices are final once its gate decided: reported then, not at their write.
    let gated = ApplyOptions { on_result: None, ..ctx.opts.clone() };
    for (i, group) in groups.into_iter().skip(1).enumerate() {
        if halted || stopped {
            handed_back.extend(group);
            continue;
        }
        for a in group.iter().filter(|a| a.op == FleetOp::Update) {
            if let Some(rev) = a.expected_revision {
                record.previous.entry(a.device.clone()).or_insert(rev);
            }
        }
        record.waves[i].state = WaveState::Waiting;
        save(&ctx, &mut record, &mut record_rev).await?;
        let (r, group) = apply_actions_returning(&ctx.stores[0], group, ctx.key, ctx.journal, &gated).await;
        // What the gate expects: the written generation, or the one already in the entry.
        let mut expect = Vec::new();
        for (res, a) in r.results.iter().zip(&group) {
            let generation = match (&res.outcome, &a.plan) {
                (ActionOutcome::Written { .. }, Some(p)) => Some(p.generation),
                (ActionOutcome::Noop, _) => ctx.observed.plans.get(&a.device).and_then(|e| e.plan.as_ref().map(|p| p.generation)),
                _ => None,
            };
            let agent_version = a.plan.as_ref().or_else(|| ctx.observed.plans.get(&a.device).and_then(|e| e.plan.as_ref())).map(|p| p.agent_version.clone());
            match (generation, agent_version) {
                (Some(generation), Some(agent_version)) => expect.push(Expect { device: a.device.clone(), generation, agent_version, digest: None }),
                _ => {
                    let why = match &res.outcome {
                        ActionOutcome::Stale { expected, found } => format!("entry moved (expected revision {expected:?}, found {found:?})"),
                        ActionOutcome::Failed { error } => format!("write failed: {error}"),
                        _ => "no plan in its entry".into(),
                    };
                    note_failure(&mut record, a.device.clone(), i, why);
                }
            }
        }
        // Which entries the gate waits on (a rejection names the digest of the entry it refused:
        // an older forgery claiming the same generation is not the plan written here).
        let written = read_keys(&ctx.stores[0], expect.iter().map(|e| e.device.clone()).collect()).await?;
        let digests: BTreeMap<String, String> = written.into_iter().map(|e| (e.key, sha256_digest(&e.value))).collect();
        for e in &mut expect {
            e.digest = digests.get(&e.device).cloned();
        }
        // Devices of the wave without an action (not in the repository's plans any more) are not waited for.
        let step = r.results;
        handed_back.extend(group);
        let failures = wait_healthy(&ctx, &expect, &plan.spec).await?;
        for (device, reason) in failures {
            note_failure(&mut record, device, i, reason);
        }
        if ctx.opts.halt.as_ref().is_some_and(|h| h()) {
            stopped = true;
        } else if record.failed.len() > plan.spec.max_failed as usize {
            record.waves[i].state = WaveState::Failed;
            halted = true;
            if plan.spec.auto_revert {
                // Saves the record as it goes: reverting, then reverted.
                reverted = revert_and_wait(&ctx, &mut record, &mut record_rev, &plan.spec).await?;
            } else {
                record.state = RolloutState::Halted;
                save(&ctx, &mut record, &mut record_rev).await?;
            }
        } else {
            record.waves[i].state = WaveState::Healthy;
            save(&ctx, &mut record, &mut record_rev).await?;
        }
        if let Some(f) = &ctx.opts.on_result {
            for res in &step {
                f(res, Some(&record));
            }
        }
        report.results.extend(step);
    }
    if !halted && !stopped {
        record.state = RolloutState::Complete;
        save(&ctx, &mut record, &mut record_rev).await?;
    }
    Ok(RolloutOutcome::sorted(record, report, handed_back, reverted))
}

impl RolloutOutcome {
    /// The outcome, with results and actions in device order.
    fn sorted(record: RolloutRecord, mut report: ApplyReport, mut actions: Vec<FleetAction>, reverted: Vec<(String, Result<u64, String>)>) -> RolloutOutcome {
        report.results.sort_by(|a, b| a.device.cmp(&b.device));
        actions.sort_by(|a, b| a.device.cmp(&b.device));
        RolloutOutcome { record, report, actions, reverted }
    }
}

/// Records a failed device; a resumed rollout re-checks its steps, so a device counts once
/// however often it fails (the latest reason is kept).
fn note_failure(record: &mut RolloutRecord, device: String, wave: usize, reason: String) {
    match record.failed.iter_mut().find(|f| f.device == device) {
        Some(f) => f.reason = reason,
        None => record.failed.push(RolloutFailure { device, wave, reason }),
    }
}

/// Writes the record with compare-and-set on its revision (a concurrent apply holds no lock
/// only if the lock expired: then this fails rather than overwrite).
async fn save(ctx: &WaveContext<'_>, record: &mut RolloutRecord, rev: &mut Option<u64>) -> Result<(), FleetError> {
    record.updated_ms = now_ms();
    let bytes: bytes::Bytes = serde_json::to_vec(record).map_err(|e| nats_err("encoding the rollout record", e))?.into();
    let key = record.fleet.clone();
    let written = match *rev {
        Some(r) => ctx.rollouts.update(&key, bytes, r).await.map_err(|e| nats_err(format!("updating rollout record {key}"), e))?,
        None => ctx.rollouts.create(&key, bytes).await.map_err(|e| nats_err(format!("creating rollout record {key}"), e))?,
    };
    *rev = Some(written);
    if let Some(f) = ctx.on_progress {
        f(record);
    }
    Ok(())
}

/// The fleet's rollout record, if its rollouts bucket exists (read-only: a missing bucket is
/// not created): what `harmony status` shows and `harmony plan` continues.
pub async fn observe_record(client: &async_nats::Client, fleet: &str) -> Result<Option<(RolloutRecord, u64)>, FleetError> {
    let js = async_nats::jetstream::new(client.clone());
    match js.get_key_value(harmony_schemas::fleet::ROLLOUTS_BUCKET).await {
        Ok(store) => read_record(&store, fleet).await,
        Err(_) => Ok(None),
    }
}

/// Reads the fleet's rollout record and its revision.
pub async fn read_record(rollouts: &kv::Store, fleet: &str) -> Result<Option<(RolloutRecord, u64)>, FleetError> {
    match rollouts.entry(fleet).await {
        Ok(Some(e)) if e.operation == kv::Operation::Put => match serde_json::from_slice::<RolloutRecord>(&e.value) {
            Ok(r) => Ok(Some((r, e.revision))),
            Err(err) => {
                tracing::warn!("rollout record of fleet {fleet} (revision {}) does not decode ({err}); starting afresh", e.revision);
                Ok(None)
            }
        },
        Ok(_) => Ok(None),
        Err(e) => Err(nats_err(format!("reading rollout record {fleet}"), e)),
    }
}

/// Up to this many pending devices, a health poll gets their status and heartbeat entries one
/// by one; beyond, it reads both buckets whole.
const PER_KEY_READS: usize = 256;

/// Waits until every expected device is healthy (with `spec`'s settle time) or failed, or
/// `spec`'s health timeout passes (the rest fail).
/// A device whose agent version changes has its old agent retired (signed `retire`) once the
/// new one's heartbeat arrives; it counts as healthy only after that.
async fn wait_healthy(ctx: &WaveContext<'_>, expect: &[Expect], spec: &RolloutSpec) -> Result<Vec<(String, String)>, FleetError> {
    let timeout = spec.health_timeout;
    let deadline = tokio::time::Instant::now() + timeout;
    // Per device: why it is not healthy yet, and the last degraded report seen (kept for the
    // failure at the deadline even if the device was only settling at that moment).
    let mut pending: BTreeMap<&str, (&Expect, String, Option<String>)> =
        expect.iter().map(|e| (e.device.as_str(), (e, "not checked yet".to_string(), None))).collect();
    let mut retired: BTreeSet<String> = BTreeSet::new();
    let mut failures = Vec::new();
    let signer = PayloadSigner::new(ctx.key);
    loop {
        // The waited-for devices' entries only, while they are few; a large wave reads the
        // buckets whole (one consumer each instead of thousands of gets).
        let keys: Vec<String> = pending.keys().map(|k| k.to_string()).collect();
        let (s, h) = if keys.len() <= PER_KEY_READS {
            tokio::try_join!(read_keys(&ctx.stores[1], keys.clone()), read_keys(&ctx.stores[2], keys))?
        } else {
            tokio::try_join!(read_bucket(ctx.client, &ctx.stores[1]), read_bucket(ctx.client, &ctx.stores[2]))?
        };
        let mut warnings = Vec::new();
        let statuses = decode_json::<DeviceStatus>(&ctx.stores[1].name, s, &mut warnings);
        let heartbeats = decode_json::<Heartbeat>(&ctx.stores[2].name, h, &mut warnings);
        let now = now_ms();
        let mut done = Vec::new();
        for (device, (e, why, degraded)) in pending.iter_mut() {
            let status = statuses.get(*device).map(|(s, _)| s);
            // The version an upgrade of this device came from, as its agents report it: that
            // agent is told to exit once the new one is healthy.
            let old = status.and_then(|s| s.upgrade.as_ref()).filter(|u| u.to == e.agent_version && u.from != e.agent_version).map(|u| &u.from);
            let health = device_health(e, status, heartbeats.get(*device), now, ctx.fresh, spec.settle);
            match health {
                Health::Healthy if old.is_some() && !retired.contains(*device) => {
                    // The new agent runs: tell the old one to exit.
                    match retire(ctx.client, &signer, device, old.map(String::as_str).unwrap_or_default()).await {
                        Ok(()) => {
                            retired.insert(device.to_string());
                        }
                        Err(e) => *why = format!("retiring the old agent: {e}"),
                    }
                }
                Health::Healthy => done.push((device.to_string(), None)),
                Health::Failed(r) => done.push((device.to_string(), Some(r))),
                Health::Pending(r) => *why = r,
                Health::Degraded(r) => {
                    *why = r.clone();
                    *degraded = Some(r);
                }
            }
        }
        for (device, failed) in done {
            pending.remove(device.as_str());
            if let Some(r) = failed {
                failures.push((device, r));
            }
        }
        if pending.is_empty() {
            return Ok(failures);
        }
        if tokio::time::Instant::now() >= deadline {
            for (device, (_, why, degraded)) in pending {
                let why = match degraded {
                    Some(d) if d != why => format!("{why} (earlier: {d})"),
                    _ => why,
                };
                failures.push((device.to_string(), format!("not healthy within {} s: {why}", timeout.as_secs())));
            }
            return Ok(failures);
        }
        if ctx.opts.halt.as_ref().is_some_and(|h| h()) {
            // Interrupted: not waited for any further (the caller leaves the step as it is).
            return Ok(failures);
        }
        tokio::time::sleep(ctx.poll).await;
    }
}

/// Sends a signed `retire` to the agent of `version` on `device`. No responder means no old
/// agent is left (it exited or was restarted): nothing to retire.
async fn retire(client: &async_nats::Client, signer: &PayloadSigner, device: &str, version: &str) -> Result<(), String> {
    let req = CommandRequest::new(device, Command::Retire { version: version.to_string() }).map_err(|e| e.to_string())?;
    let body = signer.sign_to_vec(&req).map_err(|e| e.to_string())?;
    let _: &SignedCommand = &SignedCommand::from_slice(&body).map_err(|e| e.to_string())?;
    match tokio::time::timeout(Duration::from_secs(5), client.request(command_subject(device, Verb::Retire), body.into())).await {
        Err(_) => Err("no reply within 5 s".into()),
        Ok(Err(e)) if e.kind() == async_nats::client::RequestErrorKind::NoResponders => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(msg)) => match serde_json::from_slice::<CommandReply>(&msg.payload) {
            Ok(CommandReply::Retiring { .. }) => Ok(()),
            Ok(CommandReply::Refused { reason }) => Err(format!("refused: {reason}")),
            Ok(other) => Err(format!("unexpected reply {other:?}")),
            Err(e) => Err(format!("undecodable reply: {e}")),
        },
    }
}

/// Marks the record reverting, writes the previous plans back, marks it reverted, and waits for
/// the devices: agents upgraded by the rollout go back the same way (the previous version
/// reports, the new one is retired). Failures while waiting are reported, not counted.
async fn revert_and_wait(
    ctx: &WaveContext<'_>,
    record: &mut RolloutRecord,
    record_rev: &mut Option<u64>,
    spec: &RolloutSpec,
) -> Result<Vec<(String, Result<u64, String>)>, FleetError> {
    record.state = RolloutState::Reverting;
    save(ctx, record, record_rev).await?;
    let (mut reverted, expect) = revert(ctx, record).await;
    record.state = RolloutState::Reverted;
    save(ctx, record, record_rev).await?;
    for (device, why) in wait_healthy(ctx, &expect, spec).await? {
        tracing::warn!("after the revert, {device} is not healthy: {why}");
        if let Some((_, r)) = reverted.iter_mut().find(|(d, _)| *d == device) {
            *r = Err(format!("written back, but {why}"));
        }
    }
    Ok(reverted)
}

/// Writes each device's plan from before the rollout back, as a new generation signed now, with
/// compare-and-set on the entry's current revision; a device whose entry already holds that
/// plan (a revert interrupted after it) is left as it is. Returns each outcome and what to wait
/// for.
async fn revert(ctx: &WaveContext<'_>, record: &RolloutRecord) -> (Vec<(String, Result<u64, String>)>, Vec<Expect>) {
    let store = &ctx.stores[0];
    let trusted = ctx.trusted;
    let signer = super::sign::bulk_signer(ctx.key);
    let mut out = Vec::new();
    let mut expect = Vec::new();
    for (device, prev_rev) in &record.previous {
        let r = async {
            let old = store.entry_for_revision(device, *prev_rev).await.map_err(|e| format!("reading revision {prev_rev}: {e}"))?;
            let old = old.ok_or_else(|| format!("revision {prev_rev} is no longer in the bucket's history"))?;
            let mut plan: DevicePlan =
                SignedDevicePlan::from_slice(&old.value).and_then(|s| s.verify(trusted)).map_err(|e| format!("revision {prev_rev}: {e}"))?;
            let current = store.entry(device).await.map_err(|e| e.to_string())?.filter(|e| e.operation == kv::Operation::Put).ok_or("the entry was deleted")?;
            let current_signed = SignedDevicePlan::from_slice(&current.value).ok();
            if let Some(c) =
                current_signed.as_ref().and_then(|s| s.verify(trusted).ok()).filter(|c| DevicePlan { generation: c.generation, ..plan.clone() } == *c)
            {
                // Already written back (by a revert this one finishes).
                let digest = Some(sha256_digest(&current.value));
                return Ok((current.revision, Expect { device: device.clone(), generation: c.generation, agent_version: c.agent_version, digest }));
            }
            // Above the newest generation Harmony signed (the entry's history: the rollout's own
            // write is there even if a forged entry replaced it) and the applied one believed.
            let newest = super::observe::newest_signed_in_history(store, device, ctx.fleet, trusted).await.map_err(|e| e.to_string())?;
            let newest = newest.max(Some(plan.generation));
            let applied = super::plan::judge_applied(newest, super::plan::reported_applied(ctx.observed, device));
            plan.generation = super::plan::next_generation(device, newest, applied.believed).map_err(|e| e.to_string())?;
            let bytes = signer.sign_to_vec(&plan).map_err(|e| e.to_string())?;
            let digest = Some(sha256_digest(&bytes));
            let rev = store.update(device, bytes.into(), current.revision).await.map_err(|e| e.to_string())?;
            Ok::<_, String>((rev, Expect { device: device.clone(), generation: plan.generation, agent_version: plan.agent_version, digest }))
        }
        .await;
        match r {
            Ok((rev, e)) => {
                out.push((device.clone(), Ok(rev)));
                // Failed devices are not waited for again.
                if !record.failed.iter().any(|f| &f.device == device) {
                    expect.push(e);
                }
            }
            Err(e) => out.push((device.clone(), Err(e))),
        }
    }
    (out, expect)
}

#[cfg(test)]
mod tests {
    use super::super::observe::ObservedEntry;
    use super::*;
    use harmony_schemas::fleet::{
        Observed, ContainerStatus, DeploymentPlan, DeploymentState, DeploymentStatus, Rejection, RejectionReason, Service, generate_signing_key,
    };

    fn plan(device: &str, deployments: Vec<DeploymentPlan>, agent: &str) -> DevicePlan {
        DevicePlan {
            version: PROTOCOL_VERSION,
            device_id: device.into(),
            fleet: "pico".into(),
            generation: 1,
            source_revision: "r".into(),
            agent_version: agent.into(),
            agent: None,
            key_chain: Vec::new(),
            deployments,
        }
    }

    fn dep(name: &str, image: &str) -> DeploymentPlan {
        let c = harmony_schemas::fleet::ContainerSpec {
            name: "c".into(),
            image: image.into(),
            command: vec![],
            args: vec![],
            env: Default::default(),
            ports: vec![],
            volumes: vec![],
        };
        DeploymentPlan::new(name, "acme", vec![], vec![Service::new(c, harmony_schemas::fleet::RestartPolicy::Always)])
    }

    const SETTLE: Duration = Duration::from_secs(10);

    fn spec(steps: &[u8]) -> RolloutSpec {
        RolloutSpec { steps: steps.to_vec(), max_failed: 1, health_timeout: Duration::from_secs(60), settle: SETTLE, auto_revert: true }
    }

    fn fleet(n: usize, image: &str, agent: &str) -> DesiredFleet {
        DesiredFleet {
            fleet: "pico".into(),
            plans: (0..n).map(|i| format!("d-{i:02}")).map(|d| (d.clone(), plan(&d, vec![dep("hub", image), dep("other", "x:1")], agent))).collect(),
        }
    }

    fn observed_of(f: &DesiredFleet) -> ObservedFleet {
        let key = generate_signing_key().expect("key");
        let mut o = ObservedFleet::default();
        for (i, (d, p)) in f.plans.iter().enumerate() {
            let signed = SignedDevicePlan::sign(p, &key).expect("sign");
            o.plans.insert(
                d.clone(),
                ObservedEntry { revision: i as u64 + 1, signed: Some(signed), plan: Some(p.clone()), fleet: Some("pico".into()), digest: String::new() },
            );
        }
        o
    }

    #[test]
    fn waves_are_cumulative_rounded_up_and_cover_everyone() {
        let devices: Vec<String> = (0..20).map(|i| format!("d{i}")).collect();
        let w = waves(&devices, &[10, 50, 100]);
        assert_eq!(w.iter().map(|(p, d)| (*p, d.len())).collect::<Vec<_>>(), vec![(10, 2), (50, 8), (100, 10)]);
        let small = waves(&devices[..3], &[10, 50, 100]);
        assert_eq!(small.iter().map(|(_, d)| d.len()).collect::<Vec<_>>(), vec![1, 1, 1]);
        let one = waves(&devices[..1], &[10, 50, 100]);
        assert_eq!(one.iter().map(|(_, d)| d.len()).collect::<Vec<_>>(), vec![1, 0, 0]);
        let all: Vec<String> = w.into_iter().flat_map(|(_, d)| d).collect();
        assert_eq!(all, devices);
    }

    #[test]
    fn order_is_by_hash_not_by_name_and_stable() {
        let a = rollout_order(["pi-001", "pi-002", "pi-003", "nuc-001"]);
        let b = rollout_order(["nuc-001", "pi-003", "pi-002", "pi-001"]);
        assert_eq!(a, b);
        let mut sorted = a.clone();
        sorted.sort();
        assert_ne!(a, sorted, "hash order differs from name order for these ids");
    }

    #[test]
    fn only_changed_rolled_out_deployments_make_a_rollout() {
        let before = fleet(20, "hub:1", "0.1.0");
        let observed = observed_of(&before);
        let specs = RolloutSpecs { deployments: [("hub".to_string(), spec(&[10, 50, 100]))].into_iter().collect(), agent: None };
        assert_eq!(plan_rollout(&before, &specs, &observed, None), None, "nothing changed");
        // A deployment without a strategy changes: no rollout.
        let mut other = before.clone();
        for p in other.plans.values_mut() {
            p.deployments[1] = dep("other", "x:2");
        }
        assert_eq!(plan_rollout(&other, &specs, &observed, None), None);
        let after = fleet(20, "hub:2", "0.1.0");
        let r = plan_rollout(&after, &specs, &observed, None).expect("a rollout");
        assert_eq!(r.what, vec!["deployment hub"]);
        assert_eq!(r.waves.iter().map(|(p, d)| (*p, d.len())).collect::<Vec<_>>(), vec![(10, 2), (50, 8), (100, 10)]);
        // Deterministic, and the id names the desired content.
        assert_eq!(plan_rollout(&after, &specs, &observed, None), Some(r.clone()));
        let r3 = plan_rollout(&fleet(20, "hub:3", "0.1.0"), &specs, &observed, None).expect("a rollout");
        assert_ne!(r3.id, r.id);
        assert_eq!(r3.waves, r.waves);
        // An agent-version change: every device, the agent default strategy.
        let upgrade = plan_rollout(&fleet(20, "hub:1", "0.2.0"), &specs, &observed, None).expect("a rollout");
        assert_eq!(upgrade.what, vec!["agent 0.2.0"]);
        assert_eq!(upgrade.waves.len(), 1);
        assert_eq!(upgrade.spec.max_failed, 0);
    }

    #[test]
    fn an_interrupted_rollout_resumes_with_the_same_waves() {
        let before = fleet(20, "hub:1", "0.1.0");
        let after = fleet(20, "hub:2", "0.1.0");
        let specs = RolloutSpecs { deployments: [("hub".to_string(), spec(&[10, 50, 100]))].into_iter().collect(), agent: None };
        let r = plan_rollout(&after, &specs, &observed_of(&before), None).expect("rollout");
        // Wave 1 was written before the interruption.
        let mut mid = before.clone();
        for d in &r.waves[0].1 {
            mid.plans.insert(d.clone(), after.plans[d].clone());
        }
        let again = plan_rollout(&after, &specs, &observed_of(&mid), None).expect("rollout");
        assert_eq!((again.id.as_str(), &again.waves), (r.id.as_str(), &r.waves));
        // Everything written, nothing left but waiting: resumed from the record.
        let record = RolloutRecord {
            version: 1,
            fleet: "pico".into(),
            id: r.id.clone(),
            source_revision: "r".into(),
            what: r.what.clone(),
            state: RolloutState::InProgress,
            max_failed: 1,
            health_timeout_s: 60,
            auto_revert: true,
            waves: vec![],
            previous: BTreeMap::new(),
            failed: vec![],
            started_ms: 0,
            updated_ms: 0,
        };
        let done = observed_of(&after);
        assert_eq!(plan_rollout(&after, &specs, &done, Some(&record)).map(|p| p.id), Some(r.id.clone()));
        let finished = RolloutRecord { state: RolloutState::Complete, ..record };
        assert_eq!(plan_rollout(&after, &specs, &done, Some(&finished)), None);
    }

    #[test]
    fn health_from_status_and_heartbeat() {
        let mut e = Expect { device: "d".into(), generation: 4, agent_version: "0.2.0".into(), digest: None };
        let now = 1_000_000;
        let fresh = Duration::from_secs(10);
        let status = |applied: u64, state: DeviceState, agent: &str| DeviceStatus {
            version: 1,
            device_id: "d".into(),
            agent_version: agent.into(),
            applied_generation: Some(applied),
            applied_source_revision: None,
            state,
            deployments: vec![],
            last_error: None,
            rejections: vec![],
            upgrade: None,
            trusted_keys: vec![],
            generation_floor: None,
            observed_at_ms: None,
            drift: vec![],
            updated_at_ms: now,
        };
        let hb = |agent: &str, at: u64| {
            (
                Heartbeat {
                    version: 1,
                    device_id: "d".into(),
                    agent_version: agent.into(),
                    uptime_s: 1,
                    labels: Default::default(),
                    applied_generation: Some(4),
                    observed_at_ms: None,
                    timestamp_ms: at,
                },
                at,
            )
        };
        assert!(matches!(device_health(&e, None, None, now, fresh, SETTLE), Health::Pending(_)));
        assert!(matches!(device_health(&e, Some(&status(3, DeviceState::Applied, "0.2.0")), Some(&hb("0.2.0", now)), now, fresh, SETTLE), Health::Pending(_)));
        assert_eq!(device_health(&e, Some(&status(4, DeviceState::Applied, "0.2.0")), Some(&hb("0.2.0", now)), now, fresh, SETTLE), Health::Healthy);
        assert!(matches!(device_health(&e, Some(&status(4, DeviceState::Applied, "0.2.0")), Some(&hb("0.2.0", now - 20_000)), now, fresh, SETTLE), Health::Pending(_)));
        assert!(matches!(device_health(&e, Some(&status(4, DeviceState::Applied, "0.1.0")), Some(&hb("0.1.0", now)), now, fresh, SETTLE), Health::Pending(_)));
        // Degraded: the step keeps waiting (a crash loop may recover), failing only at its deadline.
        assert!(matches!(device_health(&e, Some(&status(4, DeviceState::Degraded, "0.2.0")), Some(&hb("0.2.0", now)), now, fresh, SETTLE), Health::Degraded(_)));
        // Applied, but a service is not running (it stopped after its start): not healthy yet.
        let container = |name: &str, kind: ContainerKind, state: ContainerState| ContainerStatus {
            name: name.into(),
            kind,
            state,
            container_id: None,
            spec_hash: "h".into(),
            exit_code: None,
            observed: None,
        };
        let mut stopped = status(4, DeviceState::Applied, "0.2.0");
        stopped.deployments.push(DeploymentStatus {
            name: "web".into(),
            spec_hash: "h".into(),
            state: DeploymentState::Running,
            failure: None,
            containers: vec![
                container("migrate", ContainerKind::Init, ContainerState::Completed),
                container("app", ContainerKind::Service, ContainerState::Stopped),
            ],
        });
        let Health::Pending(why) = device_health(&e, Some(&stopped), Some(&hb("0.2.0", now)), now, fresh, SETTLE) else { panic!("a stopped service is not healthy") };
        assert_eq!(why, "generation 4: not running: web/app stopped");
        stopped.deployments[0].containers[1].state = ContainerState::Running;
        assert_eq!(device_health(&e, Some(&stopped), Some(&hb("0.2.0", now)), now, fresh, SETTLE), Health::Healthy);
        // An observing agent: healthy only once a look at podman shows the service running for SETTLE.
        let mut observed = stopped.clone();
        observed.observed_at_ms = Some(now);
        let Health::Pending(why) = device_health(&e, Some(&observed), Some(&hb("0.2.0", now)), now, fresh, SETTLE) else { panic!("not observed running") };
        assert_eq!(why, "generation 4: settling (10 s): web/app not observed running");
        let seen = |since: u64| Observed { runtime_state: "running".into(), image_id: None, spec_hash: None, restart_count: 0, running_since_ms: Some(since), back_off_until_ms: None };
        observed.deployments[0].containers[1].observed = Some(seen(now - 3_000));
        let Health::Pending(why) = device_health(&e, Some(&observed), Some(&hb("0.2.0", now)), now, fresh, SETTLE) else { panic!("not settled") };
        assert_eq!(why, "generation 4: settling (10 s): web/app running for 3 s");
        observed.deployments[0].containers[1].observed = Some(seen(now - 10_000));
        assert_eq!(device_health(&e, Some(&observed), Some(&hb("0.2.0", now)), now, fresh, SETTLE), Health::Healthy);
        // The rollout's `settle`: 30 s asked for, 10 s run.
        let Health::Pending(why) = device_health(&e, Some(&observed), Some(&hb("0.2.0", now)), now, fresh, Duration::from_secs(30)) else { panic!("not settled") };
        assert_eq!(why, "generation 4: settling (30 s): web/app running for 10 s");
        // A failed init container is not run again for this plan: failed at once.
        let mut init_failed = status(4, DeviceState::Degraded, "0.2.0");
        init_failed.deployments.push(DeploymentStatus {
            name: "web".into(),
            spec_hash: "h".into(),
            state: DeploymentState::Failed,
            failure: Some(DeploymentFailure::InitExited { container: "migrate".into(), exit_code: 3 }),
            containers: vec![container("migrate", ContainerKind::Init, ContainerState::Failed)],
        });
        let Health::Failed(why) = device_health(&e, Some(&init_failed), Some(&hb("0.2.0", now)), now, fresh, SETTLE) else { panic!("a failed init container fails") };
        assert!(why.contains("generation 4 degraded") && why.contains("exited with code 3"), "{why}");
        let mut rejected = status(3, DeviceState::Applied, "0.1.0");
        rejected.rejections.push(Rejection { generation: Some(4), reason: RejectionReason::BadSignature, at_ms: now, digest: Some("sha256:forged".into()) });
        let Health::Failed(why) = device_health(&e, Some(&rejected), Some(&hb("0.1.0", now)), now, fresh, SETTLE) else { panic!("rejection is a failure") };
        assert!(why.contains("rejected generation 4"), "{why}");
        // The entry written is another one than the forgery of the same generation the agent rejected.
        e.digest = Some("sha256:written".into());
        assert!(matches!(device_health(&e, Some(&rejected), Some(&hb("0.1.0", now)), now, fresh, SETTLE), Health::Pending(_)));
        e.digest = Some("sha256:forged".into());
        assert!(matches!(device_health(&e, Some(&rejected), Some(&hb("0.1.0", now)), now, fresh, SETTLE), Health::Failed(_)));
    }
}
