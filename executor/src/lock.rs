//! What the apply locks of clusters (`kube::lock`, a Lease) and fleets (`fleet::lock`, a KV
//! entry) share: who holds one ([`LockHolder`], read from the operating system), how long a lock
//! lives and how long to wait for one ([`LockOptions`]), and when a holder is known to be dead
//! (same host, its pid gone: taken over at once).
//!
//! The lease duration follows Kubernetes leader election (client-go's `leaderelection`, as
//! kube-controller-manager configures it: `--leader-elect-lease-duration=15s`,
//! `--leader-elect-renew-deadline=10s`, `--leader-elect-retry-period=2s`, the defaults bound in
//! Kubernetes' `staging/src/k8s.io/component-base/config/options/leaderelectionconfig.go`): short, renewed while
//! the holder works, so a crashed holder's lock expires within seconds. Harmony's is 30 s,
//! renewed every third of it.

use std::sync::OnceLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Who holds an apply lock: the process, as the operating system names it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    /// Login name (`$USER`, else the name of the process's uid in `/etc/passwd`, else `uid N`).
    #[serde(default)]
    pub user: String,
    /// Host name (the kernel's).
    #[serde(default)]
    pub host: String,
    /// Process id.
    #[serde(default)]
    pub pid: u32,
    /// The command (`harmony apply`: the program and its subcommand as the caller names it,
    /// never its arguments).
    #[serde(default)]
    pub command: String,
    /// When the process started, Unix ms.
    #[serde(default)]
    pub started_ms: u64,
    /// When the lock was taken, Unix ms.
    #[serde(default)]
    pub since_ms: u64,
    /// The apply's id (fleets: the journal's).
    #[serde(default)]
    pub apply_id: String,
}

impl LockHolder {
    /// This process running `subcommand` of its program (`apply`), taking a lock now.
    pub fn this_command(subcommand: &str) -> LockHolder {
        let h = LockHolder::this_process();
        LockHolder { command: format!("{} {subcommand}", h.command), ..h }
    }

    /// This process, taking a lock now (its command: the program's file name).
    pub fn this_process() -> LockHolder {
        let (user, host, command, started_ms) = this_process_facts().clone();
        LockHolder { user, host, pid: std::process::id(), command, started_ms, since_ms: harmony_schemas::fleet::now_ms(), apply_id: String::new() }
    }

    /// `user@host pid N`: the short identity (a Lease's `holderIdentity`).
    pub fn identity(&self) -> String {
        format!("{}@{} pid {}", self.user, self.host, self.pid)
    }

    /// `user@host pid N (command, started T)`: for messages.
    pub fn describe(&self) -> String {
        let mut s = self.identity();
        if !self.command.is_empty() || self.started_ms > 0 {
            s.push_str(&format!(" ({}, started {})", if self.command.is_empty() { "?" } else { &self.command }, format_ms(self.started_ms)));
        }
        s
    }

    /// Whether the holder is a process of this host that no longer runs: its lock is taken over
    /// at once instead of waiting for it to expire. Only where the process table can be read
    /// (`/proc`); elsewhere no holder is known to be dead.
    pub fn is_dead_here(&self) -> bool {
        self.pid != 0
            && !self.host.is_empty()
            && self.host == this_process_facts().1
            && self.pid != std::process::id()
            && std::path::Path::new("/proc/self").exists()
            && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

/// Lock settings, for clusters and fleets alike.
#[derive(Debug, Clone, Copy)]
pub struct LockOptions {
    /// How long a lock lives unless renewed (renewed every third of it). A fleet's locks bucket
    /// keeps the TTL it was made with.
    pub ttl: Duration,
    /// How long to wait for a held lock (zero: fail at once).
    pub timeout: Duration,
}

/// The default lock TTL: 30 s.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions { ttl: DEFAULT_TTL, timeout: Duration::ZERO }
    }
}

