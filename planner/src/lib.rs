//! Harmony's planner.
//!
//! This crate will own the step from a compiled repository plus observed state to an
//! execution plan: one action per unit (create, update, delete, no-op, replace), object-level
//! diffs, prune of units that left the repository, the plan's identity hash, saved plan files
//! with staleness fingerprints, secret redaction, and the human, Markdown and JSON renderers.
//!
//! Architecture invariant: pure. Observed state comes in as plain data; nothing here talks
//! to a cluster or a NATS server.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
