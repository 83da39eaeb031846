//! What the operator's auth directory says about a fleet (docs/security.md, ADR 0010): its
//! signing-key chain and its revoked devices, and the policy built on them — which key may
//! sign, which keys a plan in the bucket may be signed with, which devices get no plan.

use std::path::Path;

use harmony_compiler::compile::FleetInfo;
use harmony_schemas::fleet::{DevicePlan, SigningKey, VerifyingKey, key_id, parse_public_key};
use harmony_schemas::trust::SignedKeyAnnouncement;

use super::auth::{AUTH_DIR_ENV, AuthError, FleetAuth, chain_head, current_signing_key};
use super::{ChainKeys, Condition, DesiredFleet, FleetError, FleetStatus, NatsOptions, check_key_matches};

/// The fleet's part of the auth directory `auth_dir`, if given and it exists.
pub fn existing_auth(auth_dir: Option<&Path>, fleet: &str) -> Result<Option<FleetAuth>, AuthError> {
    match auth_dir {
        Some(d) if d.join(fleet).is_dir() => Ok(Some(FleetAuth::open(d, fleet)?)),
        _ => Ok(None),
    }
}

/// Completes connection options from the auth directory when they carry no NATS credential:
/// the fleet's read-only identity (`reader.nk`, with its own inbox prefix) if `read_only` and
/// the fleet has one, else harmony's own nkey (`harmony.nk`).
pub fn complete_options(mut o: NatsOptions, auth_dir: Option<&Path>, fleet: &str, read_only: bool) -> Result<NatsOptions, AuthError> {
    let given = o.user.is_some() || o.token.is_some() || o.creds_file.is_some() || o.nkey_seed.is_some();
    if given {
        return Ok(o);
    }
    let Some(auth) = existing_auth(auth_dir, fleet)? else { return Ok(o) };
    match if read_only { auth.reader_seed()? } else { None } {
        Some(seed) => {
            o.nkey_seed = Some(seed);
            o.inbox_prefix.get_or_insert_with(|| super::auth::READER_INBOX_PREFIX.to_string());
        }
        None => o.nkey_seed = auth.harmony_seed()?,
    }
    Ok(o)
}

/// What the auth directory says about a fleet, for apply, plan and status.
#[derive(Debug, Default, Clone)]
pub struct FleetSecurity {
    fleet: String,
    chain: Vec<SignedKeyAnnouncement>,
    revoked: Vec<String>,
}

impl FleetSecurity {
    /// Loads the chain and revocations of `fleet` from `auth_dir` (none without an auth
    /// directory). A fleet with `auth nkey` needs the auth directory.
    pub fn load(auth_dir: Option<&Path>, fleet: &str, info: &FleetInfo) -> Result<FleetSecurity, AuthError> {
        let Some(security) = FleetSecurity::from_auth_dir(auth_dir, fleet)? else {
            if info.auth == harmony_compiler::model::FleetAuthMode::Nkey {
                return Err(AuthError::Refused(format!(
                    "fleet `{fleet}` declares `auth nkey` but has no auth directory: pass --auth-dir DIR or set {AUTH_DIR_ENV} (created by `harmony fleet enroll`)"
                )));
            }
            return Ok(FleetSecurity { fleet: fleet.to_string(), ..Default::default() });
        };
        Ok(security)
    }

    /// The fleet's part of `auth_dir` as it is now: `None` when there is none (no revocation or
    /// chain to check against).
    pub fn from_auth_dir(auth_dir: Option<&Path>, fleet: &str) -> Result<Option<FleetSecurity>, AuthError> {
        let Some(auth) = existing_auth(auth_dir, fleet)? else { return Ok(None) };
        Ok(Some(FleetSecurity { fleet: fleet.to_string(), chain: auth.key_chain()?, revoked: auth.registry()?.revoked() }))
    }

    /// The signing-key chain (trust and retire announcements, oldest first).
    pub fn chain(&self) -> &[SignedKeyAnnouncement] {
        &self.chain
    }

