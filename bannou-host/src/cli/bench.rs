//! `bannou-host bench ...`: end-to-end benchmarks, each run side by side with its baseline
//! on one machine (DESIGN.md section 8). Numbers come from here, never from timed tests.

use std::io::Write;

use clap::{Args, Subcommand};

pub mod pools;

/// Arguments of `bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which benchmark.
    #[command(subcommand)]
    pub what: BenchCommand,
}

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Acquire+release pairs against the in-memory store, the Redis store and upstream's
    /// lock + read-modify-write algorithm on the same Redis.
    Pools(pools::PoolsArgs),
}

/// Runs a benchmark and prints its report to `out`.
pub fn run(args: BenchArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    match args.what {
        BenchCommand::Pools(a) => pools::run(a, out),
    }
}
