//! Unit tests of `orchestrator::leader`.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use async_trait::async_trait;
use orchestrator_core::Timestamp;
use orchestrator_core::memory::leader::InMemoryLeaderElection;
use orchestrator_core::ports::leader::{LeaderError, Leadership};

use super::*;
use crate::clock::TokioClock;

const LEASE: Duration = Duration::from_secs(9);

fn clock() -> Arc<dyn Clock> {
    Arc::new(TokioClock::starting_at(Timestamp::from_unix_millis(
        1_780_000_000_000,
    )))
}

/// The in-memory election, made to fail (`Unavailable`) or hang on demand.
#[derive(Default)]
struct Faulty {
    inner: InMemoryLeaderElection,
    fail: AtomicBool,
    hang: AtomicBool,
}

impl Faulty {
    async fn fault(&self) -> Result<(), LeaderError> {
        if self.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if self.fail.load(Ordering::SeqCst) {
            return Err(LeaderError::Unavailable {
                message: "injected".to_owned(),
                source: None,
            });
        }
        Ok(())
    }
}

#[async_trait]
impl LeaderElection for Faulty {
    async fn try_acquire_or_renew(
        &self,
        candidate: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<Option<Leadership>, LeaderError> {
        self.fault().await?;
        self.inner.try_acquire_or_renew(candidate, ttl, now).await
    }

    async fn release(
        &self,
        candidate: &str,
        token: u64,
        now: Timestamp,
    ) -> Result<bool, LeaderError> {
        self.fault().await?;
        self.inner.release(candidate, token, now).await
    }

    async fn current(&self, now: Timestamp) -> Result<Option<Leadership>, LeaderError> {
        self.fault().await?;
        self.inner.current(now).await
    }
}

fn elector(port: Arc<dyn LeaderElection>, clock: &Arc<dyn Clock>, name: &str) -> LeaderElector {
    LeaderElector::new(port, clock.clone(), ElectorConfig::new(name, LEASE))
}

fn spawn(e: LeaderElector) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    (tx, tokio::spawn(e.run(rx)))
}

/// Waits (paused time, so instantly) until `pred` holds, for at most `within`.
async fn until(
    rx: &mut watch::Receiver<LeaderState>,
    within: Duration,
    pred: impl FnMut(&LeaderState) -> bool,
) -> LeaderState {
    timeout(within, rx.wait_for(pred))
        .await
        .expect("in time")
        .expect("elector alive")
        .clone()
}

#[tokio::test(start_paused = true)]
async fn a_follower_takes_over_within_lease_plus_one_renew_interval_after_the_leader_dies() {
    let clock = clock();
    let port = Arc::new(InMemoryLeaderElection::new());
    let a = elector(port.clone(), &clock, "a");
    let b = elector(port.clone(), &clock, "b");
    let (ha, hb) = (a.handle(), b.handle());
    let (_stop_a, task_a) = spawn(a);
    tokio::time::sleep(Duration::from_millis(1)).await;
    let (_stop_b, task_b) = spawn(b);
    let token_a = until(&mut ha.subscribe(), LEASE, LeaderState::is_leader)
        .await
        .leader_token()
        .unwrap();
    let followed = until(&mut hb.subscribe(), LEASE, |s| *s != LeaderState::UNKNOWN).await;
    assert_eq!(
        followed,
        LeaderState::Follower {
            holder: Some(ha.candidate_id().to_owned()),
            token: Some(token_a)
        },
        "b follows a and knows its holder and token"
    );
    // Let a renew a few times: b must stay follower all along.
    let mut b_rx = hb.subscribe();
    tokio::time::sleep(LEASE * 3).await;
    assert!(
        !b_rx.has_changed().unwrap(),
        "b never led while a renewed: {:?} / a {:?}",
        hb.state(),
        ha.state()
    );
    assert!(ha.is_leader());

    // Kill a: no more renewals, no release.
    let lease = port.current(clock.now()).await.unwrap().unwrap();
    task_a.abort();
    let killed = tokio::time::Instant::now();
    let bound = LEASE + LEASE / 3;
    let state = until(
        &mut b_rx,
        bound + Duration::from_millis(1),
        LeaderState::is_leader,
    )
    .await;
    let took = killed.elapsed();
    let token_b = state.leader_token().unwrap();
    assert!(
        token_b > token_a,
        "new term, higher token: {token_a} -> {token_b}"
    );
    assert!(
        clock.now() >= lease.expires_at,
        "b took over only once a's lease had run out"
    );
    assert!(took <= bound, "took {took:?}, bound {bound:?}");
    println!(
        "checked: takeover {took:?} after the leader died (bound lease + lease/3 = {bound:?}), token {token_a} -> {token_b}"
    );
    task_b.abort();
}

