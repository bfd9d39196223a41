//! Configuration versions over HTTP: `rollback` (docs/COMPATIBILITY.md#config-rollback) and
//! `config-version` (docs/COMPATIBILITY.md#config-version).

use std::io::Write;

use clap::Args;
use orchestrator_core::api::{
    ConfigRollbackRequest, ConfigRollbackResponse, ConfigVersionResponse, GetConfigVersionRequest,
};

use super::remote::{ApiArgs, list_or_dash, print_json, write_fields};

/// Arguments of `rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Version to return to (default: the one before the current).
    #[arg(long = "to", value_name = "VERSION")]
    pub to: Option<i64>,
    /// Why (kept for the audit trail).
    #[arg(long)]
    pub reason: String,
    /// Print each wave of the redeploy as it happens (from the event stream, opened
    /// before the rollback is sent).
    #[arg(long)]
    pub follow: bool,
    /// Connection and output options.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Runs `rollback`.
pub async fn run_rollback(args: RollbackArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let request = ConfigRollbackRequest {
        reason: args.reason.clone(),
        target_version: args.to,
    };
    let client = args.api.client()?;
    let resp = if args.follow && !args.api.json {
        let stream = client.events(Some("deployment,wave"), None, None).await?;
        super::events::follow(stream, client.rollback_config(&request), out).await?
    } else {
        client.rollback_config(&request).await?
    };
    if args.api.json {
        print_json(out, &resp)
    } else {
        Ok(write_rollback(out, &resp)?)
    }
}

/// The human form of a rollback.
pub fn write_rollback(out: &mut dyn Write, resp: &ConfigRollbackResponse) -> std::io::Result<()> {
    writeln!(
        out,
        "Rolled back: version {} -> {}",
        resp.previous_version, resp.current_version
    )?;
    writeln!(
        out,
        "Changed keys: {}",
        list_or_dash(resp.changed_keys.as_deref().unwrap_or_default())
    )
}

/// Arguments of `config-version`.
#[derive(Debug, Args)]
pub struct ConfigVersionArgs {
    /// Connection and output options.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Runs `config-version`.
pub async fn run_config_version(
    args: ConfigVersionArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let resp = args
        .api
        .client()?
        .config_version(&GetConfigVersionRequest::default())
        .await?;
    if args.api.json {
        print_json(out, &resp)
    } else {
        Ok(write_config_version(out, &resp)?)
    }
}

/// The human form of the configuration version.
pub fn write_config_version(
    out: &mut dyn Write,
    resp: &ConfigVersionResponse,
) -> std::io::Result<()> {
    write_fields(
        out,
        &[
            ("version", resp.version.to_string()),
            ("saved", resp.timestamp.to_string()),
            (
                "previous",
                if resp.has_previous_config {
                    "yes"
                } else {
                    "no"
                }
                .to_owned(),
            ),
            ("keys", resp.key_count.to_string()),
            (
                "prefixes",
                list_or_dash(resp.key_prefixes.as_deref().unwrap_or_default()),
            ),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use orchestrator_core::Timestamp;

    #[test]
    fn rollback_needs_a_reason() {
        assert!(Cli::try_parse_from(["bannou-host", "rollback"]).is_err());
        let cli = Cli::try_parse_from([
            "bannou-host",
            "rollback",
            "--to",
            "3",
            "--reason",
            "bad jwt",
        ])
        .unwrap();
        let Command::Rollback(a) = cli.command else {
            panic!()
        };
        assert_eq!((a.to, a.reason.as_str()), (Some(3), "bad jwt"));
        let cli = Cli::try_parse_from(["bannou-host", "config-version", "--json"]).unwrap();
        assert!(matches!(cli.command, Command::ConfigVersion(a) if a.api.json));
    }

    #[test]
    fn version_and_rollback_render() {
        let mut buf = Vec::new();
        write_config_version(
            &mut buf,
            &ConfigVersionResponse {
                version: 4,
                timestamp: Timestamp::UNIX_EPOCH,
                has_previous_config: true,
                key_count: 3,
                key_prefixes: Some(vec!["services".into(), "env".into()]),
            },
        )
        .unwrap();
        write_rollback(
            &mut buf,
            &ConfigRollbackResponse {
                previous_version: 4,
                current_version: 5,
                changed_keys: None,
                routing_laggards: None,
            },
        )
        .unwrap();
        let t = String::from_utf8(buf).unwrap();
        assert!(
            t.contains("version:  4") && t.contains("prefixes: services, env"),
            "{t}"
        );
        assert!(
            t.contains("Rolled back: version 4 -> 5\nChanged keys: -"),
            "{t}"
        );
    }
}
