//! Endpoint group `health` (see the parent module for the conventions): infrastructure
//! health (docs/COMPATIBILITY.md#infrastructure-health), the per-service health report
//! (docs/COMPATIBILITY.md#services-health, docs/COMPATIBILITY.md#health-evaluation, D4),
//! should-restart (docs/COMPATIBILITY.md#should-restart,
//! docs/COMPATIBILITY.md#should-restart-rule) and the smart restart
//! (docs/COMPATIBILITY.md#restart-service, docs/COMPATIBILITY.md#restart-manager, D5) that
//! really restarts through the backend.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use orchestrator_core::api::*;
use orchestrator_core::events::{
    HealthPingStatus, InstanceHealthStatus, OrchestratorHealthPingEvent, ServiceRestartEvent,
};
use orchestrator_core::ports::backend::{BackendError, RestartOptions};
use orchestrator_core::ports::bus::EventBusExt;
use orchestrator_core::restart::{self, RestartRecommendation};
use orchestrator_core::time::format_hms;
use orchestrator_core::{AppId, Catalog, Timestamp};
use uuid::Uuid;

use super::requests::validated;
use super::{Answer, OrchestratorService, Outcome, ServiceError, ServiceResult};

impl OrchestratorService {
    /// POST /orchestrator/health/infrastructure (docs/COMPATIBILITY.md#infrastructure-health).
    ///
    /// Three components in order: `statestore` (a store ping, timed), `pubsub` (a health
    /// ping published on `orchestrator.health-ping`) and `messaging`, which (beyond
    /// upstream's "a bus object exists") checks that the ping really comes back through a
    /// subscription within `HealthCheckIntervalMs`: degraded when it does not, unavailable
    /// when the bus refuses the subscription. 200 when all are healthy, else 500 with the
    /// body.
    pub async fn infrastructure_health(
        &self,
        request: InfrastructureHealthRequest,
    ) -> ServiceResult<InfrastructureHealthResponse> {
        validated(&request)?;
        let statestore = self.statestore_health().await;
        let [pubsub, messaging] = self.bus_health().await;
        let components = vec![statestore, pubsub, messaging];
        let healthy = components
            .iter()
            .all(|c| c.status == ComponentHealthStatus::Healthy);
        let body = InfrastructureHealthResponse {
            healthy,
            timestamp: self.deps.clock.now(),
            components,
        };
        Ok(Answer::with_outcome(
            if healthy {
                Outcome::Ok
            } else {
                Outcome::Failed
            },
            body,
        ))
    }

    /// POST /orchestrator/health/services (docs/COMPATIBILITY.md#services-health,
    /// docs/COMPATIBILITY.md#health-evaluation).
    ///
    /// Deployed entries are per service and instance (D4), from the heartbeat
    /// aggregator; control-plane entries are the services this process's environment
    /// enables (docs/COMPATIBILITY.md#enablement-rule), always healthy. Always 200.
    pub async fn services_health(
        &self,
        request: ServiceHealthRequest,
    ) -> ServiceResult<orchestrator_core::health::ServiceHealthReport> {
        validated(&request)?;
        let plugins = orchestrator_core::resolver::enabled_services(
            &self.deps.settings.host_environment,
            Catalog::builtin(),
        );
        let now = self.deps.clock.now();
        let report = self.deps.health.lock().aggregator.report(
            &request,
            self.deps.settings.control_plane_app_id.as_str(),
            &plugins,
            now,
        );
        Ok(Answer::ok(report))
    }

