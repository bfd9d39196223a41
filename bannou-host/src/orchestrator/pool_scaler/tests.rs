//! Unit tests of `orchestrator::pool_scaler`.

use orchestrator_core::memory::backend::{BackendCall, FakeBackend};
use orchestrator_core::ports::backend::BackendOperation;
use orchestrator_pools::{AcquireOutcome, AcquireRequest, Lease, MemoryLeaseStore, PoolSpec};

use super::*;
use crate::clock::TokioClock;

struct World {
    store: MemoryLeaseStore,
    backend: FakeBackend,
    scaler: Arc<PoolScaler>,
    pool: PoolType,
}

fn world(autoscale: bool, spec: impl FnOnce(&mut PoolSpec)) -> (World, PoolConfig) {
    world_with(
        ScalerConfig {
            autoscale,
            interval: Duration::from_secs(5),
            ..ScalerConfig::default()
        },
        spec,
    )
}

fn world_with(scaler: ScalerConfig, spec: impl FnOnce(&mut PoolSpec)) -> (World, PoolConfig) {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(Timestamp::from_unix_millis(
        1_780_000_000_000,
    )));
    let store = MemoryLeaseStore::new();
    let backend = FakeBackend::new(clock.clone());
    let mut s = PoolSpec::named("npc-brain");
    s.plugin = Some("actor".into());
    spec(&mut s);
    let config = PoolConfig::new(s).unwrap();
    let scaler = Arc::new(PoolScaler::new(
        Arc::new(store.clone()),
        Arc::new(backend.clone()),
        clock,
        scaler,
    ));
    let pool = config.pool_type().clone();
    (
        World {
            store,
            backend,
            scaler,
            pool,
        },
        config,
    )
}

impl World {
    /// Every Pending worker's heartbeat arrives (D9).
    async fn heartbeats(&self) {
        let now = self.scaler.now();
        let status = self.store.status(&self.pool, now).await.unwrap();
        for w in status.workers_in(WorkerState::Pending) {
            self.store
                .mark_ready(&self.pool, w.app_id.as_str(), now)
                .await
                .unwrap();
        }
    }

    async fn acquire(&self) -> (Acquired, ScaleReport) {
        let a = self
            .store
            .acquire(&self.pool, AcquireRequest::new("npc"), self.scaler.now())
            .await
            .unwrap();
        let r = self.scaler.after_acquire(&self.pool, &a).await.unwrap();
        (a, r)
    }

    async fn count(&self, state: WorkerState) -> usize {
        self.store
            .status(&self.pool, self.scaler.now())
            .await
            .unwrap()
            .workers_in(state)
            .count()
    }

    fn running(&self) -> usize {
        self.backend.app_ids().len()
    }
}

fn leased(a: &Acquired) -> Option<Lease> {
    match &a.outcome {
        AcquireOutcome::Leased(l) => Some(l.clone()),
        _ => None,
    }
}

