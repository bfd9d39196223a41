//! Redis adapters. [`server`] starts a throw-away `redis-server` for tests and benches;
//! [`connection`] holds the one shared connection per process; [`store`]
//! implements the store port on it.

pub mod connection;
pub mod server;
pub mod store;
