//! `bannou-host` entry point: parse the command line and dispatch.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = bannou_host::cli::Cli::parse();
    match bannou_host::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // `bannou-host plan x | head` closes stdout early: not an error worth reporting.
        Err(e)
            if e.chain().any(|c| {
                let kind = c
                    .downcast_ref::<std::io::Error>()
                    .map(std::io::Error::kind)
                    .or_else(|| {
                        c.downcast_ref::<serde_json::Error>()
                            .and_then(serde_json::Error::io_error_kind)
                    });
                kind == Some(std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
