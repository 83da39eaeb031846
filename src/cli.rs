//! Flags, sub-commands and output formats.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use harmony_compiler::{DiskFs, Output, RepoFs, Severity, compile_repo, diag, fmt::format_kdl};
use serde::Serialize;

/// Harmony compiles a repository of KDL declarations (tenants, clusters, Helm releases,
/// edge fleets, devices, deployments) into a checked dependency graph, plans it against
/// the live targets and applies it.
#[derive(Debug, Parser)]
#[command(name = "harmony", version, about, max_term_width = 100)]
pub struct Args {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, clap::Args)]
pub struct Global {
    /// The repository's root directory.
    #[arg(long, global = true, default_value = ".", value_name = "DIR", env = "HARMONY_REPO")]
    pub repo: PathBuf,
    /// More log output (repeat for more); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors; no summaries.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// When to use colours.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum Command {
    /// Type-check the repository and report every problem (exit 0 clean, 1 on errors).
    Check {
        /// Output format.
        #[arg(long, value_enum, default_value_t = CheckFormat::Human)]
        format: CheckFormat,
        /// Fail (exit 1) on warnings too.
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Format every KDL file canonically, keeping comments.
    Fmt {
        /// Change nothing; list the files that would change and exit 1 if any would.
        #[arg(long)]
        check: bool,
    },
    /// Print the unit dependency graph (edges point from a unit to the units applied after it).
    Graph {
        /// Output format.
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
    },
    /// Render a Helm chart exactly like `helm template` (no cluster, no repository needed).
    Template(crate::template::TemplateArgs),
    /// Plan the repository against the observed state: one action per unit, object diffs,
    /// secrets as fingerprints (exit 0, or with --detailed-exitcode 0 no changes / 2 changes; 1 on errors).
    Plan(crate::plan::PlanArgs),
    /// Print a saved plan.
    Show(crate::plan::ShowArgs),
    /// Compile the repository at two git revisions and diff rendered manifests and device
    /// plans, offline (the PR reviewer's command; Markdown by default).
    Diff(crate::plan::DiffArgs),
    /// Roll a release back to an earlier revision, as `helm rollback` does (a new revision
    /// with the old manifest), impersonating its tenant.
    Rollback(crate::rollback::RollbackArgs),
    /// Apply the repository to its clusters and fleets: plan (or read a plan file), confirm, write
    /// (compare-and-set, locked, journalled).
    ///
    /// Clusters: tenants' namespaces, ServiceAccounts and RBAC, then Helm releases (installed,
    /// upgraded or uninstalled as their tenant, Helm-compatible records; --wait for readiness).
    /// Fleets: each device's signed plan written to the fleet's NATS KV bucket, phased rollouts
    /// step by step behind a health gate. --skip-clusters, --skip-fleets and --fleet choose.
    ///
    /// Each unit's result is printed as it finishes (text, or JSON Lines with --format json),
    /// then the summary; on a terminal a live line shows units done/total, what runs and the
    /// elapsed time.
    ///
    /// Each cluster and fleet written to is locked for the apply (a 30 s lease renewed while it
    /// runs; a cluster's is the Lease kube-system/harmony-apply, a fleet's the entry
    /// harmony-locks/FLEET), naming the holder: user@host, pid, command and start time. A lock
    /// held by another apply is waited for up to --lock-timeout; one whose holder ran on this host
    /// and is gone is taken over at once. `harmony unlock CLUSTER|FLEET` removes a lock left by an
    /// apply known to be dead.
    ///
    /// Ctrl-C or SIGTERM while it writes stops it: no further unit starts, a running one gets 5 s
    /// to finish, the locks are released, exit code 1. A second one exits at once (exit code 130).
    Apply(crate::apply::ApplyArgs),
    /// Remove the apply lock of a cluster or fleet left by an apply known to be dead (Terraform's
    /// force-unlock): shows the holder, asks (or --yes), removes exactly the lock it showed.
    Unlock(crate::unlock::UnlockArgs),
    /// Show each fleet's devices: desired vs applied generation, heartbeat, deployments, condition.
    Status(crate::status::StatusArgs),
    /// Serve a read-only live dashboard of fleets, devices, deployments and releases
    /// (127.0.0.1:8080 by default; --demo for simulated devices).
    Ui(crate::ui::UiArgs),
    /// Talk to one device's agent: `ping`, and signed `logs` / `exec` (kubectl-like).
    Device(crate::device::DeviceArgs),
    /// Remote charts: `lock` resolves them into harmony.lock, `pull` fetches what it names into
    /// the chart cache or a vendor directory (docs/charts.md).
    Charts(crate::charts::ChartsArgs),
    /// Fleet operations: `enroll` / `revoke` devices (per-device NATS credentials),
    /// `rotate-signing-key` (docs/security.md), `publish-agent` for upgrades (docs/operations.md).
    Fleet(crate::fleet::FleetArgs),
    /// Plugins: `harmony NAME ARGS…` runs `harmony-NAME` from PATH when NAME is not a built-in
    /// command, with HARMONY_REPO, HARMONY_BIN and the global flags in its environment
    /// (docs/operations.md).
    Plugin(crate::plugin::PluginArgs),
    /// Print the shell's completion script (dynamic: sub-commands, flags, and units, releases,
    /// devices, fleets and clusters of the repository), e.g. `source <(harmony completion bash)`.
    Completion(crate::completion::CompletionArgs),
    /// Write man pages for every command to a directory.
    Man(crate::completion::ManArgs),
    /// A plugin: `harmony-NAME` on PATH.
    #[command(external_subcommand)]
    External(Vec<OsString>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    /// Rendered diagnostics with source snippets.
    Human,
    /// One JSON document (versioned) on stdout.
    Json,
    /// GitHub Actions workflow commands (`::error file=…,line=…::…`).
    Github,
    /// A SARIF 2.1.0 log on stdout, for code-scanning UIs (paths relative to where harmony runs).
    Sarif,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    /// Graphviz.
    Dot,
    /// Mermaid flowchart.
    Mermaid,
}

pub fn init_logging(g: &Global) {
    let default = match (g.quiet, g.verbose) {
        (true, _) => "error",
        (_, 0) => "warn",
        (_, 1) => "info",
        (_, 2) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // At -vv and above, each compiler phase (parse, lower, check, compile) logs its duration.
    let spans = if g.verbose >= 2 { tracing_subscriber::fmt::format::FmtSpan::CLOSE } else { tracing_subscriber::fmt::format::FmtSpan::NONE };
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).with_span_events(spans).try_init();
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let g = &args.global;
    let demo_default = matches!(&args.command, Command::Ui(u) if u.demo);
    if !matches!(args.command, Command::Template(_) | Command::Show(_) | Command::Plugin(_) | Command::External(_) | Command::Completion(_) | Command::Man(_)) && !demo_default && !g.repo.is_dir() {
        anyhow::bail!("repository directory {} does not exist", g.repo.display());
    }
    match args.command {
        Command::Template(t) => crate::template::run(t, &g.repo),
        Command::Check { format, deny_warnings } => check(g, format, deny_warnings),
        Command::Fmt { check } => fmt(g, check),
        Command::Graph { format } => graph(g, format),
        Command::Plan(a) => crate::plan::plan(g, a, &runtime()?),
        Command::Show(a) => crate::plan::show(g, a),
        Command::Diff(a) => crate::plan::diff(g, a),
        Command::Rollback(a) => crate::rollback::run(a, &g.repo, &runtime()?),
        Command::Apply(a) => crate::apply::run(g, a, &runtime()?),
        Command::Status(a) => crate::status::run(g, a, &runtime()?),
        Command::Unlock(a) => crate::unlock::run(g, a, &runtime()?),
        Command::Ui(a) => crate::ui::run(g, a, &runtime()?),
        Command::Device(a) => crate::device::run(g, a, &runtime()?),
        Command::Fleet(a) => crate::fleet::run(g, a, &runtime()?),
        Command::Plugin(a) => crate::plugin::run(a),
        Command::Completion(a) => crate::completion::registration(a),
        Command::Man(a) => crate::completion::man(a),
        Command::External(a) => crate::plugin::exec(g, a),
        Command::Charts(a) => crate::charts::run(g, a, &runtime()?),
    }
}

/// The process's one tokio runtime, for the commands that talk to clusters and fleets (the
/// executor's calls run on it; nothing else builds one).
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

pub(crate) fn compile(g: &Global) -> anyhow::Result<Output> {
    let started = std::time::Instant::now();
    let fs = DiskFs::new(&g.repo);
    let out = compile_repo(&fs).with_context(|| format!("reading repository {}", g.repo.display()))?;
    tracing::info!(files = out.sources.len(), elapsed_ms = started.elapsed().as_millis() as u64, "compiled repository");
    Ok(out)
}

pub(crate) fn color(g: &Global) -> bool {
    match g.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    }
}

/// Renders diagnostics for humans.
pub(crate) fn render_diagnostics(out: &Output, color: bool) -> String {
    let theme = if color { miette::GraphicalTheme::unicode() } else { miette::GraphicalTheme::unicode_nocolor() };
    let handler = miette::GraphicalReportHandler::new_themed(theme).with_width(100);
    out.diagnostics.iter().map(|d| diag::render(d, &out.sources, &handler)).collect::<Vec<_>>().join("\n")
}

fn summary(out: &Output) -> String {
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    let files = plural(out.sources.len(), "file");
    match &out.repo {
        Some(repo) => {
            let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
            for id in repo.units.keys() {
                *kinds.entry(id.kind()).or_default() += 1;
            }
            let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
            let warnings = if out.warnings() > 0 { format!(", {}", plural(out.warnings(), "warning")) } else { String::new() };
            format!(
                "checked {files}: ok{warnings}; {} ({})",
                plural(repo.units.len(), "unit"),
                if kinds.is_empty() { "none".to_string() } else { kinds.join(", ") }
            )
        }
        None => format!("checked {files}: {}, {}", plural(out.errors(), "error"), plural(out.warnings(), "warning")),
    }
}

fn check(g: &Global, format: CheckFormat, deny_warnings: bool) -> anyhow::Result<ExitCode> {
    let out = compile(g)?;
    let failed = out.errors() > 0 || (deny_warnings && out.warnings() > 0);
    match format {
        CheckFormat::Human => {
            let mut stderr = std::io::stderr().lock();
            let text = render_diagnostics(&out, color(g));
            if !text.is_empty() {
                writeln!(stderr, "{text}")?;
            }
            if !g.quiet {
                writeln!(stderr, "{}", summary(&out))?;
            }
        }
        CheckFormat::Json => {
            let doc = json_report(&out);
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        CheckFormat::Github => {
            let prefix = display_prefix(&g.repo);
            let mut stdout = std::io::stdout().lock();
            for d in &out.diagnostics {
                writeln!(stdout, "{}", github_line(d, &out, &prefix))?;
            }
            if !g.quiet {
                eprintln!("{}", summary(&out));
            }
        }
        CheckFormat::Sarif => {
            println!("{}", serde_json::to_string_pretty(&crate::sarif::log(&out, &display_prefix(&g.repo)))?);
            if !g.quiet {
                eprintln!("{}", summary(&out));
            }
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

#[derive(Serialize)]
struct JsonReport<'a> {
    version: u32,
    files: usize,
    errors: usize,
    warnings: usize,
    diagnostics: Vec<JsonDiagnostic<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    units: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    repository_hash: Option<String>,
}

#[derive(Serialize)]
struct JsonDiagnostic<'a> {
    code: diag::Code,
    severity: Severity,
    message: &'a str,
    #[serde(flatten)]
    location: diag::Location,
    label: &'a str,
    help: Option<&'a str>,
    related: Vec<JsonRelated<'a>>,
}

#[derive(Serialize)]
struct JsonRelated<'a> {
    #[serde(flatten)]
    location: diag::Location,
    label: &'a str,
}

fn json_report(out: &Output) -> JsonReport<'_> {
    let diagnostics = out
        .diagnostics
        .iter()
        .map(|d| JsonDiagnostic {
            code: d.code,
            severity: d.severity,
            message: &d.message,
            location: d.location(&out.sources),
            label: &d.primary.text,
            help: d.help.as_deref(),
            related: d
                .secondary
                .iter()
                .map(|l| JsonRelated { location: label_location(d, l, out), label: &l.text })
                .collect(),
        })
        .collect();
    JsonReport {
        version: 1,
        files: out.sources.len(),
        errors: out.errors(),
        warnings: out.warnings(),
        diagnostics,
        units: out.repo.as_ref().map(|r| r.units.len()),
        repository_hash: out.repo.as_ref().map(|r| r.hash()),
    }
}

/// The repository path as annotations should name it (relative to where CI runs).
fn display_prefix(repo: &Path) -> String {
    let s = repo.to_string_lossy().replace('\\', "/");
    let s = s.trim_start_matches("./").trim_end_matches('/');
    if s.is_empty() || s == "." { String::new() } else { format!("{s}/") }
}

fn github_escape_data(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

fn github_escape_prop(s: &str) -> String {
    github_escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// `error` or `warning`, as GitHub annotations and SARIF name them.
pub(crate) fn level(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

/// A diagnostic as one message for CI annotations: the message, its label, then its help.
pub(crate) fn annotation_text(d: &diag::Diagnostic) -> String {
    let mut msg = d.message.clone();
    if !d.primary.text.is_empty() {
        msg.push_str(": ");
        msg.push_str(&d.primary.text);
    }
    if let Some(h) = &d.help {
        msg.push_str("\nhelp: ");
        msg.push_str(h);
    }
    msg
}

/// Where one of a diagnostic's secondary labels is.
pub(crate) fn label_location(d: &diag::Diagnostic, l: &diag::Label, out: &Output) -> diag::Location {
    diag::Diagnostic { primary: l.clone(), ..d.clone() }.location(&out.sources)
}

fn github_line(d: &diag::Diagnostic, out: &Output, prefix: &str) -> String {
    let loc = d.location(&out.sources);
    let level = level(d.severity);
    let msg = annotation_text(d);
    format!(
        "::{level} file={},line={},col={},endLine={},endColumn={},title={}::{}",
        github_escape_prop(&format!("{prefix}{}", loc.path)),
        loc.line,
        loc.column,
        loc.end_line,
        loc.end_column,
        github_escape_prop(d.code.as_str()),
        github_escape_data(&msg)
    )
}

fn fmt(g: &Global, check_only: bool) -> anyhow::Result<ExitCode> {
    let fs = DiskFs::new(&g.repo);
    let files = fs.kdl_files().with_context(|| format!("listing {}", g.repo.display()))?;
    // Format everything first; write nothing if any file cannot be formatted.
    let mut changed = Vec::new();
    let mut failures = Vec::new();
    for path in &files {
        let bytes = fs.read(path).with_context(|| format!("reading {path}"))?;
        let Ok(text) = String::from_utf8(bytes) else {
            failures.push(format!("{path}: not valid UTF-8"));
            continue;
        };
        match format_kdl(&text) {
            Ok(formatted) if formatted != text => changed.push((path.clone(), formatted)),
            Ok(_) => {}
            Err(e) => failures.push(format!("{path}: {e}")),
        }
    }
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("error: {f}");
        }
        eprintln!("fmt: {} of {} files cannot be formatted; nothing was written", failures.len(), files.len());
        return Ok(ExitCode::from(1));
    }
    if check_only {
        for (path, _) in &changed {
            println!("{path}");
        }
        if !g.quiet {
            eprintln!("fmt --check: {} of {} files would be reformatted", changed.len(), files.len());
        }
        return Ok(if changed.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) });
    }
    for (path, text) in &changed {
        write_atomic(&g.repo.join(path), text.as_bytes()).with_context(|| format!("writing {path}"))?;
        if !g.quiet {
            println!("formatted {path}");
        }
    }
    if !g.quiet {
        eprintln!("fmt: {} of {} files reformatted", changed.len(), files.len());
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes via a temporary file in the same directory and a rename, so a crash never leaves
/// a half-written file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.harmony-fmt.{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(&tmp, meta.permissions());
    }
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

fn graph(g: &Global, format: GraphFormat) -> anyhow::Result<ExitCode> {
    let out = compile(g)?;
    let Some(repo) = &out.repo else {
        eprintln!("{}", render_diagnostics(&out, color(g)));
        eprintln!("{}", summary(&out));
        return Ok(ExitCode::from(1));
    };
    let mut s = String::new();
    let edges: Vec<(&str, &str)> = repo.units.values().flat_map(|u| u.deps.iter().map(move |d| (d.as_str(), u.id.as_str()))).collect();
    match format {
        GraphFormat::Dot => {
            s.push_str("digraph harmony {\n    rankdir=LR;\n    node [shape=box, fontname=\"monospace\"];\n");
            for id in repo.units.keys() {
                s.push_str(&format!("    \"{id}\";\n"));
            }
            for (a, b) in &edges {
                s.push_str(&format!("    \"{a}\" -> \"{b}\";\n"));
            }
            s.push_str("}\n");
        }
        GraphFormat::Mermaid => {
            s.push_str("flowchart LR\n");
            let ids: BTreeMap<&str, usize> = repo.units.keys().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
            for (id, i) in &ids {
                s.push_str(&format!("    u{i}[\"{id}\"]\n"));
            }
            for (a, b) in &edges {
                s.push_str(&format!("    u{} --> u{}\n", ids[a], ids[b]));
            }
        }
    }
    print!("{s}");
    Ok(ExitCode::SUCCESS)
}
