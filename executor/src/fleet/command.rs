//! Operator commands to one device's agent: request/reply on `device-commands.<device>.<verb>`
//! (protocol in `docs/fleet-protocol.md`, CLI in `docs/fleet.md`).
//!
//! `ping` is unsigned. `logs` and `exec` are [`SignedCommand`]s: signed with an operator command
//! key (one the agent lists in `command_keys`, never the fleet key), issued now, with a fresh
//! random nonce, so every request is single-use and expires by itself.

use std::path::Path;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use harmony_schemas::fleet::{Command, CommandReply, CommandRequest, PingReply, SignedCommand, Verb, command_subject, parse_signing_key};

use super::FleetError;

/// Environment variable holding an operator command key (when no key file is given).
pub const COMMAND_KEY_ENV: &str = "HARMONY_COMMAND_KEY";

/// Reads the operator's command key (32-byte Ed25519 seed, hex or base64) from `file`, else from
/// `env_value` (the value of [`COMMAND_KEY_ENV`]). Never from the repository.
pub fn load_command_key(file: Option<&Path>, env_value: Option<String>) -> Result<SigningKey, FleetError> {
    let (text, source) = match (file, env_value) {
        (Some(f), _) => (
            std::fs::read_to_string(f).map_err(|e| FleetError::SigningKey(format!("cannot read command key file {}: {e}", f.display())))?,
            format!("file {}", f.display()),
        ),
        (None, Some(v)) if !v.trim().is_empty() => (v, format!("${COMMAND_KEY_ENV}")),
        _ => {
            return Err(FleetError::SigningKey(format!(
                "no command key: `logs` and `exec` must be signed by a key the device trusts (its `command_keys`); pass --command-key-file FILE or set {COMMAND_KEY_ENV}"
            )));
        }
    };
    parse_signing_key(&text).map_err(|e| FleetError::SigningKey(format!("the command key in {source} is not usable: {e}")))
}

/// Why a command got no usable reply.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// No agent listens on the device's subject.
    #[error("no agent answers for device `{0}` (is it running and connected?)")]
    NoResponders(String),
    /// No reply in time.
    #[error("no reply from device `{device}` within {timeout:?}")]
    TimedOut {
        /// Device.
        device: String,
        /// How long we waited.
        timeout: Duration,
    },
    /// The request could not be sent or signed, or the reply does not decode.
    #[error("{0}")]
    Other(String),
}

async fn request(client: &async_nats::Client, device: &str, verb: Verb, body: Vec<u8>, timeout: Duration) -> Result<bytes::Bytes, CommandError> {
    use async_nats::RequestErrorKind;
    let req = async_nats::Request::new().payload(body.into()).timeout(Some(timeout));
    match client.send_request(command_subject(device, verb), req).await {
        Ok(m) => Ok(m.payload),
        Err(e) => Err(match e.kind() {
            RequestErrorKind::NoResponders => CommandError::NoResponders(device.to_string()),
            RequestErrorKind::TimedOut => CommandError::TimedOut { device: device.to_string(), timeout },
            _ => CommandError::Other(format!("device-commands.{device}.{}: {e}", verb.as_str())),
        }),
    }
}

/// Pings a device's agent.
pub async fn ping(client: &async_nats::Client, device: &str, timeout: Duration) -> Result<PingReply, CommandError> {
    let body = request(client, device, Verb::Ping, Vec::new(), timeout).await?;
    serde_json::from_slice(&body).map_err(|e| CommandError::Other(format!("ping reply from `{device}` does not decode: {e}")))
}

/// Signs `command` for `device` with `key` (issued now, fresh nonce) and sends it on the
/// command's verb subject. `timeout` bounds the wait for the reply.
pub async fn send(client: &async_nats::Client, device: &str, command: Command, key: &SigningKey, timeout: Duration) -> Result<CommandReply, CommandError> {
    let verb = command.verb();
    let req = CommandRequest::new(device, command).map_err(|e| CommandError::Other(format!("cannot make a nonce: {e}")))?;
    let signed = SignedCommand::sign(&req, key).map_err(|e| CommandError::Other(format!("signing the command: {e}")))?;
    let body = request(client, device, verb, signed.to_vec(), timeout).await?;
    serde_json::from_slice(&body).map_err(|e| CommandError::Other(format!("{} reply from `{device}` does not decode: {e}", verb.as_str())))
}
