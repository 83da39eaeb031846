//! The I/O steps around the pure planner that `harmony plan` and `harmony diff` share:
//! loading each release's chart from disk and rendering it, on a thread with a large stack
//! (templates may recurse deeply).

use std::collections::BTreeMap;
use std::path::Path;

use harmony_compiler::compile::ChartRef;
use harmony_compiler::{CompiledRepo, UnitContent};
use harmony_planner::render::{RenderContext, RenderError, SecretValues, release_context, render_release};
use harmony_planner::{FingerprintKey, ObservedState, Rendered};
use harmony_schemas::plan::{Capabilities, ChartArchive, ReleaseRender};

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
        let ChartRef::Local { path, .. } = &r.chart else { continue };
        let (render, caps) = release_context(&id, r, observed);
        jobs.push((id.clone(), r.clone(), root.join(path), secrets.get(&id).cloned().unwrap_or_default(), render, caps));
    }
    let key = key.clone();
    let handle = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || -> Result<Renders, RenderError> {
            let mut out = Renders::default();
            for (id, r, chart_path, secrets, mut render, caps) in jobs {
                let loading = |e: harmony_helm::ChartError| RenderError { release: id.clone(), message: format!("loading chart {}: {e}", chart_path.display()) };
                let files = harmony_helm::chart::read_files(&chart_path).map_err(loading)?;
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
