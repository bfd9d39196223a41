//! Wave progress on the bus: the wave executor publishes a [`WaveEvent`] on our topic
//! [`WAVE_TOPIC`] when a wave starts and when it ends, so a remote `deploy --follow` sees
//! each wave of whichever replica leads. Publishing never fails a deploy.

use std::future::Future;

use orchestrator_core::events::Event;
use orchestrator_core::planner::{Wave, WavePhase};
use orchestrator_core::ports::bus::{EventBus, EventBusExt};
use serde::{Deserialize, Serialize};

/// Our bus topic for wave progress (not an upstream topic).
pub const WAVE_TOPIC: &str = "bannou.orchestrator-waves";

/// [`WaveEvent::phase`] of a topology update's changes: each change is one wave, applied
/// in request order.
pub const TOPOLOGY_PHASE: &str = "topology";
/// What a wave of a deploy or teardown is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WaveState {
    /// Its nodes are being started (or stopped, for a teardown wave).
    Started,
    /// Every node of a deploy wave answered healthy and the wave is routed.
    Healthy,
    /// The wave failed; `failures` says why.
    Failed,
    /// A teardown wave's nodes are stopped.
    TornDown,
}

impl WaveState {
    pub(super) fn type_name(self) -> &'static str {
        match self {
            WaveState::Started => "wave.started",
            WaveState::Healthy => "wave.healthy",
            WaveState::Failed => "wave.failed",
            WaveState::TornDown => "wave.torn-down",
        }
    }
}

/// Progress of one wave, published on [`WAVE_TOPIC`] by the wave executor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaveEvent {
    /// The deploy or teardown this wave belongs to, when the executor runs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<String>,
    /// 1-based position of the wave in its plan.
    pub wave: usize,
    /// How many waves the plan has.
    pub waves: usize,
    /// `deploy` or `teardown` (the wave executor), or [`TOPOLOGY_PHASE`] (one change of a
    /// topology update).
    pub phase: String,
    /// What the wave is doing.
    pub state: WaveState,
    /// The app-ids the wave acts on.
    pub nodes: Vec<String>,
    /// Per-node failures (`Failed` only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
    /// Milliseconds since the wave started (0 for `Started`).
    pub elapsed_ms: u64,
}

impl Event for WaveEvent {
    const TOPIC: &'static str = WAVE_TOPIC;
}

tokio::task_local! {
    static DEPLOYMENT: String;
}

/// Runs `f` with `deployment_id` as the deployment the waves it runs belong to (the id
/// their [`WaveEvent`]s carry).
pub async fn within_deployment<F: Future>(deployment_id: &str, f: F) -> F::Output {
    DEPLOYMENT.scope(deployment_id.to_owned(), f).await
}

/// Publishes `event` on `bus` with the current deployment's id (see
/// [`within_deployment`]); a bus error is logged, never returned: progress reports must
/// not fail a deploy.
pub async fn publish_wave(bus: &dyn EventBus, mut event: WaveEvent) {
    if event.deployment_id.is_none() {
        event.deployment_id = DEPLOYMENT.try_with(Clone::clone).ok();
    }
    if let Err(e) = bus.publish_owned(event).await {
        tracing::debug!(error = %e, "wave progress not published");
    }
}

/// A wave being run: publishes its `Started` event, then its outcome.
#[derive(Debug)]
pub struct WaveProgress {
    event: WaveEvent,
    begun: tokio::time::Instant,
}

impl WaveProgress {
    /// Publishes `Started` for `wave` (of a plan of `waves` waves) on `bus`.
    pub async fn start(bus: &dyn EventBus, wave: &Wave, waves: usize) -> WaveProgress {
        let event = WaveEvent {
            deployment_id: None,
            wave: wave.index,
            waves,
            phase: match wave.phase {
                WavePhase::Deploy => "deploy",
                WavePhase::Teardown => "teardown",
            }
            .to_owned(),
            state: WaveState::Started,
            nodes: wave
                .actions
                .iter()
                .map(|a| a.app_id.to_string())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
            failures: Vec::new(),
            elapsed_ms: 0,
        };
        publish_wave(bus, event.clone()).await;
        WaveProgress {
            event,
            begun: tokio::time::Instant::now(),
        }
    }

    /// Publishes the wave's outcome: `Failed` with `failures` when there are any, else
    /// `Healthy` (deploy) or `TornDown` (teardown).
    pub async fn finish(self, bus: &dyn EventBus, failures: &[String]) {
        let WaveProgress { mut event, begun } = self;
        event.state = if !failures.is_empty() {
            WaveState::Failed
        } else if event.phase == "teardown" {
            WaveState::TornDown
        } else {
            WaveState::Healthy
        };
        event.failures = failures.to_vec();
        event.elapsed_ms = u64::try_from(begun.elapsed().as_millis()).unwrap_or(u64::MAX);
        publish_wave(bus, event).await;
    }
}
