//! Expired-lease reclamation: the background loop that takes workers back from holders
//! whose lease ran out (docs/COMPATIBILITY.md#processing-pools-reclamation), publishing a
//! `ProcessorReleasedEvent` (success false) and a `LeaseExpiredEvent` for each and waking
//! the pool scaler.
//!
//! Like mini-redis's purge task, it sleeps until the *next* expiry rather than polling on
//! a fixed interval: after each pass it reads the earliest `expiresAt` of every pool and
//! sleeps until then (capped by `LeaseCleanupIntervalSeconds`, so leases granted later
//! with an earlier expiry are still caught in time). A [`ReaperWake`] cuts the sleep short
//! for an expiry earlier than the planned pass: the acquire path wakes it for a short
//! lease, the pool scaler for the deadline of every drain that shortened leases (D60
//! (docs/DECISIONS.md#d60)).

use orchestrator_core::error_source::Chain;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use orchestrator_core::Timestamp;
use orchestrator_core::ports::bus::{EventBus, EventBusExt};
use orchestrator_core::time::Clock;
use orchestrator_pools::{Lease, LeaseError, LeaseStore};
use tokio::sync::{Notify, watch};

use super::pool_events::LeaseExpiredEvent;
use super::pool_scaler::PoolScaler;

/// What wakes a sleeping [`LeaseReaper`] before its planned pass; cheap to clone (every
/// clone wakes the same reaper). Held by the reaper and by whoever moves an expiry
/// earlier (the acquire path, the pool scaler's drains).
#[derive(Clone, Default)]
pub struct ReaperWake(Arc<WakeState>);

#[derive(Default)]
struct WakeState {
    notify: Notify,
    /// When the sleeping reaper plans its next pass (unix ms); `i64::MAX` while a pass
    /// runs, so [`ReaperWake::wake_for`] wakes it for anything meanwhile (the pass may
    /// have read that pool's earliest expiry already); 0 before the first pass (which
    /// reads everything anyway).
    next_pass: AtomicI64,
}

impl ReaperWake {
    /// Cuts the current sleep short.
    pub fn wake(&self) {
        self.0.notify.notify_one();
    }

    /// Wakes the reaper only if a lease expiring at `expires_at` would otherwise wait for
    /// a later pass: it sleeps until the earliest expiry it knew of (at most its
    /// `max_sleep`), so a lease expiring after that needs nothing. Each woken pass reads
    /// every pool's leases, so waking on every short lease kept a busy pool's reaper
    /// running back to back.
    pub fn wake_for(&self, expires_at: Timestamp) {
        if expires_at.unix_millis() < self.0.next_pass.load(Ordering::Acquire) {
            self.wake();
        }
    }
}

impl std::fmt::Debug for ReaperWake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReaperWake")
            .field("next_pass", &self.0.next_pass.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Reclaims expired leases.
pub struct LeaseReaper {
    store: Arc<dyn LeaseStore>,
    bus: Arc<dyn EventBus>,
    clock: Arc<dyn Clock>,
    max_sleep: Duration,
    scaler: Option<Arc<PoolScaler>>,
    wake: ReaperWake,
    passes: AtomicU64,
    reclaimed: AtomicU64,
    metrics: Option<crate::metrics::Metrics>,
}

/// What a reaper has done since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReaperStats {
    /// Passes that completed.
    pub passes: u64,
    /// Leases reclaimed by those passes.
    pub reclaimed: u64,
}

impl LeaseReaper {
    /// A reaper that sleeps at most `max_sleep` (`LeaseCleanupIntervalSeconds`) between passes.
    pub fn new(
        store: Arc<dyn LeaseStore>,
        bus: Arc<dyn EventBus>,
        clock: Arc<dyn Clock>,
        max_sleep: Duration,
    ) -> Self {
        LeaseReaper {
            store,
            bus,
            clock,
            max_sleep,
            scaler: None,
            wake: ReaperWake::default(),
            passes: AtomicU64::new(0),
            reclaimed: AtomicU64::new(0),
            metrics: None,
        }
    }

