//! Environment lifecycle endpoints: Deploy (docs/COMPATIBILITY.md#deploy), Teardown
//! (docs/COMPATIBILITY.md#teardown) and Clean (docs/COMPATIBILITY.md#clean), plus our
//! deploy extensions `strict` and `autoRevert` (D27 (docs/DECISIONS.md#d27)) and
//! `strategy` (D62 (docs/DECISIONS.md#d62)) with its canary fields (D64
//! (docs/DECISIONS.md#d64)).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::defaults::yes;
use super::deploy_strategy::DeployStrategy;
use super::error::{FieldError, Validate, at_least};
use super::topology::{DeployedService, ServiceTopology, env_keys_non_empty};
use super::{CleanTarget, DeploymentMode, TeardownMode};
use crate::events::BackendType;

/// Formats a deploy/teardown/topology duration the upstream way: seconds with one decimal
/// and an `s` suffix (`"12.3s"`, docs/COMPATIBILITY.md#api-conventions).
pub fn format_duration_secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

// === Deploy (docs/COMPATIBILITY.md#deploy) ===

/// `POST /orchestrator/deploy` request (`DeployRequest`); every field is optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployRequest {
    /// Preset to deploy; wins over `topology`. Blank, `default` or `bannou` with no
    /// topology nodes means reset (docs/COMPATIBILITY.md#reset-to-default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// Ad-hoc topology, used when no preset is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<ServiceTopology>,
    /// Backend to use; `None` uses the active/default one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendType>,
    /// Ignored upstream (default `Graceful`).
    #[serde(default = "default_deploy_mode")]
    pub mode: DeploymentMode,
    /// Environment overrides applied to every node (docs/COMPATIBILITY.md#environment-layering).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<BTreeMap<String, String>>,
    /// Seconds, at least 1 (default 300; ignored upstream).
    #[serde(default = "default_deploy_timeout")]
    pub timeout: i64,
    /// Ignored upstream: the heartbeat wait always runs (default true).
    #[serde(default = "yes")]
    pub wait_for_healthy: bool,
    /// Plan only: no containers, routing or configuration change (default false).
    #[serde(default)]
    pub dry_run: bool,
    /// **Ours.** Treat pre-flight warnings (e.g. an unknown pool plugin) as errors and
    /// reject the request with 400 (default false).
    #[serde(default)]
    pub strict: bool,
    /// **Ours.** On a failed wave, redeploy the last stable configuration version
    /// (default true; upstream only tears the new nodes down).
    #[serde(default = "yes")]
    pub auto_revert: bool,
    /// **Ours.** How changed nodes are replaced (default `replace`; `blue-green`:
    /// side by side under new app-ids, one route switch, D62 (docs/DECISIONS.md#d62)).
    /// Left out of a request when it is the default, so older servers see upstream's
    /// body.
    #[serde(default, skip_serializing_if = "DeployStrategy::is_replace")]
    pub strategy: DeployStrategy,
    /// **Ours.** With `strategy: canary` (and only then, required): the percent of the
    /// moved services' calls sent to the new nodes, 1-99 (D64 (docs/DECISIONS.md#d64)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_weight: Option<i64>,
    /// **Ours.** With `strategy: canary` (and only then): promote the canary by itself
    /// once it has been healthy this many seconds (at least 1); absent, only
    /// `POST /orchestrator/promote` does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_promote_after_seconds: Option<i64>,
}

const fn default_deploy_mode() -> DeploymentMode {
    DeploymentMode::Graceful
}

const fn default_deploy_timeout() -> i64 {
    300
}

impl Default for DeployRequest {
    fn default() -> Self {
        DeployRequest {
            preset: None,
            topology: None,
            backend: None,
            mode: DeploymentMode::Graceful,
            environment: None,
            timeout: 300,
            wait_for_healthy: true,
            dry_run: false,
            strict: false,
            auto_revert: true,
            strategy: DeployStrategy::Replace,
            canary_weight: None,
            canary_promote_after_seconds: None,
        }
    }
}

