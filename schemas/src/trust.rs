//! The fleet's signing-key chain: how an agent comes to trust a new signing key, and to stop
//! trusting an old one, without anyone touching the device.
//!
//! A [`KeyAnnouncement`] says "trust key K" or "retire key K" for one fleet. It is signed (context
//! `key-chain`, so it can never pass as a plan or a command) by a key the agent already trusts.
//! `harmony` carries the fleet's whole chain, oldest first, inside every signed device plan
//! ([`crate::fleet::DevicePlan::key_chain`]); before verifying a plan's signature the agent
//! follows the chain from the keys it trusts ([`TrustState::follow`]) and verifies the plan with
//! the result. It persists the result only when the plan is accepted, so a plan with a forged
//! chain changes nothing.
//!
//! Rules (`docs/security.md`):
//! - `trust K`: ignored when K is already trusted; otherwise its signer must be trusted now,
//!   K must never have been retired, and then K is trusted.
//! - `retire K`: ignored when K is already retired; otherwise its signer must be trusted now and
//!   must not be K itself; K is removed and remembered as retired. A retired key is never
//!   trusted again — even if the device's configuration still lists it.
//! - At least one trusted key must remain.
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::fleet::{PROTOCOL_VERSION, Signed, VerifyError, VerifyingKey, encode_key, key_id, parse_public_key};

/// What an announcement does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAction {
    /// Trust `key` from now on.
    Trust,
    /// Stop trusting `key`, for good.
    Retire,
}

/// One link of a fleet's key chain. Signed as a [`SignedKeyAnnouncement`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct KeyAnnouncement {
    /// Always [`PROTOCOL_VERSION`].
    pub version: u32,
    /// The fleet (an agent refuses another fleet's chain).
    pub fleet: String,
    /// Trust or retire.
    pub action: KeyAction,
    /// The Ed25519 public key concerned, 64 hex digits.
    pub key: String,
    /// When it was made, Unix milliseconds (informational).
    pub issued_at_ms: u64,
}

/// A signed [`KeyAnnouncement`].
pub type SignedKeyAnnouncement = Signed<KeyAnnouncement>;

/// The signing keys a device trusts, and the ones it retired. Persisted by the agent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustState {
    /// Trusted public keys, hex.
    #[serde(default)]
    pub trusted: Vec<String>,
    /// Retired public keys, hex (never trusted again).
    #[serde(default)]
    pub retired: Vec<String>,
}

/// Why a key chain was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The announcement at `index` is not acceptable.
    #[error("key chain entry {index}: {detail}")]
    Entry {
        /// Position in the chain.
        index: usize,
        /// Why.
        detail: String,
    },
    /// The chain would leave no trusted key.
    #[error("the key chain would leave no trusted signing key")]
    Empty,
}

impl TrustState {
    /// The state of a device whose configuration trusts `keys` and that has followed no chain yet.
    pub fn new(keys: &[VerifyingKey]) -> TrustState {
        let mut s = TrustState::default();
        for k in keys {
            s.add(&encode_key(k.as_bytes()));
        }
        s
    }

    /// Merges a persisted state over the configured keys: configured keys that were retired
    /// stay retired.
    pub fn merged(configured: &[VerifyingKey], persisted: Option<&TrustState>) -> TrustState {
        let mut s = TrustState::new(configured);
        if let Some(p) = persisted {
            for k in &p.trusted {
                s.add(k);
            }
            for k in &p.retired {
                s.trusted.retain(|t| t != k);
                if !s.retired.contains(k) {
                    s.retired.push(k.clone());
                }
            }
        }
        s
    }

    fn add(&mut self, hex: &str) {
        if !self.retired.iter().any(|r| r == hex) && !self.trusted.iter().any(|t| t == hex) {
            self.trusted.push(hex.to_string());
        }
    }

    /// The trusted keys, decoded (entries that do not decode are skipped).
    pub fn keys(&self) -> Vec<VerifyingKey> {
        self.trusted.iter().filter_map(|k| parse_public_key(k).ok()).collect()
    }

