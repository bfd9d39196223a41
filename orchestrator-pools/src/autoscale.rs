//! The autoscale policy, pure: pool status and `now` in, a [`ScaleDecision`] out. The loop
//! that feeds it (and drives a container backend) lives in the host; this file only decides,
//! and remembers the little history a decision needs (how long utilisation has been low).

use std::time::Duration;

use orchestrator_core::Timestamp;
use serde::{Deserialize, Serialize};

use crate::config::PoolConfig;
use crate::model::{PoolLoad, PoolStatus, ProcessorId, Worker, WorkerState};
use crate::store::AcquireOutcome;

/// Why the policy decided what it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ScaleReason {
    /// Nothing to do.
    Steady,
    /// Fewer workers than `minInstances` (includes a fresh pool).
    BelowMinimum,
    /// More workers than `maxInstances` (the limit was lowered).
    AboveMaximum,
    /// Callers are queued or were refused.
    Queued,
    /// Utilisation is above `scaleUpThreshold`.
    OverThreshold,
    /// Fewer available workers than the warm buffer asks for.
    WarmBuffer,
    /// Utilisation stayed below `scaleDownThreshold` for the stabilisation window.
    Underutilised,
    /// Available workers idle longer than `idleTimeoutMinutes`.
    IdleTimeout,
}

/// What to do to a pool: start `start` new workers (register them Pending first, then
/// deploy) and drain the listed ones (never leased ones). At most one of the two is non-empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleDecision {
    /// New workers to start.
    pub start: u32,
    /// Workers to drain (then tear down and remove), in the order chosen.
    pub drain: Vec<ProcessorId>,
    /// Why.
    pub reason: ScaleReason,
}

impl ScaleDecision {
    /// Do nothing.
    pub fn steady() -> Self {
        ScaleDecision {
            start: 0,
            drain: Vec::new(),
            reason: ScaleReason::Steady,
        }
    }

    /// True when nothing is to be done.
    pub fn is_noop(&self) -> bool {
        self.start == 0 && self.drain.is_empty()
    }
}

/// Per-pool policy state: when utilisation went low, and the last scale actions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Autoscaler {
    below_since: Option<Timestamp>,
    last_scale_up: Option<Timestamp>,
    last_scale_down: Option<Timestamp>,
}

/// Workers not leaving: pending, available and leased.
fn active(load: &PoolLoad) -> u32 {
    load.pending + load.available + load.leased
}

/// `ceil(demand / threshold)`, robust to float noise (4 / 0.8 is 5, not 6).
fn capacity_for(demand: u32, threshold: f64) -> u32 {
    if demand == 0 {
        return 0;
    }
    let c = (f64::from(demand) / threshold - 1e-9).ceil();
    if c >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        c as u32
    }
}

impl Autoscaler {
    /// No history yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// When utilisation went (and stayed) below the down threshold, if it is below now.
    pub fn below_since(&self) -> Option<Timestamp> {
        self.below_since
    }

    /// Last decision that started workers.
    pub fn last_scale_up(&self) -> Option<Timestamp> {
        self.last_scale_up
    }

    /// Last decision that drained workers.
    pub fn last_scale_down(&self) -> Option<Timestamp> {
        self.last_scale_down
    }

    /// A pool preset was just deployed: start `minInstances` workers (upstream starts none).
    pub fn initial(config: &PoolConfig) -> ScaleDecision {
        ScaleDecision {
            start: config.min_instances(),
            drain: Vec::new(),
            reason: ScaleReason::BelowMinimum,
        }
    }

    /// The event-driven path, called right after every acquire with what it returned:
    /// scales up at once when the caller was queued or refused, or the pool is over its
    /// threshold or under its warm buffer. Never scales down.
    pub fn on_acquire(
        &mut self,
        config: &PoolConfig,
        outcome: &AcquireOutcome,
        load: &PoolLoad,
        now: Timestamp,
    ) -> ScaleDecision {
        let refused = u32::from(matches!(outcome, AcquireOutcome::Exhausted));
        self.scale_up(config, load, refused, now)
            .unwrap_or_else(ScaleDecision::steady)
    }

