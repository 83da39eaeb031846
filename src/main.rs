mod template;

use clap::Parser;

#[derive(Parser)]
#[command(name = "harmony", version)]
enum Cli {
    /// Render a chart like `helm template`.
    Template(template::TemplateArgs),
}

fn main() -> std::process::ExitCode {
    match Cli::parse() {
        Cli::Template(a) => match template::run(a) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("Error: {e}");
                std::process::ExitCode::from(1)
            }
        },
    }
}
