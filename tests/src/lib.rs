//! Cross-crate integration tests live in `tests/tests/`. Shared helpers (starting
//! services) go here as they are needed; test data lives in `tests/fixtures/`.
