//! The plan is the contract (issue 19): what `harmony plan` shows for a release is what
//! `harmony apply` writes. A chart that reads `.Release.Revision`, `.Release.IsUpgrade` and
//! `.Capabilities` (a template gated on a CRD the cluster serves) is planned, then applied, on a
//! loopback API server; the manifest in Helm's release record must be the planned one, byte
//! for byte (compared through the plan's keyed fingerprint of it).

mod common;

use std::path::Path;

use common::repo::{Repo, blocking, outcome_of};
use harmony_executor::kube::Cluster;
use harmony_executor::kube::release;
use harmony_kube_loopback::Server;
use harmony_planner::FingerprintKey;
use serde_json::Value;

const KEY_HEX: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

/// Releases `web` (a chart printing `.Release.Revision`, `.Release.IsUpgrade`, `.Capabilities`,
/// with a ServiceMonitor gated on the CRD) and `plain` (one ConfigMap) of tenant `acme`.
fn repo(server: &Server) -> Repo {
    let repo = Repo::new(
        server,
        KEY_HEX,
        &[
            ("harmony.kdl", "repository contract {\n    kube-version \"1.30.0\"\n}\ncluster prod {\n    context prod\n}\n"),
            ("tenants.kdl", "tenant acme {\n    namespaces acme-prod\n    service-account harmony-deployer namespace=acme-prod\n}\n"),
            ("charts/web/Chart.yaml", "apiVersion: v2\nname: web\nversion: 0.1.0\n"),
            ("charts/web/values.yaml", "greeting: hi\n"),
            ("charts/plain/Chart.yaml", "apiVersion: v2\nname: plain\nversion: 0.1.0\n"),
            ("charts/plain/templates/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\ndata:\n  greeting: {{ .Values.greeting | quote }}\n"),
            (
                "charts/web/templates/info.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-info\ndata:\n  revision: {{ .Release.Revision | quote }}\n  upgrade: {{ .Release.IsUpgrade | quote }}\n  install: {{ .Release.IsInstall | quote }}\n  kube: {{ .Capabilities.KubeVersion.Version | quote }}\n  greeting: {{ .Values.greeting | quote }}\n",
            ),
            ("charts/web/templates/monitor.yaml", common::repo::GATED_SERVICE_MONITOR),
        ],
    );
    set_greeting(&repo, "hello");
    repo
}

fn set_greeting(repo: &Repo, greeting: &str) {
    repo.write(
        "releases.kdl",
        &format!(
            "release web {{\n    tenant acme\n    cluster prod\n    namespace acme-prod\n    chart \"charts/web\"\n    values {{\n        greeting {greeting:?}\n    }}\n}}\n\nrelease plain {{\n    tenant acme\n    cluster prod\n    namespace acme-prod\n    chart \"charts/plain\"\n    values {{\n        greeting hi\n    }}\n}}\n"
        ),
    );
}

/// Keeps only release `web`, with `secret-value "token"` from environment variable `var`.
fn only_web_with_secret_token(repo: &Repo, var: &str) {
    let text = std::fs::read_to_string(repo.root.join("releases.kdl")).unwrap();
    let cut = text.find("release plain").unwrap();
    std::fs::write(repo.root.join("releases.kdl"), text[..cut].replace("    values {", &format!("    secret-value \"token\" from=\"env:{var}\"\n    values {{"))).unwrap();
}

async fn history_of(server: &Server, name: &str) -> Vec<release::Stored> {
    common::repo::history_of(server, "acme-prod", name).await
}

async fn records(server: &Server) -> Vec<release::Stored> {
    history_of(server, "web").await
}

fn release_action(plan: &Value) -> &Value {
    plan["actions"].as_array().unwrap().iter().find(|a| a["unit"] == "release/prod/acme-prod/web").expect("the release is planned")
}

fn object_keys(action: &Value) -> Vec<String> {
    action["explain"]["objects"].as_array().unwrap().iter().map(|o| o["key"].as_str().unwrap().to_string()).collect()
}



