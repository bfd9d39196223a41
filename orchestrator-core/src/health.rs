//! Heartbeat aggregator: per-service, per-instance health from heartbeats (decision D4) and the GetServicesHealth report (spec 12.2).
