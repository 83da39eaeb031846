//! Agent upgrades (and downgrades: the same procedure), `docs/agent.md#upgrades`.
//!
//! When the applied plan names another `agent_version`, after the reconcile:
//!
//! 1. **stage**: `install_dir/harmony-agent-<version>` is downloaded from the agents object store
//!    (unless already there), its SHA-256 checked against the signed plan's digest, written to a
//!    temporary file and renamed into place, mode 0755. Versions are never deleted.
//! 2. **self-test**: `harmony-agent-<version> --self-test` with this agent's arguments must exit 0.
//! 3. **swap**: the `current` symlink is replaced atomically (new symlink, `rename`).
//! 4. **start**: `install_dir/current` is started with this agent's arguments, in its own process
//!    group; this agent stops its heartbeats so the executor sees only the new version's.
//! 5. **retire**: the executor sees the new heartbeat and sends a signed `retire` for this
//!    version; this agent replies and exits. If no retire arrives within `upgrade_timeout`
//!    (or the new process exits), the new process is killed, `current` is switched back, and
//!    the failure is reported in the status; the upgrade is not retried for this generation.
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use async_nats::jetstream;
use harmony_schemas::fleet::{AGENTS_OBJECT_STORE, DevicePlan, sha256_digest};
use tokio::io::AsyncReadExt as _;
use tokio::sync::mpsc;

use crate::config::Config;

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
    Failed(String),
}

/// A started upgrade, waiting to be retired.
pub struct Started {
    child: Child,
    previous: Option<PathBuf>,
    dir: PathBuf,
}

/// Stages `plan`'s agent version, self-tests it, swaps `current` and starts it.
pub async fn start(js: &jetstream::Context, config: &Config, plan: &DevicePlan, args: &[OsString]) -> Result<Started, String> {
    let dir = config.install_dir.as_ref().ok_or("no install_dir is configured (the agent cannot switch versions; upgrade it by hand)")?;
    let version = &plan.agent_version;
    let target = version_file(dir, version);
    stage(js, &target, plan).await?;
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
            Err(format!("starting {}: {e}", link.display()))
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
            return Outcome::Failed(format!("{why}; switching {} back failed too: {e}", link.display()));
        }
        Outcome::Failed(why)
    }
}

/// Puts `target` in place: kept if it is there with the right digest, else downloaded.
async fn stage(js: &jetstream::Context, target: &Path, plan: &DevicePlan) -> Result<(), String> {
    let want = plan.agent.as_ref();
    if target.is_file() {
        let Some(a) = want else { return Ok(()) }; // a version run here before (e.g. a rollback): kept on disk
        let have = sha256_digest(&std::fs::read(target).map_err(|e| format!("reading {}: {e}", target.display()))?);
        if have == a.sha256 {
            return Ok(());
        }
        tracing::warn!("{} has digest {have}, the plan names {}; downloading it again", target.display(), a.sha256);
    }
    let a = want.ok_or_else(|| format!("version {} is not on this device and the plan names no published binary for it", plan.agent_version))?;
    if a.version != plan.agent_version {
        return Err(format!("the plan names binary {} for version {}", a.version, plan.agent_version));
    }
    let store = js.get_object_store(AGENTS_OBJECT_STORE).await.map_err(|e| format!("agent object store: {e}"))?;
    let mut object = store.get(&a.object).await.map_err(|e| format!("downloading {}: {e}", a.object))?;
    let mut bytes = Vec::with_capacity(a.size as usize);
    object.read_to_end(&mut bytes).await.map_err(|e| format!("downloading {}: {e}", a.object))?;
    let got = sha256_digest(&bytes);
    if got != a.sha256 {
        return Err(format!("downloaded {} has digest {got}, the signed plan says {}: refused", a.object, a.sha256));
    }
    let dir = target.parent().ok_or("install_dir has no parent")?;
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let tmp = dir.join(format!(".{}.partial", target.file_name().unwrap_or_default().to_string_lossy()));
    let write = || -> std::io::Result<()> {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o755))?;
        f.sync_all()?;
        std::fs::rename(&tmp, target)
    };
    write().map_err(|e| format!("writing {}: {e}", target.display()))?;
    tracing::info!(version = %a.version, digest = %a.sha256, "staged {}", target.display());
    Ok(())
}

async fn self_test(target: &Path, args: &[OsString]) -> Result<(), String> {
    let mut cmd = tokio::process::Command::new(target);
    cmd.arg("--self-test").args(args.iter().filter(|a| *a != "run")).stdin(Stdio::null()).kill_on_drop(true);
    match tokio::time::timeout(Duration::from_secs(30), cmd.output()).await {
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
