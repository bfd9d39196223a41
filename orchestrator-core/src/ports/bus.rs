//! The `EventBus` port: fan-out publish/subscribe of JSON payloads by topic, plus a typed
//! layer ([`EventBusExt`]) that encodes and decodes [`Event`]s. Implementations: the
//! in-memory bus ([`crate::memory::bus::InMemoryBus`]) and Redis Streams (adapters crate).

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::{BoxStream, Stream, StreamExt};

use crate::events::Event;

/// An immutable message body (UTF-8 JSON for every topic we use). Cheap to clone: every
/// subscriber of a fan-out shares the same body.
///
/// A payload made by [`Payload::event`] also carries the event itself, so an in-process
/// bus hands subscribers the value without any JSON: it is encoded only when someone
/// reads the bytes (a Redis `XADD`, a raw subscriber), once, and [`decode_event`] takes the
/// typed value when its type matches. Equality and hashing are over the bytes.
#[derive(Clone)]
pub struct Payload(Body);

#[derive(Clone)]
enum Body {
    Bytes(Arc<[u8]>),
    Typed(Arc<TypedBody>),
}

struct TypedBody {
    value: Arc<dyn std::any::Any + Send + Sync>,
    encoded: std::sync::OnceLock<Arc<[u8]>>,
    encode: fn(&(dyn std::any::Any + Send + Sync)) -> Vec<u8>,
}

fn encode_as<E: Event>(value: &(dyn std::any::Any + Send + Sync)) -> Vec<u8> {
    // `Event` types are plain data with string-keyed maps: serde_json cannot fail on them.
    value
        .downcast_ref::<E>()
        .and_then(|e| serde_json::to_vec(e).ok())
        .unwrap_or_default()
}

impl Payload {
    /// The bytes (encoding a typed payload on first use).
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Body::Bytes(b) => b,
            Body::Typed(t) => t
                .encoded
                .get_or_init(|| (t.encode)(t.value.as_ref()).into()),
        }
    }

    /// Serialises `value` as JSON.
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        serde_json::to_vec(value).map(Payload::from)
    }

    /// A payload carrying `event` itself; JSON is produced lazily (see the type docs).
    pub fn event<E: Event>(event: E) -> Self {
        Payload(Body::Typed(Arc::new(TypedBody {
            value: Arc::new(event),
            encoded: std::sync::OnceLock::new(),
            encode: encode_as::<E>,
        })))
    }

    /// The carried event, when this payload was made by [`Payload::event`] with type `E`.
    pub fn typed<E: Event>(&self) -> Option<&E> {
        match &self.0 {
            Body::Typed(t) => t.value.downcast_ref::<E>(),
            Body::Bytes(_) => None,
        }
    }

    /// The carried event as a shared handle (no copy), when made by [`Payload::event`]
    /// with type `E`.
    pub fn typed_arc<E: Event>(&self) -> Option<Arc<E>> {
        match &self.0 {
            Body::Typed(t) => t.value.clone().downcast::<E>().ok(),
            Body::Bytes(_) => None,
        }
    }

    /// At most `max` bytes of the payload as lossy UTF-8, for error messages and logs.
    pub fn excerpt(&self, max: usize) -> String {
        let bytes = self.as_bytes();
        let end = bytes.len().min(max);
        let mut text = String::from_utf8_lossy(&bytes[..end]).into_owned();
        if end < bytes.len() {
            text.push('…');
        }
        text
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Payload {}

impl std::hash::Hash for Payload {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl Deref for Payload {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl From<Vec<u8>> for Payload {
    fn from(v: Vec<u8>) -> Self {
        Payload(Body::Bytes(v.into()))
    }
}

impl From<&[u8]> for Payload {
    fn from(v: &[u8]) -> Self {
        Payload(Body::Bytes(v.into()))
    }
}

impl From<String> for Payload {
    fn from(s: String) -> Self {
        Payload::from(s.into_bytes())
    }
}

impl From<&str> for Payload {
    fn from(s: &str) -> Self {
        Payload::from(s.as_bytes())
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Payload({:?})", self.excerpt(120))
    }
}

/// One item of a [`Subscription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusItem {
    /// A message published on the subscribed topic.
    Message(Payload),
    /// The subscriber fell behind and `skipped` messages were dropped for it; the stream
    /// continues with the oldest message still available. Never silent: consumers decide
    /// whether to resynchronise (for example re-read the full mappings).
    Lagged {
        /// How many messages this subscriber missed.
        skipped: u64,
    },
}

/// Errors of [`EventBus`] operations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// The transport cannot be reached right now (connection refused or lost, timeout);
    /// retrying later may succeed.
    #[error("event bus unavailable: {reason}")]
    Unavailable {
        /// What failed, from the transport.
        reason: String,
        /// The transport's error, when one caused it.
        #[source]
        source: Option<crate::error_source::ErrorSource>,
    },
    /// The bus was shut down; no publish or subscribe on it will succeed again.
    #[error("event bus is closed")]
    Closed,
    /// The topic name cannot be used (empty, or not representable by the transport).
    #[error("invalid topic `{topic}`: {reason}")]
    InvalidTopic {
        /// The rejected topic.
        topic: String,
        /// Why it was rejected.
        reason: String,
    },
    /// An event could not be serialised to JSON (typed layer only).
    #[error("cannot encode event for topic `{topic}`: {reason}")]
    Encode {
        /// Topic the event was meant for.
        topic: String,
        /// The serialiser's message.
        reason: String,
    },
}

/// Rejects topic names no transport can carry (empty or containing whitespace/control
/// characters). Implementations call this first so every bus agrees on what is valid.
pub fn validate_topic(topic: &str) -> Result<(), BusError> {
    // Fast path (every publish checks its topic): printable ASCII is always valid.
    if !topic.is_empty() && topic.bytes().all(|b| b.is_ascii_graphic()) {
        return Ok(());
    }
    let reason = if topic.is_empty() {
        "topic is empty"
    } else if topic.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "topic contains whitespace or control characters"
    } else {
        return Ok(());
    };
    Err(BusError::InvalidTopic {
        topic: topic.to_owned(),
        reason: reason.to_owned(),
    })
}

