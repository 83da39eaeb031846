//! `harmony.lock`: every remote chart a repository uses, resolved to one exact version and the
//! SHA-256 of its archive (docs/adr/0015-harmony-lock.md, docs/charts.md).
//!
//! `harmony charts lock` writes it; the compiler reads it (pure: it is a file of the
//! repository) to turn a release's `chart`/`version` into an exact, content-addressed chart;
//! `harmony charts pull` fetches what it names into the cache or a vendor directory, from which
//! `plan`, `template`, `diff` and `apply` load charts, verifying the digest.

use serde::{Deserialize, Serialize};

/// The lock file's name, at the repository root.
pub const LOCK_FILE: &str = "harmony.lock";

/// The lock format version this build reads and writes.
pub const LOCK_VERSION: u32 = 1;

/// The most a lock file may hold (it is read before anything else is known about it).
pub const MAX_LOCK_BYTES: u64 = 16 << 20;

/// `harmony.lock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChartLock {
    /// Format version ([`LOCK_VERSION`]).
    pub version: u32,
    /// A repository-relative directory holding the locked archives (`charts pull --vendor`);
    /// absent: the user's cache (`$XDG_CACHE_HOME/harmony/charts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// One entry per distinct reference (chart, repo, version constraint), sorted.
    pub charts: Vec<LockedChart>,
}

/// One resolved chart reference.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LockedChart {
    /// The release's `chart` as declared: `oci://host/path/name`, an archive URL, or a chart
    /// name in `repo`.
    pub chart: String,
    /// The Helm repository (`chart NAME repo=URL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// The release's `version` as declared (an exact version or a range).
    pub constraint: String,
    /// The chart's name (its Chart.yaml `name`).
    pub name: String,
    /// The exact version resolved.
    pub version: String,
    /// `sha256:<64 hex>` of the chart archive (`.tgz`): for OCI the chart layer's digest, for
    /// a Helm repository its index's `digest`.
    pub digest: String,
    /// Where the archive was fetched from (`oci://…:TAG` or the archive's URL).
    pub url: String,
}

impl LockedChart {
    /// The 64 hex digits of [`LockedChart::digest`], when it is well formed (lowercase).
    pub fn digest_hex(&self) -> Option<&str> {
        digest_hex(&self.digest)
    }
}

/// The hex of a `sha256:<64 lowercase hex>` digest; `None` for anything else (a digest names
/// a file in the cache: nothing else may reach a path).
pub fn digest_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))).then_some(hex)
}

/// A relative path that stays inside the directory it is relative to: not empty, not
/// absolute, no `.`, `..` or empty component, no backslash.
fn relative_inside(p: &str) -> bool {
    !p.is_empty() && !p.starts_with('/') && !p.contains('\\') && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

impl ChartLock {
    /// Parses and validates a lock file; the error says what is wrong and where.
    pub fn parse(bytes: &[u8]) -> Result<ChartLock, String> {
        if bytes.len() as u64 > MAX_LOCK_BYTES {
            return Err(format!("{LOCK_FILE} is larger than {MAX_LOCK_BYTES} bytes"));
        }
        let lock: ChartLock = serde_json::from_slice(bytes).map_err(|e| format!("{LOCK_FILE}:{}:{}: {e}", e.line(), e.column()))?;
        if lock.version != LOCK_VERSION {
            return Err(format!("{LOCK_FILE} has format version {}, this harmony reads version {LOCK_VERSION}", lock.version));
        }
        if let Some(v) = &lock.vendor
            && !relative_inside(v)
        {
            return Err(format!("{LOCK_FILE}: `vendor` must be a relative path inside the repository, not `{v}`"));
        }
        for (i, c) in lock.charts.iter().enumerate() {
            if c.digest_hex().is_none() {
                return Err(format!("{LOCK_FILE}: charts[{i}] ({}): `digest` must be sha256:<64 lowercase hex>, not `{}`", c.chart, c.digest));
            }
        }
        Ok(lock)
    }

    /// The lock as written: pretty JSON, entries sorted, a final newline.
    pub fn to_json(&self) -> String {
        let mut sorted = self.clone();
        sorted.charts.sort();
        sorted.charts.dedup();
        let mut s = serde_json::to_string_pretty(&sorted).unwrap_or_default();
        s.push('\n');
        s
    }

    /// The entry for a reference, if locked.
    pub fn find(&self, chart: &str, repo: Option<&str>, constraint: &str) -> Option<&LockedChart> {
        self.charts.iter().find(|c| c.chart == chart && c.repo.as_deref() == repo && c.constraint == constraint)
    }
}

/// The JSON Schema of `harmony.lock` (`docs/schemas/harmony-lock.schema.json`).
pub fn lock_schema_json() -> String {
    let mut s = serde_json::to_string_pretty(&schemars::schema_for!(ChartLock)).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> LockedChart {
        LockedChart {
            chart: "oci://127.0.0.1:5000/charts/web".into(),
            repo: None,
            constraint: "^1.2".into(),
            name: "web".into(),
            version: "1.4.2".into(),
            digest: format!("sha256:{}", "a".repeat(64)),
            url: "oci://127.0.0.1:5000/charts/web:1.4.2".into(),
        }
    }

    #[test]
    fn round_trips_and_refuses_bad_digests_and_paths() {
        let lock = ChartLock { version: LOCK_VERSION, vendor: Some("vendor/charts".into()), charts: vec![entry()] };
        assert_eq!(ChartLock::parse(lock.to_json().as_bytes()).unwrap(), lock);
        assert!(lock.find("oci://127.0.0.1:5000/charts/web", None, "^1.2").is_some());
        assert!(lock.find("oci://127.0.0.1:5000/charts/web", None, "^1.3").is_none());
        let mut bad = lock.clone();
        bad.charts[0].digest = "sha256:../../etc/passwd".into();
        assert!(ChartLock::parse(bad.to_json().as_bytes()).unwrap_err().contains("digest"));
        for v in ["../x", "/abs", "a/../../b", ""] {
            let mut bad = lock.clone();
            bad.vendor = Some(v.into());
            assert!(ChartLock::parse(bad.to_json().as_bytes()).unwrap_err().contains("vendor"), "{v}");
        }
        let e = ChartLock::parse(b"{\"version\": 1,\n \"charts\": [], \"extra\": 1}").unwrap_err();
        assert!(e.starts_with("harmony.lock:2:"), "{e}");
        assert!(ChartLock::parse(b"{\"version\": 2, \"charts\": []}").unwrap_err().contains("format version 2"));
    }
}
