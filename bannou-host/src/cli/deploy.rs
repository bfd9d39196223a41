//! Environment lifecycle over HTTP: `deploy` (docs/COMPATIBILITY.md#deploy), `teardown`
//! (docs/COMPATIBILITY.md#teardown) and `clean` (docs/COMPATIBILITY.md#clean). A failed
//! deploy prints its warnings and exits non-zero.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use orchestrator_core::api::{
    CleanRequest, CleanResponse, CleanTarget, DeployRequest, DeployResponse, DeployStrategy,
    ServiceTopology, TeardownRequest, TeardownResponse, TopologyNode,
};
use orchestrator_core::events::BackendType;

use super::remote::{ApiArgs, parse_key_value, print_json, read_document};
use super::table::Table;
use crate::client::Reply;

// === deploy ===

/// Arguments of `deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Preset to deploy (`default` or `bannou` resets to the single control-plane node).
    #[arg(required_unless_present = "topology", conflicts_with = "topology")]
    pub preset: Option<String>,
    /// An ad-hoc topology instead of a preset: a YAML or JSON file holding a
    /// `ServiceTopology` (`nodes: [...]`) or a bare list of nodes.
    #[arg(long, value_name = "FILE")]
    pub topology: Option<PathBuf>,
    /// Plan only: no containers, routing or configuration change.
    #[arg(long)]
    pub dry_run: bool,
    /// Backend to deploy with (`compose`, `swarm`, `portainer`, `kubernetes`, `in-process`).
    #[arg(long, value_name = "BACKEND")]
    pub backend: Option<BackendType>,
    /// On a failed wave, only tear the new nodes down instead of redeploying the last
    /// stable configuration (`autoRevert: false`).
    #[arg(long)]
    pub no_revert: bool,
    /// Reject the deploy on pre-flight warnings (`strict: true`).
    #[arg(long)]
    pub strict: bool,
    /// How changed nodes are replaced: `replace` (in place, the default) or `blue-green`
    /// (side by side under new app-ids, one route switch, then the old nodes stop; D62).
    #[arg(long, value_name = "STRATEGY", default_value = "replace")]
    pub strategy: DeployStrategy,
    /// With `--strategy canary` (required there): percent of the changed services' calls
    /// sent to the new nodes, 1-99 (D64).
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(i64).range(1..=99))]
    pub canary_weight: Option<i64>,
    /// With `--strategy canary`: promote the canary by itself once it has been healthy this
    /// long (seconds or a duration such as `5m`).
    #[arg(long, value_name = "DURATION", value_parser = super::canary::promote_after_flag)]
    pub promote_after: Option<std::time::Duration>,
    /// Environment for every node (`KEY=VALUE`, repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub env: Vec<(String, String)>,
    /// Print each wave as it happens (from the event stream, opened before the deploy is
    /// sent); exits non-zero when the deploy fails, as without it.
    #[arg(long)]
    pub follow: bool,
    /// Connection and output options.
    #[command(flatten)]
    pub api: ApiArgs,
}

impl DeployArgs {
    /// The request these arguments describe (reads `--topology`).
    pub fn request(&self) -> anyhow::Result<DeployRequest> {
        let topology = match &self.topology {
            Some(path) => Some(read_topology(path)?),
            None => None,
        };
        Ok(DeployRequest {
            preset: self.preset.clone(),
            topology,
            backend: self.backend,
            environment: (!self.env.is_empty())
                .then(|| self.env.iter().cloned().collect::<BTreeMap<_, _>>()),
            dry_run: self.dry_run,
            strict: self.strict,
            auto_revert: !self.no_revert,
            strategy: self.strategy,
            canary_weight: self.canary_weight,
            canary_promote_after_seconds: self
                .promote_after
                .map(super::canary::promote_after_seconds),
            ..DeployRequest::default()
        })
    }
}

/// A topology file: a `ServiceTopology` object or a bare list of nodes.
fn read_topology(path: &std::path::Path) -> anyhow::Result<ServiceTopology> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Doc {
        Topology(Box<ServiceTopology>),
        Nodes(Vec<TopologyNode>),
    }
    Ok(match read_document::<Doc>(path)? {
        Doc::Topology(t) => *t,
        Doc::Nodes(nodes) => ServiceTopology {
            nodes,
            infrastructure: None,
        },
    })
}

