//! Feeding the model: one KV watch per bucket (last value of every key, then every change) and
//! a poll of each release's Helm records.
//!
//! Read-only: buckets are never created here (until `harmony apply` creates them, the watch
//! waits for them).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use harmony_executor::fleet::{NatsOptions, connect};
use harmony_schemas::fleet::{HEARTBEATS_BUCKET, PLANS_BUCKET, STATUS_BUCKET, now_ms};
use tokio::task::JoinHandle;

use crate::model::LiveRelease;
use crate::server::Shared;

/// Connects (retrying every 2 s while no server answers) and watches the plans, status and
/// heartbeat buckets until aborted.
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
        let js = jetstream::new(client);
        // One task: aborting it stops the four watches.
        futures::join!(
            watch_bucket(shared.clone(), js.clone(), PLANS_BUCKET),
            watch_bucket(shared.clone(), js.clone(), STATUS_BUCKET),
            watch_bucket(shared.clone(), js.clone(), HEARTBEATS_BUCKET),
            watch_bucket(shared.clone(), js, harmony_schemas::fleet::ROLLOUTS_BUCKET)
        );
    })
}

async fn open(js: &jetstream::Context, bucket: &str) -> kv::Store {
    loop {
        if let Ok(s) = js.get_key_value(bucket).await {
            return s;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn watch_bucket(shared: Arc<Shared>, js: jetstream::Context, bucket: &'static str) {
    loop {
        let store = open(&js, bucket).await;
        match store.watch_with_history(">").await {
            Ok(mut watch) => {
                while let Some(next) = watch.next().await {
                    match next {
                        Ok(e) => {
                            let created_ms = u64::try_from(e.created.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
                            let value = matches!(e.operation, kv::Operation::Put).then_some(&e.value[..]);
                            shared.apply_entry(bucket, &e.key, e.revision, created_ms, value);
                        }
                        Err(err) => {
                            tracing::warn!(bucket, "watch: {err}; restarting");
                            break;
                        }
                    }
                }
            }
            Err(err) => tracing::warn!(bucket, "watch: {err}; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
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
