//! Helm releases with Helm's semantics: install, upgrade, rollback and uninstall, with the
//! release history kept in Helm's own records ([`super::record`]).
//!
//! What Helm does (`pkg/action/install.go`, `upgrade.go`, `rollback.go`, `uninstall.go`) and
//! this follows: a new revision is written `pending-*` before anything is applied; hooks run
//! by weight around the manifests; objects of the previous revision that the new one dropped
//! are deleted (unless annotated `helm.sh/resource-policy: keep`); on success the new
//! revision becomes `deployed` and the previous one `superseded`; on failure the new one is
//! `failed` with the reason and the previous one stays `deployed`; the history is trimmed to
//! `history_max` records. Harmony differs in one way, on purpose: re-applying what the
//! deployed revision already holds writes nothing (no new revision), so `apply` is idempotent.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::{Map, Value};

use super::readiness::{JobState, job_state, not_ready};
use super::record::{Hook, HookExecution, Info, Release, SEAL_FIELD, Status, go_time, history_selector};
use super::{Cluster, KubeError, api_err};

/// Marks records Harmony wrote, so an interrupted Harmony apply can be told apart from a Helm
/// operation in progress. Helm ignores unknown fields when it reads a record.
const WRITER_FIELD: &str = "harmony_writer";
/// The content hash of the compiled unit a record was applied from, so the planner can tell
/// an unchanged release without rendering it. Also ignored by Helm.
pub const UNIT_HASH_FIELD: &str = "harmony_unit_hash";
/// The id of the unit a record was applied from (`release/<cluster>/<namespace>/<name>`), so a
/// release is pruned only by the cluster it was applied to, even when two cluster names lead
/// to one API server. Also ignored by Helm.
pub const UNIT_ID_FIELD: &str = "harmony_unit";

/// Marks a record as written by this Harmony (see [`WRITER_FIELD`]).
fn mark_written(extra: &mut Map<String, Value>) {
    extra.insert(WRITER_FIELD.into(), Value::from(concat!("harmony/", env!("CARGO_PKG_VERSION"))));
}

/// Records the unit a release is applied from (see [`UNIT_HASH_FIELD`], [`UNIT_ID_FIELD`]).
fn record_unit(extra: &mut Map<String, Value>, desired: &Desired) {
    if let Some(h) = &desired.unit_hash {
        extra.insert(UNIT_HASH_FIELD.into(), Value::from(h.as_str()));
    }
    if let Some(id) = &desired.unit_id {
        extra.insert(UNIT_ID_FIELD.into(), Value::from(id.as_str()));
    }
}

/// Whether Harmony wrote this record (see [`WRITER_FIELD`]).
pub fn written_by_harmony(r: &Release) -> bool {
    r.extra.contains_key(WRITER_FIELD)
}

/// What a release should be: the output of the Helm engine plus the record's chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    /// Release name.
    pub name: String,
    /// Namespace of the release (and of its records).
    pub namespace: String,
    /// The chart as Helm records it (`chart` of the record).
    pub chart: Value,
    /// User-supplied values.
    pub config: Map<String, Value>,
    /// Rendered manifests in install order: (template path, YAML document).
    pub manifests: Vec<(String, String)>,
    /// Hooks.
    pub hooks: Vec<Hook>,
    /// Rendered `NOTES.txt`.
    pub notes: String,
    /// Content hash of the compiled unit (recorded in the release record).
    pub unit_hash: Option<String>,
    /// Id of the compiled unit (recorded in the release record).
    pub unit_id: Option<String>,
    /// The revision it was rendered for and whether as an upgrade (`.Release.Revision`,
    /// `.Release.IsUpgrade`): apply refuses, as stale, to write it as another.
    pub planned: Option<(u32, bool)>,
}

