//! The use-case test harness: an [`OrchestratorService`] over in-memory adapters and the
//! scriptable [`FakeBackend`], with the heartbeat pipeline running, on a clock that
//! follows tokio's (pausable) time. `World::auto_heartbeats` plays the nodes: every node
//! the fake backend runs sends a heartbeat for the services its environment enables,
//! so a deploy's per-wave wait can complete.

// Helpers here serve the tests of every endpoint group; not each uses every one.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use orchestrator_core::api::{ContainerStatusType, DeployRequest, ServiceTopology, TopologyNode};
use orchestrator_core::events::{ServiceHealthStatus, ServiceHeartbeatEvent};
use orchestrator_core::health::{HealthConfig, HeartbeatAggregator};
use orchestrator_core::memory::backend::{BackendCall, FakeBackend};
use orchestrator_core::memory::bus::InMemoryBus;
use orchestrator_core::memory::store::InMemoryStore;
use orchestrator_core::ports::backend::ContainerBackend;
use orchestrator_core::ports::bus::EventBusExt;
use orchestrator_core::time::Clock;
use orchestrator_core::{AppId, Catalog, Timestamp};
use orchestrator_pools::MemoryLeaseStore;
use orchestrator_routing::{BroadcastPolicy, RoutingTable};
use tokio::sync::watch;
use uuid::Uuid;

use super::{BackendRegistry, OrchestratorService, ServiceDeps, ServiceSettings};
use crate::clock::TokioClock;
use crate::orchestrator::heartbeats::{HealthState, HeartbeatPipeline, SharedHealth};
use crate::orchestrator::leases::LeaseReaper;
use crate::orchestrator::mappings::MappingsBroadcaster;
use crate::orchestrator::pool_scaler::{PoolScaler, ScalerConfig};

/// How a node played by [`World::auto_heartbeats`] reports each service.
pub(crate) type Overrides = Arc<Mutex<BTreeMap<String, ServiceHealthStatus>>>;

/// A service and everything behind it, for one test.
pub(crate) struct World {
    pub service: OrchestratorService,
    pub backend: FakeBackend,
    pub bus: Arc<InMemoryBus>,
    pub store: Arc<InMemoryStore>,
    pub leases: MemoryLeaseStore,
    pub clock: Arc<dyn Clock>,
    pub pipeline: Arc<HeartbeatPipeline>,
    /// Per app-id status the auto-heartbeat task reports instead of healthy
    /// (`"*"` applies to every app-id); silent app-ids are in `silenced`.
    pub overrides: Overrides,
    pub silenced: Arc<Mutex<BTreeSet<String>>>,
    /// Sets whether the service leads (it does at first).
    pub leadership: Arc<watch::Sender<crate::orchestrator::leader::LeaderState>>,
    shutdown: watch::Sender<bool>,
}

impl World {
    /// A world with default settings (backend `InProcess` fake registered, default
    /// backend `InProcess`, short wave timeout of 5 s) and `presets_dir` pointing at the
    /// repository's `presets/`.
    pub async fn new() -> World {
        Self::with_settings(|_| {}).await
    }

    /// A world whose settings `tweak` adjusts.
    pub async fn with_settings(tweak: impl FnOnce(&mut ServiceSettings)) -> World {
        Self::with_backends(tweak, Vec::new()).await
    }

    /// A world with `extra` backends registered after the fake in-process one.
    pub async fn with_backends(
        tweak: impl FnOnce(&mut ServiceSettings),
        extra: Vec<Arc<dyn ContainerBackend>>,
    ) -> World {
        Self::build(tweak, extra, |fake| Arc::new(fake)).await
    }

    /// A default world whose in-process backend is `wrap(fake)`: a spy or mock around the
    /// fake, which still holds the nodes (the auto heartbeats and the pool scaler use the
    /// fake itself).
    pub async fn wrapping_backend(
        wrap: impl FnOnce(FakeBackend) -> Arc<dyn ContainerBackend>,
    ) -> World {
        Self::build(|_| {}, Vec::new(), wrap).await
    }

