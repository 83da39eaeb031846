//! `harmony plan` against live targets, and pruning: the example repository (`tenants/`) on two
//! loopback API servers (okd-prod, okd-staging) and a real nats-server for its fleet.
//!
//! plan (everything a create) → apply → plan (nothing to do, exit 0) → edit the repository
//! (a release value changes; tenant globex, with its releases, and device pi-103 leave) → plan
//! shows exactly those updates and deletes → apply uninstalls and removes them, keeping what
//! Harmony did not install → plan (nothing to do).

mod common;

use std::path::Path;
use std::process::Output;

use harmony_executor::kube::Cluster;
use harmony_executor::kube::release::{self, Desired, Options};
use harmony_kube_loopback::Server;
use harmony_schemas::fleet::{encode_key, generate_signing_key};
use harmony_testkit::NatsServer;
use serde_json::Value;

struct Env {
    repo: std::path::PathBuf,
    kubeconfig: String,
    nats: String,
    key: String,
    state: String,
}

impl Env {
    fn run(&self, args: &[&str]) -> Output {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_harmony"));
        c.arg("--repo").arg(&self.repo).args(args).stdin(std::process::Stdio::null());
        c.env("NO_COLOR", "1").env("ACME_SHOP_DB_PASSWORD", "live-plan-pw").env("HARMONY_NATS_URL", &self.nats);
        c.env("HARMONY_FINGERPRINT_KEY_FILE", self.repo.parent().unwrap().join("fp.key"));
        c.output().unwrap()
    }

