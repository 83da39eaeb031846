//! Attacks on Harmony's containment (issue 20), each performed against the real components:
//! the `harmony` binary, kube-loopback with RBAC and impersonation, a real nats-server, the real
//! agent. Every test is named `attack_*` and listed in docs/security.md ("Attacks tested").

mod common;

// ---------------------------------------------------------------------------------------------
// Tenants (issue 20, items 1–3): a tenant's ServiceAccount may do anything inside its own
// namespaces (it writes Secrets there, so it can write Helm release records) and nothing outside.
// ---------------------------------------------------------------------------------------------

use common::tenants::{TwoTenants, forged_record, hook, write_record};
use k8s_openapi::api::core::v1::Secret;

/// A pre-delete hook that binds cluster-admin to acme's ServiceAccount.
const ESCALATE: &str = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: acme-is-admin\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: cluster-admin\nsubjects:\n- kind: ServiceAccount\n  name: acme-deployer\n  namespace: acme\n";

/// A manifest listing globex's ConfigMap (what an uninstall deletes).
const GLOBEX_CM: &str = "---\n# Source: evil/templates/cm.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: portal-settings\n  namespace: globex\n";

async fn can_read_globex_secrets(t: &TwoTenants) -> bool {
    let acme = t.as_tenant("acme").await;
    kube::Api::<Secret>::namespaced(acme.client().clone(), "globex").list(&Default::default()).await.is_ok()
}

/// Both tenants applied, on a cluster with the cluster-admin ClusterRole every real cluster has,
/// and acme's forged record `evil`: a pre-delete hook binding cluster-admin to acme's
/// ServiceAccount, a manifest listing globex's ConfigMap, marked as Harmony's.
async fn applied_and_evil_record() -> (TwoTenants, harmony_executor::kube::record::Release) {
    let t = TwoTenants::start().await;
    t.server.create(&serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "cluster-admin"},
        "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}));
    let (ok, out) = t.apply().await;
    assert!(ok, "{out}");
    assert!(!can_read_globex_secrets(&t).await, "acme starts confined to its namespace");
    let evil = forged_record("evil", "acme", 1, GLOBEX_CM, vec![hook("ClusterRoleBinding", "acme-is-admin", "pre-delete", ESCALATE)], "release/prod/acme/evil");
    (t, evil)
}

/// Item 1: tenant acme forges, in its own namespace, a release record marked as written by
/// Harmony for a release the repository does not declare; its pre-delete hook binds
/// cluster-admin to acme's ServiceAccount and its manifest lists globex's ConfigMap. The next
/// `apply` must neither prune it as Harmony nor let it act outside acme's namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_forged_release_record_is_not_pruned_with_harmonys_credentials() {
    let (t, evil) = applied_and_evil_record().await;
    write_record(&t.as_tenant("acme").await, "acme", &evil).await;

    let plan = t.plan_json().await;
    assert!(TwoTenants::action(&plan, "release/prod/acme/evil").is_none(), "plan shows no prune of a record Harmony did not write: {plan:#}");
    let (ok, out) = t.apply().await;
    assert!(ok, "{out}");
    assert!(!out.contains("acme/evil"), "apply does not touch it: {out}");
    assert!(t.server.get("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "", "acme-is-admin").is_none(), "the hook did not run: {out}");
    assert!(!can_read_globex_secrets(&t).await, "acme did not become cluster-admin");
    assert!(t.server.get("v1", "ConfigMap", "globex", "portal-settings").is_some(), "globex's ConfigMap is intact: {out}");
}

/// Item 1, the second wall: even a record that carries Harmony's seal (say the key leaked)
/// is uninstalled as its namespace's tenant, so its hook cannot bind cluster-admin and its
/// manifest cannot delete another tenant's objects; the failure says why, in words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_sealed_record_is_uninstalled_only_with_the_tenants_rights() {
    let (t, mut evil) = applied_and_evil_record().await;
    // The cluster's seal key, as Harmony's credentials read it (a cluster where Harmony never
    // sealed a record has none: the record then goes unsealed).
    if let Some(key) = harmony_executor::kube::seal::load(&t.admin().await).await.unwrap() {
        key.seal(&mut evil);
    }
    write_record(&t.as_tenant("acme").await, "acme", &evil).await;

    let (ok, out) = t.apply().await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("release/prod/acme/evil: uninstalling: pre-delete hook evil/templates/acme-is-admin.yaml failed")
            && out.contains("clusterrolebindings \"acme-is-admin\" is forbidden: User \"system:serviceaccount:acme:acme-deployer\" cannot")
            && out.contains("(403 Forbidden)"),
        "{out}"
    );
    assert!(!out.contains("ApiError") && !out.contains("Status {"), "a sentence, not a debug dump: {out}");
    assert!(t.server.get("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "", "acme-is-admin").is_none(), "{out}");
    assert!(!can_read_globex_secrets(&t).await);
    assert!(t.server.get("v1", "ConfigMap", "globex", "portal-settings").is_some(), "{out}");
}

/// Item 1: tenant acme writes, in its own namespace, a record that says it belongs to
/// namespace globex (release `portal`, a higher revision, the hash of globex's pending change).
/// `harmony plan` must read globex's release from globex's namespace: the change stays visible.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_tenant_record_cannot_shadow_another_tenants_release_in_plan() {
    let t = TwoTenants::start().await;
    let (ok, out) = t.apply().await;
    assert!(ok, "{out}");
    // globex's change under review; acme hides it by claiming it is already deployed.
    t.set_release("globex", "portal", "changed");
    let plan = t.plan_json().await;
    let portal = TwoTenants::action(&plan, "release/prod/globex/portal").unwrap();
    assert_eq!(portal["apply"]["action"], "update", "{portal:#}");
    let hash = portal["apply"]["desired_hash"].as_str().unwrap().to_string();

    let mut shadow = forged_record(
        "portal",
        "globex",
        99,
        "---\n# Source: cm/templates/cm.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: portal-settings\ndata:\n  greeting: \"changed\"\n",
        vec![],
        "release/prod/globex/portal",
    );
    shadow.extra.insert("harmony_unit_hash".into(), hash.into());
    write_record(&t.as_tenant("acme").await, "acme", &shadow).await;

    let plan = t.plan_json().await;
    let portal = TwoTenants::action(&plan, "release/prod/globex/portal").unwrap();
    assert_eq!(portal["apply"]["action"], "update", "globex's change is still shown: {portal:#}");
    assert_eq!(portal["apply"]["observed"]["revision"], 1, "planned against globex's own record: {portal:#}");
}