impl Desired {
    /// From the Helm engine's output.
    pub fn from_rendered(
        name: &str,
        namespace: &str,
        chart: &harmony_helm::Chart,
        config: Map<String, Value>,
        rendered: &harmony_helm::RenderedRelease,
    ) -> Desired {
        let hooks = rendered
            .hooks
            .iter()
            .map(|h| {
                let doc = parse_doc(&h.manifest.content).ok().flatten().unwrap_or(Value::Null);
                let policies = doc["metadata"]["annotations"]["helm.sh/hook-delete-policy"].as_str().unwrap_or_default();
                Hook {
                    name: doc["metadata"]["name"].as_str().unwrap_or_default().to_string(),
                    kind: h.manifest.kind.clone(),
                    path: h.manifest.name.clone(),
                    manifest: h.manifest.content.clone(),
                    events: h.events.clone(),
                    last_run: HookExecution::default(),
                    weight: h.weight,
                    delete_policies: policies.split(',').map(str::trim).filter(|p| !p.is_empty()).map(String::from).collect(),
                    extra: Map::new(),
                }
            })
            .collect();
        Desired {
            name: name.to_string(),
            namespace: namespace.to_string(),
            chart: chart_record(chart),
            config,
            manifests: rendered.manifests.iter().map(|m| (m.name.clone(), m.content.clone())).collect(),
            hooks,
            notes: rendered.notes.clone(),
            unit_hash: None,
            unit_id: None,
            planned: None,
        }
    }

    /// Helm's `manifest` string: `---\n# Source: PATH\nDOC\n` per manifest.
    pub fn manifest(&self) -> String {
        harmony_planner::render::helm_manifest(self.manifests.iter().map(|(src, doc)| (src.as_str(), doc.as_str())))
    }
}

/// The chart as Helm's `chart.Chart` marshals it into a record: metadata, templates and files
/// (base64), default values, schema.
pub fn chart_record(chart: &harmony_helm::Chart) -> Value {
    use base64::Engine as _;
    let b64 = |d: &[u8]| Value::from(base64::engine::general_purpose::STANDARD.encode(d));
    let files = |fs: &[harmony_helm::chart::File]| Value::Array(fs.iter().map(|f| serde_json::json!({"name": f.name, "data": b64(&f.data)})).collect());
    let to_json = |v: &harmony_helm::value::Value| {
        harmony_helm::json::encode(v, Default::default()).ok().and_then(|s| serde_json::from_str::<Value>(&s).ok()).unwrap_or(Value::Null)
    };
    serde_json::json!({
        "metadata": to_json(&chart.metadata.raw),
        "lock": null,
        "templates": files(&chart.templates),
        "values": to_json(&chart.values),
        "schema": chart.schema.as_deref().map(b64).unwrap_or(Value::Null),
        "files": files(&chart.files),
    })
}

/// How to apply.
#[derive(Clone, Debug)]
pub struct Options {
    /// Wait for readiness (and hooks) at most this long; `None`: do not wait for readiness.
    pub wait: Option<Duration>,
    /// How long a hook Job may run.
    pub hook_timeout: Duration,
    /// Records kept per release (Helm's `--history-max`, default 10; 0 = unlimited).
    pub history_max: usize,
    /// Poll interval while waiting.
    pub poll: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options { wait: None, hook_timeout: Duration::from_secs(300), history_max: 10, poll: Duration::from_millis(500) }
    }
}

/// What an apply did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// First revision.
    Installed(u32),
    /// New revision.
    Upgraded(u32),
    /// The deployed revision already is what was asked for: nothing written.
    Unchanged(u32),
    /// The deployed revision already is what was asked for, but live objects had drifted from
    /// it: they were re-applied ([`repair_drift`]); no revision written.
    Repaired {
        /// The deployed revision.
        revision: u32,
        /// Objects re-applied.
        objects: usize,
    },
}

/// One stored revision with the Secret's resourceVersion (for compare-and-set updates).
#[derive(Clone, Debug)]
pub struct Stored {
    /// The record.
    pub release: Release,
    /// `metadata.resourceVersion` of its Secret.
    pub resource_version: String,
    /// The Secret's name.
    pub secret: String,
}

fn secrets(cluster: &Cluster, ns: &str) -> Api<Secret> {
    Api::namespaced(cluster.client().clone(), ns)
}

