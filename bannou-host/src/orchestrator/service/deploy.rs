//! Endpoint group `deploy`: deploy (docs/COMPATIBILITY.md#deploy with D27
//! (docs/DECISIONS.md#d27)), teardown (docs/COMPATIBILITY.md#teardown), presets
//! (docs/COMPATIBILITY.md#presets-list), service routing
//! (docs/COMPATIBILITY.md#service-routing) and status (docs/COMPATIBILITY.md#status).
//!
//! A deploy validates everything before it touches anything (D7): preset, topology,
//! hierarchy, the control plane's own service, pools and backend. Then it plans against
//! what the current configuration runs and hands the plan to the wave executor
//! (`waves.rs`); on a failed wave it reverts to the last stable version unless the
//! request says `autoRevert: false`.

use std::collections::BTreeMap;
use std::sync::Arc;

use orchestrator_core::api::*;
use orchestrator_core::events::{BackendType, DeploymentAction};
use orchestrator_core::planner::{self, Plan, PlanIssue, PlanOptions};
use orchestrator_core::ports::backend::{BackendError, ContainerBackend, TeardownOptions};
use orchestrator_core::preset::{LibraryError, PresetLibrary};
use orchestrator_core::records::DeploymentConfiguration;
use orchestrator_core::resolver::{self, NodeInput, ResolveInput, Resolved};
use orchestrator_core::{AppId, Catalog, ResolvedNode, Timestamp};
use orchestrator_pools::{PoolConfig, PoolSpec};
use orchestrator_routing::table::is_orchestrator;
use uuid::Uuid;

use super::deploy_support::{ConfigRecord, store_error, tracked_app_ids};
use super::{Answer, OrchestratorService, ServiceError, ServiceResult};

/// A validated deploy request, ready to run.
struct Prepared {
    /// The preset deployed (`None` for an ad-hoc topology).
    preset: Option<String>,
    /// The configuration current when the request arrived.
    config: Option<DeploymentConfiguration>,
    /// What that configuration runs (per the backend).
    running: Vec<ResolvedNode>,
    /// Current -> desired.
    plan: Plan,
    /// Pools to store and start.
    pools: Vec<PoolConfig>,
    /// Preset and plan warnings.
    warnings: Vec<String>,
}

impl OrchestratorService {
    /// POST /orchestrator/deploy (docs/COMPATIBILITY.md#deploy, D27).
    ///
    /// 200 on success; 500 with the body when a wave failed (the body's `warnings` name
    /// each node's failure and what the revert did); 400/404 when the request is refused,
    /// before anything was touched; 409 while another deployment runs; 503 on a replica
    /// that does not lead (lifecycle operations run on the leader).
    #[tracing::instrument(name = "deploy", skip_all, fields(preset = request.preset_name(), backend = tracing::field::Empty, deployment_id = tracing::field::Empty))]
    pub async fn deploy(&self, request: DeployRequest) -> ServiceResult<DeployResponse> {
        let begun = tokio::time::Instant::now();
        let deployment_id = Uuid::new_v4().to_string();
        let announced = request
            .backend
            .or_else(|| self.deps.backends.active_type())
            .unwrap_or(self.deps.settings.default_backend);
        tracing::Span::current()
            .record("backend", announced.as_str())
            .record("deployment_id", deployment_id.as_str());
        let mut started = self.deployment_event(DeploymentAction::Started, &deployment_id);
        started.preset = request.preset.clone();
        started.backend = Some(announced);
        self.publish_deployment(started).await;

        // Its waves' progress events carry its id (`crate::event_stream`).
        let result = crate::event_stream::within_deployment(
            &deployment_id,
            self.deploy_checked(&request, &deployment_id),
        )
        .await;
        self.metrics
            .deploy_answered(&request, &result, announced, begun);
        if let Err(refused) = &result {
            // Unlike upstream, a refused request does not leave its `started` event
            // without an end.
            self.publish_outcome(
                &deployment_id,
                request.preset.clone(),
                Some(announced),
                Vec::new(),
                std::slice::from_ref(&refused.body.error),
            )
            .await;
        }
        result
    }