    /// The periodic path: the whole policy over a status snapshot.
    ///
    /// In order: drain down to `maxInstances` if above it; scale up (minimum, queue,
    /// threshold, warm buffer); scale down to a utilisation midway between the thresholds
    /// once utilisation stayed below `scaleDownThreshold` for the stabilisation window;
    /// reap available workers idle longer than the idle timeout, down to `minInstances`
    /// (and the warm buffer). Only unleased workers are drained, idle longest first.
    pub fn evaluate(&mut self, status: &PoolStatus, now: Timestamp) -> ScaleDecision {
        let config = &status.config;
        let load = &status.load;
        let active_now = active(load);
        let max = config.max_instances();

        if active_now > max {
            let drain = drain_candidates(&status.workers, now, None)
                .into_iter()
                .take((active_now - max) as usize)
                .collect::<Vec<_>>();
            if !drain.is_empty() {
                self.last_scale_down = Some(now);
                return ScaleDecision {
                    start: 0,
                    drain,
                    reason: ScaleReason::AboveMaximum,
                };
            }
        }

        if let Some(up) = self.scale_up(config, load, 0, now) {
            return up;
        }

        // Scale down after the stabilisation window.
        let low = load.queue_depth == 0
            && load.available > 0
            && load.utilisation() < config.scale_down_threshold();
        if !low {
            self.below_since = None;
        } else {
            let since = *self.below_since.get_or_insert(now);
            if now.saturating_since(since) >= config.scale_down_stabilisation() {
                let mid = (config.scale_up_threshold() + config.scale_down_threshold()) / 2.0;
                let target = config
                    .min_instances()
                    .max(capacity_for(load.leased, mid))
                    .max(load.leased + config.warm_buffer());
                let n = active_now.saturating_sub(target) as usize;
                let drain: Vec<_> = drain_candidates(&status.workers, now, None)
                    .into_iter()
                    .take(n)
                    .collect();
                if !drain.is_empty() {
                    // The next step down needs another full window.
                    self.below_since = Some(now);
                    self.last_scale_down = Some(now);
                    return ScaleDecision {
                        start: 0,
                        drain,
                        reason: ScaleReason::Underutilised,
                    };
                }
            }
        }

        // Idle reaping: its own window is the idle timeout.
        let floor = config
            .min_instances()
            .max(load.leased + config.warm_buffer());
        let n = active_now.saturating_sub(floor) as usize;
        let drain: Vec<_> = drain_candidates(&status.workers, now, Some(config.idle_timeout()))
            .into_iter()
            .take(n)
            .collect();
        if !drain.is_empty() {
            self.last_scale_down = Some(now);
            return ScaleDecision {
                start: 0,
                drain,
                reason: ScaleReason::IdleTimeout,
            };
        }
        ScaleDecision::steady()
    }

    fn scale_up(
        &mut self,
        config: &PoolConfig,
        load: &PoolLoad,
        refused: u32,
        now: Timestamp,
    ) -> Option<ScaleDecision> {
        let active_now = active(load);
        let demand = load.leased + load.queue_depth + refused;
        let need = config
            .min_instances()
            .max(capacity_for(demand, config.scale_up_threshold()))
            .max(demand + config.warm_buffer());
        if need <= active_now {
            return None;
        }
        let room = config.max_instances().saturating_sub(load.total());
        let start = (need - active_now).min(room);
        if start == 0 {
            return None;
        }
        let reason = if active_now < config.min_instances() {
            ScaleReason::BelowMinimum
        } else if load.queue_depth + refused > 0 {
            ScaleReason::Queued
        } else if capacity_for(demand, config.scale_up_threshold()) > active_now {
            ScaleReason::OverThreshold
        } else {
            ScaleReason::WarmBuffer
        };
        self.below_since = None;
        self.last_scale_up = Some(now);
        Some(ScaleDecision {
            start,
            drain: Vec::new(),
            reason,
        })
    }
}

