//! Wire contracts shared by `harmony` and `harmony-agent`.
//!
//! This crate will own every type that crosses a process boundary: the compiled, signed
//! device plan an agent receives, the device status and heartbeat it publishes, command
//! requests and replies (`ping`, `logs`, `exec`), and the saved plan file format. Each type
//! is versioned, (de)serialised with serde and exported as JSON Schema into `docs/schemas/`.
//!
//! Architecture invariant: this crate depends on nothing of Harmony's. The agent depends on
//! it and on nothing else of ours, so an agent can never be talked into compiling a
//! repository or rendering a chart.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod canon;
pub mod agent_config;
pub mod encoding;
pub mod fleet;
pub mod host_path;
pub mod plan;
pub mod trust;

pub use plan::{PLAN_FORMAT_VERSION, PlanFile, PlanFileError};

/// `s` cut to at most `max` bytes (on a character boundary), with `…` appended when cut: for
/// echoing untrusted input in errors and statuses without copying all of it.
pub fn shorten(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    format!("{}…", &s[..s.floor_char_boundary(max)])
}
