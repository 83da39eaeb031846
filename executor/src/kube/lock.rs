//! One apply per cluster at a time: a `coordination.k8s.io/v1` Lease `kube-system/harmony-apply`,
//! held like a Kubernetes leader-election lease (`crate::lock`): a short duration (30 s by
//! default), renewed every third of it in the background while the apply runs, each renewal a
//! compare-and-set on the Lease's resourceVersion; a renewal that finds the Lease changed (or
//! gone) marks the lock lost, and the apply starts no further unit on that cluster.
//!
//! A held Lease is taken over when it expired (its renew time plus duration is past, or it did
//! not change during a whole duration while this applier watched it: a holder's clock cannot
//! keep it alive), or at once when its holder is known to be dead (`LockHolder::dead_here`: a
//! process of this host, boot and pid namespace whose pid is gone or now another process).
//! Otherwise the applier waits up to `--lock-timeout`, then is refused with the holder's name.
//! Every takeover is a replace with the resourceVersion it was read at, so two appliers racing
//! for it cannot both win. The holder (user, host, pid, command, start) is the Lease's
//! `holderIdentity` (`user@host pid N`) and, whole, its annotation [`HOLDER_ANNOTATION`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, DeleteParams, PostParams};

use super::{Cluster, KubeError, api_err};
use crate::lock::{LockHolder, LockOptions};

/// Where the lease lives.
pub const LEASE_NAMESPACE: &str = "kube-system";
/// Its name.
pub const LEASE_NAME: &str = "harmony-apply";
/// The annotation holding the whole [`LockHolder`] (JSON).
pub const HOLDER_ANNOTATION: &str = "harmony.dev/lock-holder";

/// A held lock, renewed in the background; release it with [`ClusterLock::release`].
#[derive(Debug)]
pub struct ClusterLock {
    /// The Lease as last written by this holder (its resourceVersion is the renewal's precondition).
    lease: Arc<tokio::sync::Mutex<Lease>>,
    lost: Arc<AtomicBool>,
    renew: Option<tokio::task::JoinHandle<()>>,
}

/// Who holds a cluster's lock, as read from its Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The holder (from the annotation; else only the `holderIdentity` in `user`).
    pub holder: LockHolder,
    /// When the lease was last renewed.
    pub renewed: jiff::Timestamp,
    /// When it expires unless renewed.
    pub expires: jiff::Timestamp,
    /// The Lease's resourceVersion: the compare-and-set token of [`force_unlock`].
    pub resource_version: String,
}

impl Holder {
    /// `user@host pid N (command, started T); renewed R, expires E`.
    pub fn describe(&self) -> String {
        format!("{}; renewed {}, expires {}", self.holder.describe(), self.renewed, self.expires)
    }
}

fn leases(cluster: &Cluster) -> Api<Lease> {
    Api::namespaced(cluster.client().clone(), LEASE_NAMESPACE)
}

fn holder_of(lease: &Lease) -> Option<Holder> {
    let spec = lease.spec.as_ref()?;
    let identity = spec.holder_identity.clone().filter(|i| !i.is_empty())?;
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref())?.0;
    // A hostile or broken Lease (renewTime near the end of time) must not overflow: it counts as
    // expired then.
    let expires = renewed.checked_add(jiff::SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0).max(0)))).unwrap_or(renewed);
    let holder = lease
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(HOLDER_ANNOTATION))
        .and_then(|j| serde_json::from_str::<LockHolder>(j).ok())
        .filter(|h| h.identity() == identity)
        .unwrap_or(LockHolder { user: identity, ..LockHolder::default() });
    Some(Holder { holder, renewed, expires, resource_version: lease.metadata.resource_version.clone().unwrap_or_default() })
}

fn what() -> String {
    format!("Lease {LEASE_NAMESPACE}/{LEASE_NAME}")
}

