//! Executing a plan: the one pipeline `harmony apply PLANFILE` runs (docs/plan.md#apply-planfile,
//! docs/adr/0013). Nothing is re-planned and nothing is read from the repository: each action's
//! [`Payload`] says what to write, releases are rendered from the plan's charts with the plan's
//! `.Release`/`.Capabilities` and written only when the render has the planned manifest
//! fingerprint. Before anything is written the plan is verified (identity, seal, key,
//! repository, each cluster's context still leading to the planned API server); before each
//! action its target is compared with the revision it was planned against, and an action whose
//! target moved (or whose `secret-value` changed) is refused as stale while the others proceed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use harmony_compiler::compile::SecretRef;
use harmony_compiler::model::SecretSource;
use harmony_compiler::validate::PodSecurityLevel;
use harmony_planner::FingerprintKey;
use harmony_planner::redact::Needles;
use harmony_planner::render::{ReleaseInput, RenderContext, SecretValues};
use harmony_schemas::plan::*;

use crate::kube::lock::ClusterLock;
use crate::kube::observe::ClusterObservation;
use crate::kube::record::Status;
use crate::kube::release::{self, Desired};
use crate::kube::tenant::{self, Access};
use crate::kube::{Cluster, KubeError};

/// What writing a fleet's device plans needs: its NATS connection and its private key.
#[derive(Clone)]
pub struct FleetAccess {
    /// How to reach the fleet's NATS servers (with write credentials).
    pub nats: crate::fleet::NatsOptions,
    /// The fleet's signing key (plans are signed at apply: planning never needs it).
    pub signing_key: ed25519_dalek::SigningKey,
    /// The fleet lock's TTL and wait.
    pub lock: crate::fleet::LockOptions,
    /// Where the apply journal is kept (`None`: no journal).
    pub state_dir: Option<PathBuf>,
    /// Called with the rollout record after every step of a planned rollout.
    pub rollout_progress: Option<crate::fleet::run::RolloutProgress>,
    /// How often statuses are read while a rollout step is waited for (default 500 ms).
    pub rollout_poll: Option<std::time::Duration>,
    /// Writes in flight at once, and a progress callback.
    pub writes: crate::fleet::ApplyOptions,
    /// The fleet's revocations and signing-key chain as the auth directory holds them now
    /// (`None`: no auth directory for the fleet): a device revoked, or a chain changed, since
    /// planning is not written to.
    pub security: Option<crate::fleet::security::FleetSecurity>,
}

/// How to execute a plan.
#[derive(Clone)]
pub struct ExecuteOptions {
    /// kubeconfig file (`None`: `KUBECONFIG`, then `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
    /// Release options (wait, history limit…).
    pub release: release::Options,
    /// Who takes the clusters' locks (this process).
    pub holder: crate::lock::LockHolder,
    /// The clusters' lock TTL and how long to wait for a held one (`--lock-timeout`).
    pub lock: crate::lock::LockOptions,
    /// `--refuse-stale=all`: check every action first and write nothing if any is stale.
    pub refuse_stale_all: bool,
    /// Stop at the first action that fails: the rest are skipped.
    pub fail_fast: bool,
    /// The fingerprint key the plan must have been made (and sealed) with.
    pub key: FingerprintKey,
    /// The name of the repository the applier works in (`--repo`), when it declares one.
    pub repository: Option<String>,
    /// Per fleet the plan writes to: how (`None` for a fleet: the plan is refused).
    pub fleets: BTreeMap<String, FleetAccess>,
    /// Asks the apply to stop (Ctrl-C, SIGTERM).
    pub stop: Stop,
    /// Told what happens as it happens ([`Event`]): each unit's result once it is final.
    pub observer: Option<Observer>,
}

/// What an apply tells its [`ExecuteOptions::observer`] as it runs. Every action's result is
/// reported exactly once, as [`Event::Finished`], and is the one the [`ApplyOutcome`] lists.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// The plan verified and the clusters were locked: `units` results follow.
    Started {
        /// Actions of the plan.
        units: usize,
    },
    /// Work began: a cluster action (its unit id) or a fleet's writes (`fleet NAME`).
    Running(&'a str),
    /// That work ended (its results are reported as they are final, before or at this).
    Ended(&'a str),
    /// A unit's result, final: a cluster action once written (or refused), a device plan once
    /// written or, in a rollout step, once the step's health gate decided.
    Finished(&'a ActionResult),
}

/// [`ExecuteOptions::observer`].
pub type Observer = std::sync::Arc<dyn Fn(Event<'_>) + Send + Sync>;

/// Reports each action's result once ([`Event::Finished`]) and remembers it: the outcome lists
/// what was reported.
struct Reporter {
    observer: Option<Observer>,
    sent: std::sync::Mutex<Vec<Option<ActionResult>>>,
}

impl Reporter {
    fn new(observer: Option<Observer>, units: usize) -> Reporter {
        Reporter { observer, sent: std::sync::Mutex::new(vec![None; units]) }
    }

    fn tell(&self, e: Event<'_>) {
        if let Some(o) = &self.observer {
            o(e);
        }
    }

    /// Reports action `i`'s result unless it was reported already.
    fn finished(&self, i: usize, r: &ActionResult) {
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot @ None) = sent.get_mut(i) {
            *slot = Some(r.clone());
            drop(sent);
            self.tell(Event::Finished(r));
        }
    }

    /// The result reported for action `i`, if any.
    fn reported(&self, i: usize) -> Option<ActionResult> {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).get(i).cloned().flatten()
    }
}

/// How long a unit (a release, a fleet's writes) still running when the apply is asked to stop
/// may take to finish before it is abandoned and reported interrupted.
pub const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Asks a running apply to stop ([`Stop::stop`]): no unit starts after it; one running gets
/// [`STOP_GRACE`] to finish, then is abandoned (reported failed: interrupted); locks are then
/// released as after any apply.
#[derive(Clone)]
pub struct Stop(std::sync::Arc<tokio::sync::watch::Sender<bool>>);

impl Default for Stop {
    fn default() -> Self {
        Stop(std::sync::Arc::new(tokio::sync::watch::Sender::new(false)))
    }
}

impl Stop {
    /// Stops the apply.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }

    /// Whether it was asked to stop.
    pub fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }

    /// `unit`, unless the apply is asked to stop and it does not finish within [`STOP_GRACE`] (`None`).
    async fn bounded<T>(&self, unit: impl std::future::Future<Output = T>) -> Option<T> {
        let mut rx = self.0.subscribe();
        tokio::select! {
            r = unit => Some(r),
            _ = async { let _ = rx.wait_for(|s| *s).await; tokio::time::sleep(STOP_GRACE).await } => None,
        }
    }
}

const NOT_STARTED: &str = "not started: the apply was interrupted (Ctrl-C or SIGTERM)";
const INTERRUPTED: &str = "interrupted while running (Ctrl-C or SIGTERM) and abandoned after the grace period; the next apply finds it and goes on from where it stopped";

