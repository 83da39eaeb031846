//! Request/reply commands on `device-commands.<device>.<verb>`.
//!
//! `ping` is unsigned. `logs` and `exec` must be a [`SignedCommand`] signed by a trusted command
//! key, addressed to this device, issued within the freshness window, with a nonce not seen in
//! that window, for a service of the applied plan; otherwise the reply is `refused` and nothing runs.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use harmony_schemas::fleet::{Command, CommandReply, PingReply, RefusalReason, SignedCommand, Verb, now_ms};

use crate::agent::{AGENT_VERSION, Shared};
use crate::podman::{LABEL_CONTAINER, LABEL_DEPLOYMENT, LABEL_KIND};
use crate::reconcile::Runtime;

/// Seen nonces with their expiry (Unix ms).
#[derive(Debug, Default)]
pub struct NonceCache(Mutex<HashMap<String, u64>>);

impl NonceCache {
    /// Records `nonce`; false when it was already seen and has not expired.
    pub fn insert(&self, nonce: &str, expires_ms: u64) -> bool {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = now_ms();
        if m.len() > 10_000 {
            m.retain(|_, exp| *exp > now);
        }
        match m.get(nonce) {
            Some(exp) if *exp > now => false,
            _ => {
                m.insert(nonce.to_string(), expires_ms);
                true
            }
        }
    }
}

/// Serves commands until the subscription ends.
pub async fn serve(client: async_nats::Client, shared: Arc<Shared>, mut sub: async_nats::Subscriber) {
    let nonces = Arc::new(NonceCache::default());
    while let Some(msg) = sub.next().await {
        let Some(reply) = msg.reply.clone() else { continue };
        let verb = match msg.subject.rsplit('.').next() {
            Some("ping") => Verb::Ping,
            Some("logs") => Verb::Logs,
            Some("exec") => Verb::Exec,
            Some("retire") => Verb::Retire,
            Some("rotate-credentials") => Verb::RotateCredentials,
            _ => continue,
        };
        let client = client.clone();
        let shared = shared.clone();
        let nonces = nonces.clone();
        tokio::spawn(async move {
            let body = match verb {
                Verb::Ping => serde_json::to_vec(&PingReply {
                    device_id: shared.config.device_id.clone(),
                    agent_version: AGENT_VERSION.into(),
                    uptime_s: shared.uptime_s(),
                }),
                // Replies quote the request (a key id, a device, a container): bounded.
                Verb::Retire => match retire(&shared, &nonces, &msg.payload) {
                    Some(reply) => serde_json::to_vec(&reply.bounded()),
                    // Addressed to another version (the new agent of an upgrade): not ours to answer.
                    None => return,
                },
                _ => serde_json::to_vec(&handle(&shared, &nonces, verb, &msg.payload).await.bounded()),
            };
            if let Err(e) = client.publish(reply, body.unwrap_or_default().into()).await {
                tracing::debug!("command reply not sent: {e}");
            }
        });
    }
}

/// `rotate-credentials`: a new nkey, made here (the seed never leaves the device), written over
/// `nats.nkey_file` (temporary file with mode 0600, fsync, rename) and used from the next
/// (re)connection on; the reply carries its public key. The current connection stays up until
/// harmony removes the old key and the server closes it. The old seed is kept as a fallback
/// until the new one is seen to work ([`crate::agent::Seeds`]).
fn rotate_credentials(shared: &Shared) -> CommandReply {
    let (Some(cell), Some(path)) = (&shared.nkey, &shared.config.nkey_file) else {
        return CommandReply::Error { message: "this agent does not authenticate with `nats.nkey_file`; nothing to rotate".into() };
    };
    let kp = nkeys::KeyPair::new_user();
    let seed = match kp.seed() {
        Ok(s) => s,
        Err(e) => return CommandReply::Error { message: format!("cannot make a key: {e}") },
    };
    // The seed that works now is kept first (`<nkey_file>.previous`): harmony admits the new key
    // only after this reply, and if that never happens the agent still gets in with this one.
    let keep = match cell.lock() {
        Ok(s) => s.rotating(),
        Err(_) => return CommandReply::Error { message: "the seed store is poisoned".into() },
    };
    let previous = crate::agent::previous_seed_path(path);
    if let Err(e) = write_seed(&previous, &keep) {
        return CommandReply::Error { message: format!("cannot write {}: {e}", previous.display()) };
    }
    if let Err(e) = write_seed(path, &seed) {
        return CommandReply::Error { message: format!("cannot write {}: {e}", path.display()) };
    }
    if let Ok(mut s) = cell.lock() {
        s.rotated(seed, keep);
    }
    tracing::info!(nkey = %kp.public_key(), "NATS credentials rotated; used from the next connection on");
    CommandReply::Credentials { nkey: kp.public_key() }
}

