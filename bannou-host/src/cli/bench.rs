//! `bannou-host bench ...`: end-to-end benchmarks, each run side by side with its baseline
//! on one machine (D32 (docs/DECISIONS.md#d32)). Numbers come from here, never from timed tests.

use std::io::Write;

use clap::{Args, Subcommand};

pub mod deploy;
pub mod docker;
pub mod events;
pub mod heartbeats;
pub mod pools;
pub mod scale;

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
    /// Heartbeats through the in-memory bus and Redis Streams into the ingestion pipeline:
    /// throughput, end-to-end lag, and how fast a silenced instance is reported unavailable.
    Heartbeats(heartbeats::HeartbeatsArgs),
    /// Deploy until every node is healthy: a preset on the in-process backend (median and
    /// spread over repeated fresh deployments), or with `--backend docker` an N-node
    /// topology on Docker against `docker-compose up` of the same nodes.
    Deploy(deploy::DeployBenchArgs),
    /// Deploys with nobody subscribed to the event stream against deploys with idle
    /// subscribers and one that never reads, rounds alternating on one control plane (a
    /// preset in process, or with `--backend docker` an N-node topology on Docker).
    Events(events::EventsBenchArgs),
    /// The target load (Redis required): simulated nodes heartbeating through Redis, pool
    /// workers leased over HTTP by simulated callers, a topology change and a pool
    /// scale-up mid-run; heartbeat lag, acquire latency, control-plane and Redis CPU and
    /// memory, double leases; with `--step`, the most nodes held at lag p99 <= 1 s.
    Scale(scale::ScaleArgs),
}

/// Runs a benchmark and prints its report to `out`.
pub fn run(args: BenchArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    match args.what {
        BenchCommand::Pools(a) => pools::run(a, out),
        BenchCommand::Heartbeats(a) => heartbeats::run(a, out),
        BenchCommand::Deploy(a) => deploy::run(a, out),
        BenchCommand::Events(a) => events::run(a, out),
        BenchCommand::Scale(a) => scale::run(a, out),
    }
}

/// Nearest-rank percentile (`q` in 0..=1) of ascending samples; `None` when there are none.
pub(crate) fn nearest_rank<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
}

#[cfg(test)]
mod tests {
    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(super::nearest_rank(&v, 0.5), Some(50));
        assert_eq!(super::nearest_rank(&v, 0.99), Some(99));
        assert_eq!(super::nearest_rank(&v, 1.0), Some(100));
        assert_eq!(super::nearest_rank(&[7u32], 0.0), Some(7));
        assert_eq!(super::nearest_rank::<u32>(&[], 0.5), None);
    }
}
