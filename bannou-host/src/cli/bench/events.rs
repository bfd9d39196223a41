//! `bannou-host bench events`: whether subscribers of the event stream slow a deploy.
//! Rounds alternate on one control plane (embedded default, in-process backend): a
//! deploy with nobody subscribed, then one with `--subscribers` idle clients of
//! `GET /orchestrator/events` (connected, never read until the deploy is over) plus one
//! that never reads at all and asked for raw heartbeats too. Each deploy starts from
//! nothing and is torn down afterwards (not timed).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;

use crate::config::HostConfig;
use crate::orchestrator::service::OrchestratorService;
use crate::server::Server;

use super::{deploy, nearest_rank};

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
}

/// Deploy durations in milliseconds, without and with subscribers.
#[derive(Debug, Serialize)]
struct Report {
    preset: String,
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

async fn bench(args: EventsBenchArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    orchestrator_backends::http::install_crypto_provider();
    let mut config = HostConfig::from_env(|_| None)?;
    config.presets_host_path = args.presets.clone();
    config.listen = "127.0.0.1:0".parse()?;
    let server = Server::start(config).await?;
    let service = server.service().await.context("no control plane")?;
    let url = format!("{}/orchestrator/events", server.base_url());
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()?;

    let (mut alone, mut subscribed) = (Vec::new(), Vec::new());
    let mut events_held = 0;
    for run in 1..=args.runs {
        alone.push(timed_deploy(&service, &args.preset, run).await?);

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
        subscribed.push(timed_deploy(&service, &args.preset, run).await?);
        if let Some(last) = idle.pop() {
            events_held = count_events(last).await;
        }
        drop((never_reads, idle));
    }
    server.shutdown().await;

    let stats = |samples: &mut Vec<f64>| {
        samples.sort_by(f64::total_cmp);
        let pick = |q| nearest_rank(samples, q).unwrap_or(f64::NAN);
        (pick(0.5), pick(0.9))
    };
    let ((a50, a90), (s50, s90)) = (stats(&mut alone), stats(&mut subscribed));
    let report = Report {
        preset: args.preset,
        runs: args.runs,
        subscribers: args.subscribers,
        alone_median_ms: a50,
        alone_p90_ms: a90,
        subscribed_median_ms: s50,
        subscribed_p90_ms: s90,
        ratio: s50 / a50,
        events_held,
    };
    if args.json {
        serde_json::to_writer(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "deploy `{}` to all-healthy, {} rounds, in-process backend, in-memory state:",
            report.preset, report.runs
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

/// Deploys `preset` onto nothing and returns the milliseconds until the answer; tears it
/// down afterwards (not timed).
async fn timed_deploy(
    service: &OrchestratorService,
    preset: &str,
    run: usize,
) -> anyhow::Result<f64> {
    let elapsed = deploy::deploy_timed(service, preset, run).await?;
    deploy::teardown(service, run).await?;
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
