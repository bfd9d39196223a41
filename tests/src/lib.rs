//! Cross-crate integration tests live in `tests/tests/`. Shared helpers (locating
//! `../shared`, starting services) go here as they are needed.
