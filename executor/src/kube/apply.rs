//! `secret-value` resolution, the one resolver of `harmony plan` (fingerprints) and of a plan's
//! execution (`crate::execute`), and how a tenant's refused write is explained. Applying
//! releases is `crate::execute`'s: a plan's actions, nothing computed again.

use std::collections::BTreeMap;

use harmony_compiler::compile::SecretRef;
use harmony_compiler::model::SecretSource;
use harmony_compiler::{CompiledRepo, UnitContent};
use harmony_planner::render::SecretValues;

use super::KubeError;

/// Resolves one `secret-value`: an environment variable or a file of the applying machine (a
/// relative path is relative to the working directory; secret files never live in the
/// repository). The error names the key and the source, never a value.
pub fn resolve_secret(s: &SecretRef) -> Result<String, String> {
    match &s.from {
        SecretSource::Env(var) => std::env::var(var).map_err(|_| format!("secret-value {}: environment variable {var} is not set", s.key)),
        SecretSource::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("secret-value {}: cannot read {path}: {e}", s.key))?;
            Ok(text.trim_end_matches(['\n', '\r']).to_string())
        }
    }
}

/// Resolves the `secret-value`s of every release of the repository ([`resolve_secret`]), by
/// unit id, for `harmony plan` (fingerprints only). An unreadable source is an error naming the
/// release, the key and the source (one per failure: a plan must not show a release as
/// unchanged while apply could not write it), except with `unresolved_ok` (`--offline`), where
/// it stays `None`: "unresolved until apply".
pub fn resolve_repo_secrets(compiled: &CompiledRepo, unresolved_ok: bool) -> Result<BTreeMap<String, SecretValues>, Vec<String>> {
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    for u in compiled.units.values() {
        let UnitContent::Release(r) = &u.content else { continue };
        if r.secrets.is_empty() {
            continue;
        }
        let mut values = SecretValues::new();
        for s in &r.secrets {
            let v = match resolve_secret(s) {
                Ok(v) => Some(v),
                Err(e) if unresolved_ok => {
                    tracing::debug!("{}: {e}", u.id);
                    None
                }
                Err(e) => {
                    errors.push(format!("{}: {e}", u.id));
                    None
                }
            };
            values.insert(s.key.clone(), v);
        }
        out.insert(u.id.as_str().to_string(), values);
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

/// A failure of work done as a tenant (`user`), with what the tenant may do when the API
/// server refused it.
pub(crate) fn tenant_failure(e: &KubeError, user: &str) -> String {
    if e.status() == Some(403) {
        format!(
            "{e}\n  Harmony applies and uninstalls a release as its tenant's ServiceAccount ({user}), which may change objects only inside the tenant's namespaces; `harmony plan` names the objects of a release that reach outside them"
        )
    } else {
        e.to_string()
    }
}

