//! Drives a running Bannou host over HTTP with `bannou_host::client::ApiClient`: deploy a
//! preset, print status and routing, lease and return a pool worker when the preset has a
//! processing pool, then tear everything down.
//!
//! Run a host first (in another terminal), then the example from the workspace root:
//!
//! ```text
//! bannou-host serve                      # listens on http://127.0.0.1:8080
//! cargo run -p bannou-examples --example http_client -- npc-brains
//! cargo run -p bannou-examples --example http_client -- split-auth \
//!     --api http://127.0.0.1:8080 --token "$ORCHESTRATOR_API_TOKEN" --keep
//! ```
//!
//! Options: `--api URL` (default `BANNOU_API_URL`, else `http://127.0.0.1:8080`),
//! `--token TOKEN` (default `ORCHESTRATOR_API_TOKEN`), `--pool POOL` (the pool to lease
//! from; default: the preset's first `processingPools` entry, read from the local presets
//! directory `ORCHESTRATOR_PRESETS_HOST_PATH` or `presets/`), `--keep` (skip the teardown).
//!
//! The same steps from a shell: `bannou-host deploy npc-brains`, `bannou-host status`,
//! `bannou-host routing`, `bannou-host pool acquire npc-brain --wait-ms 10000`,
//! `bannou-host pool release LEASE_ID`, `bannou-host teardown`.

use std::error::Error;
use std::io::Write;
use std::process::ExitCode;

use bannou_host::cli::{deploy, pool, presets_dir, status};
use bannou_host::client::{ApiClient, DEFAULT_API_URL};
use orchestrator_core::api::{
    AcquireProcessorRequest, DeployRequest, GetPoolStatusRequest, GetServiceRoutingRequest,
    GetStatusRequest, ReleaseProcessorRequest, TeardownRequest,
};
use orchestrator_core::preset::PresetLibrary;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// The command line of this example.
struct Options {
    preset: String,
    api: String,
    token: Option<String>,
    pool: Option<String>,
    keep: bool,
}

fn options() -> Result<Options> {
    let mut args = std::env::args().skip(1);
    let mut preset = None;
    let mut opts = Options {
        preset: String::new(),
        api: std::env::var("BANNOU_API_URL").unwrap_or_else(|_| DEFAULT_API_URL.to_owned()),
        token: std::env::var("ORCHESTRATOR_API_TOKEN").ok(),
        pool: None,
        keep: false,
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--api" => opts.api = value("--api")?,
            "--token" => opts.token = Some(value("--token")?),
            "--pool" => opts.pool = Some(value("--pool")?),
            "--keep" => opts.keep = true,
            "-h" | "--help" => {
                return Err(
                    "usage: http_client PRESET [--api URL] [--token T] [--pool P] [--keep]".into(),
                );
            }
            other if preset.is_none() && !other.starts_with('-') => preset = Some(other.to_owned()),
            other => return Err(format!("unexpected argument `{other}`").into()),
        }
    }
    opts.preset =
        preset.ok_or("usage: http_client PRESET [--api URL] [--token T] [--pool P] [--keep]")?;
    Ok(opts)
}

/// The preset's first pool, when the preset file is readable here.
fn first_pool(preset: &str) -> Option<String> {
    let parsed = PresetLibrary::new(presets_dir(None)).load(preset).ok()?;
    parsed
        .preset
        .processing_pools
        .first()
        .map(|p| p.pool_type.clone())
}

async fn run(opts: Options) -> Result<()> {
    let client = ApiClient::new(&opts.api)?.with_token(opts.token.clone());
    let mut out = std::io::stdout();

    println!("== host at {client}");
    println!("{}", client.health().await?);

    println!("\n== deploy {}", opts.preset);
    let request = DeployRequest {
        preset: Some(opts.preset.clone()),
        ..DeployRequest::default()
    };
    let reply = client.deploy(&request).await?;
    deploy::write_deploy(&mut out, &reply, Some(&opts.preset), false)?;
    if !reply.is_success() || !reply.body.success {
        return Err(format!("deploy failed with HTTP {}", reply.status).into());
    }

    println!("\n== status");
    let env = client.status(&GetStatusRequest::default()).await?;
    status::write_status(&mut out, &env)?;

    println!("\n== routing");
    let routing = client
        .service_routing(&GetServiceRoutingRequest::default())
        .await?;
    status::write_routing(&mut out, &routing)?;

    if let Some(pool_type) = opts.pool.clone().or_else(|| first_pool(&opts.preset)) {
        println!("\n== pool {pool_type}");
        let status_req = GetPoolStatusRequest {
            pool_type: pool_type.clone(),
            include_metrics: true,
        };
        pool::write_pool_status(
            &mut out,
            &pool_type,
            &client.pool_status(&status_req).await?,
        )?;
        // Workers may still be starting: wait up to 10 s for one.
        let lease = client
            .acquire_processor(&AcquireProcessorRequest {
                wait_ms: 10_000,
                ..AcquireProcessorRequest::new(pool_type.clone())
            })
            .await?;
        writeln!(out, "\nacquired:")?;
        pool::write_acquired(&mut out, &lease)?;
        let released = client
            .release_processor(&ReleaseProcessorRequest {
                fencing_token: Some(lease.fencing_token),
                ..ReleaseProcessorRequest::new(lease.lease_id)
            })
            .await?;
        pool::write_released(&mut out, &released)?;
    }

    if opts.keep {
        println!("\n== keeping the deployment (--keep)");
    } else {
        println!("\n== teardown");
        let down = client.teardown(&TeardownRequest::default()).await?;
        deploy::write_teardown(&mut out, &down, false)?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match options() {
        Ok(opts) => run(opts).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
