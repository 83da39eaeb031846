//! Apply: compare-and-set writes of signed plans, bounded parallelism, journalled.

use std::sync::Arc;

use async_nats::jetstream::kv;
use ed25519_dalek::SigningKey;
use futures::StreamExt;
use serde::Serialize;

use super::journal::{Journal, Record};
use super::plan::{FleetAction, FleetOp};

/// What happened to one action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum ActionOutcome {
    /// Nothing to write.
    Noop,
    /// Written (create or update) at this revision.
    Written {
        /// New revision.
        revision: u64,
    },
    /// Deleted.
    Deleted,
    /// The entry moved since planning: refused.
    Stale {
        /// Revision planned against (`None`: the key did not exist).
        expected: Option<u64>,
        /// Revision found (`None`: the key does not exist).
        found: Option<u64>,
    },
    /// The write failed (connection, timeout, …).
    Failed {
        /// Why.
        error: String,
    },
}

/// One action's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionResult {
    /// Device.
    pub device: String,
    /// Op.
    pub op: FleetOp,
    /// Outcome.
    pub outcome: ActionOutcome,
}

/// An apply's results, in device order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ApplyReport {
    /// Per action.
    pub results: Vec<ActionResult>,
}

impl ApplyReport {
    /// Writes done (creates, updates, deletes).
    pub fn written(&self) -> usize {
        self.results.iter().filter(|r| matches!(r.outcome, ActionOutcome::Written { .. } | ActionOutcome::Deleted)).count()
    }
    /// Refused as stale.
    pub fn stale(&self) -> Vec<&ActionResult> {
        self.results.iter().filter(|r| matches!(r.outcome, ActionOutcome::Stale { .. })).collect()
    }
    /// Failed.
    pub fn failed(&self) -> Vec<&ActionResult> {
        self.results.iter().filter(|r| matches!(r.outcome, ActionOutcome::Failed { .. })).collect()
    }
}

/// Apply settings.
#[derive(Clone)]
pub struct ApplyOptions {
    /// Writes in flight at once (at least 1).
    pub parallelism: usize,
    /// Called after each write with (done, total writes).
    pub progress: Option<Arc<dyn Fn(usize, usize) + Send + Sync>>,
    /// Asked before each write: true stops the writes (the apply was interrupted, or the
    /// fleet's lock was lost); those not started are reported failed, not written.
    pub halt: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
    /// Called with each action's result once it is final, as it happens (noops included): after
    /// its write, or for a rollout step's devices once the step's health gate decided, with the
    /// rollout record as it then stands.
    pub on_result: Option<OnResult>,
}

/// [`ApplyOptions::on_result`].
pub type OnResult = Arc<dyn Fn(&ActionResult, Option<&harmony_schemas::fleet::RolloutRecord>) + Send + Sync>;

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions { parallelism: 64, progress: None, halt: None, on_result: None }
    }
}

/// Applies `actions` to the plans bucket: `create` for new keys, `update` with the expected
/// revision, `delete` with the expected revision; a moved entry refuses that action only.
/// No-ops write nothing. Each outcome is journalled as it happens.
pub async fn apply_actions(store: &kv::Store, actions: Vec<FleetAction>, key: &SigningKey, journal: Option<&Journal>, opts: &ApplyOptions) -> ApplyReport {
    apply_actions_returning(store, actions, key, journal, opts).await.0
}

