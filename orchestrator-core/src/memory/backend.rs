//! A scriptable fake `ContainerBackend` for use-case tests: nodes live in a map, every
//! call is recorded, and a test can make the next call of an operation fail. Pure state
//! behind a mutex; no runtime, no I/O. It passes
//! [`crate::testkit::backend::backend_conformance`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;

use crate::api::enums::{CleanTarget, ContainerStatusType, LogStreamType, RestartStrategy};
use crate::events::BackendType;
use crate::names::AppId;
use crate::ports::backend::{
    Availability, BackendError, BackendOperation, ContainerBackend, ContainerInfo,
    ContainerStatusReport, DeployedNode, InfrastructureInfo, LogLine, LogQuery, NodeDeployment,
    PruneReport, PrunedItem, RestartOptions, RestartOutcome, ScaleResult, TeardownOptions,
    TeardownResult, container_name, expand_clean_targets,
};
use crate::time::{Clock, ManualClock, Timestamp};

/// One recorded call, with its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendCall {
    /// `check_availability()`.
    CheckAvailability,
    /// `deploy_node(node)`.
    Deploy(NodeDeployment),
    /// `teardown(app_id, options)`.
    Teardown {
        /// Target.
        app_id: AppId,
        /// Options passed.
        options: TeardownOptions,
    },
    /// `scale(app_id, replicas)`.
    Scale {
        /// Target.
        app_id: AppId,
        /// Requested replicas.
        replicas: u32,
    },
    /// `restart(app_id, options)`.
    Restart {
        /// Target.
        app_id: AppId,
        /// Options passed.
        options: RestartOptions,
    },
    /// `status(app_id)`.
    Status {
        /// Target.
        app_id: AppId,
    },
    /// `list()`.
    List,
    /// `logs(app_id, query)`.
    Logs {
        /// Target.
        app_id: AppId,
        /// Query passed.
        query: LogQuery,
    },
    /// `list_infrastructure()`.
    ListInfrastructure,
    /// `prune(targets, older_than)`.
    Prune {
        /// Targets passed.
        targets: BTreeSet<CleanTarget>,
        /// Age bound passed.
        older_than: Option<Duration>,
    },
}

impl BackendCall {
    /// The operation this call was.
    pub fn operation(&self) -> BackendOperation {
        match self {
            BackendCall::CheckAvailability => BackendOperation::CheckAvailability,
            BackendCall::Deploy(_) => BackendOperation::Deploy,
            BackendCall::Teardown { .. } => BackendOperation::Teardown,
            BackendCall::Scale { .. } => BackendOperation::Scale,
            BackendCall::Restart { .. } => BackendOperation::Restart,
            BackendCall::Status { .. } => BackendOperation::Status,
            BackendCall::List => BackendOperation::List,
            BackendCall::Logs { .. } => BackendOperation::Logs,
            BackendCall::ListInfrastructure => BackendOperation::ListInfrastructure,
            BackendCall::Prune { .. } => BackendOperation::Prune,
        }
    }

    /// The app-id the call addressed, if any.
    pub fn app_id(&self) -> Option<&AppId> {
        match self {
            BackendCall::Deploy(node) => Some(&node.app_id),
            BackendCall::Teardown { app_id, .. }
            | BackendCall::Scale { app_id, .. }
            | BackendCall::Restart { app_id, .. }
            | BackendCall::Status { app_id }
            | BackendCall::Logs { app_id, .. } => Some(app_id),
            BackendCall::CheckAvailability
            | BackendCall::List
            | BackendCall::ListInfrastructure
            | BackendCall::Prune { .. } => None,
        }
    }
}

/// A node the fake runs, as tests can inspect it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeNode {
    /// What was deployed (the latest deploy for this app-id).
    pub deployment: NodeDeployment,
    /// Fake runtime id, `fake-000000000001` and up.
    pub backend_id: String,
    /// Current state.
    pub status: ContainerStatusType,
    /// Desired replicas.
    pub replicas: u32,
    /// When it was deployed.
    pub created_at: Timestamp,
    /// When it last started.
    pub started_at: Option<Timestamp>,
    /// When it last stopped.
    pub stopped_at: Option<Timestamp>,
    /// Restarts since deployment.
    pub restart_count: u32,
    /// Its log, oldest first.
    pub logs: Vec<LogLine>,
}

