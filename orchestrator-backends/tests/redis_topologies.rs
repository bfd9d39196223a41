//! The Redis adapters over TLS, with an ACL user and on a Redis Cluster, against real
//! `redis-server`s (skips without one unless `BANNOU_TEST_REQUIRE=redis`): the
//! conformance suites of the store, lease store, bus and leader on a TLS-only server
//! (certificates made by the test, a client certificate required) and on a cluster of
//! three masters, a plain-TCP connection to the TLS server failing clearly, an ACL user
//! whose password shows in no error, and pools spread over every master.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use orchestrator_backends::redis::bus::{RedisBus, RedisBusConfig};
use orchestrator_backends::redis::connection::{ConnectError, RedisConfig, RedisConnection};
use orchestrator_backends::redis::leader::RedisLeaderElection;
use orchestrator_backends::redis::leases::{RedisLeaseStore, RedisLeaseStoreConfig};
use orchestrator_backends::redis::server::{RedisCluster, RedisServer};
use orchestrator_backends::redis::store::RedisStore;
use orchestrator_backends::redis::url::TlsFiles;
use orchestrator_core::ports::bus::EventBus;
use orchestrator_core::ports::store::OrchestratorStore;
use orchestrator_core::testkit::bus::bus_conformance;
use orchestrator_core::testkit::leader::leader_conformance;
use orchestrator_core::testkit::store::{self, store_conformance};
use orchestrator_pools::LeaseStore;
use orchestrator_pools::testkit::lease_store_conformance;

/// Real time: Redis judges TTLs by its own clock.
struct Sleep;

#[async_trait]
impl store::TestTime for Sleep {
    async fn advance(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }
}

fn unique(test: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{test}{}:", N.fetch_add(1, Ordering::SeqCst))
}

fn tls_server(test: &str) -> Option<RedisServer> {
    match RedisServer::start_tls() {
        Ok(s) => Some(s),
        Err(e) => {
            orchestrator_backends::require::skip_or_fail("redis", test, &e.to_string());
            None
        }
    }
}

