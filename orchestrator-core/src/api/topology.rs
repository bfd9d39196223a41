//! Topology models shared by several endpoints
//! (docs/COMPATIBILITY.md#request-and-response-models: `ServiceTopology`, `TopologyNode`,
//! `InfrastructureConfig`, `DeployedService`) and the UpdateTopology endpoint
//! (docs/COMPATIBILITY.md#topology and docs/COMPATIBILITY.md#topology-updates).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::defaults::{one, yes};
use super::error::{
    FieldError, Validate, at_least, each_non_empty, in_range, non_empty, opt_non_empty,
};
use super::{DeployedServiceStatus, DeploymentMode, IngressType, TopologyChangeAction};
use crate::Layer;

// === shared models ===

/// Which services run on which nodes (`ServiceTopology`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceTopology {
    /// Container/pod definitions in deploy order.
    pub nodes: Vec<TopologyNode>,
    /// Infrastructure settings: accepted, unused (docs/COMPATIBILITY.md#upstream-gaps item 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infrastructure: Option<InfrastructureConfig>,
}

impl ServiceTopology {
    /// `{"nodes": []}`, what upstream returns for "nothing deployed".
    pub fn empty() -> Self {
        ServiceTopology::default()
    }
}

impl Validate for ServiceTopology {
    fn validate(&self) -> Result<(), FieldError> {
        for (i, node) in self.nodes.iter().enumerate() {
            node.validate()
                .map_err(|e| e.under(&format!("nodes[{i}]")))?;
        }
        if let Some(infra) = &self.infrastructure {
            infra.validate().map_err(|e| e.under("infrastructure"))?;
        }
        Ok(())
    }
}

/// One container or pod of a topology (`TopologyNode`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopologyNode {
    /// Node name (`bannou-main`); also the app-id when `appId` is absent.
    pub name: String,
    /// Layers to enable on the node; `None` inherits from the container environment.
    /// Upstream ignores this for request topologies (docs/COMPATIBILITY.md#deploy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<Layer>>,
    /// Services to enable on the node, beyond its layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<String>>,
    /// Replica count, at least 1 (default 1; upstream does not apply it).
    #[serde(default = "one")]
    pub replicas: i64,
    /// Resource limits (ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceLimits>,
    /// Node-specific environment overrides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<BTreeMap<String, String>>,
    /// Whether mesh routing is enabled (default true).
    #[serde(default = "yes")]
    pub mesh_enabled: bool,
    /// App-id override; `None` derives it from `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
}

impl TopologyNode {
    /// A node named `name` with schema defaults and nothing else.
    pub fn new(name: impl Into<String>) -> Self {
        TopologyNode {
            name: name.into(),
            layers: None,
            services: None,
            replicas: 1,
            resources: None,
            environment: None,
            mesh_enabled: true,
            app_id: None,
        }
    }

    /// The app-id the node deploys as: `appId` if given, else `name`
    /// (docs/COMPATIBILITY.md#deploy step 8a).
    pub fn effective_app_id(&self) -> &str {
        self.app_id.as_deref().unwrap_or(&self.name)
    }
}

impl Validate for TopologyNode {
    fn validate(&self) -> Result<(), FieldError> {
        non_empty("name", &self.name)?;
        if let Some(layers) = &self.layers {
            // The schema's ServiceLayerType has no L0: infrastructure is always on.
            if let Some(i) = layers.iter().position(|l| *l == Layer::Infrastructure) {
                return Err(FieldError::new(
                    format!("layers[{i}]"),
                    "Infrastructure is always enabled and cannot be listed",
                ));
            }
        }
        if let Some(services) = &self.services {
            each_non_empty("services", services)?;
        }
        at_least("replicas", self.replicas, 1)?;
        opt_non_empty("appId", self.app_id.as_deref())?;
        if let Some(env) = &self.environment {
            env_keys_non_empty("environment", env)?;
        }
        Ok(())
    }
}

