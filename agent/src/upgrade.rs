//! Agent upgrades (and downgrades: the same procedure), `docs/agent.md#upgrades`.
//!
//! When the applied plan names another `agent_version`, after the reconcile:
//!
//! 1. **stage**: `install_dir/harmony-agent-<version>` is downloaded from the agents object store
//!    (unless already there with the signed digest): the object's size is checked against the
//!    size the signed plan declares before anything is downloaded, its chunks are read with
//!    direct gets (no consumer: the device's permissions allow none) and streamed to a temporary
//!    file while hashed, the download is aborted as soon as more bytes arrive than declared, and
//!    only a file with the signed SHA-256 is renamed into place, mode 0755. Nothing is held in
//!    memory but one chunk. Versions are never deleted.
//! 2. **self-test**: `harmony-agent-<version> --self-test` with this agent's arguments must exit 0.
//! 3. **swap**: the `current` symlink is replaced atomically (new symlink, `rename`).
//! 4. **start**: `install_dir/current` is started with this agent's arguments, in its own process
//!    group; this agent stops its heartbeats so the executor sees only the new version's.
//! 5. **retire**: the executor sees the new heartbeat and sends a signed `retire` for this
//!    version; this agent replies and exits. If no retire arrives within `upgrade_timeout`
//!    (or the new process exits), the new process is killed, `current` is switched back, and
//!    the failure is reported in the status.
//!
//! A failure that may pass (NATS unreachable during the download, a write error) is retried
//! with backoff, [`MAX_ATTEMPTS`] attempts in all per plan generation, counting attempts cut
//! short by the agent stopping; any other failure (a digest or size that does not match the
//! signed plan, a failed self-test, a new agent that is never retired) is final. A final or
//! last failure stays in the status until a plan with another generation arrives
//! ([`next_attempt`]).
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use async_nats::jetstream;
use harmony_schemas::fleet::{AGENTS_OBJECT_STORE, AgentArtifact, DevicePlan, Sha256Digest, UpgradeReport, UpgradeState, agent_chunk_subject, agent_meta_subject};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::mpsc;

use crate::config::Config;

/// Attempts of one upgrade (one plan generation) before it is given up until another plan.
pub const MAX_ATTEMPTS: u32 = 3;

/// Wait after the `n`-th failed attempt (1-based) before the next: 30 s, then 2 min.
pub fn backoff(n: u32) -> Duration {
    if n <= 1 { Duration::from_secs(30) } else { Duration::from_secs(120) }
}

/// Why an upgrade attempt failed, and whether trying again may help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What failed.
    pub error: String,
    /// A failure that may pass (the network, a write): retried with backoff.
    pub transient: bool,
}

impl Failure {
    fn fatal(error: impl Into<String>) -> Failure {
        Failure { error: error.into(), transient: false }
    }

    fn transient(error: impl Into<String>) -> Failure {
        Failure { error: error.into(), transient: true }
    }
}

impl From<String> for Failure {
    fn from(error: String) -> Failure {
        Failure::fatal(error)
    }
}

impl From<&str> for Failure {
    fn from(error: &str) -> Failure {
        Failure::fatal(error)
    }
}

/// The attempts made at one upgrade, persisted in the agent's state (agent-local, not on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempts {
    /// The version asked for.
    pub to: String,
    /// The plan generation that asked for it.
    pub generation: u64,
    /// Attempts started (an attempt cut short by the agent stopping counts).
    pub count: u32,
    /// When the next attempt may start (Unix ms), after a transient failure; `None` after a
    /// final one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at_ms: Option<u64>,
}

/// What to do about the upgrade a plan asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Start an attempt now.
    Attempt,
    /// Try again after this long (a transient failure's backoff).
    Wait(Duration),
    /// Nothing: the upgrade failed for this generation (reported until another plan arrives).
    Done,
    /// The agent stopped during the last allowed attempt: report the upgrade failed.
    GiveUp,
}

