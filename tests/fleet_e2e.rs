//! End to end, issue 7's acceptance through the real binaries: `harmony apply` writes a fixture
//! repository's fleet to a real nats-server, real `harmony-agent` processes run the plans with
//! podman, and every outcome is read back through `harmony status` (JSON and human) and
//! `harmony device`. Changes are made by editing the fixture repository; only the attacker of
//! the rejection test writes KV directly.
//!
//! Needs scripts/install-test-deps.sh (podman, busybox-static, nats-server) and the agent binary
//! (`cargo build -p harmony-agent`, same target directory; built on demand).
//! Every test keeps a foreign container (no harmony labels) running and checks it survives.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::fleet::{Fleet, agent_binary, harmony, text};
use harmony_schemas::fleet::{
    CommandReply, CommandRequest, DeploymentPlan, DevicePlan, PLANS_BUCKET, RefusalReason, Service, SignedDevicePlan, Verb, command_subject, encode_key,
    generate_signing_key,
};
use harmony_testkit::{ForeignContainer, NatsServer, busybox_image, podman};

fn foreign(tag: &str) -> ForeignContainer {
    ForeignContainer::start(&busybox_image("1"), &format!("foreign-e2e-{tag}-{}", std::process::id()))
}

/// Deployment `web`: init container `migrate`, then service `app` (prints two lines, sleeps).
fn web(image: &str, mode: &str) -> String {
    format!(
        r#"deployment web {{
    tenant acme
    fleet pico
    selector site=e2e
    init-container migrate {{
        image "{image}"
        args "sh" "-c" "echo migrating"
        timeout "30s"
    }}
    container app {{
        image "{image}"
        args "sh" "-c" "echo line-one; echo line-two; exec sleep 3600"
        env MODE={mode}
    }}
}}
"#
    )
}

