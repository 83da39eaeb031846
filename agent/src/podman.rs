//! The container runtime: the `podman` CLI with JSON output (see `docs/adr/0006-agent-runtime.md`).
//!
//! Every call that changes which containers exist or run (`create`, `start`, `rm`) is counted in
//! [`Podman::writes`], so a no-op reconcile can be shown to make none.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use harmony_schemas::fleet::{ContainerSpec, RestartPolicy};
use serde::Deserialize;
use tokio::process::Command;

/// Label on every container the agent manages: the device id.
pub const LABEL_DEVICE: &str = "io.harmony.device";
/// Deployment name.
pub const LABEL_DEPLOYMENT: &str = "io.harmony.deployment";
/// Container name in the deployment.
pub const LABEL_CONTAINER: &str = "io.harmony.container";
/// `init` or `service`.
pub const LABEL_KIND: &str = "io.harmony.kind";
/// Spec hash.
pub const LABEL_SPEC_HASH: &str = "io.harmony.spec-hash";
/// Generation of the plan that created it.
pub const LABEL_GENERATION: &str = "io.harmony.generation";

/// A container as `podman ps -a --format json` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct Listed {
    /// Id.
    #[serde(rename = "Id")]
    pub id: String,
    /// Labels.
    #[serde(rename = "Labels", default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// `running`, `exited`, `created`, …
    #[serde(rename = "State", default)]
    pub state: String,
    /// Exit code when exited.
    #[serde(rename = "ExitCode", default)]
    pub exit_code: i64,
    /// The image id.
    #[serde(rename = "ImageID", default)]
    pub image_id: Option<String>,
    /// When it last started, Unix seconds.
    #[serde(rename = "StartedAt", default)]
    pub started_at: i64,
    /// podman's restart count (from `podman inspect`: `ps` does not list it).
    #[serde(skip)]
    pub restarts: u64,
}

impl Listed {
    /// A label's value.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.as_ref().and_then(|l| l.get(key)).map(String::as_str)
    }
}

/// What went wrong running podman.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct PodmanError(pub String);

/// Result of a command run with a timeout.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit code, `None` when killed by the timeout.
    pub exit_code: Option<i64>,
    /// Stdout.
    pub stdout: String,
    /// Stderr.
    pub stderr: String,
}

/// The podman CLI.
#[derive(Debug, Clone)]
pub struct Podman {
    bin: PathBuf,
    writes: Arc<AtomicU64>,
    /// The deadline of one call (`podman_timeout_s`): the process is killed past it.
    timeout: Duration,
}

const MAX_OUTPUT: usize = 64 * 1024;

fn truncate(s: String) -> String {
    if s.len() > MAX_OUTPUT { harmony_schemas::fleet::bounded_text(&s, MAX_OUTPUT) } else { s }
}

impl Podman {
    /// Uses `bin` (e.g. `podman`); every call is killed after `timeout` (`wait` and `exec`
    /// have their own).
    pub fn new(bin: PathBuf, timeout: Duration) -> Podman {
        Podman { bin, writes: Arc::new(AtomicU64::new(0)), timeout }
    }

