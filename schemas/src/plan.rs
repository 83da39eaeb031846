//! The saved plan file (`harmony plan --out FILE`, `harmony show FILE`, `harmony apply FILE`).
//!
//! A plan file is self-contained JSON: the format version, the source revision it was made
//! from, the plan's identity and one [`PlannedAction`] per unit. Each action keeps what drives
//! apply ([`ApplyFields`]: the action, the observed revision it was planned against, the desired
//! content hash, secret fingerprints) apart from what only explains it ([`Explanation`]:
//! reason and per-object diffs), so that `apply` can ignore the explanation entirely.
//!
//! No field ever holds a secret's plaintext: secret material appears only as keyed
//! fingerprints (`fp:<hex>`, HMAC-SHA256, see `docs/adr/0005-secret-fingerprints.md`).
//!
//! Compatibility: [`PLAN_FORMAT_VERSION`] is bumped on any change an older `harmony` could
//! misread; [`PlanFile::from_json`] refuses every other version with an error that says
//! which version the file has and which one this build reads.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The plan-file format version this build writes and reads.
pub const PLAN_FORMAT_VERSION: u32 = 4;

/// The value of [`PlanFile::kind`].
pub const PLAN_FILE_KIND: &str = "harmony-plan";

/// A saved plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanFile {
    /// Always `harmony-plan`.
    pub kind: String,
    /// Format version ([`PLAN_FORMAT_VERSION`]).
    pub format_version: u32,
    /// The repository revision the plan was made from.
    pub source: SourceRevision,
    /// What the plan was computed against.
    pub observed: ObservedSource,
    /// `sha256:<hex>` over every action's unit, action, desired content hash, observed revision
    /// and secret fingerprints (not over explanations, not over the source revision).
    pub identity: String,
    /// Identifies the fingerprint key (`kid:<hex>`), never the key itself: `apply` can tell
    /// "made with another key" from "the secret changed".
    pub fingerprint_key_id: String,
    /// Unit filters the plan was made with.
    pub filters: Filters,
    /// Action counts.
    pub summary: Summary,
    /// What each cluster's releases were rendered against (`.Capabilities`), by cluster name.
    /// Part of the identity: a plan rendered for other capabilities is another plan.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capabilities: BTreeMap<String, Capabilities>,
    /// One action per unit: destroys first (reverse dependency order), then the rest in apply order.
    pub actions: Vec<PlannedAction>,
    /// Fleets' phased rollouts this plan starts. Part of the identity (apply runs their steps
    /// as planned).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollouts: Vec<PlannedRollout>,
    /// Devices whose latest status reports drift: what their agent found changed behind its
    /// back and what it did (it repairs drift itself). Explanation only: no action, not part of
    /// the identity (sealed with the rest of the file); `apply` ignores it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_drift: Vec<DeviceDrift>,
    /// The repository's name (its `repository NAME` node), when it declares one: `apply`
    /// refuses the plan for a repository of another name. Part of the identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// What the plan is for: each cluster's kubeconfig context and API server, each fleet's
    /// NATS servers and signing key. `apply` refuses the plan when a context now leads
    /// elsewhere. Part of the identity.
    #[serde(default)]
    pub targets: PlanTargets,
    /// The charts releases are rendered from, stored once per plan by `sha256:` digest
    /// ([`ChartArchive::digest`]): `apply` renders from these, never from the repository.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub charts: BTreeMap<String, ChartArchive>,
    /// `hmac-sha256:<hex>` under the fingerprint key (which is never in the file) of the
    /// `sha256:` of the whole file but the seal (identity, explanations, summary, filters and
    /// source included): a plan edited without the key does not verify. `None`: the plan cannot
    /// be applied (e.g. `harmony diff`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<String>,
}

/// The targets a plan was made for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanTargets {
    /// Clusters by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub clusters: BTreeMap<String, ClusterTarget>,
    /// Fleets by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fleets: BTreeMap<String, FleetTarget>,
}

/// A cluster a plan was made for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterTarget {
    /// The kubeconfig context.
    pub context: String,
    /// The API server URL the context led to when planning (`None`: not read, `--offline`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