/// A live subscription to one topic: a stream of [`BusItem`]s in publish order per
/// publisher. It ends only when the bus shuts down; dropping it unsubscribes.
pub struct Subscription {
    topic: String,
    inner: BoxStream<'static, BusItem>,
}

impl Subscription {
    /// Wraps an implementation's stream (for adapters).
    pub fn new(topic: impl Into<String>, inner: BoxStream<'static, BusItem>) -> Self {
        Subscription {
            topic: topic.into(),
            inner,
        }
    }

    /// The subscribed topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Decodes every message as `E`; see [`EventBusExt::subscribe_events`].
    pub fn into_events<E: Event>(self) -> EventSubscription<E> {
        EventSubscription {
            topic: self.topic,
            inner: self.inner,
            _event: PhantomData,
        }
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl Stream for Subscription {
    type Item = BusItem;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<BusItem>> {
        self.inner.poll_next_unpin(cx)
    }
}

/// The port: fan-out publish/subscribe. Every subscriber sees every message published on
/// its topic after `subscribe` returned, in publish order per publisher. Object safe; the
/// host holds it as `Arc<dyn EventBus>`.
#[async_trait]
pub trait EventBus: Send + Sync {
    /// Publishes `payload` on `topic`. Never waits for consumers; publishing to a topic
    /// nobody subscribes to succeeds and the message is dropped.
    async fn publish(&self, topic: &str, payload: Payload) -> Result<(), BusError>;

    /// Subscribes to `topic`. Messages published after this returns are delivered; older
    /// ones are not.
    async fn subscribe(&self, topic: &str) -> Result<Subscription, BusError>;

    /// How many times this bus's subscriptions got their connection back after losing it,
    /// since the bus was made (0 for a bus that cannot lose one).
    fn reconnects(&self) -> u64 {
        0
    }
}

// Written out rather than with `#[async_trait]`: the inner bus's future is returned as it
// is, so a call through an `Arc` boxes one future, not two (publishing is hot).
impl<T: EventBus + ?Sized> EventBus for Arc<T> {
    fn publish<'life0, 'life1, 'async_trait>(
        &'life0 self,
        topic: &'life1 str,
        payload: Payload,
    ) -> BoxFuture<'async_trait, Result<(), BusError>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        (**self).publish(topic, payload)
    }

