//! Heartbeats to routing to every node, over the in-memory bus with paused time: the
//! ingestion pipeline, the mappings broadcaster and the node-side mesh follower together.

use std::sync::Arc;
use std::time::Duration;

use bannou_host::clock::TokioClock;
use bannou_host::mesh::{MeshResolver, follow_mappings};
use bannou_host::orchestrator::heartbeats::{HealthState, HeartbeatPipeline, SharedHealth};
use bannou_host::orchestrator::mappings::MappingsBroadcaster;
use futures::StreamExt;
use orchestrator_core::events::{
    FullServiceMappingsEvent, ServiceHealthStatus, ServiceHeartbeatEvent,
};
use orchestrator_core::health::{HealthConfig, HeartbeatAggregator};
use orchestrator_core::memory::bus::InMemoryBus;
use orchestrator_core::memory::store::InMemoryStore;
use orchestrator_core::ports::bus::{EventBus, EventBusExt};
use orchestrator_core::time::Clock;
use orchestrator_core::{AppId, Timestamp};
use orchestrator_pools::{
    LeaseStore, MemoryLeaseStore, PoolConfig, PoolSpec, WorkerIdentity, WorkerState,
};
use orchestrator_routing::resolver::Resolution;
use orchestrator_routing::{BroadcastPolicy, MappingsSnapshot, RoutingTable};
use tokio::sync::watch;
use uuid::Uuid;

fn heartbeat(app: &str, services: &[&str]) -> ServiceHeartbeatEvent {
    let services = services.iter().map(|s| (*s, ServiceHealthStatus::Healthy));
    ServiceHeartbeatEvent::new(
        Uuid::new_v4(),
        AppId::from(app),
        Timestamp::from_unix_millis(0),
        services,
    )
}

struct World {
    bus: Arc<InMemoryBus>,
    clock: Arc<dyn Clock>,
    health: SharedHealth,
    pipeline: Arc<HeartbeatPipeline>,
    broadcaster: Arc<MappingsBroadcaster>,
    shutdown: watch::Sender<bool>,
}

/// Starts the pipeline and the broadcaster (100 ms window, 30 s rebroadcast).
async fn world(leases: Option<Arc<dyn LeaseStore>>) -> World {
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(Timestamp::from_unix_millis(
        1_780_000_000_000,
    )));
    let bus = Arc::new(InMemoryBus::new());
    let store = Arc::new(InMemoryStore::new(clock.clone()));
    let health = SharedHealth::new(HealthState {
        aggregator: HeartbeatAggregator::new(HealthConfig::default()),
        routing: RoutingTable::default(),
    });
    let broadcaster = Arc::new(MappingsBroadcaster::new(
        health.clone(),
        store,
        bus.clone(),
        clock.clone(),
        BroadcastPolicy::default(),
    ));
    let mut pipeline = HeartbeatPipeline::new(health.clone(), clock.clone(), 80)
        .with_broadcaster(broadcaster.clone());
    if let Some(l) = leases {
        pipeline = pipeline.with_worker_promotion(l);
    }
    let pipeline = Arc::new(pipeline);
    let (shutdown, rx) = watch::channel(false);
    let (p, b, bus2, rx2) = (
        pipeline.clone(),
        broadcaster.clone(),
        bus.clone(),
        rx.clone(),
    );
    tokio::spawn(async move { p.run(bus2.as_ref(), rx).await.unwrap() });
    tokio::spawn(async move { b.run(rx2).await });
    // Let both subscribe before anything is published.
    tokio::time::sleep(Duration::from_millis(1)).await;
    World {
        bus,
        clock,
        health,
        pipeline,
        broadcaster,
        shutdown,
    }
}

