//! `harmony apply`: writes the fleets' signed device plans (Kubernetes comes later).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use harmony_compiler::CompiledRepo;
use harmony_executor::fleet::apply::ActionOutcome;
use harmony_executor::fleet::convert::{SIGNING_KEY_ENV, fleet_info};
use harmony_executor::fleet::plan::summary;
use harmony_executor::fleet::security::FleetSecurity;
use harmony_executor::fleet::{ApplyRequest, FleetAction, FleetOp, LockOptions, NatsOptions, connect, desired_fleet, load_signing_key, run_apply};

use crate::cli::Global;

/// NATS connection flags. Secrets come from files or the environment, never from the repository.
#[derive(Debug, Clone, clap::Args)]
pub struct NatsArgs {
    /// NATS server URL(s), replacing the fleet's `nats` URLs (repeat or comma-separate).
    #[arg(long = "nats-url", value_name = "URL", env = "HARMONY_NATS_URL", value_delimiter = ',')]
    pub urls: Vec<String>,
    /// NATS user (the password comes from $HARMONY_NATS_PASSWORD or --nats-password-file).
    #[arg(long = "nats-user", value_name = "USER", env = "HARMONY_NATS_USER")]
    pub user: Option<String>,
    /// File holding the NATS password.
    #[arg(long = "nats-password-file", value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// File holding a NATS token (or set $HARMONY_NATS_TOKEN).
    #[arg(long = "nats-token-file", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// NATS credentials file (JWT + nkey seed).
    #[arg(long = "nats-creds", value_name = "FILE", env = "HARMONY_NATS_CREDS")]
    pub creds: Option<PathBuf>,
    /// File holding an nkey seed (or set $HARMONY_NATS_NKEY).
    #[arg(long = "nats-nkey-file", value_name = "FILE")]
    pub nkey_file: Option<PathBuf>,
    /// Inbox prefix for replies (default `_INBOX`). With only the read-only identity's seed
    /// (`<auth-dir>/<fleet>/reader.nk`) and no auth directory, pass `_INBOX__harmony_reader`.
    #[arg(long = "nats-inbox-prefix", value_name = "PREFIX", env = "HARMONY_NATS_INBOX_PREFIX")]
    pub inbox_prefix: Option<String>,
    /// CA certificate (PEM) to trust for TLS; implies TLS.
    #[arg(long = "nats-tls-ca", value_name = "FILE", env = "HARMONY_NATS_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Require TLS.
    #[arg(long = "nats-tls")]
    pub tls: bool,
    /// The operator's auth directory (`harmony fleet enroll`): harmony's own nkey for fleets with
    /// generated NATS authorisation, revocations, the signing-key chain (docs/security.md).
    #[arg(long = "auth-dir", value_name = "DIR", env = "HARMONY_AUTH_DIR")]
    pub auth_dir: Option<PathBuf>,
}

fn secret(file: &Option<PathBuf>, env: &str) -> anyhow::Result<Option<String>> {
    if let Some(f) = file {
        let s = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        return Ok(Some(s.trim().to_string()));
    }
    Ok(std::env::var(env).ok().filter(|s| !s.is_empty()))
}

impl NatsArgs {
    /// Connection options for `fleet`: [`NatsArgs::options`], and when no NATS credential is
    /// given, harmony's own nkey from the auth directory (`<auth-dir>/<fleet>/harmony.nk`).
    pub fn options_for_fleet(&self, fleet: &str, fleet_urls: &[String]) -> anyhow::Result<NatsOptions> {
        self.fleet_options(fleet, fleet_urls, false)
    }

    /// Connection options for reading `fleet` (`status`, `plan`, `ui`): [`NatsArgs::options`],
    /// and when no NATS credential is given, the fleet's read-only identity from the auth
    /// directory (`reader.nk`, with its own inbox prefix), else harmony's own nkey.
    pub fn read_options_for_fleet(&self, fleet: &str, fleet_urls: &[String]) -> anyhow::Result<NatsOptions> {
        self.fleet_options(fleet, fleet_urls, true)
    }

