//! `bannou-host plan PRESET`: parse, validate, resolve and plan a preset, then print the
//! nodes with their environments, the pools and the waves. Touches nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use orchestrator_core::planner::{self, Plan, PlanIssue, PlanOptions};
use orchestrator_core::preset::{ParsedPreset, PresetLibrary};
use orchestrator_core::resolver::{Resolved, ResolvedPool};
use orchestrator_core::{Catalog, ResolvedNode};
use serde::Serialize;

use super::Format;

/// Arguments of `plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// A preset file (`path/to/x.yaml`) or a preset name looked up in the presets directory.
    pub preset: String,
    /// The current deployment: a JSON file with a `nodes` array (for example the output of
    /// an earlier `plan --format json`) or a bare array of nodes. Default: nothing deployed.
    #[arg(long, value_name = "FILE")]
    pub current: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Directory of presets looked up by name (default: `ORCHESTRATOR_PRESETS_HOST_PATH`,
    /// else `presets/`).
    #[arg(long, value_name = "DIR")]
    pub presets: Option<PathBuf>,
    /// Reject the plan instead of disabling layers whose prerequisites are off.
    #[arg(long)]
    pub strict: bool,
    /// Extra environment for every node (`KEY=VALUE`, repeatable), like a deploy request's
    /// `environment`.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub env: Vec<(String, String)>,
    /// Services the control plane runs itself, comma separated (default: all of them).
    #[arg(long, value_name = "SERVICES", value_delimiter = ',')]
    pub control_plane_services: Option<Vec<String>>,
    /// Print environment values whose names look secret (`*SECRET*`, `*PASSWORD*`, ...)
    /// instead of masking them in text output.
    #[arg(long)]
    pub show_secrets: bool,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got `{s}`")),
    }
}

/// The JSON form: everything a reviewer or a later `--current` needs.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PlanReport<'a> {
    preset: &'a str,
    source: String,
    nodes: &'a [ResolvedNode],
    pools: &'a [ResolvedPool],
    waves: &'a [planner::Wave],
    routing: &'a BTreeMap<String, orchestrator_core::AppId>,
    unchanged: &'a [orchestrator_core::AppId],
    warnings: Vec<String>,
}

/// Runs `plan`, writing the result to `out`. Invalid input is an error naming every
/// problem; nothing is printed to `out` then.
pub fn run(args: PlanArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let catalog = Catalog::builtin();
    let (parsed, source) = load_preset(&args.preset, args.presets.clone())?;
    let orchestrator_env: BTreeMap<String, String> = std::env::vars().collect();
    let request_env: BTreeMap<String, String> = args.env.iter().cloned().collect();
    let resolved = Resolved::from_preset(&parsed, &orchestrator_env, &request_env, catalog)
        .with_context(|| format!("resolving preset `{}`", parsed.preset.name))?;

    let current = match &args.current {
        Some(path) => read_current(path)?,
        None => Vec::new(),
    };
    let options = PlanOptions {
        control_plane_services: args
            .control_plane_services
            .as_ref()
            .map(|list| canonical_services(list, catalog))
            .transpose()?,
        strict: args.strict,
    };
    let plan = planner::plan(&current, &resolved.nodes, catalog, &options)
        .map_err(|rejected| anyhow::anyhow!("{rejected}"))
        .with_context(|| format!("planning preset `{}` ({source})", parsed.preset.name))?;

    let warnings: Vec<String> = parsed
        .warnings
        .iter()
        .map(ToString::to_string)
        .chain(plan.warnings.iter().map(PlanIssue::to_string))
        .collect();
    match args.format {
        Format::Json => {
            let report = PlanReport {
                preset: &parsed.preset.name,
                source,
                nodes: &plan.nodes,
                pools: &resolved.pools,
                waves: &plan.waves,
                routing: &plan.routing,
                unchanged: &plan.unchanged,
                warnings,
            };
            serde_json::to_writer_pretty(&mut *out, &report)?;
            writeln!(out)?;
        }
        Format::Text => write_text(
            out,
            &parsed,
            &source,
            &resolved.pools,
            &plan,
            &warnings,
            args.show_secrets,
        )?,
    }
    Ok(())
}