#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_release_record_holds_exactly_the_planned_manifest() {
    let server = Server::start().await.unwrap();
    common::repo::serve_service_monitors(&server);
    let repo = std::sync::Arc::new(repo(&server));
    let key = FingerprintKey::from_hex(KEY_HEX).unwrap();

    // Offline, the repository's declarations are all there is: Helm's default API versions
    // (no ServiceMonitor) and the declared kube-version.
    let r = repo.clone();
    let offline = blocking(move || r.plan(&["--offline"])).await.unwrap();
    assert_eq!(offline["capabilities"]["prod"]["source"], "declared", "{offline:#}");
    assert_eq!(offline["capabilities"]["prod"]["kube_version"], "v1.30.0");
    assert!(!object_keys(release_action(&offline)).iter().any(|k| k.starts_with("ServiceMonitor/")), "{offline:#}");

    // The cluster may declare what it serves beyond Helm's defaults, for offline plans and
    // `diff` (as `helm template --api-versions`); a malformed one is a diagnostic.
    let kdl = std::fs::read_to_string(repo.root.join("harmony.kdl")).unwrap();
    std::fs::write(repo.root.join("harmony.kdl"), kdl.replace("context prod\n", "context prod\n    api-versions \"monitoring.coreos.com/v1/Service Monitor\"\n")).unwrap();
    let out = repo.run(&["check"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is not an API version") && stderr.contains("harmony.kdl"), "{stderr}");
    std::fs::write(repo.root.join("harmony.kdl"), kdl.replace("context prod\n", "context prod\n    api-versions \"monitoring.coreos.com/v1/ServiceMonitor\"\n")).unwrap();
    let r = repo.clone();
    let declared = blocking(move || r.plan(&["--offline"])).await.unwrap();
    assert_eq!(declared["capabilities"]["prod"]["api_versions"], serde_json::json!(["monitoring.coreos.com/v1/ServiceMonitor"]), "{declared:#}");
    assert!(object_keys(release_action(&declared)).contains(&"ServiceMonitor/acme-prod/web".to_string()), "{declared:#}");
    std::fs::write(repo.root.join("harmony.kdl"), kdl).unwrap();

    // Live: the server's version and discovery, as `helm upgrade` reads them.
    let r = repo.clone();
    let first = blocking(move || r.plan(&[])).await.unwrap();
    let caps = &first["capabilities"]["prod"];
    assert_eq!(caps["source"], "discovery", "{first:#}");
    let versions: Vec<&str> = caps["api_versions"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(versions.contains(&"monitoring.coreos.com/v1") && versions.contains(&"monitoring.coreos.com/v1/ServiceMonitor") && versions.contains(&"v1/Secret"), "{versions:?}");
    let action = release_action(&first);
    assert_eq!(action["apply"]["release"]["revision"], 1);
    assert_eq!(action["apply"]["release"]["is_upgrade"], false);
    assert!(object_keys(action).contains(&"ServiceMonitor/acme-prod/web".to_string()), "{action:#}");
    let planned = action["apply"]["release"]["manifest"].as_str().unwrap().to_string();

    let r = repo.clone();
    blocking(move || r.apply()).await.unwrap();
    let hist = records(&server).await;
    assert_eq!(hist.len(), 1);
    let written = &hist[0].release.manifest;
    assert_eq!(key.fingerprint(written.as_bytes()), planned, "the record's manifest is not the planned one:\n{written}");
    assert!(written.contains("revision: \"1\"") && written.contains("install: \"true\"") && written.contains("kind: ServiceMonitor"), "{written}");
    assert!(server.get("monitoring.coreos.com/v1", "ServiceMonitor", "acme-prod", "web").is_some());

    // Unchanged repository: nothing is rendered or written, although a render for the next
    // revision would differ (the chart prints .Release.Revision).
    let r = repo.clone();
    let again = blocking(move || r.plan(&[])).await.unwrap();
    assert_eq!(release_action(&again)["apply"]["action"], "noop", "{again:#}");
    let r = repo.clone();
    let out = blocking(move || r.apply()).await.unwrap();
    assert!(out.contains("unchanged (revision 1)"), "{out}");
    assert_eq!(records(&server).await.len(), 1);

    // An upgrade: planned as revision 2, IsUpgrade, and written so.
    set_greeting(&repo, "bonjour");
    let r = repo.clone();
    let second = blocking(move || r.plan(&[])).await.unwrap();
    let action = release_action(&second);
    assert_eq!(action["apply"]["release"]["revision"], 2, "{action:#}");
    assert_eq!(action["apply"]["release"]["is_upgrade"], true);
    let planned = action["apply"]["release"]["manifest"].as_str().unwrap().to_string();
    let r = repo.clone();
    blocking(move || r.apply()).await.unwrap();
    let hist = records(&server).await;
    let latest = &hist.last().unwrap().release;
    assert_eq!(latest.version, 2);
    assert_eq!(key.fingerprint(latest.manifest.as_bytes()), planned, "{}", latest.manifest);
    assert!(latest.manifest.contains("revision: \"2\"") && latest.manifest.contains("upgrade: \"true\"") && latest.manifest.contains("greeting: \"bonjour\""));

    // A value no template reads, in a chart that does not print its revision: the unit
    // changes, the objects do not. The plan says so and is not a change (`--detailed-exitcode`
    // 0); apply writes no revision. (For `web`, which prints `.Release.Revision`, the same edit
    // is a real upgrade: its next revision renders differently.)
    let text = std::fs::read_to_string(repo.root.join("releases.kdl")).unwrap();
    std::fs::write(repo.root.join("releases.kdl"), text.replace("greeting hi", "greeting hi\n        unused 1")).unwrap();
    let r = repo.clone();
    let out = blocking(move || r.run(&["plan", "--detailed-exitcode", "--kubeconfig", r.kubeconfig()])).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("1 unit (release/prod/acme-prod/plain) renders the objects already deployed: apply changes no object, only the release record."), "{stdout}");
    let version = |server: &Server| server.get("v1", "ConfigMap", "acme-prod", "plain").unwrap()["metadata"]["resourceVersion"].clone();
    let before = version(&server);
    let r = repo.clone();
    let out = blocking(move || r.apply()).await.unwrap();
    // The values changed: Helm's history records them in a new revision; no object moved.
    assert!(out.contains("release/prod/acme-prod/plain: upgraded, revision 2"), "{out}");
    assert_eq!(version(&server), before, "an object was written");
    let r = repo.clone();
    let after = blocking(move || r.plan(&[])).await.unwrap();
    let plain = after["actions"].as_array().unwrap().iter().find(|a| a["unit"] == "release/prod/acme-prod/plain").unwrap();
    assert_eq!(plain["explain"]["reason"], "as desired", "{after:#}");
}

/// `plan --skip-clusters` needs no kubeconfig and plans no release; an unresolvable
/// `secret-value` fails a plan (naming the release, key and source), except `--offline`, which
/// shows it as unresolved until apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipped_targets_and_unresolvable_secrets() {
    let server = Server::start().await.unwrap();
    let repo = repo(&server);
    let out = repo.run(&["plan", "--skip-clusters", "--format", "json", "--kubeconfig", "/nonexistent/kubeconfig"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["actions"], serde_json::json!([]), "{plan:#}");
    assert_eq!(plan["filters"]["skipped"], serde_json::json!(["clusters"]));
    let out = repo.run(&["plan", "--skip-clusters", "--kubeconfig", "/nonexistent/kubeconfig"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Skipped: every clusters."), "{}", String::from_utf8_lossy(&out.stdout));

    let text = std::fs::read_to_string(repo.root.join("releases.kdl")).unwrap();
    std::fs::write(repo.root.join("releases.kdl"), text.replace("    values {", "    secret-value \"token\" from=\"env:PLAN_CONTRACT_UNSET_TOKEN\"\n    values {")).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        let live = repo.run(&["plan", "--kubeconfig", repo.kubeconfig()]);
        let offline = repo.run(&["plan", "--offline"]);
        (live, offline)
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.0.stderr);
    assert_eq!(out.0.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("release/prod/acme-prod/web: secret-value token: environment variable PLAN_CONTRACT_UNSET_TOKEN is not set"), "{stderr}");
    assert!(out.1.status.success(), "{}", String::from_utf8_lossy(&out.1.stderr));
    assert!(String::from_utf8_lossy(&out.1.stdout).contains("secret-value token from env:PLAN_CONTRACT_UNSET_TOKEN: unresolved until apply"));
}

/// A release whose latest record is a failed upgrade (revision 3 failed over deployed 2) is
/// planned as what apply writes next: revision 4, an upgrade of the deployed revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_latest_record_is_planned_as_the_revision_after_it() {
    let server = Server::start().await.unwrap();
    let repo = std::sync::Arc::new(repo(&server));
    let r = repo.clone();
    blocking(move || r.apply()).await.unwrap();
    set_greeting(&repo, "two");
    let r = repo.clone();
    blocking(move || r.apply()).await.unwrap();
    // Revision 3 fails: an object of a kind the server does not serve.
    let kubeconfig = repo.kubeconfig.clone();
    let cluster = Cluster::from_kubeconfig(Some(Path::new(&kubeconfig)), "prod").await.unwrap();
    let mut bad = records(&server).await.pop().unwrap().release;
    bad.manifest = "---\n# Source: web/templates/bad.yaml\napiVersion: example.com/v1\nkind: Nothing\nmetadata:\n  name: x\n".into();
    let desired = release::Desired {
        name: "web".into(),
        namespace: "acme-prod".into(),
        chart: bad.chart.clone(),
        config: bad.config.clone(),
        manifests: vec![("web/templates/bad.yaml".into(), "apiVersion: example.com/v1\nkind: Nothing\nmetadata:\n  name: x".into())],
        hooks: vec![],
        notes: String::new(),
        unit_hash: None,
        unit_id: None,
        planned: None,
    };
    let failed = release::install_or_upgrade(&cluster, &desired, &release::Options::default(), jiff::Timestamp::now).await;
    assert!(failed.is_err(), "{failed:?}");
    let statuses: Vec<(u32, String)> = records(&server).await.iter().map(|s| (s.release.version, s.release.info.status.as_str().to_string())).collect();
    assert_eq!(statuses, vec![(1, "superseded".into()), (2, "deployed".into()), (3, "failed".into())]);

    set_greeting(&repo, "four");
    let r = repo.clone();
    let plan = blocking(move || r.plan(&[])).await.unwrap();
    let action = release_action(&plan);
    assert_eq!(action["apply"]["action"], "update", "{action:#}");
    assert_eq!(action["apply"]["release"]["revision"], 4, "{action:#}");
    assert_eq!(action["apply"]["release"]["is_upgrade"], true);
    let planned = action["apply"]["release"]["manifest"].as_str().unwrap().to_string();
    let r = repo.clone();
    blocking(move || r.apply()).await.unwrap();
    let latest = records(&server).await.pop().unwrap().release;
    assert_eq!((latest.version, latest.info.status.as_str()), (4, "deployed"));
    assert_eq!(FingerprintKey::from_hex(KEY_HEX).unwrap().fingerprint(latest.manifest.as_bytes()), planned);
    assert!(latest.manifest.contains("revision: \"4\""), "{}", latest.manifest);
}

/// What was rendered for one revision is never written as another: a release that moved
/// between rendering and writing is refused as stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_rendered_for_another_revision_is_refused_as_stale() {
    let server = Server::start().await.unwrap();
    let repo = std::sync::Arc::new(repo(&server));
    let r = repo.clone();
    blocking(move || r.apply()).await.unwrap();
    let cluster = Cluster::from_kubeconfig(Some(&repo.kubeconfig), "prod").await.unwrap();
    let current = records(&server).await.pop().unwrap().release;
    let desired = release::Desired {
        name: "web".into(),
        namespace: "acme-prod".into(),
        chart: current.chart.clone(),
        config: current.config.clone(),
        manifests: vec![("web/templates/info.yaml".into(), "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-info\ndata:\n  revision: \"1\"".into())],
        hooks: vec![],
        notes: String::new(),
        unit_hash: None,
        unit_id: None,
        // Rendered as the first install, but revision 1 is already deployed.
        planned: Some((1, false)),
    };
    let err = release::install_or_upgrade(&cluster, &desired, &release::Options::default(), jiff::Timestamp::now).await.unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("stale: release acme-prod/web was rendered as revision 1 (an install)"), "{text}");
    assert!(text.contains("the next one revision 2 (an upgrade)"), "{text}");
    assert_eq!(records(&server).await.len(), 1, "nothing was written");
}

