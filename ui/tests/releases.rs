//! The releases page with a configured cluster: the example's releases are installed on the
//! loopback API server (`kube-loopback`) and the dashboard reads their Helm records.

mod common;

use std::time::Duration;

use harmony_executor::fleet::{NatsOptions, StatusThresholds};
use harmony_executor::pipeline::{ClusterApply, apply_clusters};
use harmony_kube_loopback::Server;
use harmony_ui::{RepoView, UiOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_come_from_the_cluster() {
    let server = Server::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, Server::kubeconfig(&[("okd-prod", &server)])).unwrap();
    let repo = common::example();
    let root = harmony_testkit::repo_root().join("tenants");
    // SAFETY: the only test of this binary; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("ACME_SHOP_DB_PASSWORD", "test-only") };
    let opts = ClusterApply {
        kubeconfig: Some(kubeconfig.clone()),
        release: harmony_executor::kube::release::Options { poll: Duration::from_millis(20), ..Default::default() },
        holder: "test@host".into(),
        targets: Vec::new(),
    };
    // Installed as `harmony apply` installs them (plan, then execute), on okd-prod only.
    let mut prod = repo.clone();
    prod.clusters.retain(|n, _| n.as_str() == "okd-prod");
    prod.units.retain(|id, _| !id.as_str().contains("okd-staging"));
    let out = apply_clusters(&root, &prod, &opts).await.expect("plan");
    assert_eq!(out.exit_code(), 0, "{out:#?}");

    let nats = harmony_testkit::NatsServer::start();
    let ui = harmony_ui::start(
        RepoView::from_compiled(&repo),
        UiOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            token: None,
            nats: NatsOptions { urls: vec![nats.url()], ..Default::default() },
            clusters: Some(Some(kubeconfig)),
            thresholds: StatusThresholds::default(),
            release_interval: Duration::from_millis(200),
        },
    )
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let v = loop {
        let r = common::get(ui.addr, "/api/releases", &[]).await;
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        let rows = v["releases"].as_array().cloned().unwrap_or_default();
        if !rows.is_empty() && rows.iter().all(|r| !r["observed"].is_null()) {
            break v;
        }
        assert!(std::time::Instant::now() < deadline, "releases not read in 15 s: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(v["clusters_configured"], true);
    let rows = v["releases"].as_array().unwrap();
    let prod: Vec<&serde_json::Value> = rows.iter().filter(|r| r["release"]["cluster"] == "okd-prod").collect();
    assert!(!prod.is_empty());
    for r in &prod {
        assert_eq!(r["observed"]["revision"], 1, "{r}");
        assert_eq!(r["observed"]["status"], "deployed", "{r}");
        assert!(r["observed"]["error"].is_null(), "{r}");
    }
    // okd-staging's context is not in the kubeconfig: unreadable, shown as such.
    let staging: Vec<&serde_json::Value> = rows.iter().filter(|r| r["release"]["cluster"] == "okd-staging").collect();
    for r in &staging {
        assert!(r["observed"]["error"].as_str().is_some_and(|e| e.contains("okd-staging-admin")), "{r}");
    }
    let html = common::get(ui.addr, "/releases", &[]).await.body;
    assert!(html.contains("shop-web") && html.contains("state deployed") && html.contains("unreadable"), "{html}");
}
