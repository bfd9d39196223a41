//! Command-line interface (clap). `main.rs` only parses and dispatches to here; each
//! subcommand lives in its own module.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub mod bench;
pub mod canary;
pub mod config;
pub mod containers;
pub mod deploy;
pub mod events;
pub mod health;
pub mod image;
pub mod k8s;
pub mod plan;
pub mod pool;
pub mod probe;
pub mod remote;
pub mod serve;
pub mod status;
pub mod table;
pub mod topology;

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
    /// Run this process as a node: the control plane and its API when the app-id is
    /// `bannou` (the default), until Ctrl-C.
    Serve(serve::ServeArgs),
    /// Run the control plane here, deploy a preset, show it come up wave by wave, serve
    /// the API until Ctrl-C, then tear the deployment down (unless `--keep`).
    Up(serve::UpArgs),
    /// Print the resolved nodes, environments, pools and ordered waves of a preset without
    /// touching anything.
    Plan(plan::PlanArgs),
    /// Run a benchmark (`bench pools`) and print its numbers.
    Bench(bench::BenchArgs),
    /// Build the node image `FROM scratch` through the Docker API (`image build`).
    Image(image::ImageArgs),
    /// GET a URL once; exit 0 on a 2xx answer (container healthchecks: the image has no
    /// shell or curl).
    Probe(probe::ProbeArgs),
    /// Kubernetes helpers: `k8s manifests PRESET` prints the Deployments and Services a
    /// deploy of the preset would apply, as YAML (touches nothing).
    K8s(k8s::K8sArgs),

    // === client commands: talk to a running host over HTTP (`--api`, `--token`, `--json`) ===
    /// Deploy a preset (or `--topology FILE`) on a running host.
    Deploy(deploy::DeployArgs),
    /// Stop the deployed containers (`--dry-run` lists them).
    Teardown(deploy::TeardownArgs),
    /// Promote the running canary: every route to the new nodes, the old ones stopped.
    Promote(canary::CanaryArgs),
    /// Abort the running canary: every call back to the old nodes, the new ones stopped.
    Abort(canary::CanaryArgs),
    /// Print the control plane's events live (`GET /orchestrator/events`).
    Events(events::EventsArgs),
    /// Remove stopped containers and prune networks, volumes, images.
    Clean(deploy::CleanArgs),
    /// Show what is deployed: nodes and containers.
    Status(status::StatusArgs),
    /// Show the service -> app-id routing table.
    Routing(status::RoutingArgs),
    /// List the presets the host can deploy.
    Presets(status::PresetsArgs),
    /// List the container backends and their availability.
    Backends(status::BackendsArgs),
    /// Print a container's logs, or without an app-id the control plane's own recent lines.
    Logs(status::LogsArgs),
    /// Report service health (or `--infrastructure` health).
    Health(health::HealthArgs),
    /// Restart a service (`--check` only asks whether it should be).
    Restart(health::RestartArgs),
    /// Lease, release, inspect, scale and clean processing pools.
    Pool(pool::PoolArgs),
    /// Inspect or restart a container.
    Containers(containers::ContainersArgs),
    /// Return to an earlier configuration version.
    Rollback(config::RollbackArgs),
    /// Show the current configuration version.
    ConfigVersion(config::ConfigVersionArgs),
    /// Apply live topology changes from a YAML or JSON file.
    Topology(topology::TopologyArgs),
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
    use crate::config::vars::PRESETS_HOST_PATH;
    flag.or_else(|| std::env::var_os(PRESETS_HOST_PATH.name).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(PRESETS_HOST_PATH.default))
}

/// The multi-threaded runtime of the long-running commands (`serve`, `up`).
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Runs a parsed command line; the returned error is printed by `main`.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        // The traces guard outlives the runtime: dropping it flushes the spans.
        Command::Serve(a) => {
            let _traces = serve::init_logging("info")?;
            runtime()?.block_on(serve::run_serve(a))
        }
        Command::Up(a) => {
            let _traces = serve::init_logging("warn")?;
            runtime()?.block_on(serve::run_up(a, &mut std::io::stdout()))
        }
        Command::Plan(args) => plan::run(args, &mut std::io::stdout().lock()),
        Command::Bench(args) => bench::run(args, &mut std::io::stdout().lock()),
        Command::Probe(a) => probe::run(a),
        Command::K8s(args) => k8s::run(args, &mut std::io::stdout().lock()),
        Command::Image(a) => remote::block_on(image::run(a, &mut std::io::stdout().lock())),
        Command::Deploy(a) => {
            remote::block_on(deploy::run_deploy(a, &mut std::io::stdout().lock()))
        }
        Command::Teardown(a) => {
            remote::block_on(deploy::run_teardown(a, &mut std::io::stdout().lock()))
        }
        Command::Promote(a) => {
            remote::block_on(canary::run_promote(a, &mut std::io::stdout().lock()))
        }
        Command::Abort(a) => remote::block_on(canary::run_abort(a, &mut std::io::stdout().lock())),
        Command::Events(a) => {
            remote::block_on(events::run_events(a, &mut std::io::stdout().lock()))
        }
        Command::Clean(a) => remote::block_on(deploy::run_clean(a, &mut std::io::stdout().lock())),
        Command::Status(a) => {
            remote::block_on(status::run_status(a, &mut std::io::stdout().lock()))
        }
        Command::Routing(a) => {
            remote::block_on(status::run_routing(a, &mut std::io::stdout().lock()))
        }
        Command::Presets(a) => {
            remote::block_on(status::run_presets(a, &mut std::io::stdout().lock()))
        }
        Command::Backends(a) => {
            remote::block_on(status::run_backends(a, &mut std::io::stdout().lock()))
        }
        Command::Logs(a) => remote::block_on(status::run_logs(a, &mut std::io::stdout().lock())),
        Command::Health(a) => {
            remote::block_on(health::run_health(a, &mut std::io::stdout().lock()))
        }
        Command::Restart(a) => {
            remote::block_on(health::run_restart(a, &mut std::io::stdout().lock()))
        }
        Command::Pool(a) => remote::block_on(pool::run(a, &mut std::io::stdout().lock())),
        Command::Containers(a) => {
            remote::block_on(containers::run(a, &mut std::io::stdout().lock()))
        }
        Command::Rollback(a) => {
            remote::block_on(config::run_rollback(a, &mut std::io::stdout().lock()))
        }
        Command::ConfigVersion(a) => {
            remote::block_on(config::run_config_version(a, &mut std::io::stdout().lock()))
        }
        Command::Topology(a) => remote::block_on(topology::run(a, &mut std::io::stdout().lock())),
    }
}
