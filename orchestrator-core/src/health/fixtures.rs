//! Heartbeat builders shared by the health and restart tests.

use std::time::Duration;

use uuid::Uuid;

use super::{HeartbeatAggregator, IngestChanges, IngestOutcome, ROUTING_VERSION_KEY};
use crate::events::ServiceStatus;
use crate::events::{
    InstanceCapacity, InstanceHealthStatus, ServiceHealthStatus, ServiceHeartbeatEvent,
};
use crate::names::AppId;
use crate::time::Timestamp;

/// The instant `secs` seconds after a fixed test origin.
pub(crate) fn t(secs: u64) -> Timestamp {
    Timestamp::from_unix_millis(1_780_000_000_000) + Duration::from_secs(secs)
}

/// Builds a heartbeat from instance `n` (GUID derived from `n`) with app-id `app`.
pub(crate) fn hb(n: u128, app: &str) -> HbBuilder {
    HbBuilder(ServiceHeartbeatEvent {
        event_name: "service.heartbeat".into(),
        event_id: Uuid::from_u128(0xE000 + n),
        timestamp: t(0),
        service_id: Uuid::from_u128(n),
        app_id: AppId::from(app),
        status: InstanceHealthStatus::Healthy,
        services: Vec::new(),
        capacity: None,
        issues: None,
        metadata: None,
    })
}

/// Heartbeat builder.
pub(crate) struct HbBuilder(ServiceHeartbeatEvent);

impl HbBuilder {
    pub(crate) fn service(mut self, name: &str, status: ServiceHealthStatus) -> Self {
        self.0.services.push(ServiceStatus {
            service_id: Uuid::from_u128(self.0.services.len() as u128 + 1),
            service_name: name.into(),
            status,
            version: None,
            metadata: None,
        });
        self
    }

    pub(crate) fn healthy(self, names: &[&str]) -> Self {
        names
            .iter()
            .fold(self, |b, n| b.service(n, ServiceHealthStatus::Healthy))
    }

    pub(crate) fn status(mut self, status: InstanceHealthStatus) -> Self {
        self.0.status = status;
        self
    }

    pub(crate) fn issue(mut self, issue: &str) -> Self {
        self.0
            .issues
            .get_or_insert_with(Vec::new)
            .push(issue.to_owned());
        self
    }

    pub(crate) fn routing_version(mut self, v: i64) -> Self {
        self.0.metadata = Some(serde_json::json!({ ROUTING_VERSION_KEY: v }));
        self
    }

    pub(crate) fn connections(mut self, current: i64, max: i64) -> Self {
        self.0.capacity = Some(InstanceCapacity {
            max_connections: Some(max),
            current_connections: Some(current),
            ..InstanceCapacity::default()
        });
        self
    }

    pub(crate) fn build(self) -> ServiceHeartbeatEvent {
        self.0
    }
}

/// Ingests and unwraps the recorded changes.
pub(crate) fn feed(agg: &mut HeartbeatAggregator, hb: HbBuilder, now: Timestamp) -> IngestChanges {
    match agg.ingest(&hb.build(), now) {
        IngestOutcome::Recorded(c) => c,
        other => panic!("heartbeat unexpectedly ignored: {other:?}"),
    }
}