/// The retry policy: `attempts` and `report` (persisted) for an upgrade to `to` asked by plan
/// `generation`, at `now_ms`. Another version or generation starts afresh.
pub fn next_attempt(attempts: Option<&Attempts>, report: Option<&UpgradeReport>, to: &str, generation: u64, now_ms: u64) -> Next {
    let Some(a) = attempts.filter(|a| a.to == to && a.generation == generation) else { return Next::Attempt };
    let same = report.filter(|r| r.to == to && r.generation == generation);
    match same.map(|r| r.state) {
        // Started and never finished: the agent stopped during that attempt.
        Some(UpgradeState::Started) if a.count >= MAX_ATTEMPTS => Next::GiveUp,
        Some(UpgradeState::Started) => Next::Attempt,
        Some(UpgradeState::Failed) => match a.retry_at_ms {
            Some(at) if a.count < MAX_ATTEMPTS => match at.checked_sub(now_ms) {
                Some(wait) if wait > 0 => Next::Wait(Duration::from_millis(wait)),
                _ => Next::Attempt,
            },
            _ => Next::Done,
        },
        // Completed (this version ran), or no report: nothing to retry.
        Some(UpgradeState::Completed) | None => Next::Done,
    }
}

/// The file of `version` in `dir`.
pub fn version_file(dir: &Path, version: &str) -> PathBuf {
    dir.join(format!("harmony-agent-{version}"))
}

/// The symlink the service runs.
pub fn current_link(dir: &Path) -> PathBuf {
    dir.join("current")
}

/// How an upgrade ended.
#[derive(Debug)]
pub enum Outcome {
    /// The executor retired this agent: exit now (the new one runs, with this pid).
    Retired {
        /// The new agent's process id.
        new_pid: u32,
    },
    /// It failed before or after the switch; this agent keeps running the old version.
    Failed(Failure),
}

/// A started upgrade, waiting to be retired.
pub struct Started {
    child: Child,
    previous: Option<PathBuf>,
    dir: PathBuf,
}

/// Stages `plan`'s agent version, self-tests it, swaps `current` and starts it.
pub async fn start(js: &jetstream::Context, config: &Config, plan: &DevicePlan, args: &[OsString]) -> Result<Started, Failure> {
    let dir = config.install_dir.as_ref().ok_or("no install_dir is configured (the agent cannot switch versions; upgrade it by hand)")?;
    let version = &plan.agent_version;
    let target = version_file(dir, version);
    stage(&js.client(), &target, plan).await?;
    self_test(&target, args).await?;
    let link = current_link(dir);
    let previous = std::fs::read_link(&link).ok();
    swap(&link, Path::new(target.file_name().unwrap_or_default())).map_err(|e| format!("switching {} to {version}: {e}", link.display()))?;
    let child = Command::new(&link).args(args).env("HARMONY_AGENT_UPGRADED_FROM", crate::AGENT_VERSION).stdin(Stdio::null()).process_group(0).spawn();
    match child {
        Ok(child) => {
            tracing::info!(version = %version, pid = child.id(), "started the new agent; waiting to be retired");
            Ok(Started { child, previous, dir: dir.clone() })
        }
        Err(e) => {
            let _ = restore(&link, previous.as_deref());
            Err(Failure::fatal(format!("starting {}: {e}", link.display())))
        }
    }
}