/// A check's verdict on one action.
enum Verdict {
    Go,
    Stale { message: String, expected: Option<String>, found: Option<String> },
    Fail(String),
}

/// A write's failure (`?` on a `String` error in [`write`]).
impl From<String> for Verdict {
    fn from(m: String) -> Verdict {
        Verdict::Fail(m)
    }
}

impl From<&str> for Verdict {
    fn from(m: &str) -> Verdict {
        Verdict::Fail(m.to_string())
    }
}

fn stale(message: impl Into<String>, expected: impl Into<String>, found: impl Into<String>) -> Verdict {
    Verdict::Stale { message: message.into(), expected: Some(expected.into()), found: Some(found.into()) }
}

/// One cluster while the plan is executed: its admin connection (with the seal key), its lock
/// and what it holds of tenants.
struct Conn {
    admin: Cluster,
    lock: Option<ClusterLock>,
    obs: ClusterObservation,
}

fn cluster_of(p: &Payload) -> Option<&str> {
    match p {
        Payload::Release(r) => Some(&r.target.cluster),
        Payload::ReleaseDelete(t) | Payload::ReleaseRepair(t) => Some(&t.cluster),
        Payload::TenantAccess(t) => Some(&t.cluster),
        Payload::TenantAccessDelete(t) => Some(&t.cluster),
        Payload::DevicePlan(_) | Payload::DevicePlanDelete(_) | Payload::Agent(_) => None,
    }
}

fn result(a: &PlannedAction, outcome: Outcome, message: impl Into<String>) -> ActionResult {
    ActionResult { unit: a.unit.clone(), action: a.apply.action, outcome, message: message.into(), expected: None, found: None }
}

fn outcome_of(plan: &PlanFile, refused: Option<String>, actions: Vec<ActionResult>) -> ApplyOutcome {
    ApplyOutcome {
        kind: APPLY_OUTCOME_KIND.to_string(),
        format_version: APPLY_OUTCOME_FORMAT_VERSION,
        plan_identity: plan.identity.clone(),
        refused,
        actions,
        fleets: Vec::new(),
    }
}

/// Resolves a plan's `secret-value` reference with the one resolver
/// ([`crate::kube::apply::resolve_secret`]).
fn resolve(r: &SecretValueRef) -> Result<String, String> {
    let from = SecretSource::parse(&r.from)
        .ok_or_else(|| format!("secret-value {}: unknown source {:?} (expected env:VAR or file:PATH)", r.key, r.from))?;
    crate::kube::apply::resolve_secret(&SecretRef { key: r.key.clone(), from })
}

/// Executes `plan`. Refuses it whole (nothing written, [`ApplyOutcome::refused`]) when it does
/// not verify or a context leads to another API server; otherwise one result per action.
pub async fn execute(plan: &PlanFile, opts: &ExecuteOptions) -> ApplyOutcome {
    if let Err(e) = harmony_planner::contract::verify(plan, &opts.key, opts.repository.as_deref()) {
        return outcome_of(plan, Some(e.0), Vec::new());
    }
    // A fleet change the plan holds nothing to write for (an agent upgrade to a version that
    // was not published when planning): refuse rather than write half of a plan.
    let fleet_units: Vec<&str> = plan
        .actions
        .iter()
        .filter(|a| a.apply.action != Action::Noop && a.apply.payload.is_none() && is_fleet_unit(a))
        .map(|a| a.unit.as_str())
        .collect();
    if !fleet_units.is_empty() {
        return outcome_of(
            plan,
            Some(format!(
                "plan refused, nothing written: it changes fleet units it holds nothing to write for ({}): an agent upgrade to a version not published when planning? publish it (`harmony fleet publish-agent`) and re-plan",
                fleet_units.join(", ")
            )),
            Vec::new(),
        );
    }
    if let Err(why) = check_fleets(plan, opts) {
        return outcome_of(plan, Some(format!("plan refused, nothing written: {why}")), Vec::new());
    }
    // Connect to every cluster an action writes to and check it is the planned one, before
    // anything is written anywhere.
    let clusters: BTreeSet<&str> = plan.actions.iter().filter_map(|a| a.apply.payload.as_ref().and_then(cluster_of)).collect();
    let mut conns: BTreeMap<String, Result<Conn, String>> = BTreeMap::new();
    for name in &clusters {
        let Some(target) = plan.targets.clusters.get(*name) else {
            return outcome_of(plan, Some(format!("plan refused, nothing written: cluster {name} is not among the plan's targets")), Vec::new());
        };
        let admin = match Cluster::from_kubeconfig(opts.kubeconfig.as_deref(), &target.context).await {
            Ok(a) => a,
            Err(e) => {
                conns.insert(name.to_string(), Err(format!("cluster {name} (context {}): {e}", target.context)));
                continue;
            }
        };
        if let Some(server) = &target.server
            && admin.url() != *server
        {
            return outcome_of(
                plan,
                Some(format!(
                    "plan refused, nothing written: cluster {name}: context {} leads to {}, but the plan was made against {server}",
                    target.context,
                    admin.url()
                )),
                Vec::new(),
            );
        }
        conns.insert(name.to_string(), Ok(Conn { admin, lock: None, obs: ClusterObservation::default() }));
    }
    // Lock each cluster, load its seal key, read its tenants.
    for (name, conn) in conns.iter_mut() {
        let Ok(c) = conn else { continue };
        let prepared = async {
            if let Err(e) = c.admin.client().apiserver_version().await {
                return Err(KubeError::Unreachable(format!("cannot reach the API server at {}: {}", c.admin.url(), crate::kube::error_chain(&e))));
            }
            c.lock = Some(ClusterLock::acquire(&c.admin, &opts.holder, opts.lock).await?);
            c.admin.set_seal_key(crate::kube::seal::load_or_create(&c.admin).await?);
            c.obs = crate::kube::observe::observe_cluster(&c.admin).await?;
            Ok::<_, KubeError>(())
        };
        let prepared = opts.stop.bounded(prepared).await.unwrap_or_else(|| Err(KubeError::Release(NOT_STARTED.into())));
        if let Err(e) = prepared {
            if let Some(l) = c.lock.take() {
                let _ = l.release(&c.admin).await;
            }
            *conn = Err(format!("cluster {name}: {e}"));
        }
    }
    let reporter = std::sync::Arc::new(Reporter::new(opts.observer.clone(), plan.actions.len()));
    reporter.tell(Event::Started { units: plan.actions.len() });
    let (results, fleets) = run(plan, opts, &conns, &reporter).await;
    // What was not reported as it finished (`--refuse-stale=all`'s verdicts, a fleet's skipped
    // devices), in plan order.
    for (i, r) in results.iter().enumerate() {
        reporter.finished(i, r);
    }
    for (name, conn) in conns {
        if let Ok(c) = conn
            && let Some(l) = c.lock
            && let Err(e) = l.release(&c.admin).await
        {
            tracing::warn!("cluster {name}: releasing the apply lock: {e}");
        }
    }
    ApplyOutcome { fleets, ..outcome_of(plan, None, results) }
}

