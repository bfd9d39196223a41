//! `bannou-host` entry point: parse the command line and dispatch.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = bannou_host::cli::Cli::parse();
    match bannou_host::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
