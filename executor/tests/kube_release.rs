//! Helm releases on the loopback API server: Harmony's lifecycle, checked record by record, and
//! interoperability with Helm v4 itself (helm-python-sdk) in both directions.

use std::path::{Path, PathBuf};
use std::process::Command;

use harmony_executor::kube::Cluster;
use harmony_executor::kube::record::{Release, Status};
use harmony_executor::kube::release::{self, Desired, Options, Outcome};
use harmony_kube_loopback::Server;
use serde_json::{Map, Value, json};

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

const CHART_YAML: &str = "apiVersion: v2\nname: demo\nversion: 0.1.0\n";
const CONFIGMAP: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\ndata:\n  x: {{ .Values.x | quote }}\n";
const DEPLOYMENT: &str = "{{ if .Values.web }}apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}-web\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers: [{name: web, image: nginx}]\n{{ end }}";
const HOOK: &str = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {{ .Release.Name }}-migrate\n  annotations:\n    helm.sh/hook: pre-install,pre-upgrade\n    helm.sh/hook-delete-policy: hook-succeeded\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: m, image: busybox}]\n";

fn write_chart(dir: &Path) -> PathBuf {
    let chart = dir.join("demo");
    std::fs::create_dir_all(chart.join("templates")).unwrap();
    std::fs::write(chart.join("Chart.yaml"), CHART_YAML).unwrap();
    std::fs::write(chart.join("values.yaml"), "x: default\nweb: true\n").unwrap();
    std::fs::write(chart.join("templates/cm.yaml"), CONFIGMAP).unwrap();
    std::fs::write(chart.join("templates/web.yaml"), DEPLOYMENT).unwrap();
    std::fs::write(chart.join("templates/hook.yaml"), HOOK).unwrap();
    std::fs::write(chart.join("templates/NOTES.txt"), "Installed {{ .Release.Name }}.\n").unwrap();
    chart
}

fn desired(chart: &Path, ns: &str, values: Value) -> Desired {
    let loaded = harmony_helm::Chart::load(chart).unwrap();
    let user = harmony_helm::json::from_serde(&values);
    let opts = harmony_helm::ReleaseOptions { name: "demo".into(), namespace: ns.into(), ..Default::default() };
    let rendered = harmony_helm::render_release(loaded.clone(), user, &opts, &harmony_helm::funcs::FixedEnvironment::default()).unwrap();
    let config: Map<String, Value> = values.as_object().cloned().unwrap_or_default();
    Desired::from_rendered("demo", ns, &loaded, config, &rendered)
}

async fn cluster(server: &Server) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, Server::kubeconfig(&[("loopback", server)])).unwrap();
    Cluster::from_kubeconfig(Some(&path), "loopback").await.unwrap()
}

fn records(server: &Server, ns: &str) -> Vec<(u32, Status)> {
    let mut v: Vec<(u32, Status)> = server
        .list("v1", "Secret")
        .into_iter()
        .filter(|s| s["type"] == "helm.sh/release.v1" && s["metadata"]["namespace"] == ns)
        .map(|s| {
            let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(s).unwrap();
            let r = Release::from_secret(&secret).unwrap();
            // The label and the body agree, as Helm's driver keeps them.
            assert_eq!(secret.metadata.labels.unwrap()["status"], r.info.status.as_str());
            (r.version, r.info.status)
        })
        .collect();
    v.sort();
    v
}