/// A fleet a plan was made for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FleetTarget {
    /// NATS server URLs.
    pub nats: Vec<String>,
    /// The fleet's Ed25519 public signing key (hex).
    pub signing_key: String,
    /// Where the fleet's JetStream buckets are kept (absent: one replica, no placement).
    #[serde(default, skip_serializing_if = "FleetStorage::is_default")]
    pub storage: FleetStorage,
}

/// Where a fleet's JetStream buckets are kept: the fleet's `replicas` and `placement`
/// (docs/language.md). Every bucket Harmony creates for the fleet — plans, status, heartbeats,
/// locks, rollouts, the agents object store — gets it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FleetStorage {
    /// Replicas of each bucket's stream: 1, 3 or 5.
    pub replicas: u8,
    /// The JetStream cluster the buckets are placed in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Server tags every server holding a replica must have.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl Default for FleetStorage {
    fn default() -> Self {
        FleetStorage { replicas: 1, cluster: None, tags: Vec::new() }
    }
}

impl FleetStorage {
    /// One replica, no placement (what a fleet without `replicas` and `placement` gets).
    pub fn is_default(&self) -> bool {
        *self == FleetStorage::default()
    }
}

impl std::fmt::Display for FleetStorage {
    /// `replicas 3, placement cluster=east tags=ssd,eu` (the language's words).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "replicas {}", self.replicas)?;
        if self.cluster.is_some() || !self.tags.is_empty() {
            write!(f, ", placement")?;
            if let Some(c) = &self.cluster {
                write!(f, " cluster={c}")?;
            }
            if !self.tags.is_empty() {
                write!(f, " tags={}", self.tags.join(","))?;
            }
        } else {
            write!(f, ", no placement")?;
        }
        Ok(())
    }
}

/// A chart's files, in the order the chart loader read them (`.helmignore` applied).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChartArchive {
    /// The files.
    pub files: Vec<ChartFile>,
}

/// One chart file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChartFile {
    /// Path inside the chart (`templates/deployment.yaml`, `charts/sub-1.0.0.tgz`).
    pub name: String,
    /// Contents, base64 (standard alphabet, padded).
    pub data: String,
}

impl ChartArchive {
    /// `sha256:` over the canonical JSON of the files: the key the chart is stored under.
    pub fn digest(&self) -> String {
        crate::encoding::content_hash(self)
    }
}

/// What `apply` executes for one action, besides [`ApplyFields::release`]'s rendering inputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Payload {
    /// Install or upgrade a Helm release.
    Release(ReleasePayload),
    /// Uninstall a Helm release.
    ReleaseDelete(ReleaseTarget),
    /// Repair drift of a Helm release whose unit did not change: re-apply, without a new
    /// revision, the objects of its deployed revision that [`ApplyFields::drift`] names.
    ReleaseRepair(ReleaseTarget),
    /// Create or update a tenant's access on a cluster.
    TenantAccess(TenantAccessPayload),
    /// Remove a tenant's access from a cluster (what the cluster holds of the tenant's).
    TenantAccessDelete(TenantTarget),
    /// Write a device plan.
    DevicePlan(DevicePlanPayload),
    /// Delete a device plan.
    DevicePlanDelete(DeviceTarget),
    /// A device's agent version: written by its device plan (the plan's `agent_version` and
    /// `agent` artifact), so this action's outcome is that device plan's.
    Agent(DeviceTarget),
}

/// Where a release is and who writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseTarget {
    /// Cluster name.
    pub cluster: String,
    /// kubeconfig context.
    pub context: String,
    /// Namespace.
    pub namespace: String,
    /// Release name.
    pub name: String,
    /// The user apply impersonates (`system:serviceaccount:<ns>:<name>`, the tenant's);
    /// `None` for a delete whose namespace has no tenant in the repository any more: apply
    /// then uses the namespace's tenant as found on the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impersonate: Option<String>,
}

/// A release to install or upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleasePayload {
    /// Where, and as whom.
    pub target: ReleaseTarget,
    /// Tenant.
    pub tenant: String,
    /// The chart: a key of [`PlanFile::charts`].
    pub chart: String,
    /// User values (chart defaults excluded), without any `secret-value`.
    pub values: serde_json::Value,
    /// `secret-value`s, by reference: resolved at apply, checked against [`ApplyFields::secrets`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_values: Vec<SecretValueRef>,
    /// Content hash of the compiled unit (recorded in the release record).
    pub unit_hash: String,
}