    fn subscribe<'life0, 'life1, 'async_trait>(
        &'life0 self,
        topic: &'life1 str,
    ) -> BoxFuture<'async_trait, Result<Subscription, BusError>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        (**self).subscribe(topic)
    }

    fn reconnects(&self) -> u64 {
        (**self).reconnects()
    }
}

// === typed layer ===

/// A message on an event topic that is not a valid JSON encoding of the event type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed `{topic}` message: {reason} (payload: {excerpt})")]
pub struct DecodeError {
    /// Topic the message arrived on.
    pub topic: String,
    /// The JSON decoder's message (with line and column).
    pub reason: String,
    /// The first bytes of the payload, lossy UTF-8.
    pub excerpt: String,
}

/// A non-event item of an [`EventSubscription`]. Neither ends the stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventStreamError {
    /// One message could not be decoded; the next message is delivered as usual.
    #[error(transparent)]
    Malformed(#[from] DecodeError),
    /// The subscriber fell behind and missed `skipped` messages (see [`BusItem::Lagged`]).
    #[error("subscriber lagged on `{topic}` and missed {skipped} messages")]
    Lagged {
        /// Topic of the subscription.
        topic: String,
        /// How many messages were missed.
        skipped: u64,
    },
}

/// How much of a malformed payload a [`DecodeError`] quotes.
const EXCERPT_BYTES: usize = 200;

/// Decodes one payload as `E`.
pub fn decode_event<E: Event>(topic: &str, payload: &Payload) -> Result<E, DecodeError> {
    if let Some(event) = payload.typed::<E>() {
        return Ok(event.clone());
    }
    serde_json::from_slice(payload.as_bytes()).map_err(|e| DecodeError {
        topic: topic.to_owned(),
        reason: e.to_string(),
        excerpt: payload.excerpt(EXCERPT_BYTES),
    })
}

/// A subscription that decodes each message as `E`. Yields `Ok(event)`, or an
/// [`EventStreamError`] for a malformed message or a lag; errors never end the stream.
pub struct EventSubscription<E> {
    topic: String,
    inner: BoxStream<'static, BusItem>,
    _event: PhantomData<fn() -> E>,
}

impl<E> EventSubscription<E> {
    /// The subscribed topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }
}

impl<E> fmt::Debug for EventSubscription<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventSubscription")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl<E> EventSubscription<E> {
    /// The same subscription yielding shared events: an in-process event is handed over
    /// without a copy (every subscriber of a fan-out shares it), a JSON one is decoded once.
    /// For hot consumers such as heartbeat ingestion.
    pub fn into_shared(self) -> SharedEventSubscription<E> {
        SharedEventSubscription { inner: self }
    }
}

/// An [`EventSubscription`] yielding `Arc<E>`; see [`EventSubscription::into_shared`].
#[derive(Debug)]
pub struct SharedEventSubscription<E> {
    inner: EventSubscription<E>,
}

impl<E: Event> Stream for SharedEventSubscription<E> {
    type Item = Result<Arc<E>, EventStreamError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let sub = &mut self.inner;
        let item = match sub.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(item)) => item,
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        Poll::Ready(Some(match item {
            BusItem::Message(payload) => match payload.typed_arc::<E>() {
                Some(event) => Ok(event),
                None => decode_event(&sub.topic, &payload)
                    .map(Arc::new)
                    .map_err(EventStreamError::from),
            },
            BusItem::Lagged { skipped } => Err(EventStreamError::Lagged {
                topic: sub.topic.clone(),
                skipped,
            }),
        }))
    }
}