/// Every revision of `name` in `ns`, oldest first. Records that cannot be decoded are an error
/// naming the Secret: Harmony will not guess at a history it cannot read.
pub async fn history(cluster: &Cluster, ns: &str, name: &str) -> Result<Vec<Stored>, KubeError> {
    let list = secrets(cluster, ns)
        .list(&ListParams::default().labels(&history_selector(name)))
        .await
        .map_err(api_err(format!("list release records of {ns}/{name}")))?;
    let mut out = Vec::new();
    for s in &list.items {
        if s.type_.as_deref() != Some(super::record::SECRET_TYPE) {
            continue;
        }
        let release = Release::from_secret(s).map_err(|e| KubeError::Release(e.to_string()))?;
        let secret = s.metadata.name.clone().unwrap_or_default();
        // Whoever can write Secrets in `ns` can write a record claiming another namespace.
        if release.namespace != ns {
            return Err(KubeError::Release(format!(
                "release record {ns}/{secret} says it belongs to namespace `{}`: a namespace's releases are read only from records of that namespace; delete the Secret",
                release.namespace
            )));
        }
        out.push(Stored { release, resource_version: s.metadata.resource_version.clone().unwrap_or_default(), secret });
    }
    out.sort_by_key(|s| s.release.version);
    Ok(out)
}

/// `r` as it is stored: sealed with the cluster's key when Harmony wrote it (a record Helm
/// wrote and Harmony only supersedes keeps no seal: it is not Harmony's).
fn sealed(cluster: &Cluster, r: &Release) -> Release {
    let mut r = r.clone();
    match cluster.seal_key() {
        Some(k) if written_by_harmony(&r) => k.seal(&mut r),
        _ => _ = r.extra.remove(SEAL_FIELD),
    }
    r
}

/// Whether `cluster`'s seal key verifies the stored record `s` (read from its namespace).
fn seal_verifies(cluster: &Cluster, s: &Stored) -> bool {
    cluster.seal_key().is_some_and(|k| k.verifies(&s.release, &s.release.namespace, &s.secret))
}

async fn create_record(cluster: &Cluster, r: &Release, now: jiff::Timestamp) -> Result<String, KubeError> {
    let created = secrets(cluster, &r.namespace).create(&PostParams::default(), &sealed(cluster, r).to_secret(now.as_second())).await.map_err(api_err(format!(
        "create release record {}/{}",
        r.namespace,
        r.secret_name()
    )))?;
    Ok(created.metadata.resource_version.unwrap_or_default())
}

async fn update_record(cluster: &Cluster, r: &Release, resource_version: &str, now: jiff::Timestamp) -> Result<String, KubeError> {
    let mut s = sealed(cluster, r).to_secret(now.as_second());
    s.metadata.resource_version = Some(resource_version.to_string());
    let updated = secrets(cluster, &r.namespace).replace(&r.secret_name(), &PostParams::default(), &s).await.map_err(api_err(format!(
        "update release record {}/{}",
        r.namespace,
        r.secret_name()
    )))?;
    Ok(updated.metadata.resource_version.unwrap_or_default())
}

/// Deletes one revision's record; one already gone is not an error.
async fn delete_record(cluster: &Cluster, r: &Release) -> Result<(), KubeError> {
    match secrets(cluster, &r.namespace).delete(&r.secret_name(), &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(st)) if st.code == 404 => Ok(()),
        Err(e) => Err(api_err(format!("delete release record {}/{}", r.namespace, r.secret_name()))(e)),
    }
}

/// Documents of a Helm manifest string, parsed, without empty ones.
pub fn parse_manifest(manifest: &str) -> Result<Vec<Value>, KubeError> {
    harmony_helm::release::split_manifests(manifest).iter().filter_map(|d| parse_doc(d).transpose()).collect()
}

fn parse_doc(doc: &str) -> Result<Option<Value>, KubeError> {
    let v: Value = serde_yaml_ng::from_str(doc).map_err(|e| KubeError::Manifest(format!("invalid manifest: {e}")))?;
    Ok(if v.is_null() { None } else { Some(v) })
}

