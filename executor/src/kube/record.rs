//! Helm's release record, exactly as Helm stores it, so `helm list/history/status/rollback`
//! read what Harmony writes and Harmony upgrades what Helm wrote.
//!
//! Storage (Helm's `pkg/storage/driver/secrets.go` and `util.go`): one Secret per revision,
//! named `sh.helm.release.v1.<release>.v<revision>`, type `helm.sh/release.v1`, labelled
//! `owner=helm`, `name`, `status`, `version` (and, from Helm 4, `modifiedAt` in Unix seconds);
//! its `release` key holds base64(gzip(JSON of `release.Release`)) — base64 once by Helm and
//! once more by the Secret's `data` encoding. The JSON field layout is Helm v4's
//! `pkg/release/v1` (`name`, `info`, `chart`, `config`, `manifest`, `hooks`, `version`,
//! `namespace`, `apply_method`), checked against a record Helm v4 wrote
//! (`tests/data/helm-v4-release-secret.json`, captured from Helm's SDK on the loopback server).
//!
//! Fields Harmony does not interpret are kept as they were read (`extra`, and the `chart`
//! object as a whole), so superseding a record Helm wrote loses nothing.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The Secret type Helm's storage driver uses.
pub const SECRET_TYPE: &str = "helm.sh/release.v1";

/// Helm's release statuses (`pkg/release/common/status.go`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Unknown.
    Unknown,
    /// Deployed: the current revision.
    Deployed,
    /// Uninstalled with `--keep-history`.
    Uninstalled,
    /// Replaced by a newer revision.
    Superseded,
    /// Failed.
    Failed,
    /// Being uninstalled.
    Uninstalling,
    /// Install in progress.
    PendingInstall,
    /// Upgrade in progress.
    PendingUpgrade,
    /// Rollback in progress.
    PendingRollback,
}

impl Status {
    /// Helm's spelling (`pending-upgrade`).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Unknown => "unknown",
            Status::Deployed => "deployed",
            Status::Uninstalled => "uninstalled",
            Status::Superseded => "superseded",
            Status::Failed => "failed",
            Status::Uninstalling => "uninstalling",
            Status::PendingInstall => "pending-install",
            Status::PendingUpgrade => "pending-upgrade",
            Status::PendingRollback => "pending-rollback",
        }
    }

    /// An operation is (or was, if it crashed) in progress.
    pub fn is_pending(self) -> bool {
        matches!(self, Status::PendingInstall | Status::PendingUpgrade | Status::PendingRollback | Status::Uninstalling)
    }
}

/// `release.Info`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Info {
    /// RFC 3339 with nanoseconds, as Go's `time.Time` marshals.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub first_deployed: String,
    /// Last deployment time.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_deployed: String,
    /// Human-readable description (`Install complete`, `Upgrade complete`, `Rollback to 1`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Status.
    pub status: Status,
    /// Rendered `NOTES.txt`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub notes: String,
    /// Fields this version does not interpret (`deleted`, `resources`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `release.HookExecution`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct HookExecution {
    /// Start time.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub started_at: String,
    /// Completion time.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub completed_at: String,
    /// `Unknown`, `Running`, `Succeeded`, `Failed`.
    #[serde(default)]
    pub phase: String,
}

/// `release.Hook`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hook {
    /// Object name.
    pub name: String,
    /// Object kind.
    pub kind: String,
    /// Template path.
    pub path: String,
    /// Rendered manifest.
    pub manifest: String,
    /// Events (`pre-install`, …).
    #[serde(default)]
    pub events: Vec<String>,
    /// Last run.
    #[serde(default)]
    pub last_run: HookExecution,
    /// Weight.
    #[serde(default)]
    pub weight: i64,
    /// Delete policies (`before-hook-creation`, `hook-succeeded`, `hook-failed`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delete_policies: Vec<String>,
    /// Fields this version does not interpret.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `release.Release`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Release {
    /// Release name.
    pub name: String,
    /// Status and times.
    pub info: Info,
    /// The chart as Helm's `chart.Chart` marshals it (metadata, templates, values, files…).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub chart: Value,
    /// User-supplied values.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub config: Map<String, Value>,
    /// Rendered manifests, `---\n# Source: …\n` separated, in install order.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub manifest: String,
    /// Hooks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<Hook>,
    /// Revision.
    pub version: u32,
    /// Namespace.
    pub namespace: String,
    /// `ssa` (server-side apply) or `csa`; Helm 4 records how it applied.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub apply_method: String,
    /// Fields this version does not interpret.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A record that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The Secret has no `release` key.
    #[error("Secret {0} has no `release` key: not a Helm release record")]
    Missing(String),
    /// Not base64 / gzip / JSON in Helm's layout.
    #[error("Secret {secret}: cannot decode the Helm release record: {reason}")]
    Decode {
        /// Secret name.
        secret: String,
        /// What failed.
        reason: String,
    },
}

impl Release {
    /// Helm's Secret name for this revision.
    pub fn secret_name(&self) -> String {
        secret_name(&self.name, self.version)
    }

