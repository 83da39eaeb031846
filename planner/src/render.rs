//! Rendering a release unit's chart into keyed objects (pure: the caller loads the chart).

use std::collections::BTreeMap;

use harmony_compiler::compile::ReleaseUnit;
use harmony_helm::funcs::FixedEnvironment;
use harmony_helm::{Chart, ReleaseOptions, RenderedRelease};
use harmony_schemas::plan::{Capabilities, CapabilitiesSource, ReleaseRender};
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
    ReleaseInput::of(unit).values(secrets)
}

/// What a release is rendered from besides its chart and its `.Release`/`.Capabilities`: a
/// compiled unit's, or a saved plan's ([`harmony_schemas::plan::ReleasePayload`]).
#[derive(Debug, Clone)]
pub struct ReleaseInput<'a> {
    /// Release name.
    pub name: &'a str,
    /// Namespace.
    pub namespace: &'a str,
    /// User values without `secret-value`s.
    pub values: &'a Json,
    /// The values paths of its `secret-value`s.
    pub secret_keys: Vec<&'a str>,
}

impl<'a> ReleaseInput<'a> {
    /// A compiled unit's.
    pub fn of(unit: &'a ReleaseUnit) -> ReleaseInput<'a> {
        ReleaseInput { name: unit.name.as_str(), namespace: unit.namespace.as_str(), values: &unit.values, secret_keys: unit.secrets.iter().map(|s| s.key.as_str()).collect() }
    }

    /// The values it is rendered with: its values with each `secret-value` set at its dotted
    /// path (the resolved value, or [`unresolved_placeholder`]).
    pub fn values(&self, secrets: &SecretValues) -> Json {
        let mut values = match self.values {
            Json::Object(_) => self.values.clone(),
            _ => Json::Object(Default::default()),
        };
        for &key in &self.secret_keys {
            let v = match secrets.get(key) {
                Some(Some(v)) => v.clone(),
                _ => unresolved_placeholder(key),
            };
            set_path(&mut values, key, Json::String(v));
        }
        values
    }
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

/// The `.Release` scope and `.Capabilities` of one render: the inputs a plan records
/// ([`ReleaseRender`], [`Capabilities`]) and apply renders with.
#[derive(Debug, Clone, Copy)]
pub struct RenderContext<'a> {
    /// `.Release.Revision`.
    pub revision: u64,
    /// `.Release.IsUpgrade`.
    pub is_upgrade: bool,
    /// `.Capabilities`.
    pub capabilities: &'a Capabilities,
}

/// What the repository declares for a release's cluster: its `kube-version` and
/// `api-versions`, added to Helm's default set (`--offline`, `diff`, and `template`).
pub fn declared_capabilities(unit: &ReleaseUnit) -> Capabilities {
    let mut api_versions = unit.api_versions.clone();
    api_versions.sort();
    api_versions.dedup();
    Capabilities {
        kube_version: format!("v{}", unit.kube_version.trim_start_matches('v')),
        api_versions,
        source: CapabilitiesSource::Declared,
    }
}

/// The revision a release's next apply writes and whether it is an upgrade, from its history
/// as (latest record's revision, whether a revision is deployed): Helm's `upgrade` numbers
/// the new record after the latest one, whatever its status, and upgrades when one is deployed.
pub fn next_revision(latest: Option<u64>, deployed: bool) -> (u64, bool) {
    (latest.map_or(1, |r| r.saturating_add(1)), deployed)
}

/// How release `id` is rendered against `observed`: its cluster's capabilities (discovered, or
/// else what the repository declares) and the `.Release` scope of the revision apply writes
/// next (after the latest record; an upgrade when one is deployed). A `diff` (observed state
/// compiled from the base revision) renders every release as a first install.
pub fn release_context(id: &str, unit: &ReleaseUnit, observed: &crate::ObservedState) -> (ReleaseRender, Capabilities) {
    let caps = observed.capabilities.get(unit.cluster.as_str()).cloned().unwrap_or_else(|| declared_capabilities(unit));
    let (revision, is_upgrade) = match observed.releases.get(id).filter(|_| !observed.compiled) {
        Some(r) => next_revision(Some(r.latest_revision.unwrap_or(r.revision).max(r.revision)), !r.undeployed),
        None => next_revision(None, false),
    };
    (ReleaseRender { cluster: unit.cluster.to_string(), revision, is_upgrade, manifest: None }, caps)
}

/// Renders a release with Helm's engine: the one renderer behind `plan`, `diff`, `template`
/// and `apply`. Errors never carry a secret.
pub fn render_helm(id: &str, unit: &ReleaseUnit, chart: Chart, secrets: &SecretValues, ctx: RenderContext<'_>) -> Result<RenderedRelease, RenderError> {
    render_input(id, &ReleaseInput::of(unit), chart, secrets, ctx)
}

/// [`render_helm`] from a [`ReleaseInput`]: what `apply PLANFILE` renders a saved plan's
/// release with.
pub fn render_input(id: &str, unit: &ReleaseInput<'_>, chart: Chart, secrets: &SecretValues, ctx: RenderContext<'_>) -> Result<RenderedRelease, RenderError> {
    // Helm's messages may quote values (`fail`, schema errors) or what a template computed
    // from them: never let a secret through (docs/plan.md#redaction).
    let opts = ReleaseOptions {
        name: unit.name.to_string(),
        namespace: unit.namespace.to_string(),
        kube_version: Some(ctx.capabilities.kube_version.clone()),
        api_versions: ctx.capabilities.api_versions.clone(),
        discovered_api_versions: ctx.capabilities.source == CapabilitiesSource::Discovery,
        revision: i64::try_from(ctx.revision.max(1)).unwrap_or(i64::MAX),
        is_upgrade: ctx.is_upgrade,
        ..ReleaseOptions::default()
    };
    let render = |chart: Chart, values: &Json| harmony_helm::render_release(chart, harmony_helm::json::from_serde(values), &opts, &FixedEnvironment::default());
    // A failure is redacted against a render with stand-ins for the secrets: keep a copy.
    let spare = crate::redact::has_resolved(secrets).then(|| chart.clone());
    render(chart, &unit.values(secrets)).map_err(|e| RenderError {
        release: id.to_string(),
        message: crate::redact::error_without_secrets(id, secrets, &e.message, |stand_ins| {
            spare.and_then(|c| render(c, &unit.values(stand_ins)).err().map(|e| e.message))
        }),
    })
}

/// The `manifest` a Helm release record holds for a render: `---\n# Source: PATH\nDOC\n` per
/// manifest, in install order (Helm's `pkg/action` writes it so).
pub fn helm_manifest<'a>(manifests: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    manifests.into_iter().map(|(name, content)| format!("---\n# Source: {name}\n{content}\n")).collect()
}

