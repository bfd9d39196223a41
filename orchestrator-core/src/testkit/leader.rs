//! Conformance suite for `LeaderElection` implementations: one scenario per rule of the
//! port (acquire, renewal keeps the token, refusal while live, takeover after expiry with a
//! higher token, fenced release, release hands over at once), each on a fresh election.
//!
//! The suite keeps its own `now` and passes it to every call; [`TestTime`] lets the same
//! time pass for the store (nothing to do in memory, where `now` is the only clock: use
//! [`NoWait`]; a real sleep for Redis, whose `PX` expiry follows the server's clock).

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;

use crate::ports::leader::{LeaderElection, LeaderError, Leadership};
use crate::time::Timestamp;

pub use super::store::TestTime;

/// [`TestTime`] for elections that judge expiry only by the `now` they are given.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoWait;

#[async_trait]
impl TestTime for NoWait {
    async fn advance(&self, _d: Duration) {}
}

/// The suite's clock: the `now` passed to the election, moved together with `T`.
struct Now<'a, T> {
    at: Timestamp,
    time: &'a T,
}

impl<T: TestTime> Now<'_, T> {
    async fn pass(&mut self, d: Duration) {
        self.at = self.at + d;
        self.time.advance(d).await;
    }
}

fn start() -> Timestamp {
    Timestamp::from_unix_millis(1_780_000_000_000)
}

/// Runs every scenario, each against a fresh `(election, time)` from `make`, and panics
/// with a message naming the scenario on the first violation.
///
/// Leases live `2 * unit`; scenarios let `3 * unit` pass to see one expire. Use 1 s in
/// memory; for Redis (real sleeps) a few hundred milliseconds keeps the suite short while
/// round trips stay far below `unit / 2`. Fresh means no lease and no token history: a
/// Redis factory should hand out an election on its own key prefix.
pub async fn leader_conformance<L, T, F, Fut>(make: F, unit: Duration)
where
    L: LeaderElection,
    T: TestTime,
    F: Fn() -> Fut,
    Fut: Future<Output = (L, T)>,
{
    let (l, t) = make().await;
    first_candidate_acquires(&l, &t, unit).await;
    let (l, t) = make().await;
    renewal_by_the_holder_keeps_the_token(&l, &t, unit).await;
    let (l, t) = make().await;
    another_candidate_is_refused_while_the_lease_is_live(&l, &t, unit).await;
    let (l, t) = make().await;
    takeover_after_expiry_gets_a_higher_token(&l, &t, unit).await;
    let (l, t) = make().await;
    a_lapsed_holder_starts_a_new_term(&l, &t, unit).await;
    let (l, t) = make().await;
    release_with_a_stale_token_is_refused_and_changes_nothing(&l, &t, unit).await;
    let (l, t) = make().await;
    release_lets_another_candidate_take_over_at_once(&l, &t, unit).await;
    let (l, t) = make().await;
    tokens_strictly_increase_over_many_terms(&l, &t, unit).await;
    let (l, t) = make().await;
    concurrent_candidates_elect_exactly_one(&l, &t, unit).await;
    let (l, t) = make().await;
    invalid_requests_are_rejected(&l, &t).await;
}

fn ttl(unit: Duration) -> Duration {
    unit * 2
}

async fn acquire<L: LeaderElection>(
    l: &L,
    candidate: &str,
    unit: Duration,
    now: Timestamp,
) -> Option<Leadership> {
    l.try_acquire_or_renew(candidate, ttl(unit), now)
        .await
        .unwrap_or_else(|e| panic!("try_acquire_or_renew({candidate}) failed: {e}"))
}

async fn current<L: LeaderElection>(l: &L, now: Timestamp) -> Option<Leadership> {
    l.current(now)
        .await
        .unwrap_or_else(|e| panic!("current() failed: {e}"))
}

async fn release<L: LeaderElection>(l: &L, candidate: &str, token: u64, now: Timestamp) -> bool {
    l.release(candidate, token, now)
        .await
        .unwrap_or_else(|e| panic!("release({candidate}, {token}) failed: {e}"))
}

async fn first_candidate_acquires<L: LeaderElection, T: TestTime>(l: &L, t: &T, unit: Duration) {
    let now = Now {
        at: start(),
        time: t,
    };
    assert_eq!(
        current(l, now.at).await,
        None,
        "a fresh election has no leader"
    );
    let got = acquire(l, "alpha", unit, now.at)
        .await
        .expect("the first candidate gets the lease");
    assert_eq!(got.holder, "alpha");
    assert!(got.fencing_token >= 1, "tokens start at 1: {got:?}");
    assert!(
        got.expires_at <= now.at + ttl(unit) && got.expires_at > now.at + ttl(unit) - unit / 2,
        "expires about ttl after now: {got:?}"
    );
    let seen = current(l, now.at).await.expect("current shows the lease");
    assert_eq!(
        (seen.holder.as_str(), seen.fencing_token),
        ("alpha", got.fencing_token),
        "current agrees with the acquire"
    );
}

