//! `bannou-host serve` (run this process as a node, the control plane when its app-id is
//! `bannou`, until Ctrl-C or SIGTERM) and `bannou-host up PRESET` (the control plane in
//! this process: deploy a preset, show each wave and node as it becomes healthy, print
//! the status and routing tables, serve until Ctrl-C, tear down on exit).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use futures::StreamExt;
use orchestrator_core::api::{
    DeployRequest, DeployResponse, GetServiceRoutingRequest, GetStatusRequest, TeardownRequest,
};
use orchestrator_core::events::{InstanceHealthStatus, ServiceHeartbeatEvent};
use orchestrator_core::planner::{self, ActionKind, PlanOptions};
use orchestrator_core::ports::bus::EventBusExt;
use orchestrator_core::resolver::Resolved;
use orchestrator_core::{AppId, Catalog};

use crate::api::error_status::outcome_status;
use crate::client::Reply;
use crate::config::{HostConfig, Secret, vars};
use crate::orchestrator::leader::{LeaderState, TAKEOVER_SLACK};
use crate::orchestrator::service::{OrchestratorService, Outcome};
use crate::server::Server;

/// Settings shared by `serve` and `up`; each overrides its `ORCHESTRATOR_*` variable.
#[derive(Debug, Clone, Args)]
pub struct HostArgs {
    /// Address of the API and the node's routes (`ORCHESTRATOR_LISTEN`, default
    /// `127.0.0.1:8080`; port 0 picks a free one). Beyond loopback a token is required.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Redis for state, leases and the bus (`ORCHESTRATOR_REDIS_CONNECTION_STRING`);
    /// without it everything is in memory.
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// Directory of presets (`ORCHESTRATOR_PRESETS_HOST_PATH`, default `presets`).
    #[arg(long, value_name = "DIR")]
    pub presets: Option<PathBuf>,
    /// Bearer token the API requires (`ORCHESTRATOR_API_TOKEN`).
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// How long one wave may take to become healthy: seconds or a duration such as `2m`
    /// (`ORCHESTRATOR_WAVE_TIMEOUT_SECONDS`, default 120).
    #[arg(long, value_name = "DURATION", value_parser = wave_timeout_flag)]
    pub wave_timeout: Option<Duration>,
    /// The backend of a deploy that names none (`ORCHESTRATOR_DEFAULT_BACKEND`, default
    /// `in-process`); `compose` (Docker) needs `--redis`.
    #[arg(long, value_name = "BACKEND")]
    pub backend: Option<String>,
}

/// `--wave-timeout`: read as `ORCHESTRATOR_WAVE_TIMEOUT_SECONDS` is, the error naming
/// the flag.
fn wave_timeout_flag(value: &str) -> Result<Duration, String> {
    vars::WAVE_TIMEOUT
        .parse_as("--wave-timeout", value)
        .map_err(|e| e.to_string())
}

impl HostArgs {
    /// The process environment's configuration with these flags applied.
    pub fn config(&self) -> anyhow::Result<HostConfig> {
        let config = HostConfig::from_process_env().context("reading the configuration")?;
        self.apply(config)
    }

    /// `config` (read from the environment) with these flags applied over it.
    pub fn apply(&self, mut config: HostConfig) -> anyhow::Result<HostConfig> {
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(url) = &self.redis {
            config.redis_url = Some(url.clone());
        }
        if let Some(dir) = &self.presets {
            config.presets_host_path = dir.clone();
        }
        if let Some(token) = &self.token {
            config.api_token = Some(Secret::new(token.clone()));
        }
        if let Some(timeout) = self.wave_timeout {
            config.wave_timeout = timeout;
        }
        if let Some(b) = &self.backend {
            config.default_backend = b.trim().parse().map_err(|_| {
                anyhow::anyhow!(
                    "--backend {b}: expected one of in-process, compose, swarm, kubernetes, portainer"
                )
            })?;
        }
        Ok(config)
    }
}

/// Arguments of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Host settings.
    #[command(flatten)]
    pub host: HostArgs,
}