impl FakeNode {
    fn running_instances(&self) -> u32 {
        match self.status {
            ContainerStatusType::Running
            | ContainerStatusType::Unhealthy
            | ContainerStatusType::Stopping => self.replicas,
            ContainerStatusType::Starting | ContainerStatusType::Stopped => 0,
        }
    }
}

#[derive(Debug)]
struct ScriptedFailure {
    operation: BackendOperation,
    app_id: Option<AppId>,
    error: BackendError,
}

#[derive(Debug)]
struct State {
    backend_type: BackendType,
    availability: Availability,
    scaling: bool,
    nodes: BTreeMap<AppId, FakeNode>,
    calls: Vec<BackendCall>,
    failures: Vec<ScriptedFailure>,
    /// Operations whose calls never answer (see [`FakeBackend::hang`]).
    hung: Vec<BackendOperation>,
    infrastructure: Vec<InfrastructureInfo>,
    prunable: Vec<(CleanTarget, String, u64)>,
    next_id: u64,
}

/// The fake backend. Cheap to clone; clones share state, so a test keeps one handle and
/// gives another to the code under test as `Arc<dyn ContainerBackend>`.
#[derive(Clone)]
pub struct FakeBackend {
    state: Arc<Mutex<State>>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for FakeBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeBackend")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Default for FakeBackend {
    /// An `InProcess` fake on a [`ManualClock`] at 2026-01-01T00:00:00Z.
    fn default() -> Self {
        Self::new(Arc::new(ManualClock::new(Timestamp::from_unix_millis(
            1_767_225_600_000,
        ))))
    }
}

