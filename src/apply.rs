//! `harmony apply`: with a plan file, executes exactly its actions; without one, makes the plan
//! `harmony plan` would save, shows it, confirms, and executes that plan object the same way.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use harmony_compiler::CompiledRepo;
use harmony_executor::execute::FleetAccess;
use harmony_executor::fleet::convert::{SIGNING_KEY_ENV, fleet_info};
use harmony_executor::fleet::security::FleetSecurity;
use harmony_executor::fleet::{ApplyOptions, LockOptions, NatsOptions, load_signing_key};

use crate::cli::Global;
use crate::progress::{Printer, Style};

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

/// Exit codes of `harmony apply` (also in docs/plan.md).
const PLANFILE_EXIT_CODES: &str = "Exit codes: 0 every action applied (or nothing to do); 1 the plan was refused before anything was written (edited, another key, repository or cluster, another format version), not confirmed, an action failed, a planned rollout halted or the apply was stopped (Ctrl-C, SIGTERM); 2 some actions were refused as stale (their target moved since planning, or a secret-value changed) and none failed; 130 a second Ctrl-C or SIGTERM ended it at once. Without a plan file, apply makes the plan `harmony plan` would save, shows it, confirms and executes it the same way.";

/// What `--refuse-stale` refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RefuseStale {
    /// Only the stale actions; the others are applied.
    Action,
    /// The whole plan: every action is checked first and nothing is written if any is stale.
    All,
}

/// Output of `harmony apply`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ApplyFormat {
    /// One line per unit as it finishes, then per fleet and overall counts.
    Human,
    /// JSON Lines: one object per unit as it finishes (kind harmony-apply-unit,
    /// docs/schemas/apply-unit.schema.json), then the outcome (kind harmony-apply-outcome,
    /// docs/schemas/apply-outcome.schema.json) as the last line. Needs --yes; nothing else is
    /// printed on stdout.
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
    /// The output format (json: never asks, so it needs --yes).
    #[arg(long, value_enum, default_value_t = ApplyFormat::Human)]
    pub format: ApplyFormat,
    /// With a plan file: the fingerprint key the plan was made (and sealed) with; default as
    /// for `harmony plan`.
    #[arg(long, value_name = "FILE", env = "HARMONY_FINGERPRINT_KEY_FILE")]
    pub fingerprint_key: Option<PathBuf>,
    /// Only this fleet, and no cluster (default: every cluster and fleet of the repository).
    #[arg(long, value_name = "NAME", add = crate::completion::fleets())]
    pub fleet: Option<String>,
    /// Fleets: file holding the fleet's Ed25519 private key (hex or base64); or set $HARMONY_SIGNING_KEY.
    #[arg(long, value_name = "FILE", env = "HARMONY_SIGNING_KEY_FILE")]
    pub signing_key_file: Option<PathBuf>,
    /// Fleets: device plan writes in flight at once.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub parallelism: u16,
    /// How long to wait for another apply's lock of a cluster or fleet (a 30 s lease, renewed
    /// while that apply runs) to be released or to expire (0: fail at once). A lock whose holder
    /// ran on this host and is gone is taken over at once.
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = parse_duration)]
    pub lock_timeout: Duration,
    /// Apply without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Fleets: where the apply journal is kept (default $XDG_STATE_HOME/harmony or ~/.local/state/harmony).
    #[arg(long, value_name = "DIR", env = "HARMONY_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Clusters: kubeconfig for the repository's clusters (default: `KUBECONFIG`, then `~/.kube/config`).
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
    /// Clusters: wait up to this many seconds for each release's objects to become ready.
    #[arg(long, value_name = "SECONDS")]
    pub wait: Option<u64>,
}


