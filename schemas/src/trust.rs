//! The fleet's signing-key chain: how an agent comes to trust a new signing key, and to stop
//! trusting an old one, without anyone touching the device.
//!
//! A [`KeyAnnouncement`] says "trust key K" or "retire key K" for one fleet. It is signed (context
//! `key-chain`, so it can never pass as a plan or a command). `harmony` carries the fleet's whole
//! chain, oldest first, inside every signed device plan ([`crate::fleet::DevicePlan::key_chain`]);
//! before verifying a plan's signature the agent follows the plan's chain
//! ([`TrustState::follow`]) and verifies the plan with the key the chain leads to.
//!
//! The chain is **linear** (`docs/security.md`, ADR 0010): at every link there is one *current*
//! key — the repository's key at the root, then the key of the latest `trust` link — and only it
//! may sign the next link and plans.
//! - `trust K` (signed by the current key): K is trusted and becomes the current key. The
//!   previous keys stay trusted until a retirement (plans still carrying the shorter chain verify
//!   with them), but can no longer extend the chain.
//! - `retire K` (signed by the current key, never K itself): the device **settles**: from then on
//!   it trusts exactly the current key; every other key it trusted (K, earlier keys, keys only
//!   its configuration listed) is retired and never trusted again.
//! - A device remembers the settled part of the chain (its length and a digest, and the keys at
//!   that point: [`TrustState`]); a later chain must extend it link for link, so a chain forked
//!   or cut before a retirement (a plan signed with a stolen, since retired key) is refused, and
//!   whatever was trusted only through links after the last retirement (a key planted with a
//!   stolen key before the rotation) is forgotten at the next retirement.
//! - A device that settled nothing yet starts from its configured keys: from the last `trust`
//!   link naming one of them (a device enrolled after a rotation knows only the then current key
//!   and cannot check the links before it), or from the root.
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::fleet::{PROTOCOL_VERSION, Signed, VerifyError, VerifyingKey, canonical_json, encode_key, key_id, parse_public_key};

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

/// Where a device stands in its fleet's key chain: what it settled at the last retirement it
/// followed (or its configured keys, before any). Persisted by the agent; the base every plan's
/// chain is followed from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustState {
    /// Trusted public keys, hex (after a retirement: exactly the current key).
    #[serde(default)]
    pub trusted: Vec<String>,
    /// Retired public keys, hex (never trusted again).
    #[serde(default)]
    pub retired: Vec<String>,
    /// The current key, hex: the only one that may sign the next link (and plans). `None` only
    /// for a device configured with several keys that has settled nothing yet (then any of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// How many links of the chain are settled (up to and including the last retirement followed).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub settled: usize,
    /// Digest of those links (SHA-256 hash chain over their canonical JSON, hex); a later chain
    /// must begin with exactly them.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub settled_digest: String,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The result of following a chain: what to verify the plan with, what to report, what to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Followed {
    /// The state to persist once the plan is accepted: settled at the chain's last retirement
    /// (the base unchanged when the chain retires nothing new). Links after the last retirement
    /// are never persisted: they are followed again from this base with every plan.
    pub settled: TrustState,
    /// The chain's current key at its end (`None`: any of `trusted`, see [`TrustState::current`]).
    pub current: Option<String>,
    /// Keys trusted at the chain's end (not retired), hex, in the order they were trusted.
    pub trusted: Vec<String>,
}

impl Followed {
    /// The keys a plan may be signed with: the current key (or, without one, every trusted key).
    pub fn signers(&self) -> Vec<VerifyingKey> {
        match &self.current {
            Some(c) => parse_public_key(c).into_iter().collect(),
            None => decode(&self.trusted),
        }
    }

    /// The keys trusted at the chain's end, decoded.
    pub fn keys(&self) -> Vec<VerifyingKey> {
        decode(&self.trusted)
    }

    /// [`key_id`]s of the keys trusted at the chain's end, sorted (what a device reports).
    pub fn key_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.keys().iter().map(key_id).collect();
        ids.sort();
        ids
    }
}

fn decode(hex: &[String]) -> Vec<VerifyingKey> {
    hex.iter().filter_map(|k| parse_public_key(k).ok()).collect()
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
    /// The chain does not begin with the links the device settled.
    #[error(
        "the key chain does not extend the {settled} link(s) this device settled at its last key retirement \
         (a chain forked or cut before a retirement, e.g. signed with a retired key)"
    )]
    Fork {
        /// How many links the device settled.
        settled: usize,
    },
    /// The chain would leave no trusted key.
    #[error("the key chain would leave no trusted signing key")]
    Empty,
}

