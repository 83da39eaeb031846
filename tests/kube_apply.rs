//! Applying the example repository's Kubernetes units (`tenants/`) the way `harmony apply`
//! does — the plan made against the live clusters, then that plan executed
//! (`harmony_executor::pipeline::plan_clusters`, `execute`): a missing secret refuses the plan,
//! a cluster that goes away after planning fails its own units with a clear error while the
//! other converges, a second apply changes nothing.

use std::path::Path;

use harmony_executor::execute::execute;
use harmony_executor::kube::release::Options;
use harmony_executor::pipeline::{ClusterApply, apply_clusters, plan_clusters};
use harmony_kube_loopback::Server;
use harmony_schemas::plan::{ApplyOutcome, Outcome};

mod common;
use common::copy_dir;

/// Tests that set `ACME_SHOP_DB_PASSWORD` in this process hold this for their whole run.
static ENV: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn compiled() -> harmony_compiler::CompiledRepo {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tenants");
    harmony_compiler::compile_repo(&harmony_compiler::DiskFs::new(&root)).unwrap().repo.expect("tenants/ compiles")
}

/// Only the units of cluster `okd-prod`: the repository without cluster `okd-staging`.
fn okd_prod_only(mut repo: harmony_compiler::CompiledRepo) -> harmony_compiler::CompiledRepo {
    repo.clusters.retain(|n, _| n.as_str() == "okd-prod");
    repo.units.retain(|id, _| !(id.as_str().contains("/okd-staging/") || id.as_str().ends_with("/okd-staging")));
    repo
}

fn cluster_apply(kubeconfig: &Path, holder: &str, poll_ms: u64, targets: &[&str]) -> ClusterApply {
    ClusterApply {
        kubeconfig: Some(kubeconfig.to_path_buf()),
        release: Options { poll: std::time::Duration::from_millis(poll_ms), ..Options::default() },
        holder: holder.into(),
        targets: targets.iter().map(|t| t.to_string()).collect(),
    }
}