impl Started {
    /// Waits for a retire (then returns [`Outcome::Retired`]); on timeout, or when the new
    /// process exits first, stops it and switches `current` back.
    pub async fn wait(mut self, retire: &mut mpsc::UnboundedReceiver<()>, timeout: Duration) -> Outcome {
        let deadline = tokio::time::Instant::now() + timeout;
        let why = loop {
            tokio::select! {
                r = retire.recv() => if r.is_some() { return Outcome::Retired { new_pid: self.child.id() } },
                () = tokio::time::sleep_until(deadline) => break format!("the new agent was not retired within {} s (no heartbeat from it reached the executor)", timeout.as_secs()),
                () = tokio::time::sleep(Duration::from_millis(200)) => {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        break format!("the new agent exited ({status}) before it was retired");
                    }
                }
            }
        };
        // SIGKILL: nothing of the new version keeps running (its podman calls are short-lived
        // children that finish on their own).
        let _ = self.child.kill();
        let _ = self.child.wait();
        let link = current_link(&self.dir);
        if let Err(e) = restore(&link, self.previous.as_deref()) {
            return Outcome::Failed(Failure::fatal(format!("{why}; switching {} back failed too: {e}", link.display())));
        }
        Outcome::Failed(Failure::fatal(why))
    }
}

/// Puts `target` in place: kept if it is there with the signed size and digest, else downloaded.
async fn stage(client: &async_nats::Client, target: &Path, plan: &DevicePlan) -> Result<(), Failure> {
    let want = plan.agent.as_ref();
    if target.is_file() {
        let Some(a) = want else { return Ok(()) }; // a version run here before (e.g. a rollback): kept on disk
        match file_digest(target, a.size) {
            Ok(Some(have)) if have == a.sha256 => return Ok(()),
            Ok(Some(have)) => tracing::warn!("{} has digest {have}, the plan names {}; downloading it again", target.display(), a.sha256),
            Ok(None) => tracing::warn!("{} is not {} bytes long as the plan says; downloading it again", target.display(), a.size),
            Err(e) => return Err(Failure::transient(format!("reading {}: {e}", target.display()))),
        }
    }
    let a = want.ok_or_else(|| format!("version {} is not on this device and the plan names no published binary for it", plan.agent_version))?;
    if a.version != plan.agent_version {
        return Err(format!("the plan names binary {} for version {}", a.version, plan.agent_version).into());
    }
    let dir = target.parent().ok_or("install_dir has no parent")?;
    std::fs::create_dir_all(dir).map_err(|e| Failure::transient(format!("creating {}: {e}", dir.display())))?;
    let tmp = dir.join(format!(".{}.partial", target.file_name().unwrap_or_default().to_string_lossy()));
    let downloaded = download(client, a, &tmp).await.and_then(|()| {
        std::fs::rename(&tmp, target).map_err(|e| Failure::transient(format!("writing {}: {e}", target.display())))
    });
    if downloaded.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    downloaded?;
    tracing::info!(version = %a.version, digest = %a.sha256, "staged {}", target.display());
    Ok(())
}

/// The digest of the file at `path` if it is `size` bytes long (`None` if not), read in blocks.
fn file_digest(path: &Path, size: u64) -> std::io::Result<Option<String>> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path)?;
    if f.metadata()?.len() != size {
        return Ok(None);
    }
    let mut digest = Sha256Digest::default();
    let mut block = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut block)?;
        if n == 0 {
            return Ok(Some(digest.finish()));
        }
        digest.update(&block[..n]);
    }
}

/// What the agent reads of an object's metadata message (the NATS object store's `ObjectInfo`).
#[derive(Deserialize)]
struct ObjectMeta {
    #[serde(default)]
    nuid: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    deleted: bool,
}

/// One direct get on the agents object store's stream: `Ok(None)` for "no message".
async fn direct_get(client: &async_nats::Client, subject: String, body: Vec<u8>) -> Result<Option<async_nats::Message>, Failure> {
    let msg = client.request(subject, body.into()).await.map_err(|e| Failure::transient(format!("agent object store: {e}")))?;
    match msg.status {
        Some(s) if s == async_nats::StatusCode::NOT_FOUND => Ok(None),
        Some(s) if s != async_nats::StatusCode::OK => {
            Err(Failure::transient(format!("agent object store: direct get: {s} {}", msg.description.as_deref().unwrap_or(""))))
        }
        _ => Ok(Some(msg)),
    }
}

