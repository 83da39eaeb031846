//! Issue 9's rollout acceptance through the real binaries: 20 `harmony-agent` processes with
//! the runtime disabled (podman adds nothing to a rollout's gate), a real nats-server, and
//! `harmony apply` rolling a deployment change out in three health-gated steps. What happened is
//! read back from the plans bucket (revisions and generations per device), the rollout record
//! and `harmony status`.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::fleet::{Agent, Fleet, text};
use futures::StreamExt;
use harmony_executor::fleet::rollout::{rollout_order, waves};
use harmony_schemas::fleet::{DevicePlan, PLANS_BUCKET, ROLLOUTS_BUCKET, RolloutRecord, RolloutState, SignedDevicePlan, WaveState};

const DEVICES: usize = 20;

/// Deployment `hub` on every device, rolled out 10 % → 50 % → 100 %.
fn hub(version: &str, max_failed: u32, health_timeout: &str, auto_revert: bool) -> String {
    format!(
        r#"deployment hub {{
    tenant acme
    fleet pico
    selector site=e2e
    container app {{
        image "localhost/hub:{version}"
        args "sleep" "3600"
    }}
    rollout {{
        step 10
        step 50
        step 100
        max-failed {max_failed}
        health-timeout "{health_timeout}"
        auto-revert {auto_revert}
    }}
}}
"#,
        auto_revert = if auto_revert { "#true" } else { "#false" }
    )
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

/// Every device's plan entry: (revision, plan).
fn plans(f: &Fleet) -> BTreeMap<String, (u64, DevicePlan)> {
    let key = f.fleet_key.verifying_key();
    plans_raw(f)
        .into_iter()
        .map(|(k, (revision, value))| (k, (revision, SignedDevicePlan::from_slice(&value).and_then(|s| s.verify(&[key])).expect("verifies"))))
        .collect()
}

fn record(f: &Fleet) -> Option<RolloutRecord> {
    rt().block_on(async {
        let client = async_nats::connect(f.server.url()).await.expect("connect");
        let kv = async_nats::jetstream::new(client).get_key_value(ROLLOUTS_BUCKET).await.ok()?;
        let e = kv.entry("pico").await.expect("entry")?;
        Some(serde_json::from_slice(&e.value).expect("record decodes"))
    })
}

fn image(p: &DevicePlan) -> &str {
    &p.deployments[0].services[0].container.image
}