async fn renewal_by_the_holder_keeps_the_token<L: LeaderElection, T: TestTime>(
    l: &L,
    t: &T,
    unit: Duration,
) {
    let mut now = Now {
        at: start(),
        time: t,
    };
    let first = acquire(l, "alpha", unit, now.at).await.expect("acquired");
    now.pass(unit).await;
    let renewed = acquire(l, "alpha", unit, now.at)
        .await
        .expect("the holder renews its live lease");
    assert_eq!(
        renewed.fencing_token, first.fencing_token,
        "a renewal keeps the token"
    );
    assert!(
        renewed.expires_at > first.expires_at,
        "a renewal extends the lease: {first:?} -> {renewed:?}"
    );
    // 2.5 units after the first acquire (past its ttl), 1.5 after the renewal: still live.
    now.pass(unit + unit / 2).await;
    assert_eq!(
        acquire(l, "beta", unit, now.at).await,
        None,
        "the renewed lease is still live, so another candidate is refused"
    );
    let seen = current(l, now.at).await.expect("still held");
    assert_eq!(
        (seen.holder.as_str(), seen.fencing_token),
        ("alpha", first.fencing_token)
    );
}

async fn another_candidate_is_refused_while_the_lease_is_live<L: LeaderElection, T: TestTime>(
    l: &L,
    t: &T,
    unit: Duration,
) {
    let mut now = Now {
        at: start(),
        time: t,
    };
    let held = acquire(l, "alpha", unit, now.at).await.expect("acquired");
    assert_eq!(
        acquire(l, "beta", unit, now.at).await,
        None,
        "refused while live"
    );
    now.pass(unit).await;
    assert_eq!(
        acquire(l, "beta", unit, now.at).await,
        None,
        "still refused half-way through the lease"
    );
    let seen = current(l, now.at).await.expect("still held");
    assert_eq!(
        (seen.holder.as_str(), seen.fencing_token),
        ("alpha", held.fencing_token),
        "a refused attempt changes nothing"
    );
    let renewed = acquire(l, "alpha", unit, now.at)
        .await
        .expect("the holder still renews");
    assert_eq!(renewed.fencing_token, held.fencing_token);
}

async fn takeover_after_expiry_gets_a_higher_token<L: LeaderElection, T: TestTime>(
    l: &L,
    t: &T,
    unit: Duration,
) {
    let mut now = Now {
        at: start(),
        time: t,
    };
    let old = acquire(l, "alpha", unit, now.at).await.expect("acquired");
    now.pass(unit * 3).await;
    assert_eq!(current(l, now.at).await, None, "the lease expired");
    let new = acquire(l, "beta", unit, now.at)
        .await
        .expect("another candidate takes an expired lease");
    assert_eq!(new.holder, "beta");
    assert!(
        new.fencing_token > old.fencing_token,
        "a takeover gets a higher token: {} then {}",
        old.fencing_token,
        new.fencing_token
    );
    assert_eq!(
        acquire(l, "alpha", unit, now.at).await,
        None,
        "the old holder cannot renew a lease it lost"
    );
    let seen = current(l, now.at).await.expect("beta holds it");
    assert_eq!(
        (seen.holder.as_str(), seen.fencing_token),
        ("beta", new.fencing_token)
    );
}

async fn a_lapsed_holder_starts_a_new_term<L: LeaderElection, T: TestTime>(
    l: &L,
    t: &T,
    unit: Duration,
) {
    let mut now = Now {
        at: start(),
        time: t,
    };
    let old = acquire(l, "alpha", unit, now.at).await.expect("acquired");
    now.pass(unit * 3).await;
    let again = acquire(l, "alpha", unit, now.at)
        .await
        .expect("the lease is free again");
    assert!(
        again.fencing_token > old.fencing_token,
        "a lapse ends the term even with no other holder in between: {} then {}",
        old.fencing_token,
        again.fencing_token
    );
}

async fn release_with_a_stale_token_is_refused_and_changes_nothing<
    L: LeaderElection,
    T: TestTime,