/// The running digest of a chain prefix extended by one link.
fn chain_digest(previous: &str, link: &SignedKeyAnnouncement) -> String {
    let mut h = Sha256::new();
    h.update(previous.as_bytes());
    h.update(canonical_json(link).unwrap_or_default());
    encode_key(&h.finalize().into())
}

impl TrustState {
    /// The state of a device whose configuration trusts `keys` and that has followed no chain
    /// yet (one key: it is the current key).
    pub fn new(keys: &[VerifyingKey]) -> TrustState {
        let mut s = TrustState::default();
        for k in keys {
            let hex = encode_key(k.as_bytes());
            if !s.trusted.contains(&hex) {
                s.trusted.push(hex);
            }
        }
        if let [only] = s.trusted.as_slice() {
            s.current = Some(only.clone());
        }
        s
    }

    /// The base of a device configured with `configured` that persisted `persisted`: once it
    /// settled at a retirement, the persisted state alone (the configuration's keys were either
    /// retired or are not the chain's); before, the configured keys plus persisted ones (states
    /// written before chains were linear), minus the retired ones. A retired key stays retired.
    pub fn merged(configured: &[VerifyingKey], persisted: Option<&TrustState>) -> TrustState {
        match persisted {
            Some(p) if p.settled > 0 => p.clone(),
            Some(p) => {
                let mut s = TrustState::new(configured);
                for k in &p.trusted {
                    if !s.trusted.contains(k) {
                        s.trusted.push(k.clone());
                    }
                }
                s.trusted.retain(|t| !p.retired.contains(t));
                s.retired = p.retired.clone();
                s.current = match s.trusted.as_slice() {
                    [only] => Some(only.clone()),
                    _ => p.current.clone().filter(|c| s.trusted.contains(c)),
                };
                s
            }
            None => TrustState::new(configured),
        }
    }

    /// The trusted keys, decoded (entries that do not decode are skipped).
    pub fn keys(&self) -> Vec<VerifyingKey> {
        decode(&self.trusted)
    }

    /// This base as if a chain had led nowhere beyond it (a device with no plan yet).
    pub fn unfollowed(&self) -> Followed {
        Followed { settled: self.clone(), current: self.current.clone(), trusted: self.trusted.clone() }
    }

