//! The placeholder plugin: what every service other than the orchestrator runs in this
//! project (D15 (docs/DECISIONS.md#d15)). It answers `GET /{service}/ping` with its service and
//! app-id, reports health in heartbeats, and can be told to fail for tests.
//!
//! Fault knob, read from the node's environment at start:
//! `BANNOU_FAULT_<SERVICE>=unavailable|degraded|healthy[:issue text]`, where `<SERVICE>`
//! is the service name upper-cased with `-` replaced by `_` (`game-session` ->
//! `BANNOU_FAULT_GAME_SESSION`). Example: `BANNOU_FAULT_AUTH=degraded:token cache cold`.
//! Tests change health at run time through the plugin's [`HealthHandle`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Json;
use axum::http::HeaderMap;
use axum::routing::get;
use orchestrator_core::events::ServiceHealthStatus;
use orchestrator_core::layer::Layer;
use orchestrator_core::names::env_service_name;
use orchestrator_core::{AppId, ServiceDef};
use uuid::Uuid;

use super::log::NodeLog;
use super::{HealthSignal, Plugin, PluginContext, PluginError, PluginHealth};
use crate::mesh::HOP_HEADER;

/// Prefix of the fault variables (see the module docs).
pub const FAULT_PREFIX: &str = "BANNOU_FAULT_";

/// The fault variable of `service`: `BANNOU_FAULT_GAME_SESSION` for `game-session`.
pub fn fault_variable(service: &str) -> String {
    format!("{FAULT_PREFIX}{}", env_service_name(service))
}

/// A fault variable whose value is not `unavailable`, `degraded` or `healthy` (optionally
/// followed by `:issue text`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{variable}={value:?} is not a fault; use unavailable|degraded|healthy, optionally followed by ':issue text'"
)]
pub struct FaultError {
    /// The variable.
    pub variable: String,
    /// Its value.
    pub value: String,
}

/// The health `service` starts with, from its fault variable in `environment`: healthy
/// when unset or blank. A fault without text gets the issue
/// `fault injected by BANNOU_FAULT_<SERVICE>`.
pub fn fault_from_environment(
    service: &str,
    environment: &BTreeMap<String, String>,
) -> Result<PluginHealth, FaultError> {
    let variable = fault_variable(service);
    let Some(value) = environment
        .get(&variable)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
    else {
        return Ok(PluginHealth::healthy());
    };
    let (kind, text) = match value.split_once(':') {
        Some((k, t)) => (k.trim(), Some(t.trim())),
        None => (value, None),
    };
    let status = match kind.to_ascii_lowercase().as_str() {
        "unavailable" => ServiceHealthStatus::Unavailable,
        "degraded" => ServiceHealthStatus::Degraded,
        "healthy" => ServiceHealthStatus::Healthy,
        _ => {
            return Err(FaultError {
                variable,
                value: value.to_owned(),
            });
        }
    };
    let issues = match (status, text) {
        (_, Some(t)) if !t.is_empty() => vec![t.to_owned()],
        (ServiceHealthStatus::Healthy, _) => Vec::new(),
        _ => vec![format!("fault injected by {variable}")],
    };
    Ok(PluginHealth { status, issues })
}

/// A run-time handle on a plugin's reported health. Setting it wakes the heartbeat
/// emitter, which beats at once when the status changed. Cheap to clone.
#[derive(Debug, Clone)]
pub struct HealthHandle {
    state: Arc<Mutex<PluginHealth>>,
    signal: HealthSignal,
}

impl HealthHandle {
    /// A handle starting at `initial`, notifying `signal` on every change.
    pub fn new(initial: PluginHealth, signal: HealthSignal) -> Self {
        HealthHandle {
            state: Arc::new(Mutex::new(initial)),
            signal,
        }
    }