/// Every key of an environment map must be non-empty (values may be empty).
pub(crate) fn env_keys_non_empty(
    field: &str,
    env: &BTreeMap<String, String>,
) -> Result<(), FieldError> {
    if env.keys().any(|k| k.trim().is_empty()) {
        Err(FieldError::new(field, "variable names must not be empty"))
    } else {
        Ok(())
    }
}

/// Resource limits and requests (`ResourceLimits`); accepted, ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceLimits {
    /// CPU limit (`"0.5"`, `"2"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_limit: Option<String>,
    /// Memory limit (`"512m"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<String>,
    /// CPU request (Kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_request: Option<String>,
    /// Memory request (Kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_request: Option<String>,
}

/// Infrastructure service settings (`InfrastructureConfig`): accepted, unused.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InfrastructureConfig {
    /// Redis settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<InfraServiceConfig>,
    /// RabbitMQ settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rabbitmq: Option<InfraServiceConfig>,
    /// MySQL settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mysql: Option<InfraServiceConfig>,
    /// Ingress settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressConfig>,
}

impl Validate for InfrastructureConfig {
    fn validate(&self) -> Result<(), FieldError> {
        if let Some(ports) = self.ingress.as_ref().and_then(|i| i.ports.as_ref()) {
            ports.validate().map_err(|e| e.under("ingress.ports"))?;
        }
        Ok(())
    }
}

/// One infrastructure service (`InfraServiceConfig`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InfraServiceConfig {
    /// Whether the service is enabled (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Image override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Resource limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceLimits>,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<BTreeMap<String, String>>,
    /// Volume mounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<Vec<String>>,
}

/// Ingress / reverse proxy settings (`IngressConfig`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressConfig {
    /// Whether ingress is enabled (default true).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Proxy flavour (default `Openresty`).
    #[serde(rename = "type", default = "default_ingress")]
    pub kind: IngressType,
    /// HTTP/HTTPS ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Ports>,
    /// Whether TLS is on (default false).
    #[serde(default)]
    pub ssl: bool,
}

const fn default_ingress() -> IngressType {
    IngressType::Openresty
}

/// Ingress port numbers (`Ports`), each in 1..=65535.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ports {
    /// HTTP port (default 80).
    #[serde(default = "default_http")]
    pub http: i64,
    /// HTTPS port (default 443).
    #[serde(default = "default_https")]
    pub https: i64,
}

const fn default_http() -> i64 {
    80
}

const fn default_https() -> i64 {
    443
}

impl Validate for Ports {
    fn validate(&self) -> Result<(), FieldError> {
        in_range("http", self.http, 1, 65535)?;
        in_range("https", self.https, 1, 65535)
    }
}

/// One deployed service in deploy and status responses (`DeployedService`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployedService {
    /// Service (or app) name.
    pub name: String,
    /// Its state.
    pub status: DeployedServiceStatus,
    /// Node/container hosting it (upstream: host machine name or `bannou`).
    pub node: String,
    /// Container id (Docker backends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// Pod name (Kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// Exposed endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<String>>,
}

// === UpdateTopology (docs/COMPATIBILITY.md#topology) ===

/// `POST /orchestrator/topology` request (`TopologyUpdateRequest`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopologyUpdateRequest {
    /// Changes, applied independently in order; must not be empty (400).
    pub changes: Vec<TopologyChange>,
    /// Ignored (default `Graceful`).
    #[serde(default = "default_mode")]
    pub mode: DeploymentMode,
    /// Seconds, at least 1 (default 120; ignored upstream).
    #[serde(default = "default_topology_timeout")]
    pub timeout: i64,
}

const fn default_mode() -> DeploymentMode {
    DeploymentMode::Graceful
}

const fn default_topology_timeout() -> i64 {
    120
}

impl Validate for TopologyUpdateRequest {
    fn validate(&self) -> Result<(), FieldError> {
        if self.changes.is_empty() {
            return Err(FieldError::new(
                "changes",
                "at least one change is required",
            ));
        }
        for (i, change) in self.changes.iter().enumerate() {
            change
                .validate()
                .map_err(|e| e.under(&format!("changes[{i}]")))?;
        }
        at_least("timeout", self.timeout, 1)
    }
}

