//! `harmony template NAME CHART [flags]`: renders a chart exactly like `helm template`.
//! All logic lives in `harmony_helm::release::run_template`; this only maps flags.
//! `harmony template --release NAME` renders a release declared in the repository, with the
//! values, namespace and Kubernetes version the planner uses (`secret-value`s as placeholders).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use harmony_helm::funcs::FixedEnvironment;
use harmony_helm::release::{TemplateRequest, run_template};

/// Flags of `harmony template` (those of `helm template`).
#[derive(clap::Args, Debug, Clone)]
pub struct TemplateArgs {
    /// Render this release of the repository (its name, or its unit id when the name is not
    /// unique) instead of a chart given on the command line.
    #[arg(long, value_name = "NAME", add = crate::completion::releases(), conflicts_with_all = ["name", "chart", "namespace", "set", "set_string", "values", "kube_version", "name_template"])]
    pub release: Option<String>,
    /// Release name (or the chart when only one argument is given).
    pub name: Option<String>,
    /// Chart directory or `.tgz`.
    pub chart: Option<String>,
    /// Namespace.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Set values (`a.b=c,d=e`).
    #[arg(long = "set")]
    pub set: Vec<String>,
    /// Set string values.
    #[arg(long = "set-string")]
    pub set_string: Vec<String>,
    /// Values files.
    #[arg(short = 'f', long = "values")]
    pub values: Vec<PathBuf>,
    /// Kubernetes version for `.Capabilities`.
    #[arg(long = "kube-version")]
    pub kube_version: Option<String>,
    /// Extra API versions for `.Capabilities`.
    #[arg(short = 'a', long = "api-versions")]
    pub api_versions: Vec<String>,
    /// Print CRDs from `crds/`.
    #[arg(long = "include-crds")]
    pub include_crds: bool,
    /// Only print templates matching these globs.
    #[arg(short = 's', long = "show-only")]
    pub show_only: Vec<String>,
    /// Skip test hooks.
    #[arg(long = "skip-tests")]
    pub skip_tests: bool,
    /// Template for the release name.
    #[arg(long = "name-template")]
    pub name_template: Option<String>,
    /// Print rendered output even when it is invalid YAML.
    #[arg(long)]
    pub debug: bool,
    /// The chart version or range, for a chart from a registry or repository (default: the
    /// latest stable version, as Helm picks it).
    #[arg(long, conflicts_with = "release")]
    pub version: Option<String>,
    /// The Helm repository holding CHART (a chart name): `helm template --repo` (named
    /// `--chart-repo` here: `--repo` is the repository directory of every command).
    #[arg(long = "chart-repo", value_name = "URL", conflicts_with = "release")]
    pub chart_repo: Option<String>,
    #[command(flatten)]
    pub registry: crate::charts::RegistryFlags,
}

/// Runs the command (on a thread with a large stack: templates may recurse deeply).
pub fn run(args: TemplateArgs, repo: &Path) -> anyhow::Result<ExitCode> {
    if let Some(which) = args.release.clone() {
        return run_release(&which, repo, args);
    }
    let (name, chart) = match (args.name.clone(), args.chart.clone()) {
        (Some(n), Some(c)) => (Some(n), c),
        (Some(c), None) => (None, c),
        _ => {
            eprintln!("Error: \"helm template\" requires at least 1 argument\n\nUsage:  helm template [NAME] [CHART] [flags]");
            return Ok(ExitCode::from(1));
        }
    };
    // A chart from a registry, repository or URL is fetched (as `helm template` does), verified
    // as `harmony charts lock` verifies it, and rendered from a temporary archive.
    let remote = args.chart_repo.is_some() || ["oci://", "https://", "http://"].iter().any(|p| chart.starts_with(p));
    let mut _fetched = None;
    let chart_path: PathBuf = if remote {
        let req = harmony_charts::Request {
            chart: chart.clone(),
            repo: args.chart_repo.clone(),
            constraint: args.version.clone().unwrap_or_else(|| "*".into()),
            declared_at: "the command line".into(),
        };
        let got = match crate::cli::runtime()?.block_on(harmony_charts::resolve(&req, &args.registry.options())) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("Error: {e}");
                return Ok(ExitCode::from(1));
            }
        };
        let dir = tempfile::tempdir()?;
        let file = harmony_charts::cache::vendor_file_name(&got.locked.name, &got.locked.version).map_err(anyhow::Error::msg)?;
        let path = dir.path().join(file);
        std::fs::write(&path, &got.archive)?;
        _fetched = Some(dir);
        path
    } else {
        chart.into()
    };
    let req = TemplateRequest {
        name,
        chart: chart_path,
        namespace: args.namespace,
        set: args.set,
        set_string: args.set_string,
        values_files: args.values,
        kube_version: args.kube_version,
        api_versions: args.api_versions,
        include_crds: args.include_crds,
        show_only: args.show_only,
        skip_tests: args.skip_tests,
        name_template: args.name_template,
        debug: args.debug,
    };
    let out = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || run_template(&req, &FixedEnvironment::default()))?
        .join()
        .map_err(|_| anyhow::anyhow!("internal error while rendering"))?;
    std::io::stdout().lock().write_all(out.stdout.as_bytes())?;
    std::io::stderr().lock().write_all(out.stderr.as_bytes())?;
    Ok(ExitCode::from(out.code))
}

