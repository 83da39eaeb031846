//! Where locked archives are kept, and the one way they are read back.
//!
//! - The cache: `$XDG_CACHE_HOME/harmony/charts/sha256/<hex>.tgz` (else `~/.cache/…`), named by
//!   content: a file whose content does not hash to its name is refused.
//! - A vendor directory in the repository (`harmony charts pull --vendor DIR`, recorded in
//!   `harmony.lock`): `DIR/<name>-<version>.tgz`, verified against the lock's digest.

use std::io::Read as _;
use std::path::{Path, PathBuf};

/// The cache directory: `$XDG_CACHE_HOME/harmony/charts`, else `$HOME/.cache/harmony/charts`.
pub fn cache_dir() -> Result<PathBuf, String> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| Path::new(x).is_absolute()) {
        return Ok(PathBuf::from(x).join("harmony/charts"));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".cache/harmony/charts")),
        None => Err("neither XDG_CACHE_HOME nor HOME is set: no chart cache".into()),
    }
}

/// Where a locked archive is read from: the vendor directory when the lock names one, else
/// the cache.
pub fn archive_path(root: &Path, vendor: Option<&str>, name: &str, version: &str, digest: &str) -> Result<PathBuf, String> {
    match vendor {
        Some(v) => {
            let file = vendor_file_name(name, version)?;
            Ok(root.join(v).join(file))
        }
        None => {
            let hex = harmony_schemas::lock::digest_hex(digest).ok_or_else(|| format!("`{digest}` is not a sha256 digest"))?;
            Ok(cache_dir()?.join("sha256").join(format!("{hex}.tgz")))
        }
    }
}

/// `<name>-<version>.tgz`, as `helm package` names it; names and versions that could leave the
/// directory are refused.
pub fn vendor_file_name(name: &str, version: &str) -> Result<String, String> {
    let ok = |s: &str| !s.is_empty() && !s.starts_with('.') && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b));
    if !ok(name) || !ok(version) {
        return Err(format!("chart `{name}` version `{version}` cannot name a file"));
    }
    Ok(format!("{name}-{version}.tgz"))
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a
/// reader sees the whole archive or none.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = path.parent().ok_or_else(|| format!("{} has no directory", path.display()))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let tmp = dir.join(format!(".{}.tmp-{}", path.file_name().and_then(|n| n.to_str()).unwrap_or("chart"), std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Stores a verified archive in the cache (if absent); returns its path.
pub fn store(bytes: &[u8]) -> Result<PathBuf, String> {
    let digest = crate::digest_of(bytes);
    let path = archive_path(Path::new("."), None, "", "", &digest)?;
    if load_verified(&path, &digest).is_err() {
        write_atomic(&path, bytes)?;
    }
    Ok(path)
}

/// A locked archive's bytes, refused unless they hash to `digest`. The errors name the file,
/// the digests and the command that fixes it.
pub fn load_verified(path: &Path, digest: &str) -> Result<Vec<u8>, String> {
    let max = crate::MAX_ARCHIVE_BYTES;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("{} is missing (chart {digest}): run `harmony charts pull`", path.display()));
        }
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() as u64 > max {
        return Err(format!("{} is larger than {max} bytes", path.display()));
    }
    let got = crate::digest_of(&bytes);
    if got != digest {
        return Err(format!(
            "{} has digest {got}, harmony.lock says {digest}: the archive was altered; delete it and run `harmony charts pull`",
            path.display()
        ));
    }
    Ok(bytes)
}

/// The verified archive of a locked chart of the repository at `root`.
pub fn load(root: &Path, vendor: Option<&str>, name: &str, version: &str, digest: &str) -> Result<Vec<u8>, String> {
    load_verified(&archive_path(root, vendor, name, version, digest)?, digest)
}

/// The verified files of a locked chart, as the Helm engine loads an archive (its size limits
/// and path checks apply).
pub fn load_files(root: &Path, vendor: Option<&str>, name: &str, version: &str, digest: &str) -> Result<Vec<harmony_helm::chart::File>, String> {
    let bytes = load(root, vendor, name, version, digest)?;
    harmony_helm::chart::archive_files(&bytes).map_err(|e| format!("chart {name} {version} ({digest}): {e}"))
}