impl ClusterLock {
    /// Takes the cluster's lock as `holder` for `opts.ttl` (renewed until released), waiting up
    /// to `opts.timeout` for a live holder's lease to be released or expire; refused with the
    /// holder's name after that.
    pub async fn acquire(cluster: &Cluster, holder: &LockHolder, opts: LockOptions) -> Result<ClusterLock, KubeError> {
        let api = leases(cluster);
        let ttl_secs = i32::try_from(opts.ttl.as_secs().max(1)).unwrap_or(i32::MAX);
        let annotation = serde_json::to_string(holder).map_err(|e| KubeError::Release(format!("encoding the lock holder: {e}")))?;
        let lease = |rv: Option<String>, transitions: Option<i32>| {
            let now = MicroTime(jiff::Timestamp::now());
            Lease {
                metadata: ObjectMeta {
                    name: Some(LEASE_NAME.into()),
                    namespace: Some(LEASE_NAMESPACE.into()),
                    resource_version: rv,
                    annotations: Some([(HOLDER_ANNOTATION.to_string(), annotation.clone())].into()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(holder.identity()),
                    lease_duration_seconds: Some(ttl_secs),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: transitions,
                    ..Default::default()
                }),
            }
        };
        let deadline = Instant::now() + opts.timeout;
        // The resourceVersion last seen and since when (this process's clock): a lease that does
        // not change during a whole duration has expired, whatever its holder's clock said.
        let mut seen: Option<(String, Instant)> = None;
        loop {
            match api.create(&PostParams::default(), &lease(None, Some(0))).await {
                Ok(l) => return Ok(ClusterLock::held(cluster, l, opts.ttl)),
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(api_err(format!("create {}", what()))(e)),
            }
            let Some(current) = api.get_opt(LEASE_NAME).await.map_err(api_err(format!("get {}", what())))? else {
                continue; // released meanwhile
            };
            let rv = current.metadata.resource_version.clone().unwrap_or_default();
            if seen.as_ref().is_none_or(|(r, _)| *r != rv) {
                seen = Some((rv.clone(), Instant::now()));
            }
            let h = holder_of(&current);
            let duration = Duration::from_secs(current.spec.as_ref().and_then(|s| s.lease_duration_seconds).unwrap_or(0).max(0) as u64);
            let unchanged_for = seen.as_ref().map(|(_, t)| t.elapsed()).unwrap_or_default();
            let takeover = match &h {
                None => Some(String::new()),
                Some(h) if h.holder.is_same_process(holder) => Some(String::new()),
                Some(h) if h.expires <= jiff::Timestamp::now() || unchanged_for >= duration => Some(format!("its lease expired at {}", h.expires)),
                Some(h) => h.holder.dead_here(),
            };
            if let Some(why) = takeover {
                let transitions = current.spec.as_ref().and_then(|s| s.lease_transitions).unwrap_or(0).saturating_add(1);
                match api.replace(LEASE_NAME, &PostParams::default(), &lease(Some(rv), Some(transitions))).await {
                    Ok(l) => {
                        if let Some(h) = h.filter(|_| !why.is_empty()) {
                            tracing::warn!("cluster {}: took over the apply lock of {}: {why}", cluster.url(), h.holder.describe());
                        }
                        return Ok(ClusterLock::held(cluster, l, opts.ttl));
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => continue, // someone else moved first: look again
                    Err(e) => return Err(api_err(format!("take over {}", what()))(e)),
                }
            }
            if Instant::now() >= deadline {
                let h = h.map(|h| h.describe()).unwrap_or_default();
                let advice = if opts.timeout.is_zero() { "use --lock-timeout to wait for it" } else { "waited --lock-timeout for it" };
                return Err(KubeError::Release(format!(
                    "another apply holds the lock of this cluster ({}): {h}; {advice}, or `harmony unlock` it if that apply is known to be dead",
                    what()
                )));
            }
            tokio::time::sleep(Duration::from_millis(250).min(deadline.saturating_duration_since(Instant::now())).max(Duration::from_millis(10))).await;
        }
    }

    fn held(cluster: &Cluster, lease: Lease, ttl: Duration) -> ClusterLock {
        let lease = Arc::new(tokio::sync::Mutex::new(lease));
        let lost = Arc::new(AtomicBool::new(false));
        let renew = tokio::spawn(renew(leases(cluster), cluster.url(), lease.clone(), lost.clone(), ttl));
        ClusterLock { lease, lost, renew: Some(renew) }
    }

    /// Whether a renewal found the Lease changed or gone (taken over after it expired, or
    /// unlocked by hand), or could not renew it within its duration: no further unit may start.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Releases the lock if this holder still has it (delete with its resourceVersion as precondition).
    pub async fn release(mut self, cluster: &Cluster) -> Result<(), KubeError> {
        // The renewal holds the mutex across its request: taken first, no renewal is in flight
        // when the task is stopped, so the resourceVersion below is the last one written.
        let held = self.lease.lock().await;
        if let Some(r) = self.renew.take() {
            r.abort();
        }
        let rv = held.metadata.resource_version.clone();
        drop(held);
        let dp = DeleteParams { preconditions: Some(kube::api::Preconditions { resource_version: rv, uid: None }), ..Default::default() };
        match leases(cluster).delete(LEASE_NAME, &dp).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(api_err(format!("delete {}", what()))(e)),
        }
    }
}

