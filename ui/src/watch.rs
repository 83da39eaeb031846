//! Feeding the model: a read of each bucket every [`BUCKET_POLL`] (the last value of every
//! key, with direct gets: the read-only identity may create no consumer, docs/security.md) and
//! a poll of each release's Helm records.
//!
//! Read-only: buckets are never created here (until `harmony apply` creates them, the poll
//! finds nothing).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use harmony_executor::fleet::observe::read_bucket;
use harmony_executor::fleet::{NatsOptions, connect};
use harmony_schemas::fleet::{HEARTBEATS_BUCKET, PLANS_BUCKET, STATUS_BUCKET, now_ms};
use tokio::task::JoinHandle;

use crate::model::LiveRelease;
use crate::server::Shared;

/// How often each bucket is read again.
pub const BUCKET_POLL: Duration = Duration::from_secs(1);

/// Connects (retrying every 2 s while no server answers) and reads the plans, status, heartbeat
/// and rollout buckets every [`BUCKET_POLL`] until aborted.
pub fn spawn_watches(shared: Arc<Shared>, opts: NatsOptions) -> JoinHandle<()> {
    tokio::spawn(async move {
        let client = loop {
            match connect(&opts).await {
                Ok(c) => break c,
                Err(e) => {
                    shared.set_nats_error(Some(e.to_string()));
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        };
        shared.set_nats_error(None);
        // One task: aborting it stops the four polls.
        futures::join!(
            poll_bucket(shared.clone(), client.clone(), PLANS_BUCKET),
            poll_bucket(shared.clone(), client.clone(), STATUS_BUCKET),
            poll_bucket(shared.clone(), client.clone(), HEARTBEATS_BUCKET),
            poll_bucket(shared.clone(), client, harmony_schemas::fleet::ROLLOUTS_BUCKET)
        );
    })
}

/// Reads `bucket` every [`BUCKET_POLL`] and feeds the model what changed: entries at a new
/// revision, and keys that are gone (deleted or purged).
async fn poll_bucket(shared: Arc<Shared>, client: async_nats::Client, bucket: &'static str) {
    let js = jetstream::new(client.clone());
    let mut store: Option<kv::Store> = None;
    let mut seen: HashMap<String, u64> = HashMap::new();
    loop {
        if store.is_none() {
            store = js.get_key_value(bucket).await.ok();
        }
        if let Some(s) = &store {
            match read_bucket(&client, s).await {
                Ok(entries) => {
                    let mut now = HashMap::with_capacity(entries.len());
                    for e in entries {
                        if seen.get(&e.key) != Some(&e.revision) {
                            shared.apply_entry(bucket, &e.key, e.revision, e.created_ms, Some(&e.value));
                        }
                        now.insert(e.key, e.revision);
                    }
                    for key in seen.keys().filter(|k| !now.contains_key(*k)) {
                        shared.apply_entry(bucket, key, 0, now_ms(), None);
                    }
                    seen = now;
                }
                Err(err) => {
                    tracing::warn!(bucket, "reading the bucket: {err}; retrying");
                    store = None;
                }
            }
        }
        tokio::time::sleep(BUCKET_POLL).await;
    }
}

/// Reads every release's Helm records every `interval`, with Harmony's own credentials
/// (reading release Secrets needs `get`/`list` on Secrets in the release's namespace).
pub fn spawn_release_poller(shared: Arc<Shared>, kubeconfig: Option<PathBuf>, interval: Duration) -> JoinHandle<()> {
    use harmony_executor::kube::Cluster;
    use harmony_executor::kube::release::history;
    tokio::spawn(async move {
        let mut contexts: std::collections::BTreeMap<String, Option<Result<Cluster, String>>> =
            shared.repo.releases.iter().map(|r| (r.context.clone(), None)).collect();
        loop {
            for r in shared.repo.releases.clone() {
                let slot = contexts.entry(r.context.clone()).or_insert(None);
                if slot.as_ref().is_none_or(|c| c.is_err()) {
                    *slot = Some(Cluster::from_kubeconfig(kubeconfig.as_deref(), &r.context).await.map_err(|e| e.to_string()));
                }
                let read_at_ms = now_ms();
                let live = match slot.as_ref() {
                    Some(Ok(cluster)) => match history(cluster, &r.namespace, &r.name).await {
                        Ok(h) => match h.last() {
                            Some(s) => LiveRelease {
                                revision: Some(s.release.version),
                                status: s.release.info.status.as_str().to_string(),
                                updated: s.release.info.last_deployed.clone(),
                                description: s.release.info.description.clone(),
                                error: None,
                                read_at_ms,
                            },
                            None => LiveRelease {
                                revision: None,
                                status: "not installed".into(),
                                updated: String::new(),
                                description: String::new(),
                                error: None,
                                read_at_ms,
                            },
                        },
                        Err(e) => error_release(e.to_string(), read_at_ms),
                    },
                    Some(Err(e)) => error_release(e.clone(), read_at_ms),
                    None => continue,
                };
                shared.set_release((r.cluster.clone(), r.namespace.clone(), r.name.clone()), live);
            }
            tokio::time::sleep(interval).await;
        }
    })
}

fn error_release(e: String, read_at_ms: u64) -> LiveRelease {
    LiveRelease { revision: None, status: String::new(), updated: String::new(), description: String::new(), error: Some(e), read_at_ms }
}