    /// Encodes the record as Helm's driver does: base64(gzip(JSON)).
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("a Release always serialises");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&json).expect("writing to memory");
        B64.encode(gz.finish().expect("writing to memory"))
    }

    /// Decodes Helm's encoding (gzip is optional, as in Helm's `decodeRelease`).
    pub fn decode(secret: &str, encoded: &[u8]) -> Result<Release, RecordError> {
        let err = |reason: String| RecordError::Decode { secret: secret.to_string(), reason };
        let raw = B64.decode(encoded.trim_ascii()).map_err(|e| err(format!("base64: {e}")))?;
        let json = if raw.starts_with(&[0x1f, 0x8b, 0x08]) {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(raw.as_slice()).read_to_end(&mut out).map_err(|e| err(format!("gzip: {e}")))?;
            out
        } else {
            raw
        };
        serde_json::from_slice(&json).map_err(|e| err(format!("JSON: {e}")))
    }

    /// The Secret that stores this record, labelled as Helm labels it. `modified_at` is Unix
    /// seconds (Helm 4's `modifiedAt` label).
    pub fn to_secret(&self, modified_at: i64) -> k8s_openapi::api::core::v1::Secret {
        use k8s_openapi::ByteString;
        use k8s_openapi::api::core::v1::Secret;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
        let labels = BTreeMap::from([
            ("modifiedAt".to_string(), modified_at.to_string()),
            ("name".to_string(), self.name.clone()),
            ("owner".to_string(), "helm".to_string()),
            ("status".to_string(), self.info.status.as_str().to_string()),
            ("version".to_string(), self.version.to_string()),
        ]);
        Secret {
            metadata: ObjectMeta { name: Some(self.secret_name()), namespace: Some(self.namespace.clone()), labels: Some(labels), ..Default::default() },
            type_: Some(SECRET_TYPE.to_string()),
            data: Some(BTreeMap::from([("release".to_string(), ByteString(self.encode().into_bytes()))])),
            ..Default::default()
        }
    }

    /// Reads a record from its Secret.
    pub fn from_secret(secret: &k8s_openapi::api::core::v1::Secret) -> Result<Release, RecordError> {
        let name = secret.metadata.name.clone().unwrap_or_default();
        let data = secret.data.as_ref().and_then(|d| d.get("release")).ok_or_else(|| RecordError::Missing(name.clone()))?;
        Release::decode(&name, &data.0)
    }
}

/// The field of a record that proves Harmony wrote it: `hmac-sha256:<base64>` of the record's
/// canonical JSON (everything but this field) under the cluster's [`SealKey`]. Helm ignores it
/// (and drops it when it rewrites a record, so a release last written by `helm` is not
/// Harmony's). A tenant can write records in its own namespaces, but cannot read the key, so it
/// cannot make a record that verifies (ADR 0009).
pub const SEAL_FIELD: &str = "harmony_seal";

/// A cluster's key for sealing release records: 32 random bytes kept in a Secret of Harmony's
/// own namespace (`kube-system`), which no tenant can read. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SealKey([u8; 32]);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(…)")
    }
}

impl SealKey {
    /// A new random key.
    pub fn generate() -> Result<SealKey, String> {
        let mut k = [0u8; 32];
        aws_lc_rs::rand::fill(&mut k).map_err(|_| "the system's random number generator failed".to_string())?;
        Ok(SealKey(k))
    }

    /// From stored bytes (exactly 32).
    pub fn from_bytes(b: &[u8]) -> Option<SealKey> {
        Some(SealKey(b.try_into().ok()?))
    }

    /// The stored bytes.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn mac_input(r: &Release) -> Vec<u8> {
        let mut unsealed = r.clone();
        unsealed.extra.remove(SEAL_FIELD);
        harmony_compiler::hash::canonical_json(&unsealed).into_bytes()
    }

    /// Seals `r`: sets [`SEAL_FIELD`] over everything else in it.
    pub fn seal(&self, r: &mut Release) {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &self.0);
        let tag = aws_lc_rs::hmac::sign(&key, &SealKey::mac_input(r));
        r.extra.insert(SEAL_FIELD.into(), Value::from(format!("hmac-sha256:{}", B64.encode(tag.as_ref()))));
    }

    /// Whether `r`, read from the Secret `secret_name` in `secret_namespace`, carries this key's
    /// seal and sits where it was sealed (its own namespace and Secret name): a record copied
    /// into another namespace, or edited in any field, does not verify. Constant-time.
    pub fn verifies(&self, r: &Release, secret_namespace: &str, secret_name: &str) -> bool {
        let Some(tag) = r.extra.get(SEAL_FIELD).and_then(Value::as_str).and_then(|s| s.strip_prefix("hmac-sha256:")).and_then(|b| B64.decode(b).ok())
        else {
            return false;
        };
        if r.namespace != secret_namespace || r.secret_name() != secret_name {
            return false;
        }
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &self.0);
        aws_lc_rs::hmac::verify(&key, &SealKey::mac_input(r), &tag).is_ok()
    }
}

