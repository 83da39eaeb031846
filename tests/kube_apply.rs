//! Applying the example repository's Kubernetes units (`tenants/`): cluster `okd-prod` is the
//! loopback API server, cluster `okd-staging` is unreachable. The reachable cluster converges,
//! the unreachable one fails its own units with a clear error, a second apply changes nothing,
//! and a missing secret fails only the releases that need it.

use std::collections::BTreeSet;
use std::path::Path;

use harmony_executor::kube::apply::{ApplyOptions, UnitResult, apply_repo};
use harmony_executor::kube::release::Options;
use harmony_kube_loopback::Server;

mod common;
use common::copy_dir;

/// Tests that set `ACME_SHOP_DB_PASSWORD` in this process hold this for their whole run.
static ENV: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn compiled() -> harmony_compiler::CompiledRepo {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tenants");
    harmony_compiler::compile_repo(&harmony_compiler::DiskFs::new(&root)).unwrap().repo.expect("tenants/ compiles")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_one_unreachable() {
    let _env = ENV.lock().await;
    let server = Server::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let text = Server::kubeconfig(&[("okd-prod", &server)]);
    // okd-staging-admin points at a port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut kc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let clusters = kc["clusters"].as_sequence_mut().unwrap();
    let mut staging = clusters[0].clone();
    staging["name"] = "staging".into();
    staging["cluster"]["server"] = format!("http://127.0.0.1:{closed}").into();
    clusters.push(staging);
    let mut ctx = kc["contexts"][0].clone();
    ctx["name"] = "okd-staging-admin".into();
    ctx["context"]["cluster"] = "staging".into();
    kc["contexts"].as_sequence_mut().unwrap().push(ctx);
    std::fs::write(&kubeconfig, serde_yaml_ng::to_string(&kc).unwrap()).unwrap();

    let repo = compiled();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tenants");
    let opts = ApplyOptions {
        kubeconfig: Some(kubeconfig.clone()),
        release: Options { poll: std::time::Duration::from_millis(20), ..Options::default() },
        fail_fast: false,
        holder: "test@host pid 1".into(),
        lock_ttl: 60,
        only: BTreeSet::new(),
    };
    // Without the database password the two releases that need it fail; shop-web needs shop-api.
    // SAFETY: ENV serialises the tests that touch the environment; the apply runs after.
    unsafe { std::env::remove_var("ACME_SHOP_DB_PASSWORD") };
    let out = apply_repo(&repo, &root, &opts).await;
    let by_unit = |unit: &str| out.iter().find(|o| o.unit == unit).unwrap_or_else(|| panic!("{unit} in {out:#?}")).result.clone();
    assert!(
        matches!(by_unit("release/okd-prod/acme-prod/shop-db"), UnitResult::Failed(m) if m.contains("secret-value auth.password: environment variable ACME_SHOP_DB_PASSWORD is not set"))
    );
    assert_eq!(by_unit("release/okd-prod/acme-prod/shop-web"), UnitResult::Skipped("needs release shop-api, which failed".into()));
    assert!(matches!(by_unit("release/okd-prod/globex-portal/portal-api"), UnitResult::Done(m) if m == "installed, revision 1"), "{out:#?}");

    // With it, everything on okd-prod converges; okd-staging fails, naming the cluster.
    unsafe { std::env::set_var("ACME_SHOP_DB_PASSWORD", "s3cret-pw") };
    let out = apply_repo(&repo, &root, &opts).await;
    for o in &out {
        match (o.cluster.as_str(), &o.result) {
            ("okd-prod", UnitResult::Done(_)) => {}
            ("okd-staging", UnitResult::Failed(m)) => {
                let want = format!("cluster okd-staging (context okd-staging-admin): cannot reach the API server at http://127.0.0.1:{closed}/: ");
                assert!(m.starts_with(&want) && m.contains("Connection refused"), "{m}");
            }
            other => panic!("{}: {other:?}", o.unit),
        }
    }
    assert!(out.iter().any(|o| o.cluster == "okd-staging"));
    assert!(server.get("v1", "Secret", "acme-prod", "sh.helm.release.v1.shop-db.v1").is_some());
    assert!(server.get("apps/v1", "Deployment", "acme-prod", "shop-web").is_some());
    assert!(server.get("rbac.authorization.k8s.io/v1", "RoleBinding", "globex", "harmony-tenant-globex").is_some());
    assert!(server.get("coordination.k8s.io/v1", "Lease", "kube-system", "harmony-apply").is_none(), "lock released");

    // Again: nothing is written on okd-prod.
    let writes = server.writes();
    let out = apply_repo(&repo, &root, &opts).await;
    assert_eq!(server.writes(), writes + 2, "only the lock is taken and released");
    for o in out.iter().filter(|o| o.unit.starts_with("release/okd-prod/")) {
        assert!(matches!(&o.result, UnitResult::Done(m) if m.starts_with("unchanged")), "{}: {:?}", o.unit, o.result);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harmony_apply_skip_fleets_end_to_end() {
    let (server, staging) = (Server::start().await.unwrap(), Server::start().await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, Server::kubeconfig(&[("okd-prod", &server), ("okd-staging-admin", &staging)])).unwrap();
    let run = |extra: &'static [&'static str]| {
        let kubeconfig = kubeconfig.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_harmony"))
                .args(["--repo", concat!(env!("CARGO_MANIFEST_DIR"), "/tenants"), "apply", "--skip-fleets", "--kubeconfig"])
                .arg(&kubeconfig)
                .args(extra)
                .env("ACME_SHOP_DB_PASSWORD", "e2e-password")
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap()
        })
    };
    // Off a terminal, nothing is applied without --yes.
    let out = run(&[]).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not applying without --yes"));
    assert!(server.get("v1", "Namespace", "", "acme-prod").is_none());

    let out = run(&["--yes"]).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("release/okd-prod/acme-prod/shop-web: installed, revision 1\n"), "{stdout}");
    assert!(!stdout.contains("e2e-password") && !String::from_utf8_lossy(&out.stderr).contains("e2e-password"), "the secret never shows");
    let out = run(&["--yes"]).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("release/okd-prod/acme-prod/shop-web: unchanged (revision 1)\n"), "{stdout}");
    assert!(!stdout.contains("installed") && !stdout.contains("upgraded"), "{stdout}");
}

