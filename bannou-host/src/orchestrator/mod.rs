//! Orchestrator use cases and background loops over the domain's ports, one module per
//! group (D29 (docs/DECISIONS.md#d29)): [`heartbeats`] (ingestion pipeline), [`mappings`] (routing
//! broadcast), [`routing_acks`] (what the consumers applied), [`pool_scaler`] (worker
//! scaling), [`pool_events`] (the pool events and their outbox) and [`leases`]
//! (expired-lease reclamation); [`leader`] elects the one replica that runs the loops that
//! must not run twice; [`service`] is the use cases behind the HTTP API.

pub mod heartbeats;
pub mod leader;
pub mod leases;
pub mod mappings;
pub mod pool_events;
pub mod pool_scaler;
pub mod routing_acks;
pub mod service;

/// Resolves once shutdown is requested: the flag turned true or its sender was dropped.
/// Cancel-safe, so loops use it as a `select!` arm.
pub async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    // `wait_for` errs only when the sender is gone, which also means "stop".
    let _ = shutdown.wait_for(|stop| *stop).await;
}