#[tokio::test(start_paused = true)]
async fn waiting_for_the_lease_names_the_dead_holder_then_leads_within_the_bound() {
    let clock = clock();
    let port = Arc::new(InMemoryLeaderElection::new());
    // A replica that took the lease and died: never renewed, never released.
    let dead = port
        .try_acquire_or_renew("dead", LEASE, clock.now())
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(LEASE / 4).await;
    let b = elector(port.clone(), &clock, "b");
    let bound = b.config().takeover_bound();
    let hb = b.handle();
    let (_stop_b, task_b) = spawn(b);
    let started = tokio::time::Instant::now();
    let mut seen = Vec::new();
    let token = hb
        .wait_until_leader(
            bound,
            Some(port.as_ref() as &dyn LeaderElection),
            clock.as_ref(),
            |o| seen.push(o.clone()),
        )
        .await
        .expect("b leads once the dead lease ran out");
    let took = started.elapsed();
    assert!(token > dead.fencing_token, "a new term");
    assert_eq!(seen.len(), 1, "reported once: {seen:?}");
    assert_eq!(seen[0].holder, "dead");
    assert_eq!(seen[0].token, Some(dead.fencing_token));
    let remaining = seen[0].remaining.expect("the store names the expiry");
    assert!(
        remaining <= LEASE - LEASE / 4 && remaining > LEASE / 2,
        "{remaining:?}"
    );
    assert!(
        took >= remaining && took <= bound,
        "took {took:?}, lease left {remaining:?}, bound {bound:?}"
    );

    // A live leader is not waited out: the wait ends at its limit, naming it.
    let c = elector(port.clone(), &clock, "c");
    let hc = c.handle();
    let (_stop_c, task_c) = spawn(c);
    let mut seen = Vec::new();
    let last = hc
        .wait_until_leader(LEASE * 2, None, clock.as_ref(), |o| seen.push(o.clone()))
        .await
        .unwrap_err();
    assert_eq!(
        last,
        LeaderState::Follower {
            holder: Some(hb.candidate_id().to_owned()),
            token: Some(token)
        }
    );
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].remaining, None, "no store to ask");
    println!(
        "checked: waited {took:?} for the dead holder's lease ({remaining:?} left, bound {bound:?}); a live leader ends the wait at its limit"
    );
    task_b.abort();
    task_c.abort();
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_cannot_renew_steps_down_before_its_lease_expires() {
    let clock = clock();
    for hang in [false, true] {
        let port = Arc::new(Faulty::default());
        let a = elector(port.clone(), &clock, "a");
        let ha = a.handle();
        let (_stop, task) = spawn(a);
        let mut rx = ha.subscribe();
        until(&mut rx, LEASE, LeaderState::is_leader).await;
        // Renewed at least once, then the store fails (errors or no answer at all).
        tokio::time::sleep(LEASE / 2).await;
        let lease = port.inner.current(clock.now()).await.unwrap().unwrap();
        if hang {
            port.hang.store(true, Ordering::SeqCst);
        } else {
            port.fail.store(true, Ordering::SeqCst);
        }
        until(&mut rx, LEASE, |s| !s.is_leader()).await;
        let margin = lease.expires_at.saturating_since(clock.now());
        assert!(
            clock.now() < lease.expires_at && margin >= LEASE / 6,
            "stepped down {margin:?} before the lease's end (hang: {hang})"
        );
        // Nobody else could take it before it expired, and a follower sees that too.
        assert_eq!(
            port.inner
                .try_acquire_or_renew("other", LEASE, clock.now())
                .await
                .unwrap(),
            None
        );
        println!(
            "checked: renewals {} -> stepped down {margin:?} before the lease's end",
            if hang { "hang" } else { "fail" }
        );
        // The store answers again: the same candidate leads again.
        port.fail.store(false, Ordering::SeqCst);
        port.hang.store(false, Ordering::SeqCst);
        until(&mut rx, LEASE * 2, LeaderState::is_leader).await;
        task.abort();
    }
}

