//! Harmony's repository compiler.
#![forbid(unsafe_code)]
