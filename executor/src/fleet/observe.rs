//! Observe: the latest entry of every key in the plans, status and heartbeat buckets.
//!
//! Direct gets only: the bucket's keys from stream info, their last messages in batches (no
//! consumer, no per-key gets).
//! Entries with invalid keys or undecodable values become [`Warning`]s, never errors.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use ed25519_dalek::VerifyingKey;
use futures::StreamExt;
use harmony_schemas::fleet::{
    DevicePlan, DeviceStatus, HEARTBEATS_BUCKET, Heartbeat, PLANS_BUCKET, STATUS_BUCKET, SignedDevicePlan, sha256_digest, valid_device_id,
};
use serde::Serialize;

use super::{FleetError, nats_err};

/// A raw KV entry (a put; deleted and purged keys are left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    /// Key.
    pub key: String,
    /// Revision (stream sequence).
    pub revision: u64,
    /// When it was written, Unix milliseconds.
    pub created_ms: u64,
    /// Value.
    pub value: Vec<u8>,
}

/// One device's entry in the plans bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedEntry {
    /// Its revision (the compare-and-set token).
    pub revision: u64,
    /// The decoded envelope, when it decodes.
    pub signed: Option<SignedDevicePlan>,
    /// The payload, when it verifies with the fleet's key and decodes.
    pub plan: Option<DevicePlan>,
    /// The fleet the payload names, even when it does not verify.
    pub fleet: Option<String>,
    /// [`sha256_digest`] of the value: which entry this is (an agent's rejection names the
    /// digest of the entry it rejected).
    pub digest: String,
}

impl ObservedEntry {
    /// The generation of the plan, when it verifies: a generation is only ever taken from a
    /// signed plan (an unverified entry claims what it likes).
    pub fn generation(&self) -> Option<u64> {
        self.plan.as_ref().map(|p| p.generation)
    }
}

/// A problem with one entry: reported, skipped, never fatal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// Revision.
    pub revision: u64,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} key `{}` (revision {}): {}", self.bucket, self.key, self.revision, self.message)
    }
}

/// What the buckets hold.
#[derive(Debug, Clone, Default)]
pub struct ObservedFleet {
    /// Plans entries by device id (valid device ids only).
    pub plans: BTreeMap<String, ObservedEntry>,
    /// Statuses by device id.
    pub statuses: BTreeMap<String, DeviceStatus>,
    /// Heartbeats by device id, with the entry's write time (Unix ms).
    pub heartbeats: BTreeMap<String, (Heartbeat, u64)>,
    /// Entries skipped.
    pub warnings: Vec<Warning>,
    /// For devices whose entry does not verify, or which report an applied generation above it:
    /// the newest generation among the verified plans in the key's history ([`read_signed_history`]).
    pub signed_history: BTreeMap<String, u64>,
}

/// Most subjects one multi-last direct get may match: nats-server answers more with 413
/// (`server/stream.go`, `getDirectMulti`).
const MULTI_LAST_SUBJECTS: usize = 1024;

/// Reads the latest entry of every key in `store` with direct gets only — the stream's subjects
/// under the bucket's prefix (stream info), then their last messages in batched direct gets of
/// at most [`MULTI_LAST_SUBJECTS`]. No consumer: the read-only identity may not create one
/// (a push consumer's delivery subject is not checked against its creator's permissions,
/// nats-server#8274; docs/security.md).
pub async fn read_bucket(client: &async_nats::Client, store: &kv::Store) -> Result<Vec<RawEntry>, FleetError> {
    use futures::TryStreamExt as _;
    let what = || format!("reading bucket {}", store.name);
    let mut info = store.stream.info_with_subjects(format!("{}>", store.prefix)).await.map_err(|e| nats_err(what(), e))?;
    let mut subjects = Vec::new();
    while let Some((subject, _count)) = info.try_next().await.map_err(|e| nats_err(what(), e))? {
        subjects.push(subject);
    }
    subjects.sort_unstable();
    let stream = store.stream_name.clone();
    let chunks: Vec<Vec<RawEntry>> = futures::stream::iter(subjects.chunks(MULTI_LAST_SUBJECTS).map(<[String]>::to_vec))
        .map(|chunk| last_messages(client, &stream, &store.prefix, chunk))
        .buffered(4)
        .try_collect()
        .await
        .map_err(|e| nats_err(what(), e))?;
    Ok(chunks.into_iter().flatten().collect())
}

