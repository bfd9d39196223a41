//! In-memory `EventBus` over tokio broadcast channels, one per topic, created on first
//! subscribe. The embedded default and the stand-in for Redis Streams in tests; it passes
//! [`crate::testkit::bus::bus_conformance`].

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use futures::stream::{self, StreamExt};
use rustc_hash::FxHashMap;
use tokio::sync::broadcast;

use crate::ports::bus::{BusError, BusItem, EventBus, Payload, Subscription, validate_topic};

/// Messages buffered per topic before the slowest subscriber starts lagging.
pub const DEFAULT_CAPACITY: usize = 65_536;

/// Largest accepted per-topic capacity; larger requests are clamped (the channel
/// allocates its whole ring up front).
pub const MAX_CAPACITY: usize = 1 << 20;

/// Fan-out bus inside one process. Cheap to clone; clones share the topics.
///
/// A std `Mutex` guards the topic map: the critical sections are a map lookup plus a
/// non-blocking `send`, never an `.await`. Publishing while holding it also gives every
/// topic a single total order.
#[derive(Debug, Clone)]
pub struct InMemoryBus {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    capacity: usize,
    state: Mutex<State>,
}

/// Topics are few, short and looked up on every publish: Fx-hashed.
#[derive(Debug, Default)]
struct State {
    closed: bool,
    topics: FxHashMap<String, broadcast::Sender<Payload>>,
}

impl Default for InMemoryBus {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemoryBus {
    /// A bus buffering [`DEFAULT_CAPACITY`] messages per topic.
    pub fn new() -> Self {
        Self::build(DEFAULT_CAPACITY)
    }

    /// A bus buffering `capacity` messages per topic (clamped to [`MAX_CAPACITY`]). A
    /// subscriber more than `capacity` messages behind gets [`BusItem::Lagged`].
    pub fn with_capacity(capacity: NonZeroUsize) -> Self {
        Self::build(capacity.get().min(MAX_CAPACITY))
    }

    fn build(capacity: usize) -> Self {
        InMemoryBus {
            shared: Arc::new(Shared {
                capacity,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// The per-topic capacity in messages.
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// Number of live subscriptions on `topic`.
    pub fn subscriber_count(&self, topic: &str) -> usize {
        self.lock()
            .topics
            .get(topic)
            .map_or(0, broadcast::Sender::receiver_count)
    }

    /// Shuts the bus down for every clone: later calls fail with [`BusError::Closed`] and
    /// open subscriptions end after delivering what was already published.
    pub fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.topics.clear();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the map inconsistent: every mutation is one call.
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl EventBus for InMemoryBus {
    async fn publish(&self, topic: &str, payload: Payload) -> Result<(), BusError> {
        let mut state = self.lock();
        if state.closed {
            // Same answer order as before: an invalid topic is reported first.
            validate_topic(topic)?;
            return Err(BusError::Closed);
        }
        let unused = match state.topics.get(topic) {
            // `send` fails only when no receiver is left; then the channel is dropped
            // (a later subscribe recreates it). A subscribed topic passed
            // `validate_topic` when it was subscribed: not checked again per message.
            Some(sender) => sender.send(payload).is_err(),
            None => {
                drop(state);
                return validate_topic(topic);
            }
        };
        if unused {
            state.topics.remove(topic);
        }
        Ok(())
    }

    async fn subscribe(&self, topic: &str) -> Result<Subscription, BusError> {
        validate_topic(topic)?;
        let mut state = self.lock();
        if state.closed {
            return Err(BusError::Closed);
        }
        let capacity = self.shared.capacity;
        let receiver = state
            .topics
            .entry(topic.to_owned())
            .or_insert_with(|| broadcast::channel(capacity).0)
            .subscribe();
        let items = stream::unfold(receiver, |mut rx| async move {
            match rx.recv().await {
                Ok(payload) => Some((BusItem::Message(payload), rx)),
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    Some((BusItem::Lagged { skipped }, rx))
                }
                Err(broadcast::error::RecvError::Closed) => None,
            }
        });
        Ok(Subscription::new(topic, items.boxed()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn passes_the_conformance_suite() {
        crate::testkit::bus::bus_conformance(|| async {
            Arc::new(InMemoryBus::new()) as Arc<dyn EventBus>
        })
        .await;
    }

    #[tokio::test]
    async fn slow_subscriber_gets_an_explicit_lag_then_the_rest() {
        let bus = InMemoryBus::with_capacity(NonZeroUsize::new(4).unwrap());
        let mut sub = bus.subscribe("t").await.unwrap();
        for i in 0..10 {
            bus.publish("t", Payload::from(i.to_string()))
                .await
                .unwrap();
        }
        assert_eq!(sub.next().await, Some(BusItem::Lagged { skipped: 6 }));
        for i in 6..10 {
            assert_eq!(
                sub.next().await,
                Some(BusItem::Message(Payload::from(i.to_string())))
            );
        }
    }

    #[tokio::test]
    async fn topics_are_created_lazily_and_dropped_when_unused() {
        let bus = InMemoryBus::new();
        bus.publish("nobody", Payload::from("x")).await.unwrap();
        assert_eq!(bus.subscriber_count("nobody"), 0);

        let sub = bus.subscribe("t").await.unwrap();
        let clone = bus.clone();
        assert_eq!(clone.subscriber_count("t"), 1, "clones share topics");
        drop(sub);
        bus.publish("t", Payload::from("x")).await.unwrap();
        assert!(bus.lock().topics.is_empty(), "unused channel is released");

        // A later subscriber gets a fresh channel and only newer messages.
        let mut sub = bus.subscribe("t").await.unwrap();
        bus.publish("t", Payload::from("y")).await.unwrap();
        assert_eq!(sub.next().await, Some(BusItem::Message(Payload::from("y"))));
    }

    #[tokio::test]
    async fn close_ends_subscriptions_after_buffered_messages() {
        let bus = InMemoryBus::new();
        let mut sub = bus.subscribe("t").await.unwrap();
        bus.publish("t", Payload::from("last")).await.unwrap();
        bus.clone().close();
        assert_eq!(
            sub.next().await,
            Some(BusItem::Message(Payload::from("last")))
        );
        assert_eq!(sub.next().await, None);
        assert_eq!(
            bus.publish("t", Payload::from("x")).await,
            Err(BusError::Closed)
        );
        assert!(matches!(bus.subscribe("t").await, Err(BusError::Closed)));
    }

    #[test]
    fn capacity_is_clamped() {
        assert_eq!(InMemoryBus::new().capacity(), DEFAULT_CAPACITY);
        let huge = InMemoryBus::with_capacity(NonZeroUsize::MAX);
        assert_eq!(huge.capacity(), MAX_CAPACITY);
    }
}
