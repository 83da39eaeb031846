//! The typed model: declarations as written, after lowering from KDL, with spans.
//!
//! Values that failed validation are `None` here (a diagnostic was already reported), so
//! later phases can keep checking what is valid without cascading errors. The compiled
//! repository ([`crate::compile`]) holds only validated, resolved values.

use std::collections::BTreeMap;

use crate::diag::Span;
use crate::source::FileId;
use crate::validate::{Duration, ImageRef, Name, NamespaceMatcher, PodSecurityLevel, PortMapping, ReleaseName, VolumeMount};

/// A value with the span it was written at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Where it was written.
    pub span: Span,
}

impl<T> Spanned<T> {
    /// Wraps a value.
    pub fn new(value: T, span: Span) -> Self {
        Spanned { value, span }
    }
}

/// Labels with the span of each entry.
pub type Labels = BTreeMap<String, Spanned<String>>;

/// Everything declared in the repository.
#[derive(Debug, Default)]
pub struct Declarations {
    /// `repository` settings from the root `harmony.kdl`.
    pub settings: Option<Settings>,
    /// Tenants.
    pub tenants: Vec<Tenant>,
    /// Clusters.
    pub clusters: Vec<Cluster>,
    /// Helm releases.
    pub releases: Vec<Release>,
    /// Edge fleets.
    pub fleets: Vec<Fleet>,
    /// Devices.
    pub devices: Vec<Device>,
    /// Device deployments.
    pub deployments: Vec<Deployment>,
}

impl Declarations {
    /// Appends another file's declarations.
    pub fn extend(&mut self, other: Declarations) {
        if self.settings.is_none() {
            self.settings = other.settings;
        }
        self.tenants.extend(other.tenants);
        self.clusters.extend(other.clusters);
        self.releases.extend(other.releases);
        self.fleets.extend(other.fleets);
        self.devices.extend(other.devices);
        self.deployments.extend(other.deployments);
    }
}

/// Repository settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The `repository` node's name.
    pub name: Spanned<String>,
    /// Default Kubernetes version for rendering.
    pub kube_version: Option<Spanned<semver::Version>>,
    /// Globs of KDL files to skip.
    pub exclude: Vec<Spanned<String>>,
}

/// The name of a declaration: the raw text (used for resolution) and the validated name.
#[derive(Debug, Clone)]
pub struct DeclName<T> {
    /// As written.
    pub raw: Spanned<String>,
    /// `None` when invalid (already reported).
    pub valid: Option<T>,
}

/// A tenant.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// Name.
    pub name: DeclName<Name>,
    /// Owned namespaces and patterns.
    pub namespaces: Vec<Spanned<NamespaceMatcher>>,
    /// The ServiceAccount to impersonate, if given.
    pub service_account: Option<Spanned<Name>>,
    /// Its namespace, if given.
    pub service_account_namespace: Option<Spanned<Name>>,
    /// Whether `namespaces` was given at all.
    pub has_namespaces: bool,
    /// The Pod Security level enforced on its namespaces, if given (default baseline).
    pub pod_security: Option<Spanned<PodSecurityLevel>>,
}

/// A Kubernetes cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Name.
    pub name: DeclName<Name>,
    /// kubeconfig context.
    pub context: Option<Spanned<String>>,
    /// Labels.
    pub labels: Labels,
    /// Kubernetes version.
    pub kube_version: Option<Spanned<semver::Version>>,
    /// API versions the cluster serves beyond Helm's defaults (`group/version` or
    /// `group/version/Kind`), for rendering without the cluster (`--offline`, `diff`).
    pub api_versions: Vec<Spanned<String>>,
}

/// Where a chart comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChartSource {
    /// A directory or `.tgz` in the repository (repository-relative path).
    Local(String),
    /// A chart fetched by `harmony charts lock`/`pull` (docs/charts.md): `oci://host/path/name`,
    /// an archive's `https://`/`http://` URL, or a chart name in a Helm repository (`repo`).
    Remote {
        /// The `chart` argument as written.
        chart: String,
        /// The Helm repository's URL (`repo=`).
        repo: Option<String>,
    },
}

