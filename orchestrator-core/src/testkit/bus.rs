//! Conformance suite for `EventBus` implementations: fan-out, topic isolation, ordering,
//! typed round trips and malformed payloads. Run it with a factory of fresh buses; it needs
//! no timer from the runtime (waits are bounded by a helper thread).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use futures::future::{self, Either};

use crate::events::{BackendType, DeploymentAction, DeploymentEvent, Event};
use crate::ports::bus::{
    BusError, BusItem, EventBus, EventBusExt, EventStreamError, Payload, Subscription,
};
use crate::time::Timestamp;

/// How long any single step of the suite may wait before it fails.
pub const STEP_LIMIT: Duration = Duration::from_secs(20);

/// Runs every bus scenario, each against a fresh bus from `make`.
///
/// `make` must return a bus isolated from any other instance it returned (for Redis: a
/// unique key prefix), created with the default capacity. Panics with a message naming
/// the scenario on the first violation.
pub async fn bus_conformance<F, Fut>(mut make: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Arc<dyn EventBus>>,
{
    publish_without_subscribers_succeeds(make().await).await;
    invalid_topics_are_rejected(make().await).await;
    only_messages_after_subscribe_are_delivered(make().await).await;
    every_subscriber_sees_every_message(make().await).await;
    topics_are_isolated(make().await).await;
    order_is_preserved_per_publisher(make().await).await;
    concurrent_publishers_each_keep_their_order(make().await).await;
    typed_events_round_trip(make().await).await;
    malformed_payload_is_reported_and_stream_continues(make().await).await;
    publisher_on_another_task_wakes_subscriber(make().await).await;
    dropping_a_subscription_leaves_others_intact(make().await).await;
}

// === scenarios ===

async fn publish_without_subscribers_succeeds(bus: Arc<dyn EventBus>) {
    let result = bus.publish("conformance.nobody", Payload::from("{}")).await;
    assert_eq!(result, Ok(()), "publishing with no subscriber must succeed");
}

async fn invalid_topics_are_rejected(bus: Arc<dyn EventBus>) {
    assert!(
        matches!(
            bus.publish("", Payload::from("{}")).await,
            Err(BusError::InvalidTopic { .. })
        ),
        "publish on an empty topic must fail with InvalidTopic"
    );
    assert!(
        matches!(bus.subscribe("").await, Err(BusError::InvalidTopic { .. })),
        "subscribe to an empty topic must fail with InvalidTopic"
    );
}

async fn only_messages_after_subscribe_are_delivered(bus: Arc<dyn EventBus>) {
    let topic = "conformance.late";
    publish(&bus, topic, "early").await;
    let mut sub = subscribe(&bus, topic).await;
    publish(&bus, topic, "late").await;
    assert_eq!(
        next_text(&mut sub, "the first message after subscribing").await,
        "late",
        "a subscriber must not receive messages published before it subscribed"
    );
}

async fn every_subscriber_sees_every_message(bus: Arc<dyn EventBus>) {
    let topic = "conformance.fan-out";
    let mut subs = Vec::new();
    for _ in 0..3 {
        subs.push(subscribe(&bus, topic).await);
    }
    let sent: Vec<String> = (0..10).map(|i| format!("fan-{i}")).collect();
    for text in &sent {
        publish(&bus, topic, text).await;
    }
    for (n, sub) in subs.iter_mut().enumerate() {
        let got = next_texts(sub, sent.len(), "fan-out messages").await;
        assert_eq!(got, sent, "subscriber {n} must see every message in order");
    }
}

async fn topics_are_isolated(bus: Arc<dyn EventBus>) {
    let a = "conformance.iso.a";
    let b = "conformance.iso.b";
    let prefix = "conformance.iso";
    let mut sub_a = subscribe(&bus, a).await;
    let mut sub_b = subscribe(&bus, b).await;
    let mut sub_prefix = subscribe(&bus, prefix).await;
    for i in 0..3 {
        publish(&bus, a, &format!("a-{i}")).await;
    }
    publish(&bus, a, "a-end").await;
    let got = next_texts(&mut sub_a, 4, "messages on topic a").await;
    assert_eq!(got, ["a-0", "a-1", "a-2", "a-end"]);

    // Topic a's messages were delivered; the others must see only their own sentinel.
    publish(&bus, b, "b-end").await;
    publish(&bus, prefix, "prefix-end").await;
    assert_eq!(
        next_text(&mut sub_b, "sentinel on topic b").await,
        "b-end",
        "a subscriber of b must not see messages published on a"
    );
    assert_eq!(
        next_text(&mut sub_prefix, "sentinel on the prefix topic").await,
        "prefix-end",
        "topics match exactly, not by prefix"
    );
}

async fn order_is_preserved_per_publisher(bus: Arc<dyn EventBus>) {
    const COUNT: usize = 1_000;
    let topic = "conformance.order";
    let mut sub = subscribe(&bus, topic).await;
    let sent: Vec<String> = (0..COUNT).map(|i| format!("seq-{i}")).collect();
    for text in &sent {
        publish(&bus, topic, text).await;
    }
    let got = next_texts(&mut sub, COUNT, "1,000 ordered messages").await;
    if let Some(i) = got.iter().zip(&sent).position(|(g, s)| g != s) {
        panic!(
            "bus conformance: message {i} arrived as `{}`, expected `{}`",
            got[i], sent[i]
        );
    }
}

async fn concurrent_publishers_each_keep_their_order(bus: Arc<dyn EventBus>) {
    const EACH: usize = 200;
    let topic = "conformance.two-publishers";
    let mut sub = subscribe(&bus, topic).await;
    let publisher = |name: &'static str| {
        let bus = Arc::clone(&bus);
        async move {
            for i in 0..EACH {
                publish(&bus, topic, &format!("{name}-{i}")).await;
                if i % 10 == 0 {
                    YieldNow(false).await;
                }
            }
        }
    };
    within(
        "two concurrent publishers",
        future::join(publisher("p"), publisher("q")),
    )
    .await;
    let got = next_texts(&mut sub, 2 * EACH, "messages of two publishers").await;
    for name in ["p", "q"] {
        let prefix = format!("{name}-");
        let seen: Vec<&str> = got.iter().filter_map(|m| m.strip_prefix(&prefix)).collect();
        let want: Vec<String> = (0..EACH).map(|i| i.to_string()).collect();
        assert_eq!(
            seen, want,
            "messages of publisher {name} must arrive in its publish order"
        );
    }
}