/// A `secret-value` by reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretValueRef {
    /// Dotted values path.
    pub key: String,
    /// `env:VAR` or `file:PATH`.
    pub from: String,
}

/// A tenant's access on a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantAccessPayload {
    /// Cluster name.
    pub cluster: String,
    /// kubeconfig context.
    pub context: String,
    /// Tenant.
    pub tenant: String,
    /// Namespaces created and granted.
    pub namespaces: Vec<String>,
    /// The ServiceAccount releases are applied as.
    pub service_account: String,
    /// Its namespace.
    pub service_account_namespace: String,
    /// Pod Security level the namespaces enforce (`privileged`, `baseline`, `restricted`).
    pub pod_security: String,
}

/// A tenant on a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantTarget {
    /// Cluster name.
    pub cluster: String,
    /// kubeconfig context.
    pub context: String,
    /// Tenant.
    pub tenant: String,
}

/// A device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceTarget {
    /// Fleet.
    pub fleet: String,
    /// Device.
    pub device: String,
}

/// A device plan to write: unsigned (apply signs it with the fleet's key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DevicePlanPayload {
    /// Where.
    pub target: DeviceTarget,
    /// The device plan, generation included.
    pub plan: crate::fleet::DevicePlan,
}

/// The reason of a release's no-op whose unit content changed but renders exactly the objects
/// deployed (e.g. a value no template reads): apply changes no object, only the release record
/// (a new revision holding the new values, as Helm's upgrade would, when the values changed).
pub const RECORD_ONLY_REASON: &str = "renders the objects already deployed: apply changes no object, only the release record";

/// A phased rollout `harmony apply` will run: which device-plan writes go in which step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlannedRollout {
    /// Fleet.
    pub fleet: String,
    /// The rollout's id (`sha256:` over what is rolled out and its desired content): the record
    /// in `harmony-rollouts` it starts, or continues when the record has this id.
    pub id: String,
    /// What is rolled out: `deployment <name>`, `agent <version>`.
    pub what: Vec<String>,
    /// Steps in order.
    pub steps: Vec<PlannedStep>,
    /// Failures tolerated before halting.
    pub max_failed: u32,
    /// Seconds each step may take to become healthy.
    pub health_timeout_s: u64,
    /// Seconds every planned service must have been observed running before a device counts
    /// healthy (left out when [`DEFAULT_SETTLE_S`], so plans of rollouts without `settle` read
    /// and hash as before the field existed).
    #[serde(default = "default_settle_s", skip_serializing_if = "is_default_settle_s")]
    pub settle_s: u64,
    /// Whether a halt writes the previous plans back.
    pub auto_revert: bool,
    /// What apply finds of this rollout in `harmony-rollouts` (none: a new rollout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continues: Option<RolloutContinuation>,
    /// The KV revision of the fleet's record in `harmony-rollouts` when planned (none: there was
    /// none). Apply compares it before the rollout writes anything: a record that moved since
    /// (another apply started, resumed, finished or reverted a rollout) makes the rollout's
    /// actions stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_revision: Option<u64>,
}

/// How an apply continues a rollout of the same desired state that an earlier apply left
/// unfinished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum RolloutContinuation {
    /// Resumed where it stopped: steps already healthy are not written or waited for again.
    Resume {
        /// Steps already healthy.
        healthy_steps: usize,
    },
    /// Its auto-revert was interrupted: apply writes the remaining previous plans back, and
    /// nothing of the rollout (the rolled-out devices' updates in this plan are not written).
    FinishRevert,
}

/// The settle time of a rollout whose `rollout` block has no `settle`, seconds.
pub const DEFAULT_SETTLE_S: u64 = 10;

fn default_settle_s() -> u64 {
    DEFAULT_SETTLE_S
}

fn is_default_settle_s(s: &u64) -> bool {
    *s == DEFAULT_SETTLE_S
}

/// A device's drift as its latest status reports it (at most
/// [`crate::fleet::MAX_DRIFT`] findings, each text bounded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceDrift {
    /// Fleet.
    pub fleet: String,
    /// Device.
    pub device: String,
    /// What the agent found and did, oldest first.
    pub drift: Vec<crate::fleet::Drift>,
}

/// One step of a [`PlannedRollout`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlannedStep {
    /// Cumulative percentage of the rollout's devices.
    pub percent: u8,
    /// Devices first reached in this step (in rollout order).
    pub devices: Vec<String>,
}

