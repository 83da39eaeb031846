//! Helm v4 itself (its Go SDK through helm-python-sdk) installs, upgrades, rolls back and
//! uninstalls a release on the loopback server. This is the proof that the server speaks
//! enough Kubernetes for Helm: discovery, OpenAPI v3 field-validation discovery, protobuf
//! Secrets from client-go's typed client, server-side apply, label-selected lists.
//!
//! Needs `.venv` with `helm-python-sdk` (`scripts/test.sh` installs it). Without it the test
//! says so and passes, except under `CI=true`, where it fails.

use std::path::Path;
use std::process::Command;

use harmony_kube_loopback::Server;
use serde_json::Value;

const SCRIPT: &str = r#"
import json, sys
from helm_python import Config
kubeconfig, chart, step = sys.argv[1:4]
with Config(kubeconfig_path=kubeconfig, namespace="apps") as cfg:
    if step == "install":
        r = cfg.install(chart, "demo", {"x": "1"}, namespace="apps", create_namespace=True)
    elif step == "upgrade":
        r = cfg.upgrade(chart, "demo", {"x": "2"}, namespace="apps")
    elif step == "rollback":
        r = cfg.rollback("demo", version=1)
    elif step == "history":
        r = [{"revision": h["revision"], "status": h["status"]} for h in cfg.history("demo")]
    elif step == "uninstall":
        r = cfg.uninstall("demo")
    print(json.dumps(r, default=str))
"#;

fn helm(python: &Path, kubeconfig: &Path, chart: &Path, step: &str) -> Value {
    let out = Command::new(python).args(["-c", SCRIPT]).arg(kubeconfig).arg(chart).arg(step).output().expect("run python");
    assert!(out.status.success(), "helm {step} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn release_secrets(server: &Server) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = server
        .list("v1", "Secret")
        .into_iter()
        .filter(|s| s["type"] == "helm.sh/release.v1")
        .map(|s| (s["metadata"]["name"].as_str().unwrap_or_default().to_string(), s["metadata"]["labels"]["status"].as_str().unwrap_or_default().to_string()))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_manages_a_release_on_the_loopback_server() {
    let Some(python) = harmony_testkit::helm_python() else { return };
    let server = Server::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, Server::kubeconfig(&[("loopback", &server)])).unwrap();
    let chart = dir.path().join("demo");
    std::fs::create_dir_all(chart.join("templates")).unwrap();
    std::fs::write(chart.join("Chart.yaml"), "apiVersion: v2\nname: demo\nversion: 0.1.0\n").unwrap();
    std::fs::write(
        chart.join("templates/cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\ndata:\n  x: {{ .Values.x | quote }}\n",
    )
    .unwrap();

    let step = |s: &'static str| {
        let (python, kubeconfig, chart) = (python.clone(), kubeconfig.clone(), chart.clone());
        tokio::task::spawn_blocking(move || helm(&python, &kubeconfig, &chart, s))
    };
    let installed = step("install").await.unwrap();
    assert_eq!(installed["status"], "deployed");
    assert!(server.get("v1", "Namespace", "", "apps").is_some(), "--create-namespace created it");
    assert_eq!(server.get("v1", "ConfigMap", "apps", "demo-cm").unwrap()["data"]["x"], "1");
    let record = server.get("v1", "Secret", "apps", "sh.helm.release.v1.demo.v1").expect("Helm's release record");
    for (k, v) in [("owner", "helm"), ("name", "demo"), ("status", "deployed"), ("version", "1")] {
        assert_eq!(record["metadata"]["labels"][k], v, "label {k}");
    }
    assert!(record["data"]["release"].as_str().is_some_and(|r| r.len() > 100));

    step("upgrade").await.unwrap();
    assert_eq!(server.get("v1", "ConfigMap", "apps", "demo-cm").unwrap()["data"]["x"], "2");
    step("rollback").await.unwrap();
    assert_eq!(server.get("v1", "ConfigMap", "apps", "demo-cm").unwrap()["data"]["x"], "1");
    assert_eq!(
        release_secrets(&server),
        [("sh.helm.release.v1.demo.v1", "superseded"), ("sh.helm.release.v1.demo.v2", "superseded"), ("sh.helm.release.v1.demo.v3", "deployed")]
            .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    let history = step("history").await.unwrap();
    assert_eq!(history.as_array().map(Vec::len), Some(3));

    step("uninstall").await.unwrap();
    assert!(server.get("v1", "ConfigMap", "apps", "demo-cm").is_none());
    assert!(release_secrets(&server).is_empty());
}