/// `harmony apply` without a plan file: makes the plan with `harmony plan`'s code (live, what
/// `harmony plan --out` would save), shows it, confirms (or `--yes`), then executes that plan
/// object exactly as `harmony apply PLANFILE` executes a file ([`harmony_executor::execute::execute`]):
/// no second computation, for clusters and fleets alike.
fn apply_repository(g: &Global, a: &ApplyArgs, rt: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    let args = crate::plan::PlanArgs {
        observed: None,
        offline: false,
        live: crate::plan::LiveArgs { kubeconfig: a.kubeconfig.clone(), nats: a.nats.clone() },
        skip_clusters: a.skip_clusters || a.fleet.is_some(),
        skip_fleets: a.skip_fleets,
        fleet: a.fleet.clone(),
        out: None,
        format: crate::plan::PlanFormat::Human,
        flags: crate::plan::PlanFlags { compact: false, targets: Vec::new(), excludes: Vec::new(), detailed_exitcode: false, fingerprint_key: a.fingerprint_key.clone() },
    };
    let (plan, planned) = crate::plan::make_plan(g, &args, rt)?;
    let json = a.format == ApplyFormat::Json;
    if plan.targets.clusters.is_empty() && plan.targets.fleets.is_empty() && !json {
        println!("the repository declares no cluster or fleet to apply to: nothing to apply");
        return Ok(ExitCode::SUCCESS);
    }
    // Shown as `harmony plan` shows it (each change with its reason and diff); not with JSON
    // output, which holds only the results (and needs --yes).
    if !json && (!g.quiet || !a.yes) {
        crate::plan::print(&plan, crate::plan::PlanFormat::Human, false, g)?;
    }
    // Nothing is asked when nothing would be written.
    if !a.yes && (plan.summary.has_changes() || !plan.rollouts.is_empty()) && !confirm(&format!("Apply this plan ({})?", plan.identity), "not applying")? {
        println!("not applied");
        return Ok(ExitCode::from(1));
    }
    let printer = printer(g, a);
    let fleets = fleet_access(g, a, &plan, Some(&planned), &printer)?;
    execute(g, a, &plan, fleets, &printer, rt)
}

/// The printer of an apply's results as they finish (`--format`, `--quiet`, a live display on
/// a terminal).
fn printer(g: &Global, a: &ApplyArgs) -> Arc<Printer> {
    let style = match a.format {
        ApplyFormat::Human => Style::Human { quiet: g.quiet },
        ApplyFormat::Json => Style::Json,
    };
    Printer::new(style, !g.quiet)
}