/// Arguments of `up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// A preset file (`presets/game-stack.yaml`) or a preset name in the presets directory.
    pub preset: String,
    /// Host settings.
    #[command(flatten)]
    pub host: HostArgs,
    /// Leave the deployment in place on exit (its configuration stays in the store).
    #[arg(long)]
    pub keep: bool,
    /// Exit once the deployment is healthy (or failed) instead of serving until Ctrl-C;
    /// with a failed deploy the exit status is non-zero.
    #[arg(long)]
    pub exit: bool,
}

/// Installs a `tracing` subscriber for long-running commands: to stderr (so that tables
/// on stdout stay clean) at `RUST_LOG` or `default`, and into the process's
/// [`LogBuffer::global`](crate::log_buffer::LogBuffer::global) at `RUST_LOG` or `info`
/// (what `POST /orchestrator/logs` answers for the control plane, even when `up` keeps
/// its console at `warn`). With `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are also
/// exported as OpenTelemetry traces ([`crate::traces`]); keep the returned guard until the
/// runtime has stopped: dropping it flushes them.
pub fn init_logging(default: &str) -> anyhow::Result<crate::traces::TracesGuard> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let filter = |default: &str| {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default))
    };
    // Colours only on a terminal: `docker logs` and files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let console = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .with_filter(filter(default));
    let buffer = crate::log_buffer::LogBuffer::global()
        .layer()
        .with_filter(filter("info"));
    let (traces, guard) = crate::traces::init().context("setting up OpenTelemetry traces")?;
    let _ = tracing_subscriber::registry()
        .with(console)
        .with(buffer)
        .with(traces)
        .try_init();
    Ok(guard)
}

/// Resolves when the process is asked to stop (Ctrl-C, or SIGTERM as `docker stop` sends).
pub async fn stop_requested() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// Runs `serve` until stopped.
pub async fn run_serve(args: ServeArgs) -> anyhow::Result<()> {
    orchestrator_backends::http::install_crypto_provider();
    let config = args.host.config()?;
    let server = Server::start(config).await?;
    eprintln!(
        "{} listening on {}{}",
        server.app_id(),
        server.base_url(),
        if server.in_process_backend().is_some() {
            " (orchestrator API; Ctrl-C stops)"
        } else {
            ""
        }
    );
    stop_requested().await;
    eprintln!("stopping...");
    server.shutdown().await;
    Ok(())
}

/// A preset argument as the service sees it: a name and the directory it is looked up in.
fn preset_location(arg: &str, default_dir: &Path) -> anyhow::Result<(String, PathBuf)> {
    let looks_like_path =
        arg.contains('/') || arg.contains('\\') || arg.ends_with(".yaml") || arg.ends_with(".yml");
    if !looks_like_path {
        return Ok((arg.to_owned(), default_dir.to_path_buf()));
    }
    let path = Path::new(arg);
    if !path.is_file() {
        bail!("preset file {} does not exist", path.display());
    }
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .with_context(|| format!("{} has no usable file name", path.display()))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((name.to_owned(), dir))
}

/// The waves a fresh deploy of the preset will run: per wave, the nodes' app-ids and
/// their services. Only for display; the deploy plans again against what runs.
fn planned_waves(config: &HostConfig, name: &str) -> anyhow::Result<Vec<Vec<(AppId, usize)>>> {
    let catalog = Catalog::builtin();
    let parsed = orchestrator_core::preset::PresetLibrary::new(&config.presets_host_path)
        .load(name)
        .with_context(|| format!("loading preset `{name}`"))?;
    let resolved =
        Resolved::from_preset(&parsed, &config.host_environment, &BTreeMap::new(), catalog)
            .with_context(|| format!("resolving preset `{name}`"))?;
    let plan = planner::plan(&[], &resolved.nodes, catalog, &PlanOptions::default())
        .map_err(|rejected| anyhow::anyhow!("{rejected}"))?;
    let services: BTreeMap<&AppId, usize> = plan
        .nodes
        .iter()
        .map(|n| (&n.app_id, n.services.len()))
        .collect();
    Ok(plan
        .waves
        .iter()
        .map(|w| {
            w.actions
                .iter()
                .filter(|a| matches!(a.kind, ActionKind::Deploy | ActionKind::Redeploy))
                .map(|a| {
                    let n = services.get(&a.app_id).copied().unwrap_or(0);
                    (a.app_id.clone(), n)
                })
                .collect()
        })
        .filter(|w: &Vec<(AppId, usize)>| !w.is_empty())
        .collect())
}