impl PlannedRollout {
    /// The rollout in words: a headline and one line per step (`harmony plan`, `harmony apply`).
    pub fn describe(&self) -> String {
        let total: usize = self.steps.iter().map(|s| s.devices.len()).sum();
        let mut out = format!(
            "fleet {}: rollout of {} over {total} devices: {} steps, max-failed {}, health-timeout {}s, settle {}s{}\n",
            self.fleet,
            self.what.join(", "),
            self.steps.len(),
            self.max_failed,
            self.health_timeout_s,
            self.settle_s,
            if self.auto_revert { ", auto-revert" } else { "" }
        );
        for (i, s) in self.steps.iter().enumerate() {
            let devices = if s.devices.is_empty() { "(no devices)".to_string() } else { s.devices.join(" ") };
            out.push_str(&format!("  step {} ({:>3} %): {devices}\n", i + 1, s.percent));
        }
        match &self.continues {
            None => {}
            Some(RolloutContinuation::Resume { healthy_steps }) => out
                .push_str(&format!("  resumes the unfinished rollout of this desired state: {healthy_steps} of {} steps already healthy\n", self.steps.len())),
            Some(RolloutContinuation::FinishRevert) => out.push_str(
                "  finishes the interrupted auto-revert of this rollout: the previous plans are written back, its devices' updates are not written\n",
            ),
        }
        out
    }
}

/// What Helm's `.Capabilities` hold when a cluster's releases are rendered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// `.Capabilities.KubeVersion.Version`, e.g. `v1.33.1`.
    pub kube_version: String,
    /// `.Capabilities.APIVersions`: `group/version` and `group/version/Kind` (`v1`, `v1/Pod`
    /// for the core group), sorted.
    pub api_versions: Vec<String>,
    /// Where they come from.
    pub source: CapabilitiesSource,
}

/// Where [`Capabilities`] come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CapabilitiesSource {
    /// The API server: its version and its discovery (every group version and every
    /// `group/version/Kind` it serves), replacing Helm's default set, as `helm upgrade` does
    /// against a cluster.
    Discovery,
    /// The repository: the cluster's `kube-version` and `api-versions`, added to Helm's
    /// default set, as `helm template --kube-version --api-versions` does (`--offline`, `diff`).
    Declared,
}

/// How a release is rendered: Helm's `.Release` scope for the planned revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRender {
    /// The cluster whose [`Capabilities`] it is rendered against.
    pub cluster: String,
    /// `.Release.Revision`: the revision apply writes (the latest record's plus one).
    pub revision: u64,
    /// `.Release.IsUpgrade` (`.Release.IsInstall` is its negation): a deployed revision exists.
    pub is_upgrade: bool,
    /// Keyed fingerprint (`fp:<hex>`, like secret fingerprints) of the Helm `manifest` the
    /// release record will hold, when the release was rendered; apply writes exactly this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
}

/// Where the plan came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceRevision {
    /// The git commit checked out, when the repository is in git.
    pub commit: Option<String>,
    /// Whether the working tree had uncommitted changes under the repository directory.
    pub dirty: bool,
    /// `sha256:` over every compiled unit's id and content hash.
    pub repository_hash: String,
}

/// What the plan was computed against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ObservedSource {
    /// No observed state: every unit is planned as a create.
    None,
    /// The targets, read live (`harmony plan`).
    Live {
        /// What was read: `cluster <name>`, `fleet <name>`.
        targets: Vec<String>,
        /// `sha256:` of the observed state's canonical JSON.
        hash: String,
    },
    /// Observed state read from a file (`harmony plan --observed FILE`).
    File {
        /// `sha256:` of the observed state's canonical JSON.
        hash: String,
    },
    /// The repository compiled at another git revision (`harmony diff --base`).
    Revision {
        /// The base revision as given.
        base: String,
        /// Its commit.
        commit: Option<String>,
    },
}

/// Unit filters (`--target`, `--exclude`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Filters {
    /// `--target` values; empty: every unit. Targets pull in what they depend on.
    pub targets: Vec<String>,
    /// `--exclude` values; excluded units take what depends on them along.
    pub excludes: Vec<String>,
    /// Targets left out whole: `clusters` (`--skip-clusters`), `fleets` (`--skip-fleets`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