#[tokio::test(start_paused = true)]
async fn a_stopped_leader_releases_and_a_follower_takes_over_at_its_next_attempt() {
    let clock = clock();
    let port = Arc::new(InMemoryLeaderElection::new());
    let a = elector(port.clone(), &clock, "a");
    let ha = a.handle();
    let (stop_a, task_a) = spawn(a);
    until(&mut ha.subscribe(), LEASE, LeaderState::is_leader).await;
    let b = elector(port.clone(), &clock, "b");
    let hb = b.handle();
    let (_stop_b, task_b) = spawn(b);
    let mut b_rx = hb.subscribe();
    until(&mut b_rx, LEASE, |s| *s != LeaderState::UNKNOWN).await;
    stop_a.send(true).unwrap();
    task_a.await.unwrap();
    assert!(!ha.is_leader(), "a stepped down on stop");
    assert_eq!(port.current(clock.now()).await.unwrap(), None, "released");
    let stopped = tokio::time::Instant::now();
    until(
        &mut b_rx,
        LEASE / 3 + Duration::from_millis(1),
        LeaderState::is_leader,
    )
    .await;
    println!(
        "checked: after a released, b led {:?} later (bound: one renew interval {:?})",
        stopped.elapsed(),
        LEASE / 3
    );
    task_b.abort();
}

#[tokio::test(start_paused = true)]
async fn while_leader_runs_the_work_only_while_leader() {
    let (state, rx) = watch::channel(LeaderState::UNKNOWN);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let passes = Arc::new(AtomicU32::new(0));
    let running = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn({
        let (passes, running) = (passes.clone(), running.clone());
        while_leader(
            "test",
            rx,
            shutdown_rx,
            Duration::from_secs(1),
            move |mut pause| {
                let (passes, running) = (passes.clone(), running.clone());
                async move {
                    running.store(true, Ordering::SeqCst);
                    loop {
                        passes.fetch_add(1, Ordering::SeqCst);
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            _ = stopped(&mut pause) => break,
                        }
                    }
                    running.store(false, Ordering::SeqCst);
                }
            },
        )
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(passes.load(Ordering::SeqCst), 0, "a follower does no work");
    state.send_replace(LeaderState::Leader { token: 3 });
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    assert_eq!(
        passes.load(Ordering::SeqCst),
        5,
        "passes at 0, 1, 2, 3, 4 s"
    );
    state.send_replace(LeaderState::Follower {
        holder: Some("other".to_owned()),
        token: Some(4),
    });
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(
        !running.load(Ordering::SeqCst),
        "paused at once on stepping down"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(passes.load(Ordering::SeqCst), 5, "no work while follower");
    // A new term (even straight from another term) restarts the work.
    state.send_replace(LeaderState::Leader { token: 5 });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(passes.load(Ordering::SeqCst), 6);
    state.send_replace(LeaderState::Leader { token: 7 });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        passes.load(Ordering::SeqCst),
        7,
        "restarted for the new term"
    );
    shutdown.send(true).unwrap();
    task.await.unwrap();
    assert!(!running.load(Ordering::SeqCst));
}

#[tokio::test]
async fn always_leader_is_leader_with_token_1() {
    let h = LeaderHandle::always_leader("bannou-x");
    assert_eq!(h.state(), LeaderState::Leader { token: 1 });
    assert!(h.is_leader());
    assert_eq!(h.candidate_id(), "bannou-x");
    let c = ElectorConfig::new("my pod", Duration::from_secs(9));
    assert!(c.candidate_id.starts_with("my-pod-"), "{}", c.candidate_id);
    assert_eq!(c.renew_interval(), Duration::from_secs(3));
    assert_eq!(c.step_down_margin(), Duration::from_millis(1_500));
}
