//! Records the orchestrator keeps in its state store (docs/COMPATIBILITY.md#keys-and-records).
//!
//! Internal records use PascalCase field names on the wire, as upstream writes them and as
//! OpenResty reads routing records (`AppId`, `Host`, `Port`). Adapters store them as JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::events::{InstanceHealthStatus, ServiceHealthStatus};
use crate::time::Timestamp;

/// Last heartbeat of one instance (`orch:hb:{appId}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HeartbeatRecord {
    /// Instance GUID (the heartbeat's `serviceId`).
    pub instance_id: String,
    /// Node app-id.
    pub app_id: String,
    /// Instance status.
    pub status: InstanceHealthStatus,
    /// Receive time (not the event's timestamp).
    pub last_seen: Timestamp,
    /// Services the instance reported.
    pub services: Vec<String>,
    /// Reported issues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issues: Option<Vec<String>>,
    /// Connection limit (0 when unknown).
    #[serde(default)]
    pub max_connections: i64,
    /// Connections in use (0 when unknown).
    #[serde(default)]
    pub current_connections: i64,
    /// CPU usage 0..1 (0 when unknown).
    #[serde(default)]
    pub cpu_usage: f64,
    /// Memory usage 0..1 (0 when unknown).
    #[serde(default)]
    pub memory_usage: f64,
}

/// Where one service is routed (`orch:rt:{service}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RoutingRecord {
    /// Target node.
    pub app_id: String,
    /// Host name to reach it (= app-id).
    pub host: String,
    /// Port (`DefaultServicePort`).
    pub port: u16,
    /// Health of the service on that node, when known.
    #[serde(default)]
    pub status: Option<ServiceHealthStatus>,
    /// Last write.
    pub last_updated: Timestamp,
    /// Load 0..100.
    #[serde(default)]
    pub load_percent: i32,
}

/// One service in a deployment configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceDeploymentConfig {
    /// Whether it is enabled.
    pub enabled: bool,
    /// Node it runs on (routing target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    /// Replica count.
    #[serde(default = "one")]
    pub replicas: u32,
    /// Per-service settings.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

fn one() -> u32 {
    1
}

/// One version of the deployment configuration (`orch:cfg:current`, `orch:cfg:history:{n}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeploymentConfiguration {
    /// Version number (1, 2, ...), assigned when saved.
    pub version: u64,
    /// When this version was saved.
    pub timestamp: Timestamp,
    /// Deployment that produced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<String>,
    /// Preset deployed, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset_name: Option<String>,
    /// Services by name.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceDeploymentConfig>,
    /// Environment applied.
    #[serde(default)]
    pub environment_variables: BTreeMap<String, String>,
    /// Human description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The resolved topology that was deployed (ours; lets rollback redeploy exactly).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<crate::topology::ResolvedNode>,
    /// Set once every service of this version reported healthy (ours).
    #[serde(default)]
    pub stable: bool,
    /// The backend its nodes run on (ours): after a restart the control plane plans and
    /// reconciles there, not on `DefaultBackend` (D6 (docs/DECISIONS.md#d6) kept across restarts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<crate::events::BackendType>,
}

impl DeploymentConfiguration {
    /// An unsaved configuration (version 0) with no services, environment or nodes.
    pub fn empty(timestamp: Timestamp) -> Self {
        DeploymentConfiguration {
            version: 0,
            timestamp,
            deployment_id: None,
            preset_name: None,
            services: BTreeMap::new(),
            environment_variables: BTreeMap::new(),
            description: None,
            nodes: Vec::new(),
            stable: false,
            backend: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_uses_pascal_case_and_reads_upstream_records() {
        let mut c = DeploymentConfiguration::empty(Timestamp::from_unix_millis(0));
        c.version = 3;
        c.services.insert(
            "auth".into(),
            ServiceDeploymentConfig {
                enabled: true,
                app_id: Some("node-a".into()),
                replicas: 1,
                settings: BTreeMap::new(),
            },
        );
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["Version"], 3);
        assert_eq!(json["Services"]["auth"]["AppId"], "node-a");
        assert_eq!(
            serde_json::from_value::<DeploymentConfiguration>(json).unwrap(),
            c
        );
        // Upstream writes `PreviousDeploymentState` and omits our fields: still readable.
        let upstream = r#"{"Version":2,"Timestamp":"2026-03-02T14:05:31.512+00:00",
            "Services":{"auth":{"Enabled":false}},"EnvironmentVariables":{"A":"1"},
            "PreviousDeploymentState":{"Version":1}}"#;
        let read: DeploymentConfiguration = serde_json::from_str(upstream).unwrap();
        assert_eq!(read.version, 2);
        assert_eq!(read.services["auth"].replicas, 1);
        assert!(!read.stable && read.nodes.is_empty());
    }
}
