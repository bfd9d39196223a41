//! The whole platform in one process, with nothing installed: start the control plane
//! on the embedded default (in-memory state and bus, in-process backend), deploy the
//! `npc-brains` preset (a coordinator node and two worker pools), lease an NPC-brain
//! worker and give it back, print the routing table, and tear down.
//!
//! ```text
//! cargo run -p bannou-examples --example embedded            # npc-brains
//! cargo run -p bannou-examples --example embedded -- split-auth
//! ```
//!
//! Every step is a plain method call on `OrchestratorService`, the same use cases the
//! HTTP API serves, so a debugger can step from here straight into the deploy pipeline.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use bannou_host::config::HostConfig;
use bannou_host::server::Server;
use orchestrator_core::api::{
    AcquireProcessorRequest, DeployRequest, GetPoolStatusRequest, GetServiceRoutingRequest,
    ReleaseProcessorRequest, TeardownRequest,
};

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let preset = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "npc-brains".into());

    // Defaults for everything, as with no environment at all; presets from this repository
    // and a free loopback port so that the example never clashes with a running host.
    let mut config = HostConfig::from_env(|_| None)?;
    config.presets_host_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../presets");
    config.listen = "127.0.0.1:0".parse()?;
    let server = Server::start(config).await?;
    let service = server.service().await.ok_or("not the control plane")?;
    println!("control plane on {}", server.base_url());

    let deployed = service
        .deploy(DeployRequest {
            preset: Some(preset.clone()),
            ..DeployRequest::default()
        })
        .await?;
    println!(
        "deployed `{preset}`: success={} in {} ({} node(s))",
        deployed.body.success,
        deployed.body.duration,
        deployed.body.services.as_ref().map_or(0, Vec::len)
    );
    for warning in deployed.body.warnings.iter().flatten() {
        println!("  warning: {warning}");
    }

    if preset == "npc-brains" {
        // Workers become Available when their first heartbeat arrives (D9
        // (docs/DECISIONS.md#d9)); wait up to 5 s for one instead of failing at once.
        let lease = service
            .acquire(AcquireProcessorRequest {
                wait_ms: 5_000,
                ..AcquireProcessorRequest::new("npc-brain")
            })
            .await?
            .body;
        println!(
            "leased {} on node {} (lease {}, fencing token {}, expires {})",
            lease.processor_id, lease.app_id, lease.lease_id, lease.fencing_token, lease.expires_at
        );
        let status = service
            .pool_status(GetPoolStatusRequest {
                pool_type: "npc-brain".into(),
                include_metrics: true,
            })
            .await?
            .body;
        println!(
            "pool npc-brain: {} worker(s), {} busy, utilisation {:.0}%",
            status.total_instances,
            status.busy_instances,
            status.utilization * 100.0
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        let released = service
            .release(ReleaseProcessorRequest {
                fencing_token: Some(lease.fencing_token),
                ..ReleaseProcessorRequest::new(lease.lease_id)
            })
            .await?
            .body;
        println!("released {}", released.processor_id);
    }

    let routing = service
        .service_routing(GetServiceRoutingRequest::default())
        .await?
        .body;
    println!(
        "routing (every other service goes to `{}`):",
        routing.default_app_id
    );
    for (service_name, app_id) in &routing.mappings {
        println!("  {service_name:<24} -> {app_id}");
    }

    let torn = service.teardown(TeardownRequest::default()).await?.body;
    println!(
        "teardown: {} node(s) stopped",
        torn.stopped_containers.as_ref().map_or(0, Vec::len)
    );
    server.shutdown().await;
    Ok(())
}