impl FakeBackend {
    /// An available `InProcess` fake that supports scaling, stamping times from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        FakeBackend {
            state: Arc::new(Mutex::new(State {
                backend_type: BackendType::InProcess,
                availability: Availability::available(Some("fake".to_owned())),
                scaling: true,
                nodes: BTreeMap::new(),
                calls: Vec::new(),
                failures: Vec::new(),
                hung: Vec::new(),
                infrastructure: Vec::new(),
                prunable: Vec::new(),
                next_id: 0,
            })),
            clock,
        }
    }

    /// Reports `backend_type` from [`ContainerBackend::backend_type`].
    pub fn with_backend_type(self, backend_type: BackendType) -> Self {
        self.lock().backend_type = backend_type;
        self
    }

    /// Makes `scale` return [`BackendError::Unsupported`], as standalone Docker does.
    pub fn without_scaling(self) -> Self {
        self.lock().scaling = false;
        self
    }

    // === scripting ===

    /// The next call of `operation` for `app_id` fails with `error` (once). For
    /// `check_availability` the error becomes an unavailable report.
    pub fn fail_next(&self, operation: BackendOperation, app_id: &AppId, error: BackendError) {
        self.lock().failures.push(ScriptedFailure {
            operation,
            app_id: Some(app_id.clone()),
            error,
        });
    }

    /// The next call of `operation`, whatever its target, fails with `error` (once).
    pub fn fail_next_call(&self, operation: BackendOperation, error: BackendError) {
        self.lock().failures.push(ScriptedFailure {
            operation,
            app_id: None,
            error,
        });
    }

    /// Every later `status` or `logs` call (whichever `operation` names; other operations
    /// are not affected) is recorded and then never answers, as a hung engine call: the
    /// caller's own timeout has to cut it off.
    pub fn hang(&self, operation: BackendOperation) {
        self.lock().hung.push(operation);
    }

    /// Sets what `check_availability` reports.
    pub fn set_availability(&self, availability: Availability) {
        self.lock().availability = availability;
    }

    /// Moves a node to `status` now (stop time or start time follow). False when unknown.
    pub fn set_status(&self, app_id: &AppId, status: ContainerStatusType) -> bool {
        let now = self.clock.now();
        let mut state = self.lock();
        let Some(node) = state.nodes.get_mut(app_id) else {
            return false;
        };
        match status {
            ContainerStatusType::Stopped => node.stopped_at = Some(now),
            ContainerStatusType::Running | ContainerStatusType::Starting
                if node.status == ContainerStatusType::Stopped =>
            {
                node.started_at = Some(now);
                node.stopped_at = None;
            }
            _ => {}
        }
        node.status = status;
        true
    }

    /// Marks a node stopped at `at` (for orphan tests). False when unknown.
    pub fn set_stopped_at(&self, app_id: &AppId, at: Timestamp) -> bool {
        let mut state = self.lock();
        let Some(node) = state.nodes.get_mut(app_id) else {
            return false;
        };
        node.status = ContainerStatusType::Stopped;
        node.stopped_at = Some(at);
        true
    }

    /// Appends a log line stamped now. False when the node is unknown.
    pub fn push_log(&self, app_id: &AppId, stream: LogStreamType, message: &str) -> bool {
        let now = self.clock.now();
        let mut state = self.lock();
        let Some(node) = state.nodes.get_mut(app_id) else {
            return false;
        };
        node.logs.push(LogLine {
            timestamp: now,
            stream,
            message: message.to_owned(),
        });
        true
    }

    /// Adds an infrastructure entry for `list_infrastructure`.
    pub fn add_infrastructure(&self, info: InfrastructureInfo) {
        self.lock().infrastructure.push(info);
    }

    /// Adds an unused network, volume or image that `prune` removes, reclaiming `bytes`.
    pub fn add_prunable(&self, target: CleanTarget, id: &str, bytes: u64) {
        self.lock().prunable.push((target, id.to_owned(), bytes));
    }

    // === inspection ===

    /// Every call so far, oldest first.
    pub fn calls(&self) -> Vec<BackendCall> {
        self.lock().calls.clone()
    }

    /// Every call so far, and forgets them.
    pub fn take_calls(&self) -> Vec<BackendCall> {
        std::mem::take(&mut self.lock().calls)
    }

    /// Calls of one operation, oldest first.
    pub fn calls_of(&self, operation: BackendOperation) -> Vec<BackendCall> {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.operation() == operation)
            .cloned()
            .collect()
    }

    /// A node by app-id.
    pub fn node(&self, app_id: &AppId) -> Option<FakeNode> {
        self.lock().nodes.get(app_id).cloned()
    }

    /// App-ids of every node, sorted.
    pub fn app_ids(&self) -> Vec<AppId> {
        self.lock().nodes.keys().cloned().collect()
    }

    // === internals ===

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every mutation is completed under one guard, so a poisoned lock is consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// True (with `call` recorded) when `call`'s operation is hung.
    fn hangs(&self, call: &BackendCall) -> bool {
        let mut state = self.lock();
        let hung = state.hung.contains(&call.operation());
        if hung {
            state.calls.push(call.clone());
        }
        hung
    }

    /// Records `call` and returns the scripted failure for it, if any.
    fn begin(&self, call: BackendCall) -> (MutexGuard<'_, State>, Result<(), BackendError>) {
        let mut state = self.lock();
        let operation = call.operation();
        let target = call.app_id().cloned();
        state.calls.push(call);
        let hit = state
            .failures
            .iter()
            .position(|f| f.operation == operation && (f.app_id.is_none() || f.app_id == target));
        let result = match hit {
            Some(i) => Err(state.failures.remove(i).error),
            None => Ok(()),
        };
        (state, result)
    }
}

fn not_found(app_id: &AppId) -> BackendError {
    BackendError::NotFound {
        app_id: app_id.clone(),
    }
}

fn short_id(id: &str) -> String {
    id.chars().take(12).collect()
}

#[async_trait]
impl ContainerBackend for FakeBackend {
    fn backend_type(&self) -> BackendType {
        self.lock().backend_type
    }