/// Item 1: tenant acme labels objects in its own namespace as the access of a tenant `ghost`
/// the repository does not declare. Removing a tenant's access runs with Harmony's
/// credentials (it deletes RBAC objects and strips namespace labels): it must not act on
/// objects a tenant planted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_planted_tenant_objects_do_not_steer_access_removal() {
    let t = TwoTenants::start().await;
    let (ok, out) = t.apply().await;
    assert!(ok, "{out}");
    let acme = t.as_tenant("acme").await;
    let labels = serde_json::json!({"app.kubernetes.io/managed-by": "harmony", "harmony.dev/tenant": "ghost"});
    let binding: k8s_openapi::api::rbac::v1::RoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "harmony-tenant-ghost", "namespace": "acme", "labels": labels},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "harmony-tenant-ghost"},
        "subjects": [{"kind": "ServiceAccount", "name": "acme-deployer", "namespace": "acme"}]}))
    .unwrap();
    kube::Api::namespaced(acme.client().clone(), "acme").create(&Default::default(), &binding).await.unwrap();

    let plan = t.plan_json().await;
    assert!(TwoTenants::action(&plan, "tenant-access/ghost/prod").is_none(), "no tenant `ghost` to remove: {plan:#}");
    let (ok, out) = t.apply().await;
    assert!(ok, "{out}");
    assert!(!out.contains("ghost"), "{out}");
    let ns = t.server.get("v1", "Namespace", "", "acme").unwrap();
    assert_eq!(ns["metadata"]["labels"]["harmony.dev/tenant"], "acme", "acme's namespace keeps its labels: {ns}");
}

/// Item 1: tenant acme writes, in its own namespace, a Secret that looks like a deployed
/// release record but cannot be decoded. Plans and prunes read every namespace's records: one
/// tenant's garbage must not stop every tenant's plan and apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_garbage_release_record_does_not_stop_other_tenants() {
    let t = TwoTenants::start().await;
    let (ok, out) = t.apply().await;
    assert!(ok, "{out}");
    let garbage: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "sh.helm.release.v1.junk.v1", "namespace": "acme", "labels": {"owner": "helm", "status": "deployed", "name": "junk", "version": "1"}},
        "type": "helm.sh/release.v1",
        "stringData": {"release": "not a record"}}))
    .unwrap();
    kube::Api::namespaced(t.as_tenant("acme").await.client().clone(), "acme").create(&Default::default(), &garbage).await.unwrap();

    t.set_release("globex", "portal", "changed");
    let out = t.harmony(&["plan", "--format", "json"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "plan still works: {stderr}");
    assert!(stderr.contains("ignored release record acme/sh.helm.release.v1.junk.v1"), "and says what it ignored: {stderr}");
    let (ok, out) = t.apply().await;
    assert!(ok && out.contains("release/prod/globex/portal: upgraded, revision 2"), "{out}");
}

