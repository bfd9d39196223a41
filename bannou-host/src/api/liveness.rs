//! `GET /health`: liveness of the API plus whether the store answers. Never behind the
//! bearer token, so load balancers and probes can call it.
//!
//! 200 `{"status": "ok", "store": "ok"}` when the store answers its ping within
//! [`STORE_PING_TIMEOUT`]; 503 `{"status": "degraded", "store": "<why>"}` otherwise (the
//! process is alive, but requests that need state would fail).
//!
//! Both also say whether this replica leads (ours; upstream has no such field):
//! `"leader": true|false` and `"leadership": {"candidate", "holder", "token"}` (this
//! replica's candidate id, the leader's id and fencing token, `null` when unknown). A
//! follower is healthy: leadership never changes the status code.

use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use serde::Serialize;

use crate::orchestrator::leader::LeaderState;
use crate::orchestrator::service::OrchestratorService;

/// The path.
pub const PATH: &str = "/health";

/// How long the store may take to answer the ping.
pub const STORE_PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The body of `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthBody {
    /// `ok` or `degraded`.
    pub status: &'static str,
    /// `ok`, or why the store did not answer.
    pub store: String,
    /// This build's version.
    pub version: &'static str,
    /// Whether this replica runs the leader-only loops.
    pub leader: bool,
    /// Who leads.
    pub leadership: LeadershipBody,
}

/// The `leadership` object of `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeadershipBody {
    /// This replica's candidate id.
    pub candidate: String,
    /// The leader's candidate id, when known.
    pub holder: Option<String>,
    /// The leader's fencing token, when known.
    pub token: Option<u64>,
}

/// The handler.
pub async fn health(State(service): State<OrchestratorService>) -> Response {
    let store = service.deps().store.clone();
    let ping = tokio::time::timeout(STORE_PING_TIMEOUT, store.ping()).await;
    let (status, store) = match ping {
        Ok(Ok(())) => (200, "ok".to_owned()),
        Ok(Err(e)) => (503, format!("unavailable: {e}")),
        Err(_) => (
            503,
            format!("unavailable: no answer within {STORE_PING_TIMEOUT:?}"),
        ),
    };
    let leader = &service.deps().leader;
    let candidate = leader.candidate_id().to_owned();
    let (is_leader, holder, token) = match leader.state() {
        LeaderState::Leader { token } => (true, Some(candidate.clone()), Some(token)),
        LeaderState::Follower { holder, token } => (false, holder, token),
    };
    let body = HealthBody {
        status: if status == 200 { "ok" } else { "degraded" },
        store,
        version: env!("CARGO_PKG_VERSION"),
        leader: is_leader,
        leadership: LeadershipBody {
            candidate,
            holder,
            token,
        },
    };
    super::json_response(status, &body)
}