    /// A fleet's chain without revocations (to check the key that extends it).
    pub fn with_chain(fleet: &str, chain: Vec<SignedKeyAnnouncement>) -> FleetSecurity {
        FleetSecurity { fleet: fleet.to_string(), chain, revoked: Vec::new() }
    }

    /// The private key must be the repository's (no chain) or the current key at the end of
    /// the chain (the only key plans may be signed with and the chain extended with).
    pub fn check_signing_key(&self, key: &SigningKey, fleet: &str, repo_public: &str) -> Result<(), FleetError> {
        if self.chain.is_empty() {
            return check_key_matches(key, fleet, repo_public);
        }
        let root = parse_public_key(repo_public).map_err(|e| FleetError::SigningKey(format!("fleet `{fleet}` declares an invalid public key: {e}")))?;
        let current = current_signing_key(fleet, &root, &self.chain).map_err(FleetError::SigningKey)?;
        if current != key.verifying_key() {
            return Err(FleetError::SigningKey(format!(
                "the signing key (key id {}) is not the current key at the end of fleet `{fleet}`'s key chain (current: {}); use the key of the last `harmony fleet rotate-signing-key`",
                key_id(&key.verifying_key()),
                key_id(&current)
            )));
        }
        Ok(())
    }

    /// Carries the chain in every plan and drops revoked devices (their plans are deleted);
    /// returns a warning ([`revoked_declared`]) for each one the repository still declares.
    #[must_use = "the warnings are for the operator"]
    pub fn apply_to(&self, desired: &mut DesiredFleet) -> Vec<String> {
        let mut warnings = Vec::new();
        for d in &self.revoked {
            if desired.plans.remove(d).is_some() {
                warnings.push(revoked_declared(&desired.fleet, d));
            }
        }
        for p in desired.plans.values_mut() {
            p.key_chain = self.chain.clone();
        }
        warnings
    }

    /// Whether `device` was revoked (`harmony fleet revoke`): it gets no plan.
    pub fn is_revoked(&self, device: &str) -> bool {
        self.revoked.iter().any(|d| d == device)
    }

    /// Carries the chain in one plan.
    pub fn set_chain(&self, plan: &mut DevicePlan) {
        plan.key_chain = self.chain.clone();
    }

    /// The key plans are signed with now: the repository's (no chain) or the current key at
    /// the end of the chain. Agent artifacts count when it signed them (as apply checks them).
    pub fn current_key(&self, root: VerifyingKey) -> Result<VerifyingKey, FleetError> {
        if self.chain.is_empty() {
            return Ok(root);
        }
        current_signing_key(&self.fleet, &root, &self.chain).map_err(FleetError::SigningKey)
    }

    /// Keys a plan in the bucket may be signed with: those the chain has not retired (the
    /// current key, and the previous ones until a retirement).
    pub fn observe_keys(&self, root: VerifyingKey) -> Result<Vec<VerifyingKey>, FleetError> {
        Ok(chain_head(&self.fleet, &root, &self.chain).map_err(FleetError::SigningKey)?.keys())
    }

    /// The chain's keys by id, to flag devices trusting others (`harmony status`, `ui`).
    pub fn chain_keys(&self, root: VerifyingKey) -> Result<ChainKeys, FleetError> {
        Ok(ChainKeys::of(&chain_head(&self.fleet, &root, &self.chain).map_err(FleetError::SigningKey)?))
    }

    /// Shows revoked devices as `revoked`.
    pub fn mark_revoked(&self, status: &mut FleetStatus) {
        for d in status.devices.iter_mut().filter(|d| self.revoked.contains(&d.device)) {
            d.condition = Condition::Revoked;
        }
    }
}

/// The warning for a device the repository declares although it was revoked.
pub fn revoked_declared(fleet: &str, device: &str) -> String {
    format!(
        "device `{device}` of fleet `{fleet}` is declared in the repository but was revoked (`harmony fleet revoke`): no plan is written for it; remove its declaration"
    )
}