/// A secret value resolved at apply time.
#[derive(Debug, Clone)]
pub struct SecretValue {
    /// Dotted values path.
    pub key: Spanned<String>,
    /// Where the value comes from.
    pub from: Spanned<SecretSource>,
}

/// The source of a secret value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "name")]
pub enum SecretSource {
    /// An environment variable of the applying process.
    Env(String),
    /// A file on the applying machine.
    File(String),
}

impl SecretSource {
    /// `env:VAR` (a valid environment variable name) or `file:PATH` (not empty), as `from=`
    /// and plan files write it ([`SecretSource`]'s `Display`); `None` for anything else.
    pub fn parse(s: &str) -> Option<SecretSource> {
        match s.split_once(':') {
            Some(("env", var)) if crate::validate::env_name(var).is_ok() => Some(SecretSource::Env(var.to_string())),
            Some(("file", path)) if !path.is_empty() => Some(SecretSource::File(path.to_string())),
            _ => None,
        }
    }
}

impl std::fmt::Display for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Env(v) => write!(f, "env:{v}"),
            SecretSource::File(p) => write!(f, "file:{p}"),
        }
    }
}

/// A Helm release.
#[derive(Debug, Clone)]
pub struct Release {
    /// Name (the Helm release name).
    pub name: DeclName<ReleaseName>,
    /// Owning tenant.
    pub tenant: Option<Spanned<String>>,
    /// Target cluster.
    pub cluster: Option<Spanned<String>>,
    /// Target namespace.
    pub namespace: Option<Spanned<Name>>,
    /// Chart.
    pub chart: Option<Spanned<ChartSource>>,
    /// Chart version: for a local chart an exact version (checked against Chart.yaml), for a
    /// remote one an exact version or a range, resolved as Helm does by `harmony charts lock`.
    pub version: Option<Spanned<String>>,
    /// Values files (repository-relative paths).
    pub values_files: Vec<Spanned<String>>,
    /// Inline values.
    pub values: Option<Spanned<serde_json::Value>>,
    /// Secret values.
    pub secrets: Vec<SecretValue>,
    /// Releases applied first.
    pub needs: Vec<Spanned<String>>,
    /// The file declaring it.
    pub file: FileId,
}

/// An edge fleet.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// Name.
    pub name: DeclName<Name>,
    /// NATS URLs.
    pub nats: Vec<Spanned<String>>,
    /// Agent version.
    pub agent_version: Option<Spanned<semver::Version>>,
    /// Public key path (repository-relative).
    pub signing_key: Option<Spanned<String>>,
    /// Admitted tenants.
    pub tenants: Vec<Spanned<String>>,
    /// How agent upgrades are rolled out.
    pub rollout: Option<Rollout>,
    /// How devices authenticate to NATS.
    pub auth: FleetAuthMode,
    /// Host paths granted to tenants beyond their data root (`allow-host-path`).
    pub host_paths: Vec<AllowHostPath>,
    /// Where the fleet's JetStream buckets are kept (`replicas`, `placement`).
    pub storage: harmony_schemas::plan::FleetStorage,
}

impl Fleet {
    /// The host paths this fleet grants `tenant` (sorted, deduplicated), as the plan carries them.
    pub fn grants(&self, tenant: &str) -> Vec<harmony_schemas::host_path::HostPathGrant> {
        let mut out: Vec<_> = self
            .host_paths
            .iter()
            .filter(|g| g.tenant.value == tenant)
            .map(|g| harmony_schemas::host_path::HostPathGrant { path: g.path.value.clone(), read_only: g.read_only })
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// `allow-host-path "/srv/shared" tenant=acme [read-only=#true]` in a fleet.
#[derive(Debug, Clone)]
pub struct AllowHostPath {
    /// The normalised host path (`harmony_schemas::host_path::normalize`), never protected.
    pub path: Spanned<String>,
    /// The tenant granted it.
    pub tenant: Spanned<String>,
    /// Only read-only mounts of it are allowed.
    pub read_only: bool,
}

/// How a fleet's devices authenticate to NATS (`auth` in a fleet).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FleetAuthMode {
    /// The operator manages NATS credentials (default).
    #[default]
    External,
    /// Harmony generates one nkey user per device with least-privilege permissions
    /// (`harmony fleet enroll`/`revoke`, docs/security.md); apply and status need the auth directory.
    Nkey,
}

/// An edge device.
#[derive(Debug, Clone)]
pub struct Device {
    /// Name (device id).
    pub name: DeclName<Name>,
    /// Its fleet.
    pub fleet: Option<Spanned<String>>,
    /// Labels.
    pub labels: Labels,
}

/// A selector over device labels.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Selector {
    /// `key=value` terms.
    pub match_labels: BTreeMap<String, String>,
    /// Match expressions.
    pub match_expressions: Vec<MatchExpression>,
}

