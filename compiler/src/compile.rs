//! The compiled repository: units with content hashes and the dependency graph.
//!
//! Everything here is resolved and valid by construction: [`compile`] only runs when checking
//! found no errors, and every field is a validated type.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use rayon::prelude::*;
use serde::Serialize;
use serde_json::Value as Json;

use crate::check::{Facts, Index};
use crate::hash::content_hash;
use crate::model::*;
use crate::validate::{Duration, ImageRef, Name, NamespaceMatcher, PodSecurityLevel, PortMapping, ReleaseName, VolumeMount};

/// Default Kubernetes version when the repository sets none.
pub const DEFAULT_KUBE_VERSION: semver::Version = semver::Version::new(1, 30, 0);
/// ServiceAccount impersonated for a tenant that names none.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "harmony-deployer";
/// Timeout of an init container that sets none.
pub const DEFAULT_INIT_TIMEOUT: Duration = Duration::from_secs(300);

/// A unit's identity, e.g. `release/okd-prod/acme-prod/web`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct UnitId(String);

impl UnitId {
    fn new(parts: &[&str]) -> Self {
        UnitId(parts.join("/"))
    }
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The unit kind (the first path segment).
    pub fn kind(&self) -> &str {
        self.0.split('/').next().unwrap_or("")
    }
}

impl fmt::Display for UnitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One unit of the compiled repository.
#[derive(Debug, Clone, Serialize)]
pub struct Unit {
    /// Identity.
    pub id: UnitId,
    /// `sha256:<hex>` over the canonical serialisation of `content`.
    pub hash: String,
    /// Units that must be applied first.
    pub deps: BTreeSet<UnitId>,
    /// What the unit holds.
    pub content: UnitContent,
}

/// The kinds of unit.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[allow(clippy::large_enum_variant)] // a few hundred bytes per unit; boxing would only add indirection
pub enum UnitContent {
    /// Namespaces, ServiceAccount, Role and RoleBinding of a tenant on a cluster.
    TenantAccess(TenantAccess),
    /// A Helm release.
    Release(ReleaseUnit),
    /// The agent version a device must run.
    Agent(AgentUnit),
    /// A device's compiled plan.
    DevicePlan(DevicePlanUnit),
}

/// A tenant's access on one cluster.
#[derive(Debug, Clone, Serialize)]
pub struct TenantAccess {
    /// Tenant.
    pub tenant: Name,
    /// Cluster.
    pub cluster: Name,
    /// kubeconfig context.
    pub context: String,
    /// What the tenant owns (exact names and patterns).
    pub owns: Vec<NamespaceMatcher>,
    /// Namespaces to create: the tenant's exact namespaces plus those its releases on this cluster use.
    pub namespaces: Vec<Name>,
    /// The impersonated ServiceAccount.
    pub service_account: ServiceAccountRef,
    /// The Pod Security level enforced on its namespaces.
    pub pod_security: PodSecurityLevel,
}

/// A ServiceAccount reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceAccountRef {
    /// Name.
    pub name: Name,
    /// Namespace.
    pub namespace: Name,
}

impl ServiceAccountRef {
    /// The Kubernetes user name impersonated: `system:serviceaccount:<ns>:<name>`.
    pub fn username(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }
}

/// A chart as the release uses it.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum ChartRef {
    /// In the repository.
    Local {
        /// Repository-relative path.
        path: String,
        /// Chart name (from Chart.yaml, or the archive's file name).
        name: String,
        /// Chart version, when known.
        version: Option<String>,
        /// SHA-256 over the chart's files.
        digest: String,
    },
    /// A remote chart as `harmony.lock` pins it: loaded by digest from the chart cache or the
    /// vendor directory (`harmony charts pull`), never fetched by the compiler.
    Remote {
        /// The `chart` as declared (`oci://…`, an archive URL, or a name in `repo`).
        chart: String,
        /// The Helm repository (`repo=`).
        #[serde(skip_serializing_if = "Option::is_none")]
        repo: Option<String>,
        /// Chart name.
        name: String,
        /// The exact version locked.
        version: String,
        /// `sha256:…` of the chart archive, as locked.
        digest: String,
    },
}

