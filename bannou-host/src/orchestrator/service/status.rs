//! Endpoint `status` (docs/COMPATIBILITY.md#status): the active backend's containers as
//! one topology node per app, with the current deployment.

use std::collections::BTreeMap;

use orchestrator_core::AppId;
use orchestrator_core::api::*;

use super::running::config_nodes;
use super::{Answer, OrchestratorService, ServiceError, ServiceResult};

impl OrchestratorService {
    /// POST /orchestrator/status (docs/COMPATIBILITY.md#status): the active backend's
    /// containers, one topology node per app, plus the current deployment id and preset.
    pub async fn status(&self, request: GetStatusRequest) -> ServiceResult<EnvironmentStatus> {
        let _ = request;
        let backend = self.deps.backends.select(None).await?;
        let containers = backend
            .list()
            .await
            .map_err(|e| ServiceError::unavailable(e.to_string()))?;
        let config = self.current_config().await?;
        // Keyed by `AppId`: a container labelled `auth-main` is the configuration's node
        // `Auth-Main`; a node is named in its first container's spelling.
        let routed: BTreeMap<AppId, Vec<String>> = config
            .as_ref()
            .map(config_nodes)
            .unwrap_or_default()
            .into_iter()
            .map(|n| (n.app_id, n.routed_services))
            .collect();
        let mut by_app: BTreeMap<AppId, i64> = BTreeMap::new();
        for c in &containers {
            let app = if c.app_id.as_str().trim().is_empty() {
                AppId::from("unknown")
            } else {
                c.app_id.clone()
            };
            *by_app.entry(app).or_default() += 1;
        }
        let nodes = by_app
            .into_iter()
            .map(|(id, count)| {
                let app = id.to_string();
                TopologyNode {
                    services: Some(
                        routed
                            .get(&id)
                            .filter(|s| !s.is_empty())
                            .cloned()
                            .unwrap_or_else(|| vec![app.clone()]),
                    ),
                    replicas: count,
                    app_id: Some(app.clone()),
                    ..TopologyNode::new(app)
                }
            })
            .collect();
        let services = containers
            .iter()
            .map(|c| DeployedService {
                name: c.app_id.to_string(),
                status: match c.status {
                    ContainerStatusType::Running => DeployedServiceStatus::Running,
                    ContainerStatusType::Starting => DeployedServiceStatus::Starting,
                    ContainerStatusType::Unhealthy => DeployedServiceStatus::Unhealthy,
                    ContainerStatusType::Stopped | ContainerStatusType::Stopping => {
                        DeployedServiceStatus::Stopped
                    }
                },
                node: c.name.clone(),
                container_id: Some(c.backend_id.clone()),
                pod_name: None,
                endpoints: None,
            })
            .collect();
        Ok(Answer::ok(EnvironmentStatus {
            deployed: !containers.is_empty(),
            timestamp: self.deps.clock.now(),
            deployment_id: config.as_ref().and_then(|c| c.deployment_id.clone()),
            backend: Some(backend.backend_type()),
            preset: config.and_then(|c| c.preset_name),
            topology: Some(ServiceTopology {
                nodes,
                infrastructure: None,
            }),
            services: Some(services),
            infrastructure: None,
            resources: None,
            uptime: None,
        }))
    }
}
