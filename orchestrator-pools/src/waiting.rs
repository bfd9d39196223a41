//! Bounded waiting for a worker on top of any [`LeaseStore`]: queue once, then sleep until
//! the store says the ticket may have been served (or poll), and give up cleanly when the
//! wait ends or the caller gives up ([`wait_for_ticket`]). Generic over the clock and the
//! sleep, so this crate needs no runtime.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use futures::future::{Either, select};
use orchestrator_core::Timestamp;

use crate::config::PoolType;
use crate::model::{Lease, WaitTicket};
use crate::store::{AcquireOutcome, AcquireRequest, Acquired, LeaseError, LeaseStore, WaitStatus};

/// How often a waiter polls a store that offers no [`LeaseStore::watch`] notification.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Acquires a worker, waiting up to `req.wait` for one. Zero wait answers at once.
///
/// Returns `Leased` or `Exhausted` (never `Queued`: on timeout the ticket is cancelled);
/// `load` is the pool's load seen by the first acquire, which the caller feeds to the
/// autoscaler. Callers that want to react to queueing before waiting (to scale up at once)
/// call [`LeaseStore::acquire`] themselves and then [`wait_for_ticket`].
pub async fn acquire_waiting<N, S, F>(
    store: &dyn LeaseStore,
    pool: &PoolType,
    req: AcquireRequest,
    now: N,
    sleep: S,
) -> Result<Acquired, LeaseError>
where
    N: Fn() -> Timestamp,
    S: Fn(Duration) -> F,
    F: Future<Output = ()>,
{
    let started = now();
    let deadline = started + req.wait;
    let acquired = store.acquire(pool, req, started).await?;
    let ticket = match acquired.outcome {
        AcquireOutcome::Queued(ticket) => ticket,
        _ => return Ok(acquired),
    };
    let lease = wait_for_ticket(
        store,
        &ticket,
        deadline,
        DEFAULT_POLL_INTERVAL,
        now,
        sleep,
        std::future::pending(),
    )
    .await?;
    Ok(Acquired {
        outcome: lease.map_or(AcquireOutcome::Exhausted, AcquireOutcome::Leased),
        load: acquired.load,
    })
}

