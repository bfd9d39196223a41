//! Events the orchestrator publishes and consumes (docs/COMPATIBILITY.md#events), with
//! upstream field names. Enums follow D1 (docs/DECISIONS.md#d1) (see [`crate::lenient`]);
//! `None` fields are omitted on output as upstream does. Each event type names its topic
//! through [`Event::TOPIC`].

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::lenient_enum;
use crate::names::{AppId, ServiceName};
use crate::time::Timestamp;

/// An event with a fixed bus topic.
pub trait Event: Clone + Serialize + for<'de> Deserialize<'de> + Send + Sync + 'static {
    /// The topic (routing key) this event is published on.
    const TOPIC: &'static str;
}

/// Topic names (docs/COMPATIBILITY.md#published-events and docs/COMPATIBILITY.md#consumed-events).
pub mod topics {
    /// `ServiceHeartbeatEvent`, consumed.
    pub const SERVICE_HEARTBEAT: &str = "bannou.service-heartbeat";
    /// `FullServiceMappingsEvent`.
    pub const FULL_SERVICE_MAPPINGS: &str = "bannou.full-service-mappings";
    /// `DeploymentEvent`.
    pub const DEPLOYMENT_EVENTS: &str = "bannou.deployment-events";
    /// `ProcessorReleasedEvent`.
    pub const PROCESSOR_RELEASED: &str = "orchestrator.processor.released";
    /// `ServiceRestartEvent`.
    pub const SERVICE_LIFECYCLE: &str = "bannou.service-lifecycle";
    /// `OrchestratorHealthPingEvent`.
    pub const HEALTH_PING: &str = "orchestrator.health-ping";
    /// `ConfigurationChangedEvent`.
    pub const CONFIGURATION_EVENTS: &str = "bannou.configuration-events";
    /// `ServiceErrorEvent`.
    pub const SERVICE_ERROR: &str = "service.error";
    /// `MappingsAppliedEvent` (ours only: a node acknowledging a mappings version).
    pub const MAPPINGS_APPLIED: &str = "bannou.mappings-applied";
}

lenient_enum! {
    /// Health of a whole instance as reported in a heartbeat (common schema, 5 values).
    /// Ordered from best to worst, as docs/COMPATIBILITY.md#should-restart-rule ranks them.
    pub enum InstanceHealthStatus {
        /// Everything fine.
        Healthy => "Healthy",
        /// Working with issues.
        Degraded => "Degraded",
        /// At capacity.
        Overloaded => "Overloaded",
        /// Graceful stop in progress (the final heartbeat).
        ShuttingDown => "Shutting_down",
        /// Not serving.
        Unavailable => "Unavailable",
    }
}

lenient_enum! {
    /// Health of one service (plugin) inside a heartbeat (common schema, 3 values).
    pub enum ServiceHealthStatus {
        /// Serving.
        Healthy => "Healthy",
        /// Serving with issues.
        Degraded => "Degraded",
        /// Not serving.
        Unavailable => "Unavailable",
    }
}

impl From<ServiceHealthStatus> for InstanceHealthStatus {
    fn from(s: ServiceHealthStatus) -> Self {
        match s {
            ServiceHealthStatus::Healthy => InstanceHealthStatus::Healthy,
            ServiceHealthStatus::Degraded => InstanceHealthStatus::Degraded,
            ServiceHealthStatus::Unavailable => InstanceHealthStatus::Unavailable,
        }
    }
}

lenient_enum! {
    /// Container backends. `InProcess` is ours (the embedded default), the others upstream's.
    pub enum BackendType {
        /// Kubernetes.
        Kubernetes => "Kubernetes",
        /// Portainer-managed Docker.
        Portainer => "Portainer",
        /// Docker Swarm.
        Swarm => "Swarm",
        /// Standalone Docker (upstream calls it Compose).
        Compose => "Compose",
        /// Nodes run as tasks inside this process (accepts `in-process`).
        InProcess => "InProcess",
    }
}

