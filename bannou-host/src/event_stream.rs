//! The event stream hub behind `GET /orchestrator/events`: one task per replica subscribes
//! to every topic the control plane publishes on its bus (on Redis the bus is shared, so
//! every replica's events arrive here), numbers each event, keeps the last
//! [`BUFFER_CAPACITY`] in memory for `Last-Event-ID` resumes and fans them out to clients.
//!
//! Invariants: ids grow strictly within a replica's life and start at the replica's start
//! time in microseconds, so an id from an earlier life of the replica is older than its
//! buffer (the client gets a `reset`); publishing never waits for a client (the fan-out
//! is a bounded [`broadcast`] channel; a client that falls [`CLIENT_CAPACITY`] events
//! behind gets a `lagged` item and its stream ends); raw heartbeats are never buffered
//! nor numbered and reach only clients that name `service.heartbeat` in their filter.
//! When the host shuts down, every client stream ends. Each event's text and SSE frame
//! are made at most once, when the first client needs them, and shared by every client
//! that gets it ([`StreamEvent`]).
//!
//! Wave progress travels on the bus as [`WaveEvent`]s (`wave`); what clients receive is
//! `item`, what they ask for is [`Filter`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use futures::stream::{self, BoxStream, Stream, StreamExt};
use orchestrator_core::events::{ServiceHeartbeatEvent, topics};
use orchestrator_core::ports::bus::{BusError, BusItem, EventBus, Payload};
use serde::Deserialize;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::control_events::{
    CONTROL_TOPIC, LEADER_CHANGED_TYPE, RECONCILE_REPAIRED_TYPE, ROUTING_ACK_TIMEOUT_TYPE,
};
use crate::orchestrator::pool_events;

mod filter;
mod item;
mod wave;

pub use filter::Filter;
pub use item::{StreamEvent, StreamItem, sse_frame};
pub use wave::{
    TOPOLOGY_PHASE, WAVE_TOPIC, WaveEvent, WaveProgress, WaveState, publish_wave, within_deployment,
};

/// How many numbered events the hub keeps for `Last-Event-ID` resumes.
pub const BUFFER_CAPACITY: usize = 10_000;

/// How many events a client may fall behind before it is told (`lagged`) and dropped.
pub const CLIENT_CAPACITY: usize = 1_024;

/// The stream's name for a raw heartbeat (sent only when a filter names it).
pub const HEARTBEAT_TYPE: &str = "service.heartbeat";

/// The stream's name for a health change seen by the heartbeat consumer.
pub const HEALTH_CHANGED_TYPE: &str = "health.changed";

/// The stream's name for a node reporting, in its heartbeat, a mappings version it had
/// not reported before (seen by the heartbeat consumer).
pub const ROUTING_APPLIED_TYPE: &str = "routing.applied";

/// Every event type a client may name in `?types=` (a prefix before a `.` also matches,
/// e.g. `wave` or `deployment`).
pub const EVENT_TYPES: &[&str] = &[
    "deployment.started",
    "deployment.completed",
    "deployment.failed",
    "deployment.topology-changed",
    "wave.started",
    "wave.healthy",
    "wave.failed",
    "wave.torn-down",
    "routing.published",
    ROUTING_APPLIED_TYPE,
    "lease.granted",
    "lease.released",
    "lease.expired",
    "pool.scaled",
    "pool.worker-draining",
    "service.restarted",
    "service.error",
    "health.ping",
    HEALTH_CHANGED_TYPE,
    "configuration.changed",
    LEADER_CHANGED_TYPE,
    RECONCILE_REPAIRED_TYPE,
    ROUTING_ACK_TIMEOUT_TYPE,
    HEARTBEAT_TYPE,
];

