//! Redis adapters. [`server`] starts a throw-away `redis-server` for tests and benches;
//! [`leases`] is the lease store (one Lua script per operation).

pub mod leases;
pub mod server;