/// Unleased, non-draining workers in drain order: available ones idle longest first, then
/// pending ones newest first. With `idle_for`, only available workers idle at least that long.
fn drain_candidates(
    workers: &[Worker],
    now: Timestamp,
    idle_for: Option<Duration>,
) -> Vec<ProcessorId> {
    let mut available: Vec<&Worker> = workers
        .iter()
        .filter(|w| w.state == WorkerState::Available && w.lease_id.is_none())
        .filter(|w| match (idle_for, w.idle_since) {
            (None, _) => true,
            (Some(limit), Some(since)) => now.saturating_since(since) >= limit,
            (Some(_), None) => false,
        })
        .collect();
    available.sort_by_key(|w| (w.idle_since, w.processor_id.clone()));
    let mut out: Vec<ProcessorId> = available
        .into_iter()
        .map(|w| w.processor_id.clone())
        .collect();
    if idle_for.is_none() {
        let mut pending: Vec<&Worker> = workers
            .iter()
            .filter(|w| w.state == WorkerState::Pending)
            .collect();
        pending.sort_by_key(|w| std::cmp::Reverse(w.created_at));
        out.extend(pending.into_iter().map(|w| w.processor_id.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PoolSpec, PoolType};
    use crate::model::{LeaseId, WorkerIdentity};
    use proptest::prelude::*;

    fn t(secs: u64) -> Timestamp {
        Timestamp::from_unix_millis(1_700_000_000_000) + Duration::from_secs(secs)
    }

    fn config(f: impl FnOnce(&mut PoolSpec)) -> PoolConfig {
        let mut s = PoolSpec::named("brains");
        s.min_instances = 1;
        s.max_instances = 10;
        f(&mut s);
        PoolConfig::new(s).unwrap()
    }

    /// Builds a pool status worker by worker.
    struct PoolBuilder {
        config: PoolConfig,
        workers: Vec<Worker>,
        queue: u32,
    }

    impl PoolBuilder {
        fn new(config: PoolConfig) -> Self {
            PoolBuilder {
                config,
                workers: Vec::new(),
                queue: 0,
            }
        }

        fn add(mut self, n: u32, state: WorkerState, idle_since: Option<Timestamp>) -> Self {
            for _ in 0..n {
                let pool: &PoolType = self.config.pool_type();
                let id = WorkerIdentity::from_value(pool, self.workers.len() as u128 + 1);
                let leased = matches!(state, WorkerState::Leased);
                self.workers.push(Worker {
                    processor_id: id.processor_id,
                    app_id: id.app_id,
                    pool_type: pool.clone(),
                    state,
                    lease_id: leased.then(LeaseId::generate),
                    created_at: t(0),
                    last_updated: t(0),
                    idle_since: if leased { None } else { idle_since },
                });
            }
            self
        }

        fn available(self, n: u32, idle_since: Timestamp) -> Self {
            self.add(n, WorkerState::Available, Some(idle_since))
        }
        fn leased(self, n: u32) -> Self {
            self.add(n, WorkerState::Leased, None)
        }
        fn pending(self, n: u32) -> Self {
            self.add(n, WorkerState::Pending, Some(t(0)))
        }
        fn queued(mut self, n: u32) -> Self {
            self.queue = n;
            self
        }

        fn build(self) -> PoolStatus {
            let mut load = PoolLoad::default();
            self.workers.iter().for_each(|w| load.count(w.state));
            load.queue_depth = self.queue;
            PoolStatus {
                config: self.config,
                workers: self.workers,
                leases: Vec::new(),
                load,
            }
        }
    }

    #[test]
    fn a_fresh_pool_starts_its_minimum() {
        let c = config(|s| s.min_instances = 3);
        assert_eq!(Autoscaler::initial(&c).start, 3);
        let d = Autoscaler::new().evaluate(&PoolBuilder::new(c).build(), t(0));
        assert_eq!((d.start, d.reason), (3, ScaleReason::BelowMinimum));
    }

    #[test]
    fn acquire_that_queues_or_is_refused_scales_up_at_once() {
        let c = config(|_| {});
        let status = PoolBuilder::new(c.clone()).leased(2).queued(3).build();
        let mut a = Autoscaler::new();
        let d = a.on_acquire(&c, &AcquireOutcome::Exhausted, &status.load, t(5));
        // demand 2 leased + 3 queued + 1 refused = 6 -> ceil(6 / 0.8) = 8 -> start 6.
        assert_eq!((d.start, d.reason), (6, ScaleReason::Queued));
        assert_eq!(a.last_scale_up(), Some(t(5)));
    }

    #[test]
    fn over_threshold_scales_up_but_at_threshold_does_not() {
        let c = config(|_| {});
        let at = PoolBuilder::new(c.clone())
            .leased(4)
            .available(1, t(0))
            .build();
        let d = Autoscaler::new().on_acquire(&c, &AcquireOutcome::Exhausted, &at.load, t(0));
        assert_eq!(d.reason, ScaleReason::Queued, "a refused caller is demand");
        let lease = AcquireOutcome::Exhausted;
        let _ = lease;
        let fine = Autoscaler::new().evaluate(&at, t(0));
        assert!(fine.is_noop(), "4 of 5 is exactly 0.8: {fine:?}");
        let over = PoolBuilder::new(c).leased(5).available(1, t(0)).build();
        let d = Autoscaler::new().evaluate(&over, t(0));
        assert_eq!((d.start, d.reason), (1, ScaleReason::OverThreshold));
    }

    #[test]
    fn pending_workers_count_as_coming_capacity() {
        let c = config(|_| {});
        let s = PoolBuilder::new(c).leased(4).pending(2).build();
        assert!(Autoscaler::new().evaluate(&s, t(0)).is_noop());
    }

    #[test]
    fn never_starts_beyond_max() {
        let c = config(|s| s.max_instances = 4);
        let s = PoolBuilder::new(c).leased(3).queued(20).build();
        assert_eq!(Autoscaler::new().evaluate(&s, t(0)).start, 1);
    }

    #[test]
    fn warm_buffer_keeps_available_workers_ready() {
        let c = config(|s| s.warm_buffer = 2);
        let s = PoolBuilder::new(c).leased(1).available(1, t(0)).build();
        let d = Autoscaler::new().evaluate(&s, t(0));
        assert_eq!((d.start, d.reason), (1, ScaleReason::WarmBuffer));
    }

    #[test]
    fn scale_down_waits_for_the_stabilisation_window() {
        let c = config(|s| {
            s.min_instances = 2;
            s.idle_timeout_minutes = 60;
        });
        let low = PoolBuilder::new(c.clone())
            .leased(1)
            .available(3, t(0))
            .available(5, t(100))
            .build();
        let mut a = Autoscaler::new();
        assert!(a.evaluate(&low, t(1000)).is_noop());
        assert_eq!(a.below_since(), Some(t(1000)));
        assert!(a.evaluate(&low, t(1000 + 299)).is_noop());
        let d = a.evaluate(&low, t(1000 + 300));
        // Target: max(min 2, ceil(1 / 0.5) = 2, 1 + 0) = 2 of 9 active -> drain 7, idle longest first.
        assert_eq!(d.reason, ScaleReason::Underutilised);
        assert_eq!(d.drain.len(), 7);
        let leased: Vec<_> = low
            .workers
            .iter()
            .filter(|w| w.lease_id.is_some())
            .map(|w| &w.processor_id)
            .collect();
        assert!(
            d.drain.iter().all(|id| !leased.contains(&id)),
            "never drains leased workers"
        );
        assert_eq!(
            &d.drain[..3],
            &[
                low.workers[1].processor_id.clone(),
                low.workers[2].processor_id.clone(),
                low.workers[3].processor_id.clone()
            ]
        );
    }

    #[test]
    fn a_busy_moment_restarts_the_window() {
        let c = config(|s| s.idle_timeout_minutes = 60);
        let low = PoolBuilder::new(c.clone())
            .leased(1)
            .available(9, t(0))
            .build();
        let busy = PoolBuilder::new(c).leased(5).available(5, t(0)).build();
        let mut a = Autoscaler::new();
        a.evaluate(&low, t(0));
        a.evaluate(&busy, t(200));
        assert_eq!(a.below_since(), None);
        assert!(a.evaluate(&low, t(400)).is_noop());
        assert!(a.evaluate(&low, t(699)).is_noop());
        assert!(!a.evaluate(&low, t(700)).is_noop());
    }

    #[test]
    fn idle_workers_are_reaped_down_to_the_minimum() {
        let c = config(|s| {
            s.min_instances = 2;
            s.scale_down_threshold = 0.0;
        });
        let s = PoolBuilder::new(c)
            .available(3, t(0))
            .available(1, t(250))
            .build();
        let mut a = Autoscaler::new();
        assert!(
            a.evaluate(&s, t(299)).is_noop(),
            "nobody idle 5 minutes yet"
        );
        let d = a.evaluate(&s, t(300));
        assert_eq!(d.reason, ScaleReason::IdleTimeout);
        assert_eq!(
            d.drain,
            vec![
                s.workers[0].processor_id.clone(),
                s.workers[1].processor_id.clone()
            ]
        );
    }

    #[test]
    fn lowering_max_drains_unleased_workers() {
        let c = config(|s| s.max_instances = 2);
        let s = PoolBuilder::new(c).leased(2).available(2, t(0)).build();
        let d = Autoscaler::new().evaluate(&s, t(1));
        assert_eq!(d.reason, ScaleReason::AboveMaximum);
        assert_eq!(
            d.drain,
            vec![
                s.workers[2].processor_id.clone(),
                s.workers[3].processor_id.clone()
            ]
        );
    }

    proptest! {
        #[test]
        fn decisions_stay_within_bounds(
            min in 0i64..4, extra in 0i64..8, warm in 0i64..3,
            pending in 0u32..5, available in 0u32..8, leased in 0u32..8, queued in 0u32..10,
            idle_secs in 0u64..1000, now_secs in 0u64..2000,
        ) {
            let c = config(|s| { s.min_instances = min; s.max_instances = min.max(1) + extra; s.warm_buffer = warm.min(min.max(1) + extra); });
            let s = PoolBuilder::new(c.clone())
                .pending(pending).available(available, t(idle_secs)).leased(leased).queued(queued).build();
            let mut a = Autoscaler::new();
            for step in [0, now_secs, now_secs + 400] {
                let d = a.evaluate(&s, t(step));
                prop_assert!(d.start == 0 || d.drain.is_empty());
                prop_assert!(d.start <= c.max_instances().saturating_sub(s.load.total()));
                let active = pending + available + leased;
                for id in &d.drain {
                    let w = s.workers.iter().find(|w| &w.processor_id == id).unwrap();
                    prop_assert!(w.lease_id.is_none(), "drained a leased worker");
                }
                let drained = d.drain.len() as u32;
                if d.reason != ScaleReason::AboveMaximum {
                    prop_assert!(drained == 0 || active - drained >= c.min_instances());
                } else {
                    prop_assert!(active - drained >= c.max_instances().min(active));
                }
            }
        }
    }
}
