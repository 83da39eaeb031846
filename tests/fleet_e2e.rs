//! End to end: the real `harmony` binary applies a small fixture repository's fleet to a real
//! nats-server; a real `harmony-agent` (podman) runs the plan and `harmony status` shows it Ready.
//!
//! Needs scripts/install-test-deps.sh (podman, busybox-static, nats-server) and the agent binary
//! (`cargo build -p harmony-agent`, same target directory).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use harmony_schemas::fleet::{encode_key, generate_signing_key};
use harmony_testkit::{NatsServer, busybox_image, podman};

fn harmony(repo: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_harmony"));
    c.arg("--repo").arg(repo).args(args).env_remove("HARMONY_SIGNING_KEY").env("NO_COLOR", "1");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run harmony")
}

fn agent_binary() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_harmony")).with_file_name("harmony-agent");
    if !p.is_file() {
        let status = Command::new(env!("CARGO")).args(["build", "-p", "harmony-agent", "--bin", "harmony-agent"]).status().expect("cargo build harmony-agent");
        assert!(status.success(), "building harmony-agent failed");
    }
    p
}

struct Agent(Child, String);
impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let ids = podman(&["ps", "-aq", "--filter", &format!("label=io.harmony.device={}", self.1)]);
        for id in ids.split_whitespace() {
            let _ = Command::new("podman").args(["rm", "-f", "-t", "0", id]).output();
        }
    }
}

#[test]
fn apply_then_agent_converges_and_status_is_ready() {
    let image = busybox_image("1");
    let server = NatsServer::start();
    let key = generate_signing_key().expect("key");
    let dir = tempfile::tempdir().expect("tmp");
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).expect("mkdir");
    let device = format!("e2e-{}", std::process::id());
    let w = |name: &str, text: String| std::fs::write(repo.join(name), text).expect("write");
    w("pico.pub", format!("{}\n", encode_key(key.verifying_key().as_bytes())));
    w(
        "fleet.kdl",
        format!(
            "fleet pico {{\n    nats \"{}\"\n    agent-version \"0.1.0\"\n    signing-key \"pico.pub\"\n    tenants acme\n}}\ntenant acme {{\n    namespaces acme\n}}\ndevice {device} {{\n    fleet pico\n    labels site=e2e\n}}\n",
            server.url()
        ),
    );
    w(
        "deploy.kdl",
        format!(
            "deployment web {{\n    tenant acme\n    fleet pico\n    selector site=e2e\n    container app {{\n        image \"{image}\"\n        args \"sh\" \"-c\" \"exec sleep 3600\"\n        env MODE=e2e\n    }}\n}}\n"
        ),
    );
    let keyfile = dir.path().join("pico.key");
    std::fs::write(&keyfile, encode_key(key.as_bytes())).expect("write key");
    let state = dir.path().join("state");
    let keyfile_s = keyfile.to_string_lossy().to_string();
    let state_s = state.to_string_lossy().to_string();
    let apply = |extra: &[&str]| {
        let mut args = vec!["apply", "--yes", "--signing-key-file", &keyfile_s, "--state-dir", &state_s];
        args.extend_from_slice(extra);
        harmony(&repo, &args, &[])
    };

    // Without --yes and without a terminal, nothing is applied.
    let out = harmony(&repo, &["apply", "--signing-key-file", &keyfile_s, "--state-dir", &state_s], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    // A wrong key is refused, naming both public keys and never printing the private one.
    let wrong = generate_signing_key().expect("key");
    let out = harmony(&repo, &["apply", "--yes"], &[("HARMONY_SIGNING_KEY", &encode_key(wrong.as_bytes()))]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains(&encode_key(key.verifying_key().as_bytes())) && err.contains(&encode_key(wrong.verifying_key().as_bytes())), "{err}");
    assert!(!err.contains(&encode_key(wrong.as_bytes())), "private key printed: {err}");

    let out = apply(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("1 to create") && stdout.contains("1 written"), "{stdout}");
    assert!(!stdout.contains(&encode_key(key.as_bytes())) && !String::from_utf8_lossy(&out.stderr).contains(&encode_key(key.as_bytes())));

    // Before the agent runs: unknown, exit 2 with --detailed-exitcode.
    let out = harmony(&repo, &["status", "--detailed-exitcode"], &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("unknown"));

    let agent_state = dir.path().join("agent");
    let child = Command::new(agent_binary())
        .args(["--device-id", &device, "--nats-url", &server.url(), "--runtime", "podman", "--heartbeat-interval", "1", "--label", "site=e2e"])
        .arg("--state-dir")
        .arg(&agent_state)
        .args(["--fleet-key", &encode_key(key.verifying_key().as_bytes())])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start harmony-agent");
    let _agent = Agent(child, device.clone());

    let deadline = Instant::now() + Duration::from_secs(90);
    let report = loop {
        let out = harmony(&repo, &["status", "--format", "json", "--detailed-exitcode"], &[]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if out.status.code() == Some(0) {
            break v;
        }
        assert!(Instant::now() < deadline, "device never became ready: {}", String::from_utf8_lossy(&out.stdout));
        std::thread::sleep(Duration::from_millis(500));
    };
    let d = &report["fleets"][0]["devices"][0];
    assert_eq!(d["device"], device.as_str());
    assert_eq!(d["condition"], "ready");
    assert_eq!((d["desired_generation"].as_u64(), d["applied_generation"].as_u64()), (Some(1), Some(1)));
    assert_eq!(d["deployments"][0]["name"], "web");
    assert_eq!(d["deployments"][0]["state"], "running");
    let human = harmony(&repo, &["status"], &[]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("ready"), "{human:?}");

    // Second apply writes nothing.
    let out = apply(&[]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to write"), "{out:?}");
}
