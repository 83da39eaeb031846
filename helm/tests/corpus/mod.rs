//! The shared conformance corpus (Helm's goldens, real charts, template-function cases):
//! `$HARMONY_CONFORMANCE_DIR`, by default `../shared/conformance` beside the repository.

use std::path::PathBuf;

/// `rel` inside the corpus, when it exists. A test without its corpus is skipped (with a line on
/// stderr), except under `CI=true`, where it fails: CI must never pass without running it.
pub fn path(rel: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("HARMONY_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance"));
    let p = dir.join(rel);
    if p.exists() {
        return Some(p);
    }
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    assert!(!ci, "the conformance corpus is missing: {} does not exist (set HARMONY_CONFORMANCE_DIR to the shared conformance directory)", p.display());
    eprintln!("skipping: {} not found (set HARMONY_CONFORMANCE_DIR)", p.display());
    None
}