/// One live topology change (`TopologyChange`).
///
/// [`Validate`] only rejects malformed values; a change that lacks what its action needs
/// is reported per change with a 200 (docs/COMPATIBILITY.md#topology-updates), see
/// [`TopologyChange::missing_requirement`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopologyChange {
    /// What to do (`add-node` and `AddNode` both parse).
    pub action: TopologyChangeAction,
    /// Target node name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// Services affected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<String>>,
    /// New replica count (scale), at least 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i64>,
    /// Environment (add-node, update-env).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<BTreeMap<String, String>>,
    /// Full node config (add-node; upstream only checks it is present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_config: Option<TopologyNode>,
}

impl TopologyChange {
    /// The upstream error text when this change lacks what its action requires
    /// (docs/COMPATIBILITY.md#topology-updates), or `None` when it can be attempted.
    pub fn missing_requirement(&self) -> Option<&'static str> {
        let has_node = self.node_name.as_deref().is_some_and(|n| !n.is_empty());
        match self.action {
            TopologyChangeAction::AddNode
                if self.node_config.is_none() || self.services.is_none() =>
            {
                Some("NodeConfig and Services are required for add-node action")
            }
            TopologyChangeAction::RemoveNode if self.services.is_none() => {
                Some("Services list is required for remove-node action")
            }
            TopologyChangeAction::MoveService if self.services.is_none() || !has_node => {
                Some("Services list and NodeName are required for move-service action")
            }
            TopologyChangeAction::Scale if self.replicas.is_none() => {
                Some("Scale action requires replicas to be specified")
            }
            TopologyChangeAction::Scale if self.services.is_none() => {
                Some("Services list is required for scale action")
            }
            TopologyChangeAction::UpdateEnv
                if self.services.is_none() || self.environment.is_none() =>
            {
                Some("Services list and Environment are required for update-env action")
            }
            _ => None,
        }
    }

    /// The `target` upstream reports for this change: `nodeName` if present, else the
    /// services joined with `,` (docs/COMPATIBILITY.md#topology-updates).
    pub fn target(&self) -> Option<String> {
        self.node_name
            .clone()
            .or_else(|| self.services.as_ref().map(|s| s.join(",")))
    }
}

impl Validate for TopologyChange {
    fn validate(&self) -> Result<(), FieldError> {
        if let Some(services) = &self.services {
            each_non_empty("services", services)?;
        }
        if let Some(replicas) = self.replicas {
            at_least("replicas", replicas, 0)?;
        }
        if let Some(env) = &self.environment {
            env_keys_non_empty("environment", env)?;
        }
        if let Some(node) = &self.node_config {
            node.validate().map_err(|e| e.under("nodeConfig"))?;
        }
        Ok(())
    }
}

/// `POST /orchestrator/topology` response (`TopologyUpdateResponse`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopologyUpdateResponse {
    /// One entry per requested change, in order.
    pub applied_changes: Vec<AppliedChange>,
    /// New topology (never set upstream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<ServiceTopology>,
    /// `"N.Ns"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Per-item failures (possibly empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnings: Option<Vec<String>>,
    /// Ours only (D58): the live nodes that had not applied the new routes when this
    /// change stopped waiting for them and stopped the old nodes anyway; absent when every
    /// consumer acknowledged in time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_laggards: Option<Vec<crate::api::NodeMappingsVersion>>,
}

