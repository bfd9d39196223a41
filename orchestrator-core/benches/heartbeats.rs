//! Heartbeat ingest benchmark (filled in with the aggregator).
fn main() {}
