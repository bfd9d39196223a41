//! Processing pools over HTTP: `pool acquire|release|status|scale|cleanup`
//! (docs/COMPATIBILITY.md#acquire-processor to docs/COMPATIBILITY.md#cleanup-pool), and
//! ours: `pool renew|drain` (docs/COMPATIBILITY.md#renew-processor,
//! docs/COMPATIBILITY.md#drain-pool).

use std::io::Write;

use clap::{Args, Subcommand};
use orchestrator_core::api::{
    AcquireProcessorRequest, AcquireProcessorResponse, CleanupPoolRequest, CleanupPoolResponse,
    DrainPoolRequest, DrainPoolResponse, GetPoolStatusRequest, PoolStatusResponse,
    ReleaseProcessorRequest, ReleaseProcessorResponse, RenewProcessorRequest,
    RenewProcessorResponse, ScalePoolRequest, ScalePoolResponse,
};
use uuid::Uuid;

use super::remote::{ApiArgs, list_or_dash, or_dash, print_json, write_fields};

/// Arguments of `pool`.
#[derive(Debug, Args)]
pub struct PoolArgs {
    /// The pool operation.
    #[command(subcommand)]
    pub what: PoolCommand,
}

/// The pool operations.
#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Lease a worker of a pool.
    Acquire(AcquireArgs),
    /// Return a leased worker.
    Release(ReleaseArgs),
    /// Show a pool's workers, utilisation and recent figures.
    Status(PoolStatusArgs),
    /// Set a pool's worker count.
    Scale(ScaleArgs),
    /// Remove idle workers of a pool.
    Cleanup(CleanupArgs),
    /// Extend a lease (ours).
    Renew(RenewArgs),
    /// Take one worker, or every worker of a pool, out of service without stopping a
    /// job (ours).
    Drain(DrainArgs),
}

/// Arguments of `pool acquire`.
#[derive(Debug, Args)]
pub struct AcquireArgs {
    /// Pool type.
    pub pool: String,
    /// Higher is served first among waiting requests.
    #[arg(long, default_value_t = 0)]
    pub priority: i64,
    /// How long to wait for a free worker, in milliseconds (0: answer at once).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub wait_ms: i64,
    /// Lease duration in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub timeout_seconds: i64,
    /// Job metadata stored on the lease, as a JSON object.
    #[arg(long, value_name = "JSON", value_parser = parse_json_object)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// Connection and output options.
    #[command(flatten)]
    pub api: ApiArgs,
}

fn parse_json_object(s: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    serde_json::from_str(s).map_err(|e| format!("expected a JSON object: {e}"))
}