/// Action counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// Creates.
    pub create: usize,
    /// Updates.
    pub update: usize,
    /// Deletes.
    pub delete: usize,
    /// Replaces (delete then create).
    pub replace: usize,
    /// Units already as desired.
    pub noop: usize,
}

impl Summary {
    /// Counts of a list of actions.
    pub fn of(actions: &[PlannedAction]) -> Summary {
        let mut s = Summary::default();
        for a in actions {
            match a.apply.action {
                Action::Create => s.create += 1,
                Action::Update => s.update += 1,
                Action::Delete => s.delete += 1,
                Action::Replace => s.replace += 1,
                Action::Noop => s.noop += 1,
            }
        }
        s
    }
    /// Whether anything would change.
    pub fn has_changes(&self) -> bool {
        self.create + self.update + self.delete + self.replace > 0
    }
    /// `Plan: N to add, M to change, K to destroy.` (a replace adds one and destroys one).
    pub fn line(&self) -> String {
        format!("Plan: {} to add, {} to change, {} to destroy.", self.create + self.replace, self.update, self.delete + self.replace)
    }
}

/// What happens to a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Not observed: create it.
    Create,
    /// Observed and different: change it in place.
    Update,
    /// Observed but no longer in the repository (prune): delete it.
    Delete,
    /// Observed and different in a way that cannot be updated in place: delete, then create.
    Replace,
    /// Observed and as desired.
    Noop,
}

impl Action {
    /// The word used in outputs.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Replace => "replace",
            Action::Noop => "no-op",
        }
    }
    /// The one-character sign used in outputs (`+`, `~`, `-`, `±`, ` `).
    pub fn sign(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Delete => "-",
            Action::Replace => "-/+",
            Action::Noop => " ",
        }
    }
}

/// One unit's planned action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlannedAction {
    /// Unit id, e.g. `release/okd-prod/acme-prod/web`.
    pub unit: String,
    /// What drives apply.
    pub apply: ApplyFields,
    /// What only explains the action to a reader.
    pub explain: Explanation,
}

/// The fields `apply` acts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyFields {
    /// The action.
    pub action: Action,
    /// The revision the target had when planned; `apply` refuses the action if it moved
    /// (compare-and-set). `None` when the unit was not observed.
    pub observed: Option<ObservedRevision>,
    /// `sha256:` content hash of the desired unit (`None` for deletes).
    pub desired_hash: Option<String>,
    /// Units this one is applied after.
    pub depends_on: Vec<String>,
    /// Fingerprints of the secret material the action writes; `apply` re-resolves each
    /// `secret-value` and refuses if its fingerprint differs.
    pub secrets: Vec<SecretFingerprint>,
    /// For a release: the `.Release` scope it is rendered with and what it renders to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<ReleaseRender>,
    /// What apply writes (`None`: nothing to write, or a plan that cannot be applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Payload>,
    /// For a release: live objects of its deployed revision whose fields Harmony manages
    /// differ from what Harmony applied, or that are missing (drift). `apply` re-applies them
    /// (server-side apply as `harmony`, force), even when nothing else changes, without a new
    /// revision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<DriftedObject>,
}

/// A live object that drifted from what Harmony applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DriftedObject {
    /// `Kind/namespace/name`.
    pub key: String,
    /// The live object's resourceVersion when planned; `None`: it is missing live (apply
    /// recreates it).
    pub resource_version: Option<String>,
}

/// A target's revision at planning time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ObservedRevision {
    /// A Helm release: the release revision and the resourceVersion of its release record
    /// (the `sh.helm.release.v1.<name>.v<N>` Secret).
    HelmRelease {
        /// Helm release revision.
        revision: u64,
        /// resourceVersion of the release record.
        resource_version: String,
    },
    /// A JetStream KV entry (device plans, agent versions).
    KvEntry {
        /// KV revision of the entry.
        revision: u64,
    },
    /// Kubernetes objects (tenant access): resourceVersion by `Kind/namespace/name`.
    Objects {
        /// resourceVersions.
        resource_versions: BTreeMap<String, String>,
    },
    /// A unit compiled from another git revision (`harmony diff`): its content hash.
    Compiled {
        /// `sha256:` content hash at the base revision.
        hash: String,
    },
}