/// Asks `question` on the terminal; without one, fails with `refusal` (`--yes` answers yes).
pub(crate) fn confirm(question: &str, refusal: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("{refusal} without --yes (stdin is not a terminal)");
    }
    print!("{question} [y/N] ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

/// How to write to each fleet the plan writes device plans to: its NATS servers (the flags, else
/// the plan's), the signing key, the lock, journal, rollout progress and write parallelism.
/// With the `repository` just planned: to every fleet planned, the signing key checked first
/// against the fleet's key chain in the auth directory (a retired key is refused even when
/// nothing is to be written).
fn fleet_access(
    g: &Global,
    a: &ApplyArgs,
    plan: &harmony_schemas::plan::PlanFile,
    repository: Option<&CompiledRepo>,
    printer: &Arc<Printer>,
) -> anyhow::Result<BTreeMap<String, FleetAccess>> {
    use harmony_schemas::plan::Payload;
    let mut fleets = BTreeMap::new();
    for (fleet, target) in &plan.targets.fleets {
        let writes = plan.actions.iter().any(|x| match &x.apply.payload {
            Some(Payload::DevicePlan(d)) => d.target.fleet == *fleet,
            Some(Payload::DevicePlanDelete(d)) => d.fleet == *fleet,
            _ => false,
        }) || plan.rollouts.iter().any(|r| r.fleet == *fleet);
        if !writes && repository.is_none() {
            continue;
        }
        let signing_key = load_signing_key(a.signing_key_file.as_deref(), std::env::var(SIGNING_KEY_ENV).ok())?;
        if let Some(repo) = repository {
            let info = fleet_info(repo, fleet)?;
            FleetSecurity::load(a.nats.auth_dir.as_deref(), fleet, info)?.check_signing_key(&signing_key, fleet, &info.signing_key)?;
        }
        let access = FleetAccess {
            nats: a.nats.options_for_fleet(fleet, &target.nats)?,
            signing_key,
            lock: LockOptions { timeout: a.lock_timeout, ..LockOptions::default() },
            state_dir: Some(state_dir(a)),
            rollout_progress: (!g.quiet).then(|| -> harmony_executor::fleet::run::RolloutProgress {
                let printer = printer.clone();
                Arc::new(move |r| printer.note(&harmony_executor::fleet::rollout::progress_line(r)))
            }),
            rollout_poll: None,
            writes: ApplyOptions { parallelism: usize::from(a.parallelism), progress: printer.writes(), halt: None, on_result: None },
            security: FleetSecurity::from_auth_dir(a.nats.auth_dir.as_deref(), fleet)?,
        };
        fleets.insert(fleet.clone(), access);
    }
    Ok(fleets)
}

/// Executes a plan with the flags of `harmony apply`, printing each unit's result as it
/// finishes, then the summary (human) or the outcome (JSON): the exit code.
fn execute(
    g: &Global,
    a: &ApplyArgs,
    plan: &harmony_schemas::plan::PlanFile,
    fleets: std::collections::BTreeMap<String, harmony_executor::execute::FleetAccess>,
    printer: &Arc<Printer>,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<ExitCode> {
    let opts = harmony_executor::execute::ExecuteOptions {
        fleets,
        kubeconfig: a.kubeconfig.clone(),
        release: harmony_executor::kube::release::Options { wait: a.wait.map(Duration::from_secs), ..Default::default() },
        holder: harmony_executor::lock::LockHolder::this_command("apply"),
        lock: LockOptions { timeout: a.lock_timeout, ..LockOptions::default() },
        refuse_stale_all: a.refuse_stale == RefuseStale::All,
        fail_fast: a.fail_fast,
        key: crate::plan::fingerprint_key(&a.fingerprint_key)?,
        repository: repository_name(g),
        stop: Default::default(),
        observer: Some(printer.observer()),
    };
    // Ctrl-C or SIGTERM from here on stops the apply (no unit starts, a running one gets a grace
    // period, then locks are released and the outcome reported) instead of killing it; a second
    // one exits at once.
    let stop = opts.stop.clone();
    let notes = printer.clone();
    let signals = rt.spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        for n in 0.. {
            let terminated = async {
                match term.as_mut() {
                    Some(t) => _ = t.recv().await,
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminated => {}
            }
            if n > 0 {
                notes.note(&format!(
                    "interrupted again: exiting at once (exit code {FORCED_EXIT}); the locks are left to expire (30 s; the next apply on this host takes them over at once), a fleet's journal is left without its end"
                ));
                notes.finish();
                std::process::exit(i32::from(FORCED_EXIT));
            }
            notes.note(&format!(
                "interrupted: no further unit starts; a running one gets {} s to finish; then the locks are released (interrupt again to exit at once)",
                harmony_executor::execute::STOP_GRACE.as_secs()
            ));
            stop.stop();
        }
    });
    let outcome = rt.block_on(harmony_executor::execute::execute(plan, &opts));
    signals.abort();
    printer.finish();
    match a.format {
        ApplyFormat::Json => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", outcome.to_line())?;
            out.flush()?;
        }
        ApplyFormat::Human => report(g, plan, &outcome),
    }
    // An interrupted apply fails even when what ran before the signal all succeeded.
    let code = match outcome.exit_code() {
        0 if opts.stop.is_stopped() => 1,
        c => c,
    };
    Ok(ExitCode::from(code))
}

/// The exit code when a second Ctrl-C or SIGTERM ends an apply at once (128 + SIGINT, as a
/// shell reports a process killed by Ctrl-C).
const FORCED_EXIT: u8 = 130;