    /// POST /orchestrator/services/restart (docs/COMPATIBILITY.md#restart-service,
    /// docs/COMPATIBILITY.md#restart-manager).
    ///
    /// The smart restart: unless `force`, declined with 409 (`Restart not needed: ...`)
    /// when should-restart says no; otherwise every node running the service is restarted
    /// through the active backend (D5, D6), then the service's health is polled every
    /// `HealthCheckIntervalMs` until each restarted node has reported it healthy *after*
    /// the restart, or `timeout` passes. A `ServiceRestartEvent` (real timestamp, D14) is
    /// published once the backend restarted. 200 when healthy in time; 500 (`Restart
    /// failed: ...` or `Service restarted but failed to become healthy ...`) otherwise.
    /// `environment` is not applied (a restart keeps a node's environment; redeploy to
    /// change it); it is carried in the event as upstream does.
    pub async fn restart_service(
        &self,
        request: ServiceRestartRequest,
    ) -> ServiceResult<ServiceRestartResult> {
        validated(&request)?;
        let started = self.deps.clock.now();
        let name = request.service_name.trim().to_owned();
        let rec = self.recommendation(&name);
        if !request.force && !rec.should_restart {
            return Err(ServiceError::conflict(restart::not_needed(&rec.reason)));
        }
        let previous_status = rec.current_status;

        let targets = self.restart_targets(&name).await?;
        if request.environment.as_ref().is_some_and(|e| !e.is_empty()) {
            tracing::warn!(service = %name, "restart: environment updates need a redeploy; restarting with the current environment");
        }
        let backend = self.deps.backends.select(None).await?;
        let options = RestartOptions {
            grace: self.deps.settings.default_wait_before_kill,
            reason: format!("Smart restart of {name}"),
            ..RestartOptions::default()
        };
        let restarted_at = self.deps.clock.now();
        for app in &targets {
            backend.restart(app, &options).await.map_err(|e| {
                ServiceError::internal(restart::failed(&match e {
                    BackendError::NotFound { .. } => restart::container_not_found(&name),
                    other => other.to_string(),
                }))
            })?;
        }

        let timeout = match request.timeout_duration() {
            d if d.is_zero() => self.deps.settings.restart_timeout,
            d => d,
        };
        let healthy = self
            .wait_until_healthy(&name, &targets, restarted_at, timeout)
            .await;
        let current_status = if healthy {
            Some(InstanceHealthStatus::Healthy)
        } else {
            self.recommendation(&name).current_status
        };

        let event = ServiceRestartEvent {
            event_id: Uuid::new_v4(),
            timestamp: self.deps.clock.now(),
            service_name: name.clone(),
            reason: restart::smart_restart_reason(previous_status),
            forced: request.force,
            new_environment: Some(request.environment.clone().unwrap_or_default()),
        };
        if let Err(e) = self.deps.bus.publish_event(&event).await {
            // The restart happened; a lost notification must not turn it into a failure.
            tracing::warn!(service = %name, error = %e, "could not publish the service restart event");
        }

        if !healthy {
            return Err(ServiceError::internal(restart::unhealthy_after_restart(
                timeout,
            )));
        }
        Ok(Answer::ok(ServiceRestartResult {
            duration: format_hms(self.deps.clock.now().saturating_since(started)),
            previous_status,
            current_status,
        }))
    }

    /// POST /orchestrator/services/should-restart (docs/COMPATIBILITY.md#should-restart,
    /// docs/COMPATIBILITY.md#should-restart-rule): per service (D4), with real degradation
    /// time. Always 200.
    pub async fn should_restart(
        &self,
        request: ShouldRestartServiceRequest,
    ) -> ServiceResult<RestartRecommendation> {
        validated(&request)?;
        Ok(Answer::ok(self.recommendation(request.service_name.trim())))
    }

    // === helpers ===

    fn recommendation(&self, service: &str) -> RestartRecommendation {
        let now = self.deps.clock.now();
        let health = self.deps.health.lock();
        restart::should_restart(
            &health.aggregator,
            service,
            now,
            self.deps.settings.degradation_threshold,
        )
    }

    /// The nodes running `service`: the app-ids of its instances in the aggregator, else
    /// (no heartbeat at all, e.g. a crashed node) the backend's nodes deployed for it
    /// (`bannou.service` label, or app-id `{service}` / `bannou-{service}`), else the first
    /// whose name contains it (upstream's lookup). Never the control plane (D8: it is not
    /// a backend node, and restarting it would cut this request off).
    async fn restart_targets(&self, service: &str) -> Result<Vec<AppId>, ServiceError> {
        let control_plane = &self.deps.settings.control_plane_app_id;
        let mut targets: BTreeSet<AppId> = {
            let health = self.deps.health.lock();
            health
                .aggregator
                .instances_of(service)
                .iter()
                .map(|si| si.app_id.clone())
                .filter(|app| app != control_plane)
                .collect()
        };
        if targets.is_empty() {
            let backend = self.deps.backends.select(None).await?;
            let listed = backend
                .list()
                .await
                .map_err(|e| ServiceError::internal(restart::failed(&e.to_string())))?;
            let listed: Vec<_> = listed
                .into_iter()
                .filter(|c| c.app_id != *control_plane)
                .collect();
            let default_app = format!("bannou-{service}");
            targets = listed
                .iter()
                .filter(|c| {
                    c.service_name.eq_ignore_ascii_case(service)
                        || c.app_id.matches(service)
                        || c.app_id.matches(&default_app)
                })
                .map(|c| c.app_id.clone())
                .collect();
            if targets.is_empty() {
                // Upstream's last resort: the first container whose name contains the
                // service name (only the first: a short name matches too much).
                let lower = service.to_ascii_lowercase();
                targets.extend(
                    listed
                        .iter()
                        .find(|c| c.name.to_ascii_lowercase().contains(&lower))
                        .map(|c| c.app_id.clone()),
                );
            }
        }
        if targets.is_empty() {
            return Err(ServiceError::internal(restart::failed(
                &restart::container_not_found(service),
            )));
        }
        Ok(targets.into_iter().collect())
    }

