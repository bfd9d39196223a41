//! Unit tests of `cli::bench::scale`.

use super::*;

/// A short run against a Redis of its own: few nodes, workers and callers, a headroom
/// search of two small steps. It shows the bench works end to end; no timing is
/// asserted.
#[test]
fn a_short_scale_run_reports_every_figure() {
    let Some(redis) = orchestrator_backends::redis::server::RedisServer::for_test(
        "a_short_scale_run_reports_every_figure",
    ) else {
        return;
    };
    let args = ScaleArgs {
        redis: redis.url(),
        nodes: 20,
        heartbeat_interval: 0.5,
        workers: 8,
        pools: 4,
        callers: 6,
        lease_min: 0.05,
        lease_max: 0.3,
        seconds: 5.0,
        step: 10,
        max_nodes: 20,
        step_seconds: 1.5,
        cp_threads: 2,
        json: true,
    };
    let mut out = Vec::new();
    run(args, &mut out).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert!(v["heartbeat_lag"]["published"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["heartbeat_lag"]["publish_errors"], 0, "{v}");
    assert!(v["acquires"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["double_leases"], 0, "{v}");
    assert_eq!(v["errors"], 0, "{v}");
    assert_eq!(v["topology_change_ok"], true, "{v}");
    assert_eq!(
        v["scaled_pool_workers"], 3,
        "2 workers a pool, up by a tenth: {v}"
    );
    assert!(v["cp_cpu_per_s"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["rss_mib"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["redis_used_mib"].as_f64().unwrap() > 0.0, "{v}");
    let steps = v["headroom"].as_array().unwrap();
    assert!(!steps.is_empty() && steps.len() <= 2, "{v}");
    assert!(v["headroom_nodes"].is_u64(), "{v}");
    assert!(v["headroom_bench_limited"].is_boolean(), "{v}");
    assert!(steps[0]["published_per_s"].as_f64().unwrap() > 0.0, "{v}");
}

#[test]
fn the_preset_has_every_pool_with_room_to_scale_up() {
    let text = preset_text(4, 250);
    assert_eq!(text.matches("minInstances: 250").count(), 4);
    assert_eq!(text.matches("maxInstances: 500").count(), 4);
    assert!(text.contains("poolType: scale-pool-3"));
}
