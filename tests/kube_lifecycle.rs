//! A release's whole life through the `harmony` binary, checked on the cluster at every step:
//! install → plan says nothing to do → upgrade → no-op re-apply (no new revision) → rollback →
//! uninstall when the release leaves the repository, and the tenant's access with it (a tenant
//! has access to a cluster while it has releases there). Only ConfigMaps are installed, so it runs on any cluster.
//!
//! Always against the loopback API server; against a real cluster too when
//! `HARMONY_KUBE_E2E=1` (kubeconfig from `KUBECONFIG` or `~/.kube/config`, context from
//! `HARMONY_KUBE_E2E_CONTEXT`, default the current context; see docs/kubernetes.md). The real
//! run uses a fresh namespace `harmony-e2e-<pid>-<time>` and deletes it at the end.

use std::path::{Path, PathBuf};
use std::process::Output;

use harmony_executor::kube::Cluster;
use harmony_kube_loopback::Server;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams};

struct Repo {
    root: PathBuf,
    context: String,
    namespace: String,
}

impl Repo {
    fn new(dir: &Path, context: &str, namespace: &str) -> Repo {
        let root = dir.join("repo");
        std::fs::create_dir_all(root.join("charts/cm/templates")).unwrap();
        let w = |p: &str, t: &str| std::fs::write(root.join(p), t).unwrap();
        w("harmony.kdl", "repository e2e {\n    kube-version \"1.30.0\"\n}\n");
        w("charts/cm/Chart.yaml", "apiVersion: v2\nname: cm\nversion: 0.1.0\n");
        w(
            "charts/cm/templates/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-settings\ndata:\n  greeting: {{ .Values.greeting | quote }}\n",
        );
        w("cluster.kdl", &format!("cluster e2e {{\n    context \"{context}\"\n}}\n"));
        let r = Repo { root, context: context.to_string(), namespace: namespace.to_string() };
        r.set_tenant(true);
        r.set_release(Some("hello"));
        r
    }

    fn set_tenant(&self, present: bool) {
        let p = self.root.join("tenant.kdl");
        if present {
            let ns = &self.namespace;
            std::fs::write(p, format!("tenant e2e {{\n    namespaces \"{ns}\"\n    service-account e2e-deployer namespace=\"{ns}\"\n}}\n")).unwrap();
        } else {
            std::fs::remove_file(p).unwrap();
        }
    }

    fn set_release(&self, greeting: Option<&str>) {
        let p = self.root.join("release.kdl");
        match greeting {
            Some(g) => std::fs::write(
                p,
                format!(
                    "release lifecycle {{\n    tenant e2e\n    cluster e2e\n    namespace \"{}\"\n    chart \"charts/cm\"\n    values {{\n        greeting \"{g}\"\n    }}\n}}\n",
                    self.namespace
                ),
            )
            .unwrap(),
            None => std::fs::remove_file(p).unwrap(),
        }
    }

    fn harmony(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_harmony"));
        c.arg("--repo").arg(&self.root).args(args).arg("--kubeconfig").arg(kubeconfig);
        c.env("NO_COLOR", "1").env("HARMONY_FINGERPRINT_KEY_FILE", self.root.parent().unwrap().join("fp.key")).stdin(std::process::Stdio::null());
        c.output().unwrap()
    }
}

fn ok(out: &Output) -> String {
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{s}\n{}", String::from_utf8_lossy(&out.stderr));
    s
}