async fn run(plan: &PlanFile, opts: &ExecuteOptions, conns: &BTreeMap<String, Result<Conn, String>>, reporter: &std::sync::Arc<Reporter>) -> (Vec<ActionResult>, Vec<FleetOutcome>) {
    if opts.refuse_stale_all {
        let mut stale_units = Vec::new();
        let mut results = Vec::new();
        let kv_now = kv_revisions(plan, opts).await;
        let moved = rollouts_moved(plan, opts).await;
        for a in &plan.actions {
            let moved = a.apply.payload.as_ref().and_then(fleet_of).and_then(|f| moved.get(f));
            if let Some(r) = revoked_since_planning(a, opts) {
                stale_units.push(a.unit.clone());
                results.push(r);
            } else if let Some((fleet, expected, found)) = moved
                && a.apply.action != Action::Noop
            {
                let e = crate::fleet::FleetError::RolloutMoved { fleet: fleet.clone(), expected: *expected, found: *found };
                stale_units.push(a.unit.clone());
                results.push(ActionResult {
                    expected: Some(format!("rollout record {}", crate::fleet::revision(*expected))),
                    found: Some(format!("rollout record {}", crate::fleet::revision(*found))),
                    ..result(a, Outcome::Stale, e.to_string())
                });
            } else if let Some(Some(found)) = kv_now.get(a.unit.as_str())
                && *found != kv_revision(a)
            {
                let rev = |r: Option<u64>| r.map_or_else(|| "no entry".to_string(), |r| format!("KV revision {r}"));
                stale_units.push(a.unit.clone());
                results.push(ActionResult {
                    expected: Some(rev(kv_revision(a))),
                    found: Some(rev(*found)),
                    ..result(a, Outcome::Stale, format!("{}: the device's plan entry moved since planning", a.unit))
                });
            } else if let Some(Ok(conn)) = a.apply.payload.as_ref().and_then(cluster_of).and_then(|c| conns.get(c))
                && let Verdict::Stale { message, expected, found } = check(plan, a, conn, opts).await.0
            {
                stale_units.push(a.unit.clone());
                results.push(ActionResult { expected, found, ..result(a, Outcome::Stale, message) });
            } else {
                results.push(result(a, Outcome::Skipped, String::new()));
            }
        }
        if !stale_units.is_empty() {
            let n = stale_units.len();
            for r in results.iter_mut().filter(|r| r.outcome == Outcome::Skipped) {
                r.message = format!("not written: --refuse-stale=all and {n} action(s) are stale ({})", stale_units.join(", "));
            }
            return (results, Vec::new());
        }
    }
    let mut out: Vec<ActionResult> = Vec::new();
    let mut not_applied: BTreeSet<String> = BTreeSet::new();
    let mut fleets = Vec::new();
    for (i, a) in plan.actions.iter().enumerate() {
        if let Some(fleet) = a.apply.payload.as_ref().and_then(fleet_of) {
            // Written per fleet below, in one batch under the fleet's lock.
            out.push(result(a, Outcome::Skipped, fleet.to_string()));
            continue;
        }
        let lost = a.apply.payload.as_ref().and_then(cluster_of).filter(|c| matches!(conns.get(*c), Some(Ok(Conn { lock: Some(l), .. })) if l.lost()));
        let r = if opts.fail_fast && out.iter().any(|r| r.outcome == Outcome::Failed) {
            result(a, Outcome::Skipped, "stopped: an earlier unit failed (--fail-fast)")
        } else if opts.stop.is_stopped() {
            result(a, Outcome::Skipped, NOT_STARTED)
        } else if let Some(c) = lost {
            result(a, Outcome::Failed, format!("not started: the apply lock of cluster {c} was lost (its Lease changed, was removed or could not be renewed); apply again"))
        } else if a.apply.action == Action::Noop && a.apply.payload.is_none() {
            execute_action(plan, a, opts, conns, &not_applied).await
        } else {
            reporter.tell(Event::Running(&a.unit));
            let r = opts.stop.bounded(execute_action(plan, a, opts, conns, &not_applied)).await.unwrap_or_else(|| result(a, Outcome::Failed, INTERRUPTED));
            reporter.tell(Event::Ended(&a.unit));
            r
        };
        if !matches!(r.outcome, Outcome::Applied | Outcome::Noop) {
            not_applied.insert(a.unit.clone());
        }
        // A fleet's unchanged device (no payload) is reported with its fleet: a rollout waits
        // for it too.
        if !is_fleet_unit(a) {
            reporter.finished(i, &r);
        }
        out.push(r);
    }
    for (fleet, access) in &opts.fleets {
        let rollout = plan.rollouts.iter().find(|r| r.fleet == *fleet);
        let mine: Vec<usize> = plan.actions.iter().enumerate().filter(|(_, a)| a.apply.payload.as_ref().and_then(fleet_of) == Some(fleet.as_str())).map(|(i, _)| i).collect();
        if mine.is_empty() && rollout.is_none() {
            continue;
        }
        let mut batch = Vec::new();
        for &i in &mine {
            let a = &plan.actions[i];
            if matches!(a.apply.payload, Some(Payload::Agent(_))) {
                continue;
            }
            if let Some(r) = revoked_since_planning(a, opts) {
                reporter.finished(i, &r);
                out[i] = r;
                continue;
            }
            match a.apply.depends_on.iter().find(|d| not_applied.contains(*d)) {
                Some(dep) => {
                    out[i] = result(a, Outcome::Skipped, format!("not written: it depends on {dep}, which was not applied"));
                    reporter.finished(i, &out[i]);
                }
                None => batch.push(i),
            }
        }
        // A rollout also waits for its devices that this plan leaves unchanged (written by an
        // interrupted apply it resumes).
        let unchanged: Vec<usize> = match rollout {
            None => Vec::new(),
            Some(r) => {
                let members: BTreeSet<&str> = r.steps.iter().flat_map(|s| s.devices.iter().map(String::as_str)).collect();
                plan.actions
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| a.apply.action == Action::Noop && a.apply.payload.is_none())
                    .filter(|(_, a)| a.unit.strip_prefix(&format!("device-plan/{fleet}/")).is_some_and(|d| members.contains(d)))
                    .map(|(i, _)| i)
                    .collect()
            }
        };
        let (results, fleet_outcome) = if opts.stop.is_stopped() {
            (batch.iter().map(|&i| (i, result(&plan.actions[i], Outcome::Skipped, NOT_STARTED))).collect(), FleetOutcome { fleet: fleet.clone(), interrupted: None, rollout: None, reverted: Vec::new() })
        } else {
            let what = format!("fleet {fleet}");
            reporter.tell(Event::Running(&what));
            let r = opts.stop.bounded(execute_fleet(plan, fleet, access, &batch, &unchanged, rollout, &opts.stop, &opts.holder, reporter)).await.unwrap_or_else(|| {
                (batch.iter().map(|&i| (i, result(&plan.actions[i], Outcome::Failed, INTERRUPTED))).collect(), FleetOutcome { fleet: fleet.clone(), interrupted: None, rollout: None, reverted: Vec::new() })
            });
            reporter.tell(Event::Ended(&what));
            r
        };
        // What was reported as it finished stands (a write done before the fleet's apply was
        // abandoned was done).
        for (i, r) in results {
            out[i] = reporter.reported(i).unwrap_or(r);
        }
        fleets.push(fleet_outcome);
        // An agent unit's outcome is its device plan's (the plan names the version and artifact).
        for &i in &mine {
            let a = &plan.actions[i];
            let Some(Payload::Agent(d)) = &a.apply.payload else { continue };
            let unit = format!("device-plan/{}/{}", d.fleet, d.device);
            out[i] = match plan.actions.iter().position(|x| x.unit == unit) {
                Some(j) => ActionResult { unit: a.unit.clone(), action: a.apply.action, message: format!("written by {unit}: {}", out[j].message), ..out[j].clone() },
                None => result(a, Outcome::Failed, format!("the plan holds no {unit} to write it")),
            };
        }
        for &i in mine.iter().chain(&unchanged) {
            reporter.finished(i, &out[i]);
        }
    }
    (out, fleets)
}

