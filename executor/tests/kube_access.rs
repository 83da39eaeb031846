//! Tenant access and the per-cluster apply lock, on the loopback API server.

use harmony_executor::kube::Cluster;
use std::time::{Duration, Instant};

use harmony_executor::kube::lock::{self, ClusterLock, HOLDER_ANNOTATION};
use harmony_executor::lock::{LockHolder, LockOptions};
use harmony_executor::kube::tenant::{self, Access};
use harmony_kube_loopback::Server;
use serde_json::json;

#[path = "../../tests/common/lease.rs"]
mod lease;
use lease::left_lease;

async fn cluster(server: &Server) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, Server::kubeconfig(&[("loopback", server)])).unwrap();
    Cluster::from_kubeconfig(Some(&path), "loopback").await.unwrap()
}

fn acme() -> Access {
    Access {
        tenant: "acme".into(),
        namespaces: vec!["acme-prod".into(), "acme-staging".into()],
        service_account: "harmony".into(),
        service_account_namespace: "acme-prod".into(),
        pod_security: Default::default(),
    }
}

#[tokio::test]
async fn tenant_access_confines_the_tenant_to_its_namespaces() {
    let server = Server::start().await.unwrap();
    let admin = cluster(&server).await;
    let access = acme();
    tenant::apply(&admin, &access).await.unwrap();
    for ns in ["acme-prod", "acme-staging"] {
        assert!(server.get("v1", "Namespace", "", ns).is_some());
        let binding = server.get("rbac.authorization.k8s.io/v1", "RoleBinding", ns, "harmony-tenant-acme").unwrap();
        assert_eq!(binding["subjects"][0]["name"], "harmony");
        assert_eq!(binding["metadata"]["labels"]["harmony.dev/tenant"], "acme");
    }
    // Re-applying changes nothing.
    let writes = server.writes();
    tenant::apply(&admin, &access).await.unwrap();
    assert_eq!(server.writes(), writes);

    // Impersonating the tenant: its namespaces yes, another no (RBAC, not the compiler, says so).
    let as_tenant = admin.impersonating(&access.username()).unwrap();
    let cm = |ns: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": ns}, "data": {"a": "b"}});
    as_tenant.apply(&cm("acme-staging"), "acme-prod").await.unwrap();
    server.create(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "globex"}}));
    let err = as_tenant.apply(&cm("globex"), "acme-prod").await.unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");

    // Removal takes the grants away and leaves the namespaces (and what is in them).
    tenant::remove(&admin, &access).await.unwrap();
    assert!(server.get("rbac.authorization.k8s.io/v1", "RoleBinding", "acme-prod", "harmony-tenant-acme").is_none());
    assert!(server.get("v1", "ServiceAccount", "acme-prod", "harmony").is_none());
    assert!(server.get("v1", "Namespace", "", "acme-prod").is_some());
    assert!(server.get("v1", "ConfigMap", "acme-staging", "x").is_some());
    assert_eq!(as_tenant.apply(&cm("acme-staging"), "acme-prod").await.unwrap_err().status(), Some(403));
}

#[test]
fn the_holder_is_this_process_as_the_os_names_it() {
    let h = LockHolder::this_process();
    assert!(!h.user.is_empty() && !h.user.contains("unknown"), "{h:?}");
    assert!(!h.host.is_empty() && !h.host.contains("unknown"), "{h:?}");
    assert_eq!(h.pid, std::process::id());
    assert!(h.command.starts_with("kube_access"), "{h:?}");
    let now = harmony_schemas::fleet::now_ms();
    assert!(h.started_ms <= now + 1000 && h.started_ms + 3_600_000 > now, "started {} now {now}", h.started_ms);
    assert_eq!(h.dead_here(), None, "this process runs");
    let dead = LockHolder { pid: 4_000_000_000, ..h.clone() };
    assert_eq!(dead.dead_here().as_deref(), Some("pid 4000000000 no longer runs on this host"));
    let elsewhere = LockHolder { host: format!("{}-other", h.host), ..dead.clone() };
    assert_eq!(elsewhere.dead_here(), None, "a pid of another host is not known to be dead");
    let other_namespace = LockHolder { pid_namespace: h.pid_namespace.wrapping_add(1), ..dead.clone() };
    assert_eq!(other_namespace.dead_here(), None, "a pid of another pid namespace (another container) means nothing here");
    let other_boot = LockHolder { boot_id: "00000000-0000-0000-0000-000000000000".into(), ..dead.clone() };
    assert_eq!(other_boot.dead_here(), None, "a holder of another boot is not judged by this boot's pids");
    let old_format = LockHolder { boot_id: String::new(), pid_namespace: 0, start_ticks: 0, ..dead };
    assert_eq!(old_format.dead_here(), None, "a holder that recorded neither boot nor namespace is waited for");
    // The pid runs, but it is another process than the holder (the pid was reused).
    let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    let reused = LockHolder { pid: child.id(), ..h.clone() };
    let why = reused.dead_here().unwrap_or_default();
    assert!(why.starts_with(&format!("pid {} on this host is now another process", child.id())), "{why}");
    child.kill().unwrap();
    child.wait().unwrap();
}