impl Drop for ClusterLock {
    fn drop(&mut self) {
        if let Some(r) = &self.renew {
            r.abort();
        }
    }
}

/// Renews every third of `ttl`: a replace carrying the last written resourceVersion. A 409 or
/// 404 means the lease is no longer ours; failing to renew for a whole `ttl` means it may be
/// someone else's by now: either way the lock is lost.
async fn renew(api: Api<Lease>, url: String, lease: Arc<tokio::sync::Mutex<Lease>>, lost: Arc<AtomicBool>, ttl: Duration) {
    let every = (ttl / 3).max(Duration::from_millis(100));
    let mut renewed = Instant::now();
    loop {
        tokio::time::sleep(every).await;
        let mut held = lease.lock().await;
        let mut next = held.clone();
        if let Some(spec) = next.spec.as_mut() {
            spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        }
        match api.replace(LEASE_NAME, &PostParams::default(), &next).await {
            Ok(l) => {
                *held = l;
                renewed = Instant::now();
            }
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {
                tracing::warn!("cluster {url}: the apply lock was lost (Lease {LEASE_NAMESPACE}/{LEASE_NAME} changed or was removed by someone else): no further unit starts");
                lost.store(true, Ordering::SeqCst);
                return;
            }
            Err(e) if renewed.elapsed() >= ttl => {
                tracing::warn!("cluster {url}: the apply lock could not be renewed for {}s ({e}): no further unit starts", ttl.as_secs());
                lost.store(true, Ordering::SeqCst);
                return;
            }
            Err(_) => {} // transient: again next round
        }
    }
}

/// A cluster's lock as `harmony unlock` shows it (`None`: not locked).
pub async fn shown(cluster: &Cluster) -> Result<Option<Holder>, KubeError> {
    let current = leases(cluster).get_opt(LEASE_NAME).await.map_err(api_err(format!("get {}", what())))?;
    Ok(current.as_ref().and_then(holder_of))
}

/// Removes a cluster's lock as [`shown`] showed it: a delete with its resourceVersion as
/// precondition, so a lock renewed or taken in between is never removed.
pub async fn force_unlock(cluster: &Cluster, shown: &Holder) -> Result<(), KubeError> {
    let dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions { resource_version: Some(shown.resource_version.clone()), uid: None }),
        ..Default::default()
    };
    match leases(cluster).delete(LEASE_NAME, &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Err(KubeError::Release(format!(
            "the lock changed since it was shown ({} was renewed, released or taken by another apply): not removed; look again",
            what()
        ))),
        Err(e) => Err(api_err(format!("delete {}", what()))(e)),
    }
}
