//! Runnable examples live in `examples/examples/`; run one with
//! `cargo run -p bannou-examples --example NAME`.
