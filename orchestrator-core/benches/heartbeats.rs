//! Heartbeat aggregator throughput: ingesting pre-built heartbeats (10 services each) from
//! 10,000 instances, cycling, with `now` advancing. Goal: more than 1,000,000 heartbeats/s
//! on one core. Run: `cargo bench -p orchestrator-core --bench heartbeats -- --measurement-time 5`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use orchestrator_core::events::{
    InstanceCapacity, InstanceHealthStatus, ServiceHealthStatus, ServiceHeartbeatEvent,
    ServiceStatus,
};
use orchestrator_core::health::{HealthConfig, HeartbeatAggregator, ServiceHealthRequest};
use orchestrator_core::restart::should_restart;
use orchestrator_core::{AppId, Timestamp};
use uuid::Uuid;

const INSTANCES: usize = 10_000;
const SERVICES: [&str; 10] = [
    "account",
    "auth",
    "connect",
    "permission",
    "game-session",
    "character",
    "realm",
    "location",
    "behavior",
    "actor",
];

/// One heartbeat per instance; every 7th instance reports one degraded service, every 11th
/// an issue, and all report capacity and a routing version (the realistic full shape).
fn heartbeats(degraded_flip: bool) -> Vec<ServiceHeartbeatEvent> {
    (0..INSTANCES)
        .map(|i| {
            let services = SERVICES
                .iter()
                .enumerate()
                .map(|(k, name)| ServiceStatus {
                    service_id: Uuid::from_u128((i * 16 + k) as u128),
                    service_name: (*name).into(),
                    status: if (i % 7 == 0 && k == 3) ^ (degraded_flip && k == 5) {
                        ServiceHealthStatus::Degraded
                    } else {
                        ServiceHealthStatus::Healthy
                    },
                    version: Some("1.0.0".to_owned()),
                    metadata: None,
                })
                .collect();
            ServiceHeartbeatEvent {
                event_name: "service.heartbeat".into(),
                event_id: Uuid::from_u128(i as u128),
                timestamp: Timestamp::UNIX_EPOCH,
                service_id: Uuid::from_u128(0xABCD_0000_0000 + i as u128),
                app_id: AppId::new(format!("node-{i}")),
                status: InstanceHealthStatus::Healthy,
                services,
                capacity: Some(InstanceCapacity {
                    max_connections: Some(1000),
                    current_connections: Some((i % 1000) as i64),
                    cpu_usage: Some(0.25),
                    memory_usage: Some(0.5),
                }),
                issues: (i % 11 == 0).then(|| vec!["slow disk".to_owned()]),
                metadata: Some(serde_json::json!({ "routingVersion": 42 })),
            }
        })
        .collect()
}

fn start() -> Timestamp {
    Timestamp::from_unix_millis(1_780_000_000_000)
}

/// An aggregator that has already seen every instance once (steady state).
fn warm(hbs: &[ServiceHeartbeatEvent]) -> HeartbeatAggregator {
    let mut agg = HeartbeatAggregator::new(HealthConfig::default());
    for hb in hbs {
        agg.ingest(hb, start());
    }
    agg
}

fn ingest(c: &mut Criterion) {
    let steady = heartbeats(false);
    let flipped = heartbeats(true);
    let mut group = c.benchmark_group("heartbeats");
    group.throughput(Throughput::Elements(INSTANCES as u64));

    // Same services as last time: the path every heartbeat takes in production.
    group.bench_function("ingest_steady_10k_x_10_services", |b| {
        let mut agg = warm(&steady);
        let mut now = start();
        b.iter(|| {
            now = now + Duration::from_secs(1);
            for hb in &steady {
                black_box(agg.ingest(hb, now));
            }
        });
    });

    // Same, but the heartbeat being ingested is in cache (as one just decoded from the bus
    // would be): one buffer whose instance id changes, so only the aggregator's own state is
    // cold. Measures the aggregator rather than the bench's 10,000 pre-built inputs.
    group.bench_function("ingest_steady_hot_input_10k_x_10_services", |b| {
        let mut hb = steady[0].clone();
        let ids: Vec<Uuid> = steady.iter().map(|h| h.service_id).collect();
        let mut agg = HeartbeatAggregator::new(HealthConfig::default());
        for id in &ids {
            hb.service_id = *id;
            agg.ingest(&hb, start());
        }
        let mut now = start();
        b.iter(|| {
            now = now + Duration::from_secs(1);
            for id in &ids {
                hb.service_id = *id;
                black_box(agg.ingest(&hb, now));
            }
        });
    });

    // Every heartbeat toggles one service between healthy and degraded (degraded-since churn).
    group.bench_function("ingest_status_flapping_10k_x_10_services", |b| {
        let mut agg = warm(&steady);
        let mut now = start();
        let mut flip = false;
        b.iter(|| {
            now = now + Duration::from_secs(1);
            flip = !flip;
            for hb in if flip { &flipped } else { &steady } {
                black_box(agg.ingest(hb, now));
            }
        });
    });

    // First sight of every instance (allocation path), on a fresh aggregator each time.
    group.bench_function("ingest_new_instances_10k_x_10_services", |b| {
        b.iter_batched(
            || HeartbeatAggregator::new(HealthConfig::default()),
            |mut agg| {
                for hb in &steady {
                    black_box(agg.ingest(hb, start()));
                }
                agg
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();

    let agg = warm(&steady);
    let mut queries = c.benchmark_group("queries_10k_instances");
    queries.throughput(Throughput::Elements(1));
    queries.bench_function("should_restart_one_service", |b| {
        b.iter(|| should_restart(&agg, black_box("auth"), start(), Duration::from_secs(300)));
    });
    queries.bench_function("report_all_100k_entries", |b| {
        b.iter(|| {
            agg.report(
                &ServiceHealthRequest::default(),
                "bannou",
                &["orchestrator"],
                start(),
            )
        });
    });
    queries.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(20);
    targets = ingest
}
criterion_main!(benches);