/// Runs the four conformance suites against `url` with `tls`.
async fn all_suites(url: &str, tls: &TlsFiles) {
    let conn = RedisConnection::connect(RedisConfig::new(url).with_tls_files(tls.clone()))
        .await
        .expect("connect");
    store_conformance(
        || {
            let store = RedisStore::with_prefix(conn.clone(), unique("store"));
            async move { (store, Sleep) }
        },
        Duration::from_secs(1),
    )
    .await;
    println!("checked: store_conformance on {url}");
    bus_conformance(|| {
        let bus: Arc<dyn EventBus> = Arc::new(RedisBus::new(
            conn.clone(),
            RedisBusConfig::with_prefix(unique("bus")),
        ));
        async move { bus }
    })
    .await;
    println!("checked: bus_conformance on {url}");
    let c = &conn;
    leader_conformance(
        || async move {
            (
                RedisLeaderElection::with_prefix(c.clone(), unique("leader")),
                Sleep,
            )
        },
        Duration::from_millis(300),
    )
    .await;
    println!("checked: leader_conformance on {url}");
    lease_store_conformance(|| async move {
        let config = RedisLeaseStoreConfig {
            tls_files: tls.clone(),
            ..RedisLeaseStoreConfig::with_prefix(unique("leases"))
        };
        RedisLeaseStore::connect(url, config)
            .await
            .expect("lease store connects")
    })
    .await;
    println!("checked: lease_store_conformance on {url}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conformance_suites_pass_over_tls() {
    let test = "the_conformance_suites_pass_over_tls";
    let Some(server) = tls_server(test) else {
        return;
    };
    let certs = server
        .certificates()
        .expect("a TLS server has certificates");
    assert!(server.url().starts_with("rediss://"));
    all_suites(&server.url(), &certs.client_files()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_tcp_to_a_tls_server_and_tls_without_the_ca_fail_clearly() {
    let test = "plain_tcp_to_a_tls_server_and_tls_without_the_ca_fail_clearly";
    let Some(server) = tls_server(test) else {
        return;
    };
    let certs = server.certificates().unwrap();
    let plain = format!("redis://127.0.0.1:{}/", server.port());
    let err = RedisConnection::connect(RedisConfig::new(&plain))
        .await
        .expect_err("plain TCP to a TLS-only port must fail");
    assert!(matches!(err, ConnectError::Unreachable { .. }), "{err}");
    assert!(
        err.to_string().contains("redis://127.0.0.1") && err.to_string().contains("rediss://"),
        "names the URL and the cure: {err}"
    );
    println!("plain TCP: {err}");

    // TLS without our CA: the system roots do not know the test CA.
    let err = RedisConnection::connect(RedisConfig::new(server.url()))
        .await
        .expect_err("an unknown CA must be refused");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    println!("TLS without the CA file: {err}");

    // The CA but no client certificate: the server asks for one.
    let only_ca = TlsFiles {
        ca_file: certs.client_files().ca_file,
        ..TlsFiles::default()
    };
    let refused =
        RedisConnection::connect(RedisConfig::new(server.url()).with_tls_files(only_ca)).await;
    assert!(refused.is_err(), "the server requires a client certificate");

    // A missing file is named with its variable.
    let missing = TlsFiles {
        ca_file: Some("/nonexistent/ca.pem".into()),
        ..TlsFiles::default()
    };
    let err = RedisConnection::connect(RedisConfig::new(server.url()).with_tls_files(missing))
        .await
        .expect_err("a missing CA file");
    assert!(
        err.to_string().contains("ORCHESTRATOR_REDIS_TLS_CA_FILE")
            && err.to_string().contains("/nonexistent/ca.pem"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_connects_and_its_password_shows_nowhere() {
    let test = "an_acl_user_connects_and_its_password_shows_nowhere";
    let Some(server) = RedisServer::for_test(test) else {
        return;
    };
    let secret = "s3cret-Pa55:word@x";
    let mut admin = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("orchestrator")
        .arg("on")
        .arg(format!(">{secret}"))
        .arg("~*")
        .arg("&*")
        .arg("+@all")
        .query_async(&mut admin)
        .await
        .unwrap();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg("off")
        .query_async(&mut admin)
        .await
        .unwrap();
    let encoded: String =
        percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    let url = format!(
        "redis://orchestrator:{encoded}@127.0.0.1:{}/",
        server.port()
    );

    // The user works for every adapter.
    let conn = RedisConnection::connect(RedisConfig::new(&url))
        .await
        .expect("the ACL user connects");
    let store = RedisStore::with_prefix(conn.clone(), unique("acl"));
    store.ping().await.expect("PING as the ACL user");
    assert_eq!(
        store
            .next_mappings_version()
            .await
            .expect("a write as the ACL user"),
        1
    );
    let leases = RedisLeaseStore::connect(&url, RedisLeaseStoreConfig::with_prefix(unique("acl")))
        .await
        .expect("the lease store connects as the ACL user");
    assert_eq!(leases.scripting(), "functions");
    assert!(!format!("{conn:?}").contains(secret) && !format!("{conn:?}").contains(&encoded));
    assert!(conn.url().to_string().contains("orchestrator:***@"));

    // Without the user (default is off) and with a wrong password: refused, and no
    // message shows a password.
    let anonymous = RedisConnection::connect(RedisConfig::new(server.url())).await;
    let anonymous = anonymous.map(|_| ()).expect_err("the default user is off");
    let wrong_secret = "not-the-Pa55word";
    let wrong = format!(
        "redis://orchestrator:{wrong_secret}@127.0.0.1:{}/",
        server.port()
    );
    let err = RedisConnection::connect(RedisConfig::new(&wrong))
        .await
        .map(|_| ())
        .expect_err("a wrong password is refused");
    let lease_err = RedisLeaseStore::connect(&wrong, RedisLeaseStoreConfig::default())
        .await
        .map(|_| ())
        .expect_err("also for the lease store");
    for message in [
        anonymous.to_string(),
        err.to_string(),
        format!("{err:?}"),
        lease_err.to_string(),
        format!("{:?}", RedisConfig::new(&wrong)),
    ] {
        assert!(
            !message.contains(wrong_secret) && !message.contains(secret),
            "a password leaked: {message}"
        );
    }
    assert!(err.to_string().contains("orchestrator:***@"), "{err}");
    println!("refused: {err}");
}

fn cluster(test: &str) -> Option<RedisCluster> {
    match RedisCluster::start(3) {
        Ok(c) => Some(c),
        Err(e) => {
            orchestrator_backends::require::skip_or_fail("redis", test, &e.to_string());
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conformance_suites_pass_on_a_cluster_of_three_masters() {
    let Some(cluster) = cluster("the_conformance_suites_pass_on_a_cluster_of_three_masters") else {
        return;
    };
    all_suites(&cluster.url(), &TlsFiles::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_spread_over_every_master_of_a_cluster() {
    let Some(cluster) = cluster("pools_spread_over_every_master_of_a_cluster") else {
        return;
    };
    let prefix = unique("spread");
    let store = RedisLeaseStore::connect(
        &cluster.url(),
        RedisLeaseStoreConfig::with_prefix(prefix.clone()),
    )
    .await
    .expect("the lease store connects to the cluster");
    for n in 0..12 {
        let mut spec = orchestrator_pools::PoolSpec::named(format!("pool-{n}"));
        spec.min_instances = 0;
        spec.max_instances = 4;
        let config = orchestrator_pools::PoolConfig::new(spec).expect("valid config");
        store.configure_pool(config).await.expect("configure");
    }
    let mut per_master = Vec::new();
    for node in cluster.nodes() {
        let mut con = redis::Client::open(node.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        // The pools' own keys (the pool list is one more key, on one master).
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}pool:{{*"))
            .query_async(&mut con)
            .await
            .unwrap();
        per_master.push(keys.len());
    }
    assert!(
        per_master.iter().all(|k| *k > 0),
        "every master holds pool keys: {per_master:?}"
    );
    let listed = store.list_pools().await.expect("list");
    assert_eq!(listed.len(), 12, "{listed:?}");
    assert_eq!(
        per_master.iter().sum::<usize>(),
        12,
        "one state key per pool"
    );
    println!("checked: 12 pools' keys per master {per_master:?}");
}