/// Outcome of one topology change (`AppliedChange`).
///
/// The schema types `action` as a free string; upstream writes the member name
/// (`AddNode`), which is what [`TopologyChangeAction`] writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppliedChange {
    /// Whether the change fully succeeded (default false).
    #[serde(default)]
    pub success: bool,
    /// The change's action.
    pub action: TopologyChangeAction,
    /// Node name, or the services joined with `,`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::super::wire_checks::{invalid_field, round_trip};
    use super::*;
    use serde_json::json;

    #[test]
    fn node_defaults_applied_and_written_back() {
        let node: TopologyNode = round_trip(
            json!({"name": "bannou-auth", "services": ["auth", "account"]}),
            json!({"name": "bannou-auth", "services": ["auth", "account"],
                   "replicas": 1, "meshEnabled": true}),
        );
        assert_eq!(node.replicas, 1);
        assert!(node.mesh_enabled);
        assert_eq!(node.effective_app_id(), "bannou-auth");
    }

    #[test]
    fn full_topology_with_layers_and_infrastructure_round_trips() {
        let input = json!({
            "nodes": [{
                "name": "game", "appId": "bannou-game",
                "layers": ["app-foundation", "GAME_FOUNDATION", "GameFeatures"],
                "replicas": 2, "meshEnabled": false,
                "resources": {"cpuLimit": "2", "memoryLimit": "512m"},
                "environment": {"GAME_MODE": "pvp"}
            }],
            "infrastructure": {
                "redis": {"image": "redis:7"},
                "ingress": {"type": "traefik", "ports": {"https": 8443}}
            }
        });
        let expected = json!({
            "nodes": [{
                "name": "game", "appId": "bannou-game",
                "layers": ["AppFoundation", "GameFoundation", "GameFeatures"],
                "replicas": 2, "meshEnabled": false,
                "resources": {"cpuLimit": "2", "memoryLimit": "512m"},
                "environment": {"GAME_MODE": "pvp"}
            }],
            "infrastructure": {
                "redis": {"enabled": true, "image": "redis:7"},
                "ingress": {"enabled": true, "type": "Traefik",
                            "ports": {"http": 80, "https": 8443}, "ssl": false}
            }
        });
        let t: ServiceTopology = round_trip(input, expected);
        assert_eq!(t.nodes[0].effective_app_id(), "bannou-game");
        assert_eq!(
            t.nodes[0].layers.as_deref(),
            Some(
                &[
                    Layer::AppFoundation,
                    Layer::GameFoundation,
                    Layer::GameFeatures
                ][..]
            )
        );
        assert!(t.validate().is_ok());
        assert_eq!(
            serde_json::to_value(ServiceTopology::empty()).unwrap(),
            json!({"nodes": []})
        );
    }

    #[test]
    fn topology_validation_names_the_node_field() {
        let bad = json!({"nodes": [{"name": "a"}, {"name": " "}]});
        assert_eq!(invalid_field::<ServiceTopology>(bad), "nodes[1].name");
        let bad = json!({"nodes": [{"name": "a", "replicas": 0}]});
        assert_eq!(invalid_field::<ServiceTopology>(bad), "nodes[0].replicas");
        let bad = json!({"nodes": [{"name": "a", "services": ["auth", ""]}]});
        assert_eq!(
            invalid_field::<ServiceTopology>(bad),
            "nodes[0].services[1]"
        );
        let bad = json!({"nodes": [{"name": "a", "layers": ["AppFoundation", "infrastructure"]}]});
        assert_eq!(invalid_field::<ServiceTopology>(bad), "nodes[0].layers[1]");
        let bad = json!({"nodes": [{"name": "a", "appId": ""}]});
        assert_eq!(invalid_field::<ServiceTopology>(bad), "nodes[0].appId");
        let bad = json!({"nodes": [{"name": "a", "environment": {"": "x"}}]});
        assert_eq!(
            invalid_field::<ServiceTopology>(bad),
            "nodes[0].environment"
        );
        let bad = json!({"nodes": [], "infrastructure": {"ingress": {"ports": {"http": 0}}}});
        assert_eq!(
            invalid_field::<ServiceTopology>(bad),
            "infrastructure.ingress.ports.http"
        );
    }

    #[test]
    fn deployed_service_round_trips() {
        let s: DeployedService = round_trip(
            json!({"name": "auth", "status": "running", "node": "host-1", "containerId": "abc"}),
            json!({"name": "auth", "status": "Running", "node": "host-1", "containerId": "abc"}),
        );
        assert_eq!(s.status, DeployedServiceStatus::Running);
    }

    #[test]
    fn topology_update_request_accepts_both_action_spellings() {
        let req: TopologyUpdateRequest = round_trip(
            json!({"changes": [
                {"action": "add-node", "nodeName": "n1", "services": ["auth"],
                 "nodeConfig": {"name": "n1"}, "environment": {"A": "1"}},
                {"action": "MoveService", "nodeName": "n2", "services": ["account"]},
                {"action": "scale", "services": ["auth"], "replicas": 3}
            ]}),
            json!({"changes": [
                {"action": "AddNode", "nodeName": "n1", "services": ["auth"],
                 "nodeConfig": {"name": "n1", "replicas": 1, "meshEnabled": true},
                 "environment": {"A": "1"}},
                {"action": "MoveService", "nodeName": "n2", "services": ["account"]},
                {"action": "Scale", "services": ["auth"], "replicas": 3}
            ], "mode": "Graceful", "timeout": 120}),
        );
        assert!(req.validate().is_ok());
        assert_eq!(req.changes[0].action, TopologyChangeAction::AddNode);
        assert!(
            req.changes
                .iter()
                .all(|c| c.missing_requirement().is_none())
        );
        assert_eq!(req.changes[2].target().as_deref(), Some("auth"));
    }

    #[test]
    fn topology_update_validation_names_fields() {
        assert_eq!(
            invalid_field::<TopologyUpdateRequest>(json!({"changes": []})),
            "changes"
        );
        assert_eq!(
            invalid_field::<TopologyUpdateRequest>(
                json!({"changes": [{"action": "scale", "replicas": -1}]})
            ),
            "changes[0].replicas"
        );
        assert_eq!(
            invalid_field::<TopologyUpdateRequest>(
                json!({"changes": [{"action": "add-node", "nodeConfig": {"name": ""}}]})
            ),
            "changes[0].nodeConfig.name"
        );
        assert_eq!(
            invalid_field::<TopologyUpdateRequest>(
                json!({"changes": [{"action": "scale", "replicas": 1}], "timeout": 0})
            ),
            "timeout"
        );
        assert!(
            serde_json::from_value::<TopologyUpdateRequest>(
                json!({"changes": [{"action": "grow"}]})
            )
            .is_err()
        );
    }

    #[test]
    fn missing_requirements_use_upstream_texts() {
        let change = |v| serde_json::from_value::<TopologyChange>(v).unwrap();
        assert_eq!(
            change(json!({"action": "add-node", "services": ["a"]})).missing_requirement(),
            Some("NodeConfig and Services are required for add-node action")
        );
        assert_eq!(
            change(json!({"action": "remove-node"})).missing_requirement(),
            Some("Services list is required for remove-node action")
        );
        assert_eq!(
            change(json!({"action": "move-service", "services": ["a"], "nodeName": ""}))
                .missing_requirement(),
            Some("Services list and NodeName are required for move-service action")
        );
        assert_eq!(
            change(json!({"action": "scale"})).missing_requirement(),
            Some("Scale action requires replicas to be specified")
        );
        assert_eq!(
            change(json!({"action": "scale", "replicas": 2})).missing_requirement(),
            Some("Services list is required for scale action")
        );
        assert_eq!(
            change(json!({"action": "update-env", "services": ["a"]})).missing_requirement(),
            Some("Services list and Environment are required for update-env action")
        );
    }

    #[test]
    fn topology_update_response_writes_runtime_action_names() {
        let resp = TopologyUpdateResponse {
            applied_changes: vec![AppliedChange {
                success: false,
                action: TopologyChangeAction::RemoveNode,
                target: Some("a,b".into()),
                error: Some("All 2 teardowns failed".into()),
            }],
            topology: None,
            duration: Some("0.4s".into()),
            warnings: Some(vec![]),
            routing_laggards: Some(vec![crate::api::NodeMappingsVersion {
                app_id: "n9".into(),
                applied_version: 4,
            }]),
        };
        let expected = json!({
            "appliedChanges": [{"success": false, "action": "RemoveNode",
                                "target": "a,b", "error": "All 2 teardowns failed"}],
            "duration": "0.4s", "warnings": [],
            "routingLaggards": [{"appId": "n9", "appliedVersion": 4}]
        });
        assert_eq!(serde_json::to_value(&resp).unwrap(), expected);
        let back: TopologyUpdateResponse = round_trip(expected.clone(), expected);
        assert_eq!(back, resp);
    }
}
