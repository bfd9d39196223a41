//! Preset or request topology -> resolved nodes with app-ids, hosted services and full
//! environments (docs/COMPATIBILITY.md#preset-to-topology,
//! docs/COMPATIBILITY.md#forwarding-whitelist, docs/COMPATIBILITY.md#environment-layering),
//! plus resolved processing pools (docs/COMPATIBILITY.md#processing-pools-configuration).
//!
//! Start with [`resolve`] (or [`Resolved::from_preset`]); [`is_service_enabled`] is the
//! rule (docs/COMPATIBILITY.md#enablement-rule) a Bannou host applies to its own environment.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, ServiceDef, UnknownService};
use crate::layer::Layer;
use crate::names::{AppId, service_enable_flag};
use crate::preset::{ParsedPreset, Preset, PresetNode, ProcessingPool};
use crate::topology::ResolvedNode;

/// `BANNOU_SERVICES_ENABLED`: the master switch (docs/COMPATIBILITY.md#enablement-rule step 3).
pub const SERVICES_ENABLED: &str = "BANNOU_SERVICES_ENABLED";
/// `BANNOU_APP_ID`: the node's identity.
pub const APP_ID: &str = "BANNOU_APP_ID";
/// Prefix of the layer flags.
pub const LAYER_FLAG_PREFIX: &str = "BANNOU_ENABLE_";

/// One topology node, independent of where it came from (preset file or API request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInput {
    /// Node name.
    pub name: String,
    /// App-id override (`None` = use `name`).
    pub app_id: Option<String>,
    /// Layers listed on the node. Informational for [`resolve`]: only env keys decide
    /// (docs/COMPATIBILITY.md#environment-layering); preset nodes carry them into the env
    /// via [`preset_node_environment`].
    pub layers: Vec<Layer>,
    /// Services enabled individually and routed to this node.
    pub services: Vec<String>,
    /// Requested replicas.
    pub replicas: u32,
    /// The node's environment (docs/COMPATIBILITY.md#environment-layering step 3).
    pub environment: BTreeMap<String, String>,
    /// Carried through.
    pub mesh_enabled: bool,
}

impl NodeInput {
    /// The app-id: `app_id` if set and non-blank, else `name`
    /// (docs/COMPATIBILITY.md#names-and-app-ids).
    pub fn effective_app_id(&self) -> AppId {
        match &self.app_id {
            Some(a) if !a.trim().is_empty() => AppId::new(a.trim()),
            _ => AppId::new(self.name.clone()),
        }
    }

    /// A preset node as topology node: its environment becomes the
    /// docs/COMPATIBILITY.md#preset-to-topology output (preset env, node env, layer and
    /// service flags).
    pub fn from_preset_node(preset_env: &BTreeMap<String, String>, node: &PresetNode) -> Self {
        let mut input = NodeInput {
            name: node.name.clone(),
            app_id: node.app_id.clone(),
            layers: node.layers.clone(),
            services: node.services.clone(),
            replicas: node.replicas,
            environment: node.environment.clone(),
            mesh_enabled: node.mesh_enabled,
        };
        input.environment = preset_node_environment(preset_env, &input);
        input
    }
}

/// docs/COMPATIBILITY.md#preset-to-topology steps 1-4: preset env, node env, then layer
/// flags (only when `layers` is non-empty) and service flags, each only where the key is
/// not already present.
pub fn preset_node_environment(
    preset_env: &BTreeMap<String, String>,
    node: &NodeInput,
) -> BTreeMap<String, String> {
    let mut env = preset_env.clone();
    env.extend(node.environment.iter().map(|(k, v)| (k.clone(), v.clone())));
    if !node.layers.is_empty() {
        for layer in Layer::TOGGLEABLE {
            if let Some(flag) = layer.enable_flag() {
                let on = node.layers.contains(&layer);
                env.entry(flag.to_owned()).or_insert_with(|| on.to_string());
            }
        }
    }
    if !node.services.is_empty() {
        if node.layers.is_empty() {
            env.entry(SERVICES_ENABLED.to_owned())
                .or_insert_with(|| "false".to_owned());
        }
        for s in &node.services {
            env.entry(service_enable_flag(s))
                .or_insert_with(|| "true".to_owned());
        }
    }
    env
}