    async fn deploy_checked(
        &self,
        request: &DeployRequest,
        deployment_id: &str,
    ) -> ServiceResult<DeployResponse> {
        let begun = self.deps.clock.now();
        request.validate().map_err(ServiceError::field)?;
        let _lifecycle = self.begin_lifecycle("deploy").await?;
        // The tables published while it runs are in its trace (nodes apply them there).
        let _traced = self.deps.broadcaster.trace_deploy();
        let backend = self.deps.backends.select(request.backend).await?;
        if request.is_reset() {
            return self
                .reset_to_default(request, deployment_id, &backend, begun)
                .await;
        }
        let prepared = self.prepare(request, backend.as_ref()).await?;
        if request.dry_run {
            return Ok(self
                .dry_run_answer(deployment_id, backend.backend_type(), prepared, begun)
                .await);
        }
        // Crash safety: what this deploy is about to start is recorded before the first
        // wave, so that a control plane killed mid-deploy finds it on restart
        // (`reconcile.rs`). A store that cannot record it refuses the deploy while
        // nothing has been touched yet.
        let marker = ConfigRecord {
            deployment_id,
            preset: prepared.preset.as_deref(),
            backend: backend.backend_type(),
            request_environment: request.environment.as_ref().unwrap_or(&BTreeMap::new()),
            nodes: &prepared.plan.nodes,
        }
        .build(begun);
        self.deps
            .store
            .begin_deploy(&marker)
            .await
            .map_err(store_error)?;
        let answer = self
            .run_deploy(request, deployment_id, &backend, prepared, begun)
            .await;
        if !self.deps.leader.is_leader() {
            // Stopped leading meanwhile: the record stays, so the leader's reconciliation
            // finishes what this replica may have left half done.
            tracing::warn!(
                deployment_id,
                "deploy ended after this replica stopped leading: its record is left for the leader"
            );
        } else if let Err(e) = self.deps.store.end_deploy(deployment_id).await {
            // Left behind, the record makes the next start revert to the last stable
            // version, which is this deploy's when it succeeded: harmless.
            tracing::warn!(deployment_id, error = %e, "deploy record not cleared");
        }
        Ok(answer)
    }

