//! Harmony's Helm engine.
//!
//! This crate will own everything Helm does offline: loading charts (directories and `.tgz`,
//! dependencies under `charts/`), coalescing values in Helm's order, a Go `text/template`
//! engine with Sprig's and Helm's functions, manifest sorting, and the codec for Helm's
//! release records. Rust has no Helm engine that matches Helm, so this one is ours and is
//! checked against Helm's own goldens in `../shared/conformance/`.
//!
//! Architecture invariant: pure. No network, no clock, no entropy except what the caller
//! injects; the same chart and values always render byte-identical output.
#![forbid(unsafe_code)]