    /// [`key_id`]s of the trusted keys, sorted.
    pub fn key_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.keys().iter().map(key_id).collect();
        ids.sort();
        ids
    }

    /// Follows `chain` (oldest first) for `fleet` from this state; returns the new state.
    pub fn follow(&self, fleet: &str, chain: &[SignedKeyAnnouncement]) -> Result<TrustState, ChainError> {
        let mut s = self.clone();
        for (index, signed) in chain.iter().enumerate() {
            let bad = |detail: String| ChainError::Entry { index, detail };
            // Decode without verifying first, to know whether it changes anything.
            let a: KeyAnnouncement = serde_json::from_value(signed.payload.clone()).map_err(|e| bad(format!("does not decode: {e}")))?;
            if a.version != PROTOCOL_VERSION {
                return Err(bad(format!("version {} is not supported", a.version)));
            }
            if a.fleet != fleet {
                return Err(bad(format!("is for fleet `{}`, not `{fleet}`", a.fleet)));
            }
            let key = parse_public_key(&a.key).map_err(|e| bad(format!("key: {e}")))?;
            let hex = encode_key(key.as_bytes());
            let changes = match a.action {
                KeyAction::Trust => !s.trusted.contains(&hex),
                KeyAction::Retire => !s.retired.contains(&hex),
            };
            if !changes {
                continue;
            }
            if a.action == KeyAction::Trust && s.retired.contains(&hex) {
                return Err(bad(format!("would trust key {} again, which was retired", key_id(&key))));
            }
            signed.verify(&s.keys()).map_err(|e| match e {
                VerifyError::UnknownKey(id) => bad(format!("signed by key {id}, which the device does not trust")),
                other => bad(other.to_string()),
            })?;
            match a.action {
                KeyAction::Trust => s.trusted.push(hex),
                KeyAction::Retire => {
                    if signed.signature.key_id == key_id(&key) {
                        return Err(bad(format!("key {} cannot retire itself", key_id(&key))));
                    }
                    s.trusted.retain(|t| *t != hex);
                    s.retired.push(hex);
                }
            }
        }
        if s.trusted.is_empty() {
            return Err(ChainError::Empty);
        }
        Ok(s)
    }
}

/// An announcement for `fleet`, signed by `signer`.
pub fn announce(fleet: &str, action: KeyAction, key: &VerifyingKey, signer: &crate::fleet::SigningKey) -> Result<SignedKeyAnnouncement, serde_json::Error> {
    let a = KeyAnnouncement { version: PROTOCOL_VERSION, fleet: fleet.into(), action, key: encode_key(key.as_bytes()), issued_at_ms: crate::fleet::now_ms() };
    Signed::sign(&a, signer)
}

/// The key the chain leads to for a signer: the newest trusted key after following `chain` from
/// `root` (what `harmony` must sign plans with).
pub fn head(fleet: &str, root: &VerifyingKey, chain: &[SignedKeyAnnouncement]) -> Result<TrustState, ChainError> {
    TrustState::new(std::slice::from_ref(root)).follow(fleet, chain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::generate_signing_key;

    #[test]
    fn rotation_trusts_then_retires_and_refuses_forgeries() {
        let k1 = generate_signing_key().unwrap();
        let k2 = generate_signing_key().unwrap();
        let k3 = generate_signing_key().unwrap();
        let start = TrustState::new(&[k1.verifying_key()]);
        let a1 = announce("pico", KeyAction::Trust, &k2.verifying_key(), &k1).unwrap();
        let a2 = announce("pico", KeyAction::Retire, &k1.verifying_key(), &k2).unwrap();
        let s1 = start.follow("pico", std::slice::from_ref(&a1)).unwrap();
        assert_eq!(s1.keys().len(), 2);
        let s2 = start.follow("pico", &[a1.clone(), a2.clone()]).unwrap();
        assert_eq!(s2.keys(), vec![k2.verifying_key()]);
        assert_eq!(s2.retired, vec![encode_key(k1.verifying_key().as_bytes())]);
        // Following the same chain again changes nothing; a device enrolled with K2 only accepts it too.
        assert_eq!(s2.follow("pico", &[a1.clone(), a2.clone()]).unwrap(), s2);
        let fresh = TrustState::new(&[k2.verifying_key()]).follow("pico", &[a1.clone(), a2.clone()]).unwrap();
        assert_eq!(fresh.keys(), vec![k2.verifying_key()]);
        // A retired key listed in the configuration stays retired.
        assert_eq!(TrustState::merged(&[k1.verifying_key()], Some(&s2)).keys(), vec![k2.verifying_key()]);
        // The retired key cannot bring itself (or a new key) back.
        let back = announce("pico", KeyAction::Trust, &k3.verifying_key(), &k1).unwrap();
        assert!(matches!(s2.follow("pico", &[back]), Err(ChainError::Entry { index: 0, .. })));
        let again = announce("pico", KeyAction::Trust, &k1.verifying_key(), &k2).unwrap();
        assert!(s2.follow("pico", &[again]).is_err(), "a retired key is never trusted again");
        // An untrusted signer, another fleet, a key retiring itself, a tampered entry.
        let stranger = announce("pico", KeyAction::Trust, &k3.verifying_key(), &k3).unwrap();
        assert!(start.follow("pico", &[stranger]).unwrap_err().to_string().contains("does not trust"));
        assert!(start.follow("other", std::slice::from_ref(&a1)).unwrap_err().to_string().contains("fleet"));
        let suicide = announce("pico", KeyAction::Retire, &k1.verifying_key(), &k1).unwrap();
        assert!(start.follow("pico", &[suicide]).is_err());
        let mut tampered = a1.clone();
        tampered.payload["key"] = serde_json::json!(encode_key(k3.verifying_key().as_bytes()));
        assert!(start.follow("pico", &[tampered]).unwrap_err().to_string().contains("does not verify"));
        // An announcement is never a plan (domain separation).
        let as_plan = crate::fleet::SignedDevicePlan::from_slice(&a1.to_vec()).unwrap();
        assert!(as_plan.verify(&[k1.verifying_key()]).is_err());
    }
}
