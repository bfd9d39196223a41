//! Leader election of the orchestrator replicas: the [`LeaderElector`] loop that campaigns
//! for the [`LeaderElection`] lease, the [`LeaderHandle`] everyone reads its
//! [`LeaderState`] from, and [`while_leader`], which runs a background loop only while
//! this replica leads.
//!
//! # Timing (lease `L`, `ORCHESTRATOR_LEADER_LEASE_SECONDS`)
//!
//! - Every replica tries to take or renew the lease every `L/3` (the renew interval).
//! - A renewal sent at instant `s` makes the leader's own deadline `s + L` (measured on
//!   tokio's monotonic clock from *before* the request left, so never later than the
//!   store's real expiry). The leader steps down at `s + L - L/6` unless a renewal
//!   succeeded in between: after a failed renewal it retries every `L/6`, each attempt
//!   bounded so it cannot run past the step-down point.
//! - Refused (another candidate holds the lease): step down at once.
//! - A leader that dies stops renewing; its lease runs out at most `L` after its last
//!   renewal, and a follower tries every `L/3`, so another replica leads within
//!   `L + L/3` of the death (plus one round trip).
//! - On shutdown the leader publishes "follower" (loops stop), then releases the lease so
//!   another replica takes over at its next attempt instead of after the expiry.
//!
//! Guarantee, as far as the lease goes: a replica only runs leader-only work between a
//! successful acquire/renew and its step-down point, which precedes the lease's expiry by
//! `L/6`; [`while_leader`] gives a running pass `L/12` to finish before dropping it. A
//! store that loses the lease (a flushed Redis) or a process paused longer than `L/6`
//! breaks that guarantee; the fencing token then at least tells the terms apart.

use orchestrator_core::error_source::Chain;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use orchestrator_core::ports::leader::LeaderElection;
use orchestrator_core::time::Clock;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until, timeout, timeout_at};
use uuid::Uuid;

use super::stopped;

/// Default lease, `ORCHESTRATOR_LEADER_LEASE_SECONDS`.
pub const DEFAULT_LEADER_LEASE: Duration = Duration::from_secs(10);

/// Shortest lease accepted (the renew interval is a third of it).
pub const MIN_LEADER_LEASE: Duration = Duration::from_secs(2);

/// Whether this replica leads, as the elector last established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaderState {
    /// This replica holds the lease; `token` is the fencing token of its term.
    Leader {
        /// Fencing token of the current term.
        token: u64,
    },
    /// Another replica leads, or nobody is known to.
    Follower {
        /// The leader's candidate id, when the store named one.
        holder: Option<String>,
        /// The leader's fencing token, when known.
        token: Option<u64>,
    },
}

impl LeaderState {
    /// Follower of nobody known (the state before the first attempt).
    pub const UNKNOWN: LeaderState = LeaderState::Follower {
        holder: None,
        token: None,
    };

    /// True while leader.
    pub fn is_leader(&self) -> bool {
        matches!(self, LeaderState::Leader { .. })
    }

    /// This replica's token while leader.
    pub fn leader_token(&self) -> Option<u64> {
        match self {
            LeaderState::Leader { token } => Some(*token),
            LeaderState::Follower { .. } => None,
        }
    }
}

/// The elector's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectorConfig {
    /// This replica's candidate id: `{prefix}-{uuid}`, unique per start.
    pub candidate_id: String,
    /// Lease length (at least [`MIN_LEADER_LEASE`] when read from the environment).
    pub lease: Duration,
}

impl ElectorConfig {
    /// A fresh candidate id `{prefix}-{uuid v4}` (the prefix names the replica in logs;
    /// whitespace in it becomes `-`) with `lease`.
    pub fn new(prefix: &str, lease: Duration) -> Self {
        let prefix: String = prefix
            .chars()
            .map(|c| if c.is_whitespace() { '-' } else { c })
            .collect();
        ElectorConfig {
            candidate_id: format!("{prefix}-{}", Uuid::new_v4()),
            lease,
        }
    }

    /// How often the lease is renewed (and a follower tries to take it): a third of it.
    pub fn renew_interval(&self) -> Duration {
        self.lease / 3
    }

    /// How long before the lease's end a leader that could not renew steps down: a sixth.
    pub fn step_down_margin(&self) -> Duration {
        self.lease / 6
    }