/// True when `key` may be forwarded from the orchestrator's own environment
/// (docs/COMPATIBILITY.md#forwarding-whitelist), comparing case-insensitively.
pub fn is_forwardable(key: &str, catalog: &Catalog) -> bool {
    let upper = key.to_ascii_uppercase();
    if upper.ends_with("_SERVICE_ENABLED")
        || upper.starts_with(LAYER_FLAG_PREFIX)
        || upper == SERVICES_ENABLED
        || upper == APP_ID
    {
        return false;
    }
    upper.starts_with("BANNOU_")
        || catalog.services().iter().any(|s| {
            upper
                .as_bytes()
                .get(..s.env_prefix.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(s.env_prefix.as_bytes()))
        })
}

/// docs/COMPATIBILITY.md#forwarding-whitelist: the part of the orchestrator's environment
/// forwarded to deployed nodes.
pub fn forwarded_environment(
    orchestrator_env: &BTreeMap<String, String>,
    catalog: &Catalog,
) -> BTreeMap<String, String> {
    orchestrator_env
        .iter()
        .filter(|(k, _)| is_forwardable(k, catalog))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Looks a key up exactly, then case-insensitively.
fn lookup<'a>(env: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    env.get(key)
        .or_else(|| {
            env.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v)
        })
        .map(String::as_str)
}

fn is_false(v: Option<&str>) -> bool {
    v.is_some_and(|v| v.trim().eq_ignore_ascii_case("false"))
}

/// The rule of docs/COMPATIBILITY.md#enablement-rule: does a host with environment `env`
/// run service `def`?
///
/// state/messaging/mesh always; else a non-blank `{SVC}_SERVICE_ENABLED` decides
/// (`true`, any case); else `BANNOU_SERVICES_ENABLED=false` disables; else the layer
/// flag (`BANNOU_ENABLE_*`, default true; L0 always on). Keys are matched exactly
/// first, then case-insensitively.
pub fn is_service_enabled(def: &ServiceDef, env: &BTreeMap<String, String>) -> bool {
    if def.required {
        return true;
    }
    if let Some(v) = lookup(env, &def.enable_flag).filter(|v| !v.trim().is_empty()) {
        return v.trim().eq_ignore_ascii_case("true");
    }
    is_layer_enabled(def.layer, env)
}

/// The layer part of the rule of docs/COMPATIBILITY.md#enablement-rule: does a host with
/// environment `env` run the services of `layer` that have no per-service override? False
/// in services mode (`BANNOU_SERVICES_ENABLED=false`) and when the layer flag is `false`;
/// L0 always runs.
pub fn is_layer_enabled(layer: crate::layer::Layer, env: &BTreeMap<String, String>) -> bool {
    if is_false(lookup(env, SERVICES_ENABLED)) {
        return false;
    }
    match layer.enable_flag() {
        Some(flag) => !is_false(lookup(env, flag)),
        None => true,
    }
}

/// Every catalog service a host with environment `env` runs, canonical names, sorted.
pub fn enabled_services(env: &BTreeMap<String, String>, catalog: &Catalog) -> Vec<String> {
    let mut out: Vec<String> = catalog
        .services()
        .iter()
        .filter(|d| is_service_enabled(d, env))
        .map(|d| d.name.clone())
        .collect();
    out.sort();
    out
}