lenient_enum! {
    /// What a `DeploymentEvent` reports.
    pub enum DeploymentAction {
        /// A deploy started.
        Started => "Started",
        /// A deploy or teardown finished successfully.
        Completed => "Completed",
        /// A deploy or teardown failed.
        Failed => "Failed",
        /// A teardown started.
        TopologyChanged => "TopologyChanged",
    }
}

lenient_enum! {
    /// Status in an `OrchestratorHealthPingEvent`.
    pub enum HealthPingStatus {
        /// Healthy.
        Ok => "Ok",
        /// Degraded.
        Degraded => "Degraded",
        /// Check in progress.
        Checking => "Checking",
    }
}

lenient_enum! {
    /// Severity of a `ServiceErrorEvent`.
    pub enum ErrorSeverity {
        /// Informational.
        Info => "Info",
        /// Warning.
        Warning => "Warning",
        /// Error (the default).
        Error => "Error",
        /// Critical.
        Critical => "Critical",
    }
}

/// `eventName` of every heartbeat.
pub const HEARTBEAT_EVENT_NAME: &str = "service.heartbeat";

fn heartbeat_event_name() -> Cow<'static, str> {
    Cow::Borrowed(HEARTBEAT_EVENT_NAME)
}

fn mappings_event_name() -> String {
    "orchestrator.full_service_mappings".to_owned()
}

fn error_event_name() -> String {
    "service.error".to_owned()
}

/// Load figures an instance reports; every member is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceCapacity {
    /// Connection limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<i64>,
    /// Connections in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_connections: Option<i64>,
    /// CPU usage, 0..1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_usage: Option<f64>,
    /// Memory usage, 0..1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_usage: Option<f64>,
}

/// One plugin's entry in a heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    /// Per-plugin GUID.
    pub service_id: Uuid,
    /// Service (plugin) name, shared (a node reports the same names every beat).
    pub service_name: ServiceName,
    /// Its health.
    pub status: ServiceHealthStatus,
    /// Plugin API version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Free-form extra data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

/// `bannou.service-heartbeat`: what every Bannou host publishes periodically.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceHeartbeatEvent {
    /// Always `service.heartbeat` ([`HEARTBEAT_EVENT_NAME`], borrowed: no allocation per
    /// beat; a decoded heartbeat owns whatever text it carried).
    #[serde(default = "heartbeat_event_name")]
    pub event_name: Cow<'static, str>,
    /// Unique per event.
    pub event_id: Uuid,
    /// When it was sent.
    pub timestamp: Timestamp,
    /// The sending **instance** GUID.
    pub service_id: Uuid,
    /// The sending node's app-id.
    pub app_id: AppId,
    /// Worst status over the instance's plugins.
    pub status: InstanceHealthStatus,
    /// Per-plugin status.
    #[serde(default)]
    pub services: Vec<ServiceStatus>,
    /// Load figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<InstanceCapacity>,
    /// Problems the host recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issues: Option<Vec<String>>,
    /// Free-form extra data (ours: `routingVersion`, the mappings version the node applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

impl ServiceHeartbeatEvent {
    /// A heartbeat of instance `instance_id` on node `app_id` at `timestamp`, reporting
    /// `services` (name, status). The instance status is the worst service status
    /// (docs/COMPATIBILITY.md#consumed-events); each service gets a fresh per-plugin id.
    /// Capacity, issues and metadata are empty; set them on the result.
    pub fn new<S: Into<ServiceName>>(
        instance_id: Uuid,
        app_id: AppId,
        timestamp: Timestamp,
        services: impl IntoIterator<Item = (S, ServiceHealthStatus)>,
    ) -> Self {
        let services: Vec<ServiceStatus> = services
            .into_iter()
            .map(|(name, status)| ServiceStatus {
                service_id: Uuid::new_v4(),
                service_name: name.into(),
                status,
                version: None,
                metadata: None,
            })
            .collect();
        let status = services
            .iter()
            .map(|s| InstanceHealthStatus::from(s.status))
            .max()
            .unwrap_or(InstanceHealthStatus::Healthy);
        ServiceHeartbeatEvent {
            event_name: heartbeat_event_name(),
            event_id: Uuid::new_v4(),
            timestamp,
            service_id: instance_id,
            app_id,
            status,
            services,
            capacity: None,
            issues: None,
            metadata: None,
        }
    }
}

