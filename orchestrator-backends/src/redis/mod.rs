//! Redis adapters. [`server`] starts a throw-away `redis-server` for tests and benches;
//! [`connection`] holds the one shared connection per process; [`store`] and [`bus`]
//! implement the store and event bus ports on it; [`leases`] is the lease store (one Lua
//! script per operation); [`leader`] is the leadership lease of the replicas.

pub mod bus;
pub mod connection;
pub mod leader;
pub mod leases;
pub mod server;
pub mod store;