#[tokio::test(start_paused = true)]
async fn a_new_route_reaches_every_node_at_once_and_the_control_plane_is_ignored() {
    let w = world(None).await;
    let (writer, reader) = MeshResolver::new();
    let (bus, rx) = (w.bus.clone(), w.shutdown.subscribe());
    tokio::spawn(async move { follow_mappings(bus.as_ref(), writer, rx).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(1)).await;
    // The start-up broadcast (an empty table) may have gone out before this follower
    // subscribed; the next one is due only in 30 s unless something changes.
    let first = reader.applied_version().unwrap_or(0);

    w.bus
        .publish_event(&heartbeat("bannou", &["auth"]))
        .await
        .unwrap();
    w.bus
        .publish_event(&heartbeat("bannou-auth", &["auth", "account", "state"]))
        .await
        .unwrap();
    w.bus
        .publish("bannou.service-heartbeat", b"{not json".as_slice().into())
        .await
        .unwrap();
    w.bus
        .publish_event(&heartbeat("bannou-game", &["realm"]))
        .await
        .unwrap();

    // Well inside the 30 s rebroadcast period: the change went out within its 100 ms window.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let applied = reader.applied_version().unwrap();
    assert!(applied > first);
    assert_eq!(
        reader.resolve("auth"),
        Resolution::App("bannou-auth".into())
    );
    assert_eq!(
        reader.resolve("realm"),
        Resolution::App("bannou-game".into())
    );
    assert_eq!(
        reader.resolve("state"),
        Resolution::Local,
        "infrastructure is never routed"
    );

    let counts = w.pipeline.stats().snapshot();
    assert_eq!(
        (counts.ingested, counts.ignored, counts.malformed),
        (2, 1, 1),
        "{counts:?}"
    );
    assert_eq!(counts.routes_created, 3);
    assert!(
        w.health
            .lock()
            .aggregator
            .service_status("auth", w.clock.now())
            .is_some()
    );

    // A heartbeat can refresh its own routes but never move one: nothing new is published.
    w.bus
        .publish_event(&heartbeat("bannou-other", &["auth"]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(reader.applied_version(), Some(applied));
    assert_eq!(
        reader.resolve("auth"),
        Resolution::App("bannou-auth".into())
    );
    w.shutdown.send(true).unwrap();
}

#[tokio::test(start_paused = true)]
async fn bursts_are_coalesced_and_the_table_is_rebroadcast_periodically() {
    let w = world(None).await;
    let mut seen = w
        .bus
        .subscribe_events::<FullServiceMappingsEvent>()
        .await
        .unwrap();
    for i in 0..50 {
        w.bus
            .publish_event(&heartbeat(&format!("node-{i}"), &[&format!("svc-{i}")]))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    let burst = seen.next().await.unwrap().unwrap();
    assert_eq!(
        burst.total_services, 50,
        "one broadcast carries the whole burst"
    );

    // Quiet: exactly one periodic rebroadcast per 30 s, each with a higher version.
    tokio::time::sleep(Duration::from_secs(61)).await;
    let a = seen.next().await.unwrap().unwrap();
    let b = seen.next().await.unwrap().unwrap();
    assert!(burst.version < a.version && a.version < b.version);
    assert_eq!(b.total_services, 50);
    let next = tokio::time::timeout(Duration::from_secs(1), seen.next()).await;
    assert!(next.is_err(), "no extra broadcasts: {next:?}");
    w.broadcaster.table_changed();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        seen.next().await.unwrap().unwrap().version > b.version,
        "table_changed publishes within the window"
    );
    w.shutdown.send(true).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_pool_worker_becomes_available_when_its_heartbeat_arrives() {
    let leases = MemoryLeaseStore::new();
    let config = PoolConfig::new(PoolSpec::named("npc-brain")).unwrap();
    let pool = config.pool_type().clone();
    leases.configure_pool(config).await.unwrap();
    let w = world(Some(Arc::new(leases.clone()))).await;
    let worker = WorkerIdentity::generate(&pool);
    leases
        .register_worker(&pool, &worker.processor_id, &worker.app_id, w.clock.now())
        .await
        .unwrap();
    let state = |s| {
        let leases = leases.clone();
        let (pool, now) = (pool.clone(), w.clock.now());
        async move {
            leases
                .status(&pool, now)
                .await
                .unwrap()
                .workers_in(s)
                .count()
        }
    };
    assert_eq!(state(WorkerState::Pending).await, 1);

    w.bus
        .publish_event(&heartbeat(worker.app_id.as_str(), &["actor"]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        state(WorkerState::Available).await,
        1,
        "promoted by its heartbeat (D9)"
    );
    w.shutdown.send(true).unwrap();
}

/// Issue 4: 10,000 versions from two publishers, interleaved in random order, to 50
/// resolvers: every resolver ends on the highest and never applies a lower after a higher.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_versions_from_two_publishers_reach_fifty_resolvers_in_order() {
    let bus = Arc::new(InMemoryBus::new());
    let (stop, _) = watch::channel(false);
    let mut readers = Vec::new();
    let mut followers = Vec::new();
    for _ in 0..50 {
        let (writer, reader) = MeshResolver::new();
        let (bus, rx) = (bus.clone(), stop.subscribe());
        followers.push(tokio::spawn(async move {
            follow_mappings(bus.as_ref(), writer, rx).await
        }));
        readers.push(reader);
    }
    // Wait until all 50 are subscribed.
    while bus.subscriber_count("bannou.full-service-mappings") < 50 {
        tokio::task::yield_now().await;
    }
    // Publisher A takes the odd versions, B the even ones; each shuffles its own order.
    let publisher = |parity: i64, seed: u64| {
        let bus = bus.clone();
        tokio::spawn(async move {
            let mut versions: Vec<i64> = (1..=10_000).filter(|v| v % 2 == parity).collect();
            let mut x = seed;
            for i in (1..versions.len()).rev() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                versions.swap(i, (x % (i as u64 + 1)) as usize);
            }
            for v in versions {
                let node = format!("node-{v}");
                let snap = MappingsSnapshot::from_entries(v, None, [("auth", Some(node.as_str()))]);
                let event = snap.to_event(
                    Uuid::new_v4(),
                    Timestamp::from_unix_millis(0),
                    Uuid::new_v4(),
                );
                bus.publish_event(&event).await.unwrap();
                if v % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let (a, b) = (publisher(1, 0x9E37_79B9), publisher(0, 0x85EB_CA6B));
    a.await.unwrap();
    b.await.unwrap();
    // Readers check monotonicity while they converge.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut last = vec![0i64; readers.len()];
    loop {
        let mut done = true;
        for (i, r) in readers.iter().enumerate() {
            let v = r.applied_version().unwrap_or(0);
            assert!(
                v >= last[i],
                "resolver {i} went back from {} to {v}",
                last[i]
            );
            last[i] = v;
            done &= v == 10_000;
        }
        if done {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not converged: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for r in &readers {
        assert_eq!(r.resolve("auth"), Resolution::App("node-10000".into()));
    }
    stop.send(true).unwrap();
    for f in followers {
        f.await.unwrap().unwrap();
    }
}
