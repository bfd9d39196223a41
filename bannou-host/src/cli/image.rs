//! `bannou-host image build [--tag bannou:latest] [--binary PATH]`: builds the node image
//! `FROM scratch` through the Docker API (see `docs/IMAGE.md`). Without `--binary` the
//! running executable is used, which must then be the static build
//! (`scripts/build-image.sh` does both steps).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use orchestrator_backends::containers::docker::connect_negotiated;
use orchestrator_backends::containers::image::{DEFAULT_TAG, ImageSpec, build_image};

/// Arguments of `image`.
#[derive(Debug, Args)]
pub struct ImageArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ImageCommand,
}

/// `image` subcommands.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build the node image from a static `bannou-host` binary.
    Build(BuildArgs),
}

/// Arguments of `image build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Tag of the image.
    #[arg(long, default_value = DEFAULT_TAG)]
    pub tag: String,
    /// The static binary to put in the image (default: this executable).
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// CA bundle copied to `/etc/ssl/certs/ca-certificates.crt` (default: the host's, when
    /// present).
    #[arg(long, value_name = "PATH")]
    pub ca_bundle: Option<PathBuf>,
    /// Docker engine address (default: `DOCKER_HOST`, else the local socket).
    #[arg(long, value_name = "URL", env = crate::config::vars::DOCKER_HOST.name)]
    pub docker_host: Option<String>,
    /// Print only the image id.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Runs `image …`.
pub async fn run(args: ImageArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    match args.command {
        ImageCommand::Build(b) => run_build(b, out).await,
    }
}

async fn run_build(args: BuildArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let binary = match args.binary {
        Some(b) => b,
        None => std::env::current_exe().context("cannot find this executable")?,
    };
    let mut spec = ImageSpec::new(args.tag, binary);
    if let Some(ca) = args.ca_bundle {
        spec.ca_bundle = Some(ca);
    }
    spec.labels.insert(
        "bannou.version".to_owned(),
        env!("CARGO_PKG_VERSION").to_owned(),
    );
    let docker = connect_negotiated(args.docker_host.as_deref())
        .await
        .context("cannot reach the Docker engine")?;
    let quiet = args.quiet;
    let mut write_error = None;
    let built = build_image(&docker, &spec, |line| {
        if !quiet && write_error.is_none() {
            write_error = writeln!(out, "{line}").err();
        }
    })
    .await?;
    if let Some(e) = write_error {
        return Err(e.into());
    }
    if quiet {
        writeln!(out, "{}", built.id)?;
    } else {
        writeln!(
            out,
            "built {} ({}, {:.1} MiB)",
            built.tag,
            built.id,
            built.size_bytes as f64 / 1_048_576.0
        )?;
    }
    Ok(())
}
