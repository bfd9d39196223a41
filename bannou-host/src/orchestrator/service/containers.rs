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
use super::{Answer, OrchestratorService, ServiceResult};

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
            return Ok(Answer::with_status(404, status));
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
mod tests {
    use std::time::Duration;

    use orchestrator_core::api::*;
    use orchestrator_core::events::{BackendType, ServiceHealthStatus};
    use orchestrator_core::memory::backend::BackendCall;
    use orchestrator_core::ports::backend::{Availability, BackendOperation};
    use orchestrator_core::{AppId, Timestamp};

    use super::super::testing::World;
    use super::NOT_CONFIGURED;

    fn status_of(app: &str) -> GetContainerStatusRequest {
        GetContainerStatusRequest {
            app_name: app.to_owned(),
        }
    }

    fn clean(targets: &[CleanTarget], force: bool) -> CleanRequest {
        CleanRequest {
            targets: targets.to_vec(),
            force,
            older_than: None,
            label_filter: None,
        }
    }

    fn ago(world: &World, d: Duration) -> Timestamp {
        world.clock.now() - d
    }

    #[tokio::test(start_paused = true)]
    async fn backends_list_the_registered_one_as_active_and_the_upstream_four() {
        let world = World::new().await;
        world
            .service
            .deps()
            .backends
            .set_active(BackendType::InProcess);
        let answer = world
            .service
            .backends(ListBackendsRequest::default())
            .await
            .unwrap();
        assert_eq!(answer.status, 200);
        let b = &answer.body;
        assert_eq!(b.recommended, BackendType::InProcess);
        assert_eq!(b.active_backend, Some(BackendType::InProcess));
        let kinds: Vec<(BackendType, bool, i64)> = b
            .backends
            .iter()
            .map(|i| (i.kind, i.available, i.priority))
            .collect();
        assert_eq!(
            kinds,
            [
                (BackendType::InProcess, true, 1),
                (BackendType::Kubernetes, false, 2),
                (BackendType::Portainer, false, 3),
                (BackendType::Swarm, false, 4),
                (BackendType::Compose, false, 5),
            ]
        );
        assert_eq!(b.backends[0].version.as_deref(), Some("fake"));
        assert!(
            b.backends[1..]
                .iter()
                .all(|i| i.error.as_deref() == Some(NOT_CONFIGURED))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unavailable_backend_says_why_and_compose_is_recommended() {
        let world = World::new().await;
        world
            .backend
            .set_availability(Availability::unavailable("socket missing"));
        let b = world
            .service
            .backends(ListBackendsRequest::default())
            .await
            .unwrap()
            .body;
        assert!(!b.backends[0].available);
        assert_eq!(b.backends[0].error.as_deref(), Some("socket missing"));
        assert_eq!(b.recommended, BackendType::Compose);
        // Nothing deployed yet: the default backend is the one in use.
        assert_eq!(b.active_backend, Some(BackendType::InProcess));
    }

    #[tokio::test(start_paused = true)]
    async fn container_status_is_200_when_running_and_404_with_body_otherwise() {
        let world = World::new().await;
        let app = world.run_node("bannou-auth", &["auth"]).await;
        world
            .heartbeat("bannou-auth", &["auth"], ServiceHealthStatus::Healthy)
            .await;
        world.settle().await;

        let running = world
            .service
            .container_status(status_of("bannou-auth"))
            .await
            .unwrap();
        assert_eq!(running.status, 200);
        assert_eq!(running.body.status, ContainerStatusType::Running);
        assert_eq!(running.body.instances, 1);
        assert_eq!(running.body.plugins, Some(vec!["auth".to_owned()]));
        let checks = running.body.health_checks.unwrap();
        assert_eq!(checks.status, Some(ServiceHealthStatus::Healthy));
        let labels = running.body.labels.unwrap();
        assert_eq!(labels["bannou.orchestrator-managed"], "true");

        let unknown = world
            .service
            .container_status(status_of("bannou-nope"))
            .await
            .unwrap();
        assert_eq!(unknown.status, 404);
        assert_eq!(unknown.body.app_name, "bannou-nope");
        assert_eq!(unknown.body.status, ContainerStatusType::Stopped);
        assert_eq!(unknown.body.instances, 0);

        world.backend.set_status(&app, ContainerStatusType::Stopped);
        let stopped = world
            .service
            .container_status(status_of("bannou-auth"))
            .await
            .unwrap();
        assert_eq!(stopped.status, 404);
        assert!(
            stopped.body.labels.is_some(),
            "the body carries what is known"
        );

        let err = world
            .service
            .container_status(status_of(""))
            .await
            .unwrap_err();
        assert_eq!(
            (err.status, err.body.field.as_deref()),
            (400, Some("appName"))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn container_restart_really_restarts_with_the_requested_priority() {
        let world = World::new().await;
        let app = world.run_node("bannou-auth", &["auth"]).await;
        let answer = world
            .service
            .request_container_restart(ContainerRestartRequestBody {
                app_name: "bannou-auth".into(),
                reason: "config change".into(),
                priority: Some(RestartPriority::Immediate),
                shutdown_grace_period: 5,
            })
            .await
            .unwrap();
        assert_eq!(answer.status, 200);
        assert!(answer.body.accepted);
        assert_eq!(answer.body.current_instances, 1);
        assert_eq!(
            answer.body.restart_strategy,
            Some(RestartStrategy::Simultaneous)
        );
        let calls = world.backend.calls_of(BackendOperation::Restart);
        let BackendCall::Restart { options, .. } = &calls[0] else {
            unreachable!()
        };
        assert_eq!(options.priority, RestartPriority::Immediate);
        assert_eq!(options.grace, Duration::from_secs(5));
        assert_eq!(options.reason, "config change");
        assert_eq!(world.backend.node(&app).unwrap().restart_count, 1);

        let missing = world
            .service
            .request_container_restart(ContainerRestartRequestBody {
                app_name: "bannou-nope".into(),
                reason: "x".into(),
                priority: None,
                shutdown_grace_period: 30,
            })
            .await
            .unwrap_err();
        assert_eq!(missing.status, 404);
    }

    #[tokio::test(start_paused = true)]
    async fn logs_carry_streams_and_timestamps_and_say_when_cut() {
        let world = World::new().await;
        let app = world.run_node("bannou-auth", &["auth"]).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        world
            .backend
            .push_log(&app, LogStreamType::Stdout, "serving");
        tokio::time::sleep(Duration::from_secs(1)).await;
        world
            .backend
            .push_log(&app, LogStreamType::Stderr, "warning: slow");

        let all = world
            .service
            .logs(GetLogsRequest {
                service: Some("bannou-auth".into()),
                ..GetLogsRequest::default()
            })
            .await
            .unwrap()
            .body;
        assert_eq!(all.logs.len(), 3, "start line and two more");
        assert!(!all.truncated);
        assert_eq!(all.service.as_deref(), Some("bannou-auth"));
        assert_eq!(all.container.as_deref(), Some("bannou-auth"));

        let last_two = world
            .service
            .logs(GetLogsRequest {
                container: Some("bannou-auth".into()),
                tail: 2,
                ..GetLogsRequest::default()
            })
            .await
            .unwrap()
            .body;
        assert!(last_two.truncated);
        let lines: Vec<(Option<LogStreamType>, &str)> = last_two
            .logs
            .iter()
            .map(|l| (l.stream, l.message.as_str()))
            .collect();
        assert_eq!(
            lines,
            [
                (Some(LogStreamType::Stdout), "serving"),
                (Some(LogStreamType::Stderr), "warning: slow"),
            ]
        );
        assert!(last_two.logs[0].timestamp < last_two.logs[1].timestamp);

        let since = world.clock.now() - Duration::from_millis(500);
        let recent = world
            .service
            .logs(GetLogsRequest {
                service: Some("bannou-auth".into()),
                since: Some(since.to_string()),
                ..GetLogsRequest::default()
            })
            .await
            .unwrap()
            .body;
        assert_eq!(recent.logs.len(), 1);

        let missing = world
            .service
            .logs(GetLogsRequest {
                service: Some("bannou-nope".into()),
                ..GetLogsRequest::default()
            })
            .await
            .unwrap_err();
        assert_eq!(missing.status, 404, "no node `bannou-nope` on the backend");
    }

    #[tokio::test(start_paused = true)]
    async fn the_control_plane_answers_its_own_lines_not_the_backend() {
        let world = World::new().await;
        // No node `bannou` runs on the backend and no subscriber feeds the buffer yet.
        let empty = world.service.logs(GetLogsRequest::default()).await.unwrap();
        assert_eq!(empty.status, 200);
        assert!(empty.body.logs.is_empty() && !empty.body.truncated);

        let buffer = &world.service.deps().logs;
        let start = world.clock.now();
        for i in 0..4u64 {
            let at = start + Duration::from_secs(i);
            buffer.push(at, LogStreamType::Stderr, format!("INFO x: line {i}"));
        }
        let all = world
            .service
            .logs(GetLogsRequest::default())
            .await
            .unwrap()
            .body;
        assert_eq!(all.service.as_deref(), Some("bannou"));
        assert_eq!(all.container.as_deref(), Some("bannou"));
        assert_eq!(all.logs.len(), 4);
        assert!(!all.truncated);
        assert_eq!(all.logs[0].stream, Some(LogStreamType::Stderr));

        let last = |body: &LogsResponse| -> Vec<String> {
            body.logs.iter().map(|l| l.message.clone()).collect()
        };
        let tail = world
            .service
            .logs(GetLogsRequest {
                tail: 2,
                ..GetLogsRequest::default()
            })
            .await
            .unwrap()
            .body;
        assert_eq!(last(&tail), ["INFO x: line 2", "INFO x: line 3"]);
        assert!(tail.truncated);

        let since = world
            .service
            .logs(GetLogsRequest {
                service: Some("bannou".into()),
                since: Some((start + Duration::from_secs(1)).to_string()),
                ..GetLogsRequest::default()
            })
            .await
            .unwrap()
            .body;
        assert_eq!(
            last(&since),
            ["INFO x: line 1", "INFO x: line 2", "INFO x: line 3"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn clean_removes_only_old_stopped_managed_containers() {
        let world = World::new().await;
        let old = world.run_node("bannou-old", &["auth"]).await;
        let recent = world.run_node("bannou-recent", &["account"]).await;
        let running = world.run_node("bannou-running", &["mesh"]).await;
        world
            .backend
            .set_stopped_at(&old, ago(&world, Duration::from_secs(25 * 3600)));
        world
            .backend
            .set_stopped_at(&recent, ago(&world, Duration::from_secs(3600)));
        world
            .backend
            .add_prunable(CleanTarget::Volumes, "bannou-data", 3 * 1_048_576);
        world
            .backend
            .add_prunable(CleanTarget::Networks, "bannou-net", 0);

        let answer = world
            .service
            .clean(clean(&[CleanTarget::Containers], false))
            .await
            .unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body.removed_containers, 1);
        assert!(world.backend.node(&old).is_none());
        assert!(world.backend.node(&recent).is_some());
        assert_eq!(
            world.backend.calls_of(BackendOperation::Prune).len(),
            0,
            "containers only"
        );

        let all = world
            .service
            .clean(clean(&[CleanTarget::All], true))
            .await
            .unwrap()
            .body;
        assert_eq!(
            all.removed_containers, 1,
            "force takes the recent stopped one"
        );
        assert!(world.backend.node(&recent).is_none());
        assert!(world.backend.node(&running).is_some(), "running nodes stay");
        assert_eq!((all.removed_volumes, all.removed_networks), (1, 1));
        assert_eq!(all.reclaimed_space_mb, 3);
        assert_eq!(all.errors, None);
    }

    #[tokio::test(start_paused = true)]
    async fn clean_honours_older_than_and_reports_failures_without_failing() {
        let world = World::new().await;
        let app = world.run_node("bannou-old", &["auth"]).await;
        world
            .backend
            .set_stopped_at(&app, ago(&world, Duration::from_secs(2 * 3600)));
        world.backend.fail_next(
            BackendOperation::Teardown,
            &AppId::new("bannou-old"),
            orchestrator_core::ports::backend::BackendError::Runtime {
                message: "device busy".into(),
            },
        );
        let mut request = clean(&[CleanTarget::Containers], false);
        request.older_than = Some("1h".into());
        let answer = world.service.clean(request.clone()).await.unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body.removed_containers, 0);
        let errors = answer.body.errors.unwrap();
        assert!(errors[0].contains("device busy"), "{errors:?}");

        let again = world.service.clean(request).await.unwrap().body;
        assert_eq!(again.removed_containers, 1);

        let err = world.service.clean(clean(&[], false)).await.unwrap_err();
        assert_eq!(
            (err.status, err.body.field.as_deref()),
            (400, Some("targets"))
        );
    }
}
