//! Runnable examples live in `examples/examples/`; run one with
//! `cargo run -p bannou-examples --example NAME`.
//!
//! - `http_client`: drives a running host (`bannou-host serve`) over HTTP with
//!   `bannou_host::client::ApiClient`: deploy a preset, status, routing, a pool lease,
//!   teardown.