fn kept(obj: &Value) -> bool {
    obj["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
}

/// A pending record blocks everything, as in Helm, unless Harmony wrote it: then it is what an
/// interrupted Harmony apply left (the cluster lock rules out a concurrent one), and it is
/// marked failed so the apply can run again.
async fn clear_pending(cluster: &Cluster, hist: &mut [Stored], now: jiff::Timestamp) -> Result<(), KubeError> {
    for s in hist.iter_mut().filter(|s| s.release.info.status.is_pending()) {
        let r = &mut s.release;
        if r.extra.get(WRITER_FIELD).is_none() {
            return Err(KubeError::Release(format!(
                "release {}/{} has an operation in progress: revision {} is {} since {}. If no helm command is running on it, clear it with `helm rollback {} -n {}` (or `harmony rollback {}`) and apply again",
                r.namespace,
                r.name,
                r.version,
                r.info.status.as_str(),
                r.info.last_deployed,
                r.name,
                r.namespace,
                r.name
            )));
        }
        r.info.status = Status::Failed;
        r.info.description = "Interrupted: a Harmony apply stopped before it finished; superseded by the next apply".into();
        s.resource_version = update_record(cluster, r, &s.resource_version, now).await?;
    }
    Ok(())
}

/// Installs or upgrades a release as `cluster` (impersonating the tenant, as the caller set it).
pub async fn install_or_upgrade(cluster: &Cluster, desired: &Desired, opts: &Options, now: impl Fn() -> jiff::Timestamp) -> Result<Outcome, KubeError> {
    let (ns, name) = (desired.namespace.as_str(), desired.name.as_str());
    let mut hist = history(cluster, ns, name).await?;
    clear_pending(cluster, &mut hist, now()).await?;
    let manifest = desired.manifest();
    let deployed = hist.iter().rev().find(|s| s.release.info.status == Status::Deployed).cloned();
    if let Some(d) = &deployed {
        let r = &d.release;
        let same_hooks =
            r.hooks.len() == desired.hooks.len() && r.hooks.iter().zip(&desired.hooks).all(|(a, b)| a.manifest == b.manifest && a.events == b.events);
        if r.manifest == manifest && r.config == desired.config && r.chart["metadata"] == desired.chart["metadata"] && same_hooks {
            // The unit changed in a way that renders the same: record the new identity (no new
            // revision) so the planner sees the release as up to date.
            // A record without a valid seal (written before records were sealed, or by the
            // tenant) gets Harmony's seal: its content is exactly what Harmony would write.
            let recorded = |f: &str| r.extra.get(f).and_then(Value::as_str);
            if (desired.unit_hash.is_some() && recorded(UNIT_HASH_FIELD) != desired.unit_hash.as_deref())
                || (desired.unit_id.is_some() && recorded(UNIT_ID_FIELD) != desired.unit_id.as_deref())
                || (cluster.seal_key().is_some() && !seal_verifies(cluster, d))
            {
                let mut rel = r.clone();
                mark_written(&mut rel.extra);
                record_unit(&mut rel.extra, desired);
                update_record(cluster, &rel, &d.resource_version, now()).await?;
            }
            return Ok(Outcome::Unchanged(r.version));
        }
    }
    let upgrade = deployed.is_some();
    let version = hist.last().map_or(1, |s| s.release.version.saturating_add(1));
    if let Some((rev, up)) = desired.planned
        && (rev, up) != (version, upgrade)
    {
        let what = |v: u32, up: bool| format!("revision {v} ({})", if up { "an upgrade" } else { "an install" });
        return Err(KubeError::Stale(format!(
            "release {ns}/{name} was rendered as {}, but its history now makes the next one {}: someone changed it since; plan again",
            what(rev, up),
            what(version, upgrade)
        )));
    }
    let started = go_time(now());
    let first_deployed = hist.first().map(|s| s.release.info.first_deployed.clone()).filter(|_| upgrade).unwrap_or_else(|| started.clone());
    let mut extra = Map::new();
    mark_written(&mut extra);
    record_unit(&mut extra, desired);
    let mut rel = Release {
        name: name.to_string(),
        info: Info {
            first_deployed,
            last_deployed: started,
            description: if upgrade { "Preparing upgrade".into() } else { "Initial install underway".into() },
            status: if upgrade { Status::PendingUpgrade } else { Status::PendingInstall },
            notes: desired.notes.clone(),
            extra: Map::new(),
        },
        chart: desired.chart.clone(),
        config: desired.config.clone(),
        manifest,
        hooks: desired.hooks.clone(),
        version,
        namespace: ns.to_string(),
        apply_method: "ssa".into(),
        extra,
    };
    let mut rv = create_record(cluster, &rel, now()).await?;
    let previous: Vec<Value> = match &deployed {
        Some(d) => parse_manifest(&d.release.manifest)?,
        None => Vec::new(),
    };
    let (pre, post) = if upgrade { ("pre-upgrade", "post-upgrade") } else { ("pre-install", "post-install") };
    let result = deploy(cluster, &mut rel, &previous, (pre, post), opts, &now).await;
    finish(cluster, &mut rel, &mut rv, deployed, result, if upgrade { "Upgrade" } else { "Install" }, opts, &now).await?;
    Ok(if upgrade { Outcome::Upgraded(version) } else { Outcome::Installed(version) })
}

/// Puts revision `rel` in place over the objects of the one `before` it: the `pre` hooks, the
/// manifest's objects, deletion of what `before` had and `rel` does not, the readiness wait,
/// the `post` hooks. Hook runs are recorded in `rel`.
async fn deploy(
    cluster: &Cluster,
    rel: &mut Release,
    before: &[Value],
    (pre, post): (&str, &str),
    opts: &Options,
    now: &impl Fn() -> jiff::Timestamp,
) -> Result<(), KubeError> {
    let ns = rel.namespace.clone();
    run_hooks(cluster, rel, pre, opts, now).await?;
    let objects = parse_manifest(&rel.manifest)?;
    let owned: Vec<Value> = objects.iter().map(|o| harmony_planner::drift::applied(o, &rel.name, &ns)).collect();
    apply_objects(cluster, &owned, &ns).await?;
    delete_dropped(cluster, before, &objects, &ns).await?;
    if let Some(timeout) = opts.wait {
        wait_ready(cluster, &objects, &ns, timeout, opts.poll).await?;
    }
    run_hooks(cluster, rel, post, opts, now).await
}

/// Marks the new revision deployed (the previous one superseded) or failed, then trims history.
#[allow(clippy::too_many_arguments)]
async fn finish(
    cluster: &Cluster,
    rel: &mut Release,
    rv: &mut String,
    previous: Option<Stored>,
    result: Result<(), KubeError>,
    verb: &str,
    opts: &Options,
    now: &impl Fn() -> jiff::Timestamp,
) -> Result<(), KubeError> {
    if let Err(e) = result {
        rel.info.status = Status::Failed;
        rel.info.description = format!("{verb} \"{}\" failed: {e}", rel.name);
        update_record(cluster, rel, rv, now()).await?;
        return Err(e);
    }
    if let Some(mut p) = previous {
        p.release.info.status = Status::Superseded;
        p.release.info.description = "Superseded".into();
        update_record(cluster, &p.release, &p.resource_version, now()).await?;
    }
    rel.info.status = Status::Deployed;
    rel.info.description = match verb {
        "Rollback" => rel.info.description.trim_start_matches("Preparing ").to_string(),
        v => format!("{v} complete"),
    };
    *rv = update_record(cluster, rel, rv, now()).await?;
    trim_history(cluster, &rel.namespace, &rel.name, opts.history_max).await
}

/// Helm's `--history-max`: delete the oldest records beyond the limit, never the deployed one.
async fn trim_history(cluster: &Cluster, ns: &str, name: &str, max: usize) -> Result<(), KubeError> {
    if max == 0 {
        return Ok(());
    }
    let hist = history(cluster, ns, name).await?;
    let excess = hist.len().saturating_sub(max);
    for s in hist.iter().filter(|s| s.release.info.status != Status::Deployed).take(excess) {
        delete_record(cluster, &s.release).await?;
    }
    Ok(())
}

async fn apply_objects(cluster: &Cluster, objects: &[Value], ns: &str) -> Result<(), KubeError> {
    for obj in objects {
        cluster.apply(obj, ns).await?;
    }
    Ok(())
}

/// Deletes, in reverse install order, what `before` had and `after` does not.
async fn delete_dropped(cluster: &Cluster, before: &[Value], after: &[Value], ns: &str) -> Result<(), KubeError> {
    use harmony_planner::object::identity;
    let keep: BTreeSet<_> = after.iter().map(|o| identity(o, ns)).collect();
    for obj in before.iter().rev().filter(|o| !keep.contains(&identity(o, ns)) && !kept(o)) {
        cluster.delete(obj, ns).await?;
    }
    Ok(())
}

async fn wait_ready(cluster: &Cluster, objects: &[Value], ns: &str, timeout: Duration, poll: Duration) -> Result<(), KubeError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut waiting = Vec::new();
        for obj in objects {
            match cluster.get(obj, ns).await? {
                Some(live) => waiting.extend(not_ready(&live)),
                None => {
                    waiting.push(format!("{} {}: not found", obj["kind"].as_str().unwrap_or_default(), obj["metadata"]["name"].as_str().unwrap_or_default()))
                }
            }
        }
        if waiting.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(KubeError::Timeout(format!("timed out after {}s waiting for readiness: {}", timeout.as_secs(), waiting.join("; "))));
        }
        tokio::time::sleep(poll).await;
    }
}

