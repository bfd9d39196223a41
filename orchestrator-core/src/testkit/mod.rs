//! Conformance suites for the ports (feature `testkit`): write once, run against every
//! implementation. Each suite is an async function that takes a factory for fresh
//! instances and panics with a descriptive message on the first violation.

pub mod backend;
pub mod bus;
pub mod leader;
pub mod store;
