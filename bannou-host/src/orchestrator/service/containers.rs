//! Endpoint group `containers` (see the parent module for the conventions): the backends
//! list (docs/COMPATIBILITY.md#backends-list, docs/COMPATIBILITY.md#backend-detection, D6),
//! container status (docs/COMPATIBILITY.md#container-status) and restart
//! (docs/COMPATIBILITY.md#request-container-restart, D5), logs (docs/COMPATIBILITY.md#logs,
//! D13) and clean (docs/COMPATIBILITY.md#clean, docs/COMPATIBILITY.md#clean-and-orphans,
//! D12). Every call goes to the active backend (D6).

use std::collections::BTreeSet;

use orchestrator_core::AppId;
use orchestrator_core::api::*;
use orchestrator_core::events::BackendType;
use orchestrator_core::ports::backend::{
    BackendError, LogQuery, RestartOptions, TeardownOptions, expand_clean_targets, is_managed,
};

use super::errors::backend_error;
use super::requests::{parse_age, validated};
use super::{Answer, OrchestratorService, Outcome, ServiceResult};

/// The backends upstream detects, in its priority order
/// (docs/COMPATIBILITY.md#backend-detection); each is listed even when this host has not
/// registered it.
const UPSTREAM_BACKENDS: [BackendType; 4] = [
    BackendType::Kubernetes,
    BackendType::Portainer,
    BackendType::Swarm,
    BackendType::Compose,
];

/// Reason given for an upstream backend this host has no adapter configured for.
pub(super) const NOT_CONFIGURED: &str = "not configured on this host";

impl OrchestratorService {
    /// POST /orchestrator/backends/list (docs/COMPATIBILITY.md#backends-list,
    /// docs/COMPATIBILITY.md#backend-detection, D6).
    ///
    /// Every registered backend, best first, with what its availability check said
    /// (`error` = why it is unusable; for a usable one a note goes to `endpoint`); then
    /// each of the four upstream backends this host has not registered, unavailable with
    /// `not configured on this host`. `recommended` is the best available one (`Compose`
    /// when none is, as upstream); `activeBackend` the one every endpoint uses (D6).
    /// `refresh` is ignored: detection always runs. Always 200.
    pub async fn backends(&self, request: ListBackendsRequest) -> ServiceResult<BackendsResponse> {
        validated(&request)?;
        let detected = self.deps.backends.detect().await;
        let mut backends: Vec<BackendInfo> = detected
            .iter()
            .map(|d| {
                let a = &d.availability;
                BackendInfo {
                    kind: d.backend_type,
                    available: a.available,
                    priority: i64::from(d.priority),
                    version: a.version.clone(),
                    endpoint: a.reason.clone().filter(|_| a.available),
                    capabilities: None,
                    error: a.reason.clone().filter(|_| !a.available),
                }
            })
            .collect();
        for kind in UPSTREAM_BACKENDS {
            if !backends.iter().any(|b| b.kind == kind) {
                backends.push(BackendInfo {
                    kind,
                    available: false,
                    priority: backends.len() as i64 + 1,
                    version: None,
                    endpoint: None,
                    capabilities: None,
                    error: Some(NOT_CONFIGURED.to_owned()),
                });
            }
        }
        let recommended = backends
            .iter()
            .filter(|b| b.available)
            .min_by_key(|b| b.priority)
            .map_or(BackendType::Compose, |b| b.kind);
        let active_backend = match self.deps.backends.active_type() {
            Some(kind) => Some(kind),
            // Nothing deployed yet: the one a request naming none would use (the default
            // even while it is unavailable: its entry says why).
            None => match self.deps.backends.default_type() {
                Some(kind) => Some(kind),
                None => self
                    .deps
                    .backends
                    .select(None)
                    .await
                    .ok()
                    .map(|b| b.backend_type()),
            },
        };
        Ok(Answer::ok(BackendsResponse {
            timestamp: self.deps.clock.now(),
            backends,
            recommended,
            active_backend,
        }))
    }

