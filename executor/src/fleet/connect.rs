//! NATS connection options and bucket creation.
//!
//! Server URLs come from the repository's `fleet` node (`nats "nats://…"`, several allowed) or
//! `--nats-url`; secrets only from flags or the environment (see `docs/fleet.md`).

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use harmony_schemas::fleet::{HEARTBEATS_BUCKET, LOCKS_BUCKET, PLANS_BUCKET, STATUS_BUCKET};
pub use harmony_schemas::plan::FleetStorage;

use super::{FleetError, nats_err};

/// How to reach a fleet's NATS servers. `Debug` never shows secrets.
#[derive(Clone, Default)]
pub struct NatsOptions {
    /// Server URLs (`nats://`, `tls://`), tried in turn.
    pub urls: Vec<String>,
    /// User (with `password`).
    pub user: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// Token.
    pub token: Option<String>,
    /// A `.creds` file (JWT + nkey seed).
    pub creds_file: Option<PathBuf>,
    /// An nkey seed (`SU…`).
    pub nkey_seed: Option<String>,
    /// A CA certificate (PEM) to trust for TLS; implies TLS.
    pub tls_ca: Option<PathBuf>,
    /// Require TLS.
    pub tls_required: bool,
    /// Timeout of one request (KV write, read); default 5 s.
    pub request_timeout: Option<Duration>,
    /// Inbox prefix for replies and push-consumer deliveries (default `_INBOX`); an identity
    /// allowed to subscribe only to its own prefix needs it (harmony's read-only identity:
    /// [`super::auth::READER_INBOX_PREFIX`]).
    pub inbox_prefix: Option<String>,
}

impl std::fmt::Debug for NatsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsOptions")
            .field("urls", &self.urls)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("creds_file", &self.creds_file)
            .field("nkey_seed", &self.nkey_seed.as_ref().map(|_| "<redacted>"))
            .field("tls_ca", &self.tls_ca)
            .field("tls_required", &self.tls_required)
            .field("inbox_prefix", &self.inbox_prefix)
            .finish()
    }
}

/// Connects. Fails (rather than retrying forever) when no server answers within the connection timeout.
pub async fn connect(opts: &NatsOptions) -> Result<async_nats::Client, FleetError> {
    if opts.urls.is_empty() {
        return Err(FleetError::Connect("no NATS server URL (the fleet declares none and --nats-url is not set)".into()));
    }
    let addrs: Vec<async_nats::ServerAddr> = opts
        .urls
        .iter()
        .map(|u| u.parse::<async_nats::ServerAddr>().map_err(|e| FleetError::Connect(format!("invalid NATS URL `{u}`: {e}"))))
        .collect::<Result<_, _>>()?;
    let mut o = async_nats::ConnectOptions::new()
        .name("harmony")
        .connection_timeout(Duration::from_secs(5))
        .request_timeout(Some(opts.request_timeout.unwrap_or(Duration::from_secs(5))));
    match (&opts.user, &opts.password) {
        (Some(u), Some(p)) => o = o.user_and_password(u.clone(), p.clone()),
        (Some(_), None) | (None, Some(_)) => return Err(FleetError::Connect("a NATS user needs a password and a password needs a user".into())),
        (None, None) => {}
    }
    if let Some(t) = &opts.token {
        o = o.token(t.clone());
    }
    if let Some(seed) = &opts.nkey_seed {
        o = o.nkey(seed.trim().to_string());
    }
    if let Some(c) = &opts.creds_file {
        o = o.credentials_file(c).await.map_err(|e| FleetError::Connect(format!("cannot use credentials file {}: {e}", c.display())))?;
    }
    if let Some(ca) = &opts.tls_ca {
        o = o.add_root_certificates(ca.clone()).require_tls(true);
    }
    if opts.tls_required {
        o = o.require_tls(true);
    }
    if let Some(p) = &opts.inbox_prefix {
        o = o.custom_inbox_prefix(p.clone());
    }
    o.connect(addrs).await.map_err(|e| FleetError::Connect(format!("cannot connect to {}: {e}", opts.urls.join(", "))))
}

