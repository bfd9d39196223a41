//! `bannou-host bench deploy`: how long a preset takes from the deploy request until every
//! node's heartbeat is healthy (the deploy answers only then), on the embedded default:
//! the control plane and the in-process backend in this process, in-memory state and bus,
//! or Redis with `--redis`. Each run deploys onto nothing and tears down afterwards (not
//! timed), so every run measures a fresh deployment.
//!
//! `--backend docker` runs the container benchmark of [`super::docker`] instead: an
//! N-node topology (`--nodes`, default 10) on the Docker backend against
//! `docker-compose up` of the same nodes and against the engine's own limit (the same
//! containers started straight through the API), `--rounds` times each.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use orchestrator_core::api::{DeployRequest, TeardownRequest};
use orchestrator_core::events::BackendType;
use serde::Serialize;

use crate::config::HostConfig;
use crate::orchestrator::service::OrchestratorService;
use crate::server::Server;

use super::nearest_rank;

/// Arguments of `bench deploy`.
#[derive(Debug, Args)]
pub struct DeployBenchArgs {
    /// The preset to deploy, by name (default: `local-ten`, ten nodes in two waves).
    #[arg(long, default_value = "local-ten")]
    pub preset: String,
    /// Directory of presets (default `presets`).
    #[arg(long, value_name = "DIR", default_value = "presets")]
    pub presets: PathBuf,
    /// How many deploy/teardown rounds to time.
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// Redis for state and bus; without it everything is in memory.
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// `in-process` (the preset on the in-process backend) or `docker` (a generated
    /// topology on Docker against docker-compose).
    #[arg(long, default_value = "in-process", value_parser = ["in-process", "docker"])]
    pub backend: String,
    /// Docker: nodes in the generated topology (two layers).
    #[arg(long, default_value_t = 10)]
    pub nodes: usize,
    /// Docker: rounds, each one deploy of ours then one of compose.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Docker: the node image (default `ORCHESTRATOR_DOCKER_IMAGE_NAME`, else
    /// `bannou:latest`).
    #[arg(long)]
    pub image: Option<String>,
}

/// The numbers, in milliseconds.
#[derive(Debug, Serialize)]
struct Report {
    preset: String,
    nodes: usize,
    waves: usize,
    state: &'static str,
    runs: usize,
    median_ms: f64,
    p90_ms: f64,
    min_ms: f64,
    max_ms: f64,
}

/// Deploys `preset` on `backend` (the host's default when `None`; round `run`, for
/// messages) and returns the milliseconds until the answer; a refused or failed deploy is
/// an error.
pub(super) async fn deploy_timed(
    service: &OrchestratorService,
    preset: &str,
    backend: Option<BackendType>,
    run: usize,
) -> anyhow::Result<f64> {
    let start = tokio::time::Instant::now();
    let answer = service
        .deploy(DeployRequest {
            preset: Some(preset.to_owned()),
            backend,
            ..DeployRequest::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("run {run}: deploy refused: {e}"))?;
    let elapsed = start.elapsed().as_secs_f64() * 1000.0;
    if !answer.body.success {
        bail!(
            "run {run}: deploy failed: {:?}",
            answer.body.warnings.unwrap_or_default()
        );
    }
    Ok(elapsed)
}

/// Tears down everything deployed (round `run`, for messages).
pub(super) async fn teardown(service: &OrchestratorService, run: usize) -> anyhow::Result<()> {
    service
        .teardown(TeardownRequest::default())
        .await
        .map_err(|e| anyhow::anyhow!("run {run}: teardown: {e}"))?;
    Ok(())
}

/// Runs the benchmark.
pub fn run(args: DeployBenchArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if args.backend == "docker" {
        return runtime.block_on(docker_bench(args, out));
    }
    runtime.block_on(bench(args, out))
}

async fn bench(args: DeployBenchArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    orchestrator_backends::http::install_crypto_provider();
    let mut config = HostConfig::from_env(|_| None)?;
    config.presets_host_path = args.presets.clone();
    config.listen = "127.0.0.1:0".parse()?;
    config.redis_url = args.redis.clone();
    let server = Server::start(config).await?;
    let service = server.service().await.context("no control plane")?;

    let mut samples = Vec::with_capacity(args.runs);
    let mut shape = (0, 0);
    for run in 1..=args.runs {
        samples.push(deploy_timed(&service, &args.preset, None, run).await?);
        let status = service
            .status(orchestrator_core::api::GetStatusRequest::default())
            .await
            .map_err(|e| anyhow::anyhow!("status: {e}"))?;
        shape.0 = status.body.services.as_ref().map_or(0, Vec::len);
        teardown(&service, run).await?;
    }
    shape.1 = super::super::serve::planned_wave_count(&args.presets, &args.preset)?;
    server.shutdown().await;

    samples.sort_by(f64::total_cmp);
    let pick = |q| nearest_rank(&samples, q).unwrap_or(f64::NAN);
    let report = Report {
        preset: args.preset,
        nodes: shape.0,
        waves: shape.1,
        state: if args.redis.is_some() {
            "redis"
        } else {
            "memory"
        },
        runs: samples.len(),
        median_ms: pick(0.5),
        p90_ms: pick(0.9),
        min_ms: samples[0],
        max_ms: samples[samples.len() - 1],
    };
    if args.json {
        serde_json::to_writer(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "deploy `{}` ({} nodes, {} waves, {} state, in-process backend) to all-healthy, {} runs:",
            report.preset, report.nodes, report.waves, report.state, report.runs
        )?;
        writeln!(
            out,
            "  median {:.1} ms   p90 {:.1} ms   min {:.1} ms   max {:.1} ms",
            report.median_ms, report.p90_ms, report.min_ms, report.max_ms
        )?;
    }
    Ok(())
}

async fn docker_bench(args: DeployBenchArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    orchestrator_backends::http::install_crypto_provider();
    let image = match args.image {
        Some(i) => i,
        None => HostConfig::from_process_env()?.docker_image_name,
    };
    let bench = super::docker::DockerBench {
        nodes: args.nodes,
        rounds: args.rounds,
        redis: args.redis,
        image,
    };
    // Per-round lines go to stderr, so stdout is the report (one object with --json).
    let report = super::docker::run(bench, &mut std::io::stderr()).await?;
    if args.json {
        serde_json::to_writer(&mut *out, &report)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "deploy {} nodes in {} waves to all-healthy on Docker ({}), {} rounds:",
        report.nodes, report.waves, report.image, report.rounds
    )?;
    let list = |v: &[f64]| {
        v.iter()
            .map(|s| format!("{s:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    writeln!(
        out,
        "  ours     median {:.2} s  ({})",
        report.ours_median_s,
        list(&report.ours_s)
    )?;
    writeln!(
        out,
        "  compose  median {:.2} s  ({})",
        report.compose_median_s,
        list(&report.compose_s)
    )?;
    writeln!(
        out,
        "  limit    median {:.2} s  ({})  (plain create+start through the API, ping)",
        report.limit_median_s,
        list(&report.limit_s)
    )?;
    writeln!(out, "  ratio ours / compose: {:.2}", report.ratio)?;
    writeln!(
        out,
        "  ratio_to_limit (ours / limit): {:.2}",
        report.ratio_to_limit
    )?;
    Ok(())
}
