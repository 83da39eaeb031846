//! Live drift (issue 19, acceptance 5): `harmony plan` compares what Harmony applied with the
//! live objects, three-way; `harmony apply` repairs what drifted. A release of five objects
//! (ConfigMap, Service, Deployment, ServiceAccount, Secret) on a loopback API server, changed
//! behind Harmony's back as `kubectl scale`, `kubectl edit` and `kubectl delete` would.

mod common;

use std::path::PathBuf;

use base64::Engine as _;
use common::repo::{Repo, action_of, blocking, outcome_of};
use harmony_executor::kube::{Cluster, release};
use harmony_kube_loopback::Server;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};

const KEY_HEX: &str = "6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b";
const NS: &str = "acme-prod";
const UNIT: &str = "release/prod/acme-prod/web";
/// A plain value the chart puts into the Secret, and what someone edits it to live.
const APPLIED_SECRET: &str = "s3cr3t-as-applied";
const DRIFTED_SECRET: &str = "s3cr3t-edited-live";

const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}\nspec:\n{{- if .Values.replicas }}\n  replicas: {{ .Values.replicas }}\n{{- end }}\n  selector:\n    matchLabels:\n      app: {{ .Release.Name }}\n  template:\n    metadata:\n      labels:\n        app: {{ .Release.Name }}\n    spec:\n      containers:\n        - name: web\n          image: nginx:1.27\n          resources:\n            limits:\n              cpu: 0.5\n              memory: 1024Mi\n";

/// `web`: five objects (ConfigMap, Service, Deployment, ServiceAccount, Secret), replicas set by
/// the chart. `scaled`: a Deployment whose chart leaves `replicas` to an autoscaler.
fn repo(server: &Server) -> Repo {
    let release = |name: &str, values: &str| {
        format!("release {name} {{\n    tenant acme\n    cluster prod\n    namespace acme-prod\n    chart \"charts/app\"\n    values {{\n{values}    }}\n}}\n")
    };
    let releases = release("web", &format!("        password {APPLIED_SECRET:?}\n")) + &release("scaled", "        replicas 0\n");
    Repo::new(
        server,
        KEY_HEX,
        &[
            ("harmony.kdl", "repository drift {\n    kube-version \"1.33.0\"\n}\ncluster prod {\n    context prod\n}\n"),
            ("tenants.kdl", "tenant acme {\n    namespaces acme-prod\n    service-account harmony-deployer namespace=acme-prod\n}\n"),
            ("charts/app/Chart.yaml", "apiVersion: v2\nname: app\nversion: 0.1.0\n"),
            ("charts/app/values.yaml", "greeting: hi\nreplicas: 2\npassword: none\n"),
            ("charts/app/templates/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\ndata:\n  greeting: {{ .Values.greeting | quote }}\n"),
            ("charts/app/templates/sa.yaml", "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {{ .Release.Name }}\n"),
            ("charts/app/templates/secret.yaml", "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {{ .Release.Name }}\nstringData:\n  password: {{ .Values.password | quote }}\n"),
            (
                "charts/app/templates/svc.yaml",
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: {{ .Release.Name }}\nspec:\n  selector:\n    app: {{ .Release.Name }}\n  ports:\n    - name: http\n      port: 80\n",
            ),
            ("charts/app/templates/deploy.yaml", DEPLOYMENT),
            ("releases.kdl", &releases),
        ],
    )
}

/// `harmony plan --detailed-exitcode --format FORMAT`: (exit code, stdout).
fn detailed(repo: &Repo, format: &str) -> (Option<i32>, String) {
    let (code, stdout, _) = repo.plan_detailed(format);
    (code, stdout)
}

/// A client of the cluster as someone other than Harmony (`kubectl` as an administrator).
async fn admin(repo: &Repo) -> kube::Client {
    repo.cluster().await.client().clone()
}

fn by(manager: &str) -> PatchParams {
    PatchParams { field_manager: Some(manager.into()), ..PatchParams::default() }
}

/// `kubectl scale deployment NAME --replicas=N`: the scale subresource, as kubectl's manager.
async fn scale(client: &kube::Client, name: &str, replicas: i32) {
    let api: Api<Deployment> = Api::namespaced(client.clone(), NS);
    api.patch_scale(name, &by("kubectl-scale"), &Patch::Merge(json!({"spec": {"replicas": replicas}}))).await.unwrap();
}