/// Arguments of `pool release`.
#[derive(Debug, Args)]
pub struct ReleaseArgs {
    /// The lease id printed by `pool acquire`.
    pub lease_id: Uuid,
    /// Report the job as failed.
    #[arg(long)]
    pub failed: bool,
    /// The fencing token printed by `pool acquire`: a release carrying an older token
    /// than the lease's is refused (409), so a holder whose lease was reclaimed and
    /// re-granted cannot release someone else's.
    #[arg(long)]
    pub fencing_token: Option<u64>,
    /// Connection and output options.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Arguments of `pool status`.
#[derive(Debug, Args)]
pub struct PoolStatusArgs {
    /// Pool type.
    pub pool: String,
    /// Leave out the recent figures.
    #[arg(long)]
    pub no_metrics: bool,
    /// Connection and output options.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Arguments of `pool scale`.
#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// Pool type.
    pub pool: String,
    /// Desired worker count (kept within the pool's min and max).
    pub instances: i64,
    /// Also remove leased or pending workers when scaling down.
    #[arg(long)]
    pub force: bool,
    /// Connection and output options.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Arguments of `pool cleanup`.
#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// Pool type.
    pub pool: String,
    /// Also remove the idle workers that `minInstances` would keep.
    #[arg(long)]
    pub below_minimum: bool,
    /// Connection and output options.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Arguments of `pool renew`.
#[derive(Debug, Args)]
pub struct RenewArgs {
    /// The lease id printed by `pool acquire`.
    pub lease_id: Uuid,
    /// The fencing token printed by `pool acquire` (required: a stale one is refused).
    #[arg(long)]
    pub fencing_token: u64,
    /// Seconds added to the lease's current expiry.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub extend_seconds: i64,
    /// The lease's pool, when known (saves looking it up).
    #[arg(long, value_name = "POOL")]
    pub pool: Option<String>,
    /// Connection and output options.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Arguments of `pool drain`.
#[derive(Debug, Args)]
pub struct DrainArgs {
    /// Pool type.
    pub pool: String,
    /// The worker to drain (processor id or app-id); without it, every worker of the pool.
    #[arg(long, value_name = "WORKER")]
    pub worker: Option<String>,
    /// How long a busy worker may keep its lease, in seconds (default: the host's
    /// `ORCHESTRATOR_POOL_DRAIN_TIMEOUT_SECONDS`).
    #[arg(long, value_name = "SECONDS")]
    pub deadline_seconds: Option<i64>,
    /// Connection and output options.
    #[command(flatten)]
    pub api: ApiArgs,
}

impl PoolCommand {
    /// The connection and output options of whichever operation this is.
    pub fn api(&self) -> &ApiArgs {
        match self {
            PoolCommand::Acquire(a) => &a.api,
            PoolCommand::Release(a) => &a.api,
            PoolCommand::Status(a) => &a.api,
            PoolCommand::Scale(a) => &a.api,
            PoolCommand::Cleanup(a) => &a.api,
            PoolCommand::Renew(a) => &a.api,
            PoolCommand::Drain(a) => &a.api,
        }
    }
}

/// Runs a `pool` operation.
pub async fn run(args: PoolArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let api = args.what.api().clone();
    let client = api.client()?;
    match args.what {
        PoolCommand::Acquire(a) => {
            let req = AcquireProcessorRequest {
                priority: a.priority,
                timeout_seconds: a.timeout_seconds,
                metadata: a.metadata,
                wait_ms: a.wait_ms,
                ..AcquireProcessorRequest::new(a.pool)
            };
            let resp = client.acquire_processor(&req).await?;
            if api.json {
                print_json(out, &resp)
            } else {
                Ok(write_acquired(out, &resp)?)
            }
        }
        PoolCommand::Release(a) => {
            let req = ReleaseProcessorRequest {
                success: !a.failed,
                fencing_token: a.fencing_token,
                ..ReleaseProcessorRequest::new(a.lease_id)
            };
            let resp = client.release_processor(&req).await?;
            if api.json {
                print_json(out, &resp)
            } else {
                Ok(write_released(out, &resp)?)
            }
        }
        PoolCommand::Status(a) => {
            let req = GetPoolStatusRequest {
                pool_type: a.pool.clone(),
                include_metrics: !a.no_metrics,
            };
            let resp = client.pool_status(&req).await?;
            if api.json {
                print_json(out, &resp)
            } else {
                Ok(write_pool_status(out, &a.pool, &resp)?)
            }
        }
        PoolCommand::Scale(a) => {
            let req = ScalePoolRequest {
                pool_type: a.pool.clone(),
                target_instances: a.instances,
                force: a.force,
            };
            let resp = client.scale_pool(&req).await?;
            if api.json {
                print_json(out, &resp)
            } else {
                Ok(write_scaled(out, &a.pool, &resp)?)
            }
        }
        PoolCommand::Cleanup(a) => {
            let req = CleanupPoolRequest {
                pool_type: a.pool.clone(),
                preserve_minimum: !a.below_minimum,
            };
            let resp = client.cleanup_pool(&req).await?;
            if api.json {
                print_json(out, &resp)
            } else {
                Ok(write_cleaned(out, &a.pool, &resp)?)
            }
        }
        PoolCommand::Renew(a) => {
            let req = RenewProcessorRequest {
                extend_seconds: a.extend_seconds,
                pool_type: a.pool,
                ..RenewProcessorRequest::new(a.lease_id, a.fencing_token)
            };
            let resp = client.renew_processor(&req).await?;
            if api.json {
                print_json(out, &resp)
            } else {
                Ok(write_renewed(out, &resp)?)
            }
        }
        PoolCommand::Drain(a) => {
            let req = DrainPoolRequest {
                processor_id: a.worker,
                deadline_seconds: a.deadline_seconds,
                ..DrainPoolRequest::new(a.pool.clone())
            };
            let resp = client.drain_pool(&req).await?;
            if api.json {
                print_json(out, &resp)
            } else {
                Ok(write_drained(out, &a.pool, &resp)?)
            }
        }
    }
}

/// The human form of a renewed lease.
pub fn write_renewed(out: &mut dyn Write, resp: &RenewProcessorResponse) -> std::io::Result<()> {
    write_fields(
        out,
        &[
            ("lease", resp.lease_id.to_string()),
            ("processor", resp.processor_id.clone()),
            ("expires", resp.expires_at.to_string()),
            ("fencing token", resp.fencing_token.to_string()),
        ],
    )
}

/// The human form of a drain.
pub fn write_drained(
    out: &mut dyn Write,
    pool: &str,
    resp: &DrainPoolResponse,
) -> std::io::Result<()> {
    writeln!(
        out,
        "Pool `{pool}`: {} worker(s) stopped, {} draining",
        resp.removed.len(),
        resp.draining.len()
    )?;
    write_fields(
        out,
        &[
            ("stopped", list_or_dash(&resp.removed)),
            ("draining", list_or_dash(&resp.draining)),
            ("deadline", or_dash(resp.deadline)),
        ],
    )
}

/// The human form of a granted lease.
pub fn write_acquired(out: &mut dyn Write, resp: &AcquireProcessorResponse) -> std::io::Result<()> {
    write_fields(
        out,
        &[
            ("lease", resp.lease_id.to_string()),
            ("processor", resp.processor_id.clone()),
            ("app-id", resp.app_id.clone()),
            ("expires", resp.expires_at.to_string()),
            ("fencing token", resp.fencing_token.to_string()),
        ],
    )
}

/// The human form of a release.
pub fn write_released(out: &mut dyn Write, resp: &ReleaseProcessorResponse) -> std::io::Result<()> {
    writeln!(out, "Released processor {}", resp.processor_id)
}

/// The human form of a pool's status.
pub fn write_pool_status(
    out: &mut dyn Write,
    pool: &str,
    resp: &PoolStatusResponse,
) -> std::io::Result<()> {
    writeln!(out, "Pool `{pool}`")?;
    let mut fields = vec![
        (
            "workers",
            format!(
                "{} ({} available, {} busy)",
                resp.total_instances, resp.available_instances, resp.busy_instances
            ),
        ),
        ("queue", resp.queue_depth.to_string()),
        ("utilization", format!("{:.0}%", resp.utilization * 100.0)),
        (
            "bounds",
            format!(
                "min {}, max {}, scale up above {:.0}%",
                resp.min_instances,
                resp.max_instances,
                resp.scale_up_threshold * 100.0
            ),
        ),
    ];
    if let Some(m) = &resp.recent_metrics {
        fields.push((
            "last hour",
            format!(
                "{} completed, {} failed, avg {} ms",
                m.jobs_completed_1h, m.jobs_failed_1h, m.avg_processing_time_ms
            ),
        ));
        fields.push(("last scale", or_dash(m.last_scale_event)));
    }
    write_fields(out, &fields)
}

/// The human form of a scale.
pub fn write_scaled(
    out: &mut dyn Write,
    pool: &str,
    resp: &ScalePoolResponse,
) -> std::io::Result<()> {
    writeln!(
        out,
        "Pool `{pool}`: {} -> {} workers (+{} / -{})",
        resp.previous_instances, resp.current_instances, resp.scaled_up, resp.scaled_down
    )
}

/// The human form of a cleanup.
pub fn write_cleaned(
    out: &mut dyn Write,
    pool: &str,
    resp: &CleanupPoolResponse,
) -> std::io::Result<()> {
    writeln!(
        out,
        "Pool `{pool}`: removed {} idle worker(s), {} left",
        resp.instances_removed, resp.current_instances
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use orchestrator_core::api::PoolMetrics;

    fn parse(args: &[&str]) -> PoolCommand {
        match Cli::try_parse_from(std::iter::once("bannou-host").chain(args.iter().copied()))
            .unwrap()
            .command
        {
            Command::Pool(p) => p.what,
            other => panic!("not a pool command: {other:?}"),
        }
    }

    #[test]
    fn pool_operations_parse() {
        let PoolCommand::Acquire(a) = parse(&[
            "pool",
            "acquire",
            "asset-processor",
            "--priority",
            "2",
            "--wait-ms",
            "5000",
            "--timeout-seconds",
            "60",
            "--metadata",
            r#"{"job": 7}"#,
            "--json",
        ]) else {
            panic!()
        };
        assert_eq!(
            (a.pool.as_str(), a.priority, a.wait_ms, a.timeout_seconds),
            ("asset-processor", 2, 5000, 60)
        );
        assert_eq!(a.metadata.unwrap()["job"], 7);
        assert!(a.api.json);

        let id = "5a0e2c4e-4f4c-4a77-9d38-6d0f5c1e9b11";
        let PoolCommand::Release(a) = parse(&["pool", "release", id, "--failed"]) else {
            panic!()
        };
        assert_eq!(a.lease_id.to_string(), id);
        assert!(a.failed);
        assert!(Cli::try_parse_from(["bannou-host", "pool", "release", "not-a-uuid"]).is_err());

        assert!(matches!(parse(&["pool", "status", "p"]), PoolCommand::Status(a) if !a.no_metrics));
        let PoolCommand::Scale(a) = parse(&["pool", "scale", "p", "3", "--force"]) else {
            panic!()
        };
        assert_eq!((a.instances, a.force), (3, true));
        assert!(matches!(
            parse(&["pool", "cleanup", "p", "--below-minimum"]),
            PoolCommand::Cleanup(a) if a.below_minimum
        ));
        assert!(Cli::try_parse_from(["bannou-host", "pool", "scale", "p"]).is_err());

        let PoolCommand::Renew(a) = parse(&[
            "pool",
            "renew",
            id,
            "--fencing-token",
            "9",
            "--extend-seconds",
            "60",
            "--pool",
            "brains",
        ]) else {
            panic!()
        };
        assert_eq!(
            (
                a.lease_id.to_string().as_str(),
                a.fencing_token,
                a.extend_seconds
            ),
            (id, 9, 60)
        );
        assert_eq!(a.pool.as_deref(), Some("brains"));
        let PoolCommand::Renew(a) = parse(&["pool", "renew", id, "--fencing-token", "1"]) else {
            panic!()
        };
        assert_eq!((a.extend_seconds, a.pool), (300, None));
        assert!(
            Cli::try_parse_from(["bannou-host", "pool", "renew", id]).is_err(),
            "the fencing token is required"
        );

        let PoolCommand::Drain(a) = parse(&[
            "pool",
            "drain",
            "brains",
            "--worker",
            "bannou-pool-brains-1",
            "--deadline-seconds",
            "30",
        ]) else {
            panic!()
        };
        assert_eq!(
            (a.pool.as_str(), a.worker.as_deref(), a.deadline_seconds),
            ("brains", Some("bannou-pool-brains-1"), Some(30))
        );
        let PoolCommand::Drain(a) = parse(&["pool", "drain", "brains"]) else {
            panic!()
        };
        assert_eq!((a.worker, a.deadline_seconds), (None, None));
    }

    #[test]
    fn a_drain_renders_what_stopped_and_what_drains() {
        let resp = DrainPoolResponse {
            removed: vec!["w-1".to_owned(), "w-2".to_owned()],
            draining: vec!["w-3".to_owned()],
            deadline: None,
        };
        let mut buf = Vec::new();
        write_drained(&mut buf, "brains", &resp).unwrap();
        let t = String::from_utf8(buf).unwrap();
        for needle in [
            "Pool `brains`: 2 worker(s) stopped, 1 draining",
            "w-1, w-2",
            "w-3",
        ] {
            assert!(
                t.contains(needle),
                "{needle} in
{t}"
            );
        }
    }

    #[test]
    fn pool_status_renders_counts_and_metrics() {
        let resp = PoolStatusResponse {
            total_instances: 3,
            available_instances: 2,
            busy_instances: 1,
            queue_depth: 0,
            utilization: 1.0 / 3.0,
            min_instances: 1,
            max_instances: 5,
            scale_up_threshold: 0.8,
            recent_metrics: Some(PoolMetrics {
                jobs_completed_1h: 10,
                jobs_failed_1h: 1,
                avg_processing_time_ms: 1200,
                last_scale_event: None,
            }),
            recent_acquire_p50_ms: None,
            recent_acquire_p99_ms: None,
        };
        let mut buf = Vec::new();
        write_pool_status(&mut buf, "asset-processor", &resp).unwrap();
        let t = String::from_utf8(buf).unwrap();
        for needle in [
            "Pool `asset-processor`",
            "3 (2 available, 1 busy)",
            "utilization: 33%",
            "min 1, max 5, scale up above 80%",
            "10 completed, 1 failed, avg 1200 ms",
            "last scale:  -",
        ] {
            assert!(t.contains(needle), "{needle} in\n{t}");
        }
    }
}