    async fn check_availability(&self) -> Availability {
        let (state, scripted) = self.begin(BackendCall::CheckAvailability);
        match scripted {
            Ok(()) => state.availability.clone(),
            Err(e) => Availability::unavailable(e.to_string()),
        }
    }

    async fn deploy_node(&self, node: &NodeDeployment) -> Result<DeployedNode, BackendError> {
        let now = self.clock.now();
        let (mut state, scripted) = self.begin(BackendCall::Deploy(node.clone()));
        scripted?;
        state.next_id += 1;
        let backend_id = format!("fake-{:012}", state.next_id);
        let status = if node.replicas == 0 {
            ContainerStatusType::Stopped
        } else {
            ContainerStatusType::Running
        };
        let fake = FakeNode {
            deployment: node.clone(),
            backend_id: backend_id.clone(),
            status,
            replicas: node.replicas,
            created_at: now,
            started_at: Some(now),
            stopped_at: (node.replicas == 0).then_some(now),
            restart_count: 0,
            logs: vec![LogLine {
                timestamp: now,
                stream: LogStreamType::Stdout,
                message: format!(
                    "node {} started for {} from {}",
                    node.app_id, node.service_name, node.image
                ),
            }],
        };
        let replaced = state.nodes.insert(node.app_id.clone(), fake).is_some();
        Ok(DeployedNode {
            app_id: node.app_id.clone(),
            name: container_name(&node.app_id),
            message: format!(
                "Service {} deployed with container {}",
                node.service_name,
                short_id(&backend_id)
            ),
            backend_id,
            replaced,
        })
    }

    async fn teardown(
        &self,
        app_id: &AppId,
        options: &TeardownOptions,
    ) -> Result<TeardownResult, BackendError> {
        let (mut state, scripted) = self.begin(BackendCall::Teardown {
            app_id: app_id.clone(),
            options: *options,
        });
        scripted?;
        let node = state
            .nodes
            .remove(app_id)
            .ok_or_else(|| not_found(app_id))?;
        Ok(TeardownResult {
            app_id: app_id.clone(),
            stopped: vec![short_id(&node.backend_id)],
            removed_volumes: Vec::new(),
        })
    }

    async fn scale(&self, app_id: &AppId, replicas: u32) -> Result<ScaleResult, BackendError> {
        let (mut state, scripted) = self.begin(BackendCall::Scale {
            app_id: app_id.clone(),
            replicas,
        });
        scripted?;
        if !state.scaling {
            return Err(BackendError::Unsupported {
                operation: BackendOperation::Scale,
                reason: "this fake runs one container per node".to_owned(),
            });
        }
        let node = state
            .nodes
            .get_mut(app_id)
            .ok_or_else(|| not_found(app_id))?;
        let previous = node.replicas;
        node.replicas = replicas;
        Ok(ScaleResult {
            previous_replicas: previous,
            current_replicas: replicas,
        })
    }

    async fn restart(
        &self,
        app_id: &AppId,
        options: &RestartOptions,
    ) -> Result<RestartOutcome, BackendError> {
        let now = self.clock.now();
        let (mut state, scripted) = self.begin(BackendCall::Restart {
            app_id: app_id.clone(),
            options: options.clone(),
        });
        scripted?;
        let node = state
            .nodes
            .get_mut(app_id)
            .ok_or_else(|| not_found(app_id))?;
        node.restart_count = node.restart_count.saturating_add(1);
        node.status = ContainerStatusType::Running;
        node.started_at = Some(now);
        node.stopped_at = None;
        node.logs.push(LogLine {
            timestamp: now,
            stream: LogStreamType::Stdout,
            message: format!(
                "node {app_id} restarted ({}): {}",
                options.priority, options.reason
            ),
        });
        Ok(RestartOutcome {
            current_instances: node.replicas,
            strategy: if node.replicas > 1 {
                RestartStrategy::Rolling
            } else {
                RestartStrategy::Simultaneous
            },
        })
    }

