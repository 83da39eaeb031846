//! Test support shared by the agent and executor tests.
//!
//! - [`NatsServer`]: a real `nats-server` with JetStream on a free loopback port and a temporary
//!   store directory; it can be stopped and restarted on the same port and store (outage tests).
//! - [`NatsCluster`]: a 3-node (or any size) JetStream cluster of real nats-servers on loopback,
//!   every node reading the same generated configuration; nodes killed, shut down, restarted;
//!   leaf nodes whose remote is the cluster.
//! - [`busybox_image`]: a local busybox image built with `podman import` (no registry needed).
//! - [`charts`]: an OCI registry (`docker-registry`) and a static Helm repository on loopback,
//!   and Helm's SDK to package, push and index charts (the remote-chart tests).
//!
//! Both fail with a message naming `scripts/install-test-deps.sh` when a tool is missing.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod charts;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const INSTALL_HINT: &str = "run scripts/install-test-deps.sh (as root on Debian) to install podman, busybox-static and nats-server";

/// The repository root (the workspace directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

/// Finds `nats-server`: `$HARMONY_NATS_SERVER`, then `.venv/bin/nats-server`, then `PATH`.
///
/// # Panics
/// When none is found, with a message naming the install script.
pub fn nats_server_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("HARMONY_NATS_SERVER") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "HARMONY_NATS_SERVER={} does not exist; {INSTALL_HINT}", p.display());
        return p;
    }
    let venv = repo_root().join(".venv/bin/nats-server");
    if venv.is_file() {
        return venv;
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("nats-server");
            if p.is_file() {
                return p;
            }
        }
    }
    panic!("nats-server not found (looked at $HARMONY_NATS_SERVER, {}, PATH); {INSTALL_HINT}", venv.display());
}

/// A free TCP port on 127.0.0.1, outside the kernel's ephemeral range when it can: a port from
/// that range can be taken, between a killed server and its restart on the same port, as the
/// local end of some outgoing connection (another test's client, a route) and stay taken.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let (low, high) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|n| n.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999));
    // Candidates below the range (from 10000 up), else above it.
    let (from, to) = if low > 11_000 { (10_000u16, low) } else { (high.saturating_add(1), u16::MAX) };
    if from < to {
        let span = u64::from(to - from);
        let mut x = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
            ^ (u64::from(std::process::id()) << 32)
            ^ SEQ.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        for _ in 0..64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let port = from + (x % span) as u16;
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("bind 127.0.0.1:0")
}

/// A running nats-server (with JetStream unless it is a leaf node), killed on drop.
pub struct NatsServer {
    port: u16,
    store: tempfile::TempDir,
    child: Mutex<Option<Child>>,
    config: Option<PathBuf>,
    jetstream: bool,
    /// The monitoring port (`-m`) of a cluster node: ready means `/healthz` answers 200.
    monitor: Option<u16>,
}

impl NatsServer {
    fn new(config: Option<&Path>, jetstream: bool, monitor: Option<u16>) -> NatsServer {
        let store = tempfile::tempdir().expect("temp dir for the JetStream store");
        NatsServer { port: free_port(), store, child: Mutex::new(None), config: config.map(Path::to_path_buf), jetstream, monitor }
    }

    /// Starts a server on a free port with a fresh store directory and waits until it accepts clients.
    pub fn start() -> NatsServer {
        let server = NatsServer::new(None, true, None);
        server.restart();
        server
    }

    /// Starts a server like [`NatsServer::start`] that also reads the configuration file
    /// `config` (`-c`; e.g. one that `include`s a generated authorisation). [`NatsServer::reload`]
    /// makes it re-read the file.
    pub fn start_with_config(config: &Path) -> NatsServer {
        let server = NatsServer::new(Some(config), true, None);
        server.restart();
        server
    }

