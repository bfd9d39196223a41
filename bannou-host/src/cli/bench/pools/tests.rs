//! Unit tests of `cli::bench::pools`.

use super::*;

#[test]
fn percentiles_use_the_nearest_rank() {
    let v: Vec<u32> = (1..=100).map(|i| i * 1_000_000).collect();
    assert_eq!(percentile_ms(&v, 0.5), 50.0);
    assert_eq!(percentile_ms(&v, 0.99), 99.0);
    assert_eq!(percentile_ms(&[], 0.99), 0.0);
    assert_eq!(percentile_ms(&[2_000_000], 0.5), 2.0);
}

#[test]
fn a_processor_held_by_two_clients_is_a_double_lease() {
    let c = Check::default();
    c.acquired("p", 1);
    c.releasing("p", 1);
    c.acquired("p", 2);
    assert_eq!(c.doubles.load(Ordering::Relaxed), 0);
    c.acquired("p", 3);
    assert_eq!(c.doubles.load(Ordering::Relaxed), 1);
}

/// Runs the bench without Redis and returns its JSON report.
fn report(clients: usize, workers: u32, http: bool) -> serde_json::Value {
    report_over(clients, workers, http, false)
}

/// [`report`], the HTTP clients speaking h2c when `http2`.
fn report_over(clients: usize, workers: u32, http: bool, http2: bool) -> serde_json::Value {
    report_of(args(clients, workers, http, http2))
}

/// The arguments of a short run without Redis.
fn args(clients: usize, workers: u32, http: bool, http2: bool) -> PoolsArgs {
    PoolsArgs {
        redis: None,
        pools: 1,
        clients,
        seconds: 0.2,
        workers: Some(workers),
        json: true,
        ceiling: false,
        threads: 1,
        eval: false,
        max_batch: 64,
        batches_in_flight: 2,
        http,
        http2,
        connections: 1,
        api: None,
        token: None,
        http_pool: HTTP_POOL.to_owned(),
    }
}

/// Runs the bench with `args` and returns its JSON report.
fn report_of(args: PoolsArgs) -> serde_json::Value {
    let mut out = Vec::new();
    run(args, &mut out).unwrap();
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn without_redis_only_the_memory_store_runs_and_redis_fields_are_null() {
    let v = report(4, 2, false);
    for key in [
        "redis_pairs_per_sec",
        "baseline_pairs_per_sec",
        "redis_p99_ms",
        "ratio_redis_vs_baseline",
        "http_pairs_per_sec",
        "http_ratio_vs_redis",
        "http_ratio_vs_memory",
    ] {
        assert!(v[key].is_null(), "{key}: {v}");
    }
    assert!(v["memory_pairs_per_sec"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(v["double_leases"], 0);
    assert_eq!(v["memory"]["errors"], 0);
}

#[test]
fn http_leases_through_a_control_plane_in_this_process() {
    let v = report(3, 3, true);
    assert_eq!(v["http_state"], "memory", "{v}");
    assert_eq!(v["http_protocol"], "http/1.1", "{v}");
    assert!(v["http"]["pairs"].as_u64().unwrap() > 0, "{v}");
    let ratio = v["http_ratio_vs_memory"].as_f64().unwrap();
    let expected =
        v["http_pairs_per_sec"].as_f64().unwrap() / v["memory_pairs_per_sec"].as_f64().unwrap();
    assert!((ratio - expected).abs() < 1e-9, "{v}");
    assert!(v["http_ratio_vs_redis"].is_null(), "no Redis run: {v}");
    assert_eq!(v["http"]["errors"], 0, "{v}");
    assert_eq!(
        v["http"]["exhausted"], 0,
        "a worker per client, all Available before the clients start: {v}"
    );
    assert_eq!(v["double_leases"], 0);
}

#[test]
fn http2_clients_lease_through_one_multiplexed_connection() {
    let v = report_over(6, 6, true, true);
    assert_eq!(v["http_protocol"], "h2c", "{v}");
    assert!(v["http"]["pairs"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["http"]["errors"], 0, "{v}");
    assert_eq!(v["http"]["exhausted"], 0, "{v}");
    assert_eq!(v["double_leases"], 0);
}

/// `--api`: the bench drives a control plane it did not start (here on a runtime of the
/// test's, as `serve` would be in another process), over two h2c connections, leasing
/// from the pool that control plane runs; the pairs it reports are the jobs that pool
/// counts.
#[test]
fn with_api_the_bench_drives_a_control_plane_it_did_not_start() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let presets = tempfile::tempdir().unwrap();
    std::fs::write(
        presets.path().join("theirs.yaml"),
        "name: theirs\nprocessingPools:\n  - poolType: their-pool\n    plugin: actor\n    \
         minInstances: 4\n    maxInstances: 4\n",
    )
    .unwrap();
    let mut config = HostConfig::from_env(|_| None).unwrap();
    config.presets_host_path = presets.path().to_path_buf();
    config.listen = "127.0.0.1:0".parse().unwrap();
    let server = runtime.block_on(Server::start(config)).unwrap();
    let api = ApiClient::new(&server.base_url()).unwrap();
    let deployed = runtime
        .block_on(api.deploy(&DeployRequest {
            preset: Some("theirs".to_owned()),
            ..DeployRequest::default()
        }))
        .unwrap();
    assert!(deployed.body.success, "{:?}", deployed.body.warnings);

    let v = report_of(PoolsArgs {
        connections: 2,
        api: Some(server.base_url()),
        http_pool: "their-pool".to_owned(),
        ..args(4, 4, true, true)
    });
    assert_eq!(v["http_state"], "remote", "{v}");
    assert_eq!(v["http_connections"], 2, "{v}");
    let pairs = v["http"]["pairs"].as_u64().unwrap();
    assert!(pairs > 0, "{v}");
    assert_eq!(v["http"]["errors"], 0, "{v}");
    assert_eq!(v["double_leases"], 0);
    let status = runtime
        .block_on(api.pool_status(&GetPoolStatusRequest {
            pool_type: "their-pool".to_owned(),
            include_metrics: true,
        }))
        .unwrap();
    let completed = status.recent_metrics.map_or(0, |m| m.jobs_completed_1h);
    assert!(
        u64::try_from(completed).unwrap() >= pairs,
        "their pool counts {completed} jobs for the bench's {pairs} pairs"
    );
    assert_eq!(status.total_instances, 4, "the pool was not changed");
    runtime.block_on(server.shutdown());
}
