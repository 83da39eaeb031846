//! Shell completion and man pages.
//!
//! `harmony completion SHELL` prints the shell's registration script: the shell then asks the
//! binary itself for candidates (`HARMONY_COMPLETE=SHELL harmony -- ARGS…`, clap_complete's dynamic
//! engine), so sub-commands and flags always match the binary, and arguments that name parts of
//! the repository (units, releases, devices, fleets, clusters) complete from the repository found
//! by `--repo` on the command line, `HARMONY_REPO` or the current directory.
//! `harmony man --out DIR` writes a man page per command (clap_mangen).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::engine::{ArgValueCompleter, CompletionCandidate};
use harmony_compiler::{CompiledRepo, DiskFs, compile_repo};

use crate::cli::Args;

/// The environment variable that switches the binary into completion mode.
const COMPLETE_VAR: &str = "HARMONY_COMPLETE";

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
    Powershell,
    Elvish,
}

#[derive(Debug, clap::Args)]
pub struct CompletionArgs {
    /// The shell, e.g. `source <(harmony completion bash)` in ~/.bashrc,
    /// `harmony completion fish | source` in fish's config.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Directory to write the pages to (created): harmony.1, harmony-plan.1, harmony-fleet-enroll.1, …
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Answers a completion request from the shell (`HARMONY_COMPLETE` set) and exits; otherwise returns.
pub fn answer_if_asked() {
    clap_complete::CompleteEnv::with_factory(Args::command).var(COMPLETE_VAR).complete();
}

/// `harmony completion SHELL`.
pub fn registration(a: CompletionArgs) -> anyhow::Result<ExitCode> {
    let name = match a.shell {
        Shell::Bash => "bash",
        Shell::Zsh => "zsh",
        Shell::Fish => "fish",
        Shell::Powershell => "powershell",
        Shell::Elvish => "elvish",
    };
    let shells = clap_complete::env::Shells::builtins();
    let shell = shells.completer(name).with_context(|| format!("no completion support for {name}"))?;
    let mut out = std::io::stdout().lock();
    shell.write_registration(COMPLETE_VAR, "harmony", "harmony", "harmony", &mut out)?;
    Ok(ExitCode::SUCCESS)
}

/// `harmony man --out DIR`: one page per command and sub-command.
pub fn man(a: ManArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let mut written = 0;
    write_pages(Args::command(), "harmony", "harmony", &a.out, &mut written)?;
    println!("{written} man pages written to {}", a.out.display());
    Ok(ExitCode::SUCCESS)
}

/// Writes `cmd`'s page as `NAME.1` (harmony-fleet-enroll.1), its synopsis saying `BIN`
/// (harmony fleet enroll), then its sub-commands' pages.
fn write_pages(cmd: clap::Command, name: &str, bin: &str, dir: &Path, written: &mut usize) -> anyhow::Result<()> {
    let cmd = cmd.display_name(name.to_owned()).bin_name(bin.to_owned());
    let path = dir.join(format!("{name}.1"));
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    *written += 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        write_pages(sub.clone(), &format!("{name}-{}", sub.get_name()), &format!("{bin} {}", sub.get_name()), dir, written)?;
    }
    Ok(())
}

/// The repository a completion request is about: `--repo DIR` on the line being completed,
/// else `HARMONY_REPO`, else the current directory.
fn repository() -> Option<CompiledRepo> {
    let args: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
    let from_line = args.iter().enumerate().find_map(|(i, a)| match a.strip_prefix("--repo") {
        Some("") => args.get(i + 1).cloned(),
        Some(v) => v.strip_prefix('=').map(str::to_owned),
        None => None,
    });
    let dir = from_line.map(PathBuf::from).or_else(|| std::env::var_os("HARMONY_REPO").map(PathBuf::from)).unwrap_or_else(|| PathBuf::from("."));
    compile_repo(&DiskFs::new(dir)).ok()?.repo
}

/// Candidates from the repository that start with what was typed.
fn candidates(typed: &OsStr, names: impl Fn(&CompiledRepo) -> Vec<String>) -> Vec<CompletionCandidate> {
    let Some(typed) = typed.to_str() else { return Vec::new() };
    let Some(repo) = repository() else { return Vec::new() };
    let mut names = names(&repo);
    names.sort();
    names.dedup();
    names.into_iter().filter(|n| n.starts_with(typed)).map(CompletionCandidate::new).collect()
}

/// The last segment of the ids of units of one kind (a release's or device's name).
fn unit_names(repo: &CompiledRepo, kind: &str) -> Vec<String> {
    repo.units.keys().filter(|id| id.kind() == kind).filter_map(|id| id.as_str().rsplit('/').next().map(str::to_owned)).collect()
}

/// Unit ids (`plan --target`, `--exclude`).
pub fn units() -> ArgValueCompleter {
    ArgValueCompleter::new(|typed: &OsStr| candidates(typed, |r| r.units.keys().map(|id| id.as_str().to_owned()).collect()))
}

/// Release names and ids (`rollback`, `template --release`).
pub fn releases() -> ArgValueCompleter {
    ArgValueCompleter::new(|typed: &OsStr| {
        candidates(typed, |r| {
            let mut names = unit_names(r, "release");
            names.extend(r.units.keys().filter(|id| id.kind() == "release").map(|id| id.as_str().to_owned()));
            names
        })
    })
}

/// Device ids.
pub fn devices() -> ArgValueCompleter {
    ArgValueCompleter::new(|typed: &OsStr| candidates(typed, |r| unit_names(r, "device-plan")))
}

/// Fleet names.
pub fn fleets() -> ArgValueCompleter {
    ArgValueCompleter::new(|typed: &OsStr| candidates(typed, |r| r.fleets.keys().map(|n| n.as_str().to_owned()).collect()))
}

/// Cluster and fleet names (`unlock`).
pub fn targets() -> ArgValueCompleter {
    ArgValueCompleter::new(|typed: &OsStr| candidates(typed, |r| r.clusters.keys().chain(r.fleets.keys()).map(|n| n.as_str().to_owned()).collect()))
}