/// Runs the hooks of `event` in Helm's order (weight, then name), recording each run.
async fn run_hooks(cluster: &Cluster, rel: &mut Release, event: &str, opts: &Options, now: &impl Fn() -> jiff::Timestamp) -> Result<(), KubeError> {
    let mut order: Vec<usize> = (0..rel.hooks.len()).filter(|i| rel.hooks[*i].events.iter().any(|e| e == event)).collect();
    order.sort_by(|a, b| (rel.hooks[*a].weight, &rel.hooks[*a].name).cmp(&(rel.hooks[*b].weight, &rel.hooks[*b].name)));
    let ns = rel.namespace.clone();
    for i in order {
        let hook = &rel.hooks[i];
        let path = hook.path.clone();
        let failed = |e: KubeError| KubeError::Hook { what: format!("{event} hook {path}"), source: Box::new(e) };
        let obj = parse_doc(&hook.manifest).map_err(failed)?.ok_or_else(|| KubeError::Manifest(format!("hook {} is empty", hook.path)))?;
        // Helm's default policy is before-hook-creation.
        let policies: BTreeSet<&str> =
            if hook.delete_policies.is_empty() { BTreeSet::from(["before-hook-creation"]) } else { hook.delete_policies.iter().map(String::as_str).collect() };
        if policies.contains("before-hook-creation") {
            cluster.delete(&obj, &ns).await.map_err(failed)?;
        }
        let started = go_time(now());
        cluster.apply(&obj, &ns).await.map_err(failed)?;
        let outcome = if hook.kind == "Job" { wait_job(cluster, &obj, &ns, opts).await } else { Ok(()) };
        let policies: Vec<String> = policies.into_iter().map(String::from).collect();
        let hook = &mut rel.hooks[i];
        hook.last_run =
            HookExecution { started_at: started, completed_at: go_time(now()), phase: if outcome.is_ok() { "Succeeded".into() } else { "Failed".into() } };
        let delete_after = if outcome.is_ok() { "hook-succeeded" } else { "hook-failed" };
        if policies.iter().any(|p| p == delete_after) {
            cluster.delete(&obj, &ns).await.map_err(failed)?;
        }
        outcome.map_err(failed)?;
    }
    Ok(())
}