async fn set_up() -> (Server, std::sync::Arc<Repo>, kube::Client) {
    let server = Server::start().await.unwrap();
    let repo = std::sync::Arc::new(repo(&server));
    let r = repo.clone();
    let out = blocking(move || r.apply()).await.unwrap();
    assert!(out.contains("release/prod/acme-prod/web: installed, revision 1"), "{out}");
    let r = repo.clone();
    let (code, stdout) = blocking(move || detailed(&r, "human")).await.unwrap();
    assert_eq!(code, Some(0), "freshly applied, nothing drifted: {stdout}");
    let client = admin(&repo).await;
    (server, repo, client)
}

fn web_action(plan: &Value) -> Value {
    action_of(plan, UNIT).clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_planned_and_apply_repairs_it() {
    let (server, repo, client) = set_up().await;
    // Behind Harmony's back: scaled, edited, deleted.
    scale(&client, "web", 5).await;
    Api::<ConfigMap>::namespaced(client.clone(), NS).patch("web", &by("kubectl-edit"), &Patch::Merge(json!({"data": {"greeting": "edited"}}))).await.unwrap();
    Api::<Service>::namespaced(client.clone(), NS).delete("web", &DeleteParams::default()).await.unwrap();

    let r = repo.clone();
    let (code, human) = blocking(move || detailed(&r, "human")).await.unwrap();
    assert_eq!(code, Some(2), "{human}");
    assert!(human.contains("Plan: 0 to add, 1 to change, 0 to destroy."), "{human}");
    assert!(human.contains("~ release/prod/acme-prod/web update"), "{human}");
    assert!(human.contains("drift: 2 objects changed live (ConfigMap/acme-prod/web, Deployment/acme-prod/web), 1 object deleted live, to be recreated (Service/acme-prod/web)"), "{human}");
    assert!(human.contains("~ drift Deployment/acme-prod/web: changed live"), "{human}");
    assert!(human.contains("-  replicas: 5") && human.contains("+  replicas: 2"), "{human}");
    assert!(human.contains("~ drift ConfigMap/acme-prod/web: changed live"), "{human}");
    assert!(human.contains("-  greeting: edited") && human.contains("+  greeting: hi"), "{human}");
    assert!(human.contains("~ drift Service/acme-prod/web: deleted live, apply recreates it"), "{human}");
    assert!(!human.contains("release/prod/acme-prod/scaled"), "the other release did not drift: {human}");

    let r = repo.clone();
    let (code, json) = blocking(move || detailed(&r, "json")).await.unwrap();
    assert_eq!(code, Some(2));
    let plan: Value = serde_json::from_str(&json).unwrap();
    let action = web_action(&plan);
    assert_eq!(action["apply"]["action"], "update", "{action:#}");
    let drift: Vec<(String, bool)> =
        action["apply"]["drift"].as_array().unwrap().iter().map(|d| (d["key"].as_str().unwrap().to_string(), d["resource_version"].is_string())).collect();
    assert_eq!(
        drift,
        vec![("ConfigMap/acme-prod/web".into(), true), ("Deployment/acme-prod/web".into(), true), ("Service/acme-prod/web".into(), false)],
        "{action:#}"
    );
    let objects: Vec<(String, String, bool)> = action["explain"]["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["key"].as_str().unwrap().to_string(), o["action"].as_str().unwrap().to_string(), o["drift"] == true))
        .collect();
    assert_eq!(
        objects,
        vec![
            ("ConfigMap/acme-prod/web".into(), "update".into(), true),
            ("Deployment/acme-prod/web".into(), "update".into(), true),
            ("Service/acme-prod/web".into(), "create".into(), true)
        ]
    );

    let records = |server: &Server| server.list("v1", "Secret").into_iter().filter(|s| s["metadata"]["labels"]["owner"] == "helm").count();
    let before = records(&server);
    let r = repo.clone();
    let out = blocking(move || r.apply()).await.unwrap();
    assert!(out.contains("release/prod/acme-prod/web: drift repaired (3 objects; revision 1 unchanged, no new revision)"), "{out}");
    assert!(out.contains("release/prod/acme-prod/scaled: unchanged (revision 1)"), "{out}");
    assert_eq!(records(&server), before, "a repair writes no revision");
    let deploy = server.get("apps/v1", "Deployment", NS, "web").unwrap();
    assert_eq!(deploy["spec"]["replicas"], 2, "{deploy:#}");
    assert_eq!(server.get("v1", "ConfigMap", NS, "web").unwrap()["data"]["greeting"], "hi");
    let svc = server.get("v1", "Service", NS, "web").expect("recreated");
    assert_eq!(svc["metadata"]["labels"]["app.kubernetes.io/managed-by"], "Helm", "{svc:#}");
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    // Harmony owns replicas again (server-side apply with force took them back).
    let owners: Vec<&str> = deploy["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["fieldsV1"]["f:spec"].get("f:replicas").is_some())
        .map(|m| m["manager"].as_str().unwrap())
        .collect();
    assert_eq!(owners, vec!["harmony"], "{deploy:#}");

    let r = repo.clone();
    let (code, human) = blocking(move || detailed(&r, "human")).await.unwrap();
    assert_eq!(code, Some(0), "repaired: {human}");
    let r = repo.clone();
    let out = blocking(move || r.apply()).await.unwrap();
    assert!(out.contains("release/prod/acme-prod/web: unchanged (revision 1)"), "{out}");
}

/// What the chart does not set is not Harmony's: an autoscaler's replicas (the chart omits
/// them), labels and annotations others add, a container another controller injects, and
/// what the API server defaults, none of it is drift, and apply leaves it alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_the_chart_does_not_set_are_not_drift() {
    let (server, repo, client) = set_up().await;
    scale(&client, "scaled", 7).await;
    let patch = json!({"metadata": {"labels": {"team": "checkout"}, "annotations": {"example.com/owner": "ops"}}});
    Api::<ConfigMap>::namespaced(client.clone(), NS).patch("web", &by("kubectl-label"), &Patch::Merge(patch)).await.unwrap();
    let sidecar = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "istio-proxy", "image": "proxy:1"},
        {"name": "web", "image": "nginx:1.27", "imagePullPolicy": "IfNotPresent", "resources": {"limits": {"cpu": "500m", "memory": "1Gi"}}}
    ]}}}});
    Api::<Deployment>::namespaced(client.clone(), NS).patch("web", &by("injector"), &Patch::Merge(sidecar)).await.unwrap();

    let r = repo.clone();
    let (code, human) = blocking(move || detailed(&r, "human")).await.unwrap();
    assert_eq!(code, Some(0), "{human}");
    let r = repo.clone();
    let out = blocking(move || r.apply()).await.unwrap();
    assert!(out.contains("release/prod/acme-prod/scaled: unchanged (revision 1)"), "{out}");
    assert_eq!(server.get("apps/v1", "Deployment", NS, "scaled").unwrap()["spec"]["replicas"], 7);
    assert_eq!(server.get("v1", "ConfigMap", NS, "web").unwrap()["metadata"]["labels"]["team"], "checkout");
}

