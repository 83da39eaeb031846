//! `harmony-agent`, the edge daemon.
//!
//! This crate will own the agent that runs on every edge device: it watches its own key in
//! the fleet's plans bucket, verifies the plan's Ed25519 signature and generation, reconciles
//! podman containers to it (init containers, then services), publishes status and heartbeats,
//! answers `ping`/`logs`/`exec` requests, and upgrades itself.
//!
//! Architecture invariant: depends on `harmony-schemas` only, never on the compiler, the
//! Helm engine or the planner.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod agent;
pub mod commands;
pub mod config;
pub mod logging;
pub mod mounts;
pub mod podman;
pub mod reconcile;
pub mod sdnotify;
pub mod state;
pub mod upgrade;

pub use agent::{AGENT_VERSION, run};
pub use config::{Config, ConfigFile, Overrides, RuntimeKind};