/// A device plan for a device revoked since planning (`harmony fleet revoke`), or signed under a
/// key chain the auth directory no longer holds (`harmony fleet rotate-signing-key`): refused as
/// stale (the revocation and trust state are read at apply, from the fleet's auth directory).
fn revoked_since_planning(a: &PlannedAction, opts: &ExecuteOptions) -> Option<ActionResult> {
    let Some(Payload::DevicePlan(d)) = &a.apply.payload else { return None };
    let security = opts.fleets.get(&d.target.fleet)?.security.as_ref()?;
    let stale = |message: String, expected: &str, found: &str| ActionResult {
        expected: Some(expected.to_string()),
        found: Some(found.to_string()),
        ..result(a, Outcome::Stale, message)
    };
    if security.is_revoked(&d.target.device) {
        return Some(stale(
            format!("{}: device {} was revoked since planning (`harmony fleet revoke`): its plan is not written", a.unit, d.target.device),
            "device enrolled",
            "device revoked",
        ));
    }
    if security.chain() != d.plan.key_chain.as_slice() {
        let links = |n: usize| format!("signing-key chain of {n} link(s)");
        return Some(stale(
            format!("{}: fleet {}'s signing-key chain changed since planning (`harmony fleet rotate-signing-key`)", a.unit, d.target.fleet),
            &links(d.plan.key_chain.len()),
            &links(security.chain().len()),
        ));
    }
    None
}

/// A fleet's unit (a device plan or an agent), whether or not the plan holds a payload for it.
fn is_fleet_unit(a: &PlannedAction) -> bool {
    matches!(a.unit.split('/').next(), Some("device-plan" | "agent"))
}

fn fleet_of(p: &Payload) -> Option<&str> {
    match p {
        Payload::DevicePlan(d) => Some(&d.target.fleet),
        Payload::DevicePlanDelete(d) => Some(&d.fleet),
        Payload::Agent(d) => Some(&d.fleet),
        _ => None,
    }
}

fn kv_revision(a: &PlannedAction) -> Option<u64> {
    match &a.apply.observed {
        Some(ObservedRevision::KvEntry { revision }) => Some(*revision),
        _ => None,
    }
}

/// Before anything is written: every fleet the plan writes to has a connection and a signing key
/// that is the plan's (the fleet's key, or the current key of the chain its plans carry).
fn check_fleets(plan: &PlanFile, opts: &ExecuteOptions) -> Result<(), String> {
    let mut chains: BTreeMap<&str, &Vec<harmony_schemas::trust::SignedKeyAnnouncement>> = BTreeMap::new();
    let mut fleets: BTreeSet<&str> = BTreeSet::new();
    for a in &plan.actions {
        match &a.apply.payload {
            Some(Payload::DevicePlan(d)) => {
                fleets.insert(&d.target.fleet);
                chains.insert(&d.target.fleet, &d.plan.key_chain);
            }
            Some(Payload::DevicePlanDelete(d)) => _ = fleets.insert(&d.fleet),
            _ => {}
        }
    }
    fleets.extend(plan.rollouts.iter().map(|r| r.fleet.as_str()));
    for fleet in fleets {
        let target = plan.targets.fleets.get(fleet).ok_or_else(|| format!("fleet {fleet} is not among the plan's targets"))?;
        let access = opts.fleets.get(fleet).ok_or_else(|| format!("fleet {fleet}: no signing key or NATS connection was given for it"))?;
        let chain = chains.get(fleet).map(|c| (*c).clone()).unwrap_or_default();
        crate::fleet::security::FleetSecurity::with_chain(fleet, chain)
            .check_signing_key(&access.signing_key, fleet, &target.signing_key)
            .map_err(|e| format!("fleet {fleet}: {e}"))?;
    }
    Ok(())
}

