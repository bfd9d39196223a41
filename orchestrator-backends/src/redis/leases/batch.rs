//! Coalescing of the hot operations (acquire, release, renew) into one `FCALL` per pool.
//!
//! Under load most of a call's server time is not the operation: it is running a
//! function at all, converting its arguments and reply, and reading and writing the
//! pool's packed state (`HMGET`/`HSET state`). When many tasks call at once, the
//! [`Batcher`] sends the operations that are waiting together as one call of the
//! library's `batch` function (`lua/batch.lua`). That reads the state once and writes it
//! once, and runs consecutive operations of a kind with one command per key (one
//! `HMGET` of all their records, one `HSET` of all the new ones). They were all waiting
//! at once, so any order is one their callers could have seen: releases go first (their
//! workers serve the acquires), then renews, then acquires, each kind in arrival order.
//! Each operation still takes one round trip and runs atomically (the whole batch does),
//! and each gets the reply it would have got alone in that order.
//!
//! Nothing waits to fill a batch: one dispatcher task takes whatever has queued up while
//! the previous calls were on the wire, at most [`max_batch`] operations and at most
//! [`batches_in_flight`] calls at a time. An operation that finds nothing queued and a
//! call slot free goes out at once from its caller's task, as a plain `FCALL` of its own
//! function; batches only form, and grow, while calls are waiting for Redis. Operations
//! of different pools go in separate calls, so a batch never spans two hash slots. An
//! operation whose caller stopped waiting before the dispatcher took it is dropped, not
//! sent (as a command not yet written would have been without batching).
//!
//! Start with [`Batcher::run`].
//!
//! [`max_batch`]: super::RedisLeaseStoreConfig::max_batch
//! [`batches_in_flight`]: super::RedisLeaseStoreConfig::batches_in_flight

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use orchestrator_pools::LeaseError;
use redis::Value;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{Library, query_function, unavailable};
use crate::redis::connection::RedisConn;

/// One operation waiting for its call.
struct Pending {
    /// `KEYS[1]`: the pool's key base.
    base: String,
    /// The operation (`acquire`, `release` or `renew`: what `batch.lua` accepts).
    op: &'static str,
    args: Vec<Vec<u8>>,
    reply: oneshot::Sender<Result<Vec<Value>, LeaseError>>,
}

/// Replies handed back between two yields of the task that hands them back. Handing
/// back a whole batch at once wakes every caller of it before the dispatcher runs again,
/// so the next batch would only go out once all of them had run: Redis would idle while
/// the callers work and the callers idle while Redis works. Yielding every few replies
/// lets the dispatcher send what the first callers asked next while the rest are still
/// being woken. (Measured on one client thread, BENCHMARKS.md: 1 to 8 all beat never.)
const REPLIES_PER_YIELD: usize = 2;

/// What went out so far: calls and the operations they carried; and what is queued.
#[derive(Debug, Default)]
struct Counters {
    calls: AtomicU64,
    operations: AtomicU64,
    /// Operations sent to the dispatcher and not yet taken by it.
    queued: AtomicU64,
    /// Operations whose caller had stopped waiting when the dispatcher took them.
    abandoned: AtomicU64,
}

/// How many calls the batcher made and how many operations they carried
/// ([`super::RedisLeaseStore::batch_stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchStats {
    /// Calls sent (an operation alone counts as a call of one).
    pub calls: u64,
    /// Operations those calls carried.
    pub operations: u64,
    /// Operations never sent because their caller had stopped waiting (dropped the
    /// future: a timeout, a cancelled request) before the dispatcher took them.
    pub abandoned: u64,
}

/// The handle the store calls through; the dispatcher task ends when it is dropped.
pub(super) struct Batcher {
    tx: mpsc::UnboundedSender<Pending>,
    conn: RedisConn,
    lib: Arc<Library>,
    counters: Arc<Counters>,
    slots: Arc<Semaphore>,
}