impl Event for ServiceHeartbeatEvent {
    const TOPIC: &'static str = topics::SERVICE_HEARTBEAT;
}

/// `bannou.full-service-mappings`: the whole service -> app-id table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FullServiceMappingsEvent {
    /// Always `orchestrator.full_service_mappings`.
    #[serde(default = "mappings_event_name")]
    pub event_name: String,
    /// Unique per event.
    pub event_id: Uuid,
    /// When it was sent.
    pub timestamp: Timestamp,
    /// Service name -> app-id (services absent here route to `defaultAppId`).
    pub mappings: BTreeMap<String, String>,
    /// Where unmapped services go (`bannou`).
    pub default_app_id: String,
    /// Monotonic table version; consumers drop anything not newer than what they applied.
    pub version: i64,
    /// The publishing orchestrator instance.
    pub source_instance_id: Uuid,
    /// `mappings.len()`.
    pub total_services: i64,
    /// Ours, additive (consumers that do not know it ignore it): the W3C `traceparent` of
    /// the change that made this table, so that a node applying it joins that trace.
    /// Absent when traces are off and on periodic rebroadcasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// Ours, additive (consumers that do not know it ignore it and keep using `mappings`):
    /// service name -> the weighted split of its calls between app-ids (D63
    /// (docs/DECISIONS.md#d63)). `mappings` still names the primary app-id of such a
    /// service (or leaves it to `defaultAppId`). Absent when no service is split.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub weighted_mappings: BTreeMap<String, Vec<WeightedTarget>>,
}

/// One app-id of a weighted split and its weight (ours, D63 (docs/DECISIONS.md#d63)): a
/// target receives `weight / sum of the split's weights` of the calls; 0 receives none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WeightedTarget {
    /// Target node.
    pub app_id: String,
    /// Its relative weight (any non-negative integer; percentages by convention).
    pub weight: u32,
}

impl Event for FullServiceMappingsEvent {
    const TOPIC: &'static str = topics::FULL_SERVICE_MAPPINGS;
}

/// `bannou.mappings-applied` (ours only, D58 (docs/DECISIONS.md#d58)): a node applied
/// a mappings version. Sent once per applied version, right after applying it, so the
/// control plane learns it before the node's next heartbeat (which reports the same
/// version in `metadata.routingVersion`). Upstream's nodes never send it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MappingsAppliedEvent {
    /// The node's app-id.
    pub app_id: AppId,
    /// The node instance (the `serviceId` of its heartbeats).
    pub service_id: Uuid,
    /// The mappings version it applied.
    pub version: i64,
    /// When it applied it.
    pub timestamp: Timestamp,
}

impl Event for MappingsAppliedEvent {
    const TOPIC: &'static str = topics::MAPPINGS_APPLIED;
}

/// `bannou.deployment-events`: deploy and teardown progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentEvent {
    /// Unique per event.
    pub event_id: Uuid,
    /// When it happened.
    pub timestamp: Timestamp,
    /// What happened.
    pub action: DeploymentAction,
    /// The deployment this belongs to.
    pub deployment_id: String,
    /// Preset name, when deploying one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// Backend used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendType>,
    /// Deployed node names / stopped container ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Vec<String>>,
    /// Failures joined with `"; "`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Event for DeploymentEvent {
    const TOPIC: &'static str = topics::DEPLOYMENT_EVENTS;
}

/// `orchestrator.processor.released`: a pool lease ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessorReleasedEvent {
    /// Unique per event.
    pub event_id: Uuid,
    /// When it happened.
    pub timestamp: Timestamp,
    /// Pool the worker belongs to.
    pub pool_type: String,
    /// The worker.
    pub processor_id: String,
    /// Whether the job succeeded.
    pub success: bool,
    /// How long the lease was held.
    pub lease_duration_ms: i64,
}

impl Event for ProcessorReleasedEvent {
    const TOPIC: &'static str = topics::PROCESSOR_RELEASED;
}

