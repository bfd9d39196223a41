//! Endpoint `deploy` (docs/COMPATIBILITY.md#deploy with D27 (docs/DECISIONS.md#d27)).
//!
//! A deploy validates everything before it touches anything (D7): preset, topology,
//! hierarchy, the control plane's own service, pools and backend. Then it plans against
//! what the current configuration runs and hands the plan to the wave executor
//! (`waves.rs`); on a failed wave it reverts to the last stable version unless the
//! request says `autoRevert: false`. A `strategy: blue-green` deploy runs its plan side by
//! side instead (`deploy/blue_green.rs`, D62 (docs/DECISIONS.md#d62)): no revert, the new
//! nodes are discarded. A `strategy: canary` deploy brings its nodes up the same way and
//! leaves a canary running (`deploy/canary.rs`, D64 (docs/DECISIONS.md#d64)): it keeps the
//! lifecycle lock and the deploy record until it is promoted or aborted. A reset to the
//! default is `reset.rs`.

use orchestrator_core::error_source::Chain;
use std::collections::BTreeMap;
use std::sync::Arc;

use orchestrator_core::api::*;
use orchestrator_core::events::{BackendType, DeploymentAction};
use orchestrator_core::planner::side_by_side::{self, SlotChange};
use orchestrator_core::planner::{self, Plan, PlanIssue, PlanOptions};
use orchestrator_core::ports::backend::ContainerBackend;
use orchestrator_core::preset::PresetLibrary;
use orchestrator_core::records::DeploymentConfiguration;
use orchestrator_core::resolver::{self, NodeInput, ResolveInput, Resolved};
use orchestrator_core::{Catalog, ResolvedNode, Timestamp};
use orchestrator_pools::{PoolConfig, PoolSpec};
use orchestrator_routing::table::is_orchestrator;
use uuid::Uuid;

