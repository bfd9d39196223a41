//! In-memory `LeaderElection`: one lease in process memory, expiry judged by the `now`
//! each call passes in. Lets several electors in one process (tests, embedded replicas)
//! compete exactly as they would on Redis; passes the same conformance suite.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;

use crate::ports::leader::{
    LeaderElection, LeaderError, Leadership, check_candidate, check_request,
};
use crate::time::Timestamp;

/// A [`LeaderElection`] held in process memory. A cheap `Clone` handle: clones share the
/// same lease. A std mutex, held for a few comparisons and never across an `.await`.
#[derive(Debug, Clone, Default)]
pub struct InMemoryLeaderElection {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    /// The last lease granted (live while `now < expires_at`).
    lease: Option<Leadership>,
    /// Highest token handed out so far (never goes back, even when the lease is gone).
    last_token: u64,
}

impl State {
    fn live(&self, now: Timestamp) -> Option<&Leadership> {
        self.lease.as_ref().filter(|l| now < l.expires_at)
    }
}

impl InMemoryLeaderElection {
    /// No lease yet; the first token handed out is 1.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl LeaderElection for InMemoryLeaderElection {
    async fn try_acquire_or_renew(
        &self,
        candidate: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<Option<Leadership>, LeaderError> {
        check_request(candidate, ttl)?;
        let mut state = self.lock();
        let token = match state.live(now) {
            Some(l) if l.holder == candidate => l.fencing_token,
            Some(_) => return Ok(None),
            None => {
                state.last_token += 1;
                state.last_token
            }
        };
        let lease = Leadership {
            holder: candidate.to_owned(),
            fencing_token: token,
            expires_at: now + ttl,
        };
        state.lease = Some(lease.clone());
        Ok(Some(lease))
    }

    async fn release(
        &self,
        candidate: &str,
        fencing_token: u64,
        now: Timestamp,
    ) -> Result<bool, LeaderError> {
        check_candidate(candidate)?;
        let mut state = self.lock();
        let held = state
            .live(now)
            .is_some_and(|l| l.holder == candidate && l.fencing_token == fencing_token);
        if held {
            state.lease = None;
        }
        Ok(held)
    }

    async fn current(&self, now: Timestamp) -> Result<Option<Leadership>, LeaderError> {
        Ok(self.lock().live(now).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::leader::NoWait;
    use crate::testkit::leader::leader_conformance;

    #[tokio::test]
    async fn in_memory_election_passes_the_conformance_suite() {
        leader_conformance(
            || async { (InMemoryLeaderElection::new(), NoWait) },
            Duration::from_secs(1),
        )
        .await;
    }
}
