//! Apply locks through the real `harmony` binary (issue 27): a cluster's Lease left by a killed
//! apply is taken over at once when its holder ran on this host and is gone, waited for with
//! `--lock-timeout` when it is another host's, and removed by `harmony unlock` only as shown.
//! The fleet lock's same rules are tested on a real nats-server in `executor/tests/fleet.rs`.

mod common;

use std::time::{Duration, Instant};

use common::lease::left_lease;
use common::repo::{Repo, blocking};
use harmony_executor::kube::lock::HOLDER_ANNOTATION;
use harmony_executor::lock::LockHolder;
use harmony_kube_loopback::Server;

const KEY_HEX: &str = "6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c";

fn repo(server: &Server, greeting: &str) -> Repo {
    let repo = Repo::new(
        server,
        KEY_HEX,
        &[
            ("harmony.kdl", "repository locks {\n    kube-version \"1.33.0\"\n}\ncluster prod {\n    context prod\n}\n"),
            ("tenants.kdl", "tenant acme {\n    namespaces acme-prod\n    service-account harmony-deployer namespace=acme-prod\n}\n"),
            ("charts/app/Chart.yaml", "apiVersion: v2\nname: app\nversion: 0.1.0\n"),
            ("charts/app/templates/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\ndata:\n  greeting: {{ .Values.greeting | quote }}\n"),
        ],
    );
    set_greeting(&repo, greeting);
    repo
}

/// A change to apply.
fn set_greeting(repo: &Repo, greeting: &str) {
    repo.write("releases.kdl", &format!("release web {{\n    tenant acme\n    cluster prod\n    namespace acme-prod\n    chart \"charts/app\"\n    values {{\n        greeting {greeting:?}\n    }}\n}}\n"));
}

fn lease(server: &Server) -> Option<serde_json::Value> {
    server.get("coordination.k8s.io/v1", "Lease", "kube-system", "harmony-apply")
}