/// A fleet of 20 devices running `hub` version 1, every agent ready.
fn converged(max_failed: u32, timeout: &str, revert: bool) -> (Fleet, BTreeMap<String, Agent>) {
    let names: Vec<String> = (0..DEVICES).map(|i| format!("ro{i:02}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut f = Fleet::new(&names);
    f.set_deployments(&hub("1", max_failed, timeout, revert));
    let devices = f.devices.clone();
    let agents: BTreeMap<String, Agent> = devices.iter().map(|d| (d.clone(), f.start_agent_with(d, "none", &[]))).collect();
    let out = f.apply();
    assert!(!out.contains("rollout"), "first plans are creates, not a rollout: {out}");
    for d in &devices {
        f.wait_ready(d, 1);
    }
    (f, agents)
}

/// The waves the rollout must use: devices by SHA-256 of their id, 10 / 50 / 100 %.
fn expected_waves(f: &Fleet) -> Vec<Vec<String>> {
    waves(&rollout_order(f.devices.iter().map(String::as_str)), &[10, 50, 100]).into_iter().map(|(_, d)| d).collect()
}

#[test]
fn three_step_rollout_over_20_agents_succeeds_in_order() {
    let (f, _agents) = converged(1, "30s", true);
    let before = plans(&f);
    f.set_deployments(&hub("2", 1, "30s", true));
    // The plan shows the steps and which devices are in each, before anything happens.
    let planned = f.harmony(&["plan"]);
    let planned_text = text(&planned);
    let expected = expected_waves(&f);
    assert_eq!(expected.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 8, 10]);
    assert!(planned_text.contains("rollout of deployment hub over 20 devices: 3 steps"), "{planned_text}");
    assert!(planned_text.contains(&format!("step 1 ( 10 %): {}", expected[0].join(" "))), "{planned_text}");
    let out = f.apply();
    assert!(out.contains("rollout of deployment hub complete (3 steps)"), "{out}");
    let after = plans(&f);
    // Every device has version 2 at generation 2, and wave k's writes all precede wave k+1's.
    for (d, (_, p)) in &after {
        assert_eq!((image(p), p.generation), ("localhost/hub:2", 2), "{d}");
        assert_eq!(before[d].1.generation, 1);
    }
    let rev = |d: &String| after[d].0;
    for k in 0..2 {
        let last = expected[k].iter().map(rev).max().expect("non-empty wave");
        let next = expected[k + 1].iter().map(rev).min().expect("non-empty wave");
        assert!(last < next, "wave {} written (up to revision {last}) before wave {} (from {next})", k + 1, k + 2);
    }
    let r = record(&f).expect("rollout record");
    assert_eq!(r.state, RolloutState::Complete);
    assert_eq!(
        r.waves.iter().map(|w| (w.percent, w.devices.clone(), w.state)).collect::<Vec<_>>(),
        vec![(10, expected[0].clone(), WaveState::Healthy), (50, expected[1].clone(), WaveState::Healthy), (100, expected[2].clone(), WaveState::Healthy)]
    );
    assert!(r.failed.is_empty());
    for d in &f.devices {
        f.wait_ready(d, 2);
    }
    // Status shows the rollout.
    let st = f.harmony(&["status"]);
    assert!(text(&st).contains("rollout deployment hub"), "{}", text(&st));
    // A second apply is a no-op and starts no new rollout.
    let again = f.apply();
    assert!(again.contains("nothing to write"), "{again}");
    assert_eq!(record(&f).map(|r| r.started_ms), Some(r.started_ms));
}

#[test]
fn failures_beyond_max_failed_halt_the_rollout_and_auto_revert_restores_every_device() {
    let (f, mut agents) = converged(1, "6s", true);
    let waves = expected_waves(&f);
    // Two devices of step 2 go offline: two failures > max-failed 1.
    let down: Vec<String> = waves[1][..2].to_vec();
    for d in &down {
        agents.remove(d).expect("agent").kill();
    }
    f.set_deployments(&hub("2", 1, "6s", true));
    let out = f.try_apply(&[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "a halted rollout fails the apply: {t}");
    assert!(t.contains("halted and reverted: 2 devices failed (max-failed 1)"), "{t}");
    for d in &down {
        assert!(t.contains(&format!("rollout: {d} failed in step 2: not healthy within 6 s")), "{t}");
    }
    let r = record(&f).expect("record");
    assert_eq!(r.state, RolloutState::Reverted);
    assert_eq!(r.waves.iter().map(|w| w.state).collect::<Vec<_>>(), vec![WaveState::Healthy, WaveState::Failed, WaveState::Pending]);
    let mut failed: Vec<String> = r.failed.iter().map(|x| x.device.clone()).collect();
    failed.sort();
    let mut want = down.clone();
    want.sort();
    assert_eq!(failed, want);
    // Steps 1 and 2 got version 2 (generation 2) and then version 1 back as generation 3, signed;
    // step 3 was never written.
    let now = plans(&f);
    for d in waves[0].iter().chain(&waves[1]) {
        assert_eq!((image(&now[d].1), now[d].1.generation), ("localhost/hub:1", 3), "{d} reverted");
    }
    for d in &waves[2] {
        assert_eq!((image(&now[d].1), now[d].1.generation), ("localhost/hub:1", 1), "{d} untouched");
    }
    // Every running agent applies what is now its plan: the previous version everywhere.
    for d in waves[0].iter().chain(&waves[1]).filter(|d| !down.contains(d)) {
        f.wait_ready(d, 3);
    }
    for d in &waves[2] {
        f.wait_ready(d, 1);
    }

    // An apply that died while writing the previous plans back: the record says `reverting` and
    // one device of step 1 still has version 2. The next apply of the same repository finishes
    // the revert (that device only), writes nothing of the rollout, and says so.
    let d0 = waves[0][0].clone();
    rt().block_on(async {
        let js = async_nats::jetstream::new(async_nats::connect(f.server.url()).await.expect("connect"));
        let rollouts = js.get_key_value(ROLLOUTS_BUCKET).await.expect("rollouts");
        let e = rollouts.entry("pico").await.expect("entry").expect("record");
        let mut r: RolloutRecord = serde_json::from_slice(&e.value).expect("record");
        r.state = RolloutState::Reverting;
        rollouts.update("pico", serde_json::to_vec(&r).expect("json").into(), e.revision).await.expect("update record");
        // Version 2 as the rollout wrote it (generation 2, from the entry's history), again at 4.
        let plans = js.get_key_value(PLANS_BUCKET).await.expect("plans");
        let mut history = plans.history(&d0).await.expect("history");
        let mut p = None;
        while let Some(e) = history.next().await {
            let plan = SignedDevicePlan::from_slice(&e.expect("entry").value).and_then(|s| s.verify(&[f.fleet_key.verifying_key()])).expect("verifies");
            if plan.generation == 2 {
                p = Some(plan);
            }
        }
        let mut p = p.expect("generation 2 in the history");
        assert_eq!(image(&p), "localhost/hub:2");
        p.generation = 4;
        plans.put(&d0, SignedDevicePlan::sign(&p, &f.fleet_key).expect("sign").to_vec().into()).await.expect("put");
    });
    f.wait_ready(&d0, 4);
    let planned = text(&f.harmony(&["plan"]));
    assert!(planned.contains("finishes the interrupted auto-revert of this rollout"), "{planned}");
    let before = plans(&f);
    let out = f.try_apply(&[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("halted and reverted"), "{t}");
    let after = plans(&f);
    assert_eq!((image(&after[&d0].1), after[&d0].1.generation), ("localhost/hub:1", 5), "{d0} reverted by the finishing apply");
    for (d, (rev, p)) in after.iter().filter(|(d, _)| **d != d0) {
        assert_eq!((*rev, image(p)), (before[d].0, "localhost/hub:1"), "{d} was not written again");
    }
    let finished = record(&f).expect("record");
    assert_eq!((finished.state, finished.id.as_str(), finished.started_ms), (RolloutState::Reverted, r.id.as_str(), r.started_ms), "the same rollout");
    f.wait_ready(&d0, 5);
}

/// Starts `harmony apply --yes EXTRA…` (with `env`) and kills it (SIGKILL) once step 1 of the
/// rollout is healthy; checks it stopped before the end with step 1 written. Returns the rollout
/// record then and every plan entry.
fn interrupt_after_step_1(f: &Fleet, waves: &[Vec<String>], extra: &[&str], env: &[(&str, &str)]) -> (RolloutRecord, BTreeMap<String, (u64, DevicePlan)>) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_harmony"))
        .arg("--repo")
        .arg(&f.repo)
        .args(f.apply_args())
        .args(extra)
        .envs(env.iter().copied())
        .env_remove("HARMONY_SIGNING_KEY")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start harmony apply");
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = loop {
        if let Some(r) = record(f)
            && r.waves[0].state == WaveState::Healthy
        {
            break r;
        }
        assert!(Instant::now() < deadline, "step 1 never became healthy");
        std::thread::sleep(Duration::from_millis(50));
    };
    child.kill().expect("kill apply");
    let _ = child.wait();
    let mid = plans(f);
    let written = mid.values().filter(|(_, p)| image(p) == "localhost/hub:2").count();
    assert!(written < DEVICES, "interrupted before the end: {written} written");
    for d in &waves[0] {
        assert_eq!(mid[d].1.generation, 2, "{d}: step 1 written");
    }
    (first, mid)
}

#[test]
fn an_interrupted_rollout_resumes_where_it_stopped() {
    let (f, _agents) = converged(0, "30s", false);
    let waves = expected_waves(&f);
    f.set_deployments(&hub("2", 0, "30s", false));
    let (first, mid) = interrupt_after_step_1(&f, &waves, &[], &[]);
    // The plan says the apply will resume it.
    let planned = text(&f.harmony(&["plan"]));
    assert!(planned.contains("resumes the unfinished rollout of this desired state: ") && planned.contains(" of 3 steps already healthy"), "{planned}");
    // Re-run: waits for the dead apply's lock to expire, then resumes the same rollout.
    let out = f.try_apply(&["--lock-timeout", "60s"]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("rollout of deployment hub complete (3 steps)"), "{t}");
    assert_resumed(&f, &first, &waves, &mid);
    for d in &f.devices {
        f.wait_ready(d, 2);
    }
}

/// Issue 19: an interrupted `harmony apply PLANFILE` of a rollout resumes from a plan file. The
/// apply of the first file is killed once step 1 is healthy; the next plan (saved to a second
/// file) says it resumes the unfinished rollout, and applying that file finishes the same
/// rollout (same id and start) without writing step 1 again, reporting the interrupted apply it
/// found in the journal (`fleets[].interrupted`).
#[test]
fn an_interrupted_planfile_apply_resumes_from_the_next_plan_file() {
    let (f, _agents) = converged(0, "30s", false);
    let waves = expected_waves(&f);
    f.set_deployments(&hub("2", 0, "30s", false));
    let key = f.dir.path().join("fingerprint.key");
    std::fs::write(&key, "07".repeat(32)).expect("write key");
    let env = [("HARMONY_FINGERPRINT_KEY_FILE", key.to_str().expect("utf-8"))];
    let plan_to = |name: &str| {
        let file = f.dir.path().join(name);
        let out = common::fleet::harmony(&f.repo, &["plan", "--out", file.to_str().expect("utf-8")], &env);
        assert!(out.status.success(), "{}", text(&out));
        (file, text(&out))
    };
    let (first_file, _) = plan_to("first.json");
    let (first, mid) = interrupt_after_step_1(&f, &waves, &[first_file.to_str().expect("utf-8")], &env);
    // The next plan resumes the rollout; its file is applied (after the dead apply's lock expires).
    let (second_file, planned) = plan_to("second.json");
    assert!(planned.contains("resumes the unfinished rollout of this desired state: ") && planned.contains(" of 3 steps already healthy"), "{planned}");
    let mut args = f.apply_args();
    args.extend([second_file.to_str().expect("utf-8").to_string(), "--format".into(), "json".into(), "--lock-timeout".into(), "60s".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = common::fleet::harmony(&f.repo, &args, &env);
    assert!(out.status.success(), "{}", text(&out));
    let outcome = common::apply_outcome(&out.stdout);
    let fleet = &outcome["fleets"][0];
    assert_eq!(fleet["rollout"]["state"], "complete", "{outcome:#}");
    assert!(fleet["interrupted"]["writes"].as_u64().is_some_and(|w| w > 0), "the dead apply is reported from its journal: {outcome:#}");
    assert_resumed(&f, &first, &waves, &mid);
}

/// The rollout `first` was resumed and completed: same id and start, step 1's plans (`mid`)
/// not written again, every device's plan at generation 2 of `hub:2`.
fn assert_resumed(f: &Fleet, first: &RolloutRecord, waves: &[Vec<String>], mid: &BTreeMap<String, (u64, DevicePlan)>) {
    let r = record(f).expect("record");
    assert_eq!((r.state, r.started_ms, r.id.as_str()), (RolloutState::Complete, first.started_ms, first.id.as_str()), "the same rollout, resumed");
    let end = plans(f);
    for d in &waves[0] {
        assert_eq!(end[d], mid[d], "{d}: step 1 is not written again");
    }
    for d in &f.devices {
        assert_eq!((image(&end[d].1), end[d].1.generation), ("localhost/hub:2", 2), "{d}");
    }
}

/// One device with a real podman agent: deployment `hub` (`sleep 3600`, the rollout block's
/// children `rollout`) applied and ready, then `hub` with `args`: that apply's output and how
/// long it took.
fn podman_rollout(name: &str, rollout: &str, args: &str) -> (String, std::process::Output, Duration) {
    let img = harmony_testkit::busybox_image("1");
    let deployment = |args: &str| {
        format!(
            "deployment hub {{\n    tenant acme\n    fleet pico\n    selector site=e2e\n    container app {{\n        image \"{img}\"\n        args {args}\n    }}\n    rollout {{\n        {rollout}\n    }}\n}}\n"
        )
    };
    let mut f = Fleet::new(&[name]);
    let dev = f.devices[0].clone();
    f.set_deployments(&deployment("\"sleep\" \"3600\""));
    let _agent = f.start_agent_with(&dev, "podman", &["--observe-interval", "2"]);
    f.apply();
    f.wait_ready(&dev, 1);
    f.set_deployments(&deployment(args));
    let started = Instant::now();
    let out = f.try_apply(&[]);
    (dev, out, started.elapsed())
}

/// A rollout step holding a device whose new version crash-loops (real podman): the agent reports
/// it degraded with the exit code (observed, not "I started it"). A crash loop may recover, so
/// the step waits for it until its health timeout, then fails (and the apply with it) with the
/// degraded reason: at the deadline, not before.
#[test]
fn a_step_with_a_crash_looping_service_fails() {
    let timeout = 25;
    let rollout = format!("step 100\n        max-failed 0\n        health-timeout \"{timeout}s\"\n        auto-revert #false");
    let (dev, out, took) = podman_rollout("crash", &rollout, "\"sh\" \"-c\" \"exit 3\"");
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "the failed step fails the apply: {t}");
    assert!(t.contains(&format!("rollout: {dev} failed in step 1")) && t.contains(&format!("not healthy within {timeout} s")), "{t}");
    assert!(t.contains("degraded") && t.contains("crash-looping") && t.contains("code 3"), "the failure names the degraded reason: {t}");
    assert!(took >= Duration::from_secs(timeout), "failed at the step's deadline, not before: {took:?}\n{t}");
    assert!(took < Duration::from_secs(timeout + 30), "failed by the step's deadline: {took:?}");
}

/// Issue 19: a plan file carries a fleet's phased rollout and a new device, and `harmony apply
/// PLANFILE` runs exactly them — the planned steps, health-gated, with the planned plans
/// (byte-compared with the file) and the planned KV revisions as compare-and-set expectations:
/// a device entry created by someone else between plan and apply is refused as stale (exit 2),
/// never overwritten, and the rollout still completes.
#[test]
fn apply_planfile_runs_the_planned_rollout_and_creates_the_new_device() {
    let names = ["pf0", "pf1", "pf2", "pf3"];
    let mut f = Fleet::new(&names);
    f.set_deployments(&hub("1", 0, "30s", false));
    let devices = f.devices.clone();
    let _agents: Vec<Agent> = devices.iter().map(|d| f.start_agent_with(d, "none", &[])).collect();
    f.apply();
    for d in &devices {
        f.wait_ready(d, 1);
    }
    // Version 2 of hub, and a new device (no agent yet).
    f.set_deployments(&hub("2", 0, "30s", false));
    let new = format!("pfnew-{}", std::process::id());
    let path = f.repo.join("fleet.kdl");
    let kdl = std::fs::read_to_string(&path).expect("read") + &format!("device {new} {{\n    fleet pico\n    labels site=e2e\n}}\n");
    std::fs::write(&path, kdl).expect("write");
    let key = f.dir.path().join("fingerprint.key");
    std::fs::write(&key, "07".repeat(32)).expect("write key");
    let env = [("HARMONY_FINGERPRINT_KEY_FILE", key.to_str().expect("utf-8"))];
    let file = f.dir.path().join("p.json");
    let out = common::fleet::harmony(&f.repo, &["plan", "--out", file.to_str().expect("utf-8"), "--format", "json"], &env);
    assert!(out.status.success(), "{}", text(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan json");
    // The rollout is in the plan: its id and steps (the new device is in a step but is a create,
    // written first, not waited for).
    let rollout = &plan["rollouts"][0];
    assert!(rollout["id"].as_str().is_some_and(|id| id.starts_with("sha256:")), "{plan:#}");
    let mut all: Vec<&str> = devices.iter().map(String::as_str).collect();
    all.push(&new);
    let expected = waves(&rollout_order(all), &[10, 50, 100]);
    let steps: Vec<Vec<String>> = rollout["steps"].as_array().expect("steps").iter().map(|s| serde_json::from_value(s["devices"].clone()).expect("devices")).collect();
    assert_eq!(steps, expected.iter().map(|(_, d)| d.clone()).collect::<Vec<_>>(), "{plan:#}");
    let payload = |device: &str| -> (serde_json::Value, serde_json::Value) {
        let a = plan["actions"].as_array().expect("actions").iter().find(|a| a["unit"] == format!("device-plan/pico/{device}")).expect("action").clone();
        (a["apply"]["payload"]["plan"].clone(), a["apply"]["observed"].clone())
    };
    let (created, observed) = payload(&new);
    assert_eq!((created["generation"].as_u64(), observed.is_null()), (Some(1), true), "the new device is a create: {plan:#}");
    for d in &devices {
        let (p, observed) = payload(d);
        let p: DevicePlan = serde_json::from_value(p).expect("a device plan");
        assert_eq!((p.generation, image(&p)), (2, "localhost/hub:2"), "{d}: {plan:#}");
        assert!(observed["revision"].as_u64().is_some(), "{d}: {plan:#}");
    }

    // Someone creates the new device's entry between plan and apply.
    let moved = rt().block_on(async {
        let client = async_nats::connect(f.server.url()).await.expect("connect");
        let kv = async_nats::jetstream::new(client).get_key_value(PLANS_BUCKET).await.expect("bucket");
        kv.create(new.as_str(), "someone else's".into()).await.expect("create")
    });
    let mut args = f.apply_args();
    args.extend([file.to_str().expect("utf-8").to_string(), "--format".into(), "json".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = common::fleet::harmony(&f.repo, &args, &env);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let outcome = common::apply_outcome(&out.stdout);
    let unit = |device: &str| outcome["actions"].as_array().expect("actions").iter().find(|a| a["unit"] == format!("device-plan/pico/{device}")).expect("unit").clone();
    assert_eq!((unit(&new)["outcome"].as_str(), unit(&new)["found"].as_str()), (Some("stale"), Some(format!("KV revision {moved}").as_str())), "{outcome:#}");
    let after = plans_raw(&f);
    assert_eq!(after[&new].0, moved, "the moved entry was overwritten");
    let key = f.fleet_key.verifying_key();
    for d in &devices {
        assert_eq!(unit(d)["outcome"], "applied", "{outcome:#}");
        let written = SignedDevicePlan::from_slice(&after[d].1).and_then(|s| s.verify(&[key])).expect("verifies");
        assert_eq!(serde_json::to_value(&written).expect("json"), payload(d).0, "{d}: not the planned plan");
    }
    // The planned steps ran, in order, health-gated.
    let r = record(&f).expect("rollout record");
    assert_eq!((r.state, r.id.as_str()), (RolloutState::Complete, rollout["id"].as_str().expect("id")));
    assert!(r.waves.iter().all(|w| w.state == WaveState::Healthy), "{r:?}");
    for d in &devices {
        f.wait_ready(d, 2);
    }
}

/// Every entry's (revision, raw value).
fn plans_raw(f: &Fleet) -> BTreeMap<String, (u64, Vec<u8>)> {
    rt().block_on(async {
        let client = async_nats::connect(f.server.url()).await.expect("connect");
        let kv = async_nats::jetstream::new(client).get_key_value(PLANS_BUCKET).await.expect("plans bucket");
        let mut keys = kv.keys().await.expect("keys");
        let mut out = BTreeMap::new();
        while let Some(k) = keys.next().await {
            let k = k.expect("key");
            let e = kv.entry(&k).await.expect("entry").expect("present");
            out.insert(k, (e.revision, e.value.to_vec()));
        }
        out
    })
}

/// The `rollout` block's `settle`: a step's device counts healthy only once the agent has seen
/// every service running for that long (real podman), so the apply takes at least `settle`;
/// `plan` shows it with the rollout.
#[test]
fn a_step_waits_for_the_rollouts_settle_time() {
    let settle = 20;
    let (_, out, took) = podman_rollout("settle", &format!("step 100\n        health-timeout \"90s\"\n        settle \"{settle}s\""), "\"sleep\" \"3601\"");
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains(&format!("health-timeout 90s, settle {settle}s")), "the plan shows the settle time: {t}");
    assert!(t.contains("complete"), "{t}");
    assert!(took >= Duration::from_secs(settle), "healthy only after {settle} s seen running: {took:?}\n{t}");
}

/// Issue 19: a rollout runs only from the rollout record it was planned against. Between
/// `plan --out` and `apply PLANFILE` the fleet's record moves (written again, as any other
/// apply's rollout progress writes it): the file's writes are refused as stale (exit 2), with
/// `--refuse-stale=all` and without, naming the record's revisions; nothing is written, and a
/// fresh plan applies.
#[test]
fn a_rollout_record_moved_since_planning_makes_the_rollout_stale() {
    let (f, _agents) = converged(0, "30s", false);
    // A first rollout leaves the fleet's record (complete); the plan is made against it.
    f.set_deployments(&hub("2", 0, "30s", false));
    let out = f.try_apply(&[]);
    assert!(out.status.success(), "{}", text(&out));
    f.set_deployments(&hub("3", 0, "30s", false));
    let key = f.dir.path().join("fingerprint.key");
    std::fs::write(&key, "07".repeat(32)).expect("write key");
    let env = [("HARMONY_FINGERPRINT_KEY_FILE", key.to_str().expect("utf-8"))];
    let file = f.dir.path().join("plan.json");
    let out = common::fleet::harmony(&f.repo, &["plan", "--out", file.to_str().expect("utf-8")], &env);
    assert!(out.status.success(), "{}", text(&out));
    let before = plans(&f);
    let moved = rt().block_on(async {
        let client = async_nats::connect(f.server.url()).await.expect("connect");
        let kv = async_nats::jetstream::new(client).get_key_value(ROLLOUTS_BUCKET).await.expect("the rollouts bucket");
        let e = kv.entry("pico").await.expect("entry").expect("the first rollout's record");
        assert_eq!(serde_json::from_slice::<RolloutRecord>(&e.value).expect("a record").state, RolloutState::Complete);
        kv.put("pico", e.value).await.expect("put")
    });
    for extra in [&["--refuse-stale=all"][..], &[]] {
        let mut args = f.apply_args();
        args.extend([file.to_str().expect("utf-8"), "--format", "json"].iter().chain(extra).map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = common::fleet::harmony(&f.repo, &args, &env);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let outcome = common::apply_outcome(&out.stdout);
        let stale: Vec<&serde_json::Value> = outcome["actions"].as_array().expect("actions").iter().filter(|a| a["outcome"] == "stale").collect();
        assert_eq!(stale.len(), DEVICES, "every device's write is stale: {outcome:#}");
        assert!(stale[0]["message"].as_str().is_some_and(|m| m.contains("the rollout record moved since planning")), "{outcome:#}");
        assert_eq!(stale[0]["found"], format!("rollout record revision {moved}"), "{outcome:#}");
        assert_eq!(plans(&f), before, "nothing was written");
    }
    let out = f.try_apply(&[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(plans(&f).values().all(|(_, p)| image(p) == "localhost/hub:3"));
}

/// Issue 27: SIGTERM while a rollout waits for its first step's health (no agent runs, so it
/// would wait for the whole 300 s health timeout): the apply stops waiting, ends its journal,
/// releases the fleet's lock and exits 1 within 10 s; step 1's devices are reported written but
/// not waited for, the later steps' not written, each once, then the outcome (JSON Lines); the
/// rollout record stays in progress at step 1, for the next apply to resume.
#[test]
fn sigterm_during_a_rollout_ends_the_journal_releases_the_lock_and_exits_within_10_s() {
    let names: Vec<String> = (0..DEVICES).map(|i| format!("st{i:02}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let f = Fleet::new(&names);
    f.set_deployments(&hub("1", 0, "300s", false));
    f.apply();
    let waves = expected_waves(&f);
    f.set_deployments(&hub("2", 0, "300s", false));
    let (out, err) = (f.dir.path().join("apply.out"), f.dir.path().join("apply.err"));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_harmony"))
        .arg("--repo")
        .arg(&f.repo)
        .args(f.apply_args())
        .args(["--format", "json"])
        .env_remove("HARMONY_SIGNING_KEY")
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("start harmony apply");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if record(&f).is_some_and(|r| r.waves[0].state == WaveState::Waiting) && waves[0].iter().all(|d| plans(&f)[d].1.generation == 2) {
            break;
        }
        assert!(Instant::now() < deadline && child.try_wait().expect("try_wait").is_none(), "step 1 was never waited for: {}", std::fs::read_to_string(&err).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(50));
    }
    let signalled = Instant::now();
    assert!(std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill").success());
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        assert!(signalled.elapsed() < Duration::from_secs(10), "still running 10 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&err).expect("stderr");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted: no further unit starts"), "{stderr}");
    let outcome = common::apply_outcome(&std::fs::read(&out).expect("stdout"));
    let unit = |d: &str| outcome["actions"].as_array().expect("actions").iter().find(|a| a["unit"] == format!("device-plan/pico/{d}")).expect("unit").clone();
    for d in &waves[0] {
        let u = unit(d);
        assert_eq!(u["outcome"], "applied", "{u:#}");
        assert!(u["message"].as_str().is_some_and(|m| m.contains("rollout step 1: not waited for (the apply was interrupted")), "{u:#}");
    }
    for d in waves[1].iter().chain(&waves[2]) {
        let u = unit(d);
        assert_eq!(u["outcome"], "skipped", "{u:#}");
        assert!(u["message"].as_str().is_some_and(|m| m.starts_with("not written (step ")), "{u:#}");
    }
    // The journal has its end, the lock is gone (the next apply takes it at once), the
    // rollout stays resumable.
    let journal = harmony_executor::fleet::journal::read_records(&harmony_executor::fleet::journal::journal_path(&f.dir.path().join("harmony-state"), "pico"));
    assert!(matches!(journal.last(), Some(harmony_executor::fleet::journal::Record::End { .. })), "{journal:?}");
    let unlock = f.harmony(&["unlock", "pico", "--yes"]);
    assert!(text(&unlock).contains("fleet pico is not locked"), "{}", text(&unlock));
    let r = record(&f).expect("record");
    assert_eq!((r.state, r.waves[0].state), (RolloutState::InProgress, WaveState::Waiting));
}
