//! Two tenants on one loopback API server (RBAC and impersonation enforced), for the tenant
//! attack tests: tenant `acme` owns namespace `acme` (release `shop`), tenant `globex` owns
//! `globex` (release `portal`), both on cluster `prod`. The repository is written to a temporary
//! directory; `harmony` is the real binary.

use std::path::{Path, PathBuf};
use std::process::Output;

use harmony_executor::kube::Cluster;
use harmony_executor::kube::record::{Hook, HookExecution, Info, Release, Status};
use harmony_kube_loopback::Server;
use serde_json::{Map, Value};

/// A ConfigMap chart: `<release>-settings` with `greeting`.
const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-settings\ndata:\n  greeting: {{ .Values.greeting | default \"hello\" | quote }}\n";

pub struct TwoTenants {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub kubeconfig: PathBuf,
    pub server: Server,
}

impl TwoTenants {
    pub async fn start() -> TwoTenants {
        let server = Server::start().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repo");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, Server::kubeconfig(&[("prod", &server)])).unwrap();
        std::fs::write(dir.path().join("fp.key"), "ef".repeat(32)).unwrap();
        let t = TwoTenants { dir, root, kubeconfig, server };
        t.write("harmony.kdl", "repository adversarial {\n    kube-version \"1.30.0\"\n}\n");
        t.write("cluster.kdl", "cluster prod {\n    context prod\n}\n");
        t.write("charts/cm/Chart.yaml", "apiVersion: v2\nname: cm\nversion: 0.1.0\n");
        t.write("charts/cm/templates/cm.yaml", CM);
        for (tenant, release) in [("acme", "shop"), ("globex", "portal")] {
            t.write(
                &format!("tenants/{tenant}.kdl"),
                &format!("tenant {tenant} {{\n    namespaces {tenant}\n    service-account {tenant}-deployer namespace={tenant}\n}}\n"),
            );
            t.set_release(tenant, release, "hello");
        }
        t
    }

    pub fn write(&self, path: &str, text: &str) {
        let p = self.root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// Declares `release` of `tenant` in the tenant's namespace with the `cm` chart.
    pub fn set_release(&self, tenant: &str, release: &str, greeting: &str) {
        self.write(
            &format!("releases/{release}.kdl"),
            &format!(
                "release {release} {{\n    tenant {tenant}\n    cluster prod\n    namespace {tenant}\n    chart \"../charts/cm\"\n    values {{\n        greeting \"{greeting}\"\n    }}\n}}\n"
            ),
        );
    }

    /// Runs the `harmony` binary on the repository (off the runtime: the server lives on it).
    pub async fn harmony(&self, args: &[&str]) -> Output {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_harmony"));
        c.arg("--repo").arg(&self.root).args(args).env("KUBECONFIG", &self.kubeconfig);
        c.env("NO_COLOR", "1").env("HARMONY_FINGERPRINT_KEY_FILE", self.dir.path().join("fp.key")).stdin(std::process::Stdio::null());
        tokio::task::spawn_blocking(move || c.output().unwrap()).await.unwrap()
    }

    /// `harmony apply --yes --skip-fleets`: its output, whether it succeeded or not.
    pub async fn apply(&self) -> (bool, String) {
        let out = self.harmony(&["apply", "--yes", "--skip-fleets"]).await;
        (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }

    /// `harmony plan --format json`, parsed (panics when the plan fails).
    pub async fn plan_json(&self) -> Value {
        let out = self.harmony(&["plan", "--format", "json"]).await;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The planned action of `unit`, if the plan has one.
    pub fn action<'a>(plan: &'a Value, unit: &str) -> Option<&'a Value> {
        plan["actions"].as_array().unwrap().iter().find(|a| a["unit"] == unit)
    }

    /// Harmony's own credentials (the kubeconfig's user: a cluster administrator).
    pub async fn admin(&self) -> Cluster {
        Cluster::from_kubeconfig(Some(&self.kubeconfig), "prod").await.unwrap()
    }

    /// What a tenant's workloads and its people can do: its ServiceAccount's rights.
    pub async fn as_tenant(&self, tenant: &str) -> Cluster {
        self.admin().await.impersonating(&format!("system:serviceaccount:{tenant}:{tenant}-deployer")).unwrap()
    }

    pub fn path(&self, p: &str) -> PathBuf {
        Path::new(&self.root).join(p)
    }

    /// Declares release `reach` of tenant acme (namespace acme) whose chart holds `templates`
    /// (file name → YAML).
    pub fn reaching_release(&self, templates: &[(&str, &str)]) {
        self.write("charts/reach/Chart.yaml", "apiVersion: v2\nname: reach\nversion: 0.1.0\n");
        for (file, text) in templates {
            self.write(&format!("charts/reach/templates/{file}"), text);
        }
        self.write("releases/reach.kdl", "release reach {\n    tenant acme\n    cluster prod\n    namespace acme\n    chart \"../charts/reach\"\n}\n");
    }

    /// Runs git in the repository (a fixed identity and dates).
    pub fn git(&self, args: &[&str]) {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(&self.root)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"])
            .args(args)
            .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
            .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The deployed or latest record of `release` in `ns`, decoded.
    pub fn latest_record(&self, ns: &str, release: &str) -> Option<Release> {
        self.server
            .list("v1", "Secret")
            .into_iter()
            .filter(|s| s["metadata"]["namespace"] == ns && s["metadata"]["labels"]["name"] == release)
            .map(|s| Release::from_secret(&serde_json::from_value(s).unwrap()).unwrap())
            .max_by_key(|r| r.version)
    }
}

/// A release record as a tenant can write it into its own namespace: any content, marked as
/// written by Harmony (`harmony_writer`) from unit `unit`, status deployed.
pub fn forged_record(name: &str, namespace_inside: &str, version: u32, manifest: &str, hooks: Vec<Hook>, unit: &str) -> Release {
    let mut extra = Map::new();
    extra.insert("harmony_writer".into(), Value::from("harmony/0.1.0"));
    extra.insert("harmony_unit".into(), Value::from(unit));
    Release {
        name: name.into(),
        info: Info {
            first_deployed: "2026-01-01T00:00:00Z".into(),
            last_deployed: "2026-01-01T00:00:00Z".into(),
            description: "Install complete".into(),
            status: Status::Deployed,
            notes: String::new(),
            extra: Map::new(),
        },
        chart: serde_json::json!({"metadata": {"apiVersion": "v2", "name": name, "version": "0.1.0"}}),
        config: Map::new(),
        manifest: manifest.into(),
        hooks,
        version,
        namespace: namespace_inside.into(),
        apply_method: "ssa".into(),
        extra,
    }
}

/// A Helm hook of `kind` running on `event`.
pub fn hook(kind: &str, name: &str, event: &str, manifest: &str) -> Hook {
    Hook {
        name: name.into(),
        kind: kind.into(),
        path: format!("evil/templates/{name}.yaml"),
        manifest: manifest.into(),
        events: vec![event.into()],
        last_run: HookExecution::default(),
        weight: 0,
        delete_policies: vec![],
        extra: Map::new(),
    }
}

/// Writes `record` as its Secret into namespace `ns` with `cluster`'s credentials.
pub async fn write_record(cluster: &Cluster, ns: &str, record: &Release) {
    use k8s_openapi::api::core::v1::Secret;
    let mut s = record.to_secret(1_800_000_000);
    s.metadata.namespace = Some(ns.into());
    kube::Api::<Secret>::namespaced(cluster.client().clone(), ns).create(&kube::api::PostParams::default(), &s).await.unwrap();
}
