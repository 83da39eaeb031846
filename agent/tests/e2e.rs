//! End-to-end: the real `harmony-agent` binary, a real nats-server with JetStream and real podman.
//!
//! Needs `scripts/install-test-deps.sh` (podman, runc, busybox-static, nats-server in .venv).
//! Every test keeps a foreign container (no harmony labels) running and checks it survives.
mod support;

use std::time::Duration;

use harmony_schemas::fleet::{
    Command, CommandReply, CommandRequest, ContainerKind, ContainerState, DeploymentFailure, DeploymentState, DeviceState, HEARTBEATS_BUCKET, Heartbeat,
    PingReply, RefusalReason, RejectionReason, SignedCommand, Verb, command_subject, generate_signing_key,
};
use harmony_schemas::fleet::VolumeMount;
use harmony_schemas::host_path::HostPathGrant;
use support::{Device, ForeignContainer, busybox_image, deployment, spec};

fn foreign(tag: &str) -> ForeignContainer {
    ForeignContainer::start(&busybox_image("1"), &format!("foreign-{tag}-{}", support::suffix()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_init_then_service_replace_keep_remove() {
    let img1 = busybox_image("1");
    let img2 = busybox_image("2");
    let foreign = foreign("life");
    let d = Device::start("life").await;

    // 1. An init container, then a service.
    let app = |env: &str, image: &str| spec("app", image, &["sh", "-c", "echo started; exec sleep 3600"], &[("MODE", env)]);
    let migrate = (spec("migrate", &img1, &["sh", "-c", "echo migrating; exit 0"], &[]), 30);
    let plan1 = d.plan(1, vec![deployment("web", vec![migrate.clone()], vec![app("a", &img1)])]);
    d.put_plan(&plan1).await;
    let s = d.wait_generation(1).await;
    assert_eq!(s.state, DeviceState::Applied, "{s:#?}");
    let web = &s.deployments[0];
    assert_eq!(web.state, DeploymentState::Running);
    assert_eq!(web.containers[0].kind, ContainerKind::Init);
    assert_eq!((web.containers[0].state, web.containers[0].exit_code), (ContainerState::Completed, Some(0)));
    assert_eq!(web.containers[1].state, ContainerState::Running);
    let c = d.containers();
    assert_eq!(c.len(), 1, "only the service remains (init containers are removed): {c:?}");
    let (id1, state) = c["web/app/service"].clone();
    assert_eq!(state, "running");
    assert_eq!(web.containers[1].container_id.as_deref(), Some(id1.as_str()));

    // 2. A new generation with nothing changed: untouched, zero podman writes, init not re-run.
    d.put_plan(&d.plan(2, plan1.deployments.clone())).await;
    d.wait_generation(2).await;
    assert_eq!(d.containers()["web/app/service"].0, id1, "unchanged service keeps its container");
    assert_eq!(d.last_writes(), Some(0), "a no-op reconcile makes no podman writes\n{}", d.log());
    assert_eq!(d.log().matches("running init container").count(), 1, "the init container ran once");

    // 3. Env change: replaced (and init re-runs, as the deployment changed).
    d.put_plan(&d.plan(3, vec![deployment("web", vec![migrate.clone()], vec![app("b", &img1)])])).await;
    d.wait_generation(3).await;
    let (id3, state) = d.containers()["web/app/service"].clone();
    assert_ne!(id3, id1, "env change replaces the container");
    assert_eq!(state, "running");
    let env = harmony_testkit::podman(&["inspect", "--format", "{{range .Config.Env}}{{.}} {{end}}", &id3]);
    assert!(env.contains("MODE=b"), "{env}");
    assert_eq!(d.containers().len(), 1);

    // 4. Image change: replaced.
    d.put_plan(&d.plan(4, vec![deployment("web", vec![migrate.clone()], vec![app("b", &img2)])])).await;
    d.wait_generation(4).await;
    let (id4, _) = d.containers()["web/app/service"].clone();
    assert_ne!(id4, id3, "image change replaces the container");
    assert_eq!(harmony_testkit::podman(&["inspect", "--format", "{{.ImageName}}", &id4]), img2);

    // 5. Heartbeats carry version, uptime and labels.
    let kv = d.js.get_key_value(HEARTBEATS_BUCKET).await.unwrap();
    let hb: Heartbeat = serde_json::from_slice(&kv.get(&d.id).await.unwrap().expect("heartbeat")).unwrap();
    assert_eq!((hb.agent_version.as_str(), hb.labels.get("site").map(String::as_str)), (harmony_agent::AGENT_VERSION, Some("test")));

    // 6. Removed from the plan: removed from podman.
    d.put_plan(&d.plan(5, vec![])).await;
    let s = d.wait_generation(5).await;
    assert!(s.deployments.is_empty());
    assert!(d.containers().is_empty(), "{:?}", d.containers());
    assert!(foreign.running(), "the foreign container survives");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_and_timing_out_init_containers_are_typed_failures() {
    let img = busybox_image("1");
    let foreign = foreign("init");
    let d = Device::start("init").await;
    let plan = d.plan(
        1,
        vec![
            deployment("fails", vec![(spec("migrate", &img, &["sh", "-c", "exit 3"], &[]), 30)], vec![spec("app", &img, &["sleep", "3600"], &[])]),
            deployment("hangs", vec![(spec("wait", &img, &["sleep", "30"], &[]), 1)], vec![spec("app", &img, &["sleep", "3600"], &[])]),
            deployment("ok", vec![], vec![spec("app", &img, &["sleep", "3600"], &[])]),
        ],
    );
    d.put_plan(&plan).await;
    let s = d.wait_generation(1).await;
    assert_eq!(s.state, DeviceState::Degraded);
    let by = |n: &str| s.deployments.iter().find(|x| x.name == n).unwrap().clone();
    assert_eq!(by("fails").failure, Some(DeploymentFailure::InitExited { container: "migrate".into(), exit_code: 3 }));
    assert_eq!(by("fails").state, DeploymentState::Failed);
    match by("hangs").failure {
        Some(DeploymentFailure::InitTimedOut { container, waited_s }) => assert!(container == "wait" && (1..10).contains(&waited_s), "{container} {waited_s}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(by("ok").state, DeploymentState::Running);
    assert!(s.last_error.as_deref().unwrap_or("").contains("init container"), "{:?}", s.last_error);
    let c = d.containers();
    assert_eq!(c.keys().cloned().collect::<Vec<_>>(), vec!["ok/app/service".to_string()], "no service of a failed deployment, no init container left: {c:?}");
    assert!(foreign.running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_replayed_wrong_device_and_untrusted_plans_are_rejected() {
    let img = busybox_image("1");
    let foreign = foreign("rej");
    let d = Device::start("rej").await;
    let svc = || vec![deployment("web", vec![], vec![spec("app", &img, &["sleep", "3600"], &[])])];

    // Tampered: signed generation 1, then its content edited.
    let mut tampered = d.sign(&d.plan(1, svc()));
    tampered.payload["deployments"][0]["services"][0]["image"] = serde_json::json!("localhost/evil:1");
    d.put_raw(tampered.to_vec()).await;
    let s = d.wait_rejections(1).await;
    assert_eq!(s.rejections[0].reason, RejectionReason::BadSignature);
    assert_eq!(s.applied_generation, None);

    // Wrong device.
    let mut other = d.plan(1, svc());
    other.device_id = "someone-else".into();
    d.put_plan(&other).await;
    let s = d.wait_rejections(2).await;
    assert_eq!(s.rejections[1].reason, RejectionReason::WrongDevice { plan_device: "someone-else".into() });

    // Signed by a key the device does not trust.
    let rogue = generate_signing_key().unwrap();
    d.put_raw(harmony_schemas::fleet::SignedDevicePlan::sign(&d.plan(1, svc()), &rogue).unwrap().to_vec()).await;
    let s = d.wait_rejections(3).await;
    assert!(matches!(s.rejections[2].reason, RejectionReason::UnknownKey { .. }));

    // Malformed bytes: reported, never fatal.
    d.put_raw(b"{not json".to_vec()).await;
    let s = d.wait_rejections(4).await;
    assert!(matches!(s.rejections[3].reason, RejectionReason::Malformed { .. }));
    assert!(d.containers().is_empty(), "nothing ran for rejected plans");

    // A good plan at generation 2, then a replay of an older (validly signed) generation 1.
    let old = d.sign(&d.plan(1, vec![]));
    d.put_plan(&d.plan(2, svc())).await;
    d.wait_generation(2).await;
    let before = d.containers();
    d.put_raw(old.to_vec()).await;
    let s = d.wait_rejections(5).await;
    assert_eq!(s.rejections[4].reason, RejectionReason::StaleGeneration { generation: 1, applied: 2 });
    assert_eq!(s.applied_generation, Some(2));
    // Same generation with other content: also a replay.
    d.put_plan(&d.plan(2, vec![])).await;
    let s = d.wait_rejections(6).await;
    assert_eq!(s.rejections[5].reason, RejectionReason::StaleGeneration { generation: 2, applied: 2 });
    assert_eq!(d.containers(), before, "rejected plans change nothing");
    assert!(foreign.running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_nats_outage_and_agent_restart() {
    let img = busybox_image("1");
    let foreign = foreign("outage");
    let mut d = Device::start("outage").await;
    let plan = |d: &Device, g: u64, v: &str| {
        d.plan(g, vec![deployment("web", vec![(spec("migrate", &img, &["true"], &[]), 30)], vec![spec("app", &img, &["sleep", "3600"], &[("V", v)])])])
    };
    d.put_plan(&plan(&d, 1, "1")).await;
    d.wait_generation(1).await;
    let (id1, _) = d.containers()["web/app/service"].clone();

    // NATS down: containers keep running.
    d.nats.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(d.containers()["web/app/service"], (id1.clone(), "running".to_string()));
    // Back (same port and store): the agent reconnects and converges to a new plan.
    d.nats.restart();
    // The harness's own client reconnects too; retry until the write lands.
    put_until_accepted(&d, &plan(&d, 2, "2")).await;
    d.wait_generation(2).await;
    let (id2, _) = d.containers()["web/app/service"].clone();
    assert_ne!(id2, id1);

    // Agent killed; a plan written while it is down is applied when it comes back.
    d.kill_agent();
    d.put_plan(&plan(&d, 3, "3")).await;
    d.start_agent();
    d.wait_status("generation 3 after restart", Duration::from_secs(60), |s| s.applied_generation == Some(3) && s.state == DeviceState::Applied).await;
    let (id3, _) = d.containers()["web/app/service"].clone();
    assert_ne!(id3, id2);

    // Killed and restarted with nothing new, while NATS is down: resumes from its state dir
    // without redoing work (no NATS needed), then converges once NATS is back.
    d.kill_agent();
    d.nats.stop();
    d.start_agent();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while d.last_writes().is_none() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(d.log().contains("resuming persisted plan"), "{}", d.log());
    assert_eq!(d.last_writes(), Some(0), "resume redoes nothing\n{}", d.log());
    assert!(!d.log().contains("running init container"), "init containers are not re-run on resume");
    assert_eq!(d.containers()["web/app/service"].0, id3);
    d.nats.restart();
    put_until_accepted(&d, &plan(&d, 4, "4")).await;
    d.wait_generation(4).await;
    assert_ne!(d.containers()["web/app/service"].0, id3);
    assert!(foreign.running());
}

/// The shutdown guarantee (docs/agent.md): SIGTERM stops the agent within 10 s even with the
/// nats-server gone and a reconcile in flight (an init container running); containers keep
/// running; the log written to a file has no terminal colours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_agent_within_10s_with_nats_gone_mid_reconcile() {
    let img = busybox_image("1");
    let foreign = foreign("term");
    let mut d = Device::start("term").await;
    let app = spec("app", &img, &["sleep", "3600"], &[]);
    d.put_plan(&d.plan(1, vec![deployment("web", vec![], vec![app.clone()])])).await;
    d.wait_generation(1).await;
    let (id, _) = d.containers()["web/app/service"].clone();
    // Generation 2 adds a deployment whose init container takes a minute: the reconcile is in
    // flight when NATS goes away and SIGTERM arrives.
    let slow = deployment("slow", vec![(spec("wait", &img, &["sleep", "60"], &[]), 120)], vec![app.clone()]);
    d.put_plan(&d.plan(2, vec![deployment("web", vec![], vec![app.clone()]), slow])).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !d.log().contains("running init container") {
        assert!(std::time::Instant::now() < deadline, "the init container never started\n{}", d.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    d.nats.stop();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let took = d.terminate_agent(Duration::from_secs(10));
    assert!(took.is_some(), "the agent still ran 10 s after SIGTERM\n{}", d.log());
    assert_eq!(d.containers()["web/app/service"], (id, "running".to_string()), "containers keep running");
    assert!(d.log().contains("shutting down"), "{}", d.log());
    assert!(!d.log().contains('\u{1b}'), "no ANSI colours in a log that is not a terminal:\n{}", d.log());
    assert!(foreign.running());
}

/// Writes a plan, retrying while the harness's own client reconnects after a server restart.
async fn put_until_accepted(d: &Device, plan: &harmony_schemas::fleet::DevicePlan) {
    for _ in 0..100 {
        let put = tokio::time::timeout(Duration::from_secs(2), async {
            let kv = d.js.get_key_value(harmony_schemas::fleet::PLANS_BUCKET).await.ok()?;
            kv.put(&d.id, d.sign(plan).to_vec().into()).await.ok()
        });
        if put.await.ok().flatten().is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("could not write the plan after the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_logs_exec_round_trip_and_unsigned_commands_are_refused() {
    let img = busybox_image("1");
    let foreign = foreign("cmd");
    let d = Device::start("cmd").await;
    d.put_plan(&d.plan(1, vec![deployment("web", vec![], vec![spec("app", &img, &["sh", "-c", "echo line-one; echo line-two; exec sleep 3600"], &[])])])).await;
    d.wait_generation(1).await;
    let request = |verb: Verb, body: Vec<u8>| {
        let client = d.client.clone();
        let subject = command_subject(&d.id, verb);
        async move { client.request(subject, body.into()).await.expect("reply").payload }
    };
    let signed = |cmd: Command| SignedCommand::sign(&CommandRequest::new(d.id.clone(), cmd).unwrap(), &d.command_key).unwrap();

    let ping: PingReply = serde_json::from_slice(&request(Verb::Ping, vec![]).await).unwrap();
    assert_eq!((ping.device_id.as_str(), ping.agent_version.as_str()), (d.id.as_str(), harmony_agent::AGENT_VERSION));

    let logs = signed(Command::Logs { deployment: "web".into(), container: "app".into(), tail: 1 });
    let reply: CommandReply = serde_json::from_slice(&request(Verb::Logs, logs.to_vec()).await).unwrap();
    assert_eq!(reply, CommandReply::Logs { lines: vec!["line-two".into()] });

    let argv = ["sh", "-c", "echo out; echo err >&2; exit 7"].map(String::from).to_vec();
    let exec = signed(Command::Exec { deployment: "web".into(), container: "app".into(), argv: argv.clone(), timeout_s: 10 });
    let reply: CommandReply = serde_json::from_slice(&request(Verb::Exec, exec.to_vec()).await).unwrap();
    assert_eq!(reply, CommandReply::Exec { exit_code: Some(7), timed_out: false, stdout: "out\n".into(), stderr: "err\n".into() });

    // A command that outlives its timeout is killed and says so.
    let slow = signed(Command::Exec { deployment: "web".into(), container: "app".into(), argv: vec!["sleep".into(), "30".into()], timeout_s: 1 });
    let reply: CommandReply = serde_json::from_slice(&request(Verb::Exec, slow.to_vec()).await).unwrap();
    assert!(matches!(reply, CommandReply::Exec { timed_out: true, exit_code: None, .. }), "{reply:?}");

    // Replaying the same signed request: refused.
    let reply: CommandReply = serde_json::from_slice(&request(Verb::Exec, exec.to_vec()).await).unwrap();
    assert_eq!(reply, CommandReply::Refused { reason: RefusalReason::Replayed });

    // Unsigned: refused.
    let unsigned = serde_json::to_vec(
        &CommandRequest::new(d.id.clone(), Command::Exec { deployment: "web".into(), container: "app".into(), argv: argv.clone(), timeout_s: 10 }).unwrap(),
    )
    .unwrap();
    let reply: CommandReply = serde_json::from_slice(&request(Verb::Exec, unsigned).await).unwrap();
    assert!(matches!(reply, CommandReply::Refused { reason: RefusalReason::Unsigned { .. } }), "{reply:?}");

    // Stale: refused.
    let mut old =
        CommandRequest::new(d.id.clone(), Command::Exec { deployment: "web".into(), container: "app".into(), argv: argv.clone(), timeout_s: 10 }).unwrap();
    old.issued_at_ms -= 10 * 60 * 1000;
    let reply: CommandReply = serde_json::from_slice(&request(Verb::Exec, SignedCommand::sign(&old, &d.command_key).unwrap().to_vec()).await).unwrap();
    assert!(matches!(reply, CommandReply::Refused { reason: RefusalReason::Stale { .. } }), "{reply:?}");

    // Signed by the fleet key (not a command key): refused.
    let wrong_key = SignedCommand::sign(
        &CommandRequest::new(d.id.clone(), Command::Exec { deployment: "web".into(), container: "app".into(), argv: argv.clone(), timeout_s: 10 }).unwrap(),
        &d.fleet_key,
    )
    .unwrap();
    let reply: CommandReply = serde_json::from_slice(&request(Verb::Exec, wrong_key.to_vec()).await).unwrap();
    assert!(matches!(reply, CommandReply::Refused { reason: RefusalReason::UnknownKey { .. } }), "{reply:?}");

    // Validly signed, but for another device (e.g. captured and re-sent to this one): refused.
    let elsewhere = SignedCommand::sign(
        &CommandRequest::new("another-device", Command::Exec { deployment: "web".into(), container: "app".into(), argv: argv.clone(), timeout_s: 10 }).unwrap(),
        &d.command_key,
    )
    .unwrap();
    let reply: CommandReply = serde_json::from_slice(&request(Verb::Exec, elsewhere.to_vec()).await).unwrap();
    assert!(matches!(reply, CommandReply::Refused { reason: RefusalReason::WrongDevice { .. } }), "{reply:?}");

    // A container that is not planned (e.g. the foreign one): refused.
    let foreign_exec = signed(Command::Exec { deployment: "x".into(), container: "y".into(), argv, timeout_s: 10 });
    let reply: CommandReply = serde_json::from_slice(&request(Verb::Exec, foreign_exec.to_vec()).await).unwrap();
    assert!(matches!(reply, CommandReply::Refused { reason: RefusalReason::UnknownContainer { .. } }), "{reply:?}");
    assert!(foreign.running());
}

#[test]
fn self_test_passes_and_bad_config_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let key = harmony_schemas::fleet::encode_key(generate_signing_key().unwrap().verifying_key().as_bytes());
    let cfg = harmony_testkit::write_file(
        dir.path(),
        "agent.toml",
        &format!(
            "device_id = \"pi-1\"\nstate_dir = \"{}\"\nfleet_keys = [\"{key}\"]\n[nats]\nurls = [\"nats://127.0.0.1:1\"]\n",
            dir.path().join("state").display()
        ),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_harmony-agent")).arg("--config").arg(&cfg).arg("--self-test").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("podman: ok"));

    let bad = harmony_testkit::write_file(
        dir.path(),
        "bad.toml",
        "device_id = \"pi-1\"\nstate_dir = \"/tmp/x\"\nfleet_keys = [\"nope\"]\n[nats]\nurls = [\"nats://x\"]\n",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_harmony-agent")).arg("--config").arg(&bad).arg("--self-test").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("`fleet_keys[0]`"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_disabled_reports_applied_and_runs_nothing() {
    let img = busybox_image("1");
    let d = Device::start_with("none", "none").await;
    d.put_plan(&d.plan(1, vec![deployment("web", vec![(spec("migrate", &img, &["true"], &[]), 30)], vec![spec("app", &img, &["sleep", "3600"], &[])])])).await;
    let s = d.wait_generation(1).await;
    assert_eq!(s.state, DeviceState::Applied);
    assert_eq!(s.deployments[0].containers.iter().map(|c| c.state).collect::<Vec<_>>(), vec![ContainerState::Completed, ContainerState::Running]);
    assert!(d.containers().is_empty(), "nothing runs with the runtime disabled");
    let reply = d.client.request(command_subject(&d.id, Verb::Ping), "".into()).await.unwrap();
    let ping: PingReply = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(ping.device_id, d.id);
}

/// The host directory mounted at `destination` in container `id`.
fn mount_source(id: &str, destination: &str) -> Option<String> {
    let mounts = harmony_testkit::podman(&["inspect", "--format", "{{range .Mounts}}{{.Destination}}={{.Source}}\n{{end}}", id]);
    mounts.lines().find_map(|l| l.strip_prefix(&format!("{destination}=")).map(str::to_string))
}

/// Issue 20, item 4 (b): plans signed with the fleet key (the compiler bypassed) that
/// bind-mount `/`, the podman socket, the agent's own state directory, another tenant's data, a
/// `..` out of the tenant's data root or a system directory are rejected whole as `host-access`
/// with a bounded reason, and nothing of them runs. A symlink a container plants in its own data
/// directory does not lead a later mount out of it. Before the fix the agent ran the first plan,
/// the host's `/` mounted in the container.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_signed_plans_mounting_host_paths_are_refused() {
    let img = busybox_image("1");
    let foreign = foreign("mnt");
    let d = Device::start("mnt").await;
    let s = |p: &std::path::Path| p.to_string_lossy().into_owned();
    let data = d.data_root();
    let mounting = |name: &str, source: &str, read_only: bool, script: &str| {
        let mut c = spec("app", &img, &["sh", "-c", script], &[]);
        c.volumes.push(VolumeMount { source: source.into(), target: "/data".into(), read_only });
        deployment(name, vec![], vec![c])
    };
    let sleep = "exec sleep 3600";
    let attacks = [
        ("/".to_string(), "whole file system"),
        ("/run/podman/podman.sock".into(), "protected `/run`"),
        ("/var/run/podman".into(), "protected"),
        (s(&d.state_dir.path().join("state")), "protected"),
        (s(&data.join("globex")), "outside the tenant's data root"),
        (format!("{}/acme/../globex", s(&data)), "`..`"),
        ("/etc".into(), "`/etc` is protected"),
        ("/home".into(), "outside the tenant's data root"),
    ];
    for (i, (source, why)) in attacks.iter().enumerate() {
        let generation = i as u64 + 1;
        d.put_plan(&d.plan(generation, vec![mounting("web", source, true, sleep)])).await;
        let st = d.wait_rejections(i + 1).await;
        let r = &st.rejections[i];
        assert_eq!(r.generation, Some(generation), "{st:#?}");
        match &r.reason {
            RejectionReason::HostAccess { detail } => {
                assert!(detail.starts_with("deployment `web` container `app`: ") && detail.contains(why), "{source}: {detail}")
            }
            other => panic!("{source}: expected a host-access rejection, got {other:?}"),
        }
        assert!(st.last_error.as_deref().unwrap_or("").starts_with("plan refused: "), "{st:#?}");
        assert_eq!(st.applied_generation, None);
    }
    // Options the plan format has no word for, signed into the plan as JSON: refused whole,
    // never run with the request dropped.
    #[derive(serde::Serialize, serde::Deserialize)]
    #[serde(transparent)]
    struct Raw(serde_json::Value);
    impl harmony_schemas::fleet::SignedPayload for Raw {
        const CONTEXT: &'static str = "device-plan";
    }
    let privileged: [(&[&str], &str, serde_json::Value); 4] = [
        (&["services", "0"], "privileged", true.into()),
        (&["services", "0"], "cap_add", serde_json::json!(["SYS_ADMIN"])),
        (&["services", "0", "volumes", "0"], "propagation", "rshared".into()),
        (&[], "network", "host".into()),
    ];
    let before = attacks.len();
    for (i, (path, field, value)) in privileged.into_iter().enumerate() {
        let generation = (before + i) as u64 + 1;
        let mut plan = serde_json::to_value(d.plan(generation, vec![mounting("web", &s(&data.join("acme/app")), false, sleep)])).unwrap();
        let mut at = &mut plan["deployments"][0];
        for p in path {
            at = match p.parse::<usize>() {
                Ok(n) => &mut at[n],
                Err(_) => &mut at[*p],
            };
        }
        at[field] = value;
        d.put_raw(harmony_schemas::fleet::Signed::sign(&Raw(plan), &d.fleet_key).unwrap().to_vec()).await;
        let st = d.wait_status(&format!("generation {generation} rejected"), Duration::from_secs(30), |s| s.rejections.last().is_some_and(|r| r.generation == Some(generation))).await;
        let r = st.rejections.last().expect("a rejection");
        match &r.reason {
            RejectionReason::HostAccess { detail } => assert!(detail.contains(&format!("`{field}` is not part of the plan format")), "{field}: {detail}"),
            other => panic!("{field}: expected a host-access rejection, got {other:?}"),
        }
    }
    assert!(d.containers().is_empty(), "nothing of a rejected plan runs: {:?}", d.containers());

    // The tenant's data root is mountable (the agent creates the directory). Its container
    // plants a symlink to `/` there.
    let own = data.join("acme/app");
    let web = mounting("web", &s(&own), false, "busybox ln -s / /data/escape; exec sleep 3600");
    d.put_plan(&d.plan(20, vec![web.clone()])).await;
    let st = d.wait_generation(20).await;
    assert_eq!(st.state, DeviceState::Applied, "{st:#?}");
    let (id, _) = d.containers()["web/app/service"].clone();
    assert_eq!(mount_source(&id, "/data"), Some(s(&own)));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::fs::symlink_metadata(own.join("escape")).is_err() {
        assert!(std::time::Instant::now() < deadline, "the container did not plant its symlink");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A plan mounting through that symlink passes as written, and is refused once resolved.
    let escape = mounting("escape", &s(&own.join("escape")), true, sleep);
    d.put_plan(&d.plan(21, vec![escape, web.clone()])).await;
    let st = d.wait_generation(21).await;
    assert_eq!(st.state, DeviceState::Degraded, "{st:#?}");
    let failed = st.deployments.iter().find(|x| x.name == "escape").expect("escape reported");
    match &failed.failure {
        Some(DeploymentFailure::Runtime { message, .. }) => assert!(message.contains("host path refused") && message.contains("whole file system"), "{message}"),
        other => panic!("expected a refused mount, got {other:?}"),
    }
    assert!(!d.containers().keys().any(|k| k.starts_with("escape/")), "{:?}", d.containers());

    // A path the plan grants the tenant (the fleet's `allow-host-path`) is mountable, read-only
    // when the grant says so.
    let shared = tempfile::tempdir().unwrap();
    let grant = vec![HostPathGrant { path: s(shared.path()), read_only: true }];
    let granted = mounting("granted", &s(shared.path()), true, sleep).with_host_paths(grant.clone());
    d.put_plan(&d.plan(22, vec![granted, web.clone()])).await;
    let st = d.wait_generation(22).await;
    assert_eq!(st.state, DeviceState::Applied, "{st:#?}");
    let (id, _) = d.containers()["granted/app/service"].clone();
    assert_eq!(mount_source(&id, "/data"), Some(s(&shared.path().canonicalize().unwrap())));
    d.put_plan(&d.plan(23, vec![mounting("granted", &s(shared.path()), false, sleep).with_host_paths(grant)])).await;
    let st = d.wait_status("generation 23 rejected", Duration::from_secs(30), |s| s.rejections.last().is_some_and(|r| r.generation == Some(23))).await;
    let last = st.rejections.last().expect("a rejection");
    assert!(matches!(&last.reason, RejectionReason::HostAccess { detail } if detail.contains("may only be mounted read-only")), "{st:#?}");
    assert!(foreign.running());
}

/// The `web/app` service's container id when the status observed it running.
fn app_running(s: &harmony_schemas::fleet::DeviceStatus) -> Option<String> {
    let c = s.deployments.iter().find(|d| d.name == "web")?.containers.iter().find(|c| c.name == "app")?;
    let o = c.observed.as_ref()?;
    (c.state == ContainerState::Running && o.runtime_state == "running").then(|| c.container_id.clone()).flatten()
}

/// Device drift (docs/agent.md): a managed container removed, stopped, or replaced (same name,
/// another image) behind the agent's back is found, reported as drift and repaired within 30 s;
/// an unlabelled container is never touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_removed_stopped_and_replaced_containers_are_reported_and_repaired() {
    let img = busybox_image("1");
    let img2 = busybox_image("2");
    let foreign = foreign("drift");
    let d = Device::start("drift").await;
    d.put_plan(&d.plan(1, vec![deployment("web", vec![], vec![spec("app", &img, &["sleep", "3600"], &[])])])).await;
    let s = d.wait_generation(1).await;
    assert!(s.observed_at_ms.is_some(), "the status says when podman was observed: {s:#?}");
    assert!(s.drift.is_empty(), "{:?}", s.drift);
    let within = Duration::from_secs(30);
    let drifted = |found: &'static str, action: &'static str, old: String| {
        move |s: &harmony_schemas::fleet::DeviceStatus| {
            s.drift.iter().any(|x| (x.deployment.as_str(), x.container.as_str()) == ("web", "app") && x.found.starts_with(found) && x.action == action)
                && app_running(s).is_some_and(|id| found == "exited" || id != old)
        }
    };

    // 1. Removed: recreated.
    let (id1, _) = d.containers()["web/app/service"].clone();
    harmony_testkit::podman(&["rm", "-f", "-t", "0", &id1]);
    let s = d.wait_status("the removed container recreated", within, drifted("missing", "recreated", id1.clone())).await;
    let id2 = app_running(&s).unwrap();
    assert_eq!(d.containers()["web/app/service"], (id2.clone(), "running".to_string()));

    // 2. Stopped: started again (the same container).
    harmony_testkit::podman(&["stop", "-t", "0", &id2]);
    d.wait_status("the stopped container started", within, drifted("exited", "started", id2.clone())).await;
    assert_eq!(d.containers()["web/app/service"], (id2.clone(), "running".to_string()));

    // 3. Replaced: same name and labels, another image.
    let labels = harmony_testkit::podman(&["inspect", "--format", "{{range $k, $v := .Config.Labels}}{{$k}}={{$v}}\n{{end}}", &id2]);
    let name = harmony_testkit::podman(&["inspect", "--format", "{{.Name}}", &id2]);
    // `--replace`: one command (the agent would recreate its container between an `rm` and a `run`).
    let mut run = vec!["run", "-d", "--replace", "--name", name.as_str()];
    for l in labels.lines().filter(|l| l.starts_with("io.harmony.")) {
        run.extend(["--label", l]);
    }
    run.extend([img2.as_str(), "sleep", "3600"]);
    let impostor = harmony_testkit::podman(&run);
    let s = d.wait_status("the replaced container replaced", within, drifted("image", "replaced", impostor.clone())).await;
    let id3 = app_running(&s).unwrap();
    assert_eq!(harmony_testkit::podman(&["inspect", "--format", "{{.ImageName}}", &id3]), img);
    assert!(s.drift.len() >= 3, "{:#?}", s.drift);
    assert!(foreign.running(), "the unlabelled container is never touched");
}

/// A service whose process exits at once: degraded with its exit code and restart count within
/// 30 s, and not re-created (the same container, started again with a back-off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_looping_service_is_degraded_with_exit_code_and_restart_count() {
    let img = busybox_image("1");
    let d = Device::start("crash").await;
    d.put_plan(&d.plan(1, vec![deployment("web", vec![], vec![spec("app", &img, &["sh", "-c", "exit 3"], &[])])])).await;
    d.wait_generation(1).await;
    let s = d
        .wait_status("crash-looping reported", Duration::from_secs(30), |s| {
            s.state == DeviceState::Degraded
                && s.deployments[0].containers[0].exit_code == Some(3)
                && s.deployments[0].containers[0].observed.as_ref().is_some_and(|o| o.restart_count >= 1)
        })
        .await;
    let f = s.deployments[0].failure.as_ref().map(ToString::to_string).unwrap_or_default();
    assert!(f.contains("crash-looping") && f.contains("code 3"), "{f}");
    let id = s.deployments[0].containers[0].container_id.clone().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(d.containers()["web/app/service"].0, id, "not re-created");
    assert!(d.log().matches("starting ").count() <= 4, "no tight loop of starts:\n{}", d.log());
}

/// Starting a service again while applying a new plan is the plan's own work, not drift: only a
/// repair pass (a look at podman with the plan unchanged, or the resume after a restart) reports
/// what it changes as drift. Looks are kept out of the way: `podman events` fails (a wrapper
/// around podman) and the full look comes every 300 s, so the new plan meets the stopped service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_started_while_applying_a_new_plan_is_not_drift() {
    use std::os::unix::fs::PermissionsExt as _;
    let img = busybox_image("1");
    let dir = tempfile::tempdir().unwrap();
    let wrapper = dir.path().join("podman-without-events");
    std::fs::write(&wrapper, "#!/bin/sh\n[ \"$1\" = events ] && exit 1\nexec podman \"$@\"\n").unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, format!("podman = \"{}\"\n", wrapper.display())).unwrap();
    let d = Device::start_flags("newplan", "podman", 300, &["--config", config.to_str().unwrap()]).await;
    let web = deployment("web", vec![], vec![spec("app", &img, &["sleep", "3600"], &[])]);
    d.put_plan(&d.plan(1, vec![web.clone()])).await;
    d.wait_generation(1).await;
    let (id, _) = d.containers()["web/app/service"].clone();
    harmony_testkit::podman(&["stop", "-t", "0", &id]);
    let other = deployment("other", vec![], vec![spec("app", &img, &["sleep", "3600"], &[])]);
    d.put_plan(&d.plan(2, vec![web, other])).await;
    let s = d.wait_status("generation 2 applied, web/app running", Duration::from_secs(30), |s| s.applied_generation == Some(2) && app_running(s).is_some()).await;
    assert_eq!(app_running(&s), Some(id.clone()), "the stopped container is started again by the new plan's reconcile\n{}", d.log());
    assert!(s.drift.is_empty(), "a start made while applying a new plan is not drift: {:#?}", s.drift);
}