/// A secret's fingerprint before and after.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretFingerprint {
    /// What the secret is: `secret-value <values path>` or `<Kind>/<namespace>/<name> <field>.<key>`.
    pub name: String,
    /// Where a `secret-value` is resolved from at apply (`env:VAR`, `file:PATH`); `None` for
    /// values inside rendered objects.
    pub source: Option<String>,
    /// Fingerprint of the observed value (`None`: not observed).
    pub before: Option<String>,
    /// Fingerprint of the desired value (`None`: removed, or a `secret-value` that could not
    /// be resolved when planning).
    pub after: Option<String>,
    /// Derived from before/after.
    pub status: SecretStatus,
}

/// How a secret changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SecretStatus {
    /// New.
    Added,
    /// Fingerprints differ.
    Changed,
    /// Fingerprints equal.
    Unchanged,
    /// Gone.
    Removed,
    /// A `secret-value` source that could not be read when planning; it is resolved at apply.
    Unresolved,
}

/// Why the action, and what changes object by object. Never read by `apply`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Explanation {
    /// One sentence.
    pub reason: String,
    /// Changed objects (and, for no-ops, nothing), keyed by kind/namespace/name, in key order.
    pub objects: Vec<ObjectChange>,
}

/// One object's change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ObjectChange {
    /// `Kind/namespace/name` (`Kind/name` for cluster-scoped objects; the unit id for
    /// device plans, agents and tenant access).
    pub key: String,
    /// The object's action.
    pub action: Action,
    /// Unified diff of the redacted YAML (3 lines of context).
    pub diff: String,
    /// Lines added by the diff.
    pub added: usize,
    /// Lines removed by the diff.
    pub removed: usize,
    /// Why the object must be replaced, when it must.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_reason: Option<String>,
    /// The live object drifted from what Harmony applied (the diff is live → applied; a
    /// `create` is an object missing live, to be recreated).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drift: bool,
}

/// Why a plan file cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PlanFileError {
    /// Not JSON, or not a plan.
    #[error("not a harmony plan file: {0}")]
    NotAPlan(String),
    /// Another format version.
    #[error(
        "plan file format version {found} is not supported: this harmony reads version {supported} only; re-create the plan with `harmony plan --out FILE` using this harmony"
    )]
    Version {
        /// The file's version.
        found: u64,
        /// This build's.
        supported: u32,
    },
    /// The right version but malformed.
    #[error("invalid plan file (format version {PLAN_FORMAT_VERSION}): {0}")]
    Invalid(String),
    /// The file cannot be read, or holds more than [`MAX_PLAN_FILE_BYTES`].
    #[error("{0}")]
    Read(String),
}

/// The most bytes a plan file may hold (1 GiB): a plan file is input, bounded before it is
/// read whole.
pub const MAX_PLAN_FILE_BYTES: u64 = 1 << 30;

impl PlanFile {
    /// Serialises the plan: pretty JSON with a final newline. Deterministic.
    pub fn to_json(&self) -> String {
        pretty(self)
    }

    /// Reads and loads the plan file at `path`, refusing one larger than
    /// [`MAX_PLAN_FILE_BYTES`] before reading it whole (the size is checked again while reading:
    /// a FIFO or a growing file reports another length).
    pub fn read(path: &std::path::Path) -> Result<PlanFile, PlanFileError> {
        PlanFile::read_at_most(path, MAX_PLAN_FILE_BYTES)
    }

    fn read_at_most(path: &std::path::Path, max: u64) -> Result<PlanFile, PlanFileError> {
        use std::io::Read as _;
        let failed = |e: std::io::Error| PlanFileError::Read(format!("reading {}: {e}", path.display()));
        let size = std::fs::metadata(path).map_err(failed)?.len();
        let too_big = || PlanFileError::Read(format!("{} holds more than a plan file may hold ({max} bytes)", path.display()));
        if size > max {
            return Err(too_big());
        }
        let mut text = String::new();
        std::fs::File::open(path).map_err(failed)?.take(max + 1).read_to_string(&mut text).map_err(failed)?;
        if text.len() as u64 > max {
            return Err(too_big());
        }
        PlanFile::from_json(&text)
    }

