//! The I/O steps around the pure planner: [`plan_repository`], the plan `harmony plan` makes and
//! `harmony apply` executes (observe, resolve `secret-value`s, render, plan, complete), and
//! [`render_releases`], shared with `harmony diff`: loading each release's chart from disk and
//! rendering it, on a thread with a large stack (templates may recurse deeply).

use std::collections::BTreeMap;
use std::path::Path;

use harmony_compiler::compile::ChartRef;
use harmony_compiler::{CompiledRepo, UnitContent};
use harmony_planner::render::{RenderContext, RenderError, SecretValues, release_context, render_release};
use harmony_planner::{FingerprintKey, ObservedState, PlanOptions, Rendered};
use harmony_schemas::plan::{Capabilities, ChartArchive, ObservedSource, PlanFile, ReleaseRender, SourceRevision};

/// Releases rendered for a plan: their objects, and how each was rendered (with the
/// fingerprint of its record manifest) against which capabilities.
#[derive(Default)]
pub struct Renders {
    /// Objects by unit id.
    pub objects: Rendered,
    /// How each release was rendered, by unit id.
    pub releases: BTreeMap<String, ReleaseRender>,
    /// The capabilities rendered against, by cluster.
    pub capabilities: BTreeMap<String, Capabilities>,
    /// Each rendered release's chart as the plan stores it, by unit id.
    pub charts: BTreeMap<String, ChartArchive>,
}

/// Renders the given releases with charts loaded from `root`, each against its cluster's
/// capabilities and the revision apply writes next ([`release_context`]). The error names the
/// release and the chart.
pub fn render_releases(
    root: &Path,
    compiled: &CompiledRepo,
    ids: Vec<String>,
    secrets: &BTreeMap<String, SecretValues>,
    observed: &ObservedState,
    key: &FingerprintKey,
) -> Result<Renders, String> {
    let mut jobs = Vec::new();
    for id in ids {
        let Some(u) = compiled.units.values().find(|u| u.id.as_str() == id) else { continue };
        let UnitContent::Release(r) = &u.content else { continue };
        let (render, caps) = release_context(&id, r, observed);
        jobs.push((id.clone(), r.clone(), secrets.get(&id).cloned().unwrap_or_default(), render, caps));
    }
    let root = root.to_path_buf();
    let vendor = compiled.settings.chart_vendor.clone();
    let key = key.clone();
    let handle = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || -> Result<Renders, RenderError> {
            let mut out = Renders::default();
            for (id, r, secrets, mut render, caps) in jobs {
                let files = chart_files(&root, vendor.as_deref(), &r.chart).map_err(|message| RenderError { release: id.clone(), message })?;
                let loading = |e: harmony_helm::ChartError| RenderError { release: id.clone(), message: format!("loading chart: {e}") };
                out.charts.insert(id.clone(), harmony_planner::contract::chart_archive(&files));
                let chart = harmony_helm::Chart::from_files(files).map_err(loading)?;
                let ctx = RenderContext { revision: render.revision, is_upgrade: render.is_upgrade, capabilities: &caps };
                let objs = render_release(&id, &r, chart, &secrets, ctx)?;
                render.manifest = Some(key.fingerprint(objs.manifest.as_bytes()));
                out.objects.insert(id.clone(), objs.objects);
                out.releases.insert(id, render);
                out.capabilities.insert(r.cluster.to_string(), caps);
            }
            Ok(out)
        })
        .map_err(|e| e.to_string())?;
    handle.join().map_err(|_| "internal error while rendering".to_string())?.map_err(|e| e.to_string())
}

/// A release's chart files: a local chart from the repository at `root`, a remote one from
/// the vendor directory or the chart cache, verified against its locked digest
/// (`harmony_charts::cache::load_files`). Errors name the chart and what to run.
pub fn chart_files(root: &Path, vendor: Option<&str>, chart: &ChartRef) -> Result<Vec<harmony_helm::chart::File>, String> {
    match chart {
        ChartRef::Local { path, .. } => {
            let p = root.join(path);
            harmony_helm::chart::read_files(&p).map_err(|e| format!("loading chart {}: {e}", p.display()))
        }
        ChartRef::Remote { chart, name, version, digest, .. } => harmony_charts::cache::load_files(root, vendor, name, version, digest)
            .map_err(|e| format!("chart {chart} {version}: {e}")),
    }
}