/// The last message of each of `subjects` (at most [`MULTI_LAST_SUBJECTS`]) in `stream`, with
/// one batched direct get (`multi_last`, nats-server 2.11 and later). Deleted and purged keys
/// are left out.
async fn last_messages(client: &async_nats::Client, stream: &str, prefix: &str, subjects: Vec<String>) -> Result<Vec<RawEntry>, String> {
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await.map_err(|e| e.to_string())?;
    let body = serde_json::to_vec(&serde_json::json!({ "multi_last": subjects })).map_err(|e| e.to_string())?;
    client.publish_with_reply(format!("$JS.API.DIRECT.GET.{stream}"), inbox, body.into()).await.map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(subjects.len());
    loop {
        // Wait in slices so a lost connection fails fast instead of after the whole idle timeout.
        let mut idle = Duration::ZERO;
        let message = loop {
            match tokio::time::timeout(Duration::from_millis(250), replies.next()).await {
                Ok(Some(m)) => break m,
                Ok(None) => return Err("the reply subscription ended".into()),
                Err(_) => {
                    idle += Duration::from_millis(250);
                    if client.connection_state() != async_nats::connection::State::Connected {
                        return Err("connection lost".into());
                    }
                    if idle >= Duration::from_secs(10) {
                        return Err("timed out".into());
                    }
                }
            }
        };
        // The server appends its `Nats-*` headers after the stored message's own: the last value
        // is the server's (a writer can store a `Nats-Subject` or `Nats-Sequence` of its own
        // choosing, and a reply stored in a bucket carries the headers of the message it copied).
        let header = |name: &str| message.headers.as_ref().and_then(|h| h.get_last(name)).map(|v| v.as_str().to_string());
        match message.status.map(|s| s.as_u16()) {
            None | Some(200) => {}
            // End of the batch.
            Some(204) => match header("Nats-Num-Pending").as_deref() {
                None | Some("0") => return Ok(out),
                Some(n) => return Err(format!("direct get ended with {n} messages left")),
            },
            // No subject matched: the keys went away since the stream info.
            Some(404) if message.description.as_deref() == Some("No Results") => return Ok(out),
            Some(status) => return Err(format!("direct get: {status} {}", message.description.as_deref().unwrap_or(""))),
        }
        let (Some(subject), Some(sequence)) = (header("Nats-Subject"), header("Nats-Sequence")) else {
            return Err("direct get reply without Nats-Subject or Nats-Sequence".into());
        };
        let revision = sequence.parse::<u64>().map_err(|_| format!("direct get reply with Nats-Sequence {sequence:?}"))?;
        let created_ms = header("Nats-Time-Stamp")
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .and_then(|t| u64::try_from(t.as_millisecond()).ok())
            .unwrap_or(0);
        let deleted = matches!(header("KV-Operation").as_deref(), Some("DEL" | "PURGE")) || header("Nats-Marker-Reason").is_some();
        if !deleted && let Some(key) = subject.strip_prefix(prefix) {
            out.push(RawEntry { key: key.to_string(), revision, created_ms, value: message.payload.to_vec() });
        }
    }
}

