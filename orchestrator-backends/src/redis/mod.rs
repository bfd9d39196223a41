//! Redis adapters. [`server`] starts a throw-away `redis-server` for tests and benches.

pub mod server;
