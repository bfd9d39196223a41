//! `bannou-host k8s manifests PRESET`: the Kubernetes objects a deploy of the preset on the
//! Kubernetes backend would create (a Deployment and a Service per node), printed as
//! multi-document YAML for review or GitOps. Touches nothing.
//!
//! Same code path as the backend: the preset is resolved and planned as `plan` does, each
//! node becomes the `NodeDeployment` the deploy executor builds, and the objects come from
//! `orchestrator_backends::containers::kubernetes::manifest::node_objects`, which the
//! backend server-side applies.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use orchestrator_backends::containers::kubernetes::KubernetesConfig;
use orchestrator_backends::containers::kubernetes::manifest::{node_objects, render_yaml};
use orchestrator_core::planner::{self, PlanOptions};
use orchestrator_core::ports::backend::NodeDeployment;
use orchestrator_core::resolver::Resolved;
use orchestrator_core::{Catalog, ResolvedNode};

use crate::config::HostConfig;

/// Arguments of `k8s`.
#[derive(Debug, Args)]
pub struct K8sArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: K8sCommand,
}

/// Subcommands of `k8s`.
#[derive(Debug, Subcommand)]
pub enum K8sCommand {
    /// Print the Deployments and Services a deploy of PRESET would apply, as YAML.
    Manifests(ManifestsArgs),
}

/// Arguments of `k8s manifests`.
#[derive(Debug, Args)]
pub struct ManifestsArgs {
    /// A preset file (`path/to/x.yaml`) or a preset name looked up in the presets directory.
    pub preset: String,
    /// Namespace of the objects (default: `ORCHESTRATOR_KUBERNETES_NAMESPACE`, as `serve`
    /// reads it).
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Image of every node (default: `ORCHESTRATOR_DOCKER_IMAGE_NAME`).
    #[arg(long, value_name = "IMG")]
    pub image: Option<String>,
    /// Port nodes listen on, container port and Service port (default:
    /// `ORCHESTRATOR_DEFAULT_SERVICE_PORT`).
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Directory of presets looked up by name (default: `ORCHESTRATOR_PRESETS_HOST_PATH`
    /// as `serve` reads it, else `presets/`).
    #[arg(long, value_name = "DIR")]
    pub presets: Option<PathBuf>,
    /// Extra environment for every node (`KEY=VALUE`, repeatable), like a deploy request's
    /// `environment`.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub env: Vec<(String, String)>,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got `{s}`")),
    }
}

/// Runs `k8s`, writing to `out`.
pub fn run(args: K8sArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    match args.command {
        K8sCommand::Manifests(a) => manifests(a, out),
    }
}

/// What the objects are built with: the flags over the host configuration `serve` reads
/// (its namespace, node image and service port; the same variables and defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestSettings {
    /// Namespace of the objects.
    pub namespace: String,
    /// Image of every node.
    pub image: String,
    /// Container and Service port.
    pub port: u16,
}

impl ManifestsArgs {
    /// These flags over `config`.
    pub fn settings(&self, config: &HostConfig) -> ManifestSettings {
        ManifestSettings {
            namespace: self
                .namespace
                .clone()
                .unwrap_or_else(|| config.kubernetes_namespace.clone()),
            image: self
                .image
                .clone()
                .unwrap_or_else(|| config.docker_image_name.clone()),
            port: self.port.unwrap_or(config.default_service_port),
        }
    }
}

/// What the deploy executor asks the backend to start for `node` (one replica, the node
/// name as service name, the resolved environment; as `waves.rs` builds it).
fn node_deployment(node: &ResolvedNode, image: &str) -> NodeDeployment {
    let mut d = NodeDeployment::new(node.app_id.clone(), node.name.clone(), image);
    d.environment = node.environment.clone();
    d
}