/// A secret reference: where the value comes from, never the value.
#[derive(Debug, Clone, Serialize)]
pub struct SecretRef {
    /// Dotted values path.
    pub key: String,
    /// Source.
    pub from: SecretSource,
}

/// A Helm release unit.
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseUnit {
    /// Helm release name.
    pub name: ReleaseName,
    /// Tenant.
    pub tenant: Name,
    /// Cluster.
    pub cluster: Name,
    /// kubeconfig context.
    pub context: String,
    /// Namespace.
    pub namespace: Name,
    /// The ServiceAccount impersonated to apply it.
    pub impersonate: ServiceAccountRef,
    /// Chart.
    pub chart: ChartRef,
    /// User-supplied values (files then inline, coalesced; chart defaults excluded).
    pub values: Json,
    /// Secret values, by reference.
    pub secrets: Vec<SecretRef>,
    /// Releases that must be applied first.
    pub needs: Vec<ReleaseName>,
    /// Kubernetes version for rendering.
    pub kube_version: String,
    /// API versions the cluster declares beyond Helm's defaults, for rendering without the
    /// cluster (`--offline`, `diff`); a live plan uses the cluster's discovery instead.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub api_versions: Vec<String>,
}

/// An agent-version unit.
#[derive(Debug, Clone, Serialize)]
pub struct AgentUnit {
    /// Fleet.
    pub fleet: Name,
    /// Device.
    pub device: Name,
    /// Version to run.
    pub version: String,
}

/// A container in a device plan.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerSpec {
    /// Name.
    pub name: Name,
    /// Image.
    pub image: ImageRef,
    /// Entrypoint override.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Arguments.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Environment.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Ports.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortMapping>,
    /// Mounts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeMount>,
}

/// An init container: runs to completion before services.
#[derive(Debug, Clone, Serialize)]
pub struct InitContainerSpec {
    /// The container.
    #[serde(flatten)]
    pub container: ContainerSpec,
    /// How long it may run.
    pub timeout: Duration,
}

/// A service container.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceSpec {
    /// The container.
    #[serde(flatten)]
    pub container: ContainerSpec,
    /// Restart policy.
    pub restart: RestartPolicy,
}

/// One deployment's workload, shared by every device plan that runs it.
#[derive(Debug, Clone, Serialize)]
pub struct Workload {
    /// Deployment name.
    pub deployment: Name,
    /// Tenant.
    pub tenant: Name,
    /// Init containers, in order.
    pub init_containers: Vec<InitContainerSpec>,
    /// Services.
    pub containers: Vec<ServiceSpec>,
    /// Rollout strategy, when given.
    pub rollout: Option<Rollout>,
    /// Selector (for explanation).
    pub selector: Selector,
    /// Host paths the fleet grants the tenant beyond its data root (`allow-host-path`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub host_paths: Vec<harmony_schemas::host_path::HostPathGrant>,
    /// `sha256:` content hash of this workload.
    #[serde(skip)]
    pub hash: String,
}

/// A device's plan.
#[derive(Debug, Clone, Serialize)]
pub struct DevicePlanUnit {
    /// Fleet.
    pub fleet: Name,
    /// Device id.
    pub device: Name,
    /// Agent version the plan is for.
    pub agent_version: String,
    /// The device's labels.
    pub labels: BTreeMap<String, String>,
    /// Every matching deployment, by name.
    pub workloads: Vec<Arc<Workload>>,
}

/// Repository-wide settings after defaults.
#[derive(Debug, Clone, Serialize)]
pub struct RepoSettings {
    /// Repository name (the `repository` node's), if declared.
    pub name: Option<String>,
    /// Kubernetes version for rendering.
    pub kube_version: String,
    /// The repository-relative directory remote charts are vendored in (`harmony.lock`'s
    /// `vendor`); `None`: the user's chart cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chart_vendor: Option<String>,
}

