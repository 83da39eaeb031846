//! Chart sources for the chart tests: a real OCI registry (Debian's `docker-registry`, CNCF
//! distribution) and a static Helm repository (`index.yaml` + archives over Python's
//! `http.server`), both on loopback, plus Helm's own SDK (helm-python-sdk) to package, push,
//! index and pull charts.
//!
//! A missing tool skips the test with a note, except under `CI=true`, where it fails:
//! `scripts/install-test-deps.sh` installs `docker-registry`, `scripts/test.sh` the SDK.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::free_port;

/// `docker-registry` (`$HARMONY_DOCKER_REGISTRY`, else on `PATH`); `None` with a note when
/// missing, a panic under `CI=true`.
pub fn docker_registry_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HARMONY_DOCKER_REGISTRY") {
        return Some(PathBuf::from(p));
    }
    let found = std::env::var_os("PATH").and_then(|path| std::env::split_paths(&path).map(|d| d.join("docker-registry")).find(|p| p.is_file()));
    if found.is_none() {
        assert!(std::env::var("CI").is_err(), "docker-registry not found on PATH: run scripts/install-test-deps.sh (Debian package docker-registry)");
        eprintln!("skipping: docker-registry not found (scripts/install-test-deps.sh installs it)");
    }
    found
}

/// How a [`Registry`] is started.
#[derive(Default, Clone)]
pub struct RegistryConfig {
    /// An htpasswd file (bcrypt): basic authentication.
    pub htpasswd: Option<PathBuf>,
    /// TLS certificate and key (PEM).
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// A running `docker-registry serve CONFIG` on a free loopback port with its own storage,
/// killed on drop; it can be stopped and started again with the same content.
pub struct Registry {
    port: u16,
    dir: tempfile::TempDir,
    binary: PathBuf,
    child: Mutex<Option<Child>>,
}

impl Registry {
    /// Starts a registry; `None` (skip) when `docker-registry` is missing outside CI.
    pub fn start(config: RegistryConfig) -> Option<Registry> {
        let binary = docker_registry_binary()?;
        let dir = tempfile::tempdir().expect("temp dir for the registry");
        let port = free_port();
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some((cert, key)) = &config.tls {
            yaml.push_str(&format!("  tls:\n    certificate: {}\n    key: {}\n", cert.display(), key.display()));
        }
        if let Some(h) = &config.htpasswd {
            yaml.push_str(&format!("auth:\n  htpasswd:\n    realm: harmony-test\n    path: {}\n", h.display()));
        }
        std::fs::write(dir.path().join("config.yml"), yaml).expect("write registry config");
        let r = Registry { port, dir, binary, child: Mutex::new(None) };
        r.restart();
        Some(r)
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Kills the registry and waits for it. Idempotent.
    pub fn stop(&self) {
        if let Some(mut c) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// (Re)starts it on the same port and storage; waits until it accepts connections.
    pub fn restart(&self) {
        self.stop();
        let log = std::fs::File::create(self.dir.path().join("registry.log")).expect("registry log");
        let child = Command::new(&self.binary)
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("registry log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        wait_for_port(self.port, &|| self.log());
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_for_port(port: u16, log: &dyn Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on 127.0.0.1:{port} after 15 s: {}", log());
}

/// A static Helm repository: a directory served by `python -m http.server` on loopback,
/// killed on drop.
pub struct StaticServer {
    port: u16,
    child: Child,
}

impl StaticServer {
    /// Serves `dir` with `python`.
    pub fn start(python: &Path, dir: &Path) -> StaticServer {
        let port = free_port();
        let child = Command::new(python)
            .args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string(), "--directory"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python -m http.server");
        wait_for_port(port, &String::new);
        StaticServer { port, child }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a Python snippet with Helm's SDK imported as `helm_python`; panics with its stderr
/// when it fails. Returns stdout.
pub fn helm_sdk(python: &Path, script: &str) -> String {
    helm_sdk_env(python, script, &[])
}

/// [`helm_sdk`] with more environment (e.g. `SSL_CERT_FILE`: the CA Helm's Go code trusts).
pub fn helm_sdk_env(python: &Path, script: &str, env: &[(&str, &str)]) -> String {
    let out = Command::new(python)
        .arg("-c")
        .arg(format!("import helm_python\nfrom helm_python import chart, registry\n{script}"))
        .envs(env.iter().copied())
        .output()
        .expect("run python");
    assert!(out.status.success(), "helm-python-sdk script failed:\n{script}\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `helm package DIR --destination DEST [--version V]`: the archive's path.
pub fn helm_package(python: &Path, chart_dir: &Path, dest: &Path, version: Option<&str>) -> PathBuf {
    let v = version.map(|v| format!(", version={v:?}")).unwrap_or_default();
    let out = helm_sdk(python, &format!("print(chart.package({:?}, destination={:?}{v}))", chart_dir.display().to_string(), dest.display().to_string()));
    PathBuf::from(out.trim())
}

/// `helm push TGZ oci://HOST/charts --plain-http`.
pub fn helm_push(python: &Path, tgz: &Path, remote: &str) {
    helm_sdk(python, &format!("registry.push({:?}, {remote:?}, plain_http=True)", tgz.display().to_string()));
}

/// `helm repo index DIR --url URL`.
pub fn helm_repo_index(python: &Path, dir: &Path, url: &str) {
    helm_sdk(python, &format!("registry.repo_index_generate({:?}, base_url={url:?})", dir.display().to_string()));
}

/// A CA and a server certificate for `127.0.0.1` signed by it, made with `openssl` in `dir`:
/// (CA certificate, server certificate, server key), PEM. `None` with a note when openssl is
/// missing, a panic under `CI=true`.
pub fn loopback_tls(dir: &Path) -> Option<(PathBuf, PathBuf, PathBuf)> {
    if Command::new("openssl").arg("version").output().is_err() {
        assert!(std::env::var("CI").is_err(), "openssl not found (Debian package openssl)");
        eprintln!("skipping: openssl not found");
        return None;
    }
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=harmony test CA"]);
    run(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n").expect("write ext.cnf");
    run(&["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf"]);
    Some((dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key")))
}