/// Topics the hub follows, with the stream's name for each (deployment events and waves
/// are refined by their `action` / `state` field).
const FOLLOWED: &[(&str, &str)] = &[
    (topics::DEPLOYMENT_EVENTS, "deployment"),
    (WAVE_TOPIC, "wave"),
    (topics::FULL_SERVICE_MAPPINGS, "routing.published"),
    (topics::PROCESSOR_RELEASED, "lease.released"),
    (pool_events::LEASE_GRANTED_TOPIC, "lease.granted"),
    (pool_events::LEASE_EXPIRED_TOPIC, "lease.expired"),
    (pool_events::POOL_SCALED_TOPIC, "pool.scaled"),
    (pool_events::WORKER_DRAINING_TOPIC, "pool.worker-draining"),
    (topics::SERVICE_LIFECYCLE, "service.restarted"),
    (topics::SERVICE_ERROR, "service.error"),
    (topics::HEALTH_PING, "health.ping"),
    (topics::CONFIGURATION_EVENTS, "configuration.changed"),
    (topics::SERVICE_HEARTBEAT, HEARTBEAT_TYPE),
    (CONTROL_TOPIC, "control"),
];

/// [`FOLLOWED`] kinds whose events carry no `deploymentId` and have one type each: the
/// hub reads nothing of them (see [`EventHub::publish_payload`]).
const NAMES_NO_DEPLOYMENT: &[&str] = &[
    HEARTBEAT_TYPE,
    "lease.released",
    "lease.granted",
    "lease.expired",
    "pool.scaled",
    "pool.worker-draining",
];

/// The fields of an event's JSON the hub reads to name and filter it; every other field
/// is skipped unread (no JSON tree is built) and travels only in the raw text. A field of
/// an unexpected type reads as absent, as a body that is not a JSON object reads as none.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Fields {
    #[serde(default)]
    action: Option<serde_json::Value>,
    #[serde(default)]
    state: Option<serde_json::Value>,
    #[serde(default)]
    kind: Option<serde_json::Value>,
    #[serde(default)]
    deployment_id: Option<serde_json::Value>,
}

impl Fields {
    /// `field` when it is a string.
    fn text(field: &Option<serde_json::Value>) -> Option<&str> {
        field.as_ref().and_then(serde_json::Value::as_str)
    }
}

struct Buffer {
    next_id: u64,
    events: VecDeque<Arc<StreamEvent>>,
    /// `None` once the hub stopped: no new client, and live streams end.
    live: Option<broadcast::Sender<Arc<StreamEvent>>>,
    beats: Option<broadcast::Sender<Arc<StreamEvent>>>,
}

/// The hub: cheap to clone, shared by the route and the task that feeds it.
#[derive(Clone)]
pub struct EventHub {
    buffer: Arc<Mutex<Buffer>>,
}

impl std::fmt::Debug for EventHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHub").finish_non_exhaustive()
    }
}

