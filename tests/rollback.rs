//! `harmony rollback` end to end: the real binary, the example repository's `shop-web`
//! release, the loopback API server standing in for cluster `okd-prod`.

use std::process::Command;

use harmony_executor::kube::Cluster;
use harmony_executor::kube::release::{self, Desired, Options};
use harmony_executor::kube::tenant::{self, Access};
use harmony_kube_loopback::Server;
use serde_json::{Map, Value, json};

fn desired(replicas: i64) -> Desired {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let chart = harmony_helm::Chart::load(&root.join("tenants/charts/web")).unwrap();
    let values = json!({"replicaCount": replicas});
    let opts = harmony_helm::ReleaseOptions { name: "shop-web".into(), namespace: "acme-prod".into(), ..Default::default() };
    let rendered =
        harmony_helm::render_release(chart.clone(), harmony_helm::json::from_serde(&values), &opts, &harmony_helm::funcs::FixedEnvironment::default()).unwrap();
    let config: Map<String, Value> = values.as_object().cloned().unwrap();
    Desired::from_rendered("shop-web", "acme-prod", &chart, config, &rendered)
}

fn replicas(server: &Server) -> i64 {
    server.get("apps/v1", "Deployment", "acme-prod", "shop-web").expect("the Deployment")["spec"]["replicas"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_a_release_of_the_repository() {
    let server = Server::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    // The example repository's production cluster uses context `okd-prod`.
    std::fs::write(&kubeconfig, Server::kubeconfig(&[("okd-prod", &server)])).unwrap();
    let admin = Cluster::from_kubeconfig(Some(&kubeconfig), "okd-prod").await.unwrap();
    let access = Access {
        tenant: "acme".into(),
        namespaces: vec!["acme-prod".into()],
        service_account: "harmony-deployer".into(),
        service_account_namespace: "acme-prod".into(),
        pod_security: Default::default(),
    };
    tenant::apply(&admin, &access).await.unwrap();
    let as_acme = admin.impersonating(&access.username()).unwrap();
    let opts = Options::default();
    release::install_or_upgrade(&as_acme, &desired(2), &opts, jiff::Timestamp::now).await.unwrap();
    release::install_or_upgrade(&as_acme, &desired(5), &opts, jiff::Timestamp::now).await.unwrap();
    assert_eq!(replicas(&server), 5);

    let harmony = |args: &[&str]| {
        let (kubeconfig, args) = (kubeconfig.clone(), args.iter().map(|a| a.to_string()).collect::<Vec<_>>());
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_harmony"))
                .args(["--repo", concat!(env!("CARGO_MANIFEST_DIR"), "/tenants"), "rollback"])
                .args(&args)
                .arg("--kubeconfig")
                .arg(kubeconfig)
                .output()
                .unwrap()
        })
    };
    let out = harmony(&["shop-web", "1"]).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Rolled back acme-prod/shop-web: revision 3 is deployed.\n");
    assert_eq!(replicas(&server), 2);
    let hist = release::history(&admin, "acme-prod", "shop-web").await.unwrap();
    assert_eq!(
        hist.iter().map(|s| (s.release.version, s.release.info.status.as_str())).collect::<Vec<_>>(),
        [(1, "superseded"), (2, "superseded"), (3, "deployed")]
    );
    assert!(server.get("coordination.k8s.io/v1", "Lease", "kube-system", "harmony-apply").is_none(), "the lock is released");

    // A revision that does not exist: exit 1 and an error naming the release and what exists.
    let out = harmony(&["shop-web", "9"]).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rolling back release acme-prod/shop-web on cluster okd-prod (context okd-prod)"), "{err}");
    assert!(err.contains("has no revision 9 (revisions: 1, 2, 3)"), "{err}");
}
