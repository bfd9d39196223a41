//! A Sentinel failover under load (skips without `redis-server` and `redis-sentinel`
//! unless `BANNOU_TEST_REQUIRE` names `redis` or `sentinel`): a master, two replicas and a
//! Sentinel on loopback ports; the master is killed while 50 clients acquire and release
//! leases, a node heartbeats into the store, a candidate holds the leader lease and events
//! flow on the bus. Everything reaches the promoted replica through the same
//! `redis+sentinel://` URL by itself. The replicas follow the master through a relay the
//! test cuts 300 ms before the kill, so the master acknowledges writes no replica has. With every lease operation waiting
//! for one replica (docs/DECISIONS.md#d44) no lease is doubled or lost; answering on the
//! master's word alone loses some. The test prints the figures of RELIABILITY.md.
//! Sentinels that need a password are asked with the URL's `sentinel_user` and
//! `sentinel_password` (docs/DECISIONS.md#d43).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use orchestrator_backends::redis::bus::{RedisBus, RedisBusConfig};
use orchestrator_backends::redis::connection::{RedisConfig, RedisConnection};
use orchestrator_backends::redis::leader::RedisLeaderElection;
use orchestrator_backends::redis::leases::{RedisLeaseStore, RedisLeaseStoreConfig, Wait};
use orchestrator_backends::redis::server::{RedisServer, SentinelServer, ServerError};
use orchestrator_backends::redis::store::RedisStore;
use orchestrator_backends::require::skip_or_fail;
use orchestrator_backends::sentinel_topology::{SentinelTopology, info};
use orchestrator_core::Timestamp;
use orchestrator_core::events::InstanceHealthStatus;
use orchestrator_core::ports::bus::{BusItem, EventBus, Payload};
use orchestrator_core::ports::leader::LeaderElection;
use orchestrator_core::ports::store::OrchestratorStore;
use orchestrator_core::records::HeartbeatRecord;
use orchestrator_pools::testkit::{pool_with_workers, t};
use orchestrator_pools::{AcquireOutcome, AcquireRequest, LeaseError, LeaseStore};
use tokio::time::Instant;

const MASTER: &str = "bannou";

fn now() -> Timestamp {
    Timestamp::from_datetime(chrono::Utc::now())
}

/// The servers of one test: killed on drop (each guard kills its process, the link's
/// task ends with the runtime).
struct Setup {
    servers: SentinelTopology,
    link: Link,
    url: String,
}