/// Where a plan's observed state comes from.
pub enum Observe<'a> {
    /// Nothing is read: every unit is planned as a create (`plan --offline`); an unresolvable
    /// `secret-value` stays unresolved until apply.
    Nothing,
    /// A given observed state (`plan --observed FILE`).
    State(ObservedState),
    /// The targets, read now ([`crate::live::observe`]).
    Live(crate::live::LiveOptions<'a>),
}

/// What a plan is made with, besides the repository.
pub struct PlanRequest<'a> {
    /// The observed state.
    pub observe: Observe<'a>,
    /// The fingerprint key (secret fingerprints, the seal).
    pub key: FingerprintKey,
    /// `--target` units (ids or prefixes; empty: all).
    pub targets: Vec<String>,
    /// `--exclude` units.
    pub excludes: Vec<String>,
    /// What was left out (`clusters`, `fleets`), as the plan records it.
    pub skipped: Vec<String>,
    /// The repository revision planned.
    pub source: SourceRevision,
}

/// A plan made, with the warnings that arose (without a `warning: ` prefix).
pub struct Planned {
    /// The plan, completed with what apply writes and sealed.
    pub plan: PlanFile,
    /// Warnings for the operator.
    pub warnings: Vec<String>,
}

/// Why no plan was made, with the warnings that arose before.
#[derive(Debug)]
pub struct PlanFailed {
    /// What failed (a target that could not be read, an unresolvable `secret-value`, a render).
    pub message: String,
    /// Warnings for the operator (without a `warning: ` prefix).
    pub warnings: Vec<String>,
}

/// The plan `harmony plan` makes and `harmony apply` executes, for a compiled repository at
/// `root`: observe, select the units, resolve `secret-value`s (fingerprints only), render the
/// releases, plan, and complete the plan with what apply writes, sealed (docs/adr/0013).
/// Revoked devices are removed from `compiled`.
pub async fn plan_repository(root: &Path, compiled: &mut CompiledRepo, req: PlanRequest<'_>) -> Result<Planned, PlanFailed> {
    let mut warnings = Vec::new();
    let failed = |message: String, warnings: &mut Vec<String>| PlanFailed { message, warnings: std::mem::take(warnings) };
    let offline = matches!(req.observe, Observe::Nothing);
    let mut live_desired = Rendered::new();
    let mut inputs = harmony_planner::contract::ContractInputs::default();
    let mut device_drift = Vec::new();
    let (observed, observed_source) = match req.observe {
        Observe::Nothing => (ObservedState::default(), ObservedSource::None),
        Observe::State(o) => {
            let hash = o.hash();
            (o, ObservedSource::File { hash })
        }
        Observe::Live(opts) => {
            let live = crate::live::observe(compiled, &opts).await.map_err(|e| PlanFailed { message: e.message, warnings: e.warnings })?;
            warnings = live.warnings;
            live_desired = live.desired;
            inputs.rollouts = live.rollouts;
            inputs.servers = live.servers;
            inputs.device_plans = live.device_plans;
            device_drift = live.device_drift;
            for id in &live.revoked_units {
                compiled.units.remove(id);
            }
            let hash = live.observed.hash();
            (live.observed, ObservedSource::Live { targets: live.targets, hash })
        }
    };
    let selected = harmony_planner::select_units(compiled, &observed, &req.targets, &req.excludes).map_err(|e| failed(e.to_string(), &mut warnings))?;
    let secrets = crate::kube::apply::resolve_repo_secrets(compiled, offline).map_err(|errors| {
        let message = format!("{}\n  set them as apply would see them, or plan with --offline to show them as unresolved until apply", errors.join("\n"));
        failed(message, &mut warnings)
    })?;
    let renders = render_releases(root, compiled, harmony_planner::releases_to_render(compiled, &observed, &selected), &secrets, &observed, &req.key)
        .map_err(|e| failed(e, &mut warnings))?;
    let mut rendered = renders.objects;
    rendered.extend(live_desired);
    let opts = PlanOptions {
        targets: req.targets,
        excludes: req.excludes,
        skipped: req.skipped,
        key: req.key,
        secret_values: secrets,
        source: req.source,
        observed_source,
        capabilities: renders.capabilities,
        release_renders: renders.releases,
    };
    let mut plan = harmony_planner::plan(compiled, &rendered, &observed, &opts).map_err(|e| failed(e.to_string(), &mut warnings))?;
    // What apply writes, sealed: `harmony apply PLANFILE` reads nothing else.
    inputs.charts = renders.charts;
    // What the agents report repairing: shown, not part of the identity, but sealed with the
    // rest of the file, so it is set before the seal is made.
    plan.device_drift = device_drift;
    harmony_planner::contract::complete(&mut plan, compiled, &inputs, &opts.key);
    Ok(Planned { plan, warnings })
}

