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
    /// The kernel's boot id (`/proc/sys/kernel/random/boot_id`): a pid means this process only
    /// within this boot. Empty where unknown (and in holders written before it was recorded).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub boot_id: String,
    /// The pid namespace the pid is in (the inode of `/proc/self/ns/pid`): a pid means this
    /// process only in this namespace. 0 where unknown.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pid_namespace: u64,
    /// The process's start time in clock ticks after boot (`/proc/<pid>/stat`, field 22): tells
    /// this process from a later one given the same pid. 0 where unknown.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_ticks: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl LockHolder {
    /// This process running `subcommand` of its program (`apply`), taking a lock now.
    pub fn this_command(subcommand: &str) -> LockHolder {
        let h = LockHolder::this_process();
        LockHolder { command: format!("{} {subcommand}", h.command), ..h }
    }

    /// This process, taking a lock now (its command: the program's file name).
    pub fn this_process() -> LockHolder {
        let f = this_process_facts();
        LockHolder {
            user: f.user.clone(),
            host: f.host.clone(),
            pid: std::process::id(),
            command: f.command.clone(),
            started_ms: f.started_ms,
            since_ms: harmony_schemas::fleet::now_ms(),
            apply_id: String::new(),
            boot_id: f.boot_id.clone(),
            pid_namespace: f.pid_namespace,
            start_ticks: f.start_ticks,
        }
    }

    /// `user@host pid N`: the short identity (a Lease's `holderIdentity`).
    pub fn identity(&self) -> String {
        format!("{}@{} pid {}", self.user, self.host, self.pid)
    }

    /// Whether `other` is this very process: the same identity (`user@host pid N`) in the same
    /// boot and pid namespace with the same start time. Two containers sharing a host name each
    /// have a pid 1; the identity alone does not tell them apart.
    pub fn is_same_process(&self, other: &LockHolder) -> bool {
        self.identity() == other.identity() && self.boot_id == other.boot_id && self.pid_namespace == other.pid_namespace && self.start_ticks == other.start_ticks
    }

    /// `user@host pid N (command, started T)`: for messages. A holder is read from a Lease or a
    /// KV entry anyone with write access may have written: its control characters are escaped,
    /// so printing it cannot steer the operator's terminal.
    pub fn describe(&self) -> String {
        let mut s = self.identity();
        if !self.command.is_empty() || self.started_ms > 0 {
            s.push_str(&format!(" ({}, started {})", if self.command.is_empty() { "?" } else { &self.command }, format_ms(self.started_ms)));
        }
        harmony_schemas::printable(&s).into_owned()
    }

    /// Why the holder is known to be dead, if it is: its lock is taken over at once instead of
    /// waiting for it to expire. Only a holder of this host (same host name), this boot (same
    /// boot id) and this pid namespace, whose pid is gone (`pid N no longer runs on this host`)
    /// or is now another process (another start time: the pid was reused). Anything else — a
    /// holder in another container or pid namespace, from before a reboot, or one that did not
    /// record these (written by an older Harmony), or a system without `/proc` — is not known to
    /// be dead: its lease is waited for.
    pub fn dead_here(&self) -> Option<String> {
        let me = this_process_facts();
        let comparable = self.pid != 0
            && self.pid != std::process::id()
            && !self.host.is_empty()
            && self.host == me.host
            && !self.boot_id.is_empty()
            && self.boot_id == me.boot_id
            && self.pid_namespace != 0
            && self.pid_namespace == me.pid_namespace
            && self.start_ticks != 0;
        if !comparable {
            return None;
        }
        match std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(format!("pid {} no longer runs on this host", self.pid)),
            Err(_) => None,
            Ok(stat) => match start_ticks(&stat) {
                Some(t) if t != self.start_ticks => Some(format!("pid {} on this host is now another process (started {} ticks after boot, the holder at {})", self.pid, t, self.start_ticks)),
                _ => None,
            },
        }
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