/// Formats Unix ms as RFC 3339 UTC.
pub fn format_ms(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// A lock `harmony unlock` removes (Terraform's `force-unlock`).
#[derive(Clone)]
pub enum LockTarget {
    /// A cluster's Lease, through this kubeconfig context.
    Cluster {
        /// kubeconfig file (`None`: `KUBECONFIG`, then `~/.kube/config`).
        kubeconfig: Option<std::path::PathBuf>,
        /// Its context.
        context: String,
    },
    /// A fleet's KV entry.
    Fleet {
        /// How to reach the fleet's NATS servers (with write credentials).
        nats: crate::fleet::NatsOptions,
        /// The fleet.
        fleet: String,
    },
}

/// A held lock as shown to the operator: who holds it, and the exact version shown, which is all
/// [`unlock`] removes.
#[derive(Debug, Clone)]
pub struct ShownLock {
    /// Who holds it, since when, when it expires.
    pub description: String,
    token: Token,
}

#[derive(Debug, Clone)]
enum Token {
    Lease(crate::kube::lock::Holder),
    Kv(u64),
}

/// Who holds `target`'s lock (`None`: nobody).
pub async fn show(target: &LockTarget) -> Result<Option<ShownLock>, String> {
    match target {
        LockTarget::Cluster { kubeconfig, context } => {
            let cluster = crate::kube::Cluster::from_kubeconfig(kubeconfig.as_deref(), context).await.map_err(|e| e.to_string())?;
            let shown = crate::kube::lock::shown(&cluster).await.map_err(|e| e.to_string())?;
            Ok(shown.map(|h| ShownLock { description: h.describe(), token: Token::Lease(h) }))
        }
        LockTarget::Fleet { nats, fleet } => {
            let js = async_nats::jetstream::new(crate::fleet::connect(nats).await.map_err(|e| e.to_string())?);
            let shown = crate::fleet::lock::shown(&js, fleet).await.map_err(|e| e.to_string())?;
            Ok(shown.map(|(h, revision)| ShownLock { description: format!("{} since {}", h.describe(), format_ms(h.since_ms)), token: Token::Kv(revision) }))
        }
    }
}

/// Removes `target`'s lock if it is still exactly as `shown` (compare-and-set): a lock renewed,
/// released or taken since is not removed.
pub async fn unlock(target: &LockTarget, shown: &ShownLock) -> Result<(), String> {
    match (target, &shown.token) {
        (LockTarget::Cluster { kubeconfig, context }, Token::Lease(h)) => {
            let cluster = crate::kube::Cluster::from_kubeconfig(kubeconfig.as_deref(), context).await.map_err(|e| e.to_string())?;
            crate::kube::lock::force_unlock(&cluster, h).await.map_err(|e| e.to_string())
        }
        (LockTarget::Fleet { nats, fleet }, Token::Kv(revision)) => {
            let js = async_nats::jetstream::new(crate::fleet::connect(nats).await.map_err(|e| e.to_string())?);
            crate::fleet::lock::force_unlock(&js, fleet, *revision).await.map_err(|e| e.to_string())
        }
        _ => Err("the lock shown is not this target's".into()),
    }
}

/// User, host, command and start time of this process, read once.
fn this_process_facts() -> &'static (String, String, String, u64) {
    static FACTS: OnceLock<(String, String, String, u64)> = OnceLock::new();
    FACTS.get_or_init(|| (user_name(), host_name(), command(), started_ms().unwrap_or_else(harmony_schemas::fleet::now_ms)))
}

fn non_empty(s: String) -> Option<String> {
    let s = s.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// `$USER`/`$LOGNAME`, else the passwd entry of the process's real uid, else `uid N`.
fn user_name() -> String {
    if let Some(u) = std::env::var("USER").ok().or_else(|| std::env::var("LOGNAME").ok()).and_then(non_empty) {
        return u;
    }
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Uid:").and_then(|r| r.split_whitespace().next()).map(str::to_string)));
    let Some(uid) = uid else { return "unknown-user".into() };
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| p.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|f| f.len() > 2 && f[2] == uid).map(|f| f[0].to_string()))
        .and_then(non_empty)
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// The kernel's host name, else `/etc/hostname`, else `$HOSTNAME`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .and_then(non_empty)
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().and_then(non_empty))
        .or_else(|| std::env::var("HOSTNAME").ok().and_then(non_empty))
        .unwrap_or_else(|| "unknown-host".into())
}

/// The program's file name (its arguments may name files or values an operator would not want
/// shown to others).
fn command() -> String {
    std::env::args()
        .next()
        .map(|p| std::path::Path::new(&p).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or(p))
        .unwrap_or_default()
}

/// The process's start time from `/proc/self/stat` (clock ticks after boot, assumed 100 per
/// second as on every Linux architecture Harmony runs on) and the boot time in `/proc/stat`.
fn started_ms() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command (which may hold spaces), `)`-terminated: state is field 3, start time field 22.
    let rest = &stat[stat.rfind(')')? + 2..];
    let ticks: u64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    let boot: u64 = std::fs::read_to_string("/proc/stat").ok()?.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())?;
    boot.checked_mul(1000)?.checked_add(ticks.checked_mul(10)?)
}