/// A release with a history but no deployed revision (its only install failed) is planned as
/// what apply does — installing revision 2 over the history — never as a fresh create nor as
/// unchanged; once it leaves the repository, Harmony (which wrote it) prunes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_with_no_deployed_revision_is_planned_truthfully_and_pruned() {
    let server = Server::start().await.unwrap();
    let repo = std::sync::Arc::new(repo(&server));
    // Harmony's install of `plain` fails: one of its objects is of a kind the server does not serve.
    std::fs::write(repo.root.join("charts/plain/templates/bad.yaml"), "apiVersion: example.com/v1\nkind: Nothing\nmetadata:\n  name: plain\n").unwrap();
    let r = repo.clone();
    let failed = blocking(move || r.run(&["apply", "--yes", "--skip-fleets", "--kubeconfig", r.kubeconfig()])).await.unwrap();
    let text = String::from_utf8_lossy(&failed.stdout).into_owned() + &String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success(), "expected the install of plain to fail: {text}");
    let hist = |server: &Server| -> Vec<(String, String)> {
        server
            .list("v1", "Secret")
            .into_iter()
            .filter(|s| s["metadata"]["labels"]["name"] == "plain")
            .map(|s| (s["metadata"]["labels"]["version"].as_str().unwrap().to_string(), s["metadata"]["labels"]["status"].as_str().unwrap().to_string()))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    assert_eq!(hist(&server), vec![("1".to_string(), "failed".to_string())], "{text}");
    std::fs::remove_file(repo.root.join("charts/plain/templates/bad.yaml")).unwrap();

    let r = repo.clone();
    let plan = blocking(move || r.plan(&[])).await.unwrap();
    let plain = plan["actions"].as_array().unwrap().iter().find(|a| a["unit"] == "release/prod/acme-prod/plain").unwrap().clone();
    assert_eq!(plain["apply"]["action"], "update", "{plain:#}");
    assert_eq!(plain["apply"]["release"]["revision"], 2, "{plain:#}");
    assert_eq!(plain["apply"]["release"]["is_upgrade"], false, "{plain:#}");
    assert!(plain["explain"]["reason"].as_str().unwrap().starts_with("no revision is deployed (the latest, 1, did not deploy)"), "{plain:#}");
    let r = repo.clone();
    let out = blocking(move || r.apply()).await.unwrap();
    assert!(out.contains("release/prod/acme-prod/plain: installed, revision 2"), "{out}");

    // Fail it again, then remove it from the repository: the plan shows it pruned, apply prunes.
    let text = std::fs::read_to_string(repo.root.join("releases.kdl")).unwrap();
    let cut = text.find("release plain").unwrap();
    std::fs::write(repo.root.join("releases.kdl"), &text[..cut]).unwrap();
    let kubeconfig = repo.kubeconfig.clone();
    let cluster = Cluster::from_kubeconfig(Some(Path::new(&kubeconfig)), "prod").await.unwrap();
    let mut stored = release::history(&cluster, "acme-prod", "plain").await.unwrap();
    let current = stored.pop().unwrap();
    let mut rel = current.release.clone();
    rel.info.status = harmony_executor::kube::record::Status::Failed;
    // As Harmony writes a failed revision: sealed (an edited record is no longer Harmony's).
    harmony_executor::kube::seal::load(&cluster).await.unwrap().expect("apply made the cluster's seal key").seal(&mut rel);
    let mut secret = rel.to_secret(0);
    secret.metadata.resource_version = Some(current.resource_version.clone());
    let api: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(cluster.client().clone(), "acme-prod");
    api.replace(&rel.secret_name(), &Default::default(), &secret).await.unwrap();
    assert_eq!(hist(&server), vec![("1".to_string(), "failed".to_string()), ("2".to_string(), "failed".to_string())]);
    let r = repo.clone();
    let plan = blocking(move || r.plan(&[])).await.unwrap();
    let plain = plan["actions"].as_array().unwrap().iter().find(|a| a["unit"] == "release/prod/acme-prod/plain").unwrap().clone();
    assert_eq!(plain["apply"]["action"], "delete", "{plain:#}");
    let r = repo.clone();
    let out = blocking(move || r.apply()).await.unwrap();
    assert!(out.contains("release/prod/acme-prod/plain: uninstalled"), "{out}");
    assert!(hist(&server).is_empty());
}