fn create_namespace(server: &Server, ns: &str) {
    server.create(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
}

#[tokio::test]
async fn install_upgrade_noop_rollback_uninstall() {
    let server = Server::start().await.unwrap();
    create_namespace(&server, "apps");
    let c = cluster(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let chart = write_chart(dir.path());
    let opts = Options { wait: Some(std::time::Duration::from_secs(5)), poll: std::time::Duration::from_millis(20), ..Default::default() };

    assert_eq!(release::observe(&c, "apps", "demo").await.unwrap(), None);
    let v1 = Desired { unit_hash: Some("sha256:1111".into()), ..desired(&chart, "apps", json!({"x": "1"})) };
    assert_eq!(release::install_or_upgrade(&c, &v1, &opts, now).await.unwrap(), Outcome::Installed(1));
    let seen = release::observe(&c, "apps", "demo").await.unwrap().unwrap();
    assert_eq!((seen.revision, seen.hash.as_deref()), (1, Some("sha256:1111")));
    let kinds: Vec<&str> = seen.objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    assert_eq!(kinds, ["ConfigMap", "Deployment"], "the manifest's objects in install order, hooks apart");
    assert_eq!(records(&server, "apps"), [(1, Status::Deployed)]);
    assert_eq!(server.get("v1", "ConfigMap", "apps", "demo-cm").unwrap()["data"]["x"], "1");
    assert!(server.get("apps/v1", "Deployment", "apps", "demo-web").is_some());
    assert!(server.get("batch/v1", "Job", "apps", "demo-migrate").is_none(), "hook-succeeded deletes the hook Job");
    let hist = release::history(&c, "apps", "demo").await.unwrap();
    let r1 = &hist[0].release;
    assert_eq!((r1.info.description.as_str(), r1.info.notes.as_str()), ("Install complete", "Installed demo.\n"));
    assert_eq!(r1.hooks[0].last_run.phase, "Succeeded");
    assert_eq!(r1.chart["metadata"]["name"], "demo");

    // Same desired state again: nothing is written at all.
    let writes = server.writes();
    assert_eq!(release::install_or_upgrade(&c, &v1, &opts, now).await.unwrap(), Outcome::Unchanged(1));
    assert_eq!(server.writes(), writes);

    // Upgrade: new values, and the Deployment dropped from the chart is deleted.
    let v2 = desired(&chart, "apps", json!({"x": "2", "web": false}));
    assert_eq!(release::install_or_upgrade(&c, &v2, &opts, now).await.unwrap(), Outcome::Upgraded(2));
    assert_eq!(records(&server, "apps"), [(1, Status::Superseded), (2, Status::Deployed)]);
    assert_eq!(server.get("v1", "ConfigMap", "apps", "demo-cm").unwrap()["data"]["x"], "2");
    assert!(server.get("apps/v1", "Deployment", "apps", "demo-web").is_none());

    // Rollback to 1: revision 3 with revision 1's manifest; the Deployment comes back.
    assert_eq!(release::rollback(&c, "apps", "demo", Some(1), &opts, now).await.unwrap(), 3);
    assert_eq!(records(&server, "apps"), [(1, Status::Superseded), (2, Status::Superseded), (3, Status::Deployed)]);
    assert_eq!(server.get("v1", "ConfigMap", "apps", "demo-cm").unwrap()["data"]["x"], "1");
    assert!(server.get("apps/v1", "Deployment", "apps", "demo-web").is_some());
    let hist = release::history(&c, "apps", "demo").await.unwrap();
    assert_eq!(hist[2].release.info.description, "Rollback to 1");
    let err = release::rollback(&c, "apps", "demo", Some(9), &opts, now).await.unwrap_err().to_string();
    assert_eq!(err, "release apps/demo has no revision 9 (revisions: 1, 2, 3)");

    assert!(release::uninstall(&c, "apps", "demo", &opts, now).await.unwrap());
    assert!(records(&server, "apps").is_empty());
    assert!(server.get("v1", "ConfigMap", "apps", "demo-cm").is_none());
    assert!(server.get("apps/v1", "Deployment", "apps", "demo-web").is_none());
    assert!(!release::uninstall(&c, "apps", "demo", &opts, now).await.unwrap());
}

#[tokio::test]
async fn history_is_trimmed_and_pending_records_are_handled() {
    let server = Server::start().await.unwrap();
    create_namespace(&server, "apps");
    let c = cluster(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let chart = write_chart(dir.path());
    let opts = Options { history_max: 3, poll: std::time::Duration::from_millis(20), ..Default::default() };
    for i in 0..5 {
        release::install_or_upgrade(&c, &desired(&chart, "apps", json!({"x": i.to_string()})), &opts, now).await.unwrap();
    }
    assert_eq!(records(&server, "apps"), [(3, Status::Superseded), (4, Status::Superseded), (5, Status::Deployed)]);

    // A pending record Harmony left (an interrupted apply) is marked failed and the apply goes on.
    let hist = release::history(&c, "apps", "demo").await.unwrap();
    let mut stuck = hist[2].release.clone();
    stuck.version = 6;
    stuck.info.status = Status::PendingUpgrade;
    server.create(&serde_json::to_value(stuck.to_secret(0)).unwrap());
    let out = release::install_or_upgrade(&c, &desired(&chart, "apps", json!({"x": "new"})), &opts, now).await.unwrap();
    assert_eq!(out, Outcome::Upgraded(7));
    assert_eq!(records(&server, "apps"), [(5, Status::Superseded), (6, Status::Failed), (7, Status::Deployed)]);

    // One Helm left is refused, with the way out.
    let mut helms = stuck.clone();
    helms.version = 8;
    helms.extra.clear();
    server.create(&serde_json::to_value(helms.to_secret(0)).unwrap());
    let err = release::install_or_upgrade(&c, &desired(&chart, "apps", json!({"x": "newer"})), &opts, now).await.unwrap_err().to_string();
    assert!(err.starts_with("release apps/demo has an operation in progress: revision 8 is pending-upgrade since"), "{err}");
    assert!(err.contains("`helm rollback demo -n apps`"), "{err}");
}

#[tokio::test]
async fn a_tenant_outside_its_namespaces_is_refused_by_rbac() {
    let server = Server::start().await.unwrap();
    for ns in ["acme", "globex"] {
        create_namespace(&server, ns);
    }
    server.create(&json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "deployer", "namespace": "acme"},
            "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}));
    server.create(&json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "deployer", "namespace": "acme"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "deployer"},
            "subjects": [{"kind": "ServiceAccount", "name": "harmony", "namespace": "acme"}]}));
    let admin = cluster(&server).await;
    let tenant = admin.impersonating("system:serviceaccount:acme:harmony").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let chart = write_chart(dir.path());
    let opts = Options { poll: std::time::Duration::from_millis(20), ..Default::default() };
    assert_eq!(release::install_or_upgrade(&tenant, &desired(&chart, "acme", json!({})), &opts, now).await.unwrap(), Outcome::Installed(1));
    let err = release::install_or_upgrade(&tenant, &desired(&chart, "globex", json!({})), &opts, now).await.unwrap_err();
    assert_eq!(err.status(), Some(403));
    assert!(err.to_string().contains("cannot list resource \"secrets\" in API group \"\" in the namespace \"globex\""), "{err}");
    assert!(records(&server, "globex").is_empty());
}

