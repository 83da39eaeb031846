//! `harmony charts lock|pull`: flags and printing; resolving, fetching and verifying are
//! `harmony_charts`'s (docs/charts.md).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use harmony_compiler::Code;

use crate::cli::Global;

/// `harmony charts`.
#[derive(clap::Args, Debug)]
pub struct ChartsArgs {
    #[command(subcommand)]
    command: ChartsCommand,
}

#[derive(clap::Subcommand, Debug)]
enum ChartsCommand {
    /// Resolve every remote chart (OCI, Helm repository, archive URL) to an exact version and
    /// archive digest and write harmony.lock; charts already locked stay as they are unless
    /// --update. The archives go to the chart cache (or the lock's vendor directory).
    Lock {
        /// Resolve every chart again, not only those missing from the lock.
        #[arg(long)]
        update: bool,
        #[command(flatten)]
        registry: RegistryFlags,
    },
    /// Fetch every chart harmony.lock names into the chart cache ($XDG_CACHE_HOME/harmony/charts),
    /// or into a directory of the repository (--vendor, recorded in harmony.lock) for air-gapped
    /// use; what is present and verifies is not fetched again.
    Pull {
        /// A repository-relative directory to vendor the archives into (NAME-VERSION.tgz).
        #[arg(long, value_name = "DIR")]
        vendor: Option<String>,
        #[command(flatten)]
        registry: RegistryFlags,
    },
}

/// How registries and repositories are reached.
#[derive(clap::Args, Debug, Clone)]
pub struct RegistryFlags {
    /// Use HTTP, not HTTPS, for OCI registries (also HARMONY_REGISTRY_PLAIN_HTTP=1).
    #[arg(long)]
    pub plain_http: bool,
    /// Trust the CA certificates (PEM) in this file besides the system's.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

impl RegistryFlags {
    pub(crate) fn options(&self) -> harmony_charts::Options {
        harmony_charts::Options { plain_http: self.plain_http, ca_file: self.ca_file.clone() }.with_env()
    }
}

/// Runs `harmony charts …`.
pub fn run(g: &Global, args: ChartsArgs, runtime: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    match args.command {
        ChartsCommand::Lock { update, registry } => {
            let out = crate::cli::compile(g)?;
            // Only an outdated lock may stand between the repository and its lock.
            if out.diagnostics.iter().any(|d| d.severity == harmony_compiler::Severity::Error && d.code != Code::LockOutdated) {
                eprintln!("{}", crate::cli::render_diagnostics(&out, crate::cli::color(g)));
                eprintln!("error: the repository has errors besides an outdated harmony.lock; fix them first (`harmony check`)");
                return Ok(ExitCode::from(1));
            }
            let requests: Vec<harmony_charts::Request> = out
                .remote_charts
                .iter()
                .map(|c| harmony_charts::Request { chart: c.chart.clone(), repo: c.repo.clone(), constraint: c.constraint.clone(), declared_at: c.declared_at.clone() })
                .collect();
            let report = match runtime.block_on(harmony_charts::lock(&g.repo, &requests, update, &registry.options())) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(1));
                }
            };
            let mut err = std::io::stderr().lock();
            if let Some(why) = &report.discarded {
                writeln!(err, "warning: the old harmony.lock was not used: {why}")?;
            }
            for c in &report.resolved {
                writeln!(err, "locked {}{} `{}` → {} {} ({})", c.chart, c.repo.as_ref().map(|r| format!(" in {r}")).unwrap_or_default(), c.constraint, c.name, c.version, c.digest)?;
            }
            for c in &report.dropped {
                writeln!(err, "dropped {} `{}` (no release uses it)", c.chart, c.constraint)?;
            }
            if !g.quiet {
                writeln!(err, "harmony.lock: {} chart(s), {} resolved now", report.lock.charts.len(), report.resolved.len())?;
            }
            Ok(ExitCode::SUCCESS)
        }
        ChartsCommand::Pull { vendor, registry } => match runtime.block_on(harmony_charts::pull(&g.repo, vendor.as_deref(), &registry.options())) {
            Ok(r) => {
                let mut err = std::io::stderr().lock();
                for c in &r.fetched {
                    writeln!(err, "pulled {} {} ({})", c.chart, c.version, c.digest)?;
                }
                if !g.quiet {
                    writeln!(err, "{} chart(s) fetched, {} already present, in {}", r.fetched.len(), r.present, r.into)?;
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("error: {e}");
                Ok(ExitCode::from(1))
            }
        },
    }
}
