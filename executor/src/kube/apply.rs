//! Applying a compiled repository's Kubernetes units: per cluster, under the cluster's lock,
//! tenant access first (Harmony's own credentials), then releases in dependency order, each
//! impersonating its tenant. Clusters are applied concurrently; an unreachable cluster fails its
//! own units with a clear error while the others proceed (`fail_fast` stops at the first error).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use harmony_compiler::compile::{ChartRef, ReleaseUnit, SecretRef};
use harmony_compiler::model::SecretSource;
use harmony_compiler::{CompiledRepo, UnitContent};
use harmony_planner::render::{RenderContext, SecretValues};
use harmony_schemas::plan::Capabilities;
use serde_json::{Map, Value};

use super::lock::ClusterLock;
use super::observe::ClusterObservation;
use super::record::Status;
use super::release::{self, Desired, Options, Outcome};
use super::tenant::{self, Access};
use super::{Cluster, KubeError};

/// How to apply.
#[derive(Clone, Debug)]
pub struct ApplyOptions {
    /// kubeconfig file (`None`: `KUBECONFIG`, then `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
    /// Release options (wait, history limit…).
    pub release: Options,
    /// Stop at the first failed unit (other clusters stop before their next unit).
    pub fail_fast: bool,
    /// Lock holder identity (`user@host pid N`).
    pub holder: String,
    /// Lock TTL in seconds.
    pub lock_ttl: i32,
    /// Only these unit ids (empty: all).
    pub only: BTreeSet<String>,
}

/// What happened to one unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnitResult {
    /// Applied; the summary says how (`installed revision 1`, `unchanged (revision 3)`).
    Done(String),
    /// Failed, with the reason.
    Failed(String),
    /// Not attempted, and why (a dependency failed, fail-fast).
    Skipped(String),
}

/// One unit's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitOutcome {
    /// Unit id.
    pub unit: String,
    /// Cluster name.
    pub cluster: String,
    /// Result.
    pub result: UnitResult,
}

/// Resolves one `secret-value`: an environment variable or a file of the applying machine (a
/// relative path is relative to the working directory; secret files never live in the
/// repository). The error names the key and the source, never a value.
pub fn resolve_secret(s: &SecretRef) -> Result<String, String> {
    match &s.from {
        SecretSource::Env(var) => std::env::var(var).map_err(|_| format!("secret-value {}: environment variable {var} is not set", s.key)),
        SecretSource::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("secret-value {}: cannot read {path}: {e}", s.key))?;
            Ok(text.trim_end_matches(['\n', '\r']).to_string())
        }
    }
}

/// Resolves a release's `secret-value`s ([`resolve_secret`]). Values never reach an output.
pub fn resolve_secrets(unit: &ReleaseUnit) -> Result<BTreeMap<String, Option<String>>, String> {
    unit.secrets.iter().map(|s| Ok((s.key.clone(), Some(resolve_secret(s)?)))).collect()
}