impl<E: Event> Stream for EventSubscription<E> {
    type Item = Result<E, EventStreamError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = match self.inner.poll_next_unpin(cx) {
            Poll::Ready(Some(item)) => item,
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        Poll::Ready(Some(match item {
            BusItem::Message(payload) => {
                decode_event(&self.topic, &payload).map_err(EventStreamError::from)
            }
            BusItem::Lagged { skipped } => Err(EventStreamError::Lagged {
                topic: self.topic.clone(),
                skipped,
            }),
        }))
    }
}

/// Typed publish/subscribe on top of any [`EventBus`] (including `dyn EventBus`): the topic
/// comes from [`Event::TOPIC`] and the body is the event's JSON.
///
/// ```
/// use std::sync::Arc;
/// use futures::StreamExt;
/// use orchestrator_core::events::{DeploymentAction, DeploymentEvent};
/// use orchestrator_core::memory::bus::InMemoryBus;
/// use orchestrator_core::ports::bus::{EventBus, EventBusExt};
/// use orchestrator_core::Timestamp;
///
/// # futures::executor::block_on(async {
/// let bus: Arc<dyn EventBus> = Arc::new(InMemoryBus::new());
/// let mut events = bus.subscribe_events::<DeploymentEvent>().await.unwrap();
/// let event = DeploymentEvent {
///     event_id: uuid::Uuid::new_v4(),
///     timestamp: Timestamp::from_unix_millis(0),
///     action: DeploymentAction::Started,
///     deployment_id: "d-1".to_owned(),
///     preset: None,
///     backend: None,
///     changes: None,
///     error: None,
/// };
/// bus.publish_event(&event).await.unwrap();
/// assert_eq!(events.next().await, Some(Ok(event)));
/// # });
/// ```
///
/// Both methods return the bus's own future (no second boxed future per call).
pub trait EventBusExt: EventBus {
    /// Publishes `event` on `E::TOPIC` (as [`Payload::event`]: an in-process bus passes the
    /// value itself, an out-of-process one encodes it as JSON). Copies `event`; a caller
    /// that builds an event only to publish it can hand it over with
    /// [`publish_owned`](Self::publish_owned).
    fn publish_event<E: Event>(&self, event: &E) -> BoxFuture<'_, Result<(), BusError>> {
        self.publish(E::TOPIC, Payload::event(event.clone()))
    }

    /// [`publish_event`](Self::publish_event) without the copy.
    fn publish_owned<E: Event>(&self, event: E) -> BoxFuture<'_, Result<(), BusError>> {
        self.publish(E::TOPIC, Payload::event(event))
    }

    /// Subscribes to `E::TOPIC`, decoding each message as `E`.
    fn subscribe_events<E: Event>(&self) -> BoxFuture<'_, Result<EventSubscription<E>, BusError>> {
        self.subscribe(E::TOPIC)
            .map(|r| r.map(Subscription::into_events))
            .boxed()
    }
}

impl<B: EventBus + ?Sized> EventBusExt for B {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{DeploymentAction, DeploymentEvent};
    use crate::time::Timestamp;

    #[test]
    fn a_typed_payload_hands_back_its_event_and_encodes_lazily_to_the_same_json() {
        let e = event();
        let typed = Payload::event(e.clone());
        assert_eq!(typed.typed::<DeploymentEvent>(), Some(&e));
        assert!(
            typed
                .typed::<crate::events::ProcessorReleasedEvent>()
                .is_none()
        );
        // Bytes on demand equal what the JSON path writes; equality is over the bytes.
        let json = Payload::json(&e).unwrap();
        assert_eq!(typed.as_bytes(), json.as_bytes());
        assert_eq!(typed, json);
        assert_eq!(decode_event::<DeploymentEvent>("t", &typed).unwrap(), e);
        assert_eq!(decode_event::<DeploymentEvent>("t", &json).unwrap(), e);
        assert!(json.typed::<DeploymentEvent>().is_none());
        let shared = typed.typed_arc::<DeploymentEvent>().unwrap();
        assert!(
            Arc::ptr_eq(&shared, &typed.typed_arc::<DeploymentEvent>().unwrap()),
            "shared, not copied"
        );
    }