    /// The health now.
    pub fn get(&self) -> PluginHealth {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reports `health` from now on.
    pub fn set(&self, health: PluginHealth) {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = health;
        self.signal.notify();
    }

    /// Reports `status` with `issues` from now on.
    pub fn set_status(&self, status: ServiceHealthStatus, issues: &[&str]) {
        self.set(PluginHealth {
            status,
            issues: issues.iter().map(|s| (*s).to_owned()).collect(),
        });
    }
}

/// The stand-in for one catalog service (see the module docs).
#[derive(Debug, Clone)]
pub struct PlaceholderPlugin {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    name: String,
    layer: Layer,
    app_id: AppId,
    instance_id: Uuid,
    health: HealthHandle,
    log: NodeLog,
}

impl PlaceholderPlugin {
    /// The placeholder of `def` on node `app_id` (instance `instance_id`), starting with
    /// `health` and writing its log lines to `log`.
    pub fn new(
        def: &ServiceDef,
        app_id: AppId,
        instance_id: Uuid,
        health: HealthHandle,
        log: NodeLog,
    ) -> Self {
        PlaceholderPlugin {
            shared: Arc::new(Shared {
                name: def.name.clone(),
                layer: def.layer,
                app_id,
                instance_id,
                health,
                log,
            }),
        }
    }

    /// The handle that sets this plugin's reported health.
    pub fn health_handle(&self) -> HealthHandle {
        self.shared.health.clone()
    }
}

/// The JSON `GET /{service}/ping` answers: `{"service", "appId", "instanceId", "status"}`,
/// plus `"via"` (the forwarding node's app-id) when the call came through the mesh.
pub fn ping_body(
    service: &str,
    app_id: &AppId,
    instance_id: Uuid,
    status: ServiceHealthStatus,
    via: Option<&str>,
) -> serde_json::Value {
    let mut body = serde_json::json!({
        "service": service,
        "appId": app_id.as_str(),
        "instanceId": instance_id,
        "status": status,
    });
    if let Some(via) = via {
        body["via"] = serde_json::Value::from(via);
    }
    body
}

#[async_trait::async_trait]
impl Plugin for PlaceholderPlugin {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn layer(&self) -> Layer {
        self.shared.layer
    }

    async fn start(&self, _ctx: &PluginContext) -> Result<(), PluginError> {
        Ok(())
    }

    fn health(&self) -> PluginHealth {
        self.shared.health.get()
    }

    fn routes(&self) -> axum::Router {
        let shared = self.shared.clone();
        let path = format!("/{}/ping", shared.name);
        axum::Router::new().route(
            &path,
            get(move |headers: HeaderMap| async move {
                let via = headers.get(HOP_HEADER).and_then(|v| v.to_str().ok());
                match via {
                    Some(from) => shared
                        .log
                        .stdout(format!("ping served for {} (via {from})", shared.name)),
                    None => shared
                        .log
                        .stdout(format!("ping served for {}", shared.name)),
                }
                Json(ping_body(
                    &shared.name,
                    &shared.app_id,
                    shared.instance_id,
                    shared.health.get().status,
                    via,
                ))
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn fault_variables_parse_status_and_issue_text() {
        assert_eq!(fault_variable("game-session"), "BANNOU_FAULT_GAME_SESSION");
        assert_eq!(
            fault_from_environment("auth", &env(&[])).unwrap(),
            PluginHealth::healthy()
        );
        let h =
            fault_from_environment("auth", &env(&[("BANNOU_FAULT_AUTH", "Unavailable")])).unwrap();
        assert_eq!(h.status, ServiceHealthStatus::Unavailable);
        assert_eq!(h.issues, ["fault injected by BANNOU_FAULT_AUTH"]);
        let h = fault_from_environment(
            "game-session",
            &env(&[("BANNOU_FAULT_GAME_SESSION", "degraded: cache cold ")]),
        )
        .unwrap();
        assert_eq!(h.status, ServiceHealthStatus::Degraded);
        assert_eq!(h.issues, ["cache cold"]);
        let err =
            fault_from_environment("auth", &env(&[("BANNOU_FAULT_AUTH", "broken")])).unwrap_err();
        assert_eq!(err.variable, "BANNOU_FAULT_AUTH");
        assert!(err.to_string().contains("unavailable|degraded|healthy"));
    }

    #[test]
    fn ping_body_names_service_app_and_hop() {
        let id = Uuid::nil();
        let b = ping_body(
            "auth",
            &AppId::from("n1"),
            id,
            ServiceHealthStatus::Healthy,
            Some("n2"),
        );
        assert_eq!(b["service"], "auth");
        assert_eq!(b["appId"], "n1");
        assert_eq!(b["via"], "n2");
        let plain = ping_body(
            "auth",
            &AppId::from("n1"),
            id,
            ServiceHealthStatus::Healthy,
            None,
        );
        assert!(plain.get("via").is_none());
    }
}