/// History kept for device plans (audit).
pub const PLANS_HISTORY: i64 = 5;

/// Whether a bucket's stream may be rolled up (`Nats-Rollup` headers) and purged.
///
/// A KV bucket is created by async-nats with roll-ups allowed (its `purge` is a roll-up of one
/// key), so any client allowed to put one key could send `Nats-Rollup: all` and erase every
/// other key of the bucket (issue 20, item 5). nats-server refuses such a message only by the
/// stream's configuration (`allow_rollup_hdrs: false`: "rollup not permitted"); subject
/// permissions cannot see headers. So every bucket that nobody purges is [`Rollups::Denied`]:
/// roll-ups and the purge API are denied (`deny_purge` also makes the server refuse roll-ups, and
/// can never be turned off again). Only the plans bucket keeps them: `harmony fleet revoke`
/// purges a revoked device's plan, and only Harmony's own identity may write there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rollups {
    /// Roll-ups and purges allowed (the plans bucket: written by Harmony only).
    Allowed,
    /// `allow_rollup_hdrs: false`, `deny_purge: true` (and async-nats' `deny_delete: true`).
    Denied,
}

/// Creates (or opens) the plans, status and heartbeat buckets. Only the executor creates buckets.
/// The status and heartbeat buckets (which devices write) deny roll-ups and purges; buckets made
/// before they did are changed to deny them. A bucket is created with the fleet's `storage`
/// (replicas, placement); an existing one is left as it is ([`storage_drift`] reports it).
pub async fn ensure_buckets(js: &jetstream::Context, storage: &FleetStorage) -> Result<[kv::Store; 3], FleetError> {
    let plans = ensure(js, PLANS_BUCKET, PLANS_HISTORY, Duration::ZERO, Rollups::Allowed, storage).await?;
    let status = ensure(js, STATUS_BUCKET, 1, Duration::ZERO, Rollups::Denied, storage).await?;
    let heartbeats = ensure(js, HEARTBEATS_BUCKET, 1, Duration::ZERO, Rollups::Denied, storage).await?;
    Ok([plans, status, heartbeats])
}

/// Creates (or opens) the rollouts bucket (one record per fleet).
pub async fn ensure_rollouts_bucket(js: &jetstream::Context, storage: &FleetStorage) -> Result<kv::Store, FleetError> {
    ensure(js, harmony_schemas::fleet::ROLLOUTS_BUCKET, 1, Duration::ZERO, Rollups::Denied, storage).await
}

/// Creates (or opens) the locks bucket; `ttl` is its `max_age` (a lock not renewed expires).
pub async fn ensure_locks_bucket(js: &jetstream::Context, ttl: Duration, storage: &FleetStorage) -> Result<kv::Store, FleetError> {
    ensure(js, LOCKS_BUCKET, 1, ttl, Rollups::Denied, storage).await
}

/// The JetStream placement of `storage` (`None`: the server chooses).
pub(crate) fn placement(storage: &FleetStorage) -> Option<stream::Placement> {
    (storage.cluster.is_some() || !storage.tags.is_empty()).then(|| stream::Placement { cluster: storage.cluster.clone(), tags: storage.tags.clone() })
}

async fn ensure(js: &jetstream::Context, bucket: &str, history: i64, max_age: Duration, rollups: Rollups, storage: &FleetStorage) -> Result<kv::Store, FleetError> {
    let store = match js.get_key_value(bucket).await {
        Ok(store) => store,
        Err(_) => {
            let config = kv::Config {
                bucket: bucket.to_string(),
                history,
                max_age,
                num_replicas: usize::from(storage.replicas),
                placement: placement(storage),
                ..Default::default()
            };
            match js.create_key_value(config).await {
                Ok(s) => s,
                // Created concurrently by another applier.
                Err(e) => js.get_key_value(bucket).await.map_err(|_| nats_err(format!("creating bucket {bucket} ({storage})"), e))?,
            }
        }
    };
    if rollups == Rollups::Denied {
        deny_rollups(js, &store).await?;
    }
    Ok(store)
}

