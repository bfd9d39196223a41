//! The event stream from the command line: `events` prints `GET /orchestrator/events`
//! live; `deploy --follow` ([`follow_deploy`]), `rollback --follow`, `teardown --follow`
//! and `topology --follow` ([`follow`]) show the remote operation as it happens.
//! Both read the stream through [`crate::client::ApiClient::events`].

use std::future::Future;
use std::io::Write;
use std::time::Duration;

use tokio::time::Instant;

use clap::Args;
use futures::StreamExt;
use orchestrator_core::api::{DeployRequest, DeployResponse};

use super::remote::ApiArgs;
use crate::client::{ApiClient, ClientError, EventStream, Reply};
use crate::event_stream::{WaveEvent, WaveState};

/// How long `deploy --follow` keeps reading after the deploy answered, for the outcome
/// event still on its way.
const OUTCOME_DRAIN: Duration = Duration::from_secs(5);

/// How long `--follow` waits for a start it has not seen when the operation already
/// answered.
const NOTHING_STARTED_DRAIN: Duration = Duration::from_millis(500);

/// Arguments of `events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only these event types (comma-separated names or prefixes: `wave,deployment`);
    /// raw heartbeats only when `service.heartbeat` is named.
    #[arg(long, value_name = "TYPES")]
    pub types: Option<String>,
    /// Only the events of this deployment.
    #[arg(long, value_name = "ID")]
    pub deployment: Option<String>,
    /// Resume after this event id (`Last-Event-ID`).
    #[arg(long, value_name = "ID")]
    pub since: Option<String>,
    /// Connection and output options (`--json`: one JSON object per line).
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Runs `events`: prints every event until the server closes the stream.
pub async fn run_events(args: EventsArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let client = args.api.client()?;
    let mut stream = client
        .events(
            args.types.as_deref(),
            args.deployment.as_deref(),
            args.since.as_deref(),
        )
        .await?;
    while let Some(item) = stream.next().await {
        let event = item?;
        if args.api.json {
            let data: serde_json::Value = serde_json::from_str(&event.data)
                .unwrap_or(serde_json::Value::String(event.data.clone()));
            let line = serde_json::json!({"id": event.id, "event": event.event, "data": data});
            writeln!(out, "{line}")?;
        } else {
            writeln!(out, "{}", describe(&event.event, &event.id, &event.data))?;
        }
        out.flush()?;
        if event.event == "lagged" {
            anyhow::bail!(
                "the server dropped this client for falling behind: {}",
                event.data
            );
        }
    }
    Ok(())
}

/// One event as a line of text: `[id] type: summary`.
pub fn describe(kind: &str, id: &str, data: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(data).unwrap_or_default();
    let text = |name: &str| value.get(name).and_then(serde_json::Value::as_str);
    let summary = if let Ok(wave) = serde_json::from_value::<WaveEvent>(value.clone()) {
        wave_line(&wave)
    } else if kind.starts_with("deployment.") {
        let mut line = format!("deployment {}", text("deploymentId").unwrap_or("?"));
        if let Some(preset) = text("preset") {
            line.push_str(&format!(" of preset `{preset}`"));
        }
        if let Some(error) = text("error") {
            line.push_str(&format!(": {error}"));
        }
        line
    } else if kind == crate::event_stream::HEALTH_CHANGED_TYPE {
        let new = if value["newInstance"] == true {
            " (new instance)"
        } else {
            ""
        };
        format!(
            "{} {}{new}",
            text("appId").unwrap_or("?"),
            text("status").unwrap_or("?")
        )
    } else {
        data.to_owned()
    };
    if id.is_empty() {
        format!("{kind}: {summary}")
    } else {
        format!("[{id}] {kind}: {summary}")
    }
}

/// A wave event as `up` prints its waves.
fn wave_line(w: &WaveEvent) -> String {
    let nodes = w.nodes.join(", ");
    match w.state {
        WaveState::Started => format!("wave {}/{} ({}) started: {nodes}", w.wave, w.waves, w.phase),
        WaveState::Healthy => format!("wave {} healthy +{} ms: {nodes}", w.wave, w.elapsed_ms),
        WaveState::TornDown => format!("wave {} torn down +{} ms: {nodes}", w.wave, w.elapsed_ms),
        WaveState::Failed => format!(
            "wave {} FAILED +{} ms: {}",
            w.wave,
            w.elapsed_ms,
            w.failures.join("; ")
        ),
    }
}

/// Sends `request` with the event stream already open, printing the deploy's waves as
/// they happen, then returns the deploy's answer (see [`follow`]).
pub async fn follow_deploy(
    client: &ApiClient,
    request: &DeployRequest,
    out: &mut dyn Write,
) -> anyhow::Result<Reply<DeployResponse>> {
    let stream = client.events(Some("deployment,wave"), None, None).await?;
    follow(stream, client.deploy(request), out).await
}