/// Item 2: tenant acme's chart renders a cluster-scoped object (a ClusterRoleBinding to
/// cluster-admin) and an object in globex's namespace. `check` cannot know (the objects come
/// out of the chart), but `plan` and `diff` render it: they must refuse, naming each object, the
/// namespace, the tenant and what is allowed. Apply keeps RBAC as the second wall, and what it
/// says (also in Helm's record) is a sentence, not a debug dump.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_release_reaching_outside_its_tenant_is_refused_at_plan() {
    let t = TwoTenants::start().await;
    let (ok, out) = t.apply().await;
    assert!(ok, "{out}");
    t.git(&["init", "-q", "-b", "main"]);
    t.git(&["add", "-A"]);
    t.git(&["commit", "-q", "-m", "two tenants"]);
    let stolen = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: portal-settings\n  namespace: globex\ndata:\n  greeting: owned\n";
    let hook = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: acme-hook\n  annotations:\n    helm.sh/hook: pre-install\nrules: []\n";
    t.reaching_release(&[("crb.yaml", ESCALATE), ("cm.yaml", stolen), ("hook.yaml", hook), ("ok.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fine\n")]);

    let out = t.harmony(&["check"]).await;
    assert!(out.status.success(), "check cannot see rendered objects: {}", String::from_utf8_lossy(&out.stderr));
    let want = [
        "release/prod/acme/reach: tenant acme's release would reach outside the tenant's namespaces on cluster prod",
        "ClusterRoleBinding acme-is-admin: cluster-scoped",
        "ConfigMap portal-settings: in namespace globex, which is not tenant acme's",
        "ClusterRole acme-hook: cluster-scoped",
        "tenant acme may hold namespaced objects in: acme",
    ];
    for args in [&["plan"][..], &["diff", "--base", "main"][..]] {
        let out = t.harmony(args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?} refuses: {stderr}{}", String::from_utf8_lossy(&out.stdout));
        for w in want {
            assert!(stderr.contains(w), "{args:?} says {w:?}: {stderr}");
        }
        assert!(!stderr.contains("ConfigMap fine"), "only what reaches out is named: {stderr}");
    }

    // `harmony apply` plans first: it refuses the same way and writes nothing.
    let (ok, out) = t.apply().await;
    assert!(!ok, "{out}");
    for w in want {
        assert!(out.contains(w), "apply says {w:?}: {out}");
    }
    assert!(t.latest_record("acme", "reach").is_none(), "apply wrote: {out}");

    // RBAC stays the second wall: a plan holding the release anyway — as a planner without the
    // scope check would make it (the release rendered in full; its objects hidden from the
    // planner's check, not from the plan's manifest), sealed and executed by `execute` — is
    // refused by the API server when the release is written as its tenant, in words.
    let mut compiled = harmony_compiler::compile_repo(&harmony_compiler::DiskFs::new(&t.root)).unwrap().repo.expect("the repository compiles");
    compiled.skip_targets(false, true);
    let key = harmony_planner::FingerprintKey::from_hex(&"07".repeat(32)).unwrap();
    let no_fleets = |f: &str, _: &[String]| Err(format!("fleet {f}: not planned"));
    let live_opts = harmony_executor::live::LiveOptions { kubeconfig: Some(t.kubeconfig.clone()), auth_dir: None, read_options: &no_fleets };
    let live = harmony_executor::live::observe(&compiled, &live_opts).await.expect("observe");
    let unit = "release/prod/acme/reach".to_string();
    let secrets = harmony_executor::kube::apply::resolve_repo_secrets(&compiled, false).expect("secrets");
    let renders = harmony_executor::pipeline::render_releases(&t.root, &compiled, vec![unit.clone()], &secrets, &live.observed, &key).expect("renders");
    let mut rendered = renders.objects.clone();
    rendered.extend(live.desired);
    rendered.insert(unit.clone(), Vec::new());
    let opts = harmony_planner::PlanOptions {
        targets: vec![unit.clone()],
        excludes: Vec::new(),
        skipped: vec!["fleets".into()],
        key: key.clone(),
        secret_values: secrets,
        source: harmony_schemas::plan::SourceRevision { commit: None, dirty: false, repository_hash: compiled.hash() },
        observed_source: harmony_schemas::plan::ObservedSource::None,
        capabilities: renders.capabilities,
        release_renders: renders.releases,
    };
    let mut plan = harmony_planner::plan(&compiled, &rendered, &live.observed, &opts).expect("planned without the scope check");
    let inputs = harmony_planner::contract::ContractInputs { charts: renders.charts, servers: live.servers, ..Default::default() };
    harmony_planner::contract::complete(&mut plan, &compiled, &inputs, &key);
    let exec = harmony_executor::execute::ExecuteOptions {
        kubeconfig: Some(t.kubeconfig.clone()),
        release: Default::default(),
        holder: harmony_executor::lock::LockHolder::this_process(),
        lock: Default::default(),
        stop: Default::default(),
        observer: None,
        refuse_stale_all: false,
        fail_fast: false,
        key,
        repository: compiled.settings.name.clone(),
        fleets: Default::default(),
    };
    let outcome = harmony_executor::execute::execute(&plan, &exec).await;
    assert!(outcome.refused.is_none(), "{outcome:#?}");
    let out: String = outcome.actions.iter().map(|o| format!("{}: {:?}: {}\n", o.unit, o.outcome, o.message)).collect();
    assert!(out.contains(&format!("{unit}: Failed: ")), "{out}");
    assert!(out.contains("release/prod/acme/reach: ") && out.contains("is forbidden: User \"system:serviceaccount:acme:acme-deployer\" cannot"), "{out}");
    assert!(out.contains("(403 Forbidden)") && !out.contains("ApiError") && !out.contains("Status {"), "{out}");
    let record = t.latest_record("acme", "reach").expect("the failed revision is recorded");
    let description = &record.info.description;
    assert!(description.starts_with("Install \"reach\" failed: ") && description.contains("(403 Forbidden)"), "{description}");
    assert!(!description.contains("ApiError") && !description.contains("Status {"), "Helm's description is a sentence: {description}");
    assert!(t.server.get("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "", "acme-is-admin").is_none());
    assert_eq!(t.server.get("v1", "ConfigMap", "globex", "portal-settings").unwrap()["data"]["greeting"], "hello");
}

/// A Pod that owns its node: privileged, the host's root filesystem mounted.
const BREAKOUT_POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: breakout\nspec:\n  containers:\n  - name: shell\n    image: busybox\n    securityContext:\n      privileged: true\n    volumeMounts:\n    - name: root\n      mountPath: /host\n  volumes:\n  - name: root\n    hostPath:\n      path: /\n";

/// A Deployment whose pods share the node's network and mount its container runtime socket.
const SNEAKY_DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: sneaky\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: sneaky}\n  template:\n    metadata:\n      labels: {app: sneaky}\n    spec:\n      hostNetwork: true\n      containers:\n      - name: app\n        image: busybox\n      volumes:\n      - name: runtime\n        hostPath:\n          path: /run/containerd/containerd.sock\n";