/// Writes one fleet's device plans from the plan: under the fleet's lock, journalled, each with
/// compare-and-set against the KV revision it was planned against (not a fresh read). With a
/// planned rollout, through the fleet runner's waves (`crate::fleet::rollout::run_waves`): what
/// is not rolled out first, then each planned step, health-gated, halting (and reverting) as
/// planned, resuming the fleet's unfinished record of the same rollout; `unchanged` are the
/// rollout's devices this plan does not write (waited for like the others). Also returns what
/// the fleet's apply found and left beyond the actions (an unfinished earlier apply, the rollout's end).
#[allow(clippy::too_many_arguments)]
async fn execute_fleet(
    plan: &PlanFile,
    fleet: &str,
    access: &FleetAccess,
    batch: &[usize],
    unchanged: &[usize],
    rollout: Option<&PlannedRollout>,
    stop: &Stop,
    holder: &crate::lock::LockHolder,
    reporter: &std::sync::Arc<Reporter>,
) -> (Vec<(usize, ActionResult)>, FleetOutcome) {
    use crate::fleet::{FleetAction, FleetOp};
    let all: Vec<usize> = batch.iter().chain(unchanged).copied().collect();
    let mut fleet_outcome = FleetOutcome { fleet: fleet.to_string(), interrupted: None, rollout: None, reverted: Vec::new() };
    let fail = |m: String, o: FleetOutcome| (all.iter().map(|&i| (i, result(&plan.actions[i], Outcome::Failed, format!("fleet {fleet}: {m}")))).collect::<Vec<_>>(), o);
    let mut actions = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for &i in &all {
        let a = &plan.actions[i];
        let (device, op, device_plan) = match &a.apply.payload {
            Some(Payload::DevicePlan(d)) => (d.target.device.clone(), if kv_revision(a).is_some() { FleetOp::Update } else { FleetOp::Create }, Some(d.plan.clone())),
            Some(Payload::DevicePlanDelete(d)) => (d.device.clone(), FleetOp::Delete, None),
            None if a.apply.action == Action::Noop => match a.unit.rsplit('/').next() {
                Some(d) => (d.to_string(), FleetOp::Noop, None),
                None => continue,
            },
            _ => continue,
        };
        index.insert(device.clone(), i);
        actions.push(FleetAction { device, op, expected_revision: kv_revision(a), plan: device_plan, reason: a.explain.reason.clone() });
    }
    let client = match crate::fleet::connect(&access.nats).await {
        Ok(c) => c,
        Err(e) => return fail(e.to_string(), fleet_outcome),
    };
    // The keys plans in the bucket may be signed with: the chain the plan's device plans carry.
    let chain = plan
        .actions
        .iter()
        .find_map(|a| match &a.apply.payload {
            Some(Payload::DevicePlan(d)) if d.target.fleet == fleet => Some(d.plan.key_chain.clone()),
            _ => None,
        })
        .unwrap_or_default();
    let trusted = plan
        .targets
        .fleets
        .get(fleet)
        .and_then(|t| harmony_schemas::fleet::parse_public_key(&t.signing_key).ok())
        .and_then(|root| crate::fleet::security::FleetSecurity::with_chain(fleet, chain).observe_keys(root).ok())
        .unwrap_or_default();
    let source_revision = harmony_planner::contract::source_revision(plan);
    let storage = plan.targets.fleets.get(fleet).map(|t| t.storage.clone()).unwrap_or_default();
    let stop = stop.clone();
    // Each device's result reported as its write (or its rollout step) ends.
    let units: BTreeMap<String, (usize, String, Action)> = index.iter().map(|(d, &i)| (d.clone(), (i, plan.actions[i].unit.clone(), plan.actions[i].apply.action))).collect();
    let tell = reporter.clone();
    let on_result: crate::fleet::apply::OnResult = std::sync::Arc::new(move |r, record| {
        if let Some((i, unit, action)) = units.get(&r.device) {
            tell.finished(*i, &device_result(unit, *action, r, record));
        }
    });
    let writer = crate::fleet::run::Writer {
        holder: holder.clone(),
        fleet,
        signing_key: &access.signing_key,
        trusted,
        lock: access.lock.clone(),
        state_dir: access.state_dir.as_deref(),
        opts: crate::fleet::ApplyOptions { halt: Some(std::sync::Arc::new(move || stop.is_stopped())), on_result: Some(on_result), ..access.writes.clone() },
        rollout_progress: access.rollout_progress.clone(),
        rollout_poll: access.rollout_poll,
        source_revision: &source_revision,
        request_timeout: None,
        storage: &storage,
    };
    let planned = rollout.map(crate::fleet::rollout::RolloutPlan::from_planned);
    let w = match crate::fleet::run::write_planned(&client, writer, actions, planned.as_ref()).await {
        Ok(w) => w,
        Err(e @ crate::fleet::FleetError::RolloutMoved { expected, found, .. }) => {
            let (expected, found) = (crate::fleet::revision(expected), crate::fleet::revision(found));
            let stale = |i: usize| match plan.actions[i].apply.action {
                Action::Noop => result(&plan.actions[i], Outcome::Skipped, format!("not waited for: {e}")),
                _ => ActionResult { expected: Some(format!("rollout record {expected}")), found: Some(format!("rollout record {found}")), ..result(&plan.actions[i], Outcome::Stale, e.to_string()) },
            };
            return (all.iter().map(|&i| (i, stale(i))).collect(), fleet_outcome);
        }
        Err(e) => return fail(e.to_string(), fleet_outcome),
    };
    fleet_outcome.interrupted = w.interrupted.map(|i| InterruptedApply { holder: i.holder, started_ms: i.started_ms, writes: i.writes, done: i.done, journal: i.kept_at.display().to_string() });
    let results = fleet_results(plan, &index, w.report, w.rollout.as_ref().map(|(r, _)| r));
    if let Some((record, reverted)) = w.rollout {
        fleet_outcome.rollout = Some(record);
        fleet_outcome.reverted = reverted
            .into_iter()
            .map(|(device, r)| match r {
                Ok(rev) => RevertWrite { device, revision: Some(rev), error: None },
                Err(e) => RevertWrite { device, revision: None, error: Some(e) },
            })
            .collect();
    }
    (results, fleet_outcome)
}

/// One result per action of a fleet from its writes' report and, with a rollout, its record
/// ([`device_result`]); a device the halted (or interrupted) rollout did not reach is skipped.
fn fleet_results(
    plan: &PlanFile,
    index: &BTreeMap<String, usize>,
    report: crate::fleet::ApplyReport,
    record: Option<&harmony_schemas::fleet::RolloutRecord>,
) -> Vec<(usize, ActionResult)> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for r in report.results {
        let Some(&i) = index.get(&r.device) else { continue };
        seen.insert(i);
        let a = &plan.actions[i];
        out.push((i, device_result(&a.unit, a.apply.action, &r, record)));
    }
    if let Some(rec) = record {
        for (device, &i) in index {
            if !seen.contains(&i) {
                let step = rec.waves.iter().position(|w| w.devices.contains(device)).map_or_else(String::new, |s| format!(" (step {})", s + 1));
                let state = crate::fleet::status::kebab(&rec.state);
                out.push((i, result(&plan.actions[i], Outcome::Skipped, format!("not written{step}: the rollout of {} is {state}", rec.what.join(", ")))));
            }
        }
    }
    out
}

/// One device plan's result from its write and, with a rollout, the record as it stood when the
/// device's step ended: a device that failed the health gate is failed (naming the step and
/// why), one whose step was still waited for when the apply was interrupted says so.
fn device_result(unit: &str, action: Action, r: &crate::fleet::apply::ActionResult, record: Option<&harmony_schemas::fleet::RolloutRecord>) -> ActionResult {
    use crate::fleet::ActionOutcome;
    let rev = |r: Option<u64>, none: &str| r.map_or_else(|| none.to_string(), |r| format!("KV revision {r}"));
    let res = |outcome, message: String| ActionResult { unit: unit.to_string(), action, outcome, message, expected: None, found: None };
    let mut out = match &r.outcome {
        ActionOutcome::Written { revision } => res(Outcome::Applied, format!("written, KV revision {revision}")),
        ActionOutcome::Deleted => res(Outcome::Applied, "deleted".into()),
        ActionOutcome::Noop => res(Outcome::Noop, "no change".into()),
        ActionOutcome::Stale { expected, found } => ActionResult {
            expected: Some(rev(*expected, "no entry")),
            found: Some(rev(*found, "no entry")),
            ..res(Outcome::Stale, format!("{unit}: the device's plan entry moved since planning"))
        },
        ActionOutcome::Failed { error } => res(Outcome::Failed, error.clone()),
    };
    let Some(rec) = record else { return out };
    if let Some(f) = rec.failed.iter().find(|f| f.device == r.device)
        && out.outcome != Outcome::Stale
    {
        out.outcome = Outcome::Failed;
        out.message = format!("{}; rollout step {}: {}", out.message, f.wave + 1, f.reason);
    } else if rec.state == harmony_schemas::fleet::RolloutState::InProgress
        && let Some(step) = rec.waves.iter().position(|w| w.state == harmony_schemas::fleet::WaveState::Waiting && w.devices.contains(&r.device))
        && matches!(out.outcome, Outcome::Applied | Outcome::Noop)
    {
        out.message = format!("{}; rollout step {}: not waited for (the apply was interrupted; the next apply resumes the rollout)", out.message, step + 1);
    }
    out
}

