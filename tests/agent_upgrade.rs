//! Issue 9's agent-upgrade acceptance between two real builds of `harmony-agent`: the normal
//! one (version `0.1.0`) and one built with `--features next-version` (`0.1.0-next`). The
//! binary is published with `harmony fleet publish-agent`, the fleet's `agent-version` is
//! changed, and `harmony apply` rolls the upgrade out; the agent (runtime disabled: podman adds
//! nothing to an upgrade) downloads, verifies, self-tests, swaps `current`, starts the new
//! version and is retired by the executor. Two broken "new versions" (a binary failing
//! `--self-test`, one that never heartbeats) must leave exactly the old agent running.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::fleet::{Agent, Fleet, agent_binary, next_binary, text};

const OLD: &str = env!("CARGO_PKG_VERSION");

/// Processes running an agent for `device` (not self-tests): by their command line.
fn agent_processes(device: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
        let args: Vec<String> = cmd.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        if args.windows(2).any(|w| w[0] == "--device-id" && w[1] == device) && !args.iter().any(|a| a == "--self-test") {
            out.push((pid, args.join(" ")));
        }
    }
    out
}

fn kill_all(device: &str) {
    for (pid, _) in agent_processes(device) {
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    }
}

/// A fleet of one device whose agent runs `install/current` → `harmony-agent-<OLD>`.
struct Setup {
    f: Fleet,
    device: String,
    install: PathBuf,
    agent: Option<Agent>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.agent.take();
        kill_all(&self.device);
    }
}

fn setup(name: &str, upgrade_timeout: &str) -> Setup {
    setup_env(name, upgrade_timeout, &[])
}

fn setup_env(name: &str, upgrade_timeout: &str, env: &[(&str, &str)]) -> Setup {
    // Builds the second version first: while it builds, the normal binary's path briefly holds it.
    next_binary();
    let v = Command::new(agent_binary()).arg("--version").output().expect("run agent");
    assert_eq!(String::from_utf8_lossy(&v.stdout).trim(), format!("harmony-agent {OLD}"));
    let mut f = Fleet::new(&[name]);
    let device = f.devices[0].clone();
    let install = f.dir.path().join("install");
    std::fs::create_dir_all(&install).expect("mkdir");
    std::fs::copy(agent_binary(), install.join(format!("harmony-agent-{OLD}"))).expect("install");
    std::os::unix::fs::symlink(format!("harmony-agent-{OLD}"), install.join("current")).expect("symlink");
    let exe = install.join("current");
    let install_arg = install.to_string_lossy().into_owned();
    let agent = f.start_agent_exe(&exe, &device, "none", &["--install-dir", &install_arg, "--upgrade-timeout", upgrade_timeout], env);
    // A fleet rollout for agent upgrades with a short wait.
    f.set_agent_version(OLD, "    rollout {\n        step 100\n        health-timeout \"20s\"\n    }\n");
    f.apply();
    f.wait_ready(&device, 1);
    Setup { f, device, install, agent: Some(agent) }
}

fn publish_output(s: &Setup, version: &str, binary: &Path) -> std::process::Output {
    let binary = binary.to_string_lossy();
    let key = s.f.key_file();
    s.f.harmony(&["fleet", "publish-agent", "--fleet", "pico", "--agent-version", version, &binary, "--signing-key-file", &key])
}

fn publish(s: &Setup, version: &str, binary: &Path) {
    let out = publish_output(s, version, binary);
    assert!(out.status.success(), "publish: {}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("published harmony-agent {version}")), "{}", text(&out));
}

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    p
}

