//! The store monitor: pings the store every interval on every replica, counts failures
//! and reconnects, and keeps the last answer for `/health` and the plugin's health.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use orchestrator_core::ports::store::OrchestratorStore;
use tokio::sync::watch;

use crate::api;
use crate::metrics::Metrics;
use crate::orchestrator::stopped;

/// The last answer of the store to the monitor's ping.
#[derive(Debug, Default)]
pub struct StoreStatus {
    last_error: Mutex<Option<String>>,
}

impl StoreStatus {
    /// `None` when the last ping (or the start's) succeeded, else why it failed.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn record(&self, result: Option<String>) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = result;
    }
}

/// Pings `store` every `every` until `shutdown`, recording each answer in `status`.
pub(super) async fn monitor_store(
    store: Arc<dyn OrchestratorStore>,
    status: Arc<StoreStatus>,
    every: Duration,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) {
    // Whether the last ping failed (a success after it counts as a reconnect).
    let mut down = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stopped(&mut shutdown) => return,
        }
        let result =
            match tokio::time::timeout(api::liveness::STORE_PING_TIMEOUT, store.ping()).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some("no answer to ping".to_owned()),
            };
        match &result {
            Some(e) => {
                metrics.store_error();
                tracing::warn!(error = %e, "state store does not answer");
            }
            None if down => {
                metrics.store_reconnected();
                tracing::info!("state store answers again");
            }
            None => {}
        }
        down = result.is_some();
        status.record(result);
    }
}
