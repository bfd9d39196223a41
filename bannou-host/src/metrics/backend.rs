//! A container backend that counts every call: `backend_calls_total{backend,operation,
//! outcome}` and `backend_call_duration_seconds{backend,operation}`, each call in a
//! `backend.OPERATION` span (attributes `backend`, and `node` where there is one: a child
//! of the caller's span in its trace). The control plane wraps each of its backends once,
//! so every caller (deploy waves, the pool scaler, reconciliation, the container
//! endpoints) is measured in one place.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use orchestrator_core::AppId;
use orchestrator_core::api::enums::CleanTarget;
use orchestrator_core::events::BackendType;
use orchestrator_core::ports::backend::{
    Availability, BackendError, BackendOperation, ContainerBackend, ContainerInfo,
    ContainerStatusReport, DeployedNode, InfrastructureInfo, LogLine, LogQuery, NodeDeployment,
    PruneReport, RestartOptions, RestartOutcome, ScaleResult, TeardownOptions, TeardownResult,
};
use tokio::time::Instant;

use super::Metrics;

/// `inner`, with every call counted in `metrics`.
pub struct InstrumentedBackend {
    inner: Arc<dyn ContainerBackend>,
    metrics: Metrics,
}

impl InstrumentedBackend {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ContainerBackend>, metrics: Metrics) -> Self {
        InstrumentedBackend { inner, metrics }
    }

    fn record<T>(
        &self,
        operation: BackendOperation,
        begun: Instant,
        result: Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        self.metrics.backend_call(
            self.inner.backend_type(),
            operation.as_str(),
            result.is_ok(),
            begun.elapsed(),
        );
        result
    }
}

#[async_trait]
impl ContainerBackend for InstrumentedBackend {
    fn backend_type(&self) -> BackendType {
        self.inner.backend_type()
    }

    #[tracing::instrument(name = "backend.check_availability", skip_all, fields(backend = self.inner.backend_type().as_str()))]
    async fn check_availability(&self) -> Availability {
        let begun = Instant::now();
        let answer = self.inner.check_availability().await;
        self.metrics.backend_call(
            self.inner.backend_type(),
            BackendOperation::CheckAvailability.as_str(),
            answer.available,
            begun.elapsed(),
        );
        answer
    }

    #[tracing::instrument(name = "backend.deploy", skip_all, fields(backend = self.inner.backend_type().as_str(), node = %node.app_id))]
    async fn deploy_node(&self, node: &NodeDeployment) -> Result<DeployedNode, BackendError> {
        let begun = Instant::now();
        let r = self.inner.deploy_node(node).await;
        self.record(BackendOperation::Deploy, begun, r)
    }

    #[tracing::instrument(name = "backend.teardown", skip_all, fields(backend = self.inner.backend_type().as_str(), node = %app_id))]
    async fn teardown(
        &self,
        app_id: &AppId,
        options: &TeardownOptions,
    ) -> Result<TeardownResult, BackendError> {
        let begun = Instant::now();
        let r = self.inner.teardown(app_id, options).await;
        self.record(BackendOperation::Teardown, begun, r)
    }

    #[tracing::instrument(name = "backend.scale", skip_all, fields(backend = self.inner.backend_type().as_str(), node = %app_id))]
    async fn scale(&self, app_id: &AppId, replicas: u32) -> Result<ScaleResult, BackendError> {
        let begun = Instant::now();
        let r = self.inner.scale(app_id, replicas).await;
        self.record(BackendOperation::Scale, begun, r)
    }

    #[tracing::instrument(name = "backend.restart", skip_all, fields(backend = self.inner.backend_type().as_str(), node = %app_id))]
    async fn restart(
        &self,
        app_id: &AppId,
        options: &RestartOptions,
    ) -> Result<RestartOutcome, BackendError> {
        let begun = Instant::now();
        let r = self.inner.restart(app_id, options).await;
        self.record(BackendOperation::Restart, begun, r)
    }

    #[tracing::instrument(name = "backend.status", skip_all, fields(backend = self.inner.backend_type().as_str(), node = %app_id))]
    async fn status(&self, app_id: &AppId) -> Result<ContainerStatusReport, BackendError> {
        let begun = Instant::now();
        let r = self.inner.status(app_id).await;
        self.record(BackendOperation::Status, begun, r)
    }

    #[tracing::instrument(name = "backend.list", skip_all, fields(backend = self.inner.backend_type().as_str()))]
    async fn list(&self) -> Result<Vec<ContainerInfo>, BackendError> {
        let begun = Instant::now();
        let r = self.inner.list().await;
        self.record(BackendOperation::List, begun, r)
    }

    #[tracing::instrument(name = "backend.logs", skip_all, fields(backend = self.inner.backend_type().as_str(), node = %app_id))]
    async fn logs(&self, app_id: &AppId, query: &LogQuery) -> Result<Vec<LogLine>, BackendError> {
        let begun = Instant::now();
        let r = self.inner.logs(app_id, query).await;
        self.record(BackendOperation::Logs, begun, r)
    }

    #[tracing::instrument(name = "backend.list_infrastructure", skip_all, fields(backend = self.inner.backend_type().as_str()))]
    async fn list_infrastructure(&self) -> Result<Vec<InfrastructureInfo>, BackendError> {
        let begun = Instant::now();
        let r = self.inner.list_infrastructure().await;
        self.record(BackendOperation::ListInfrastructure, begun, r)
    }

    #[tracing::instrument(name = "backend.prune", skip_all, fields(backend = self.inner.backend_type().as_str()))]
    async fn prune(
        &self,
        targets: &BTreeSet<CleanTarget>,
        older_than: Option<Duration>,
    ) -> Result<PruneReport, BackendError> {
        let begun = Instant::now();
        let r = self.inner.prune(targets, older_than).await;
        self.record(BackendOperation::Prune, begun, r)
    }
}
