//! The `OrchestratorStore` port: heartbeats, routing records and config versions.
