//! One apply per fleet: a create-only entry `harmony-locks/<fleet>` holding [`LockHolder`].
//!
//! The bucket's `max_age` is the lock's TTL: the holder renews the entry (compare-and-set
//! update) every third of it, so a crashed holder's lock disappears by itself within one TTL.
//! A holder known to be dead (`LockHolder::dead_here`: this host, boot and pid namespace, its pid
//! gone or now another process) is taken over at once (compare-and-set on the entry it was read
//! from). The rules are the cluster lock's (`crate::lock`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};

use super::connect::{FleetStorage, ensure_locks_bucket};
use super::{FleetError, nats_err};

pub use crate::lock::{LockHolder, LockOptions, format_ms};

/// A held lock; renewed in the background until [`FleetLock::release`] (or drop).
#[derive(Debug)]
pub struct FleetLock {
    store: kv::Store,
    fleet: String,
    revision: Arc<AtomicU64>,
    lost: Arc<AtomicBool>,
    /// Held by a renewal across its update: [`FleetLock::release`] takes it before stopping the
    /// renewal, so no update is in flight and `revision` is the last one written.
    renewing: Arc<tokio::sync::Mutex<()>>,
    renew: tokio::task::JoinHandle<()>,
}

impl FleetLock {
    /// Takes the fleet's lock, waiting up to `opts.timeout` for a holder to release it or for it to expire.
    /// The locks bucket is created with `storage` (the fleet's replicas and placement) if missing.
    pub async fn acquire(js: &jetstream::Context, fleet: &str, holder: &LockHolder, opts: LockOptions, storage: &FleetStorage) -> Result<FleetLock, FleetError> {
        let mut store = ensure_locks_bucket(js, opts.ttl, storage).await?;
        // The bucket's own max age (an existing bucket keeps the TTL it was made with), from the
        // stream info opening it returned: no extra round trip.
        let ttl = match store.stream.cached_info().config.max_age {
            d if d.is_zero() => opts.ttl,
            d => d,
        };
        let value = serde_json::to_vec(holder).map_err(|e| nats_err("encoding lock", e))?;
        let deadline = Instant::now() + opts.timeout;
        loop {
            match store.create(fleet, value.clone().into()).await {
                Ok(revision) => return Ok(FleetLock::held(store, fleet, value, revision, ttl)),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                    let entry = store.entry(fleet).await.map_err(|e| nats_err("reading lock", e))?;
                    let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
                        continue; // released meanwhile: try again
                    };
                    let holder: LockHolder = serde_json::from_slice(&entry.value)
                        .unwrap_or(LockHolder { user: "unknown (undecodable lock)".into(), ..LockHolder::default() });
                    if let Some(why) = holder.dead_here() {
                        // Its process is gone: taken over now, only if nobody else did in between
                        // (if someone did, or the update fails, this waits as for a live holder).
                        match store.update(fleet, value.clone().into(), entry.revision).await {
                            Ok(revision) => {
                                tracing::warn!("fleet {fleet}: took over the apply lock of {}: {why}", holder.describe());
                                return Ok(FleetLock::held(store, fleet, value, revision, ttl));
                            }
                            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue, // moved: look again
                            Err(_) => {}
                        }
                    }
                    if Instant::now() >= deadline {
                        let created_ms = u64::try_from(entry.created.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
                        let age = Duration::from_millis(harmony_schemas::fleet::now_ms().saturating_sub(created_ms));
                        let expires_in_s = ttl.saturating_sub(age).as_secs();
                        return Err(FleetError::Locked { fleet: fleet.to_string(), holder, expires_in_s });
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => {
                    if Instant::now() >= deadline {
                        return Err(nats_err("taking the apply lock", e));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if let Ok(s) = ensure_locks_bucket(js, opts.ttl, storage).await {
                        store = s;
                    }
                }
            }
        }
    }

    /// The lock just written at `revision`, renewed from now on.
    fn held(store: kv::Store, fleet: &str, value: Vec<u8>, revision: u64, ttl: Duration) -> FleetLock {
        let revision = Arc::new(AtomicU64::new(revision));
        let lost = Arc::new(AtomicBool::new(false));
        let renewing = Arc::new(tokio::sync::Mutex::new(()));
        let renew = tokio::spawn(renew(store.clone(), fleet.to_string(), value, revision.clone(), lost.clone(), renewing.clone(), ttl));
        FleetLock { store, fleet: fleet.to_string(), revision, lost, renewing, renew }
    }

    /// Whether a renewal found the lock taken by someone else (it had expired).
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// The flag [`FleetLock::lost`] reads, for a writer to check as it goes.
    pub(crate) fn lost_flag(&self) -> Arc<AtomicBool> {
        self.lost.clone()
    }

    /// Releases the lock (deletes the entry if it is still ours).
    pub async fn release(self) -> Result<(), FleetError> {
        let _quiet = self.renewing.lock().await;
        self.renew.abort();
        let rev = self.revision.load(Ordering::SeqCst);
        self.store.delete_expect_revision(&self.fleet, Some(rev)).await.map_err(|e| nats_err("releasing the apply lock", e))
    }
}

/// A fleet's lock as `harmony unlock` shows it: who holds it and the entry's revision, the
/// compare-and-set token [`force_unlock`] needs. `None`: not locked.
pub async fn shown(js: &jetstream::Context, fleet: &str) -> Result<Option<(LockHolder, u64)>, FleetError> {
    let store = js.get_key_value(harmony_schemas::fleet::LOCKS_BUCKET).await;
    let Ok(store) = store else { return Ok(None) }; // no locks bucket: nothing ever locked
    let entry = store.entry(fleet).await.map_err(|e| nats_err("reading lock", e))?;
    Ok(entry.filter(|e| e.operation == kv::Operation::Put).map(|e| {
        let holder = serde_json::from_slice(&e.value).unwrap_or(LockHolder { user: "unknown (undecodable lock)".into(), ..LockHolder::default() });
        (holder, e.revision)
    }))
}

/// Removes a fleet's lock as [`shown`] showed it: only if the entry is still at `revision`, so a
/// lock taken (or renewed) in between is never removed.
pub async fn force_unlock(js: &jetstream::Context, fleet: &str, revision: u64) -> Result<(), FleetError> {
    let store = js.get_key_value(harmony_schemas::fleet::LOCKS_BUCKET).await.map_err(|e| nats_err("opening the locks bucket", e))?;
    match store.delete_expect_revision(fleet, Some(revision)).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == kv::DeleteErrorKind::WrongLastRevision => Err(FleetError::Nats {
            what: format!("unlocking fleet `{fleet}`"),
            detail: "the lock changed since it was shown (renewed, released or taken by another apply): not removed; look again".into(),
        }),
        Err(e) => Err(nats_err("removing the lock", e)),
    }
}

impl Drop for FleetLock {
    fn drop(&mut self) {
        self.renew.abort();
    }
}

/// Renews every third of `ttl` (an update expecting the last written revision). Someone else's
/// write in between, or no renewal for a whole `ttl` (the entry may have expired and been taken
/// since), loses the lock, as for the cluster lock.
async fn renew(store: kv::Store, fleet: String, value: Vec<u8>, revision: Arc<AtomicU64>, lost: Arc<AtomicBool>, renewing: Arc<tokio::sync::Mutex<()>>, ttl: Duration) {
    let every = (ttl / 3).max(Duration::from_millis(100));
    let mut renewed = Instant::now();
    loop {
        tokio::time::sleep(every).await;
        let _renewing = renewing.lock().await;
        let rev = revision.load(Ordering::SeqCst);
        match tokio::time::timeout(every, store.update(&fleet, value.clone().into(), rev)).await {
            Ok(Ok(r)) => {
                revision.store(r, Ordering::SeqCst);
                renewed = Instant::now();
            }
            Ok(Err(e)) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                tracing::warn!("fleet {fleet}: the apply lock was lost (its entry was written by someone else): no further write starts");
                lost.store(true, Ordering::SeqCst);
                return;
            }
            _ if renewed.elapsed() >= ttl => {
                tracing::warn!("fleet {fleet}: the apply lock could not be renewed for {}s: no further write starts", ttl.as_secs());
                lost.store(true, Ordering::SeqCst);
                return;
            }
            _ => {} // transient (server restarting): try again next round
        }
    }
}
