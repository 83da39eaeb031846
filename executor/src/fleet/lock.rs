//! One apply per fleet: a create-only entry `harmony-locks/<fleet>` holding [`LockHolder`].
//!
//! The bucket's `max_age` is the lock's TTL: the holder renews the entry (compare-and-set
//! update) every third of it, so a crashed holder's lock disappears by itself within one TTL.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};

use super::connect::ensure_locks_bucket;
use super::{FleetError, nats_err};

/// Who holds a fleet's lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    /// `user@host`.
    pub holder: String,
    /// Process id.
    pub pid: u32,
    /// Since, Unix ms.
    pub since_ms: u64,
    /// The apply's id.
    #[serde(default)]
    pub apply_id: String,
}

impl LockHolder {
    /// This process, now.
    pub fn this_process(apply_id: &str) -> LockHolder {
        LockHolder { holder: user_at_host(), pid: std::process::id(), since_ms: harmony_schemas::fleet::now_ms(), apply_id: apply_id.to_string() }
    }
}

/// `user@host` from the environment (`USER`, `HOSTNAME` or `/etc/hostname`).
pub fn user_at_host() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_string()))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into());
    format!("{user}@{host}")
}

/// Formats Unix ms as RFC 3339 UTC.
pub fn format_ms(ms: u64) -> String {
    jiff::Timestamp::from_millisecond(ms as i64).map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_else(|_| ms.to_string())
}

/// Lock settings.
#[derive(Debug, Clone, Copy)]
pub struct LockOptions {
    /// TTL (the locks bucket's `max_age` when this creates it).
    pub ttl: Duration,
    /// How long to wait for a held lock (zero: fail at once).
    pub timeout: Duration,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions { ttl: Duration::from_secs(30), timeout: Duration::ZERO }
    }
}

/// A held lock; renewed in the background until [`FleetLock::release`] (or drop).
#[derive(Debug)]
pub struct FleetLock {
    store: kv::Store,
    fleet: String,
    revision: Arc<AtomicU64>,
    lost: Arc<AtomicBool>,
    renew: tokio::task::JoinHandle<()>,
}

impl FleetLock {
    /// Takes the fleet's lock, waiting up to `opts.timeout` for a holder to release it or for it to expire.
    pub async fn acquire(js: &jetstream::Context, fleet: &str, holder: &LockHolder, opts: LockOptions) -> Result<FleetLock, FleetError> {
        let mut store = ensure_locks_bucket(js, opts.ttl).await?;
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
                Ok(revision) => {
                    let revision = Arc::new(AtomicU64::new(revision));
                    let lost = Arc::new(AtomicBool::new(false));
                    let renew = tokio::spawn(renew(store.clone(), fleet.to_string(), value, revision.clone(), lost.clone(), ttl / 3));
                    return Ok(FleetLock { store, fleet: fleet.to_string(), revision, lost, renew });
                }
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                    if Instant::now() >= deadline {
                        let entry = store.entry(fleet).await.map_err(|e| nats_err("reading lock", e))?;
                        if let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) {
                            let holder: LockHolder = serde_json::from_slice(&entry.value).unwrap_or(LockHolder {
                                holder: "unknown (undecodable lock)".into(),
                                pid: 0,
                                since_ms: 0,
                                apply_id: String::new(),
                            });
                            let age = Duration::from_nanos(u64::try_from((time_now_ns() - entry.created.unix_timestamp_nanos()).max(0)).unwrap_or(0));
                            let expires_in_s = ttl.saturating_sub(age).as_secs();
                            return Err(FleetError::Locked { fleet: fleet.to_string(), holder, expires_in_s });
                        }
                        continue; // released meanwhile: try again
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => {
                    if Instant::now() >= deadline {
                        return Err(nats_err("taking the apply lock", e));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if let Ok(s) = ensure_locks_bucket(js, opts.ttl).await {
                        store = s;
                    }
                }
            }
        }
    }

    /// Whether a renewal found the lock taken by someone else (it had expired).
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Releases the lock (deletes the entry if it is still ours).
    pub async fn release(self) -> Result<(), FleetError> {
        self.renew.abort();
        let rev = self.revision.load(Ordering::SeqCst);
        self.store.delete_expect_revision(&self.fleet, Some(rev)).await.map_err(|e| nats_err("releasing the apply lock", e))
    }
}

impl Drop for FleetLock {
    fn drop(&mut self) {
        self.renew.abort();
    }
}

fn time_now_ns() -> i128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i128).unwrap_or(0)
}

async fn renew(store: kv::Store, fleet: String, value: Vec<u8>, revision: Arc<AtomicU64>, lost: Arc<AtomicBool>, every: Duration) {
    let every = every.max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        let rev = revision.load(Ordering::SeqCst);
        match store.update(&fleet, value.clone().into(), rev).await {
            Ok(r) => revision.store(r, Ordering::SeqCst),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                lost.store(true, Ordering::SeqCst);
                return;
            }
            Err(_) => {} // transient (server restarting): try again next round
        }
    }
}
