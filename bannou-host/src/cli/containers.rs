//! Containers over HTTP: `containers status APP` (docs/COMPATIBILITY.md#container-status)
//! and `containers restart APP` (docs/COMPATIBILITY.md#request-container-restart). A
//! container the backend cannot find is printed and exits non-zero.

use std::io::Write;

use anyhow::bail;
use clap::{Args, Subcommand};
use orchestrator_core::api::{
    ContainerRestartRequestBody, ContainerRestartResponse, ContainerStatus,
    GetContainerStatusRequest, RestartPriority,
};

use super::remote::{ApiArgs, list_or_dash, or_dash, print_json, write_fields};
use super::table::Table;

/// Arguments of `containers`.
#[derive(Debug, Args)]
pub struct ContainersArgs {
    /// The container operation.
    #[command(subcommand)]
    pub what: ContainersCommand,
}

/// The container operations.
#[derive(Debug, Subcommand)]
pub enum ContainersCommand {
    /// Show a container's state, restarts and health checks.
    Status(ContainerStatusArgs),
    /// Ask the backend to restart a container.
    Restart(ContainerRestartArgs),
}

/// Arguments of `containers status`.
#[derive(Debug, Args)]
pub struct ContainerStatusArgs {
    /// App-id of the container.
    pub app: String,
    /// Connection and output options.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Arguments of `containers restart`.
#[derive(Debug, Args)]
pub struct ContainerRestartArgs {
    /// App-id of the container.
    pub app: String,
    /// Why (kept for the audit trail).
    #[arg(long)]
    pub reason: String,
    /// `graceful` (default), `immediate` or `force`.
    #[arg(long, value_name = "PRIORITY")]
    pub priority: Option<RestartPriority>,
    /// Connection and output options.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Runs a `containers` operation.
pub async fn run(args: ContainersArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    match args.what {
        ContainersCommand::Status(a) => {
            let request = GetContainerStatusRequest {
                app_name: a.app.clone(),
            };
            let reply = a.api.client()?.container_status(&request).await?;
            if a.api.json {
                print_json(out, &reply.body)?;
            } else {
                write_container_status(out, &reply.body)?;
            }
            if !reply.is_success() {
                bail!("container `{}` not found (HTTP {})", a.app, reply.status);
            }
            Ok(())
        }
        ContainersCommand::Restart(a) => {
            let request = ContainerRestartRequestBody {
                app_name: a.app.clone(),
                reason: a.reason.clone(),
                priority: a.priority,
                shutdown_grace_period: 30,
            };
            let resp = a.api.client()?.request_container_restart(&request).await?;
            if a.api.json {
                print_json(out, &resp)
            } else {
                Ok(write_container_restart(out, &a.app, &resp)?)
            }
        }
    }
}

/// The human form of a container's status.
pub fn write_container_status(out: &mut dyn Write, s: &ContainerStatus) -> std::io::Result<()> {
    let mut fields = vec![
        ("app", s.app_name.clone()),
        ("status", s.status.to_string()),
        ("instances", s.instances.to_string()),
        ("restarts", format!("{} in 24h", s.restart_count)),
        ("last restart", or_dash(s.last_restart)),
        (
            "plugins",
            list_or_dash(s.plugins.as_deref().unwrap_or_default()),
        ),
        ("checked", s.timestamp.to_string()),
    ];
    if let Some(h) = &s.health_checks {
        fields.push((
            "health",
            format!(
                "{} ({} failures in a row, last check {})",
                or_dash(h.status),
                h.consecutive_failures,
                or_dash(h.last_check)
            ),
        ));
    }
    write_fields(out, &fields)?;
    if let Some(history) = s.restart_history.as_deref().filter(|h| !h.is_empty()) {
        writeln!(out)?;
        let mut t = Table::new(["WHEN", "REASON", "RESULT"]);
        for r in history {
            let result = if r.success {
                "ok".to_owned()
            } else {
                format!("failed: {}", r.error.as_deref().unwrap_or("?"))
            };
            t.row([r.timestamp.to_string(), r.reason.clone(), result]);
        }
        t.write(out)?;
    }
    Ok(())
}

/// The human form of a restart request's answer.
pub fn write_container_restart(
    out: &mut dyn Write,
    app: &str,
    resp: &ContainerRestartResponse,
) -> std::io::Result<()> {
    writeln!(
        out,
        "Restart of `{app}` {} ({} instance(s), {}, scheduled {})",
        if resp.accepted { "accepted" } else { "refused" },
        resp.current_instances,
        or_dash(resp.restart_strategy),
        resp.scheduled_for
            .map_or_else(|| "now".to_owned(), |t| t.to_string())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use orchestrator_core::Timestamp;
    use orchestrator_core::api::ContainerStatusType;

    fn parse(args: &[&str]) -> ContainersCommand {
        match Cli::try_parse_from(std::iter::once("bannou-host").chain(args.iter().copied()))
            .unwrap()
            .command
        {
            Command::Containers(c) => c.what,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn container_operations_parse() {
        let ContainersCommand::Status(a) = parse(&["containers", "status", "bannou-auth"]) else {
            panic!()
        };
        assert_eq!(a.app, "bannou-auth");
        let ContainersCommand::Restart(a) = parse(&[
            "containers",
            "restart",
            "bannou-auth",
            "--reason",
            "config",
            "--priority",
            "immediate",
        ]) else {
            panic!()
        };
        assert_eq!(a.priority, Some(RestartPriority::Immediate));
        assert!(Cli::try_parse_from(["bannou-host", "containers", "restart", "x"]).is_err());
    }

    #[test]
    fn status_renders_fields() {
        let s = ContainerStatus {
            app_name: "bannou-auth".into(),
            status: ContainerStatusType::Stopped,
            timestamp: Timestamp::UNIX_EPOCH,
            instances: 0,
            plugins: None,
            last_restart: None,
            restart_count: 0,
            restart_history: None,
            health_checks: None,
            labels: None,
        };
        let mut buf = Vec::new();
        write_container_status(&mut buf, &s).unwrap();
        let t = String::from_utf8(buf).unwrap();
        assert!(
            t.contains("status:       Stopped") && t.contains("instances:    0"),
            "{t}"
        );
    }
}
