//! Redis adapters. [`server`] starts a throw-away `redis-server` for tests and benches;
//! [`url`] parses every URL form; [`connection`] holds the one shared connection per
//! process (one server, Sentinel or Cluster, plain or TLS); [`store`] and [`bus`]
//! implement the store and event bus ports on it; [`leases`] is the lease store (one Lua
//! script per operation); [`leader`] is the leadership lease of the replicas.

pub mod bus;
pub mod connection;
pub mod leader;
pub mod leases;
pub mod server;
pub mod store;
pub mod url;
