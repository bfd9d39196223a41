//! In-memory `OrchestratorStore`.
