//! Harmony's executor: the only part of `harmony` that touches the world.
//!
//! This crate will own observing and applying plans: Kubernetes through kube-rs (tenant
//! access, Helm-compatible release records, impersonation), NATS JetStream KV and object
//! store through async-nats (signed device plans, locks, agent binaries), rollouts, and the
//! apply journal that makes an interrupted apply safe to re-run.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod execute;
pub mod fleet;
pub mod kube;
pub mod live;
pub mod lock;
pub mod pipeline;