    async fn build(
        tweak: impl FnOnce(&mut ServiceSettings),
        extra: Vec<Arc<dyn ContainerBackend>>,
        wrap: impl FnOnce(FakeBackend) -> Arc<dyn ContainerBackend>,
    ) -> World {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(Timestamp::from_unix_millis(
            1_780_000_000_000,
        )));
        let mut settings = ServiceSettings {
            default_backend: orchestrator_core::events::BackendType::InProcess,
            wave_timeout: Duration::from_secs(5),
            presets_dir: std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("presets"),
            ..ServiceSettings::default()
        };
        tweak(&mut settings);
        let store = Arc::new(InMemoryStore::new(clock.clone()));
        let bus = Arc::new(InMemoryBus::new());
        let leases = MemoryLeaseStore::new();
        let backend = FakeBackend::new(clock.clone());
        let health = SharedHealth::new(HealthState {
            aggregator: HeartbeatAggregator::new(
                HealthConfig::new(settings.heartbeat_timeout, settings.degradation_threshold)
                    .expect("valid health config"),
            ),
            routing: RoutingTable::new(settings.control_plane_app_id.clone()),
        });
        let broadcaster = Arc::new(MappingsBroadcaster::new(
            health.clone(),
            store.clone(),
            bus.clone(),
            clock.clone(),
            BroadcastPolicy::default(),
        ));
        let scaler = Arc::new(
            PoolScaler::new(
                Arc::new(leases.clone()),
                Arc::new(backend.clone()),
                clock.clone(),
                ScalerConfig::default(),
            )
            .with_outbox(crate::orchestrator::pool_events::Outbox::new(bus.clone())),
        );
        let reaper = Arc::new(
            LeaseReaper::new(
                Arc::new(leases.clone()),
                bus.clone(),
                clock.clone(),
                Duration::from_secs(60),
            )
            .with_scaler(scaler.clone()),
        );
        let pipeline = Arc::new(
            HeartbeatPipeline::new(health.clone(), clock.clone(), settings.default_service_port)
                .with_broadcaster(broadcaster.clone())
                .with_worker_promotion(Arc::new(leases.clone())),
        );
        let (shutdown, rx) = watch::channel(false);
        {
            let (pipeline, bus, rx) = (pipeline.clone(), bus.clone(), rx.clone());
            tokio::spawn(async move { pipeline.run(bus.as_ref(), rx).await });
        }
        {
            let (broadcaster, rx) = (broadcaster.clone(), rx.clone());
            tokio::spawn(async move { broadcaster.run(rx).await });
        }
        {
            let (health, bus, rx) = (health.clone(), bus.clone(), rx.clone());
            tokio::spawn(async move {
                crate::orchestrator::routing_acks::follow_acks(bus.as_ref(), health, rx).await
            });
        }
        // Let the pipeline subscribe before anything is published.
        tokio::task::yield_now().await;
        let mut backends = vec![wrap(backend.clone())];
        backends.extend(extra);
        let registry = Arc::new(BackendRegistry::new(backends, settings.default_backend));
        let (leader, leadership) =
            crate::orchestrator::leader::LeaderHandle::controlled("bannou-test");
        let service = OrchestratorService::new(ServiceDeps {
            store: store.clone(),
            bus: bus.clone(),
            leases: Arc::new(leases.clone()),
            backends: registry,
            clock: clock.clone(),
            health,
            broadcaster,
            scaler,
            reaper,
            leader,
            logs: crate::log_buffer::LogBuffer::new(),
            settings,
        });
        World {
            service,
            backend,
            bus,
            store,
            leases,
            clock,
            pipeline,
            overrides: Arc::default(),
            silenced: Arc::default(),
            leadership,
            shutdown,
        }
    }

    /// A default world whose deployed nodes heartbeat every 100 ms (what most deploy
    /// tests want).
    pub async fn with_live_nodes() -> World {
        let world = World::new().await;
        world.auto_heartbeats(Duration::from_millis(100));
        world
    }

    /// Publishes one heartbeat from `app_id` reporting `services` with `status`.
    pub async fn heartbeat(&self, app_id: &str, services: &[&str], status: ServiceHealthStatus) {
        let hb = ServiceHeartbeatEvent::new(
            Uuid::new_v4(),
            AppId::new(app_id),
            self.clock.now(),
            services.iter().map(|s| (*s, status)),
        );
        self.bus
            .publish_event(&hb)
            .await
            .expect("publish heartbeat");
    }

    /// Plays every node the fake backend runs: each `every`, a heartbeat per running
    /// node for the services its environment enables
    /// (docs/COMPATIBILITY.md#enablement-rule), healthy unless `overrides` says otherwise,
    /// none for app-ids in `silenced`. Ends with the world.
    pub fn auto_heartbeats(&self, every: Duration) {
        let (backend, bus, clock) = (self.backend.clone(), self.bus.clone(), self.clock.clone());
        let (overrides, silenced) = (self.overrides.clone(), self.silenced.clone());
        let mut rx = self.shutdown.subscribe();
        // One stable instance id per app-id, as a real node keeps between beats.
        let mut instances: BTreeMap<AppId, Uuid> = BTreeMap::new();
        tokio::spawn(async move {
            let catalog = Catalog::builtin();
            loop {
                for app in backend.app_ids() {
                    let Some(node) = backend.node(&app) else {
                        continue;
                    };
                    if node.status != ContainerStatusType::Running
                        || silenced
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .contains(app.as_str())
                    {
                        continue;
                    }
                    let status = {
                        let o = overrides.lock().unwrap_or_else(PoisonError::into_inner);
                        o.get(app.as_str())
                            .or_else(|| o.get("*"))
                            .copied()
                            .unwrap_or(ServiceHealthStatus::Healthy)
                    };
                    let services = orchestrator_core::resolver::enabled_services(
                        &node.deployment.environment,
                        catalog,
                    );
                    let id = *instances.entry(app.clone()).or_insert_with(Uuid::new_v4);
                    let hb = ServiceHeartbeatEvent::new(
                        id,
                        app.clone(),
                        clock.now(),
                        services.into_iter().map(|s| (s, status)),
                    );
                    let _ = bus.publish_event(&hb).await;
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = crate::orchestrator::stopped(&mut rx) => return,
                }
            }
        });
    }

    /// Sets how `app_id` (or `"*"`) reports from now on.
    pub fn set_status(&self, app_id: &str, status: ServiceHealthStatus) {
        self.overrides
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(app_id.to_owned(), status);
    }
}

