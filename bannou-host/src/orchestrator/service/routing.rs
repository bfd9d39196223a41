//! Routing changes, one way for every use case: the table changes, the mappings are
//! broadcast when the service -> app-id mapping changed (D11), the routes are written to
//! the store, OpenResty is told; before nodes stop, the routes that left them are
//! published at once and the live consumers are waited for (D58, [`settle_routes`]);
//! weighted splits (D63, [`set_route_weights`]) change in one version and are waited for
//! the same way; and the `service-routing` endpoint (docs/COMPATIBILITY.md#service-routing)
//! that reads the table.
//!
//! [`settle_routes`]: OrchestratorService::settle_routes
//! [`set_route_weights`]: OrchestratorService::set_route_weights

use orchestrator_core::error_source::Chain;
use std::collections::BTreeMap;
use std::time::Duration;

use orchestrator_core::api::*;
use orchestrator_core::events::WeightedTarget;
use orchestrator_core::records::RoutingRecord;
use orchestrator_core::{AppId, Timestamp};
use orchestrator_routing::table::{canonical_service, is_infrastructure, is_orchestrator};
use orchestrator_routing::{RoutingTable, WeightedTargets};

use super::{Answer, OrchestratorService, ServiceError, ServiceResult};
use crate::orchestrator::routing_acks;

/// A change of one service's weighted split (D63 (docs/DECISIONS.md#d63)): `Some` sets
/// it, `None` clears it (every call back to the primary).
pub type WeightChange = (String, Option<WeightedTargets>);

/// What [`OrchestratorService::set_route_weights`] did once the consumers caught up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteWeightsSettled {
    /// The mappings version that carries the change (the last published when nothing
    /// changed); `None` when it could not be published (see `warnings`).
    pub mappings_version: Option<i64>,
    /// Live consumers that had not applied that version when the wait timed out (D58).
    pub laggards: Vec<NodeMappingsVersion>,
    /// What went wrong without undoing the change (publishing failed).
    pub warnings: Vec<String>,
}

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
/// What [`OrchestratorService::settle_routes_measured`] did.
#[derive(Debug, Clone)]
pub(super) struct Settled {
    /// The mappings version the consumers were waited for (`None`: not published).
    pub version: Option<i64>,
    /// How long the wait took (zero when no wait was made).
    pub waited: Duration,
    /// Why nothing was waited for, when the table could not be published.
    pub warning: Option<String>,
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
            let before = (state.routing.mappings(), state.routing.weighted());
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
            let after = (state.routing.mappings(), state.routing.weighted());
            (after != before, records)
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

    /// True when the routing table sends a service to one of `apps`, as its route or as a
    /// target of its weighted split.
    pub(super) fn routes_to(&self, apps: &[AppId]) -> bool {
        let state = self.deps.health.lock();
        state.routing.mappings().values().any(|a| apps.contains(a))
            || state
                .routing
                .weighted()
                .values()
                .any(|w| apps.iter().any(|a| w.names(a)))
    }

    /// Sets or clears the weighted splits of several services in ONE mappings version
    /// (D63 (docs/DECISIONS.md#d63)), publishes it at once and waits until every live
    /// consumer applied it, as before nodes stop (D58 (docs/DECISIONS.md#d58),
    /// [`settle_routes`](Self::settle_routes)): when it returns, consumers of ours split
    /// their calls the new way (or the laggards are named). The services' routes, their
    /// primaries, are not touched. A blank, infrastructure or `orchestrator` service
    /// refuses the whole change before anything moves; a service named twice takes its
    /// last change.
    pub async fn set_route_weights(
        &self,
        changes: &[WeightChange],
    ) -> ServiceResult<RouteWeightsSettled> {
        for (service, _) in changes {
            let key = canonical_service(service);
            if key.is_empty() || is_infrastructure(&key) || is_orchestrator(&key) {
                return Err(ServiceError::bad_request(format!(
                    "service `{}` cannot carry a weighted route",
                    service.trim()
                )));
            }
        }
        let ((mut warnings, settled), laggards) = routing_acks::collecting(async {
            let warnings = self
                .change_routes(|table, _, _| {
                    for (service, split) in changes {
                        match split {
                            Some(split) => {
                                // Checked above: only routable services get here.
                                if let Err(e) = table.set_weights(service, split.clone()) {
                                    tracing::debug!(service = %service, error = %e, "split not set");
                                }
                            }
                            None => {
                                table.clear_weights(service);
                            }
                        }
                    }
                    // Splits are not stored (D63): no route record to write.
                    Vec::new()
                })
                .await;
            (warnings, self.settle_routes_measured(&[]).await)
        })
        .await;
        warnings.extend(settled.warning);
        let mappings_version = settled.version;
        Ok(Answer::ok(RouteWeightsSettled {
            mappings_version,
            laggards,
            warnings,
        }))
    }

    /// Clears the weighted splits of `services` in one version and waits for the
    /// consumers: [`set_route_weights`](Self::set_route_weights) with `None` for each.
    pub async fn clear_route_weights(
        &self,
        services: &[String],
    ) -> ServiceResult<RouteWeightsSettled> {
        let changes: Vec<WeightChange> = services.iter().map(|s| (s.clone(), None)).collect();
        self.set_route_weights(&changes).await
    }

