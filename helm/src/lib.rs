//! Harmony's Helm engine.
//!
//! This crate does everything `helm template` does, offline and in-process: load charts
//! (directories and `.tgz`, dependencies under `charts/`), coalesce values in Helm's order,
//! render templates with a port of Go's `text/template` plus Sprig's and Helm's functions,
//! and split and order the resulting manifests. It is checked against Helm's own outputs in
//! `../shared/conformance/` (see `docs/helm-compatibility.md`).
//!
//! # Design
//!
//! * [`value::Value`] models the Go types a Helm template sees, because Go's reflective
//!   `text/template` makes output and errors depend on them: values from YAML are `float64`,
//!   literals are `int`, a missing map key is a nil `interface{}`, maps are shared references.
//! * [`mod@template`] is a straight port of `text/template` (lexer, parser, executor) so that
//!   whitespace trimming, scoping, truthiness and error texts match Go's.
//! * [`funcs`] holds every function with its Go signature ([`funcs::Ty`]): the executor uses
//!   it to convert and reject arguments exactly like Go (`expected string; found 1`).
//! * [`chart`], [`values`] and [`release`] are Helm's chart loader, values coalescing and
//!   `helm template` output.
//!
//! # Code map
//!
//! | module | role |
//! |---|---|
//! | [`mod@template`] | `text/template`: [`template::lex`], [`template::parse`], [`template::exec`], Go's `fmt` in [`template::fmt`], Go/Helm error texts |
//! | [`value`] | the dynamic [`value::Value`] and Go's `%v` |
//! | [`funcs`] | the function map: Go builtins, Sprig (`sprig_*`), Helm ([`funcs::helm`]), dates ([`funcs::time`]), the injected [`funcs::Environment`] |
//! | [`yaml`], [`json`], [`toml`] | Helm's codecs: go-yaml v2 decoding and emitting, Go's `encoding/json`, BurntSushi's TOML layout |
//! | [`semver`] | Masterminds/semver v3 versions and constraints |
//! | [`chart`] | loading directories and archives, `.helmignore`, `Chart.yaml` |
//! | [`values`] | `-f`/`--set` merging, coalescing, dependency conditions/tags/aliases, `import-values` |
//! | [`objects`] | `.Files`, `.Capabilities` |
//! | [`mod@render`] | Helm's `engine.Render`: one namespace for all templates, per-chart scopes |
//! | [`budget`] | Harmony's limits on one render's steps and bytes (charts are tenant input) |
//! | [`release`] | `helm template`: [`render_release`] (structured), [`template()`] and [`release::run_template`] (printed output) |
//!
//! # API boundaries
//!
//! Callers use [`Chart::load`], [`values`] for user values, [`render_release`] (manifests in
//! install order, hooks, CRDs, notes) or [`release::run_template`] (exactly what
//! `helm template` prints, used by `harmony template`). Everything else is public for tests
//! and tools but may change.
//!
//! Architecture invariant: pure. No network, no clock, no entropy except what the caller
//! injects through [`funcs::Environment`]; the same chart and values always render
//! byte-identical output. Templates are user input: every failure is an error value (Go's
//! and Helm's texts), never a panic; recursion is bounded or grows the stack on demand, and
//! each render's work is bounded ([`budget`]).
//!
//! ```
//! use harmony_helm::{render_string, funcs::FixedEnvironment};
//! let out = render_string("{{ .Values.name | upper }}", r#"{"name": "web"}"#, &FixedEnvironment::default()).unwrap();
//! assert_eq!(out, "WEB");
//! ```
#![forbid(unsafe_code)]

pub mod budget;
pub mod chart;
pub mod funcs;
pub mod json;
pub mod objects;
pub mod release;
pub mod render;
pub mod semver;
pub mod template;
pub mod toml;
pub mod value;
pub mod values;
pub mod yaml;

pub use chart::{Chart, ChartError, Metadata};
pub use release::{ReleaseError, ReleaseOptions, RenderedRelease, TemplateOutput, render_release, template};
pub use render::{RenderError, RenderTemplate, render};

/// Renders a single template text with `.Values` decoded from JSON (numbers as float64).
/// Mostly for tests and examples.
pub fn render_string(text: &str, values_json: &str, env: &dyn funcs::Environment) -> Result<String, RenderError> {
    let values = json::decode(values_json).map_err(|e| RenderError { template: "t".into(), message: e, source_error: None })?;
    let mut top = std::collections::BTreeMap::new();
    top.insert("Values".to_string(), values);
    let t = RenderTemplate { name: "t".into(), text: text.into(), vals: value::Value::map(top), base_path: String::new() };
    let mut out = render(&[t], env)?;
    Ok(out.remove("t").unwrap_or_default())
}
