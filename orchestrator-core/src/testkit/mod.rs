//! Conformance suites for the ports (feature `testkit`): write once, run against every
//! implementation. Each suite is an async function that takes a factory for fresh
//! instances and panics with a descriptive message on the first violation. [`require`]
//! says when a test may skip and where its data lives (own fixtures, upstream's files);
//! [`scrape`] reads the samples of a `/metrics` scrape.

pub mod backend;
pub mod bus;
pub mod leader;
pub mod require;
pub mod scrape;
pub mod store;