/// A processing pool ready to store (docs/COMPATIBILITY.md#processing-pools-configuration):
/// worker env computed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedPool {
    /// Pool identifier.
    pub pool_type: String,
    /// Service enabled on workers (may be empty).
    pub plugin: String,
    /// Worker image override.
    pub image: Option<String>,
    /// Minimum workers.
    pub min_instances: u32,
    /// Maximum workers.
    pub max_instances: u32,
    /// Utilisation (0..=1) above which to scale up.
    pub scale_up_threshold: f64,
    /// Utilisation (0..=1) below which to scale down.
    pub scale_down_threshold: f64,
    /// Idle timeout in minutes.
    pub idle_timeout_minutes: u32,
    /// Worker env: `BANNOU_SERVICES_ENABLED=false` and `{PLUGIN}_SERVICE_ENABLED=true`
    /// when a plugin is set, then the pool's own environment.
    pub environment: BTreeMap<String, String>,
}

/// The environment every worker of a pool starts with
/// (docs/COMPATIBILITY.md#processing-pools-configuration): services mode with only the
/// pool's plugin enabled (when it has one), then the pool's own environment. Per-worker
/// variables (app-id, processor id) are added by the pools crate.
pub fn pool_worker_environment(
    plugin: &str,
    pool_env: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut environment = BTreeMap::new();
    if !plugin.trim().is_empty() {
        environment.insert(SERVICES_ENABLED.to_owned(), "false".to_owned());
        environment.insert(service_enable_flag(plugin.trim()), "true".to_owned());
    }
    environment.extend(pool_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    environment
}

impl From<&ProcessingPool> for ResolvedPool {
    fn from(p: &ProcessingPool) -> Self {
        let environment = pool_worker_environment(&p.plugin, &p.environment);
        ResolvedPool {
            pool_type: p.pool_type.clone(),
            plugin: p.plugin.clone(),
            image: p.image.clone(),
            min_instances: p.min_instances,
            max_instances: p.max_instances,
            scale_up_threshold: p.scale_up_threshold,
            scale_down_threshold: p.scale_down_threshold,
            idle_timeout_minutes: p.idle_timeout_minutes,
            environment,
        }
    }
}

/// Everything [`resolve`] needs.
#[derive(Debug, Clone, Copy)]
pub struct ResolveInput<'a> {
    /// The service catalog.
    pub catalog: &'a Catalog,
    /// The orchestrator's own environment (filtered by [`forwarded_environment`]).
    pub orchestrator_environment: &'a BTreeMap<String, String>,
    /// Preset-level environment (empty for a request topology),
    /// docs/COMPATIBILITY.md#environment-layering step 2.
    pub preset_environment: &'a BTreeMap<String, String>,
    /// The request's environment, docs/COMPATIBILITY.md#environment-layering step 4.
    pub request_environment: &'a BTreeMap<String, String>,
    /// The nodes.
    pub nodes: &'a [NodeInput],
    /// Processing pools (presets only).
    pub pools: &'a [ProcessingPool],
}

/// A resolved deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resolved {
    /// Nodes in input order.
    pub nodes: Vec<ResolvedNode>,
    /// Pools in input order.
    pub pools: Vec<ResolvedPool>,
}

/// Why a topology cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// A node without a name.
    #[error("topology node {index} has no name")]
    MissingNodeName {
        /// Position of the node in the topology.
        index: usize,
    },
    /// A node lists a service the catalog does not know.
    #[error("node `{node}`: {source}")]
    UnknownService {
        /// The node.
        node: String,
        /// The unknown name with near matches.
        source: UnknownService,
    },
    /// Two nodes resolve to the same app-id.
    #[error("nodes `{first}` and `{second}` share app-id `{app_id}`")]
    DuplicateAppId {
        /// The app-id.
        app_id: AppId,
        /// The first node.
        first: String,
        /// The second node.
        second: String,
    },
    /// The same service is routed to two nodes.
    #[error("service `{service}` is routed to both `{first}` and `{second}`")]
    ServiceRoutedTwice {
        /// The service.
        service: String,
        /// The first node.
        first: String,
        /// The second node.
        second: String,
    },
}

