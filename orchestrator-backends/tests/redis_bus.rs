//! The Redis Streams bus against a real `redis-server` (skips without one unless
//! `BANNOU_TEST_REQUIRE=redis`): the shared conformance suite, malformed entries, lag
//! reporting after `MAXLEN` trimming, and a kill-and-restart while events flow.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use orchestrator_backends::redis::bus::{RedisBus, RedisBusConfig};
use orchestrator_backends::redis::connection::{RedisConfig, RedisConnection};
use orchestrator_backends::redis::server::RedisServer;
use orchestrator_core::ports::bus::{BusError, BusItem, EventBus, Payload, Subscription};
use orchestrator_core::testkit::bus::bus_conformance;
use redis::Value;
use tokio::time::{Instant, timeout};

async fn connect(server: &RedisServer) -> RedisConnection {
    RedisConnection::connect(RedisConfig::new(server.url()))
        .await
        .expect("connect to the test server")
}

/// The next item, failing the test after 10 s or if the stream ends.
async fn next(sub: &mut Subscription) -> BusItem {
    timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("no item within 10 s")
        .expect("the subscription must not end")
}

fn text(item: &BusItem) -> String {
    match item {
        BusItem::Message(p) => String::from_utf8_lossy(p).into_owned(),
        other => panic!("expected a message, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_bus_passes_the_conformance_suite() {
    let Some(server) = RedisServer::for_test("redis_bus_passes_the_conformance_suite") else {
        return;
    };
    let conn = connect(&server).await;
    let n = AtomicUsize::new(0);
    let started = Instant::now();
    bus_conformance(|| {
        let prefix = format!("conf{}", n.fetch_add(1, Ordering::Relaxed));
        let bus: Arc<dyn EventBus> = Arc::new(RedisBus::new(
            conn.clone(),
            RedisBusConfig::with_prefix(prefix),
        ));
        async move { bus }
    })
    .await;
    println!(
        "checked: bus_conformance on Redis Streams ({} fresh prefixes) in {:?}",
        n.load(Ordering::Relaxed),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_without_payload_are_skipped_and_publishes_use_xadd_maxlen() {
    let Some(server) =
        RedisServer::for_test("entries_without_payload_are_skipped_and_publishes_use_xadd_maxlen")
    else {
        return;
    };
    let bus = RedisBus::new(connect(&server).await, RedisBusConfig::default());
    let mut sub = bus.subscribe("bannou.test").await.unwrap();
    let mut con = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg("orch:stream:bannou.test")
        .arg("*")
        .arg("other")
        .arg("x")
        .query_async(&mut con)
        .await
        .unwrap();
    bus.publish("bannou.test", Payload::from("after"))
        .await
        .unwrap();
    assert_eq!(text(&next(&mut sub).await), "after");
    let len: i64 = redis::cmd("XLEN")
        .arg("orch:stream:bannou.test")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(len, 2, "both entries are in orch:stream:bannou.test");
    println!("checked: an entry without `payload` is skipped; the next one arrives");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_behind_the_maxlen_cap_is_told_how_many_it_missed() {
    let Some(server) =
        RedisServer::for_test("a_subscriber_behind_the_maxlen_cap_is_told_how_many_it_missed")
    else {
        return;
    };
    let config = RedisBusConfig {
        max_len: 10,
        read_count: 10,
        buffer: 1,
        ..RedisBusConfig::with_prefix("lag")
    };
    let bus = RedisBus::new(connect(&server).await, config);
    let topic = "bannou.lag";
    let mut sub = bus.subscribe(topic).await.unwrap();
    const SENT: u64 = 1_000;
    for i in 0..SENT {
        bus.publish(topic, Payload::from(format!("{i}")))
            .await
            .unwrap();
    }
    let (mut received, mut skipped, mut last) = (0u64, 0u64, None::<u64>);
    let mut lag_reports = 0;
    while received + skipped < SENT {
        let item = timeout(Duration::from_secs(3), sub.next()).await;
        let Ok(Some(item)) = item else {
            panic!("stuck: received {received} skipped {skipped} last {last:?}")
        };
        match item {
            BusItem::Message(p) => {
                let n: u64 = String::from_utf8_lossy(&p).parse().unwrap();
                assert!(last.is_none_or(|l| n > l), "in order: {n} after {last:?}");
                last = Some(n);
                received += 1;
            }
            BusItem::Lagged { skipped: s } => {
                skipped += s;
                lag_reports += 1;
            }
        }
    }
    assert_eq!(last, Some(SENT - 1), "the newest message arrives");
    assert!(skipped > 0, "MAXLEN ~ 10 must have trimmed unread entries");
    assert_eq!(
        received + skipped,
        SENT,
        "every message is delivered or counted"
    );
    println!(
        "checked: {received} delivered + {skipped} reported lagged ({lag_reports} reports) = {SENT} published"
    );
}

/// One publish attempt of the background publisher.
#[derive(Debug, Clone)]
struct Attempt {
    n: u64,
    ok: bool,
    took: Duration,
    after_restart: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_resumes_by_itself_after_redis_is_killed_and_restarted() {
    let Some(mut server) =
        RedisServer::for_test("subscriber_resumes_by_itself_after_redis_is_killed_and_restarted")
    else {
        return;
    };
    let config = RedisConfig::new(server.url());
    let bound = config.call_timeout + Duration::from_millis(500);
    let bus = RedisBus::new(
        RedisConnection::connect(config).await.unwrap(),
        RedisBusConfig::with_prefix("outage"),
    );
    let topic = "bannou.service-heartbeat";
    let mut sub = bus.subscribe(topic).await.unwrap();

    // A publisher that never stops on errors, recording each attempt.
    let attempts = Arc::new(Mutex::new(Vec::<Attempt>::new()));
    let restarted = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = tokio::spawn({
        let (bus, attempts, restarted, stop) = (
            bus.clone(),
            attempts.clone(),
            restarted.clone(),
            stop.clone(),
        );
        async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let after_restart = restarted.load(Ordering::Relaxed);
                let t0 = Instant::now();
                let result = bus.publish(topic, Payload::from(format!("{n}"))).await;
                if let Err(e) = &result {
                    assert!(matches!(e, BusError::Unavailable { .. }), "{e:?}");
                }
                let attempt = Attempt {
                    n,
                    ok: result.is_ok(),
                    took: t0.elapsed(),
                    after_restart,
                };
                attempts.lock().unwrap().push(attempt);
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });

    // Events flow.
    let mut before = Vec::new();
    while before.len() < 20 {
        before.push(text(&next(&mut sub).await).parse::<u64>().unwrap());
    }
    assert!(before.windows(2).all(|w| w[0] < w[1]));

    server.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tokio::task::block_in_place(|| server.restart()).expect("restart");
    restarted.store(true, Ordering::Relaxed);

    // The subscriber resumes by itself: it gets the first 20 events published after the
    // restart (earlier items are whatever it still read before the kill).
    let t0 = Instant::now();
    let resumed = timeout(Duration::from_secs(15), async {
        let mut got = Vec::new();
        loop {
            let first_after: Vec<u64> = attempts
                .lock()
                .unwrap()
                .iter()
                .filter(|a| a.after_restart && a.ok)
                .map(|a| a.n)
                .take(20)
                .collect();
            if first_after.len() == 20 && first_after.iter().all(|n| got.contains(n)) {
                return (got, first_after);
            }
            match next(&mut sub).await {
                BusItem::Message(p) => got.push(String::from_utf8_lossy(&p).parse().unwrap()),
                BusItem::Lagged { .. } => {}
            }
        }
    })
    .await;
    let (got, first_after) = resumed.expect("the subscriber did not resume within 15 s");
    let resume_time = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    timeout(Duration::from_secs(5), publisher)
        .await
        .expect("publisher stops")
        .expect("publisher did not panic");

    let attempts = attempts.lock().unwrap().clone();
    let failed: Vec<&Attempt> = attempts.iter().filter(|a| !a.ok).collect();
    let slowest = failed.iter().map(|a| a.took).max().unwrap_or_default();
    assert!(!failed.is_empty(), "publishes during the outage must fail");
    assert!(
        slowest <= bound,
        "a failed publish took {slowest:?} (bound {bound:?})"
    );
    let after: Vec<u64> = got
        .iter()
        .copied()
        .filter(|n| *n >= first_after[0])
        .collect();
    assert!(
        after.windows(2).all(|w| w[0] < w[1]),
        "events after the restart arrive in order"
    );
    assert_eq!(bus.reconnects(), 1, "the one subscriber reconnected once");
    println!(
        "checked: {} publishes failed Unavailable during the outage (slowest {slowest:?}, bound {bound:?}); \
         subscriber resumed and received the first 20 events published after the restart within {resume_time:?}; \
         {} attempts in all, stream never ended",
        failed.len(),
        attempts.len()
    );
}

async fn connected_clients(con: &mut redis::aio::MultiplexedConnection) -> usize {
    let info: String = redis::cmd("INFO")
        .arg("clients")
        .query_async(con)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("INFO clients has connected_clients")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_trimmed_while_disconnected_are_reported_and_dropping_stops_the_reader() {
    let Some(server) = RedisServer::for_test(
        "entries_trimmed_while_disconnected_are_reported_and_dropping_stops_the_reader",
    ) else {
        return;
    };
    let config = RedisBusConfig {
        max_len: 10,
        read_count: 10,
        buffer: 1,
        ..RedisBusConfig::with_prefix("gone")
    };
    let bus = RedisBus::new(connect(&server).await, config);
    let topic = "bannou.gone";
    let mut con = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let idle = connected_clients(&mut con).await;
    let mut sub = bus.subscribe(topic).await.unwrap();
    assert_eq!(
        connected_clients(&mut con).await,
        idle + 1,
        "a subscription reads on a connection of its own"
    );
    bus.publish(topic, Payload::from("0")).await.unwrap();
    assert_eq!(text(&next(&mut sub).await), "0");

    // Cut every other client (the subscriber's included), then add 999 entries at once
    // while it waits for its reconnect backoff.
    let _: Value = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .query_async(&mut con)
        .await
        .unwrap();
    let mut pipe = redis::pipe();
    for i in 1..1000 {
        pipe.cmd("XADD")
            .arg("gone:stream:bannou.gone")
            .arg("MAXLEN")
            .arg("~")
            .arg(10)
            .arg("*")
            .arg("payload")
            .arg(i.to_string())
            .ignore();
    }
    let _: () = pipe.query_async(&mut con).await.unwrap();

    let (mut received, mut skipped, mut last) = (1u64, 0u64, 0u64);
    while received + skipped < 1000 {
        match next(&mut sub).await {
            BusItem::Message(p) => {
                let n: u64 = String::from_utf8_lossy(&p).parse().unwrap();
                assert!(n > last, "in order: {n} after {last}");
                last = n;
                received += 1;
            }
            BusItem::Lagged { skipped: s } => skipped += s,
        }
    }
    assert_eq!(last, 999);
    assert!(
        skipped > 0,
        "entries trimmed while disconnected are reported"
    );
    assert_eq!(received + skipped, 1000);

    // Dropping the subscription ends its reader and closes its connection.
    let with_sub = connected_clients(&mut con).await;
    drop(sub);
    let closed = timeout(Duration::from_secs(5), async {
        while connected_clients(&mut con).await >= with_sub {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the reader's connection must close after the drop"
    );
    println!(
        "checked: after a disconnect, {received} delivered + {skipped} reported lagged = 1000; \
         dropping the subscription closed its connection"
    );
}