/// `bannou.service-lifecycle`: a smart restart finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRestartEvent {
    /// Unique per event.
    pub event_id: Uuid,
    /// Publish time (D14 (docs/DECISIONS.md#d14): upstream leaves the minimum date here).
    pub timestamp: Timestamp,
    /// Restarted service.
    pub service_name: String,
    /// `Smart restart - previous status: {status}`.
    pub reason: String,
    /// Whether the restart was forced.
    pub forced: bool,
    /// Environment requested for the restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_environment: Option<BTreeMap<String, String>>,
}

impl Event for ServiceRestartEvent {
    const TOPIC: &'static str = topics::SERVICE_LIFECYCLE;
}

/// `orchestrator.health-ping`: sent on each infrastructure health check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrchestratorHealthPingEvent {
    /// Unique per event.
    pub event_id: Uuid,
    /// When it was sent.
    pub timestamp: Timestamp,
    /// Always `Ok` from the orchestrator.
    pub status: HealthPingStatus,
}

impl Event for OrchestratorHealthPingEvent {
    const TOPIC: &'static str = topics::HEALTH_PING;
}

/// `bannou.configuration-events`: configuration keys changed (values never included).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationChangedEvent {
    /// Unique per event.
    pub event_id: Uuid,
    /// When it happened.
    pub timestamp: Timestamp,
    /// The configuration version now current.
    pub config_version: i64,
    /// Changed key names (`services.auth.enabled`, `env.AUTH_JWT_ISSUER`).
    pub changed_keys: Vec<String>,
}

impl Event for ConfigurationChangedEvent {
    const TOPIC: &'static str = topics::CONFIGURATION_EVENTS;
}

/// `service.error`: an unexpected internal failure (docs/COMPATIBILITY.md#external-dependencies).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceErrorEvent {
    /// Always `service.error`.
    #[serde(default = "error_event_name")]
    pub event_name: String,
    /// Unique per event.
    pub event_id: Uuid,
    /// When it happened.
    pub timestamp: Timestamp,
    /// Instance GUID of the reporter.
    pub service_id: Uuid,
    /// `orchestrator`.
    pub service_name: String,
    /// Reporter's app-id.
    pub app_id: String,
    /// Operation that failed (`RollbackConfiguration`).
    pub operation: String,
    /// Short error kind (`restore_failed`).
    pub error_type: String,
    /// Human message.
    pub message: String,
    /// Request correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// Severity (default `Error`).
    #[serde(default = "default_severity")]
    pub severity: ErrorSeverity,
    /// Dependency at fault (`redis`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependency: Option<String>,
    /// Endpoint involved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Extra structured detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
    /// Stack or cause chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
}

fn default_severity() -> ErrorSeverity {
    ErrorSeverity::Error
}

impl Event for ServiceErrorEvent {
    const TOPIC: &'static str = topics::SERVICE_ERROR;
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::testkit::require::{fixtures_dir, upstream_data};

    fn read_json(path: &Path) -> serde_json::Value {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The `*.json` file names in `dir`, sorted.
    fn json_files(dir: &Path) -> Vec<String> {
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|f| f.ends_with(".json"))
            .collect();
        files.sort();
        files
    }

    fn our_events() -> PathBuf {
        fixtures_dir().join("events")
    }

    /// Parses the example `dir/file` into `E` and writes it back: the JSON must be
    /// identical (same fields, same enum spelling, same timestamp text, nulls omitted).
    fn round_trip<E: Event + std::fmt::Debug + PartialEq>(dir: &Path, file: &str) -> E {
        let original = read_json(&dir.join(file));
        let typed: E =
            serde_json::from_value(original.clone()).unwrap_or_else(|e| panic!("{file}: {e}"));
        let written = serde_json::to_value(&typed).unwrap();
        assert_eq!(written, original, "{file} does not round-trip");
        let again: E = serde_json::from_value(written).unwrap();
        assert_eq!(again, typed);
        typed
    }

