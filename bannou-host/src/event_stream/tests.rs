//! Unit tests of `event_stream`.

use std::convert::Infallible;

use axum::response::IntoResponse;
use axum::response::sse::{Event as SseEvent, Sse};

use super::*;

fn deployment(action: &str, id: &str) -> Vec<u8> {
    format!(r#"{{"action":"{action}","deploymentId":"{id}"}}"#).into_bytes()
}

async fn take(s: impl Stream<Item = StreamItem> + Unpin, n: usize) -> Vec<StreamItem> {
    tokio::time::timeout(std::time::Duration::from_secs(5), s.take(n).collect())
        .await
        .expect("items in time")
}

fn kinds(items: &[StreamItem]) -> Vec<String> {
    items
        .iter()
        .map(|i| match i {
            StreamItem::Event(e) => format!("{}#{}", e.kind, e.id.unwrap_or(0)),
            StreamItem::Reset { .. } => "reset".to_owned(),
            StreamItem::Lagged { .. } => "lagged".to_owned(),
        })
        .collect()
}

#[tokio::test]
async fn resumes_after_an_id_and_resets_when_it_left_the_buffer() {
    let hub = EventHub::new(1);
    for i in 0..3 {
        hub.publish("deployment", &deployment("Started", &i.to_string()));
    }
    let resumed = hub.subscribe(Filter::default(), Some(1)).unwrap();
    hub.publish("deployment", &deployment("Completed", "x"));
    let items = take(Box::pin(resumed), 3).await;
    assert_eq!(
        kinds(&items),
        [
            "deployment.started#2",
            "deployment.started#3",
            "deployment.completed#4"
        ]
    );
    for _ in 0..BUFFER_CAPACITY {
        hub.publish("health.ping", b"{}");
    }
    let old = hub.subscribe(Filter::default(), Some(2)).unwrap();
    hub.publish("health.ping", b"{}");
    let items = take(Box::pin(old), 2).await;
    assert_eq!(
        items[0],
        StreamItem::Reset {
            requested: 2,
            oldest: Some(5)
        }
    );
    assert_eq!(
        kinds(&items[1..]),
        [format!("health.ping#{}", BUFFER_CAPACITY + 5)]
    );
    // An id this replica never issued (another replica's, or a later life's) resets too.
    let future = hub
        .subscribe(Filter::default(), Some(u64::MAX - 1))
        .unwrap();
    hub.publish("health.ping", b"{}");
    assert!(matches!(
        take(Box::pin(future), 1).await[0],
        StreamItem::Reset { .. }
    ));
}

#[tokio::test]
async fn filters_by_type_prefix_and_deployment_and_keeps_heartbeats_out_by_default() {
    let hub = EventHub::new(1);
    let all = hub.subscribe(Filter::default(), None).unwrap();
    let waves = hub
        .subscribe(
            Filter {
                types: Filter::parse_types("wave,deployment.failed").unwrap(),
                deployment: Some("d1".to_owned()),
            },
            None,
        )
        .unwrap();
    let beats = hub
        .subscribe(
            Filter {
                types: vec![HEARTBEAT_TYPE.to_owned()],
                deployment: None,
            },
            None,
        )
        .unwrap();
    hub.publish(HEARTBEAT_TYPE, b"{}");
    hub.publish("deployment", &deployment("Started", "d1"));
    hub.publish("wave", br#"{"state":"healthy","deploymentId":"d2"}"#);
    hub.publish("wave", br#"{"state":"failed","deploymentId":"d1"}"#);
    hub.publish("deployment", &deployment("Failed", "d1"));
    assert_eq!(
        kinds(&take(Box::pin(all), 4).await),
        [
            "deployment.started#1",
            "wave.healthy#2",
            "wave.failed#3",
            "deployment.failed#4"
        ]
    );
    assert_eq!(
        kinds(&take(Box::pin(waves), 2).await),
        ["wave.failed#3", "deployment.failed#4"]
    );
    assert_eq!(
        kinds(&take(Box::pin(beats), 1).await),
        ["service.heartbeat#0"]
    );
    assert!(Filter::parse_types("wave,nonsense").is_err());
}

#[tokio::test]
async fn a_client_that_falls_behind_is_told_and_dropped_without_slowing_publishers() {
    let hub = EventHub::new(1);
    let slow = hub.subscribe(Filter::default(), None).unwrap();
    for _ in 0..CLIENT_CAPACITY * 3 {
        hub.publish("health.ping", b"{}");
    }
    let items: Vec<StreamItem> =
        tokio::time::timeout(std::time::Duration::from_secs(5), Box::pin(slow).collect())
            .await
            .unwrap();
    assert_eq!(items.len(), 1, "only the lagged notice, then the end");
    assert!(matches!(items[0], StreamItem::Lagged { skipped } if skipped > 0));
}

#[tokio::test]
async fn names_and_filters_an_event_by_its_own_fields_and_keeps_its_text() {
    let hub = EventHub::new(1);
    let s = hub.subscribe(Filter::default(), None).unwrap();
    let nested = br#"{"nodes":[{"a":[1,{"b":null}]}],"action":"Completed","deploymentId":"d-1"}"#;
    hub.publish("deployment", nested);
    // A field of an odd type reads as absent; the others are still read.
    hub.publish("deployment", br#"{"action":7,"deploymentId":"d-2"}"#);
    hub.publish("deployment", b"not json");
    hub.publish("wave", br#"{"state":"torn-down","deploymentId":"d-3"}"#);
    let items = take(Box::pin(s), 4).await;
    assert_eq!(
        kinds(&items),
        [
            "deployment.completed#1",
            "deployment.topology-changed#2",
            "deployment.topology-changed#3",
            "wave.torn-down#4"
        ]
    );
    let seen: Vec<_> = items
        .iter()
        .map(|i| match i {
            StreamItem::Event(e) => (e.deployment.clone(), e.data().to_owned()),
            other => panic!("an event expected, got {other:?}"),
        })
        .collect();
    assert_eq!(
        seen[0],
        (
            Some("d-1".to_owned()),
            String::from_utf8_lossy(nested).into_owned()
        )
    );
    assert_eq!(seen[1].0.as_deref(), Some("d-2"));
    assert_eq!(seen[2], (None, "not json".to_owned()));
    assert_eq!(seen[3].0.as_deref(), Some("d-3"));
}

#[tokio::test]
async fn each_event_is_framed_once_as_axum_writes_it() {
    let hub = EventHub::new(7);
    let a = hub.subscribe(Filter::default(), None).unwrap();
    let b = hub.subscribe(Filter::default(), None).unwrap();
    hub.publish("wave", b"{\"state\":\"started\",\"note\":\"a\nb\"}");
    let (a, b) = (take(Box::pin(a), 1).await, take(Box::pin(b), 1).await);
    let expected =
        "event: wave.started\ndata: {\"state\":\"started\",\"note\":\"a\ndata: b\"}\nid: 7\n\n";
    assert_eq!(std::str::from_utf8(&a[0].frame()).unwrap(), expected);
    // What the route sent per client before: axum's whole SSE response for the event.
    let event = SseEvent::default()
        .event("wave.started")
        .data("{\"state\":\"started\",\"note\":\"a\nb\"}")
        .id("7");
    let response = Sse::new(stream::iter([Ok::<_, Infallible>(event)])).into_response();
    let whole = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    assert_eq!(a[0].frame(), whole);
    // Both clients share the one frame.
    match (&a[0], &b[0]) {
        (StreamItem::Event(x), StreamItem::Event(y)) => assert!(Arc::ptr_eq(x, y)),
        other => panic!("events expected, got {other:?}"),
    }
    let reset = StreamItem::Reset {
        requested: 3,
        oldest: None,
    }
    .frame();
    let reset = std::str::from_utf8(&reset).unwrap();
    assert!(reset.starts_with("event: reset\ndata: {"), "{reset}");
    assert!(reset.ends_with("}\n\n"), "{reset}");
}

#[tokio::test]
async fn a_typed_pool_event_reaches_a_client_as_its_json() {
    let hub = EventHub::new(1);
    let s = hub.subscribe(Filter::default(), None).unwrap();
    let granted = pool_events::LeaseGrantedEvent {
        pool_type: "npc".into(),
        processor_id: "w-1".into(),
        lease_id: "l-1".into(),
        holder: "api".into(),
        fencing_token: 3,
        expires_at: orchestrator_core::Timestamp::from_unix_millis(2_000),
        timestamp: orchestrator_core::Timestamp::from_unix_millis(1_000),
    };
    let json = serde_json::to_string(&granted).unwrap();
    hub.publish_payload("lease.granted", Payload::event(granted));
    let items = take(Box::pin(s), 1).await;
    match &items[0] {
        StreamItem::Event(e) => {
            assert_eq!(
                (e.kind, e.id, e.deployment.as_deref()),
                ("lease.granted", Some(1), None)
            );
            assert_eq!(e.data(), json);
            let frame = e.frame();
            assert_eq!(
                std::str::from_utf8(&frame).unwrap(),
                format!("event: lease.granted\ndata: {json}\nid: 1\n\n")
            );
        }
        other => panic!("an event expected, got {other:?}"),
    }
}

#[tokio::test]
async fn closing_ends_every_stream_and_refuses_new_ones() {
    let hub = EventHub::new(1);
    let s = hub.subscribe(Filter::default(), None).unwrap();
    hub.close();
    assert!(Box::pin(s).next().await.is_none());
    assert!(hub.subscribe(Filter::default(), None).is_none());
}
