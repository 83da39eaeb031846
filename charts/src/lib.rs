//! Charts from where users keep them: OCI registries and Helm repositories, resolved to an
//! exact version and archive digest (`harmony.lock`), fetched into a content-addressed cache or
//! a vendor directory, and loaded from there verified (docs/charts.md,
//! docs/adr/0015-harmony-lock.md).
//!
//! All network I/O for charts lives here: the compiler only reads `harmony.lock` (a file of the
//! repository) and the executor only reads archives this crate verifies by digest.
//!
//! - [`resolve`]: one reference (`oci://…`, an archive URL, or a name in a Helm repository)
//!   and a version or range → the exact version Helm would pick, the archive and its digest.
//! - [`fetch_locked`]: the archive a lock entry names, verified against its digest.
//! - [`cache`]: where archives are kept, and [`cache::load`], the one way every command reads a
//!   locked chart.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod auth;
pub mod cache;
mod http;
mod lockfile;
mod oci;
mod repo;

use harmony_schemas::lock::LockedChart;
pub use lockfile::{LockReport, PullReport, lock, pull};
use sha2::Digest as _;

/// Helm's `MaxDecompressedChartSize`: no archive larger than this is downloaded (a chart
/// archive is at most this big decompressed, so compressed too).
pub const MAX_ARCHIVE_BYTES: u64 = harmony_helm::chart::MAX_CHART_SIZE;

/// The most a Helm repository's `index.yaml` may hold.
pub const MAX_INDEX_BYTES: u64 = 64 << 20;

/// A remote chart a repository declares.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Request {
    /// `chart` as declared.
    pub chart: String,
    /// `repo=` as declared.
    pub repo: Option<String>,
    /// `version` as declared (exact or a range).
    pub constraint: String,
    /// Where it is declared (`path:line`), for errors.
    pub declared_at: String,
}

/// How to reach registries and repositories.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Talk HTTP, not HTTPS, to OCI registries (`--plain-http`, `HARMONY_REGISTRY_PLAIN_HTTP=1`).
    pub plain_http: bool,
    /// Extra CA certificates (PEM) to trust (`--ca-file`).
    pub ca_file: Option<std::path::PathBuf>,
}

impl Options {
    /// `plain_http` or `HARMONY_REGISTRY_PLAIN_HTTP=1`/`true`.
    pub fn with_env(mut self) -> Options {
        if std::env::var("HARMONY_REGISTRY_PLAIN_HTTP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true")) {
            self.plain_http = true;
        }
        self
    }

    fn ca_pem(&self) -> Result<Option<Vec<u8>>, String> {
        match &self.ca_file {
            None => Ok(None),
            Some(p) => std::fs::read(p).map(Some).map_err(|e| format!("--ca-file {}: {e}", p.display())),
        }
    }
}

/// A chart resolved: its lock entry and archive (whose SHA-256 is the entry's digest).
pub struct Resolved {
    /// The lock entry.
    pub locked: LockedChart,
    /// The `.tgz`.
    pub archive: Vec<u8>,
}

/// Resolves a reference to the version Helm would install and fetches its archive.
pub async fn resolve(req: &Request, opts: &Options) -> Result<Resolved, String> {
    let (url, version, archive) = if let Some(repo) = &req.repo {
        repo::resolve(repo, &req.chart, &req.constraint, opts).await?
    } else if req.chart.starts_with("oci://") {
        oci::resolve(&req.chart, &req.constraint, opts).await?
    } else {
        let archive = http::get_bounded(&req.chart, MAX_ARCHIVE_BYTES, opts).await?;
        (req.chart.clone(), None, archive)
    };
    let (name, chart_version) = chart_meta(&archive).map_err(|e| format!("{url}: {e}"))?;
    if let Some(v) = &version
        && *v != chart_version
    {
        return Err(format!("{url}: the archive holds {name} version {chart_version}, where version {v} was listed"));
    }
    if version.is_none() && !matches_constraint(&chart_version, &req.constraint)? {
        return Err(format!("{url} holds {name} version {chart_version}, which does not satisfy `{}`", req.constraint));
    }
    let locked = LockedChart {
        chart: req.chart.clone(),
        repo: req.repo.clone(),
        constraint: req.constraint.clone(),
        name,
        version: chart_version,
        digest: digest_of(&archive),
        url,
    };
    Ok(Resolved { locked, archive })
}

