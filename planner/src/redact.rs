//! Secret redaction with keyed fingerprints.
//!
//! Every value of a Kubernetes `Secret`'s `data`, `stringData` and `binaryData` (and of any
//! object annotated `harmony.dev/sensitive: "true"`) is replaced by a fingerprint
//! `(secret fp:<16 hex>)`; every other string of every object has the plaintext of each known
//! secret (resolved `secret-value`s, the values of those Secret fields) replaced by
//! `(redacted)`. Diffs are computed on redacted objects, so no output can hold plaintext, yet a
//! changed secret shows as changed (its fingerprint changes) and an unchanged one as unchanged.
//!
//! # Why a keyed fingerprint, and which key
//!
//! A bare hash of a secret can be brute-forced offline from a pasted plan when the secret has
//! low entropy (a short password, a PIN). A fingerprint is therefore
//! `HMAC-SHA256(key, "harmony-secret-v1\0" || value)`, truncated to 64 bits, where the key is
//! a 256-bit random [`FingerprintKey`] that is never written into a plan or any output (only
//! its id, an HMAC of a constant). Without the key, a fingerprint reveals nothing that helps
//! guessing the value; with it, one can only confirm a guess, and whoever holds the key
//! (the operator's machine) can read the secrets anyway. Deriving the key from the secret
//! material itself was rejected: with one secret in the plan it degenerates to a bare hash.
//! The planner is pure: the key is an input. The CLI keeps it in the user's state directory
//! (created on first use; see `docs/adr/0005-secret-fingerprints.md`), until the executor
//! stores it with the targets so that every machine planning against them agrees.

use std::collections::BTreeSet;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value as Json;
use sha2::Sha256;

/// Annotation that marks an object's `data`/`stringData`/`binaryData` as sensitive.
pub const SENSITIVE_ANNOTATION: &str = "harmony.dev/sensitive";

/// What replaces plaintext found outside secret fields.
pub const REDACTED: &str = "(redacted)";

/// The 256-bit key fingerprints are computed with. Never serialised.
#[derive(Clone)]
pub struct FingerprintKey([u8; 32]);

impl std::fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FingerprintKey({})", self.id())
    }
}

impl FingerprintKey {
    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        FingerprintKey(bytes)
    }

    /// A key from a key file's content (64 hex characters, surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let bytes = hex::decode(t).map_err(|e| format!("expected 64 hexadecimal characters: {e}"))?;
        let arr: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| format!("expected 32 bytes (64 hexadecimal characters), found {}", b.len()))?;
        Ok(FingerprintKey(arr))
    }

    fn mac(&self, domain: &[u8], value: &[u8]) -> String {
        // HMAC accepts keys of any length: `new_from_slice` cannot fail here.
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        m.update(domain);
        m.update(value);
        hex::encode(&m.finalize().into_bytes()[..8])
    }

    /// `fp:<16 hex>` of a secret value.
    pub fn fingerprint(&self, value: &[u8]) -> String {
        format!("fp:{}", self.mac(b"harmony-secret-v1\0", value))
    }

    /// `kid:<16 hex>`: names the key without revealing it.
    pub fn id(&self) -> String {
        format!("kid:{}", self.mac(b"harmony-key-id-v1\0", b""))
    }
}

/// Plaintexts to scrub from every string, longest first (so a value containing another is
/// caught whole).
#[derive(Debug, Default, Clone)]
pub struct Needles(BTreeSet<(std::cmp::Reverse<usize>, String)>);

/// Secret-field values shorter than this are not scrubbed elsewhere (a Secret holding `1`
/// must not turn every `1` of a diff into `(redacted)`); `secret-value`s are scrubbed whatever
/// their length.
pub const MIN_FIELD_NEEDLE: usize = 4;

impl Needles {
    /// Adds a plaintext (and its base64 form).
    pub fn add(&mut self, plaintext: &str) {
        if plaintext.is_empty() {
            return;
        }
        self.0.insert((std::cmp::Reverse(plaintext.len()), plaintext.to_string()));
        let b64 = base64::engine::general_purpose::STANDARD.encode(plaintext.as_bytes());
        self.0.insert((std::cmp::Reverse(b64.len()), b64));
    }

    /// Adds the values of every secret field of an object.
    pub fn add_fields_of(&mut self, obj: &Json) {
        for (_, _, plain) in secret_fields(obj) {
            if let Ok(s) = String::from_utf8(plain)
                && s.chars().count() >= MIN_FIELD_NEEDLE
            {
                self.add(&s);
            }
        }
    }

    /// Replaces each needle in `s`.
    pub fn scrub(&self, s: &str) -> String {
        let mut out = s.to_string();
        for (_, n) in &self.0 {
            if out.contains(n.as_str()) {
                out = out.replace(n.as_str(), REDACTED);
            }
        }
        out
    }
}