    /// [`NatsArgs::options`], completed from the auth directory when no credential is given:
    /// the read-only identity if `read_only` and the fleet has one, else harmony's own nkey.
    fn fleet_options(&self, fleet: &str, fleet_urls: &[String], read_only: bool) -> anyhow::Result<NatsOptions> {
        Ok(harmony_executor::fleet::security::complete_options(self.options(fleet_urls)?, self.auth_dir.as_deref(), fleet, read_only)?)
    }

    /// Connection options for a fleet whose repository declares `fleet_urls`.
    pub fn options(&self, fleet_urls: &[String]) -> anyhow::Result<NatsOptions> {
        Ok(NatsOptions {
            urls: if self.urls.is_empty() { fleet_urls.to_vec() } else { self.urls.clone() },
            user: self.user.clone(),
            password: secret(&self.password_file, "HARMONY_NATS_PASSWORD")?,
            token: secret(&self.token_file, "HARMONY_NATS_TOKEN")?,
            creds_file: self.creds.clone(),
            nkey_seed: secret(&self.nkey_file, "HARMONY_NATS_NKEY")?,
            tls_ca: self.tls_ca.clone(),
            tls_required: self.tls,
            request_timeout: None,
            inbox_prefix: self.inbox_prefix.clone(),
        })
    }
}

/// A Go-style duration (`30s`, `2m`, `1h30m`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    harmony_compiler::validate::Duration::parse(s).map(|d| d.to_std()).map_err(|_| format!("`{s}` is not a duration (e.g. 30s, 2m, 1h30m)"))
}

/// Exit codes of `harmony apply PLANFILE` (also in docs/plan.md).
const PLANFILE_EXIT_CODES: &str = "Exit codes with a plan file: 0 every action applied (or nothing to do); 1 the plan was refused before anything was written (edited, another key, repository or cluster, another format version) or an action failed; 2 some actions were refused as stale (their target moved since planning, or a secret-value changed) and none failed.";

/// What `--refuse-stale` refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RefuseStale {
    /// Only the stale actions; the others are applied.
    Action,
    /// The whole plan: every action is checked first and nothing is written if any is stale.
    All,
}

/// Output of `harmony apply PLANFILE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ApplyFormat {
    /// One line per action.
    Human,
    /// The outcome document (kind harmony-apply-outcome, schema docs/schemas/apply-outcome.schema.json).
    Json,
}