/// Waits until exactly one agent process runs for the device; returns its pid and command line.
fn exactly_one(device: &str) -> (u32, String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let p = agent_processes(device);
        if p.len() == 1 {
            return p[0].clone();
        }
        assert!(Instant::now() < deadline, "expected exactly one agent for {device}, found {p:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn upgrade_to_a_second_build_swaps_current_and_retires_the_old_agent() {
    let next = next_binary();
    // systemd's notification socket: READY=1 from each agent, MAINPID=<new> from the retired one.
    let notify_dir = tempfile::tempdir().expect("tmp");
    let notify_path = notify_dir.path().join("notify");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).expect("bind notify socket");
    notify.set_read_timeout(Some(Duration::from_secs(1))).expect("timeout");
    let mut s = setup_env("upg-ok", "60", &[("NOTIFY_SOCKET", &notify_path.to_string_lossy())]);
    let new_version = format!("{OLD}-next");
    publish(&s, &new_version, &next);
    // Publishing again is a no-op; other bytes under the same version are refused.
    let again = publish_output(&s, &new_version, &next);
    assert!(String::from_utf8_lossy(&again.stdout).contains("already published"), "{}", text(&again));
    let other = publish_output(&s, &new_version, &agent_binary());
    assert!(!other.status.success() && text(&other).contains("versions are immutable"), "{}", text(&other));

    s.f.set_agent_version(&new_version, "");
    let plan = s.f.harmony(&["plan"]);
    assert!(text(&plan).contains(&format!("rollout of agent {new_version} over 1 devices")), "{}", text(&plan));
    let out = s.f.apply();
    assert!(out.contains(&format!("rollout of agent {new_version} complete")), "{out}");
    // The old agent exited (retired) by itself; exactly one agent runs: the new version.
    let mut old = s.agent.take().expect("agent");
    let deadline = Instant::now() + Duration::from_secs(20);
    while old.try_wait().is_none() {
        assert!(Instant::now() < deadline, "the old agent did not exit: {}", old.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(old.log().contains("retired: the new agent runs"), "{}", old.log());
    let (new_pid, _) = exactly_one(&s.device);
    let mut messages = Vec::new();
    let mut buf = [0u8; 256];
    while let Ok(n) = notify.recv(&mut buf) {
        messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert_eq!(messages.iter().filter(|m| *m == "READY=1").count(), 2, "both agents report ready: {messages:?}");
    assert!(messages.contains(&format!("MAINPID={new_pid}")), "the unit follows the new agent: {messages:?}");
    let d = s.f.wait_ready(&s.device, 2);
    assert_eq!(d["agent_version"], new_version.as_str());
    assert_eq!(std::fs::read_link(s.install.join("current")).expect("current"), Path::new(&format!("harmony-agent-{new_version}")));
    assert!(s.install.join(format!("harmony-agent-{OLD}")).is_file(), "the old binary stays on disk");
    let staged = std::fs::read(s.install.join(format!("harmony-agent-{new_version}"))).expect("staged");
    assert_eq!(staged, std::fs::read(&next).expect("next"), "the staged binary is the published one");
    // Rolling back is the same procedure towards the previous version (published like any
    // other; the device still has it on disk and checks its digest).
    publish(&s, OLD, &agent_binary());
    s.f.set_agent_version(OLD, "");
    let back = s.f.apply();
    assert!(back.contains(&format!("rollout of agent {OLD} complete")), "{back}");
    exactly_one(&s.device);
    let d = s.f.wait_ready(&s.device, 3);
    assert_eq!(d["agent_version"], OLD);
    assert_eq!(std::fs::read_link(s.install.join("current")).expect("current"), Path::new(&format!("harmony-agent-{OLD}")));
    drop(old);
}

fn failed_upgrade(name: &str, bad_version: &str, body: &str, want: &str) {
    failed_upgrade_after(name, bad_version, body, want, true, |_, _| {});
}

/// Replaces the published bytes of agent `version` in the object store with `bytes` (the signed
/// description copied); with `declared_size`, the object's metadata then claims that size.
fn replace_object(s: &Setup, version: &str, bytes: &[u8], declared_size: Option<usize>) {
    use base64::Engine as _;
    let url = s.f.server.url();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(url.as_str()).await.expect("connect"));
        let store = js.get_object_store(harmony_schemas::fleet::AGENTS_OBJECT_STORE).await.expect("store");
        let info = store.info(harmony_schemas::fleet::agent_object_name(version)).await.expect("published");
        let meta = async_nats::jetstream::object_store::ObjectMetadata {
            name: info.name.clone(),
            description: info.description.clone(),
            metadata: info.metadata.clone(),
            ..Default::default()
        };
        store.put(meta, &mut &bytes[..]).await.expect("replace the bytes");
        if let Some(size) = declared_size {
            let mut info = store.info(harmony_schemas::fleet::agent_object_name(version)).await.expect("replaced");
            info.size = size;
            let subject = format!(
                "$O.{}.M.{}",
                harmony_schemas::fleet::AGENTS_OBJECT_STORE,
                base64::engine::general_purpose::URL_SAFE.encode(harmony_schemas::fleet::agent_object_name(version))
            );
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Rollup", "sub");
            let ack = js.publish_with_headers(subject, headers, serde_json::to_vec(&info).expect("json").into()).await.expect("publish");
            ack.await.expect("metadata rewritten");
        }
    });
}