    /// Follows `chain` (oldest first) for `fleet` from this base (see the module docs).
    pub fn follow(&self, fleet: &str, chain: &[SignedKeyAnnouncement]) -> Result<Followed, ChainError> {
        let mut decoded = Vec::with_capacity(chain.len());
        for (index, signed) in chain.iter().enumerate() {
            let bad = |detail: String| ChainError::Entry { index, detail };
            let a: KeyAnnouncement = serde_json::from_value(signed.payload.clone()).map_err(|e| bad(format!("does not decode: {e}")))?;
            if a.version != PROTOCOL_VERSION {
                return Err(bad(format!("version {} is not supported", a.version)));
            }
            if a.fleet != fleet {
                return Err(bad(format!("is for fleet `{}`, not `{fleet}`", a.fleet)));
            }
            let key = parse_public_key(&a.key).map_err(|e| bad(format!("key: {e}")))?;
            decoded.push((a.action, encode_key(key.as_bytes())));
        }
        let mut settled = self.clone();
        let mut trusted = self.trusted.clone();
        let mut retired = self.retired.clone();
        let mut current = self.current.clone();
        let start = if self.settled > 0 {
            // The chain must begin with the settled links (every plan carries the whole chain).
            let digest = chain.get(..self.settled).map(|links| links.iter().fold(String::new(), |d, l| chain_digest(&d, l)));
            if digest.as_deref() != Some(self.settled_digest.as_str()) {
                return Err(ChainError::Fork { settled: self.settled });
            }
            self.settled
        } else {
            // From the last link that made one of the configured keys current, else from the root.
            match decoded.iter().rposition(|(action, k)| *action == KeyAction::Trust && trusted.contains(k) && !retired.contains(k)) {
                Some(i) => {
                    current = Some(decoded[i].1.clone());
                    i + 1
                }
                None => 0,
            }
        };
        let mut digest = chain[..start].iter().fold(String::new(), |d, l| chain_digest(&d, l));
        for (index, signed) in chain.iter().enumerate().skip(start) {
            let bad = |detail: String| ChainError::Entry { index, detail };
            digest = chain_digest(&digest, signed);
            let (action, hex) = &decoded[index];
            let signers = match &current {
                Some(c) => decode(std::slice::from_ref(c)),
                None => decode(&trusted),
            };
            signed.verify(&signers).map_err(|e| match (e, &current) {
                // The key id comes from the unverified link: bounded before it is copied.
                (VerifyError::UnknownKey(id), _) if id.len() > 64 => bad(format!("signed by an unknown key (id of {} bytes)", id.len())),
                (VerifyError::UnknownKey(id), Some(c)) => bad(format!(
                    "signed by key {id}, not by the chain's current key {}: only the current key may extend the chain",
                    short_id(c)
                )),
                (VerifyError::UnknownKey(id), None) => bad(format!("signed by key {id}, which the device does not trust")),
                (other, _) => bad(other.to_string()),
            })?;
            let signer = signers.iter().map(|k| encode_key(k.as_bytes())).find(|k| short_id(k) == signed.signature.key_id).unwrap_or_default();
            match action {
                KeyAction::Trust => {
                    if retired.contains(hex) {
                        return Err(bad(format!("would trust key {} again, which was retired", short_id(hex))));
                    }
                    if *hex == signer {
                        return Err(bad(format!("key {} announces itself", short_id(hex))));
                    }
                    if !trusted.contains(hex) {
                        trusted.push(hex.clone());
                    }
                    current = Some(hex.clone());
                }
                KeyAction::Retire => {
                    if *hex == signer {
                        return Err(bad(format!("key {} cannot retire itself", short_id(hex))));
                    }
                    // Settle: exactly the current key remains.
                    for k in trusted.iter().chain(std::iter::once(hex)) {
                        if *k != signer && !retired.contains(k) {
                            retired.push(k.clone());
                        }
                    }
                    trusted = vec![signer.clone()];
                    current = Some(signer);
                    settled = TrustState {
                        trusted: trusted.clone(),
                        retired: retired.clone(),
                        current: current.clone(),
                        settled: index + 1,
                        settled_digest: digest.clone(),
                    };
                }
            }
        }
        if trusted.is_empty() {
            return Err(ChainError::Empty);
        }
        Ok(Followed { settled, current, trusted })
    }
}

/// The [`key_id`] of a hex public key (the hex itself if it does not decode).
fn short_id(hex: &str) -> String {
    parse_public_key(hex).map(|k| key_id(&k)).unwrap_or_else(|_| hex.to_string())
}

/// An announcement for `fleet`, signed by `signer`.
pub fn announce(fleet: &str, action: KeyAction, key: &VerifyingKey, signer: &crate::fleet::SigningKey) -> Result<SignedKeyAnnouncement, serde_json::Error> {
    let a = KeyAnnouncement { version: PROTOCOL_VERSION, fleet: fleet.into(), action, key: encode_key(key.as_bytes()), issued_at_ms: crate::fleet::now_ms() };
    Signed::sign(&a, signer)
}