    /// Number of state-changing podman calls so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    async fn run(&self, args: &[String], write: bool) -> Result<String, PodmanError> {
        if write {
            self.writes.fetch_add(1, Ordering::Relaxed);
        }
        let verb = args.first().map(String::as_str).unwrap_or("");
        self.run_for(args, if verb == "wait" { None } else { Some(self.timeout) }).await
    }

    /// [`Podman::run`] with a deadline (`None`: the caller bounds it).
    async fn run_for(&self, args: &[String], timeout: Option<Duration>) -> Result<String, PodmanError> {
        let verb = args.first().map(String::as_str).unwrap_or("");
        let mut cmd = Command::new(&self.bin);
        cmd.args(args).stdin(Stdio::null()).kill_on_drop(true);
        let out = match timeout {
            Some(t) => tokio::time::timeout(t, cmd.output())
                .await
                .map_err(|_| PodmanError(format!("podman {verb}: no answer within {} s (podman_timeout_s); killed", t.as_secs())))?,
            None => cmd.output().await,
        }
        .map_err(|e| PodmanError(format!("cannot run {}: {e}", self.bin.display())))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(PodmanError(format!("podman {verb}: {}", String::from_utf8_lossy(&out.stderr).trim())))
        }
    }

    /// `podman version`: checks podman answers.
    pub async fn version(&self) -> Result<String, PodmanError> {
        self.run(&["version".into(), "--format".into(), "{{.Client.Version}}".into()], false).await
    }

    /// Every container carrying `io.harmony.device=<device>`, running or not.
    pub async fn list(&self, device: &str) -> Result<Vec<Listed>, PodmanError> {
        let out =
            self.run(&["ps".into(), "-a".into(), "--filter".into(), format!("label={LABEL_DEVICE}={device}"), "--format".into(), "json".into()], false).await?;
        if out.is_empty() {
            return Ok(Vec::new());
        }
        let all: Vec<Listed> = serde_json::from_str(&out).map_err(|e| PodmanError(format!("podman ps output: {e}")))?;
        // Defence in depth: only containers whose device label is exactly ours.
        let mut mine: Vec<Listed> = all.into_iter().filter(|c| c.label(LABEL_DEVICE) == Some(device)).collect();
        if !mine.is_empty() {
            // Restart counts: one `inspect` for all of them (a container removed in between
            // makes it fail: the counts are then left at 0 for this look).
            let mut a: Vec<String> = vec!["inspect".into(), "--type".into(), "container".into(), "--format".into(), "{{.Id}} {{.RestartCount}}".into()];
            a.extend(mine.iter().map(|c| c.id.clone()));
            if let Ok(out) = self.run(&a, false).await {
                let counts: BTreeMap<&str, u64> = out.lines().filter_map(|l| l.split_once(' ')).filter_map(|(id, n)| Some((id, n.trim().parse().ok()?))).collect();
                for c in &mut mine {
                    c.restarts = counts.get(c.id.as_str()).copied().unwrap_or(0);
                }
            }
        }
        Ok(mine)
    }

    /// `podman events` for this device's containers, one JSON line each, until the process
    /// ends (it is killed when the returned child is dropped).
    pub fn events(&self, device: &str) -> Result<tokio::process::Child, PodmanError> {
        Command::new(&self.bin)
            .args(["events", "--format", "json", "--filter", "type=container", "--filter", &format!("label={LABEL_DEVICE}={device}")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| PodmanError(format!("cannot run {}: {e}", self.bin.display())))
    }

    /// `podman create`; returns the new container's id.
    pub async fn create(
        &self,
        name: &str,
        spec: &ContainerSpec,
        labels: &BTreeMap<&str, String>,
        restart: Option<RestartPolicy>,
    ) -> Result<String, PodmanError> {
        let mut a: Vec<String> = vec!["create".into(), "--name".into(), name.into()];
        for (k, v) in labels {
            a.push("--label".into());
            a.push(format!("{k}={v}"));
        }
        if let Some(r) = restart {
            a.push(format!("--restart={}", r.as_podman()));
        }
        for (k, v) in &spec.env {
            a.push("--env".into());
            a.push(format!("{k}={v}"));
        }
        for p in &spec.ports {
            let proto = serde_json::to_value(p.protocol).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_else(|| "tcp".into());
            a.push("--publish".into());
            a.push(format!("{}:{}/{proto}", p.host, p.container));
        }
        for v in &spec.volumes {
            a.push("--volume".into());
            a.push(format!("{}:{}{}", v.source, v.target, if v.read_only { ":ro" } else { "" }));
        }
        if !spec.command.is_empty() {
            a.push("--entrypoint".into());
            a.push(serde_json::to_string(&spec.command).map_err(|e| PodmanError(e.to_string()))?);
        }
        // Everything after the image is the container's own argv, never podman's options.
        a.push("--".into());
        a.push(spec.image.clone());
        a.extend(spec.args.iter().cloned());
        self.run(&a, true).await
    }

    /// `podman start`.
    pub async fn start(&self, id: &str) -> Result<(), PodmanError> {
        self.run(&["start".into(), id.into()], true).await.map(drop)
    }

    /// `podman rm -f -t 0` (stops immediately).
    pub async fn remove(&self, id: &str) -> Result<(), PodmanError> {
        match self.run(&["rm".into(), "-f".into(), "-t".into(), "0".into(), id.into()], true).await {
            Err(e) if e.0.contains("no such container") => Ok(()),
            r => r.map(drop),
        }
    }

    /// `podman wait`, bounded by `timeout`: the exit code, or `None` when it is still running.
    pub async fn wait(&self, id: &str, timeout: Duration) -> Result<Option<i64>, PodmanError> {
        match tokio::time::timeout(timeout, self.run(&["wait".into(), id.into()], false)).await {
            Err(_) => Ok(None),
            Ok(r) => {
                let out = r?;
                out.lines().last().and_then(|l| l.trim().parse().ok()).map(Some).ok_or_else(|| PodmanError(format!("podman wait printed `{out}`")))
            }
        }
    }

    /// The last `tail` lines of a container's logs (stdout and stderr).
    pub async fn logs(&self, id: &str, tail: u32) -> Result<Vec<String>, PodmanError> {
        let out = tokio::time::timeout(self.timeout, Command::new(&self.bin).args(["logs", "--tail", &tail.to_string(), id]).stdin(Stdio::null()).kill_on_drop(true).output())
            .await
            .map_err(|_| PodmanError(format!("podman logs: no answer within {} s; killed", self.timeout.as_secs())))?
            .map_err(|e| PodmanError(format!("cannot run podman: {e}")))?;
        if !out.status.success() {
            return Err(PodmanError(format!("podman logs: {}", String::from_utf8_lossy(&out.stderr).trim())));
        }
        let text = truncate(String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr));
        Ok(text.lines().map(str::to_string).collect())
    }

    /// `podman exec` with a timeout (the podman process is killed when it expires). podman stops
    /// parsing its own options at the container id, so `argv` cannot inject any.
    pub async fn exec(&self, id: &str, argv: &[String], timeout: Duration) -> Result<Output, PodmanError> {
        let mut cmd = Command::new(&self.bin);
        // Not counted in `writes`: exec is a command, not a change to which containers run.
        cmd.arg("exec").arg(id).args(argv).stdin(Stdio::null()).kill_on_drop(true);
        match tokio::time::timeout(timeout, cmd.output()).await {
            Err(_) => Ok(Output { exit_code: None, stdout: String::new(), stderr: String::new() }),
            Ok(Err(e)) => Err(PodmanError(format!("cannot run podman: {e}"))),
            Ok(Ok(out)) => Ok(Output {
                exit_code: out.status.code().map(i64::from),
                stdout: truncate(String::from_utf8_lossy(&out.stdout).into_owned()),
                stderr: truncate(String::from_utf8_lossy(&out.stderr).into_owned()),
            }),
        }
    }
}