/// The agent's peak resident memory (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kb = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok()).expect("VmHWM");
    kb * 1024
}

const HUGE: usize = 96 << 20;

/// Issue 20, item 10. Someone with write access to the object store replaces a published agent
/// with 96 MiB, its metadata still claiming the size the signed plan declares (so that apply's
/// check passes): the agent streams the download to disk and aborts it as soon as more bytes
/// arrive than declared, keeping nothing (it read the whole object into memory, then checked
/// the digest). An object whose metadata names another size is refused before any chunk is
/// read (`agent/src/upgrade.rs` test `downloads_check_the_declared_size_first_and_stream`).
#[test]
fn attack_agent_object_longer_than_declared_is_aborted() {
    let body = "case \" $* \" in *\" --self-test \"*) echo ok; exit 0;; esac\nwhile :; do sleep 1; done";
    let declared = format!("#!/bin/sh\n{body}\n").len();
    let s = failed_upgrade_after("upg-long", "0.1.1-long", body, "download aborted after", false, |s, _| {
        replace_object(s, "0.1.1-long", &vec![0x5a; HUGE], Some(declared))
    });
    let (pid, _) = exactly_one(&s.device);
    let peak = peak_rss(pid);
    assert!(peak < (HUGE / 2) as u64, "the agent's memory peaked at {peak} bytes for a {HUGE}-byte object");
    let partial: Vec<_> = std::fs::read_dir(&s.install).expect("install dir").flatten().map(|e| e.file_name()).collect();
    assert!(partial.iter().all(|n| !n.to_string_lossy().contains("partial")), "a partial download was left: {partial:?}");
}

