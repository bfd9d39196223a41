//! The `LeaderElection` port: one lease that at most one orchestrator replica holds at a
//! time, so the background loops that must not run twice (periodic mappings rebroadcast,
//! lease reaper, pool scaler) run on one replica only. Implemented in memory and on Redis;
//! both pass `testkit::leader::leader_conformance`.
//!
//! # Rules every implementation keeps
//!
//! - **One holder.** While a lease is live (strictly before its expiry), only its holder
//!   may renew it; every other candidate is refused and nothing changes.
//! - **Fencing tokens only go up.** Each time a new lease starts (a candidate takes it
//!   while no lease is live: first acquire, after expiry, after a release) it gets a token
//!   strictly higher than every token handed out before, on that store, forever. A renewal
//!   by the holder keeps its token. So a token names one term of leadership: a holder whose
//!   lease lapsed and who takes it again gets a new token, even if nobody else held it in
//!   between.
//! - **Release is fenced.** Releasing needs both the holder and its current token; a
//!   stale token (an earlier term) or another candidate changes nothing.
//! - **Expiry is the store's.** The in-memory store judges expiry by the `now` it is given;
//!   Redis by its own clock (`PX`), so replicas' clocks do not matter there. `now` then only
//!   turns the remaining time into [`Leadership::expires_at`].
//!
//! A caller that wants to act only while leader must stop acting *before* `expires_at`
//! (the elector in `bannou-host` steps down early), since another candidate may take the
//! lease at that instant.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::error_source::ErrorSource;
use crate::time::Timestamp;

/// A live lease: who holds it, its fencing token and when it runs out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leadership {
    /// Candidate id of the holder.
    pub holder: String,
    /// Fencing token of this term (strictly higher for every new term).
    pub fencing_token: u64,
    /// When the lease runs out unless renewed, in the caller's clock (`now` + what remains).
    pub expires_at: Timestamp,
}

/// A leader-election operation failed; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LeaderError {
    /// The store cannot be reached or refused the command. Transient: a holder cannot tell
    /// whether it is still leader and must step down before its lease runs out.
    #[error("leader election store unavailable: {message}")]
    Unavailable {
        /// What failed.
        message: String,
        /// The client's error, when one caused it.
        #[source]
        source: Option<ErrorSource>,
    },
    /// The record under `key` cannot be read (not written by this code).
    #[error("corrupt leader record under `{key}`: {message}")]
    Corrupt {
        /// Full store key.
        key: String,
        /// What was wrong.
        message: String,
        /// The client's error, when one caused it.
        #[source]
        source: Option<ErrorSource>,
    },
    /// An unusable argument: a TTL below 1 ms or an empty candidate id.
    #[error("invalid leader election request: {message}")]
    InvalidInput {
        /// What was wrong.
        message: String,
    },
}

/// Checks a lease TTL (at least 1 ms) and a candidate id (not empty, no whitespace), so
/// every adapter rejects the same inputs.
pub fn check_request(candidate: &str, ttl: Duration) -> Result<(), LeaderError> {
    if ttl < Duration::from_millis(1) {
        return Err(LeaderError::InvalidInput {
            message: format!("lease TTL must be at least 1 ms, got {ttl:?}"),
        });
    }
    check_candidate(candidate)
}

/// Checks a candidate id: not empty and without whitespace.
pub fn check_candidate(candidate: &str) -> Result<(), LeaderError> {
    if candidate.is_empty() || candidate.chars().any(char::is_whitespace) {
        return Err(LeaderError::InvalidInput {
            message: format!(
                "candidate id must be non-empty without whitespace, got {candidate:?}"
            ),
        });
    }
    Ok(())
}

/// The leadership lease; see the module docs for the rules.
#[async_trait]
pub trait LeaderElection: Send + Sync + 'static {
    /// Takes the lease for `candidate` if no lease is live (new term, new token), or renews
    /// it for `ttl` from now if `candidate` holds it (same token). Returns the lease when
    /// `candidate` holds it after the call, `None` when another candidate holds a live
    /// lease (nothing changed).
    async fn try_acquire_or_renew(
        &self,
        candidate: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<Option<Leadership>, LeaderError>;

    /// Ends the lease at once if `candidate` holds a live lease with `fencing_token`, so
    /// another candidate can take over without waiting for the expiry. Returns whether it
    /// did; a stale token, another holder or an expired lease changes nothing and returns
    /// `false`.
    async fn release(
        &self,
        candidate: &str,
        fencing_token: u64,
        now: Timestamp,
    ) -> Result<bool, LeaderError>;

    /// The live lease, if any (read only).
    async fn current(&self, now: Timestamp) -> Result<Option<Leadership>, LeaderError>;
}
