//! Harmony's planner: a compiled repository plus observed state → an execution plan.
//!
//! ```text
//! CompiledRepo ──render (local charts, harmony-helm)──▶ objects by kind/namespace/name
//!      │                                                         │
//!      └──────────── plan(compiled, rendered, observed, options) ◀┘
//!                        │  one action per unit: create | update | replace | delete | no-op,
//!                        │  object-by-object unified diffs (`similar`), prune of units gone
//!                        ▼  from the repository, --target/--exclude with dependency closure
//!                    PlanFile (harmony-schemas) ──▶ human | markdown | json
//! ```
//!
//! - [`plan()`] makes the plan; [`render::render_release`] renders a release from a chart the
//!   caller loaded; [`output`] renders a plan; [`redact`] replaces secret material with keyed
//!   fingerprints before any diff is computed.
//! - A release whose rendered objects reach outside its tenant's namespaces (cluster-scoped, or
//!   in another namespace) is refused, naming each object ([`scope`]).
//! - Destroys come first (dependents before what they depend on), then the rest in apply order.
//! - What drives apply ([`harmony_schemas::plan::ApplyFields`]) is kept apart from what explains
//!   it ([`harmony_schemas::plan::Explanation`]); the plan identity hashes the former only.
//!
//! Architecture invariant: pure. Observed state comes in as plain data, the chart is loaded by
//! the caller, the fingerprint key is an input; no clock, no randomness, no I/O. Same inputs,
//! byte-identical plan.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod contract;
pub mod drift;
pub mod object;
pub mod observed;
pub mod output;
pub mod plan;
pub mod redact;
pub mod render;
pub mod scope;

pub use object::Object;
pub use observed::ObservedState;
pub use plan::{PlanError, PlanOptions, Rendered, plan, releases_to_render, select_units};
pub use redact::FingerprintKey;