/// Per-fleet facts that are not units.
#[derive(Debug, Clone, Serialize)]
pub struct FleetInfo {
    /// NATS URLs.
    pub nats: Vec<String>,
    /// Agent version.
    pub agent_version: String,
    /// Ed25519 public key, hex.
    pub signing_key: String,
    /// Admitted tenants.
    pub tenants: Vec<Name>,
    /// How agent-version changes are rolled out (`None`: every device at once, still health-gated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_rollout: Option<Rollout>,
    /// How devices authenticate to NATS.
    pub auth: crate::model::FleetAuthMode,
    /// Where the fleet's JetStream buckets are kept (`replicas`, `placement`).
    #[serde(skip_serializing_if = "harmony_schemas::plan::FleetStorage::is_default")]
    pub storage: harmony_schemas::plan::FleetStorage,
}

/// Per-cluster facts that are not units: every declared cluster, with or without units, so
/// that what was applied to a cluster whose units all left the repository can be pruned.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterInfo {
    /// kubeconfig context (the cluster's name unless `context` is given).
    pub context: String,
}

/// The compiled repository.
#[derive(Debug, Clone, Serialize)]
pub struct CompiledRepo {
    /// Settings.
    pub settings: RepoSettings,
    /// Clusters by name.
    pub clusters: BTreeMap<Name, ClusterInfo>,
    /// Fleets by name.
    pub fleets: BTreeMap<Name, FleetInfo>,
    /// Units by id.
    pub units: BTreeMap<UnitId, Unit>,
}

impl CompiledRepo {
    /// Leaves out every Kubernetes cluster (their releases and tenant access) and/or every
    /// fleet (device plans, agents): `plan`/`apply` `--skip-clusters`/`--skip-fleets`.
    pub fn skip_targets(&mut self, clusters: bool, fleets: bool) {
        if clusters {
            self.clusters.clear();
        }
        if fleets {
            self.fleets.clear();
        }
        self.units.retain(|id, _| match id.kind() {
            "release" | "tenant-access" => !clusters,
            "device-plan" | "agent" => !fleets,
            _ => true,
        });
    }

    /// Keeps only fleet `name`: no cluster, no other fleet (`apply --fleet`).
    pub fn only_fleet(&mut self, name: &str) {
        self.skip_targets(true, false);
        self.fleets.retain(|n, _| n.as_str() == name);
        self.units.retain(|_, u| match &u.content {
            UnitContent::DevicePlan(p) => p.fleet.as_str() == name,
            UnitContent::Agent(a) => a.fleet.as_str() == name,
            UnitContent::Release(_) | UnitContent::TenantAccess(_) => false,
        });
    }

    /// `sha256:` over every unit's id and hash, in id order.
    pub fn hash(&self) -> String {
        let pairs: Vec<(&UnitId, &str)> = self.units.values().map(|u| (&u.id, u.hash.as_str())).collect();
        content_hash(&pairs)
    }

    /// The dependency graph: an edge from each dependency to its dependent (apply order).
    pub fn graph(&self) -> petgraph::graph::DiGraph<&UnitId, ()> {
        let mut g = petgraph::graph::DiGraph::new();
        let idx: HashMap<&UnitId, _> = self.units.keys().map(|id| (id, g.add_node(id))).collect();
        for u in self.units.values() {
            for d in &u.deps {
                if let (Some(&a), Some(&b)) = (idx.get(d), idx.get(&u.id)) {
                    g.add_edge(a, b, ());
                }
            }
        }
        g
    }