/// Resolves the `secret-value`s of every release of the repository ([`resolve_secret`]), by
/// unit id, for `harmony plan` (fingerprints only). An unreadable source is an error naming the
/// release, the key and the source (one per failure: a plan must not show a release as
/// unchanged while apply could not write it), except with `unresolved_ok` (`--offline`), where
/// it stays `None`: "unresolved until apply".
pub fn resolve_repo_secrets(compiled: &CompiledRepo, unresolved_ok: bool) -> Result<BTreeMap<String, SecretValues>, Vec<String>> {
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    for u in compiled.units.values() {
        let UnitContent::Release(r) = &u.content else { continue };
        if r.secrets.is_empty() {
            continue;
        }
        let mut values = SecretValues::new();
        for s in &r.secrets {
            let v = match resolve_secret(s) {
                Ok(v) => Some(v),
                Err(e) if unresolved_ok => {
                    tracing::debug!("{}: {e}", u.id);
                    None
                }
                Err(e) => {
                    errors.push(format!("{}: {e}", u.id));
                    None
                }
            };
            values.insert(s.key.clone(), v);
        }
        out.insert(u.id.as_str().to_string(), values);
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

/// Renders a release for apply with the one renderer plan uses
/// ([`harmony_planner::render::render_helm`]): the chart from the repository with the unit's
/// values and its resolved secrets, for revision `revision` (an upgrade or not) against the
/// cluster's capabilities.
pub fn desired_release(
    unit: &ReleaseUnit,
    unit_hash: &str,
    repo_root: &Path,
    secrets: &SecretValues,
    capabilities: &Capabilities,
    (revision, is_upgrade): (u32, bool),
) -> Result<Desired, String> {
    let ChartRef::Local { path, .. } = &unit.chart else {
        return Err("remote charts are not fetched yet: vendor the chart into the repository".into());
    };
    let chart = harmony_helm::Chart::load(&repo_root.join(path)).map_err(|e| format!("loading chart {path}: {e}"))?;
    let id = format!("release/{}/{}/{}", unit.cluster, unit.namespace, unit.name.as_str());
    let ctx = RenderContext { revision: u64::from(revision), is_upgrade, capabilities };
    let rendered = harmony_planner::render::render_helm(&id, unit, chart.clone(), secrets, ctx).map_err(|e| e.message)?;
    let values = harmony_planner::render::release_values(unit, secrets);
    let config: Map<String, Value> = values.as_object().cloned().unwrap_or_default();
    let mut d = Desired::from_rendered(unit.name.as_str(), unit.namespace.as_str(), &chart, config, &rendered);
    d.unit_hash = Some(unit_hash.to_string());
    d.unit_id = Some(id);
    d.planned = Some((revision, is_upgrade));
    Ok(d)
}

/// Installs or upgrades one release as its tenant, as `harmony plan` planned it: unchanged
/// (nothing rendered, nothing written) when the deployed record was applied by Harmony from
/// the same unit content with the same `secret-value`s; otherwise rendered for the revision
/// after the latest record ([`harmony_planner::render::next_revision`]) and written. A release
/// left unchanged has its drift repaired ([`release::repair_drift`], against `observed`: what
/// this apply observed of the cluster under its lock).
async fn apply_release(
    as_tenant: &Cluster,
    unit: &ReleaseUnit,
    hash: &str,
    repo_root: &Path,
    capabilities: &Capabilities,
    opts: &Options,
    observed: Option<&ClusterObservation>,
) -> Result<Outcome, KubeError> {
    let (outcome, deployed) = write_release(as_tenant, unit, hash, repo_root, capabilities, opts).await?;
    let Outcome::Unchanged(revision) = outcome else { return Ok(outcome) };
    let (ns, name) = (unit.namespace.as_str(), unit.name.as_str());
    let deployed = match deployed {
        Some(d) => d,
        // Written again with the same objects (a new unit hash recorded): read it back.
        None => match release::history(as_tenant, ns, name).await?.into_iter().rev().find(|s| s.release.info.status == Status::Deployed) {
            Some(d) => d,
            None => return Ok(outcome),
        },
    };
    // The live objects observed, when they are of this very record (else they are read again).
    let live = observed
        .and_then(|o| o.releases.get(&(ns.to_string(), name.to_string())))
        .filter(|l| !l.observed.undeployed && l.observed.revision == u64::from(revision) && l.observed.resource_version == deployed.resource_version)
        .and_then(|l| l.observed.live.as_deref());
    match release::repair_drift(as_tenant, &deployed.release, live, None).await? {
        0 => Ok(outcome),
        objects => Ok(Outcome::Repaired { revision, objects }),
    }
}

/// [`apply_release`] without drift repair; with the deployed record when it was left as it is.
async fn write_release(
    as_tenant: &Cluster,
    unit: &ReleaseUnit,
    hash: &str,
    repo_root: &Path,
    capabilities: &Capabilities,
    opts: &Options,
) -> Result<(Outcome, Option<release::Stored>), KubeError> {
    let (ns, name) = (unit.namespace.as_str(), unit.name.as_str());
    let secrets = resolve_secrets(unit).map_err(KubeError::Manifest)?;
    let hist = release::history(as_tenant, ns, name).await?;
    let deployed = hist.iter().rev().find(|s| s.release.info.status == Status::Deployed);
    if let Some(d) = deployed {
        let recorded = |f: &str| d.release.extra.get(f).and_then(Value::as_str);
        let id = format!("release/{}/{ns}/{name}", unit.cluster);
        let same_secrets = secrets.iter().all(|(k, v)| super::observe::config_value_at(&d.release.config, k) == v.as_deref());
        if release::written_by_harmony(&d.release) && recorded(release::UNIT_HASH_FIELD) == Some(hash) && recorded(release::UNIT_ID_FIELD) == Some(id.as_str()) && same_secrets {
            return Ok((Outcome::Unchanged(d.release.version), Some(d.clone())));
        }
    }
    let (revision, upgrade) = harmony_planner::render::next_revision(hist.last().map(|s| u64::from(s.release.version)), deployed.is_some());
    let revision = u32::try_from(revision).map_err(|_| KubeError::Release(format!("release {ns}/{name}: revision {revision} is out of range")))?;
    let desired = desired_release(unit, hash, repo_root, &secrets, capabilities, (revision, upgrade)).map_err(KubeError::Manifest)?;
    Ok((release::install_or_upgrade(as_tenant, &desired, opts, jiff::Timestamp::now).await?, None))
}

enum Work<'a> {
    Access(&'a str, Access),
    Release(&'a str, &'a ReleaseUnit, &'a str),
}

/// Applies every Kubernetes unit of `compiled`; one outcome per unit, in apply order per cluster.
pub async fn apply_repo(compiled: &CompiledRepo, repo_root: &Path, opts: &ApplyOptions) -> Vec<UnitOutcome> {
    // Per cluster: (context, work in apply order).
    let mut clusters: BTreeMap<String, (String, Vec<Work<'_>>)> = BTreeMap::new();
    for id in compiled.apply_order() {
        let unit = &compiled.units[id];
        if !opts.only.is_empty() && !opts.only.contains(id.as_str()) {
            continue;
        }
        match &unit.content {
            UnitContent::TenantAccess(t) => {
                clusters.entry(t.cluster.to_string()).or_insert_with(|| (t.context.clone(), Vec::new())).1.push(Work::Access(id.as_str(), Access::from_unit(t)))
            }
            UnitContent::Release(r) => clusters.entry(r.cluster.to_string()).or_insert_with(|| (r.context.clone(), Vec::new())).1.push(Work::Release(
                id.as_str(),
                r,
                unit.hash.as_str(),
            )),
            _ => {}
        }
    }
    // Clusters without units still get pruned (their last tenant or release left the repository).
    if opts.only.is_empty() {
        for (name, info) in &compiled.clusters {
            clusters.entry(name.to_string()).or_insert_with(|| (info.context.clone(), Vec::new()));
        }
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    let runs = clusters.iter().map(|(name, (context, work))| apply_cluster(name, context, work, repo_root, opts, &stop));
    futures::future::join_all(runs).await.into_iter().flatten().collect()
}

async fn apply_cluster(
    name: &str,
    context: &str,
    work: &[Work<'_>],
    repo_root: &Path,
    opts: &ApplyOptions,
    stop: &std::sync::atomic::AtomicBool,
) -> Vec<UnitOutcome> {
    use std::sync::atomic::Ordering;
    let unit_of = |w: &Work<'_>| match w {
        Work::Access(id, _) | Work::Release(id, _, _) => id.to_string(),
    };
    let all = |result: UnitResult| work.iter().map(|w| UnitOutcome { unit: unit_of(w), cluster: name.to_string(), result: result.clone() }).collect::<Vec<_>>();
    let connect = async {
        let admin = Cluster::from_kubeconfig(opts.kubeconfig.as_deref(), context).await?;
        if let Err(e) = admin.client().apiserver_version().await {
            return Err(KubeError::Unreachable(format!("cannot reach the API server at {}: {}", admin.url(), super::error_chain(&e))));
        }
        let mut admin = admin;
        let lock = ClusterLock::acquire(&admin, &opts.holder, opts.lock_ttl, jiff::Timestamp::now()).await?;
        // What `harmony plan` renders against: the server's version and discovery; and the key
        // that seals the release records Harmony writes.
        let prepared = async {
            admin.set_seal_key(super::seal::load_or_create(&admin).await?);
            admin.capabilities().await
        };
        let capabilities = match prepared.await {
            Ok(c) => c,
            Err(e) => {
                let _ = lock.release(&admin).await;
                return Err(e);
            }
        };
        Ok::<_, KubeError>((admin, lock, capabilities))
    };
    let (admin, lock, capabilities) = match connect.await {
        Ok(x) => x,
        Err(e) => {
            if opts.fail_fast {
                stop.store(true, Ordering::SeqCst);
            }
            return all(UnitResult::Failed(format!("cluster {name} (context {context}): {e}")));
        }
    };
    let (mut out, observed) = prune(name, &admin, work, opts, stop).await;
    let mut failed_releases: BTreeSet<String> = BTreeSet::new();
    let mut failed_tenants: BTreeSet<String> = BTreeSet::new();
    for w in work {
        let unit = unit_of(w);
        if stop.load(Ordering::SeqCst) {
            out.push(UnitOutcome { unit, cluster: name.to_string(), result: UnitResult::Skipped("stopped: an earlier unit failed (--fail-fast)".into()) });
            continue;
        }
        let result = match w {
            Work::Access(_, access) => match tenant::apply(&admin, access).await {
                Ok(()) => UnitResult::Done(format!("tenant {} can use {}", access.tenant, access.namespaces.join(", "))),
                Err(e) => UnitResult::Failed(e.to_string()),
            },
            Work::Release(_, r, hash) => {
                if failed_tenants.contains(r.tenant.as_str()) {
                    UnitResult::Skipped(format!("the access of tenant {} on this cluster failed", r.tenant))
                } else if let Some(dep) = r.needs.iter().find(|n| failed_releases.contains(n.as_str())) {
                    UnitResult::Skipped(format!("needs release {}, which failed", dep.as_str()))
                } else {
                    let outcome = async {
                        let as_tenant = admin.impersonating(&r.impersonate.username())?;
                        apply_release(&as_tenant, r, hash, repo_root, &capabilities, &opts.release, observed.as_ref()).await
                    };
                    match outcome.await {
                        Ok(Outcome::Installed(v)) => UnitResult::Done(format!("installed, revision {v}")),
                        Ok(Outcome::Upgraded(v)) => UnitResult::Done(format!("upgraded, revision {v}")),
                        Ok(Outcome::Unchanged(v)) => UnitResult::Done(format!("unchanged (revision {v})")),
                        Ok(Outcome::Repaired { revision, objects }) => UnitResult::Done(release::repaired_text(revision, objects)),
                        Err(e) => UnitResult::Failed(tenant_failure(&e, &r.impersonate.username())),
                    }
                }
            }
        };
        if !matches!(result, UnitResult::Done(_)) {
            match w {
                Work::Release(_, r, _) => _ = failed_releases.insert(r.name.as_str().to_string()),
                Work::Access(_, a) => _ = failed_tenants.insert(a.tenant.clone()),
            }
            if opts.fail_fast && matches!(result, UnitResult::Failed(_)) {
                stop.store(true, Ordering::SeqCst);
            }
        }
        out.push(UnitOutcome { unit, cluster: name.to_string(), result });
    }
    if let Err(e) = lock.release(&admin).await {
        tracing::warn!("cluster {name}: releasing the apply lock: {e}");
    }
    out
}

/// A failure of work done as a tenant (`user`), with what the tenant may do when the API
/// server refused it.
pub(crate) fn tenant_failure(e: &KubeError, user: &str) -> String {
    if e.status() == Some(403) {
        format!(
            "{e}\n  Harmony applies and uninstalls a release as its tenant's ServiceAccount ({user}), which may change objects only inside the tenant's namespaces; `harmony plan` names the objects of a release that reach outside them"
        )
    } else {
        e.to_string()
    }
}

/// Uninstalls the releases Harmony wrote that are no longer in the repository, then removes the
/// access of tenants no longer on the cluster (as `harmony plan` shows them: destroys first).
/// With `only` set, only the listed unit ids are pruned. Returns the outcomes and what was
/// observed of the cluster (for drift repair), if it could be read.
async fn prune(
    name: &str,
    admin: &Cluster,
    work: &[Work<'_>],
    opts: &ApplyOptions,
    stop: &std::sync::atomic::AtomicBool,
) -> (Vec<UnitOutcome>, Option<ClusterObservation>) {
    use std::sync::atomic::Ordering;
    let mut out = Vec::new();
    let outcome = |unit: String, result: UnitResult| {
        if opts.fail_fast && matches!(result, UnitResult::Failed(_)) {
            stop.store(true, Ordering::SeqCst);
        }
        UnitOutcome { unit, cluster: name.to_string(), result }
    };
    let wanted = |id: &str| opts.only.is_empty() || opts.only.contains(id);
    let obs = match super::observe::observe_cluster(admin).await {
        Ok(o) => o,
        Err(e) => {
            let result = UnitResult::Failed(format!("observing what to prune: {e}"));
            return (vec![UnitOutcome { unit: format!("cluster/{name}"), cluster: name.to_string(), result }], None);
        }
    };
    for w in &obs.warnings {
        tracing::warn!("cluster {name}: {w}");
    }
    let releases: BTreeSet<(String, String)> = work
        .iter()
        .filter_map(|w| match w {
            Work::Release(_, r, _) => Some((r.namespace.to_string(), r.name.as_str().to_string())),
            Work::Access(..) => None,
        })
        .collect();
    let tenants: BTreeSet<&str> = work
        .iter()
        .filter_map(|w| match w {
            Work::Access(_, a) => Some(a.tenant.as_str()),
            Work::Release(..) => None,
        })
        .collect();
    let gone = obs.leftovers(name, &releases, &tenants);
    // Releases in reverse name order per namespace (no dependency information survives the
    // repository; Helm uninstalls are independent of each other).
    for ((ns, rel), live) in gone.releases.into_iter().rev() {
        let id = format!("release/{name}/{ns}/{rel}");
        if !wanted(&id) {
            continue;
        }
        let result = if stop.load(Ordering::SeqCst) {
            UnitResult::Skipped("stopped: an earlier unit failed (--fail-fast)".into())
        } else {
            // As the namespace's tenant, as it was installed: the record is the tenant's to
            // write, so what it asks for must be limited to what the tenant may do.
            match obs.namespace_user(ns) {
                None => UnitResult::Failed(format!(
                    "not uninstalled: namespace {ns} belongs to no tenant on this cluster any more (or its ServiceAccount is gone), and Harmony uninstalls a release only as its namespace's tenant; `helm uninstall {rel} -n {ns}` removes it"
                )),
                Some(user) => {
                    let uninstall = async { release::uninstall(&admin.impersonating(&user)?, ns, rel, &opts.release, jiff::Timestamp::now).await };
                    match uninstall.await {
                        Ok(_) => UnitResult::Done(format!("uninstalled (left the repository; was revision {})", live.observed.revision)),
                        Err(e) => UnitResult::Failed(format!("uninstalling: {}", tenant_failure(&e, &user))),
                    }
                }
            }
        };
        out.push(outcome(id, result));
    }
    for tenant in gone.tenants {
        let id = format!("tenant-access/{tenant}/{name}");
        let Some(access) = obs.tenant_access(tenant).filter(|_| wanted(&id)) else { continue };
        let result = if stop.load(Ordering::SeqCst) {
            UnitResult::Skipped("stopped: an earlier unit failed (--fail-fast)".into())
        } else {
            match tenant::remove(admin, &access).await {
                Ok(()) => UnitResult::Done(format!(
                    "removed (the tenant has no release on this cluster any more; namespaces {} are kept: delete them yourself if nothing else is in them)",
                    access.namespaces.join(", ")
                )),
                Err(e) => UnitResult::Failed(format!("removing tenant access: {e}")),
            }
        };
        out.push(outcome(id, result));
    }
    (out, Some(obs))
}
