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
//! * [`template`] is a straight port of `text/template` (lexer, parser, executor) so that
//!   whitespace trimming, scoping, truthiness and error texts match Go's.
//! * [`funcs`] holds every function with its Go signature ([`funcs::Ty`]): the executor uses
//!   it to convert and reject arguments exactly like Go (`expected string; found 1`).
//! * [`chart`], [`values`] and [`release`] are Helm's chart loader, values coalescing and
//!   `helm template` output.
//!
//! Architecture invariant: pure. No network, no clock, no entropy except what the caller
//! injects through [`funcs::Environment`]; the same chart and values always render
//! byte-identical output.
//!
//! ```
//! use harmony_helm::{render_string, funcs::FixedEnvironment};
//! let out = render_string("{{ .Values.name | upper }}", r#"{"name": "web"}"#, &FixedEnvironment::default()).unwrap();
//! assert_eq!(out, "WEB");
//! ```
#![forbid(unsafe_code)]

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