    /// Loads a plan, refusing any format version but [`PLAN_FORMAT_VERSION`].
    pub fn from_json(text: &str) -> Result<PlanFile, PlanFileError> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| PlanFileError::NotAPlan(e.to_string()))?;
        let obj = v.as_object().ok_or_else(|| PlanFileError::NotAPlan("the file is JSON but not an object".into()))?;
        match obj.get("kind").and_then(|k| k.as_str()) {
            Some(PLAN_FILE_KIND) => {}
            Some(other) => return Err(PlanFileError::NotAPlan(format!("field `kind` is {other:?}, expected {PLAN_FILE_KIND:?}"))),
            None => return Err(PlanFileError::NotAPlan(format!("field `kind` is missing, expected {PLAN_FILE_KIND:?}"))),
        }
        let version = obj
            .get("format_version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| PlanFileError::NotAPlan("field `format_version` is missing or not a non-negative integer".into()))?;
        if version != u64::from(PLAN_FORMAT_VERSION) {
            return Err(PlanFileError::Version { found: version, supported: PLAN_FORMAT_VERSION });
        }
        serde_json::from_value(v).map_err(|e| PlanFileError::Invalid(e.to_string()))
    }
}

/// The format version of [`ApplyOutcome`].
pub const APPLY_OUTCOME_FORMAT_VERSION: u32 = 1;

/// The value of [`ApplyOutcome::kind`].
pub const APPLY_OUTCOME_KIND: &str = "harmony-apply-outcome";

/// What `harmony apply PLANFILE --format json` prints: the outcome of each action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyOutcome {
    /// Always `harmony-apply-outcome`.
    pub kind: String,
    /// [`APPLY_OUTCOME_FORMAT_VERSION`].
    pub format_version: u32,
    /// The applied plan's identity (as in the file, whether or not it verified).
    pub plan_identity: String,
    /// Why the whole plan was refused before anything was written (`None`: it was not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// One entry per action of the plan, in plan order (empty when refused).
    pub actions: Vec<ActionResult>,
    /// Per fleet the plan wrote to: what its apply found and left beyond the actions (an
    /// earlier apply that did not complete, the planned rollout's end). Absent when no fleet
    /// was written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fleets: Vec<FleetOutcome>,
}

/// One fleet's apply, beyond its actions' outcomes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FleetOutcome {
    /// Fleet.
    pub fleet: String,
    /// The previous apply of this fleet did not complete (its journal was left unfinished):
    /// this plan was made from the bucket as that apply left it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<InterruptedApply>,
    /// The planned rollout's record as this apply left it (its state says whether it completed,
    /// halted or was reverted; its `failed` which devices failed in which step and why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<crate::fleet::RolloutRecord>,
    /// The previous plans an auto-revert wrote back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reverted: Vec<RevertWrite>,
}

/// An earlier apply of a fleet that did not complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InterruptedApply {
    /// Who ran it (`user@host pid N`).
    pub holder: String,
    /// When it started (Unix milliseconds).
    pub started_ms: u64,
    /// Writes it planned.
    pub writes: usize,
    /// Writes its journal recorded as done.
    pub done: usize,
    /// Where its journal was kept.
    pub journal: String,
}

/// One device's previous plan written back by a rollout's auto-revert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevertWrite {
    /// Device.
    pub device: String,
    /// The plan entry's new KV revision (`None`: not written, see `error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// Why writing it back failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl FleetOutcome {
    /// The planned rollout halted (reverted or not): the apply failed.
    pub fn rollout_failed(&self) -> bool {
        use crate::fleet::RolloutState;
        self.rollout.as_ref().is_some_and(|r| matches!(r.state, RolloutState::Halted | RolloutState::Reverting | RolloutState::Reverted))
    }
}

/// One action's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionResult {
    /// Unit id.
    pub unit: String,
    /// The planned action.
    pub action: Action,
    /// What happened.
    pub outcome: Outcome,
    /// In words (never a secret).
    pub message: String,
    /// For `stale`: the revision the plan expected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// For `stale`: the revision found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found: Option<String>,
}

/// What happened to one action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Written as planned.
    Applied,
    /// Not written: its target moved since planning (or a `secret-value` changed).
    Stale,
    /// Writing failed (or what apply would write differs from the plan).
    Failed,
    /// Not attempted: a unit it depends on was not applied, or `--refuse-stale=all`.
    Skipped,
    /// Nothing to do.
    Noop,
}