/// Acceptance (1): `plan --out` then `apply PLANFILE` writes exactly the plan — each release
/// record's manifest has the planned fingerprint — and reads nothing from the repository:
/// the repository is changed and its charts deleted between plan and apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_planfile_writes_exactly_the_plan_without_the_repository() {
    let server = Server::start().await.unwrap();
    let repo = std::sync::Arc::new(repo(&server));
    let key = FingerprintKey::from_hex(KEY_HEX).unwrap();
    let file = repo.dir.path().join("p.json");
    let (r, f) = (repo.clone(), file.clone());
    let plan = blocking(move || r.plan_out(&f, &[])).await.unwrap();
    assert_eq!(plan["format_version"], 4);
    assert!(plan["seal"].as_str().unwrap().starts_with("hmac-sha256:"), "{plan:#}");
    assert_eq!(plan["charts"].as_object().unwrap().len(), 2, "one entry per chart");
    let planned: std::collections::BTreeMap<String, String> = ["web", "plain"]
        .iter()
        .map(|n| {
            let a = plan["actions"].as_array().unwrap().iter().find(|a| a["unit"] == format!("release/prod/acme-prod/{n}")).unwrap();
            (n.to_string(), a["apply"]["release"]["manifest"].as_str().unwrap().to_string())
        })
        .collect();

    set_greeting(&repo, "changed after planning");
    std::fs::rename(repo.root.join("charts"), repo.dir.path().join("charts.moved")).unwrap();
    let (r, f) = (repo.clone(), file.clone());
    let (code, outcome, text) = blocking(move || r.apply_file(&f, &[], &[])).await.unwrap();
    assert_eq!(code, 0, "{text}");
    assert_eq!(outcome["kind"], "harmony-apply-outcome");
    assert_eq!(outcome["plan_identity"], plan["identity"]);
    for (name, fp) in &planned {
        assert_eq!(outcome_of(&outcome, &format!("release/prod/acme-prod/{name}"))["outcome"], "applied", "{outcome:#}");
        let hist = history_of(&server, name).await;
        assert_eq!(hist.len(), 1, "{name}");
        assert_eq!(&key.fingerprint(hist[0].release.manifest.as_bytes()), fp, "{name}: the record's manifest is not the planned one");
    }
    assert_eq!(outcome_of(&outcome, "tenant-access/acme/prod")["outcome"], "applied", "{outcome:#}");
    assert_eq!(server.get("v1", "ConfigMap", "acme-prod", "web-info").unwrap()["data"]["greeting"], "hello");

    // The same plan again: its targets moved (it was planned against an empty cluster): the
    // tenant's access is stale, the releases that depend on it are not attempted.
    let (r, f) = (repo.clone(), file.clone());
    let (code, outcome, text) = blocking(move || r.apply_file(&f, &[], &[])).await.unwrap();
    assert_eq!(code, 2, "{text}");
    let access = outcome_of(&outcome, "tenant-access/acme/prod");
    assert_eq!(access["outcome"], "stale", "{outcome:#}");
    assert_eq!(access["expected"], "no objects", "{outcome:#}");
    assert!(access["found"].as_str().unwrap().contains("ServiceAccount/acme-prod/harmony-deployer@"), "{outcome:#}");
    assert_eq!(outcome_of(&outcome, "release/prod/acme-prod/web")["outcome"], "skipped", "{outcome:#}");
    assert_eq!(history_of(&server, "web").await.len(), 1, "nothing written");

    // A value no template of `plain` reads: a record-only no-op, which the plan file still writes
    // (a new revision holding the new values), touching no object.
    std::fs::rename(repo.dir.path().join("charts.moved"), repo.root.join("charts")).unwrap();
    set_greeting(&repo, "hello");
    let text = std::fs::read_to_string(repo.root.join("releases.kdl")).unwrap();
    std::fs::write(repo.root.join("releases.kdl"), text.replace("greeting hi", "greeting hi\n        unused 1")).unwrap();
    let (r, f) = (repo.clone(), file.clone());
    let plan = blocking(move || r.plan_out(&f, &[])).await.unwrap();
    let plain = plan["actions"].as_array().unwrap().iter().find(|a| a["unit"] == "release/prod/acme-prod/plain").unwrap();
    assert_eq!((plain["apply"]["action"].as_str(), plain["apply"]["payload"]["kind"].as_str()), (Some("noop"), Some("release")), "{plan:#}");
    let before = server.get("v1", "ConfigMap", "acme-prod", "plain").unwrap()["metadata"]["resourceVersion"].clone();
    let (r, f) = (repo.clone(), file.clone());
    let (code, outcome, text) = blocking(move || r.apply_file(&f, &[], &[])).await.unwrap();
    assert_eq!(code, 0, "{text}");
    assert_eq!(outcome_of(&outcome, "release/prod/acme-prod/plain")["message"], "upgraded, revision 2", "{outcome:#}");
    assert_eq!(outcome_of(&outcome, "release/prod/acme-prod/web")["outcome"], "noop", "{outcome:#}");
    assert_eq!(server.get("v1", "ConfigMap", "acme-prod", "plain").unwrap()["metadata"]["resourceVersion"], before, "an object was written");

    // A release that left the repository: the plan file uninstalls it, as its tenant.
    let text = std::fs::read_to_string(repo.root.join("releases.kdl")).unwrap();
    std::fs::write(repo.root.join("releases.kdl"), &text[..text.find("release web").unwrap()]).unwrap();
    let (r, f) = (repo.clone(), file.clone());
    let plan = blocking(move || r.plan_out(&f, &[])).await.unwrap();
    let delete = plan["actions"].as_array().unwrap().iter().find(|a| a["unit"] == "release/prod/acme-prod/web").unwrap();
    assert_eq!(delete["apply"]["payload"]["kind"], "release-delete", "{plan:#}");
    let (r, f) = (repo.clone(), file.clone());
    let (code, outcome, text) = blocking(move || r.apply_file(&f, &[], &[])).await.unwrap();
    assert_eq!(code, 0, "{text}");
    assert_eq!(outcome_of(&outcome, "release/prod/acme-prod/web")["outcome"], "applied", "{outcome:#}");
    assert!(history_of(&server, "web").await.is_empty(), "web was not uninstalled");
    assert!(server.get("v1", "ConfigMap", "acme-prod", "web-info").is_none());
}