/// A Secret edited live shows as drift by fingerprints only: neither the value Harmony applied
/// nor the one found live (nor their base64 forms) is in the human, Markdown or JSON plan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drifted_secret_never_shows_in_any_output() {
    let (server, repo, client) = set_up().await;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    Api::<Secret>::namespaced(client.clone(), NS)
        .patch("web", &by("kubectl-edit"), &Patch::Merge(json!({"data": {"password": b64(DRIFTED_SECRET)}})))
        .await
        .unwrap();
    let mut outputs = Vec::new();
    for format in ["human", "markdown", "json"] {
        let r = repo.clone();
        let (code, text) = blocking(move || detailed(&r, format)).await.unwrap();
        assert_eq!(code, Some(2), "{text}");
        assert!(text.contains("Secret/acme-prod/web"), "{text}");
        for needle in [APPLIED_SECRET.to_string(), DRIFTED_SECRET.to_string(), b64(APPLIED_SECRET), b64(DRIFTED_SECRET)] {
            assert!(!text.contains(&needle), "{format} output shows {needle}:\n{text}");
        }
        outputs.push(text);
    }
    assert!(outputs[0].contains("~ drift Secret/acme-prod/web: changed live") && outputs[0].contains("(secret fp:"), "{}", outputs[0]);
    let plan: Value = serde_json::from_str(&outputs[2]).unwrap();
    let secrets = &web_action(&plan)["apply"]["secrets"];
    assert_eq!(secrets[0]["name"], "Secret/acme-prod/web data.password", "{secrets:#}");
    assert_eq!(secrets[0]["status"], "changed", "{secrets:#}");
    let r = repo.clone();
    blocking(move || r.apply()).await.unwrap();
    assert_eq!(server.get("v1", "Secret", NS, "web").unwrap()["data"]["password"], b64(APPLIED_SECRET));
    let cluster = Cluster::from_kubeconfig(Some(&repo.kubeconfig), "prod").await.unwrap();
    assert_eq!(release::history(&cluster, NS, "web").await.unwrap().len(), 1);
}