async fn wait_job(cluster: &Cluster, obj: &Value, ns: &str, opts: &Options) -> Result<(), KubeError> {
    let deadline = tokio::time::Instant::now() + opts.hook_timeout;
    loop {
        let live = cluster.get(obj, ns).await?.unwrap_or(Value::Null);
        match job_state(&live) {
            JobState::Succeeded => return Ok(()),
            JobState::Failed(m) => return Err(KubeError::Release(format!("Job failed: {m}"))),
            JobState::Running if tokio::time::Instant::now() >= deadline => {
                return Err(KubeError::Timeout(format!("Job did not complete within {}s", opts.hook_timeout.as_secs())));
            }
            JobState::Running => tokio::time::sleep(opts.poll).await,
        }
    }
}

/// Helm's rollback: a new revision holding revision `to`'s chart, values and manifest
/// (default: the one before the deployed revision). Returns the new revision.
pub async fn rollback(cluster: &Cluster, ns: &str, name: &str, to: Option<u32>, opts: &Options, now: impl Fn() -> jiff::Timestamp) -> Result<u32, KubeError> {
    let mut hist = history(cluster, ns, name).await?;
    clear_pending(cluster, &mut hist, now()).await?;
    let deployed = hist.iter().rev().find(|s| s.release.info.status == Status::Deployed).cloned();
    let current = deployed.clone().or_else(|| hist.last().cloned()).ok_or_else(|| KubeError::Release(format!("release {ns}/{name} not found")))?;
    let target_version = to.unwrap_or(current.release.version.saturating_sub(1));
    let target = hist
        .iter()
        .find(|s| s.release.version == target_version)
        .ok_or_else(|| {
            let have: Vec<String> = hist.iter().map(|s| s.release.version.to_string()).collect();
            KubeError::Release(format!("release {ns}/{name} has no revision {target_version} (revisions: {})", have.join(", ")))
        })?
        .release
        .clone();
    let version = hist.last().map_or(1, |s| s.release.version + 1);
    let mut extra = target.extra.clone();
    mark_written(&mut extra);
    let mut rel = Release {
        info: Info {
            first_deployed: current.release.info.first_deployed.clone(),
            last_deployed: go_time(now()),
            description: format!("Preparing Rollback to {target_version}"),
            status: Status::PendingRollback,
            notes: target.info.notes.clone(),
            extra: Map::new(),
        },
        version,
        extra,
        ..target
    };
    let mut rv = create_record(cluster, &rel, now()).await?;
    let before = parse_manifest(&current.release.manifest)?;
    let result = deploy(cluster, &mut rel, &before, ("pre-rollback", "post-rollback"), opts, &now).await;
    finish(cluster, &mut rel, &mut rv, deployed, result, "Rollback", opts, &now).await?;
    Ok(version)
}

