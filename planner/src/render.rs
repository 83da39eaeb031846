//! Rendering a release unit's chart into keyed objects (pure: the caller loads the chart).

use std::collections::BTreeMap;

use harmony_compiler::compile::ReleaseUnit;
use harmony_helm::funcs::FixedEnvironment;
use harmony_helm::{Chart, ReleaseOptions};
use serde_json::Value as Json;

use crate::object::{Object, key_all};

/// Resolved `secret-value`s: by values path; `None` when the source could not be read.
pub type SecretValues = BTreeMap<String, Option<String>>;

/// What stands in a rendered manifest for a `secret-value` that could not be resolved.
pub fn unresolved_placeholder(key: &str) -> String {
    format!("(secret-value {key}: resolved at apply)")
}

/// The values a release is rendered with: the unit's values with each `secret-value` set at
/// its dotted path (the resolved value, or [`unresolved_placeholder`]).
pub fn release_values(unit: &ReleaseUnit, secrets: &SecretValues) -> Json {
    let mut values = match &unit.values {
        Json::Object(_) => unit.values.clone(),
        _ => Json::Object(Default::default()),
    };
    for s in &unit.secrets {
        let v = match secrets.get(&s.key) {
            Some(Some(v)) => v.clone(),
            _ => unresolved_placeholder(&s.key),
        };
        set_path(&mut values, &s.key, Json::String(v));
    }
    values
}

fn set_path(root: &mut Json, dotted: &str, v: Json) {
    let parts: Vec<&str> = dotted.split('.').collect();
    let mut cur = root;
    for (i, p) in parts.iter().enumerate() {
        if !cur.is_object() {
            *cur = Json::Object(Default::default());
        }
        let Json::Object(m) = cur else { return };
        if i + 1 == parts.len() {
            m.insert(p.to_string(), v);
            return;
        }
        cur = m.entry(p.to_string()).or_insert_with(|| Json::Object(Default::default()));
    }
}

/// Why a release could not be rendered.
#[derive(Debug, thiserror::Error)]
#[error("release {release}: {message}")]
pub struct RenderError {
    /// Unit id.
    pub release: String,
    /// Helm's message, or the manifest that is not valid YAML.
    pub message: String,
}

/// Renders a release like `helm install --dry-run`: manifests in install order, hooks and
/// CRDs, each split into objects keyed by kind/namespace/name. `revision` is the Helm revision
/// being planned (`.Release.Revision`, `.Release.IsUpgrade` when above 1).
pub fn render_release(id: &str, unit: &ReleaseUnit, chart: Chart, secrets: &SecretValues, revision: u64) -> Result<Vec<Object>, RenderError> {
    // Helm's messages may quote values (`fail`, schema errors): never let a secret through.
    let mut needles = crate::redact::Needles::default();
    for v in secrets.values().flatten() {
        needles.add(v);
    }
    let err = |message: String| RenderError { release: id.to_string(), message: needles.scrub(&message) };
    let values = harmony_helm::json::from_serde(&release_values(unit, secrets));
    let opts = ReleaseOptions {
        name: unit.name.as_str().to_string(),
        namespace: unit.namespace.to_string(),
        kube_version: Some(format!("v{}", unit.kube_version.trim_start_matches('v'))),
        revision: revision.max(1) as i64,
        is_upgrade: revision > 1,
        ..ReleaseOptions::default()
    };
    let r = harmony_helm::render_release(chart, values, &opts, &FixedEnvironment::default()).map_err(|e| err(e.message))?;
    let mut docs: Vec<(String, String)> = Vec::new();
    docs.extend(r.crds.iter().map(|(n, t)| (n.clone(), t.clone())));
    docs.extend(r.manifests.iter().map(|m| (m.name.clone(), m.content.clone())));
    docs.extend(r.hooks.iter().map(|h| (h.manifest.name.clone(), h.manifest.content.clone())));
    let mut values = Vec::new();
    for (source, text) in docs {
        for (i, doc) in harmony_helm::release::split_manifests(&text).into_iter().enumerate() {
            let v: Json = serde_yaml_ng::from_str(&doc).map_err(|e| err(format!("{source}: rendered manifest is not valid YAML: {e}")))?;
            if v.is_null() {
                continue;
            }
            values.push((v, if i == 0 { source.clone() } else { format!("{source}#{i}") }));
        }
    }
    Ok(key_all(values, unit.namespace.as_str()))
}
