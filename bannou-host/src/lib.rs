//! The Bannou host: one binary that runs any set of Bannou services, the orchestrator
//! among them.
//!
//! Where to start:
//! - [`plugins`]: the plugin host every node runs (placeholder services, heartbeat
//!   emitter); [`mesh`]: following routing broadcasts and calling a service through them.
//! - [`orchestrator`]: the orchestrator service (`orchestrator::service`, one method per
//!   endpoint) and its background loops (heartbeat ingestion, mappings broadcast, pool
//!   scaling, lease reclamation); [`clock`]: the wall clock, which follows tokio's
//!   pausable time.
//! - [`host`]: the control plane assembled from [`config`] (adapters, loops, the
//!   orchestrator plugin); [`api`]: the HTTP API (axum) and its OpenAPI document.
//! - [`backends`]: the in-process container backend (the embedded default).
//! - [`log_buffer`]: the control plane's own recent log lines (its logs endpoint);
//!   [`listener`]: the TCP listener every HTTP server accepts on (`TCP_NODELAY`).
//! - [`metrics`]: the Prometheus registry behind every node's `GET /metrics`;
//!   [`traces`]: OpenTelemetry trace export and `traceparent` propagation.
//! - [`client`]: the typed HTTP client; [`cli`]: the command line.

pub mod api;
pub mod backends;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod control_events;
pub mod event_stream;
pub mod host;
pub mod listener;
pub mod log_buffer;
pub mod mesh;
pub mod metrics;
pub mod orchestrator;
pub mod plugins;
pub mod server;
pub mod traces;