/// [`failed_upgrade`], calling `meddle(setup, published binary)` between publishing and
/// applying; `kept`: whether the new version's binary stays on disk (verified binaries are never
/// deleted; refused ones are never written).
fn failed_upgrade_after(name: &str, bad_version: &str, body: &str, want: &str, kept: bool, meddle: impl Fn(&Setup, &Path)) -> Setup {
    let mut s = setup(name, "4");
    let bad = script(s.f.dir.path(), "bad-agent", body);
    publish(&s, bad_version, &bad);
    meddle(&s, &bad);
    s.f.set_agent_version(bad_version, "");
    let out = s.f.try_apply(&[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "a failed upgrade fails the apply: {t}");
    assert!(t.contains(&format!("failed in step 1: agent upgrade {OLD} → {bad_version} failed")) && t.contains(want), "{t}");
    // Exactly one agent runs, the old one (our child), reporting the old version.
    let agent = s.agent.as_mut().expect("agent");
    assert!(agent.try_wait().is_none(), "the old agent keeps running: {}", agent.log());
    let (_, only) = exactly_one(&s.device);
    assert!(only.contains(&format!("{}", s.install.join("current").display())), "{only}");
    let (d, _) = s.f.status(&s.device);
    assert_eq!(d["agent_version"], OLD, "{d:#}");
    assert_eq!(d["upgrade"]["state"], "failed", "{d:#}");
    assert_eq!(std::fs::read_link(s.install.join("current")).expect("current"), Path::new(&format!("harmony-agent-{OLD}")), "current switched back");
    assert!(s.install.join(format!("harmony-agent-{OLD}")).is_file(), "the old binary stays on disk");
    assert_eq!(s.install.join(format!("harmony-agent-{bad_version}")).is_file(), kept, "the new version's binary on disk");
    // Status says why, in words.
    let human = text(&s.f.harmony(&["status"]));
    assert!(human.contains(&format!("agent upgrade {OLD} → {bad_version} (generation 2): failed")), "{human}");
    s
}

#[test]
fn a_new_binary_failing_its_self_test_is_never_started() {
    failed_upgrade("upg-selftest", "0.1.1-broken", "echo 'state_dir: cannot open' >&2; exit 3", "--self-test failed (exit status: 3): state_dir: cannot open");
}

#[test]
fn a_new_agent_that_never_heartbeats_is_stopped_and_current_switched_back() {
    failed_upgrade(
        "upg-silent",
        "0.1.1-silent",
        "case \" $* \" in *\" --self-test \"*) echo ok; exit 0;; esac\nwhile :; do sleep 1; done",
        "was not retired within 4 s",
    );
}

/// Someone with write access to the object store swaps the published bytes (same size, the
/// signed description copied, the store's own digest made to match): apply still names the
/// published digest, and the agent refuses what it downloads, never runs or keeps it.
#[test]
fn a_binary_swapped_in_the_object_store_is_refused_by_its_digest() {
    let version = "0.1.1-swapped";
    failed_upgrade_after(
        "upg-swapped",
        version,
        "case \" $* \" in *\" --self-test \"*) echo ok; exit 0;; esac\nwhile :; do sleep 1; done",
        "the signed plan says",
        false,
        |s, published| {
            let mut bytes = std::fs::read(published).expect("read");
            let last = bytes.len() - 2;
            bytes[last] ^= 0x01;
            replace_object(s, version, &bytes, None);
        },
    );
}

/// Issue 19: `harmony apply PLANFILE` performs the agent upgrade the plan holds: the plan file
/// carries the device's `agent` unit with its payload (the version, written by the device's
/// plan, which names the published artifact), and applying the file alone — the repository
/// changed back after planning — upgrades the agent through the planned rollout.
#[test]
fn apply_planfile_performs_the_planned_agent_upgrade() {
    let next = next_binary();
    let mut s = setup("upg-file", "60");
    let new_version = format!("{OLD}-next");
    publish(&s, &new_version, &next);
    s.f.set_agent_version(&new_version, "    rollout {\n        step 100\n        health-timeout \"20s\"\n    }\n");
    let key = s.f.dir.path().join("fingerprint.key");
    std::fs::write(&key, "07".repeat(32)).expect("write key");
    let env = [("HARMONY_FINGERPRINT_KEY_FILE", key.to_str().expect("utf-8"))];
    let file = s.f.dir.path().join("upgrade.json");
    let out = common::fleet::harmony(&s.f.repo, &["plan", "--out", file.to_str().expect("utf-8"), "--format", "json"], &env);
    assert!(out.status.success(), "{}", text(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan json");
    let agent_unit = format!("agent/pico/{}", s.device);
    let action = plan["actions"].as_array().expect("actions").iter().find(|a| a["unit"] == agent_unit.as_str()).expect("the agent unit").clone();
    assert_eq!((action["apply"]["action"].as_str(), action["apply"]["payload"]["kind"].as_str()), (Some("update"), Some("agent")), "{action:#}");
    let device_plan = plan["actions"].as_array().expect("actions").iter().find(|a| a["unit"] == format!("device-plan/pico/{}", s.device)).expect("the device plan").clone();
    assert_eq!(device_plan["apply"]["payload"]["plan"]["agent_version"], new_version.as_str(), "{device_plan:#}");
    assert!(device_plan["apply"]["payload"]["plan"]["agent"].is_object(), "the plan names the published artifact: {device_plan:#}");
    // The repository goes back to the old version: the file alone drives the apply.
    s.f.set_agent_version(OLD, "    rollout {\n        step 100\n        health-timeout \"20s\"\n    }\n");
    let mut args = s.f.apply_args();
    args.extend([file.to_str().expect("utf-8").to_string(), "--format".into(), "json".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = common::fleet::harmony(&s.f.repo, &args, &env);
    assert!(out.status.success(), "{}", text(&out));
    let outcome = common::apply_outcome(&out.stdout);
    let result = outcome["actions"].as_array().expect("actions").iter().find(|a| a["unit"] == agent_unit.as_str()).expect("agent result").clone();
    assert_eq!(result["outcome"], "applied", "{outcome:#}");
    assert!(result["message"].as_str().is_some_and(|m| m.starts_with(&format!("written by device-plan/pico/{}", s.device))), "{outcome:#}");
    let rollout = &outcome["fleets"][0]["rollout"];
    assert_eq!((rollout["state"].as_str(), rollout["what"][0].as_str()), (Some("complete"), Some(format!("agent {new_version}").as_str())), "{outcome:#}");
    // The device runs the new agent, the old one retired itself.
    let d = s.f.wait_ready(&s.device, 2);
    assert_eq!(d["agent_version"], new_version.as_str());
    assert_eq!(std::fs::read_link(s.install.join("current")).expect("current"), Path::new(&format!("harmony-agent-{new_version}")));
    exactly_one(&s.device);
    drop(s.agent.take());
}