#[derive(Debug, clap::Args)]
#[command(after_help = PLANFILE_EXIT_CODES)]
pub struct ApplyArgs {
    /// A plan saved by `harmony plan --out`: apply exactly its actions (nothing is re-planned and
    /// nothing read from the repository).
    #[arg(value_name = "PLANFILE")]
    pub planfile: Option<PathBuf>,
    /// With a plan file: refuse only the stale actions (`action`) or the whole plan (`all`).
    #[arg(long, value_enum, default_value_t = RefuseStale::Action, requires = "planfile")]
    pub refuse_stale: RefuseStale,
    /// With a plan file: the output format.
    #[arg(long, value_enum, default_value_t = ApplyFormat::Human, requires = "planfile")]
    pub format: ApplyFormat,
    /// With a plan file: the fingerprint key the plan was made (and sealed) with; default as
    /// for `harmony plan`.
    #[arg(long, value_name = "FILE", env = "HARMONY_FINGERPRINT_KEY_FILE")]
    pub fingerprint_key: Option<PathBuf>,
    /// Only this fleet (default: every fleet of the repository).
    #[arg(long, value_name = "NAME")]
    pub fleet: Option<String>,
    /// File holding the fleet's Ed25519 private key (hex or base64); or set $HARMONY_SIGNING_KEY.
    #[arg(long, value_name = "FILE", env = "HARMONY_SIGNING_KEY_FILE")]
    pub signing_key_file: Option<PathBuf>,
    /// Writes in flight at once.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub parallelism: u16,
    /// How long to wait for another apply of the same fleet to finish (0: fail at once).
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = parse_duration)]
    pub lock_timeout: Duration,
    /// Apply without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Where the apply journal is kept (default $XDG_STATE_HOME/harmony or ~/.local/state/harmony).
    #[arg(long, value_name = "DIR", env = "HARMONY_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Source revision recorded in the plans (default: `git rev-parse HEAD` of the repository).
    #[arg(long, value_name = "REV")]
    pub source_revision: Option<String>,
    #[command(flatten)]
    pub nats: NatsArgs,
    /// kubeconfig for the repository's clusters (default: `KUBECONFIG`, then `~/.kube/config`).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Apply to fleets only, not to Kubernetes clusters.
    #[arg(long, conflicts_with = "skip_fleets")]
    pub skip_clusters: bool,
    /// Apply to Kubernetes clusters only, not to fleets.
    #[arg(long)]
    pub skip_fleets: bool,
    /// Stop at the first Kubernetes unit that fails (default: an unreachable cluster or a failed
    /// release fails only itself and what needs it).
    #[arg(long)]
    pub fail_fast: bool,
    /// Wait up to this many seconds for each release's objects to become ready.
    #[arg(long, value_name = "SECONDS")]
    pub wait: Option<u64>,
}

/// Who holds a cluster's apply lock: `user@host pid N`.
pub(crate) fn lock_holder() -> String {
    format!("{} pid {}", harmony_executor::fleet::lock::user_at_host(), std::process::id())
}

/// Applies the repository's Kubernetes units: makes the plan with `harmony plan`'s code (live,
/// clusters only), shows it, confirms (or `--yes`), then executes that plan object
/// ([`harmony_executor::execute::execute`]): no second computation. False when anything was not
/// applied.
fn apply_clusters(g: &Global, a: &ApplyArgs, repo: &CompiledRepo, rt: &tokio::runtime::Runtime) -> anyhow::Result<bool> {
    if repo.clusters.is_empty() {
        return Ok(true);
    }
    let args = crate::plan::PlanArgs {
        observed: None,
        offline: false,
        live: crate::plan::LiveArgs { kubeconfig: a.kubeconfig.clone(), nats: a.nats.clone() },
        skip_clusters: false,
        skip_fleets: true,
        out: None,
        format: crate::plan::PlanFormat::Human,
        flags: crate::plan::PlanFlags { compact: false, targets: Vec::new(), excludes: Vec::new(), detailed_exitcode: false, fingerprint_key: a.fingerprint_key.clone() },
    };
    let plan = crate::plan::make_plan(g, &args, rt)?;
    if !a.yes && !std::io::stdin().is_terminal() {
        anyhow::bail!("not applying without --yes (stdin is not a terminal)");
    }
    if !g.quiet || !a.yes {
        crate::plan::print(&plan, crate::plan::PlanFormat::Human, true, g)?;
    }
    if !a.yes {
        print!("Apply this plan to clusters {}? [y/N] ", plan.targets.clusters.keys().cloned().collect::<Vec<_>>().join(", "));
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        if !matches!(line.trim(), "y" | "Y" | "yes") {
            println!("clusters: not applied");
            return Ok(false);
        }
    }
    let outcome = execute(g, a, &plan, Default::default(), rt)?;
    report(g, &outcome);
    Ok(outcome.exit_code() == 0)
}