/// The fleets whose rollout record moved since planning: (fleet, the planned rollout's
/// `record_revision`, the record's revision now). A fleet that cannot be read now is left to
/// its own apply, which fails it.
async fn rollouts_moved(plan: &PlanFile, opts: &ExecuteOptions) -> BTreeMap<String, (String, Option<u64>, Option<u64>)> {
    let mut out = BTreeMap::new();
    for r in &plan.rollouts {
        let Some(access) = opts.fleets.get(&r.fleet) else { continue };
        let Ok(client) = crate::fleet::connect(&access.nats).await else { continue };
        let Ok(record) = crate::fleet::rollout::observe_record(&client, &r.fleet).await else { continue };
        let found = record.map(|(_, rev)| rev);
        if found != r.record_revision {
            out.insert(r.fleet.clone(), (r.fleet.clone(), r.record_revision, found));
        }
    }
    out
}

/// The KV revision each fleet action's entry has now (`Some(None)`: no entry; absent: not read).
async fn kv_revisions<'a>(plan: &'a PlanFile, opts: &ExecuteOptions) -> BTreeMap<&'a str, Option<Option<u64>>> {
    let mut out = BTreeMap::new();
    for (fleet, access) in &opts.fleets {
        let Ok(client) = crate::fleet::connect(&access.nats).await else { continue };
        let js = async_nats::jetstream::new(client);
        let Ok(store) = js.get_key_value(harmony_schemas::fleet::PLANS_BUCKET).await else { continue };
        for a in &plan.actions {
            let device = match &a.apply.payload {
                Some(Payload::DevicePlan(d)) if d.target.fleet == *fleet => &d.target.device,
                Some(Payload::DevicePlanDelete(d)) if d.fleet == *fleet => &d.device,
                _ => continue,
            };
            let found = match store.entry(device.as_str()).await {
                Ok(Some(e)) if e.operation == async_nats::jetstream::kv::Operation::Put => Some(Some(e.revision)),
                Ok(_) => Some(None),
                Err(_) => None,
            };
            out.insert(a.unit.as_str(), found);
        }
    }
    out
}

async fn execute_action(
    plan: &PlanFile,
    a: &PlannedAction,
    opts: &ExecuteOptions,
    conns: &BTreeMap<String, Result<Conn, String>>,
    not_applied: &BTreeSet<String>,
) -> ActionResult {
    if a.apply.action == Action::Noop && a.apply.payload.is_none() {
        let message = match &a.apply.observed {
            Some(ObservedRevision::HelmRelease { revision, .. }) => format!("unchanged (revision {revision})"),
            _ => "unchanged".to_string(),
        };
        return result(a, Outcome::Noop, message);
    }
    if let Some(dep) = a.apply.depends_on.iter().find(|d| not_applied.contains(*d)) {
        return result(a, Outcome::Skipped, format!("not written: it depends on {dep}, which was not applied"));
    }
    let Some(payload) = &a.apply.payload else {
        return result(a, Outcome::Failed, "the plan holds nothing to write for it (a release whose chart was not rendered)");
    };
    let Some(cluster) = cluster_of(payload) else {
        return result(a, Outcome::Failed, "a fleet unit: written with its fleet's device plans, and its fleet was given no access");
    };
    let conn = match conns.get(cluster) {
        Some(Ok(c)) => c,
        Some(Err(e)) => return result(a, Outcome::Failed, e.clone()),
        None => return result(a, Outcome::Failed, format!("cluster {cluster} was not connected")),
    };
    let (verdict, prepared) = check(plan, a, conn, opts).await;
    // The API server's messages may quote what was written (a 422 quotes an invalid label
    // value): no resolved `secret-value` leaves the executor in a result.
    let needles = prepared.secrets.clone();
    let r = match verdict {
        Verdict::Go => match write(a, payload, conn, opts, prepared).await {
            Ok(m) => result(a, Outcome::Applied, m),
            Err(Verdict::Stale { message, expected, found }) => ActionResult { expected, found, ..result(a, Outcome::Stale, message) },
            Err(Verdict::Fail(m)) => result(a, Outcome::Failed, m),
            Err(Verdict::Go) => result(a, Outcome::Failed, "internal error: a write failed without a reason"),
        },
        Verdict::Stale { message, expected, found } => ActionResult { expected, found, ..result(a, Outcome::Stale, message) },
        Verdict::Fail(m) => result(a, Outcome::Failed, m),
    };
    ActionResult {
        message: needles.scrub(&r.message),
        expected: r.expected.map(|s| needles.scrub(&s)),
        found: r.found.map(|s| needles.scrub(&s)),
        ..r
    }
}

/// What a check prepared for the write: a release's desired record, the user to act as, the
/// `secret-value`s it resolved and what its chart computed from them (verbatim, base64 and
/// quoted: scrubbed from the action's result).
#[derive(Default)]
struct Prepared {
    desired: Option<Desired>,
    user: Option<String>,
    access: Option<Access>,
    secrets: Needles,
}

/// Compares an action's target with what it was planned against and, for a release, resolves
/// its `secret-value`s and renders it from the plan, checking the planned fingerprints.
async fn check(plan: &PlanFile, a: &PlannedAction, conn: &Conn, opts: &ExecuteOptions) -> (Verdict, Prepared) {
    let mut prep = Prepared::default();
    let verdict = match a.apply.payload.as_ref() {
        Some(Payload::Release(r)) => {
            let user = r.target.impersonate.clone().unwrap_or_default();
            let mut v = check_release(a, &r.target, &user, conn, false).await;
            // The planned drift of a release whose render may leave it as deployed: repaired
            // only as planned, as a release-repair payload is.
            if matches!(v, Verdict::Go) && !a.apply.drift.is_empty() {
                v = check_drift(a, &r.target, conn);
            }
            if !matches!(v, Verdict::Go) {
                return (v, prep);
            }
            match prepare_release(plan, a, r, &opts.key, &mut prep.secrets) {
                Ok(d) => {
                    prep.desired = Some(d);
                    prep.user = Some(user);
                    Verdict::Go
                }
                Err(v) => v,
            }
        }
        Some(Payload::ReleaseDelete(t)) => match t.impersonate.clone().or_else(|| conn.obs.namespace_user(&t.namespace)) {
            None => Verdict::Fail(format!(
                "not uninstalled: namespace {} belongs to no tenant on this cluster any more (or its ServiceAccount is gone), and Harmony uninstalls a release only as its namespace's tenant; `helm uninstall {} -n {}` removes it",
                t.namespace, t.name, t.namespace
            )),
            Some(user) => {
                let v = check_release(a, t, &user, conn, true).await;
                prep.user = Some(user);
                v
            }
        },
        Some(Payload::ReleaseRepair(t)) => {
            let user = t.impersonate.clone().unwrap_or_default();
            let v = check_release(a, t, &user, conn, false).await;
            prep.user = Some(user);
            if matches!(v, Verdict::Go) { check_drift(a, t, conn) } else { v }
        }
        Some(Payload::TenantAccess(t)) => match PodSecurityLevel::parse(&t.pod_security) {
            Err(e) => Verdict::Fail(format!("pod_security {:?}: {}", t.pod_security, e.reason)),
            Ok(level) => {
                let access = Access {
                    tenant: t.tenant.clone(),
                    namespaces: t.namespaces.clone(),
                    service_account: t.service_account.clone(),
                    service_account_namespace: t.service_account_namespace.clone(),
                    pod_security: level,
                };
                let now = conn.obs.observed_access(&access, "").map(|o| o.resource_versions).unwrap_or_default();
                prep.access = Some(access);
                check_objects(a, &now)
            }
        },
        Some(Payload::TenantAccessDelete(t)) => {
            let now = conn.obs.observed_leftover(&t.tenant).map(|o| o.resource_versions).unwrap_or_default();
            prep.access = conn.obs.tenant_access(&t.tenant);
            check_objects(a, &now)
        }
        _ => Verdict::Fail("nothing to check".into()),
    };
    (verdict, prep)
}

