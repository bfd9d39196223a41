//! The whole host in process, driven over HTTP with `ApiClient` on an ephemeral port:
//! deploy a two-wave preset (`local-ten`), see every
//! deployed service healthy, mappings published with a higher version, `service-routing`
//! showing the moved services, a ping from one node to a service on another node routed
//! by the mesh resolver, a pool acquire/release round trip (`npc-brains`), a rollback
//! that runs the previous preset's nodes again under one new configuration version, and
//! a teardown that leaves nothing running. The same flow runs over in-memory adapters and
//! over a real `redis-server` started on a free port, and so does a client hanging up on
//! a waiting acquire (its ticket must not outlive it).

mod common;

use std::time::Duration;

use bannou_host::client::ApiClient;
use common::{Host, PATIENCE, config, eventually, get_json, our_presets};
use futures::StreamExt;
use orchestrator_backends::redis::server::RedisServer;
use orchestrator_core::api::{
    AcquireProcessorRequest, ConfigRollbackRequest, DeployRequest, GetPoolStatusRequest,
    GetServiceRoutingRequest, ReleaseProcessorRequest, ServiceHealthRequest, TeardownRequest,
};
use orchestrator_core::events::FullServiceMappingsEvent;
use orchestrator_core::ports::bus::EventBusExt;

/// `presets/local-ten.yaml`: node -> its one routed service. Wave 1 holds the L1
/// services, wave 2 the L2 ones.
const LOCAL_TEN: [(&str, &str); 10] = [
    ("local-01", "account"),
    ("local-02", "auth"),
    ("local-03", "connect"),
    ("local-04", "permission"),
    ("local-05", "chat"),
    ("local-06", "contract"),
    ("local-07", "resource"),
    ("local-08", "game-service"),
    ("local-09", "realm"),
    ("local-10", "character"),
];

fn deploy(preset: &str) -> DeployRequest {
    DeployRequest {
        preset: Some(preset.to_owned()),
        ..DeployRequest::default()
    }
}

/// Waits until a ping of `service` sent to `base` is answered by `owner` (the mesh
/// resolver of the receiving node applies the mappings asynchronously) and returns the
/// answer.
async fn ping_answered_by(base: &str, service: &str, owner: &str) -> serde_json::Value {
    let url = format!("{base}/{service}/ping");
    eventually(&format!("{url} answered by {owner}"), || {
        let url = url.clone();
        async move {
            let (status, body) = get_json(&url).await;
            (status == 200 && body["appId"] == owner).then_some(body)
        }
    })
    .await
}

