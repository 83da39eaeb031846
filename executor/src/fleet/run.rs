//! A fleet apply: planning from what was observed ([`plan_observed`], shared with `harmony plan`)
//! and writing planned actions under the lock, journalled ([`write_planned`], shared with a plan
//! file's executor); [`run_apply`] is the two for a [`DesiredFleet`] without a repository (the
//! executor's tests and benchmarks; `harmony apply` goes through [`crate::execute`]).

use std::path::PathBuf;
use std::sync::Arc;

use async_nats::jetstream;
use ed25519_dalek::SigningKey;

use super::apply::{ApplyOptions, ApplyReport, apply_actions_returning};
use super::journal::{Interrupted, Journal};
use super::lock::{FleetLock, LockHolder, LockOptions};
use super::observe::{ObservedFleet, observe_fleet, read_signed_history};
use super::plan::{FleetAction, FleetOp, plan_fleet_owned};
use super::rollout::{RolloutPlan, RolloutSpecs, WaveContext, plan_rollout, read_record, run_waves};
use super::{DesiredFleet, FleetError, connect::ensure_buckets};
use harmony_schemas::fleet::RolloutRecord;

/// Asked with the planned actions (and the rollout as a plan shows it, if any) before anything is written; `false` aborts.
pub type Confirm = Box<dyn FnOnce(&[FleetAction], &ObservedFleet, Option<&harmony_schemas::plan::PlannedRollout>) -> bool + Send>;

/// Called with the rollout record after every step.
pub type RolloutProgress = Arc<dyn Fn(&RolloutRecord) + Send + Sync>;

/// What to apply and how.
pub struct ApplyRequest {
    /// Who takes the fleet's lock: the caller, naming itself (`LockHolder::this_command`).
    pub holder: LockHolder,
    /// The fleet's desired plans.
    pub desired: DesiredFleet,
    /// The fleet's private key.
    pub signing_key: SigningKey,
    /// The fleet's other trusted signing keys (its key chain's current ones): plans they signed
    /// count as Harmony's (generations, unchanged content). The signing key always does.
    pub trusted: Vec<ed25519_dalek::VerifyingKey>,
    /// Writes in flight.
    pub parallelism: usize,
    /// Lock TTL and wait.
    pub lock: LockOptions,
    /// Where the journal is kept (`None`: no journal).
    pub state_dir: Option<PathBuf>,
    /// Confirmation (`None`: apply without asking).
    pub confirm: Option<Confirm>,
    /// Timeout of one JetStream request (default 5 s).
    pub request_timeout: Option<std::time::Duration>,
    /// Progress callback (done, total).
    pub progress: Option<Arc<dyn Fn(usize, usize) + Send + Sync>>,
    /// The fleet's rollout strategies.
    pub rollouts: RolloutSpecs,
    /// Rollout progress callback.
    pub rollout_progress: Option<RolloutProgress>,
    /// How often statuses are read while a wave is waited for (default 500 ms).
    pub rollout_poll: Option<std::time::Duration>,
    /// Replicas and placement of the buckets this apply creates.
    pub storage: super::connect::FleetStorage,
}

/// A rollout's plan, final record, and each revert write (device, new revision or why not).
pub type RolloutResult = (RolloutPlan, RolloutRecord, Vec<(String, Result<u64, String>)>);

/// What an apply did.
#[derive(Debug)]
pub struct ApplyRun {
    /// The planned actions.
    pub actions: Vec<FleetAction>,
    /// Results (empty when aborted).
    pub report: ApplyReport,
    /// Observed state as planned against (warnings included).
    pub observed: ObservedFleet,
    /// The previous apply of this fleet, if it was interrupted.
    pub interrupted: Option<Interrupted>,
    /// The confirmation said no.
    pub aborted: bool,
    /// The journal file.
    pub journal: Option<PathBuf>,
    /// The rollout, when this apply rolled something out (final record, reverts).
    pub rollout: Option<RolloutResult>,
}

