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
    let args = PoolsArgs {
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
    };
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