const HELM: &str = r#"
import json, sys
from helm_python import Config, _native
from helm_python.config import _opts
kubeconfig, chart, step, value = sys.argv[1:5]
with Config(kubeconfig_path=kubeconfig, namespace="apps") as cfg:
    if step == "install":
        cfg.install(chart, "demo", {"x": value}, namespace="apps")
    elif step == "upgrade":
        cfg.upgrade(chart, "demo", {"x": value}, namespace="apps")
    elif step == "rollback":
        # `helm rollback --force-conflicts`: the objects' fields are owned by the `harmony`
        # field manager, and Helm 4 applies server-side without forcing by default.
        # Config.rollback() does not expose the option the SDK's C API accepts.
        _native.call_status("helm_rollback", cfg._raw(), "demo", _opts(version=int(value), force_conflicts=True))
    r = [{"revision": h["revision"], "status": h["status"]} for h in cfg.history("demo")]
    print(json.dumps(r))
"#;

async fn helm(python: &Path, kubeconfig: &Path, chart: &Path, step: &str, value: &str) -> Vec<(u64, String)> {
    let (python, kubeconfig, chart, step, value) = (python.to_path_buf(), kubeconfig.to_path_buf(), chart.to_path_buf(), step.to_string(), value.to_string());
    let out = tokio::task::spawn_blocking(move || Command::new(python).args(["-c", HELM]).arg(kubeconfig).arg(chart).arg(&step).arg(value).output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success(), "helm failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array().unwrap().iter().map(|h| (h["revision"].as_u64().unwrap(), h["status"].as_str().unwrap().to_string())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_reads_and_continues_what_harmony_wrote_and_vice_versa() {
    let Some(python) = harmony_testkit::helm_python() else { return };
    let server = Server::start().await.unwrap();
    create_namespace(&server, "apps");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, Server::kubeconfig(&[("loopback", &server)])).unwrap();
    let c = Cluster::from_kubeconfig(Some(&kubeconfig), "loopback").await.unwrap();
    let chart = write_chart(dir.path());
    let opts = Options { poll: std::time::Duration::from_millis(20), ..Default::default() };
    let s = |v: &[(u64, &str)]| v.iter().map(|(a, b)| (*a, b.to_string())).collect::<Vec<_>>();

    // Harmony installs and upgrades; Helm reads the history and rolls back to revision 1
    // (with --force-conflicts: see docs/adr/0007-kube-field-manager.md).
    release::install_or_upgrade(&c, &desired(&chart, "apps", json!({"x": "harmony-1"})), &opts, now).await.unwrap();
    release::install_or_upgrade(&c, &desired(&chart, "apps", json!({"x": "harmony-2"})), &opts, now).await.unwrap();
    assert_eq!(helm(&python, &kubeconfig, &chart, "history", "").await, s(&[(1, "superseded"), (2, "deployed")]));
    assert_eq!(helm(&python, &kubeconfig, &chart, "rollback", "1").await, s(&[(1, "superseded"), (2, "superseded"), (3, "deployed")]));
    assert_eq!(server.get("v1", "ConfigMap", "apps", "demo-cm").unwrap()["data"]["x"], "harmony-1", "Helm rolled back to Harmony's revision 1");

    // Harmony continues Helm's history: revision 3 (Helm's) is superseded by Harmony's 4.
    let out = release::install_or_upgrade(&c, &desired(&chart, "apps", json!({"x": "harmony-again"})), &opts, now).await.unwrap();
    assert_eq!(out, Outcome::Upgraded(4));
    assert_eq!(helm(&python, &kubeconfig, &chart, "history", "").await, s(&[(1, "superseded"), (2, "superseded"), (3, "superseded"), (4, "deployed")]));
    // And rolls back to the revision Helm wrote.
    assert_eq!(release::rollback(&c, "apps", "demo", Some(3), &opts, now).await.unwrap(), 5);
    assert_eq!(server.get("v1", "ConfigMap", "apps", "demo-cm").unwrap()["data"]["x"], "harmony-1");
    assert_eq!(helm(&python, &kubeconfig, &chart, "history", "").await.last().cloned(), Some((5, "deployed".to_string())));

    // The other way round: Helm installs, Harmony upgrades (taking over the fields Helm owned).
    assert!(release::uninstall(&c, "apps", "demo", &opts, now).await.unwrap());
    assert_eq!(helm(&python, &kubeconfig, &chart, "install", "helm").await, s(&[(1, "deployed")]));
    assert_eq!(server.get("v1", "ConfigMap", "apps", "demo-cm").unwrap()["data"]["x"], "helm");
    let out = release::install_or_upgrade(&c, &desired(&chart, "apps", json!({"x": "harmony"})), &opts, now).await.unwrap();
    assert_eq!(out, Outcome::Upgraded(2));
    assert_eq!(server.get("v1", "ConfigMap", "apps", "demo-cm").unwrap()["data"]["x"], "harmony");
    assert_eq!(helm(&python, &kubeconfig, &chart, "history", "").await, s(&[(1, "superseded"), (2, "deployed")]));
}