>(
    l: &L,
    t: &T,
    unit: Duration,
) {
    let mut now = Now {
        at: start(),
        time: t,
    };
    let a = acquire(l, "alpha", unit, now.at).await.expect("acquired");
    assert!(
        !release(l, "alpha", a.fencing_token + 1, now.at).await,
        "a token that was never handed out releases nothing"
    );
    assert!(
        !release(l, "beta", a.fencing_token, now.at).await,
        "another candidate cannot release with the holder's token"
    );
    let seen = current(l, now.at).await.expect("still held");
    assert_eq!(
        (seen.holder.as_str(), seen.fencing_token),
        ("alpha", a.fencing_token),
        "refused releases changed nothing"
    );

    now.pass(unit * 3).await;
    assert!(
        !release(l, "alpha", a.fencing_token, now.at).await,
        "an expired lease has nothing left to release"
    );
    let b = acquire(l, "beta", unit, now.at).await.expect("taken over");
    assert!(
        !release(l, "alpha", a.fencing_token, now.at).await,
        "the previous term's token is stale"
    );
    assert!(!release(l, "beta", a.fencing_token, now.at).await);
    let seen = current(l, now.at).await.expect("beta still holds it");
    assert_eq!(
        (seen.holder.as_str(), seen.fencing_token),
        ("beta", b.fencing_token),
        "stale releases changed nothing"
    );
    assert_eq!(
        acquire(l, "alpha", unit, now.at).await,
        None,
        "and alpha is still refused"
    );
}

async fn release_lets_another_candidate_take_over_at_once<L: LeaderElection, T: TestTime>(
    l: &L,
    t: &T,
    unit: Duration,
) {
    let now = Now {
        at: start(),
        time: t,
    };
    let a = acquire(l, "alpha", unit, now.at).await.expect("acquired");
    assert!(
        release(l, "alpha", a.fencing_token, now.at).await,
        "the holder releases its lease"
    );
    assert_eq!(current(l, now.at).await, None, "no leader after a release");
    assert!(
        !release(l, "alpha", a.fencing_token, now.at).await,
        "a second release finds nothing"
    );
    let b = acquire(l, "beta", unit, now.at)
        .await
        .expect("another candidate takes over without waiting for the expiry");
    assert!(b.fencing_token > a.fencing_token, "{a:?} then {b:?}");
    assert_eq!(acquire(l, "alpha", unit, now.at).await, None);
}

async fn tokens_strictly_increase_over_many_terms<L: LeaderElection, T: TestTime>(
    l: &L,
    t: &T,
    unit: Duration,
) {
    let mut now = Now {
        at: start(),
        time: t,
    };
    let mut last = 0;
    for (i, candidate) in ["alpha", "beta", "alpha", "alpha", "gamma", "beta"]
        .iter()
        .enumerate()
    {
        let got = acquire(l, candidate, unit, now.at)
            .await
            .unwrap_or_else(|| panic!("term {i}: {candidate} acquires a free lease"));
        assert!(
            got.fencing_token > last,
            "term {i}: token {} after {last}",
            got.fencing_token
        );
        // Renewals in between never move the token.
        now.pass(unit / 4).await;
        let renewed = acquire(l, candidate, unit, now.at).await.expect("renewed");
        assert_eq!(renewed.fencing_token, got.fencing_token);
        last = got.fencing_token;
        assert!(
            release(l, candidate, last, now.at).await,
            "term {i} released"
        );
    }
}

async fn concurrent_candidates_elect_exactly_one<L: LeaderElection, T: TestTime>(
    l: &L,
    t: &T,
    unit: Duration,
) {
    let now = Now {
        at: start(),
        time: t,
    };
    let names: Vec<String> = (0..16).map(|i| format!("candidate-{i}")).collect();
    let results = join_all(names.iter().map(|n| acquire(l, n, unit, now.at))).await;
    let winners: Vec<&Leadership> = results.iter().flatten().collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one of 16 concurrent candidates wins: {winners:?}"
    );
    let seen = current(l, now.at).await.expect("a leader");
    assert_eq!(
        (&seen.holder, seen.fencing_token),
        (&winners[0].holder, winners[0].fencing_token)
    );
}

async fn invalid_requests_are_rejected<L: LeaderElection, T: TestTime>(l: &L, t: &T) {
    let now = Now {
        at: start(),
        time: t,
    };
    let invalid = |r: Result<Option<Leadership>, LeaderError>, what: &str| {
        assert!(
            matches!(r, Err(LeaderError::InvalidInput { .. })),
            "{what} is rejected: {r:?}"
        );
    };
    invalid(
        l.try_acquire_or_renew("alpha", Duration::ZERO, now.at)
            .await,
        "a zero TTL",
    );
    invalid(
        l.try_acquire_or_renew("", Duration::from_secs(1), now.at)
            .await,
        "an empty candidate id",
    );
    invalid(
        l.try_acquire_or_renew("two words", Duration::from_secs(1), now.at)
            .await,
        "a candidate id with a space",
    );
    assert!(
        matches!(
            l.release("", 1, now.at).await,
            Err(LeaderError::InvalidInput { .. })
        ),
        "release checks the candidate id too"
    );
    assert_eq!(
        current(l, now.at).await,
        None,
        "rejected requests changed nothing"
    );
}