#[tokio::test(start_paused = true)]
async fn deploying_a_pool_starts_min_instances_pending_until_their_heartbeat() {
    let (w, config) = world(true, |s| {
        s.min_instances = 2;
        s.image = Some("registry/brain:7".into());
    });
    let r = w.scaler.deploy_pool(config.clone()).await.unwrap();
    assert_eq!(
        (r.started.len(), r.reason),
        (2, Some(ScaleReason::BelowMinimum))
    );
    assert_eq!(w.count(WorkerState::Pending).await, 2);
    let deploys = w.backend.calls_of(BackendOperation::Deploy);
    let BackendCall::Deploy(node) = &deploys[0] else {
        panic!("{deploys:?}")
    };
    assert_eq!(node.image, "registry/brain:7", "the pool image is honoured");
    assert_eq!(node.environment["ACTOR_SERVICE_ENABLED"], "true");
    assert_eq!(node.environment["BANNOU_APP_ID"], node.app_id.as_str());
    assert_eq!(node.labels[POOL_LABEL], "npc-brain");

    w.heartbeats().await;
    assert_eq!(w.count(WorkerState::Available).await, 2);
    // Deploying the same preset again does not double the pool.
    assert!(
        w.scaler
            .deploy_pool(config)
            .await
            .unwrap()
            .started
            .is_empty()
    );
    assert_eq!(w.running(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_acquire_that_finds_the_pool_full_scales_up_at_once_never_past_max() {
    let (w, config) = world(true, |s| {
        s.min_instances = 1;
        s.max_instances = 3;
    });
    w.scaler.deploy_pool(config).await.unwrap();
    w.heartbeats().await;
    let mut leases = Vec::new();
    for _ in 0..6 {
        let (a, _report) = w.acquire().await;
        leases.extend(leased(&a));
        w.heartbeats().await;
    }
    assert_eq!(
        w.running(),
        3,
        "scaled up by events, capped at maxInstances"
    );
    assert_eq!(leases.len(), 3);
    let (a, r) = w.acquire().await;
    assert!(matches!(a.outcome, AcquireOutcome::Exhausted));
    assert!(r.started.is_empty() && w.running() == 3);
}

#[tokio::test(start_paused = true)]
async fn the_loop_drains_only_unleased_workers_after_the_stabilisation_window() {
    let (w, config) = world(true, |s| {
        s.min_instances = 1;
        s.max_instances = 6;
        s.idle_timeout_minutes = 60;
        s.scale_down_stabilisation_seconds = 120;
    });
    w.scaler.deploy_pool(config).await.unwrap();
    w.heartbeats().await;
    let mut leases = Vec::new();
    for _ in 0..5 {
        let (a, _) = w.acquire().await;
        leases.extend(leased(&a));
        w.heartbeats().await;
    }
    let peak = w.running();
    assert!(peak >= 5, "{peak}");
    // Demand drops: release all but one lease.
    let kept = leases.pop().unwrap();
    for l in &leases {
        w.store
            .release(&w.pool, l.lease_id, l.fencing_token, true, w.scaler.now())
            .await
            .unwrap();
    }
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(w.scaler.clone().run(rx));

    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        w.running(),
        peak,
        "nothing drained inside the stabilisation window"
    );
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!(w.running() < peak, "drained after the window");
    let status = w.store.status(&w.pool, w.scaler.now()).await.unwrap();
    assert!(
        status
            .workers
            .iter()
            .any(|wk| wk.lease_id == Some(kept.lease_id)),
        "the leased worker stays"
    );
    for call in w.backend.calls_of(BackendOperation::Teardown) {
        let BackendCall::Teardown { app_id, .. } = call else {
            unreachable!()
        };
        assert_ne!(app_id, kept.app_id, "a leased worker is never torn down");
    }
    tx.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn idle_workers_are_reaped_down_to_min_instances() {
    let (w, config) = world(true, |s| {
        s.min_instances = 1;
        s.max_instances = 4;
        s.idle_timeout_minutes = 1;
        s.scale_down_stabilisation_seconds = 3600;
    });
    w.scaler.deploy_pool(config).await.unwrap();
    w.heartbeats().await;
    let mut leases = Vec::new();
    for _ in 0..3 {
        let (a, _) = w.acquire().await;
        leases.extend(leased(&a));
        w.heartbeats().await;
    }
    for l in &leases {
        w.store
            .release(&w.pool, l.lease_id, l.fencing_token, true, w.scaler.now())
            .await
            .unwrap();
    }
    let before = w.running();
    assert!(before >= 3);
    let (_tx, rx) = watch::channel(false);
    tokio::spawn(w.scaler.clone().run(rx));
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(w.running(), before, "not idle long enough yet");
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(w.running(), 1, "reaped down to minInstances");
    assert_eq!(w.count(WorkerState::Available).await, 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_deploy_gives_the_reserved_capacity_back() {
    let (w, config) = world(true, |s| s.min_instances = 1);
    w.backend
        .fail_next_call(BackendOperation::Deploy, BackendError::runtime("no image"));
    let r = w.scaler.deploy_pool(config.clone()).await.unwrap();
    assert!(r.started.is_empty());
    assert!(r.errors[0].contains("no image"), "{:?}", r.errors);
    assert_eq!(
        w.store
            .status(&w.pool, w.scaler.now())
            .await
            .unwrap()
            .workers
            .len(),
        0
    );
    // The next attempt succeeds.
    assert_eq!(w.scaler.deploy_pool(config).await.unwrap().started.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn with_autoscale_off_only_the_preset_minimum_is_started() {
    let (w, config) = world(false, |s| {
        s.min_instances = 1;
        s.max_instances = 5;
    });
    w.scaler.deploy_pool(config).await.unwrap();
    w.heartbeats().await;
    let (a, r) = w.acquire().await;
    assert!(leased(&a).is_some());
    let (_b, r2) = w.acquire().await;
    assert!(r.started.is_empty() && r2.started.is_empty());
    let (_tx, rx) = watch::channel(false);
    tokio::spawn(w.scaler.clone().run(rx));
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(w.running(), 1);
}

/// The reaper sleeps up to 60 s between passes (`LeaseCleanupIntervalSeconds`); an image
/// update that drains a busy worker with a 10 s deadline wakes it, so the lease ends at the
/// deadline (D60), not at the pass planned before the drain.
#[tokio::test(start_paused = true)]
async fn an_image_update_wakes_the_reaper_so_a_drained_lease_ends_at_its_deadline() {
    use futures::StreamExt;
    use orchestrator_core::events::ProcessorReleasedEvent;
    use orchestrator_core::memory::bus::InMemoryBus;
    use orchestrator_core::ports::bus::EventBusExt;

    let (w, config) = world_with(
        ScalerConfig {
            autoscale: false,
            drain_timeout: Duration::from_secs(10),
            ..ScalerConfig::default()
        },
        |s| {
            s.min_instances = 1;
            s.max_instances = 2;
            s.image = Some("reg/brain:1".into());
        },
    );
    w.scaler.deploy_pool(config.clone()).await.unwrap();
    w.heartbeats().await;
    let (acquired, _) = w.acquire().await;
    let lease = leased(&acquired).expect("a worker was ready");
    assert_eq!(
        lease.expires_at,
        w.scaler.now() + Duration::from_secs(300),
        "the pool's default lease"
    );
    let bus = Arc::new(InMemoryBus::new());
    let mut released = bus
        .subscribe_events::<ProcessorReleasedEvent>()
        .await
        .unwrap();
    let reaper = Arc::new(
        super::super::leases::LeaseReaper::new(
            Arc::new(w.store.clone()),
            bus.clone(),
            Arc::new(TokioClock::starting_at(w.scaler.now())),
            Duration::from_secs(60),
        )
        .with_scaler(w.scaler.clone()),
    );
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn({
        let reaper = reaper.clone();
        async move { reaper.run(rx).await }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(reaper.stats().passes, 1, "then it sleeps 60 s");

    let mut spec = PoolSpec::named("npc-brain");
    spec.plugin = Some("actor".into());
    (spec.min_instances, spec.max_instances) = (1, 2);
    spec.image = Some("reg/brain:2".into());
    let begun = tokio::time::Instant::now();
    let report = w
        .scaler
        .deploy_pool(PoolConfig::new(spec).unwrap())
        .await
        .unwrap();
    assert_eq!(report.draining, vec![lease.app_id.clone()]);

    let event = released.next().await.unwrap().unwrap();
    let after = begun.elapsed();
    assert_eq!(
        (event.processor_id.as_str(), event.success),
        (lease.processor_id.as_str(), false)
    );
    assert!(
        after >= Duration::from_secs(10) && after < Duration::from_secs(11),
        "reclaimed {after:?} after the drain, not at the deadline (10 s)"
    );
    stop.send(true).unwrap();
    task.await.unwrap();
}