const HELM_INSTALL_METADATA: &str = r#"
import json, sys
from helm_python import Config
kubeconfig, chart = sys.argv[1:3]
with Config(kubeconfig_path=kubeconfig, namespace="apps") as cfg:
    cfg.install(chart, "demo", {"x": "helm"}, namespace="apps")
"#;

/// Objects Harmony writes carry the ownership metadata Helm's own install puts on them (label
/// `app.kubernetes.io/managed-by: Helm`, annotations `meta.helm.sh/release-name` and
/// `-namespace`), so Helm's adoption checks see them as the release's: compared with what Helm
/// v4 itself writes for the same chart on the same API server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_carry_the_ownership_metadata_helm_install_writes() {
    let Some(python) = harmony_testkit::helm_python() else { return };
    let server = Server::start().await.unwrap();
    create_namespace(&server, "apps");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, Server::kubeconfig(&[("loopback", &server)])).unwrap();
    let c = Cluster::from_kubeconfig(Some(&kubeconfig), "loopback").await.unwrap();
    let chart = write_chart(dir.path());
    let opts = Options { poll: std::time::Duration::from_millis(20), ..Default::default() };
    let metadata = |server: &Server| {
        let cm = server.get("v1", "ConfigMap", "apps", "demo-cm").unwrap();
        (cm["metadata"]["labels"].clone(), cm["metadata"]["annotations"].clone())
    };

    release::install_or_upgrade(&c, &desired(&chart, "apps", json!({"x": "harmony"})), &opts, now).await.unwrap();
    let ours = metadata(&server);
    assert_eq!(ours.0["app.kubernetes.io/managed-by"], "Helm", "{ours:?}");
    assert_eq!(ours.1["meta.helm.sh/release-name"], "demo", "{ours:?}");
    assert_eq!(ours.1["meta.helm.sh/release-namespace"], "apps", "{ours:?}");
    // The record's manifest stays as rendered (Helm adds the metadata to the objects only).
    let record = release::history(&c, "apps", "demo").await.unwrap().pop().unwrap().release;
    assert!(!record.manifest.contains("meta.helm.sh"), "{}", record.manifest);
    assert!(release::uninstall(&c, "apps", "demo", &opts, now).await.unwrap());

    let (python, k, ch) = (python.clone(), kubeconfig.clone(), chart.clone());
    let out = tokio::task::spawn_blocking(move || Command::new(python).args(["-c", HELM_INSTALL_METADATA]).arg(k).arg(ch).output().unwrap()).await.unwrap();
    assert!(out.status.success(), "helm failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(metadata(&server), ours, "Helm's install writes other ownership metadata than Harmony's");
}
