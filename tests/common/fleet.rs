//! A fleet under test for the end-to-end tests: a real nats-server, a fixture repository in a
//! temporary directory (edited by the tests), the real `harmony` binary and real
//! `harmony-agent` processes with podman.
//!
//! Needs scripts/install-test-deps.sh (podman, busybox-static, nats-server) and the agent binary
//! (built on demand into the same target directory).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use harmony_schemas::fleet::{SigningKey, encode_key, generate_signing_key};
use harmony_testkit::{NatsServer, podman};

/// Runs `harmony --repo REPO ARGS…` with `env`; `$HARMONY_SIGNING_KEY`, `$HARMONY_COMMAND_KEY` unset.
pub fn harmony(repo: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_harmony"));
    c.arg("--repo").arg(repo).args(args).env_remove("HARMONY_SIGNING_KEY").env_remove("HARMONY_COMMAND_KEY").env("NO_COLOR", "1");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run harmony")
}

/// Serialises building the agent: [`next_binary`] builds the `next-version` feature set, which
/// cargo puts at `target/debug/harmony-agent` until the normal build is linked back.
static AGENT_BUILDS: std::sync::Mutex<bool> = std::sync::Mutex::new(false);

fn build_agent(features: &[&str]) {
    let status = Command::new(env!("CARGO")).args(["build", "-p", "harmony-agent", "--bin", "harmony-agent"]).args(features).status().expect("cargo build");
    assert!(status.success(), "building harmony-agent {features:?} failed");
}

/// The normal `harmony-agent` build, as a path no other test's build can change: a hard link
/// (same inode; cargo replaces `target/debug/harmony-agent` by linking a new file there, never by
/// writing into it) made once per test binary, while no `next-version` build is in place.
pub fn agent_binary() -> PathBuf {
    static STABLE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    STABLE
        .get_or_init(|| {
            let _builds = AGENT_BUILDS.lock().unwrap_or_else(|e| e.into_inner());
            let normal = Path::new(env!("CARGO_BIN_EXE_harmony")).with_file_name("harmony-agent");
            // Always (cargo: a no-op when up to date): `cargo test --test <file>` does not build
            // other packages' binaries, and an agent left from an older checkout would be tested.
            build_agent(&[]);
            let dir = normal.with_file_name("test-agents");
            std::fs::create_dir_all(&dir).expect("create target/debug/test-agents");
            let me = std::env::current_exe().expect("current exe");
            let stable = dir.join(format!("harmony-agent-for-{}", me.file_name().unwrap().to_string_lossy()));
            let _ = std::fs::remove_file(&stable);
            std::fs::hard_link(&normal, &stable).or_else(|_| std::fs::copy(&normal, &stable).map(|_| ())).expect("link the agent build");
            stable
        })
        .clone()
}

/// The `next-version` build of the agent, next to the normal one. Built (cargo: a no-op when
/// up to date; both builds stay cached) once per test run, then the normal binary is put back.
/// Agents the tests start run [`agent_binary`]'s link, which this never changes.
pub fn next_binary() -> PathBuf {
    let stable = agent_binary();
    let mut built = AGENT_BUILDS.lock().unwrap_or_else(|e| e.into_inner());
    let next = stable.with_file_name("harmony-agent-next");
    if !*built {
        build_agent(&["--features", "next-version"]);
        let normal = Path::new(env!("CARGO_BIN_EXE_harmony")).with_file_name("harmony-agent");
        let _ = std::fs::remove_file(&next);
        std::fs::copy(&normal, &next).expect("copy the next build");
        build_agent(&[]);
        *built = true;
    }
    let v = spawn_written_executable(Command::new(&next).arg("--version").stdout(Stdio::piped())).and_then(|c| c.wait_with_output()).expect("run next");
    assert_eq!(
        String::from_utf8_lossy(&v.stdout).trim(),
        format!("harmony-agent {}-next", env!("CARGO_PKG_VERSION")),
        "the second build reports another version"
    );
    next
}

