//! Lease pools of worker containers (the NPC-brain and asset-processor pools): callers
//! lease a worker, use it, and give it back. Pure domain, no runtime, time passed in.
//!
//! Layout (start with [`store`]):
//! - [`config`]: [`PoolType`] and the validated [`PoolConfig`] (from a preset's
//!   `processingPools` entry, both key spellings).
//! - [`model`]: workers and their states, leases with fencing tokens, wait tickets, load
//!   counts, the sliding one-hour metrics window.
//! - [`store`]: the [`LeaseStore`] port (every operation one atomic step, so Redis can run
//!   each as one Lua script) and [`LeaseError`].
//! - [`memory`]: [`MemoryLeaseStore`], the in-memory implementation.
//! - [`waiting`]: bounded waiting for a worker on top of any store.
//! - [`autoscale`]: the pure autoscale policy ([`Autoscaler`] -> [`ScaleDecision`]).
//! - `testkit` (feature `testkit`): the conformance suite every store must pass.
//!
//! See docs/COMPATIBILITY.md#processing-pools for what upstream does and D9, D21, D23,
//! D26 and D28 (docs/DECISIONS.md) for where we go further.

pub mod autoscale;
pub mod config;
pub mod memory;
pub mod model;
pub mod store;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod waiting;

pub use autoscale::{Autoscaler, ScaleDecision, ScaleReason};
pub use config::{ConfigError, PoolConfig, PoolSpec, PoolType};
pub use memory::MemoryLeaseStore;
pub use model::{
    FencingToken, Lease, LeaseId, PoolLoad, PoolMetrics, PoolStatus, ProcessorId, Released,
    WaitTicket, Worker, WorkerIdentity, WorkerState,
};
pub use store::{
    AcquireOutcome, AcquireRequest, Acquired, LeaseError, LeaseStore, RemovedWorker, WaitStatus,
};
pub use waiting::acquire_waiting;
