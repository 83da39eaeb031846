//! Tenant access and the per-cluster apply lock, on the loopback API server.

use harmony_executor::kube::Cluster;
use harmony_executor::kube::lock::ClusterLock;
use harmony_executor::kube::tenant::{self, Access};
use harmony_kube_loopback::Server;
use serde_json::json;

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

#[tokio::test]
async fn one_apply_per_cluster() {
    let server = Server::start().await.unwrap();
    let c = cluster(&server).await;
    let t0: jiff::Timestamp = "2026-11-28T12:00:00Z".parse().unwrap();
    let first = ClusterLock::acquire(&c, "alice@ci pid 1", 60, t0).await.unwrap();
    let err = ClusterLock::acquire(&c, "bob@laptop pid 2", 60, t0 + jiff::SignedDuration::from_secs(10)).await.unwrap_err().to_string();
    assert!(
        err.starts_with("another apply holds the lock of this cluster: alice@ci pid 1 since 2026-11-28T12:00:00Z; it expires at 2026-11-28T12:01:00Z"),
        "{err}"
    );
    // Released: the next one gets it.
    first.release(&c).await.unwrap();
    let bob = ClusterLock::acquire(&c, "bob@laptop pid 2", 60, t0 + jiff::SignedDuration::from_secs(20)).await.unwrap();
    // Bob crashes (never releases); after the TTL carol takes it over.
    drop(bob);
    assert!(ClusterLock::acquire(&c, "carol@ci pid 3", 60, t0 + jiff::SignedDuration::from_secs(30)).await.is_err());
    let carol = ClusterLock::acquire(&c, "carol@ci pid 3", 60, t0 + jiff::SignedDuration::from_secs(81)).await.unwrap();
    let lease = server.get("coordination.k8s.io/v1", "Lease", "kube-system", "harmony-apply").unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "carol@ci pid 3");
    carol.release(&c).await.unwrap();
    assert!(server.get("coordination.k8s.io/v1", "Lease", "kube-system", "harmony-apply").is_none());
}