/// Prints an apply's summary after its units' lines ([`Printer`]): why the plan was refused, per
/// fleet what its apply found and left (an unfinished earlier apply, the rollout's end) and its
/// counts, then the counts.
fn report(g: &Global, plan: &harmony_schemas::plan::PlanFile, outcome: &harmony_schemas::plan::ApplyOutcome) {
    use harmony_schemas::plan::Outcome;
    if let Some(why) = &outcome.refused {
        eprintln!("error: {why}");
        return;
    }
    let count = |o: Outcome| outcome.actions.iter().filter(|r| r.outcome == o).count();
    for fleet in plan.targets.fleets.keys() {
        report_fleet(g, fleet, outcome);
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

/// One fleet's part of an outcome: an unfinished earlier apply, the rollout's failures, reverts
/// and end, and its device plans' counts.
fn report_fleet(g: &Global, fleet: &str, outcome: &harmony_schemas::plan::ApplyOutcome) {
    use harmony_schemas::fleet::RolloutState;
    use harmony_schemas::plan::Outcome;
    if let Some(f) = outcome.fleets.iter().find(|f| f.fleet == fleet) {
        if let Some(i) = &f.interrupted {
            eprintln!(
                "note: the previous apply of fleet {fleet} ({}, by {}) did not complete ({} of {} writes done); planned from the bucket as it left it (journal kept at {})",
                harmony_executor::fleet::lock::format_ms(i.started_ms),
                i.holder,
                i.done,
                i.writes,
                i.journal
            );
        }
        if let Some(record) = &f.rollout {
            for x in &record.failed {
                eprintln!("rollout: {} failed in step {}: {}", x.device, x.wave + 1, x.reason);
            }
            for w in &f.reverted {
                match (w.revision, &w.error) {
                    (Some(rev), _) => eprintln!("rollout: {}: previous plan written back (revision {rev})", w.device),
                    (None, e) => eprintln!("rollout: {}: could not write the previous plan back: {}", w.device, e.as_deref().unwrap_or("?")),
                }
            }
            let what = record.what.join(", ");
            match record.state {
                RolloutState::Complete => println!("fleet {fleet}: rollout of {what} complete ({} steps)", record.waves.len()),
                RolloutState::Halted => println!(
                    "fleet {fleet}: rollout of {what} halted: {} devices failed (max-failed {}); later steps not written",
                    record.failed.len(),
                    record.max_failed
                ),
                RolloutState::Reverted => println!(
                    "fleet {fleet}: rollout of {what} halted and reverted: {} devices failed (max-failed {}); previous plans written back",
                    record.failed.len(),
                    record.max_failed
                ),
                // Only when writing the previous plans back failed to save its end.
                RolloutState::Reverting => println!("fleet {fleet}: rollout of {what} halted, revert not finished: run harmony apply again to finish it"),
                RolloutState::InProgress => {}
            }
        }
    }
    let prefix = format!("device-plan/{fleet}/");
    let mine: Vec<Outcome> = outcome.actions.iter().filter(|r| r.unit.starts_with(&prefix)).map(|r| r.outcome).collect();
    let n = |o: Outcome| mine.iter().filter(|x| **x == o).count();
    if mine.iter().all(|o| *o == Outcome::Noop) {
        if !g.quiet {
            println!("fleet {fleet}: {} devices up to date, nothing to write", mine.len());
        }
    } else {
        println!("fleet {fleet}: {} written, {} refused as stale, {} failed, {} skipped", n(Outcome::Applied), n(Outcome::Stale), n(Outcome::Failed), n(Outcome::Skipped));
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

pub fn run(g: &Global, a: ApplyArgs, rt: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    // JSON output is for programs: nothing may be asked (like `terraform apply -json`, which
    // needs -auto-approve).
    if a.format == ApplyFormat::Json && !a.yes {
        anyhow::bail!("--format json needs --yes: apply asks for confirmation on the terminal, and JSON output is for programs (review the plan with `harmony plan --out FILE` and apply that file)");
    }
    match &a.planfile {
        Some(path) => apply_planfile(g, &a, path, rt),
        None => apply_repository(g, &a, rt),
    }
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
    let plan = PlanFile::read(path).map_err(|e| anyhow::anyhow!("plan refused, nothing written: {}: {e}", path.display()))?;
    // Verified before it is shown for confirmation: a plan that does not verify is not offered
    // (`execute` refuses it and reports why): what is shown, explanation included, is sealed.
    let verifies = || crate::plan::fingerprint_key(&a.fingerprint_key).is_ok_and(|key| harmony_planner::contract::verify(&plan, &key, repository_name(g).as_deref()).is_ok());
    if !a.yes && a.format == ApplyFormat::Human && verifies() {
        print!("{}", harmony_planner::output::human(&plan, &harmony_planner::output::HumanOptions { compact: true, ..Default::default() }));
        if !confirm(&format!("Apply this plan ({})?", plan.identity), "not applying")? {
            println!("not applied");
            return Ok(ExitCode::from(1));
        }
    }
    let printer = printer(g, a);
    let fleets = fleet_access(g, a, &plan, None, &printer)?;
    execute(g, a, &plan, fleets, &printer, rt)
}
