//! Agent binaries in the [`AGENTS_OBJECT_STORE`]: published once per version with their SHA-256
//! and a signature by the fleet key; device plans name the version and digest.

use std::collections::BTreeMap;

use async_nats::jetstream::{self, object_store};
use base64::Engine as _;
use ed25519_dalek::{SigningKey, VerifyingKey};
use harmony_schemas::fleet::{AGENTS_OBJECT_STORE, AgentArtifact, SignedAgentArtifact, agent_meta_subject, agent_object_name, sha256_digest};

use super::connect::FleetStorage;
use super::{FleetError, nats_err};

/// Object metadata key holding the [`SignedAgentArtifact`] (JSON).
pub const SIGNATURE_METADATA: &str = "harmony-signature";

/// Opens the object store; with `create: Some(storage)`, creates it (with the fleet's replicas
/// and placement) if missing.
async fn store(js: &jetstream::Context, create: Option<&FleetStorage>) -> Result<Option<object_store::ObjectStore>, FleetError> {
    if let Ok(s) = js.get_object_store(AGENTS_OBJECT_STORE).await {
        return Ok(Some(s));
    }
    let Some(storage) = create else {
        return Ok(None);
    };
    let config = object_store::Config {
        bucket: AGENTS_OBJECT_STORE.to_string(),
        description: Some("harmony-agent binaries".into()),
        num_replicas: usize::from(storage.replicas),
        placement: super::connect::placement(storage),
        ..Default::default()
    };
    match js.create_object_store(config).await {
        Ok(s) => Ok(Some(s)),
        Err(e) => js.get_object_store(AGENTS_OBJECT_STORE).await.map(Some).map_err(|_| nats_err("creating the agent object store", e)),
    }
}

/// What [`publish_agent`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publication {
    /// The binary was uploaded and signed.
    Uploaded,
    /// The same bytes were already published and signed by this key: nothing written.
    Unchanged,
    /// The same bytes were published, signed by a key this one no longer trusts (a signing-key
    /// rotation): only the signature was renewed.
    Resigned,
}

/// [`publish_agent`] over a connection (`harmony fleet publish-agent`).
pub async fn publish(client: &async_nats::Client, key: &SigningKey, version: &str, binary: &[u8], storage: &FleetStorage) -> Result<(AgentArtifact, Publication), FleetError> {
    publish_agent(&jetstream::new(client.clone()), key, version, binary, storage).await
}