impl DeployRequest {
    /// True when this request resets to the single `bannou` node
    /// (docs/COMPATIBILITY.md#reset-to-default): no topology nodes and a preset that is
    /// absent, blank, `default` or `bannou` (trimmed, any case).
    pub fn is_reset(&self) -> bool {
        let no_nodes = self.topology.as_ref().is_none_or(|t| t.nodes.is_empty());
        let preset_is_reset = self.preset.as_deref().is_none_or(|p| {
            let p = p.trim();
            p.is_empty() || p.eq_ignore_ascii_case("default") || p.eq_ignore_ascii_case("bannou")
        });
        no_nodes && preset_is_reset
    }

    /// The preset name to load, trimmed, when one is named (blank counts as none).
    pub fn preset_name(&self) -> Option<&str> {
        self.preset
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
    }
}

impl Validate for DeployRequest {
    fn validate(&self) -> Result<(), FieldError> {
        if let Some(name) = self.preset_name() {
            // Preset names become file names: reject anything that could leave the
            // preset directory (D22 (docs/DECISIONS.md#d22)).
            if name.contains(['/', '\\']) || name.contains("..") {
                return Err(FieldError::new(
                    "preset",
                    format!("invalid preset name `{name}`: no path separators or `..` allowed"),
                ));
            }
        }
        if let Some(topology) = &self.topology {
            topology.validate().map_err(|e| e.under("topology"))?;
        }
        if let Some(env) = &self.environment {
            env_keys_non_empty("environment", env)?;
        }
        self.validate_canary()?;
        at_least("timeout", self.timeout, 1)
    }
}

impl DeployRequest {
    /// The canary fields go with `strategy: canary` only; the weight is required there.
    fn validate_canary(&self) -> Result<(), FieldError> {
        let canary = self.strategy == DeployStrategy::Canary;
        match self.canary_weight {
            None if canary => {
                return Err(FieldError::new(
                    "canaryWeight",
                    "is required with strategy `canary` (percent of the calls to the new nodes, 1-99)",
                ));
            }
            Some(_) if !canary => {
                return Err(FieldError::new(
                    "canaryWeight",
                    format!(
                        "is only accepted with strategy `canary` (got `{}`)",
                        self.strategy
                    ),
                ));
            }
            Some(w) if !super::canary::CANARY_WEIGHT_RANGE.contains(&w) => {
                return Err(FieldError::new(
                    "canaryWeight",
                    format!("must be between 1 and 99 (got {w})"),
                ));
            }
            _ => {}
        }
        match self.canary_promote_after_seconds {
            Some(_) if !canary => Err(FieldError::new(
                "canaryPromoteAfterSeconds",
                format!(
                    "is only accepted with strategy `canary` (got `{}`)",
                    self.strategy
                ),
            )),
            Some(s) => at_least("canaryPromoteAfterSeconds", s, 1),
            None => Ok(()),
        }
    }
}

/// `POST /orchestrator/deploy` response (`DeployResponse`); 200 on success, 500 with this
/// body otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployResponse {
    /// No failure was recorded.
    pub success: bool,
    /// New GUID of this deployment.
    pub deployment_id: String,
    /// Backend actually used.
    pub backend: BackendType,
    /// Preset deployed (`default` for a reset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// `"N.Ns"` (see [`format_duration_secs`]).
    pub duration: String,
    /// Applied topology (`{"nodes": []}` for a reset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<ServiceTopology>,
    /// Deployed (or, for a dry run, planned) services; torn-down app-ids for a reset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<DeployedService>>,
    /// Non-fatal warnings, or the failures when `success` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnings: Option<Vec<String>>,
    /// Ours only (D58): the live nodes that had not applied the new routes when this
    /// change stopped waiting for them and stopped the old nodes anyway; absent when every
    /// consumer acknowledged in time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_laggards: Option<Vec<crate::api::NodeMappingsVersion>>,
    /// Ours only (D62): a blue-green deploy's route switch; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switched_routes: Option<super::deploy_strategy::RouteSwitch>,
    /// Ours only (D64): the canary this deploy left running (its configuration is
    /// recorded on promotion); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<super::canary::CanaryStatus>,
}

// === Teardown (docs/COMPATIBILITY.md#teardown) ===