async fn typed_events_round_trip(bus: Arc<dyn EventBus>) {
    let mut events = bus
        .subscribe_events::<DeploymentEvent>()
        .await
        .unwrap_or_else(|e| panic!("bus conformance: subscribe_events failed: {e}"));
    let sent = sample_event(1);
    bus.publish_event(&sent)
        .await
        .unwrap_or_else(|e| panic!("bus conformance: publish_event failed: {e}"));
    let got = within("a typed DeploymentEvent", events.next()).await;
    assert_eq!(
        got,
        Some(Ok(sent)),
        "a typed event must arrive unchanged on its topic"
    );
}

async fn malformed_payload_is_reported_and_stream_continues(bus: Arc<dyn EventBus>) {
    let mut events = bus
        .subscribe_events::<DeploymentEvent>()
        .await
        .unwrap_or_else(|e| panic!("bus conformance: subscribe_events failed: {e}"));
    publish(&bus, DeploymentEvent::TOPIC, "not json at all").await;
    publish(&bus, DeploymentEvent::TOPIC, r#"{"eventId": 42}"#).await;
    let good = sample_event(2);
    bus.publish_event(&good)
        .await
        .unwrap_or_else(|e| panic!("bus conformance: publish_event failed: {e}"));

    for what in ["invalid JSON", "JSON of the wrong shape"] {
        match within(what, events.next()).await {
            Some(Err(EventStreamError::Malformed(err))) => {
                assert_eq!(err.topic, DeploymentEvent::TOPIC);
            }
            other => panic!("bus conformance: {what} must yield a decode error, got {other:?}"),
        }
    }
    assert_eq!(
        within("the good event after malformed ones", events.next()).await,
        Some(Ok(good)),
        "a malformed payload must not end the stream"
    );
}

async fn publisher_on_another_task_wakes_subscriber(bus: Arc<dyn EventBus>) {
    let topic = "conformance.concurrent";
    let mut sub = subscribe(&bus, topic).await;
    let publisher_bus = Arc::clone(&bus);
    let publisher = async move {
        for i in 0..5 {
            // Let the reader park on an empty stream before each publish.
            YieldNow(false).await;
            publish(&publisher_bus, topic, &format!("c-{i}")).await;
        }
    };
    let reader = async {
        let mut got = Vec::new();
        while got.len() < 5 {
            got.push(next_text_unbounded(&mut sub).await);
        }
        got
    };
    let (got, ()) = within(
        "messages from a concurrent publisher",
        future::join(reader, publisher),
    )
    .await;
    assert_eq!(got, ["c-0", "c-1", "c-2", "c-3", "c-4"]);
}

async fn dropping_a_subscription_leaves_others_intact(bus: Arc<dyn EventBus>) {
    let topic = "conformance.drop";
    let dropped = subscribe(&bus, topic).await;
    let mut kept = subscribe(&bus, topic).await;
    drop(dropped);
    publish(&bus, topic, "after-drop").await;
    assert_eq!(
        next_text(&mut kept, "a message after another subscriber left").await,
        "after-drop"
    );
}

// === helpers ===

fn sample_event(n: u128) -> DeploymentEvent {
    DeploymentEvent {
        event_id: uuid::Uuid::from_u128(n),
        timestamp: Timestamp::from_unix_millis(1_772_460_331_512),
        action: DeploymentAction::Completed,
        deployment_id: format!("conformance-{n}"),
        preset: Some("local-dev".to_owned()),
        backend: Some(BackendType::InProcess),
        changes: Some(vec!["bannou-auth".to_owned()]),
        error: None,
    }
}

async fn publish(bus: &Arc<dyn EventBus>, topic: &str, text: &str) {
    if let Err(e) = bus.publish(topic, Payload::from(text)).await {
        panic!("bus conformance: publish `{text}` on `{topic}` failed: {e}");
    }
}

async fn subscribe(bus: &Arc<dyn EventBus>, topic: &str) -> Subscription {
    match bus.subscribe(topic).await {
        Ok(sub) => sub,
        Err(e) => panic!("bus conformance: subscribe to `{topic}` failed: {e}"),
    }
}

async fn next_text_unbounded(sub: &mut Subscription) -> String {
    match sub.next().await {
        Some(BusItem::Message(p)) => String::from_utf8_lossy(&p).into_owned(),
        Some(BusItem::Lagged { skipped }) => panic!(
            "bus conformance: subscriber of `{}` lagged by {skipped} at default capacity",
            sub.topic()
        ),
        None => panic!(
            "bus conformance: subscription to `{}` ended unexpectedly",
            sub.topic()
        ),
    }
}

async fn next_text(sub: &mut Subscription, what: &str) -> String {
    within(what, next_text_unbounded(sub)).await
}

async fn next_texts(sub: &mut Subscription, count: usize, what: &str) -> Vec<String> {
    within(what, async {
        let mut got = Vec::with_capacity(count);
        while got.len() < count {
            got.push(next_text_unbounded(sub).await);
        }
        got
    })
    .await
}

/// Runs `fut`, panicking if it has not finished within [`STEP_LIMIT`]. The deadline comes
/// from a helper thread, so this works on any executor and without tokio's timer.
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    let (tx, rx) = futures::channel::oneshot::channel::<()>();
    std::thread::spawn(move || {
        std::thread::sleep(STEP_LIMIT);
        let _ = tx.send(());
    });
    let fut = std::pin::pin!(fut);
    match future::select(fut, rx).await {
        Either::Left((value, _)) => value,
        Either::Right(_) => {
            panic!("bus conformance: timed out after {STEP_LIMIT:?} waiting for {what}")
        }
    }
}

/// Returns `Pending` once (after waking itself), letting other futures of a `join` run.
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}
