//! A repository on one loopback API server (cluster `prod`, context `prod`), driven through the
//! real `harmony` binary: the harness of the plan-contract and drift tests. The repository and
//! its kubeconfig and plan fingerprint key live in a temporary directory.

use std::path::{Path, PathBuf};
use std::process::Output;

use harmony_executor::kube::{Cluster, release};
use harmony_kube_loopback::Server;
use serde_json::Value;

pub struct Repo {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub kubeconfig: PathBuf,
    pub key_file: PathBuf,
}

impl Repo {
    /// A repository of `files` (path, text), planned with fingerprint key `key_hex`, whose
    /// context `prod` leads to `server`.
    pub fn new(server: &Server, key_hex: &str, files: &[(&str, &str)]) -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo { root: dir.path().join("repo"), kubeconfig: dir.path().join("kubeconfig"), key_file: dir.path().join("fp.key"), dir };
        for (path, text) in files {
            repo.write(path, text);
        }
        std::fs::write(&repo.kubeconfig, Server::kubeconfig(&[("prod", server)])).unwrap();
        std::fs::write(&repo.key_file, key_hex).unwrap();
        repo
    }

    /// Writes a file of the repository.
    pub fn write(&self, path: &str, text: &str) {
        let path = self.root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    pub fn kubeconfig(&self) -> &str {
        self.kubeconfig.to_str().unwrap()
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_harmony"));
        c.arg("--repo").arg(&self.root).args(args).stdin(std::process::Stdio::null());
        c.env("NO_COLOR", "1").env("HARMONY_FINGERPRINT_KEY_FILE", &self.key_file);
        c.envs(env.iter().copied());
        c.output().unwrap()
    }

    /// `harmony plan --format json` (live unless `extra` says otherwise).
    pub fn plan(&self, extra: &[&str]) -> Value {
        let mut args = vec!["plan", "--format", "json", "--kubeconfig", self.kubeconfig()];
        args.extend_from_slice(extra);
        let out = self.run(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `harmony plan --detailed-exitcode --format FORMAT`: (exit code, stdout, stderr); the
    /// exit code must be 0 or 2.
    pub fn plan_detailed(&self, format: &str) -> (Option<i32>, String, String) {
        let out = self.run(&["plan", "--detailed-exitcode", "--format", format, "--kubeconfig", self.kubeconfig()]);
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        assert!(matches!(out.status.code(), Some(0 | 2)), "{stdout}{stderr}");
        (out.status.code(), stdout, stderr)
    }

    /// `harmony plan --out FILE` (live), returning the plan.
    pub fn plan_out(&self, file: &Path, env: &[(&str, &str)]) -> Value {
        let out = self.run_env(&["plan", "--skip-fleets", "--out", file.to_str().unwrap(), "--format", "json", "--kubeconfig", self.kubeconfig()], env);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `harmony apply --yes PLANFILE --format json [extra]`: (exit code, outcome, stdout +
    /// stderr). The output must be its units' lines then the outcome ([`super::apply_outcome`]).
    pub fn apply_file(&self, file: &Path, extra: &[&str], env: &[(&str, &str)]) -> (i32, Value, String) {
        let mut args = vec!["apply", "--yes", file.to_str().unwrap(), "--format", "json", "--kubeconfig", self.kubeconfig()];
        args.extend_from_slice(extra);
        let out = self.run_env(&args, env);
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        let outcome = super::apply_outcome(&out.stdout);
        (out.status.code().unwrap_or(-1), outcome, text)
    }

    /// `harmony apply --yes --skip-fleets`, which must succeed: its stdout.
    pub fn apply(&self) -> String {
        let out = self.run(&["apply", "--yes", "--skip-fleets", "--kubeconfig", self.kubeconfig()]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        stdout
    }

    /// The cluster as an administrator (kubectl's view).
    pub async fn cluster(&self) -> Cluster {
        Cluster::from_kubeconfig(Some(&self.kubeconfig), "prod").await.unwrap()
    }
}

/// A template that renders a ServiceMonitor only where the cluster serves the kind (as charts
/// gate on `.Capabilities`).
pub const GATED_SERVICE_MONITOR: &str = "{{- if .Capabilities.APIVersions.Has \"monitoring.coreos.com/v1/ServiceMonitor\" }}\napiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata:\n  name: {{ .Release.Name }}\nspec:\n  endpoints: []\n{{- end }}\n";

/// Makes `server` serve ServiceMonitors (`monitoring.coreos.com/v1`), as if its CRD were installed.
pub fn serve_service_monitors(server: &Server) {
    server.register(harmony_kube_loopback::resources::ResourceType {
        group: "monitoring.coreos.com".into(),
        version: "v1".into(),
        kind: "ServiceMonitor".into(),
        plural: "servicemonitors".into(),
        namespaced: true,
    });
}

/// The outcome of `unit` in an `apply --format json` outcome.
pub fn outcome_of<'a>(outcome: &'a Value, unit: &str) -> &'a Value {
    outcome["actions"].as_array().unwrap().iter().find(|a| a["unit"] == unit).unwrap_or_else(|| panic!("no outcome for {unit}: {outcome:#}"))
}

/// The action of `unit` in a JSON plan.
pub fn action_of<'a>(plan: &'a Value, unit: &str) -> &'a Value {
    plan["actions"].as_array().unwrap().iter().find(|a| a["unit"] == unit).unwrap_or_else(|| panic!("{unit} is not planned: {plan:#}"))
}

/// Every record of release `name` in namespace `ns` of `server`, oldest first.
pub async fn history_of(server: &Server, ns: &str, name: &str) -> Vec<release::Stored> {
    let kubeconfig = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(kubeconfig.path(), Server::kubeconfig(&[("prod", server)])).unwrap();
    let cluster = Cluster::from_kubeconfig(Some(kubeconfig.path()), "prod").await.unwrap();
    release::history(&cluster, ns, name).await.unwrap()
}

/// Runs blocking work (the `harmony` binary) off the test's runtime.
pub fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> tokio::task::JoinHandle<T> {
    tokio::task::spawn_blocking(f)
}