fn describe_versions(v: &BTreeMap<String, String>) -> String {
    if v.is_empty() {
        return "no objects".into();
    }
    v.iter().map(|(k, rv)| format!("{k}@{rv}")).collect::<Vec<_>>().join(", ")
}

/// Tenant access: the objects' resourceVersions now against the planned ones.
fn check_objects(a: &PlannedAction, now: &BTreeMap<String, String>) -> Verdict {
    let planned = match &a.apply.observed {
        Some(ObservedRevision::Objects { resource_versions }) => resource_versions.clone(),
        _ => BTreeMap::new(),
    };
    if &planned == now {
        return Verdict::Go;
    }
    let moved: Vec<&String> = planned.keys().chain(now.keys()).filter(|k| planned.get(*k) != now.get(*k)).collect::<BTreeSet<_>>().into_iter().collect();
    let names: Vec<String> = moved.iter().map(|k| k.to_string()).collect();
    let pick = |m: &BTreeMap<String, String>| describe_versions(&moved.iter().filter_map(|k| m.get(*k).map(|v| ((*k).clone(), v.clone()))).collect());
    stale(format!("{}: {} changed since planning", a.unit, names.join(", ")), pick(&planned), pick(now))
}

/// A release: its history now against the planned revision (the `.Release.Revision` it was
/// rendered for follows the latest record; the observed record keeps its resourceVersion).
async fn check_release(a: &PlannedAction, t: &ReleaseTarget, user: &str, conn: &Conn, deleting: bool) -> Verdict {
    let as_tenant = match conn.admin.impersonating(user) {
        Ok(c) => c,
        Err(e) => return Verdict::Fail(e.to_string()),
    };
    let hist = match release::history(&as_tenant, &t.namespace, &t.name).await {
        Ok(h) => h,
        Err(e) => return Verdict::Fail(format!("reading the release history: {e}")),
    };
    let latest = hist.last().map(|s| u64::from(s.release.version));
    let fmt = |r: Option<u64>| r.map_or_else(|| "no release".to_string(), |r| format!("revision {r}"));
    if !deleting && let Some(render) = &a.apply.release {
        let deployed = hist.iter().any(|s| s.release.info.status == Status::Deployed);
        let (next, upgrade) = harmony_planner::render::next_revision(latest, deployed);
        if (next, upgrade) != (render.revision, render.is_upgrade) {
            let expected = fmt(render.revision.checked_sub(1).filter(|r| *r > 0));
            return stale(
                format!("{}: the release moved since planning (planned to write revision {}, the next is now {next})", a.unit, render.revision),
                expected,
                fmt(latest),
            );
        }
    }
    match &a.apply.observed {
        Some(ObservedRevision::HelmRelease { revision, resource_version }) => {
            let expected = format!("revision {revision} (record resourceVersion {resource_version})");
            match hist.iter().find(|s| u64::from(s.release.version) == *revision) {
                Some(s) if s.resource_version == *resource_version => Verdict::Go,
                Some(s) => stale(
                    format!("{}: the release record of revision {revision} changed since planning", a.unit),
                    expected,
                    format!("revision {revision} (record resourceVersion {}), latest {}", s.resource_version, fmt(latest)),
                ),
                None => stale(format!("{}: revision {revision} is gone since planning", a.unit), expected, fmt(latest)),
            }
        }
        None if !hist.is_empty() => stale(format!("{}: planned as a new release, but it exists now", a.unit), "no release", fmt(latest)),
        _ => Verdict::Go,
    }
}

/// The live objects a drift repair was planned against, compared with what this apply observed
/// under the cluster lock: an object changed (another resourceVersion), deleted or recreated
/// since planning is stale.
fn check_drift(a: &PlannedAction, t: &ReleaseTarget, conn: &Conn) -> Verdict {
    let live = conn.obs.releases.get(&(t.namespace.clone(), t.name.clone())).and_then(|l| l.observed.live.as_deref()).unwrap_or_default();
    let now = harmony_planner::drift::resource_versions(&t.namespace, live);
    let show = |rv: Option<&String>| rv.map_or_else(|| "missing".to_string(), |v| format!("resourceVersion {v}"));
    for d in &a.apply.drift {
        let found = now.get(&d.key);
        if found != d.resource_version.as_ref() {
            return stale(format!("{}: live object {} changed since planning", a.unit, d.key), show(d.resource_version.as_ref()), show(found));
        }
    }
    Verdict::Go
}