/// Runs `operation` (a deploy, a rollback: anything that runs waves) while `stream`, opened
/// before it was sent, prints the waves of the first deployment that starts; then reads on
/// (at most `OUTCOME_DRAIN`) until that deployment's outcome, and returns the
/// operation's answer. Wave and deployment events travel on different topics, so their
/// order on the stream is not guaranteed: the outcome line is printed after the events
/// that arrive within `STRAGGLERS` of it.
pub async fn follow<T>(
    mut stream: EventStream,
    operation: impl Future<Output = Result<T, ClientError>>,
    out: &mut dyn Write,
) -> anyhow::Result<T> {
    let begun = Instant::now();
    let mut followed: Option<String> = None;
    let mut outcome: Option<String> = None;
    tokio::pin!(operation);
    let reply = loop {
        tokio::select! {
            reply = &mut operation => break reply?,
            item = stream.next() => {
                match item {
                    Some(Ok(event)) => {
                        note(print_followed(&event, &mut followed, begun, out)?, &mut outcome);
                    }
                    Some(Err(e)) => {
                        flush_outcome(&mut outcome, out)?;
                        writeln!(out, "event stream interrupted: {e}")?;
                        return Ok(operation.await?);
                    }
                    None => {
                        flush_outcome(&mut outcome, out)?;
                        writeln!(out, "event stream closed by the server")?;
                        return Ok(operation.await?);
                    }
                }
            }
        }
    };
    // The outcome event may still be on its way (a bounded wait; short when nothing
    // started: a teardown with nothing to stop publishes nothing).
    let limit = if followed.is_some() {
        OUTCOME_DRAIN
    } else {
        NOTHING_STARTED_DRAIN
    };
    let drain = async {
        while outcome.is_none() {
            match stream.next().await {
                Some(Ok(event)) => {
                    note(
                        print_followed(&event, &mut followed, begun, out)?,
                        &mut outcome,
                    );
                }
                _ => break,
            }
        }
        // Late events of the followed deployment (other topics) before its outcome line.
        while let Ok(Some(Ok(event))) = tokio::time::timeout(STRAGGLERS, stream.next()).await {
            note(
                print_followed(&event, &mut followed, begun, out)?,
                &mut outcome,
            );
        }
        anyhow::Ok(())
    };
    if let Ok(done) = tokio::time::timeout(limit, drain).await {
        done?;
    }
    flush_outcome(&mut outcome, out)?;
    Ok(reply)
}

/// How long [`follow`] waits, after the outcome arrived, for the followed deployment's
/// events still on their way on other topics.
const STRAGGLERS: Duration = Duration::from_millis(300);

/// Keeps the first outcome line.
fn note(line: Option<String>, outcome: &mut Option<String>) {
    if outcome.is_none() {
        *outcome = line;
    }
}

/// Prints the held outcome line, if any.
fn flush_outcome(outcome: &mut Option<String>, out: &mut dyn Write) -> std::io::Result<()> {
    if let Some(line) = outcome.take() {
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    Ok(())
}

/// Prints `event` when it belongs to the followed deployment (adopting the first
/// deployment that starts); when it is that deployment's outcome, returns its line
/// instead of printing it.
fn print_followed(
    event: &eventsource_stream::Event,
    followed: &mut Option<String>,
    begun: Instant,
    out: &mut dyn Write,
) -> anyhow::Result<Option<String>> {
    let value: serde_json::Value = serde_json::from_str(&event.data).unwrap_or_default();
    let id = value
        .get("deploymentId")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    let starts = matches!(
        event.event.as_str(),
        "deployment.started" | "deployment.topology-changed"
    );
    if followed.is_none() && starts {
        followed.clone_from(&id);
    }
    if followed.is_none() || id != *followed {
        return Ok(None);
    }
    let elapsed = begun.elapsed().as_millis();
    let mut ended = None;
    match event.event.as_str() {
        "deployment.started" => {
            let preset = value.get("preset").and_then(serde_json::Value::as_str);
            let what = preset.map_or_else(|| "topology".to_owned(), |p| format!("preset `{p}`"));
            writeln!(
                out,
                "deployment {} of {what} started",
                id.as_deref().unwrap_or("?")
            )?;
        }
        "deployment.topology-changed" => {
            writeln!(out, "teardown {} started", id.as_deref().unwrap_or("?"))?;
        }
        "deployment.completed" | "deployment.failed" => {
            let verb = event.event.trim_start_matches("deployment.");
            ended = Some(format!("deployment {verb} +{elapsed} ms"));
        }
        kind if kind.starts_with("wave.") => {
            if let Ok(wave) = serde_json::from_value::<WaveEvent>(value) {
                writeln!(out, "{}", wave_line(&wave))?;
            }
        }
        _ => {}
    }
    out.flush()?;
    Ok(ended)
}
