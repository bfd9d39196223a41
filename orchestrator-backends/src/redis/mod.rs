//! Redis adapters. [`server`] starts a throw-away `redis-server` for tests and benches;
//! [`connection`] holds the one shared connection per process; [`store`] and [`bus`]
//! implement the store and event bus ports on it.

pub mod bus;
pub mod connection;
pub mod server;
pub mod store;