impl EventHub {
    /// Subscribes to every followed topic of `bus` (before returning, so nothing published
    /// afterwards is missed) and spawns the task that feeds the hub until `shutdown` turns
    /// true or the bus closes.
    pub async fn start(
        bus: Arc<dyn EventBus>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(EventHub, JoinHandle<Result<(), String>>), BusError> {
        let hub = EventHub::for_replica();
        let task = hub.follow(bus, shutdown).await?;
        Ok((hub, task))
    }

    /// An empty hub numbering from this replica's start time (see the module docs); it
    /// gets events from [`EventHub::follow`] and [`EventHub::health_changed`].
    pub fn for_replica() -> EventHub {
        EventHub::new(first_id())
    }

    /// Subscribes to every followed topic of `bus` (before returning) and spawns the task
    /// that feeds this hub until `shutdown` turns true or the bus closes; then every
    /// client stream ends.
    pub async fn follow(
        &self,
        bus: Arc<dyn EventBus>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<JoinHandle<Result<(), String>>, BusError> {
        let mut subscriptions = Vec::with_capacity(FOLLOWED.len());
        for (topic, kind) in FOLLOWED {
            let sub = bus.subscribe(topic).await?;
            subscriptions.push(sub.map(move |item| (*kind, item)).boxed());
        }
        let mut merged: BoxStream<'static, (&'static str, BusItem)> =
            stream::select_all(subscriptions).boxed();
        let feeder = self.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.wait_for(|stop| *stop) => break,
                    item = merged.next() => match item {
                        Some((kind, BusItem::Message(payload))) => {
                            feeder.publish_payload(kind, payload);
                        }
                        Some((kind, BusItem::Lagged { skipped })) => {
                            tracing::warn!(kind, skipped, "event stream missed bus messages");
                        }
                        None => break,
                    },
                }
            }
            feeder.close();
            Ok(())
        });
        Ok(task)
    }

    /// A node's health as this replica's heartbeat consumer saw it change (a new
    /// instance, a service's status, its service set): `health.changed`, with the
    /// heartbeat's node, instance, statuses and issues. Every replica consumes every
    /// heartbeat, so each reports the changes it sees to its own clients only.
    pub fn health_changed(&self, hb: &ServiceHeartbeatEvent, new_instance: bool) {
        let data = serde_json::json!({
            "appId": hb.app_id,
            "instanceId": hb.service_id,
            "status": hb.status,
            "services": hb.services.iter().map(|s| serde_json::json!({
                "serviceName": s.service_name,
                "status": s.status,
            })).collect::<Vec<_>>(),
            "issues": hb.issues,
            "newInstance": new_instance,
            "timestamp": hb.timestamp,
        });
        self.publish(HEALTH_CHANGED_TYPE, data.to_string().as_bytes());
    }

    /// A node reported applying a mappings version it had not reported before:
    /// `routing.applied`, with its node, instance and version. Like
    /// [`health_changed`](Self::health_changed), each replica reports what its own
    /// heartbeat consumer sees.
    pub fn routing_applied(&self, hb: &ServiceHeartbeatEvent, version: i64) {
        let data = serde_json::json!({
            "appId": hb.app_id,
            "instanceId": hb.service_id,
            "version": version,
            "timestamp": hb.timestamp,
        });
        self.publish(ROUTING_APPLIED_TYPE, data.to_string().as_bytes());
    }

    /// An empty hub whose first event gets `first_id` (tests; [`EventHub::start`] feeds one
    /// from the bus).
    pub fn new(first_id: u64) -> EventHub {
        let (live, _) = broadcast::channel(CLIENT_CAPACITY);
        let (beats, _) = broadcast::channel(CLIENT_CAPACITY);
        EventHub {
            buffer: Arc::new(Mutex::new(Buffer {
                next_id: first_id.max(1),
                events: VecDeque::new(),
                live: Some(live),
                beats: Some(beats),
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buffer> {
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Numbers, buffers and fans out one message of topic kind `kind` (a `FOLLOWED`
    /// name) with JSON body `json`.
    pub fn publish(&self, kind: &'static str, json: &[u8]) {
        self.publish_payload(kind, Payload::from(json));
    }

    /// [`publish`](Self::publish) for a bus payload as it arrived: an event of a kind
    /// that names no deployment (the pool events, raw heartbeats) is neither decoded nor
    /// encoded here.
    pub fn publish_payload(&self, kind: &'static str, body: Payload) {
        let fields: Fields = if NAMES_NO_DEPLOYMENT.contains(&kind) {
            Fields::default()
        } else {
            serde_json::from_slice(body.as_bytes()).unwrap_or_default()
        };
        let kind = match kind {
            "deployment" => match Fields::text(&fields.action) {
                Some("Started") => "deployment.started",
                Some("Completed") => "deployment.completed",
                Some("Failed") => "deployment.failed",
                _ => "deployment.topology-changed",
            },
            "wave" => fields
                .state
                .and_then(|s| serde_json::from_value::<WaveState>(s).ok())
                .map_or("wave.started", WaveState::type_name),
            "control" => match Fields::text(&fields.kind) {
                Some(LEADER_CHANGED_TYPE) => LEADER_CHANGED_TYPE,
                Some(ROUTING_ACK_TIMEOUT_TYPE) => ROUTING_ACK_TIMEOUT_TYPE,
                _ => RECONCILE_REPAIRED_TYPE,
            },
            other => other,
        };
        let deployment = match fields.deployment_id {
            Some(serde_json::Value::String(id)) => Some(id),
            _ => None,
        };
        let mut buffer = self.lock();
        if kind == HEARTBEAT_TYPE {
            // Only clients that asked for heartbeats get them: with none, a beat costs
            // this check (every replica ingests every beat).
            if let Some(beats) = &buffer.beats
                && beats.receiver_count() > 0
            {
                let _ = beats.send(Arc::new(StreamEvent::new(None, kind, deployment, body)));
            }
            return;
        }
        let id = buffer.next_id;
        buffer.next_id += 1;
        let event = Arc::new(StreamEvent::new(Some(id), kind, deployment, body));
        if buffer.events.len() == BUFFER_CAPACITY {
            buffer.events.pop_front();
        }
        buffer.events.push_back(event.clone());
        if let Some(live) = &buffer.live {
            // No receiver is not an error: nobody listens right now.
            let _ = live.send(event);
        }
    }

    /// Ends every client stream and refuses new ones.
    pub fn close(&self) {
        let mut buffer = self.lock();
        buffer.live = None;
        buffer.beats = None;
    }

    /// A client's stream: the buffered events after `last_event_id` (or a
    /// [`StreamItem::Reset`] when they are gone), then live ones, all through `filter`.
    /// `None` when the hub has stopped.
    pub fn subscribe(
        &self,
        filter: Filter,
        last_event_id: Option<u64>,
    ) -> Option<impl Stream<Item = StreamItem> + Send + 'static> {
        let buffer = self.lock();
        // Subscribed under the lock: nothing can be published between the replay and the
        // first live event.
        let live = buffer.live.as_ref()?.subscribe();
        let beats = filter
            .wants_heartbeats()
            .then(|| buffer.beats.as_ref().map(broadcast::Sender::subscribe))
            .flatten();
        let mut first: Vec<StreamItem> = Vec::new();
        let mut replayed_to = 0;
        if let Some(last) = last_event_id {
            let oldest = buffer.events.front().and_then(|e| e.id);
            let newest = buffer.next_id - 1;
            // Resumable when every event after `last` is still here: `last` is at least
            // the one before the oldest kept (or, with nothing kept, the newest issued).
            let resumable = match oldest {
                Some(o) => last + 1 >= o && last <= newest,
                None => last == newest,
            };
            if resumable {
                first.extend(
                    buffer
                        .events
                        .iter()
                        .filter(|e| e.id.is_some_and(|id| id > last) && filter.matches(e))
                        .cloned()
                        .map(StreamItem::Event),
                );
            } else {
                first.push(StreamItem::Reset {
                    requested: last,
                    oldest,
                });
            }
            replayed_to = newest;
        }
        drop(buffer);
        let filter = Arc::new(filter);
        let live = live_items(live, filter.clone(), replayed_to);
        let items: BoxStream<'static, StreamItem> = match beats {
            Some(beats) => stream::select(live, live_items(beats, filter, 0)).boxed(),
            None => live.boxed(),
        };
        Some(stream::iter(first).chain(items))
    }
}

/// Items of one broadcast receiver through `filter`, skipping ids up to `replayed_to`;
/// ends after a `Lagged` item or when the hub closes.
fn live_items(
    rx: broadcast::Receiver<Arc<StreamEvent>>,
    filter: Arc<Filter>,
    replayed_to: u64,
) -> impl Stream<Item = StreamItem> + Send + 'static {
    stream::unfold(Some(rx), move |rx| {
        let filter = filter.clone();
        async move {
            let mut rx = rx?;
            loop {
                match rx.recv().await {
                    Ok(e) if e.id.is_some_and(|id| id <= replayed_to) => {}
                    Ok(e) if filter.matches(&e) => return Some((StreamItem::Event(e), Some(rx))),
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(skipped)) => {
                        return Some((StreamItem::Lagged { skipped }, None));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    })
}

/// The first id of a replica's life: its start time in microseconds since the Unix epoch
/// (larger than any id of its earlier lives while it publishes fewer than a million
/// events a second; below 2^53, so JavaScript reads it exactly).
fn first_id() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2))
}

#[cfg(test)]
mod tests;
