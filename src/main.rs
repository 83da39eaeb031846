//! `harmony`: the command-line interface. Thin by design: it parses flags, calls the
//! library crates and prints. Everything that decides anything lives in the crates.

mod apply;
mod charts;
mod cli;
mod completion;
mod device;
mod fleet;
mod plan;
mod plugin;
mod progress;
mod publish;
mod rollback;
mod sarif;
mod status;
mod template;
mod unlock;
mod ui;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    completion::answer_if_asked();
    let args = cli::Args::parse();
    cli::init_logging(&args.global);
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