fn outcome_of<'a>(out: &'a ApplyOutcome, unit: &str) -> &'a harmony_schemas::plan::ActionResult {
    out.actions.iter().find(|o| o.unit == unit).unwrap_or_else(|| panic!("{unit} in {out:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_one_unreachable() {
    let _env = ENV.lock().await;
    let (server, staging) = (Server::start().await.unwrap(), Server::start().await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, Server::kubeconfig(&[("okd-prod", &server), ("okd-staging-admin", &staging)])).unwrap();
    let staging_url = staging.url();

    let repo = compiled();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tenants");
    let opts = cluster_apply(&kubeconfig, "test@host pid 1", 20, &[]);
    // Without the database password the plan is refused, naming the release, the key and the
    // source: nothing is written anywhere (apply executes only a plan).
    // SAFETY: ENV serialises the tests that touch the environment; the apply runs after.
    unsafe { std::env::remove_var("ACME_SHOP_DB_PASSWORD") };
    let writes = (server.writes(), staging.writes());
    let Err(e) = plan_clusters(&root, &repo, &opts).await else { panic!("planned without the password") };
    assert!(e.message.contains("release/okd-prod/acme-prod/shop-db: secret-value auth.password: environment variable ACME_SHOP_DB_PASSWORD is not set"), "{}", e.message);
    assert_eq!((server.writes(), staging.writes()), writes, "nothing written");

    // With it, the plan covers both clusters; okd-staging goes away after planning: its units
    // fail, naming the cluster, and what needs them is skipped, while okd-prod converges.
    unsafe { std::env::set_var("ACME_SHOP_DB_PASSWORD", "s3cret-pw") };
    let (plan, exec) = plan_clusters(&root, &repo, &opts).await.expect("plan");
    drop(staging);
    let out = execute(&plan, &exec).await;
    assert!(out.refused.is_none(), "{out:#?}");
    assert!(out.actions.iter().any(|o| o.unit.contains("okd-staging")));
    for o in &out.actions {
        match (o.unit.contains("okd-staging"), o.outcome) {
            (false, Outcome::Applied) => {}
            (true, Outcome::Failed) => {
                let want = format!("cluster okd-staging: cannot reach the API server at {staging_url}");
                assert!(o.message.starts_with(want.trim_end_matches('/')) && o.message.contains("Connection refused"), "{}", o.message);
            }
            (true, Outcome::Skipped) => assert!(o.message.starts_with("not written: it depends on "), "{}", o.message),
            other => panic!("{}: {other:?} {}", o.unit, o.message),
        }
    }
    assert_eq!(outcome_of(&out, "release/okd-prod/globex-portal/portal-api").message, "installed, revision 1");
    assert!(server.get("v1", "Secret", "acme-prod", "sh.helm.release.v1.shop-db.v1").is_some());
    assert!(server.get("apps/v1", "Deployment", "acme-prod", "shop-web").is_some());
    assert!(server.get("rbac.authorization.k8s.io/v1", "RoleBinding", "globex", "harmony-tenant-globex").is_some());
    assert!(server.get("coordination.k8s.io/v1", "Lease", "kube-system", "harmony-apply").is_none(), "lock released");

    // Again (okd-prod only now): nothing is written.
    let repo = okd_prod_only(repo);
    let writes = server.writes();
    let out = apply_clusters(&root, &repo, &opts).await.expect("plan");
    assert_eq!(server.writes(), writes, "nothing is written: a plan of no-ops does not even take the lock");
    for o in out.actions.iter().filter(|o| o.unit.starts_with("release/okd-prod/")) {
        assert!(o.outcome == Outcome::Noop && o.message.starts_with("unchanged"), "{}: {:?} {}", o.unit, o.outcome, o.message);
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
    let repo = okd_prod_only(compiled());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tenants");
    // The re-run is by the same operator; a different one would wait for the lease's TTL.
    let opts = cluster_apply(&kubeconfig, "ops@host", 10, &[]);
    let admin = Cluster::from_kubeconfig(Some(&kubeconfig), "okd-prod").await.unwrap();
    let mut seed: u64 = 0x5eed;
    let mut interrupted = 0;
    for round in 0..20 {
        // Each round changes the database password, so shop-db and shop-api are upgraded.
        // SAFETY: ENV serialises the tests that touch the environment; no apply is running.
        unsafe { std::env::set_var("ACME_SHOP_DB_PASSWORD", format!("pw-{round}")) };
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        server.fail_writes_after(Some((seed >> 33) % 12));
        // The plan reads; the faults hit the writes of its execution.
        let first = apply_clusters(&root, &repo, &opts).await.expect("plan");
        if first.refused.is_some() || first.actions.iter().any(|o| !matches!(o.outcome, Outcome::Applied | Outcome::Noop)) {
            interrupted += 1;
        }
        server.fail_writes_after(None);
        let again = apply_clusters(&root, &repo, &opts).await.expect("plan");
        assert!(again.refused.is_none(), "round {round}: {again:#?}");
        for o in &again.actions {
            assert!(matches!(o.outcome, Outcome::Applied | Outcome::Noop), "round {round}: {}: {:?} {}", o.unit, o.outcome, o.message);
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
    let repo = okd_prod_only(harmony_compiler::compile_repo(&harmony_compiler::DiskFs::new(&root)).unwrap().repo.expect("compiles"));
    let opts = cluster_apply(&kubeconfig, "test@host pid 1", 20, &["release/okd-prod/acme-prod/shop-db"]);
    let password = "Attack-visible-pw-42";
    // SAFETY: ENV serialises the tests that touch the environment; the apply runs after.
    unsafe { std::env::set_var("ACME_SHOP_DB_PASSWORD", password) };
    // Refused when planning (the render is the plan's) or when executing: either way in words.
    let m = match apply_clusters(&root, &repo, &opts).await {
        Err(e) => e.message,
        Ok(out) => {
            let o = outcome_of(&out, "release/okd-prod/acme-prod/shop-db");
            assert_eq!(o.outcome, Outcome::Failed, "shop-db should fail: {out:#?}");
            o.message.clone()
        }
    };
    let m = &m;
    let b64 = base64::engine::general_purpose::STANDARD.encode(password);
    assert!(!m.contains(password) && !m.contains(&b64), "the error shows the secret: {m}");
    // It still says what is wrong with which object.
    assert!(m.contains("manifest without `metadata.name`: a Secret (v1) with fields"), "{m}");
}

/// Issue 20, item 15: `harmony apply` renders the chart with the resolved secrets (the plan's
/// render: `plan_repository`, the one `harmony plan` and `harmony apply` make); a template that
/// fails with a message computed from one (`upper`) printed it, only the verbatim value being
/// scrubbed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_an_apply_render_error_prints_a_transformed_secret() {
    use harmony_executor::pipeline::{Observe, PlanRequest, plan_repository};
    let _env = ENV.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tenants");
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tenants"), &root);
    std::fs::write(
        root.join("charts/postgres/templates/attack.yaml"),
        "{{ fail (printf \"bad password %s for user %s\" (upper .Values.auth.password) .Values.auth.username) }}\n",
    )
    .unwrap();
    let mut repo = harmony_compiler::compile_repo(&harmony_compiler::DiskFs::new(&root)).unwrap().repo.expect("compiles");
    let password = "Attack-visible-pw-42";
    // SAFETY: ENV serialises the tests that touch the environment.
    unsafe { std::env::set_var("ACME_SHOP_DB_PASSWORD", password) };
    let req = PlanRequest {
        observe: Observe::Nothing,
        key: harmony_planner::FingerprintKey::from_hex(&"07".repeat(32)).unwrap(),
        targets: vec!["release/okd-prod/acme-prod/shop-db".into()],
        excludes: Vec::new(),
        skipped: Vec::new(),
        source: harmony_schemas::plan::SourceRevision { commit: None, dirty: false, repository_hash: repo.hash() },
    };
    let Err(e) = plan_repository(&root, &mut repo, req).await else { panic!("the template fails") };
    let m = &e.message;
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