    #[test]
    fn every_event_fixture_round_trips() {
        let dir = our_events();
        assert_eq!(
            json_files(&dir),
            [
                "ConfigurationChangedEvent.json",
                "DeploymentEvent.json",
                "FullServiceMappingsEvent.json",
                "OrchestratorHealthPingEvent.json",
                "ProcessorReleasedEvent.json",
                "ServiceErrorEvent.json",
                "ServiceHeartbeatEvent.json",
                "ServiceRestartEvent.json",
            ],
            "one fixture per event type, each round-tripped below"
        );

        let hb: ServiceHeartbeatEvent = round_trip(&dir, "ServiceHeartbeatEvent.json");
        assert_eq!(
            (hb.status, hb.services.len(), hb.services[2].status),
            (
                InstanceHealthStatus::Degraded,
                3,
                ServiceHealthStatus::Degraded
            )
        );
        assert_eq!(hb.services[2].version, None, "absent members stay absent");
        let cap = hb.capacity.unwrap();
        assert_eq!(
            (cap.max_connections, cap.current_connections),
            (Some(2000), Some(148))
        );
        assert_eq!((cap.cpu_usage, cap.memory_usage), (Some(0.37), Some(0.58)));
        assert_eq!(hb.issues.unwrap().len(), 1);
        assert_eq!(hb.metadata.unwrap()["routingVersion"], 31);

        let m: FullServiceMappingsEvent = round_trip(&dir, "FullServiceMappingsEvent.json");
        assert_eq!(
            (m.version, m.mappings["connect"].as_str(), m.total_services),
            (311, "bannou-relay", 5)
        );
        let d: DeploymentEvent = round_trip(&dir, "DeploymentEvent.json");
        assert_eq!(
            (d.action, d.backend),
            (DeploymentAction::Failed, Some(BackendType::Swarm))
        );
        assert_eq!(d.error.unwrap().split("; ").count(), 2);
        let r: ProcessorReleasedEvent = round_trip(&dir, "ProcessorReleasedEvent.json");
        assert_eq!((r.success, r.lease_duration_ms), (false, 1250));
        assert!(r.processor_id.starts_with(&format!("{}-", r.pool_type)));
        let s: ServiceRestartEvent = round_trip(&dir, "ServiceRestartEvent.json");
        assert!(s.forced);
        assert_eq!(
            s.new_environment.unwrap()["LEADERBOARD_CACHE_SECONDS"],
            "15"
        );
        let c: ConfigurationChangedEvent = round_trip(&dir, "ConfigurationChangedEvent.json");
        assert_eq!((c.config_version, c.changed_keys.len()), (12, 2));
        let p: OrchestratorHealthPingEvent = round_trip(&dir, "OrchestratorHealthPingEvent.json");
        assert_eq!(p.status, HealthPingStatus::Degraded);
        let e: ServiceErrorEvent = round_trip(&dir, "ServiceErrorEvent.json");
        assert_eq!(
            (e.severity, e.dependency.as_deref(), e.event_name.as_str()),
            (ErrorSeverity::Critical, Some("redis"), "service.error")
        );
    }

    #[test]
    fn schema_spelling_input_is_written_back_in_runtime_spelling() {
        let mut v = read_json(&our_events().join("DeploymentEvent.json"));
        v["action"] = "topology-changed".into();
        v["backend"] = "compose".into();
        let d: DeploymentEvent = serde_json::from_value(v).unwrap();
        let out = serde_json::to_value(&d).unwrap();
        assert_eq!(
            (out["action"].as_str(), out["backend"].as_str()),
            (Some("TopologyChanged"), Some("Compose"))
        );

        let mut v = read_json(&our_events().join("ServiceErrorEvent.json"));
        v["severity"] = "warning".into();
        v.as_object_mut().unwrap().remove("eventName");
        let e: ServiceErrorEvent = serde_json::from_value(v).unwrap();
        let out = serde_json::to_value(&e).unwrap();
        assert_eq!(
            (out["severity"].as_str(), out["eventName"].as_str()),
            (Some("Warning"), Some("service.error"))
        );
    }