/// Applies interrupted at 20 points (every write after the n-th fails, as when the network or
/// the applier goes away), each followed by a clean re-run: the re-run converges every time,
/// no revision is left pending, and exactly one revision of each release is deployed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_applies_converge_when_re_run() {
    let _env = ENV.lock().await;
    use harmony_executor::kube::Cluster;
    use harmony_executor::kube::record::Status;
    let server = Server::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, Server::kubeconfig(&[("okd-prod", &server)])).unwrap();
    let repo = compiled();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tenants");
    let opts = ApplyOptions {
        kubeconfig: Some(kubeconfig.clone()),
        release: Options { poll: std::time::Duration::from_millis(10), ..Options::default() },
        fail_fast: false,
        // The re-run is by the same operator; a different one would wait for the lease's TTL.
        holder: "ops@host".into(),
        lock_ttl: 60,
        only: repo
            .units
            .keys()
            .filter(|id| id.as_str().contains("/okd-prod/") || id.as_str().ends_with("/okd-prod"))
            .map(|id| id.as_str().to_string())
            .collect(),
    };
    let admin = Cluster::from_kubeconfig(Some(&kubeconfig), "okd-prod").await.unwrap();
    let mut seed: u64 = 0x5eed;
    let mut interrupted = 0;
    for round in 0..20 {
        // Each round changes the database password, so shop-db and shop-api are upgraded.
        // SAFETY: ENV serialises the tests that touch the environment; no apply is running.
        unsafe { std::env::set_var("ACME_SHOP_DB_PASSWORD", format!("pw-{round}")) };
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        server.fail_writes_after(Some((seed >> 33) % 12));
        let first = apply_repo(&repo, &root, &opts).await;
        if first.iter().any(|o| !matches!(o.result, UnitResult::Done(_))) {
            interrupted += 1;
        }
        server.fail_writes_after(None);
        let again = apply_repo(&repo, &root, &opts).await;
        for o in &again {
            assert!(matches!(o.result, UnitResult::Done(_)), "round {round}: {}: {:?}", o.unit, o.result);
        }
        for (ns, name) in [("acme-prod", "shop-db"), ("acme-prod", "shop-api"), ("acme-prod", "shop-web"), ("globex", "portal")] {
            let hist = harmony_executor::kube::release::history(&admin, ns, name).await.unwrap();
            assert!(hist.iter().all(|s| !s.release.info.status.is_pending()), "round {round}: {name} left pending");
            let deployed: Vec<_> = hist.iter().filter(|s| s.release.info.status == Status::Deployed).collect();
            assert_eq!(deployed.len(), 1, "round {round}: {name}: {:?}", hist.iter().map(|s| (s.release.version, s.release.info.status)).collect::<Vec<_>>());
            if name == "shop-db" {
                assert_eq!(deployed[0].release.config["auth"]["password"], format!("pw-{round}"), "round {round}: the latest values are deployed");
            }
        }
    }
    assert!(interrupted >= 15, "the faults interrupted {interrupted} of 20 applies");
}