/// `apply PLANFILE` repairs exactly the drift the plan shows (the objects it names, with their
/// live resourceVersions as the compare-and-set), without rendering or a new revision; a live
/// object that changed again since planning makes the action stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_file_repairs_the_planned_drift_and_refuses_it_when_stale() {
    let (server, repo, client) = set_up().await;
    scale(&client, "web", 5).await;
    Api::<Service>::namespaced(client.clone(), NS).delete("web", &DeleteParams::default()).await.unwrap();
    let file = repo.root.parent().unwrap().join("p.json");
    let plan_out = |repo: std::sync::Arc<Repo>, file: PathBuf| blocking(move || _ = repo.plan_out(&file, &[]));
    let apply_file = |repo: std::sync::Arc<Repo>, file: PathBuf| blocking(move || repo.apply_file(&file, &[], &[]));
    plan_out(repo.clone(), file.clone()).await.unwrap();
    // Not in the plan: edited after planning, so not repaired by it.
    Api::<ConfigMap>::namespaced(client.clone(), NS).patch("web", &by("kubectl-edit"), &Patch::Merge(json!({"data": {"greeting": "later"}}))).await.unwrap();
    let (code, outcome, _) = apply_file(repo.clone(), file.clone()).await.unwrap();
    assert_eq!(code, 0, "{outcome:#}");
    let web = outcome_of(&outcome, UNIT).clone();
    assert_eq!(web["outcome"], "applied", "{outcome:#}");
    assert_eq!(web["message"], "drift repaired (2 objects; revision 1 unchanged, no new revision)", "{outcome:#}");
    assert_eq!(server.get("apps/v1", "Deployment", NS, "web").unwrap()["spec"]["replicas"], 2);
    assert!(server.get("v1", "Service", NS, "web").is_some());
    assert_eq!(server.get("v1", "ConfigMap", NS, "web").unwrap()["data"]["greeting"], "later", "only the planned drift is repaired");

    // The ConfigMap's drift is planned; someone edits it again before apply: stale.
    plan_out(repo.clone(), file.clone()).await.unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), NS).patch("web", &by("kubectl-edit"), &Patch::Merge(json!({"data": {"greeting": "again"}}))).await.unwrap();
    let (code, outcome, _) = apply_file(repo.clone(), file.clone()).await.unwrap();
    assert_eq!(code, 2, "{outcome:#}");
    let web = outcome_of(&outcome, UNIT).clone();
    assert_eq!(web["outcome"], "stale", "{outcome:#}");
    assert!(web["message"].as_str().unwrap().contains("live object ConfigMap/acme-prod/web changed since planning"), "{outcome:#}");
    assert_eq!(server.get("v1", "ConfigMap", NS, "web").unwrap()["data"]["greeting"], "again", "a stale repair writes nothing");
}