/// Stdout and stderr of a run, for assertion messages.
pub fn text(o: &Output) -> String {
    format!("exit {:?}\nstdout:\n{}\nstderr:\n{}", o.status.code(), String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A running `harmony-agent`; killed (SIGKILL) on drop. Its containers are left to [`Fleet`]'s drop.
pub struct Agent {
    child: Child,
    /// Its stderr log.
    pub log: PathBuf,
}

impl Agent {
    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Podman writes of its last reconcile (`reconciled: podman writes=N`).
    pub fn last_writes(&self) -> Option<u64> {
        self.log().lines().filter_map(|l| l.split("podman writes=").nth(1)).filter_map(|r| r.split_whitespace().next()?.parse().ok()).next_back()
    }

    /// Its exit status, if it exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Kills it (SIGKILL) and waits.
    pub fn kill(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One fleet `pico` with its devices, repository, keys and nats-server.
pub struct Fleet {
    /// The server (stop/restart for outage tests).
    pub server: NatsServer,
    /// Temporary directory: `repo/`, keys, journal state, agent state dirs and logs.
    pub dir: tempfile::TempDir,
    /// The fixture repository.
    pub repo: PathBuf,
    /// The fleet's signing key (its file is `dir/pico.key`).
    pub fleet_key: SigningKey,
    /// The operator's command key the agents trust (its file is `dir/command.key`).
    pub command_key: SigningKey,
    /// Device ids (unique per test run), all labelled `site=e2e`.
    pub devices: Vec<String>,
    starts: u32,
}

impl Fleet {
    /// Starts a nats-server and writes a repository declaring fleet `pico`, tenant `acme` and
    /// one device per `names` entry (ids made unique with the process id), without deployments.
    pub fn new(names: &[&str]) -> Fleet {
        let server = NatsServer::start();
        let dir = tempfile::tempdir().expect("tmp");
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(&repo).expect("mkdir");
        let fleet_key = generate_signing_key().expect("key");
        let command_key = generate_signing_key().expect("key");
        std::fs::write(dir.path().join("pico.key"), encode_key(fleet_key.as_bytes())).expect("write key");
        std::fs::write(dir.path().join("command.key"), encode_key(command_key.as_bytes())).expect("write key");
        std::fs::write(repo.join("pico.pub"), format!("{}\n", encode_key(fleet_key.verifying_key().as_bytes()))).expect("write");
        let devices: Vec<String> = names.iter().map(|n| format!("{n}-{}", std::process::id())).collect();
        let mut kdl = format!(
            "fleet pico {{\n    nats \"{}\"\n    agent-version \"0.1.0\"\n    signing-key \"pico.pub\"\n    tenants acme\n}}\ntenant acme {{\n    namespaces acme\n}}\n",
            server.url()
        );
        for d in &devices {
            kdl.push_str(&format!("device {d} {{\n    fleet pico\n    labels site=e2e\n}}\n"));
        }
        std::fs::write(repo.join("fleet.kdl"), kdl).expect("write");
        let f = Fleet { server, dir, repo, fleet_key, command_key, devices, starts: 0 };
        f.set_deployments("");
        f
    }

    /// The signing key file.
    pub fn key_file(&self) -> String {
        self.dir.path().join("pico.key").to_string_lossy().into_owned()
    }

    /// The command key file.
    pub fn command_key_file(&self) -> String {
        self.dir.path().join("command.key").to_string_lossy().into_owned()
    }

    /// Sets the fleet's `agent-version` and adds `extra` (KDL children, e.g. a `rollout` block)
    /// to the `fleet` node.
    pub fn set_agent_version(&self, version: &str, extra: &str) {
        let path = self.repo.join("fleet.kdl");
        let text = std::fs::read_to_string(&path).expect("read fleet.kdl");
        let mut out = String::new();
        for line in text.lines() {
            if line.trim_start().starts_with("agent-version ") {
                out.push_str(&format!("    agent-version \"{version}\"\n"));
            } else if line.trim_start().starts_with("tenants acme") && !extra.is_empty() && !text.contains(extra) {
                out.push_str(extra);
                out.push_str(line);
                out.push('\n');
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        std::fs::write(path, out).expect("write fleet.kdl");
    }

    /// Replaces the repository's deployments (KDL text of `deployment` nodes).
    pub fn set_deployments(&self, kdl: &str) {
        std::fs::write(self.repo.join("deploy.kdl"), kdl).expect("write deploy.kdl");
    }

    /// `harmony ARGS…` on the fixture repository.
    pub fn harmony(&self, args: &[&str]) -> Output {
        harmony(&self.repo, args, &[])
    }

    /// `harmony apply --yes` with the fleet's key; asserts success and returns stdout.
    pub fn apply(&self) -> String {
        let out = self.try_apply(&[]);
        assert!(out.status.success(), "harmony apply failed: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The arguments of `harmony apply --yes` with the fleet's key and the test's state dir.
    pub fn apply_args(&self) -> Vec<String> {
        let state = self.dir.path().join("harmony-state");
        ["apply", "--yes", "--signing-key-file", &self.key_file(), "--state-dir", &state.to_string_lossy()].iter().map(|s| s.to_string()).collect()
    }

    /// `harmony apply --yes ARGS…`, whatever its outcome.
    pub fn try_apply(&self, extra: &[&str]) -> Output {
        let mut args = self.apply_args();
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.harmony(&args)
    }

    /// `harmony status --format json`: the report of `device`, and the whole document.
    pub fn status(&self, device: &str) -> (serde_json::Value, serde_json::Value) {
        let out = self.harmony(&["status", "--format", "json"]);
        assert!(out.status.success(), "harmony status failed: {}", text(&out));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
        let d = doc["fleets"][0]["devices"].as_array().and_then(|a| a.iter().find(|d| d["device"] == device).cloned()).unwrap_or_default();
        (d, doc)
    }

    /// Polls `harmony status --format json` until `device`'s report satisfies `pred`.
    pub fn wait_status(&self, device: &str, what: &str, timeout: Duration, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (d, _) = self.status(device);
            if pred(&d) {
                return d;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; last status of {device}: {d:#}");
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Waits until `device` is `ready` at its desired generation, which must be `generation`.
    pub fn wait_ready(&self, device: &str, generation: u64) -> serde_json::Value {
        self.wait_status(device, &format!("ready at generation {generation}"), Duration::from_secs(60), |d| {
            d["condition"] == "ready" && d["applied_generation"] == generation && d["desired_generation"] == generation
        })
    }

    /// Starts `harmony-agent` for `device` (podman runtime, heartbeat every second, trusting the
    /// fleet key and the command key; state in `dir/agent-<device>`, log in `dir/agent-<device>-N.log`).
    pub fn start_agent(&mut self, device: &str) -> Agent {
        self.start_agent_with(device, "podman", &[])
    }

    /// [`Fleet::start_agent`] with another runtime (`none`: runs nothing, reports plans applied)
    /// and extra arguments.
    pub fn start_agent_with(&mut self, device: &str, runtime: &str, extra: &[&str]) -> Agent {
        self.start_agent_exe(&agent_binary(), device, runtime, extra, &[])
    }

    /// [`Fleet::start_agent_with`] running `exe`, with `env` added to its environment.
    pub fn start_agent_exe(&mut self, exe: &Path, device: &str, runtime: &str, extra: &[&str], env: &[(&str, &str)]) -> Agent {
        self.starts += 1;
        let log = self.dir.path().join(format!("agent-{device}-{}.log", self.starts));
        let mut cmd = Command::new(exe);
        cmd.args(["--device-id", device, "--nats-url", &self.server.url(), "--runtime", runtime, "--heartbeat-interval", "1", "--label", "site=e2e"])
            .args(extra)
            .arg("--state-dir")
            .arg(self.dir.path().join(format!("agent-{device}")))
            .args(["--fleet-key", &encode_key(self.fleet_key.verifying_key().as_bytes())])
            .args(["--command-key", &encode_key(self.command_key.verifying_key().as_bytes())])
            .env("HARMONY_AGENT_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("agent log"));
        let child = spawn_written_executable(&mut cmd).expect("start harmony-agent");
        Agent { child, log }
    }

    /// `device`'s containers (by harmony label): `deployment/container/kind` → (id, state).
    pub fn containers(&self, device: &str) -> BTreeMap<String, (String, String)> {
        harmony_testkit::harmony_containers(device)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for d in &self.devices {
            let ids = podman(&["ps", "-aq", "--filter", &format!("label=io.harmony.device={d}")]);
            for id in ids.split_whitespace() {
                let _ = Command::new("podman").args(["rm", "-f", "-t", "0", id]).output();
            }
        }
    }
}

/// Spawns `cmd`, whose program a test has just written (a copied agent binary). While another
/// test thread forks, the child briefly holds the written file's descriptor until its own
/// exec, and exec of the file fails with ETXTBSY ("Text file busy"); that passes within
/// milliseconds, so the spawn is retried for up to 2 s.
pub fn spawn_written_executable(cmd: &mut Command) -> std::io::Result<std::process::Child> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match cmd.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}
