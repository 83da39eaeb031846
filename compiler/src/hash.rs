//! Content hashing: SHA-256 over canonical JSON, so equal content always hashes equal whatever
//! the source order. One implementation for all of Harmony: [`harmony_schemas::encoding`]
//! (this module keeps the compiler's names for it).

use serde::Serialize;

pub use harmony_schemas::encoding::{content_hash, sha256_hex};

/// Canonical JSON text of a serialisable value: keys sorted at every level (`null` for a value
/// that cannot be serialised; none of Harmony's types).
pub fn canonical_json<T: Serialize + ?Sized>(value: &T) -> String {
    let bytes = harmony_schemas::encoding::canonical_json(value).unwrap_or_else(|_| b"null".to_vec());
    // serde_json writes UTF-8.
    String::from_utf8(bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value as Json;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a: Json = serde_json::from_str(r#"{"b":1,"a":{"y":[1,{"d":2,"c":3}],"x":null}}"#).unwrap();
        assert_eq!(canonical_json(&a), r#"{"a":{"x":null,"y":[1,{"c":3,"d":2}]},"b":1}"#);
        let b: Json = serde_json::from_str(r#"{"a":{"x":null,"y":[1,{"c":3,"d":2}]},"b":1}"#).unwrap();
        assert_eq!(content_hash(&a), content_hash(&b));
        assert_ne!(content_hash(&a), content_hash(&Json::Null));
    }

    /// The vector `schemas` checks, computed independently (Python's json and hashlib).
    #[test]
    fn the_shared_canonical_vector_holds() {
        let v: Json = serde_json::from_str(include_str!("../../schemas/tests/data/canonical-vector.json")).unwrap();
        assert_eq!(canonical_json(&v["input"]), v["canonical"].as_str().unwrap());
        assert_eq!(content_hash(&v["input"]), v["content_hash"].as_str().unwrap());
    }
}