/// Item 3: tenant acme ships a privileged Pod mounting the node's `/`, and a Deployment whose
/// pods use the host network and mount the container runtime's socket. Its namespace enforces
/// Pod Security `baseline` (the default): the API server refuses the Pod, and accepts the
/// Deployment (enforce applies to pods, as on a real cluster) whose controller cannot create
/// its pods, so `apply --wait` fails naming why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_privileged_pod_and_host_mounts_are_refused_by_pod_security() {
    let t = TwoTenants::start().await;
    for (name, manifest) in [("breakout", BREAKOUT_POD), ("sneaky", SNEAKY_DEPLOYMENT)] {
        t.write(&format!("charts/{name}/Chart.yaml"), &format!("apiVersion: v2\nname: {name}\nversion: 0.1.0\n"));
        t.write(&format!("charts/{name}/templates/{name}.yaml"), manifest);
        t.write(&format!("releases/{name}.kdl"), &format!("release {name} {{\n    tenant acme\n    cluster prod\n    namespace acme\n    chart \"../charts/{name}\"\n}}\n"));
    }
    let out = t.harmony(&["apply", "--yes", "--skip-fleets", "--wait", "3"]).await;
    let out = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let ns = t.server.get("v1", "Namespace", "", "acme").unwrap();
    assert_eq!(ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "baseline", "{ns}");
    assert!(t.server.get("v1", "Pod", "acme", "breakout").is_none(), "the privileged pod was not created: {out}");
    assert!(
        out.contains(r#"release/prod/acme/breakout: apply Pod breakout: pods "breakout" is forbidden: violates PodSecurity "baseline:latest": hostPath volumes (volume "root"), privileged (container "shell" must not set securityContext.privileged=true) (403 Forbidden)"#),
        "{out}"
    );
    let sneaky = t.server.get("apps/v1", "Deployment", "acme", "sneaky").expect("a workload itself is admitted");
    assert_eq!(sneaky["status"]["readyReplicas"], 0, "its pods are not: {sneaky}");
    assert!(
        out.contains("release/prod/acme/sneaky: timed out") && out.contains(r#"violates PodSecurity "baseline:latest": host namespaces (hostNetwork=true), hostPath volumes (volume "runtime")"#),
        "{out}"
    );
}
