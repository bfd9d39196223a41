//! Routing changes, one way for every use case: the table changes, the mappings are
//! broadcast when the service -> app-id mapping changed (D11), the routes are written to
//! the store, OpenResty is told; and the `service-routing` endpoint
//! (docs/COMPATIBILITY.md#service-routing) that reads the table.

use orchestrator_core::error_source::Chain;
use std::collections::BTreeMap;

use orchestrator_core::api::*;
use orchestrator_core::records::RoutingRecord;
use orchestrator_core::{AppId, Timestamp};
use orchestrator_routing::RoutingTable;
use orchestrator_routing::table::canonical_service;

use super::{Answer, OrchestratorService, ServiceResult};

/// Routes `services` to `app_id` (authoritative, docs/COMPATIBILITY.md#routing-operations
/// SetServiceRouting); returns the services written, changed or not, so their store records
/// are refreshed too. A service that cannot be routed (infrastructure, `orchestrator`) is
/// skipped: validation refused such nodes before anything was deployed.
pub(super) fn route_to(
    table: &mut RoutingTable,
    services: &[String],
    app_id: &AppId,
    now: Timestamp,
    port: u16,
) -> Vec<String> {
    let mut written = Vec::new();
    for s in services {
        match table.set_route(s, app_id.clone(), now, port) {
            Ok(_) => written.push(canonical_service(s)),
            Err(e) => tracing::debug!(service = %s, error = %e, "service not routed"),
        }
    }
    written
}
impl OrchestratorService {
    /// Changes the routing table with `change` (which returns the services it wrote or
    /// removed), publishes the mappings at once when the service -> app-id mapping changed
    /// (D11), and writes those services' routes to the store (a route back to the default
    /// is deleted: absent means default). Store failures do not undo anything: they come
    /// back as warnings, and the heartbeats' refreshes and later writes repair the store.
    pub(super) async fn change_routes(
        &self,
        change: impl FnOnce(&mut RoutingTable, Timestamp, u16) -> Vec<String>,
    ) -> Vec<String> {
        let deps = &self.deps;
        let now = deps.clock.now();
        let (changed, records): (bool, Vec<(String, Option<RoutingRecord>)>) = {
            let mut state = deps.health.lock();
            let before = state.routing.mappings();
            let mut touched = change(&mut state.routing, now, deps.settings.default_service_port);
            touched.sort();
            touched.dedup();
            let records = touched
                .into_iter()
                .map(|s| {
                    let record = state.routing.route(&s).map(|r| r.to_record());
                    (s, record)
                })
                .collect();
            (state.routing.mappings() != before, records)
        };
        if changed {
            deps.broadcaster.table_changed();
        }
        let mut warnings = Vec::new();
        for (service, record) in records {
            let written = match &record {
                Some(r) => deps
                    .store
                    .put_route(&service, r, deps.settings.routing_ttl)
                    .await
                    .map(|()| true),
                None => deps.store.remove_route(&service).await,
            };
            if let Err(e) = written {
                tracing::warn!(service = %service, error = %Chain(&e), "persisting a route failed");
                warnings.push(format!("route of {service} not persisted: {e}"));
            }
        }
        warnings
    }

    /// Best-effort OpenResty route-cache invalidation
    /// (docs/COMPATIBILITY.md#openresty-invalidation): never fails the caller.
    pub(super) async fn invalidate_openresty(&self) {
        let Some(config) = &self.deps.settings.openresty else {
            return;
        };
        match orchestrator_backends::http::HttpClient::new() {
            Ok(client) => {
                client.invalidate(&config.invalidation_request()).await;
            }
            Err(e) => tracing::warn!(error = %e, "no HTTP client for OpenResty invalidation"),
        }
    }

    /// POST /orchestrator/service-routing (docs/COMPATIBILITY.md#service-routing): the live
    /// routing table (services routed away from the default), filtered by a
    /// case-insensitive name prefix.
    pub async fn service_routing(
        &self,
        request: GetServiceRoutingRequest,
    ) -> ServiceResult<ServiceRoutingResponse> {
        let (mappings, default_app_id) = {
            let state = self.deps.health.lock();
            let mappings: BTreeMap<String, String> = state
                .routing
                .mappings()
                .into_iter()
                .filter(|(s, _)| request.matches(s))
                .map(|(s, a)| (s, a.to_string()))
                .collect();
            (mappings, state.routing.default_app_id().to_string())
        };
        let deployment_id = self.current_config().await?.and_then(|c| c.deployment_id);
        // Routing lag (ours only): the nodes' applied versions as the routing metrics
        // read them; the current version is the store's (the metrics learn it from the
        // bus a moment after it is published), or the metrics' when the store is away.
        let (seen_version, applied) = self.metrics.routing_lag();
        let stored = self.deps.store.mappings_version().await.ok();
        let mappings_version = stored.filter(|v| *v > 0).max(seen_version);
        let node_versions: Vec<NodeMappingsVersion> = applied
            .into_iter()
            .map(|(app_id, applied_version)| NodeMappingsVersion {
                app_id,
                applied_version,
            })
            .collect();
        let nodes_behind = mappings_version.map(|current| {
            node_versions
                .iter()
                .filter(|n| n.applied_version < current)
                .cloned()
                .collect()
        });
        Ok(Answer::ok(ServiceRoutingResponse {
            total_services: mappings.len() as i64,
            mappings,
            default_app_id,
            generated_at: self.deps.clock.now(),
            deployment_id,
            mappings_version,
            node_versions: (!node_versions.is_empty()).then_some(node_versions),
            nodes_behind,
        }))
    }
}