    /// The server process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(Child::id)
    }

    /// Whether the process runs.
    pub fn running(&self) -> bool {
        self.child.lock().unwrap_or_else(|e| e.into_inner()).as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// `nats-server --signal reload=<pid>`: the server re-reads its configuration file.
    ///
    /// # Panics
    /// When the server is not running or the signal cannot be sent.
    pub fn reload(&self) {
        self.signal("reload");
    }

    fn signal(&self, what: &str) {
        let pid = self.pid().expect("nats-server is not running");
        let status = Command::new(nats_server_binary()).arg("--signal").arg(format!("{what}={pid}")).status().expect("run nats-server --signal");
        assert!(status.success(), "nats-server --signal {what}={pid} failed");
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.store.path().join("server.log")
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store directory.
    pub fn store_dir(&self) -> &Path {
        self.store.path()
    }

    /// Kills the server (SIGKILL) and waits for it to exit. Idempotent.
    pub fn stop(&self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut c) = child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Shuts the server down cleanly (`nats-server --signal term`: it closes its clients and
    /// routes and flushes its store) and waits for it to exit. Idempotent.
    pub fn terminate(&self) {
        if !self.running() {
            return self.stop();
        }
        self.signal("term");
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut c) = child.take() {
            let _ = c.wait();
        }
    }

    /// (Re)starts the server on the same port and store; waits until it is ready.
    pub fn restart(&self) {
        self.stop();
        self.spawn();
        self.wait_ready(Instant::now() + Duration::from_secs(30));
    }

    fn spawn(&self) {
        let log = self.log_path();
        // The previous run's log is kept beside (a failed start's reason), read on failure.
        let _ = std::fs::rename(&log, self.store.path().join("server.previous.log"));
        let mut cmd = Command::new(nats_server_binary());
        if let Some(c) = &self.config {
            cmd.arg("-c").arg(c);
        }
        cmd.args(["-a", "127.0.0.1", "-p", &self.port.to_string()]);
        if self.jetstream {
            cmd.arg("-js").arg("-sd").arg(self.store.path().join("js"));
        }
        if let Some(m) = self.monitor {
            cmd.args(["-m", &m.to_string()]);
        }
        let child = cmd
            .arg("-l")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.store.path().join("stderr.log")).map(Stdio::from).unwrap_or_else(|_| Stdio::null()))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start nats-server: {e}; {INSTALL_HINT}"));
        *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
    }

    /// Waits until the log says ready, the port accepts connections and (a cluster node) its
    /// `/healthz` answers 200 — JetStream has a meta leader and this node's streams are current.
    /// A process that exited (its port briefly in use after a kill) is started again.
    fn wait_ready(&self, deadline: Instant) {
        loop {
            let ready = self.log().contains("Server is ready")
                && TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && self.monitor.is_none_or(|m| http_status(m, "/healthz") == Some(200));
            if ready {
                return;
            }
            let exited = self.child.lock().unwrap_or_else(|e| e.into_inner()).as_mut().is_none_or(|c| matches!(c.try_wait(), Ok(Some(_))));
            if Instant::now() >= deadline {
                let read = |name: &str| std::fs::read_to_string(self.store.path().join(name)).unwrap_or_default();
                panic!(
                    "nats-server did not become ready on port {} (monitor {:?}): log:\n{}\nprevious log:\n{}\nstderr:\n{}",
                    self.port,
                    self.monitor.map(|m| (m, http_status(m, "/healthz"))),
                    self.log(),
                    read("server.previous.log"),
                    read("stderr.log")
                );
            }
            if exited {
                std::thread::sleep(Duration::from_millis(100));
                self.spawn();
            } else {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The HTTP status of `GET path` on the monitoring port, if it answers.
fn http_status(port: u16, path: &str) -> Option<u16> {
    use std::io::Read as _;
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// A JetStream cluster of real nats-servers on loopback (routes, `server_name` `n0`, `n1`, …,
/// one store directory each, free ports), every node reading the same extra configuration
/// (e.g. `include "auth/pico/nats-auth.conf"`); nodes can be killed, shut down and restarted.
/// [`NatsCluster::start_leaf`] adds a leaf node whose remote is the cluster.
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
    leaf_ports: Vec<u16>,
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

/// The cluster's name (`cluster { name }`), a placement's `cluster=` in tests.
pub const CLUSTER_NAME: &str = "harmony-test";

impl NatsCluster {
    /// Starts `nodes` servers with no extra configuration and waits until every one is healthy.
    pub fn start(nodes: usize) -> NatsCluster {
        let tmp = tempfile::tempdir().expect("temp dir for the cluster configuration");
        let dir = tmp.path().to_path_buf();
        let mut c = NatsCluster::start_in(&dir, nodes, "");
        c._tmp = Some(tmp);
        c
    }

    /// Starts `nodes` servers whose configuration files `node-<i>.conf` are written to `dir` and
    /// end with `extra` (so a relative `include` is relative to `dir`), and waits until every one
    /// is healthy (`/healthz`: a JetStream meta leader is elected and the node is current).
    pub fn start_in(dir: &Path, nodes: usize, extra: &str) -> NatsCluster {
        assert!(nodes >= 1, "a cluster needs a node");
        let routes: Vec<u16> = (0..nodes).map(|_| free_port()).collect();
        let leaf_ports: Vec<u16> = (0..nodes).map(|_| free_port()).collect();
        let mut servers = Vec::new();
        for i in 0..nodes {
            let others: Vec<String> = routes.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, p)| format!("\"nats-route://127.0.0.1:{p}\"")).collect();
            let conf = format!(
                "server_name: n{i}\ncluster {{\n  name: {CLUSTER_NAME}\n  listen: \"127.0.0.1:{}\"\n  routes: [{}]\n}}\nleafnodes {{\n  listen: \"127.0.0.1:{}\"\n}}\n{extra}\n",
                routes[i],
                others.join(", "),
                leaf_ports[i]
            );
            let path = write_file(dir, &format!("node-{i}.conf"), &conf);
            servers.push(NatsServer::new(Some(&path), true, Some(free_port())));
        }
        for s in &servers {
            s.spawn();
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        for s in &servers {
            s.wait_ready(deadline);
        }
        NatsCluster { nodes: servers, leaf_ports, dir: dir.to_path_buf(), _tmp: None }
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &NatsServer {
        &self.nodes[i]
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether it has no node (never: [`NatsCluster::start_in`] refuses that).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Every node's client URL.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(NatsServer::url).collect()
    }

    /// The node named `server_name` (`n<i>`), as JetStream names a stream's leader.
    pub fn index_of(&self, server_name: &str) -> Option<usize> {
        server_name.strip_prefix('n')?.parse().ok().filter(|i| *i < self.nodes.len())
    }

    /// Kills node `i` (SIGKILL).
    pub fn kill(&self, i: usize) {
        self.nodes[i].stop();
    }

    /// Restarts node `i` on its port and store and waits until it is healthy again (caught up).
    pub fn restart(&self, i: usize) {
        self.nodes[i].restart();
    }

    /// Starts a leaf node (no JetStream of its own: its clients use the cluster's) whose remote
    /// is every node's leafnode port; its configuration `<name>.conf` is written to the cluster's
    /// directory and holds `remote` inside the remote block (e.g. `credentials` or `nkey`) and
    /// `extra` at the top level (e.g. the authorisation its own clients meet). Waits until the
    /// leaf connection is up.
    pub fn start_leaf(&self, name: &str, remote: &str, extra: &str) -> NatsServer {
        let urls: Vec<String> = self.leaf_ports.iter().map(|p| format!("\"nats-leaf://127.0.0.1:{p}\"")).collect();
        let conf = format!("server_name: {name}\nleafnodes {{\n  remotes: [\n    {{\n      urls: [{}]\n      {remote}\n    }}\n  ]\n}}\n{extra}\n", urls.join(", "));
        let path = write_file(&self.dir, &format!("{name}.conf"), &conf);
        let leaf = NatsServer::new(Some(&path), false, None);
        leaf.restart();
        leaf.wait_leaf_connected(Instant::now() + Duration::from_secs(30));
        leaf
    }
}

impl NatsServer {
    /// Waits until the log of a leaf node says its remote connection is up.
    fn wait_leaf_connected(&self, deadline: Instant) {
        while !self.log().contains("Leafnode connection created") {
            assert!(Instant::now() < deadline, "leaf node on port {} did not connect to its hub: {}", self.port, self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Restarts a leaf node and waits until its remote connection is up again.
    pub fn restart_leaf(&self) {
        self.restart();
        self.wait_leaf_connected(Instant::now() + Duration::from_secs(30));
    }
}

/// Whether `podman` is on PATH and answers.
pub fn podman_available() -> bool {
    Command::new("podman").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().map(|s| s.success()).unwrap_or(false)
}

/// Commands linked to busybox in the test image.
pub const BUSYBOX_APPLETS: &[&str] = &["sh", "sleep", "echo", "cat", "env", "ls", "true", "false", "printf", "test", "date", "id", "wc", "head", "tail"];

static IMPORT: Mutex<()> = Mutex::new(());

/// Ensures a local busybox image `localhost/harmony-test/busybox:<tag>` exists (built with
/// `podman import` from `/bin/busybox`, statically linked) and returns its reference.
///
/// # Panics
/// When podman or busybox-static is missing (naming the install script) or the import fails.
pub fn busybox_image(tag: &str) -> String {
    let reference = format!("localhost/harmony-test/busybox:{tag}");
    let _guard = IMPORT.lock().unwrap_or_else(|e| e.into_inner());
    assert!(podman_available(), "podman not found; {INSTALL_HINT}");
    if Command::new("podman").args(["image", "exists", &reference]).status().map(|s| s.success()).unwrap_or(false) {
        return reference;
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox", "/bin/busybox-static"].into_iter().map(Path::new).find(|p| is_static(p));
    let busybox = busybox.unwrap_or_else(|| panic!("a statically linked busybox was not found; {INSTALL_HINT}"));
    let root = tempfile::tempdir().expect("temp dir");
    let bin = root.path().join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir bin");
    std::fs::create_dir_all(root.path().join("tmp")).expect("mkdir tmp");
    std::fs::copy(busybox, bin.join("busybox")).expect("copy busybox");
    for applet in BUSYBOX_APPLETS {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).expect("symlink applet");
    }
    let tar = root.path().join("rootfs.tar");
    let status = Command::new("tar").arg("-C").arg(root.path()).arg("-cf").arg(&tar).args(["bin", "tmp"]).status().expect("run tar");
    assert!(status.success(), "tar failed");
    let out = Command::new("podman")
        .args(["import", "-q", "--change", "CMD [\"/bin/sh\"]"])
        .arg(&tar)
        .arg(&reference)
        .output()
        .unwrap_or_else(|e| panic!("podman import: {e}; {INSTALL_HINT}"));
    assert!(out.status.success(), "podman import failed: {}", String::from_utf8_lossy(&out.stderr));
    reference
}

fn is_static(p: &Path) -> bool {
    // Debian's busybox-static installs /bin/busybox; the dynamic `busybox` package would not run
    // in an image without libc, so check that the ELF has no interpreter (PT_INTERP).
    let Ok(bytes) = std::fs::read(p) else { return false };
    bytes.len() > 64 && &bytes[..4] == b"\x7fELF" && !bytes.windows(14).any(|w| w == b"/lib64/ld-linu" || w == b"/lib/ld-linux-")
}

/// A device's containers, by Harmony's labels: `deployment/container/kind` → (id, state).
pub fn harmony_containers(device: &str) -> std::collections::BTreeMap<String, (String, String)> {
    let out = podman(&["ps", "-a", "--filter", &format!("label=io.harmony.device={device}"), "--format", "json"]);
    let list: Vec<serde_json::Value> = if out.is_empty() { vec![] } else { serde_json::from_str(&out).expect("podman ps JSON") };
    list.iter()
        .map(|c| {
            let l = &c["Labels"];
            let label = |k: &str| l[k].as_str().unwrap_or("").to_string();
            let key = format!("{}/{}/{}", label("io.harmony.deployment"), label("io.harmony.container"), label("io.harmony.kind"));
            (key, (c["Id"].as_str().unwrap_or("").to_string(), c["State"].as_str().unwrap_or("").to_string()))
        })
        .collect()
}

/// Runs `podman` with `args` and returns trimmed stdout; panics on failure.
pub fn podman(args: &[&str]) -> String {
    let out = Command::new("podman").args(args).output().unwrap_or_else(|e| panic!("podman: {e}; {INSTALL_HINT}"));
    assert!(out.status.success(), "podman {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A container not managed by harmony (no harmony labels), removed on drop. Tests check it survives.
pub struct ForeignContainer {
    /// Its id.
    pub id: String,
}

impl ForeignContainer {
    /// Starts `sleep 3600` from `image` under `name`, with an unrelated label.
    pub fn start(image: &str, name: &str) -> ForeignContainer {
        let _ = Command::new("podman").args(["rm", "-f", "-t", "0", name]).output();
        let id = podman(&["run", "-d", "--name", name, "--label", "owner=someone-else", image, "sleep", "3600"]);
        ForeignContainer { id }
    }

    /// Whether it still exists and runs.
    pub fn running(&self) -> bool {
        Command::new("podman")
            .args(["inspect", "--format", "{{.State.Running}}", &self.id])
            .output()
            .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "true")
            .unwrap_or(false)
    }
}

impl Drop for ForeignContainer {
    fn drop(&mut self) {
        let _ = Command::new("podman").args(["rm", "-f", "-t", "0", &self.id]).output();
    }
}

/// Writes `text` to a new file `name` in `dir` and returns its path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    let mut f = std::fs::File::create(&p).expect("create file");
    f.write_all(text.as_bytes()).expect("write file");
    p
}

/// The Python of `.venv` (or `$HARMONY_HELM_PYTHON`) when it can import helm-python-sdk, Helm's
/// own engine used as a test oracle. Without it: `None` and a note (the caller skips), except
/// under `CI=true`, where it panics — `scripts/test.sh` installs it.
pub fn helm_python() -> Option<PathBuf> {
    let python = std::env::var_os("HARMONY_HELM_PYTHON").map(PathBuf::from).unwrap_or_else(|| repo_root().join(".venv/bin/python"));
    if std::process::Command::new(&python).args(["-c", "import helm_python"]).output().is_ok_and(|o| o.status.success()) {
        return Some(python);
    }
    assert!(std::env::var("CI").is_err(), "{} cannot import helm_python: run scripts/test.sh (it installs helm-python-sdk into .venv)", python.display());
    eprintln!("skipping: {} cannot import helm_python (scripts/test.sh installs it)", python.display());
    None
}
