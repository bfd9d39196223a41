//! `bannou-host bench events`: whether subscribers of the event stream slow a deploy.
//! Rounds alternate on one control plane: a deploy with nobody subscribed, then one with
//! `--subscribers` idle clients of `GET /orchestrator/events` (connected, never read
//! until the deploy is over) plus one that never reads at all and asked for raw
//! heartbeats too. Each deploy starts from nothing and is torn down afterwards (not
//! timed); a deploy starts `SETTLE` after the subscribers were opened or closed.
//! `--backend in-process` (the default) deploys a preset on the embedded default
//! (in-process backend, in-memory state); `--backend docker` deploys the generated
//! `--nodes` topology of `bench deploy --backend docker` on Docker, with Redis.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use orchestrator_core::events::BackendType;
use serde::Serialize;

use crate::config::HostConfig;
use crate::orchestrator::service::OrchestratorService;
use crate::server::Server;

use super::{deploy, docker, nearest_rank};

/// How long a round waits after opening its subscribers and after closing them, before
/// the next deploy (the deploys must not pay for opening or closing 201 connections).
const SETTLE: Duration = Duration::from_millis(500);

/// Arguments of `bench events`.
#[derive(Debug, Args)]
pub struct EventsBenchArgs {
    /// The preset to deploy, by name.
    #[arg(long, default_value = "local-ten")]
    pub preset: String,
    /// Directory of presets.
    #[arg(long, value_name = "DIR", default_value = "presets")]
    pub presets: PathBuf,
    /// Rounds; each times one deploy without subscribers and one with them.
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// Idle subscribers during the second deploy of each round (plus one that never reads).
    #[arg(long, default_value_t = 200)]
    pub subscribers: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// `in-process` (`--preset` on the in-process backend) or `docker` (a generated
    /// topology on Docker).
    #[arg(long, default_value = "in-process", value_parser = ["in-process", "docker"])]
    pub backend: String,
    /// Docker: nodes in the generated topology (two layers).
    #[arg(long, default_value_t = 10)]
    pub nodes: usize,
    /// Docker: the node image (default `ORCHESTRATOR_DOCKER_IMAGE_NAME`, else
    /// `bannou:latest`).
    #[arg(long)]
    pub image: Option<String>,
}

/// Deploy durations in milliseconds, without and with subscribers.
#[derive(Debug, Serialize)]
struct Report {
    preset: String,
    backend: String,
    runs: usize,
    subscribers: usize,
    alone_median_ms: f64,
    alone_p90_ms: f64,
    subscribed_median_ms: f64,
    subscribed_p90_ms: f64,
    /// `subscribed_median_ms / alone_median_ms`.
    ratio: f64,
    /// Events the last idle subscriber held once the last deploy was over.
    events_held: usize,
    /// Each round's deploy without subscribers, in round order.
    alone_ms: Vec<f64>,
    /// Each round's deploy with subscribers, in round order.
    subscribed_ms: Vec<f64>,
}

/// Runs the benchmark.
pub fn run(args: EventsBenchArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench(args, out))
}

async fn bench(mut args: EventsBenchArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    orchestrator_backends::http::install_crypto_provider();
    let (alone, subscribed, events_held) = if args.backend == "docker" {
        let image = match args.image.take() {
            Some(i) => i,
            None => HostConfig::from_process_env()?.docker_image_name,
        };
        let stage = docker::DockerStage::prepare(args.nodes, None, &image).await?;
        args.preset = docker::PRESET.to_owned();
        let result = rounds(&args, stage.config.clone(), Some(BackendType::Compose)).await;
        stage.finish().await;
        result?
    } else {
        let mut config = HostConfig::from_env(|_| None)?;
        config.presets_host_path = args.presets.clone();
        config.listen = "127.0.0.1:0".parse()?;
        rounds(&args, config, None).await?
    };
    report(args, alone, subscribed, events_held, out)
}

/// Deploy durations without and with subscribers, and the events the last idle
/// subscriber held.
type Samples = (Vec<f64>, Vec<f64>, usize);