    /// Every check of D7, in one place: nothing has been touched when this fails.
    async fn prepare(
        &self,
        request: &DeployRequest,
        backend: &dyn ContainerBackend,
    ) -> Result<Prepared, ServiceError> {
        let settings = &self.deps.settings;
        let catalog = Catalog::builtin();
        let request_env = request.environment.clone().unwrap_or_default();
        let (resolved, mut warnings) = match request.preset_name() {
            Some(name) => {
                let parsed = PresetLibrary::with_catalog(&settings.presets_dir, catalog)
                    .load(name)
                    .map_err(library_error)?;
                let resolved = Resolved::from_preset(
                    &parsed,
                    &settings.host_environment,
                    &request_env,
                    catalog,
                )
                .map_err(|e| ServiceError::bad_request(format!("preset `{name}`: {e}")))?;
                let warnings: Vec<String> =
                    parsed.warnings.iter().map(ToString::to_string).collect();
                (resolved, warnings)
            }
            None => {
                let nodes: Vec<NodeInput> = request
                    .topology
                    .iter()
                    .flat_map(|t| &t.nodes)
                    .map(node_input)
                    .collect();
                let resolved = resolver::resolve(&ResolveInput {
                    catalog,
                    orchestrator_environment: &settings.host_environment,
                    preset_environment: &BTreeMap::new(),
                    request_environment: &request_env,
                    nodes: &nodes,
                    pools: &[],
                })
                .map_err(|e| ServiceError::bad_request(format!("topology: {e}")))?;
                (resolved, Vec::new())
            }
        };
        if request.strict && !warnings.is_empty() {
            return Err(ServiceError::bad_request(format!(
                "strict deploy refused because of warnings: {}",
                warnings.join("; ")
            )));
        }
        refuse_orchestrator_nodes(&resolved.nodes)?;
        let pools = resolved
            .pools
            .iter()
            .map(|p| {
                PoolConfig::new(PoolSpec::from(p)).map_err(|e| {
                    ServiceError::bad_request(format!("processing pool `{}`: {e}", p.pool_type))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let config = self.current_config().await?;
        let running = self.running_nodes(config.as_ref(), backend).await;
        let options = PlanOptions {
            control_plane_services: None,
            strict: request.strict,
        };
        let plan = planner::plan(&running, &resolved.nodes, catalog, &options)
            .map_err(|rejected| ServiceError::bad_request(rejected.to_string()))?;
        // Layer-coupling fixes may have changed what a node hosts: check again.
        refuse_orchestrator_nodes(&plan.nodes)?;
        warnings.extend(plan.warnings.iter().map(PlanIssue::to_string));
        Ok(Prepared {
            preset: request.preset_name().map(str::to_owned),
            config,
            running,
            plan,
            pools,
            warnings,
        })
    }

    /// Dry run: the planned nodes as `starting`, the events, nothing else.
    async fn dry_run_answer(
        &self,
        deployment_id: &str,
        backend: BackendType,
        prepared: Prepared,
        begun: Timestamp,
    ) -> Answer<DeployResponse> {
        let services = prepared
            .plan
            .nodes
            .iter()
            .map(|n| deployed_service(n, DeployedServiceStatus::Starting, None))
            .collect();
        let changes = prepared.plan.nodes.iter().map(|n| n.name.clone()).collect();
        self.publish_outcome(
            deployment_id,
            prepared.preset.clone(),
            Some(backend),
            changes,
            &[],
        )
        .await;
        Answer::ok(DeployResponse {
            success: true,
            deployment_id: deployment_id.to_owned(),
            backend,
            preset: prepared.preset,
            duration: self.elapsed(begun),
            topology: Some(topology_of(&prepared.plan.nodes)),
            services: Some(services),
            warnings: non_empty(prepared.warnings),
        })
    }

    /// Runs a prepared deploy: the health of the nodes it adopts, waves, pools,
    /// configuration version, events; reverts on a failed wave (an adopted node that is
    /// not healthy in time fails the deploy before anything is touched).
    async fn run_deploy(
        &self,
        request: &DeployRequest,
        deployment_id: &str,
        backend: &Arc<dyn ContainerBackend>,
        prepared: Prepared,
        begun: Timestamp,
    ) -> Answer<DeployResponse> {
        let deps = &self.deps;
        let backend_type = backend.backend_type();
        let Prepared {
            preset,
            config,
            running,
            plan,
            pools,
            mut warnings,
        } = prepared;
        // What a failed ending names (each failure path below returns with it).
        let failed = Failed {
            deployment_id,
            backend: backend_type,
            preset: preset.clone(),
            begun,
        };
        // Nodes that already run are adopted, and confirmed healthy first, as a wave
        // would: the answer's "Healthy" and its duration must not skip them.
        let unconfirmed = self.confirm_adopted(&running, &plan).await;
        if !unconfirmed.is_empty() {
            let mut notes = unconfirmed.clone();
            notes.push(
                "Nothing was changed: the deployment stopped before its first wave".to_owned(),
            );
            notes.extend(warnings);
            return self.failed(failed, Vec::new(), &unconfirmed, notes).await;
        }
        let exec = self.execute_plan(backend, &running, &plan).await;
        // Whatever happened, nodes now run on this backend (D6).
        deps.backends.set_active(backend_type);
        warnings.extend(exec.warnings.iter().cloned());
        if !plan.is_empty() {
            self.invalidate_openresty().await;
        }

        if !exec.failures.is_empty() {
            let mut notes = exec.failures.clone();
            if request.auto_revert {
                notes.extend(
                    self.revert_after_failure(
                        backend,
                        &exec.running,
                        &running,
                        config.as_ref(),
                        deployment_id,
                    )
                    .await,
                );
            } else {
                notes.push(
                    "Automatic revert disabled (autoRevert: false): the nodes of the failed deployment were left as they are"
                        .to_owned(),
                );
            }
            notes.extend(warnings);
            return self
                .failed(failed, exec.started_names(), &exec.failures, notes)
                .await;
        }

        for pool in pools {
            let pool_type = pool.pool_type().clone();
            if let Err(e) = deps.scaler.deploy_pool(pool).await {
                warnings.push(format!("processing pool {pool_type}: {e}"));
            }
        }
        let record = ConfigRecord {
            deployment_id,
            preset: preset.as_deref(),
            backend: backend_type,
            request_environment: request.environment.as_ref().unwrap_or(&BTreeMap::new()),
            nodes: &plan.nodes,
        }
        .build(deps.clock.now());
        // The nodes are up and healthy: a store failure here is reported, not a failed
        // deploy (the next deploy plans against the backend's list anyway).
        match deps
            .store
            .save_config(&record, deps.settings.config_history_ttl)
            .await
        {
            Ok(version) => {
                if let Err(e) = deps.store.mark_config_stable(version).await {
                    warnings.push(format!(
                        "configuration version {version} not marked stable: {e}"
                    ));
                }
            }
            Err(e) => warnings.push(format!("configuration version not saved: {e}")),
        }
        self.publish_outcome(
            deployment_id,
            preset.clone(),
            Some(backend_type),
            exec.started_names(),
            &[],
        )
        .await;

        let services = plan
            .nodes
            .iter()
            .map(|n| {
                let started = exec.started.iter().find(|s| s.node.app_id == n.app_id);
                deployed_service(
                    n,
                    DeployedServiceStatus::Healthy,
                    started.map(|s| s.deployed.backend_id.clone()),
                )
            })
            .collect();
        Answer::ok(DeployResponse {
            success: true,
            deployment_id: deployment_id.to_owned(),
            backend: backend_type,
            preset,
            duration: self.elapsed(begun),
            topology: Some(topology_of(&plan.nodes)),
            services: Some(services),
            warnings: non_empty(warnings),
        })
    }

    /// ResetToDefault (docs/COMPATIBILITY.md#reset-to-default,
    /// docs/COMPATIBILITY.md#deploy): every route back to the control plane, every node the
    /// current configuration deployed torn down, an empty configuration recorded (marked
    /// stable: "nothing but the control plane" is healthy by definition, and a later failed
    /// deploy must revert to it, not to what was reset away).
    async fn reset_to_default(
        &self,
        request: &DeployRequest,
        deployment_id: &str,
        backend: &Arc<dyn ContainerBackend>,
        begun: Timestamp,
    ) -> ServiceResult<DeployResponse> {
        let deps = &self.deps;
        let backend_type = backend.backend_type();
        let config = self.current_config().await?;
        let tracked = config.as_ref().map(tracked_app_ids).unwrap_or_default();
        let deployed_something = config
            .as_ref()
            .is_some_and(|c| !c.services.is_empty() || !c.nodes.is_empty());
        let answer = |success, torn: &[AppId], warnings: Vec<String>| DeployResponse {
            success,
            deployment_id: deployment_id.to_owned(),
            backend: backend_type,
            preset: Some(orchestrator_core::config_history::CLEARED_PRESET_NAME.to_owned()),
            duration: self.elapsed(begun),
            topology: Some(ServiceTopology::empty()),
            services: Some(
                torn.iter()
                    .map(|a| DeployedService {
                        name: a.to_string(),
                        status: DeployedServiceStatus::Stopped,
                        node: deps.settings.control_plane_app_id.to_string(),
                        container_id: None,
                        pod_name: None,
                        endpoints: None,
                    })
                    .collect(),
            ),
            warnings: non_empty(warnings),
        };
        if request.dry_run {
            let changes = tracked.iter().map(ToString::to_string).collect();
            self.publish_outcome(
                deployment_id,
                request.preset.clone(),
                Some(backend_type),
                changes,
                &[],
            )
            .await;
            return Ok(Answer::ok(answer(true, &tracked, Vec::new())));
        }

        let mut warnings = self.change_routes(|table, _, _| table.reset_all()).await;
        // Routes the table does not hold (written before a restart) go too: the store
        // must agree that everything resolves to the control plane.
        match deps.store.list_routes().await {
            Ok(stale) => {
                for service in stale.keys() {
                    if let Err(e) = deps.store.remove_route(service).await {
                        warnings.push(format!("route of {service} not removed: {e}"));
                    }
                }
            }
            Err(e) => warnings.push(format!("stored routes not listed: {e}")),
        }
        let mut torn = Vec::new();
        let mut success = true;
        if deployed_something {
            self.invalidate_openresty().await;
            for app in &tracked {
                let (result, w) = self
                    .teardown_node(backend.as_ref(), app, &TeardownOptions::default())
                    .await;
                warnings.extend(w);
                match result {
                    Ok(_) => torn.push(app.clone()),
                    Err(BackendError::NotFound { .. }) => {}
                    Err(e) => {
                        tracing::warn!(app_id = %app, error = %e, "reset: teardown failed");
                        warnings.push(format!("{app}: {e}"));
                    }
                }
            }
            match deps
                .store
                .clear_config(deps.clock.now(), deps.settings.config_history_ttl)
                .await
            {
                Ok(version) => {
                    if let Err(e) = deps.store.mark_config_stable(version).await {
                        warnings.push(format!(
                            "configuration version {version} not marked stable: {e}"
                        ));
                    }
                }
                Err(e) => {
                    // docs/COMPATIBILITY.md#reset-to-default step 5: a failure answers
                    // success=false, still 200.
                    success = false;
                    warnings.push(format!("configuration not cleared: {e}"));
                }
            }
        }
        deps.backends.set_active(backend_type);
        let failures: Vec<String> = if success {
            Vec::new()
        } else {
            warnings.clone()
        };
        self.publish_outcome(
            deployment_id,
            request.preset.clone(),
            Some(backend_type),
            torn.iter().map(ToString::to_string).collect(),
            &failures,
        )
        .await;
        Ok(Answer::ok(answer(success, &torn, warnings)))
    }

    /// POST /orchestrator/teardown (docs/COMPATIBILITY.md#teardown): every node of ours on
    /// the active backend except the control plane (D8), optionally infrastructure too;
    /// routes of torn-down nodes return to the default. Afterwards the current
    /// configuration is cleared, as nothing it describes runs any more.
    #[tracing::instrument(name = "teardown", skip_all)]
    pub async fn teardown(&self, request: TeardownRequest) -> ServiceResult<TeardownResponse> {
        let deps = &self.deps;
        let begun = deps.clock.now();
        request.validate().map_err(ServiceError::field)?;
        let _lifecycle = self.begin_lifecycle("tear down").await?;
        let backend = deps.backends.select(None).await?;
        let deployment_id = Uuid::new_v4().to_string();
        if !request.dry_run {
            self.publish_deployment(
                self.deployment_event(DeploymentAction::TopologyChanged, &deployment_id),
            )
            .await;
        }
        let unavailable = |e: BackendError| ServiceError::unavailable(e.to_string());
        let containers = backend.list().await.map_err(unavailable)?;
        let infrastructure: Vec<String> = backend
            .list_infrastructure()
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(|i| i.name)
            .filter(|n| !n.trim().is_empty())
            .collect();
        let is_infra = |name: &str| infrastructure.iter().any(|i| i.eq_ignore_ascii_case(name));
        let mut targets: Vec<AppId> = Vec::new();
        for c in containers {
            let app = c.app_id;
            if app.as_str().trim().is_empty()
                || self.is_control_plane(&app)
                || is_infra(app.as_str())
                || targets.contains(&app)
            {
                continue;
            }
            targets.push(app);
        }
        if targets.is_empty() {
            return Ok(Answer::ok(TeardownResponse {
                duration: "0s".to_owned(),
                stopped_containers: Some(Vec::new()),
                removed_volumes: Some(Vec::new()),
                ..TeardownResponse::default()
            }));
        }
        if request.dry_run {
            return Ok(Answer::ok(TeardownResponse {
                duration: self.elapsed(begun),
                stopped_containers: Some(targets.iter().map(ToString::to_string).collect()),
                removed_volumes: Some(Vec::new()),
                removed_infrastructure: Some(if request.include_infrastructure {
                    infrastructure.clone()
                } else {
                    Vec::new()
                }),
                ..TeardownResponse::default()
            }));
        }

        let options = TeardownOptions {
            remove_volumes: request.remove_volumes,
            ..TeardownOptions::default()
        };
        let mut stopped = Vec::new();
        let mut volumes = Vec::new();
        let mut removed_infrastructure = Vec::new();
        let mut errors = Vec::new();
        for app in &targets {
            let (result, warnings) = self.teardown_node(backend.as_ref(), app, &options).await;
            for w in warnings {
                tracing::warn!(app_id = %app, "{w}");
            }
            match result {
                Ok(done) => {
                    stopped.extend(done.stopped);
                    volumes.extend(done.removed_volumes);
                }
                Err(e) => errors.push(format!("{app}: {e}")),
            }
        }
        if request.include_infrastructure {
            for name in &infrastructure {
                match backend.teardown(&AppId::new(name.clone()), &options).await {
                    Ok(done) => {
                        stopped.extend(done.stopped);
                        volumes.extend(done.removed_volumes);
                        removed_infrastructure.push(name.clone());
                    }
                    Err(e) => errors.push(format!("[infra] {name}: {e}")),
                }
            }
        }
        if let Some(config) = self.current_config().await.ok().flatten()
            && !tracked_app_ids(&config).is_empty()
        {
            match deps
                .store
                .clear_config(deps.clock.now(), deps.settings.config_history_ttl)
                .await
            {
                Ok(version) => {
                    let _ = deps.store.mark_config_stable(version).await;
                }
                Err(e) => errors.push(format!("configuration not cleared: {e}")),
            }
        }
        self.publish_outcome(
            &deployment_id,
            None,
            Some(backend.backend_type()),
            stopped.clone(),
            &errors,
        )
        .await;
        Ok(Answer::ok(TeardownResponse {
            duration: self.elapsed(begun),
            stopped_containers: Some(stopped),
            removed_volumes: Some(volumes),
            removed_networks: None,
            removed_infrastructure: Some(removed_infrastructure),
            errors: non_empty(errors),
        }))
    }

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

    /// POST /orchestrator/service-routing (docs/COMPATIBILITY.md#service-routing): the live
    /// routing table (services routed away from the default), filtered by a
    /// case-insensitive name prefix.
    pub async fn service_routing(
        &self,
        request: GetServiceRoutingRequest,
    ) -> ServiceResult<ServiceRoutingResponse> {
        let (mappings, default_app_id) = {
            let state = self.deps.health.lock();
            let mappings: BTreeMap<String, String> = state
                .routing
                .mappings()
                .into_iter()
                .filter(|(s, _)| request.matches(s))
                .map(|(s, a)| (s, a.to_string()))
                .collect();
            (mappings, state.routing.default_app_id().to_string())
        };
        let deployment_id = self.current_config().await?.and_then(|c| c.deployment_id);
        // Routing lag (ours only): the nodes' applied versions as the routing metrics
        // read them; the current version is the store's (the metrics learn it from the
        // bus a moment after it is published), or the metrics' when the store is away.
        let (seen_version, applied) = self.metrics.routing_lag();
        let stored = self.deps.store.mappings_version().await.ok();
        let mappings_version = stored.filter(|v| *v > 0).max(seen_version);
        let node_versions: Vec<NodeMappingsVersion> = applied
            .into_iter()
            .map(|(app_id, applied_version)| NodeMappingsVersion {
                app_id,
                applied_version,
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
        }))
    }

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
            .map(super::deploy_support::config_nodes)
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

    /// `"N.Ns"` since `begun` on the injected clock.
    pub(super) fn elapsed(&self, begun: Timestamp) -> String {
        format_duration_secs(self.deps.clock.now().saturating_since(begun))
    }

    /// Ends a failed deploy: publishes its `failed` outcome (`started` nodes, `failures`)
    /// and answers 500 with `notes` as the warnings.
    async fn failed(
        &self,
        failed: Failed<'_>,
        started: Vec<String>,
        failures: &[String],
        notes: Vec<String>,
    ) -> Answer<DeployResponse> {
        self.publish_outcome(
            failed.deployment_id,
            failed.preset.clone(),
            Some(failed.backend),
            started,
            failures,
        )
        .await;
        Answer::with_status(
            500,
            DeployResponse {
                success: false,
                deployment_id: failed.deployment_id.to_owned(),
                backend: failed.backend,
                preset: failed.preset,
                duration: self.elapsed(failed.begun),
                topology: None,
                services: None,
                warnings: Some(notes),
            },
        )
    }
}

/// What a failed deploy's answer names: the deployment, its backend and preset, and when
/// it began (for the duration).
struct Failed<'a> {
    deployment_id: &'a str,
    backend: BackendType,
    preset: Option<String>,
    begun: Timestamp,
}

/// A request topology node as resolver input (docs/COMPATIBILITY.md#environment-layering:
/// its `layers` are informational, only environment keys decide).
fn node_input(node: &TopologyNode) -> NodeInput {
    NodeInput {
        name: node.name.clone(),
        app_id: node.app_id.clone(),
        layers: node.layers.clone().unwrap_or_default(),
        services: node.services.clone().unwrap_or_default(),
        replicas: u32::try_from(node.replicas.max(1)).unwrap_or(u32::MAX),
        environment: node.environment.clone().unwrap_or_default(),
        mesh_enabled: node.mesh_enabled,
    }
}

/// docs/COMPATIBILITY.md#deploy step 8b, for the whole request (D7): no node may run the
/// orchestrator; its route always points at the control plane, and a second orchestrator
/// would fight the first over the same state.
fn refuse_orchestrator_nodes(nodes: &[ResolvedNode]) -> Result<(), ServiceError> {
    let bad: Vec<String> = nodes
        .iter()
        .filter_map(|n| {
            if n.routed_services.iter().any(|s| is_orchestrator(s)) {
                Some(format!(
                    "{}: Cannot deploy orchestrator service - route cannot be overridden",
                    n.name
                ))
            } else if n.services.iter().any(|s| is_orchestrator(s)) {
                Some(format!(
                    "{}: would run the orchestrator service (its AppFeatures layer is on); set ORCHESTRATOR_SERVICE_ENABLED=false on the node",
                    n.name
                ))
            } else {
                None
            }
        })
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::bad_request(bad.join("; ")))
    }
}