    /// How long [`while_leader`] lets a pass finish after a step-down: half the margin,
    /// so the work stops before the lease can run out.
    pub fn pause_grace(&self) -> Duration {
        self.step_down_margin() / 2
    }

    /// The longest a replica waits for the lease that a dead leader left: the lease
    /// (the most it can still run) plus one renew interval (the follower's next attempt).
    /// See [`LeaderHandle::wait_until_leader`].
    pub fn takeover_bound(&self) -> Duration {
        self.lease + self.renew_interval()
    }
}

/// Slack beyond [`ElectorConfig::takeover_bound`] for the round trips of the attempts.
pub const TAKEOVER_SLACK: Duration = Duration::from_secs(1);

/// Another replica holding the leader lease, as [`LeaderHandle::wait_until_leader`]
/// reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherLeader {
    /// The holder's candidate id.
    pub holder: String,
    /// The holder's fencing token, when known.
    pub token: Option<u64>,
    /// How long its lease still runs unless renewed; `None` when the store did not say.
    pub remaining: Option<Duration>,
}

// === LeaderHandle ===

/// The read side of the leadership: a cheap clone for whoever must know (the gated loops,
/// `/health`).
#[derive(Debug, Clone)]
pub struct LeaderHandle {
    candidate_id: Arc<str>,
    state: watch::Receiver<LeaderState>,
    /// Keeps the sender of an [`LeaderHandle::always_leader`] handle alive.
    _fixed: Option<Arc<watch::Sender<LeaderState>>>,
}

impl LeaderHandle {
    /// A handle that is always leader with token 1: the single process of the in-memory
    /// adapters, where no other replica can exist.
    pub fn always_leader(candidate_id: impl Into<String>) -> Self {
        let (tx, rx) = watch::channel(LeaderState::Leader { token: 1 });
        LeaderHandle {
            candidate_id: Arc::from(candidate_id.into()),
            state: rx,
            _fixed: Some(Arc::new(tx)),
        }
    }

    /// A handle whose state the returned sender sets (leader with token 1 at first): for
    /// tests that take the leadership away mid-operation.
    pub fn controlled(candidate_id: impl Into<String>) -> (Self, Arc<watch::Sender<LeaderState>>) {
        let (tx, rx) = watch::channel(LeaderState::Leader { token: 1 });
        let tx = Arc::new(tx);
        let handle = LeaderHandle {
            candidate_id: Arc::from(candidate_id.into()),
            state: rx,
            _fixed: Some(tx.clone()),
        };
        (handle, tx)
    }

    /// This replica's candidate id.
    pub fn candidate_id(&self) -> &str {
        &self.candidate_id
    }

    /// The current state.
    pub fn state(&self) -> LeaderState {
        self.state.borrow().clone()
    }

    /// True while leader.
    pub fn is_leader(&self) -> bool {
        self.state.borrow().is_leader()
    }

    /// A receiver of every change from now on (the current state counts as seen).
    pub fn subscribe(&self) -> watch::Receiver<LeaderState> {
        let mut rx = self.state.clone();
        rx.mark_unchanged();
        rx
    }

    /// Waits until this replica leads, for at most `limit` (a caller waiting out a dead
    /// leader's lease passes [`ElectorConfig::takeover_bound`] plus
    /// [`TAKEOVER_SLACK`]); returns the fencing token of its term. Each time another
    /// candidate is seen holding the lease (a new holder or term), `waiting` is told who,
    /// and, read from `port` when given, how long that lease still runs. When `limit`
    /// passes first, or the elector is gone, returns the last state seen.
    pub async fn wait_until_leader(
        &self,
        limit: Duration,
        port: Option<&dyn LeaderElection>,
        clock: &dyn Clock,
        mut waiting: impl FnMut(&OtherLeader),
    ) -> Result<u64, LeaderState> {
        let deadline = Instant::now() + limit;
        let mut rx = self.state.clone();
        let mut reported: Option<(String, Option<u64>)> = None;
        loop {
            let state = rx.borrow_and_update().clone();
            match &state {
                LeaderState::Leader { token } => return Ok(*token),
                LeaderState::Follower {
                    holder: Some(holder),
                    token,
                } if *holder != *self.candidate_id
                    && reported.as_ref() != Some(&(holder.clone(), *token)) =>
                {
                    let remaining = match port {
                        Some(port) => {
                            let now = clock.now();
                            match timeout_at(deadline, port.current(now)).await {
                                Ok(Ok(Some(lease))) if lease.holder == *holder => {
                                    Some(lease.expires_at.saturating_since(now))
                                }
                                _ => None,
                            }
                        }
                        None => None,
                    };
                    waiting(&OtherLeader {
                        holder: holder.clone(),
                        token: *token,
                        remaining,
                    });
                    reported = Some((holder.clone(), *token));
                }
                LeaderState::Follower { .. } => {}
            }
            match timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return Err(rx.borrow().clone()),
            }
        }
    }
}

