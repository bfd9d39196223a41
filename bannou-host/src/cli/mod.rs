//! Command-line interface (clap). `main.rs` only parses and dispatches to here; each
//! subcommand lives in its own module.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub mod bench;
pub mod plan;

/// Bannou host and orchestrator.
#[derive(Debug, Parser)]
#[command(name = "bannou-host", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the resolved nodes, environments, pools and ordered waves of a preset without
    /// touching anything.
    Plan(plan::PlanArgs),
    /// Run a benchmark (`bench pools`) and print its numbers.
    Bench(bench::BenchArgs),
}

/// Output format of commands that print results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON document.
    Json,
}

/// Where presets are looked up by name: `--presets`, then `ORCHESTRATOR_PRESETS_HOST_PATH`,
/// then `presets/` in the working directory.
pub fn presets_dir(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("ORCHESTRATOR_PRESETS_HOST_PATH").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("presets"))
}

/// Runs a parsed command line; the returned error is printed by `main`.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Plan(args) => plan::run(args, &mut std::io::stdout().lock()),
        Command::Bench(args) => bench::run(args, &mut std::io::stdout().lock()),
    }
}