fn as_user(user: &str) -> LockHolder {
    LockHolder { user: user.into(), ..LockHolder::this_process() }
}

fn held_by(server: &Server) -> Option<String> {
    server.get("coordination.k8s.io/v1", "Lease", "kube-system", "harmony-apply").map(|l| l["spec"]["holderIdentity"].as_str().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_apply_per_cluster_renewed_while_held_waited_for_with_lock_timeout() {
    let server = Server::start().await.unwrap();
    let c = cluster(&server).await;
    let ttl = LockOptions { ttl: Duration::from_secs(2), timeout: Duration::ZERO };
    let alice = ClusterLock::acquire(&c, &as_user("alice"), ttl).await.unwrap();
    let lease = server.get("coordination.k8s.io/v1", "Lease", "kube-system", "harmony-apply").unwrap();
    let holder: LockHolder = serde_json::from_str(lease["metadata"]["annotations"][HOLDER_ANNOTATION].as_str().unwrap()).unwrap();
    assert_eq!((holder.user.as_str(), holder.pid), ("alice", std::process::id()));
    assert!(!holder.host.is_empty() && holder.command.starts_with("kube_access") && holder.started_ms > 0, "{holder:?}");
    // Longer than the lease duration: renewal keeps it.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(!alice.lost());
    let renewed = server.get("coordination.k8s.io/v1", "Lease", "kube-system", "harmony-apply").unwrap();
    assert_ne!(renewed["spec"]["renewTime"], lease["spec"]["renewTime"], "renewed");
    let err = ClusterLock::acquire(&c, &as_user("bob"), ttl).await.unwrap_err().to_string();
    assert!(err.contains("another apply holds the lock of this cluster") && err.contains("alice@") && err.contains("use --lock-timeout"), "{err}");
    // Waiting: bob gets it once alice releases it.
    let waiter = {
        let c = cluster(&server).await;
        tokio::spawn(async move { ClusterLock::acquire(&c, &as_user("bob"), LockOptions { timeout: Duration::from_secs(20), ..ttl }).await.map(|l| (l, c)) })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!waiter.is_finished());
    alice.release(&c).await.unwrap();
    let (bob, c) = waiter.await.unwrap().unwrap();
    assert!(held_by(&server).unwrap().starts_with("bob@"));
    bob.release(&c).await.unwrap();
    assert!(held_by(&server).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_left_by_a_killed_apply_is_taken_over() {
    let server = Server::start().await.unwrap();
    let c = cluster(&server).await;
    let me = as_user("carol");
    let now = LockOptions { ttl: Duration::from_secs(30), timeout: Duration::ZERO };
    // Killed on this host: its pid no longer runs, so its fresh 30 s lease is taken at once.
    let killed = LockHolder { user: "alice".into(), pid: 4_000_000_000, ..LockHolder::this_process() };
    left_lease(&server, &killed, 0, 30);
    let started = Instant::now();
    let lock = ClusterLock::acquire(&c, &me, now).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert!(held_by(&server).unwrap().starts_with("carol@"));
    lock.release(&c).await.unwrap();

    // The same pid gone, but in another pid namespace (a container sharing this host name): not
    // known to be dead, refused at once without a timeout. Nor is a holder with this very
    // identity (`carol@host pid N`) in another namespace this process: containers each have a
    // pid 1. Both were taken over at once before pid namespaces were recorded.
    let ns = me.pid_namespace.wrapping_add(1);
    for container in [LockHolder { pid_namespace: ns, ..killed.clone() }, LockHolder { pid_namespace: ns, ..me.clone() }] {
        left_lease(&server, &container, 0, 30);
        let err = ClusterLock::acquire(&c, &me, now).await.unwrap_err().to_string();
        assert!(err.contains("another apply holds the lock of this cluster") && err.contains(&container.identity()), "{err}");
        let shown = lock::shown(&c).await.unwrap().unwrap();
        lock::force_unlock(&c, &shown).await.unwrap();
    }

    // Killed on another host, renewed just now: not known to be dead, waited for until its
    // lease expires (with --lock-timeout), then taken.
    let elsewhere = LockHolder { user: "dave".into(), host: "build-7".into(), pid: 4242, command: "harmony apply".into(), ..LockHolder::this_process() };
    left_lease(&server, &elsewhere, 0, 3);
    let err = ClusterLock::acquire(&c, &me, now).await.unwrap_err().to_string();
    assert!(err.contains("dave@build-7 pid 4242 (harmony apply, started "), "{err}");
    let started = Instant::now();
    let lock = ClusterLock::acquire(&c, &me, LockOptions { timeout: Duration::from_secs(20), ..now }).await.unwrap();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(2000) && waited < Duration::from_secs(8), "{waited:?}");
    lock.release(&c).await.unwrap();

    // Its renew time long past: expired, taken at once.
    left_lease(&server, &elsewhere, 600, 30);
    let started = Instant::now();
    ClusterLock::acquire(&c, &me, now).await.unwrap().release(&c).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_that_finds_the_lease_changed_loses_the_lock() {
    let server = Server::start().await.unwrap();
    let c = cluster(&server).await;
    let lock = ClusterLock::acquire(&c, &as_user("alice"), LockOptions { ttl: Duration::from_secs(1), timeout: Duration::ZERO }).await.unwrap();
    // Unlocked by hand and taken by another apply in between.
    let shown = lock::shown(&c).await.unwrap().unwrap();
    lock::force_unlock(&c, &shown).await.unwrap();
    let bob = ClusterLock::acquire(&c, &as_user("bob"), LockOptions::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(lock.lost(), "the renewal's compare-and-set failed");
    lock.release(&c).await.unwrap();
    assert!(held_by(&server).unwrap().starts_with("bob@"), "releasing a lost lock leaves the new holder's");
    bob.release(&c).await.unwrap();
}

#[tokio::test]
async fn force_unlock_removes_only_the_lock_it_showed() {
    let server = Server::start().await.unwrap();
    let c = cluster(&server).await;
    assert!(lock::shown(&c).await.unwrap().is_none());
    let elsewhere = LockHolder { user: "dave".into(), host: "build-7".into(), pid: 4242, command: "harmony apply".into(), ..LockHolder::this_process() };
    left_lease(&server, &elsewhere, 0, 30);
    let shown = lock::shown(&c).await.unwrap().unwrap();
    assert!(shown.describe().starts_with("dave@build-7 pid 4242 (harmony apply, started "), "{}", shown.describe());
    // Renewed (or taken) after it was shown: not removed.
    let api: kube::Api<k8s_openapi::api::coordination::v1::Lease> = kube::Api::namespaced(c.client().clone(), "kube-system");
    let mut l = api.get("harmony-apply").await.unwrap();
    l.spec.as_mut().unwrap().renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(jiff::Timestamp::now()));
    api.replace("harmony-apply", &Default::default(), &l).await.unwrap();
    let err = lock::force_unlock(&c, &shown).await.unwrap_err().to_string();
    assert!(err.contains("the lock changed since it was shown"), "{err}");
    assert!(held_by(&server).is_some());
    let shown = lock::shown(&c).await.unwrap().unwrap();
    lock::force_unlock(&c, &shown).await.unwrap();
    assert!(held_by(&server).is_none());
}