// === LeaderElector ===

/// The lease this replica holds, as the elector tracks it.
#[derive(Debug, Clone, Copy)]
struct Held {
    token: u64,
    /// When it stops acting as leader unless a renewal succeeds first.
    step_down_at: Instant,
}

/// Campaigns for the lease; see the module docs for the timing.
pub struct LeaderElector {
    port: Arc<dyn LeaderElection>,
    clock: Arc<dyn Clock>,
    config: ElectorConfig,
    state: watch::Sender<LeaderState>,
    handle: LeaderHandle,
    held: Option<Held>,
    /// When the next attempt is due.
    next: Instant,
}

impl LeaderElector {
    /// An elector (follower until its first attempt) for `config.candidate_id` on `port`.
    pub fn new(
        port: Arc<dyn LeaderElection>,
        clock: Arc<dyn Clock>,
        config: ElectorConfig,
    ) -> Self {
        let (state, rx) = watch::channel(LeaderState::UNKNOWN);
        let handle = LeaderHandle {
            candidate_id: Arc::from(config.candidate_id.as_str()),
            state: rx,
            _fixed: None,
        };
        LeaderElector {
            port,
            clock,
            config,
            state,
            handle,
            held: None,
            next: Instant::now(),
        }
    }

    /// The read side.
    pub fn handle(&self) -> LeaderHandle {
        self.handle.clone()
    }

    /// The settings.
    pub fn config(&self) -> &ElectorConfig {
        &self.config
    }

    fn candidate(&self) -> &str {
        &self.config.candidate_id
    }

    /// One attempt to take or renew the lease, updating the state; returns when the next
    /// attempt is due (and [`LeaderElector::run`] makes it then). Bounded: it never runs
    /// past the step-down point of a held lease, nor longer than one renew interval.
    pub async fn attempt(&mut self) -> Instant {
        self.next = self.try_once().await;
        self.next
    }

    async fn try_once(&mut self) -> Instant {
        let every = self.config.renew_interval();
        let started = Instant::now();
        let limit = match self.held {
            Some(h) => h.step_down_at.min(started + every),
            None => started + every,
        };
        let call =
            self.port
                .try_acquire_or_renew(self.candidate(), self.config.lease, self.clock.now());
        let failure = match timeout_at(limit, call).await {
            Ok(Ok(Some(lease))) if lease.holder == self.config.candidate_id => {
                let step_down_at = started + self.config.lease - self.config.step_down_margin();
                self.lead(lease.fencing_token, step_down_at);
                return started + every;
            }
            Ok(Ok(Some(other))) => format!(
                "the store answered a lease of {} to our acquire",
                other.holder
            ),
            Ok(Ok(None)) => {
                self.follow().await;
                return started + every;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {:?}", limit - started),
        };
        match self.held {
            Some(h) => {
                let now = Instant::now();
                tracing::warn!(candidate = %self.candidate(), error = %failure, remaining = ?h.step_down_at.saturating_duration_since(now), "leader could not renew its lease; retrying");
                if now >= h.step_down_at {
                    self.step_down("the lease could not be renewed before its end");
                }
                now + self.config.step_down_margin()
            }
            None => {
                tracing::debug!(candidate = %self.candidate(), error = %failure, "leader election attempt failed");
                started + every
            }
        }
    }

    fn lead(&mut self, token: u64, step_down_at: Instant) {
        let before = self.held.map(|h| h.token);
        self.held = Some(Held {
            token,
            step_down_at,
        });
        if before != Some(token) {
            tracing::info!(candidate = %self.candidate(), token, previous_token = ?before, "became leader");
            self.state.send_replace(LeaderState::Leader { token });
        }
    }

    async fn follow(&mut self) {
        if self.held.is_some() {
            self.step_down("another candidate holds the lease");
        }
        let now = self.clock.now();
        let limit = self.config.renew_interval();
        let (holder, token) = match timeout(limit, self.port.current(now)).await {
            Ok(Ok(Some(l))) => (Some(l.holder), Some(l.fencing_token)),
            _ => (None, None),
        };
        let next = LeaderState::Follower { holder, token };
        self.state.send_if_modified(|s| {
            if *s == next {
                return false;
            }
            if let LeaderState::Follower {
                holder: Some(h),
                token: Some(t),
            } = &next
            {
                tracing::info!(candidate = %self.config.candidate_id, leader = %h, token = t, "following");
            }
            *s = next;
            true
        });
    }

    fn step_down(&mut self, why: &str) {
        if let Some(h) = self.held.take() {
            tracing::info!(candidate = %self.candidate(), token = h.token, reason = why, "stepped down as leader");
            self.state.send_replace(LeaderState::UNKNOWN);
        }
    }

    /// Campaigns until `stop` turns true (or its sender is dropped), then steps down and
    /// releases a held lease (best effort, bounded by one renew interval).
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        loop {
            let next = self.next;
            let step_down_at = self.held.map(|h| h.step_down_at);
            tokio::select! {
                biased;
                _ = stopped(&mut stop) => break,
                _ = sleep_until(step_down_at.unwrap_or(next)), if step_down_at.is_some_and(|s| s < next) => {
                    self.step_down("the lease could not be renewed before its end");
                    continue;
                }
                _ = sleep_until(next) => {}
            }
            self.attempt().await;
        }
        self.resign().await;
    }