    /// POST /orchestrator/containers/status (docs/COMPATIBILITY.md#container-status).
    ///
    /// 404 *with the status object* (`stopped`, 0 instances) when the node is unknown or
    /// stopped with nothing running, as upstream. `plugins` and `healthChecks` come from
    /// the node's heartbeats; `lastRestart` is the last start when it restarted.
    pub async fn container_status(
        &self,
        request: GetContainerStatusRequest,
    ) -> ServiceResult<ContainerStatus> {
        validated(&request)?;
        let app = AppId::new(request.app_name.trim());
        let backend = self.deps.backends.select(None).await?;
        let now = self.deps.clock.now();
        let mut status = match backend.status(&app).await {
            Ok(report) => ContainerStatus {
                app_name: app.to_string(),
                status: report.status,
                timestamp: now,
                instances: i64::from(report.instances),
                plugins: None,
                last_restart: report.started_at.filter(|_| report.restart_count > 0),
                restart_count: i64::from(report.restart_count),
                restart_history: None,
                health_checks: None,
                labels: Some(report.labels),
            },
            Err(BackendError::NotFound { .. }) => ContainerStatus {
                app_name: app.to_string(),
                status: ContainerStatusType::Stopped,
                timestamp: now,
                instances: 0,
                plugins: None,
                last_restart: None,
                restart_count: 0,
                restart_history: None,
                health_checks: None,
                labels: None,
            },
            Err(e) => return Err(backend_error(e)),
        };
        self.add_heartbeat_view(&app, &mut status);
        if status.is_not_found() {
            return Ok(Answer::with_outcome(Outcome::NotFound, status));
        }
        Ok(Answer::ok(status))
    }

    /// POST /orchestrator/containers/request-restart
    /// (docs/COMPATIBILITY.md#request-container-restart, D5).
    ///
    /// Really restarts the node through the active backend, honouring `priority` and
    /// `shutdownGracePeriod` (upstream always waits 30 s). An unknown node is 404 (the
    /// schema's code; upstream answered 500).
    pub async fn request_container_restart(
        &self,
        request: ContainerRestartRequestBody,
    ) -> ServiceResult<ContainerRestartResponse> {
        validated(&request)?;
        let app = AppId::new(request.app_name.trim());
        let backend = self.deps.backends.select(None).await?;
        let options = RestartOptions {
            priority: request.effective_priority(),
            grace: std::time::Duration::from_secs(
                u64::try_from(request.shutdown_grace_period).unwrap_or(30),
            ),
            reason: request.reason.clone(),
        };
        tracing::info!(app_id = %app, reason = %request.reason, priority = %options.priority, "container restart requested");
        let outcome = backend
            .restart(&app, &options)
            .await
            .map_err(backend_error)?;
        Ok(Answer::ok(ContainerRestartResponse {
            accepted: true,
            scheduled_for: None,
            current_instances: i64::from(outcome.current_instances),
            restart_strategy: Some(outcome.strategy),
        }))
    }

    /// POST /orchestrator/logs (docs/COMPATIBILITY.md#logs, D13).
    ///
    /// Structured lines from the backend, each with its real stream and timestamp (no
    /// text parsing). Honours `since` and `until` when they are absolute timestamps;
    /// `truncated` says that older lines exist beyond `tail`. An unknown node is 404 (the
    /// schema's code; upstream answered 200 with the error text as a log line).
    ///
    /// The control plane's app-id (the default target) answers this process's own recent
    /// lines from its in-memory buffer (`crate::log_buffer`), never the backend: always
    /// 200, possibly empty when no subscriber feeds the buffer.
    pub async fn logs(&self, request: GetLogsRequest) -> ServiceResult<LogsResponse> {
        validated(&request)?;
        let target = request.target().trim().to_owned();
        let app = AppId::new(target.as_str());
        let tail = u32::try_from(request.tail).unwrap_or(u32::MAX);
        let query = LogQuery {
            // One line more than asked shows whether anything was cut.
            tail: Some(tail.saturating_add(1)),
            since: request.since_timestamp(),
            until: request
                .until
                .as_deref()
                .and_then(|u| orchestrator_core::Timestamp::parse(u).ok()),
        };
        let mut lines = if app == self.deps.settings.control_plane_app_id {
            self.deps.logs.read(&query)
        } else {
            let backend = self.deps.backends.select(None).await?;
            backend.logs(&app, &query).await.map_err(backend_error)?
        };
        let keep = usize::try_from(tail).unwrap_or(usize::MAX);
        let truncated = lines.len() > keep;
        if truncated {
            lines.drain(..lines.len() - keep);
        }
        Ok(Answer::ok(LogsResponse {
            service: Some(target.clone()),
            container: Some(target),
            logs: lines
                .into_iter()
                .map(|l| LogEntry {
                    timestamp: l.timestamp,
                    stream: Some(l.stream),
                    message: l.message,
                })
                .collect(),
            truncated,
        }))
    }