/// Runs `deploy`.
pub async fn run_deploy(args: DeployArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let request = args.request()?;
    let client = args.api.client()?;
    let reply = if args.follow && !args.api.json {
        super::events::follow_deploy(&client, &request, out).await?
    } else {
        client.deploy(&request).await?
    };
    if args.api.json {
        print_json(out, &reply.body)?;
    } else {
        write_deploy(out, &reply, request.preset.as_deref(), request.dry_run)?;
    }
    if !reply.is_success() || !reply.body.success {
        bail!(
            "deploy failed (HTTP {}): {}",
            reply.status,
            reply
                .body
                .warnings
                .as_deref()
                .filter(|w| !w.is_empty())
                .map_or_else(|| "no reason given".to_owned(), |w| w.join("; "))
        );
    }
    Ok(())
}

/// The human form of a deploy answer.
pub fn write_deploy(
    out: &mut dyn Write,
    reply: &Reply<DeployResponse>,
    preset: Option<&str>,
    dry_run: bool,
) -> std::io::Result<()> {
    let resp = &reply.body;
    let what = match resp.preset.as_deref().or(preset) {
        Some(p) => format!("preset `{p}`"),
        None => "topology".to_owned(),
    };
    let verb = match (resp.success && reply.is_success(), dry_run) {
        (true, true) => "Dry run of",
        (true, false) => "Deployed",
        (false, _) => "FAILED to deploy",
    };
    writeln!(
        out,
        "{verb} {what} with {} in {} (deployment {})",
        resp.backend, resp.duration, resp.deployment_id
    )?;
    if let Some(services) = resp.services.as_deref().filter(|s| !s.is_empty()) {
        let mut t = Table::new(["SERVICE", "STATUS", "NODE"]);
        for s in services {
            t.row([s.name.clone(), s.status.to_string(), s.node.clone()]);
        }
        writeln!(out)?;
        t.write(out)?;
    }
    if let Some(switch) = &resp.switched_routes {
        writeln!(out)?;
        let version = switch
            .mappings_version
            .map_or_else(|| "unpublished".to_owned(), |v| format!("v{v}"));
        writeln!(
            out,
            "Routes switched in mappings {version}; consumers followed in {} ms",
            switch.ack_wait_ms
        )?;
        for (old, new) in &switch.replaced {
            writeln!(out, "  {old} -> {new}")?;
        }
    }
    if let Some(canary) = &resp.canary {
        super::canary::write_status(out, canary)?;
    }
    if let Some(warnings) = resp.warnings.as_deref().filter(|w| !w.is_empty()) {
        writeln!(out)?;
        writeln!(out, "Warnings:")?;
        for w in warnings {
            writeln!(out, "  - {w}")?;
        }
    }
    super::status::write_routing_laggards(out, resp.routing_laggards.as_deref())
}

// === teardown ===

/// Arguments of `teardown`.
#[derive(Debug, Args)]
pub struct TeardownArgs {
    /// Only list what would be stopped.
    #[arg(long)]
    pub dry_run: bool,
    /// Also remove the containers' volumes.
    #[arg(long)]
    pub remove_volumes: bool,
    /// Also remove infrastructure containers (Redis, RabbitMQ, MySQL, ...).
    #[arg(long)]
    pub include_infrastructure: bool,
    /// Print the teardown's start and outcome as they happen (from the event stream,
    /// opened before the teardown is sent).
    #[arg(long)]
    pub follow: bool,
    /// Connection and output options.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Runs `teardown`; per-target errors are printed and make the exit code non-zero.
pub async fn run_teardown(args: TeardownArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let request = TeardownRequest {
        dry_run: args.dry_run,
        remove_volumes: args.remove_volumes,
        include_infrastructure: args.include_infrastructure,
        ..TeardownRequest::default()
    };
    let client = args.api.client()?;
    let resp = if args.follow && !args.api.json && !args.dry_run {
        let stream = client.events(Some("deployment,wave"), None, None).await?;
        super::events::follow(stream, client.teardown(&request), out).await?
    } else {
        client.teardown(&request).await?
    };
    if args.api.json {
        print_json(out, &resp)?;
    } else {
        write_teardown(out, &resp, args.dry_run)?;
    }
    match resp.errors.as_deref() {
        Some(errors) if !errors.is_empty() => {
            bail!("teardown finished with {} error(s)", errors.len())
        }
        _ => Ok(()),
    }
}

/// The human form of a teardown answer.
pub fn write_teardown(
    out: &mut dyn Write,
    resp: &TeardownResponse,
    dry_run: bool,
) -> std::io::Result<()> {
    let stopped = resp.stopped_containers.as_deref().unwrap_or_default();
    if dry_run {
        writeln!(out, "Would stop {} container(s):", stopped.len())?;
    } else {
        writeln!(
            out,
            "Stopped {} container(s) in {}",
            stopped.len(),
            resp.duration
        )?;
    }
    let sections: [(&str, &[String]); 5] = [
        ("stopped", stopped),
        (
            "volume",
            resp.removed_volumes.as_deref().unwrap_or_default(),
        ),
        (
            "network",
            resp.removed_networks.as_deref().unwrap_or_default(),
        ),
        (
            "infrastructure",
            resp.removed_infrastructure.as_deref().unwrap_or_default(),
        ),
        ("error", resp.errors.as_deref().unwrap_or_default()),
    ];
    let mut t = Table::new(["KIND", "NAME"]);
    for (kind, items) in sections {
        for item in items {
            t.row([kind, item.as_str()]);
        }
    }
    if !t.is_empty() {
        t.write(out)?;
    }
    super::status::write_routing_laggards(out, resp.routing_laggards.as_deref())
}

// === clean ===

/// Arguments of `clean`.
#[derive(Debug, Args)]
pub struct CleanArgs {
    /// What to remove, comma separated: containers, networks, volumes, images, all.
    #[arg(
        long,
        value_name = "TARGETS",
        value_delimiter = ',',
        default_value = "all"
    )]
    pub targets: Vec<CleanTarget>,
    /// Remove stopped containers even when they are not orphaned.
    #[arg(long)]
    pub force: bool,
    /// Connection and output options.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Runs `clean`.