/// [`apply_actions`], handing the actions back (in device order) with the report, so a caller
/// that keeps them needs no copy.
pub async fn apply_actions_returning(
    store: &kv::Store,
    actions: Vec<FleetAction>,
    key: &SigningKey,
    journal: Option<&Journal>,
    opts: &ApplyOptions,
) -> (ApplyReport, Vec<FleetAction>) {
    let total = actions.iter().filter(|a| a.op != FleetOp::Noop).count();
    let done = std::sync::atomic::AtomicUsize::new(0);
    // After a connection-level failure (timeout, no responders), the rest is not attempted: it
    // would only wait for the same timeout; a re-run picks it up.
    let broken = std::sync::atomic::AtomicBool::new(false);
    // Signing is CPU-bound, the writes are not: a separate thread signs chunks of plans on all
    // cores (rayon) and hands them over as they are ready, so writes start after the first
    // chunk. Each plan is encoded once: the canonical bytes the signature covers are the bytes
    // written.
    let (tx, rx) = tokio::sync::mpsc::channel::<(FleetAction, Option<Result<bytes::Bytes, String>>)>(1024);
    let signer = super::sign::bulk_signer(key);
    let signer = std::thread::spawn(move || {
        use rayon::prelude::*;
        let mut rest = actions.into_iter();
        // A small first chunk so the first writes start early, then larger ones.
        let mut size = 64;
        loop {
            let chunk: Vec<FleetAction> = rest.by_ref().take(size).collect();
            size = 256;
            if chunk.is_empty() {
                return;
            }
            let signed: Vec<_> = chunk
                .into_par_iter()
                .map(|a| {
                    let value = a
                        .plan
                        .as_ref()
                        .filter(|_| a.op != FleetOp::Noop)
                        .map(|p| signer.sign_to_vec(p).map(bytes::Bytes::from).map_err(|e| format!("signing: {e}")));
                    (a, value)
                })
                .collect();
            for item in signed {
                if tx.blocking_send(item).is_err() {
                    return;
                }
            }
        }
    });
    let signed = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
    let mut results: Vec<(ActionResult, FleetAction)> = signed
        .map(|(a, value)| {
            let done = &done;
            let broken = &broken;
            async move {
                let outcome = if a.op != FleetOp::Noop && broken.load(std::sync::atomic::Ordering::Relaxed) {
                    ActionOutcome::Failed { error: "not attempted after an earlier connection failure".into() }
                } else if a.op != FleetOp::Noop && opts.halt.as_ref().is_some_and(|h| h()) {
                    ActionOutcome::Failed { error: "not written: the apply was interrupted or lost the fleet's lock".into() }
                } else {
                    let outcome = apply_one(store, &a, value).await;
                    if let ActionOutcome::Failed { .. } = outcome {
                        broken.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    outcome
                };
                if a.op != FleetOp::Noop {
                    let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    if let Some(p) = &opts.progress {
                        p(n, total);
                    }
                }
                if let Some(j) = journal {
                    let record = match &outcome {
                        ActionOutcome::Noop => None,
                        ActionOutcome::Written { revision } => Some(Record::Done {
                            device: a.device.clone(),
                            op: a.op,
                            revision: Some(*revision),
                            generation: a.plan.as_ref().map(|p| p.generation),
                        }),
                        ActionOutcome::Deleted => Some(Record::Done { device: a.device.clone(), op: a.op, revision: None, generation: None }),
                        ActionOutcome::Stale { expected, found } => Some(Record::Stale { device: a.device.clone(), expected: *expected, found: *found }),
                        ActionOutcome::Failed { error } => Some(Record::Failed { device: a.device.clone(), error: error.clone() }),
                    };
                    if let Some(r) = record
                        && let Err(e) = j.record(r)
                    {
                        tracing::warn!("{e}");
                    }
                }
                let result = ActionResult { device: a.device.clone(), op: a.op, outcome };
                if let Some(f) = &opts.on_result {
                    f(&result, None);
                }
                (result, a)
            }
        })
        .buffer_unordered(opts.parallelism.max(1))
        .collect()
        .await;
    let _ = signer.join();
    results.sort_by(|a, b| a.0.device.cmp(&b.0.device));
    let (results, actions) = results.into_iter().unzip();
    (ApplyReport { results }, actions)
}

async fn found_revision(store: &kv::Store, device: &str) -> Result<Option<u64>, String> {
    match store.entry(device).await {
        Ok(Some(e)) if e.operation == kv::Operation::Put => Ok(Some(e.revision)),
        Ok(_) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// After a refused compare-and-set: stale if the entry really moved, else the original error.
async fn refused(store: &kv::Store, a: &FleetAction, error: String) -> ActionOutcome {
    match found_revision(store, &a.device).await {
        Ok(found) if found != a.expected_revision => ActionOutcome::Stale { expected: a.expected_revision, found },
        Ok(_) => ActionOutcome::Failed { error },
        Err(e) => ActionOutcome::Failed { error: format!("{error}; then reading the entry: {e}") },
    }
}

async fn apply_one(store: &kv::Store, a: &FleetAction, signed: Option<Result<bytes::Bytes, String>>) -> ActionOutcome {
    let value = || -> Result<bytes::Bytes, String> { signed.clone().unwrap_or_else(|| Err("no plan to write".into())) };
    match (a.op, a.expected_revision) {
        (FleetOp::Noop, _) => ActionOutcome::Noop,
        (FleetOp::Create, _) => {
            let v = match value() {
                Ok(v) => v,
                Err(error) => return ActionOutcome::Failed { error },
            };
            match store.create(&a.device, v).await {
                Ok(revision) => ActionOutcome::Written { revision },
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => refused(store, a, e.to_string()).await,
                Err(e) => ActionOutcome::Failed { error: e.to_string() },
            }
        }
        (FleetOp::Update, Some(rev)) => {
            let v = match value() {
                Ok(v) => v,
                Err(error) => return ActionOutcome::Failed { error },
            };
            match store.update(&a.device, v, rev).await {
                Ok(revision) => ActionOutcome::Written { revision },
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => refused(store, a, e.to_string()).await,
                Err(e) => ActionOutcome::Failed { error: e.to_string() },
            }
        }
        (FleetOp::Delete, Some(rev)) => match store.delete_expect_revision(&a.device, Some(rev)).await {
            Ok(()) => ActionOutcome::Deleted,
            Err(e) if e.kind() == kv::UpdateErrorKind::TimedOut => ActionOutcome::Failed { error: e.to_string() },
            Err(e) => refused(store, a, e.to_string()).await,
        },
        (FleetOp::Update | FleetOp::Delete, None) => ActionOutcome::Failed { error: "no expected revision".into() },
    }
}