async fn main_flow(host: &Host, label: &str) {
    let adapters = host.server.adapters();
    let mut mappings = adapters
        .bus
        .subscribe_events::<FullServiceMappingsEvent>()
        .await
        .unwrap();
    let mappings_before = adapters.store.mappings_version().await.unwrap();
    let config_before = host.config_version().await;

    // 1. Deploy a two-wave preset over HTTP.
    let reply = host.api.deploy(&deploy("local-ten")).await.unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body.warnings);
    assert!(reply.body.success);
    let config_a = host.config_version().await;
    assert_eq!(config_a, config_before + 1, "one new configuration version");
    for (app, _) in LOCAL_TEN {
        assert_eq!(host.endpoints(app).len(), 1, "{app} runs");
    }
    println!("[{label}] deployed local-ten (2 waves, 10 nodes) -> 200, config v{config_a}");

    // 2. Every deployed service is healthy, on its node.
    let report = host
        .api
        .services_health(&ServiceHealthRequest::default())
        .await
        .unwrap();
    for (app, service) in LOCAL_TEN {
        assert!(
            report
                .healthy_services
                .iter()
                .any(|e| e.app_id == app && e.service_id == service),
            "{service} on {app} healthy: {report:?}"
        );
        assert!(
            !report.unhealthy_services.iter().any(|e| e.app_id == app),
            "nothing of {app} unhealthy: {report:?}"
        );
    }
    println!("[{label}] health/services: all 10 deployed services healthy on their nodes");

    // 3. The mappings are published with a higher version.
    let event = tokio::time::timeout(PATIENCE, async {
        while let Some(event) = mappings.next().await {
            let event = event.unwrap();
            let complete = LOCAL_TEN
                .iter()
                .all(|(app, s)| event.mappings.get(*s).map(String::as_str) == Some(*app));
            if complete {
                return event;
            }
        }
        panic!("mappings stream ended");
    })
    .await
    .expect("the new routes are broadcast");
    assert!(
        event.version > mappings_before,
        "version {} after {mappings_before}",
        event.version
    );
    assert_eq!(event.default_app_id, "bannou");
    println!(
        "[{label}] full-service-mappings v{} (was v{mappings_before}) carries all 10 routes",
        event.version
    );

    // 4. service-routing shows the moved services.
    let routing = host
        .api
        .service_routing(&GetServiceRoutingRequest::default())
        .await
        .unwrap();
    for (app, service) in LOCAL_TEN {
        assert_eq!(
            routing.mappings.get(service).map(String::as_str),
            Some(app),
            "{routing:?}"
        );
    }
    assert_eq!(routing.default_app_id, "bannou");
    // Ours only: the current mappings version (as the routing metrics saw it published)
    // and, once it is known, the nodes behind it.
    let lag = tokio::time::timeout(PATIENCE, async {
        loop {
            let r = host
                .api
                .service_routing(&GetServiceRoutingRequest::default())
                .await
                .unwrap();
            if r.mappings_version >= Some(event.version) {
                return r;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the published mappings version shows in service-routing");
    assert!(lag.nodes_behind.is_some(), "{lag:?}");
    println!("[{label}] service-routing: 10 services moved, default bannou");

    // 5. Pings routed by the mesh resolver: node -> node in both waves' directions, node
    // -> control plane for a service nobody else hosts; a service a node hosts is
    // answered locally (the control plane hosts every service, so it answers locally too).
    let base = host.server.base_url();
    let node_01 = host.endpoints("local-01").remove(0);
    let node_02 = host.endpoints("local-02").remove(0);
    let answer = ping_answered_by(&node_01, "character", "local-10").await;
    assert_eq!(answer["service"], "character");
    assert_eq!(answer["via"], "local-01", "{answer}");
    let answer = ping_answered_by(&node_02, "account", "local-01").await;
    assert_eq!(answer["via"], "local-02", "{answer}");
    let answer = ping_answered_by(&node_01, "leaderboard", "bannou").await;
    assert_eq!(answer["via"], "local-01", "{answer}");
    let (status, local) = get_json(&format!("{node_01}/account/ping")).await;
    assert_eq!((status, &local["appId"]), (200, &"local-01".into()));
    assert!(local.get("via").is_none(), "{local}");
    println!(
        "[{label}] ping: local-01 -> character answered by local-10, local-02 -> account by local-01, \
         local-01 -> leaderboard by bannou (all with via), local account answered locally"
    );

    // 6. Deploy B (npc-brains) and lease a pool worker; workers become Available with
    // their first heartbeat, so the acquire waits for one.
    let reply = host.api.deploy(&deploy("npc-brains")).await.unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body.warnings);
    let config_b = host.config_version().await;
    assert_eq!(config_b, config_a + 1);
    assert_eq!(host.endpoints("npc-coordinator").len(), 1);
    assert!(host.endpoints("local-01").is_empty(), "local-ten replaced");
    let lease = host
        .api
        .acquire_processor(&AcquireProcessorRequest {
            wait_ms: 20_000,
            ..AcquireProcessorRequest::new("npc-brain")
        })
        .await
        .unwrap();
    let pool = |pool_type: &str| GetPoolStatusRequest {
        pool_type: pool_type.to_owned(),
        include_metrics: false,
    };
    let busy = host.api.pool_status(&pool("npc-brain")).await.unwrap();
    assert_eq!(busy.busy_instances, 1, "{busy:?}");
    // Ours only: the recent acquire latency, the grant above in its window.
    eventually("the acquire in the pool's recent latency", || async {
        let s = host.api.pool_status(&pool("npc-brain")).await.unwrap();
        (s.recent_acquire_p50_ms.is_some_and(|p50| p50 >= 0.0)
            && s.recent_acquire_p99_ms >= s.recent_acquire_p50_ms)
            .then_some(())
    })
    .await;
    assert!(busy.total_instances >= 2, "minInstances 2: {busy:?}");
    let released = host
        .api
        .release_processor(&ReleaseProcessorRequest {
            fencing_token: Some(lease.fencing_token),
            ..ReleaseProcessorRequest::new(lease.lease_id)
        })
        .await
        .unwrap();
    assert_eq!(released.processor_id, lease.processor_id);
    let idle = host.api.pool_status(&pool("npc-brain")).await.unwrap();
    assert_eq!(idle.busy_instances, 0, "{idle:?}");
    println!(
        "[{label}] npc-brains deployed (config v{config_b}); leased {} on {} and released it",
        lease.processor_id, lease.app_id
    );

    // 7. Roll back: local-ten's nodes run again, under one new configuration version.
    let rolled = host
        .api
        .rollback_config(&ConfigRollbackRequest {
            reason: "integration test".into(),
            target_version: None,
        })
        .await
        .unwrap();
    assert_eq!(
        (rolled.previous_version, rolled.current_version),
        (config_b, config_b + 1)
    );
    assert_eq!(host.config_version().await, config_b + 1);
    for (app, _) in LOCAL_TEN {
        assert_eq!(host.endpoints(app).len(), 1, "{app} runs again");
    }
    assert!(host.endpoints("npc-coordinator").is_empty());
    assert_eq!(host.route("account").await.as_deref(), Some("local-01"));
    assert_eq!(host.route("actor").await, None);
    let node_01 = host.endpoints("local-01").remove(0);
    let answer = ping_answered_by(&node_01, "realm", "local-09").await;
    assert_eq!(answer["via"], "local-01");
    println!(
        "[{label}] rollback v{config_b} -> v{}: local-ten runs and routes again, npc-coordinator gone",
        config_b + 1
    );

    // 8. Teardown leaves nothing running and routing back to the default.
    let torn = host
        .api
        .teardown(&TeardownRequest::default())
        .await
        .unwrap();
    assert!(torn.errors.as_ref().is_none_or(Vec::is_empty), "{torn:?}");
    let stopped = torn.stopped_containers.unwrap_or_default();
    assert!(stopped.len() >= LOCAL_TEN.len(), "{stopped:?}");
    let backend = host.server.in_process_backend().unwrap();
    eventually("every in-process task ended", || async {
        (backend.running_tasks() == 0).then_some(())
    })
    .await;
    assert_eq!(host.listed().await, Vec::<String>::new());
    let directory: Vec<String> = backend
        .directory()
        .snapshot()
        .keys()
        .map(ToString::to_string)
        .collect();
    assert_eq!(directory, ["bannou"], "only the control plane is reachable");
    let routing = host
        .api
        .service_routing(&GetServiceRoutingRequest::default())
        .await
        .unwrap();
    assert!(routing.mappings.is_empty(), "{routing:?}");
    let (status, answer) = get_json(&format!("{base}/account/ping")).await;
    assert_eq!((status, &answer["appId"]), (200, &"bannou".into()));
    println!(
        "[{label}] teardown stopped {} node(s): no tasks, no listed nodes, routing default, account served by bannou",
        stopped.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_host_over_http_in_memory() {
    let host = Host::start(config(&our_presets())).await;
    main_flow(&host, "memory").await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_host_over_http_with_redis() {
    let Some(redis) = RedisServer::for_test("whole_host_over_http_with_redis") else {
        return;
    };
    let mut cfg = config(&our_presets());
    cfg.redis_url = Some(redis.url());
    let host = Host::start(cfg).await;
    main_flow(&host, "redis").await;
    host.shutdown().await;
    // The Redis server outlives the host.
    drop(redis);
}

/// A client that hangs up on a waiting acquire (`waitMs`) leaves nothing behind: the
/// server drops the request, the wait task cancels the ticket long before its deadline,
/// and the next free worker goes back to the pool instead of to the departed caller.
async fn hang_up_flow(host: &Host, label: &str) {
    let reply = host.api.deploy(&deploy("npc-brains")).await.unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body.warnings);
    // npc-event-coordinator: at most 3 workers; lease all of them (the scaler starts
    // them as the acquires queue).
    let mut leases = Vec::new();
    for _ in 0..3 {
        leases.push(
            host.api
                .acquire_processor(&AcquireProcessorRequest {
                    wait_ms: 20_000,
                    ..AcquireProcessorRequest::new("npc-event-coordinator")
                })
                .await
                .unwrap(),
        );
    }
    let status = || async {
        host.api
            .pool_status(&GetPoolStatusRequest {
                pool_type: "npc-event-coordinator".to_owned(),
                include_metrics: false,
            })
            .await
            .unwrap()
    };
    let full = status().await;
    assert_eq!(
        (full.busy_instances, full.total_instances),
        (3, 3),
        "{full:?}"
    );

    // Waits up to a minute, hangs up after half a second.
    let impatient = ApiClient::new(&host.server.base_url())
        .unwrap()
        .with_timeout(Duration::from_millis(500));
    let gave_up = impatient
        .acquire_processor(&AcquireProcessorRequest {
            wait_ms: 60_000,
            ..AcquireProcessorRequest::new("npc-event-coordinator")
        })
        .await;
    assert!(
        gave_up.is_err(),
        "answered with no worker free: {gave_up:?}"
    );
    // PATIENCE (30 s) is half the wait: an empty queue within it is the cancel's doing.
    eventually("the departed caller's ticket leaves the queue", || async {
        (status().await.queue_depth == 0).then_some(())
    })
    .await;

    let first = leases.remove(0);
    host.api
        .release_processor(&ReleaseProcessorRequest {
            fencing_token: Some(first.fencing_token),
            ..ReleaseProcessorRequest::new(first.lease_id)
        })
        .await
        .unwrap();
    let after = status().await;
    assert_eq!(
        (after.busy_instances, after.available_instances),
        (2, 1),
        "the freed worker went back to the pool: {after:?}"
    );
    println!(
        "[{label}] a client hung up on a 60 s waiting acquire after 0.5 s: ticket cancelled, \
         the next freed worker went back to the pool"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hanging_up_on_a_waiting_acquire_leaves_nothing_behind_in_memory() {
    let host = Host::start(config(&our_presets())).await;
    hang_up_flow(&host, "memory").await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hanging_up_on_a_waiting_acquire_leaves_nothing_behind_with_redis() {
    let Some(redis) = RedisServer::for_test(
        "a_client_hanging_up_on_a_waiting_acquire_leaves_nothing_behind_with_redis",
    ) else {
        return;
    };
    let mut cfg = config(&our_presets());
    cfg.redis_url = Some(redis.url());
    let host = Host::start(cfg).await;
    hang_up_flow(&host, "redis").await;
    host.shutdown().await;
    drop(redis);
}
