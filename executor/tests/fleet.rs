//! Fleet apply against a real nats-server with JetStream (testkit; needs scripts/install-test-deps.sh).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use ed25519_dalek::SigningKey;
use harmony_executor::fleet::apply::ActionOutcome;
use harmony_executor::fleet::journal::{Record, read_records};
use harmony_executor::fleet::observe::read_bucket;
use harmony_executor::fleet::{
    ApplyRequest, ApplyRun, Condition, DesiredFleet, FleetError, FleetLock, FleetOp, LockHolder, LockOptions, NatsOptions, StatusThresholds, apply_actions,
    connect, ensure_buckets, fleet_status, observe_fleet, plan_fleet, run_apply,
};
use harmony_schemas::fleet::{
    ContainerSpec, DeploymentPlan, DevicePlan, PLANS_BUCKET, PROTOCOL_VERSION, RestartPolicy, STATUS_BUCKET, Service, SignedDevicePlan, generate_signing_key,
};
use harmony_testkit::NatsServer;

fn hub(env: &str) -> DeploymentPlan {
    let c = ContainerSpec {
        name: "hub".into(),
        image: "registry.example/acme/hub:2".into(),
        command: vec![],
        args: vec![],
        env: [("LOG".to_string(), env.to_string())].into_iter().collect(),
        ports: vec![],
        volumes: vec![],
    };
    DeploymentPlan::new("hub", "acme", vec![], vec![Service::new(c, RestartPolicy::Always)])
}

/// `n` devices `d-000…`; even ones run `hub` with LOG=`env_even`, odd ones with LOG=`env_odd`.
fn desired(n: usize, env_even: &str, env_odd: &str) -> DesiredFleet {
    let plans = (0..n)
        .map(|i| {
            let id = format!("d-{i:03}");
            let env = if i % 2 == 0 { env_even } else { env_odd };
            let plan = DevicePlan {
                agent: None,
                version: PROTOCOL_VERSION,
                device_id: id.clone(),
                fleet: "pico".into(),
                generation: 0,
                source_revision: "test".into(),
                agent_version: "0.1.0".into(),
                deployments: vec![hub(env)],
                key_chain: vec![],
            };
            (id, plan)
        })
        .collect();
    DesiredFleet { fleet: "pico".into(), plans }
}

fn request(d: &DesiredFleet, key: &SigningKey) -> ApplyRequest {
    ApplyRequest {
        holder: harmony_executor::fleet::LockHolder::this_command("test"),
        rollouts: Default::default(),
        rollout_progress: None,
        rollout_poll: None,
        storage: Default::default(),
        desired: d.clone(),
        signing_key: key.clone(),
        trusted: vec![],
        parallelism: 16,
        lock: LockOptions { ttl: Duration::from_secs(30), timeout: Duration::ZERO },
        state_dir: None,
        confirm: None,
        progress: None,
        request_timeout: Some(Duration::from_secs(1)),
    }
}

async fn client(server: &NatsServer) -> async_nats::Client {
    let opts = NatsOptions { urls: vec![server.url()], request_timeout: Some(Duration::from_secs(2)), ..Default::default() };
    connect(&opts).await.expect("connect")
}

/// Every entry of the plans bucket: key → (revision, verified plan).
async fn entries(client: &async_nats::Client, key: &SigningKey) -> BTreeMap<String, (u64, DevicePlan)> {
    let js = jetstream::new(client.clone());
    let store = js.get_key_value(PLANS_BUCKET).await.expect("bucket");
    read_bucket(client, &store)
        .await
        .expect("read")
        .into_iter()
        .filter(|e| harmony_schemas::fleet::valid_device_id(&e.key))
        .map(|e| {
            let plan = SignedDevicePlan::from_slice(&e.value)
                .expect("decodes")
                .verify(&[key.verifying_key()])
                .expect("signature verifies with the fleet's public key");
            plan.validate().expect("hashes check out");
            (e.key, (e.revision, plan))
        })
        .collect()
}