    fn plan(&self, extra: &[&str]) -> (Option<i32>, String, String) {
        let mut args = vec!["plan", "--detailed-exitcode", "--compact", "--kubeconfig", &self.kubeconfig];
        args.extend_from_slice(extra);
        let out = self.run(&args);
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    fn apply(&self) -> String {
        let out = self.run(&["apply", "--yes", "--kubeconfig", &self.kubeconfig, "--signing-key-file", &self.key, "--state-dir", &self.state]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        stdout
    }

    /// The plan's actions (JSON format) as (unit, action).
    fn actions(&self) -> Vec<(String, String)> {
        let out = self.run(&["plan", "--format", "json", "--kubeconfig", &self.kubeconfig]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["actions"].as_array().unwrap().iter().map(|a| (a["unit"].as_str().unwrap().to_string(), a["apply"]["action"].as_str().unwrap().to_string())).collect()
    }
}

fn changes(actions: &[(String, String)]) -> Vec<(String, String)> {
    actions.iter().filter(|(_, a)| a != "noop").cloned().collect()
}

/// The example repository in `dir`, for two loopback clusters and a nats-server, with a fresh
/// fleet signing key.
fn setup(dir: &Path, prod: &Server, staging: &Server, nats: &NatsServer) -> Env {
    let repo = dir.join("tenants");
    common::copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tenants"), &repo);
    std::fs::write(dir.join("fp.key"), "ab".repeat(32)).unwrap();
    let key = generate_signing_key().unwrap();
    std::fs::write(repo.join("fleets/keys/pico.pub"), format!("{}\n", encode_key(key.verifying_key().as_bytes()))).unwrap();
    std::fs::write(dir.join("pico.key"), encode_key(key.as_bytes())).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, Server::kubeconfig(&[("okd-prod", prod), ("okd-staging-admin", staging)])).unwrap();
    Env {
        repo,
        kubeconfig: kubeconfig.to_string_lossy().into_owned(),
        nats: nats.url(),
        key: dir.join("pico.key").to_string_lossy().into_owned(),
        state: dir.join("state").to_string_lossy().into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_reads_live_state_and_apply_prunes() {
    let (prod, staging) = (Server::start().await.unwrap(), Server::start().await.unwrap());
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let env = setup(dir.path(), &prod, &staging, &nats);
    let (repo, kubeconfig) = (env.repo.clone(), std::path::PathBuf::from(&env.kubeconfig));
    let env = std::sync::Arc::new(env);
    let blocking = |f: fn(&Env) -> (Option<i32>, String, String)| {
        let env = env.clone();
        tokio::task::spawn_blocking(move || f(&env))
    };

    // Nothing applied yet: every unit is a create, and the header says what was read.
    let (code, stdout, stderr) = blocking(|e| e.plan(&[])).await.unwrap();
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(stdout.contains("against live state of cluster okd-prod, cluster okd-staging, fleet pico"), "{stdout}");
    let e = env.clone();
    let first = tokio::task::spawn_blocking(move || e.actions()).await.unwrap();
    assert!(first.iter().all(|(_, a)| a == "create"), "{first:?}");
    assert!(first.iter().any(|(u, _)| u == "release/okd-staging/acme-staging/shop-web-staging"));

    // A release that something else installed in a tenant's namespace (its record carries no
    // Harmony unit): never pruned, never planned.
    let admin = Cluster::from_kubeconfig(Some(&kubeconfig), "okd-prod").await.unwrap();

    let e = env.clone();
    let stdout = tokio::task::spawn_blocking(move || e.apply()).await.unwrap();
    assert!(stdout.contains("release/okd-prod/globex/portal: installed, revision 1"), "{stdout}");
    let foreign = Desired {
        name: "by-hand".into(),
        namespace: "globex".into(),
        chart: serde_json::json!({"metadata": {"name": "by-hand", "version": "0.1.0", "apiVersion": "v2"}}),
        config: serde_json::Map::new(),
        manifests: vec![("by-hand/templates/cm.yaml".into(), "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: by-hand\ndata:\n  a: b\n".into())],
        hooks: vec![],
        notes: String::new(),
        unit_hash: None,
        unit_id: None,
        planned: None,
    };
    release::install_or_upgrade(&admin, &foreign, &Options::default(), jiff::Timestamp::now).await.unwrap();

    // Applied: nothing to do, exit 0.
    let (code, stdout, stderr) = blocking(|e| e.plan(&[])).await.unwrap();
    assert_eq!(code, Some(0), "{stdout}{stderr}");

    // Edit: shop-web's replicas change; globex (tenant and releases) and pi-103 leave.
    let acme = std::fs::read_to_string(repo.join("releases/acme.kdl")).unwrap();
    std::fs::write(repo.join("releases/acme.kdl"), acme.replacen("replicaCount 3", "replicaCount 5", 1)).unwrap();
    std::fs::remove_file(repo.join("releases/globex.kdl")).unwrap();
    std::fs::remove_file(repo.join("tenants/globex.kdl")).unwrap();
    let fleets = std::fs::read_to_string(repo.join("fleets/pico.kdl")).unwrap();
    // The fleet no longer admits globex, nor grants it a host path.
    let fleets: String = fleets.replace("tenants acme globex", "tenants acme").lines().filter(|l| !l.contains("tenant=globex")).map(|l| format!("{l}\n")).collect();
    std::fs::write(repo.join("fleets/pico.kdl"), fleets).unwrap();
    for f in ["deployments/sensor-hub.kdl", "deployments/telemetry.kdl"] {
        let text = std::fs::read_to_string(repo.join(f)).unwrap();
        if text.contains("tenant globex") {
            std::fs::remove_file(repo.join(f)).unwrap();
        }
    }
    let toronto = std::fs::read_to_string(repo.join("devices/toronto.kdl")).unwrap();
    let cut = toronto.find("device pi-103").unwrap();
    std::fs::write(repo.join("devices/toronto.kdl"), &toronto[..cut]).unwrap();

    let (code, stdout, stderr) = blocking(|e| e.plan(&[])).await.unwrap();
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    let e = env.clone();
    let planned = changes(&tokio::task::spawn_blocking(move || e.actions()).await.unwrap());
    let has = |unit: &str, action: &str| planned.iter().any(|(u, a)| u == unit && a == action);
    assert!(has("release/okd-prod/acme-prod/shop-web", "update"), "{planned:?}");
    assert!(has("release/okd-prod/globex/portal", "delete") && has("release/okd-prod/globex-portal/portal-api", "delete"), "{planned:?}");
    assert!(has("tenant-access/globex/okd-prod", "delete"), "{planned:?}");
    assert!(has("device-plan/pico/pi-103", "delete"), "{planned:?}");
    assert!(!planned.iter().any(|(u, _)| u.contains("by-hand")), "a release Harmony did not install is not pruned: {planned:?}");
    // The update's diff is the live manifest's: replicas 3 → 5, nothing else of shop-web.
    let (_, full, _) = blocking(|e| {
        let out = e.run(&["plan", "--kubeconfig", &e.kubeconfig, "--target", "release/okd-prod/acme-prod/shop-web"]);
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    })
    .await
    .unwrap();
    assert!(full.contains("-  replicas: 3") && full.contains("+  replicas: 5"), "{full}");
    assert!(!full.contains("live-plan-pw"), "secrets never show");

    let e = env.clone();
    let stdout = tokio::task::spawn_blocking(move || e.apply()).await.unwrap();
    assert!(stdout.contains("release/okd-prod/globex/portal: uninstalled (left the repository; was revision 1)"), "{stdout}");
    assert!(stdout.contains("tenant-access/globex/okd-prod: removed"), "{stdout}");
    assert!(stdout.contains("release/okd-prod/acme-prod/shop-web: upgraded, revision 2"), "{stdout}");
    assert!(prod.get("v1", "Secret", "globex", "sh.helm.release.v1.portal.v1").is_none());
    assert!(prod.get("apps/v1", "Deployment", "globex", "portal").is_none(), "the release's objects are gone");
    assert!(prod.get("rbac.authorization.k8s.io/v1", "RoleBinding", "globex", "harmony-tenant-globex").is_none());
    assert!(prod.get("v1", "ServiceAccount", "globex", "globex-deployer").is_none());
    let ns = prod.get("v1", "Namespace", "", "globex").expect("namespaces are kept");
    assert!(ns["metadata"]["labels"].get("harmony.dev/tenant").is_none(), "{ns}");
    assert!(prod.get("v1", "Secret", "globex", "sh.helm.release.v1.by-hand.v1").is_some(), "not Harmony's: kept");
    assert!(prod.get("v1", "ConfigMap", "globex", "by-hand").is_some());

    let (code, stdout, stderr) = blocking(|e| e.plan(&[])).await.unwrap();
    assert_eq!(code, Some(0), "converged: {stdout}{stderr}");
    let e = env.clone();
    let stdout = tokio::task::spawn_blocking(move || e.apply()).await.unwrap();
    assert!(!stdout.contains("uninstalled") && !stdout.contains("removed"), "pruning is idempotent: {stdout}");
}

#[test]
fn an_unreachable_target_fails_the_plan_naming_it_and_offline_plans_without() {
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(dir.path().join("fp.key"), "ab".repeat(32)).unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: okd-prod\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{closed}\ncontexts:\n- name: okd-prod\n  context:\n    cluster: c\n    user: u\n- name: okd-staging-admin\n  context:\n    cluster: c\n    user: u\nusers:\n- name: u\n  user: {{}}\n"
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_harmony"))
            .args(["--repo", concat!(env!("CARGO_MANIFEST_DIR"), "/tenants")])
            .args(args)
            .env("HARMONY_FINGERPRINT_KEY_FILE", dir.path().join("fp.key"))
            .output()
            .unwrap()
    };
    let out = run(&["plan", "--kubeconfig", kubeconfig.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cluster okd-prod (context okd-prod): cannot reach the API server") && err.contains("harmony plan --offline"), "{err}");
    let out = run(&["plan", "--offline", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--offline: every unit is planned as a create"));
}

/// Acceptance (1) and (2) for fleets: `plan --out` then `apply PLANFILE` writes exactly the
/// planned device plans (the KV values decode to the plan's payloads, signed at apply); a KV
/// write to one device's entry between plan and apply refuses that device as stale (naming it,
/// the expected and the found revision), the others are written, exit 2; with
/// `--refuse-stale=all` nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_planfile_writes_the_planned_device_plans_and_refuses_a_moved_entry() {
    let (prod, staging) = (Server::start().await.unwrap(), Server::start().await.unwrap());
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let env = std::sync::Arc::new(setup(dir.path(), &prod, &staging, &nats));
    let e = env.clone();
    tokio::task::spawn_blocking(move || e.apply()).await.unwrap();

    // The telemetry deployment (no rollout) changes: every device running it gets a new plan.
    let path = env.repo.join("deployments/telemetry.kdl");
    std::fs::write(&path, std::fs::read_to_string(&path).unwrap().replace("--interval=30s", "--interval=60s")).unwrap();
    let file = dir.path().join("p.json");
    let (e, f) = (env.clone(), file.clone());
    let out = tokio::task::spawn_blocking(move || e.run(&["plan", "--out", f.to_str().unwrap(), "--format", "json", "--kubeconfig", &e.kubeconfig])).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let planned: Vec<(String, Value, u64)> = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["apply"]["payload"]["kind"] == "device-plan")
        .map(|a| (a["apply"]["payload"]["target"]["device"].as_str().unwrap().to_string(), a["apply"]["payload"]["plan"].clone(), a["apply"]["observed"]["revision"].as_u64().unwrap()))
        .collect();
    assert!(planned.len() >= 2, "{plan:#}");
    assert!(plan["actions"].as_array().unwrap().iter().filter(|a| a["apply"]["action"] != "noop").all(|a| a["unit"].as_str().unwrap().starts_with("device-plan/")), "{plan:#}");

    // Someone writes one device's entry between plan and apply.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let store = async_nats::jetstream::new(client).get_key_value("harmony-plans").await.unwrap();
    let moved = planned[0].0.clone();
    let entry = store.entry(moved.as_str()).await.unwrap().unwrap();
    let found = store.put(moved.as_str(), entry.value.clone()).await.unwrap();
    let revisions = |store: async_nats::jetstream::kv::Store, devices: Vec<String>| async move {
        let mut out = Vec::new();
        for d in devices {
            out.push(store.entry(d.as_str()).await.unwrap().unwrap().revision);
        }
        out
    };
    let devices: Vec<String> = planned.iter().map(|(d, _, _)| d.clone()).collect();
    let before = revisions(store.clone(), devices.clone()).await;

    let apply = |extra: &'static [&'static str]| {
        let (e, f) = (env.clone(), file.clone());
        tokio::task::spawn_blocking(move || {
            let mut args = vec!["apply", "--yes", f.to_str().unwrap(), "--format", "json", "--kubeconfig", &e.kubeconfig, "--signing-key-file", &e.key, "--state-dir", &e.state];
            args.extend_from_slice(extra);
            let out = e.run(&args);
            let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
            (out.status.code(), common::apply_outcome(&out.stdout), text)
        })
    };
    let unit = |outcome: &Value, device: &str| outcome["actions"].as_array().unwrap().iter().find(|a| a["unit"] == format!("device-plan/pico/{device}")).unwrap().clone();

    let (code, outcome, text) = apply(&["--refuse-stale", "all"]).await.unwrap();
    assert_eq!(code, Some(2), "{text}");
    assert_eq!(unit(&outcome, &moved)["outcome"], "stale", "{outcome:#}");
    assert_eq!(revisions(store.clone(), devices.clone()).await, before, "--refuse-stale=all wrote");

    let (code, outcome, text) = apply(&[]).await.unwrap();
    assert_eq!(code, Some(2), "{text}");
    let stale = unit(&outcome, &moved);
    assert_eq!(stale["outcome"], "stale", "{outcome:#}");
    assert_eq!(stale["expected"], format!("KV revision {}", planned[0].2), "{outcome:#}");
    assert_eq!(stale["found"], format!("KV revision {found}"), "{outcome:#}");
    let key = harmony_schemas::fleet::parse_public_key(std::fs::read_to_string(env.repo.join("fleets/keys/pico.pub")).unwrap().trim()).unwrap();
    for (device, payload, _) in &planned[1..] {
        assert_eq!(unit(&outcome, device)["outcome"], "applied", "{outcome:#}");
        let entry = store.entry(device.as_str()).await.unwrap().unwrap();
        let written = harmony_schemas::fleet::SignedDevicePlan::from_slice(&entry.value).unwrap().verify(&[key]).unwrap();
        assert_eq!(&serde_json::to_value(&written).unwrap(), payload, "{device}: the KV value is not the planned plan");
    }
    assert_eq!(store.entry(moved.as_str()).await.unwrap().unwrap().revision, found, "the moved entry was overwritten");
}

/// Issue 22: a fleet declaring `replicas 3` whose buckets exist with one replica (made by an
/// apply before the declaration) gets one warning per bucket from `harmony plan`, naming both
/// configurations and the migration; the plan itself is unaffected and nothing is changed.
#[test]
fn plan_warns_about_buckets_whose_replicas_differ_from_the_fleets() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let key = generate_signing_key().unwrap();
    std::fs::write(repo.join("pico.pub"), encode_key(key.verifying_key().as_bytes())).unwrap();
    std::fs::write(dir.path().join("pico.key"), encode_key(key.as_bytes())).unwrap();
    let fleet = |extra: &str| {
        format!(
            "fleet pico {{\n    nats \"nats://127.0.0.1:1\"\n    agent-version \"0.1.0\"\n    signing-key \"pico.pub\"\n    tenants acme\n{extra}}}\ntenant acme {{\n    namespaces acme\n}}\ndevice d1 {{\n    fleet pico\n    labels site=a\n}}\ndeployment web {{\n    tenant acme\n    fleet pico\n    selector site=a\n    container app {{\n        image \"localhost/app:1\"\n    }}\n}}\n"
        )
    };
    std::fs::write(repo.join("fleet.kdl"), fleet("")).unwrap();
    std::fs::write(dir.path().join("fp.key"), "ab".repeat(32)).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_harmony"))
            .arg("--repo")
            .arg(&repo)
            .args(args)
            .env("NO_COLOR", "1")
            .env("HARMONY_NATS_URL", nats.url())
            .env("HARMONY_STATE_DIR", dir.path().join("state"))
            .env("HARMONY_FINGERPRINT_KEY_FILE", dir.path().join("fp.key"))
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let key_file = dir.path().join("pico.key").to_string_lossy().into_owned();
    let (code, out, err) = run(&["apply", "--yes", "--signing-key-file", &key_file]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, err) = run(&["plan", "--detailed-exitcode"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(!err.contains("declares replicas"), "no drift while the fleet declares none: {err}");

    std::fs::write(repo.join("fleet.kdl"), fleet("    replicas 3\n")).unwrap();
    let (code, out, err) = run(&["plan", "--detailed-exitcode"]);
    assert_eq!(code, Some(0), "the declaration changes no device plan: {out}{err}");
    // (The apply made no rollout, so no rollouts bucket, and published no agent.)
    for stream in ["KV_harmony-plans", "KV_harmony-status", "KV_harmony-heartbeats", "KV_harmony-locks"] {
        let line = format!(
            "warning: fleet pico: stream {stream} has replicas 1, no placement, the fleet declares replicas 3, no placement: Harmony does not move a live bucket; migrate it with `nats stream edit {stream} --replicas 3` (docs/fleet.md, \"Bucket replicas and placement\")"
        );
        assert!(err.lines().any(|l| l == line), "expected\n{line}\nin\n{err}");
    }
    assert_eq!(err.matches("declares replicas 3").count(), 4, "one warning per bucket: {err}");
}