/// `POST /orchestrator/teardown` request (`TeardownRequest`); every field is optional.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TeardownRequest {
    /// Preview only (default false).
    #[serde(default)]
    pub dry_run: bool,
    /// Ignored (default `Graceful`).
    #[serde(default = "default_teardown_mode")]
    pub mode: TeardownMode,
    /// Seconds, at least 1 (default 60; ignored upstream).
    #[serde(default = "default_teardown_timeout")]
    pub timeout: i64,
    /// Also remove volumes (default false).
    #[serde(default)]
    pub remove_volumes: bool,
    /// Ignored (default false).
    #[serde(default)]
    pub remove_networks: bool,
    /// Also remove Redis, RabbitMQ, MySQL, ... containers (default false).
    #[serde(default)]
    pub include_infrastructure: bool,
}

const fn default_teardown_mode() -> TeardownMode {
    TeardownMode::Graceful
}

const fn default_teardown_timeout() -> i64 {
    60
}

impl Default for TeardownRequest {
    fn default() -> Self {
        TeardownRequest {
            dry_run: false,
            mode: TeardownMode::Graceful,
            timeout: 60,
            remove_volumes: false,
            remove_networks: false,
            include_infrastructure: false,
        }
    }
}

impl Validate for TeardownRequest {
    fn validate(&self) -> Result<(), FieldError> {
        at_least("timeout", self.timeout, 1)
    }
}

/// `POST /orchestrator/teardown` response (`TeardownResponse`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TeardownResponse {
    /// `"N.Ns"` (`"0s"` when there was nothing to tear down).
    pub duration: String,
    /// Stopped container ids (dry run: target app names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_containers: Option<Vec<String>>,
    /// Removed volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_volumes: Option<Vec<String>>,
    /// Removed networks (never set upstream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_networks: Option<Vec<String>>,
    /// Removed infrastructure services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_infrastructure: Option<Vec<String>>,
    /// Per-target failures (`"{name}: {message}"`); `None` when there were none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<String>>,
    /// Ours only (D58): the live nodes that had not applied the new routes when this
    /// change stopped waiting for them and stopped the old nodes anyway; absent when every
    /// consumer acknowledged in time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_laggards: Option<Vec<crate::api::NodeMappingsVersion>>,
}

// === Clean (docs/COMPATIBILITY.md#clean) ===

/// `POST /orchestrator/clean` request (`CleanRequest`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CleanRequest {
    /// What to remove; `All` implies every target. Must not be empty.
    pub targets: Vec<CleanTarget>,
    /// Remove stopped containers even when not orphaned (default false).
    #[serde(default)]
    pub force: bool,
    /// Ignored (`"24h"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub older_than: Option<String>,
    /// Ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_filter: Option<BTreeMap<String, String>>,
}

impl CleanRequest {
    /// Whether `target` is selected, directly or through `All`.
    pub fn includes(&self, target: CleanTarget) -> bool {
        self.targets
            .iter()
            .any(|t| *t == target || *t == CleanTarget::All)
    }
}

impl Validate for CleanRequest {
    fn validate(&self) -> Result<(), FieldError> {
        if self.targets.is_empty() {
            return Err(FieldError::new(
                "targets",
                "at least one target is required",
            ));
        }
        Ok(())
    }
}

