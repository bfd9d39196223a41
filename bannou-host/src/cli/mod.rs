//! Command-line interface (clap). `main.rs` only parses and dispatches to here.

use clap::{Parser, Subcommand};

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
pub enum Command {}

/// Runs a parsed command line; the returned error is printed by `main`.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {}
}