/// `harmony template --release NAME`.
fn run_release(which: &str, repo: &Path, args: TemplateArgs) -> anyhow::Result<ExitCode> {
    let out =
        harmony_compiler::compile_repo(&harmony_compiler::DiskFs::new(repo)).map_err(|e| anyhow::anyhow!("reading repository {}: {e}", repo.display()))?;
    let Some(compiled) = out.repo else {
        anyhow::bail!("the repository does not compile ({} error(s)); `harmony check` lists them", out.errors());
    };
    let (id, r) = find_release(&compiled, which, "--release")?;
    // A remote chart comes from the cache or vendor directory, verified against harmony.lock.
    let files = harmony_executor::pipeline::chart_files(repo, compiled.settings.chart_vendor.as_deref(), &r.chart).map_err(|e| anyhow::anyhow!("--release {which}: {e}"))?;
    let values = harmony_planner::render::release_values(r, &Default::default());
    let opts = harmony_helm::ReleaseOptions {
        name: r.name.as_str().to_string(),
        namespace: r.namespace.to_string(),
        kube_version: Some(format!("v{}", r.kube_version.trim_start_matches('v'))),
        // What the cluster declares (`api-versions`), then the flag's.
        api_versions: harmony_planner::render::declared_capabilities(r).api_versions.into_iter().chain(args.api_versions).collect(),
        include_crds: args.include_crds,
        show_only: args.show_only,
        skip_tests: args.skip_tests,
        ..harmony_helm::ReleaseOptions::default()
    };
    let out = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || -> Result<harmony_helm::TemplateOutput, String> {
            let chart = harmony_helm::Chart::from_files(files).map_err(|e| format!("loading chart: {e}"))?;
            Ok(harmony_helm::template(chart, harmony_helm::json::from_serde(&values), &opts, &FixedEnvironment::default()))
        })?
        .join()
        .map_err(|_| anyhow::anyhow!("internal error while rendering"))?;
    let out = match out {
        Ok(o) => o,
        Err(e) => anyhow::bail!("--release {which}: {e}"),
    };
    std::io::stdout().lock().write_all(out.stdout.as_bytes())?;
    match out.error {
        None => Ok(ExitCode::SUCCESS),
        Some(e) => {
            eprintln!("Error: release {id}: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// A release of the compiled repository by name, or by unit id when the name is not unique.
/// Errors start with `{what} {which}:` (`--release web`, `release web`).
pub fn find_release<'a>(
    compiled: &'a harmony_compiler::CompiledRepo,
    which: &str,
    what: &str,
) -> anyhow::Result<(&'a str, &'a harmony_compiler::compile::ReleaseUnit)> {
    let releases: Vec<(&str, &harmony_compiler::compile::ReleaseUnit)> = compiled
        .units
        .values()
        .filter_map(|u| match &u.content {
            harmony_compiler::UnitContent::Release(r) => Some((u.id.as_str(), r)),
            _ => None,
        })
        .collect();
    let found: Vec<&(&str, &harmony_compiler::compile::ReleaseUnit)> = releases.iter().filter(|(id, r)| r.name.as_str() == which || *id == which).collect();
    match found.as_slice() {
        [one] => Ok(**one),
        [] => anyhow::bail!(
            "{what} {which}: no such release; declared releases: {}",
            releases.iter().map(|(_, r)| r.name.as_str()).collect::<Vec<_>>().join(", ")
        ),
        many => anyhow::bail!("{what} {which}: the name is ambiguous, pass the unit id: {}", many.iter().map(|(id, _)| *id).collect::<Vec<_>>().join(", ")),
    }
}