/// Executes a plan with the flags of `harmony apply`.
fn execute(
    g: &Global,
    a: &ApplyArgs,
    plan: &harmony_schemas::plan::PlanFile,
    fleets: std::collections::BTreeMap<String, harmony_executor::execute::FleetAccess>,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<harmony_schemas::plan::ApplyOutcome> {
    let opts = harmony_executor::execute::ExecuteOptions {
        fleets,
        kubeconfig: a.kubeconfig.clone(),
        release: harmony_executor::kube::release::Options { wait: a.wait.map(Duration::from_secs), ..Default::default() },
        holder: lock_holder(),
        lock_ttl: 600,
        refuse_stale_all: a.refuse_stale == RefuseStale::All,
        fail_fast: a.fail_fast,
        key: crate::plan::fingerprint_key(&a.fingerprint_key)?,
        repository: repository_name(g),
    };
    Ok(rt.block_on(harmony_executor::execute::execute(plan, &opts)))
}

/// Prints an apply's outcome: one line per action (applied and unchanged ones on stdout unless
/// `--quiet`; stale, failed and skipped ones on stderr) and the counts.
fn report(g: &Global, outcome: &harmony_schemas::plan::ApplyOutcome) {
    use harmony_schemas::plan::Outcome;
    if let Some(why) = &outcome.refused {
        eprintln!("error: {why}");
        return;
    }
    let count = |o: Outcome| outcome.actions.iter().filter(|r| r.outcome == o).count();
    for r in &outcome.actions {
        match r.outcome {
            Outcome::Applied | Outcome::Noop if !g.quiet => println!("{}: {}", r.unit, r.message),
            Outcome::Applied | Outcome::Noop => {}
            Outcome::Stale => eprintln!(
                "stale: {}: {} (expected {}, found {}): refused; re-plan",
                r.unit,
                r.message,
                r.expected.as_deref().unwrap_or("?"),
                r.found.as_deref().unwrap_or("?")
            ),
            Outcome::Failed => eprintln!("error: {}: {}", r.unit, r.message),
            Outcome::Skipped => eprintln!("skipped: {}: {}", r.unit, r.message),
        }
    }
    if !g.quiet {
        println!(
            "{} applied, {} refused as stale, {} failed, {} skipped, {} unchanged",
            count(Outcome::Applied),
            count(Outcome::Stale),
            count(Outcome::Failed),
            count(Outcome::Skipped),
            count(Outcome::Noop)
        );
    }
}

pub(crate) fn compiled(g: &Global) -> anyhow::Result<CompiledRepo> {
    let out = crate::cli::compile(g)?;
    let errors = out.errors();
    out.repo.ok_or_else(|| anyhow::anyhow!("the repository has {errors} error(s); run `harmony check`"))
}

pub(crate) fn fleets(repo: &CompiledRepo, only: &Option<String>) -> anyhow::Result<Vec<String>> {
    match only {
        Some(f) => {
            fleet_info(repo, f)?;
            Ok(vec![f.clone()])
        }
        None => Ok(repo.fleets.keys().map(|n| n.as_str().to_string()).collect()),
    }
}

fn state_dir(a: &ApplyArgs) -> PathBuf {
    if let Some(d) = &a.state_dir {
        return d.clone();
    }
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("harmony");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/state/harmony"),
        None => PathBuf::from(".harmony-state"),
    }
}

