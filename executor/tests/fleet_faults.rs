//! Fault test: the nats-server is killed (SIGKILL) at a random point of an apply, 20 times, and
//! restarted on the same port and store; re-running apply converges every time, with nothing
//! lost (every device has the latest content) or duplicated (each content change bumps the
//! generation exactly once).

mod support;

use std::time::{Duration, Instant};

use async_nats::jetstream;
use harmony_executor::fleet::observe::read_bucket;
use harmony_executor::fleet::{ApplyRequest, DesiredFleet, LockOptions, NatsOptions, connect, run_apply};
use harmony_schemas::fleet::{PLANS_BUCKET, SignedDevicePlan, generate_signing_key};
use harmony_testkit::NatsServer;

const DEVICES: usize = 500;
const ROUNDS: u64 = 20;
fn rounds() -> u64 {
    std::env::var("FAULT_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(ROUNDS)
}

fn desired(version: u64) -> DesiredFleet {
    support::desired(DEVICES, version)
}

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_apply_converges_on_rerun() {
    let seed = std::env::var("FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1) | 1);
    eprintln!("FAULT_SEED={seed}");
    let mut rng = Rng(seed);
    let server = NatsServer::start();
    let key = generate_signing_key().expect("key");
    let state = tempfile::tempdir().expect("tmp");
    let opts = NatsOptions { urls: vec![server.url()], request_timeout: Some(Duration::from_secs(1)), ..Default::default() };
    let req = |version: u64, wait: Duration| ApplyRequest {
        holder: harmony_executor::fleet::LockHolder::this_command("test"),
        rollouts: Default::default(),
        rollout_progress: None,
        rollout_poll: None,
        storage: Default::default(),
        desired: desired(version),
        signing_key: key.clone(),
        trusted: vec![],
        parallelism: 16,
        lock: LockOptions { ttl: Duration::from_secs(1), timeout: wait },
        state_dir: Some(state.path().to_path_buf()),
        confirm: None,
        progress: None,
        request_timeout: Some(Duration::from_secs(1)),
    };
    // Round 0, uninterrupted, times a whole apply (connect, lock, observe, write) so kills land anywhere in it.
    let t = Instant::now();
    let c = connect(&opts).await.expect("connect");
    let first = run_apply(&c, req(0, Duration::ZERO)).await.expect("apply");
    assert_eq!(first.report.written(), DEVICES);
    let span = (t.elapsed().as_millis() as u64 * 5 / 4).max(20);
    eprintln!("uninterrupted apply of {DEVICES} plans: {:?}; kills within {span} ms", t.elapsed());
    let started = Instant::now();
    let (mut interrupted_runs, mut reported) = (0, 0);
    for round in 1..=rounds() {
        // An apply of new content, killed at a random point.
        let c = connect(&opts).await.expect("connect");
        let task = tokio::spawn({
            let r = req(round, Duration::from_secs(5));
            async move { run_apply(&c, r).await }
        });
        let delay = rng.below(span);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        server.stop();
        let killed = tokio::time::timeout(Duration::from_secs(30), task).await.expect("the killed apply returns").expect("join");
        let complete = matches!(&killed, Ok(run) if run.report.failed().is_empty() && run.report.stale().is_empty());
        if !complete {
            interrupted_runs += 1;
        }
        let t_killed = started.elapsed();
        server.restart();
        let t_restarted = started.elapsed();

        // Re-run until it completes (the first attempts may meet a reconnecting client).
        let c = connect(&opts).await.expect("reconnect");
        let mut attempts = 0;
        let run = loop {
            attempts += 1;
            match run_apply(&c, req(round, Duration::from_secs(5))).await {
                Ok(run) if run.report.failed().is_empty() => break run,
                Ok(run) => {
                    reported += usize::from(run.interrupted.is_some());
                    assert!(attempts < 10, "round {round}: re-run does not converge: {:?}", run.report.failed());
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                other => {
                    eprintln!("round {round} attempt {attempts}: {:?}", other.as_ref().err());
                    assert!(attempts < 10, "round {round}: re-run does not converge: {other:?}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        reported += usize::from(run.interrupted.is_some());
        eprintln!(
            "round {round}: killed after {delay} ms, returned at {t_killed:?}, restarted at {t_restarted:?}, converged at {:?} after {attempts} attempt(s)",
            started.elapsed()
        );
        assert!(run.report.stale().is_empty(), "round {round}: {:?}", run.report.stale());

        // Nothing lost, nothing duplicated.
        let js = jetstream::new(c.clone());
        let store = js.get_key_value(PLANS_BUCKET).await.expect("bucket");
        let entries = read_bucket(&c, &store).await.expect("read");
        assert_eq!(entries.len(), DEVICES, "round {round} (killed after {delay} ms): every device has a plan");
        for e in &entries {
            let plan = SignedDevicePlan::from_slice(&e.value).expect("decodes").verify(&[key.verifying_key()]).expect("verifies");
            assert_eq!(plan.deployments[0].services[0].container.env["VERSION"], round.to_string(), "round {round}: {} has the latest content", e.key);
            assert_eq!(plan.generation, round + 1, "round {round} (killed after {delay} ms): {} written once per change", e.key);
        }
        // And a further apply writes nothing.
        let again = run_apply(&c, req(round, Duration::from_secs(5))).await.expect("apply");
        assert_eq!(again.report.written(), 0, "round {round}");
    }
    assert!(reported >= 1, "an apply killed while writing is reported from its journal by the next one");
    assert!(interrupted_runs >= rounds() / 4, "kills should interrupt most applies: {interrupted_runs}");
    eprintln!("{} rounds, {interrupted_runs} applies interrupted, {reported} reported from the journal, {:?}", rounds(), started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(150));
}