/// Reads the latest entries of `keys` only (direct gets, 64 at a time): cheaper than
/// [`read_bucket`] when a few keys of a large bucket are wanted. Absent and deleted keys are
/// left out.
pub async fn read_keys(store: &kv::Store, keys: Vec<String>) -> Result<Vec<RawEntry>, FleetError> {
    use futures::TryStreamExt as _;
    // Owned keys and store: a future borrowing `&str` items here is not `Send` for every
    // lifetime (rustc's higher-ranked auto-trait limitation), and `run_apply` is spawned.
    let entries: Vec<Option<RawEntry>> = futures::stream::iter(keys)
        .map(|k| {
            let store = store.clone();
            async move {
                match store.entry(&k).await {
                    Ok(Some(e)) if e.operation == kv::Operation::Put => Ok(Some(RawEntry {
                        key: e.key,
                        revision: e.revision,
                        created_ms: u64::try_from(e.created.unix_timestamp_nanos() / 1_000_000).unwrap_or(0),
                        value: e.value.to_vec(),
                    })),
                    Ok(_) => Ok(None),
                    Err(err) => Err(nats_err(format!("reading {k} in bucket {}", store.name), err)),
                }
            }
        })
        .buffer_unordered(64)
        .try_collect()
        .await?;
    Ok(entries.into_iter().flatten().collect())
}

/// Decodes the plans bucket's entries for `fleet`; entries of other fleets are left out.
pub fn decode_plans(
    bucket: &str,
    raw: Vec<RawEntry>,
    fleet_name: &str,
    trusted: &[VerifyingKey],
    warnings: &mut Vec<Warning>,
) -> BTreeMap<String, ObservedEntry> {
    use rayon::prelude::*;
    // Decode and verify on all cores (10,000 signatures take a while on one). The fleet is read
    // even from a payload that does not verify (other fleets' entries are left out).
    struct Decoded {
        signed: Result<SignedDevicePlan, harmony_schemas::fleet::VerifyError>,
        verified: Option<Result<DevicePlan, harmony_schemas::fleet::VerifyError>>,
        fleet: Option<String>,
        digest: String,
    }
    let decoded: Vec<Option<Decoded>> = raw
        .par_iter()
        .map(|e| {
            if !valid_device_id(&e.key) {
                return None;
            }
            let signed = SignedDevicePlan::from_slice(&e.value);
            let payload = signed.as_ref().ok().map(|s| &s.payload);
            let fleet = payload.and_then(|p| p.get("fleet")).and_then(serde_json::Value::as_str).map(str::to_string);
            let verified = signed.as_ref().ok().filter(|_| fleet.as_deref().is_none_or(|f| f == fleet_name)).map(|s| s.verify(trusted));
            Some(Decoded { signed, verified, fleet, digest: sha256_digest(&e.value) })
        })
        .collect();
    let mut out = BTreeMap::new();
    for (e, decoded) in raw.into_iter().zip(decoded) {
        let warn = |m: String| Warning { bucket: bucket.to_string(), key: e.key.clone(), revision: e.revision, message: m };
        let Some(Decoded { signed, verified, fleet: plan_fleet, digest }) = decoded else {
            warnings.push(warn("not a device id; skipped".into()));
            continue;
        };
        let signed = match signed {
            Ok(s) => s,
            Err(err) => {
                warnings.push(warn(format!("undecodable value ({err}); it will be replaced if the device is in the fleet")));
                out.insert(e.key.clone(), ObservedEntry { revision: e.revision, signed: None, plan: None, fleet: None, digest });
                continue;
            }
        };
        if plan_fleet.as_deref().is_some_and(|f| f != fleet_name) {
            continue;
        }
        let plan = match verified.unwrap_or(Err(harmony_schemas::fleet::VerifyError::BadSignature)) {
            Ok(p) if p.device_id == e.key => Some(p),
            Ok(p) => {
                warnings.push(warn(format!("plan is for device `{}`; it will be replaced", p.device_id)));
                None
            }
            Err(err) => {
                warnings.push(warn(format!("{err}; it will be replaced if the device is in the fleet")));
                None
            }
        };
        out.insert(e.key.clone(), ObservedEntry { revision: e.revision, signed: Some(signed), plan, fleet: plan_fleet, digest });
    }
    out
}

