//! `bannou-host` entry point: parse the command line and dispatch.

use clap::Parser;

// The orchestrator allocates many small, short-lived values (events, leases, routes);
// mimalloc measured markedly faster than glibc's malloc on those paths (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
