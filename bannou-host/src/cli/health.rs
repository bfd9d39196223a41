//! Health and restarts over HTTP: `health` (services,
//! docs/COMPATIBILITY.md#services-health; `--infrastructure`,
//! docs/COMPATIBILITY.md#infrastructure-health) and `restart SERVICE`
//! (docs/COMPATIBILITY.md#restart-service; `--check` asks should-restart,
//! docs/COMPATIBILITY.md#should-restart).

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::bail;
use clap::Args;
use orchestrator_core::api::{
    InfrastructureHealthRequest, InfrastructureHealthResponse, ServiceHealthRequest,
    ServiceHealthSource, ServiceRestartRequest, ServiceRestartResult, ShouldRestartServiceRequest,
};
use orchestrator_core::health::ServiceHealthReport;
use orchestrator_core::restart::RestartRecommendation;

use super::remote::{ApiArgs, or_dash, parse_key_value, print_json, write_fields};
use super::table::Table;

// === health ===

/// Arguments of `health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Check the infrastructure (state store, pub/sub, messaging) instead of services.
    #[arg(long, conflicts_with_all = ["source", "filter"])]
    pub infrastructure: bool,
    /// Which instances to report: `all`, `control-plane-only`, `deployed-only`.
    #[arg(long, value_name = "SOURCE")]
    pub source: Option<ServiceHealthSource>,
    /// Only services whose name contains this.
    #[arg(long, value_name = "SERVICE")]
    pub filter: Option<String>,
    /// Connection and output options.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Runs `health`; unhealthy infrastructure exits non-zero.
pub async fn run_health(args: HealthArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let client = args.api.client()?;
    if args.infrastructure {
        let reply = client
            .infrastructure_health(&InfrastructureHealthRequest::default())
            .await?;
        if args.api.json {
            print_json(out, &reply.body)?;
        } else {
            write_infrastructure(out, &reply.body)?;
        }
        if !reply.is_success() || !reply.body.healthy {
            bail!("infrastructure unhealthy (HTTP {})", reply.status);
        }
        return Ok(());
    }
    let request = ServiceHealthRequest {
        source: args.source.unwrap_or(ServiceHealthSource::All),
        service_filter: args.filter.clone(),
    };
    let report = client.services_health(&request).await?;
    if args.api.json {
        print_json(out, &report)
    } else {
        Ok(write_services_health(out, &report)?)
    }
}

/// The human form of a services-health report: a summary, then one row per entry,
/// unhealthy first.
pub fn write_services_health(
    out: &mut dyn Write,
    report: &ServiceHealthReport,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{} of {} healthy ({:.1}%), source {}, control plane `{}`",
        report.healthy_services.len(),
        report.total_services,
        report.health_percentage,
        report.source,
        report.control_plane_app_id
    )?;
    if report.total_services == 0 {
        return Ok(());
    }
    writeln!(out)?;
    let mut t = Table::new(["SERVICE", "APP-ID", "STATUS", "LAST-SEEN"]);
    for e in report
        .unhealthy_services
        .iter()
        .chain(&report.healthy_services)
    {
        t.row([
            e.service_id.clone(),
            e.app_id.clone(),
            e.status.to_string(),
            e.last_seen.to_string(),
        ]);
    }
    t.write(out)
}

/// The human form of an infrastructure check.
pub fn write_infrastructure(
    out: &mut dyn Write,
    resp: &InfrastructureHealthResponse,
) -> std::io::Result<()> {
    writeln!(
        out,
        "Infrastructure {} ({})",
        if resp.healthy { "healthy" } else { "UNHEALTHY" },
        resp.timestamp
    )?;
    let mut t = Table::new(["COMPONENT", "STATUS", "MESSAGE"]);
    for c in &resp.components {
        t.row([
            c.name.clone(),
            c.status.to_string(),
            c.message.clone().unwrap_or_default(),
        ]);
    }
    t.write(out)
}

// === restart ===

/// Arguments of `restart`.
#[derive(Debug, Args)]
pub struct RestartArgs {
    /// Service to restart (`auth`, `game-session`, ...).
    pub service: String,
    /// Only ask whether a restart is recommended; change nothing.
    #[arg(long, conflicts_with_all = ["force", "env"])]
    pub check: bool,
    /// Restart even when healthy.
    #[arg(long)]
    pub force: bool,
    /// Seconds to wait for the restarted service to become healthy.
    #[arg(long = "wait-seconds", value_name = "SECONDS", default_value_t = 120)]
    pub wait_seconds: i64,
    /// Environment updates for the restarted service (`KEY=VALUE`, repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub env: Vec<(String, String)>,
    /// Connection and output options.
    #[command(flatten)]
    pub api: ApiArgs,
}

impl RestartArgs {
    /// The restart request these arguments describe.
    pub fn request(&self) -> ServiceRestartRequest {
        ServiceRestartRequest {
            service_name: self.service.clone(),
            environment: (!self.env.is_empty())
                .then(|| self.env.iter().cloned().collect::<BTreeMap<_, _>>()),
            force: self.force,
            timeout: self.wait_seconds,
        }
    }
}