/// `harmony rollback`: [`rollback`] of the release `unit` on its cluster (its context in
/// `kubeconfig`), impersonating its tenant, under the cluster's apply lock held by `holder`.
/// The new revision is Harmony's: sealed, so a later apply may prune it.
pub async fn rollback_unit(
    kubeconfig: Option<&std::path::Path>,
    unit: &harmony_compiler::compile::ReleaseUnit,
    to: Option<u32>,
    opts: &Options,
    holder: &crate::lock::LockHolder,
) -> Result<u32, KubeError> {
    let (ns, name) = (unit.namespace.to_string(), unit.name.as_str().to_string());
    let mut admin = Cluster::from_kubeconfig(kubeconfig, &unit.context).await?;
    let lock = super::lock::ClusterLock::acquire(&admin, holder, crate::lock::LockOptions::default()).await?;
    let result = async {
        admin.set_seal_key(super::seal::load_or_create(&admin).await?);
        let tenant = admin.impersonating(&unit.impersonate.username())?;
        rollback(&tenant, &ns, &name, to, opts, jiff::Timestamp::now).await
    }
    .await;
    // The rollback's own result wins: failing to release the lock after it is said, not
    // returned in its place (the Lease expires by itself within its duration).
    if let Err(e) = lock.release(&admin).await {
        tracing::warn!("releasing the apply lock after the rollback: {e}");
    }
    result
}

/// Helm's uninstall (without `--keep-history`): pre-delete hooks, the deployed revision's
/// objects in reverse install order (except `helm.sh/resource-policy: keep`), post-delete
/// hooks, then every record. Returns false when there was no such release. When `cluster`
/// has a seal key (pruning), the record acted on must carry its seal: one that changed since
/// it was observed, or that Harmony did not write, is refused.
pub async fn uninstall(cluster: &Cluster, ns: &str, name: &str, opts: &Options, now: impl Fn() -> jiff::Timestamp) -> Result<bool, KubeError> {
    let hist = history(cluster, ns, name).await?;
    let Some(last) = hist.iter().rev().find(|s| s.release.info.status == Status::Deployed).or(hist.last()).cloned() else {
        return Ok(false);
    };
    if cluster.seal_key().is_some() && !seal_verifies(cluster, &last) {
        return Err(KubeError::Release(format!(
            "release record {ns}/{} does not carry Harmony's seal: Harmony did not write it (or it was changed since), so Harmony will not uninstall it; `helm uninstall {name} -n {ns}` does, if it should go",
            last.secret
        )));
    }
    let mut rel = last.release.clone();
    rel.info.status = Status::Uninstalling;
    rel.info.description = "Deletion in progress (or silently failed)".into();
    mark_written(&mut rel.extra);
    update_record(cluster, &rel, &last.resource_version, now()).await?;
    run_hooks(cluster, &mut rel, "pre-delete", opts, &now).await?;
    delete_dropped(cluster, &parse_manifest(&rel.manifest)?, &[], ns).await?;
    run_hooks(cluster, &mut rel, "post-delete", opts, &now).await?;
    for s in &hist {
        delete_record(cluster, &s.release).await?;
    }
    Ok(true)
}