/// Downloads `a` into `tmp` (created, mode 0755, fsynced) and checks it against the signed
/// plan: the object's size first, then every chunk as it arrives (more bytes than declared abort
/// the download), the SHA-256 at the end. Direct gets only: the metadata by its subject, then
/// each chunk as the next message on the object's chunk subject.
async fn download(client: &async_nats::Client, a: &AgentArtifact, tmp: &Path) -> Result<(), Failure> {
    let stream = format!("OBJ_{AGENTS_OBJECT_STORE}");
    let what = || format!("agent object {}", a.object);
    let meta = direct_get(client, format!("$JS.API.DIRECT.GET.{stream}.{}", agent_meta_subject(&a.object)), Vec::new())
        .await?
        .ok_or_else(|| format!("{} is not in the agent object store", what()))?;
    let meta: ObjectMeta = serde_json::from_slice(&meta.payload).map_err(|e| format!("{}: unreadable metadata: {e}", what()))?;
    if meta.deleted {
        return Err(format!("{} was deleted from the agent object store", what()).into());
    }
    if meta.size != a.size {
        return Err(format!("{} holds {} bytes, the signed plan declares {}: refused before downloading", what(), meta.size, a.size).into());
    }
    if meta.nuid.is_empty() || meta.nuid.len() > 64 || !meta.nuid.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(format!("{}: its metadata names no valid chunk subject", what()).into());
    }
    let chunks = agent_chunk_subject(&meta.nuid);
    let write_err = |e: std::io::Error| Failure::transient(format!("writing {}: {e}", tmp.display()));
    let mut file = {
        let f = tokio::fs::File::create(tmp).await.map_err(write_err)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o755)).await.map_err(write_err)?;
        f
    };
    let mut digest = Sha256Digest::default();
    let (mut got, mut seq) = (0u64, 1u64);
    while got < a.size {
        let body = serde_json::to_vec(&serde_json::json!({ "seq": seq, "next_by_subj": chunks })).map_err(|e| e.to_string())?;
        let Some(chunk) = direct_get(client, format!("$JS.API.DIRECT.GET.{stream}"), body).await? else {
            return Err(format!("{} ends after {got} of the {} bytes the signed plan declares", what(), a.size).into());
        };
        got = got.checked_add(chunk.payload.len() as u64).filter(|n| *n <= a.size).ok_or_else(|| {
            format!("{} sent more than the {} bytes the signed plan declares: download aborted after {got} bytes", what(), a.size)
        })?;
        digest.update(&chunk.payload);
        file.write_all(&chunk.payload).await.map_err(write_err)?;
        let at = chunk.headers.as_ref().and_then(|h| h.get("Nats-Sequence")).and_then(|v| v.as_str().parse::<u64>().ok());
        seq = at.and_then(|s| s.checked_add(1)).ok_or_else(|| Failure::transient(format!("{}: a chunk without its stream sequence", what())))?;
    }
    file.sync_all().await.map_err(write_err)?;
    let have = digest.finish();
    if have != a.sha256 {
        return Err(format!("downloaded {} has digest {have}, the signed plan says {}: refused", a.object, a.sha256).into());
    }
    Ok(())
}

async fn self_test(target: &Path, args: &[OsString]) -> Result<(), String> {
    let mut cmd = tokio::process::Command::new(target);
    cmd.arg("--self-test").args(args.iter().filter(|a| *a != "run")).stdin(Stdio::null()).kill_on_drop(true);
    // The file was just written: while another task forks (a podman call), the child holds its
    // descriptor until its own exec, and exec fails with ETXTBSY. That passes within
    // milliseconds: retried for up to 2 s.
    let output = async {
        let busy_until = tokio::time::Instant::now() + Duration::from_secs(2);
        loop {
            match cmd.output().await {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tokio::time::Instant::now() < busy_until => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => return other,
            }
        }
    };
    match tokio::time::timeout(Duration::from_secs(30), output).await {
        Err(_) => Err(format!("{} --self-test did not finish within 30 s", target.display())),
        Ok(Err(e)) => Err(format!("cannot run {} --self-test: {e}", target.display())),
        Ok(Ok(o)) if o.status.success() => Ok(()),
        Ok(Ok(o)) => {
            let out = String::from_utf8_lossy(&o.stderr);
            let last = out.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
            Err(format!("{} --self-test failed ({}){}", target.display(), o.status, if last.is_empty() { String::new() } else { format!(": {last}") }))
        }
    }
}

