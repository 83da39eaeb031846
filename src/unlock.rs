//! `harmony unlock CLUSTER|FLEET`: removes an apply lock left by an apply known to be dead, as
//! Terraform's `force-unlock` does: shows the holder, asks (or `--yes`), removes exactly the lock
//! it showed (`harmony_executor::lock::unlock`: compare-and-set, never a lock taken meanwhile).

use std::path::PathBuf;
use std::process::ExitCode;

use harmony_executor::lock::{self, LockTarget};

use crate::apply::{NatsArgs, compiled, confirm};
use crate::cli::Global;

/// Flags of `harmony unlock`.
#[derive(Debug, clap::Args)]
pub struct UnlockArgs {
    /// The cluster or fleet (as the repository names it) whose apply lock to remove.
    #[arg(add = crate::completion::targets())]
    pub target: String,
    /// Remove it without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// kubeconfig for a cluster (default: `KUBECONFIG`, then `~/.kube/config`).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    #[command(flatten)]
    pub nats: NatsArgs,
}

pub fn run(g: &Global, a: UnlockArgs, rt: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    let repo = compiled(g)?;
    let (what, target) = if let Some((_, c)) = repo.clusters.iter().find(|(n, _)| n.as_str() == a.target) {
        (format!("cluster {}", a.target), LockTarget::Cluster { kubeconfig: a.kubeconfig.clone(), context: c.context.clone() })
    } else if let Some((_, f)) = repo.fleets.iter().find(|(n, _)| n.as_str() == a.target) {
        (format!("fleet {}", a.target), LockTarget::Fleet { nats: a.nats.options_for_fleet(&a.target, &f.nats)?, fleet: a.target.clone() })
    } else {
        let names: Vec<&str> = repo.clusters.keys().chain(repo.fleets.keys()).map(|n| n.as_str()).collect();
        anyhow::bail!("the repository declares no cluster or fleet `{}` (it declares: {})", a.target, names.join(", "));
    };
    let Some(shown) = rt.block_on(lock::show(&target)).map_err(|e| anyhow::anyhow!("{what}: {e}"))? else {
        println!("{what} is not locked");
        return Ok(ExitCode::SUCCESS);
    };
    println!("{}", locked_by(&what, &shown.description));
    if !a.yes && !confirm("Remove this lock? Only if that apply is known to be dead", "not unlocking")? {
        println!("not unlocked");
        return Ok(ExitCode::from(1));
    }
    rt.block_on(lock::unlock(&target, &shown)).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
    println!("{what} unlocked");
    Ok(ExitCode::SUCCESS)
}

/// `CLUSTER is locked by HOLDER`, the holder escaped: it is what the lock entry says, and anyone
/// who could write the Lease or the locks bucket chose it.
fn locked_by(what: &str, holder: &str) -> String {
    format!("{what} is locked by {}", harmony_schemas::printable(holder))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_forged_holder_cannot_steer_the_terminal() {
        let line = super::locked_by("fleet pico", "eve@h pid 1\nfleet pico unlocked\u{1b}[1A\u{202e}");
        assert_eq!(line, "fleet pico is locked by eve@h pid 1\\nfleet pico unlocked\\u{1b}[1A\\u{202e}");
    }
}
