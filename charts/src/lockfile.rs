//! `harmony charts lock` and `harmony charts pull`: what they read, fetch and write.

use std::path::Path;

use harmony_schemas::lock::{ChartLock, LOCK_FILE, LOCK_VERSION, LockedChart};

use crate::{Options, Request, cache};

/// What `lock` did.
pub struct LockReport {
    /// The lock written.
    pub lock: ChartLock,
    /// Entries resolved by this run (the others were kept from the lock as they were).
    pub resolved: Vec<LockedChart>,
    /// Entries of the old lock no release uses any more, dropped.
    pub dropped: Vec<LockedChart>,
    /// Why the old lock was not used (it did not parse), if so.
    pub discarded: Option<String>,
}

/// Resolves every request that the repository's lock does not already pin (all of them with
/// `update`), stores the archives (cache or the lock's vendor directory), and writes
/// `harmony.lock`. Entries no request uses are dropped. Nothing is written unless every
/// request resolves; the error lists each failure with where the chart is declared.
pub async fn lock(root: &Path, requests: &[Request], update: bool, opts: &Options) -> Result<LockReport, String> {
    let path = root.join(LOCK_FILE);
    let (old, discarded) = match std::fs::read(&path) {
        Ok(bytes) => match ChartLock::parse(&bytes) {
            Ok(l) => (Some(l), None),
            Err(e) => (None, Some(e)),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let vendor = old.as_ref().and_then(|l| l.vendor.clone());
    let mut charts = Vec::new();
    let mut resolved = Vec::new();
    let mut failures = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for r in requests {
        if !seen.insert((r.chart.clone(), r.repo.clone(), r.constraint.clone())) {
            continue;
        }
        if !update && let Some(e) = old.as_ref().and_then(|l| l.find(&r.chart, r.repo.as_deref(), &r.constraint)) {
            charts.push(e.clone());
            continue;
        }
        match crate::resolve(r, opts).await {
            Ok(got) => {
                if let Err(e) = keep(root, vendor.as_deref(), &got.locked, &got.archive) {
                    failures.push(format!("{}: chart {}: {e}", r.declared_at, r.chart));
                    continue;
                }
                resolved.push(got.locked.clone());
                charts.push(got.locked);
            }
            Err(e) => failures.push(format!("{}: chart {} version `{}`: {e}", r.declared_at, r.chart, r.constraint)),
        }
    }
    if !failures.is_empty() {
        return Err(format!("{} not written:\n  {}", LOCK_FILE, failures.join("\n  ")));
    }
    let dropped = old.map(|l| l.charts.into_iter().filter(|c| !charts.contains(c)).collect()).unwrap_or_default();
    let lock = ChartLock { version: LOCK_VERSION, vendor, charts };
    cache::write_atomic(&path, lock.to_json().as_bytes())?;
    let lock = ChartLock::parse(lock.to_json().as_bytes())?;
    Ok(LockReport { lock, resolved, dropped, discarded })
}

/// Stores a verified archive where the repository reads it from.
fn keep(root: &Path, vendor: Option<&str>, l: &LockedChart, archive: &[u8]) -> Result<(), String> {
    match vendor {
        None => cache::store(archive).map(|_| ()),
        Some(_) => cache::write_atomic(&cache::archive_path(root, vendor, &l.name, &l.version, &l.digest)?, archive),
    }
}

/// What `pull` did.
pub struct PullReport {
    /// Charts fetched from their registry or repository.
    pub fetched: Vec<LockedChart>,
    /// Charts already present (verified), or copied from the cache into the vendor directory.
    pub present: usize,
    /// Where they are.
    pub into: String,
}

/// Makes every chart of `harmony.lock` present, verified, in the cache — or in `vendor`
/// (repository-relative), which is then recorded in the lock. Fetches only what is missing
/// or does not verify. The error lists each failure.
pub async fn pull(root: &Path, vendor: Option<&str>, opts: &Options) -> Result<PullReport, String> {
    let path = root.join(LOCK_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(format!("{} does not exist: run `harmony charts lock` first", path.display())),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut lock = ChartLock::parse(&bytes)?;
    if let Some(v) = vendor {
        let mut probe = lock.clone();
        probe.vendor = Some(v.to_string());
        ChartLock::parse(probe.to_json().as_bytes()).map_err(|e| format!("--vendor: {e}"))?;
        lock.vendor = Some(v.trim_end_matches('/').to_string());
    }
    let target = lock.vendor.clone();
    let mut fetched = Vec::new();
    let mut present = 0;
    let mut failures = Vec::new();
    for l in &lock.charts {
        let dest = match cache::archive_path(root, target.as_deref(), &l.name, &l.version, &l.digest) {
            Ok(p) => p,
            Err(e) => {
                failures.push(format!("{} {}: {e}", l.chart, l.version));
                continue;
            }
        };
        if cache::load_verified(&dest, &l.digest).is_ok() {
            present += 1;
            continue;
        }
        let cached = cache::archive_path(root, None, &l.name, &l.version, &l.digest).and_then(|p| cache::load_verified(&p, &l.digest));
        let (archive, was_cached) = match cached {
            Ok(a) => (a, true),
            Err(_) => match crate::fetch_locked(l, opts).await {
                Ok(a) => (a, false),
                Err(e) => {
                    failures.push(format!("{} {}: {e}", l.chart, l.version));
                    continue;
                }
            },
        };
        if let Err(e) = cache::write_atomic(&dest, &archive) {
            failures.push(format!("{} {}: {e}", l.chart, l.version));
            continue;
        }
        if was_cached {
            present += 1;
        } else {
            fetched.push(l.clone());
        }
    }
    if !failures.is_empty() {
        return Err(format!("some charts are not available:\n  {}", failures.join("\n  ")));
    }
    if vendor.is_some() {
        cache::write_atomic(&path, lock.to_json().as_bytes())?;
    }
    let into = match &target {
        Some(v) => v.clone(),
        None => cache::cache_dir()?.display().to_string(),
    };
    Ok(PullReport { fetched, present, into })
}