// === helpers of the operations endpoints (health, containers, pools) ===

impl World {
    /// Runs node `app_id` on the fake backend with exactly `services` enabled, as a deploy
    /// would start it (without going through deploy).
    pub async fn run_node(&self, app_id: &str, services: &[&str]) -> AppId {
        let app = AppId::new(app_id);
        let mut node = orchestrator_core::ports::backend::NodeDeployment::new(
            app.clone(),
            services.first().copied().unwrap_or("bannou"),
            "bannou:latest",
        );
        node.environment
            .insert("BANNOU_SERVICES_ENABLED".into(), "false".into());
        for s in services {
            node.environment.insert(
                orchestrator_core::names::service_enable_flag(s),
                "true".into(),
            );
        }
        self.backend.deploy_node(&node).await.expect("fake deploy");
        app
    }

    /// Lets published events reach the pipeline and spawned tasks run (paused time makes
    /// the short sleep instant).
    pub async fn settle(&self) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    /// Configures pool `name` (plugin `asset`, workers in [`min`, `max`], no autoscale
    /// surprises beyond the policy) through the scaler, which starts `min` workers (Pending
    /// until their first heartbeat).
    pub async fn pool(&self, name: &str, min: i64, max: i64) -> orchestrator_pools::PoolType {
        let mut spec = orchestrator_pools::PoolSpec::named(name);
        spec.plugin = Some("asset".to_owned());
        spec.min_instances = min;
        spec.max_instances = max;
        let config = orchestrator_pools::PoolConfig::new(spec).expect("valid pool");
        let pool = config.pool_type().clone();
        let report = self
            .service
            .deps()
            .scaler
            .deploy_pool(config)
            .await
            .expect("deploy pool");
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        pool
    }

    /// The pool's workers in `state`.
    pub async fn workers(
        &self,
        pool: &orchestrator_pools::PoolType,
        state: orchestrator_pools::WorkerState,
    ) -> Vec<orchestrator_pools::Worker> {
        use orchestrator_pools::LeaseStore;
        let status = self
            .leases
            .status(pool, self.clock.now())
            .await
            .expect("pool status");
        status.workers_in(state).cloned().collect()
    }

    /// Promotes every Pending worker of `pool` by one healthy heartbeat each (D9
    /// (docs/DECISIONS.md#d9), the path a worker's first heartbeat takes), then settles.
    pub async fn promote_workers(&self, pool: &orchestrator_pools::PoolType) {
        for w in self
            .workers(pool, orchestrator_pools::WorkerState::Pending)
            .await
        {
            self.heartbeat(w.app_id.as_str(), &["asset"], ServiceHealthStatus::Healthy)
                .await;
        }
        self.settle().await;
    }
}