/// The repair's write is its compare-and-set: it overwrites only the objects it compared, as it
/// compared them. A live object that changed after it was observed — scaled again, or deleted
/// and recreated by someone else — is refused as stale and left as it is, even though its
/// fields differ from Harmony's as they did when observed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_object_changed_after_it_was_compared_is_not_overwritten() {
    let (server, repo, client) = set_up().await;
    scale(&client, "web", 5).await;
    Api::<Service>::namespaced(client.clone(), NS).delete("web", &DeleteParams::default()).await.unwrap();
    let cluster = repo.cluster().await;
    let observed = harmony_executor::kube::observe::observe_cluster(&cluster).await.unwrap();
    let live = observed.releases[&(NS.to_string(), "web".to_string())].observed.live.clone().expect("live objects were read");
    let record = release::history(&cluster, NS, "web").await.unwrap().pop().unwrap().release;

    // Between the comparison and the write: scaled again; the Service recreated by someone else.
    scale(&client, "web", 7).await;
    let svc: Service = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "other"}, "ports": [{"name": "http", "port": 8080}]}})).unwrap();
    Api::<Service>::namespaced(client.clone(), NS).create(&kube::api::PostParams { field_manager: Some("kubectl-create".into()), ..Default::default() }, &svc).await.unwrap();

    for key in ["Deployment/acme-prod/web", "Service/acme-prod/web"] {
        let only = std::collections::BTreeSet::from([key.to_string()]);
        let err = release::repair_drift(&cluster, &record, Some(&live), Some(&only)).await.expect_err(key);
        assert!(matches!(err, harmony_executor::kube::KubeError::Stale(_)), "{key}: {err}");
        assert!(err.to_string().contains(key), "{err}");
    }
    assert_eq!(server.get("apps/v1", "Deployment", NS, "web").unwrap()["spec"]["replicas"], 7, "the later scale was overwritten");
    let svc = server.get("v1", "Service", NS, "web").unwrap();
    assert_eq!(svc["spec"]["ports"][0]["port"], 8080, "the recreated Service was overwritten: {svc:#}");

    // Compared again, the same repair goes through.
    let observed = harmony_executor::kube::observe::observe_cluster(&cluster).await.unwrap();
    let live = observed.releases[&(NS.to_string(), "web".to_string())].observed.live.clone().unwrap();
    let only = std::collections::BTreeSet::from(["Deployment/acme-prod/web".to_string()]);
    assert_eq!(release::repair_drift(&cluster, &record, Some(&live), Some(&only)).await.unwrap(), 1);
    assert_eq!(server.get("apps/v1", "Deployment", NS, "web").unwrap()["spec"]["replicas"], 2);
}

/// A release whose unit changed but renders the objects already deployed (a template comment)
/// is planned with a release payload and its drift: `apply PLANFILE` leaves the release as it is
/// and repairs the drift with the same compare-and-set as a repair-only action — a drifted
/// object changed again since planning makes the action stale, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rendered_release_left_as_deployed_repairs_drift_only_as_planned() {
    let (server, repo, client) = set_up().await;
    repo.write("charts/app/templates/deploy.yaml", &format!("{{{{/* a comment: renders nothing */}}}}\n{DEPLOYMENT}"));
    scale(&client, "web", 5).await;
    let file = repo.dir.path().join("p.json");
    let (r, f) = (repo.clone(), file.clone());
    let plan = blocking(move || r.plan_out(&f, &[])).await.unwrap();
    let action = web_action(&plan);
    assert_eq!(action["apply"]["payload"]["kind"], "release", "{action:#}");
    let drift: Vec<&str> = action["apply"]["drift"].as_array().unwrap().iter().map(|d| d["key"].as_str().unwrap()).collect();
    assert_eq!(drift, vec!["Deployment/acme-prod/web"], "{action:#}");

    scale(&client, "web", 6).await;
    let (r, f) = (repo.clone(), file.clone());
    let (code, outcome, text) = blocking(move || r.apply_file(&f, &[], &[])).await.unwrap();
    assert_eq!(code, 2, "{text}");
    let web = outcome_of(&outcome, UNIT);
    assert_eq!(web["outcome"], "stale", "{outcome:#}");
    assert!(web["message"].as_str().unwrap().contains("live object Deployment/acme-prod/web changed since planning"), "{outcome:#}");
    assert_eq!(server.get("apps/v1", "Deployment", NS, "web").unwrap()["spec"]["replicas"], 6, "a stale repair wrote");

    // Planned again: repaired, and the next plan is empty.
    let (r, f) = (repo.clone(), file.clone());
    blocking(move || r.plan_out(&f, &[])).await.unwrap();
    let (r, f) = (repo.clone(), file.clone());
    let (code, outcome, text) = blocking(move || r.apply_file(&f, &[], &[])).await.unwrap();
    assert_eq!(code, 0, "{text}");
    assert_eq!(outcome_of(&outcome, UNIT)["outcome"], "applied", "{outcome:#}");
    assert_eq!(server.get("apps/v1", "Deployment", NS, "web").unwrap()["spec"]["replicas"], 2);
    let r = repo.clone();
    let (code, human) = blocking(move || detailed(&r, "human")).await.unwrap();
    assert_eq!(code, Some(0), "{human}");
}