/// Runs `k8s manifests`: resolves and plans the preset (as a deploy from nothing would),
/// then prints every node's objects. Invalid input is an error; nothing is printed then.
pub fn manifests(args: ManifestsArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let host = HostConfig::from_process_env().context("reading the configuration")?;
    let settings = args.settings(&host);
    let catalog = Catalog::builtin();
    let presets = args
        .presets
        .clone()
        .unwrap_or_else(|| host.presets_host_path.clone());
    let (parsed, source) = super::plan::load_preset(&args.preset, Some(presets))?;
    let orchestrator_env = host.host_environment;
    let request_env: BTreeMap<String, String> = args.env.iter().cloned().collect();
    let resolved = Resolved::from_preset(&parsed, &orchestrator_env, &request_env, catalog)
        .with_context(|| format!("resolving preset `{}`", parsed.preset.name))?;
    let plan = planner::plan(&[], &resolved.nodes, catalog, &PlanOptions::default())
        .map_err(|rejected| anyhow::anyhow!("{rejected}"))
        .with_context(|| format!("planning preset `{}` ({source})", parsed.preset.name))?;

    let config = KubernetesConfig {
        namespace: settings.namespace.clone(),
        node_port: settings.port,
        ..KubernetesConfig::default()
    };
    let objects = plan
        .nodes
        .iter()
        .map(|n| node_objects(&node_deployment(n, &settings.image), &config))
        .collect::<Result<Vec<_>, _>>()?;
    let yaml = render_yaml(&objects).context("rendering the objects as YAML")?;
    writeln!(
        out,
        "# Kubernetes objects of preset `{}` ({source}): {} node(s) in namespace `{}`.",
        parsed.preset.name,
        plan.nodes.len(),
        settings.namespace
    )?;
    writeln!(
        out,
        "# Generated by `bannou-host k8s manifests`; the orchestrator applies the same objects \
         (server-side apply, field manager `{}`).",
        config.field_manager
    )?;
    if !resolved.pools.is_empty() {
        writeln!(
            out,
            "# Processing-pool workers ({} pool(s)) are started by the orchestrator at run time \
             and are not listed.",
            resolved.pools.len()
        )?;
    }
    out.write_all(yaml.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use orchestrator_core::preset::PresetLibrary;
    use serde_json::Value;
    use std::path::Path;

    fn presets() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../presets")
    }

    fn manifests_of(preset: &str, extra: &[&str]) -> String {
        let mut argv = vec!["bannou-host", "k8s", "manifests", preset, "--presets"];
        let dir = presets();
        argv.push(dir.to_str().unwrap());
        argv.extend_from_slice(extra);
        let cli = crate::cli::Cli::try_parse_from(argv).unwrap();
        let crate::cli::Command::K8s(args) = cli.command else {
            panic!("not the k8s command")
        };
        let mut out = Vec::new();
        run(args, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_preset_prints_a_deployment_and_a_service_per_node() {
        let mut names: Vec<String> = std::fs::read_dir(presets())
            .unwrap()
            .filter_map(|e| {
                let p = e.unwrap().path();
                (p.extension()? == "yaml").then(|| p.file_stem()?.to_str().map(str::to_owned))?
            })
            .collect();
        names.sort();
        assert!(!names.is_empty());
        for name in names {
            let yaml = manifests_of(&name, &["--namespace", "games", "--image", "reg/bannou:1"]);
            let docs: Vec<Value> = serde_saphyr::from_multiple(&yaml)
                .unwrap_or_else(|e| panic!("{name}: not YAML: {e}\n{yaml}"));

            let parsed = PresetLibrary::new(presets()).load(&name).unwrap();
            let resolved = Resolved::from_preset(
                &parsed,
                &BTreeMap::new(),
                &BTreeMap::new(),
                Catalog::builtin(),
            )
            .unwrap();
            let plan = planner::plan(
                &[],
                &resolved.nodes,
                Catalog::builtin(),
                &PlanOptions::default(),
            )
            .unwrap();
            assert_eq!(docs.len(), 2 * plan.nodes.len(), "{name}");
            for n in &plan.nodes {
                let deployment_name = format!("bannou-{}-{}", n.name, n.app_id);
                let d = docs
                    .iter()
                    .find(|d| {
                        d["kind"] == "Deployment" && d["metadata"]["name"] == *deployment_name
                    })
                    .unwrap_or_else(|| panic!("{name}: no Deployment {deployment_name}"));
                assert_eq!(d["apiVersion"], "apps/v1");
                assert_eq!(d["metadata"]["namespace"], "games");
                assert_eq!(
                    d["metadata"]["labels"]["app.kubernetes.io/managed-by"],
                    "bannou-orchestrator"
                );
                assert_eq!(d["metadata"]["labels"]["bannou.app-id"], n.app_id.as_str());
                let c = &d["spec"]["template"]["spec"]["containers"][0];
                assert_eq!(c["image"], "reg/bannou:1");
                for e in c["env"].as_array().unwrap() {
                    assert!(
                        e["value"].is_string(),
                        "{name}: env values stay strings in YAML: {e}"
                    );
                }
                let s = docs
                    .iter()
                    .find(|d| d["kind"] == "Service" && d["metadata"]["name"] == n.app_id.as_str())
                    .unwrap_or_else(|| panic!("{name}: no Service {}", n.app_id));
                assert_eq!(s["apiVersion"], "v1");
                assert_eq!(s["spec"]["selector"]["bannou.app-id"], n.app_id.as_str());
            }
        }
    }

    fn parsed(argv: &[&str]) -> crate::cli::Command {
        let mut full = vec!["bannou-host"];
        full.extend_from_slice(argv);
        crate::cli::Cli::try_parse_from(full).unwrap().command
    }

    #[test]
    fn serve_up_and_manifests_take_the_same_defaults_and_variables() {
        use crate::cli::Command;
        use crate::config::vars;
        let unset: &[(&str, &str)] = &[];
        let set: &[(&str, &str)] = &[
            (vars::KUBERNETES_NAMESPACE.name, "games"),
            (vars::DOCKER_IMAGE_NAME.name, "reg/bannou:2"),
            (vars::DEFAULT_SERVICE_PORT.name, "8081"),
            (vars::WAVE_TIMEOUT.name, "3m"),
        ];
        for env in [unset, set] {
            let read = || {
                HostConfig::from_env(|n| {
                    env.iter()
                        .find(|(k, _)| *k == n)
                        .map(|(_, v)| v.to_string())
                })
                .unwrap()
            };
            let Command::Serve(serve) = parsed(&["serve"]) else {
                panic!("not serve")
            };
            let Command::Up(up) = parsed(&["up", "local-ten"]) else {
                panic!("not up")
            };
            let Command::K8s(K8sArgs {
                command: K8sCommand::Manifests(k8s),
            }) = parsed(&["k8s", "manifests", "local-ten"])
            else {
                panic!("not k8s manifests")
            };
            let serve = serve.host.apply(read()).unwrap();
            let up = up.host.apply(read()).unwrap();
            assert_eq!(format!("{serve:?}"), format!("{up:?}"));
            let manifests = k8s.settings(&read());
            assert_eq!(
                manifests,
                ManifestSettings {
                    namespace: serve.kubernetes_namespace.clone(),
                    image: serve.service_settings().image,
                    port: serve.service_settings().default_service_port,
                }
            );
            if env.is_empty() {
                assert_eq!(format!("{serve:?}"), format!("{:?}", HostConfig::default()));
                assert_eq!(
                    manifests,
                    ManifestSettings {
                        namespace: vars::KUBERNETES_NAMESPACE.default.to_owned(),
                        image: vars::DOCKER_IMAGE_NAME.default.to_owned(),
                        port: vars::DEFAULT_SERVICE_PORT.default,
                    }
                );
                assert_eq!(serve.wave_timeout, vars::WAVE_TIMEOUT.default);
            } else {
                assert_eq!(
                    manifests,
                    ManifestSettings {
                        namespace: "games".to_owned(),
                        image: "reg/bannou:2".to_owned(),
                        port: 8081,
                    }
                );
                assert_eq!(serve.wave_timeout, std::time::Duration::from_secs(180));
                assert_eq!(serve.scaler_config().default_image, "reg/bannou:2");
            }
        }
    }

    #[test]
    fn flags_override_the_variables_and_a_bad_wave_timeout_names_the_flag() {
        use crate::cli::Command;
        let Command::Up(up) = parsed(&["up", "x", "--wave-timeout", "2m", "--backend", "swarm"])
        else {
            panic!("not up")
        };
        let c = up.host.apply(HostConfig::default()).unwrap();
        assert_eq!(c.wave_timeout, std::time::Duration::from_secs(120));
        let Command::Serve(serve) = parsed(&["serve", "--wave-timeout", "45"]) else {
            panic!("not serve")
        };
        let c = serve.host.apply(HostConfig::default()).unwrap();
        assert_eq!(
            c.wave_timeout,
            std::time::Duration::from_secs(45),
            "seconds"
        );
        for bad in ["0", "soon", "500ms"] {
            let e =
                crate::cli::Cli::try_parse_from(["bannou-host", "serve", "--wave-timeout", bad])
                    .unwrap_err()
                    .to_string();
            assert!(e.contains("--wave-timeout") && e.contains(bad), "{e}");
        }
        let Command::K8s(K8sArgs {
            command: K8sCommand::Manifests(k8s),
        }) = parsed(&[
            "k8s",
            "manifests",
            "x",
            "--namespace",
            "ns",
            "--image",
            "i:1",
            "--port",
            "90",
        ])
        else {
            panic!("not k8s manifests")
        };
        let config = HostConfig {
            kubernetes_namespace: "from-env".to_owned(),
            ..HostConfig::default()
        };
        assert_eq!(
            k8s.settings(&config),
            ManifestSettings {
                namespace: "ns".to_owned(),
                image: "i:1".to_owned(),
                port: 90,
            }
        );
    }

    #[test]
    fn an_unknown_preset_is_an_error() {
        let dir = presets();
        let cli = crate::cli::Cli::try_parse_from([
            "bannou-host",
            "k8s",
            "manifests",
            "no-such-preset",
            "--presets",
            dir.to_str().unwrap(),
        ])
        .unwrap();
        let crate::cli::Command::K8s(args) = cli.command else {
            panic!("not the k8s command")
        };
        let mut out = Vec::new();
        assert!(run(args, &mut out).is_err());
        assert!(out.is_empty(), "nothing printed on error");
    }
}