/// Resolves a release's `secret-value`s (refusing a changed one as stale, naming the key, never
/// the value) and renders it from the plan's chart with the plan's inputs, refusing a render
/// whose manifest does not have the planned fingerprint.
fn prepare_release(plan: &PlanFile, a: &PlannedAction, r: &ReleasePayload, key: &FingerprintKey, resolved: &mut Needles) -> Result<Desired, Verdict> {
    let mut secrets = SecretValues::new();
    for s in &r.secret_values {
        let value = resolve(s).map_err(|e| Verdict::Fail(format!("{}: {e}", a.unit)))?;
        resolved.add(&value);
        let planned = a.apply.secrets.iter().find(|f| f.name == format!("secret-value {}", s.key)).and_then(|f| f.after.clone());
        let now = key.fingerprint(value.as_bytes());
        match planned {
            Some(p) if p == now => {}
            Some(p) => {
                return Err(stale(format!("release {}: secret-value {} ({}) changed since planning", a.unit, s.key, s.from), format!("fingerprint {p}"), format!("fingerprint {now}")));
            }
            None => {
                return Err(Verdict::Fail(format!(
                    "release {}: secret-value {} ({}) was not resolved when planning: re-plan with it set",
                    a.unit, s.key, s.from
                )));
            }
        }
        secrets.insert(s.key.clone(), Some(value));
    }
    let render = a.apply.release.clone().ok_or_else(|| Verdict::Fail(format!("{}: the plan holds no rendering inputs for it", a.unit)))?;
    let planned_fp = render.manifest.clone().ok_or_else(|| Verdict::Fail(format!("{}: the plan holds no manifest fingerprint for it", a.unit)))?;
    let caps = plan
        .capabilities
        .get(&render.cluster)
        .cloned()
        .ok_or_else(|| Verdict::Fail(format!("{}: the plan holds no capabilities for cluster {}", a.unit, render.cluster)))?;
    let archive = plan.charts.get(&r.chart).cloned().ok_or_else(|| Verdict::Fail(format!("{}: chart {} is not in the plan", a.unit, r.chart)))?;
    let (id, payload) = (a.unit.clone(), r.clone());
    // Templates may recurse deeply: render on a thread with a large stack, as `plan` does.
    let job = move || -> Result<(Desired, Needles), String> {
        let chart = harmony_planner::contract::chart_of(&archive).map_err(|e| format!("chart {}: {e}", payload.chart))?;
        let input = ReleaseInput {
            name: &payload.target.name,
            namespace: &payload.target.namespace,
            values: &payload.values,
            secret_keys: payload.secret_values.iter().map(|s| s.key.as_str()).collect(),
        };
        let ctx = RenderContext { revision: render.revision, is_upgrade: render.is_upgrade, capabilities: &caps };
        let rendered = harmony_planner::render::render_input(&id, &input, chart.clone(), &secrets, ctx).map_err(|e| e.message)?;
        // What the chart computed from the secrets, which the API server may quote as well.
        let needles = harmony_planner::render::secret_needles(&id, &input, chart.clone(), &secrets, &rendered, ctx);
        let config = input.values(&secrets).as_object().cloned().unwrap_or_default();
        let mut d = Desired::from_rendered(&payload.target.name, &payload.target.namespace, &chart, config, &rendered);
        d.unit_hash = Some(payload.unit_hash.clone());
        d.unit_id = Some(id.clone());
        let revision = u32::try_from(render.revision).map_err(|_| format!("revision {} is out of range", render.revision))?;
        d.planned = Some((revision, render.is_upgrade));
        Ok((d, needles))
    };
    let (desired, needles) = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(job)
        .map_err(|e| Verdict::Fail(format!("{}: starting the renderer: {e}", a.unit)))?
        .join()
        .map_err(|_| Verdict::Fail(format!("{}: internal error while rendering", a.unit)))?
        .map_err(|e| Verdict::Fail(format!("{}: {e}", a.unit)))?;
    *resolved = needles;
    let got = key.fingerprint(desired.manifest().as_bytes());
    if got != planned_fp {
        return Err(Verdict::Fail(format!(
            "{}: rendering from the plan gives manifest {got}, the plan says {planned_fp}: not written",
            a.unit
        )));
    }
    Ok(desired)
}

/// Re-applies the live objects the action's `drift` names, each only over the object as this
/// apply observed it under the cluster lock ([`check_drift`] compared those with the plan):
/// [`release::repair_drift`] with the observed live objects, whose resourceVersions are the
/// writes' preconditions. An object changed since is refused as stale.
async fn repair(a: &PlannedAction, conn: &Conn, as_tenant: &Cluster, ns: &str, name: &str, user: &str) -> Result<String, Verdict> {
    let only: BTreeSet<String> = a.apply.drift.iter().map(|d| d.key.clone()).collect();
    let live = conn.obs.releases.get(&(ns.to_string(), name.to_string())).and_then(|l| l.observed.live.as_deref()).unwrap_or_default();
    match release::repair_deployed(as_tenant, ns, name, Some(live), Some(&only)).await {
        Ok((revision, objects)) => Ok(release::repaired_text(revision, objects)),
        Err(crate::kube::KubeError::Stale(m)) => Err(Verdict::Stale { message: format!("{}: {m}", a.unit), expected: None, found: None }),
        Err(e) => Err(crate::kube::apply::tenant_failure(&e, user).into()),
    }
}

async fn write(a: &PlannedAction, payload: &Payload, conn: &Conn, opts: &ExecuteOptions, prep: Prepared) -> Result<String, Verdict> {
    let user = prep.user.unwrap_or_default();
    match payload {
        Payload::Release(_) => {
            let desired = prep.desired.ok_or("nothing rendered")?;
            let as_tenant = conn.admin.impersonating(&user).map_err(|e| e.to_string())?;
            match release::install_or_upgrade(&as_tenant, &desired, &opts.release, jiff::Timestamp::now).await {
                Ok(release::Outcome::Installed(v)) => Ok(format!("installed, revision {v}")),
                Ok(release::Outcome::Upgraded(v)) => Ok(format!("upgraded, revision {v}")),
                // The planned drift of a release whose render left its objects as deployed.
                Ok(release::Outcome::Unchanged(_)) if !a.apply.drift.is_empty() => repair(a, conn, &as_tenant, &desired.namespace, &desired.name, &user).await,
                Ok(release::Outcome::Unchanged(v)) => Ok(format!("unchanged (revision {v})")),
                Ok(release::Outcome::Repaired { revision, objects }) => Ok(release::repaired_text(revision, objects)),
                Err(e) => Err(crate::kube::apply::tenant_failure(&e, &user).into()),
            }
        }
        Payload::ReleaseRepair(t) => {
            let as_tenant = conn.admin.impersonating(&user).map_err(|e| e.to_string())?;
            repair(a, conn, &as_tenant, &t.namespace, &t.name, &user).await
        }
        Payload::ReleaseDelete(t) => {
            let as_tenant = conn.admin.impersonating(&user).map_err(|e| e.to_string())?;
            release::uninstall(&as_tenant, &t.namespace, &t.name, &opts.release, jiff::Timestamp::now)
                .await
                .map(|_| match &a.apply.observed {
                    Some(ObservedRevision::HelmRelease { revision, .. }) => format!("uninstalled (left the repository; was revision {revision})"),
                    _ => "uninstalled (left the repository)".to_string(),
                })
                .map_err(|e| format!("uninstalling: {}", crate::kube::apply::tenant_failure(&e, &user)).into())
        }
        Payload::TenantAccess(_) => {
            let access = prep.access.ok_or("no access")?;
            tenant::apply(&conn.admin, &access).await.map_err(|e| e.to_string())?;
            Ok(format!("tenant {} can use {}", access.tenant, access.namespaces.join(", ")))
        }
        Payload::TenantAccessDelete(t) => match prep.access {
            None => Ok(format!("tenant {} holds nothing on the cluster any more", t.tenant)),
            Some(access) => {
                tenant::remove(&conn.admin, &access).await.map_err(|e| format!("removing tenant access: {e}"))?;
                Ok(format!(
                    "removed (namespaces {} are kept: delete them yourself if nothing else is in them)",
                    access.namespaces.join(", ")
                ))
            }
        },
        _ => Err(format!("{}: not a cluster action", a.unit).into()),
    }
}