/// Library failures as API answers: a missing preset is 404, a bad name or an invalid
/// file 400 (with file, line and column), an unreadable one 500.
fn library_error(e: LibraryError) -> ServiceError {
    match e {
        LibraryError::NotFound { .. } => ServiceError::not_found(e.to_string()),
        LibraryError::InvalidName { .. } => {
            ServiceError::field(FieldError::new("preset", e.to_string()))
        }
        LibraryError::Invalid(_) => ServiceError::bad_request(e.to_string()),
        LibraryError::Io { .. } => {
            let detail = std::error::Error::source(&e)
                .map(|s| format!(": {s}"))
                .unwrap_or_default();
            ServiceError::internal(format!("{e}{detail}"))
        }
    }
}

/// A preset's `requiredBackends` entry as a backend type: shipped files say
/// `docker-compose` and `docker-swarm`, which the enum spells without `docker-`.
fn backend_from_preset(name: &str) -> Option<BackendType> {
    let n = name.trim();
    let n = n
        .strip_prefix("docker-")
        .or_else(|| n.strip_prefix("docker_"))
        .unwrap_or(n);
    n.parse().ok()
}

/// The topology a list of nodes forms, as the API shows it. Environments are left out:
/// they hold the forwarded orchestrator environment, secrets included.
fn topology_of(nodes: &[ResolvedNode]) -> ServiceTopology {
    ServiceTopology {
        nodes: nodes
            .iter()
            .map(|n| TopologyNode {
                services: Some(n.routed_services.clone()),
                replicas: i64::from(n.replicas.max(1)),
                mesh_enabled: n.mesh_enabled,
                app_id: Some(n.app_id.to_string()),
                ..TopologyNode::new(n.name.clone())
            })
            .collect(),
        infrastructure: None,
    }
}

fn deployed_service(
    node: &ResolvedNode,
    status: DeployedServiceStatus,
    container_id: Option<String>,
) -> DeployedService {
    DeployedService {
        name: node.name.clone(),
        status,
        node: node.app_id.to_string(),
        container_id,
        pod_name: None,
        endpoints: None,
    }
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

#[cfg(test)]
mod tests;