/// Acceptance (2): a concurrent change between plan and apply — a `helm upgrade` of one release
/// through Helm itself — refuses exactly that action as stale (naming the unit, the expected and
/// the found revision), applies the others and exits 2; with `--refuse-stale=all` nothing is
/// written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_moved_since_planning_is_refused_as_stale() {
    let Some(python) = harmony_testkit::helm_python() else { return };
    let server = Server::start().await.unwrap();
    let repo = std::sync::Arc::new(repo(&server));
    let r = repo.clone();
    blocking(move || r.apply()).await.unwrap();
    // Both releases change.
    let text = std::fs::read_to_string(repo.root.join("releases.kdl")).unwrap();
    std::fs::write(repo.root.join("releases.kdl"), text.replace("greeting hi", "greeting ciao").replace("\"hello\"", "\"bonjour\"")).unwrap();
    let file = repo.dir.path().join("p.json");
    let (r, f) = (repo.clone(), file.clone());
    blocking(move || r.plan_out(&f, &[])).await.unwrap();

    // Helm upgrades `plain` (same values: its objects stay as they are; revision 2 is Helm's).
    let helm = move |repo: std::sync::Arc<Repo>| {
        let out = std::process::Command::new(&python)
            .args(["-c", "import sys\nfrom helm_python import Config\nwith Config(kubeconfig_path=sys.argv[1], namespace='acme-prod') as cfg:\n    cfg.upgrade(sys.argv[2], 'plain', {'greeting': 'hi'}, namespace='acme-prod')\n"])
            .arg(&repo.kubeconfig)
            .arg(repo.root.join("charts/plain"))
            .output()
            .unwrap();
        assert!(out.status.success(), "helm upgrade failed: {}", String::from_utf8_lossy(&out.stderr));
    };
    let r = repo.clone();
    blocking(move || helm(r)).await.unwrap();
    assert_eq!(history_of(&server, "plain").await.len(), 2);

    // --refuse-stale=all: nothing is written.
    let (r, f) = (repo.clone(), file.clone());
    let (code, outcome, text) = blocking(move || r.apply_file(&f, &["--refuse-stale", "all"], &[])).await.unwrap();
    assert_eq!(code, 2, "{text}");
    assert_eq!(outcome_of(&outcome, "release/prod/acme-prod/plain")["outcome"], "stale", "{outcome:#}");
    assert_eq!(outcome_of(&outcome, "release/prod/acme-prod/web")["outcome"], "skipped", "{outcome:#}");
    assert_eq!(history_of(&server, "web").await.len(), 1, "--refuse-stale=all wrote web");

    // Per action: plain is refused, web is applied.
    let (r, f) = (repo.clone(), file.clone());
    let (code, outcome, text) = blocking(move || r.apply_file(&f, &[], &[])).await.unwrap();
    assert_eq!(code, 2, "{text}");
    let plain = outcome_of(&outcome, "release/prod/acme-prod/plain");
    assert_eq!(plain["outcome"], "stale", "{outcome:#}");
    assert!(plain["message"].as_str().unwrap().contains("release/prod/acme-prod/plain"), "{outcome:#}");
    assert_eq!((plain["expected"].as_str(), plain["found"].as_str()), (Some("revision 1"), Some("revision 2")), "{outcome:#}");
    assert_eq!(outcome_of(&outcome, "release/prod/acme-prod/web")["outcome"], "applied", "{outcome:#}");
    assert_eq!(history_of(&server, "web").await.len(), 2);
    assert_eq!(history_of(&server, "plain").await.len(), 2, "the stale release was written");
    assert_eq!(server.get("v1", "ConfigMap", "acme-prod", "plain").unwrap()["data"]["greeting"], "hi");

    // The human output names the unit, expected and found.
    let (r, f) = (repo.clone(), file.clone());
    let out = blocking(move || r.run(&["apply", "--yes", f.to_str().unwrap(), "--kubeconfig", r.kubeconfig()])).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("stale: release/prod/acme-prod/plain:") && stderr.contains("(expected revision 1, found revision 2)"), "{stderr}");
}

