//! `harmony plan`, `harmony show` and `harmony diff`: the I/O around the pure planner —
//! compiling, loading charts, resolving `secret-value`s (for fingerprints only), reading the
//! observed state and the fingerprint key, git, and writing the plan file.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};
use harmony_compiler::{CompiledRepo, DiskFs, ParseCache, compile_repo_cached};
use harmony_planner::output::{self, HumanOptions, MarkdownOptions};
use harmony_planner::{FingerprintKey, ObservedState, PlanOptions};
use harmony_schemas::plan::{ObservedSource, PlanFile, SourceRevision};

use harmony_executor::live::LiveOptions;
use harmony_executor::pipeline::{Observe, PlanRequest, plan_repository, render_releases};

use crate::apply::NatsArgs;
use crate::cli::{ColorChoice, Global};

/// Output formats of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanFormat {
    /// For a terminal: summary first, destroys first, one block per unit.
    Human,
    /// For a pull-request comment: a summary table and one `<details>` block per unit.
    Markdown,
    /// The plan file (versioned; JSON Schema in docs/schemas/plan.schema.json).
    Json,
}

/// Flags shared by `plan` and `diff`.
#[derive(Debug, Clone, clap::Args)]
pub struct PlanFlags {
    /// One line per unit (human format).
    #[arg(long)]
    pub compact: bool,
    /// Plan only this unit (an id, or a prefix such as `release/okd-prod`) and what it depends on. Repeatable.
    #[arg(long = "target", value_name = "UNIT", add = crate::completion::units())]
    pub targets: Vec<String>,
    /// Leave out this unit (id or prefix) and what depends on it. Repeatable.
    #[arg(long = "exclude", value_name = "UNIT", add = crate::completion::units())]
    pub excludes: Vec<String>,
    /// Exit 0 when nothing would change, 2 when something would, 1 on errors.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Key of secret fingerprints: a file of 64 hex characters. Default:
    /// `$XDG_STATE_HOME/harmony/fingerprint.key` (or `~/.local/state/harmony/fingerprint.key`),
    /// created on first use.
    #[arg(long, value_name = "FILE", env = "HARMONY_FINGERPRINT_KEY_FILE")]
    pub fingerprint_key: Option<PathBuf>,
}

/// Where live state comes from.
#[derive(Debug, Clone, clap::Args)]
pub struct LiveArgs {
    /// kubeconfig for the repository's clusters (default: `KUBECONFIG`, then `~/.kube/config`).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    #[command(flatten)]
    pub nats: NatsArgs,
}

/// `harmony plan`.
#[derive(Debug, Clone, clap::Args)]
pub struct PlanArgs {
    /// Plan against this observed state (JSON, docs/plan.md) instead of reading the targets.
    #[arg(long, value_name = "FILE", conflicts_with = "offline")]
    pub observed: Option<PathBuf>,
    /// Read nothing: every unit is planned as a create (no kubeconfig or NATS needed).
    #[arg(long)]
    pub offline: bool,
    #[command(flatten)]
    pub live: LiveArgs,
    /// Plan fleets only: no Kubernetes cluster is read or planned (no kubeconfig needed).
    #[arg(long, conflicts_with = "skip_fleets")]
    pub skip_clusters: bool,
    /// Plan Kubernetes clusters only: no fleet is read or planned (no NATS needed).
    #[arg(long)]
    pub skip_fleets: bool,
    /// Only this fleet, no cluster (`harmony apply --fleet`).
    #[arg(skip)]
    pub fleet: Option<String>,
    /// Save the plan (JSON) for `harmony show`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = PlanFormat::Human)]
    pub format: PlanFormat,
    #[command(flatten)]
    pub flags: PlanFlags,
}

/// `harmony show`.
#[derive(Debug, Clone, clap::Args)]
pub struct ShowArgs {
    /// A plan saved by `harmony plan --out`.
    pub planfile: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = PlanFormat::Human)]
    pub format: PlanFormat,
    /// One line per unit (human format).
    #[arg(long)]
    pub compact: bool,
}

/// `harmony diff`.
#[derive(Debug, Clone, clap::Args)]
pub struct DiffArgs {
    /// The base git revision (branch, tag, commit).
    #[arg(long, value_name = "REV")]
    pub base: String,
    /// The head git revision; default: the working tree.
    #[arg(long, value_name = "REV")]
    pub head: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = PlanFormat::Markdown)]
    pub format: PlanFormat,
    #[command(flatten)]
    pub flags: PlanFlags,
}

fn use_color(g: &Global) -> bool {
    match g.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    }
}