    /// Moves every route of `apps` back to the default, then [`settle_routes`]: what a
    /// step does before it stops `apps` (once for all of them). Returns warnings.
    ///
    /// [`settle_routes`]: Self::settle_routes
    pub(super) async fn release_routes(&self, apps: &[AppId]) -> Vec<String> {
        if apps.is_empty() {
            return Vec::new();
        }
        let mut warnings = self
            .change_routes(|table, _, _| apps.iter().flat_map(|a| table.release_app(a)).collect())
            .await;
        warnings.extend(self.settle_routes(apps).await);
        warnings
    }

    /// Before `stopping` stop (D58 (docs/DECISIONS.md#d58)): stops listening to their
    /// heartbeats (`stopping_instances`; a caller whose stop fails lifts that with
    /// `expect_node`), publishes the table at once when it holds a change not yet
    /// published (else the version published last already routes nothing to them), then
    /// waits until every live consumer other than `stopping` applied that version, at
    /// most `routing_ack_timeout`. A consumer still behind then is logged, counted,
    /// published as a `routing.ack-timeout` control event and named in the answer of the
    /// operation (`routing_acks::collecting`); the step goes on either way. Returns a
    /// warning when the table could not be published.
    pub(super) async fn settle_routes(&self, stopping: &[AppId]) -> Option<String> {
        self.settle_routes_measured(stopping).await.warning
    }

    /// [`settle_routes`](Self::settle_routes), saying which version the consumers were
    /// waited for and how long.
    pub(super) async fn settle_routes_measured(&self, stopping: &[AppId]) -> Settled {
        let deps = &self.deps;
        // From here on the stopping nodes' beats are ignored: a node still beating for a
        // service that went back to the default would claim it again while the consumers
        // catch up (docs/COMPATIBILITY.md#heartbeat-consumption step d).
        for app in stopping {
            self.stopping_instances(app);
        }
        let version = match deps.broadcaster.published_version() {
            Some(v) => v,
            None => match deps.broadcaster.publish_now().await {
                Some(v) => v,
                None => {
                    return Settled {
                        version: None,
                        waited: Duration::ZERO,
                        warning: Some(
                            "the new routes could not be published; nodes stop without \
                             waiting for the consumers to follow"
                                .to_owned(),
                        ),
                    };
                }
            },
        };
        let settled = |waited| Settled {
            version: Some(version),
            waited,
            warning: None,
        };
        let timeout = deps.settings.routing_ack_timeout;
        if timeout.is_zero() {
            return settled(Duration::ZERO);
        }
        let wait = routing_acks::wait_for_consumers(
            &deps.health,
            deps.clock.as_ref(),
            version,
            stopping,
            timeout,
        )
        .await;
        if wait.acknowledged() {
            return settled(wait.waited);
        }
        let names: Vec<&str> = wait.laggards.iter().map(|n| n.app_id.as_str()).collect();
        tracing::warn!(
            version,
            laggards = ?names,
            waited_ms = wait.waited.as_millis() as u64,
            "live consumers did not apply the new routes in time; stopping the old nodes anyway"
        );
        self.metrics.routing_ack_timed_out();
        routing_acks::note_laggards(&wait.laggards);
        crate::control_events::publish(
            deps.bus.as_ref(),
            crate::control_events::ControlEvent::RoutingAckTimeout {
                replica: deps.leader.candidate_id().to_owned(),
                version,
                laggards: wait.laggards.clone(),
                stopping: stopping.iter().map(ToString::to_string).collect(),
                waited_ms: u64::try_from(wait.waited.as_millis()).unwrap_or(u64::MAX),
            },
        )
        .await;
        settled(wait.waited)
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
        let (mappings, weighted_mappings, default_app_id) = {
            let state = self.deps.health.lock();
            let weighted: BTreeMap<String, Vec<WeightedTarget>> = state
                .routing
                .weighted()
                .into_iter()
                .filter(|(s, _)| request.matches(s))
                .map(|(s, w)| (s, w.to_wire()))
                .collect();
            let mappings: BTreeMap<String, String> = state
                .routing
                .mappings()
                .into_iter()
                .filter(|(s, _)| request.matches(s))
                .map(|(s, a)| (s, a.to_string()))
                .collect();
            (
                mappings,
                weighted,
                state.routing.default_app_id().to_string(),
            )
        };
        let deployment_id = self.current_config().await?.and_then(|c| c.deployment_id);
        // Routing lag (ours only): each live node's applied version as the routing
        // acknowledgement waits read it (heartbeats and bus acknowledgements, D58); the
        // current version is the store's (the metrics learn it from the bus a moment
        // after it is published), or the metrics' when the store is away.
        let (seen_version, _) = self.metrics.routing_lag();
        let stored = self.deps.store.mappings_version().await.ok();
        let mappings_version = stored.filter(|v| *v > 0).max(seen_version);
        let now = self.deps.clock.now();
        let applied = self.deps.health.lock().aggregator.applied_mappings(now);
        let node_versions: Vec<NodeMappingsVersion> = applied
            .into_iter()
            .filter(|(app_id, _)| !app_id.is_control_plane())
            .filter_map(|(app_id, v)| {
                Some(NodeMappingsVersion {
                    app_id: app_id.to_string(),
                    applied_version: v?,
                })
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
            weighted_mappings: (!weighted_mappings.is_empty()).then_some(weighted_mappings),
        }))
    }
}

#[cfg(test)]
mod tests;
