//! `harmony rollback RELEASE [REVISION]`: Helm's rollback, on the cluster the repository
//! declares for the release, impersonating its tenant, under the cluster's apply lock. A new
//! revision holding the old revision's chart, values and manifest, exactly as `helm rollback`
//! makes it (see docs/kubernetes.md).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use harmony_executor::kube::release::{self, Options};

/// Flags of `harmony rollback`.
#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// The release (its name, or its unit id when the name is not unique).
    #[arg(add = crate::completion::releases())]
    pub release: String,
    /// The revision to roll back to (default: the one before the deployed revision).
    pub revision: Option<u32>,
    /// kubeconfig file (default: `KUBECONFIG`, then `~/.kube/config`).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Wait up to this many seconds for the rolled-back objects to be ready.
    #[arg(long, value_name = "SECONDS")]
    pub wait: Option<u64>,
}

pub fn run(args: RollbackArgs, repo: &Path, runtime: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    let out = harmony_compiler::compile_repo(&harmony_compiler::DiskFs::new(repo)).with_context(|| format!("reading repository {}", repo.display()))?;
    let Some(compiled) = out.repo else {
        anyhow::bail!("the repository does not compile ({} error(s)); `harmony check` lists them", out.errors());
    };
    let (_, r) = crate::template::find_release(&compiled, &args.release, "release")?;
    let (ns, name) = (r.namespace.to_string(), r.name.as_str().to_string());
    let opts = Options { wait: args.wait.map(Duration::from_secs), ..Options::default() };
    let revision = runtime.block_on(release::rollback_unit(args.kubeconfig.as_deref(), r, args.revision, &opts, &harmony_executor::lock::LockHolder::this_command("rollback")));
    let revision = revision.with_context(|| format!("rolling back release {ns}/{name} on cluster {} (context {})", r.cluster, r.context))?;
    println!("Rolled back {ns}/{name}: revision {revision} is deployed.");
    Ok(ExitCode::SUCCESS)
}