    #[test]
    fn shared_subscriptions_pass_in_process_events_without_copies_and_decode_json() {
        futures::executor::block_on(async {
            let bus = crate::memory::bus::InMemoryBus::new();
            let mut a = bus
                .subscribe_events::<DeploymentEvent>()
                .await
                .unwrap()
                .into_shared();
            let mut b = bus
                .subscribe_events::<DeploymentEvent>()
                .await
                .unwrap()
                .into_shared();
            bus.publish_event(&event()).await.unwrap();
            let (x, y) = (
                a.next().await.unwrap().unwrap(),
                b.next().await.unwrap().unwrap(),
            );
            assert!(Arc::ptr_eq(&x, &y), "fan-out shares one event");
            assert_eq!(*x, event());
            bus.publish(DeploymentEvent::TOPIC, Payload::json(&event()).unwrap())
                .await
                .unwrap();
            assert_eq!(
                *a.next().await.unwrap().unwrap(),
                event(),
                "JSON payloads are decoded"
            );
            bus.publish(DeploymentEvent::TOPIC, Payload::from("{"))
                .await
                .unwrap();
            assert!(matches!(
                a.next().await,
                Some(Err(EventStreamError::Malformed(_)))
            ));
        });
    }

    fn event() -> DeploymentEvent {
        DeploymentEvent {
            event_id: uuid::Uuid::nil(),
            timestamp: Timestamp::from_unix_millis(1_700_000_000_000),
            action: DeploymentAction::Started,
            deployment_id: "d-1".to_owned(),
            preset: Some("local".to_owned()),
            backend: None,
            changes: None,
            error: None,
        }
    }

    #[test]
    fn topics_are_validated() {
        assert!(validate_topic("bannou.service-heartbeat").is_ok());
        assert!(matches!(
            validate_topic(""),
            Err(BusError::InvalidTopic { .. })
        ));
        assert!(matches!(
            validate_topic("a b"),
            Err(BusError::InvalidTopic { .. })
        ));
    }

    #[test]
    fn decode_reports_topic_reason_and_excerpt() {
        let good = Payload::json(&event()).unwrap();
        assert_eq!(
            decode_event::<DeploymentEvent>("t", &good).unwrap(),
            event()
        );

        let bad = Payload::from("{\"eventId\": 42");
        let err = decode_event::<DeploymentEvent>("t", &bad).unwrap_err();
        assert_eq!(err.topic, "t");
        assert_eq!(err.excerpt, "{\"eventId\": 42");
        assert!(!err.reason.is_empty());
    }

    #[test]
    fn excerpt_truncates_and_survives_invalid_utf8() {
        let p = Payload::from(vec![b'a', b'b', 0xff, b'c']);
        assert_eq!(p.excerpt(2), "ab…");
        assert_eq!(p.excerpt(10), "ab\u{fffd}c");
    }

    #[test]
    fn typed_stream_maps_items_without_ending() {
        let items = vec![
            BusItem::Message(Payload::from("nope")),
            BusItem::Lagged { skipped: 3 },
            BusItem::Message(Payload::json(&event()).unwrap()),
        ];
        let sub = Subscription::new("t", futures::stream::iter(items).boxed());
        let out: Vec<_> =
            futures::executor::block_on(sub.into_events::<DeploymentEvent>().collect());
        assert_eq!(out.len(), 3);
        assert!(matches!(out[0], Err(EventStreamError::Malformed(_))));
        assert_eq!(
            out[1],
            Err(EventStreamError::Lagged {
                topic: "t".to_owned(),
                skipped: 3
            })
        );
        assert_eq!(out[2], Ok(event()));
    }
}
