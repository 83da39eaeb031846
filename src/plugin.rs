//! Plugins, kubectl's and cargo's convention: `harmony foo ARGS…` runs the executable
//! `harmony-foo` found on `PATH` when `foo` is not a built-in command (a built-in always wins).
//! `harmony foo bar ARGS…` prefers `harmony-foo-bar` to `harmony-foo` (the longest name found,
//! as kubectl does). The plugin replaces the process (exec), so its exit code and signals are the
//! command's; it learns the repository and the global flags from the environment.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::{Args, ColorChoice, Global};

/// What a plugin's executable is called: this prefix and the command's name.
const PREFIX: &str = "harmony-";

#[derive(Debug, clap::Args)]
pub struct PluginArgs {
    #[command(subcommand)]
    pub command: PluginCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum PluginCommand {
    /// List the plugins on PATH (executables named harmony-NAME), in the order PATH searches
    /// them, with those shadowed by an earlier one of the same name or by a built-in command.
    List,
}

pub fn run(a: PluginArgs) -> anyhow::Result<ExitCode> {
    match a.command {
        PluginCommand::List => list(),
    }
}

/// The names `harmony NAME` runs without a plugin: the sub-commands, their aliases and `help`.
fn builtins() -> Vec<String> {
    let cmd = Args::command();
    let mut names: Vec<String> = cmd.get_subcommands().flat_map(|s| std::iter::once(s.get_name()).chain(s.get_all_aliases())).map(str::to_owned).collect();
    names.push("help".to_owned());
    names
}

/// A name a plugin may have: what kubectl accepts, ASCII letters, digits, `-` and `_`.
fn plugin_name(arg: &OsStr) -> Option<&str> {
    let s = arg.to_str()?;
    let ok = !s.is_empty() && !s.starts_with('-') && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then_some(s)
}

/// Whether `path` is a file this user may execute.
fn executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The first `harmony-NAME` on `PATH`.
fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).filter(|d| d.is_absolute()).map(|d| d.join(format!("{PREFIX}{name}"))).find(|p| executable(p))
}

/// Runs the plugin for `args` (the command line from the unknown command on), replacing this
/// process. Returns only when no plugin matches or it cannot be started.
pub fn exec(g: &Global, args: Vec<OsString>) -> anyhow::Result<ExitCode> {
    use std::os::unix::process::CommandExt;
    // harmony foo bar baz: harmony-foo-bar-baz, then harmony-foo-bar, then harmony-foo.
    let words: Vec<&str> = args.iter().map_while(|a| plugin_name(a)).collect();
    let found = (1..=words.len()).rev().find_map(|n| find(&words[..n].join("-")).map(|p| (n, p)));
    let Some((used, program)) = found else {
        let name = args.first().map(|a| a.to_string_lossy().into_owned()).unwrap_or_default();
        let builtins = builtins();
        let near: Vec<&str> = builtins.iter().filter(|b| strsim::levenshtein(b, &name) <= 2).map(String::as_str).collect();
        let hint = match near.as_slice() {
            [] => String::new(),
            names => format!("; did you mean {}?", names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(" or ")),
        };
        eprintln!(
            "error: unrecognized command `{}`: no built-in command and no plugin {PREFIX}{} on PATH{hint}\n\n`harmony --help` lists the commands, `harmony plugin list` the plugins.",
            harmony_schemas::printable(&name),
            harmony_schemas::printable(&name)
        );
        return Ok(ExitCode::from(2));
    };
    let repo = std::path::absolute(&g.repo).unwrap_or_else(|_| g.repo.clone());
    let color = match g.color {
        ColorChoice::Auto => "auto",
        ColorChoice::Always => "always",
        ColorChoice::Never => "never",
    };
    let mut cmd = std::process::Command::new(&program);
    cmd.args(&args[used..]).env("HARMONY_REPO", &repo).env("HARMONY_VERBOSE", g.verbose.to_string()).env("HARMONY_QUIET", if g.quiet { "1" } else { "0" }).env("HARMONY_COLOR", color);
    if let Ok(bin) = std::env::current_exe() {
        cmd.env("HARMONY_BIN", bin);
    }
    let error = cmd.exec();
    Err(error).with_context(|| format!("running plugin {}", program.display()))
}

/// `harmony plugin list`.
fn list() -> anyhow::Result<ExitCode> {
    let builtins = builtins();
    let path = std::env::var_os("PATH").unwrap_or_default();
    // The first executable of each name wins, as exec would find it.
    let mut first: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut lines = Vec::new();
    let mut usable = 0;
    for dir in std::env::split_paths(&path).filter(|d| d.is_absolute()) {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut found: Vec<(String, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let file = e.file_name().into_string().ok()?;
                let name = file.strip_prefix(PREFIX)?.to_owned();
                plugin_name(OsStr::new(&name))?;
                Some((name, e.path()))
            })
            .filter(|(_, p)| executable(p))
            .collect();
        found.sort();
        for (name, p) in found {
            let shown = harmony_schemas::printable(&p.to_string_lossy()).into_owned();
            if builtins.iter().any(|b| *b == name) {
                lines.push(format!("{shown}  (ignored: `{name}` is a built-in command)"));
            } else if let Some(earlier) = first.get(&name) {
                lines.push(format!("{shown}  (shadowed by {})", harmony_schemas::printable(&earlier.to_string_lossy())));
            } else {
                usable += 1;
                lines.push(shown);
                first.insert(name, p);
            }
        }
    }
    if lines.is_empty() {
        eprintln!("error: no plugins on PATH (executables named {PREFIX}NAME)");
        return Ok(ExitCode::from(1));
    }
    println!("The following harmony plugins are on PATH ({usable} usable):");
    for l in lines {
        println!("{l}");
    }
    Ok(ExitCode::SUCCESS)
}
