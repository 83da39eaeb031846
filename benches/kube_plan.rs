//! `cargo bench -p harmony --bench kube_plan [-- --releases N --clusters N --iterations N]`
//!
//! `harmony plan` (the release binary, as a user runs it) against live state: the generated
//! benchmark repository with 1,000 releases over 2 clusters, each cluster a loopback API server
//! in this process, installed first with the executor; plus its 100-device fleet against a local
//! nats-server. Times, median of the iterations:
//! - no changes: read every cluster's deployed release records, their live objects (5 per
//!   release: ConfigMap, Service, Deployment, ServiceAccount, Secret) and tenant access, and the
//!   fleet's device plans; compare by content hash and each release's live objects with its
//!   deployed manifest (drift); render nothing;
//! - every release changed (the chart's template edited): also render all 1,000 releases and
//!   diff each against its live manifest.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use harmony_executor::pipeline::{ClusterApply, apply_clusters};
use harmony_kube_loopback::Server;

#[path = "../compiler/benches/support/repo_gen.rs"]
#[allow(dead_code)]
mod repo_gen;

/// Five objects per release.
const TEMPLATE: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\ndata:\n  replicas: {{ .Values.replicaCount | quote }}\n  tag: {{ .Values.image.tag | quote }}\n\
---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {{ .Release.Name }}\n\
---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: {{ .Release.Name }}\nstringData:\n  token: {{ printf \"token-%s\" .Release.Name | quote }}\n\
---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {{ .Release.Name }}\nspec:\n  selector:\n    app: {{ .Release.Name }}\n  ports:\n    - name: http\n      port: 80\n\
---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}\nspec:\n  replicas: {{ .Values.replicaCount }}\n  selector:\n    matchLabels:\n      app: {{ .Release.Name }}\n  template:\n    metadata:\n      labels:\n        app: {{ .Release.Name }}\n    spec:\n      containers:\n        - name: app\n          image: \"{{ .Values.image.repository }}:{{ .Values.image.tag }}\"\n          resources:\n            limits:\n              cpu: 0.5\n              memory: 256Mi\n";

fn plan(root: &Path, kubeconfig: &Path, nats: &str, fp: &Path) -> (Duration, String) {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_harmony"))
        .arg("--repo")
        .arg(root)
        .args(["plan", "--compact", "--detailed-exitcode", "--kubeconfig"])
        .arg(kubeconfig)
        .env("HARMONY_NATS_URL", nats)
        .env("HARMONY_FINGERPRINT_KEY_FILE", fp)
        .output()
        .unwrap();
    let elapsed = t.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    (elapsed, stdout.lines().find(|l| l.starts_with("Plan:")).unwrap_or_default().to_string())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let releases = repo_gen::arg(&args, "--releases", 1000);
    let clusters = repo_gen::arg(&args, "--clusters", 2);
    let iterations = repo_gen::arg(&args, "--iterations", 3);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    repo_gen::generate(&root, &repo_gen::Shape { devices: 100, clusters, deployments: 10, releases, iterations: 1 }).unwrap();
    std::fs::write(root.join("charts/app/templates/deployment.yaml"), TEMPLATE).unwrap();
    let fp = dir.path().join("fp.key");
    std::fs::write(&fp, "ef".repeat(32)).unwrap();
    let compiled = harmony_compiler::compile_repo(&harmony_compiler::DiskFs::new(&root)).unwrap().repo.expect("the generated repository compiles");
    let mut servers = Vec::new();
    for _ in 0..clusters {
        servers.push(Server::start().await.unwrap());
    }
    let names: Vec<String> = (0..clusters).map(|i| format!("ctx-{i}")).collect();
    let pairs: Vec<(&str, &Server)> = names.iter().map(String::as_str).zip(servers.iter()).collect();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, Server::kubeconfig(&pairs)).unwrap();
    let opts = ClusterApply { kubeconfig: Some(kubeconfig.clone()), release: Default::default(), holder: "bench".into(), targets: Vec::new() };
    let t = Instant::now();
    let out = apply_clusters(&root, &compiled, &opts).await.expect("plan");
    assert_eq!(out.exit_code(), 0, "install failed: {out:?}");
    println!("installed {releases} releases on {clusters} clusters in {:.1} s (setup, not timed below)", t.elapsed().as_secs_f64());
    let nats = harmony_testkit::NatsServer::start();

    let run = |label: &str| {
        let times: Vec<Duration> = (0..iterations).map(|_| plan(&root, &kubeconfig, &nats.url(), &fp)).map(|(d, _)| d).collect();
        let (_, summary) = plan(&root, &kubeconfig, &nats.url(), &fp);
        println!("{label:<34} median {:7.0} ms of {iterations}  ({summary})", repo_gen::median(times).as_secs_f64() * 1000.0);
    };
    // The servers run on this runtime's workers while the binary plans.
    tokio::task::block_in_place(|| {
        run("harmony plan, no release changed");
        std::fs::write(root.join("charts/app/templates/deployment.yaml"), TEMPLATE.replace("tag:", "image-tag:")).unwrap();
        run("harmony plan, every release changed");
    });
}
