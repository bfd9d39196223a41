//! In-memory implementations of the ports: the embedded default and trustworthy test
//! stand-ins (they pass the same conformance suites as the Redis adapters).

pub mod backend;
pub mod bus;
pub mod leader;
pub mod store;