    /// Polls every `HealthCheckIntervalMs` until every node in `targets` has reported
    /// `service` healthy in a heartbeat received after `since` (an instance's status from
    /// before the restart proves nothing), or `timeout` passes.
    async fn wait_until_healthy(
        &self,
        service: &str,
        targets: &[AppId],
        since: Timestamp,
        timeout: Duration,
    ) -> bool {
        let deadline = since + timeout;
        let interval = self.deps.settings.health_check_interval;
        loop {
            let now = self.deps.clock.now();
            if self.healthy_since(service, targets, since, now) {
                return true;
            }
            let left = deadline.saturating_since(now);
            if left.is_zero() {
                return false;
            }
            tokio::time::sleep(interval.min(left)).await;
        }
    }

    fn healthy_since(
        &self,
        service: &str,
        targets: &[AppId],
        since: Timestamp,
        now: Timestamp,
    ) -> bool {
        let health = self.deps.health.lock();
        let timeout = health.aggregator.config().heartbeat_timeout;
        let instances = health.aggregator.instances_of(service);
        targets.iter().all(|app| {
            instances.iter().any(|si| {
                si.app_id == app
                    && si.last_seen > since
                    && si.status_at(now, timeout) == InstanceHealthStatus::Healthy
            })
        })
    }

    async fn statestore_health(&self) -> ComponentHealth {
        let started = tokio::time::Instant::now();
        let result = self.deps.store.ping().await;
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        let now = self.deps.clock.now();
        match result {
            Ok(()) => ComponentHealth {
                name: "statestore".to_owned(),
                status: ComponentHealthStatus::Healthy,
                last_seen: now,
                message: Some(format!(
                    "State stores healthy (operation: {}ms)",
                    elapsed_ms.round()
                )),
                metrics: Some(serde_json::Map::from_iter([(
                    "operationTimeMs".to_owned(),
                    serde_json::json!(elapsed_ms),
                )])),
            },
            Err(e) => ComponentHealth {
                name: "statestore".to_owned(),
                status: ComponentHealthStatus::Unavailable,
                last_seen: now,
                message: Some(format!("Health check failed: {e}")),
                metrics: Some(serde_json::Map::new()),
            },
        }
    }

    /// `pubsub` and `messaging`: subscribe first (so our own ping cannot be missed), publish
    /// the ping, then wait for it to come back.
    async fn bus_health(&self) -> [ComponentHealth; 2] {
        let bus = &self.deps.bus;
        let component = |name: &str, status, message: String| ComponentHealth {
            name: name.to_owned(),
            status,
            last_seen: self.deps.clock.now(),
            message: Some(message),
            metrics: None,
        };
        let subscription = bus.subscribe_events::<OrchestratorHealthPingEvent>().await;
        let ping = OrchestratorHealthPingEvent {
            event_id: Uuid::new_v4(),
            timestamp: self.deps.clock.now(),
            status: HealthPingStatus::Ok,
        };
        let pubsub = match bus.publish_event(&ping).await {
            Ok(()) => component(
                "pubsub",
                ComponentHealthStatus::Healthy,
                "Message bus pub/sub path active".to_owned(),
            ),
            Err(e) => component(
                "pubsub",
                ComponentHealthStatus::Unavailable,
                format!("Pub/sub check failed: {e}"),
            ),
        };
        let messaging = match subscription {
            Err(e) => component(
                "messaging",
                ComponentHealthStatus::Unavailable,
                format!("Messaging subscription failed: {e}"),
            ),
            Ok(_) if pubsub.status != ComponentHealthStatus::Healthy => component(
                "messaging",
                ComponentHealthStatus::Unavailable,
                "Messaging infrastructure cannot publish".to_owned(),
            ),
            Ok(mut events) => {
                let wait = self.deps.settings.health_check_interval;
                let came_back = tokio::time::timeout(wait, async {
                    while let Some(item) = events.next().await {
                        if matches!(item, Ok(e) if e.event_id == ping.event_id) {
                            return true;
                        }
                    }
                    false
                })
                .await
                .unwrap_or(false);
                if came_back {
                    component(
                        "messaging",
                        ComponentHealthStatus::Healthy,
                        "Messaging infrastructure available (ping delivered)".to_owned(),
                    )
                } else {
                    component(
                        "messaging",
                        ComponentHealthStatus::Degraded,
                        format!(
                            "Health ping not delivered back within {} ms",
                            wait.as_millis()
                        ),
                    )
                }
            }
        };
        [pubsub, messaging]
    }
}

#[cfg(test)]
mod tests;