/// A kind the API server stopped serving (its CustomResourceDefinition was removed, and its
/// objects with it) is not drift that apply could never repair: the plan warns, naming the
/// release, the kind and the objects, and plans no change; apply leaves the release as it is; an
/// upgrade (rendered without the kind, which the chart gates on `.Capabilities`) goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kind_the_server_stopped_serving_is_a_warning_not_drift() {
    let server = Server::start().await.unwrap();
    common::repo::serve_service_monitors(&server);
    let repo = std::sync::Arc::new(repo(&server));
    repo.write("charts/mon/Chart.yaml", "apiVersion: v2\nname: mon\nversion: 0.1.0\n");
    repo.write("charts/mon/templates/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\ndata:\n  greeting: {{ .Values.greeting | quote }}\n");
    repo.write("charts/mon/templates/monitor.yaml", common::repo::GATED_SERVICE_MONITOR);
    let mon = |greeting: &str| format!("release mon {{\n    tenant acme\n    cluster prod\n    namespace acme-prod\n    chart \"charts/mon\"\n    values {{\n        greeting {greeting:?}\n    }}\n}}\n");
    repo.write("mon.kdl", &mon("hi"));
    let r = repo.clone();
    let out = blocking(move || r.apply()).await.unwrap();
    assert!(out.contains("release/prod/acme-prod/mon: installed, revision 1"), "{out}");
    assert!(server.get("monitoring.coreos.com/v1", "ServiceMonitor", NS, "mon").is_some());

    server.unregister("monitoring.coreos.com", "ServiceMonitor");
    let r = repo.clone();
    let (code, stdout, stderr) = blocking(move || r.plan_detailed("human")).await.unwrap();
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(!stdout.contains("drift"), "{stdout}");
    assert!(
        stderr.contains("release acme-prod/mon (revision 1): the API server does not serve ServiceMonitor (monitoring.coreos.com/v1)")
            && stderr.contains("its object ServiceMonitor/acme-prod/mon cannot be compared with the cluster or recreated by apply"),
        "{stderr}"
    );
    let r = repo.clone();
    let out = blocking(move || r.apply()).await.unwrap();
    assert!(out.contains("release/prod/acme-prod/mon: unchanged (revision 1)"), "{out}");

    // Upgraded: rendered without the ServiceMonitor (the cluster no longer offers it); the
    // object of the old revision is gone with its kind, which is not an error.
    repo.write("mon.kdl", &mon("hello"));
    let r = repo.clone();
    let out = blocking(move || r.apply()).await.unwrap();
    assert!(out.contains("release/prod/acme-prod/mon: upgraded, revision 2"), "{out}");
    let r = repo.clone();
    let (code, stdout, stderr) = blocking(move || r.plan_detailed("human")).await.unwrap();
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(!stderr.contains("does not serve"), "{stderr}");
}

/// The cluster-wide lists a plan reads are paged (`limit` and `continue`), so a cluster with
/// more objects of a kind than one page is read whole, page by page, never in one response:
/// 1,200 other Helm-labelled ConfigMaps (in a namespace that sorts first) and the release's
/// ConfigMap is still found through the lists — no drift, no GET for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_objects_are_listed_in_pages() {
    let (server, repo, _client) = set_up().await;
    server.create(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "aaa-other"}}));
    for i in 0..1200 {
        server.create(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("other-{i:04}"), "namespace": "aaa-other", "labels": {"app.kubernetes.io/managed-by": "Helm"}}}));
    }
    let before = server.requests().len();
    let r = repo.clone();
    let (code, stdout, stderr) = blocking(move || r.plan_detailed("human")).await.unwrap();
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let requests = server.requests()[before..].to_vec();
    let lists: Vec<&String> = requests.iter().filter(|r| r.starts_with("GET /api/v1/configmaps?")).collect();
    assert_eq!(lists.len(), 3, "1,202 ConfigMaps in pages of 500: {lists:#?}");
    assert!(lists.iter().all(|r| r.contains("limit=500")), "{lists:#?}");
    assert!(lists[1].contains("continue=") && lists[2].contains("continue="), "{lists:#?}");
    assert!(!requests.iter().any(|r| r.starts_with("GET /api/v1/namespaces/acme-prod/configmaps/web")), "the release's ConfigMap was read one by one: {requests:#?}");
    // Every list the plan reads is paged: release records, tenant objects, live objects.
    let unpaged: Vec<&String> = requests.iter().filter(|r| r.starts_with("GET ") && r.contains("labelSelector=") && !r.contains("limit=")).collect();
    assert!(unpaged.is_empty(), "{unpaged:#?}");
}
