//! Steps the deploy-group use cases share (deploy, teardown, topology, rollback): one
//! place for routing changes (table, broadcast, store), deployment events, the
//! configuration record of docs/COMPATIBILITY.md#saving-a-version, what currently runs, and
//! the lifecycle lock.

use orchestrator_core::events::{BackendType, DeploymentAction, DeploymentEvent};
use orchestrator_core::ports::backend::{
    BackendError, ContainerBackend, TeardownOptions, TeardownResult,
};
use orchestrator_core::ports::bus::EventBusExt;
use orchestrator_core::ports::store::StoreError;
use orchestrator_core::records::{DeploymentConfiguration, RoutingRecord, ServiceDeploymentConfig};
use orchestrator_core::{AppId, ResolvedNode, Timestamp};
use orchestrator_routing::RoutingTable;
use orchestrator_routing::table::canonical_service;
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

use super::{OrchestratorService, ServiceError};
use crate::orchestrator::leader::LeaderState;
use crate::orchestrator::pools::running_or_restarting;
use std::time::Duration;

// === errors ===

/// A store failure as the API answers it (503 unavailable, 500 corrupt, 409 conflict).
pub(super) fn store_error(e: StoreError) -> ServiceError {
    ServiceError::new(e.status_code(), e.to_string())
}

// === lifecycle lock ===

impl OrchestratorService {
    /// Takes the lifecycle lock, or answers 409 when another deploy, teardown, rollback or
    /// topology update is running: each reads the current configuration, changes
    /// containers and routes, and may write a new version, so a second one at the same
    /// time would plan against a state the first is changing.
    ///
    /// Answers 503 on a replica that does not lead: the lock is per process, so lifecycle
    /// operations run on the leader only, which makes the lock hold across replicas and
    /// lets the leader's reconciliation treat any recorded deploy it is not running itself
    /// as cut off (`reconcile.rs`).
    pub(super) async fn begin_lifecycle(
        &self,
        what: &str,
    ) -> Result<tokio::sync::OwnedMutexGuard<()>, ServiceError> {
        if let LeaderState::Follower { holder, .. } = self.deps.leader.state() {
            return Err(ServiceError::new(
                503,
                format!(
                    "cannot {what}: this replica ({}) does not lead the control plane (leader: {}); \
                     deployments, teardowns, rollbacks and topology updates run on the leader: \
                     send the request there, or retry once a leader is elected",
                    self.deps.leader.candidate_id(),
                    holder.as_deref().unwrap_or("unknown"),
                ),
            ));
        }
        let busy = || {
            ServiceError::conflict(format!(
                "cannot {what}: another deployment, teardown, rollback or topology update is in progress"
            ))
        };
        if let Ok(guard) = self.lifecycle.clone().try_lock_owned() {
            return Ok(guard);
        }
        // A reconciliation sweep is short and not the caller's business: wait for it
        // (bounded by one wave's timeout) instead of answering 409.
        if !self.sweeping.load(std::sync::atomic::Ordering::Acquire) {
            return self.lifecycle.clone().try_lock_owned().map_err(|_| busy());
        }
        tokio::time::timeout(
            self.deps.settings.wave_timeout,
            self.lifecycle.clone().lock_owned(),
        )
        .await
        .map_err(|_| busy())
    }
}

// === events ===

impl OrchestratorService {
    /// Publishes a `DeploymentEvent`; a bus failure is logged, never fails the request
    /// (the deployment itself happened or not regardless of who hears about it).
    pub(super) async fn publish_deployment(&self, event: DeploymentEvent) {
        if let Err(e) = self.deps.bus.publish_event(&event).await {
            tracing::warn!(error = %e, action = %event.action, deployment_id = %event.deployment_id,
                "publishing a deployment event failed");
        }
    }

    /// A `DeploymentEvent` stamped now, with no optional field set.
    pub(super) fn deployment_event(
        &self,
        action: DeploymentAction,
        deployment_id: &str,
    ) -> DeploymentEvent {
        DeploymentEvent {
            event_id: Uuid::new_v4(),
            timestamp: self.deps.clock.now(),
            action,
            deployment_id: deployment_id.to_owned(),
            preset: None,
            backend: None,
            changes: None,
            error: None,
        }
    }

    /// Publishes `Completed` or `Failed` (when `failures` is not empty) for a deployment.
    pub(super) async fn publish_outcome(
        &self,
        deployment_id: &str,
        preset: Option<String>,
        backend: Option<BackendType>,
        changes: Vec<String>,
        failures: &[String],
    ) {
        let action = if failures.is_empty() {
            DeploymentAction::Completed
        } else {
            DeploymentAction::Failed
        };
        let mut event = self.deployment_event(action, deployment_id);
        event.preset = preset;
        event.backend = backend;
        event.changes = Some(changes);
        event.error = (!failures.is_empty()).then(|| failures.join("; "));
        self.publish_deployment(event).await;
    }
}