/// Runs `restart`.
pub async fn run_restart(args: RestartArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let client = args.api.client()?;
    if args.check {
        let rec = client
            .should_restart_service(&ShouldRestartServiceRequest {
                service_name: args.service.clone(),
            })
            .await?;
        return if args.api.json {
            print_json(out, &rec)
        } else {
            Ok(write_recommendation(out, &args.service, &rec)?)
        };
    }
    let result = client.restart_service(&args.request()).await?;
    if args.api.json {
        print_json(out, &result)
    } else {
        Ok(write_restart(out, &args.service, &result)?)
    }
}

/// The human form of a restart result.
pub fn write_restart(
    out: &mut dyn Write,
    service: &str,
    result: &ServiceRestartResult,
) -> std::io::Result<()> {
    writeln!(out, "Restarted `{service}` in {}", result.duration)?;
    write_fields(
        out,
        &[
            ("before", or_dash(result.previous_status)),
            ("now", or_dash(result.current_status)),
        ],
    )
}

/// The human form of a should-restart recommendation.
pub fn write_recommendation(
    out: &mut dyn Write,
    service: &str,
    rec: &RestartRecommendation,
) -> std::io::Result<()> {
    writeln!(
        out,
        "`{service}`: {}",
        if rec.should_restart {
            "restart recommended"
        } else {
            "no restart needed"
        }
    )?;
    write_fields(
        out,
        &[
            ("reason", rec.reason.clone()),
            ("status", or_dash(rec.current_status)),
            ("last seen", or_dash(rec.last_seen)),
            ("degraded for", or_dash(rec.degraded_duration.as_deref())),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use orchestrator_core::Timestamp;
    use orchestrator_core::api::{ComponentHealth, ComponentHealthStatus};
    use orchestrator_core::events::InstanceHealthStatus;
    use orchestrator_core::health::ServiceHealthEntry;

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("bannou-host").chain(args.iter().copied()))
            .unwrap()
            .command
    }

    fn text(f: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> String {
        let mut buf = Vec::new();
        f(&mut buf).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn health_and_restart_parse() {
        let Command::Health(a) = parse(&["health", "--source", "control-plane-only"]) else {
            panic!()
        };
        assert_eq!(a.source, Some(ServiceHealthSource::ControlPlaneOnly));
        assert!(!a.infrastructure);
        let Command::Health(a) = parse(&["health", "--infrastructure"]) else {
            panic!()
        };
        assert!(a.infrastructure);
        assert!(
            Cli::try_parse_from([
                "bannou-host",
                "health",
                "--infrastructure",
                "--source",
                "all"
            ])
            .is_err()
        );
        assert!(Cli::try_parse_from(["bannou-host", "health", "--source", "nope"]).is_err());

        let Command::Restart(a) = parse(&[
            "restart",
            "auth",
            "--force",
            "--env",
            "A=1",
            "--wait-seconds",
            "5",
        ]) else {
            panic!()
        };
        let req = a.request();
        assert_eq!(req.service_name, "auth");
        assert!(req.force);
        assert_eq!(req.timeout, 5);
        assert_eq!(req.environment.unwrap()["A"], "1");
        let Command::Restart(a) = parse(&["restart", "auth", "--check"]) else {
            panic!()
        };
        assert!(a.check);
    }

    fn entry(service: &str, status: InstanceHealthStatus) -> ServiceHealthEntry {
        ServiceHealthEntry {
            service_id: service.into(),
            app_id: "bannou-auth".into(),
            status,
            last_seen: Timestamp::UNIX_EPOCH,
            capacity: None,
            metadata: None,
        }
    }

    #[test]
    fn services_health_lists_unhealthy_first() {
        let report = ServiceHealthReport {
            timestamp: Timestamp::UNIX_EPOCH,
            source: ServiceHealthSource::All,
            control_plane_app_id: "bannou".into(),
            total_services: 2,
            health_percentage: 50.0,
            healthy_services: vec![entry("account", InstanceHealthStatus::Healthy)],
            unhealthy_services: vec![entry("auth", InstanceHealthStatus::Unavailable)],
        };
        let t = text(|b| write_services_health(b, &report));
        assert!(t.starts_with("1 of 2 healthy (50.0%), source All"), "{t}");
        let auth = t.find("auth     bannou-auth  Unavailable").expect(&t);
        let account = t.find("account  bannou-auth  Healthy").expect(&t);
        assert!(auth < account);
    }

    #[test]
    fn infrastructure_and_recommendation_render() {
        let resp = InfrastructureHealthResponse {
            healthy: false,
            timestamp: Timestamp::UNIX_EPOCH,
            components: vec![ComponentHealth {
                name: "statestore".into(),
                status: ComponentHealthStatus::Unavailable,
                last_seen: Timestamp::UNIX_EPOCH,
                message: Some("State stores not initialized".into()),
                metrics: None,
            }],
        };
        let t = text(|b| write_infrastructure(b, &resp));
        assert!(t.starts_with("Infrastructure UNHEALTHY"));
        assert!(
            t.contains("statestore  Unavailable  State stores not initialized"),
            "{t}"
        );
        let rec = RestartRecommendation {
            should_restart: true,
            current_status: Some(InstanceHealthStatus::Degraded),
            last_seen: None,
            degraded_duration: Some("00:06:00".into()),
            reason: "degraded for 6 minutes".into(),
        };
        let t = text(|b| write_recommendation(b, "auth", &rec));
        assert!(t.contains("restart recommended") && t.contains("degraded for: 00:06:00"));
    }
}