/// A path (anything with a separator or a YAML extension) is read directly; otherwise the
/// name is looked up in the presets directory.
pub(crate) fn load_preset(
    arg: &str,
    presets: Option<PathBuf>,
) -> anyhow::Result<(ParsedPreset, String)> {
    let looks_like_path =
        arg.contains('/') || arg.contains('\\') || arg.ends_with(".yaml") || arg.ends_with(".yml");
    if looks_like_path {
        let path = Path::new(arg);
        let dir = path.parent().unwrap_or(Path::new("."));
        let parsed = PresetLibrary::new(dir).load_path(path)?;
        Ok((parsed, path.display().to_string()))
    } else {
        let dir = super::presets_dir(presets);
        let parsed = PresetLibrary::new(&dir).load(arg)?;
        Ok((
            parsed,
            dir.join(format!("{arg}.yaml")).display().to_string(),
        ))
    }
}

fn read_current(path: &Path) -> anyhow::Result<Vec<ResolvedNode>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading --current {}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("--current {} is not JSON", path.display()))?;
    let nodes = match value {
        serde_json::Value::Object(mut o) => o
            .remove("nodes")
            .unwrap_or(serde_json::Value::Array(Vec::new())),
        other => other,
    };
    serde_json::from_value(nodes).with_context(|| {
        format!(
            "--current {}: expected a `nodes` array of resolved nodes",
            path.display()
        )
    })
}

fn canonical_services(list: &[String], catalog: &Catalog) -> anyhow::Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    let mut unknown = Vec::new();
    for name in list.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        match catalog.get(name) {
            Ok(def) => {
                out.insert(def.name.clone());
            }
            Err(e) => unknown.push(e.to_string()),
        }
    }
    if !unknown.is_empty() {
        bail!("--control-plane-services: {}", unknown.join("; "));
    }
    Ok(out)
}

fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_uppercase();
    [
        "SECRET",
        "PASSWORD",
        "TOKEN",
        "API_KEY",
        "PRIVATE_KEY",
        "CREDENTIAL",
    ]
    .iter()
    .any(|m| k.contains(m))
}

fn write_text(
    out: &mut dyn Write,
    parsed: &ParsedPreset,
    source: &str,
    pools: &[ResolvedPool],
    plan: &Plan,
    warnings: &[String],
    show_secrets: bool,
) -> anyhow::Result<()> {
    let p = &parsed.preset;
    let category = p
        .category
        .as_deref()
        .map(|c| format!(" [{c}]"))
        .unwrap_or_default();
    writeln!(out, "Preset {}{category} from {source}", p.name)?;
    if let Some(d) = &p.description {
        writeln!(out, "  {d}")?;
    }
    writeln!(out)?;
    writeln!(out, "Nodes ({}):", plan.nodes.len())?;
    for n in &plan.nodes {
        let replicas = if n.replicas == 1 {
            String::new()
        } else {
            format!(", {} replicas", n.replicas)
        };
        writeln!(out, "  {} (app-id {}{replicas})", n.name, n.app_id)?;
        let routes = if n.routed_services.is_empty() {
            "-".to_owned()
        } else {
            n.routed_services.join(", ")
        };
        writeln!(out, "    routes:  {routes}")?;
        writeln!(
            out,
            "    hosts:   {} ({} services)",
            n.services.join(", "),
            n.services.len()
        )?;
        writeln!(out, "    env:")?;
        for (k, v) in &n.environment {
            let v = if !show_secrets && is_secret(k) {
                "******"
            } else {
                v.as_str()
            };
            writeln!(out, "      {k}={v}")?;
        }
    }
    if !pools.is_empty() {
        writeln!(out)?;
        writeln!(out, "Pools ({}):", pools.len())?;
        for pool in pools {
            writeln!(
                out,
                "  {:<24} plugin {:<10} {}..{} workers, scale down < {} / up > {}, idle {} min{}",
                pool.pool_type,
                if pool.plugin.is_empty() {
                    "-"
                } else {
                    &pool.plugin
                },
                pool.min_instances,
                pool.max_instances,
                pool.scale_down_threshold,
                pool.scale_up_threshold,
                pool.idle_timeout_minutes,
                pool.image
                    .as_deref()
                    .map(|i| format!(", image {i}"))
                    .unwrap_or_default(),
            )?;
        }
    }
    writeln!(out)?;
    // The plan's own Display lists its warnings; preset warnings come first here.
    let plan_text = plan.to_string();
    write!(out, "{plan_text}")?;
    for w in warnings.iter().take(parsed.warnings.len()) {
        writeln!(out, "{w}")?;
    }
    Ok(())
}
