//! The Redis Streams [`EventBus`]: one stream per topic, fan-out by independent readers.
//!
//! - Publish: `XADD {prefix}:stream:{topic} MAXLEN ~ N * payload <bytes>` on the shared
//!   connection (bounded by [`super::connection::RedisConfig::call_timeout`]; fails fast with
//!   [`BusError::Unavailable`] while the server is down).
//! - Subscribe: remembers the stream's last id at subscribe time, then a task reads with
//!   `XREAD COUNT c BLOCK b` after the last id it saw, on a dedicated connection (a
//!   blocking read would stall every other request on the shared multiplexed one). No
//!   consumer group: every subscriber reads every entry (fan-out).
//! - Outage: a failed read is logged, the task reconnects with exponential backoff and
//!   resumes after its last id. The stream never ends because of an outage.
//! - Lag: after a reconnect, and before the next read whenever the reader may be behind
//!   (its last read was a full batch, or it had to wait for its consumer), the task
//!   compares `XINFO STREAM`'s `recorded-first-entry-id` with its last id; entries trimmed by
//!   `MAXLEN` before it read them are reported as one [`BusItem::Lagged`] with their
//!   count (from `entries-added` and the length), before the entries that follow the gap.
//!   Limitations: a trim that races between that check and the read is counted at the
//!   next detected gap, not at once; entries lost because the server itself lost its data
//!   (a restart without persistence, as in the tests) cannot be counted: the reader logs
//!   that the stream was recreated and continues with the new stream's entries.
//! - An entry without a `payload` field is logged with `tracing::warn!` and skipped.
//! - Backpressure: each subscription buffers up to [`RedisBusConfig::buffer`] messages;
//!   a slower consumer makes its reader wait, and the backlog stays in Redis.
//! - Dropping the [`Subscription`] stops its task (and closes its connection).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use orchestrator_core::error_source::ErrorSource;
use orchestrator_core::ports::bus::{
    BusError, BusItem, EventBus, Payload, Subscription, validate_topic,
};
use redis::streams::StreamReadReply;
use redis::{ErrorKind, ServerErrorKind, Value};
use tokio::sync::mpsc;

use super::connection::{CallError, RedisConn, RedisConnection};
use super::store::DEFAULT_KEY_PREFIX;

/// Field name of the message body in each stream entry.
pub const PAYLOAD_FIELD: &str = "payload";

/// Settings of a [`RedisBus`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisBusConfig {
    /// Key prefix: topic `t` lives at `{prefix}:stream:{t}`.
    pub key_prefix: String,
    /// Approximate stream cap (`MAXLEN ~`).
    pub max_len: usize,
    /// How long one `XREAD` blocks waiting for entries.
    pub block: Duration,
    /// Most entries one `XREAD` returns.
    pub read_count: usize,
    /// Messages buffered per subscription before its reader waits for the consumer.
    pub buffer: usize,
    /// First delay between reconnect attempts of a subscriber.
    pub reconnect_min_delay: Duration,
    /// Longest delay between reconnect attempts of a subscriber.
    pub reconnect_max_delay: Duration,
}

impl Default for RedisBusConfig {
    /// Prefix `orch`, `MAXLEN ~ 100000`, 1 s blocks of up to 512 entries, 1024 buffered,
    /// reconnects 50 ms to 2 s apart.
    fn default() -> Self {
        RedisBusConfig {
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            max_len: 100_000,
            block: Duration::from_secs(1),
            read_count: 512,
            buffer: 1024,
            reconnect_min_delay: Duration::from_millis(50),
            reconnect_max_delay: Duration::from_secs(2),
        }
    }
}

impl RedisBusConfig {
    /// The defaults with another key prefix.
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        RedisBusConfig {
            key_prefix: prefix.into(),
            ..Self::default()
        }
    }
}

/// An [`EventBus`] over Redis Streams. A cheap `Clone` handle.
#[derive(Clone)]
pub struct RedisBus {
    conn: RedisConnection,
    config: Arc<RedisBusConfig>,
    /// Reconnects of every subscriber of this bus and its clones.
    reconnects: Arc<AtomicU64>,
}

