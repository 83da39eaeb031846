//! Test support shared by the agent and executor tests.
//!
//! - [`NatsServer`]: a real `nats-server` with JetStream on a free loopback port and a temporary
//!   store directory; it can be stopped and restarted on the same port and store (outage tests).
//! - [`busybox_image`]: a local busybox image built with `podman import` (no registry needed).
//!
//! Both fail with a message naming `scripts/install-test-deps.sh` when a tool is missing.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

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

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("bind 127.0.0.1:0")
}

/// A running nats-server with JetStream, killed on drop.
pub struct NatsServer {
    port: u16,
    store: tempfile::TempDir,
    child: Mutex<Option<Child>>,
    config: Option<PathBuf>,
}

impl NatsServer {
    /// Starts a server on a free port with a fresh store directory and waits until it accepts clients.
    pub fn start() -> NatsServer {
        let store = tempfile::tempdir().expect("temp dir for the JetStream store");
        let server = NatsServer { port: free_port(), store, child: Mutex::new(None), config: None };
        server.restart();
        server
    }

    /// Starts a server like [`NatsServer::start`] that also reads the configuration file
    /// `config` (`-c`; e.g. one that `include`s a generated authorisation). [`NatsServer::reload`]
    /// makes it re-read the file.
    pub fn start_with_config(config: &Path) -> NatsServer {
        let store = tempfile::tempdir().expect("temp dir for the JetStream store");
        let server = NatsServer { port: free_port(), store, child: Mutex::new(None), config: Some(config.to_path_buf()) };
        server.restart();
        server
    }

    /// The server process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(Child::id)
    }

    /// `nats-server --signal reload=<pid>`: the server re-reads its configuration file.
    ///
    /// # Panics
    /// When the server is not running or the signal cannot be sent.
    pub fn reload(&self) {
        let pid = self.pid().expect("nats-server is not running");
        let status = Command::new(nats_server_binary()).arg("--signal").arg(format!("reload={pid}")).status().expect("run nats-server --signal");
        assert!(status.success(), "nats-server --signal reload={pid} failed");
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.store.path().join("server.log")).unwrap_or_default()
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

    /// (Re)starts the server on the same port and store; waits until it is ready.
    pub fn restart(&self) {
        self.stop();
        let log = self.store.path().join("server.log");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let _ = std::fs::remove_file(&log);
            let mut cmd = Command::new(nats_server_binary());
            if let Some(c) = &self.config {
                cmd.arg("-c").arg(c);
            }
            let child = cmd
                .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
                .arg(self.store.path().join("js"))
                .arg("-l")
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start nats-server: {e}; {INSTALL_HINT}"));
            *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
            // Ready once the log says so and the port accepts connections.
            while Instant::now() < deadline {
                let ready = std::fs::read_to_string(&log).map(|s| s.contains("Server is ready")).unwrap_or(false);
                if ready && TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    return;
                }
                if let Some(c) = self.child.lock().unwrap_or_else(|e| e.into_inner()).as_mut()
                    && let Ok(Some(_)) = c.try_wait()
                {
                    break; // exited (port briefly in use after a kill): retry
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(Instant::now() < deadline, "nats-server did not become ready on port {}: {}", self.port, std::fs::read_to_string(&log).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
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