/// A Kubernetes-style match expression.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "operator", rename_all = "PascalCase")]
pub enum MatchExpression {
    /// Label present with one of the values.
    In {
        /// Label key.
        key: String,
        /// Accepted values.
        values: Vec<String>,
    },
    /// Label absent or with none of the values.
    NotIn {
        /// Label key.
        key: String,
        /// Rejected values.
        values: Vec<String>,
    },
    /// Label present.
    Exists {
        /// Label key.
        key: String,
    },
    /// Label absent.
    DoesNotExist {
        /// Label key.
        key: String,
    },
}

impl Selector {
    /// Whether a device with these labels is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|e| match e {
                MatchExpression::In { key, values } => labels.get(key).is_some_and(|v| values.contains(v)),
                MatchExpression::NotIn { key, values } => labels.get(key).is_none_or(|v| !values.contains(v)),
                MatchExpression::Exists { key } => labels.contains_key(key),
                MatchExpression::DoesNotExist { key } => !labels.contains_key(key),
            })
    }

    /// Whether the selector has no terms.
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }
}

/// A container of a deployment.
#[derive(Debug, Clone)]
pub struct Container {
    /// Name.
    pub name: DeclName<Name>,
    /// Image.
    pub image: Option<Spanned<ImageRef>>,
    /// Entrypoint override.
    pub command: Vec<String>,
    /// Arguments.
    pub args: Vec<String>,
    /// Environment.
    pub env: BTreeMap<String, String>,
    /// Published ports.
    pub ports: Vec<PortMapping>,
    /// Mounts, with the span of each `volume` value.
    pub volumes: Vec<Spanned<VolumeMount>>,
    /// Restart policy (services).
    pub restart: Option<RestartPolicy>,
    /// Run-to-completion timeout (init containers).
    pub timeout: Option<Duration>,
    /// Whether this is an init container.
    pub init: bool,
}

/// A podman restart policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Always restart.
    Always,
    /// Restart on non-zero exit.
    OnFailure,
    /// Never restart.
    No,
}

/// The settle time of a `rollout` without `settle`
/// ([`harmony_schemas::plan::DEFAULT_SETTLE_S`]).
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(harmony_schemas::plan::DEFAULT_SETTLE_S);

fn is_default_settle(d: &Duration) -> bool {
    *d == DEFAULT_SETTLE
}

/// A rollout strategy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rollout {
    /// Cumulative percentages, strictly increasing, ending at 100.
    pub steps: Vec<u8>,
    /// Failures tolerated.
    pub max_failed: u32,
    /// Per-step health timeout.
    pub health_timeout: Duration,
    /// How long every planned service must have been observed running before a device counts
    /// healthy (whole seconds, shorter than `health_timeout` when given). Left out of the unit's
    /// content at [`DEFAULT_SETTLE`], so device plans of rollouts without `settle` hash as before
    /// the field existed (no update of every device when Harmony is upgraded).
    #[serde(skip_serializing_if = "is_default_settle")]
    pub settle: Duration,
    /// Restore previous plans on halt.
    pub auto_revert: bool,
}

/// A device deployment.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// Name.
    pub name: DeclName<Name>,
    /// Owning tenant.
    pub tenant: Option<Spanned<String>>,
    /// Fleet.
    pub fleet: Option<Spanned<String>>,
    /// Selector (None when absent or invalid).
    pub selector: Option<Spanned<Selector>>,
    /// Init containers then services, in declaration order.
    pub containers: Vec<Container>,
    /// Rollout strategy.
    pub rollout: Option<Rollout>,
}