/// Decodes what a device reports (a status, a heartbeat): every string in it, keys included,
/// comes out [`printable`](harmony_schemas::printable), so no output format prints a device's
/// terminal escapes or forged line breaks. JSON carries such characters only as `\` escapes,
/// as a raw DEL (0x7F) or as multi-byte UTF-8 (C1 controls start with 0xC2, U+061C with 0xD8,
/// direction marks, bidi overrides and line separators with 0xE2): entries with none of
/// these are decoded directly.
fn decode_reported<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    if !bytes.iter().any(|b| matches!(b, b'\\' | 0x7F | 0xC2 | 0xD8 | 0xE2)) {
        return serde_json::from_slice(bytes);
    }
    fn clean(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) => {
                if let std::borrow::Cow::Owned(p) = harmony_schemas::printable(s) {
                    *s = p;
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(clean),
            serde_json::Value::Object(o) => {
                let taken = std::mem::take(o);
                *o = taken
                    .into_iter()
                    .map(|(k, mut v)| {
                        clean(&mut v);
                        (harmony_schemas::printable(&k).into_owned(), v)
                    })
                    .collect();
            }
            _ => {}
        }
    }
    let mut value: serde_json::Value = serde_json::from_slice(bytes)?;
    clean(&mut value);
    serde_json::from_value(value)
}

/// Decodes JSON entries of a status-like bucket keyed by device id.
pub fn decode_json<T: serde::de::DeserializeOwned>(bucket: &str, raw: Vec<RawEntry>, warnings: &mut Vec<Warning>) -> BTreeMap<String, (T, u64)> {
    let mut out = BTreeMap::new();
    for e in raw {
        let warn = |m: String| Warning { bucket: bucket.to_string(), key: e.key.clone(), revision: e.revision, message: m };
        if !valid_device_id(&e.key) {
            warnings.push(warn("not a device id; skipped".into()));
            continue;
        }
        match decode_reported::<T>(&e.value) {
            Ok(v) => {
                out.insert(e.key.clone(), (v, e.created_ms));
            }
            Err(err) => warnings.push(warn(format!("undecodable value ({err}); skipped"))),
        }
    }
    out
}

/// Opens `bucket` if it exists (`None` if not: nothing was ever written there). Any other
/// failure (a permission, a timeout) is an error.
pub async fn open_bucket(js: &jetstream::Context, bucket: &str) -> Result<Option<kv::Store>, FleetError> {
    use async_nats::jetstream::context::{GetStreamError, GetStreamErrorKind};
    match js.get_key_value(bucket).await {
        Ok(store) => Ok(Some(store)),
        // One request: `get_key_value` reads the stream's info and keeps that error as its source.
        Err(e)
            if std::error::Error::source(&e)
                .and_then(|s| s.downcast_ref::<GetStreamError>())
                .is_some_and(|g| matches!(g.kind(), GetStreamErrorKind::JetStream(j) if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)) =>
        {
            Ok(None)
        }
        Err(e) => Err(nats_err(format!("opening bucket {bucket}"), e)),
    }
}

/// Observes `fleet` without creating anything (read-only: `harmony status` needs no more than
/// the read-only identity): a bucket that does not exist yet reads as empty.
pub async fn observe_all(client: &async_nats::Client, fleet: &str, trusted: &[VerifyingKey]) -> Result<ObservedFleet, FleetError> {
    let js = jetstream::new(client.clone());
    let read = |bucket: &'static str| {
        let js = js.clone();
        async move {
            match open_bucket(&js, bucket).await? {
                Some(store) => read_bucket(client, &store).await,
                None => Ok(Vec::new()),
            }
        }
    };
    let (p, s, h) = tokio::try_join!(read(PLANS_BUCKET), read(STATUS_BUCKET), read(HEARTBEATS_BUCKET))?;
    Ok(decode_all(fleet, trusted, (PLANS_BUCKET, p), (STATUS_BUCKET, s), (HEARTBEATS_BUCKET, h)))
}

