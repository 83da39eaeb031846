//! `harmony template NAME CHART [flags]`: renders a chart exactly like `helm template`.
//! All logic lives in `harmony_helm::release::run_template`; this only maps flags.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use harmony_helm::funcs::FixedEnvironment;
use harmony_helm::release::{TemplateRequest, run_template};

/// Flags of `harmony template` (those of `helm template`).
#[derive(clap::Args, Debug, Clone)]
pub struct TemplateArgs {
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
}

/// Runs the command (on a thread with a large stack: templates may recurse deeply).
pub fn run(args: TemplateArgs) -> anyhow::Result<ExitCode> {
    let (name, chart) = match (args.name.clone(), args.chart.clone()) {
        (Some(n), Some(c)) => (Some(n), c),
        (Some(c), None) => (None, c),
        _ => {
            eprintln!("Error: \"helm template\" requires at least 1 argument\n\nUsage:  helm template [NAME] [CHART] [flags]");
            return Ok(ExitCode::from(1));
        }
    };
    let req = TemplateRequest {
        name,
        chart: chart.into(),
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