    async fn status(&self, app_id: &AppId) -> Result<ContainerStatusReport, BackendError> {
        let call = BackendCall::Status {
            app_id: app_id.clone(),
        };
        if self.hangs(&call) {
            return std::future::pending().await;
        }
        let (state, scripted) = self.begin(call);
        scripted?;
        let node = state.nodes.get(app_id).ok_or_else(|| not_found(app_id))?;
        Ok(ContainerStatusReport {
            app_id: app_id.clone(),
            status: node.status,
            instances: node.running_instances(),
            desired_replicas: node.replicas,
            started_at: node.started_at,
            stopped_at: node.stopped_at,
            restart_count: node.restart_count,
            labels: node.deployment.effective_labels(),
        })
    }

    async fn list(&self) -> Result<Vec<ContainerInfo>, BackendError> {
        let (state, scripted) = self.begin(BackendCall::List);
        scripted?;
        Ok(state
            .nodes
            .values()
            .map(|node| ContainerInfo {
                app_id: node.deployment.app_id.clone(),
                service_name: node.deployment.service_name.clone(),
                name: container_name(&node.deployment.app_id),
                backend_id: node.backend_id.clone(),
                image: node.deployment.image.clone(),
                status: node.status,
                instances: node.running_instances(),
                created_at: Some(node.created_at),
                stopped_at: node.stopped_at,
                labels: node.deployment.effective_labels(),
            })
            .collect())
    }

    async fn logs(&self, app_id: &AppId, query: &LogQuery) -> Result<Vec<LogLine>, BackendError> {
        let call = BackendCall::Logs {
            app_id: app_id.clone(),
            query: *query,
        };
        if self.hangs(&call) {
            return std::future::pending().await;
        }
        let (state, scripted) = self.begin(call);
        scripted?;
        let node = state.nodes.get(app_id).ok_or_else(|| not_found(app_id))?;
        let mut lines: Vec<LogLine> = node
            .logs
            .iter()
            .filter(|l| query.since.is_none_or(|s| l.timestamp >= s))
            .filter(|l| query.until.is_none_or(|u| l.timestamp < u))
            .cloned()
            .collect();
        if let Some(tail) = query.tail {
            let keep = usize::try_from(tail).unwrap_or(usize::MAX);
            let skip = lines.len().saturating_sub(keep);
            lines.drain(..skip);
        }
        Ok(lines)
    }

    async fn list_infrastructure(&self) -> Result<Vec<InfrastructureInfo>, BackendError> {
        let (state, scripted) = self.begin(BackendCall::ListInfrastructure);
        scripted?;
        Ok(state.infrastructure.clone())
    }

    async fn prune(
        &self,
        targets: &BTreeSet<CleanTarget>,
        older_than: Option<Duration>,
    ) -> Result<PruneReport, BackendError> {
        let now = self.clock.now();
        let (mut state, scripted) = self.begin(BackendCall::Prune {
            targets: targets.clone(),
            older_than,
        });
        scripted?;
        let targets: Vec<CleanTarget> = targets.iter().copied().collect();
        let mut report = PruneReport::default();
        for target in expand_clean_targets(&targets) {
            if target == CleanTarget::Containers {
                let doomed: Vec<AppId> = state
                    .nodes
                    .values()
                    .filter(|n| n.status == ContainerStatusType::Stopped)
                    .filter(|n| match (older_than, n.stopped_at) {
                        (None, _) => true,
                        (Some(age), Some(at)) => now.saturating_since(at) > age,
                        (Some(_), None) => false,
                    })
                    .map(|n| n.deployment.app_id.clone())
                    .collect();
                for app_id in doomed {
                    if let Some(node) = state.nodes.remove(&app_id) {
                        report.removed.push(PrunedItem {
                            target,
                            id: short_id(&node.backend_id),
                        });
                    }
                }
                continue;
            }
            let (matching, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut state.prunable)
                .into_iter()
                .partition(|(t, _, _)| *t == target);
            state.prunable = rest;
            for (_, id, bytes) in matching {
                report.reclaimed_bytes = report.reclaimed_bytes.saturating_add(bytes);
                report.removed.push(PrunedItem { target, id });
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests;