/// Fetches the archive a lock entry names and checks it has the locked digest.
pub async fn fetch_locked(l: &LockedChart, opts: &Options) -> Result<Vec<u8>, String> {
    let archive = if l.url.starts_with("oci://") { oci::fetch(&l.url, &l.digest, opts).await? } else { http::get_bounded(&l.url, MAX_ARCHIVE_BYTES, opts).await? };
    let got = digest_of(&archive);
    if got != l.digest {
        return Err(format!("{} now has digest {got}, harmony.lock says {}: the chart was republished; `harmony charts lock --update` resolves it again", l.url, l.digest));
    }
    Ok(archive)
}

/// `sha256:<hex>` of bytes.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// The chart name and version in an archive's Chart.yaml (the archive is read with the
/// engine's loader: its size limits and path checks apply).
fn chart_meta(archive: &[u8]) -> Result<(String, String), String> {
    let chart = harmony_helm::chart::load_archive(archive).map_err(|e| format!("not a chart archive: {e}"))?;
    Ok((chart.metadata.name.clone(), chart.metadata.version.clone()))
}

/// Whether `version` satisfies a Masterminds/semver constraint (Helm's).
fn matches_constraint(version: &str, constraint: &str) -> Result<bool, String> {
    let c = harmony_helm::semver::Constraints::parse(constraint).map_err(|e| format!("`{constraint}` is not a version or range: {e}"))?;
    Ok(harmony_helm::semver::Version::parse(version).is_ok_and(|v| c.check(&v)))
}

/// Helm's choice among published versions (`repo.IndexFile.Get` for repositories,
/// `registry.GetTagMatchingVersionOrConstraint` for OCI tags, helm/helm v4): a version equal
/// to the constraint as written wins; otherwise the highest version satisfying it, where
/// (Masterminds/semver v3) a range matches pre-releases only if it names one itself.
pub(crate) fn pick<'a>(versions: &'a [String], constraint: &str) -> Result<Option<&'a str>, String> {
    if let Some(v) = versions.iter().find(|v| *v == constraint) {
        return Ok(Some(v));
    }
    let c = harmony_helm::semver::Constraints::parse(constraint).map_err(|e| format!("`{constraint}` is not a version or range: {e}"))?;
    let mut best: Option<(harmony_helm::semver::Version, &str)> = None;
    for v in versions {
        let Ok(parsed) = harmony_helm::semver::Version::parse(v) else { continue };
        if c.check(&parsed) && best.as_ref().is_none_or(|(b, _)| parsed.compare(b) == std::cmp::Ordering::Greater) {
            best = Some((parsed, v));
        }
    }
    Ok(best.map(|(_, v)| v))
}

#[cfg(test)]
mod tests {
    use super::pick;

    fn v(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn picks_as_helm_does() {
        let all = v(&["1.2.0", "1.2.9", "1.3.0", "2.0.0", "2.1.0-rc.1", "0.9.0"]);
        assert_eq!(pick(&all, "^1.2").unwrap(), Some("1.3.0"));
        assert_eq!(pick(&all, "~1.2.0").unwrap(), Some("1.2.9"));
        // Masterminds: a bare version is an exact match, not a caret range as in Cargo.
        assert_eq!(pick(&all, "1.2.0").unwrap(), Some("1.2.0"));
        assert_eq!(pick(&all, ">= 1.0, < 2").unwrap(), Some("1.3.0"));
        assert_eq!(pick(&all, "1.2.x").unwrap(), Some("1.2.9"));
        assert_eq!(pick(&all, "^0.9 || ^2").unwrap(), Some("2.0.0"));
        // Pre-releases only when the range names one.
        assert_eq!(pick(&all, ">= 2.0.0").unwrap(), Some("2.0.0"));
        assert_eq!(pick(&all, ">= 2.1.0-rc.0").unwrap(), Some("2.1.0-rc.1"));
        assert_eq!(pick(&all, "^3").unwrap(), None);
        assert!(pick(&all, "not a range").is_err());
        // The exact string wins even when it is not a valid version.
        assert_eq!(pick(&v(&["latest", "1.0.0"]), "latest").unwrap(), Some("latest"));
    }
}