/// Starts a control plane with `config` and runs the rounds, deploying on `backend`.
async fn rounds(
    args: &EventsBenchArgs,
    config: HostConfig,
    backend: Option<BackendType>,
) -> anyhow::Result<Samples> {
    let server = Server::start(config).await?;
    let result = async {
        let service = server.service().await.context("no control plane")?;
        let url = format!("{}/orchestrator/events", server.base_url());
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        let (mut alone, mut subscribed) = (Vec::new(), Vec::new());
        let mut events_held = 0;
        for run in 1..=args.runs {
            alone.push(timed_deploy(&service, &args.preset, backend, run).await?);

            let never_reads = client
                .get(format!(
                    "{url}?types=service.heartbeat,deployment,wave,routing,health"
                ))
                .send()
                .await?;
            let mut idle = Vec::with_capacity(args.subscribers);
            for _ in 0..args.subscribers {
                idle.push(client.get(&url).send().await?.error_for_status()?);
            }
            // Not timed: the deploy starts once every subscriber is settled (idle).
            tokio::time::sleep(SETTLE).await;
            subscribed.push(timed_deploy(&service, &args.preset, backend, run).await?);
            if let Some(last) = idle.pop() {
                events_held = count_events(last).await;
            }
            drop((never_reads, idle));
            // Not timed: the next round's first deploy starts once these are closed.
            tokio::time::sleep(SETTLE).await;
        }
        Ok((alone, subscribed, events_held))
    }
    .await;
    server.shutdown().await;
    result
}

fn report(
    args: EventsBenchArgs,
    alone: Vec<f64>,
    subscribed: Vec<f64>,
    events_held: usize,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let stats = |samples: &[f64]| {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let pick = |q| nearest_rank(&sorted, q).unwrap_or(f64::NAN);
        (pick(0.5), pick(0.9))
    };
    let ((a50, a90), (s50, s90)) = (stats(&alone), stats(&subscribed));
    let report = Report {
        preset: args.preset,
        backend: args.backend,
        runs: args.runs,
        subscribers: args.subscribers,
        alone_median_ms: a50,
        alone_p90_ms: a90,
        subscribed_median_ms: s50,
        subscribed_p90_ms: s90,
        ratio: s50 / a50,
        events_held,
        alone_ms: alone,
        subscribed_ms: subscribed,
    };
    if args.json {
        serde_json::to_writer(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "deploy `{}` to all-healthy, {} rounds, {} backend:",
            report.preset, report.runs, report.backend
        )?;
        writeln!(
            out,
            "  nobody subscribed:                       median {:.1} ms   p90 {:.1} ms",
            a50, a90
        )?;
        writeln!(
            out,
            "  {:>3} idle subscribers + 1 that never reads: median {:.1} ms   p90 {:.1} ms   ratio {:.3}",
            report.subscribers, s50, s90, report.ratio
        )?;
        writeln!(
            out,
            "  the last idle subscriber then held {} events",
            report.events_held
        )?;
    }
    Ok(())
}

/// Deploys `preset` on `backend` onto nothing and returns the milliseconds until the
/// answer; tears it down afterwards (not timed), also when the deploy failed.
async fn timed_deploy(
    service: &OrchestratorService,
    preset: &str,
    backend: Option<BackendType>,
    run: usize,
) -> anyhow::Result<f64> {
    let elapsed = deploy::deploy_timed(service, preset, backend, run).await;
    let torn_down = deploy::teardown(service, run).await;
    let elapsed = elapsed?;
    torn_down?;
    Ok(elapsed)
}

/// How many events an idle subscriber holds: reads what arrives until a short silence.
async fn count_events(response: reqwest::Response) -> usize {
    use futures::StreamExt;
    let mut body = response.bytes_stream();
    let mut text = Vec::new();
    while let Ok(Some(Ok(chunk))) =
        tokio::time::timeout(Duration::from_millis(200), body.next()).await
    {
        text.extend_from_slice(&chunk);
    }
    String::from_utf8_lossy(&text)
        .lines()
        .filter(|l| l.starts_with("id:"))
        .count()
}