pub async fn run_clean(args: CleanArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let request = CleanRequest {
        targets: args.targets.clone(),
        force: args.force,
        older_than: None,
        label_filter: None,
    };
    let resp = args.api.client()?.clean(&request).await?;
    if args.api.json {
        print_json(out, &resp)?;
    } else {
        write_clean(out, &resp)?;
    }
    Ok(())
}

/// The human form of a clean answer.
pub fn write_clean(out: &mut dyn Write, resp: &CleanResponse) -> std::io::Result<()> {
    let mut t = Table::new(["REMOVED", "COUNT"]);
    t.row(["containers".to_owned(), resp.removed_containers.to_string()])
        .row(["networks".to_owned(), resp.removed_networks.to_string()])
        .row(["volumes".to_owned(), resp.removed_volumes.to_string()])
        .row(["images".to_owned(), resp.removed_images.to_string()]);
    t.write(out)?;
    writeln!(out, "Reclaimed {} MB", resp.reclaimed_space_mb)?;
    for e in resp.errors.as_deref().unwrap_or_default() {
        writeln!(out, "error: {e}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use orchestrator_core::api::{DeployedService, DeployedServiceStatus};

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("bannou-host").chain(args.iter().copied()))
            .unwrap()
            .command
    }

    #[test]
    fn deploy_parses_into_a_request() {
        let Command::Deploy(a) = parse(&[
            "deploy",
            "game-stack",
            "--dry-run",
            "--backend",
            "in-process",
            "--no-revert",
            "--strict",
            "--env",
            "LOG_LEVEL=debug",
            "--api",
            "http://h:1",
            "--token",
            "t",
            "--json",
        ]) else {
            panic!("not deploy")
        };
        assert_eq!(a.api.api, "http://h:1");
        assert_eq!(a.api.token.as_deref(), Some("t"));
        assert!(a.api.json);
        let req = a.request().unwrap();
        assert_eq!(req.preset.as_deref(), Some("game-stack"));
        assert_eq!(req.backend, Some(BackendType::InProcess));
        assert!(req.dry_run && req.strict && !req.auto_revert);
        assert_eq!(req.strategy, DeployStrategy::Replace);
        assert_eq!(req.environment.unwrap()["LOG_LEVEL"], "debug");
        let Command::Deploy(a) = parse(&["deploy", "p", "--strategy", "blue-green"]) else {
            panic!("not deploy")
        };
        assert_eq!(a.request().unwrap().strategy, DeployStrategy::BlueGreen);
        assert!(Cli::try_parse_from(["bannou-host", "deploy", "p", "--strategy", "x"]).is_err());
    }

    #[test]
    fn deploy_needs_a_preset_or_a_topology_but_not_both() {
        let bare = Cli::try_parse_from(["bannou-host", "deploy"]);
        assert!(bare.is_err());
        let both = Cli::try_parse_from(["bannou-host", "deploy", "p", "--topology", "t.yaml"]);
        assert!(both.is_err());
        let Command::Deploy(a) = parse(&["deploy", "p"]) else {
            panic!()
        };
        assert_eq!(a.api.api, crate::client::DEFAULT_API_URL);
        assert!(a.request().unwrap().auto_revert);
    }

    #[test]
    fn deploy_reads_a_topology_file_in_both_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = dir.path().join("t.yaml");
        std::fs::write(&yaml, "nodes:\n  - name: auth-node\n    services: [auth]\n").unwrap();
        let json = dir.path().join("t.json");
        std::fs::write(
            &json,
            r#"[{"name": "a"}, {"name": "b", "appId": "bannou-b"}]"#,
        )
        .unwrap();
        let Command::Deploy(a) = parse(&["deploy", "--topology", yaml.to_str().unwrap()]) else {
            panic!()
        };
        let t = a.request().unwrap().topology.unwrap();
        assert_eq!(
            t.nodes[0].services.as_deref(),
            Some(&["auth".to_owned()][..])
        );
        let Command::Deploy(a) = parse(&["deploy", "--topology", json.to_str().unwrap()]) else {
            panic!()
        };
        let t = a.request().unwrap().topology.unwrap();
        assert_eq!(t.nodes[1].effective_app_id(), "bannou-b");
    }

    #[test]
    fn teardown_and_clean_parse() {
        let Command::Teardown(a) = parse(&["teardown", "--dry-run", "--include-infrastructure"])
        else {
            panic!()
        };
        assert!(a.dry_run && a.include_infrastructure && !a.remove_volumes);
        let Command::Clean(a) = parse(&["clean"]) else {
            panic!()
        };
        assert_eq!(a.targets, vec![CleanTarget::All]);
        let Command::Clean(a) = parse(&["clean", "--targets", "containers,volumes", "--force"])
        else {
            panic!()
        };
        assert_eq!(
            a.targets,
            vec![CleanTarget::Containers, CleanTarget::Volumes]
        );
        assert!(a.force);
    }

    fn deploy_response(success: bool) -> DeployResponse {
        DeployResponse {
            success,
            deployment_id: "d-1".into(),
            backend: BackendType::Compose,
            preset: None,
            duration: "12.3s".into(),
            topology: None,
            services: Some(vec![DeployedService {
                name: "bannou-auth".into(),
                status: DeployedServiceStatus::Running,
                node: "host-1".into(),
                container_id: None,
                pod_name: None,
                endpoints: None,
            }]),
            warnings: (!success).then(|| vec!["auth-node: image not found".to_owned()]),
            routing_laggards: None,
            switched_routes: None,
            canary: None,
        }
    }

    #[test]
    fn deploy_text_shows_services_and_a_failures_warnings() {
        let mut buf = Vec::new();
        let ok = Reply {
            status: 200,
            body: deploy_response(true),
        };
        write_deploy(&mut buf, &ok, Some("game-stack"), false).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(text.starts_with("Deployed preset `game-stack` with Compose in 12.3s"));
        assert!(text.contains("bannou-auth  Running  host-1"), "{text}");

        let mut buf = Vec::new();
        let failed = Reply {
            status: 500,
            body: deploy_response(false),
        };
        write_deploy(&mut buf, &failed, None, false).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(text.starts_with("FAILED to deploy topology"), "{text}");
        assert!(text.contains("Warnings:\n  - auth-node: image not found"));
    }

    #[test]
    fn teardown_text_lists_everything_removed() {
        let resp = TeardownResponse {
            duration: "3.1s".into(),
            stopped_containers: Some(vec!["c1".into()]),
            removed_volumes: Some(vec![]),
            removed_networks: None,
            removed_infrastructure: Some(vec!["redis".into()]),
            errors: Some(vec!["x: boom".into()]),
            routing_laggards: None,
        };
        let mut buf = Vec::new();
        write_teardown(&mut buf, &resp, false).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(text.starts_with("Stopped 1 container(s) in 3.1s"));
        for needle in [
            "stopped         c1",
            "infrastructure  redis",
            "error           x: boom",
        ] {
            assert!(text.contains(needle), "{needle} in {text}");
        }
        let mut buf = Vec::new();
        write_clean(
            &mut buf,
            &CleanResponse {
                removed_containers: 2,
                reclaimed_space_mb: 10,
                ..CleanResponse::default()
            },
        )
        .unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(text.contains("containers  2") && text.contains("Reclaimed 10 MB"));
    }
}