/// A deployment with one service and no init container.
fn plain(name: &str, image: &str) -> String {
    format!(
        "deployment {name} {{\n    tenant acme\n    fleet pico\n    selector site=e2e\n    container app {{\n        image \"{image}\"\n        args \"sleep\" \"3600\"\n    }}\n}}\n"
    )
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
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
    assert!(stdout.contains(&format!("+ device-plan/pico/{device} create")) && stdout.contains("fleet pico: 1 written"), "{stdout}");
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
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start harmony-agent");
    struct Cleanup(std::process::Child, String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
            for id in podman(&["ps", "-aq", "--filter", &format!("label=io.harmony.device={}", self.1)]).split_whitespace() {
                let _ = Command::new("podman").args(["rm", "-f", "-t", "0", id]).output();
            }
        }
    }
    let _agent = Cleanup(child, device.clone());

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

    // The container removed behind the agent's back: recreated, and `harmony status` shows the
    // drift (docs/agent.md, "Observing podman and repairing drift").
    assert!(d["observed_age_s"].is_u64(), "the status says when podman was observed: {d}");
    let id = podman(&["ps", "-q", "--no-trunc", "--filter", &format!("label=io.harmony.device={device}")]);
    podman(&["rm", "-f", "-t", "0", id.trim()]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = harmony(&repo, &["status"], &[]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if text.contains("web/app: missing → recreated") {
            break;
        }
        assert!(Instant::now() < deadline, "no drift shown within 30 s: {text}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let now = podman(&["ps", "-q", "--no-trunc", "--filter", &format!("label=io.harmony.device={device}")]);
    assert!(!now.trim().is_empty() && now.trim() != id.trim(), "recreated: {now}");
    // `harmony plan` shows the drifting device (what was found, what was done), as no action.
    let out = harmony(&repo, &["plan"], &[]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{out:?}");
    assert!(text.contains("Device drift: 1 device reports") && text.contains(&format!("fleet pico, device {device}: web/app: missing → recreated")), "{text}");
    assert!(text.contains("No changes"), "drift is not an action: {text}");
    let plan_file = dir.path().join("drift.plan");
    let out = harmony(&repo, &["plan", "--format", "json", "--out", &plan_file.to_string_lossy()], &[]);
    assert!(out.status.success(), "{out:?}");
    let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&plan_file).expect("plan file")).expect("json");
    let drift = &saved["device_drift"][0];
    assert_eq!((drift["fleet"].as_str(), drift["device"].as_str()), (Some("pico"), Some(device.as_str())), "{saved:#}");
    assert!(drift["drift"].as_array().is_some_and(|d| d.iter().any(|x| x["found"] == "missing" && x["action"] == "recreated")), "{saved:#}");
    let shown = String::from_utf8_lossy(&harmony(&repo, &["show", &plan_file.to_string_lossy()], &[]).stdout).to_string();
    assert!(shown.contains("web/app: missing → recreated"), "`harmony show` prints it again: {shown}");
    // The drift is sealed with the file: the saved plan applies (nothing to write), and so
    // does `harmony apply` without a file, while the device still reports it (before: both
    // refused the plan as edited after planning, the seal having been made without it).
    let out = apply(&[&plan_file.to_string_lossy()]);
    assert!(out.status.success(), "the drift plan applies: {out:?}");
    let out = apply(&[]);
    assert!(out.status.success(), "apply while a device reports drift: {out:?}");
}

/// Lifecycle (init container, replace on env and image change, unchanged untouched, removal),
/// `harmony device ping/logs/exec`, an unsigned exec refused, NATS outage, agent kill/restart.
#[test]
fn lifecycle_commands_outage_and_restart_through_the_binaries() {
    let img1 = busybox_image("1");
    let img2 = busybox_image("2");
    let foreign = foreign("life");
    let mut f = Fleet::new(&["life"]);
    let dev = f.devices[0].clone();
    let keyf = f.command_key_file();
    let service = |f: &Fleet| f.containers(&dev).get("web/app/service").cloned().unwrap_or_default();

    // 1. An init container, then the service: running; the init container is gone.
    f.set_deployments(&web(&img1, "a"));
    let out = f.apply();
    assert!(out.contains(&format!("+ device-plan/pico/{dev} create")), "{out}");
    let mut agent = f.start_agent(&dev);
    let d = f.wait_ready(&dev, 1);
    assert_eq!(d["deployments"][0]["name"], "web");
    assert_eq!(d["deployments"][0]["state"], "running");
    let c = f.containers(&dev);
    assert_eq!(c.keys().collect::<Vec<_>>(), ["web/app/service"], "init containers are removed after they exit: {c:?}");
    let (id1, state) = service(&f);
    assert_eq!(state, "running");
    assert_eq!(agent.log().matches("running init container").count(), 1, "{}", agent.log());

    // 2. Commands through `harmony device`.
    let out = f.harmony(&["device", "ping", &dev]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with(&format!("{dev}: agent {}", harmony_agent_version())), "{stdout}");
    let out = f.harmony(&["device", "logs", &dev, "app", "--tail", "1", "--command-key-file", &keyf]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "line-two\n");
    let out = f.harmony(&["device", "exec", &dev, "web/app", "--command-key-file", &keyf, "--", "sh", "-c", "echo out; echo err >&2; exit 7"]);
    assert_eq!(out.status.code(), Some(7), "exits with the command's code: {}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("err\n"), "{}", text(&out));
    let out = f.harmony(&["device", "exec", &dev, "app", "--timeout", "1s", "--command-key-file", &keyf, "--", "sleep", "30"]);
    assert_eq!(out.status.code(), Some(124), "{}", text(&out));
    // No key: nothing is sent. A key the device does not trust (the fleet key): refused.
    let out = f.harmony(&["device", "exec", &dev, "app", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no command key"), "{}", text(&out));
    let out = f.harmony(&["device", "exec", &dev, "app", "--command-key-file", &f.key_file(), "--", "sh", "-c", "echo x > /tmp/pwned"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refused the command") && String::from_utf8_lossy(&out.stderr).contains("does not trust"),
        "{}",
        text(&out)
    );
    let out = f.harmony(&["device", "logs", &dev, "nope", "--command-key-file", &keyf]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("runs no service `nope`"), "{}", text(&out));
    // An unsigned exec sent raw over NATS: refused, and it ran nothing.
    let unsigned = serde_json::to_vec(
        &CommandRequest::new(
            dev.clone(),
            harmony_schemas::fleet::Command::Exec {
                deployment: "web".into(),
                container: "app".into(),
                argv: ["sh", "-c", "echo x > /tmp/pwned"].map(String::from).to_vec(),
                timeout_s: 5,
            },
        )
        .expect("request"),
    )
    .expect("json");
    let reply = rt().block_on(async {
        let client = async_nats::connect(f.server.url()).await.expect("connect");
        client.request(command_subject(&dev, Verb::Exec), unsigned.into()).await.expect("reply").payload
    });
    let reply: CommandReply = serde_json::from_slice(&reply).expect("reply decodes");
    assert!(matches!(reply, CommandReply::Refused { reason: RefusalReason::Unsigned { .. } }), "{reply:?}");
    let out = f.harmony(&["device", "exec", &dev, "app", "--command-key-file", &keyf, "--", "test", "-e", "/tmp/pwned"]);
    assert_eq!(out.status.code(), Some(1), "the refused commands ran nothing: {}", text(&out));
    assert_eq!(service(&f).0, id1, "commands change no container");

    // 3. Unchanged deployment, another one added: `web` untouched (same container, init not re-run).
    f.set_deployments(&format!("{}{}", web(&img1, "a"), plain("side", &img1)));
    f.apply();
    f.wait_ready(&dev, 2);
    assert_eq!(service(&f).0, id1, "an unchanged service keeps its container");
    assert_eq!(f.containers(&dev).get("side/app/service").map(|c| c.1.as_str()), Some("running"));
    assert_eq!(agent.log().matches("running init container").count(), 1, "the init container ran once");
    assert!(f.apply().contains("nothing to write"), "an unchanged repository writes nothing");

    // 4. Env change: replaced.
    f.set_deployments(&web(&img1, "b"));
    f.apply();
    f.wait_ready(&dev, 3);
    let (id3, state) = service(&f);
    assert!(id3 != id1 && state == "running", "env change replaces the container: {id1} → {id3} ({state})");
    assert!(podman(&["inspect", "--format", "{{range .Config.Env}}{{.}} {{end}}", &id3]).contains("MODE=b"));
    assert!(!f.containers(&dev).contains_key("side/app/service"), "a removed deployment's container is removed");

    // 5. Image change: replaced.
    f.set_deployments(&web(&img2, "b"));
    f.apply();
    f.wait_ready(&dev, 4);
    let (id4, _) = service(&f);
    assert_ne!(id4, id3, "image change replaces the container");
    assert_eq!(podman(&["inspect", "--format", "{{.ImageName}}", &id4]), img2);
    assert!(foreign.running());

    // 6. NATS stopped: containers keep running. Restarted: the agent reconnects and converges.
    f.server.stop();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(service(&f), (id4.clone(), "running".to_string()), "containers keep running while NATS is down");
    f.server.restart();
    f.set_deployments(&web(&img2, "c"));
    f.apply();
    f.wait_ready(&dev, 5);
    let (id5, _) = service(&f);
    assert_ne!(id5, id4);

    // 7. Agent killed; a plan applied while it is down runs when it comes back.
    agent.kill();
    f.set_deployments(&web(&img2, "d"));
    f.apply();
    assert_eq!(service(&f).0, id5, "nothing changes while the agent is down");
    agent = f.start_agent(&dev);
    f.wait_ready(&dev, 6);
    let (id6, _) = service(&f);
    assert_ne!(id6, id5);
    // Killed and restarted with nothing new: resumes from its state dir, redoing nothing.
    agent.kill();
    agent = f.start_agent(&dev);
    let deadline = Instant::now() + Duration::from_secs(30);
    while agent.last_writes().is_none() {
        assert!(Instant::now() < deadline, "no reconcile after restart: {}", agent.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(agent.log().contains("resuming persisted plan"), "{}", agent.log());
    assert_eq!(agent.last_writes(), Some(0), "resume makes no podman writes\n{}", agent.log());
    assert!(!agent.log().contains("running init container"), "init containers are not re-run on resume");
    assert_eq!(service(&f).0, id6);
    f.wait_ready(&dev, 6);

    // 8. Removed from the repository: removed from podman.
    f.set_deployments("");
    f.apply();
    let d = f.wait_ready(&dev, 7);
    assert_eq!(d["deployments"], serde_json::json!([]));
    assert!(f.containers(&dev).is_empty(), "{:?}", f.containers(&dev));
    assert!(foreign.running(), "the foreign container survives");
    drop(agent);
}

fn harmony_agent_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// A failing and a timing-out init container: typed failures in `harmony status`.
#[test]
fn failing_and_timing_out_init_containers_show_in_status() {
    let img = busybox_image("1");
    let foreign = foreign("init");
    let mut f = Fleet::new(&["init"]);
    let dev = f.devices[0].clone();
    let dep = |name: &str, init: &str, timeout: &str| {
        format!(
            "deployment {name} {{\n    tenant acme\n    fleet pico\n    selector site=e2e\n    init-container prep {{\n        image \"{img}\"\n        args \"sh\" \"-c\" \"{init}\"\n        timeout \"{timeout}\"\n    }}\n    container app {{\n        image \"{img}\"\n        args \"sleep\" \"3600\"\n    }}\n}}\n"
        )
    };
    f.set_deployments(&format!("{}{}{}", dep("fails", "exit 3", "30s"), dep("hangs", "sleep 30", "1s"), plain("ok", &img)));
    f.apply();
    let _agent = f.start_agent(&dev);
    let d = f.wait_status(&dev, "degraded at generation 1", Duration::from_secs(60), |d| d["condition"] == "degraded" && d["applied_generation"] == 1);
    let by = |n: &str| d["deployments"].as_array().and_then(|a| a.iter().find(|x| x["name"] == n).cloned()).unwrap_or_default();
    assert_eq!(by("fails")["state"], "failed");
    assert_eq!(by("fails")["failure_detail"], serde_json::json!({"kind": "init-exited", "container": "prep", "exit_code": 3}));
    assert_eq!(by("fails")["failure"], "init container `prep` exited with code 3");
    assert_eq!(by("hangs")["state"], "failed");
    assert_eq!(by("hangs")["failure_detail"]["kind"], "init-timed-out");
    assert_eq!(by("hangs")["failure_detail"]["container"], "prep");
    let waited = by("hangs")["failure_detail"]["waited_s"].as_u64().unwrap_or(0);
    assert!((1..10).contains(&waited), "waited {waited} s");
    assert_eq!(by("ok")["state"], "running");
    assert!(d["last_error"].as_str().unwrap_or("").contains("init container"), "{d:#}");
    let out = f.harmony(&["status", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let human = String::from_utf8_lossy(&out.stdout);
    assert!(human.contains("degraded") && human.contains("fails=failed (init container `prep` exited with code 3)"), "{human}");
    assert!(human.contains("hangs=failed (init container `prep` timed out after"), "{human}");
    let c = f.containers(&dev);
    assert_eq!(c.keys().collect::<Vec<_>>(), ["ok/app/service"], "no service of a failed deployment, no init container left: {c:?}");
    assert!(foreign.running());
}

/// An attacker with write access to the bucket (but not the fleet key) tampers with, replays and
/// swaps device plans: the agent rejects each one and runs nothing of it, `harmony status` shows
/// the rejection, and the next `harmony apply` replaces the entry with a fresh signed plan.
#[test]
fn tampered_replayed_and_wrong_device_plans_are_rejected_and_shown_in_status() {
    let img = busybox_image("1");
    let foreign = foreign("rej");
    let mut f = Fleet::new(&["rej-a", "rej-b"]);
    let (a, b) = (f.devices[0].clone(), f.devices[1].clone());
    f.set_deployments(&plain("web", &img));
    f.apply();
    let _agent = f.start_agent(&a);
    f.wait_ready(&a, 1);
    let rt = rt();
    let kv = rt.block_on(async {
        let client = async_nats::connect(f.server.url()).await.expect("connect");
        async_nats::jetstream::new(client).get_key_value(PLANS_BUCKET).await.expect("plans bucket")
    });
    let get = |key: &str| rt.block_on(kv.get(key)).expect("get").expect("entry").to_vec();
    let put = |key: &str, value: Vec<u8>| {
        rt.block_on(kv.put(key, value.into())).expect("put");
    };
    let generation_1 = get(&a);
    f.set_deployments(&plain("web", &busybox_image("2")));
    f.apply();
    f.wait_ready(&a, 2);
    let running = f.containers(&a);

    let rejected = |f: &Fleet, kind: &str, generation: u64| {
        let d = f.wait_status(&a, &format!("a {kind} rejection"), Duration::from_secs(30), |d| d["last_rejection"]["reason"]["kind"] == kind);
        assert_eq!(d["condition"], "degraded", "{d:#}");
        assert_eq!(d["desired_rejected"], true, "{d:#}");
        assert_eq!(d["last_rejection"]["generation"], generation, "{d:#}");
        let human = String::from_utf8_lossy(&f.harmony(&["status"]).stdout).into_owned();
        assert!(human.contains(&format!("rejected plan generation {generation}:")), "{human}");
        assert_eq!(f.containers(&a), running, "nothing of a rejected plan runs");
        human
    };
    let heal = |f: &Fleet, generation: u64| {
        let out = f.apply();
        assert!(out.contains(&format!("~ device-plan/pico/{a} update")) && out.contains("fleet pico: 1 written"), "{out}");
        f.wait_ready(&a, generation);
    };

    // Tampered: the current plan with another image, signature kept.
    let mut tampered = SignedDevicePlan::from_slice(&get(&a)).expect("envelope");
    tampered.payload["deployments"][0]["services"][0]["image"] = serde_json::json!("localhost/evil:1");
    put(&a, tampered.to_vec());
    let human = rejected(&f, "bad-signature", 2);
    assert!(human.contains("tampered or forged"), "{human}");
    heal(&f, 3);

    // Replayed: an older plan, validly signed.
    put(&a, generation_1);
    rejected(&f, "stale-generation", 1);
    heal(&f, 4);

    // Wrong device: device b's validly signed plan under a's key.
    put(&a, get(&b));
    let human = rejected(&f, "wrong-device", 2);
    assert!(human.contains(&format!("plan is for device `{b}`")), "{human}");
    heal(&f, 5);
    assert!(foreign.running());
}

/// Issue 20, item 4: a deployment bind-mounting the host's `/` is refused by `harmony check` and
/// `harmony apply`; a path the fleet grants with `allow-host-path` reaches the device in the
/// signed plan and is mounted; a plan mounting `/` that the test signs with the fleet key
/// itself (the compiler bypassed) is rejected by the agent, nothing of it runs, and `harmony
/// status` says why. Before the fix check accepted the mount and the agent ran it.
#[test]
fn attack_host_mounts_are_refused_by_check_and_by_the_agent() {
    let img = busybox_image("1");
    let foreign = foreign("mnt");
    let mut f = Fleet::new(&["mnt"]);
    let dev = f.devices[0].clone();
    let shared = f.dir.path().join("shared");
    std::fs::create_dir_all(&shared).expect("mkdir");
    let mounting = |volume: &str| {
        format!(
            "deployment web {{\n    tenant acme\n    fleet pico\n    selector site=e2e\n    container app {{\n        image \"{img}\"\n        args \"sleep\" \"3600\"\n        volume \"{volume}\"\n    }}\n}}\n"
        )
    };

    f.set_deployments(&mounting("/:/host:ro"));
    let out = f.harmony(&["check"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("harmony::host-path") && stderr.contains("deploy.kdl:8:16") && stderr.contains("whole file system"), "{stderr}");
    let out = f.try_apply(&[]);
    assert_eq!(out.status.code(), Some(1), "apply writes nothing: {}", text(&out));

    f.set_agent_version("0.1.0", &format!("    allow-host-path \"{}\" tenant=acme read-only=#true\n", shared.display()));
    f.set_deployments(&mounting(&format!("{}:/shared:ro", shared.display())));
    f.apply();
    let _agent = f.start_agent(&dev);
    f.wait_ready(&dev, 1);
    let running = f.containers(&dev);
    let id = &running["web/app/service"].0;
    let mounts = podman(&["inspect", "--format", "{{range .Mounts}}{{.Destination}}={{.Source}} {{end}}", id]);
    assert!(mounts.contains(&format!("/shared={}", shared.canonicalize().expect("canonical").display())), "{mounts}");

    // The fleet key signs the device's plan with `/` mounted instead, one generation up.
    let rt = rt();
    let kv = rt.block_on(async {
        let client = async_nats::connect(f.server.url()).await.expect("connect");
        async_nats::jetstream::new(client).get_key_value(PLANS_BUCKET).await.expect("plans bucket")
    });
    let entry = rt.block_on(kv.get(&dev)).expect("get").expect("entry");
    let mut plan: DevicePlan = serde_json::from_value(SignedDevicePlan::from_slice(&entry).expect("envelope").payload).expect("plan");
    let d = plan.deployments.remove(0);
    let mut services = d.services.clone();
    services[0].container.volumes[0].source = "/".into();
    let services = services.into_iter().map(|s| Service::new(s.container, s.restart)).collect();
    plan.deployments.push(DeploymentPlan::new(d.name, d.tenant, vec![], services).with_host_paths(d.host_paths));
    plan.generation += 1;
    let forged = SignedDevicePlan::sign(&plan, &f.fleet_key).expect("sign");
    rt.block_on(kv.put(&dev, forged.to_vec().into())).expect("put");
    let d = f.wait_status(&dev, "a host-access rejection", Duration::from_secs(30), |d| d["last_rejection"]["reason"]["kind"] == "host-access");
    assert_eq!(d["last_rejection"]["generation"], 2, "{d:#}");
    let human = String::from_utf8_lossy(&f.harmony(&["status"]).stdout).into_owned();
    assert!(human.contains("plan refused: deployment `web` container `app`: host path `/` is the host's whole file system"), "{human}");
    assert_eq!(f.containers(&dev), running, "nothing of the rejected plan runs");
    assert!(foreign.running());
}