    /// Counts reclaimed leases into `metrics`.
    pub fn with_metrics(mut self, metrics: crate::metrics::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Wakes `scaler` after reclaiming, so freed capacity is re-evaluated at once, and
    /// listens to the scaler's [`PoolScaler::reaper_wake`], so a drain's deadline is kept.
    pub fn with_scaler(mut self, scaler: Arc<PoolScaler>) -> Self {
        self.wake = scaler.reaper_wake().clone();
        self.scaler = Some(scaler);
        self
    }

    /// Completed passes and reclaimed leases so far (a follower's reaper stays at zero).
    pub fn stats(&self) -> ReaperStats {
        ReaperStats {
            passes: self.passes.load(Ordering::Relaxed),
            reclaimed: self.reclaimed.load(Ordering::Relaxed),
        }
    }

    /// Cuts the current sleep short (a lease with an earlier expiry was granted).
    pub fn wake(&self) {
        self.wake.wake();
    }

    /// [`ReaperWake::wake_for`]: wakes the reaper only if a lease expiring at
    /// `expires_at` would otherwise wait for a later pass.
    pub fn wake_for(&self, expires_at: Timestamp) {
        self.wake.wake_for(expires_at);
    }

    /// One pass over every pool: reclaims what expired by now, publishes the events, and
    /// returns the reclaimed leases and the earliest expiry still pending.
    pub async fn reap(&self) -> Result<(Vec<Lease>, Option<Timestamp>), LeaseError> {
        let now = self.clock.now();
        let mut reclaimed = Vec::new();
        let mut next: Option<Timestamp> = None;
        for pool in self.store.list_pools().await? {
            let leases = self.store.reclaim_expired(&pool, now).await?;
            for lease in &leases {
                let event =
                    lease.released_event(false, now.saturating_since(lease.acquired_at), now);
                if let Err(e) = self.bus.publish_event(&event).await {
                    tracing::warn!(error = %e, lease = %lease.lease_id, "could not publish the release of an expired lease");
                }
                let expired = LeaseExpiredEvent::of(lease, now);
                match self.scaler.as_ref().and_then(|s| s.outbox()) {
                    Some(outbox) => outbox.publish(expired),
                    None => {
                        if let Err(e) = self.bus.publish_owned(expired).await {
                            tracing::warn!(error = %e, lease = %lease.lease_id, "could not publish the expiry of a lease");
                        }
                    }
                }
            }
            if let Some(m) = &self.metrics {
                m.leases_reclaimed(pool.as_str(), leases.len());
            }
            reclaimed.extend(leases);
            if let Some(earliest) = self.store.next_expiry(&pool).await? {
                next = Some(next.map_or(earliest, |n| n.min(earliest)));
            }
        }
        self.passes.fetch_add(1, Ordering::Relaxed);
        self.reclaimed
            .fetch_add(reclaimed.len() as u64, Ordering::Relaxed);
        if !reclaimed.is_empty()
            && let Some(s) = &self.scaler
        {
            s.wake();
        }
        Ok((reclaimed, next))
    }

    /// Runs until `shutdown` turns true (or its sender is dropped).
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        loop {
            self.wake.0.next_pass.store(i64::MAX, Ordering::Release);
            let sleep = match self.reap().await {
                Ok((reclaimed, next)) => {
                    if !reclaimed.is_empty() {
                        tracing::info!(count = reclaimed.len(), "reclaimed expired leases");
                    }
                    next.map_or(self.max_sleep, |t| {
                        t.saturating_since(self.clock.now()).min(self.max_sleep)
                    })
                }
                Err(e) => {
                    tracing::warn!(error = %Chain(&e), "lease reclamation failed; retrying");
                    self.max_sleep.min(Duration::from_secs(1))
                }
            };
            let sleep = sleep + Duration::from_millis(1);
            self.wake
                .0
                .next_pass
                .store((self.clock.now() + sleep).unix_millis(), Ordering::Release);
            tokio::select! {
                // +1 ms: an expiry at exactly `t` is reclaimed by a pass at `t` or later.
                _ = tokio::time::sleep(sleep) => {}
                _ = self.wake.0.notify.notified() => {}
                _ = super::stopped(&mut shutdown) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use orchestrator_core::events::ProcessorReleasedEvent;
    use orchestrator_core::memory::bus::InMemoryBus;
    use orchestrator_pools::{
        AcquireOutcome, AcquireRequest, MemoryLeaseStore, PoolConfig, PoolSpec, PoolType,
        WorkerIdentity,
    };

    use super::*;
    use crate::clock::TokioClock;

    /// A paused-time clock, and pool `npc-brain` of `workers` ready workers in memory.
    async fn pool_of(workers: usize) -> (Arc<dyn Clock>, MemoryLeaseStore, PoolType) {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(Timestamp::from_unix_millis(
            1_780_000_000_000,
        )));
        let store = MemoryLeaseStore::new();
        let pool = add_pool(&store, "npc-brain", workers, &clock).await;
        (clock, store, pool)
    }

    /// Pool `name` of `workers` ready workers in `store`.
    async fn add_pool(
        store: &MemoryLeaseStore,
        name: &str,
        workers: usize,
        clock: &Arc<dyn Clock>,
    ) -> PoolType {
        let config = PoolConfig::new(PoolSpec::named(name)).unwrap();
        let pool = config.pool_type().clone();
        store.configure_pool(config).await.unwrap();
        for _ in 0..workers {
            let worker = WorkerIdentity::generate(&pool);
            store
                .register_worker(&pool, &worker.processor_id, &worker.app_id, clock.now())
                .await
                .unwrap();
            store
                .mark_ready(&pool, worker.app_id.as_str(), clock.now())
                .await
                .unwrap();
        }
        pool
    }

    /// A lease of `secs` seconds in `pool`, taken now; panics when no worker is free.
    async fn lease_of(
        store: &MemoryLeaseStore,
        pool: &PoolType,
        clock: &Arc<dyn Clock>,
        secs: u64,
    ) -> Lease {
        let req = AcquireRequest::new("npc").lease_duration(Duration::from_secs(secs));
        match store.acquire(pool, req, clock.now()).await.unwrap().outcome {
            AcquireOutcome::Leased(l) => l,
            other => panic!("a worker was available: {other:?}"),
        }
    }

    /// An in-memory bus whose publishes wait while the test holds `gate` for writing;
    /// `waiting` is notified as each publish starts to wait. Holds a reaper mid-pass.
    #[derive(Default)]
    struct GatedBus {
        inner: InMemoryBus,
        gate: tokio::sync::RwLock<()>,
        waiting: Notify,
    }

    #[async_trait::async_trait]
    impl EventBus for GatedBus {
        async fn publish(
            &self,
            topic: &str,
            payload: orchestrator_core::ports::bus::Payload,
        ) -> Result<(), orchestrator_core::ports::bus::BusError> {
            self.waiting.notify_one();
            let _open = self.gate.read().await;
            self.inner.publish(topic, payload).await
        }

        async fn subscribe(
            &self,
            topic: &str,
        ) -> Result<
            orchestrator_core::ports::bus::Subscription,
            orchestrator_core::ports::bus::BusError,
        > {
            self.inner.subscribe(topic).await
        }
    }

    /// A reaper over `store` (sleeping at most 60 s) running in a task; send `true` to stop it.
    fn start_reaper(
        store: &MemoryLeaseStore,
        bus: Arc<dyn EventBus>,
        clock: &Arc<dyn Clock>,
    ) -> (
        Arc<LeaseReaper>,
        watch::Sender<bool>,
        tokio::task::JoinHandle<()>,
    ) {
        let reaper = Arc::new(LeaseReaper::new(
            Arc::new(store.clone()),
            bus,
            clock.clone(),
            Duration::from_secs(60),
        ));
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn({
            let r = reaper.clone();
            async move { r.run(rx).await }
        });
        (reaper, tx, task)
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_lease_is_reclaimed_at_its_expiry_not_at_the_next_interval() {
        let (clock, store, pool) = pool_of(1).await;
        let bus = Arc::new(InMemoryBus::new());
        let mut released = bus
            .subscribe_events::<ProcessorReleasedEvent>()
            .await
            .unwrap();

        let (reaper, tx, task) = start_reaper(&store, bus.clone(), &clock);
        tokio::time::sleep(Duration::from_millis(10)).await;

        let lease = lease_of(&store, &pool, &clock, 7).await;
        reaper.wake();
        let started = tokio::time::Instant::now();
        let event = released.next().await.unwrap().unwrap();
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(7) && waited < Duration::from_secs(8),
            "reclaimed after {waited:?}"
        );
        assert_eq!(
            (event.processor_id.as_str(), event.success),
            (lease.processor_id.as_str(), false)
        );
        assert!(event.lease_duration_ms >= 7_000);
        let status = store.status(&pool, clock.now()).await.unwrap();
        assert!(
            status.leases.is_empty() && status.load.available == 1,
            "the worker is available again"
        );
        tx.send(true).unwrap();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn wake_for_wakes_only_for_a_lease_expiring_before_the_next_pass() {
        let (clock, store, pool) = pool_of(2).await;
        let (reaper, tx, task) = start_reaper(&store, Arc::new(InMemoryBus::new()), &clock);
        let settle = || tokio::time::sleep(Duration::from_millis(10));
        settle().await;
        assert_eq!(
            reaper.stats().passes,
            1,
            "the first pass, then 60 s of sleep"
        );

        let lease = |secs| lease_of(&store, &pool, &clock, secs);
        let short = lease(7).await;
        reaper.wake_for(short.expires_at);
        settle().await;
        assert_eq!(reaper.stats().passes, 2, "7 s is before the planned pass");

        let long = lease(30).await;
        reaper.wake_for(long.expires_at);
        settle().await;
        assert_eq!(
            reaper.stats().passes,
            2,
            "30 s is after the pass planned for the 7 s lease: no wake"
        );

        tokio::time::sleep(Duration::from_secs(7)).await;
        assert_eq!(reaper.stats().passes, 3);
        assert_eq!(reaper.stats().reclaimed, 1, "the 7 s lease, at its expiry");
        tx.send(true).unwrap();
        task.await.unwrap();
    }

    /// A lease granted while a pass runs, in a pool that pass has already read, is
    /// reclaimed at its expiry: `wake_for` during a pass makes the reaper pass again at
    /// once (it planned its next pass without that lease).
    #[tokio::test(start_paused = true)]
    async fn a_lease_granted_during_a_pass_is_reclaimed_at_its_expiry() {
        let (clock, store, early) = pool_of(1).await;
        // Pools are read in name order: `npc-brain` first, then `zz-late`.
        let late = add_pool(&store, "zz-late", 1, &clock).await;
        let bus = Arc::new(GatedBus::default());
        let mut released = bus
            .subscribe_events::<ProcessorReleasedEvent>()
            .await
            .unwrap();
        let first = lease_of(&store, &late, &clock, 5).await;
        let (reaper, tx, task) = start_reaper(&store, bus.clone(), &clock);

        // The pass at 5 s reclaims `first` and waits to publish its release, after it
        // read `npc-brain` (nothing leased there yet).
        let held = bus.gate.write().await;
        bus.waiting.notified().await;
        let second = lease_of(&store, &early, &clock, 7).await;
        reaper.wake_for(second.expires_at);
        let started = tokio::time::Instant::now();
        drop(held);

        let event = released.next().await.unwrap().unwrap();
        assert_eq!(event.processor_id, first.processor_id.as_str());
        let event = released.next().await.unwrap().unwrap();
        assert_eq!(event.processor_id, second.processor_id.as_str());
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(7) && waited < Duration::from_secs(8),
            "the 7 s lease reclaimed after {waited:?} (the reaper's next planned pass was 60 s away)"
        );
        tx.send(true).unwrap();
        task.await.unwrap();
    }
}