impl Outcome {
    /// The word used in outputs.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Stale => "stale",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
            Outcome::Noop => "noop",
        }
    }
}

impl ApplyOutcome {
    /// The exit code of `harmony apply`: 0 every action applied (or nothing to do), 1 the plan
    /// was refused, an action failed (or was skipped) or a planned rollout halted, 2 some actions
    /// were refused as stale and none failed.
    pub fn exit_code(&self) -> u8 {
        if self.refused.is_some() || self.actions.iter().any(|a| matches!(a.outcome, Outcome::Failed)) || self.fleets.iter().any(FleetOutcome::rollout_failed) {
            1
        } else if self.actions.iter().any(|a| a.outcome == Outcome::Stale) {
            2
        } else if self.actions.iter().any(|a| a.outcome == Outcome::Skipped) {
            1
        } else {
            0
        }
    }

    /// Serialises the outcome: pretty JSON with a final newline.
    pub fn to_json(&self) -> String {
        pretty(self)
    }

    /// Serialises the outcome on one line, without a newline: the last line of `harmony apply
    /// --format json` (JSON Lines).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The format version of [`ApplyUnit`].
pub const APPLY_UNIT_FORMAT_VERSION: u32 = 1;

/// The value of [`ApplyUnit::kind`].
pub const APPLY_UNIT_KIND: &str = "harmony-apply-unit";

/// A line of `harmony apply --format json` (JSON Lines): one unit's result, printed as the unit
/// finished. Each unit has exactly one such line; the last line is the [`ApplyOutcome`], which
/// lists the same results in plan order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApplyUnit {
    /// Always `harmony-apply-unit`.
    pub kind: String,
    /// [`APPLY_UNIT_FORMAT_VERSION`].
    pub format_version: u32,
    /// Milliseconds since the apply started executing the plan.
    pub elapsed_ms: u64,
    /// The unit's result, as the outcome lists it.
    #[serde(flatten)]
    pub result: ActionResult,
}

impl ApplyUnit {
    /// `result`'s line, `elapsed_ms` into the apply.
    pub fn new(result: ActionResult, elapsed_ms: u64) -> ApplyUnit {
        ApplyUnit { kind: APPLY_UNIT_KIND.to_string(), format_version: APPLY_UNIT_FORMAT_VERSION, elapsed_ms, result }
    }

    /// The line, without a newline.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Pretty JSON with a final newline (plan files, outcomes and their schemas hold only strings,
/// numbers and string-keyed maps: serialising cannot fail).
fn pretty<T: Serialize>(value: &T) -> String {
    let mut s = serde_json::to_string_pretty(value).unwrap_or_default();
    s.push('\n');
    s
}

/// The JSON Schema of [`ApplyOutcome`], as written to `docs/schemas/apply-outcome.schema.json`.
pub fn apply_outcome_schema_json() -> String {
    pretty(&schemars::schema_for!(ApplyOutcome))
}

/// The JSON Schema of [`ApplyUnit`], as written to `docs/schemas/apply-unit.schema.json`.
pub fn apply_unit_schema_json() -> String {
    pretty(&schemars::schema_for!(ApplyUnit))
}

/// The JSON Schema of the plan file, as written to `docs/schemas/plan.schema.json`.
pub fn plan_schema_json() -> String {
    pretty(&schemars::schema_for!(PlanFile))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plan file larger than the bound is refused unread; so is a FIFO (whose size says 0)
    /// that streams more than the bound: reading stops one byte past it.
    #[test]
    fn a_plan_file_is_read_within_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.json");
        std::fs::write(&big, vec![b' '; 2048]).unwrap();
        let err = PlanFile::read_at_most(&big, 1024).unwrap_err().to_string();
        assert!(err.contains("holds more than a plan file may hold (1024 bytes)"), "{err}");
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || {
                use std::io::Write as _;
                let mut f = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
                // Endless input: the reader must stop on its own. The write fails once it closes.
                while f.write_all(&[b' '; 4096]).is_ok() {}
            })
        };
        let err = PlanFile::read_at_most(&fifo, 1024).unwrap_err().to_string();
        assert!(err.contains("holds more than a plan file may hold"), "{err}");
        writer.join().unwrap();
        assert!(matches!(PlanFile::read(&dir.path().join("none.json")), Err(PlanFileError::Read(_))));
    }
}