/// Issue 20, item 15: a tenant's chart renders its Secret without `metadata.name`; the apply
/// fails, and its error (shown to the operator, logged, kept in Helm's release description)
/// printed the whole object, `data` included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_an_error_about_an_unnamed_secret_prints_its_data() {
    use base64::Engine as _;
    let _env = ENV.lock().await;
    let server = Server::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, Server::kubeconfig(&[("okd-prod", &server)])).unwrap();
    let root = dir.path().join("tenants");
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tenants"), &root);
    let secret = root.join("charts/postgres/templates/secret.yaml");
    let text = std::fs::read_to_string(&secret).unwrap();
    std::fs::write(&secret, text.replacen("  name: {{ include \"postgres.fullname\" . }}\n", "", 1)).unwrap();
    let repo = harmony_compiler::compile_repo(&harmony_compiler::DiskFs::new(&root)).unwrap().repo.expect("compiles");
    let opts = ApplyOptions {
        kubeconfig: Some(kubeconfig),
        release: Options { poll: std::time::Duration::from_millis(20), ..Options::default() },
        fail_fast: false,
        holder: "test@host pid 1".into(),
        lock_ttl: 60,
        only: ["tenant-access/acme/okd-prod".to_string(), "release/okd-prod/acme-prod/shop-db".to_string()].into(),
    };
    let password = "Attack-visible-pw-42";
    // SAFETY: ENV serialises the tests that touch the environment; the apply runs after.
    unsafe { std::env::set_var("ACME_SHOP_DB_PASSWORD", password) };
    let out = apply_repo(&repo, &root, &opts).await;
    let UnitResult::Failed(m) = &out.iter().find(|o| o.unit == "release/okd-prod/acme-prod/shop-db").expect("shop-db applied").result else {
        panic!("shop-db should fail: {out:#?}");
    };
    let b64 = base64::engine::general_purpose::STANDARD.encode(password);
    assert!(!m.contains(password) && !m.contains(&b64), "the error shows the secret: {m}");
    // It still says what is wrong with which object.
    assert!(m.contains("manifest without `metadata.name`: a Secret (v1) with fields"), "{m}");
}