fn write_seed(path: &std::path::Path, seed: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.mode(0o600);
    }
    let mut f = o.open(&tmp)?;
    f.write_all(format!("{seed}\n").as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Verifies a signed request with `keys`: decodes, checks the signature, the device, the
/// freshness window, the verb and the nonce.
fn verified(
    shared: &Shared,
    nonces: &NonceCache,
    verb: Verb,
    payload: &[u8],
    keys: &[harmony_schemas::fleet::VerifyingKey],
) -> Result<(SignedCommand, harmony_schemas::fleet::CommandRequest), RefusalReason> {
    let signed = SignedCommand::from_slice(payload).map_err(|e| RefusalReason::Unsigned { detail: e.to_string() })?;
    let req = match signed.verify(keys) {
        Ok(r) => r,
        Err(harmony_schemas::fleet::VerifyError::UnknownKey(key_id)) => return Err(RefusalReason::UnknownKey { key_id }),
        Err(harmony_schemas::fleet::VerifyError::Malformed(detail)) | Err(harmony_schemas::fleet::VerifyError::Payload(detail)) => {
            return Err(RefusalReason::Unsigned { detail });
        }
        Err(harmony_schemas::fleet::VerifyError::BadSignature) => return Err(RefusalReason::BadSignature),
    };
    if req.device_id != shared.config.device_id {
        return Err(RefusalReason::WrongDevice { device_id: req.device_id });
    }
    let max_age_ms = shared.config.command_max_age.as_millis() as u64;
    let age_ms = now_ms() as i64 - req.issued_at_ms as i64;
    if age_ms.unsigned_abs() > max_age_ms || req.issued_at_ms < shared.started_ms {
        // Too old, from the future, or issued before this agent started (its nonce cache is new).
        return Err(RefusalReason::Stale { age_ms, max_age_ms });
    }
    if req.command.verb() != verb {
        return Err(RefusalReason::WrongVerb);
    }
    // Remember the nonce until the request could no longer be fresh.
    if !nonces.insert(&req.nonce, req.issued_at_ms.saturating_add(max_age_ms).saturating_add(1_000)) {
        return Err(RefusalReason::Replayed);
    }
    Ok((signed, req))
}

/// A signed `retire` (fleet key): `None` when it names another version (no reply), else the
/// reply; accepted only while this agent's upgrade has a new agent running beside it.
pub fn retire(shared: &Shared, nonces: &NonceCache, payload: &[u8]) -> Option<CommandReply> {
    // Another version's retire is ignored before anything is checked or remembered.
    let named = SignedCommand::from_slice(payload)
        .ok()
        .and_then(|s| s.payload.get("command").and_then(|c| c.get("version")).and_then(|v| v.as_str()).map(String::from));
    if named.as_deref().is_some_and(|v| v != AGENT_VERSION) {
        return None;
    }
    let keys = shared.fleet_keys.read().map(|k| k.clone()).unwrap_or_default();
    let (_, req) = match verified(shared, nonces, Verb::Retire, payload, &keys) {
        Ok(v) => v,
        Err(reason) => return Some(CommandReply::Refused { reason }),
    };
    let Command::Retire { version } = req.command else { return Some(CommandReply::Refused { reason: RefusalReason::WrongVerb }) };
    if !shared.upgrading.load(std::sync::atomic::Ordering::SeqCst) {
        return Some(CommandReply::Refused { reason: RefusalReason::NotUpgrading });
    }
    let _ = shared.retire.send(());
    Some(CommandReply::Retiring { version })
}

/// Checks and runs a signed `logs`, `exec` or `rotate-credentials` request.
pub async fn handle(shared: &Shared, nonces: &NonceCache, verb: Verb, payload: &[u8]) -> CommandReply {
    let refused = |reason| CommandReply::Refused { reason };
    let (signed, req) = match verified(shared, nonces, verb, payload, &shared.config.command_keys) {
        Ok(v) => v,
        Err(reason) => return refused(reason),
    };
    let (deployment, container) = match &req.command {
        Command::Logs { deployment, container, .. } | Command::Exec { deployment, container, .. } => (deployment.clone(), container.clone()),
        Command::Retire { .. } => return refused(RefusalReason::WrongVerb),
        Command::RotateCredentials => return rotate_credentials(shared),
    };
    let planned = shared
        .applied
        .borrow()
        .as_ref()
        .is_some_and(|p| p.deployments.iter().any(|d| d.name == deployment && d.services.iter().any(|s| s.container.name == container)));
    if !planned {
        return refused(RefusalReason::UnknownContainer { deployment, container });
    }
    let Runtime::Podman(podman) = &shared.runtime else {
        return CommandReply::Error { message: "the container runtime is disabled on this agent".into() };
    };
    let listed = match podman.list(&shared.config.device_id).await {
        Ok(l) => l,
        Err(e) => return CommandReply::Error { message: e.0 },
    };
    let Some(target) = listed
        .iter()
        .find(|c| c.label(LABEL_KIND) == Some("service") && c.label(LABEL_DEPLOYMENT) == Some(&deployment) && c.label(LABEL_CONTAINER) == Some(&container))
    else {
        return CommandReply::Error { message: format!("container `{deployment}/{container}` does not exist (yet)") };
    };
    tracing::info!(key_id = %signed.signature.key_id, verb = verb.as_str(), deployment = %deployment, container = %container, "signed command");
    match req.command {
        Command::Logs { tail, .. } => match podman.logs(&target.id, tail.min(10_000)).await {
            Ok(lines) => CommandReply::Logs { lines },
            Err(e) => CommandReply::Error { message: e.0 },
        },
        Command::Exec { argv, timeout_s, .. } => {
            if argv.is_empty() {
                return CommandReply::Error { message: "exec needs a command".into() };
            }
            match podman.exec(&target.id, &argv, Duration::from_secs(timeout_s.clamp(1, 3600))).await {
                Ok(o) => CommandReply::Exec { exit_code: o.exit_code, timed_out: o.exit_code.is_none(), stdout: o.stdout, stderr: o.stderr },
                Err(e) => CommandReply::Error { message: e.0 },
            }
        }
        Command::Retire { .. } | Command::RotateCredentials => refused(RefusalReason::WrongVerb),
    }
}