    /// Steps down and releases the lease, if held.
    pub async fn resign(&mut self) {
        let Some(h) = self.held else {
            return;
        };
        self.step_down("shutting down");
        let release = self
            .port
            .release(self.candidate(), h.token, self.clock.now());
        match timeout(self.config.renew_interval(), release).await {
            Ok(Ok(true)) => {
                tracing::info!(candidate = %self.candidate(), token = h.token, "released the leader lease")
            }
            Ok(Ok(false)) => {
                tracing::info!(candidate = %self.candidate(), token = h.token, "the leader lease was no longer ours to release")
            }
            Ok(Err(e)) => {
                tracing::warn!(candidate = %self.candidate(), error = %Chain(&e), "releasing the leader lease failed; it expires by itself")
            }
            Err(_) => {
                tracing::warn!(candidate = %self.candidate(), "releasing the leader lease timed out; it expires by itself")
            }
        }
    }
}

// === while_leader ===

/// Runs a background loop only while `leader` says this replica leads: `work(pause)` is
/// started on becoming leader and told to stop (its `pause` receiver turns true) on
/// stepping down, when the term changes (a new token) or on shutdown; a pass in progress
/// gets `grace` to finish, then is dropped. Loops whose `run(shutdown)` returns once the
/// receiver turns true fit as they are. Returns once `shutdown` turns true.
pub async fn while_leader<F, Fut>(
    name: &'static str,
    mut leader: watch::Receiver<LeaderState>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
    mut work: F,
) where
    F: FnMut(watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        let term = tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => return,
            r = leader.wait_for(LeaderState::is_leader) => r.ok().map(|state| state.leader_token()),
        };
        let Some(term) = term else {
            // The elector is gone: never leader again.
            stopped(&mut shutdown).await;
            return;
        };
        tracing::debug!(task = name, token = ?term, "leader: running");
        let (pause, paused) = watch::channel(false);
        let run = work(paused);
        tokio::pin!(run);
        let shutting_down = tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => true,
            _ = leader.wait_for(|s| s.leader_token() != term) => false,
            _ = &mut run => {
                // Ended by itself (it only should on `pause`): wait for the next change.
                tracing::warn!(task = name, "leader-only loop ended by itself");
                false
            }
        };
        let _ = pause.send(true);
        if timeout(grace, &mut run).await.is_err() {
            tracing::warn!(
                task = name,
                ?grace,
                "leader-only pass did not finish after the step-down; dropped"
            );
        }
        if shutting_down {
            return;
        }
        tracing::debug!(task = name, "not leader: paused");
    }
}

#[cfg(test)]
mod tests;