/// The lifecycle on the cluster behind `context` of `kubeconfig`.
async fn lifecycle(kubeconfig: &Path, context: &str, namespace: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fp.key"), "cd".repeat(32)).unwrap();
    let repo = Repo::new(dir.path(), context, namespace);
    let admin = Cluster::from_kubeconfig(Some(kubeconfig), &repo.context).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(admin.client().clone(), namespace);
    let records: Api<Secret> = Api::namespaced(admin.client().clone(), namespace);
    let greeting = || async { cms.get_opt("lifecycle-settings").await.unwrap().and_then(|c| c.data).and_then(|d| d.get("greeting").cloned()) };
    let revisions = || async {
        let l = records.list(&ListParams::default().labels("owner=helm,name=lifecycle")).await.unwrap();
        let mut v: Vec<(String, String)> = l
            .items
            .iter()
            .map(|s| {
                let labels = s.metadata.labels.clone().unwrap_or_default();
                (labels["version"].clone(), labels["status"].clone())
            })
            .collect();
        v.sort_by_key(|(n, _)| n.parse::<u32>().unwrap_or(0));
        v
    };
    let kc = kubeconfig.to_path_buf();
    let run = |args: Vec<&'static str>| {
        let (root, ctx, ns, kc) = (repo.root.clone(), repo.context.clone(), repo.namespace.clone(), kc.clone());
        tokio::task::spawn_blocking(move || Repo { root, context: ctx, namespace: ns }.harmony(&kc, &args))
    };
    let apply = || run(vec!["apply", "--yes", "--skip-fleets"]);
    let plan = || run(vec!["plan", "--compact", "--detailed-exitcode"]);

    // Install.
    let out = ok(&apply().await.unwrap());
    assert!(out.contains(&format!("release/e2e/{namespace}/lifecycle: installed, revision 1")), "{out}");
    assert_eq!(greeting().await.as_deref(), Some("hello"));
    assert_eq!(revisions().await, [("1".to_string(), "deployed".to_string())]);
    assert_eq!(plan().await.unwrap().status.code(), Some(0), "nothing to do after apply");

    // Upgrade.
    repo.set_release(Some("bonjour"));
    let p = plan().await.unwrap();
    assert_eq!(p.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&p.stdout).contains(&format!("~ release/e2e/{namespace}/lifecycle")), "{p:?}");
    let out = ok(&apply().await.unwrap());
    assert!(out.contains("upgraded, revision 2"), "{out}");
    assert_eq!(greeting().await.as_deref(), Some("bonjour"));

    // No-op: no new revision.
    let out = ok(&apply().await.unwrap());
    assert!(out.contains("unchanged (revision 2)"), "{out}");
    assert_eq!(revisions().await.len(), 2);

    // Rollback: revision 3 with revision 1's manifest.
    let out = ok(&run(vec!["rollback", "lifecycle", "1"]).await.unwrap());
    assert!(out.contains("revision 3"), "{out}");
    assert_eq!(greeting().await.as_deref(), Some("hello"));
    assert_eq!(
        revisions().await,
        [("1".into(), "superseded".into()), ("2".into(), "superseded".into()), ("3".into(), "deployed".into())] as [(String, String); 3]
    );

    // The release leaves the repository: planned as a delete, uninstalled, records gone.
    repo.set_release(None);
    let p = plan().await.unwrap();
    assert_eq!(p.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&p.stdout).contains(&format!("- release/e2e/{namespace}/lifecycle")), "{p:?}");
    let out = ok(&apply().await.unwrap());
    assert!(out.contains("uninstalled (left the repository; was revision 3)"), "{out}");
    assert_eq!(greeting().await, None);
    assert!(revisions().await.is_empty());
    // With no release left on the cluster, the tenant has no access there any more: its
    // ServiceAccount and Role go, its namespace stays.
    assert!(out.contains("tenant-access/e2e/e2e: removed"), "{out}");
    let sas: Api<ServiceAccount> = Api::namespaced(admin.client().clone(), namespace);
    assert!(sas.get_opt("e2e-deployer").await.unwrap().is_none());
    let nss: Api<Namespace> = Api::all(admin.client().clone());
    assert!(nss.get_opt(namespace).await.unwrap().is_some(), "namespaces are never deleted by Harmony");
    assert_eq!(plan().await.unwrap().status.code(), Some(0), "converged");
    repo.set_tenant(false);
    assert_eq!(plan().await.unwrap().status.code(), Some(0), "the tenant leaving changes nothing more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_on_the_loopback_server() {
    let server = Server::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, Server::kubeconfig(&[("e2e", &server)])).unwrap();
    lifecycle(&kubeconfig, "e2e", "e2e-apps").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_on_a_real_cluster() {
    if std::env::var("HARMONY_KUBE_E2E").as_deref() != Ok("1") {
        eprintln!("skipped: set HARMONY_KUBE_E2E=1 (and KUBECONFIG) to run against a real cluster (docs/kubernetes.md)");
        return;
    }
    let kubeconfig = std::env::var_os("KUBECONFIG")
        .map(|k| std::env::split_paths(&k).next().expect("KUBECONFIG names a file"))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kube/config")))
        .expect("KUBECONFIG or HOME");
    let context = match std::env::var("HARMONY_KUBE_E2E_CONTEXT") {
        Ok(c) => c,
        Err(_) => kube::config::Kubeconfig::read_from(&kubeconfig).expect("kubeconfig").current_context.expect("a current context"),
    };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    let namespace = format!("harmony-e2e-{}-{}", std::process::id(), nanos % 1_000_000);
    let cleanup = async {
        let admin = Cluster::from_kubeconfig(Some(&kubeconfig), &context).await.unwrap();
        let _ = Api::<Namespace>::all(admin.client().clone()).delete(&namespace, &DeleteParams::background()).await;
    };
    let result = tokio::spawn({
        let (kubeconfig, context, namespace) = (kubeconfig.clone(), context.clone(), namespace.clone());
        async move { lifecycle(&kubeconfig, &context, &namespace).await }
    })
    .await;
    cleanup.await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}