pub(crate) fn print(p: &PlanFile, format: PlanFormat, compact: bool, g: &Global) -> anyhow::Result<()> {
    let text = match format {
        PlanFormat::Human => output::human(p, &HumanOptions { color: use_color(g), compact, ..HumanOptions::default() }),
        PlanFormat::Markdown => output::markdown(p, &MarkdownOptions::default()),
        PlanFormat::Json => output::json(p),
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

fn warn(warnings: &[String]) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
}

fn exit(p: &PlanFile, detailed: bool) -> ExitCode {
    if detailed && p.summary.has_changes() { ExitCode::from(2) } else { ExitCode::SUCCESS }
}

/// Compiles a directory; on errors prints the diagnostics and fails.
fn compile_dir(dir: &Path, what: &str, g: &Global, cache: &ParseCache) -> anyhow::Result<CompiledRepo> {
    let out = compile_repo_cached(&DiskFs::new(dir), cache).with_context(|| format!("reading repository {}", dir.display()))?;
    match out.repo {
        Some(r) => Ok(r),
        None => {
            eprintln!("{}", crate::cli::render_diagnostics(&out, crate::cli::color(g)));
            bail!("{what} does not compile: {} error(s); `harmony check` lists them", out.errors())
        }
    }
}

/// The fingerprint key: the given file, or the per-user one (created on first use).
pub(crate) fn fingerprint_key(flag: &Option<PathBuf>) -> anyhow::Result<FingerprintKey> {
    let path = match flag {
        Some(p) => p.clone(),
        None => {
            let state = std::env::var_os("XDG_STATE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
                .context("neither XDG_STATE_HOME nor HOME is set: pass --fingerprint-key FILE")?;
            let p = state.join("harmony/fingerprint.key");
            if !p.exists() {
                create_key(&p)?;
            }
            p
        }
    };
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading fingerprint key {}", path.display()))?;
    FingerprintKey::from_hex(&text).map_err(|e| anyhow::anyhow!("fingerprint key {}: {e}", path.display()))
}

fn create_key(path: &Path) -> anyhow::Result<()> {
    use std::io::Read as _;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).context("reading /dev/urandom for a new fingerprint key")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(path) {
        Ok(mut f) => f.write_all(format!("{}\n", hex_encode(&bytes)).as_bytes()).with_context(|| format!("writing {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating fingerprint key {}", path.display())),
    }
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("git").arg("-C").arg(dir).args(args).output().context("running git")?;
    if !out.status.success() {
        bail!("git {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim_end_matches('\n').to_string())
}

fn source_revision(dir: &Path, compiled: &CompiledRepo) -> SourceRevision {
    let commit = git(dir, &["rev-parse", "--verify", "HEAD"]).ok();
    let dirty = commit.is_some() && git(dir, &["status", "--porcelain", "--", "."]).is_ok_and(|s| !s.is_empty());
    SourceRevision { commit, dirty, repository_hash: compiled.hash() }
}

/// `harmony plan`.
pub fn plan(g: &Global, a: PlanArgs, rt: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    let (p, _) = make_plan(g, &a, rt)?;
    if let Some(out) = &a.out {
        crate::cli::write_atomic(out, p.to_json().as_bytes()).with_context(|| format!("writing plan {}", out.display()))?;
        if !g.quiet {
            eprintln!("Saved the plan to {}; `harmony show {}` prints it again.", out.display(), out.display());
        }
    }
    print(&p, a.format, a.flags.compact, g)?;
    Ok(exit(&p, a.flags.detailed_exitcode))
}

/// The plan `harmony plan` makes (and `harmony apply` executes): compile, observe, render,
/// plan, and complete it with what apply writes, sealed. Also returns the compiled repository
/// as planned (only the targets planned).
pub(crate) fn make_plan(g: &Global, a: &PlanArgs, rt: &tokio::runtime::Runtime) -> anyhow::Result<(PlanFile, CompiledRepo)> {
    let mut compiled = compile_dir(&g.repo, "the repository", g, &ParseCache::default())?;
    let source = source_revision(&g.repo, &compiled);
    compiled.skip_targets(a.skip_clusters, a.skip_fleets);
    if let Some(fleet) = &a.fleet {
        harmony_executor::fleet::convert::fleet_info(&compiled, fleet)?;
        compiled.only_fleet(fleet);
    }
    let nats = &a.live.nats;
    let read_options = |fleet: &str, urls: &[String]| nats.read_options_for_fleet(fleet, urls).map_err(|e| format!("{e:#}"));
    let observe = match &a.observed {
        None if a.offline => Observe::Nothing,
        None => Observe::Live(LiveOptions { kubeconfig: a.live.kubeconfig.clone(), auth_dir: nats.auth_dir.clone(), read_options: &read_options }),
        Some(f) => {
            let text = std::fs::read_to_string(f).with_context(|| format!("reading observed state {}", f.display()))?;
            Observe::State(serde_json::from_str(&text).with_context(|| {
                format!("observed state {}: not valid (expected {{\"releases\": {{…}}, \"device_plans\": {{…}}, \"agents\": {{…}}, \"tenant_access\": {{…}}}}; see docs/plan.md)", f.display())
            })?)
        }
    };
    let req = PlanRequest {
        observe,
        key: fingerprint_key(&a.flags.fingerprint_key)?,
        targets: a.flags.targets.clone(),
        excludes: a.flags.excludes.clone(),
        skipped: [(a.skip_clusters, "clusters"), (a.skip_fleets, "fleets")].into_iter().filter(|(on, _)| *on).map(|(_, w)| w.to_string()).collect(),
        source,
    };
    match rt.block_on(plan_repository(&g.repo, &mut compiled, req)) {
        Ok(planned) => {
            warn(&planned.warnings);
            Ok((planned.plan, compiled))
        }
        Err(e) => {
            warn(&e.warnings);
            bail!("{}", e.message)
        }
    }
}

/// `harmony show`.
pub fn show(g: &Global, a: ShowArgs) -> anyhow::Result<ExitCode> {
    let p = PlanFile::read(&a.planfile).with_context(|| format!("loading plan {}", a.planfile.display()))?;
    print(&p, a.format, a.compact, g)?;
    Ok(ExitCode::SUCCESS)
}

/// Extracts the repository directory at `rev` into `into`; returns the directory.
fn checkout(repo: &Path, rev: &str, into: &Path) -> anyhow::Result<(PathBuf, String)> {
    let commit = git(repo, &["rev-parse", "--verify", "--quiet", &format!("{rev}^{{commit}}")])
        .map_err(|_| anyhow::anyhow!("--base/--head {rev}: not a git revision of the repository at {}", repo.display()))?;
    let prefix = git(repo, &["rev-parse", "--show-prefix"])?;
    let top = git(repo, &["rev-parse", "--show-toplevel"])?;
    let out = Command::new("git").arg("-C").arg(&top).args(["archive", "--format=tar", &commit]).output().context("running git archive")?;
    if !out.status.success() {
        bail!("git archive {commit}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    tar::Archive::new(&out.stdout[..]).unpack(into).with_context(|| format!("extracting {rev} into {}", into.display()))?;
    let dir = into.join(prefix.trim_end_matches('/'));
    std::fs::create_dir_all(&dir)?;
    Ok((dir, commit))
}

/// `harmony diff`.
pub fn diff(g: &Global, a: DiffArgs) -> anyhow::Result<ExitCode> {
    let tmp = tempfile::tempdir().context("creating a temporary directory")?;
    let span = tracing::info_span!("checkout").entered();
    let (base_dir, base_commit) = checkout(&g.repo, &a.base, &tmp.path().join("base"))?;
    let (head_dir, head_source) = match &a.head {
        Some(h) => {
            let (d, c) = checkout(&g.repo, h, &tmp.path().join("head"))?;
            (d, Some(SourceRevision { commit: Some(c), dirty: false, repository_hash: String::new() }))
        }
        None => (g.repo.clone(), None),
    };
    drop(span);
    // Files the two revisions share are parsed once (parsing is most of a compile).
    let cache = ParseCache::default();
    let base = compile_dir(&base_dir, &format!("base revision {}", a.base), g, &cache)?;
    let head = compile_dir(&head_dir, "the head", g, &cache)?;
    let source = match head_source {
        Some(mut s) => {
            s.repository_hash = head.hash();
            s
        }
        None => source_revision(&g.repo, &head),
    };
    let key = fingerprint_key(&a.flags.fingerprint_key)?;
    // Only releases whose content differs are rendered: the same content renders the same.
    let changed = |from: &CompiledRepo, to: &CompiledRepo| -> Vec<String> {
        from.units
            .values()
            .filter(|u| u.id.kind() == "release" && to.units.get(&u.id).is_none_or(|o| o.hash != u.hash))
            .map(|u| u.id.as_str().to_string())
            .collect()
    };
    let span = tracing::info_span!("render").entered();
    let no_secrets = BTreeMap::new();
    let nothing = ObservedState::default();
    let base_rendered = render_releases(&base_dir, &base, changed(&base, &head), &no_secrets, &nothing, &key).map_err(anyhow::Error::msg)?.objects;
    let observed = ObservedState::from_compiled(&base, &head, &base_rendered);
    let selected = harmony_planner::select_units(&head, &observed, &a.flags.targets, &a.flags.excludes)?;
    let to_render: Vec<String> = changed(&head, &base).into_iter().filter(|id| selected.contains(id)).collect();
    let head_renders = render_releases(&head_dir, &head, to_render, &no_secrets, &observed, &key).map_err(anyhow::Error::msg)?;
    drop(span);
    let span = tracing::info_span!("plan").entered();
    let opts = PlanOptions {
        targets: a.flags.targets.clone(),
        excludes: a.flags.excludes.clone(),
        skipped: Vec::new(),
        key,
        secret_values: BTreeMap::new(),
        source,
        observed_source: ObservedSource::Revision { base: a.base.clone(), commit: Some(base_commit) },
        capabilities: head_renders.capabilities,
        release_renders: head_renders.releases,
    };
    let p = harmony_planner::plan(&head, &head_renders.objects, &observed, &opts)?;
    drop(span);
    print(&p, a.format, a.flags.compact, g)?;
    Ok(exit(&p, a.flags.detailed_exitcode))
}