fn decode_all(
    fleet: &str,
    trusted: &[VerifyingKey],
    plans: (&str, Vec<RawEntry>),
    status: (&str, Vec<RawEntry>),
    heartbeats: (&str, Vec<RawEntry>),
) -> ObservedFleet {
    let mut warnings = Vec::new();
    let plans = decode_plans(plans.0, plans.1, fleet, trusted, &mut warnings);
    let statuses = decode_json::<DeviceStatus>(status.0, status.1, &mut warnings).into_iter().map(|(k, (v, _))| (k, v)).collect();
    let heartbeats = decode_json::<Heartbeat>(heartbeats.0, heartbeats.1, &mut warnings);
    ObservedFleet { plans, statuses, heartbeats, warnings, signed_history: BTreeMap::new() }
}

/// Most revisions of one key [`newest_signed_in_history`] reads: the plans bucket keeps
/// `connect::PLANS_HISTORY`; the bound only guards against a server answering in circles.
const MAX_HISTORY_READS: usize = 64;

/// The newest generation among the plans of `device`'s history in the plans bucket (the entry
/// and the revisions kept before it) that verify with `trusted`, are for `fleet` and name the
/// device: the newest generation Harmony signed for it, as far as the bucket still shows. Read
/// with direct gets (the next message of the key's subject from a sequence on), never a
/// consumer: the read-only identity (`harmony status`) may not create one.
pub async fn newest_signed_in_history(store: &kv::Store, device: &str, fleet: &str, trusted: &[VerifyingKey]) -> Result<Option<u64>, FleetError> {
    use async_nats::jetstream::stream::DirectGetErrorKind;
    let what = || format!("reading the history of {device} in bucket {}", store.name);
    let subject = format!("{}{device}", store.prefix);
    let (mut newest, mut from) = (None, 1u64);
    for _ in 0..MAX_HISTORY_READS {
        let message = match store.stream.direct_get_next_for_subject(subject.as_str(), Some(from)).await {
            Ok(m) => m,
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => break,
            Err(e) => return Err(nats_err(what(), e)),
        };
        // Deletions and anything that does not verify count for nothing.
        if let Ok(p) = SignedDevicePlan::from_slice(&message.payload).and_then(|s| s.verify(trusted))
            && p.fleet == fleet
            && p.device_id == device
        {
            newest = newest.max(Some(p.generation));
        }
        match message.sequence.checked_add(1) {
            Some(next) if next > from => from = next,
            _ => break,
        }
    }
    Ok(newest)
}

/// Fills [`ObservedFleet::signed_history`] for those of `devices` whose plans entry does not
/// verify, or which report an applied generation above it ([`super::plan::needs_history`]):
/// usually none, so usually no read at all.
pub async fn read_signed_history(
    client: &async_nats::Client,
    observed: &mut ObservedFleet,
    fleet: &str,
    trusted: &[VerifyingKey],
    devices: impl IntoIterator<Item = &str>,
) -> Result<(), FleetError> {
    use futures::TryStreamExt as _;
    let wanted: Vec<String> = devices.into_iter().filter(|d| super::plan::needs_history(observed, d)).map(str::to_string).collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let Some(store) = open_bucket(&jetstream::new(client.clone()), PLANS_BUCKET).await? else { return Ok(()) };
    let found: Vec<(String, Option<u64>)> = futures::stream::iter(wanted)
        .map(|device| {
            let store = &store;
            async move { newest_signed_in_history(store, &device, fleet, trusted).await.map(|g| (device, g)) }
        })
        .buffer_unordered(16)
        .try_collect()
        .await?;
    observed.signed_history.extend(found.into_iter().filter_map(|(d, g)| Some((d, g?))));
    Ok(())
}