/// A release rendered for a plan: its objects (CRDs, manifests, hooks) keyed by
/// kind/namespace/name, and the record's `manifest`.
#[derive(Debug, Clone)]
pub struct ReleaseObjects {
    /// Objects.
    pub objects: Vec<Object>,
    /// [`helm_manifest`].
    pub manifest: String,
}

/// Renders a release like `helm upgrade --install --dry-run` against `ctx`: manifests in
/// install order, hooks and CRDs, each split into objects keyed by kind/namespace/name. With
/// resolved `secret-value`s, the values computed from them are marked for redaction
/// ([`crate::redact::follow_secrets`]).
pub fn render_release(id: &str, unit: &ReleaseUnit, chart: Chart, secrets: &SecretValues, ctx: RenderContext<'_>) -> Result<ReleaseObjects, RenderError> {
    crate::redact::follow_secrets(secrets, |secrets| render_objects(id, unit, chart.clone(), secrets, ctx))
}

fn render_objects(id: &str, unit: &ReleaseUnit, chart: Chart, secrets: &SecretValues, ctx: RenderContext<'_>) -> Result<ReleaseObjects, RenderError> {
    objects_of(id, unit.namespace.as_str(), &render_helm(id, unit, chart, secrets, ctx)?, secrets)
}

/// The `secret-value`s of a release rendered from a plan (`apply PLANFILE`: `rendered` is
/// [`render_input`]'s result with `secrets`) and every string the chart computed from them
/// ([`crate::redact::follow_secrets`]: one more render, with stand-ins), to scrub from what the
/// API server says about the objects written (a 422 quotes an invalid value).
pub fn secret_needles(id: &str, input: &ReleaseInput<'_>, chart: Chart, secrets: &SecretValues, rendered: &RenderedRelease, ctx: RenderContext<'_>) -> crate::redact::Needles {
    let mut needles = crate::redact::Needles::default();
    secrets.values().flatten().for_each(|v| needles.add(v));
    let Ok(real) = objects_of(id, input.namespace, rendered, secrets) else { return needles };
    let followed = crate::redact::follow_rendered(real, secrets, |alt| objects_of(id, input.namespace, &render_input(id, input, chart.clone(), alt, ctx)?, alt));
    for o in &followed.objects {
        match o.derived.iter().any(String::is_empty) {
            // A whole object: all but its kind.
            true => o.value.as_object().into_iter().flatten().filter(|(k, _)| !matches!(k.as_str(), "apiVersion" | "kind")).for_each(|(_, v)| needles.add_strings_of(v)),
            false => needles.add_derived_of(o),
        }
    }
    needles
}

/// A render split into keyed objects (CRDs, manifests, hooks) and the record's `manifest`.
fn objects_of(id: &str, namespace: &str, r: &RenderedRelease, secrets: &SecretValues) -> Result<ReleaseObjects, RenderError> {
    let mut needles = crate::redact::Needles::default();
    for v in secrets.values().flatten() {
        needles.add(v);
    }
    let err = |message: String| RenderError { release: id.to_string(), message: needles.scrub(&message) };
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
    let manifest = helm_manifest(r.manifests.iter().map(|m| (m.name.as_str(), m.content.as_str())));
    Ok(ReleaseObjects { objects: key_all(values, namespace), manifest })
}
