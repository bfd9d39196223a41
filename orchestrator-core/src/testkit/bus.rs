//! Conformance suite for `EventBus` implementations.