// === routing ===

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
                tracing::warn!(service = %service, error = %e, "persisting a route failed");
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

    /// Tears one node down, returns its routes to the default and forgets its instances in
    /// the aggregator (so health reports do not show a ghost for the retention period).
    /// Never touches the control plane (D8).
    pub(super) async fn teardown_node(
        &self,
        backend: &dyn ContainerBackend,
        app_id: &AppId,
        options: &TeardownOptions,
    ) -> (Result<TeardownResult, BackendError>, Vec<String>) {
        if self.is_control_plane(app_id) {
            let refused = BackendError::Conflict {
                app_id: app_id.clone(),
                reason: "the control plane is never torn down".to_owned(),
            };
            return (Err(refused), Vec::new());
        }
        // Routes first, so proxies move before the container vanishes.
        let warnings = self
            .change_routes(|table, _, _| table.release_app(app_id))
            .await;
        let result = backend.teardown(app_id, options).await;
        if matches!(result, Ok(_) | Err(BackendError::NotFound { .. })) {
            self.forget_instances(app_id);
        }
        (result, warnings)
    }

    /// Removes every aggregator instance reporting as `app_id` and keeps the node's late
    /// beats (its final "shutting down" one) from bringing it back
    /// (`HeartbeatAggregator::forget_node`). Only this replica's aggregator forgets: the
    /// other replicas drop the node's last report after the retention period.
    pub(super) fn forget_instances(&self, app_id: &AppId) {
        let now = self.deps.clock.now();
        self.deps.health.lock().aggregator.forget_node(app_id, now);
    }

    /// Called before the backend starts node `app_id`: its heartbeats count again even if
    /// the node was torn down moments ago (`HeartbeatAggregator::node_deployed`).
    pub(super) fn expect_node(&self, app_id: &AppId) {
        self.deps.health.lock().aggregator.node_deployed(app_id);
    }

    /// True for the control plane's app-id (configured or the literal `bannou`).
    pub(super) fn is_control_plane(&self, app_id: &AppId) -> bool {
        app_id.is_control_plane() || *app_id == self.deps.settings.control_plane_app_id
    }
}

// === current deployment and configuration records ===

impl OrchestratorService {
    /// The current configuration, if any version was saved.
    pub(super) async fn current_config(
        &self,
    ) -> Result<Option<DeploymentConfiguration>, ServiceError> {
        self.deps.store.current_config().await.map_err(store_error)
    }

    /// What the current configuration runs, limited to the nodes the backend still lists
    /// as running (a node that crashed or was torn down by hand is planned as a fresh
    /// deploy instead of being assumed unchanged). When the backend cannot list, the
    /// configuration is taken at its word.
    pub(super) async fn running_nodes(
        &self,
        config: Option<&DeploymentConfiguration>,
        backend: &dyn ContainerBackend,
    ) -> Vec<ResolvedNode> {
        self.live_nodes(config.map(config_nodes).unwrap_or_default(), backend)
            .await
    }

    /// `nodes` limited to those the backend lists as running (all of them when it cannot
    /// list).
    pub(super) async fn live_nodes(
        &self,
        nodes: Vec<ResolvedNode>,
        backend: &dyn ContainerBackend,
    ) -> Vec<ResolvedNode> {
        if nodes.is_empty() {
            return nodes;
        }
        match backend.list().await {
            Ok(list) => {
                // No grace: a stopped container is not live here.
                let live = running_or_restarting(&list, self.deps.clock.now(), Duration::ZERO);
                nodes
                    .into_iter()
                    .filter(|n| live.contains(&n.app_id))
                    .collect()
            }
            Err(e) => {
                tracing::warn!(error = %e, "backend list failed; planning against the stored configuration");
                nodes
            }
        }
    }
}