/// What the operating system says about this process, read once.
struct Facts {
    user: String,
    host: String,
    command: String,
    started_ms: u64,
    boot_id: String,
    pid_namespace: u64,
    start_ticks: u64,
}

fn this_process_facts() -> &'static Facts {
    static FACTS: OnceLock<Facts> = OnceLock::new();
    FACTS.get_or_init(|| {
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        let start_ticks = stat.as_deref().and_then(start_ticks);
        Facts {
            user: user_name(),
            host: host_name(),
            command: command(),
            started_ms: start_ticks.and_then(started_ms).unwrap_or_else(harmony_schemas::fleet::now_ms),
            boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().and_then(non_empty).unwrap_or_default(),
            pid_namespace: pid_namespace().unwrap_or(0),
            start_ticks: start_ticks.unwrap_or(0),
        }
    })
}

/// The inode of this process's pid namespace: `/proc/self/ns/pid` links to `pid:[N]`.
fn pid_namespace() -> Option<u64> {
    let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
    link.to_str()?.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
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

/// A process's start time in clock ticks after boot: field 22 of its `/proc/<pid>/stat`.
fn start_ticks(stat: &str) -> Option<u64> {
    // Fields after the command (which may hold spaces and parentheses), `)`-terminated: state is
    // field 3, start time field 22.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// A start time in clock ticks after boot (assumed 100 per second, as on every Linux
/// architecture Harmony runs on) as Unix ms, with the boot time in `/proc/stat`.
fn started_ms(ticks: u64) -> Option<u64> {
    let boot: u64 = std::fs::read_to_string("/proc/stat").ok()?.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())?;
    boot.checked_mul(1000)?.checked_add(ticks.checked_mul(10)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forged_holder_is_described_escaped() {
        let h = LockHolder { user: "eve\u{1b}]0;pwned\u{7}".into(), host: "h\nost".into(), pid: 7, command: "harmony apply\u{1b}[2J".into(), ..Default::default() };
        let d = h.describe();
        assert!(!d.chars().any(char::is_control), "{d:?}");
        assert!(d.contains("eve\\u{1b}]0;pwned") && d.contains("h\\nost") && d.contains("\\u{1b}[2J"), "{d}");
    }

    #[test]
    fn start_ticks_reads_field_22_whatever_the_command_name() {
        let stat = "4242 (harmony apply) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 0 0 18446744073709551615";
        assert_eq!(start_ticks(stat), Some(987654));
        let odd = "77 (a) b (c) R 1 77 77 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 12345 0";
        assert_eq!(start_ticks(odd), Some(12345));
        assert_eq!(start_ticks("1 (x"), None);
        assert_eq!(start_ticks(""), None);
    }

    #[test]
    fn this_process_records_boot_namespace_and_start() {
        let h = LockHolder::this_process();
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(!h.boot_id.is_empty() && h.pid_namespace != 0 && h.start_ticks != 0, "{h:?}");
        }
        assert_eq!(h.dead_here(), None, "this process runs");
    }

    #[test]
    fn a_holder_written_before_these_facts_were_recorded_still_reads_and_is_waited_for() {
        let old = r#"{"user":"alice","host":"ops-1","pid":4242,"command":"harmony apply","started_ms":1,"since_ms":2,"apply_id":"x"}"#;
        let h: LockHolder = serde_json::from_str(old).unwrap();
        assert_eq!((h.user.as_str(), h.pid, h.boot_id.as_str(), h.pid_namespace, h.start_ticks), ("alice", 4242, "", 0, 0));
        // Even on this host with its pid gone: not known to be dead without boot and namespace.
        let here = LockHolder { pid: 4_000_000_000, host: this_process_facts().host.clone(), ..h };
        assert_eq!(here.dead_here(), None);
        // And a new holder reads back whole.
        let me = LockHolder::this_process();
        assert_eq!(serde_json::from_str::<LockHolder>(&serde_json::to_string(&me).unwrap()).unwrap(), me);
    }
}
