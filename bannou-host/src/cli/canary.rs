//! Canary deploys over HTTP (D64 (docs/DECISIONS.md#d64)): `deploy --strategy canary
//! --canary-weight N [--promote-after DURATION]` starts one (the flags are parsed here),
//! `promote` and `abort` end it (docs/COMPATIBILITY.md#promote-and-abort-a-canary).

use std::io::Write;
use std::time::Duration;

use clap::Args;
use orchestrator_core::api::{
    CanaryActionRequest, CanaryActionResponse, CanaryOutcome, CanaryStatus,
};

use super::remote::{ApiArgs, print_json};
use crate::config::vars::DurationSetting;

/// `--promote-after`: seconds or a duration such as `5m`, read as the duration settings
/// are (`crate::config::vars`), at least one second.
const PROMOTE_AFTER: DurationSetting = DurationSetting {
    name: "--promote-after",
    default: Duration::ZERO,
    unit: Duration::from_secs(1),
    min: Duration::from_secs(1),
    max: None,
};

/// Parses `--promote-after`, the error naming the flag.
pub fn promote_after_flag(value: &str) -> Result<Duration, String> {
    PROMOTE_AFTER
        .parse_as(PROMOTE_AFTER.name, value)
        .map_err(|e| e.to_string())
}

/// `canaryPromoteAfterSeconds` of a `--promote-after` duration (a part second counts as
/// a whole one).
pub fn promote_after_seconds(d: Duration) -> i64 {
    let whole = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i64::try_from(whole).unwrap_or(i64::MAX)
}

/// Arguments of `promote` and `abort`.
#[derive(Debug, Args)]
pub struct CanaryArgs {
    /// Only end the canary of this deploy (the `deploymentId` the deploy answered).
    #[arg(long, value_name = "ID")]
    pub deployment: Option<String>,
    /// Connection and output options.
    #[command(flatten)]
    pub api: ApiArgs,
}

impl CanaryArgs {
    fn request(&self) -> CanaryActionRequest {
        CanaryActionRequest {
            deployment_id: self.deployment.clone(),
        }
    }
}

/// Runs `promote`.
pub async fn run_promote(args: CanaryArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let answer = args.api.client()?.promote(&args.request()).await?;
    write_answer(out, &answer, args.api.json)
}

/// Runs `abort`.
pub async fn run_abort(args: CanaryArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let answer = args.api.client()?.abort(&args.request()).await?;
    write_answer(out, &answer, args.api.json)
}

fn write_answer(
    out: &mut dyn Write,
    answer: &CanaryActionResponse,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        print_json(out, answer)
    } else {
        write_action(out, answer)?;
        Ok(())
    }
}

/// The human form of a promote or abort answer.
pub fn write_action(out: &mut dyn Write, answer: &CanaryActionResponse) -> std::io::Result<()> {
    let verb = match answer.outcome {
        CanaryOutcome::Promoted => "Promoted",
        CanaryOutcome::Aborted => "Aborted",
    };
    let version = answer.mappings_version.map_or_else(
        || "unpublished mappings".to_owned(),
        |v| format!("mappings v{v}"),
    );
    writeln!(
        out,
        "{verb} canary {} in {} ({version}); stopped: {}",
        answer.deployment_id,
        answer.duration,
        if answer.stopped_nodes.is_empty() {
            "none".to_owned()
        } else {
            answer.stopped_nodes.join(", ")
        }
    )?;
    if let Some(warnings) = answer.warnings.as_deref().filter(|w| !w.is_empty()) {
        writeln!(out, "Warnings:")?;
        for w in warnings {
            writeln!(out, "  - {w}")?;
        }
    }
    super::status::write_routing_laggards(out, answer.routing_laggards.as_deref())
}

/// The canary part of a deploy answer.
pub fn write_status(out: &mut dyn Write, canary: &CanaryStatus) -> std::io::Result<()> {
    writeln!(out)?;
    writeln!(
        out,
        "Canary running: {}% of the calls of {} go to {} (old: {})",
        canary.weight,
        canary.services_text(),
        canary.new_nodes.join(", "),
        canary.old_nodes.join(", ")
    )?;
    match canary.promote_after_seconds {
        Some(s) => writeln!(
            out,
            "Promoted by itself after {s} s healthy; `bannou-host promote` or `bannou-host abort` ends it sooner"
        ),
        None => writeln!(
            out,
            "End it with `bannou-host promote` or `bannou-host abort`"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use orchestrator_core::api::DeployStrategy;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("bannou-host").chain(args.iter().copied()))
            .map(|c| c.command)
    }

    #[test]
    fn deploy_takes_a_canary_weight_and_a_promotion_delay() {
        let Ok(Command::Deploy(a)) = parse(&[
            "deploy",
            "p",
            "--strategy",
            "canary",
            "--canary-weight",
            "10",
            "--promote-after",
            "5m",
        ]) else {
            panic!("not deploy")
        };
        let req = a.request().unwrap();
        assert_eq!(req.strategy, DeployStrategy::Canary);
        assert_eq!(req.canary_weight, Some(10));
        assert_eq!(req.canary_promote_after_seconds, Some(300));
        let Ok(Command::Deploy(a)) = parse(&["deploy", "p", "--promote-after", "90"]) else {
            panic!("not deploy")
        };
        assert_eq!(a.request().unwrap().canary_promote_after_seconds, Some(90));
        let err = parse(&["deploy", "p", "--promote-after", "soon"]).unwrap_err();
        assert!(err.to_string().contains("--promote-after"), "{err}");
        assert!(parse(&["deploy", "p", "--canary-weight", "100"]).is_err());
        assert!(parse(&["deploy", "p", "--canary-weight", "0"]).is_err());
    }

    #[test]
    fn promote_and_abort_may_name_the_deploy() {
        let Ok(Command::Promote(a)) = parse(&["promote", "--deployment", "d1"]) else {
            panic!("not promote")
        };
        assert_eq!(a.request().deployment_id.as_deref(), Some("d1"));
        let Ok(Command::Abort(a)) = parse(&["abort"]) else {
            panic!("not abort")
        };
        assert_eq!(a.request().deployment_id, None);
    }

    #[test]
    fn the_answers_print_what_moved_and_what_stopped() {
        let mut out = Vec::new();
        write_action(
            &mut out,
            &CanaryActionResponse {
                deployment_id: "d1".into(),
                outcome: CanaryOutcome::Aborted,
                reason: "requested".into(),
                duration: "0.2s".into(),
                stopped_nodes: vec!["auth-green".into()],
                mappings_version: Some(4),
                routing_laggards: None,
                warnings: None,
            },
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("Aborted canary d1 in 0.2s (mappings v4); stopped: auth-green"),
            "{text}"
        );
        let mut out = Vec::new();
        write_status(
            &mut out,
            &CanaryStatus {
                deployment_id: "d1".into(),
                weight: 10,
                services: vec!["auth".into()],
                new_nodes: vec!["auth-green".into()],
                old_nodes: vec!["auth".into()],
                mappings_version: Some(3),
                promote_after_seconds: None,
            },
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("10% of the calls of auth go to auth-green (old: auth)"),
            "{text}"
        );
    }
}
