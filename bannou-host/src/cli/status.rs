//! Read-only views over HTTP: `status` (docs/COMPATIBILITY.md#status), `routing`
//! (docs/COMPATIBILITY.md#service-routing), `presets` (docs/COMPATIBILITY.md#presets-list),
//! `backends` (docs/COMPATIBILITY.md#backends-list) and `logs`
//! (docs/COMPATIBILITY.md#logs).

use std::io::Write;

use clap::Args;
use orchestrator_core::api::{
    BackendsResponse, EnvironmentStatus, GetLogsRequest, GetServiceRoutingRequest,
    GetStatusRequest, ListBackendsRequest, ListPresetsRequest, LogsResponse, PresetsResponse,
    ServiceRoutingResponse,
};

use super::remote::{ApiArgs, list_or_dash, or_dash, print_json};
use super::table::Table;

// === status ===

/// Arguments of `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Connection and output options.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Runs `status`.
pub async fn run_status(args: StatusArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let resp = args
        .api
        .client()?
        .status(&GetStatusRequest::default())
        .await?;
    if args.api.json {
        print_json(out, &resp)
    } else {
        Ok(write_status(out, &resp)?)
    }
}

/// The human form of an environment status: a summary line, the nodes, the containers.
pub fn write_status(out: &mut dyn Write, resp: &EnvironmentStatus) -> std::io::Result<()> {
    let mut summary = vec![format!(
        "Deployed: {}",
        if resp.deployed { "yes" } else { "no" }
    )];
    if let Some(b) = resp.backend {
        summary.push(format!("backend {b}"));
    }
    if let Some(p) = &resp.preset {
        summary.push(format!("preset {p}"));
    }
    if let Some(d) = &resp.deployment_id {
        summary.push(format!("deployment {d}"));
    }
    if let Some(u) = &resp.uptime {
        summary.push(format!("up {u}"));
    }
    writeln!(out, "{}", summary.join(", "))?;
    let nodes = resp
        .topology
        .as_ref()
        .map(|t| t.nodes.as_slice())
        .unwrap_or_default();
    if !nodes.is_empty() {
        writeln!(out)?;
        let mut t = Table::new(["NODE", "APP-ID", "REPLICAS", "SERVICES"]);
        for n in nodes {
            t.row([
                n.name.clone(),
                n.effective_app_id().to_owned(),
                n.replicas.to_string(),
                list_or_dash(n.services.as_deref().unwrap_or_default()),
            ]);
        }
        t.write(out)?;
    }
    let services = resp.services.as_deref().unwrap_or_default();
    if !services.is_empty() {
        writeln!(out)?;
        let mut t = Table::new(["CONTAINER", "STATUS", "NODE"]);
        for s in services {
            t.row([s.name.clone(), s.status.to_string(), s.node.clone()]);
        }
        t.write(out)?;
    }
    Ok(())
}

// === routing ===