    /// POST /orchestrator/clean (docs/COMPATIBILITY.md#clean,
    /// docs/COMPATIBILITY.md#clean-and-orphans, D12).
    ///
    /// Containers: our stopped nodes (label `bannou.orchestrator-managed=true`, never the
    /// control plane) that are orphaned, i.e. stopped for longer than `olderThan` when it
    /// parses (`24h`, `90m`) or `OrphanContainerThresholdHours` (by their real stop
    /// time), or every stopped one of ours with `force`; each is torn down keeping its
    /// volumes. Networks, volumes and images: the backend's prune of our objects.
    /// Failures are listed in `errors` and never fail the request. Always 200.
    pub async fn clean(&self, request: CleanRequest) -> ServiceResult<CleanResponse> {
        validated(&request)?;
        let targets = expand_clean_targets(&request.targets);
        let backend = self.deps.backends.select(None).await?;
        let mut response = CleanResponse::default();
        let mut errors: Vec<String> = Vec::new();

        if targets.contains(&CleanTarget::Containers) {
            let threshold = request
                .older_than
                .as_deref()
                .and_then(parse_age)
                .unwrap_or(self.deps.settings.orphan_threshold);
            match backend.list().await {
                Ok(listed) => {
                    let now = self.deps.clock.now();
                    let control_plane = &self.deps.settings.control_plane_app_id;
                    let doomed = listed.into_iter().filter(|c| {
                        c.app_id != *control_plane
                            && c.status == ContainerStatusType::Stopped
                            && is_managed(&c.labels)
                            && (request.force || c.is_orphaned(now, threshold))
                    });
                    for c in doomed {
                        match backend
                            .teardown(&c.app_id, &TeardownOptions::default())
                            .await
                        {
                            Ok(_) => response.removed_containers += 1,
                            Err(e) => errors.push(format!("container {}: {e}", c.app_id)),
                        }
                    }
                }
                Err(e) => errors.push(format!("containers: {e}")),
            }
        }

        let prunable: BTreeSet<CleanTarget> = targets
            .into_iter()
            .filter(|t| *t != CleanTarget::Containers)
            .collect();
        if !prunable.is_empty() {
            match backend.prune(&prunable, None).await {
                Ok(report) => {
                    response.removed_networks = report.count(CleanTarget::Networks) as i64;
                    response.removed_volumes = report.count(CleanTarget::Volumes) as i64;
                    response.removed_images = report.count(CleanTarget::Images) as i64;
                    response.reclaimed_space_mb =
                        i64::try_from(report.reclaimed_mb()).unwrap_or(i64::MAX);
                    errors.extend(report.errors.iter().map(|f| match &f.id {
                        Some(id) => format!("{} {id}: {}", f.target, f.message),
                        None => format!("{}: {}", f.target, f.message),
                    }));
                }
                Err(e) => errors.push(format!("prune: {e}")),
            }
        }
        if !errors.is_empty() {
            tracing::warn!(?errors, "clean finished with errors");
            response.errors = Some(errors);
        }
        Ok(Answer::ok(response))
    }

    /// Fills `plugins` (the services the node reports in its heartbeats) and
    /// `healthChecks` (its latest heartbeat and worst reported service status).
    fn add_heartbeat_view(&self, app: &AppId, status: &mut ContainerStatus) {
        let health = self.deps.health.lock();
        let agg = &health.aggregator;
        let mut plugins = Vec::new();
        let mut last_check = None;
        let mut worst = None;
        for name in agg.service_names() {
            for si in agg.instances_of(name) {
                if si.app_id != app {
                    continue;
                }
                if !plugins.iter().any(|p: &String| p == si.service) {
                    plugins.push(si.service.to_owned());
                }
                last_check = last_check.max(Some(si.last_seen));
                worst = worst.max(Some(si.service_status));
            }
        }
        if plugins.is_empty() {
            return;
        }
        plugins.sort();
        status.plugins = Some(plugins);
        status.health_checks = Some(HealthChecks {
            last_check,
            status: worst,
            consecutive_failures: 0,
        });
    }
}

#[cfg(test)]
mod tests;