/// The nodes a configuration describes. Records written before nodes were stored (or by
/// upstream) only name services and app-ids: each app-id becomes a minimal node routing
/// its services, so a new deploy still replaces or tears it down.
pub(super) fn config_nodes(config: &DeploymentConfiguration) -> Vec<ResolvedNode> {
    if !config.nodes.is_empty() {
        return config.nodes.clone();
    }
    // Keyed by `AppId`: services naming one app-id in different cases share one node, named
    // in the first spelling met (services are visited in name order).
    let mut by_app: BTreeMap<AppId, Vec<String>> = BTreeMap::new();
    for (service, svc) in &config.services {
        if let Some(app) = svc.app_id.as_deref().map(str::trim)
            && svc.enabled
            && !app.is_empty()
            && !AppId::new(app).is_control_plane()
        {
            by_app
                .entry(AppId::new(app))
                .or_default()
                .push(service.clone());
        }
    }
    by_app
        .into_iter()
        .map(|(app, mut services)| {
            services.sort();
            ResolvedNode {
                name: app.to_string(),
                app_id: app,
                services: services.clone(),
                routed_services: services,
                environment: BTreeMap::new(),
                replicas: 1,
                mesh_enabled: true,
            }
        })
        .collect()
}

/// App-ids the configuration deployed (docs/COMPATIBILITY.md#reset-to-default "tracked"):
/// enabled services' app-ids and stored nodes, without blanks and the control plane.
pub(super) fn tracked_app_ids(config: &DeploymentConfiguration) -> Vec<AppId> {
    let ids: BTreeSet<AppId> = config_nodes(config).into_iter().map(|n| n.app_id).collect();
    ids.into_iter()
        .filter(|a| !a.as_str().trim().is_empty() && !a.is_control_plane())
        .collect()
}

/// Whether an environment variable name looks secret (docs/COMPATIBILITY.md#deploy step 11:
/// `PASSWORD`, `SECRET` or `KEY` anywhere in the name, any case; this also drops e.g.
/// `MONKEY`, as upstream does).
pub(super) fn is_secret_key(key: &str) -> bool {
    let upper = key.to_ascii_uppercase();
    ["PASSWORD", "SECRET", "KEY"]
        .iter()
        .any(|p| upper.contains(p))
}

/// What a deployment saves as its configuration version (docs/COMPATIBILITY.md#saving-a-version).
pub(super) struct ConfigRecord<'a> {
    /// The deployment's id.
    pub deployment_id: &'a str,
    /// The preset deployed (`None` for an ad-hoc topology).
    pub preset: Option<&'a str>,
    /// The backend used (recorded, and named in the description).
    pub backend: BackendType,
    /// The request's environment (secrets are dropped).
    pub request_environment: &'a BTreeMap<String, String>,
    /// The nodes now deployed.
    pub nodes: &'a [ResolvedNode],
}

impl ConfigRecord<'_> {
    /// The record (version assigned by the store): every routed service enabled on its
    /// node, the request environment minus secrets, and the nodes themselves so a
    /// rollback or revert can redeploy exactly.
    pub fn build(&self, now: Timestamp) -> DeploymentConfiguration {
        let mut services = BTreeMap::new();
        for node in self.nodes {
            for s in &node.routed_services {
                services.insert(
                    s.clone(),
                    ServiceDeploymentConfig {
                        enabled: true,
                        app_id: Some(node.app_id.as_str().to_owned()),
                        replicas: 1,
                        settings: BTreeMap::new(),
                    },
                );
            }
        }
        DeploymentConfiguration {
            deployment_id: Some(self.deployment_id.to_owned()),
            preset_name: self.preset.map(str::to_owned),
            services,
            environment_variables: self
                .request_environment
                .iter()
                .filter(|(k, _)| !is_secret_key(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            description: Some(format!(
                "Deployment {} via {}",
                self.deployment_id, self.backend
            )),
            nodes: self.nodes.to_vec(),
            backend: Some(self.backend),
            ..DeploymentConfiguration::empty(now)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys_follow_upstream_substring_rule() {
        for k in ["DB_PASSWORD", "jwt_secret", "API_KEY", "MONKEY"] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in ["LOG_LEVEL", "AUTH_JWT_ISSUER"] {
            assert!(!is_secret_key(k), "{k}");
        }
    }

    #[test]
    fn configurations_without_nodes_still_name_their_app_ids() {
        let mut cfg = DeploymentConfiguration::empty(Timestamp::from_unix_millis(0));
        for (s, app) in [
            ("auth", "bannou-auth"),
            ("account", "bannou-auth"),
            ("x", "bannou"),
        ] {
            cfg.services.insert(
                s.into(),
                ServiceDeploymentConfig {
                    enabled: true,
                    app_id: Some(app.into()),
                    replicas: 1,
                    settings: BTreeMap::new(),
                },
            );
        }
        let nodes = config_nodes(&cfg);
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].routed_services, vec!["account", "auth"]);
        assert_eq!(tracked_app_ids(&cfg), vec![AppId::new("bannou-auth")]);
    }
}
