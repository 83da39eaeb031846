//! Harmony's one canonical encoding and digest, used by the compiler (unit and plan hashes),
//! the planner, the executor and the fleet wire format alike: canonical JSON (object keys
//! sorted by their UTF-8 bytes at every level, no insignificant whitespace, serde_json's
//! escaping and number formatting), SHA-256, lowercase hex. The shared test vector is
//! `schemas/tests/data/canonical-vector.json`; the compiler's tests check it too.

use serde::Serialize;
use sha2::{Digest as _, Sha256};

pub use crate::fleet::canonical_json;

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// `sha256:<hex>` of the canonical JSON of `value` (of `null` if it cannot be serialised: a
/// map with non-string keys, a custom serialisation error; none of Harmony's types does that).
pub fn content_hash<T: Serialize + ?Sized>(value: &T) -> String {
    let bytes = canonical_json(value).unwrap_or_else(|_| b"null".to_vec());
    format!("sha256:{}", sha256_hex(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shared vector: input, its canonical JSON and its content hash.
    pub(crate) fn vector() -> (serde_json::Value, String, String) {
        let v: serde_json::Value = serde_json::from_str(include_str!("../tests/data/canonical-vector.json")).unwrap();
        (v["input"].clone(), v["canonical"].as_str().unwrap().to_string(), v["content_hash"].as_str().unwrap().to_string())
    }

    #[test]
    fn the_shared_vector_holds() {
        let (input, canonical, hash) = vector();
        assert_eq!(String::from_utf8(canonical_json(&input).unwrap()).unwrap(), canonical);
        assert_eq!(content_hash(&input), hash);
        assert_eq!(sha256_hex(canonical.as_bytes()), hash.trim_start_matches("sha256:"));
        assert_eq!(hex(&[0x00, 0xab, 0xff]), "00abff");
    }
}