/// Publishes `binary` as agent `version`. Versions are immutable: publishing the same bytes
/// again is a no-op (or renews a signature made by a rotated-away key), other bytes under a
/// published version are refused. The object store is created with `storage` if missing.
pub async fn publish_agent(js: &jetstream::Context, key: &SigningKey, version: &str, binary: &[u8], storage: &FleetStorage) -> Result<(AgentArtifact, Publication), FleetError> {
    let artifact = AgentArtifact { version: version.to_string(), object: agent_object_name(version), sha256: sha256_digest(binary), size: binary.len() as u64 };
    let store = store(js, Some(storage)).await?.ok_or_else(|| nats_err("opening the agent object store", "missing"))?;
    let immutable = |existing: &str| FleetError::Nats {
        what: format!("publishing agent {version}"),
        detail: format!(
            "version {version} is already published with {existing} (this binary is {}); versions are immutable: publish under a new version",
            artifact.sha256
        ),
    };
    let signed = SignedAgentArtifact::sign(&artifact, key).map_err(|e| nats_err("signing the agent artifact", e))?;
    let metadata: std::collections::HashMap<String, String> =
        [(SIGNATURE_METADATA.to_string(), String::from_utf8_lossy(&signed.to_vec()).into_owned())].into_iter().collect();
    match lookup(&store, version, &[key.verifying_key()]).await {
        Ok(Some(existing)) if existing.sha256 == artifact.sha256 => return Ok((existing, Publication::Unchanged)),
        Ok(Some(existing)) => return Err(immutable(&existing.sha256)),
        Ok(None) => {}
        Err(signature) => {
            // Published, but its signature does not verify with this key (e.g. made with a key
            // since rotated away). The same bytes get a new signature; other bytes stay refused.
            // The object's digest is the one its uploader recorded: if it lied, the signature
            // still describes *these* bytes, and agents check the bytes they download.
            let info = store.info(&artifact.object).await.map_err(|e| nats_err(format!("reading agent object {}", artifact.object), e))?;
            if info.digest.as_deref() != Some(object_store_digest(binary).as_str()) || info.size != binary.len() {
                return Err(match info.digest {
                    Some(d) => immutable(&d),
                    None => signature,
                });
            }
            // async-nats 0.51's `ObjectStore::update_metadata` copies only the name and the
            // description into the new meta message (jetstream/object_store/mod.rs), so that
            // message is published here the same way: the object's info, with the new
            // signature, rolled up onto its meta subject.
            let mut info = info;
            info.metadata = metadata;
            let subject = agent_meta_subject(&artifact.object);
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Rollup", "sub");
            let body = serde_json::to_vec(&info).map_err(|e| nats_err(format!("re-signing agent {version}"), e))?;
            let ack = js.publish_with_headers(subject, headers, body.into()).await.map_err(|e| nats_err(format!("re-signing agent {version}"), e))?;
            ack.await.map_err(|e| nats_err(format!("re-signing agent {version}"), e))?;
            return Ok((artifact, Publication::Resigned));
        }
    }
    let meta =
        object_store::ObjectMetadata { name: artifact.object.clone(), description: Some(format!("harmony-agent {version}")), metadata, ..Default::default() };
    let mut reader = binary;
    store.put(meta, &mut reader).await.map_err(|e| nats_err(format!("uploading agent {version}"), e))?;
    Ok((artifact, Publication::Uploaded))
}

/// The digest the NATS object store records for `bytes` (`SHA-256=` and padded URL-safe
/// base64, as async-nats 0.51 writes it: `jetstream/object_store/mod.rs`, `put`).
fn object_store_digest(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("SHA-256={}", base64::engine::general_purpose::URL_SAFE.encode(sha2::Sha256::digest(bytes)))
}

async fn lookup(store: &object_store::ObjectStore, version: &str, trusted: &[VerifyingKey]) -> Result<Option<AgentArtifact>, FleetError> {
    let name = agent_object_name(version);
    let info = match store.info(&name).await {
        Ok(i) if !i.deleted => i,
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(nats_err(format!("reading agent object {name}"), e)),
    };
    let what = || format!("agent object {name}");
    let signed = info.metadata.get(SIGNATURE_METADATA).ok_or_else(|| nats_err(what(), "has no signature; re-publish it with harmony fleet publish-agent"))?;
    let artifact =
        SignedAgentArtifact::from_slice(signed.as_bytes()).and_then(|s| s.verify(trusted)).map_err(|e| nats_err(what(), format!("signature: {e}")))?;
    if artifact.object != name || artifact.version != version || artifact.size != info.size as u64 {
        return Err(nats_err(what(), "its signed description does not match the object"));
    }
    Ok(Some(artifact))
}

/// Published agent artifacts by version: usable, or why not.
pub type Published = BTreeMap<String, Result<AgentArtifact, String>>;

/// The published artifacts of `versions`, verified with `trusted`: absent versions are left out;
/// one that cannot be used (no or a bad signature, e.g. published with a key since rotated
/// away) is an `Err` saying why, so that only an apply that needs it fails.
pub async fn lookup_agents<'a>(
    js: &jetstream::Context,
    versions: impl IntoIterator<Item = &'a str>,
    trusted: &[VerifyingKey],
) -> Result<Published, FleetError> {
    let Some(store) = store(js, None).await? else { return Ok(BTreeMap::new()) };
    let mut out = BTreeMap::new();
    for v in versions {
        if out.contains_key(v) {
            continue;
        }
        match lookup(&store, v, trusted).await {
            Ok(Some(a)) => {
                out.insert(v.to_string(), Ok(a));
            }
            Ok(None) => {}
            Err(e) => {
                out.insert(v.to_string(), Err(e.to_string()));
            }
        }
    }
    Ok(out)
}