/// Issue 20, item 15: `harmony apply` renders the chart with the resolved secrets; a template
/// that fails with a message computed from one (`upper`) printed it, only the verbatim value
/// being scrubbed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_an_apply_render_error_prints_a_transformed_secret() {
    let _env = ENV.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tenants");
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tenants"), &root);
    std::fs::write(
        root.join("charts/postgres/templates/attack.yaml"),
        "{{ fail (printf \"bad password %s for user %s\" (upper .Values.auth.password) .Values.auth.username) }}\n",
    )
    .unwrap();
    let repo = harmony_compiler::compile_repo(&harmony_compiler::DiskFs::new(&root)).unwrap().repo.expect("compiles");
    let harmony_compiler::compile::UnitContent::Release(unit) = &repo.units.values().find(|u| u.id.as_str() == "release/okd-prod/acme-prod/shop-db").unwrap().content
    else {
        panic!("shop-db is a release")
    };
    let password = "Attack-visible-pw-42";
    // SAFETY: ENV serialises the tests that touch the environment.
    unsafe { std::env::set_var("ACME_SHOP_DB_PASSWORD", password) };
    let secrets = harmony_executor::kube::apply::resolve_secrets(unit).unwrap();
    let caps = harmony_planner::render::declared_capabilities(unit);
    let Err(m) = harmony_executor::kube::apply::desired_release(unit, "sha256:0", &root, &secrets, &caps, (1, false)) else { panic!("the template fails") };
    assert!(!m.contains(password) && !m.contains(&password.to_uppercase()), "the error shows the secret: {m}");
    assert!(m.contains("postgres/templates/attack.yaml") && m.contains("bad password (redacted) for user shop"), "{m}");
}

/// Pod Security per tenant: globex declares `pod-security restricted`, acme keeps the default.
/// globex's namespace enforces `restricted` (a plain Pod is refused, a hardened one admitted),
/// acme's `baseline`; a label changed by hand is drift that `plan` shows and `apply` repairs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_security_level_is_per_tenant_and_kept() {
    let t = common::tenants::TwoTenants::start().await;
    t.write("tenants/globex.kdl", "tenant globex {\n    namespaces globex\n    service-account globex-deployer namespace=globex\n    pod-security restricted\n}\n");
    let pod = |name: &str, hardened: bool| {
        let sc = if hardened {
            "  securityContext:\n    runAsNonRoot: true\n    seccompProfile: {type: RuntimeDefault}\n  containers:\n  - name: app\n    image: busybox\n    securityContext:\n      allowPrivilegeEscalation: false\n      capabilities: {drop: [ALL]}\n"
        } else {
            "  containers:\n  - name: app\n    image: busybox\n"
        };
        format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n{sc}")
    };
    for (name, hardened) in [("plain", false), ("hardened", true)] {
        t.write(&format!("charts/{name}/Chart.yaml"), &format!("apiVersion: v2\nname: {name}\nversion: 0.1.0\n"));
        t.write(&format!("charts/{name}/templates/pod.yaml"), &pod(name, hardened));
        t.write(&format!("releases/{name}.kdl"), &format!("release {name} {{\n    tenant globex\n    cluster prod\n    namespace globex\n    chart \"../charts/{name}\"\n}}\n"));
    }
    let (ok, out) = t.apply().await;
    assert!(!ok, "{out}");
    assert!(out.contains(r#"release/prod/globex/plain: apply Pod plain: pods "plain" is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false"#), "{out}");
    assert!(out.contains("release/prod/globex/hardened: installed, revision 1"), "{out}");
    let labels = |ns: &str| t.server.get("v1", "Namespace", "", ns).unwrap()["metadata"]["labels"].clone();
    for (mode, level) in [("enforce", "restricted"), ("enforce-version", "latest"), ("warn", "restricted"), ("audit", "restricted")] {
        assert_eq!(labels("globex")[format!("pod-security.kubernetes.io/{mode}")], level, "{}", labels("globex"));
    }
    assert_eq!(labels("acme")["pod-security.kubernetes.io/enforce"], "baseline");

    // Someone relaxes globex's namespace by hand: drift, planned and repaired.
    let admin = t.admin().await;
    let relax = serde_json::json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "privileged"}}});
    kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(admin.client().clone())
        .patch("globex", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&relax))
        .await
        .unwrap();
    std::fs::remove_file(t.path("releases/plain.kdl")).unwrap();
    let plan = t.plan_json().await;
    assert_eq!(common::tenants::TwoTenants::action(&plan, "tenant-access/globex/prod").unwrap()["apply"]["action"], "update", "{plan:#}");
    let (ok, out) = t.apply().await;
    assert!(ok, "{out}");
    assert_eq!(labels("globex")["pod-security.kubernetes.io/enforce"], "restricted");
}