/// `sh.helm.release.v1.<release>.v<revision>`.
pub fn secret_name(release: &str, revision: u32) -> String {
    format!("sh.helm.release.v1.{release}.v{revision}")
}

/// The label selector of every record of one release.
pub fn history_selector(release: &str) -> String {
    format!("owner=helm,name={release}")
}

/// Go's `time.Time` JSON form: RFC 3339 with up to nine fractional digits, trailing zeros
/// dropped, `Z` for UTC.
pub fn go_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn helm_written() -> k8s_openapi::api::core::v1::Secret {
        serde_json::from_str(include_str!("../../tests/data/helm-v4-release-secret.json")).unwrap()
    }

    #[test]
    fn reads_a_record_helm_v4_wrote() {
        let r = Release::from_secret(&helm_written()).unwrap();
        assert_eq!((r.name.as_str(), r.version, r.namespace.as_str()), ("demo", 1, "default"));
        assert_eq!(r.info.status, Status::Deployed);
        assert_eq!(r.info.description, "Install complete");
        assert_eq!(r.apply_method, "ssa");
        assert_eq!(r.config["x"], "2");
        assert!(r.manifest.starts_with("---\n# Source: demo/templates/cm.yaml\n"), "{}", r.manifest);
        assert_eq!(r.hooks.len(), 1);
        assert_eq!((r.hooks[0].kind.as_str(), r.hooks[0].weight), ("Job", -5));
        assert_eq!(r.hooks[0].events, ["pre-install", "pre-upgrade"]);
        assert_eq!(r.hooks[0].delete_policies, ["before-hook-creation"]);
        assert_eq!(r.chart["metadata"]["name"], "demo");
    }

    #[test]
    fn round_trips_without_losing_fields() {
        let r = Release::from_secret(&helm_written()).unwrap();
        let original: Value = {
            let data = &helm_written().data.unwrap()["release"].0;
            let gz = B64.decode(data).unwrap();
            let mut json = Vec::new();
            flate2::read::GzDecoder::new(gz.as_slice()).read_to_end(&mut json).unwrap();
            serde_json::from_slice(&json).unwrap()
        };
        let again = Release::from_secret(&r.to_secret(0)).unwrap();
        assert_eq!(again, r);
        assert_eq!(serde_json::to_value(&again).unwrap(), original, "every field Helm wrote survives a rewrite");
        let s = r.to_secret(1_795_895_144);
        assert_eq!(s.metadata.name.as_deref(), Some("sh.helm.release.v1.demo.v1"));
        assert_eq!(s.metadata.labels.unwrap()["status"], "deployed");
    }

    #[test]
    fn rejects_what_is_not_a_record() {
        assert!(matches!(Release::decode("s", b"%%%"), Err(RecordError::Decode { .. })));
        assert!(Release::decode("s", B64.encode(b"{\"name\": 1}").as_bytes()).unwrap_err().to_string().contains("Secret s: cannot decode"));
    }

    #[test]
    fn a_seal_verifies_only_where_and_as_it_was_made() {
        let key = SealKey::generate().unwrap();
        let mut r = Release::from_secret(&helm_written()).unwrap();
        assert!(!key.verifies(&r, "default", "sh.helm.release.v1.demo.v1"), "a record Helm wrote carries no seal");
        key.seal(&mut r);
        assert!(key.verifies(&r, "default", "sh.helm.release.v1.demo.v1"));
        let again = Release::decode("s", r.encode().as_bytes()).unwrap();
        assert!(key.verifies(&again, "default", "sh.helm.release.v1.demo.v1"), "the seal survives the record's encoding");
        assert!(!key.verifies(&r, "other", "sh.helm.release.v1.demo.v1"), "copied into another namespace");
        assert!(!key.verifies(&r, "default", "sh.helm.release.v1.demo.v2"), "under another Secret name");
        assert!(!SealKey::generate().unwrap().verifies(&r, "default", "sh.helm.release.v1.demo.v1"), "another cluster's key");
        let mut edited = r.clone();
        edited.manifest.push_str("---\nkind: ConfigMap\n");
        assert!(!key.verifies(&edited, "default", "sh.helm.release.v1.demo.v1"), "an edited manifest");
        let mut moved = r.clone();
        moved.namespace = "other".into();
        assert!(!key.verifies(&moved, "other", "sh.helm.release.v1.demo.v1"), "the namespace inside is sealed too");
        assert_eq!(format!("{key:?}"), "SealKey(…)");
    }

    #[test]
    fn go_time_format() {
        let t: jiff::Timestamp = "2026-11-28T19:45:44.129355154Z".parse().unwrap();
        assert_eq!(go_time(t), "2026-11-28T19:45:44.129355154Z");
        let t: jiff::Timestamp = "2026-11-28T19:45:44Z".parse().unwrap();
        assert_eq!(go_time(t), "2026-11-28T19:45:44Z");
    }
}