/// The repository on `server`, planned with `plan --out`: (repository, plan file, its text).
async fn saved_plan(server: &Server) -> (std::sync::Arc<Repo>, std::path::PathBuf, String) {
    let repo = std::sync::Arc::new(repo(server));
    let file = repo.dir.path().join("p.json");
    let (r, f) = (repo.clone(), file.clone());
    blocking(move || r.plan_out(&f, &[])).await.unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    (repo, file, text)
}

/// Acceptance (3): a plan file edited after planning — a value changed, with or without its
/// identity recomputed — or applied to a context that now leads to another API server is
/// refused before anything is written, exit 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_an_edited_plan_file_is_refused_before_any_write() {
    let server = Server::start().await.unwrap();
    let (repo, file, text) = saved_plan(&server).await;
    let mut plan = harmony_schemas::plan::PlanFile::from_json(&text).unwrap();
    for a in &mut plan.actions {
        if let Some(harmony_schemas::plan::Payload::Release(r)) = &mut a.apply.payload {
            r.values["greeting"] = "injected".into();
        }
    }
    let edited = repo.dir.path().join("edited.json");
    let rehashed = repo.dir.path().join("rehashed.json");
    std::fs::write(&edited, plan.to_json()).unwrap();
    plan.identity = harmony_planner::contract::identity(&plan);
    std::fs::write(&rehashed, plan.to_json()).unwrap();
    for (f, why) in [(edited, "does not match its content"), (rehashed, "seal does not verify")] {
        let r = repo.clone();
        let (code, outcome, text) = blocking(move || r.apply_file(&f, &[], &[])).await.unwrap();
        assert_eq!(code, 1, "{text}");
        assert!(outcome["refused"].as_str().unwrap().contains(why), "{outcome:#}");
        assert_eq!(outcome["actions"], serde_json::json!([]));
    }
    // A fleet change without a payload (sealed with the right key: what an agent upgrade to an
    // unpublished version plans): the whole plan is refused rather than half applied.
    let mut fleet = harmony_schemas::plan::PlanFile::from_json(&text).unwrap();
    let mut action = fleet.actions[0].clone();
    action.unit = "device-plan/pico/pi-001".into();
    action.apply.payload = None;
    fleet.actions.push(action);
    fleet.identity = harmony_planner::contract::identity(&fleet);
    harmony_planner::contract::seal(&mut fleet, &FingerprintKey::from_hex(KEY_HEX).unwrap());
    let with_fleet = repo.dir.path().join("fleet.json");
    std::fs::write(&with_fleet, fleet.to_json()).unwrap();
    let r = repo.clone();
    let (code, outcome, text) = blocking(move || r.apply_file(&with_fleet, &[], &[])).await.unwrap();
    assert_eq!(code, 1, "{text}");
    assert!(outcome["refused"].as_str().unwrap().contains("changes fleet units it holds nothing to write for (device-plan/pico/pi-001)"), "{outcome:#}");

    // Another cluster behind the same context name.
    let other = Server::start().await.unwrap();
    std::fs::write(&repo.kubeconfig, Server::kubeconfig(&[("prod", &other)])).unwrap();
    let (r, f) = (repo.clone(), file.clone());
    let (code, outcome, text) = blocking(move || r.apply_file(&f, &[], &[])).await.unwrap();
    assert_eq!(code, 1, "{text}");
    assert!(outcome["refused"].as_str().unwrap().contains("context prod leads to"), "{outcome:#}");
    assert!(history_of(&server, "web").await.is_empty() && history_of(&other, "web").await.is_empty(), "something was written");
    assert!(server.get("v1", "Namespace", "", "acme-prod").is_none() && other.get("v1", "Namespace", "", "acme-prod").is_none());
}

/// Acceptance (4): a `secret-value` changed between plan and apply refuses that release, naming
/// the key and never the value (not in stdout, stderr or the JSON outcome).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_a_secret_changed_since_planning_is_refused_without_showing_it() {
    let server = Server::start().await.unwrap();
    let repo = std::sync::Arc::new(repo(&server));
    only_web_with_secret_token(&repo, "PLAN_APPLY_TOKEN");
    let file = repo.dir.path().join("p.json");
    let (r, f) = (repo.clone(), file.clone());
    blocking(move || r.plan_out(&f, &[("PLAN_APPLY_TOKEN", "first-secret-token")])).await.unwrap();
    let (r, f) = (repo.clone(), file.clone());
    let (code, outcome, text) = blocking(move || r.apply_file(&f, &[], &[("PLAN_APPLY_TOKEN", "second-secret-token")])).await.unwrap();
    assert_eq!(code, 2, "{text}");
    let web = outcome_of(&outcome, "release/prod/acme-prod/web");
    assert_eq!(web["outcome"], "stale", "{outcome:#}");
    assert!(web["message"].as_str().unwrap().contains("secret-value token (env:PLAN_APPLY_TOKEN) changed since planning"), "{outcome:#}");
    assert!(!text.contains("first-secret-token") && !text.contains("second-secret-token"), "a secret leaked: {text}");
    assert!(history_of(&server, "web").await.is_empty());
    // Re-planned (the tenant's access was written meanwhile) and applied with the secret as
    // planned: written.
    let (r, f) = (repo.clone(), file.clone());
    blocking(move || r.plan_out(&f, &[("PLAN_APPLY_TOKEN", "first-secret-token")])).await.unwrap();
    let (r, f) = (repo.clone(), file.clone());
    let (code, _, text) = blocking(move || r.apply_file(&f, &[], &[("PLAN_APPLY_TOKEN", "first-secret-token")])).await.unwrap();
    assert_eq!(code, 0, "{text}");
    assert!(!text.contains("first-secret-token"), "a secret leaked: {text}");
    assert_eq!(history_of(&server, "web").await.len(), 1);
}