/// `POST /orchestrator/clean` response (`CleanResponse`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CleanResponse {
    /// Reclaimed bytes / 1,048,576 (integer division).
    #[serde(default)]
    pub reclaimed_space_mb: i64,
    /// Containers removed.
    #[serde(default)]
    pub removed_containers: i64,
    /// Networks removed.
    #[serde(default)]
    pub removed_networks: i64,
    /// Volumes removed.
    #[serde(default)]
    pub removed_volumes: i64,
    /// Images removed.
    #[serde(default)]
    pub removed_images: i64,
    /// Non-fatal errors (never set upstream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::super::wire_checks::{invalid_field, round_trip};
    use super::*;
    use crate::api::DeployedServiceStatus;
    use serde_json::json;

    #[test]
    fn empty_deploy_request_gets_every_default_and_is_a_reset() {
        let req: DeployRequest = round_trip(
            json!({}),
            json!({"mode": "Graceful", "timeout": 300, "waitForHealthy": true,
                   "dryRun": false, "strict": false, "autoRevert": true}),
        );
        assert_eq!(req, DeployRequest::default());
        assert!(req.is_reset());
        assert!(req.validate().is_ok());
    }

    #[test]
    fn deploy_request_with_topology_and_schema_spellings() {
        let req: DeployRequest = round_trip(
            json!({
                "topology": {"nodes": [
                    {"name": "auth-node", "services": ["auth", "account"],
                     "environment": {"AUTH_JWT_ISSUER": "bannou"}}
                ]},
                "backend": "compose", "mode": "force",
                "environment": {"LOG_LEVEL": "debug"},
                "timeout": 60, "waitForHealthy": false, "dryRun": true,
                "strict": true, "autoRevert": false
            }),
            json!({
                "topology": {"nodes": [
                    {"name": "auth-node", "services": ["auth", "account"], "replicas": 1,
                     "meshEnabled": true, "environment": {"AUTH_JWT_ISSUER": "bannou"}}
                ]},
                "backend": "Compose", "mode": "Force",
                "environment": {"LOG_LEVEL": "debug"},
                "timeout": 60, "waitForHealthy": false, "dryRun": true,
                "strict": true, "autoRevert": false
            }),
        );
        assert_eq!(req.backend, Some(BackendType::Compose));
        assert!(!req.is_reset());
        assert!(req.validate().is_ok());
        let req: DeployRequest =
            serde_json::from_value(json!({"backend": "in-process", "mode": "Clean"})).unwrap();
        assert_eq!(req.backend, Some(BackendType::InProcess));
        assert_eq!(req.mode, DeploymentMode::Clean);
    }

    #[test]
    fn strategy_is_additive_and_left_out_when_default() {
        let req: DeployRequest = serde_json::from_value(json!({"preset": "p"})).unwrap();
        assert_eq!(req.strategy, DeployStrategy::Replace);
        assert!(
            serde_json::to_value(&req)
                .unwrap()
                .get("strategy")
                .is_none()
        );
        let req: DeployRequest = round_trip(
            json!({"preset": "p", "strategy": "blue-green"}),
            json!({"preset": "p", "mode": "Graceful", "timeout": 300, "waitForHealthy": true,
                   "dryRun": false, "strict": false, "autoRevert": true,
                   "strategy": "blue-green"}),
        );
        assert_eq!(req.strategy, DeployStrategy::BlueGreen);
        assert!(serde_json::from_value::<DeployRequest>(json!({"strategy": "rolling"})).is_err());
    }

    #[test]
    fn reset_detection_follows_spec_5_5() {
        let with = |preset: Option<&str>, nodes: usize| DeployRequest {
            preset: preset.map(str::to_owned),
            topology: Some(ServiceTopology {
                nodes: (0..nodes)
                    .map(|i| super::super::TopologyNode::new(format!("n{i}")))
                    .collect(),
                infrastructure: None,
            }),
            ..DeployRequest::default()
        };
        assert!(with(None, 0).is_reset());
        assert!(with(Some("  "), 0).is_reset());
        assert!(with(Some(" Default "), 0).is_reset());
        assert!(with(Some("BANNOU"), 0).is_reset());
        assert!(!with(Some("http-tests"), 0).is_reset());
        assert!(!with(None, 1).is_reset());
        assert_eq!(
            with(Some(" http-tests "), 0).preset_name(),
            Some("http-tests")
        );
        assert_eq!(with(Some(" "), 0).preset_name(), None);
    }

    #[test]
    fn deploy_validation_names_fields() {
        for bad in ["../etc/passwd", "a/b", "a\\b", ".."] {
            assert_eq!(
                invalid_field::<DeployRequest>(json!({"preset": bad})),
                "preset",
                "{bad}"
            );
        }
        assert_eq!(
            invalid_field::<DeployRequest>(
                json!({"topology": {"nodes": [{"name": "a"}, {"name": ""}]}})
            ),
            "topology.nodes[1].name"
        );
        assert_eq!(
            invalid_field::<DeployRequest>(json!({"timeout": 0})),
            "timeout"
        );
        assert_eq!(
            invalid_field::<DeployRequest>(json!({"environment": {" ": "x"}})),
            "environment"
        );
        assert!(serde_json::from_value::<DeployRequest>(json!({"backend": "nomad"})).is_err());
    }

    #[test]
    fn deploy_response_reset_shape_round_trips() {
        let resp = DeployResponse {
            success: true,
            deployment_id: "5a0e2c4e-4f4c-4a77-9d38-6d0f5c1e9b11".into(),
            backend: BackendType::Compose,
            preset: Some("default".into()),
            duration: format_duration_secs(Duration::from_millis(1234)),
            topology: Some(ServiceTopology::empty()),
            services: Some(vec![DeployedService {
                name: "bannou-auth".into(),
                status: DeployedServiceStatus::Stopped,
                node: "bannou".into(),
                container_id: None,
                pod_name: None,
                endpoints: None,
            }]),
            warnings: None,
            routing_laggards: None,
            switched_routes: None,
            canary: None,
        };
        let expected = json!({
            "success": true, "deploymentId": "5a0e2c4e-4f4c-4a77-9d38-6d0f5c1e9b11",
            "backend": "Compose", "preset": "default", "duration": "1.2s",
            "topology": {"nodes": []},
            "services": [{"name": "bannou-auth", "status": "Stopped", "node": "bannou"}]
        });
        assert_eq!(serde_json::to_value(&resp).unwrap(), expected);
        let back: DeployResponse = round_trip(expected.clone(), expected);
        assert_eq!(back, resp);
    }

    #[test]
    fn duration_has_one_decimal() {
        assert_eq!(format_duration_secs(Duration::ZERO), "0.0s");
        assert_eq!(format_duration_secs(Duration::from_millis(12_345)), "12.3s");
        assert_eq!(format_duration_secs(Duration::from_secs(90)), "90.0s");
    }

    #[test]
    fn teardown_request_defaults_and_spellings() {
        let req: TeardownRequest = round_trip(
            json!({}),
            json!({"dryRun": false, "mode": "Graceful", "timeout": 60, "removeVolumes": false,
                   "removeNetworks": false, "includeInfrastructure": false}),
        );
        assert_eq!(req, TeardownRequest::default());
        let req: TeardownRequest = round_trip(
            json!({"dryRun": true, "mode": "preserve-data", "removeVolumes": true,
                   "includeInfrastructure": true}),
            json!({"dryRun": true, "mode": "PreserveData", "timeout": 60, "removeVolumes": true,
                   "removeNetworks": false, "includeInfrastructure": true}),
        );
        assert_eq!(req.mode, TeardownMode::PreserveData);
        assert!(req.validate().is_ok());
        assert_eq!(
            invalid_field::<TeardownRequest>(json!({"timeout": -5})),
            "timeout"
        );
    }

    #[test]
    fn teardown_response_omits_null_lists() {
        let resp: TeardownResponse = round_trip(
            json!({"duration": "0s", "stoppedContainers": [], "removedVolumes": []}),
            json!({"duration": "0s", "stoppedContainers": [], "removedVolumes": []}),
        );
        assert_eq!(resp.errors, None);
        round_trip::<TeardownResponse>(
            json!({"duration": "3.1s", "stoppedContainers": ["c1"], "removedVolumes": [],
                   "removedInfrastructure": ["redis"], "errors": ["x: boom"]}),
            json!({"duration": "3.1s", "stoppedContainers": ["c1"], "removedVolumes": [],
                   "removedInfrastructure": ["redis"], "errors": ["x: boom"]}),
        );
    }

    #[test]
    fn clean_request_round_trip_and_validation() {
        let req: CleanRequest = round_trip(
            json!({"targets": ["containers", "Volumes"], "olderThan": "24h",
                   "labelFilter": {"app": "bannou"}}),
            json!({"targets": ["Containers", "Volumes"], "force": false, "olderThan": "24h",
                   "labelFilter": {"app": "bannou"}}),
        );
        assert!(req.includes(CleanTarget::Volumes));
        assert!(!req.includes(CleanTarget::Images));
        let all: CleanRequest = serde_json::from_value(json!({"targets": ["all"]})).unwrap();
        assert!(all.includes(CleanTarget::Networks));
        assert_eq!(
            invalid_field::<CleanRequest>(json!({"targets": []})),
            "targets"
        );
        assert!(serde_json::from_value::<CleanRequest>(json!({})).is_err());
    }

    #[test]
    fn clean_response_defaults_counts_to_zero() {
        let resp: CleanResponse = round_trip(
            json!({"removedContainers": 2}),
            json!({"reclaimedSpaceMb": 0, "removedContainers": 2, "removedNetworks": 0,
                   "removedVolumes": 0, "removedImages": 0}),
        );
        assert_eq!(resp.removed_containers, 2);
    }
}