    /// The extra check against upstream's own examples (`BANNOU_UPSTREAM_DATA`).
    #[test]
    fn every_upstream_event_example_round_trips() {
        let Some(upstream) = upstream_data("every_upstream_event_example_round_trips") else {
            return;
        };
        let dir = upstream.join("spec/events");
        assert_eq!(
            json_files(&dir).len(),
            7,
            "a new example appeared: give it a round-trip below"
        );

        let hb: ServiceHeartbeatEvent = round_trip(&dir, "ServiceHeartbeatEvent.json");
        assert_eq!(
            (hb.services.len(), hb.services[2].status),
            (3, ServiceHealthStatus::Degraded)
        );
        assert_eq!(hb.capacity.unwrap().memory_usage, Some(0.21));
        let m: FullServiceMappingsEvent = round_trip(&dir, "FullServiceMappingsEvent.json");
        assert_eq!(
            (m.version, m.mappings["auth"].as_str()),
            (1842, "bannou-auth")
        );
        let d: DeploymentEvent = round_trip(&dir, "DeploymentEvent.json");
        assert_eq!(
            (d.action, d.backend),
            (DeploymentAction::Completed, Some(BackendType::Compose))
        );
        let r: ProcessorReleasedEvent = round_trip(&dir, "ProcessorReleasedEvent.json");
        assert_eq!(r.lease_duration_ms, 48213);
        let s: ServiceRestartEvent = round_trip(&dir, "ServiceRestartEvent.json");
        assert!(!s.forced);
        let c: ConfigurationChangedEvent = round_trip(&dir, "ConfigurationChangedEvent.json");
        assert_eq!(c.changed_keys.len(), 3);
        let p: OrchestratorHealthPingEvent = round_trip(&dir, "OrchestratorHealthPingEvent.json");
        assert_eq!(p.status, HealthPingStatus::Ok);
    }

    #[test]
    fn a_new_heartbeat_reports_the_worst_service_status() {
        let hb = ServiceHeartbeatEvent::new(
            Uuid::nil(),
            AppId::from("n"),
            Timestamp::UNIX_EPOCH,
            [
                ("auth", ServiceHealthStatus::Healthy),
                ("account", ServiceHealthStatus::Degraded),
            ],
        );
        assert_eq!(
            (hb.status, hb.services.len(), &*hb.event_name),
            (InstanceHealthStatus::Degraded, 2, "service.heartbeat")
        );
        let empty = ServiceHeartbeatEvent::new::<&str>(
            Uuid::nil(),
            AppId::from("n"),
            Timestamp::UNIX_EPOCH,
            [],
        );
        assert_eq!(empty.status, InstanceHealthStatus::Healthy);
    }

    #[test]
    fn instance_status_ranks_worst_last() {
        assert!(InstanceHealthStatus::Healthy < InstanceHealthStatus::Degraded);
        assert!(InstanceHealthStatus::ShuttingDown < InstanceHealthStatus::Unavailable);
        assert_eq!(
            "shutting_down".parse::<InstanceHealthStatus>().unwrap(),
            InstanceHealthStatus::ShuttingDown
        );
        assert_eq!(
            "in-process".parse::<BackendType>().unwrap(),
            BackendType::InProcess
        );
    }

    #[test]
    fn heartbeat_accepts_schema_spellings_and_fills_event_name() {
        let json = r#"{"eventId":"6f1c2a8e-3b4d-4e5f-9a10-2b3c4d5e6f70","timestamp":"2026-03-02T14:05:31.512Z",
            "serviceId":"a3e9d7c1-58b2-4f0e-8d61-0c2f4b9e7a15","appId":"n1","status":"shutting_down",
            "services":[{"serviceId":"1b7f3c52-9e04-4a6d-b2c8-7d5e1f0a9c34","serviceName":"auth","status":"degraded"}]}"#;
        let hb: ServiceHeartbeatEvent = serde_json::from_str(json).unwrap();
        assert_eq!(hb.event_name, "service.heartbeat");
        assert_eq!(hb.status, InstanceHealthStatus::ShuttingDown);
        assert_eq!(hb.services[0].status, ServiceHealthStatus::Degraded);
        let out = serde_json::to_value(&hb).unwrap();
        assert_eq!(out["status"], "Shutting_down");
        assert!(out.get("capacity").is_none(), "None fields are omitted");
    }
}
