//! One whole fleet apply: buckets, lock, observe, plan, confirm, journalled compare-and-set writes, release.

use std::path::PathBuf;
use std::sync::Arc;

use async_nats::jetstream;
use ed25519_dalek::SigningKey;

use super::apply::{ApplyOptions, ApplyReport, apply_actions_returning};
use super::journal::{Interrupted, Journal, Record};
use super::lock::{FleetLock, LockHolder, LockOptions};
use super::observe::{ObservedFleet, observe_fleet};
use super::plan::{FleetAction, FleetOp, plan_fleet_owned};
use super::{DesiredFleet, FleetError, connect::ensure_buckets};

/// Asked with the planned actions before anything is written; `false` aborts.
pub type Confirm = Box<dyn FnOnce(&[FleetAction], &ObservedFleet) -> bool + Send>;

/// What to apply and how.
pub struct ApplyRequest {
    /// The fleet's desired plans.
    pub desired: DesiredFleet,
    /// The fleet's private key.
    pub signing_key: SigningKey,
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
}

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
}

/// Runs one apply of a fleet.
pub async fn run_apply(client: &async_nats::Client, req: ApplyRequest) -> Result<ApplyRun, FleetError> {
    let mut js = jetstream::new(client.clone());
    js.set_timeout(req.request_timeout.unwrap_or(std::time::Duration::from_secs(5)));
    let stores = ensure_buckets(&js).await?;
    let apply_id = format!("{}-{}", harmony_schemas::fleet::now_ms(), std::process::id());
    let holder = LockHolder::this_process(&apply_id);
    let lock = FleetLock::acquire(&js, &req.desired.fleet, &holder, req.lock).await?;
    let result = locked(client, &stores, req, &holder, &apply_id).await;
    if let Err(e) = lock.release().await {
        // It expires by itself within one TTL.
        tracing::warn!("{e}");
    }
    result
}

async fn locked(
    client: &async_nats::Client,
    stores: &[async_nats::jetstream::kv::Store; 3],
    req: ApplyRequest,
    holder: &LockHolder,
    apply_id: &str,
) -> Result<ApplyRun, FleetError> {
    let trusted = [req.signing_key.verifying_key()];
    let fleet = req.desired.fleet.clone();
    let observed = observe_fleet(client, stores, &fleet, &trusted).await?;
    let actions = plan_fleet_owned(req.desired, &observed);
    if let Some(confirm) = req.confirm
        && actions.iter().any(|a| a.op != FleetOp::Noop)
        && !confirm(&actions, &observed)
    {
        return Ok(ApplyRun { actions, report: ApplyReport::default(), observed, interrupted: None, aborted: true, journal: None });
    }
    let writes = actions.iter().filter(|a| a.op != FleetOp::Noop).count();
    let (journal, interrupted) = match &req.state_dir {
        Some(dir) => {
            let (j, i) = Journal::begin(dir, &fleet, apply_id, &holder.holder, writes)?;
            (Some(j), i)
        }
        None => (None, None),
    };
    let opts = ApplyOptions { parallelism: req.parallelism, progress: req.progress };
    let (report, actions) = apply_actions_returning(&stores[0], actions, &req.signing_key, journal.as_ref(), &opts).await;
    if let Some(j) = &journal {
        j.record(Record::End {
            finished_ms: harmony_schemas::fleet::now_ms(),
            written: report.written(),
            stale: report.stale().len(),
            failed: report.failed().len(),
        })?;
        j.close()?;
    }
    Ok(ApplyRun { actions, report, observed, interrupted, aborted: false, journal: journal.map(|j| j.path().to_path_buf()) })
}
