//! Live topology changes over HTTP: `topology FILE` (docs/COMPATIBILITY.md#topology and
//! docs/COMPATIBILITY.md#topology-updates). The file holds a `TopologyUpdateRequest`
//! (`changes: [...]`) or a bare list of changes, in YAML or JSON.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::bail;
use clap::Args;
use orchestrator_core::api::{
    DeploymentMode, TopologyChange, TopologyUpdateRequest, TopologyUpdateResponse,
};

use super::remote::{ApiArgs, or_dash, print_json, read_document};
use super::table::Table;

/// Arguments of `topology`.
#[derive(Debug, Args)]
pub struct TopologyArgs {
    /// YAML or JSON file of changes (`changes: [{action: add-node, ...}]` or a bare list).
    pub file: PathBuf,
    /// Print each change as it is applied, and the update's outcome (from the event stream,
    /// opened before the update is sent).
    #[arg(long)]
    pub follow: bool,
    /// Connection and output options.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Reads a changes file in either shape.
pub fn read_changes(path: &Path) -> anyhow::Result<TopologyUpdateRequest> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Doc {
        Request(TopologyUpdateRequest),
        Changes(Vec<TopologyChange>),
    }
    Ok(match read_document::<Doc>(path)? {
        Doc::Request(r) => r,
        Doc::Changes(changes) => TopologyUpdateRequest {
            changes,
            mode: DeploymentMode::Graceful,
            timeout: 120,
        },
    })
}

/// Runs `topology`; any failed change makes the exit code non-zero.
pub async fn run(args: TopologyArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let request = read_changes(&args.file)?;
    let client = args.api.client()?;
    let resp = if args.follow && !args.api.json {
        let stream = client.events(Some("deployment,wave"), None, None).await?;
        super::events::follow(stream, client.update_topology(&request), out).await?
    } else {
        client.update_topology(&request).await?
    };
    if args.api.json {
        print_json(out, &resp)?;
    } else {
        write_topology(out, &resp)?;
    }
    let failed = resp.applied_changes.iter().filter(|c| !c.success).count();
    if failed > 0 {
        bail!(
            "{failed} of {} topology change(s) failed",
            resp.applied_changes.len()
        );
    }
    Ok(())
}

/// The human form of a topology update.
pub fn write_topology(out: &mut dyn Write, resp: &TopologyUpdateResponse) -> std::io::Result<()> {
    let mut t = Table::new(["ACTION", "TARGET", "RESULT"]);
    for c in &resp.applied_changes {
        let result = if c.success {
            "ok".to_owned()
        } else {
            format!("failed: {}", c.error.as_deref().unwrap_or("?"))
        };
        t.row([c.action.to_string(), or_dash(c.target.as_deref()), result]);
    }
    t.write(out)?;
    if let Some(d) = &resp.duration {
        writeln!(out, "Took {d}")?;
    }
    for w in resp.warnings.as_deref().unwrap_or_default() {
        writeln!(out, "warning: {w}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use orchestrator_core::api::{AppliedChange, TopologyChangeAction};

    #[test]
    fn changes_file_in_both_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let full = dir.path().join("c.yaml");
        std::fs::write(
            &full,
            "changes:\n  - action: scale\n    services: [auth]\n    replicas: 2\ntimeout: 30\n",
        )
        .unwrap();
        let bare = dir.path().join("c.json");
        std::fs::write(
            &bare,
            r#"[{"action": "move-service", "nodeName": "n", "services": ["a"]}]"#,
        )
        .unwrap();
        let cli = Cli::try_parse_from(["bannou-host", "topology", full.to_str().unwrap()]).unwrap();
        let Command::Topology(a) = cli.command else {
            panic!()
        };
        let req = read_changes(&a.file).unwrap();
        assert_eq!(req.changes[0].action, TopologyChangeAction::Scale);
        assert_eq!(req.timeout, 30);
        let req = read_changes(&bare).unwrap();
        assert_eq!(req.changes[0].action, TopologyChangeAction::MoveService);
        assert_eq!(req.timeout, 120);
        assert!(Cli::try_parse_from(["bannou-host", "topology"]).is_err());
    }

    #[test]
    fn results_render_per_change() {
        let resp = TopologyUpdateResponse {
            applied_changes: vec![
                AppliedChange {
                    success: true,
                    action: TopologyChangeAction::Scale,
                    target: Some("auth".into()),
                    error: None,
                },
                AppliedChange {
                    success: false,
                    action: TopologyChangeAction::RemoveNode,
                    target: Some("a,b".into()),
                    error: Some("All 2 teardowns failed".into()),
                },
            ],
            topology: None,
            duration: Some("0.4s".into()),
            warnings: Some(vec![]),
            routing_laggards: None,
        };
        let mut buf = Vec::new();
        write_topology(&mut buf, &resp).unwrap();
        let t = String::from_utf8(buf).unwrap();
        assert!(t.contains("Scale       auth    ok"), "{t}");
        assert!(
            t.contains("RemoveNode  a,b     failed: All 2 teardowns failed"),
            "{t}"
        );
    }
}