    /// Units in a deterministic apply order (dependencies first, ties by id).
    pub fn apply_order(&self) -> Vec<&UnitId> {
        let mut indegree: BTreeMap<&UnitId, usize> = self.units.keys().map(|k| (k, 0)).collect();
        let mut dependents: HashMap<&UnitId, Vec<&UnitId>> = HashMap::new();
        for u in self.units.values() {
            for d in &u.deps {
                *indegree.entry(&u.id).or_default() += 1;
                dependents.entry(d).or_default().push(&u.id);
            }
        }
        let mut ready: BTreeSet<&UnitId> = indegree.iter().filter(|(_, n)| **n == 0).map(|(k, _)| *k).collect();
        let mut out = Vec::with_capacity(self.units.len());
        while let Some(next) = ready.pop_first() {
            out.push(next);
            for dep in dependents.get(next).into_iter().flatten() {
                if let Some(n) = indegree.get_mut(dep) {
                    *n -= 1;
                    if *n == 0 {
                        ready.insert(dep);
                    }
                }
            }
        }
        out
    }
}

fn unit(id: UnitId, deps: BTreeSet<UnitId>, content: UnitContent) -> Unit {
    let hash = content_hash(&content);
    Unit { id, hash, deps, content }
}

/// Builds the compiled repository. Returns `None` only if a value it needs was invalid,
/// which checking has already reported (it is only called when there are no errors).
pub fn compile(decls: &Declarations, index: &Index, facts: &Facts) -> Option<CompiledRepo> {
    let settings = RepoSettings {
        name: decls.settings.as_ref().map(|s| s.name.value.clone()),
        kube_version: decls.settings.as_ref().and_then(|s| s.kube_version.as_ref()).map_or(DEFAULT_KUBE_VERSION, |v| v.value.clone()).to_string(),
        chart_vendor: facts.chart_vendor.clone(),
    };
    let mut units = BTreeMap::new();
    // Tenants: the impersonated ServiceAccount.
    let mut sa: HashMap<&str, ServiceAccountRef> = HashMap::new();
    for t in &decls.tenants {
        let first_exact = t.namespaces.iter().find_map(|n| match &n.value {
            NamespaceMatcher::Exact(n) => Some(n.clone()),
            NamespaceMatcher::Prefix(_) => None,
        });
        let namespace = t.service_account_namespace.as_ref().map(|n| n.value.clone()).or(first_exact)?;
        let name = t.service_account.as_ref().map_or_else(|| Name::parse(DEFAULT_SERVICE_ACCOUNT).ok(), |s| Some(s.value.clone()))?;
        sa.insert(&t.name.raw.value, ServiceAccountRef { name, namespace });
    }
    // Releases and, per tenant and cluster, the namespaces they use.
    let mut access: BTreeMap<(String, String), BTreeSet<Name>> = BTreeMap::new();
    for (i, r) in decls.releases.iter().enumerate() {
        let name = r.name.valid.clone()?;
        let tenant = index.tenants.get(r.tenant.as_ref()?.value.as_str())?;
        let cluster = index.clusters.get(r.cluster.as_ref()?.value.as_str())?;
        let tenant_name = tenant.name.valid.clone()?;
        let cluster_name = cluster.name.valid.clone()?;
        let namespace = r.namespace.as_ref()?.value.clone();
        access.entry((tenant_name.to_string(), cluster_name.to_string())).or_default().insert(namespace.clone());
        let chart = match &r.chart.as_ref()?.value {
            ChartSource::Local(path) => {
                let c = facts.charts.get(path)?.as_ref()?;
                ChartRef::Local { path: path.clone(), name: c.name.clone(), version: c.version.as_ref().map(|v| v.to_string()), digest: c.digest.clone() }
            }
            ChartSource::Remote { chart, repo } => {
                let l = facts.locked.get(&i)?;
                ChartRef::Remote { chart: chart.clone(), repo: repo.clone(), name: l.name.clone(), version: l.version.clone(), digest: l.digest.clone() }
            }
        };
        let mut needs: Vec<ReleaseName> = r.needs.iter().filter_map(|n| ReleaseName::parse(&n.value).ok()).collect();
        needs.sort();
        needs.dedup();
        let mut deps: BTreeSet<UnitId> = BTreeSet::new();
        deps.insert(UnitId::new(&["tenant-access", tenant_name.as_str(), cluster_name.as_str()]));
        for n in &needs {
            let other = &decls.releases[*index.releases.get(n.as_str())?];
            deps.insert(release_id(other)?);
        }
        let mut secrets: Vec<SecretRef> = r.secrets.iter().map(|s| SecretRef { key: s.key.value.clone(), from: s.from.value.clone() }).collect();
        secrets.sort_by(|a, b| a.key.cmp(&b.key));
        let content = ReleaseUnit {
            impersonate: sa.get(tenant.name.raw.value.as_str())?.clone(),
            name,
            tenant: tenant_name,
            context: cluster.context.as_ref().map_or_else(|| cluster_name.to_string(), |c| c.value.clone()),
            kube_version: cluster.kube_version.as_ref().map_or_else(|| settings.kube_version.clone(), |v| v.value.to_string()),
            api_versions: cluster.api_versions.iter().map(|v| v.value.clone()).collect(),
            cluster: cluster_name,
            namespace,
            chart,
            values: facts.release_values.get(&i).cloned().unwrap_or(Json::Null),
            secrets,
            needs,
        };
        units.insert(release_id(r)?, unit(release_id(r)?, deps, UnitContent::Release(content)));
    }
    for ((tenant, cluster), used) in access {
        let t = index.tenants.get(tenant.as_str())?;
        let c = index.clusters.get(cluster.as_str())?;
        let mut namespaces: BTreeSet<Name> = used;
        namespaces.extend(t.namespaces.iter().filter_map(|n| match &n.value {
            NamespaceMatcher::Exact(n) => Some(n.clone()),
            NamespaceMatcher::Prefix(_) => None,
        }));
        let content = TenantAccess {
            tenant: t.name.valid.clone()?,
            cluster: c.name.valid.clone()?,
            context: c.context.as_ref().map_or_else(|| cluster.clone(), |x| x.value.clone()),
            owns: t.namespaces.iter().map(|n| n.value.clone()).collect(),
            namespaces: namespaces.into_iter().collect(),
            service_account: sa.get(tenant.as_str())?.clone(),
            pod_security: t.pod_security.as_ref().map(|p| p.value).unwrap_or_default(),
        };
        let id = UnitId::new(&["tenant-access", &tenant, &cluster]);
        units.insert(id.clone(), unit(id, BTreeSet::new(), UnitContent::TenantAccess(content)));
    }
    let mut clusters = BTreeMap::new();
    for (name, c) in &index.clusters {
        let context = c.context.as_ref().map_or_else(|| name.to_string(), |x| x.value.clone());
        clusters.insert(c.name.valid.clone()?, ClusterInfo { context });
    }
    // Fleets.
    let mut fleets = BTreeMap::new();
    for (i, f) in decls.fleets.iter().enumerate() {
        let info = FleetInfo {
            nats: f.nats.iter().map(|n| n.value.clone()).collect(),
            agent_version: f.agent_version.as_ref()?.value.to_string(),
            signing_key: harmony_schemas::encoding::hex(facts.signing_keys.get(&i)?),
            tenants: f.tenants.iter().filter_map(|t| Name::parse(&t.value).ok()).collect(),
            agent_rollout: f.rollout.clone(),
            auth: f.auth,
            storage: f.storage.clone(),
        };
        fleets.insert(f.name.valid.clone()?, info);
    }
    // Workloads, once per deployment, assigned to the devices their selector matched.
    let mut per_device: Vec<Vec<Arc<Workload>>> = vec![Vec::new(); decls.devices.len()];
    let mut order: Vec<(Arc<Workload>, usize)> = Vec::new();
    for (i, d) in decls.deployments.iter().enumerate() {
        let fleet = &decls.fleets[*index.fleets.get(d.fleet.as_ref()?.value.as_str())?];
        order.push((Arc::new(workload(d, fleet)?), i));
    }
    order.sort_by(|a, b| a.0.deployment.cmp(&b.0.deployment));
    for (w, i) in &order {
        for &dev in facts.selections.get(i).into_iter().flatten() {
            per_device[dev].push(w.clone());
        }
    }
    // Devices: agent unit and plan.
    let device_units: Vec<Option<[Unit; 2]>> = decls
        .devices
        .par_iter()
        .zip(per_device.into_par_iter())
        .enumerate()
        .map(|(i, (dev, matched))| {
            let device = dev.name.valid.clone()?;
            let fleet = Name::parse(&dev.fleet.as_ref()?.value).ok()?;
            let info = fleets.get(&fleet)?;
            let labels = facts.device_labels.get(i)?.clone();
            let agent_id = UnitId::new(&["agent", fleet.as_str(), device.as_str()]);
            let agent = AgentUnit { fleet: fleet.clone(), device: device.clone(), version: info.agent_version.clone() };
            let plan_id = UnitId::new(&["device-plan", fleet.as_str(), device.as_str()]);
            let plan = DevicePlanUnit { fleet, device, agent_version: info.agent_version.clone(), labels, workloads: matched };
            // Hash the plan over workload hashes rather than re-serialising shared workloads.
            #[derive(Serialize)]
            struct PlanHash<'a> {
                fleet: &'a Name,
                device: &'a Name,
                agent_version: &'a str,
                labels: &'a BTreeMap<String, String>,
                workloads: Vec<(&'a Name, &'a str)>,
            }
            let hash = content_hash(&PlanHash {
                fleet: &plan.fleet,
                device: &plan.device,
                agent_version: &plan.agent_version,
                labels: &plan.labels,
                workloads: plan.workloads.iter().map(|w| (&w.deployment, w.hash.as_str())).collect(),
            });
            let plan_unit = Unit { id: plan_id, hash, deps: BTreeSet::from([agent_id.clone()]), content: UnitContent::DevicePlan(plan) };
            Some([unit(agent_id, BTreeSet::new(), UnitContent::Agent(agent)), plan_unit])
        })
        .collect();
    for pair in device_units {
        for u in pair? {
            units.insert(u.id.clone(), u);
        }
    }
    Some(CompiledRepo { settings, clusters, fleets, units })
}