/// How many deploy waves a fresh deploy of preset `name` (in `dir`) runs.
pub fn planned_wave_count(dir: &Path, name: &str) -> anyhow::Result<usize> {
    let mut config = HostConfig::from_env(|_| None)?;
    config.presets_host_path = dir.to_path_buf();
    Ok(planned_waves(&config, name)?.len())
}

/// Runs `up`: deploy, show progress, tables, serve, tear down.
pub async fn run_up(args: UpArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    orchestrator_backends::http::install_crypto_provider();
    let mut config = args.host.config()?;
    let (name, dir) = preset_location(&args.preset, &config.presets_host_path)?;
    config.presets_host_path = dir;
    let waves = planned_waves(&config, &name)?;
    let takeover = config.elector_config().takeover_bound() + TAKEOVER_SLACK;

    let server = Server::start(config).await?;
    let service = server
        .service()
        .await
        .context("this process is not the control plane (BANNOU_APP_ID must be `bannou`)")?;
    writeln!(out, "control plane on {}", server.base_url())?;
    if let Err(e) = wait_to_lead(&server, &service, takeover, out).await {
        server.shutdown().await;
        return Err(e);
    }
    writeln!(out, "deploying `{name}` in {} wave(s)", waves.len())?;

    let result = deploy_with_progress(&server, &service, &name, &waves, out).await;
    let healthy = match result {
        Ok(reply) => {
            super::deploy::write_deploy(out, &reply, Some(&name), false)?;
            reply.status < 300
        }
        Err(e) => {
            writeln!(out, "deploy refused: {e}")?;
            false
        }
    };
    if healthy {
        let status = service.status(GetStatusRequest::default()).await;
        if let Ok(status) = status {
            writeln!(out)?;
            super::status::write_status(out, &status.body)?;
        }
        let routing = service
            .service_routing(GetServiceRoutingRequest::default())
            .await;
        if let Ok(routing) = routing {
            writeln!(out)?;
            super::status::write_routing(out, &routing.body)?;
        }
    }
    out.flush()?;

    if !args.exit {
        writeln!(
            out,
            "\nserving the API on {} (try `bannou-host status --api {}`); Ctrl-C to {}",
            server.base_url(),
            server.base_url(),
            if args.keep {
                "stop"
            } else {
                "tear down and stop"
            }
        )?;
        out.flush()?;
        stop_requested().await;
    }
    if !args.keep {
        match service.teardown(TeardownRequest::default()).await {
            Ok(t) => super::deploy::write_teardown(out, &t.body, false)?,
            Err(e) => writeln!(out, "teardown failed: {e}")?,
        }
    }
    server.shutdown().await;
    if healthy {
        Ok(())
    } else {
        bail!("the deployment of `{name}` did not become healthy")
    }
}