impl std::fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBus")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl RedisBus {
    /// A bus on the shared `conn`.
    pub fn new(conn: RedisConnection, config: RedisBusConfig) -> Self {
        RedisBus {
            conn,
            config: Arc::new(config),
            reconnects: Arc::default(),
        }
    }

    /// The bus settings.
    pub fn config(&self) -> &RedisBusConfig {
        &self.config
    }

    /// The stream key of `topic`.
    pub fn stream_key(&self, topic: &str) -> String {
        format!("{}:stream:{topic}", self.config.key_prefix)
    }
}

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> BusError {
    BusError::Unavailable {
        reason: e.to_string(),
        source: Some(ErrorSource::new(e)),
    }
}

#[async_trait]
impl EventBus for RedisBus {
    async fn publish(&self, topic: &str, payload: Payload) -> Result<(), BusError> {
        validate_topic(topic)?;
        let mut cmd = redis::cmd("XADD");
        cmd.arg(self.stream_key(topic))
            .arg("MAXLEN")
            .arg("~")
            .arg(self.config.max_len)
            .arg("*")
            .arg(PAYLOAD_FIELD)
            .arg(payload.as_bytes());
        self.conn
            .bounded(|mut con: RedisConn| async move { cmd.query_async::<Value>(&mut con).await })
            .await
            .map(drop)
            .map_err(unavailable)
    }

    async fn subscribe(&self, topic: &str) -> Result<Subscription, BusError> {
        validate_topic(topic)?;
        let key = self.stream_key(topic);
        let cfg = self.conn.config();
        let mut con = dedicated_connection(&self.conn, self.config.block)
            .await
            .map_err(unavailable)?;
        // Where "new" starts: entries after the stream's current last id.
        let start = match tokio::time::timeout(cfg.call_timeout, stream_info(&mut con, &key)).await
        {
            Ok(Ok(info)) => info.map(Position::at_end).unwrap_or_default(),
            Ok(Err(e)) => return Err(unavailable(e)),
            Err(_) => return Err(unavailable(CallError::TimedOut(cfg.call_timeout))),
        };
        let (tx, mut rx) = mpsc::channel(self.config.buffer.max(1));
        let reader = Reader {
            conn: self.conn.clone(),
            config: Arc::clone(&self.config),
            topic: topic.to_owned(),
            key,
            tx,
            pos: start,
            reconnects: Arc::clone(&self.reconnects),
        };
        tokio::spawn(reader.run(con));
        let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed();
        Ok(Subscription::new(topic, stream))
    }

    fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }
}

/// A new connection of its own for blocking reads of up to `block`, bounded by the call
/// timeout.
async fn dedicated_connection(
    conn: &RedisConnection,
    block: Duration,
) -> Result<RedisConn, CallError> {
    let cfg = conn.config();
    let connecting = conn.dedicated(block);
    match tokio::time::timeout(cfg.call_timeout, connecting).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(CallError::Redis(e)),
        Err(_) => Err(CallError::TimedOut(cfg.call_timeout)),
    }
}

// === the reader task ===

/// Where a reader is: the last id it saw and how many entries the stream had received
/// up to and including that id (`entries-added` numbering), to count trimmed entries.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Position {
    last_id: String,
    seq: u64,
}

impl Default for Position {
    fn default() -> Self {
        Position {
            last_id: "0-0".to_owned(),
            seq: 0,
        }
    }
}

impl Position {
    fn at_end(info: StreamInfo) -> Self {
        Position {
            last_id: info.last_generated_id,
            seq: info.entries_added,
        }
    }
}

/// The parts of `XINFO STREAM` the reader needs (Redis 7.0+).
#[derive(Debug, Clone, PartialEq, Eq)]
struct StreamInfo {
    length: u64,
    last_generated_id: String,
    first_entry_id: String,
    entries_added: u64,
}