fn apply(repo: &Repo, extra: &[&str]) -> (bool, String) {
    let mut args = vec!["apply", "--yes", "--skip-fleets", "--kubeconfig", repo.kubeconfig()];
    args.extend_from_slice(extra);
    let out = repo.run(&args);
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

fn other_host() -> LockHolder {
    LockHolder { user: "dave".into(), host: "build-7".into(), pid: 4242, command: "harmony apply".into(), ..LockHolder::this_process() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_takes_a_dead_local_holders_lock_at_once_and_waits_for_another_hosts_with_lock_timeout() {
    let server = Server::start().await.unwrap();
    let repo = std::sync::Arc::new(repo(&server, "one"));

    // Killed on this host (its pid is gone), its 30 s lease renewed just now: taken at once, said.
    let killed = LockHolder { user: "alice".into(), pid: 4_000_000_000, command: "harmony apply".into(), ..LockHolder::this_process() };
    left_lease(&server, &killed, 0, 30);
    let started = Instant::now();
    let r = repo.clone();
    let (ok, out) = blocking(move || apply(&r, &[])).await.unwrap();
    assert!(ok, "{out}");
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    assert!(out.contains("took over the apply lock of alice@") && out.contains("pid 4000000000 no longer runs on this host"), "{out}");
    assert!(lease(&server).is_none(), "released");

    // Another host's apply, renewed just now: refused at once without --lock-timeout, naming it...
    left_lease(&server, &other_host(), 0, 4);
    set_greeting(&repo, "two");
    let r = repo.clone();
    let (ok, out) = blocking(move || apply(&r, &[])).await.unwrap();
    assert!(!ok, "{out}");
    assert!(out.contains("another apply holds the lock of this cluster") && out.contains("dave@build-7 pid 4242 (harmony apply, started "), "{out}");
    assert!(out.contains("use --lock-timeout"), "{out}");
    // ...and waited for with it, until its lease expires (renewed once more now, then never).
    let api: kube::Api<k8s_openapi::api::coordination::v1::Lease> = kube::Api::namespaced(repo.cluster().await.client().clone(), "kube-system");
    let mut l = api.get("harmony-apply").await.unwrap();
    l.spec.as_mut().unwrap().renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(jiff::Timestamp::now()));
    api.replace("harmony-apply", &Default::default(), &l).await.unwrap();
    let started = Instant::now();
    let r = repo.clone();
    let (ok, out) = blocking(move || apply(&r, &["--lock-timeout", "700s"])).await.unwrap();
    assert!(ok, "{out}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(2) && waited < Duration::from_secs(60), "{waited:?}");
    assert!(lease(&server).is_none(), "released");
}

/// Issue 27's known limits: a dead holder was judged by host name and `/proc/<pid>` alone. A
/// pid reused by another process kept a killed apply's lock alive (refused here before, as if
/// the holder ran), and a holder in another pid namespace of this host (another container) was
/// taken over at once while it may run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_whose_pid_is_now_another_process_is_taken_over_and_one_of_another_pid_namespace_is_not() {
    let server = Server::start().await.unwrap();
    let repo = std::sync::Arc::new(repo(&server, "one"));
    let me = LockHolder::this_process();
    // Killed; its pid now runs another process (started at another time).
    let mut reused = std::process::Command::new("sleep").arg("60").spawn().unwrap();
    let killed = LockHolder { user: "alice".into(), pid: reused.id(), command: "harmony apply".into(), start_ticks: me.start_ticks.saturating_sub(1).max(1), ..me.clone() };
    left_lease(&server, &killed, 0, 30);
    let started = Instant::now();
    let r = repo.clone();
    let (ok, out) = blocking(move || apply(&r, &[])).await.unwrap();
    let _ = reused.kill();
    let _ = reused.wait();
    assert!(ok, "{out}");
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    assert!(out.contains("took over the apply lock of alice@") && out.contains(&format!("pid {} on this host is now another process", killed.pid)), "{out}");
    assert!(lease(&server).is_none(), "released");

    // Left by an apply in another pid namespace of this host (a container sharing its host
    // name): its pid is not this namespace's, so it is waited for (refused without a timeout).
    let container = LockHolder { user: "erin".into(), pid: 4_000_000_000, command: "harmony apply".into(), pid_namespace: me.pid_namespace.wrapping_add(1), ..me };
    left_lease(&server, &container, 0, 30);
    set_greeting(&repo, "two");
    let r = repo.clone();
    let (ok, out) = blocking(move || apply(&r, &[])).await.unwrap();
    assert!(!ok, "{out}");
    assert!(out.contains("another apply holds the lock of this cluster") && out.contains(&container.identity()), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlock_shows_the_holder_asks_and_removes_the_lock() {
    let server = Server::start().await.unwrap();
    let repo = std::sync::Arc::new(repo(&server, "one"));
    let unlock = |extra: &[&str]| {
        let mut args = vec!["unlock", "prod", "--kubeconfig", repo.kubeconfig()];
        args.extend_from_slice(extra);
        let out = repo.run(&args);
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let (code, out) = unlock(&[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("cluster prod is not locked"), "{out}");

    left_lease(&server, &other_host(), 0, 30);
    // Without a terminal nothing is removed unless --yes.
    let (code, out) = unlock(&[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("cluster prod is locked by dave@build-7 pid 4242 (harmony apply, started ") && out.contains("not unlocking without --yes"), "{out}");
    assert!(lease(&server).is_some());
    let (code, out) = unlock(&["--yes"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("cluster prod unlocked"), "{out}");
    assert!(lease(&server).is_none());

    let out = repo.run(&["unlock", "nowhere", "--yes", "--kubeconfig", repo.kubeconfig()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("the repository declares no cluster or fleet `nowhere` (it declares: prod)"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_apply_releases_the_lock_and_exits_non_zero_within_10_s() {
    let server = Server::start().await.unwrap();
    let repo = repo(&server, "one");
    // Two releases whose LoadBalancer Service never gets an address (the loopback server runs
    // no load balancer): with --wait 300 the first one waits until it is stopped, the second
    // never starts.
    repo.write(
        "charts/app/templates/svc.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {{ .Release.Name }}\nspec:\n  type: LoadBalancer\n  selector:\n    app: {{ .Release.Name }}\n  ports:\n    - name: http\n      port: 80\n",
    );
    let release = |name: &str| format!("release {name} {{\n    tenant acme\n    cluster prod\n    namespace acme-prod\n    chart \"charts/app\"\n    values {{\n        greeting \"x\"\n    }}\n}}\n");
    repo.write("releases.kdl", &(release("web") + &release("api")));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_harmony"))
        .arg("--repo")
        .arg(&repo.root)
        .args(["apply", "--yes", "--skip-fleets", "--wait", "300", "--kubeconfig", repo.kubeconfig()])
        .env("NO_COLOR", "1")
        .env("HARMONY_FINGERPRINT_KEY_FILE", &repo.key_file)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once a release is being waited for (its Deployment written), under the lock.
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.list("v1", "Service").is_empty() {
        assert!(Instant::now() < deadline && child.try_wait().unwrap().is_none(), "the apply never reached a release");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let held = lease(&server).unwrap_or_else(|| panic!("the apply holds the lock ({:?})", child.try_wait()));
    let holder: LockHolder = serde_json::from_str(held["metadata"]["annotations"][HOLDER_ANNOTATION].as_str().unwrap()).unwrap();
    let me = LockHolder::this_process();
    assert_eq!((holder.command.as_str(), holder.pid, &holder.user, &holder.host), ("harmony apply", child.id(), &me.user, &me.host), "{holder:?}");
    assert_eq!(held["spec"]["holderIdentity"], holder.identity());
    assert_eq!(held["spec"]["leaseDurationSeconds"], 30);
    let signalled = Instant::now();
    let kill = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(signalled.elapsed() < Duration::from_secs(10), "still running 10 s after SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!status.success(), "{text}");
    assert_eq!(status.code(), Some(1), "exits with an error code, not killed by the signal: {text}");
    assert!(text.contains("interrupted: no further unit starts"), "{text}");
    assert!(text.contains("not started: the apply was interrupted"), "the second release: {text}");
    assert!(lease(&server).is_none(), "the lock is released: {text}");
    assert_eq!(server.list("v1", "Service").len(), 1, "the second release was never started");
}