impl Batcher {
    /// Starts the dispatcher on the current Tokio runtime; `None` outside one.
    pub(super) fn start(
        conn: RedisConn,
        lib: Arc<Library>,
        max_batch: usize,
        in_flight: usize,
    ) -> Option<Self> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let slots = Arc::new(Semaphore::new(in_flight.max(1)));
        let counters = Arc::new(Counters::default());
        runtime.spawn(dispatch(
            rx,
            conn.clone(),
            lib.clone(),
            max_batch.max(1),
            slots.clone(),
            counters.clone(),
        ));
        Some(Batcher {
            tx,
            conn,
            lib,
            counters,
            slots,
        })
    }

    /// Calls and operations so far.
    pub(super) fn stats(&self) -> BatchStats {
        BatchStats {
            calls: self.counters.calls.load(Ordering::Relaxed),
            operations: self.counters.operations.load(Ordering::Relaxed),
            abandoned: self.counters.abandoned.load(Ordering::Relaxed),
        }
    }

    /// Runs operation `op` of the pool at `base` with `args` (its `ARGV`), in the next
    /// call out, and returns its reply (the array the operation returns).
    pub(super) async fn run(
        &self,
        base: String,
        op: &'static str,
        args: Vec<Vec<u8>>,
    ) -> Result<Vec<Value>, LeaseError> {
        // Nothing queued and a call slot free: nothing to batch with, so send it from
        // here, sparing the hop through the dispatcher (about 25 us per operation on one
        // client thread, BENCHMARKS.md).
        if self.counters.queued.load(Ordering::Acquire) == 0
            && let Ok(_slot) = self.slots.clone().try_acquire_owned()
        {
            self.counters.calls.fetch_add(1, Ordering::Relaxed);
            self.counters.operations.fetch_add(1, Ordering::Relaxed);
            return self.alone(&base, op, &args).await;
        }
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            base,
            op,
            args,
            reply,
        };
        self.counters.queued.fetch_add(1, Ordering::AcqRel);
        match self.tx.send(pending) {
            Ok(()) => answer.await.unwrap_or_else(|_| {
                Err(unavailable(
                    "the batch dispatcher stopped before answering (its runtime shut down)",
                ))
            }),
            // The dispatcher's runtime is gone (a store kept past it): call alone.
            Err(mpsc::error::SendError(p)) => {
                self.counters.queued.fetch_sub(1, Ordering::AcqRel);
                self.alone(&p.base, p.op, &p.args).await
            }
        }
    }

    /// Sends one operation as a plain `FCALL` of its own function, from this task.
    async fn alone(
        &self,
        base: &str,
        op: &str,
        args: &[Vec<u8>],
    ) -> Result<Vec<Value>, LeaseError> {
        let mut conn = self.conn.clone();
        query_function(&mut conn, &self.lib, &single_cmd(&self.lib, base, op, args))
            .await
            .and_then(reply_of)
    }
}

/// Takes what has queued up, groups it by pool and sends each group as one call, with at
/// most `slots` calls out at a time.
async fn dispatch(
    mut rx: mpsc::UnboundedReceiver<Pending>,
    conn: RedisConn,
    lib: Arc<Library>,
    max_batch: usize,
    slots: Arc<Semaphore>,
    counters: Arc<Counters>,
) {
    while let Some(first) = rx.recv().await {
        // Waiting for a free slot is what lets a batch grow: the queue fills meanwhile.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        // The first is counted as taken only now, so a caller does not bypass the
        // queue while it waits for a slot.
        let mut groups: Vec<Vec<Pending>> = Vec::new();
        let (mut taken, mut live, mut next) = (0, 0, Some(first));
        while let Some(p) = next.take() {
            taken += 1;
            // Its caller gave up while it waited (a timeout, a cancelled request): an
            // acquire sent now would take a lease nobody receives, so it never goes out.
            if p.reply.is_closed() {
                counters.abandoned.fetch_add(1, Ordering::Relaxed);
            } else {
                live += 1;
                match groups.iter_mut().find(|g| g[0].base == p.base) {
                    Some(group) => group.push(p),
                    None => groups.push(vec![p]),
                }
            }
            if live < max_batch {
                next = rx.try_recv().ok();
            }
        }
        // Everything in a batch was waiting at the same time, so any order is one the
        // callers could have seen: releases first (their workers serve the acquires that
        // follow), each kind in arrival order, and consecutive operations of a kind run
        // as one `batch.lua` run.
        for group in &mut groups {
            group.sort_by_key(|p| rank(p.op));
        }
        counters.queued.fetch_sub(taken as u64, Ordering::AcqRel);
        if groups.is_empty() {
            continue;
        }
        counters
            .calls
            .fetch_add(groups.len() as u64, Ordering::Relaxed);
        counters
            .operations
            .fetch_add(live as u64, Ordering::Relaxed);
        let conn = conn.clone();
        let lib = lib.clone();
        tokio::spawn(async move {
            let _slot = slot;
            futures::future::join_all(
                groups
                    .into_iter()
                    .map(|group| run_group(conn.clone(), &lib, group)),
            )
            .await;
        });
    }
}