/// Runs one apply of a fleet: plans it from read-only reads of its buckets with
/// [`plan_observed`] (what `harmony plan` does, [`crate::live`]), asks `confirm`, then writes
/// exactly those actions with [`write_planned`] (what `harmony apply` does with a plan,
/// [`crate::execute`]): under the lock, journalled, each compare-and-set against the revision it
/// was planned against. The CLI goes through a plan file's executor; this is the same two steps
/// for a [`DesiredFleet`] without a repository (tests, benchmarks).
pub async fn run_apply(client: &async_nats::Client, req: ApplyRequest) -> Result<ApplyRun, FleetError> {
    let mut js = jetstream::new(client.clone());
    js.set_timeout(req.request_timeout.unwrap_or(std::time::Duration::from_secs(5)));
    let own = [req.signing_key.verifying_key()];
    let mut trusted = req.trusted.clone();
    if !trusted.contains(&own[0]) {
        trusted.push(own[0]);
    }
    let fleet = req.desired.fleet.clone();
    let desired = req.desired;
    // Three independent reads at once: the buckets, the published agents, the rollout record.
    let versions: std::collections::BTreeSet<String> = desired.plans.values().map(|p| p.agent_version.clone()).collect();
    let source_revision = desired.plans.values().next().map(|p| p.source_revision.clone()).unwrap_or_default();
    let (mut observed, published, record) = tokio::try_join!(
        async {
            let stores = ensure_buckets(&js, &req.storage).await?;
            observe_fleet(client, &stores, &fleet, &trusted).await
        },
        super::agents::lookup_agents(&js, versions.iter().map(String::as_str), &own),
        async { read_record(&super::connect::ensure_rollouts_bucket(&js, &req.storage).await?, &fleet).await }
    )?;
    let (actions, mut rollout) = plan_observed(client, &mut observed, desired, &published, &req.rollouts, record.as_ref().map(|(r, _)| r), &trusted).await?;
    if let Some(p) = &mut rollout {
        p.record_revision = record.as_ref().map(|(_, rev)| *rev);
    }
    let shown = rollout.as_ref().map(|p| p.planned(&fleet, record.as_ref()));
    if let Some(confirm) = req.confirm
        && actions.iter().any(|a| a.op != FleetOp::Noop)
        && !confirm(&actions, &observed, shown.as_ref())
    {
        return Ok(ApplyRun { actions, report: ApplyReport::default(), observed, interrupted: None, aborted: true, journal: None, rollout: None });
    }
    let writer = Writer {
        holder: req.holder,
        fleet: &fleet,
        signing_key: &req.signing_key,
        trusted,
        lock: req.lock,
        state_dir: req.state_dir.as_deref(),
        opts: ApplyOptions { parallelism: req.parallelism, progress: req.progress, halt: None, on_result: None },
        rollout_progress: req.rollout_progress,
        rollout_poll: req.rollout_poll,
        source_revision: &source_revision,
        request_timeout: req.request_timeout,
        storage: &req.storage,
    };
    let w = write_planned(client, writer, actions, rollout.as_ref()).await?;
    let rollout = match (rollout, w.rollout) {
        (Some(plan), Some((record, reverted))) => Some((plan, record, reverted)),
        _ => None,
    };
    Ok(ApplyRun { actions: w.actions, report: w.report, observed, interrupted: w.interrupted, aborted: false, journal: w.journal, rollout })
}

/// How a fleet's planned actions are written ([`write_planned`]).
pub(crate) struct Writer<'a> {
    /// The fleet.
    pub fleet: &'a str,
    /// The fleet's signing key.
    pub signing_key: &'a SigningKey,
    /// Keys plans in the bucket may be signed with (the signing key is added).
    pub trusted: Vec<ed25519_dalek::VerifyingKey>,
    /// Lock TTL and wait.
    pub lock: LockOptions,
    /// Who takes the lock (this process; the apply id is added).
    pub holder: LockHolder,
    /// Where the journal is kept (`None`: no journal).
    pub state_dir: Option<&'a std::path::Path>,
    /// Writes in flight, progress.
    pub opts: ApplyOptions,
    /// Rollout progress callback.
    pub rollout_progress: Option<RolloutProgress>,
    /// How often statuses are read while a wave is waited for (default 500 ms).
    pub rollout_poll: Option<std::time::Duration>,
    /// Source revision a rollout record names.
    pub source_revision: &'a str,
    /// Timeout of one JetStream request (default 5 s).
    pub request_timeout: Option<std::time::Duration>,
    /// Replicas and placement of the buckets the writes create.
    pub storage: &'a super::connect::FleetStorage,
}