use super::config_record::ConfigRecord;
use super::errors::{library_error, store_error};
use super::wave_failure::texts;
use super::waves::Execution;
use super::{Answer, OrchestratorService, Outcome, ServiceError, ServiceResult, non_empty};
use crate::orchestrator::routing_acks;

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
    /// Blue-green: the nodes that come up beside their old version (the plan is then
    /// side by side: no redeploy).
    slots: Vec<SlotChange>,
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
        let (mut result, laggards) =
            routing_acks::collecting(crate::event_stream::within_deployment(
                &deployment_id,
                self.deploy_checked(&request, &deployment_id),
            ))
            .await;
        if let Ok(answer) = &mut result {
            answer.body.routing_laggards = non_empty(laggards);
        }
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
        let lifecycle = self.begin_lifecycle("deploy").await?;
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
        if answer.body.canary.is_some() {
            // The canary owns the lock and the record until promote or abort (D64).
            self.watch_canary(lifecycle);
            return Ok(answer);
        }
        drop(lifecycle);
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
            tracing::warn!(deployment_id, error = %Chain(&e), "deploy record not cleared");
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
        // A node a blue-green deploy moved to its other slot is planned where it runs (D62).
        let mut desired = resolved.nodes;
        side_by_side::adopt_running_slots(&running, &mut desired);
        let mut plan = planner::plan(&running, &desired, catalog, &options)
            .map_err(|rejected| ServiceError::bad_request(rejected.to_string()))?;
        // Layer-coupling fixes may have changed what a node hosts: check again.
        refuse_orchestrator_nodes(&plan.nodes)?;
        warnings.extend(plan.warnings.iter().map(PlanIssue::to_string));
        let slots = match request.strategy {
            DeployStrategy::Replace => Vec::new(),
            DeployStrategy::BlueGreen | DeployStrategy::Canary => {
                // Changed nodes move to their other slot; planned again, they come up as
                // new nodes beside the old ones, which are torn down (D62).
                let (nodes, slots) = side_by_side::side_by_side_nodes(&plan, &running)
                    .map_err(|e| ServiceError::bad_request(e.to_string()))?;
                plan = planner::plan(&running, &nodes, catalog, &options)
                    .map_err(|rejected| ServiceError::bad_request(rejected.to_string()))?;
                slots
            }
        };
        if request.strategy == DeployStrategy::Canary && slots.is_empty() {
            return Err(ServiceError::bad_request(
                "canary: no node changes, so no call could go to a new node; \
                 deploy with strategy `replace` or `blue-green`",
            ));
        }
        Ok(Prepared {
            preset: request.preset_name().map(str::to_owned),
            config,
            running,
            plan,
            pools,
            warnings,
            slots,
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
            routing_laggards: None,
            switched_routes: None,
            canary: None,
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
        // What a failed ending names (each failure path below returns with it).
        let failed = Failed {
            deployment_id,
            backend: backend_type,
            preset: prepared.preset.clone(),
            begun,
        };
        // Nodes that already run are adopted, and confirmed healthy first, as a wave
        // would: the answer's "Healthy" and its duration must not skip them.
        let unconfirmed = self
            .confirm_adopted(&prepared.running, &prepared.plan)
            .await;
        if !unconfirmed.is_empty() {
            let mut notes = unconfirmed.clone();
            notes.push(
                "Nothing was changed: the deployment stopped before its first wave".to_owned(),
            );
            notes.extend(prepared.warnings);
            return self.failed(failed, Vec::new(), &unconfirmed, notes).await;
        }
        if request.strategy == DeployStrategy::Canary {
            return self
                .run_canary(request, deployment_id, backend, prepared, begun)
                .await;
        }
        let Prepared {
            preset,
            config,
            running,
            plan,
            pools,
            mut warnings,
            slots,
        } = prepared;
        let (exec, switch) = if request.strategy == DeployStrategy::BlueGreen {
            let run = self.run_blue_green(backend, &running, &plan, &slots).await;
            (run.exec, run.switch)
        } else {
            (self.execute_plan(backend, &running, &plan).await, None)
        };
        // Whatever happened, nodes now run on this backend (D6).
        deps.backends.set_active(backend_type);
        warnings.extend(exec.warnings.iter().cloned());
        if !plan.is_empty() {
            self.invalidate_openresty().await;
        }

        if !exec.failures.is_empty() {
            let failures = texts(&exec.failures);
            let mut notes = failures.clone();
            match request.strategy {
                // Nothing to revert: the bring-up discarded its nodes (D62, D64).
                DeployStrategy::BlueGreen | DeployStrategy::Canary => notes.push(if exec.lost_leadership {
                    format!(
                        "{}: stopped before the route switch; the leader's reconciliation \
                         finishes it",
                        request.strategy
                    )
                } else {
                    format!(
                        "{}: the new nodes were stopped before the route switch; the old \
                         nodes still serve and no route moved",
                        request.strategy
                    )
                }),
                DeployStrategy::Replace if request.auto_revert => notes.extend(
                    self.revert_after_failure(
                        backend,
                        &exec.running,
                        &running,
                        config.as_ref(),
                        deployment_id,
                    )
                    .await,
                ),
                DeployStrategy::Replace => notes.push(
                    "Automatic revert disabled (autoRevert: false): the nodes of the failed deployment were left as they are"
                        .to_owned(),
                ),
            }
            notes.extend(warnings);
            return self
                .failed(failed, exec.started_names(), &failures, notes)
                .await;
        }

        for pool in pools {
            let pool_type = pool.pool_type().clone();
            if let Err(e) = deps.scaler.deploy_pool(pool).await {
                warnings.push(format!("processing pool {pool_type}: {e}"));
            }
        }
        let no_environment = BTreeMap::new();
        let record = ConfigRecord {
            deployment_id,
            preset: preset.as_deref(),
            backend: backend_type,
            request_environment: request.environment.as_ref().unwrap_or(&no_environment),
            nodes: &plan.nodes,
        };
        warnings.extend(self.save_stable_config(record).await);
        self.publish_outcome(
            deployment_id,
            preset.clone(),
            Some(backend_type),
            exec.started_names(),
            &[],
        )
        .await;

        let services = healthy_services(&plan.nodes, &exec);
        Answer::ok(DeployResponse {
            success: true,
            deployment_id: deployment_id.to_owned(),
            backend: backend_type,
            preset,
            duration: self.elapsed(begun),
            topology: Some(topology_of(&plan.nodes)),
            services: Some(services),
            warnings: non_empty(warnings),
            routing_laggards: None,
            switched_routes: switch,
            canary: None,
        })
    }

    /// Records `record` as the new configuration version and marks it stable (a
    /// successful deploy, a promoted canary). The nodes are up and healthy: a store
    /// failure here is reported (returned as warnings), not a failed deploy (the next
    /// deploy plans against the backend's list anyway).
    pub(super) async fn save_stable_config(&self, record: ConfigRecord<'_>) -> Vec<String> {
        let deps = &self.deps;
        let record = record.build(deps.clock.now());
        match deps
            .store
            .save_config(&record, deps.settings.config_history_ttl)
            .await
        {
            Ok(version) => match deps.store.mark_config_stable(version).await {
                Ok(_) => Vec::new(),
                Err(e) => vec![format!(
                    "configuration version {version} not marked stable: {e}"
                )],
            },
            Err(e) => vec![format!("configuration version not saved: {e}")],
        }
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
        Answer::with_outcome(
            Outcome::Failed,
            DeployResponse {
                success: false,
                deployment_id: failed.deployment_id.to_owned(),
                backend: failed.backend,
                preset: failed.preset,
                duration: self.elapsed(failed.begun),
                topology: None,
                services: None,
                warnings: Some(notes),
                routing_laggards: None,
                switched_routes: None,
                canary: None,
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

/// The answer's services once every node of `nodes` is healthy, with the container ids
/// of those `exec` started.
fn healthy_services(nodes: &[ResolvedNode], exec: &Execution) -> Vec<DeployedService> {
    nodes
        .iter()
        .map(|n| {
            let started = exec.started.iter().find(|s| s.node.app_id == n.app_id);
            deployed_service(
                n,
                DeployedServiceStatus::Healthy,
                started.map(|s| s.deployed.backend_id.clone()),
            )
        })
        .collect()
}

mod blue_green;
pub(super) mod canary;
#[cfg(test)]
mod tests;
