//! The `dreamplay` binary: parse the command line, run the command, report errors as messages.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = dreamplay::cli::Cli::parse();
    match dreamplay::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
