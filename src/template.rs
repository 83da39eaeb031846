//! `harmony template NAME CHART [flags]`: renders a chart exactly like `helm template`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use harmony_helm::funcs::FixedEnvironment;
use harmony_helm::value::Value;
use harmony_helm::{Chart, ReleaseOptions};

/// Flags of `harmony template` (those of `helm template`).
#[derive(clap::Args, Debug, Clone)]
pub struct TemplateArgs {
    /// Release name (or the chart when only one argument is given).
    pub name: Option<String>,
    /// Chart directory or `.tgz`.
    pub chart: Option<String>,
    /// Namespace.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
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

fn fail(msg: &str) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "Error: {msg}");
    ExitCode::from(1)
}

/// Runs the command.
pub fn run(args: TemplateArgs) -> anyhow::Result<ExitCode> {
    let env = FixedEnvironment::default();
    let (mut name, chart) = match (&args.name, &args.chart) {
        (Some(n), Some(c)) => (n.clone(), c.clone()),
        (Some(c), None) => ("release-name".to_string(), c.clone()),
        _ => {
            let _ = writeln!(std::io::stderr(), "Error: \"helm template\" requires at least 1 argument\n\nUsage:  helm template [NAME] [CHART] [flags]");
            return Ok(ExitCode::from(1));
        }
    };
    if let Some(t) = &args.name_template {
        match harmony_helm::render_string(t, "{}", &env) {
            Ok(n) => name = n,
            Err(e) => return Ok(fail(&e.message)),
        }
    }
    // user values: -f files, then --set, then --set-string
    let base = match Value::empty_map() {
        Value::Map(m) => m,
        _ => unreachable!(),
    };
    let mut base = base;
    for f in &args.values {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => return Ok(fail(&format!("open {}: {}", f.display(), e))),
        };
        let v = match harmony_helm::yaml::decode(&text) {
            Ok(Value::Map(m)) => m,
            Ok(Value::Nil) => match Value::empty_map() {
                Value::Map(m) => m,
                _ => unreachable!(),
            },
            Ok(_) => return Ok(fail(&format!("failed to parse {}: error unmarshaling JSON: json: cannot unmarshal into Go value of type map[string]interface {{}}", f.display()))),
            Err(e) => return Ok(fail(&format!("failed to parse {}: {}", f.display(), e))),
        };
        base = harmony_helm::values::merge_maps(&base, &v);
    }
    for s in &args.set {
        if let Err(e) = harmony_helm::values::parse_set(s, &base, false) {
            return Ok(fail(&format!("failed parsing --set data: {e}")));
        }
    }
    for s in &args.set_string {
        if let Err(e) = harmony_helm::values::parse_set(s, &base, true) {
            return Ok(fail(&format!("failed parsing --set-string data: {e}")));
        }
    }
    let chart = match Chart::load(std::path::Path::new(&chart)) {
        Ok(c) => c,
        Err(e) => return Ok(fail(&e.to_string())),
    };
    let opts = ReleaseOptions {
        name,
        namespace: args.namespace.clone(),
        kube_version: args.kube_version.clone(),
        api_versions: args.api_versions.clone(),
        include_crds: args.include_crds,
        show_only: args.show_only.clone(),
        skip_tests: args.skip_tests,
        ..ReleaseOptions::default()
    };
    let out = harmony_helm::template(chart, Value::Map(base), &opts, &env);
    let mut stdout = std::io::stdout().lock();
    match out.error {
        None => {
            stdout.write_all(out.stdout.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        Some(e) => {
            if out.yaml_error {
                if args.debug {
                    stdout.write_all(out.stdout.as_bytes())?;
                    stdout.flush()?;
                    return Ok(fail(&e));
                }
                return Ok(fail(&format!("{e}\n\nUse --debug flag to render out invalid YAML")));
            }
            Ok(fail(&e))
        }
    }
}