fn source_revision(g: &Global) -> String {
    std::process::Command::new("git")
        .arg("-C")
        .arg(&g.repo)
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

fn describe(fleet: &str, actions: &[FleetAction]) -> String {
    let (c, u, d, n) = summary(actions);
    let mut s = format!("fleet {fleet}: {c} to create, {u} to update, {d} to delete, {n} unchanged\n");
    for a in actions.iter().filter(|a| a.op != FleetOp::Noop) {
        let sign = match a.op {
            FleetOp::Create => '+',
            FleetOp::Update => '~',
            FleetOp::Delete => '-',
            FleetOp::Noop => ' ',
        };
        let generation = a.plan.as_ref().map(|p| format!("generation {}", p.generation)).unwrap_or_default();
        s.push_str(&format!("  {sign} {:<24} {:<14} {}\n", a.device, generation, a.reason));
    }
    s
}

pub fn run(g: &Global, a: ApplyArgs, rt: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    if let Some(path) = &a.planfile {
        return apply_planfile(g, &a, path, rt);
    }
    let repo = compiled(g)?;
    let clusters_ok = if a.skip_clusters || a.fleet.is_some() { true } else { apply_clusters(g, &a, &repo, rt)? };
    if a.skip_fleets {
        return Ok(if clusters_ok { ExitCode::SUCCESS } else { ExitCode::from(1) });
    }
    let code = apply_fleets(g, a, &repo, rt)?;
    Ok(if clusters_ok { code } else { ExitCode::from(1) })
}

fn apply_fleets(g: &Global, a: ApplyArgs, repo: &CompiledRepo, rt: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    let fleets = fleets(repo, &a.fleet)?;
    if fleets.is_empty() {
        println!("the repository declares no fleet: nothing to apply");
        return Ok(ExitCode::SUCCESS);
    }
    let key = load_signing_key(a.signing_key_file.as_deref(), std::env::var(SIGNING_KEY_ENV).ok())?;
    let revision = a.source_revision.clone().unwrap_or_else(|| source_revision(g));
    let mut exit = ExitCode::SUCCESS;
    for fleet in fleets {
        let info = fleet_info(repo, &fleet)?;
        // The key chain (after a rotation) and revocations, from the auth directory.
        let security = FleetSecurity::load(a.nats.auth_dir.as_deref(), &fleet, info)?;
        security.check_signing_key(&key, &fleet, &info.signing_key)?;
        // The keys plans in the bucket may be signed with (the chain's, none retired): what
        // counts as Harmony's plan for generations and unchanged content.
        let public = harmony_schemas::fleet::parse_public_key(&info.signing_key).map_err(|e| anyhow::anyhow!("fleet `{fleet}` declares an invalid public key: {e}"))?;
        let trusted = security.observe_keys(public)?;
        let mut desired = desired_fleet(repo, &fleet, &revision)?;
        for w in security.apply_to(&mut desired) {
            eprintln!("warning: {w}");
        }
        let opts = a.nats.options_for_fleet(&fleet, &info.nats)?;
        let yes = a.yes;
        let quiet = g.quiet;
        let fleet_name = fleet.clone();
        let confirm: harmony_executor::fleet::run::Confirm = Box::new(move |actions, observed, rollout| {
            for w in &observed.warnings {
                eprintln!("warning: {w}");
            }
            if !quiet || !yes {
                print!("{}", describe(&fleet_name, actions));
                if let Some(r) = rollout {
                    print!("{}", r.describe());
                }
            }
            if yes {
                return true;
            }
            if !std::io::stdin().is_terminal() {
                eprintln!("error: not applying without --yes (stdin is not a terminal)");
                return false;
            }
            print!("Apply these changes to fleet {fleet_name}? [y/N] ");
            let _ = std::io::stdout().flush();
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            matches!(line.trim(), "y" | "Y" | "yes")
        });
        let progress: Option<Arc<dyn Fn(usize, usize) + Send + Sync>> = if std::io::stderr().is_terminal() && !g.quiet {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} writes {per_sec}").unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            Some(Arc::new(move |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
                if done == total {
                    bar.finish_and_clear();
                }
            }))
        } else {
            None
        };
        let req = ApplyRequest {
            rollouts: harmony_executor::fleet::rollout::rollout_specs(repo, &fleet),
            rollout_progress: (!g.quiet).then(|| -> harmony_executor::fleet::run::RolloutProgress {
                Arc::new(|r| eprintln!("{}", harmony_executor::fleet::rollout::progress_line(r)))
            }),
            rollout_poll: None,
            desired,
            signing_key: key.clone(),
            trusted,
            parallelism: usize::from(a.parallelism),
            lock: LockOptions { timeout: a.lock_timeout, ..LockOptions::default() },
            state_dir: Some(state_dir(&a)),
            confirm: Some(confirm),
            progress,
            request_timeout: None,
        };
        let run = rt.block_on(async {
            let client = connect(&opts).await?;
            run_apply(&client, req).await
        })?;
        if let Some(i) = &run.interrupted {
            eprintln!(
                "note: the previous apply of fleet {fleet} ({}, by {}) did not complete ({} of {} writes done); re-planned from the bucket (journal kept at {})",
                harmony_executor::fleet::lock::format_ms(i.started_ms),
                i.holder,
                i.done,
                i.writes,
                i.kept_at.display()
            );
        }
        if run.aborted {
            println!("fleet {fleet}: not applied");
            exit = ExitCode::from(1);
            continue;
        }
        let mut rollout_failed = false;
        if let Some((_, record, reverted)) = &run.rollout {
            use harmony_schemas::fleet::RolloutState;
            for f in &record.failed {
                eprintln!("rollout: {} failed in step {}: {}", f.device, f.wave + 1, f.reason);
            }
            for (device, r) in reverted {
                match r {
                    Ok(rev) => eprintln!("rollout: {device}: previous plan written back (revision {rev})"),
                    Err(e) => eprintln!("rollout: {device}: could not write the previous plan back: {e}"),
                }
            }
            match record.state {
                RolloutState::Complete => println!("fleet {fleet}: rollout of {} complete ({} steps)", record.what.join(", "), record.waves.len()),
                RolloutState::Halted => println!(
                    "fleet {fleet}: rollout of {} halted: {} devices failed (max-failed {}); later steps not written",
                    record.what.join(", "),
                    record.failed.len(),
                    record.max_failed
                ),
                RolloutState::Reverted => println!(
                    "fleet {fleet}: rollout of {} halted and reverted: {} devices failed (max-failed {}); previous plans written back",
                    record.what.join(", "),
                    record.failed.len(),
                    record.max_failed
                ),
                // Only when writing the previous plans back failed to save its end.
                RolloutState::Reverting => {
                    println!("fleet {fleet}: rollout of {} halted, revert not finished: run harmony apply again to finish it", record.what.join(", "))
                }
                RolloutState::InProgress => {}
            }
            rollout_failed = matches!(record.state, RolloutState::Halted | RolloutState::Reverting | RolloutState::Reverted);
        }
        if rollout_failed {
            exit = ExitCode::from(1);
        }
        if run.actions.iter().all(|x| x.op == FleetOp::Noop) {
            if !g.quiet {
                println!("fleet {fleet}: {} devices up to date, nothing to write", run.actions.len());
            }
            continue;
        }
        for r in &run.report.results {
            match &r.outcome {
                ActionOutcome::Stale { expected, found } => eprintln!(
                    "stale: {} expected revision {}, found {}: refused (re-run harmony apply to re-plan)",
                    r.device,
                    expected.map_or("none (new key)".into(), |x| x.to_string()),
                    found.map_or("none (deleted)".into(), |x| x.to_string())
                ),
                ActionOutcome::Failed { error } => eprintln!("failed: {}: {error}", r.device),
                _ => {}
            }
        }
        let (stale, failed) = (run.report.stale().len(), run.report.failed().len());
        println!("fleet {fleet}: {} written, {stale} refused as stale, {failed} failed", run.report.written());
        if failed > 0 {
            exit = ExitCode::from(1);
        } else if stale > 0 && exit == ExitCode::SUCCESS {
            exit = ExitCode::from(2);
        }
    }
    Ok(exit)
}