/// `XINFO STREAM key`, or `None` when the stream does not exist.
async fn stream_info(
    con: &mut RedisConn,
    key: &str,
) -> Result<Option<StreamInfo>, redis::RedisError> {
    let reply: Result<HashMap<String, Value>, _> = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(key)
        .query_async(con)
        .await;
    let map = match reply {
        Ok(map) => map,
        Err(e)
            if e.kind() == ErrorKind::Server(ServerErrorKind::ResponseError)
                && e.to_string().contains("no such key") =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let text = |name: &str| -> String {
        match map.get(name) {
            Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(Value::SimpleString(s)) => s.clone(),
            Some(Value::Int(i)) => i.to_string(),
            _ => String::new(),
        }
    };
    let number = |name: &str| text(name).parse::<u64>().unwrap_or(0);
    Ok(Some(StreamInfo {
        length: number("length"),
        last_generated_id: text("last-generated-id"),
        first_entry_id: text("recorded-first-entry-id"),
        entries_added: number("entries-added"),
    }))
}

/// A stream id `ms-seq` as a comparable pair (`0-0` when unparsable).
fn id_key(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

/// What the lag check found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Gap {
    /// Nothing missed.
    None,
    /// `skipped` entries after the reader's last id were trimmed before it read them.
    Trimmed { skipped: u64 },
    /// The stream was deleted and created anew (server data loss); read it from the start.
    Recreated,
}

/// Compares the reader's position with the stream's state and moves the position past
/// any trimmed entries (pure, so it is unit tested).
fn check_gap(pos: &mut Position, info: Option<&StreamInfo>) -> Gap {
    let Some(info) = info else {
        // No stream (yet): whatever is created next is new to us; ids restart from the
        // current time, so keeping `last_id` is right unless the clock went backwards.
        pos.seq = 0;
        return Gap::None;
    };
    if info.entries_added < pos.seq || id_key(&info.last_generated_id) < id_key(&pos.last_id) {
        pos.last_id = "0-0".to_owned();
        pos.seq = info.entries_added.saturating_sub(info.length);
        return Gap::Recreated;
    }
    if info.length == 0 || id_key(&info.first_entry_id) > id_key(&pos.last_id) {
        // Trimming removes the oldest entries, so when even the first entry left is newer
        // than last_id, all `length` entries left come after it, and the others added
        // after last_id were trimmed.
        let skipped = info
            .entries_added
            .saturating_sub(pos.seq)
            .saturating_sub(info.length);
        pos.seq += skipped;
        if skipped > 0 {
            return Gap::Trimmed { skipped };
        }
    }
    Gap::None
}

struct Reader {
    conn: RedisConnection,
    config: Arc<RedisBusConfig>,
    topic: String,
    key: String,
    tx: mpsc::Sender<BusItem>,
    pos: Position,
    reconnects: Arc<AtomicU64>,
}

/// Why a read loop stopped.
enum Stop {
    /// The subscription was dropped.
    Unsubscribed,
    /// The connection failed.
    Failed(String),
}

impl Reader {
    async fn run(mut self, first: RedisConn) {
        let mut con = Some(first);
        let mut delay = self.config.reconnect_min_delay;
        loop {
            let Some(mut c) = con.take() else {
                break;
            };
            match self.read_until_failure(&mut c).await {
                Stop::Unsubscribed => return,
                Stop::Failed(reason) => {
                    tracing::warn!(
                        topic = %self.topic,
                        last_id = %self.pos.last_id,
                        "event bus subscriber lost Redis ({reason}); reconnecting"
                    );
                }
            }
            drop(c);
            // Reconnect with exponential backoff until it works or the subscriber leaves.
            loop {
                tokio::select! {
                    () = self.tx.closed() => return,
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(self.config.reconnect_max_delay);
                match self.reconnect().await {
                    Ok(mut c) => {
                        self.reconnects.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(
                            topic = %self.topic,
                            last_id = %self.pos.last_id,
                            "event bus subscriber reconnected; resuming after its last id"
                        );
                        if !self.report_gap(&mut c).await {
                            return;
                        }
                        delay = self.config.reconnect_min_delay;
                        con = Some(c);
                        break;
                    }
                    Err(reason) => {
                        tracing::debug!(topic = %self.topic, "reconnect failed: {reason}");
                    }
                }
            }
        }
    }

    async fn reconnect(&self) -> Result<RedisConn, CallError> {
        dedicated_connection(&self.conn, self.config.block).await
    }

    /// Runs the lag check; false when the subscriber left meanwhile. A failed check is
    /// only logged: the next read will fail too and trigger a reconnect.
    async fn report_gap(&mut self, con: &mut RedisConn) -> bool {
        match stream_info(con, &self.key).await {
            Ok(info) => match check_gap(&mut self.pos, info.as_ref()) {
                Gap::None => true,
                Gap::Trimmed { skipped } => {
                    tracing::warn!(
                        topic = %self.topic,
                        skipped,
                        "event bus subscriber missed entries trimmed by MAXLEN"
                    );
                    self.tx.send(BusItem::Lagged { skipped }).await.is_ok()
                }
                Gap::Recreated => {
                    tracing::warn!(
                        topic = %self.topic,
                        "stream was recreated (server lost its data); reading it from the start"
                    );
                    true
                }
            },
            Err(e) => {
                tracing::debug!(topic = %self.topic, "lag check failed: {e}");
                true
            }
        }
    }

    async fn read_until_failure(&mut self, con: &mut RedisConn) -> Stop {
        let block_ms = u64::try_from(self.config.block.as_millis()).unwrap_or(u64::MAX);
        let count = self.config.read_count.max(1);
        // True when entries may have been trimmed before this reader got to them: its
        // last read was a full batch (a backlog) or it had to wait for its consumer.
        let mut behind = false;
        loop {
            if behind && !self.report_gap(con).await {
                return Stop::Unsubscribed;
            }
            let mut cmd = redis::cmd("XREAD");
            cmd.arg("COUNT")
                .arg(count)
                .arg("BLOCK")
                .arg(block_ms)
                .arg("STREAMS")
                .arg(&self.key)
                .arg(&self.pos.last_id);
            let reply: Option<StreamReadReply> = tokio::select! {
                () = self.tx.closed() => return Stop::Unsubscribed,
                r = cmd.query_async(con) => match r {
                    Ok(reply) => reply,
                    Err(e) => return Stop::Failed(e.to_string()),
                },
            };
            let entries = reply
                .into_iter()
                .flat_map(|r| r.keys)
                .flat_map(|k| k.ids)
                .collect::<Vec<_>>();
            behind = entries.len() >= count;
            for entry in entries {
                self.pos.last_id = entry.id;
                self.pos.seq += 1;
                let Some(Value::BulkString(bytes)) = entry.map.get(PAYLOAD_FIELD) else {
                    tracing::warn!(
                        topic = %self.topic,
                        id = %self.pos.last_id,
                        "skipping stream entry without a `{PAYLOAD_FIELD}` field"
                    );
                    continue;
                };
                let item = BusItem::Message(Payload::from(bytes.as_slice()));
                match self.tx.try_send(item) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(item)) => {
                        behind = true;
                        if self.tx.send(item).await.is_err() {
                            return Stop::Unsubscribed;
                        }
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return Stop::Unsubscribed,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(length: u64, last: &str, first: &str, added: u64) -> StreamInfo {
        StreamInfo {
            length,
            last_generated_id: last.to_owned(),
            first_entry_id: first.to_owned(),
            entries_added: added,
        }
    }

    fn pos(last: &str, seq: u64) -> Position {
        Position {
            last_id: last.to_owned(),
            seq,
        }
    }

    #[test]
    fn ids_compare_numerically() {
        assert!(id_key("10-0") > id_key("9-5"));
        assert!(id_key("9-10") > id_key("9-9"));
        assert_eq!(id_key("garbage"), (0, 0));
    }

    #[test]
    fn no_gap_when_nothing_after_last_id_was_trimmed() {
        let mut p = pos("100-0", 10);
        // Entries 1..=5 trimmed (first left 60-0 < 100-0), 10 left, 15 added.
        assert_eq!(
            check_gap(&mut p, Some(&info(10, "200-0", "60-0", 15))),
            Gap::None
        );
        assert_eq!(p, pos("100-0", 10));
    }

    #[test]
    fn trimmed_entries_after_last_id_are_counted() {
        // Seen up to entry 10; now 100 added, 30 left starting at 171-0: entries 11..=70
        // were trimmed unseen.
        let mut p = pos("100-0", 10);
        assert_eq!(
            check_gap(&mut p, Some(&info(30, "300-0", "171-0", 100))),
            Gap::Trimmed { skipped: 60 }
        );
        assert_eq!(p.seq, 70);
        assert_eq!(p.last_id, "100-0", "reading resumes after the last id");
    }

    #[test]
    fn a_recreated_stream_is_read_from_the_start() {
        let mut p = pos("100-0", 10);
        assert_eq!(
            check_gap(&mut p, Some(&info(3, "150-0", "148-0", 3))),
            Gap::Recreated
        );
        assert_eq!(p, pos("0-0", 0));
        let mut missing = pos("100-0", 10);
        assert_eq!(check_gap(&mut missing, None), Gap::None);
        assert_eq!(missing, pos("100-0", 0));
    }
}