/// docs/COMPATIBILITY.md#environment-layering for every node: forwarded env, preset env,
/// node env, request env, then services-mode, forced service flags and `BANNOU_APP_ID`.
/// Stops at the first problem.
pub fn resolve(input: &ResolveInput<'_>) -> Result<Resolved, ResolveError> {
    let forwarded = forwarded_environment(input.orchestrator_environment, input.catalog);
    let mut app_ids: HashMap<AppId, String> = HashMap::new();
    let mut routed_to: HashMap<String, String> = HashMap::new();
    let mut nodes = Vec::with_capacity(input.nodes.len());

    for (index, node) in input.nodes.iter().enumerate() {
        if node.name.trim().is_empty() {
            return Err(ResolveError::MissingNodeName { index });
        }
        let app_id = node.effective_app_id();
        if let Some(first) = app_ids.insert(app_id.clone(), node.name.clone()) {
            return Err(ResolveError::DuplicateAppId {
                app_id,
                first,
                second: node.name.clone(),
            });
        }

        let mut routed = Vec::with_capacity(node.services.len());
        for s in &node.services {
            let def = input
                .catalog
                .get(s)
                .map_err(|source| ResolveError::UnknownService {
                    node: node.name.clone(),
                    source,
                })?;
            if routed.contains(&def.name) {
                continue;
            }
            if let Some(first) = routed_to.insert(def.name.clone(), node.name.clone()) {
                return Err(ResolveError::ServiceRoutedTwice {
                    service: def.name.clone(),
                    first,
                    second: node.name.clone(),
                });
            }
            routed.push(def.name.clone());
        }
        routed.sort();

        let mut env = forwarded.clone();
        for layer in [
            input.preset_environment,
            &node.environment,
            input.request_environment,
        ] {
            env.extend(layer.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let layer_mode = env
            .keys()
            .any(|k| k.to_ascii_uppercase().starts_with(LAYER_FLAG_PREFIX));
        if !layer_mode {
            env.insert(SERVICES_ENABLED.to_owned(), "false".to_owned());
        }
        for s in &routed {
            env.insert(service_enable_flag(s), "true".to_owned());
        }
        env.insert(APP_ID.to_owned(), app_id.as_str().to_owned());

        nodes.push(ResolvedNode {
            name: node.name.clone(),
            services: enabled_services(&env, input.catalog),
            routed_services: routed,
            environment: env,
            replicas: node.replicas,
            mesh_enabled: node.mesh_enabled,
            app_id,
        });
    }

    Ok(Resolved {
        nodes,
        pools: input.pools.iter().map(ResolvedPool::from).collect(),
    })
}

impl Resolved {
    /// Resolves a parsed preset (docs/COMPATIBILITY.md#preset-to-topology then
    /// docs/COMPATIBILITY.md#environment-layering).
    pub fn from_preset(
        parsed: &ParsedPreset,
        orchestrator_env: &BTreeMap<String, String>,
        request_env: &BTreeMap<String, String>,
        catalog: &Catalog,
    ) -> Result<Resolved, ResolveError> {
        Resolved::from_validated_preset(&parsed.preset, orchestrator_env, request_env, catalog)
    }

    /// Like [`Resolved::from_preset`] for a bare [`Preset`].
    pub fn from_validated_preset(
        preset: &Preset,
        orchestrator_env: &BTreeMap<String, String>,
        request_env: &BTreeMap<String, String>,
        catalog: &Catalog,
    ) -> Result<Resolved, ResolveError> {
        let nodes: Vec<NodeInput> = preset
            .nodes
            .iter()
            .map(|n| NodeInput::from_preset_node(&preset.environment, n))
            .collect();
        resolve(&ResolveInput {
            catalog,
            orchestrator_environment: orchestrator_env,
            preset_environment: &preset.environment,
            request_environment: request_env,
            nodes: &nodes,
            pools: &preset.processing_pools,
        })
    }
}

#[cfg(test)]
mod tests;