/// Waits until `ticket` is served, `deadline` passes or `give_up` completes (the caller
/// went away: a dropped request, a shutdown; pass `std::future::pending()` to wait for
/// the other two only). On a served ticket returns its lease; otherwise the ticket is
/// cancelled and `None` returned, unless a worker was handed over at the last moment:
/// then that lease is returned, never lost (a caller that gave up releases it). Only the
/// sleeps between store calls race with `give_up`; a store call, once started, always
/// finishes, so a grant collected by a poll is never dropped with it.
///
/// Sleeps on [`LeaseStore::watch`] when the store offers it (no busy polling), else polls
/// every `poll_interval`.
pub async fn wait_for_ticket<N, S, F, G>(
    store: &dyn LeaseStore,
    ticket: &WaitTicket,
    deadline: Timestamp,
    poll_interval: Duration,
    now: N,
    sleep: S,
    give_up: G,
) -> Result<Option<Lease>, LeaseError>
where
    N: Fn() -> Timestamp,
    S: Fn(Duration) -> F,
    F: Future<Output = ()>,
    G: Future<Output = ()>,
{
    let mut give_up = pin!(give_up);
    loop {
        let at = now();
        let remaining = deadline.saturating_since(at);
        if remaining.is_zero() {
            break;
        }
        // Subscribe before polling, so a grant between the two is not missed.
        let watch = store.watch(ticket);
        match store.poll_wait(ticket, at).await {
            Ok(WaitStatus::Leased(lease)) => return Ok(Some(lease)),
            Ok(WaitStatus::Waiting) => {}
            Err(LeaseError::UnknownTicket { .. }) => break,
            Err(e) => {
                // Do not leave a ticket behind that could swallow a worker; if one was
                // handed over meanwhile, the caller gets it rather than the error.
                return match store.cancel_wait(ticket).await {
                    Ok(Some(lease)) => Ok(Some(lease)),
                    _ => Err(e),
                };
            }
        }
        let woken = async {
            match watch {
                Some(watch) => {
                    let _ = select(watch, pin!(sleep(remaining))).await;
                }
                None => sleep(remaining.min(poll_interval)).await,
            }
        };
        if let Either::Right(_) = select(pin!(woken), give_up.as_mut()).await {
            break;
        }
    }
    store.cancel_wait(ticket).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PoolConfig, PoolSpec};
    use crate::memory::MemoryLeaseStore;
    use crate::model::{PoolMetrics, PoolStatus, ProcessorId, Released, Worker, WorkerIdentity};
    use crate::store::RemovedWorker;
    use crate::{FencingToken, LeaseId};
    use async_trait::async_trait;
    use orchestrator_core::AppId;
    use orchestrator_core::time::{Clock, ManualClock};
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll, Waker};

    fn base() -> Timestamp {
        Timestamp::from_unix_millis(1_700_000_000_000)
    }

    /// Virtual time for a current-thread runtime: sleeps complete only when the test
    /// advances the clock (what tokio's paused time does, without its `test-util` feature).
    #[derive(Clone)]
    struct VirtualTime {
        clock: ManualClock,
        sleepers: Arc<Mutex<Vec<Waker>>>,
    }

    struct VirtualSleep {
        deadline: Timestamp,
        time: VirtualTime,
    }

    impl Future for VirtualSleep {
        type Output = ();
        fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.time.clock.now() >= self.deadline {
                Poll::Ready(())
            } else {
                self.time.sleepers.lock().unwrap().push(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    impl VirtualTime {
        fn new() -> Self {
            VirtualTime {
                clock: ManualClock::new(base()),
                sleepers: Arc::default(),
            }
        }
        fn now(&self) -> impl Fn() -> Timestamp + Clone + Send + 'static {
            let clock = self.clock.clone();
            move || clock.now()
        }
        fn sleep(&self) -> impl Fn(Duration) -> VirtualSleep + Clone + Send + 'static {
            let time = self.clone();
            move |d| VirtualSleep {
                deadline: time.clock.now() + d,
                time: time.clone(),
            }
        }
        /// Moves time on, wakes every sleeper and lets the woken tasks run.
        async fn advance(&self, d: Duration) {
            self.clock.advance(d);
            let woken: Vec<Waker> = std::mem::take(&mut *self.sleepers.lock().unwrap());
            woken.into_iter().for_each(Waker::wake);
            settle().await;
        }
        fn elapsed(&self) -> Duration {
            self.clock.now().saturating_since(base())
        }
    }

    /// Lets every runnable task on the current-thread runtime run until it blocks.
    async fn settle() {
        for _ in 0..64 {
            tokio::task::yield_now().await;
        }
    }

    async fn one_worker_pool(store: &MemoryLeaseStore) -> PoolType {
        let mut spec = PoolSpec::named("brains");
        spec.max_instances = 1;
        let config = PoolConfig::new(spec).unwrap();
        let pool = config.pool_type().clone();
        store.configure_pool(config).await.unwrap();
        let id = WorkerIdentity::from_value(&pool, 1);
        store
            .register_worker(&pool, &id.processor_id, &id.app_id, base())
            .await
            .unwrap();
        store
            .mark_ready(&pool, id.processor_id.as_str(), base())
            .await
            .unwrap();
        pool
    }

    async fn hold(store: &MemoryLeaseStore, pool: &PoolType, now: Timestamp) -> Lease {
        let a = store
            .acquire(pool, AcquireRequest::new("holder"), now)
            .await
            .unwrap();
        a.outcome.lease().cloned().expect("a free worker")
    }

    fn spawn_waiter(
        store: Arc<dyn LeaseStore>,
        pool: &PoolType,
        req: AcquireRequest,
        time: &VirtualTime,
    ) -> tokio::task::JoinHandle<Result<Acquired, LeaseError>> {
        let (pool, now, sleep) = (pool.clone(), time.now(), time.sleep());
        tokio::spawn(async move { acquire_waiting(store.as_ref(), &pool, req, now, sleep).await })
    }

    #[tokio::test]
    async fn zero_wait_answers_at_once() {
        let store = MemoryLeaseStore::new();
        let pool = one_worker_pool(&store).await;
        let time = VirtualTime::new();
        hold(&store, &pool, base()).await;
        let got = acquire_waiting(
            &store,
            &pool,
            AcquireRequest::new("b"),
            time.now(),
            time.sleep(),
        )
        .await
        .unwrap();
        assert_eq!(got.outcome, AcquireOutcome::Exhausted);
        assert_eq!(
            store.status(&pool, base()).await.unwrap().load.queue_depth,
            0
        );
    }

    #[tokio::test]
    async fn waiter_is_served_by_a_release_without_polling() {
        let store = MemoryLeaseStore::new();
        let pool = one_worker_pool(&store).await;
        let time = VirtualTime::new();
        let held = hold(&store, &pool, base()).await;
        let req = AcquireRequest::new("waiter").wait(Duration::from_secs(10));
        let waiter = spawn_waiter(Arc::new(store.clone()), &pool, req, &time);
        settle().await;
        time.advance(Duration::from_secs(2)).await;
        assert!(!waiter.is_finished(), "still waiting after 2 s");
        let r = store
            .release(
                &pool,
                held.lease_id,
                held.fencing_token,
                true,
                (time.now())(),
            )
            .await
            .unwrap();
        settle().await;
        let got = waiter.await.unwrap().unwrap();
        let lease = got.outcome.lease().cloned().expect("served");
        assert_eq!(Some(&lease), r.handed_off.as_ref());
        assert_eq!(lease.holder, "waiter");
        assert_eq!(got.load.queue_depth, 1, "load as seen when queued");
        assert_eq!(
            time.elapsed(),
            Duration::from_secs(2),
            "woken by the release, not a timer"
        );
        store.check_invariants().unwrap();
    }

    /// Queues `req` and waits for its ticket in a task until `give_up` fires.
    async fn spawn_giving_up(
        store: &MemoryLeaseStore,
        pool: &PoolType,
        req: AcquireRequest,
        time: &VirtualTime,
    ) -> (
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<Result<Option<Lease>, LeaseError>>,
    ) {
        let deadline = (time.now())() + req.wait;
        let ticket = match store
            .acquire(pool, req, (time.now())())
            .await
            .unwrap()
            .outcome
        {
            AcquireOutcome::Queued(t) => t,
            other => panic!("expected a queued ticket, got {other:?}"),
        };
        let (give_up, signal) = tokio::sync::oneshot::channel::<()>();
        let (store, now, sleep) = (store.clone(), time.now(), time.sleep());
        let waiter = tokio::spawn(async move {
            let signal = async {
                let _ = signal.await;
            };
            wait_for_ticket(
                &store,
                &ticket,
                deadline,
                DEFAULT_POLL_INTERVAL,
                now,
                sleep,
                signal,
            )
            .await
        });
        settle().await;
        (give_up, waiter)
    }

    #[tokio::test]
    async fn giving_up_leaves_the_queue_at_once_and_keeps_a_lease_handed_over_first() {
        let store = MemoryLeaseStore::new();
        let pool = one_worker_pool(&store).await;
        let time = VirtualTime::new();
        let held = hold(&store, &pool, base()).await;
        let wait = || AcquireRequest::new("waiter").wait(Duration::from_secs(60));

        let (give_up, waiter) = spawn_giving_up(&store, &pool, wait(), &time).await;
        assert_eq!(
            store.status(&pool, base()).await.unwrap().load.queue_depth,
            1
        );
        drop(give_up);
        settle().await;
        assert_eq!(waiter.await.unwrap().unwrap(), None);
        assert_eq!(
            store.status(&pool, base()).await.unwrap().load.queue_depth,
            0,
            "left the queue without any time passing"
        );
        assert_eq!(time.elapsed(), Duration::ZERO);

        // handed over, then given up before the waiter ran: the lease comes back
        let (give_up, waiter) = spawn_giving_up(&store, &pool, wait(), &time).await;
        let r = store
            .release(&pool, held.lease_id, held.fencing_token, true, base())
            .await
            .unwrap();
        give_up.send(()).unwrap();
        settle().await;
        let lease = waiter
            .await
            .unwrap()
            .unwrap()
            .expect("the lease handed over");
        assert_eq!(Some(&lease), r.handed_off.as_ref());
        store.check_invariants().unwrap();
    }

    #[tokio::test]
    async fn wait_ends_with_exhausted_and_the_ticket_is_gone() {
        let store = MemoryLeaseStore::new();
        let pool = one_worker_pool(&store).await;
        let time = VirtualTime::new();
        hold(&store, &pool, base()).await;
        let req = AcquireRequest::new("waiter").wait(Duration::from_millis(1500));
        let waiter = spawn_waiter(Arc::new(store.clone()), &pool, req, &time);
        settle().await;
        assert_eq!(
            store.status(&pool, base()).await.unwrap().load.queue_depth,
            1
        );
        time.advance(Duration::from_millis(1499)).await;
        assert!(!waiter.is_finished());
        time.advance(Duration::from_millis(1)).await;
        assert!(waiter.is_finished(), "gives up exactly when the wait ends");
        assert_eq!(
            waiter.await.unwrap().unwrap().outcome,
            AcquireOutcome::Exhausted
        );
        assert_eq!(
            store
                .status(&pool, (time.now())())
                .await
                .unwrap()
                .load
                .queue_depth,
            0
        );
        store.check_invariants().unwrap();
    }

    #[tokio::test]
    async fn waiters_are_served_by_priority_then_arrival() {
        let store = MemoryLeaseStore::new();
        let pool = one_worker_pool(&store).await;
        let time = VirtualTime::new();
        let mut held = hold(&store, &pool, base()).await;
        let mut tasks = Vec::new();
        for (name, priority) in [("low", 1), ("high-1", 5), ("high-2", 5)] {
            let req = AcquireRequest::new(name)
                .priority(priority)
                .wait(Duration::from_secs(60));
            tasks.push(spawn_waiter(Arc::new(store.clone()), &pool, req, &time));
            settle().await;
            time.advance(Duration::from_millis(10)).await;
        }
        let mut order = Vec::new();
        for _ in 0..3 {
            time.advance(Duration::from_secs(1)).await;
            let r = store
                .release(
                    &pool,
                    held.lease_id,
                    held.fencing_token,
                    true,
                    (time.now())(),
                )
                .await
                .unwrap();
            held = r.handed_off.expect("a waiter gets it");
            order.push(held.holder.clone());
        }
        assert_eq!(order, ["high-1", "high-2", "low"]);
        settle().await;
        for t in tasks {
            assert!(t.await.unwrap().unwrap().outcome.lease().is_some());
        }
    }

    /// Delegates to a memory store but offers no `watch`, to exercise the polling path.
    struct NoWatch(MemoryLeaseStore);

    #[async_trait]
    impl LeaseStore for NoWatch {
        async fn configure_pool(&self, c: PoolConfig) -> Result<Option<PoolConfig>, LeaseError> {
            self.0.configure_pool(c).await
        }
        async fn register_worker(
            &self,
            p: &PoolType,
            id: &ProcessorId,
            a: &AppId,
            n: Timestamp,
        ) -> Result<Worker, LeaseError> {
            self.0.register_worker(p, id, a, n).await
        }
        async fn mark_ready(
            &self,
            p: &PoolType,
            w: &str,
            n: Timestamp,
        ) -> Result<Worker, LeaseError> {
            self.0.mark_ready(p, w, n).await
        }
        async fn acquire(
            &self,
            p: &PoolType,
            r: AcquireRequest,
            n: Timestamp,
        ) -> Result<Acquired, LeaseError> {
            self.0.acquire(p, r, n).await
        }
        async fn poll_wait(&self, t: &WaitTicket, n: Timestamp) -> Result<WaitStatus, LeaseError> {
            self.0.poll_wait(t, n).await
        }
        async fn cancel_wait(&self, t: &WaitTicket) -> Result<Option<Lease>, LeaseError> {
            self.0.cancel_wait(t).await
        }
        async fn release(
            &self,
            p: &PoolType,
            l: LeaseId,
            f: FencingToken,
            s: bool,
            n: Timestamp,
        ) -> Result<Released, LeaseError> {
            self.0.release(p, l, f, s, n).await
        }
        async fn renew(
            &self,
            p: &PoolType,
            l: LeaseId,
            f: FencingToken,
            e: Duration,
            n: Timestamp,
        ) -> Result<Lease, LeaseError> {
            self.0.renew(p, l, f, e, n).await
        }
        async fn reclaim_expired(
            &self,
            p: &PoolType,
            n: Timestamp,
        ) -> Result<Vec<Lease>, LeaseError> {
            self.0.reclaim_expired(p, n).await
        }
        async fn drain_worker(
            &self,
            p: &PoolType,
            id: &ProcessorId,
            d: Option<Timestamp>,
            n: Timestamp,
        ) -> Result<Worker, LeaseError> {
            self.0.drain_worker(p, id, d, n).await
        }
        async fn remove_worker(
            &self,
            p: &PoolType,
            id: &ProcessorId,
            n: Timestamp,
        ) -> Result<RemovedWorker, LeaseError> {
            self.0.remove_worker(p, id, n).await
        }
        async fn pool_config(&self, p: &PoolType) -> Result<PoolConfig, LeaseError> {
            self.0.pool_config(p).await
        }
        async fn next_expiry(&self, p: &PoolType) -> Result<Option<Timestamp>, LeaseError> {
            self.0.next_expiry(p).await
        }
        async fn status(&self, p: &PoolType, n: Timestamp) -> Result<PoolStatus, LeaseError> {
            self.0.status(p, n).await
        }
        async fn metrics(&self, p: &PoolType, n: Timestamp) -> Result<PoolMetrics, LeaseError> {
            self.0.metrics(p, n).await
        }
        async fn list_pools(&self) -> Result<Vec<PoolType>, LeaseError> {
            self.0.list_pools().await
        }
    }

    #[tokio::test]
    async fn stores_without_watch_are_polled() {
        let inner = MemoryLeaseStore::new();
        let pool = one_worker_pool(&inner).await;
        let time = VirtualTime::new();
        let held = hold(&inner, &pool, base()).await;
        let req = AcquireRequest::new("poller").wait(Duration::from_secs(5));
        let waiter = spawn_waiter(Arc::new(NoWatch(inner.clone())), &pool, req, &time);
        settle().await;
        time.advance(Duration::from_millis(1005)).await;
        inner
            .release(
                &pool,
                held.lease_id,
                held.fencing_token,
                true,
                (time.now())(),
            )
            .await
            .unwrap();
        settle().await;
        assert!(
            !waiter.is_finished(),
            "a poller only notices at its next poll"
        );
        time.advance(DEFAULT_POLL_INTERVAL).await;
        assert!(waiter.is_finished(), "noticed within one poll interval");
        assert!(waiter.await.unwrap().unwrap().outcome.lease().is_some());
    }
}
