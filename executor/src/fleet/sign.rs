//! Bulk Ed25519 signing of device plans (ADR 0012).
//!
//! ed25519-dalek stays the project's Ed25519: key types, parsing, every verification (agent,
//! observe, status) and every other signature. Only the one place that signs thousands of plans
//! per apply (and an auto-revert's plans) computes its signatures with AWS-LC, whose
//! fixed-base scalar multiplication is s2n-bignum's assembly: 11 µs a signature on this machine
//! against ed25519-dalek's 20 µs (docs/performance.md). Ed25519 signing is deterministic
//! (RFC 8032 §5.1.6: the nonce is SHA-512 of the key's prefix and the message), so both give the
//! very same 64 bytes; [`bulk_signer`] checks that on a known message before using AWS-LC, and
//! the tests below check it on thousands of keys and messages.

use std::sync::Arc;

use aws_lc_rs::signature::Ed25519KeyPair;
use harmony_schemas::fleet::{PayloadSigner, SignatureEngine, SigningKey, VerifyingKey};

/// AWS-LC's Ed25519 for one key.
struct AwsLc {
    pair: Ed25519KeyPair,
    public: VerifyingKey,
}

impl SignatureEngine for AwsLc {
    fn public_key(&self) -> VerifyingKey {
        self.public
    }

    fn sign_message(&self, message: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(self.pair.sign(message).as_ref());
        out
    }
}

/// Signed by both engines whenever a bulk signer is made; they must agree byte for byte.
const KNOWN_MESSAGE: &[u8] = b"harmony/bulk-signer-check/v1\nthe bulk signer signs exactly as ed25519-dalek does";

/// AWS-LC's engine for `key`, if it takes the key and signs [`KNOWN_MESSAGE`] exactly as
/// ed25519-dalek does.
fn aws_lc(key: &SigningKey) -> Option<AwsLc> {
    let public = key.verifying_key();
    // Checks that the seed gives this public key, as ed25519-dalek derived it.
    let pair = Ed25519KeyPair::from_seed_and_public_key(key.as_bytes(), public.as_bytes()).ok()?;
    let engine = AwsLc { pair, public };
    (engine.sign_message(KNOWN_MESSAGE) == key.sign_message(KNOWN_MESSAGE)).then_some(engine)
}

/// The signer for many device plans: AWS-LC's Ed25519 when it agrees with ed25519-dalek for this
/// key, else ed25519-dalek itself (slower, same envelopes).
pub fn bulk_signer(key: &SigningKey) -> PayloadSigner {
    match aws_lc(key) {
        Some(engine) => PayloadSigner::with_engine(Arc::new(engine)),
        None => {
            tracing::warn!("AWS-LC's Ed25519 disagrees with ed25519-dalek for this key; signing with ed25519-dalek");
            PayloadSigner::new(key)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Verifier as _;
    use sha2::{Digest, Sha512};

    /// Deterministic bytes: SHA-512 in counter mode over a label (no randomness in tests).
    fn bytes(label: &str, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 64);
        let mut i = 0u64;
        while out.len() < n {
            out.extend_from_slice(&Sha512::new().chain_update(label).chain_update(i.to_le_bytes()).finalize());
            i += 1;
        }
        out.truncate(n);
        out
    }

    #[test]
    fn aws_lc_signs_exactly_as_ed25519_dalek_does() {
        // 64 keys (including the all-zero and all-ones seeds), messages of every length up to
        // 300 bytes and a few up to 16 KiB (SHA-512 block boundaries at 128-byte steps).
        let mut seeds: Vec<[u8; 32]> = vec![[0; 32], [0xff; 32]];
        seeds.extend((0..62).map(|k| <[u8; 32]>::try_from(bytes(&format!("seed {k}"), 32)).unwrap()));
        let mut lengths: Vec<usize> = (0..=300).collect();
        lengths.extend([511, 512, 513, 1023, 1024, 1025, 4096, 16384]);
        let mut compared = 0;
        for (k, seed) in seeds.iter().enumerate() {
            let key = SigningKey::from_bytes(seed);
            let engine = aws_lc(&key).expect("AWS-LC takes every 32-byte seed");
            assert_eq!(engine.public_key(), key.verifying_key());
            // Every length for a few keys, a sample of lengths for the rest.
            for &n in lengths.iter().filter(|&&n| k < 4 || n % 37 == k % 37 || n > 300) {
                let message = bytes(&format!("message {k} {n}"), n);
                let sig = engine.sign_message(&message);
                assert_eq!(sig, key.sign_message(&message), "key {k}, {n}-byte message");
                key.verifying_key().verify(&message, &ed25519_dalek::Signature::from_bytes(&sig)).unwrap();
                compared += 1;
            }
        }
        assert!(compared > 1500, "{compared}");
    }

    #[test]
    fn the_bulk_signer_writes_the_envelope_ed25519_dalek_writes() {
        use harmony_schemas::fleet::{DevicePlan, PROTOCOL_VERSION, Signed};
        let key = SigningKey::from_bytes(&<[u8; 32]>::try_from(bytes("fleet key", 32)).unwrap());
        let plan = DevicePlan {
            version: PROTOCOL_VERSION,
            device_id: "pi-001".into(),
            fleet: "pico".into(),
            generation: 7,
            source_revision: "abc123".into(),
            agent_version: "0.3.0".into(),
            agent: None,
            deployments: Vec::new(),
            key_chain: Vec::new(),
        };
        let fast = bulk_signer(&key).sign_to_vec(&plan).unwrap();
        assert_eq!(fast, PayloadSigner::new(&key).sign_to_vec(&plan).unwrap());
        assert_eq!(fast, Signed::sign(&plan, &key).unwrap().to_vec());
        let decoded: Signed<DevicePlan> = Signed::from_slice(&fast).unwrap();
        assert_eq!(decoded.verify(&[key.verifying_key()]).unwrap(), plan);
    }
}