/// Points `link` at `to` atomically: a new symlink beside it, renamed over it.
fn swap(link: &Path, to: &Path) -> std::io::Result<()> {
    let tmp = link.with_extension("next");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(to, &tmp)?;
    std::fs::rename(&tmp, link)
}

fn restore(link: &Path, previous: Option<&Path>) -> std::io::Result<()> {
    match previous {
        Some(p) => swap(link, p),
        None => match std::fs::remove_file(link) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrades_are_retried_a_bounded_number_of_times() {
        let report = |state, generation| UpgradeReport { from: "1".into(), to: "2".into(), generation, state, error: None, at_ms: 0 };
        let attempts = |count, retry_at_ms| Attempts { to: "2".into(), generation: 7, count, retry_at_ms };
        // Never tried, or another generation or version: try.
        assert_eq!(next_attempt(None, None, "2", 7, 0), Next::Attempt);
        assert_eq!(next_attempt(Some(&attempts(3, None)), Some(&report(UpgradeState::Failed, 7)), "2", 8, 0), Next::Attempt);
        assert_eq!(next_attempt(Some(&attempts(3, None)), Some(&report(UpgradeState::Failed, 7)), "3", 7, 0), Next::Attempt);
        // A transient failure: after its backoff, while attempts remain.
        let failed = report(UpgradeState::Failed, 7);
        assert_eq!(next_attempt(Some(&attempts(1, Some(30_000))), Some(&failed), "2", 7, 10_000), Next::Wait(Duration::from_secs(20)));
        assert_eq!(next_attempt(Some(&attempts(1, Some(30_000))), Some(&failed), "2", 7, 30_000), Next::Attempt);
        assert_eq!(next_attempt(Some(&attempts(3, Some(30_000))), Some(&failed), "2", 7, 90_000), Next::Done);
        // A final failure: never again for this plan.
        assert_eq!(next_attempt(Some(&attempts(1, None)), Some(&failed), "2", 7, u64::MAX), Next::Done);
        // The agent stopped during an attempt: again, until the last one.
        let started = report(UpgradeState::Started, 7);
        assert_eq!(next_attempt(Some(&attempts(2, None)), Some(&started), "2", 7, 0), Next::Attempt);
        assert_eq!(next_attempt(Some(&attempts(MAX_ATTEMPTS, None)), Some(&started), "2", 7, 0), Next::GiveUp);
        assert_eq!(next_attempt(Some(&attempts(1, None)), Some(&report(UpgradeState::Completed, 7)), "2", 7, 0), Next::Done);
        assert!(backoff(1) < backoff(2));
    }

    #[test]
    fn a_file_is_hashed_only_at_its_declared_size() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("f");
        std::fs::write(&p, vec![7u8; 200_000]).expect("write");
        assert_eq!(file_digest(&p, 200_000).expect("read"), Some(harmony_schemas::fleet::sha256_digest(&vec![7u8; 200_000])));
        assert_eq!(file_digest(&p, 10).expect("read"), None);
    }

    /// Against a real nats-server: the object's size is compared with the declared size before
    /// any chunk is read, a chunk going past it aborts the download, only the signed digest is
    /// kept, and nothing is left behind on failure.
    #[test]
    fn downloads_check_the_declared_size_first_and_stream() {
        let server = harmony_testkit::NatsServer::start();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let client = async_nats::connect(server.url()).await.expect("connect");
            let js = jetstream::new(client.clone());
            let store = js
                .create_object_store(jetstream::object_store::Config { bucket: AGENTS_OBJECT_STORE.into(), ..Default::default() })
                .await
                .expect("object store");
            let bytes: Vec<u8> = (0..400_000u32).map(|i| (i % 251) as u8).collect();
            store.put("harmony-agent-2", &mut bytes.as_slice()).await.expect("put");
            let dir = tempfile::tempdir().expect("tmp");
            let tmp = dir.path().join("partial");
            let good = AgentArtifact {
                version: "2".into(),
                object: "harmony-agent-2".into(),
                sha256: harmony_schemas::fleet::sha256_digest(&bytes),
                size: bytes.len() as u64,
            };
            download(&client, &good, &tmp).await.expect("the signed object downloads");
            assert_eq!(std::fs::read(&tmp).expect("downloaded"), bytes);
            // Declared smaller than the object: refused before reading a chunk.
            let short = AgentArtifact { size: 1000, ..good.clone() };
            let e = download(&client, &short, &tmp).await.expect_err("refused");
            assert!(e.error.contains("holds 400000 bytes, the signed plan declares 1000: refused before downloading") && !e.transient, "{e:?}");
            // A wrong digest is refused.
            let forged = AgentArtifact { sha256: harmony_schemas::fleet::sha256_digest(b"other"), ..good.clone() };
            let e = download(&client, &forged, &tmp).await.expect_err("digest");
            assert!(e.error.contains("the signed plan says") && !e.transient, "{e:?}");
            // Through `stage`: a failed download leaves nothing in the install directory.
            let plan_of = |a: &AgentArtifact| DevicePlan {
                version: 1,
                device_id: "pi".into(),
                fleet: "pico".into(),
                generation: 1,
                source_revision: String::new(),
                agent_version: "2".into(),
                agent: Some(a.clone()),
                deployments: Vec::new(),
                key_chain: Vec::new(),
            };
            let target = version_file(dir.path(), "2");
            assert!(stage(&client, &target, &plan_of(&forged)).await.is_err());
            assert!(!target.exists() && !dir.path().join(".harmony-agent-2.partial").exists());
            stage(&client, &target, &plan_of(&good)).await.expect("staged");
            assert_eq!(std::fs::read(&target).expect("staged"), bytes);
            // The metadata lies too: the download stops at the first chunk past the declared size.
            let mut info = store.info("harmony-agent-2").await.expect("info");
            info.size = 1000;
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Rollup", "sub");
            let ack = js.publish_with_headers(agent_meta_subject("harmony-agent-2"), headers, serde_json::to_vec(&info).expect("json").into()).await.expect("pub");
            ack.await.expect("meta rewritten");
            let e = download(&client, &short, &tmp).await.expect_err("aborted");
            assert!(e.error.contains("sent more than the 1000 bytes the signed plan declares: download aborted after 0 bytes"), "{e:?}");
        });
    }

    #[test]
    fn swap_is_atomic_and_restorable() {
        let dir = tempfile::tempdir().expect("tmp");
        let link = current_link(dir.path());
        swap(&link, Path::new("harmony-agent-1")).expect("swap");
        assert_eq!(std::fs::read_link(&link).expect("link"), Path::new("harmony-agent-1"));
        swap(&link, Path::new("harmony-agent-2")).expect("swap");
        assert_eq!(std::fs::read_link(&link).expect("link"), Path::new("harmony-agent-2"));
        restore(&link, Some(Path::new("harmony-agent-1"))).expect("restore");
        assert_eq!(std::fs::read_link(&link).expect("link"), Path::new("harmony-agent-1"));
        restore(&link, None).expect("remove");
        assert!(std::fs::symlink_metadata(&link).is_err());
        assert!(!link.with_extension("next").exists());
    }
}
