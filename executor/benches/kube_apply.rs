//! `cargo bench -p harmony-executor --bench kube_apply [-- --releases N]`
//!
//! The generated benchmark repository (`compiler/benches/support/repo_gen.rs`) with 1,000
//! releases over 4 clusters, each its own loopback API server. Times, in one process: the first apply (tenant access, then every release
//! installed: render, record pending, server-side apply, record deployed), and a second apply
//! with nothing to change (read each release's history, render, compare: what planning against
//! live state costs, plus the lock).

use std::time::Instant;

use harmony_executor::pipeline::{ClusterApply, apply_clusters};
use harmony_kube_loopback::Server;

#[path = "../../compiler/benches/support/repo_gen.rs"]
#[allow(dead_code)]
mod repo_gen;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let releases = args.iter().position(|a| a == "--releases").and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(1000);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    repo_gen::generate(&root, &repo_gen::Shape { devices: 100, clusters: 4, deployments: 10, releases, iterations: 1 }).unwrap();
    // The generator's chart only carries what `check` needs; give it a complete object.
    std::fs::write(
        root.join("charts/app/templates/deployment.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\ndata:\n  replicas: {{ .Values.replicaCount | quote }}\n  tag: {{ .Values.image.tag | quote }}\n",
    )
    .unwrap();
    let compiled = harmony_compiler::compile_repo(&harmony_compiler::DiskFs::new(&root)).unwrap().repo.expect("the generated repository compiles");
    let servers = [Server::start().await.unwrap(), Server::start().await.unwrap(), Server::start().await.unwrap(), Server::start().await.unwrap()];
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, Server::kubeconfig(&[("ctx-0", &servers[0]), ("ctx-1", &servers[1]), ("ctx-2", &servers[2]), ("ctx-3", &servers[3])])).unwrap();
    let opts = ClusterApply { kubeconfig: Some(kubeconfig), release: Default::default(), holder: "bench".into(), targets: Vec::new() };
    let run = |label: &'static str| {
        let (compiled, root, opts) = (&compiled, &root, &opts);
        async move {
            let t = Instant::now();
            // Plan (live), then execute that plan: what `harmony apply --yes --skip-fleets` does.
            let out = apply_clusters(root, compiled, opts).await.expect("plan");
            let elapsed = t.elapsed();
            assert_eq!(out.exit_code(), 0, "{label}: {out:?}");
            let releases = out.actions.iter().filter(|o| o.unit.starts_with("release/")).count();
            println!("{label:<28} {releases} releases, {} units: {:8.1} ms", out.actions.len(), elapsed.as_secs_f64() * 1000.0);
        }
    };
    run("first apply (install all)").await;
    run("second apply (no changes)").await;
    println!("servers: {} writes", servers.iter().map(Server::writes).sum::<u64>());
}