/// How [`apply_clusters`] applies.
pub struct ClusterApply {
    /// kubeconfig file (`None`: `KUBECONFIG`, then `~/.kube/config`).
    pub kubeconfig: Option<std::path::PathBuf>,
    /// Release options (wait, poll…).
    pub release: crate::kube::release::Options,
    /// The user name the clusters' locks are held as (with this process's host and pid).
    pub holder: String,
    /// Only these units (ids or prefixes) and what they need (empty: all).
    pub targets: Vec<String>,
}

/// The plan `harmony apply --yes --skip-fleets` makes, and the options it executes it with, for
/// tests and benchmarks that drive clusters without the CLI: the repository's Kubernetes units
/// planned against the live clusters ([`plan_repository`]).
pub async fn plan_clusters(root: &Path, compiled: &CompiledRepo, opts: &ClusterApply) -> Result<(PlanFile, crate::execute::ExecuteOptions), PlanFailed> {
    let mut compiled = compiled.clone();
    compiled.skip_targets(false, true);
    let failed = |message: String| PlanFailed { message, warnings: Vec::new() };
    // Any key will do: the plan is executed by this process only.
    let seed = harmony_schemas::fleet::generate_signing_key().map_err(|e| failed(e.to_string()))?;
    let key = FingerprintKey::from_hex(&harmony_schemas::fleet::encode_key(seed.as_bytes())).map_err(failed)?;
    let no_fleets = |fleet: &str, _: &[String]| Err(format!("fleet {fleet}: not planned"));
    let req = PlanRequest {
        observe: Observe::Live(crate::live::LiveOptions { kubeconfig: opts.kubeconfig.clone(), auth_dir: None, read_options: &no_fleets }),
        key: key.clone(),
        targets: opts.targets.clone(),
        excludes: Vec::new(),
        skipped: vec!["fleets".into()],
        source: SourceRevision { commit: None, dirty: false, repository_hash: compiled.hash() },
    };
    let plan = plan_repository(root, &mut compiled, req).await?.plan;
    let exec = crate::execute::ExecuteOptions {
        kubeconfig: opts.kubeconfig.clone(),
        release: opts.release.clone(),
        holder: crate::lock::LockHolder { user: opts.holder.clone(), ..crate::lock::LockHolder::this_process() },
        lock: crate::lock::LockOptions::default(),
        stop: Default::default(),
        observer: None,
        refuse_stale_all: false,
        fail_fast: false,
        key,
        repository: compiled.settings.name.clone(),
        fleets: BTreeMap::new(),
    };
    Ok((plan, exec))
}

/// `harmony apply --yes --skip-fleets` as one call: [`plan_clusters`], then that plan executed
/// ([`crate::execute::execute`]). The CLI shows and confirms the plan in between; nothing else
/// differs.
pub async fn apply_clusters(root: &Path, compiled: &CompiledRepo, opts: &ClusterApply) -> Result<harmony_schemas::plan::ApplyOutcome, PlanFailed> {
    let (plan, exec) = plan_clusters(root, compiled, opts).await?;
    Ok(crate::execute::execute(&plan, &exec).await)
}
