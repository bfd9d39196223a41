//! In-memory implementations of the ports: the embedded default and trustworthy test
//! stand-ins (they pass the same conformance suites as the Redis adapters). The fake
//! container backend is test-only: it exists with the `testkit` feature (or in this
//! crate's tests), never in a release build.

#[cfg(any(test, doc, feature = "testkit"))]
pub mod backend;
pub mod bus;
pub mod leader;
pub mod store;