/// The replication link between the master and its replicas: a loopback TCP relay the
/// replicas follow instead of the master's own port, which the test can cut (bytes either
/// way are dropped from then on, as a network partition would), so the master
/// acknowledges writes no replica will ever see.
struct Link {
    port: u16,
    cut: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Link {
    async fn start(master_port: u16) -> Link {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let flag = cut.clone();
        let task = tokio::spawn(async move {
            while let Ok((replica, _)) = listener.accept().await {
                let Ok(master) = tokio::net::TcpStream::connect(("127.0.0.1", master_port)).await
                else {
                    continue;
                };
                let flag = flag.clone();
                tokio::spawn(async move {
                    let (r_read, r_write) = replica.into_split();
                    let (m_read, m_write) = master.into_split();
                    tokio::select! {
                        _ = pump(m_read, r_write, flag.clone()) => {}
                        _ = pump(r_read, m_write, flag) => {}
                    }
                });
            }
        });
        Link { port, cut, task }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to` until either closes; while `cut`, what is read is dropped.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    cut: Arc<AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if cut.load(Ordering::Relaxed) {
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn setup(test: &str) -> Option<Setup> {
    let master = RedisServer::for_test(test)?;
    let link = Link::start(master.port()).await;
    // A long failover timeout: the Sentinel leaves the replicas on the link meanwhile.
    let servers =
        SentinelTopology::around(test, master, link.port, MASTER, Duration::from_secs(60)).await?;
    let sport = servers.sentinel.port();
    // A Sentinel that is not there comes first: the client asks the next one.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis+sentinel://127.0.0.1:{dead},127.0.0.1:{sport}/{MASTER}");
    Some(Setup { servers, link, url })
}

#[derive(Default)]
struct Tally {
    /// processor -> holder, while leased.
    held: Mutex<HashMap<String, usize>>,
    double: AtomicU64,
    lost: AtomicU64,
    acquire_failed: AtomicU64,
    /// Renew and release attempts answered unavailable and tried again.
    release_retried: AtomicU64,
    ambiguous_releases: AtomicU64,
    completed: AtomicU64,
    completed_after_kill: AtomicU64,
    /// Milliseconds from the kill to the first acquire granted after it.
    window_ms: AtomicU64,
}

/// What one failover run measured.
#[derive(Debug)]
struct Figures {
    window: Duration,
    acquires_failed: u64,
    releases_retried: u64,
    double: u64,
    lost: u64,
    pairs: u64,
    pairs_after: u64,
    orphans: u64,
}

async fn failover_under_load(test: &str, wait: Option<Wait>) -> Option<Figures> {
    let mut setup = setup(test).await?;
    let url = setup.url.clone();
    let config = RedisLeaseStoreConfig {
        wait,
        ..RedisLeaseStoreConfig::with_prefix(format!("{test}:"))
    };
    let store = Arc::new(
        RedisLeaseStore::connect(&url, config)
            .await
            .expect("the lease store connects through Sentinel"),
    );
    let (pool, _) = pool_with_workers(store.as_ref(), 20, 20).await;
    let conn = RedisConnection::connect(RedisConfig::new(&url))
        .await
        .expect("connects through Sentinel");
    let kv = RedisStore::with_prefix(conn.clone(), format!("{test}-kv"));
    let leader = RedisLeaderElection::with_prefix(conn.clone(), format!("{test}-leader"));
    let bus = RedisBus::new(
        conn.clone(),
        RedisBusConfig::with_prefix(format!("{test}-bus")),
    );
    let mut events = bus.subscribe("failover").await.expect("subscribe");
    let term = leader
        .try_acquire_or_renew("replica-a", Duration::from_secs(30), now())
        .await
        .expect("leader lease")
        .expect("free lease");

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let killed_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let mut tasks = Vec::new();
    for task in 0..50usize {
        let (store, pool, tally, stop, killed_at) = (
            store.clone(),
            pool.clone(),
            tally.clone(),
            stop.clone(),
            killed_at.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut req = AcquireRequest::new(format!("task-{task}"));
            req.lease_duration = Some(Duration::from_secs(600));
            while !stop.load(Ordering::Relaxed) {
                let lease = match store.acquire(&pool, req.clone(), t(0)).await {
                    Ok(a) => match a.outcome {
                        AcquireOutcome::Leased(l) => l,
                        _ => {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            continue;
                        }
                    },
                    Err(LeaseError::Unavailable { .. }) => {
                        tally.acquire_failed.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    Err(e) => panic!("acquire: {e}"),
                };
                let kill = *killed_at.lock().unwrap();
                if let Some(at) = kill {
                    let ms = at.elapsed().as_millis() as u64;
                    if tally.completed_after_kill.load(Ordering::Relaxed) == 0 {
                        let _ = tally.window_ms.compare_exchange(
                            0,
                            ms.max(1),
                            Ordering::AcqRel,
                            Ordering::Relaxed,
                        );
                    }
                }
                let processor = lease.processor_id.to_string();
                if let Some(other) = tally.held.lock().unwrap().insert(processor.clone(), task) {
                    eprintln!(
                        "double lease of {processor}: task {other} and task {task} (token {}, {:?} after the kill)",
                        lease.fencing_token.0,
                        kill.map(|k| k.elapsed())
                    );
                    tally.double.fetch_add(1, Ordering::Relaxed);
                }
                // Work with it a while, then use it: a renew checks its fencing token, as
                // any use of a lease must. It is held until that use is answered, outage
                // or not, so a grant the failover lost that is handed out again meanwhile
                // is a double, and the use then finds it gone: lost.
                tokio::time::sleep(Duration::from_millis(10 + (task as u64 % 7) * 5)).await;
                let mut still_ours = None;
                for _ in 0..600 {
                    match store
                        .renew(
                            &pool,
                            lease.lease_id,
                            lease.fencing_token,
                            Duration::from_secs(600),
                            t(1),
                        )
                        .await
                    {
                        Ok(_) => {
                            still_ours = Some(true);
                            break;
                        }
                        Err(LeaseError::Unavailable { .. }) => {
                            tally.release_retried.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(25)).await;
                        }
                        Err(e) => {
                            eprintln!("lease {} of task {task} lost: {e}", lease.lease_id);
                            tally.lost.fetch_add(1, Ordering::Relaxed);
                            still_ours = Some(false);
                            break;
                        }
                    }
                }
                let still_ours = still_ours.expect("a renew still refused after 15 s");
                tally.held.lock().unwrap().remove(&processor);
                let mut refused = false;
                let mut released = !still_ours;
                let mut tries = 0;
                while !released {
                    tries += 1;
                    assert!(tries <= 600, "a release still refused after 15 s");
                    match store
                        .release(&pool, lease.lease_id, lease.fencing_token, true, t(1))
                        .await
                    {
                        Ok(_) => released = true,
                        Err(LeaseError::Unavailable { .. }) => {
                            tally.release_retried.fetch_add(1, Ordering::Relaxed);
                            refused = true;
                            tokio::time::sleep(Duration::from_millis(25)).await;
                        }
                        // An earlier attempt went through; the failover swallowed its answer.
                        Err(LeaseError::UnknownLease { .. }) if refused => {
                            tally.ambiguous_releases.fetch_add(1, Ordering::Relaxed);
                            released = true;
                        }
                        Err(e) => panic!("release of a lease just renewed: {e}"),
                    }
                }
                tally.completed.fetch_add(1, Ordering::Relaxed);
                if kill.is_some() {
                    tally.completed_after_kill.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // A node heartbeats every 100 ms meanwhile.
    let beats_failed = Arc::new(AtomicU64::new(0));
    let node = {
        let (kv, stop, failed) = (kv.clone(), stop.clone(), beats_failed.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let record = HeartbeatRecord {
                    instance_id: "node-1".into(),
                    app_id: "node".into(),
                    status: InstanceHealthStatus::Healthy,
                    last_seen: now(),
                    services: vec![format!("beat-{n}")],
                    issues: None,
                    max_connections: 0,
                    current_connections: 0,
                    cpu_usage: 0.0,
                    memory_usage: 0.0,
                };
                if kv
                    .put_heartbeat(&record, Duration::from_secs(60))
                    .await
                    .is_err()
                {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    tokio::time::sleep(Duration::from_secs(1)).await;
    let before_kill = tally.completed.load(Ordering::Relaxed);
    assert!(before_kill > 0, "leases flowed before the kill");
    let old = setup.servers.master.port();
    // The nastiest failover: the replicas stop hearing the master for a while before it
    // dies, so what it acknowledged meanwhile exists nowhere else.
    setup.link.cut.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    setup.servers.master.kill();
    *killed_at.lock().unwrap() = Some(Instant::now());
    // Work resumes once the Sentinel promoted a replica and the clients found it.
    let deadline = Instant::now() + Duration::from_secs(15);
    while tally.completed_after_kill.load(Ordering::Relaxed) < 200 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("an acquirer panicked");
    }
    node.await.unwrap();

    // The store, the leader lease and the bus work on the new master. Each is asked until
    // it answers (at most 10 s): the first call on a connection the Sentinel cut when it
    // promoted the replica fails once, and callers retry as the host's loops do.
    let beat = eventually("heartbeats resume", || kv.get_heartbeat("node")).await;
    assert!(beat.is_some(), "a heartbeat written after the failover");
    let renewed = eventually("the leader lease answers after the failover", || {
        leader.try_acquire_or_renew("replica-a", Duration::from_secs(30), now())
    })
    .await;
    if let Some(l) = &renewed {
        assert!(
            l.fencing_token >= term.fencing_token,
            "tokens never go back"
        );
    }
    // Published until the subscription, which resubscribes by itself, hears one.
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Err(e) = bus
                .publish("failover", Payload::from(b"after".to_vec()))
                .await
            {
                eprintln!("publish after the failover: {e} (retried)");
            }
            let heard = tokio::time::timeout(Duration::from_millis(300), async {
                while let Some(item) = events.next().await {
                    if let BusItem::Message(p) = item
                        && p.as_bytes() == b"after"
                    {
                        return true;
                    }
                }
                false
            })
            .await;
            match heard {
                Ok(found) => return found,
                Err(_) => continue,
            }
        }
    })
    .await;
    assert_eq!(got, Ok(true), "the subscription resumed on the new master");
    let new_master = info(old, "server").await;
    assert!(new_master.is_empty(), "the old master is gone");

    // Like the calls above, the store's first call may meet a connection cut by the
    // promotion (it failed once with "broken pipe" in a full run).
    let status = eventually("the store answers after the failover", || {
        store.status(&pool, t(3))
    })
    .await;
    let orphans = status.leases.len() as u64;
    let reclaimed = store.reclaim_expired(&pool, t(100_000)).await.unwrap();
    assert_eq!(
        reclaimed.len() as u64,
        orphans,
        "expiry reclaims the orphans"
    );
    store
        .check_invariants(&pool)
        .await
        .expect("records agree after the failover");
    let figures = Figures {
        window: Duration::from_millis(tally.window_ms.load(Ordering::Relaxed)),
        acquires_failed: tally.acquire_failed.load(Ordering::Relaxed),
        releases_retried: tally.release_retried.load(Ordering::Relaxed),
        double: tally.double.load(Ordering::Relaxed),
        lost: tally.lost.load(Ordering::Relaxed),
        pairs: tally.completed.load(Ordering::Relaxed),
        pairs_after: tally.completed_after_kill.load(Ordering::Relaxed),
        orphans,
    };
    println!(
        "{test} (wait {wait:?}): 50 clients x 20 workers, replicas cut off 300 ms before the \
         master was killed after {before_kill} pairs; unavailable {:?} (0: no lease granted \
         within 15 s); {} acquires failed and retried; {} renew/release attempts retried; \
         {} double leases; {} leases lost; {} pairs in all, {} after the kill; {} leases \
         left that no client holds (reclaimed only at expiry); {} heartbeats failed",
        figures.window,
        figures.acquires_failed,
        figures.releases_retried,
        figures.double,
        figures.lost,
        figures.pairs,
        figures.pairs_after,
        figures.orphans,
        beats_failed.load(Ordering::Relaxed),
    );
    Some(figures)
}

/// Calls `op` until it succeeds, for at most 10 s; panics with `what` and the last error.
async fn eventually<T, E: std::fmt::Display, F: std::future::Future<Output = Result<T, E>>>(
    what: &str,
    mut op: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match op().await {
            Ok(v) => return v,
            Err(e) if Instant::now() < deadline => {
                eprintln!("{what}: {e} (retried)");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{what}: still failing after 10 s: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_under_load_loses_and_doubles_no_lease_when_grants_wait_for_a_replica()
{
    let test = "failover_safe";
    let wait = Wait {
        replicas: 1,
        timeout: Duration::from_millis(500),
    };
    let Some(f) = failover_under_load(test, Some(wait)).await else {
        return;
    };
    assert_eq!(f.double, 0, "no processor leased twice");
    assert_eq!(f.lost, 0, "no acknowledged lease lost");
    assert!(f.acquires_failed > 0, "the failover was seen");
    assert!(f.pairs_after > 0, "work resumed on the promoted replica");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_without_waiting_for_replicas_loses_what_the_master_acknowledged() {
    let test = "failover_fast";
    let Some(f) = failover_under_load(test, None).await else {
        return;
    };
    // Grants and releases the master acknowledged while cut off from its replicas died
    // with it (leases lost or doubled, workers left leased to no one until expiry): why
    // docs/DECISIONS.md#d44 waits for a replica.
    assert!(
        f.double + f.lost + f.orphans > 0,
        "acknowledged writes lost with the master: {f:?}"
    );
    assert!(f.acquires_failed > 0, "the failover was seen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_that_need_a_password_are_asked_with_the_urls_sentinel_credentials() {
    let test = "sentinel_auth";
    let master = match RedisServer::start() {
        Ok(s) => s,
        Err(e) => {
            skip_or_fail("redis", test, &e.to_string());
            return;
        }
    };
    // The default user needs one password, the ACL user `watch` another; the data
    // server needs none.
    let sentinel = match SentinelServer::start_with(
        MASTER,
        master.port(),
        Duration::from_secs(5),
        Duration::from_secs(60),
        &[
            "requirepass sentinel-secret",
            "user watch on >watch-secret allcommands allchannels",
        ],
    ) {
        Ok(s) => s,
        Err(e @ ServerError::NotInstalled(_)) => {
            skip_or_fail("sentinel", test, &e.to_string());
            return;
        }
        Err(e) => panic!("redis-sentinel: {e}"),
    };
    let base = format!("redis+sentinel://127.0.0.1:{}/{MASTER}", sentinel.port());
    let connect = async |url: &str| {
        RedisConnection::connect(RedisConfig {
            reconnect_attempts: 1,
            ..RedisConfig::new(url)
        })
        .await
    };

    for refused in [
        base.clone(),
        format!("{base}?sentinel_password=wrong-secret"),
        format!("{base}?sentinel_user=watch&sentinel_password=sentinel-secret"),
    ] {
        let e = connect(&refused)
            .await
            .err()
            .unwrap_or_else(|| panic!("{refused}: connected without the Sentinels' password"));
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains("wrong-secret"), "{shown}");
        assert!(!shown.contains("sentinel-secret"), "{shown}");
    }

    for accepted in [
        format!("{base}?sentinel_password=sentinel-secret"),
        format!("{base}?sentinel_user=watch&sentinel_password=watch-secret"),
    ] {
        let conn = connect(&accepted)
            .await
            .unwrap_or_else(|e| panic!("{accepted}: {e}"));
        let kv = RedisStore::with_prefix(conn, format!("{test}-kv"));
        let beat = HeartbeatRecord {
            instance_id: "auth-1".into(),
            app_id: "auth-node".into(),
            status: InstanceHealthStatus::Healthy,
            last_seen: now(),
            services: vec![],
            issues: None,
            max_connections: 0,
            current_connections: 0,
            cpu_usage: 0.0,
            memory_usage: 0.0,
        };
        kv.put_heartbeat(&beat, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{accepted}: the master answers: {e}"));
    }
}