/// Whether an object's data fields are secret: a core `Secret`, or marked sensitive.
pub fn is_sensitive(obj: &Json) -> bool {
    let kind = obj.get("kind").and_then(|k| k.as_str());
    let marked = obj.pointer("/metadata/annotations").and_then(|a| a.get(SENSITIVE_ANNOTATION)).and_then(|v| v.as_str()).is_some_and(|v| v == "true");
    kind == Some("Secret") || marked
}

/// (field, key, plaintext bytes) of every secret field of an object.
fn secret_fields(obj: &Json) -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    if !is_sensitive(obj) {
        return out;
    }
    for field in ["data", "stringData", "binaryData"] {
        let Some(Json::Object(m)) = obj.get(field) else { continue };
        for (k, v) in m {
            out.push((field, k.clone(), plaintext_of(field, v)));
        }
    }
    out
}

fn plaintext_of(field: &str, v: &Json) -> Vec<u8> {
    let text = match v {
        Json::String(s) => s.clone(),
        Json::Null => String::new(),
        other => other.to_string(),
    };
    if field == "stringData" {
        return text.into_bytes();
    }
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(compact.as_bytes()).unwrap_or_else(|_| text.into_bytes())
}

/// A redacted object and the fingerprints of its secret fields (`field.key` → fingerprint).
pub fn redact_object(obj: &Json, key: &FingerprintKey, needles: &Needles) -> (Json, Vec<(String, String)>) {
    let mut fps = Vec::new();
    let mut out = scrub_value(obj, needles);
    if is_sensitive(obj) {
        for (field, k, plain) in secret_fields(obj) {
            let fp = key.fingerprint(&plain);
            if let Some(Json::Object(m)) = out.get_mut(field) {
                // The key itself went through scrubbing: look it up scrubbed.
                let scrubbed_key = needles.scrub(&k);
                m.insert(scrubbed_key.clone(), Json::String(format!("(secret {fp})")));
                fps.push((format!("{field}.{scrubbed_key}"), fp));
            }
        }
    }
    (out, fps)
}

/// Replaces needles in every string and key.
pub fn scrub_value(v: &Json, needles: &Needles) -> Json {
    if needles.0.is_empty() {
        return v.clone();
    }
    match v {
        Json::String(s) => Json::String(needles.scrub(s)),
        Json::Array(a) => Json::Array(a.iter().map(|x| scrub_value(x, needles)).collect()),
        Json::Object(m) => Json::Object(m.iter().map(|(k, x)| (needles.scrub(k), scrub_value(x, needles))).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_keyed_and_stable() {
        let a = FingerprintKey::from_bytes([1; 32]);
        let b = FingerprintKey::from_bytes([2; 32]);
        assert_eq!(a.fingerprint(b"hunter2"), a.fingerprint(b"hunter2"));
        assert_ne!(a.fingerprint(b"hunter2"), a.fingerprint(b"hunter3"));
        assert_ne!(a.fingerprint(b"hunter2"), b.fingerprint(b"hunter2"));
        assert!(a.fingerprint(b"x").starts_with("fp:") && a.fingerprint(b"x").len() == 19);
        assert_ne!(a.id(), b.id());
        assert!(FingerprintKey::from_hex(&"ab".repeat(32)).is_ok());
        assert!(FingerprintKey::from_hex("abc").unwrap_err().contains("hexadecimal"));
        assert!(FingerprintKey::from_hex(&"ab".repeat(31)).unwrap_err().contains("found 31"));
    }

    #[test]
    fn secret_fields_become_fingerprints_and_plaintext_is_scrubbed_elsewhere() {
        let k = FingerprintKey::from_bytes([7; 32]);
        let secret: Json = serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "data": {"password": "c3VwZXJzZWNyZXQ="}, "stringData": {"token": "tok-123456"}});
        let mut needles = Needles::default();
        needles.add_fields_of(&secret);
        let (r, fps) = redact_object(&secret, &k, &needles);
        let text = r.to_string();
        assert!(!text.contains("c3VwZXJzZWNyZXQ=") && !text.contains("tok-123456"), "{text}");
        assert_eq!(fps[0], ("data.password".to_string(), k.fingerprint(b"supersecret")));
        assert_eq!(fps[1], ("stringData.token".to_string(), k.fingerprint(b"tok-123456")));
        let cm: Json = serde_json::json!({"kind": "ConfigMap", "data": {"url": "postgres://u:supersecret@db"}});
        let (r, fps) = redact_object(&cm, &k, &needles);
        assert!(fps.is_empty());
        assert_eq!(r["data"]["url"], "postgres://u:(redacted)@db");
    }
}