/// Acceptance (6): a failed `helm rollback`. Helm itself (helm-python-sdk, Helm v4) rolls `web`
/// back from revision 2 to 1 without `--force-conflicts`: its server-side apply conflicts with
/// the fields Harmony owns, and Helm records the rollback as Helm v4's `pkg/action/rollback.go`
/// (`performRollback`) does when the update fails — the deployed revision 2 superseded, the
/// rollback's revision 3 failed — so no revision is deployed. The plan shows that truthfully
/// (revision 4 over the history, never a fresh create or "unchanged"), apply recovers the release
/// (revision 4 deployed, as planned), and the next plan is empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_helm_rollback_is_planned_truthfully_and_recovered() {
    let Some(python) = harmony_testkit::helm_python() else { return };
    let server = Server::start().await.unwrap();
    let repo = std::sync::Arc::new(repo(&server));
    let r = repo.clone();
    blocking(move || r.apply()).await.unwrap();
    set_greeting(&repo, "bonjour");
    let r = repo.clone();
    let out = blocking(move || r.apply()).await.unwrap();
    assert!(out.contains("release/prod/acme-prod/web: upgraded, revision 2"), "{out}");

    let kubeconfig = repo.kubeconfig.clone();
    let out = blocking(move || {
        std::process::Command::new(&python)
            .args(["-c", "import sys\nfrom helm_python import Config\nwith Config(kubeconfig_path=sys.argv[1], namespace='acme-prod') as cfg:\n    cfg.rollback('web', version=1)\n"])
            .arg(&kubeconfig)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "helm rollback was expected to fail (conflicts with Harmony's fields): {stderr}");
    let statuses = |hist: Vec<release::Stored>| -> Vec<(u32, String)> { hist.iter().map(|s| (s.release.version, s.release.info.status.as_str().to_string())).collect() };
    let hist = records(&server).await;
    let failed = hist.last().unwrap().release.info.description.clone();
    assert_eq!(statuses(hist), vec![(1, "superseded".into()), (2, "superseded".into()), (3, "failed".into())], "{stderr}");
    assert!(failed.starts_with("Rollback \"web\" failed"), "{failed}");

    let r = repo.clone();
    let plan = blocking(move || r.plan(&[])).await.unwrap();
    let action = release_action(&plan);
    assert_eq!(action["apply"]["action"], "update", "{action:#}");
    assert_eq!(action["apply"]["release"]["revision"], 4, "{action:#}");
    assert_eq!(action["apply"]["release"]["is_upgrade"], false, "{action:#}");
    assert_eq!(action["apply"]["observed"]["revision"], 3, "{action:#}");
    assert!(action["explain"]["reason"].as_str().unwrap().starts_with("no revision is deployed (the latest, 3, did not deploy): apply installs revision 4 over the history"), "{action:#}");
    let planned = action["apply"]["release"]["manifest"].as_str().unwrap().to_string();
    let plain = plan["actions"].as_array().unwrap().iter().find(|a| a["unit"] == "release/prod/acme-prod/plain").unwrap();
    assert_eq!(plain["apply"]["action"], "noop", "{plan:#}");

    let r = repo.clone();
    let out = blocking(move || r.apply()).await.unwrap();
    assert!(out.contains("release/prod/acme-prod/web: installed, revision 4"), "{out}");
    let hist = records(&server).await;
    let latest = hist.last().unwrap().release.clone();
    assert_eq!(statuses(hist)[3], (4, "deployed".to_string()));
    assert_eq!(FingerprintKey::from_hex(KEY_HEX).unwrap().fingerprint(latest.manifest.as_bytes()), planned, "{}", latest.manifest);
    let info = server.get("v1", "ConfigMap", "acme-prod", "web-info").unwrap();
    assert_eq!((info["data"]["revision"].as_str(), info["data"]["greeting"].as_str()), (Some("4"), Some("bonjour")), "{info:#}");

    let r = repo.clone();
    let out = blocking(move || r.run(&["plan", "--detailed-exitcode", "--kubeconfig", r.kubeconfig()])).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
}

/// What a reviewer reads of a plan (the explanation: reasons and object diffs; the summary, the
/// filters, the source revision) is sealed with what apply writes: a plan file whose diff text,
/// reason, summary, filters or commit was edited after planning is refused before any write, so
/// `apply PLANFILE` never offers an edited explanation for confirmation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_an_edited_explanation_is_refused_before_any_write() {
    let server = Server::start().await.unwrap();
    let (repo, _, text) = saved_plan(&server).await;
    let original = harmony_schemas::plan::PlanFile::from_json(&text).unwrap();
    let edits: [(&str, fn(&mut harmony_schemas::plan::PlanFile)); 5] = [
        ("diff text", |p| {
            let web = p.actions.iter_mut().find(|a| a.unit == "release/prod/acme-prod/web").unwrap();
            let o = web.explain.objects.iter_mut().find(|o| o.key == "ConfigMap/acme-prod/web-info").unwrap();
            o.diff = o.diff.replace("hello", "harmless");
        }),
        ("reason", |p| p.actions[0].explain.reason = "nothing to see".into()),
        ("summary", |p| p.summary = Default::default()),
        ("filters", |p| p.filters.targets = vec!["release/prod/acme-prod/plain".into()]),
        ("source commit", |p| p.source.commit = Some("0123456789abcdef0123456789abcdef01234567".into())),
    ];
    for (what, edit) in edits {
        let mut plan = original.clone();
        edit(&mut plan);
        assert_ne!(plan, original, "{what}: nothing edited");
        let edited = repo.dir.path().join("edited.json");
        std::fs::write(&edited, plan.to_json()).unwrap();
        let r = repo.clone();
        let (code, outcome, text) = blocking(move || r.apply_file(&edited, &[], &[])).await.unwrap();
        assert_eq!(code, 1, "{what}: {text}");
        assert!(outcome["refused"].as_str().is_some_and(|r| r.contains("seal does not verify")), "{what}: {outcome:#}");
        assert_eq!(outcome["actions"], serde_json::json!([]), "{what}");
        assert!(history_of(&server, "web").await.is_empty() && server.get("v1", "Namespace", "", "acme-prod").is_none(), "{what}: something was written");
    }
}