/// Observes the plans (of `fleet`, verified with `trusted`), statuses and heartbeats.
pub async fn observe_fleet(client: &async_nats::Client, stores: &[kv::Store; 3], fleet: &str, trusted: &[VerifyingKey]) -> Result<ObservedFleet, FleetError> {
    let [plans, status, heartbeats] = stores;
    let (p, s, h) = tokio::try_join!(read_bucket(client, plans), read_bucket(client, status), read_bucket(client, heartbeats))?;
    Ok(decode_all(fleet, trusted, (&plans.name, p), (&status.name, s), (&heartbeats.name, h)))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use harmony_schemas::fleet::{PROTOCOL_VERSION, generate_signing_key};

    /// A plan without deployments (also for the other modules' tests).
    pub(crate) fn plan(device: &str, fleet: &str, generation: u64) -> DevicePlan {
        DevicePlan {
            version: PROTOCOL_VERSION,
            device_id: device.into(),
            fleet: fleet.into(),
            generation,
            source_revision: "r".into(),
            agent_version: "0.1.0".into(),
            agent: None,
            deployments: vec![],
            key_chain: vec![],
        }
    }

    fn entry(key: &str, revision: u64, value: Vec<u8>) -> RawEntry {
        RawEntry { key: key.into(), revision, created_ms: 0, value }
    }

    #[test]
    fn decode_plans_verifies_ours_skips_other_fleets_and_warns_about_the_rest() {
        let ours = generate_signing_key().unwrap();
        let theirs = generate_signing_key().unwrap();
        let signed = |p: &DevicePlan, k: &ed25519_dalek::SigningKey| SignedDevicePlan::sign(p, k).unwrap().to_vec();
        let raw = vec![
            entry("pi-001", 11, signed(&plan("pi-001", "pico", 4), &ours)),
            // Another fleet's plan in the same bucket, signed with its own key: not ours, no warning.
            entry("pi-900", 12, signed(&plan("pi-900", "other", 2), &theirs)),
            // Our fleet, signed with a key we do not trust: kept (to be replaced), not as a plan.
            entry("pi-002", 13, signed(&plan("pi-002", "pico", 7), &theirs)),
            // A plan written under another device's key.
            entry("pi-003", 14, signed(&plan("pi-999", "pico", 1), &ours)),
            entry("pi-004", 15, b"{not json".to_vec()),
            entry("Not A Device", 16, signed(&plan("x", "pico", 1), &ours)),
        ];
        let mut warnings = Vec::new();
        let out = decode_plans("harmony-plans", raw, "pico", &[ours.verifying_key()], &mut warnings);
        assert_eq!(out.keys().map(String::as_str).collect::<Vec<_>>(), ["pi-001", "pi-002", "pi-003", "pi-004"]);
        let one = &out["pi-001"];
        assert_eq!((one.revision, one.generation(), one.fleet.as_deref()), (11, Some(4), Some("pico")));
        assert_eq!(one.digest, sha256_digest(&signed(&plan("pi-001", "pico", 4), &ours)));
        assert_eq!(one.plan.as_ref(), Some(&plan("pi-001", "pico", 4)));
        let two = &out["pi-002"];
        // Our fleet's name, another key: no generation (a forged entry claims what it likes).
        assert_eq!((two.plan.is_none(), two.generation(), two.signed.is_some()), (true, None, true));
        assert!(out["pi-003"].plan.is_none());
        assert_eq!((out["pi-004"].signed.is_none(), out["pi-004"].generation()), (true, None));
        let by_key: BTreeMap<&str, &str> = warnings.iter().map(|w| (w.key.as_str(), w.message.as_str())).collect();
        assert_eq!(by_key.keys().copied().collect::<Vec<_>>(), ["Not A Device", "pi-002", "pi-003", "pi-004"], "{warnings:?}");
        assert!(by_key["pi-002"].contains("will be replaced"), "{}", by_key["pi-002"]);
        assert!(by_key["pi-003"].contains("plan is for device `pi-999`"), "{}", by_key["pi-003"]);
        assert!(by_key["pi-004"].starts_with("undecodable value"), "{}", by_key["pi-004"]);
        assert!(by_key["Not A Device"].contains("not a device id"));
    }
}

/// Deletes `device`'s plan (a purge, as harmony): nothing to do when the fleet has no plans
/// bucket yet (`harmony fleet revoke`).
pub async fn purge_plan(client: &async_nats::Client, device: &str) -> Result<(), kv::PurgeError> {
    let js = jetstream::new(client.clone());
    match js.get_key_value(harmony_schemas::fleet::PLANS_BUCKET).await {
        Ok(store) => store.purge(device).await,
        Err(_) => Ok(()),
    }
}