/// Arguments of `routing`.
#[derive(Debug, Args)]
pub struct RoutingArgs {
    /// Only services whose name starts with this (case-insensitive).
    #[arg(long, value_name = "PREFIX")]
    pub filter: Option<String>,
    /// Show the routing acknowledgements instead (D58): the current mappings version,
    /// each live node's applied version and the nodes behind.
    #[arg(long)]
    pub acks: bool,
    /// Connection and output options.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Runs `routing`.
pub async fn run_routing(args: RoutingArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let request = GetServiceRoutingRequest {
        service_filter: args.filter.clone(),
    };
    let resp = args.api.client()?.service_routing(&request).await?;
    if args.api.json {
        print_json(out, &resp)
    } else if args.acks {
        Ok(write_routing_acks(out, &resp)?)
    } else {
        Ok(write_routing(out, &resp)?)
    }
}

/// The human form of the routing acknowledgements: the current mappings version, then
/// one row per live node that reports its applied version, then who is behind.
pub fn write_routing_acks(
    out: &mut dyn Write,
    resp: &ServiceRoutingResponse,
) -> std::io::Result<()> {
    let current = resp.mappings_version;
    match current {
        Some(v) => writeln!(out, "Mappings version: {v}")?,
        None => writeln!(out, "Mappings version: unknown (none published yet)")?,
    }
    let nodes = resp.node_versions.as_deref().unwrap_or_default();
    if nodes.is_empty() {
        return writeln!(out, "No live node reports an applied mappings version.");
    }
    let mut t = Table::new(["NODE", "APPLIED", "BEHIND"]);
    for n in nodes {
        let behind = current
            .map(|c| c - n.applied_version)
            .filter(|d| *d > 0)
            .map_or_else(|| "-".to_owned(), |d| d.to_string());
        t.row([n.app_id.clone(), n.applied_version.to_string(), behind]);
    }
    t.write(out)?;
    let behind = resp.nodes_behind.as_deref().unwrap_or_default();
    match (behind.is_empty(), current) {
        (true, Some(v)) => writeln!(out, "Every node applied version {v}."),
        (true, None) => Ok(()),
        (false, _) => {
            let names: Vec<String> = behind
                .iter()
                .map(|n| format!("{} ({})", n.app_id, n.applied_version))
                .collect();
            writeln!(out, "{} node(s) behind: {}", behind.len(), names.join(", "))
        }
    }
}

/// One line naming the nodes that had not applied a change's routes when it stopped the
/// old nodes (D58); nothing when there were none.
pub fn write_routing_laggards(
    out: &mut dyn Write,
    laggards: Option<&[orchestrator_core::api::NodeMappingsVersion]>,
) -> std::io::Result<()> {
    let Some(laggards) = laggards.filter(|l| !l.is_empty()) else {
        return Ok(());
    };
    let names: Vec<String> = laggards
        .iter()
        .map(|n| format!("{} (at version {})", n.app_id, n.applied_version))
        .collect();
    writeln!(
        out,
        "Old nodes stopped before these had applied the new routes: {}",
        names.join(", ")
    )
}

/// The human form of the routing table.
pub fn write_routing(out: &mut dyn Write, resp: &ServiceRoutingResponse) -> std::io::Result<()> {
    if resp.mappings.is_empty() {
        writeln!(
            out,
            "No services routed away from `{}`.",
            resp.default_app_id
        )?;
    } else {
        let mut t = Table::new(["SERVICE", "APP-ID"]);
        for (service, app) in &resp.mappings {
            t.row([service.as_str(), app.as_str()]);
        }
        t.write(out)?;
        writeln!(out)?;
    }
    write_weighted_routes(out, resp)?;
    writeln!(
        out,
        "{} mapped service(s); every other service goes to `{}` (deployment {}, read {})",
        resp.total_services,
        resp.default_app_id,
        or_dash(resp.deployment_id.as_deref()),
        resp.generated_at
    )
}

/// The weighted splits of a routing answer (D63), one row per service: each target with
/// its weight and its share of the calls; nothing when no service is split.
fn write_weighted_routes(
    out: &mut dyn Write,
    resp: &ServiceRoutingResponse,
) -> std::io::Result<()> {
    let Some(weighted) = resp.weighted_mappings.as_ref().filter(|w| !w.is_empty()) else {
        return Ok(());
    };
    let mut t = Table::new(["SERVICE", "PRIMARY", "WEIGHTED TARGETS"]);
    for (service, targets) in weighted {
        let total: u64 = targets.iter().map(|t| u64::from(t.weight)).sum();
        let split: Vec<String> = targets
            .iter()
            .map(|t| {
                let share = u64::from(t.weight) * 100 / total.max(1);
                format!("{} {} ({share}%)", t.app_id, t.weight)
            })
            .collect();
        let primary = resp.mappings.get(service).unwrap_or(&resp.default_app_id);
        t.row([service.clone(), primary.clone(), split.join(", ")]);
    }
    t.write(out)?;
    writeln!(out)
}

// === presets ===

/// Arguments of `presets`.
#[derive(Debug, Args)]
pub struct PresetsArgs {
    /// Connection and output options.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Runs `presets`.
pub async fn run_presets(args: PresetsArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let resp = args
        .api
        .client()?
        .presets(&ListPresetsRequest::default())
        .await?;
    if args.api.json {
        print_json(out, &resp)
    } else {
        Ok(write_presets(out, &resp)?)
    }
}

/// The human form of the preset list.
pub fn write_presets(out: &mut dyn Write, resp: &PresetsResponse) -> std::io::Result<()> {
    let mut t = Table::new(["NAME", "CATEGORY", "NODES", "DESCRIPTION"]);
    for p in &resp.presets {
        t.row([
            p.name.clone(),
            or_dash(p.category),
            p.topology.nodes.len().to_string(),
            p.description.clone(),
        ]);
    }
    t.write(out)?;
    if let Some(active) = &resp.active_preset {
        writeln!(out)?;
        writeln!(out, "Active preset: {active}")?;
    }
    Ok(())
}

// === backends ===

/// Arguments of `backends`.
#[derive(Debug, Args)]
pub struct BackendsArgs {
    /// Connection and output options.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Runs `backends`.
pub async fn run_backends(args: BackendsArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let resp = args
        .api
        .client()?
        .backends(&ListBackendsRequest::default())
        .await?;
    if args.api.json {
        print_json(out, &resp)
    } else {
        Ok(write_backends(out, &resp)?)
    }
}

/// The human form of backend detection.
pub fn write_backends(out: &mut dyn Write, resp: &BackendsResponse) -> std::io::Result<()> {
    let mut t = Table::new([
        "BACKEND",
        "AVAILABLE",
        "PRIORITY",
        "VERSION",
        "ENDPOINT",
        "NOTE",
    ]);
    for b in &resp.backends {
        t.row([
            b.kind.to_string(),
            if b.available { "yes" } else { "no" }.to_owned(),
            b.priority.to_string(),
            or_dash(b.version.as_deref()),
            or_dash(b.endpoint.as_deref()),
            b.error.clone().unwrap_or_default(),
        ]);
    }
    t.write(out)?;
    writeln!(out)?;
    writeln!(
        out,
        "Recommended: {}; active: {}",
        resp.recommended,
        or_dash(resp.active_backend)
    )
}

// === logs ===

/// Arguments of `logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// App-id (container) to read logs of; without it, the control plane's own recent
    /// lines (app-id `bannou`).
    pub app: Option<String>,
    /// Lines from the end.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub tail: i64,
    /// Only lines after this RFC 3339 time (relative forms like `5m` are ignored by the
    /// server, as upstream does).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Connection and output options.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Runs `logs`.
pub async fn run_logs(args: LogsArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let request = GetLogsRequest {
        service: args.app.clone(),
        since: args.since.clone(),
        tail: args.tail,
        ..GetLogsRequest::default()
    };
    let resp = args.api.client()?.logs(&request).await?;
    if args.api.json {
        print_json(out, &resp)
    } else {
        Ok(write_logs(out, &resp)?)
    }
}

/// The human form of logs: one `timestamp stream message` line per entry.
pub fn write_logs(out: &mut dyn Write, resp: &LogsResponse) -> std::io::Result<()> {
    for entry in &resp.logs {
        let stream = entry.stream.map_or("-", |s| s.as_str());
        writeln!(out, "{} {stream:<6} {}", entry.timestamp, entry.message)?;
    }
    if resp.truncated {
        writeln!(out, "(truncated)")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use orchestrator_core::Timestamp;
    use orchestrator_core::api::{
        BackendInfo, DeployedService, DeployedServiceStatus, LogEntry, LogStreamType,
        NodeMappingsVersion, ServiceTopology, TopologyNode,
    };
    use orchestrator_core::events::BackendType;
    use orchestrator_core::events::WeightedTarget;

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
    fn read_commands_parse() {
        assert!(matches!(parse(&["status", "--json"]), Command::Status(a) if a.api.json));
        let Command::Routing(a) = parse(&["routing", "--filter", "game"]) else {
            panic!()
        };
        assert_eq!(a.filter.as_deref(), Some("game"));
        assert!(matches!(parse(&["presets"]), Command::Presets(_)));
        assert!(matches!(parse(&["backends"]), Command::Backends(_)));
        let Command::Logs(a) = parse(&["logs", "bannou-auth", "--tail", "5", "--since", "x"])
        else {
            panic!()
        };
        assert_eq!(
            (a.app.as_deref(), a.tail, a.since.as_deref()),
            (Some("bannou-auth"), 5, Some("x"))
        );
        let Command::Logs(a) = parse(&["logs"]) else {
            panic!()
        };
        assert_eq!(a.app, None, "the control plane's own lines");
    }

    #[test]
    fn status_lists_nodes_and_containers() {
        let mut node = TopologyNode::new("bannou-auth");
        node.services = Some(vec!["auth".into(), "account".into()]);
        node.replicas = 2;
        let resp = EnvironmentStatus {
            deployed: true,
            timestamp: Timestamp::UNIX_EPOCH,
            deployment_id: None,
            backend: Some(BackendType::Compose),
            preset: None,
            topology: Some(ServiceTopology {
                nodes: vec![node],
                infrastructure: None,
            }),
            services: Some(vec![DeployedService {
                name: "bannou-auth".into(),
                status: DeployedServiceStatus::Running,
                node: "host-1".into(),
                container_id: None,
                pod_name: None,
                endpoints: None,
            }]),
            infrastructure: None,
            resources: None,
            uptime: None,
        };
        let t = text(|b| write_status(b, &resp));
        assert!(t.starts_with("Deployed: yes, backend Compose\n"), "{t}");
        assert!(
            t.contains("bannou-auth  bannou-auth  2         auth, account"),
            "{t}"
        );
        assert!(t.contains("bannou-auth  Running  host-1"), "{t}");
        let empty = EnvironmentStatus {
            deployed: false,
            topology: Some(ServiceTopology::empty()),
            services: Some(vec![]),
            backend: None,
            ..resp
        };
        assert_eq!(text(|b| write_status(b, &empty)), "Deployed: no\n");
    }

    #[test]
    fn routing_table_and_empty_table() {
        let mut resp = ServiceRoutingResponse {
            mappings: [("auth", "bannou-auth"), ("game-session", "bannou-game")]
                .into_iter()
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .collect(),
            default_app_id: "bannou".into(),
            generated_at: Timestamp::UNIX_EPOCH,
            total_services: 2,
            deployment_id: Some("d-1".into()),
            mappings_version: None,
            node_versions: None,
            nodes_behind: None,
            weighted_mappings: None,
        };
        let t = text(|b| write_routing(b, &resp));
        assert!(t.contains("auth          bannou-auth\n"), "{t}");
        assert!(t.contains("game-session  bannou-game\n"), "{t}");
        assert!(t.contains("2 mapped service(s)") && t.contains("deployment d-1"));
        assert!(!t.contains("WEIGHTED"), "{t}");
        let target = |app: &str, weight| WeightedTarget {
            app_id: app.into(),
            weight,
        };
        resp.weighted_mappings = Some(
            [
                (
                    "auth".to_owned(),
                    vec![target("bannou-auth", 90), target("bannou-auth-new", 10)],
                ),
                (
                    "chat".to_owned(),
                    vec![target("bannou", 1), target("n2", 3)],
                ),
            ]
            .into(),
        );
        let t = text(|b| write_routing(b, &resp));
        assert!(
            t.contains("auth     bannou-auth  bannou-auth 90 (90%), bannou-auth-new 10 (10%)\n"),
            "{t}"
        );
        assert!(
            t.contains("chat     bannou       bannou 1 (25%), n2 3 (75%)\n"),
            "{t}"
        );
        resp.weighted_mappings = None;
        resp.mappings.clear();
        resp.total_services = 0;
        assert!(text(|b| write_routing(b, &resp)).starts_with("No services routed away"));
    }

    #[test]
    fn routing_acks_show_the_version_each_node_and_who_is_behind() {
        let node = |app: &str, v| NodeMappingsVersion {
            app_id: app.into(),
            applied_version: v,
        };
        let mut resp = ServiceRoutingResponse {
            mappings: Default::default(),
            default_app_id: "bannou".into(),
            generated_at: Timestamp::UNIX_EPOCH,
            total_services: 0,
            deployment_id: None,
            mappings_version: Some(12),
            node_versions: Some(vec![node("bannou-auth", 12), node("bannou-game", 9)]),
            nodes_behind: Some(vec![node("bannou-game", 9)]),
            weighted_mappings: None,
        };
        let Command::Routing(a) = parse(&["routing", "--acks"]) else {
            panic!()
        };
        assert!(a.acks);
        let t = text(|b| write_routing_acks(b, &resp));
        assert!(t.starts_with("Mappings version: 12\n"), "{t}");
        assert!(t.contains("NODE         APPLIED  BEHIND\n"), "{t}");
        assert!(t.contains("bannou-auth  12       -\n"), "{t}");
        assert!(t.contains("bannou-game  9        3\n"), "{t}");
        assert!(t.ends_with("1 node(s) behind: bannou-game (9)\n"), "{t}");

        resp.nodes_behind = Some(vec![]);
        resp.node_versions = Some(vec![node("bannou-auth", 12)]);
        let t = text(|b| write_routing_acks(b, &resp));
        assert!(t.ends_with("Every node applied version 12.\n"), "{t}");
        resp.node_versions = None;
        resp.mappings_version = None;
        let t = text(|b| write_routing_acks(b, &resp));
        assert_eq!(
            t,
            "Mappings version: unknown (none published yet)\n\
             No live node reports an applied mappings version.\n"
        );
    }

    #[test]
    fn backends_and_logs_render() {
        let resp = BackendsResponse {
            timestamp: Timestamp::UNIX_EPOCH,
            backends: vec![BackendInfo {
                kind: BackendType::Kubernetes,
                available: false,
                priority: 1,
                version: None,
                endpoint: None,
                capabilities: None,
                error: Some("no kubeconfig".into()),
            }],
            recommended: BackendType::InProcess,
            active_backend: None,
        };
        let t = text(|b| write_backends(b, &resp));
        assert!(
            t.contains("Kubernetes  no") && t.contains("no kubeconfig"),
            "{t}"
        );
        assert!(t.contains("Recommended: InProcess; active: -"));
        let logs = LogsResponse {
            service: Some("a".into()),
            container: Some("a".into()),
            logs: vec![LogEntry {
                timestamp: Timestamp::UNIX_EPOCH,
                stream: Some(LogStreamType::Stderr),
                message: "boom".into(),
            }],
            truncated: false,
        };
        let t = text(|b| write_logs(b, &logs));
        assert!(t.contains("Stderr boom"), "{t}");
    }
}