/// Every bucket of the fleet ([`super::auth::harmony_streams`]: plans, status, heartbeats, locks,
/// rollouts, the agents object store) that exists with replicas or a placement other than
/// `storage` declares, one line each naming the bucket, both configurations and the migration
/// (docs/fleet.md, "Bucket replicas and placement"). Harmony never changes a live bucket's
/// replicas or placement itself: moving a bucket is the operator's decision (it takes the
/// stream's data across servers). Read-only (stream info), so `harmony plan` reports it too;
/// a missing bucket is no drift (it is created with `storage`).
pub async fn storage_drift(js: &jetstream::Context, storage: &FleetStorage) -> Result<Vec<String>, FleetError> {
    let streams = super::auth::harmony_streams();
    use async_nats::jetstream::context::GetStreamErrorKind;
    let infos = futures::future::join_all(streams.iter().map(|name| async move {
        match js.get_stream(name).await {
            Ok(s) => Ok(Some(s.cached_info().config.clone())),
            Err(e) if matches!(e.kind(), GetStreamErrorKind::JetStream(j) if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) => Ok(None),
            Err(e) => Err(nats_err(format!("reading the configuration of stream {name}"), e)),
        }
    }))
    .await;
    let mut out = Vec::new();
    for (name, info) in streams.iter().zip(infos) {
        let Some(config) = info? else { continue };
        let live = FleetStorage {
            replicas: u8::try_from(config.num_replicas.max(1)).unwrap_or(u8::MAX),
            cluster: config.placement.as_ref().and_then(|p| p.cluster.clone()).filter(|c| !c.is_empty()),
            tags: config.placement.as_ref().map(|p| p.tags.clone()).unwrap_or_default(),
        };
        if live != *storage {
            out.push(drift_line(name, &live, storage));
        }
    }
    Ok(out)
}

/// One bucket's drift in words, with the migration: `nats stream edit` of the stream, the
/// replicas first and the placement in a second edit when both change (nats-server refuses to
/// "move and scale a stream in a single update", error 10123).
fn drift_line(stream: &str, live: &FleetStorage, declared: &FleetStorage) -> String {
    let mut edits = Vec::new();
    if live.replicas != declared.replicas {
        edits.push(format!("nats stream edit {stream} --replicas {}", declared.replicas));
    }
    if live.cluster != declared.cluster || live.tags != declared.tags {
        let mut edit = format!("nats stream edit {stream}");
        if let Some(c) = &declared.cluster {
            edit.push_str(&format!(" --cluster {c}"));
        }
        for t in &declared.tags {
            edit.push_str(&format!(" --tag {t}"));
        }
        edits.push(edit);
    }
    let edits: Vec<String> = edits.iter().map(|e| format!("`{e}`")).collect();
    format!(
        "stream {stream} has {live}, the fleet declares {declared}: Harmony does not move a live bucket; migrate it with {} (docs/fleet.md, \"Bucket replicas and placement\")",
        edits.join(" then ")
    )
}

/// Makes `store`'s stream refuse roll-up headers and purges, if it does not yet (a bucket just
/// created by async-nats, which allows them, or one made by an older Harmony).
async fn deny_rollups(js: &jetstream::Context, store: &kv::Store) -> Result<(), FleetError> {
    let mut config = store.stream.cached_info().config.clone();
    if !config.allow_rollup && config.deny_purge {
        return Ok(());
    }
    config.allow_rollup = false;
    config.deny_purge = true;
    js.update_stream(&config).await.map_err(|e| nats_err(format!("making bucket {} refuse roll-ups and purges", store.name), e))?;
    Ok(())
}