/// Repairs drift of a release whose deployed revision is `record`: re-applies, in install
/// order, each object of its manifest whose live state differs in a field Harmony manages, or
/// that is missing ([`harmony_planner::drift`], the rule `harmony plan` shows drift by), by
/// server-side apply as `harmony`, as the deploy applied it. No revision is written: the record
/// already holds exactly what is re-applied (ADR 0007, amendment). `live`: the objects as
/// observed (e.g. by [`super::observe::observe_cluster`] under the apply lock); `None` reads
/// each object now. `only`: repair no other objects than these keys (what a plan file's action
/// names). Returns how many objects were re-applied.
///
/// Each write is conditional on the object being as it was compared ([`Cluster::apply_at`]):
/// a drifted object is applied with force and its observed resourceVersion as a precondition,
/// a missing one without force. An object changed (or created) since it was observed is not
/// overwritten: [`KubeError::Stale`] naming it; objects before it in install order may have
/// been repaired.
pub async fn repair_drift(cluster: &Cluster, record: &Release, live: Option<&[Value]>, only: Option<&BTreeSet<String>>) -> Result<usize, KubeError> {
    let (ns, name) = (record.namespace.as_str(), record.name.as_str());
    let manifest = parse_manifest(&record.manifest)?;
    let read;
    let live = match live {
        Some(l) => l,
        None => {
            let mut got = Vec::new();
            for o in &manifest {
                if let Some(v) = cluster.get(o, ns).await? {
                    let (api_version, kind) = (o["apiVersion"].as_str().unwrap_or_default(), o["kind"].as_str().unwrap_or_default());
                    got.push(super::observe::live_form(v, api_version, kind));
                }
            }
            read = got;
            &read
        }
    };
    let drifted: BTreeMap<String, Option<String>> = harmony_planner::drift::drifted(name, ns, &manifest, live)
        .into_iter()
        .filter(|o| only.is_none_or(|k| k.contains(&o.key)))
        .map(|o| (o.key, o.resource_version))
        .collect();
    let mut repaired = 0;
    for o in &manifest {
        let Some(key) = harmony_planner::object::key_of(o, ns) else { continue };
        let Some(rv) = drifted.get(&key) else { continue };
        match cluster.apply_at(&harmony_planner::drift::applied(o, name, ns), ns, rv.as_deref()).await {
            Ok(_) => repaired += 1,
            Err(KubeError::Stale(why)) => {
                let was = rv.as_ref().map_or_else(|| "missing".to_string(), |v| format!("at resourceVersion {v}"));
                return Err(KubeError::Stale(format!(
                    "release {ns}/{name}: live object {key} changed since it was compared ({was}), so it was not overwritten ({repaired} object{} repaired before it): {why}; plan again",
                    if repaired == 1 { "" } else { "s" }
                )));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(repaired)
}

/// [`repair_drift`] of the deployed revision of `ns`/`name` (read now) against `live` (`None`:
/// read now); returns the deployed revision and how many objects were re-applied.
pub async fn repair_deployed(cluster: &Cluster, ns: &str, name: &str, live: Option<&[Value]>, only: Option<&BTreeSet<String>>) -> Result<(u32, usize), KubeError> {
    let hist = history(cluster, ns, name).await?;
    let deployed = hist
        .iter()
        .rev()
        .find(|s| s.release.info.status == Status::Deployed)
        .ok_or_else(|| KubeError::Release(format!("release {ns}/{name} has no deployed revision whose drift could be repaired")))?;
    Ok((deployed.release.version, repair_drift(cluster, &deployed.release, live, only).await?))
}

/// What `apply` says of a release it repaired (`drift repaired (3 objects; revision 1
/// unchanged, no new revision)`).
pub fn repaired_text(revision: u32, objects: usize) -> String {
    format!("drift repaired ({objects} object{}; revision {revision} unchanged, no new revision)", if objects == 1 { "" } else { "s" })
}

/// The deployed revision of a release as the planner sees it (`None`: not installed).
/// Secret values are not read back: the planner treats them as unknown.
pub async fn observe(cluster: &Cluster, ns: &str, name: &str) -> Result<Option<harmony_planner::observed::ObservedRelease>, KubeError> {
    let hist = history(cluster, ns, name).await?;
    let Some(s) = hist.iter().rev().find(|s| s.release.info.status == Status::Deployed) else { return Ok(None) };
    Ok(Some(super::observe::observed_release(&s.release, &s.resource_version)?))
}