fn release_id(r: &Release) -> Option<UnitId> {
    Some(UnitId::new(&["release", &r.cluster.as_ref()?.value, r.namespace.as_ref()?.value.as_str(), &r.name.raw.value]))
}

fn workload(d: &Deployment, fleet: &Fleet) -> Option<Workload> {
    let spec = |c: &Container| -> Option<ContainerSpec> {
        Some(ContainerSpec {
            name: c.name.valid.clone()?,
            image: c.image.as_ref()?.value.clone(),
            command: c.command.clone(),
            args: c.args.clone(),
            env: c.env.clone(),
            ports: c.ports.clone(),
            volumes: c.volumes.iter().map(|v| v.value.clone()).collect(),
        })
    };
    let mut init_containers = Vec::new();
    let mut containers = Vec::new();
    for c in &d.containers {
        if c.init {
            init_containers.push(InitContainerSpec { container: spec(c)?, timeout: c.timeout.unwrap_or(DEFAULT_INIT_TIMEOUT) });
        } else {
            containers.push(ServiceSpec { container: spec(c)?, restart: c.restart.unwrap_or(RestartPolicy::Always) });
        }
    }
    let mut w = Workload {
        deployment: d.name.valid.clone()?,
        tenant: Name::parse(&d.tenant.as_ref()?.value).ok()?,
        init_containers,
        containers,
        rollout: d.rollout.clone(),
        selector: d.selector.as_ref()?.value.clone(),
        host_paths: fleet.grants(&d.tenant.as_ref()?.value),
        hash: String::new(),
    };
    w.hash = content_hash(&w);
    Some(w)
}