/// What [`write_planned`] did.
pub(crate) struct Written {
    /// One result per write.
    pub report: ApplyReport,
    /// The actions, handed back.
    pub actions: Vec<FleetAction>,
    /// The previous apply of this fleet, if its journal was left unfinished.
    pub interrupted: Option<Interrupted>,
    /// The journal file.
    pub journal: Option<PathBuf>,
    /// With a rollout: its final record and each revert write (device, new revision or why not).
    pub rollout: Option<(RolloutRecord, Vec<(String, Result<u64, String>)>)>,
}

/// Writes planned actions — the one implementation of a fleet's writes, for [`run_apply`] and a
/// plan's executor ([`crate::execute`]): opens the buckets and takes the fleet's lock, begins
/// the journal, writes each action compare-and-set against its planned revision
/// ([`apply_actions_returning`]) or, with a planned rollout, runs it through the waves
/// ([`run_waves`]: the fleet's rollout record, resumed when it is this rollout unfinished, and
/// the fleet's state as the gate and a revert read it, both read under the lock), ends the
/// journal and releases the lock.
pub(crate) async fn write_planned(client: &async_nats::Client, w: Writer<'_>, actions: Vec<FleetAction>, rollout: Option<&RolloutPlan>) -> Result<Written, FleetError> {
    let mut js = jetstream::new(client.clone());
    js.set_timeout(w.request_timeout.unwrap_or(std::time::Duration::from_secs(5)));
    let apply_id = format!("{}-{}", harmony_schemas::fleet::now_ms(), std::process::id());
    let holder = LockHolder { apply_id: apply_id.clone(), ..w.holder.clone() };
    // Opening the buckets and taking the lock are independent round trips: both at once.
    let (stores, lock) = tokio::join!(ensure_buckets(&js, w.storage), FleetLock::acquire(&js, w.fleet, &holder, w.lock.clone(), w.storage));
    let lock = lock?;
    let stores = match stores {
        Ok(s) => s,
        Err(e) => {
            // Not left to expire: nobody else should wait for an apply that never started.
            if let Err(r) = lock.release().await {
                tracing::warn!("{r}");
            }
            return Err(e);
        }
    };
    // Writes stop when the lock is lost (a renewal found it taken) as when the caller halts them.
    let lost = lock.lost_flag();
    let outer = w.opts.halt.clone();
    let warned = std::sync::atomic::AtomicBool::new(false);
    let halt: std::sync::Arc<dyn Fn() -> bool + Send + Sync> = std::sync::Arc::new(move || {
        let lost = lost.load(std::sync::atomic::Ordering::SeqCst);
        if lost && !warned.swap(true, std::sync::atomic::Ordering::SeqCst) {
            tracing::warn!("the fleet's apply lock was lost (taken by another apply after it expired): no further write starts");
        }
        lost || outer.as_ref().is_some_and(|h| h())
    });
    let w = Writer { opts: ApplyOptions { halt: Some(halt), ..w.opts.clone() }, ..w };
    let result = locked(client, &js, &stores, &w, &holder, &apply_id, actions, rollout).await;
    if let Err(e) = lock.release().await {
        // It expires by itself within one TTL.
        tracing::warn!("{e}");
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn locked(
    client: &async_nats::Client,
    js: &jetstream::Context,
    stores: &[async_nats::jetstream::kv::Store; 3],
    w: &Writer<'_>,
    holder: &LockHolder,
    apply_id: &str,
    actions: Vec<FleetAction>,
    rollout: Option<&RolloutPlan>,
) -> Result<Written, FleetError> {
    let writes = actions.iter().filter(|a| a.op != FleetOp::Noop).count();
    // A rollout runs only from the record it was planned against (compare-and-set, under the
    // lock, before anything is written or journalled).
    let record = match rollout {
        Some(plan) => {
            let rollouts = super::connect::ensure_rollouts_bucket(js, w.storage).await?;
            let record = read_record(&rollouts, w.fleet).await?;
            let found = record.as_ref().map(|(_, rev)| *rev);
            if found != plan.record_revision {
                return Err(FleetError::RolloutMoved { fleet: w.fleet.to_string(), expected: plan.record_revision, found });
            }
            Some((rollouts, record))
        }
        None => None,
    };
    let (journal, interrupted) = match w.state_dir {
        Some(dir) => {
            let (j, i) = Journal::begin(dir, w.fleet, apply_id, &holder.describe(), writes)?;
            (Some(j), i)
        }
        None => (None, None),
    };
    let journal_ref = journal.as_ref();
    let written = async {
        Ok::<_, FleetError>(match rollout.zip(record) {
            None => {
                let (report, actions) = apply_actions_returning(&stores[0], actions, w.signing_key, journal_ref, &w.opts).await;
                (report, actions, None)
            }
            Some((plan, (rollouts, record))) => {
                let mut trusted = w.trusted.clone();
                if !trusted.contains(&w.signing_key.verifying_key()) {
                    trusted.push(w.signing_key.verifying_key());
                }
                let observed = observe_fleet(client, stores, w.fleet, &trusted).await?;
                let ctx = WaveContext {
                    fleet: w.fleet,
                    client,
                    stores,
                    rollouts: &rollouts,
                    key: w.signing_key,
                    trusted: &trusted,
                    journal: journal_ref,
                    opts: &w.opts,
                    observed: &observed,
                    record,
                    source_revision: w.source_revision,
                    fresh: super::StatusThresholds::default().stale_after,
                    poll: w.rollout_poll.unwrap_or(std::time::Duration::from_millis(500)),
                    on_progress: w.rollout_progress.as_deref().map(|f| f as &(dyn Fn(&RolloutRecord) + Send + Sync)),
                };
                let out = run_waves(ctx, plan, actions).await?;
                (out.report, out.actions, Some((out.record, out.reverted)))
            }
        })
    }
    .await;
    // Ended whatever happened, an error included (counted as a failure, so the next apply
    // reports this one as not completed). The journal is a record, not the truth (every write
    // was compare-and-set): failing to end it does not undo what was written.
    if let Some(j) = &journal
        && let Err(e) = j.end(written.as_ref().err().map(ToString::to_string))
    {
        tracing::warn!("fleet {}: ending the journal {}: {e}", w.fleet, j.path().display());
    }
    let (report, actions, rollout) = written?;
    Ok(Written { report, actions, interrupted, journal: journal.map(|j| j.path().to_path_buf()), rollout })
}

/// The fleet runner's planning from what was observed — the one used by `harmony apply` and
/// `harmony plan` ([`crate::live`]): the key's history for devices whose entry does not verify
/// or which report more than it ([`read_signed_history`]), each plan's agent artifact
/// ([`attach_agents`]), the rollout ([`plan_rollout`], continuing `record`) and the actions
/// ([`plan_fleet_owned`]: the generation rule of [`super::plan::next_generation`] over the newest
/// signed and the judged reported applied generation).
pub(crate) async fn plan_observed(
    client: &async_nats::Client,
    observed: &mut ObservedFleet,
    mut desired: DesiredFleet,
    published: &super::agents::Published,
    specs: &RolloutSpecs,
    record: Option<&RolloutRecord>,
    trusted: &[ed25519_dalek::VerifyingKey],
) -> Result<(Vec<FleetAction>, Option<RolloutPlan>), FleetError> {
    // Generations come from verified plans only: where the entry does not verify or the device
    // reports more than it, the key's history says what Harmony signed.
    let fleet = desired.fleet.clone();
    read_signed_history(client, observed, &fleet, trusted, desired.plans.keys().map(String::as_str)).await?;
    attach_agents(&mut desired, published, observed)?;
    let rollout = plan_rollout(&desired, specs, observed, record);
    let actions = plan_fleet_owned(desired, observed)?;
    Ok((actions, rollout))
}

/// Names each plan's agent binary when its version is `published`; an upgrade (a device whose
/// entry names another version) of an unpublished version is refused before anything is written.
fn attach_agents(desired: &mut DesiredFleet, published: &super::agents::Published, observed: &ObservedFleet) -> Result<(), FleetError> {
    for (device, plan) in desired.plans.iter_mut() {
        let found = published.get(&plan.agent_version);
        plan.agent = found.and_then(|r| r.as_ref().ok()).cloned();
        let upgrade = observed.plans.get(device).and_then(|e| e.plan.as_ref()).is_some_and(|have| have.agent_version != plan.agent_version);
        match found {
            _ if !upgrade => {}
            None => return Err(FleetError::AgentNotPublished { fleet: desired.fleet.clone(), version: plan.agent_version.clone() }),
            Some(Err(why)) => {
                return Err(FleetError::Nats { what: format!("agent {} in the object store", plan.agent_version), detail: why.clone() });
            }
            Some(Ok(_)) => {}
        }
    }
    Ok(())
}
