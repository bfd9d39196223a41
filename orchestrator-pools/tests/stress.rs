//! Stress test of the in-memory lease store: 64 concurrent tasks, 2,000 mixed operations
//! each (acquire, wait, release, renew, expire), checked against the run's own
//! bookkeeping of who holds which worker (the shared [`lease_store_stress`] run, which the
//! Redis store's tests reuse), plus the store's own invariant check.

use std::sync::Arc;

use orchestrator_pools::MemoryLeaseStore;
use orchestrator_pools::testkit::{StressConfig, lease_store_stress};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_tasks_never_double_lease_and_metrics_add_up() {
    let store = MemoryLeaseStore::new();
    let report = lease_store_stress(Arc::new(store.clone()), StressConfig::default()).await;
    store.check_invariants().expect("store invariants");
    eprintln!("memory stress: {report:?}");
    assert!(report.completed + report.failed > 0 && report.reclaimed > 0);
}