/// Waits until this replica leads the control plane, for at most `limit`: with Redis, a
/// replica that died (`kill -9`) without releasing the leader lease holds it until it
/// runs out, and deploys and teardowns run on the leader only. Prints who holds the lease
/// and for how long; an error (nothing deployed) when it is still held after `limit`.
async fn wait_to_lead(
    server: &Server,
    service: &OrchestratorService,
    limit: Duration,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let deps = service.deps();
    let started = tokio::time::Instant::now();
    let mut waited = false;
    let mut write_error: Option<std::io::Error> = None;
    let led = deps
        .leader
        .wait_until_leader(
            limit,
            server.adapters().leader.as_deref(),
            deps.clock.as_ref(),
            |other| {
                waited = true;
                let left = other
                    .remaining
                    .map_or_else(|| "an unknown time".to_owned(), |d| format!("{d:.1?}"));
                let written = writeln!(
                    out,
                    "waiting for the leader lease held by {} ({left} left; a replica that \
                     died keeps it until it runs out), at most {limit:.1?}",
                    other.holder
                )
                .and_then(|()| out.flush());
                if let Err(e) = written {
                    write_error.get_or_insert(e);
                }
            },
        )
        .await;
    if let Some(e) = write_error {
        return Err(e.into());
    }
    match led {
        Ok(token) if waited => {
            writeln!(
                out,
                "leading the control plane (term {token}) after {:.1?}",
                started.elapsed()
            )?;
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(state) => {
            let holder = match state {
                LeaderState::Follower {
                    holder: Some(h), ..
                } => h,
                _ => "no replica known".to_owned(),
            };
            bail!(
                "this replica ({}) did not become the leader of the control plane within \
                 {limit:.1?} (leader lease held by {holder}): nothing deployed",
                deps.leader.candidate_id()
            )
        }
    }
}

/// How long `up` keeps reading heartbeats after a successful deploy for nodes whose
/// progress line is not printed yet (the deploy saw them through the orchestrator's own
/// subscription; this one may deliver them a moment later).
const PROGRESS_DRAIN: Duration = Duration::from_secs(2);

/// Which planned nodes have not been seen healthy yet, per wave, and which waves are
/// complete.
struct Progress {
    pending: Vec<Vec<(AppId, usize)>>,
    waves_done: usize,
    start: tokio::time::Instant,
}

impl Progress {
    fn waiting(&self) -> bool {
        self.pending.iter().any(|w| !w.is_empty())
    }

    /// Prints the node of a healthy heartbeat (once) and every wave it completes.
    fn note(&mut self, hb: &ServiceHeartbeatEvent, out: &mut dyn Write) -> std::io::Result<()> {
        if hb.status != InstanceHealthStatus::Healthy {
            return Ok(());
        }
        let elapsed = self.start.elapsed().as_millis();
        for (i, nodes) in self.pending.iter_mut().enumerate() {
            if let Some(pos) = nodes.iter().position(|(a, _)| *a == hb.app_id) {
                let (app, n) = nodes.remove(pos);
                writeln!(
                    out,
                    "  wave {}: {app} healthy ({n} services) +{elapsed} ms",
                    i + 1,
                )?;
            }
        }
        while self.waves_done < self.pending.len() && self.pending[self.waves_done].is_empty() {
            self.waves_done += 1;
            writeln!(out, "wave {} healthy +{elapsed} ms", self.waves_done)?;
        }
        out.flush()
    }
}

/// Deploys `name` while printing each node as its first healthy heartbeat arrives and
/// each wave as its last node does.
async fn deploy_with_progress(
    server: &Server,
    service: &OrchestratorService,
    name: &str,
    waves: &[Vec<(AppId, usize)>],
    out: &mut dyn Write,
) -> anyhow::Result<Reply<DeployResponse>> {
    let mut heartbeats = server
        .adapters()
        .bus
        .subscribe_events::<ServiceHeartbeatEvent>()
        .await
        .context("subscribing to heartbeats for progress")?;
    let mut progress = Progress {
        pending: waves.to_vec(),
        waves_done: 0,
        start: tokio::time::Instant::now(),
    };
    let request = DeployRequest {
        preset: Some(name.to_owned()),
        ..DeployRequest::default()
    };
    let deploy = {
        let service = service.clone();
        tokio::spawn(async move { service.deploy(request).await })
    };
    tokio::pin!(deploy);
    loop {
        tokio::select! {
            done = &mut deploy => {
                let answer = done.context("the deploy task panicked")?;
                let answer = answer.map_err(|e| anyhow::anyhow!("{} ({})", e.body.error, e.status()))?;
                if answer.outcome == Outcome::Ok {
                    // Every node was healthy for the deploy: print the beats this
                    // subscription has not delivered yet (bounded).
                    let drain = async {
                        while progress.waiting() {
                            match heartbeats.next().await {
                                Some(Ok(hb)) => progress.note(&hb, out)?,
                                Some(Err(_)) => {}
                                None => break,
                            }
                        }
                        std::io::Result::Ok(())
                    };
                    if let Ok(written) = tokio::time::timeout(PROGRESS_DRAIN, drain).await {
                        written?;
                    }
                }
                writeln!(out, "deploy finished after {} ms", progress.start.elapsed().as_millis())?;
                return Ok(Reply { status: outcome_status(answer.outcome), body: answer.body });
            }
            Some(item) = heartbeats.next() => {
                if let Ok(hb) = item {
                    progress.note(&hb, out)?;
                }
            }
        }
    }
}