/// The repository's name, when `--repo` holds a repository that compiles and declares one
/// (what a plan file is checked against; nothing else is read from it).
fn repository_name(g: &Global) -> Option<String> {
    let out = harmony_compiler::compile_repo_cached(&harmony_compiler::DiskFs::new(&g.repo), &Default::default()).ok()?;
    out.repo?.settings.name
}

/// `harmony apply PLANFILE`: verifies the plan and executes exactly its actions
/// ([`harmony_executor::execute::execute`]).
fn apply_planfile(g: &Global, a: &ApplyArgs, path: &std::path::Path, rt: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    use harmony_schemas::plan::PlanFile;
    // A plan file is input: bounded before it is read whole.
    const MAX_PLAN_BYTES: u64 = 1 << 30;
    let size = std::fs::metadata(path).with_context(|| format!("reading plan {}", path.display()))?.len();
    if size > MAX_PLAN_BYTES {
        anyhow::bail!("plan refused, nothing written: {} is {size} bytes, more than a plan file may hold ({MAX_PLAN_BYTES})", path.display());
    }
    // The size is checked again while reading: a FIFO or a growing file reports another length.
    let mut text = String::new();
    let file = std::fs::File::open(path).with_context(|| format!("reading plan {}", path.display()))?;
    std::io::Read::read_to_string(&mut std::io::Read::take(file, MAX_PLAN_BYTES + 1), &mut text).with_context(|| format!("reading plan {}", path.display()))?;
    if text.len() as u64 > MAX_PLAN_BYTES {
        anyhow::bail!("plan refused, nothing written: {} holds more than a plan file may hold ({MAX_PLAN_BYTES} bytes)", path.display());
    }
    let plan = PlanFile::from_json(&text).map_err(|e| anyhow::anyhow!("plan refused, nothing written: {}: {e}", path.display()))?;
    // Verified before it is shown for confirmation: a plan that does not verify is not offered
    // (`execute` refuses it and reports why; the explanation is not sealed, docs/plan.md).
    let verifies = || crate::plan::fingerprint_key(&a.fingerprint_key).is_ok_and(|key| harmony_planner::contract::verify(&plan, &key, repository_name(g).as_deref()).is_ok());
    if !a.yes && verifies() {
        if !std::io::stdin().is_terminal() {
            anyhow::bail!("not applying without --yes (stdin is not a terminal)");
        }
        print!("{}", harmony_planner::output::human(&plan, &harmony_planner::output::HumanOptions { compact: true, ..Default::default() }));
        print!("Apply this plan ({})? [y/N] ", plan.identity);
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        if !matches!(line.trim(), "y" | "Y" | "yes") {
            println!("not applied");
            return Ok(ExitCode::from(1));
        }
    }
    // The fleets it writes device plans to: their NATS servers and the signing key.
    let mut fleets = std::collections::BTreeMap::new();
    for (fleet, target) in &plan.targets.fleets {
        let writes = plan.actions.iter().any(|x| match &x.apply.payload {
            Some(harmony_schemas::plan::Payload::DevicePlan(d)) => d.target.fleet == *fleet,
            Some(harmony_schemas::plan::Payload::DevicePlanDelete(d)) => d.fleet == *fleet,
            _ => false,
        }) || plan.rollouts.iter().any(|r| r.fleet == *fleet);
        if !writes {
            continue;
        }
        let access = harmony_executor::execute::FleetAccess {
            nats: a.nats.options_for_fleet(fleet, &target.nats)?,
            signing_key: load_signing_key(a.signing_key_file.as_deref(), std::env::var(SIGNING_KEY_ENV).ok())?,
            lock: LockOptions { timeout: a.lock_timeout, ..LockOptions::default() },
            state_dir: Some(state_dir(a)),
            rollout_progress: (!g.quiet).then(|| -> harmony_executor::fleet::run::RolloutProgress {
                Arc::new(|r| eprintln!("{}", harmony_executor::fleet::rollout::progress_line(r)))
            }),
            rollout_poll: None,
        };
        fleets.insert(fleet.clone(), access);
    }
    let outcome = execute(g, a, &plan, fleets, rt)?;
    if a.format == ApplyFormat::Json {
        std::io::stdout().lock().write_all(outcome.to_json().as_bytes())?;
    } else {
        report(g, &outcome);
    }
    Ok(ExitCode::from(outcome.exit_code()))
}