fn ops(run: &ApplyRun) -> BTreeMap<FleetOp, usize> {
    let mut m = BTreeMap::new();
    for a in &run.actions {
        *m.entry(a.op).or_default() += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observing_a_fleet_never_applied_reads_empty_and_creates_nothing() {
    let server = NatsServer::start();
    let c = client(&server).await;
    let key = generate_signing_key().expect("key");
    let observed = harmony_executor::fleet::observe::observe_all(&c, "pico", &[key.verifying_key()]).await.expect("observe an empty server");
    assert!(observed.plans.is_empty() && observed.statuses.is_empty() && observed.heartbeats.is_empty() && observed.warnings.is_empty());
    let js = jetstream::new(c.clone());
    assert!(harmony_executor::fleet::observe::open_bucket(&js, PLANS_BUCKET).await.expect("open").is_none(), "observing created the plans bucket");
    // Once the buckets exist they are opened and read.
    run_apply(&c, request(&desired(2, "a", "a"), &key)).await.expect("apply");
    let observed = harmony_executor::fleet::observe::observe_all(&c, "pico", &[key.verifying_key()]).await.expect("observe");
    assert_eq!(observed.plans.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_noop_update_exactly_matching_prune_and_journal() {
    let server = NatsServer::start();
    let c = client(&server).await;
    let key = generate_signing_key().expect("key");
    let state = tempfile::tempdir().expect("tmp");

    // 1. First apply creates every plan, generation 1, signed.
    let d1 = desired(10, "info", "info");
    let mut req = request(&d1, &key);
    req.state_dir = Some(state.path().to_path_buf());
    let run = run_apply(&c, req).await.expect("apply");
    assert_eq!(ops(&run), [(FleetOp::Create, 10)].into_iter().collect());
    assert_eq!(run.report.written(), 10);
    let first = entries(&c, &key).await;
    assert_eq!(first.len(), 10);
    assert!(first.values().all(|(_, p)| p.generation == 1));
    let journal = read_records(run.journal.as_deref().expect("journal"));
    assert_eq!(journal.iter().filter(|r| matches!(r, Record::Done { .. })).count(), 10);
    assert!(matches!(journal.last(), Some(Record::End { written: 10, .. })));

    // 2. Second apply: no-op, no writes, revisions unchanged.
    let run = run_apply(&c, request(&d1, &key)).await.expect("apply");
    assert_eq!(ops(&run), [(FleetOp::Noop, 10)].into_iter().collect());
    assert_eq!(run.report.written(), 0);
    assert_eq!(entries(&c, &key).await, first, "nothing written");
    // A new source revision alone writes nothing either.
    let mut d1b = d1.clone();
    d1b.plans.values_mut().for_each(|p| p.source_revision = "newer".into());
    assert_eq!(run_apply(&c, request(&d1b, &key)).await.expect("apply").report.written(), 0);

    // 3. A changed deployment (odd devices only) updates exactly those devices.
    let d2 = desired(10, "info", "debug");
    let run = run_apply(&c, request(&d2, &key)).await.expect("apply");
    assert_eq!(ops(&run), [(FleetOp::Update, 5), (FleetOp::Noop, 5)].into_iter().collect());
    let second = entries(&c, &key).await;
    for (id, (rev, plan)) in &second {
        let odd = id.trim_start_matches("d-").parse::<usize>().expect("n") % 2 == 1;
        if odd {
            assert_eq!(plan.generation, 2, "{id}");
            assert!(*rev > first[id].0, "{id} rewritten");
            assert_eq!(plan.deployments[0].services[0].container.env["LOG"], "debug");
        } else {
            assert_eq!((rev, plan), (&first[id].0, &first[id].1), "{id} untouched");
        }
    }

    // 4. A removed device's plan is deleted; the rest untouched.
    let mut d3 = d2.clone();
    d3.plans.remove("d-009");
    let run = run_apply(&c, request(&d3, &key)).await.expect("apply");
    assert_eq!(ops(&run), [(FleetOp::Delete, 1), (FleetOp::Noop, 9)].into_iter().collect());
    let third = entries(&c, &key).await;
    assert!(!third.contains_key("d-009"));
    assert_eq!(third.len(), 9);
    assert_eq!(run_apply(&c, request(&d3, &key)).await.expect("apply").report.written(), 0, "prune is idempotent");

    // 5. Re-adding it: generation continues above the deleted one's applied generation (from status).
    let js = jetstream::new(c.clone());
    let status = js.get_key_value(STATUS_BUCKET).await.expect("status bucket");
    let st = serde_json::json!({"version":1,"device_id":"d-009","agent_version":"0.1.0","applied_generation":2,"applied_source_revision":"test","state":"applied","last_error":null,"updated_at_ms":0});
    status.put("d-009", serde_json::to_vec(&st).expect("json").into()).await.expect("put");
    run_apply(&c, request(&d2, &key)).await.expect("apply");
    assert_eq!(entries(&c, &key).await["d-009"].1.generation, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_revision_refuses_that_action_and_applies_the_rest() {
    let server = NatsServer::start();
    let c = client(&server).await;
    let key = generate_signing_key().expect("key");
    run_apply(&c, request(&desired(4, "a", "a"), &key)).await.expect("apply");
    let js = jetstream::new(c.clone());
    let stores = ensure_buckets(&js, &Default::default()).await.expect("buckets");
    let observed = observe_fleet(&c, &stores, "pico", &[key.verifying_key()]).await.expect("observe");
    let mut d = desired(5, "b", "b");
    d.plans.remove("d-003");
    let actions = plan_fleet(&d, &observed).expect("plan");
    // Someone writes d-001 and creates d-004 after planning.
    let before = observed.plans["d-001"].revision;
    let mut other = d.plans["d-001"].clone();
    other.generation = 9;
    let moved = stores[0].put("d-001", SignedDevicePlan::sign(&other, &key).expect("sign").to_vec().into()).await.expect("put");
    let created = stores[0].put("d-004", SignedDevicePlan::sign(&other, &key).expect("sign").to_vec().into()).await.expect("put");
    let moved3 = stores[0].put("d-003", SignedDevicePlan::sign(&other, &key).expect("sign").to_vec().into()).await.expect("put");
    let report = apply_actions(&stores[0], actions, &key, None, &Default::default()).await;
    let outcome = |id: &str| report.results.iter().find(|r| r.device == id).map(|r| r.outcome.clone()).expect("result");
    assert_eq!(outcome("d-001"), ActionOutcome::Stale { expected: Some(before), found: Some(moved) });
    assert_eq!(outcome("d-004"), ActionOutcome::Stale { expected: None, found: Some(created) });
    assert!(matches!(outcome("d-003"), ActionOutcome::Stale { found: Some(r), .. } if r == moved3), "{:?}", outcome("d-003"));
    assert!(matches!(outcome("d-000"), ActionOutcome::Written { .. }));
    assert!(matches!(outcome("d-002"), ActionOutcome::Written { .. }));
    assert_eq!(report.stale().len(), 3);
    assert_eq!(report.written(), 2);
    // The refused entries are as the other writer left them.
    let e = entries(&c, &key).await;
    assert_eq!(e["d-001"].1.generation, 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_applies_wait_or_fail_naming_the_holder_and_crashed_locks_expire() {
    let server = NatsServer::start();
    let c = client(&server).await;
    let key = generate_signing_key().expect("key");
    let js = jetstream::new(c.clone());
    let holder = LockHolder { user: "alice".into(), host: "ops-1".into(), pid: 4242, since_ms: harmony_schemas::fleet::now_ms(), apply_id: "x".into(), ..LockHolder::default() };
    let ttl = Duration::from_secs(2);
    let lock = FleetLock::acquire(&js, "pico", &holder, LockOptions { ttl, timeout: Duration::ZERO }, &Default::default()).await.expect("lock");

    // A second applier fails at once, naming the holder and the expiry.
    let mut req = request(&desired(3, "a", "a"), &key);
    req.lock.ttl = ttl;
    let err = run_apply(&c, req).await.expect_err("locked");
    let msg = err.to_string();
    assert!(matches!(err, FleetError::Locked { .. }), "{msg}");
    assert!(msg.contains("alice@ops-1") && msg.contains("pid 4242") && msg.contains("expires in"), "{msg}");

    // With --lock-timeout it waits for the release, then applies.
    let waiter = {
        let c = c.clone();
        let mut req = request(&desired(3, "a", "a"), &key);
        req.lock = LockOptions { ttl, timeout: Duration::from_secs(10) };
        tokio::spawn(async move { run_apply(&c, req).await })
    };
    tokio::time::sleep(Duration::from_millis(2500)).await; // longer than the TTL: renewal keeps it
    assert!(!waiter.is_finished(), "the lock is renewed while held");
    lock.release().await.expect("release");
    let run = waiter.await.expect("join").expect("apply after waiting");
    assert_eq!(run.report.written(), 3);

    // A crashed holder (never releases, never renews) expires by itself.
    let crashed = FleetLock::acquire(&js, "pico", &holder, LockOptions { ttl, timeout: Duration::ZERO }, &Default::default()).await.expect("lock");
    drop(crashed); // stops renewing, leaves the entry
    let started = Instant::now();
    let mut req = request(&desired(3, "a", "a"), &key);
    req.lock = LockOptions { ttl, timeout: Duration::from_secs(10) };
    run_apply(&c, req).await.expect("apply after expiry");
    assert!(started.elapsed() < Duration::from_secs(8), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halted_writes_stop_starting_and_are_reported_not_written() {
    // What an interrupted apply (Ctrl-C, SIGTERM) or a lost lock does to a fleet's writes: the
    // ones in flight finish, no further one starts.
    let server = NatsServer::start();
    let c = client(&server).await;
    let key = generate_signing_key().expect("key");
    let js = jetstream::new(c.clone());
    let stores = ensure_buckets(&js, &Default::default()).await.expect("buckets");
    let observed = observe_fleet(&c, &stores, "pico", &[key.verifying_key()]).await.expect("observe");
    let actions = plan_fleet(&desired(10, "a", "a"), &observed).expect("plan");
    let started = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let s = started.clone();
    let halt: std::sync::Arc<dyn Fn() -> bool + Send + Sync> = std::sync::Arc::new(move || s.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= 4);
    let opts = harmony_executor::fleet::ApplyOptions { parallelism: 1, halt: Some(halt), ..Default::default() };
    let report = apply_actions(&stores[0], actions, &key, None, &opts).await;
    assert_eq!(report.written(), 4);
    let failed = report.failed();
    assert_eq!(failed.len(), 6);
    assert!(failed.iter().all(|r| matches!(&r.outcome, ActionOutcome::Failed { error } if error.contains("not written: the apply was interrupted"))), "{failed:?}");
    assert_eq!(entries(&c, &key).await.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_lock_left_by_a_killed_apply_of_this_host_is_taken_over_and_unlock_removes_only_what_it_showed() {
    use harmony_executor::lock::{LockTarget, show, unlock};
    let server = NatsServer::start();
    let c = client(&server).await;
    let key = generate_signing_key().expect("key");
    let js = jetstream::new(c.clone());
    let now = LockOptions { ttl: Duration::from_secs(30), timeout: Duration::ZERO };
    // An apply of this host killed while holding the lock: its entry stays (30 s), its pid is gone.
    let killed = LockHolder { user: "alice".into(), pid: 4_000_000_000, ..LockHolder::this_process() };
    drop(FleetLock::acquire(&js, "pico", &killed, now, &Default::default()).await.expect("lock"));
    let started = Instant::now();
    let mut req = request(&desired(3, "a", "a"), &key);
    req.lock = now;
    let run = run_apply(&c, req).await.expect("taken over at once, no --lock-timeout");
    assert_eq!(run.report.written(), 3);
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    // The same, but killed in another pid namespace of this host (a container sharing its host
    // name): its pid means nothing here, the lock is waited for (refused without a timeout).
    let container = LockHolder { pid_namespace: killed.pid_namespace.wrapping_add(1), ..killed.clone() };
    let held = FleetLock::acquire(&js, "pico", &container, now, &Default::default()).await.expect("lock");
    let err = FleetLock::acquire(&js, "pico", &LockHolder::this_process(), now, &Default::default()).await.expect_err("waited for").to_string();
    assert!(err.contains(&container.identity()), "{err}");
    held.release().await.expect("release");

    // Another host's lock is not known to be dead: refused, named; `harmony unlock` shows it and
    // removes it only as shown.
    let elsewhere = LockHolder { user: "dave".into(), host: "build-7".into(), pid: 4242, command: "harmony apply".into(), ..LockHolder::this_process() };
    let held = FleetLock::acquire(&js, "pico", &elsewhere, now, &Default::default()).await.expect("lock");
    let mut req = request(&desired(3, "b", "b"), &key);
    req.lock = now;
    let err = run_apply(&c, req).await.expect_err("locked").to_string();
    assert!(err.contains("dave@build-7 pid 4242 (harmony apply, started ") && err.contains("harmony unlock pico"), "{err}");
    let target = LockTarget::Fleet { nats: NatsOptions { urls: vec![server.url()], ..Default::default() }, fleet: "pico".into() };
    let shown = show(&target).await.expect("show").expect("locked");
    assert!(shown.description.starts_with("dave@build-7 pid 4242"), "{}", shown.description);
    // Released and taken again (a new entry revision) after it was shown: not removed.
    held.release().await.expect("release");
    let held = FleetLock::acquire(&js, "pico", &elsewhere, now, &Default::default()).await.expect("lock");
    let err = unlock(&target, &shown).await.expect_err("changed");
    assert!(err.contains("the lock changed since it was shown"), "{err}");
    assert!(show(&target).await.expect("show").is_some());
    let shown = show(&target).await.expect("show").expect("locked");
    unlock(&target, &shown).await.expect("unlocked");
    assert!(show(&target).await.expect("show").is_none());
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_entries_are_warnings_for_plan_and_status() {
    let server = NatsServer::start();
    let c = client(&server).await;
    let key = generate_signing_key().expect("key");
    let js = jetstream::new(c.clone());
    let stores = ensure_buckets(&js, &Default::default()).await.expect("buckets");
    stores[0].put("Not_A_Device", "garbage".into()).await.expect("put");
    stores[0].put("d-000", "{not json".into()).await.expect("put");
    let forged = SignedDevicePlan::sign(&desired(2, "x", "x").plans["d-001"], &generate_signing_key().expect("k")).expect("sign");
    stores[0].put("d-001", forged.to_vec().into()).await.expect("put");
    stores[1].put("d-000", "not a status".into()).await.expect("put");
    stores[2].put("d-001", "[]".into()).await.expect("put");

    let run = run_apply(&c, request(&desired(2, "a", "a"), &key)).await.expect("apply despite malformed entries");
    let w: Vec<String> = run.observed.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(w.len(), 5, "{w:#?}");
    assert!(w.iter().any(|w| w.contains("Not_A_Device") && w.contains("not a device id")), "{w:#?}");
    assert!(w.iter().any(|w| w.contains("d-001") && w.contains("untrusted key")), "{w:#?}");
    assert_eq!(ops(&run), [(FleetOp::Update, 2)].into_iter().collect(), "unreadable and forged entries are replaced");
    let e = entries(&c, &key).await;
    assert_eq!(e.keys().map(String::as_str).collect::<Vec<_>>(), ["d-000", "d-001"]);
    assert!(e.values().all(|(_, p)| p.generation == 1));

    let observed = observe_fleet(&c, &stores, "pico", &[key.verifying_key()]).await.expect("observe");
    let status = fleet_status("pico", &["d-000".into(), "d-001".into()], &observed, harmony_schemas::fleet::now_ms(), StatusThresholds::default());
    assert_eq!(status.devices.len(), 2);
    assert!(status.devices.iter().all(|d| d.condition == Condition::Unknown));
    assert_eq!(status.warnings.len(), 3, "{:#?}", status.warnings);
}