/// A write the API server refuses with a message quoting a `secret-value` (a label holding it:
/// Kubernetes' label validation quotes the value, as kube-loopback's does) fails the release,
/// and the secret — verbatim or base64 — is in neither stdout, stderr nor the JSON outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_an_api_error_quoting_a_secret_is_scrubbed() {
    use base64::Engine as _;
    const SECRET: &str = "s3cret value!";
    let server = Server::start().await.unwrap();
    let repo = std::sync::Arc::new(repo(&server));
    repo.write(
        "charts/web/templates/labelled.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-labelled\n  labels:\n    token: {{ .Values.token | quote }}\ndata: {}\n",
    );
    only_web_with_secret_token(&repo, "PLAN_LABEL_TOKEN");
    let env = [("PLAN_LABEL_TOKEN", SECRET)];
    let file = repo.dir.path().join("p.json");
    let (r, f) = (repo.clone(), file.clone());
    blocking(move || r.plan_out(&f, &env)).await.unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(SECRET);
    let leaked = |s: &str| s.contains(SECRET) || s.contains(&b64);
    // JSON outcome (and stderr).
    let (r, f) = (repo.clone(), file.clone());
    let (code, outcome, text) = blocking(move || r.apply_file(&f, &[], &env)).await.unwrap();
    assert_eq!(code, 1, "{text}");
    let web = outcome_of(&outcome, "release/prod/acme-prod/web");
    assert_eq!(web["outcome"], "failed", "{outcome:#}");
    let message = web["message"].as_str().unwrap();
    assert!(message.contains("metadata.labels: Invalid value"), "the API server's refusal is reported: {message}");
    assert!(!leaked(&text), "a secret leaked: {text}");
    // Human output: re-planned (the tenant's access exists now), applied again.
    let (r, f) = (repo.clone(), file.clone());
    blocking(move || r.plan_out(&f, &env)).await.unwrap();
    let (r, f) = (repo.clone(), file.clone());
    let out = blocking(move || r.run_env(&["apply", "--yes", f.to_str().unwrap(), "--kubeconfig", r.kubeconfig()], &env)).await.unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("error: release/prod/acme-prod/web:") && stderr.contains("metadata.labels: Invalid value"), "{stderr}");
    assert!(!leaked(&stdout) && !leaked(&stderr), "a secret leaked: {stdout}{stderr}");
}

/// As [`attack_an_api_error_quoting_a_secret_is_scrubbed`], with the label holding what the
/// chart computed from the `secret-value` (`upper`, reversed): apply scrubbed only the value
/// itself and its base64 form, so the 422 printed the transformed secret. Apply now renders
/// with stand-ins too and scrubs every value that depends on a secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_an_api_error_quoting_a_transformed_secret_is_scrubbed() {
    use common::secrets::{CORPUS_SECRET, assert_no_leak, leak_needles};
    let server = Server::start().await.unwrap();
    let repo = std::sync::Arc::new(repo(&server));
    only_web_with_secret_token(&repo, "PLAN_LABEL_TOKEN");
    let env = [("PLAN_LABEL_TOKEN", CORPUS_SECRET)];
    let needles = leak_needles(CORPUS_SECRET);
    for transform in ["upper", "splitList \"\" | reverse | join \"\"", "printf \"%s-%s\" \"x\" | lower"] {
        repo.write(
            "charts/web/templates/labelled.yaml",
            &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{{{ .Release.Name }}}}-labelled\n  labels:\n    token: {{{{ .Values.token | {transform} | quote }}}}\ndata: {{}}\n"),
        );
        let file = repo.dir.path().join("p.json");
        let (r, f) = (repo.clone(), file.clone());
        blocking(move || r.plan_out(&f, &env)).await.unwrap();
        let (r, f) = (repo.clone(), file.clone());
        let (code, outcome, text) = blocking(move || r.apply_file(&f, &[], &env)).await.unwrap();
        assert_eq!(code, 1, "{text}");
        let message = outcome_of(&outcome, "release/prod/acme-prod/web")["message"].as_str().unwrap().to_string();
        assert!(message.contains("metadata.labels: Invalid value: \"(redacted)\""), "{transform}: the refusal is reported, its value redacted: {message}");
        assert_no_leak(&format!("apply output ({transform})"), &text, &needles);
    }
}

/// Issue 23's corpus applied: the chart passing a `secret-value` through 50 functions
/// (`tests/common/secrets.rs`) is planned and applied on the loopback API server; no output of
/// `plan`, `apply` (human and JSON) or the next `plan` (the corpus observed on the cluster
/// now) holds the secret, a reversible transform of it or 8 characters of one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_secret_corpus_leaks_in_no_apply_output() {
    use common::secrets::{CORPUS_SECRET, assert_no_leak, corpus_template, leak_needles};
    let server = Server::start().await.unwrap();
    let repo = std::sync::Arc::new(repo(&server));
    only_web_with_secret_token(&repo, "CORPUS_TOKEN");
    repo.write("charts/web/templates/corpus.yaml", &corpus_template(".Values.token"));
    let env = [("CORPUS_TOKEN", CORPUS_SECRET)];
    let needles = leak_needles(CORPUS_SECRET);
    let file = repo.dir.path().join("p.json");
    let (r, f) = (repo.clone(), file.clone());
    let plan = blocking(move || r.plan_out(&f, &env)).await.unwrap();
    assert_no_leak("plan --format json", &plan.to_string(), &needles);
    assert_no_leak("plan file", &std::fs::read_to_string(&file).unwrap(), &needles);
    let (r, f) = (repo.clone(), file.clone());
    let (code, outcome, text) = blocking(move || r.apply_file(&f, &[], &env)).await.unwrap();
    assert_eq!(code, 0, "{text}");
    assert_eq!(outcome_of(&outcome, "release/prod/acme-prod/web")["outcome"], "applied", "{outcome:#}");
    assert_no_leak("apply --format json", &text, &needles);
    // Written as rendered: the secret is on the cluster, in the objects the chart made.
    let cm = server.get("v1", "ConfigMap", "acme-prod", "corpus").expect("the corpus ConfigMap is written");
    assert_eq!(cm["data"]["upper"], CORPUS_SECRET.to_uppercase());
    // The next plans see the corpus on the cluster, and an apply that changes nothing.
    for format in ["human", "markdown", "json"] {
        let r = repo.clone();
        let out = blocking(move || r.run_env(&["plan", "--skip-fleets", "--format", format, "--kubeconfig", r.kubeconfig()], &[("CORPUS_TOKEN", CORPUS_SECRET)])).await.unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        assert_no_leak(&format!("plan --format {format} (observed)"), &text, &needles);
    }
    let r = repo.clone();
    let out = blocking(move || r.run_env(&["apply", "--yes", "--skip-fleets", "--kubeconfig", r.kubeconfig()], &[("CORPUS_TOKEN", CORPUS_SECRET)])).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert_no_leak("apply (human)", &text, &needles);
}
