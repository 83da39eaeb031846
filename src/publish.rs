//! `harmony fleet publish-agent`: puts a `harmony-agent` binary into the fleet's object store,
//! once per version, with its SHA-256 and a signature by the fleet key. Device plans that name
//! that version then carry its digest, and agents upgrade to it (docs/operations.md).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use harmony_executor::fleet::convert::{SIGNING_KEY_ENV, fleet_info};
use harmony_executor::fleet::security::FleetSecurity;
use harmony_executor::fleet::{connect, load_signing_key};

use crate::apply::{NatsArgs, compiled};
use crate::cli::Global;

#[derive(Debug, clap::Args)]
pub struct PublishAgentArgs {
    /// The fleet whose object store and key are used.
    #[arg(long, value_name = "NAME", add = crate::completion::fleets())]
    pub fleet: String,
    /// The version the binary reports (`harmony-agent --version`); versions are immutable.
    #[arg(long, value_name = "VERSION")]
    pub agent_version: String,
    /// The binary.
    pub binary: PathBuf,
    /// File holding the fleet's Ed25519 private key (hex or base64); or set $HARMONY_SIGNING_KEY.
    #[arg(long, value_name = "FILE", env = "HARMONY_SIGNING_KEY_FILE")]
    pub signing_key_file: Option<PathBuf>,
    #[command(flatten)]
    pub nats: NatsArgs,
}

pub fn publish_agent(g: &Global, a: PublishAgentArgs, rt: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    semver::Version::parse(&a.agent_version).with_context(|| format!("--agent-version {}: not a semantic version (e.g. 0.2.0)", a.agent_version))?;
    let repo = compiled(g)?;
    let info = fleet_info(&repo, &a.fleet)?;
    let key = load_signing_key(a.signing_key_file.as_deref(), std::env::var(SIGNING_KEY_ENV).ok())?;
    // After a signing-key rotation, the key at the end of the fleet's key chain signs.
    FleetSecurity::load(a.nats.auth_dir.as_deref(), &a.fleet, info)?.check_signing_key(&key, &a.fleet, &info.signing_key)?;
    let binary = std::fs::read(&a.binary).with_context(|| format!("reading {}", a.binary.display()))?;
    let opts = a.nats.options_for_fleet(&a.fleet, &info.nats)?;
    let (artifact, new) = rt.block_on(async {
        let client = connect(&opts).await?;
        harmony_executor::fleet::agents::publish(&client, &key, &a.agent_version, &binary, &info.storage).await
    })?;
    use harmony_executor::fleet::agents::Publication;
    match new {
        Publication::Uploaded => {
            println!("published harmony-agent {} to fleet {}: {} ({} bytes, {})", artifact.version, a.fleet, artifact.object, artifact.size, artifact.sha256)
        }
        Publication::Unchanged => {
            println!("harmony-agent {} is already published to fleet {} with the same digest ({})", artifact.version, a.fleet, artifact.sha256)
        }
        Publication::Resigned => println!(
            "harmony-agent {} of fleet {}: the same bytes ({}) were signed by a key no longer trusted; signed again with key {}",
            artifact.version,
            a.fleet,
            artifact.sha256,
            harmony_schemas::fleet::key_id(&key.verifying_key())
        ),
    }
    Ok(ExitCode::SUCCESS)
}
