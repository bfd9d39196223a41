//! What runs now: the current configuration, the nodes it describes, which of them the
//! backend still lists as running, and which app-id is the control plane's own.

use orchestrator_core::error_source::Chain;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use orchestrator_core::ports::backend::ContainerBackend;
use orchestrator_core::records::DeploymentConfiguration;
use orchestrator_core::{AppId, ResolvedNode};

use super::errors::store_error;
use super::{OrchestratorService, ServiceError};
use crate::orchestrator::pool_scaler::running_or_restarting;

impl OrchestratorService {
    /// True for the control plane's app-id (configured or the literal `bannou`).
    pub(super) fn is_control_plane(&self, app_id: &AppId) -> bool {
        app_id.is_control_plane() || *app_id == self.deps.settings.control_plane_app_id
    }

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
                tracing::warn!(error = %Chain(&e), "backend list failed; planning against the stored configuration");
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

#[cfg(test)]
mod tests {
    use orchestrator_core::Timestamp;
    use orchestrator_core::records::ServiceDeploymentConfig;

    use super::*;

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
