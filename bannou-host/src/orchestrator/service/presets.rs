//! Endpoint `presets/list` (docs/COMPATIBILITY.md#presets-list with its recommendation).

use orchestrator_core::Catalog;
use orchestrator_core::api::*;
use orchestrator_core::events::BackendType;
use orchestrator_core::preset::PresetLibrary;
use orchestrator_core::resolver::NodeInput;

use super::{Answer, OrchestratorService, ServiceError, ServiceResult, non_empty};

impl OrchestratorService {
    /// POST /orchestrator/presets/list (docs/COMPATIBILITY.md#presets-list with its
    /// recommendation): every loadable preset with its converted topology, environment,
    /// category, backends and file; `activePreset` from the current configuration (`bannou`
    /// when nothing was ever deployed). Invalid files are skipped with a warning in the
    /// log.
    pub async fn presets(&self, request: ListPresetsRequest) -> ServiceResult<PresetsResponse> {
        // The category filter is ignored, as upstream (clients expect the full list).
        let _ = request;
        let catalog = Catalog::builtin();
        let library = PresetLibrary::with_catalog(&self.deps.settings.presets_dir, catalog);
        let listing = library
            .list()
            .map_err(|e| ServiceError::internal(format!("listing presets: {e}")))?;
        for skipped in &listing.skipped {
            tracing::warn!(file = %skipped.file.display(), error = %skipped.error, "preset skipped");
        }
        let mut presets = Vec::with_capacity(listing.presets.len());
        for summary in &listing.presets {
            let parsed = match library.load_path(&summary.file) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(file = %summary.file.display(), error = %e, "preset skipped");
                    continue;
                }
            };
            let p = parsed.preset;
            let nodes = p
                .nodes
                .iter()
                .map(|n| {
                    let input = NodeInput::from_preset_node(&p.environment, n);
                    TopologyNode {
                        name: input.name.clone(),
                        layers: None,
                        services: Some(input.services.clone()),
                        replicas: i64::from(input.replicas),
                        resources: None,
                        environment: Some(input.environment.clone()),
                        mesh_enabled: input.mesh_enabled,
                        app_id: Some(input.effective_app_id().to_string()),
                    }
                })
                .collect();
            let required: Vec<BackendType> = p
                .required_backends
                .iter()
                .filter_map(|b| backend_from_preset(b))
                .collect();
            presets.push(DeploymentPreset {
                description: p
                    .description
                    .clone()
                    .unwrap_or_else(|| format!("Preset: {}", p.name)),
                category: p.category.as_deref().and_then(|c| c.parse().ok()),
                topology: ServiceTopology {
                    nodes,
                    infrastructure: None,
                },
                environment: (!p.environment.is_empty()).then(|| p.environment.clone()),
                required_backends: non_empty(required),
                built_in: false,
                file_path: Some(summary.file.display().to_string()),
                name: p.name,
            });
        }
        let active_preset = match self.current_config().await? {
            Some(c) => c.preset_name,
            None => Some(self.deps.settings.control_plane_app_id.to_string()),
        };
        Ok(Answer::ok(PresetsResponse {
            presets,
            active_preset,
        }))
    }
}

/// A preset's `requiredBackends` entry as a backend type: shipped files say
/// `docker-compose` and `docker-swarm`, which the enum spells without `docker-`.
pub(super) fn backend_from_preset(name: &str) -> Option<BackendType> {
    let n = name.trim();
    let n = n
        .strip_prefix("docker-")
        .or_else(|| n.strip_prefix("docker_"))
        .unwrap_or(n);
    n.parse().ok()
}