/// Helpers of the deploy-group tests (deploy, topology, config).
impl World {
    /// Deploys preset `name` with every other field at its default; panics if the
    /// service refuses the request (a failed wave still answers, with status 500).
    pub async fn deploy_preset(
        &self,
        name: &str,
    ) -> super::Answer<orchestrator_core::api::DeployResponse> {
        self.service
            .deploy(orchestrator_core::api::DeployRequest {
                preset: Some(name.to_owned()),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("deploy {name} refused: {e}"))
    }

    /// Where the routing table sends `service` now.
    pub fn route(&self, service: &str) -> String {
        self.service
            .deps()
            .health
            .lock()
            .routing
            .resolve(service)
            .to_string()
    }

    /// App-ids the fake backend runs, sorted.
    pub fn running(&self) -> Vec<String> {
        let mut apps: Vec<String> = self
            .backend
            .app_ids()
            .into_iter()
            .map(|a| a.to_string())
            .collect();
        apps.sort();
        apps
    }

    /// A subscription to deployment events (subscribe before acting).
    pub async fn deployment_events(
        &self,
    ) -> orchestrator_core::ports::bus::EventSubscription<orchestrator_core::events::DeploymentEvent>
    {
        use orchestrator_core::ports::bus::EventBusExt;
        self.bus
            .subscribe_events()
            .await
            .expect("subscribe to deployment events")
    }

    /// Every event already delivered to `sub`, without waiting for more.
    pub fn drain<E: orchestrator_core::events::Event>(
        sub: &mut orchestrator_core::ports::bus::EventSubscription<E>,
    ) -> Vec<E> {
        use futures::{FutureExt, StreamExt};
        let mut out = Vec::new();
        while let Some(Some(item)) = sub.next().now_or_never() {
            out.extend(item.ok());
        }
        out
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// A deploy request of a topology: each `(node name, its services)`.
pub(crate) fn topology(nodes: &[(&str, &[&str])]) -> DeployRequest {
    DeployRequest {
        topology: Some(ServiceTopology {
            nodes: nodes
                .iter()
                .map(|(name, services)| TopologyNode {
                    services: Some(services.iter().map(|s| (*s).to_owned()).collect()),
                    ..TopologyNode::new(*name)
                })
                .collect(),
            infrastructure: None,
        }),
        ..DeployRequest::default()
    }
}

/// The app-ids `calls` tore down, in call order.
pub(crate) fn torn_down_apps(calls: &[BackendCall]) -> Vec<String> {
    calls
        .iter()
        .filter_map(|c| match c {
            BackendCall::Teardown { app_id, .. } => Some(app_id.to_string()),
            _ => None,
        })
        .collect()
}

/// Three nodes deployed with `strategy`: `{prefix}-auth` (auth) and `{prefix}-acct`
/// (account) carry `TAG=tag`, so a new tag changes them; `{prefix}-realm` (realm) never
/// changes.
pub(crate) fn tagged_trio(
    prefix: &str,
    tag: &str,
    strategy: orchestrator_core::api::DeployStrategy,
) -> DeployRequest {
    let node = |name: &str, service: &str, tagged: bool| TopologyNode {
        services: Some(vec![service.to_owned()]),
        environment: tagged.then(|| BTreeMap::from([("TAG".to_owned(), tag.to_owned())])),
        ..TopologyNode::new(format!("{prefix}-{name}"))
    };
    DeployRequest {
        topology: Some(ServiceTopology {
            nodes: vec![
                node("auth", "auth", true),
                node("acct", "account", true),
                node("realm", "realm", false),
            ],
            infrastructure: None,
        }),
        strategy,
        ..DeployRequest::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator_core::ports::backend::NodeDeployment;

    #[tokio::test(start_paused = true)]
    async fn auto_heartbeats_report_the_services_a_node_enables() {
        let world = World::new().await;
        world.auto_heartbeats(Duration::from_millis(100));
        let mut node = NodeDeployment::new(AppId::new("bannou-auth"), "auth-node", "bannou:latest");
        node.environment
            .insert("BANNOU_SERVICES_ENABLED".into(), "false".into());
        node.environment
            .insert("AUTH_SERVICE_ENABLED".into(), "true".into());
        world.backend.deploy_node(&node).await.unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = world.clock.now();
        let health = world.service.deps().health.lock();
        assert_eq!(
            health.aggregator.service_status("auth", now),
            Some(orchestrator_core::events::InstanceHealthStatus::Healthy)
        );
        assert_eq!(health.routing.resolve("auth").as_str(), "bannou-auth");
    }
}
