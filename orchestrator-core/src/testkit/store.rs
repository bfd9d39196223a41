//! Conformance suite for `OrchestratorStore` implementations.