/// Where an operation goes in a batch.
fn rank(op: &str) -> u8 {
    match op {
        "release" => 0,
        "renew" => 1,
        _ => 2,
    }
}

/// The `FCALL` of operation `op`'s own function on the pool at `base`.
fn single_cmd<A: AsRef<[u8]>>(lib: &Library, base: &str, op: &str, args: &[A]) -> redis::Cmd {
    let mut cmd = redis::cmd("FCALL");
    cmd.arg(lib.function(op)).arg(1).arg(base);
    for a in args {
        cmd.arg(a.as_ref());
    }
    cmd
}

/// Runs `ops` (operation and its `ARGV`) on the pool at `base` as one call of `batch`,
/// in the order given, and returns each operation's reply, not yet checked for `error`.
pub(super) async fn call_batch<A: AsRef<[u8]>>(
    conn: &mut RedisConn,
    lib: &Library,
    base: &str,
    ops: &[(&str, &[A])],
) -> Result<Vec<Value>, LeaseError> {
    let mut cmd = redis::cmd("FCALL");
    cmd.arg(lib.function("batch")).arg(1).arg(base);
    for (op, args) in ops {
        cmd.arg(*op);
        for a in *args {
            cmd.arg(a.as_ref());
        }
    }
    match query_function(conn, lib, &cmd).await {
        Ok(Value::Array(items)) => split_flat(items, ops.len()),
        Ok(other) => Err(unavailable(format!(
            "batch of {} operations answered {other:?}",
            ops.len()
        ))),
        Err(e) => Err(e),
    }
}

/// Sends one group (one pool) and answers each of its operations.
async fn run_group(mut conn: RedisConn, lib: &Library, group: Vec<Pending>) {
    let replies = if let [p] = group.as_slice() {
        query_function(&mut conn, lib, &single_cmd(lib, &p.base, p.op, &p.args))
            .await
            .map(|v| vec![v])
    } else {
        let ops: Vec<(&str, &[Vec<u8>])> =
            group.iter().map(|p| (p.op, p.args.as_slice())).collect();
        call_batch(&mut conn, lib, &group[0].base, &ops).await
    };
    match replies {
        Ok(replies) => {
            for (i, (p, v)) in group.into_iter().zip(replies).enumerate() {
                // the caller may have given up (dropped its future): nothing to tell
                let _ = p.reply.send(reply_of(v));
                if (i + 1) % REPLIES_PER_YIELD == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }
        Err(e) => {
            for p in group {
                let _ = p.reply.send(Err(e.clone()));
            }
        }
    }
}

/// Splits `batch`'s flat reply (per operation a length and that many elements) into
/// `n` replies.
fn split_flat(items: Vec<Value>, n: usize) -> Result<Vec<Value>, LeaseError> {
    let mut replies = Vec::with_capacity(n);
    let mut items = items.into_iter();
    while let Some(len) = items.next() {
        let Value::Int(len) = len else {
            return Err(unavailable(format!(
                "batch reply: {len:?} where a length belongs"
            )));
        };
        let len = usize::try_from(len).unwrap_or(0);
        let reply: Vec<Value> = items.by_ref().take(len).collect();
        if reply.len() != len {
            return Err(unavailable("batch reply ends inside an operation's reply"));
        }
        replies.push(Value::Array(reply));
    }
    if replies.len() != n {
        return Err(unavailable(format!(
            "batch of {n} operations answered {} replies",
            replies.len()
        )));
    }
    Ok(replies)
}

/// One operation's reply: its array, or the error it raised inside a batch.
pub(super) fn reply_of(v: Value) -> Result<Vec<Value>, LeaseError> {
    match v {
        Value::Array(items) => {
            if let [Value::BulkString(code), Value::BulkString(msg)] = items.as_slice()
                && code.as_slice() == b"error"
            {
                return Err(unavailable(format!(
                    "lease script failed: {}",
                    String::from_utf8_lossy(msg)
                )));
            }
            Ok(items)
        }
        other => Err(unavailable(format!("unexpected script reply {other:?}"))),
    }
}