/// The chain as `harmony` sees it from the repository's `root` key: its current key (what plans
/// must be signed with, and the only key that may extend it) and the keys not retired.
pub fn head(fleet: &str, root: &VerifyingKey, chain: &[SignedKeyAnnouncement]) -> Result<Followed, ChainError> {
    TrustState::new(std::slice::from_ref(root)).follow(fleet, chain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::{SigningKey, generate_signing_key};

    fn keys<const N: usize>() -> [SigningKey; N] {
        std::array::from_fn(|_| generate_signing_key().unwrap())
    }

    fn trust(new: &SigningKey, by: &SigningKey) -> SignedKeyAnnouncement {
        announce("pico", KeyAction::Trust, &new.verifying_key(), by).unwrap()
    }

    fn retire(old: &SigningKey, by: &SigningKey) -> SignedKeyAnnouncement {
        announce("pico", KeyAction::Retire, &old.verifying_key(), by).unwrap()
    }

    fn hex(k: &SigningKey) -> String {
        encode_key(k.verifying_key().as_bytes())
    }

    fn base(k: &[&SigningKey]) -> TrustState {
        TrustState::new(&k.iter().map(|k| k.verifying_key()).collect::<Vec<_>>())
    }

    #[test]
    fn rotation_trusts_the_new_key_then_settles_on_it() {
        let [k1, k2] = keys();
        let start = base(&[&k1]);
        let (t2, r1) = (trust(&k2, &k1), retire(&k1, &k2));
        // Announced: both trusted, K2 current (plans are signed with it), nothing settled yet.
        let f1 = start.follow("pico", std::slice::from_ref(&t2)).unwrap();
        assert_eq!((f1.trusted.clone(), f1.current.clone()), (vec![hex(&k1), hex(&k2)], Some(hex(&k2))));
        assert_eq!(f1.signers(), vec![k2.verifying_key()]);
        assert_eq!(f1.settled, start, "a trust link alone settles nothing");
        // Retired: exactly K2, settled at 2 links.
        let f2 = start.follow("pico", &[t2.clone(), r1.clone()]).unwrap();
        assert_eq!((f2.trusted.clone(), f2.current.clone()), (vec![hex(&k2)], Some(hex(&k2))));
        assert_eq!((f2.settled.settled, f2.settled.retired.clone()), (2, vec![hex(&k1)]));
        assert_eq!(f2.key_ids(), vec![key_id(&k2.verifying_key())]);
        // Following the same chain again from the settled state changes nothing.
        assert_eq!(f2.settled.follow("pico", &[t2.clone(), r1.clone()]).unwrap(), f2);
        // A device enrolled with K2 only (after the announcement) accepts the chain and settles too.
        let fresh = base(&[&k2]).follow("pico", &[t2.clone(), r1.clone()]).unwrap();
        assert_eq!((fresh.trusted, fresh.settled.settled), (vec![hex(&k2)], 2));
        // A retired key listed in the configuration stays retired.
        let merged = TrustState::merged(&[k1.verifying_key()], Some(&f2.settled));
        assert_eq!(merged.keys(), vec![k2.verifying_key()]);
        // The settled state survives a round trip through JSON (the agent's state file).
        let json = serde_json::to_string(&f2.settled).unwrap();
        assert_eq!(serde_json::from_str::<TrustState>(&json).unwrap(), f2.settled);
    }

    #[test]
    fn only_the_current_key_extends_the_chain() {
        let [k1, k2, k3] = keys();
        let start = base(&[&k1]);
        let t2 = trust(&k2, &k1);
        // After `trust K2`, K1 is still trusted but may no longer extend the chain.
        for link in [trust(&k3, &k1), retire(&k2, &k1)] {
            let e = start.follow("pico", &[t2.clone(), link]).unwrap_err().to_string();
            assert!(e.contains("entry 1") && e.contains("only the current key may extend the chain"), "{e}");
        }
        // A key nobody trusts, a retired key bringing itself or a new key back, a key retiring or
        // announcing itself, another fleet's chain, a tampered link.
        let e = start.follow("pico", &[trust(&k3, &k3)]).unwrap_err().to_string();
        assert!(e.contains("only the current key"), "{e}");
        let r1 = retire(&k1, &k2);
        let settled = start.follow("pico", &[t2.clone(), r1.clone()]).unwrap().settled;
        assert!(settled.follow("pico", &[t2.clone(), r1.clone(), trust(&k3, &k1)]).is_err(), "the retired key extends nothing");
        let again = settled.follow("pico", &[t2.clone(), r1.clone(), trust(&k1, &k2)]).unwrap_err().to_string();
        assert!(again.contains("again, which was retired"), "{again}");
        assert!(start.follow("pico", &[retire(&k1, &k1)]).unwrap_err().to_string().contains("cannot retire itself"));
        let e = settled.follow("pico", &[t2.clone(), r1.clone(), trust(&k2, &k2)]).unwrap_err().to_string();
        assert!(e.contains("announces itself"), "{e}");
        assert!(start.follow("other", std::slice::from_ref(&t2)).unwrap_err().to_string().contains("fleet"));
        let mut tampered = t2.clone();
        tampered.payload["key"] = serde_json::json!(hex(&k3));
        assert!(start.follow("pico", &[tampered]).unwrap_err().to_string().contains("does not verify"));
        // An announcement is never a plan (domain separation).
        let as_plan = crate::fleet::SignedDevicePlan::from_slice(&t2.to_vec()).unwrap();
        assert!(as_plan.verify(&[k1.verifying_key()]).is_err());
    }

    #[test]
    fn a_key_planted_with_a_stolen_key_is_forgotten_at_the_retirement() {
        let [k1, k2, evil] = keys();
        let start = base(&[&k1]);
        // A thief of K1 plants `trust EVIL` before the rotation: plans carrying it verify with EVIL…
        let planted = trust(&evil, &k1);
        let f = start.follow("pico", std::slice::from_ref(&planted)).unwrap();
        assert_eq!(f.signers(), vec![evil.verifying_key()]);
        // …but nothing of it is kept: the next plan's chain is followed from the same base.
        assert_eq!(f.settled, start);
        let genuine = [trust(&k2, &k1), retire(&k1, &k2)];
        let after = start.follow("pico", &genuine).unwrap();
        assert_eq!(after.trusted, vec![hex(&k2)], "exactly the chain's current key");
        let s = &after.settled;
        // After the retirement the planted link is refused wherever it is put.
        assert_eq!(s.follow("pico", std::slice::from_ref(&planted)).unwrap_err(), ChainError::Fork { settled: 2 });
        assert_eq!(s.follow("pico", &[planted.clone(), genuine[0].clone(), genuine[1].clone()]).unwrap_err(), ChainError::Fork { settled: 2 });
        let e = s.follow("pico", &[genuine[0].clone(), genuine[1].clone(), planted.clone()]).unwrap_err().to_string();
        assert!(e.contains("only the current key"), "{e}");
        // A plan carrying the genuine chain verifies with K2 only, never with EVIL.
        assert_eq!(s.follow("pico", &genuine).unwrap().signers(), vec![k2.verifying_key()]);
        // So is a chain cut before the retirement (or none: a plan signed with K1 before it).
        assert_eq!(s.follow("pico", &[]).unwrap_err(), ChainError::Fork { settled: 2 });
        assert_eq!(s.follow("pico", &genuine[..1]).unwrap_err(), ChainError::Fork { settled: 2 });
        // Had the device settled at the planted chain first, the genuine chain would be a fork: a
        // thief who also retires K1 owns the devices that accept that first (docs/security.md).
        let stolen = start.follow("pico", &[planted.clone(), retire(&k1, &evil)]).unwrap().settled;
        assert_eq!(stolen.follow("pico", &genuine).unwrap_err(), ChainError::Fork { settled: 2 });
    }

    #[test]
    fn repeated_rotations_and_late_enrolments_follow_the_same_chain() {
        let [k1, k2, k3, other] = keys();
        let chain = [trust(&k2, &k1), retire(&k1, &k2), trust(&k3, &k2), retire(&k2, &k3)];
        let end = base(&[&k1]).follow("pico", &chain).unwrap();
        assert_eq!((end.trusted.clone(), end.settled.settled), (vec![hex(&k3)], 4));
        assert_eq!(end.settled.retired, vec![hex(&k1), hex(&k2)]);
        // Settled half-way, then the rest; and again from the end: the same result.
        let half = base(&[&k1]).follow("pico", &chain[..2]).unwrap().settled;
        assert_eq!(half.follow("pico", &chain).unwrap(), end);
        assert_eq!(end.settled.follow("pico", &chain).unwrap(), end);
        // Devices enrolled at each stage.
        for k in [&k2, &k3] {
            let f = base(&[k]).follow("pico", &chain).unwrap();
            assert_eq!((f.trusted, f.settled.settled), (vec![hex(&k3)], 4));
        }
        // A configuration listing an extra key: the retirement leaves exactly the current key.
        let f = base(&[&k1, &other]).follow("pico", &chain).unwrap();
        assert_eq!(f.trusted, vec![hex(&k3)]);
        assert!(f.settled.retired.contains(&hex(&other)));
        // A device configured with a key the chain never reached cannot follow it.
        let [stranger] = keys();
        assert!(base(&[&stranger]).follow("pico", &chain).is_err());
    }

    #[test]
    fn states_written_before_chains_were_linear_merge_with_the_configuration() {
        let [k1, k2] = keys();
        // An older agent persisted `trusted: [K2], retired: [K1]` (no settled links).
        let old = TrustState { trusted: vec![hex(&k2)], retired: vec![hex(&k1)], ..Default::default() };
        let merged = TrustState::merged(&[k1.verifying_key()], Some(&old));
        assert_eq!((merged.trusted.clone(), merged.current.clone()), (vec![hex(&k2)], Some(hex(&k2))));
        let f = merged.follow("pico", &[trust(&k2, &k1), retire(&k1, &k2)]).unwrap();
        assert_eq!((f.trusted, f.settled.settled), (vec![hex(&k2)], 2));
    }
}
