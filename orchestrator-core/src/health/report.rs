//! The GetServicesHealth report (docs/COMPATIBILITY.md#services-health,
//! docs/COMPATIBILITY.md#health-report): its wire types and how the aggregator builds it.

use serde::{Deserialize, Serialize};

use super::aggregator::HeartbeatAggregator;
use super::instance::ServiceInstance;
use super::{DROPPED_HEARTBEATS_KEY, ROUTING_VERSION_KEY};
use crate::api::ServiceHealthRequest;
use crate::api::enums::ServiceHealthSource;
use crate::events::{InstanceCapacity, InstanceHealthStatus};
use crate::time::Timestamp;

/// `ServiceHealthEntry`: one service on one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceHealthEntry {
    /// Service name (D4; upstream put the instance GUID here).
    pub service_id: String,
    /// App-id of the node running it.
    pub app_id: String,
    /// Derived status (`Healthy`, `Degraded` or `Unavailable`).
    pub status: InstanceHealthStatus,
    /// Receive time of the node's last heartbeat (now for control-plane entries).
    pub last_seen: Timestamp,
    /// Capacity from the node's last heartbeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<InstanceCapacity>,
    /// `instanceId`, plus `issues`, `degradedSince` and `routingVersion` when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

/// `ServiceHealthReport`: the GetServicesHealth response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceHealthReport {
    /// When the report was generated.
    pub timestamp: Timestamp,
    /// The source filter applied (echo).
    pub source: ServiceHealthSource,
    /// App-id of the control plane.
    pub control_plane_app_id: String,
    /// `healthyServices.len() + unhealthyServices.len()`.
    pub total_services: usize,
    /// Healthy / total x 100, or 0 when total is 0.
    pub health_percentage: f64,
    /// Entries whose status is not `Unavailable`.
    pub healthy_services: Vec<ServiceHealthEntry>,
    /// Entries that are `Unavailable` (reported so, shutting down, or silent past the timeout).
    pub unhealthy_services: Vec<ServiceHealthEntry>,
}

/// Case-insensitive substring test; an empty or absent filter matches everything.
struct NameFilter(Option<String>);

impl NameFilter {
    fn new(filter: Option<&str>) -> Self {
        NameFilter(filter.filter(|f| !f.is_empty()).map(|f| f.to_lowercase()))
    }

    fn matches(&self, name: &str) -> bool {
        match &self.0 {
            None => true,
            Some(needle) => name.to_lowercase().contains(needle.as_str()),
        }
    }
}

impl HeartbeatAggregator {
    /// The GetServicesHealth report (docs/COMPATIBILITY.md#health-report, per service per
    /// D4) at `now`.
    ///
    /// Deployed entries come first (sorted by service, app-id, instance), then one
    /// always-healthy entry per control-plane plugin (`control_plane_plugins`, in the given
    /// order, with `appId` = `control_plane_app_id`).
    pub fn report<S: AsRef<str>>(
        &self,
        request: &ServiceHealthRequest,
        control_plane_app_id: &str,
        control_plane_plugins: &[S],
        now: Timestamp,
    ) -> ServiceHealthReport {
        let filter = NameFilter::new(request.service_filter.as_deref());
        let timeout = self.config().heartbeat_timeout;
        let mut healthy = Vec::new();
        let mut unhealthy = Vec::new();

        if request.source != ServiceHealthSource::ControlPlaneOnly {
            for name in self.service_names() {
                if !filter.matches(name) {
                    continue;
                }
                for si in self.instances_of(name) {
                    if self.is_retired(si.instance_id, now) {
                        continue;
                    }
                    let status = si.status_at(now, timeout);
                    let entry = deployed_entry(&si, status);
                    if status == InstanceHealthStatus::Unavailable {
                        unhealthy.push(entry);
                    } else {
                        healthy.push(entry);
                    }
                }
            }
        }
        if request.source != ServiceHealthSource::DeployedOnly {
            for plugin in control_plane_plugins {
                let plugin = plugin.as_ref();
                if filter.matches(plugin) {
                    healthy.push(ServiceHealthEntry {
                        service_id: plugin.to_owned(),
                        app_id: control_plane_app_id.to_owned(),
                        status: InstanceHealthStatus::Healthy,
                        last_seen: now,
                        capacity: None,
                        metadata: None,
                    });
                }
            }
        }

        let total = healthy.len() + unhealthy.len();
        let health_percentage = if total == 0 {
            0.0
        } else {
            healthy.len() as f64 / total as f64 * 100.0
        };
        ServiceHealthReport {
            timestamp: now,
            source: request.source,
            control_plane_app_id: control_plane_app_id.to_owned(),
            total_services: total,
            health_percentage,
            healthy_services: healthy,
            unhealthy_services: unhealthy,
        }
    }
}

fn deployed_entry(si: &ServiceInstance<'_>, status: InstanceHealthStatus) -> ServiceHealthEntry {
    let mut meta = serde_json::Map::new();
    meta.insert(
        "instanceId".to_owned(),
        serde_json::Value::String(si.instance_id.to_string()),
    );
    if !si.issues.is_empty() {
        meta.insert("issues".to_owned(), serde_json::json!(si.issues));
    }
    if let Some(since) = si.degraded_since {
        meta.insert("degradedSince".to_owned(), serde_json::json!(since));
    }
    if let Some(v) = si.routing_version {
        meta.insert(ROUTING_VERSION_KEY.to_owned(), serde_json::json!(v));
    }
    if let Some(n) = si.dropped_heartbeats {
        meta.insert(DROPPED_HEARTBEATS_KEY.to_owned(), serde_json::json!(n));
    }
    ServiceHealthEntry {
        service_id: si.service.to_owned(),
        app_id: si.app_id.as_str().to_owned(),
        status,
        last_seen: si.last_seen,
        capacity: si.capacity.cloned(),
        metadata: Some(serde_json::Value::Object(meta)),
    }
}
