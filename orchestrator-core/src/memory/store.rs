//! In-memory `OrchestratorStore`: the embedded default and the test stand-in. TTLs are
//! judged against an injected [`Clock`]; it passes the same conformance suite as Redis.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;

use crate::names::same_app_id;
use crate::ports::store::{OrchestratorStore, StoreError, check_ttl};
use crate::records::{DeploymentConfiguration, HeartbeatRecord, RoutingRecord};
use crate::time::{Clock, Timestamp};

/// An [`OrchestratorStore`] held in process memory.
///
/// A cheap `Clone` handle: clones share the same state. Expired records are invisible to
/// every read at once and are dropped lazily when next touched or listed.
///
/// The state sits behind a `std::sync::Mutex`, not an async one (the reasoning of tokio's
/// mini-redis): every critical section is a few map operations with no `.await` inside,
/// so the lock is held for microseconds and never across a suspension point. A blocking
/// mutex is then cheaper than an async one, cannot deadlock a task that yields while
/// holding it, and one lock per call makes every operation (version increments,
/// compare-and-set, config saves) atomic without further ceremony.
#[derive(Clone)]
pub struct InMemoryStore {
    shared: Arc<Shared>,
}

struct Shared {
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

/// A value with the instant it stops existing.
#[derive(Debug, Clone)]
struct Expiring<T> {
    value: T,
    expires_at: Timestamp,
}

impl<T> Expiring<T> {
    fn new(value: T, now: Timestamp, ttl: Duration) -> Self {
        Expiring {
            value,
            expires_at: now + ttl,
        }
    }

    /// Live strictly before the deadline (at the deadline it is gone, like a Redis key).
    fn live(&self, now: Timestamp) -> bool {
        now < self.expires_at
    }
}

#[derive(Default)]
struct State {
    heartbeats: BTreeMap<String, Expiring<HeartbeatRecord>>,
    routes: BTreeMap<String, Expiring<RoutingRecord>>,
    mappings_version: i64,
    config: ConfigState,
}

#[derive(Default)]
struct ConfigState {
    latest: u64,
    current: Option<DeploymentConfiguration>,
    history: BTreeMap<u64, Expiring<DeploymentConfiguration>>,
    last_stable: Option<DeploymentConfiguration>,
    in_progress: Option<DeploymentConfiguration>,
}

/// The live value under `key`, dropping it when expired.
fn live_entry<'a, T>(
    map: &'a mut BTreeMap<String, Expiring<T>>,
    key: &str,
    now: Timestamp,
) -> Option<&'a mut T> {
    if map.get(key).is_some_and(|e| !e.live(now)) {
        map.remove(key);
    }
    map.get_mut(key).map(|e| &mut e.value)
}

impl ConfigState {
    fn history_entry(
        &mut self,
        version: u64,
        now: Timestamp,
    ) -> Option<&mut Expiring<DeploymentConfiguration>> {
        if self.history.get(&version).is_some_and(|e| !e.live(now)) {
            self.history.remove(&version);
        }
        self.history.get_mut(&version)
    }

    fn get(&mut self, version: u64, now: Timestamp) -> Option<DeploymentConfiguration> {
        match &self.current {
            Some(c) if c.version == version => Some(c.clone()),
            _ => self.history_entry(version, now).map(|e| e.value.clone()),
        }
    }
}

impl InMemoryStore {
    /// An empty store whose TTLs run on `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        InMemoryStore {
            shared: Arc::new(Shared {
                clock,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Locks the state and reads the clock. A poisoned lock is recovered: every critical
    /// section leaves the maps consistent before anything that could panic.
    fn lock(&self) -> (MutexGuard<'_, State>, Timestamp) {
        let guard = self
            .shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        (guard, self.shared.clock.now())
    }
}

impl std::fmt::Debug for InMemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryStore").finish_non_exhaustive()
    }
}

#[async_trait]
impl OrchestratorStore for InMemoryStore {
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    // === heartbeats ===

    async fn put_heartbeat(
        &self,
        record: &HeartbeatRecord,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        check_ttl(ttl)?;
        let (mut s, now) = self.lock();
        s.heartbeats.insert(
            record.app_id.clone(),
            Expiring::new(record.clone(), now, ttl),
        );
        Ok(())
    }

    async fn get_heartbeat(&self, app_id: &str) -> Result<Option<HeartbeatRecord>, StoreError> {
        let (mut s, now) = self.lock();
        Ok(live_entry(&mut s.heartbeats, app_id, now).map(|r| r.clone()))
    }

    async fn list_heartbeats(&self) -> Result<Vec<HeartbeatRecord>, StoreError> {
        let (mut s, now) = self.lock();
        s.heartbeats.retain(|_, e| e.live(now));
        Ok(s.heartbeats.values().map(|e| e.value.clone()).collect())
    }

    async fn remove_heartbeat(&self, app_id: &str) -> Result<bool, StoreError> {
        let (mut s, now) = self.lock();
        Ok(s.heartbeats.remove(app_id).is_some_and(|e| e.live(now)))
    }

    // === routing ===

    async fn put_route(
        &self,
        service: &str,
        record: &RoutingRecord,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        check_ttl(ttl)?;
        let (mut s, now) = self.lock();
        s.routes
            .insert(service.to_owned(), Expiring::new(record.clone(), now, ttl));
        Ok(())
    }

    async fn get_route(&self, service: &str) -> Result<Option<RoutingRecord>, StoreError> {
        let (mut s, now) = self.lock();
        Ok(live_entry(&mut s.routes, service, now).map(|r| r.clone()))
    }

    async fn list_routes(&self) -> Result<BTreeMap<String, RoutingRecord>, StoreError> {
        let (mut s, now) = self.lock();
        s.routes.retain(|_, e| e.live(now));
        Ok(s.routes
            .iter()
            .map(|(k, e)| (k.clone(), e.value.clone()))
            .collect())
    }

    async fn set_route_if(
        &self,
        service: &str,
        expected_app_id: Option<&str>,
        record: &RoutingRecord,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        check_ttl(ttl)?;
        let (mut s, now) = self.lock();
        let matches = match (live_entry(&mut s.routes, service, now), expected_app_id) {
            (None, None) => true,
            (Some(existing), Some(expected)) => same_app_id(&existing.app_id, expected),
            _ => false,
        };
        if matches {
            s.routes
                .insert(service.to_owned(), Expiring::new(record.clone(), now, ttl));
        }
        Ok(matches)
    }

    async fn remove_route(&self, service: &str) -> Result<bool, StoreError> {
        let (mut s, now) = self.lock();
        Ok(s.routes.remove(service).is_some_and(|e| e.live(now)))
    }

    // === mappings version ===

    async fn next_mappings_version(&self) -> Result<i64, StoreError> {
        let (mut s, _) = self.lock();
        s.mappings_version = s.mappings_version.saturating_add(1);
        Ok(s.mappings_version)
    }

    async fn mappings_version(&self) -> Result<i64, StoreError> {
        let (s, _) = self.lock();
        Ok(s.mappings_version)
    }

    // === configuration ===

    async fn save_config_checked(
        &self,
        cfg: &DeploymentConfiguration,
        expected_latest: Option<u64>,
        history_ttl: Duration,
    ) -> Result<u64, StoreError> {
        check_ttl(history_ttl)?;
        let (mut s, now) = self.lock();
        let c = &mut s.config;
        if let Some(expected) = expected_latest.filter(|e| *e != c.latest) {
            return Err(StoreError::Conflict {
                key: "orch:cfg:version".to_owned(),
                message: format!("expected version {expected}, found {}", c.latest),
            });
        }
        let version = c.latest + 1;
        let mut cfg = cfg.clone();
        cfg.version = version;
        cfg.stable = false;
        c.history
            .insert(version, Expiring::new(cfg.clone(), now, history_ttl));
        c.current = Some(cfg);
        c.latest = version;
        Ok(version)
    }

    async fn current_config(&self) -> Result<Option<DeploymentConfiguration>, StoreError> {
        let (s, _) = self.lock();
        Ok(s.config.current.clone())
    }

    async fn config_version(
        &self,
        version: u64,
    ) -> Result<Option<DeploymentConfiguration>, StoreError> {
        let (mut s, now) = self.lock();
        Ok(s.config.get(version, now))
    }

    async fn config_history(
        &self,
        limit: usize,
    ) -> Result<Vec<DeploymentConfiguration>, StoreError> {
        let (mut s, now) = self.lock();
        let c = &mut s.config;
        c.history.retain(|_, e| e.live(now));
        let current_version = c.current.as_ref().map(|x| x.version);
        let older = c
            .history
            .values()
            .rev()
            .filter(|e| Some(e.value.version) != current_version)
            .map(|e| e.value.clone());
        Ok(c.current.iter().cloned().chain(older).take(limit).collect())
    }

    async fn latest_config_version(&self) -> Result<u64, StoreError> {
        let (s, _) = self.lock();
        Ok(s.config.latest)
    }

    async fn mark_config_stable(&self, version: u64) -> Result<bool, StoreError> {
        let (mut s, now) = self.lock();
        let c = &mut s.config;
        let Some(mut cfg) = c.get(version, now) else {
            return Ok(false);
        };
        cfg.stable = true;
        if let Some(e) = c.history_entry(version, now) {
            e.value.stable = true;
        }
        if let Some(cur) = c.current.as_mut().filter(|x| x.version == version) {
            cur.stable = true;
        }
        if c.last_stable.as_ref().is_none_or(|x| x.version <= version) {
            c.last_stable = Some(cfg);
        }
        Ok(true)
    }

    async fn last_stable_config(&self) -> Result<Option<DeploymentConfiguration>, StoreError> {
        let (s, _) = self.lock();
        Ok(s.config.last_stable.clone())
    }

    async fn begin_deploy(&self, target: &DeploymentConfiguration) -> Result<(), StoreError> {
        let (mut s, _) = self.lock();
        s.config.in_progress = Some(target.clone());
        Ok(())
    }

    async fn end_deploy(&self, deployment_id: &str) -> Result<bool, StoreError> {
        let (mut s, _) = self.lock();
        let slot = &mut s.config.in_progress;
        let ours = slot
            .as_ref()
            .is_some_and(|c| c.deployment_id.as_deref() == Some(deployment_id));
        if ours {
            *slot = None;
        }
        Ok(ours)
    }

    async fn deploy_in_progress(&self) -> Result<Option<DeploymentConfiguration>, StoreError> {
        let (s, _) = self.lock();
        Ok(s.config.in_progress.clone())
    }

    async fn prune_config_history(&self, keep_latest: Option<usize>) -> Result<usize, StoreError> {
        let (mut s, now) = self.lock();
        let c = &mut s.config;
        let before = c.history.len();
        c.history.retain(|_, e| e.live(now));
        if let Some(keep) = keep_latest {
            let cutoff = c.latest.saturating_sub(keep as u64);
            c.history.retain(|v, _| *v > cutoff);
        }
        Ok(before - c.history.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::store::{ManualTestTime, store_conformance};
    use crate::time::ManualClock;

    fn fresh() -> (InMemoryStore, ManualTestTime) {
        let clock = ManualClock::new(Timestamp::from_unix_millis(1_700_000_000_000));
        let store = InMemoryStore::new(Arc::new(clock.clone()));
        (store, ManualTestTime::new(clock))
    }

    #[tokio::test]
    async fn passes_the_conformance_suite() {
        store_conformance(|| async { fresh() }, Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn clones_share_state_and_work_as_trait_objects() {
        let (store, _) = fresh();
        let shared: Arc<dyn OrchestratorStore> = Arc::new(store.clone());
        assert_eq!(shared.next_mappings_version().await.unwrap(), 1);
        assert_eq!(store.mappings_version().await.unwrap(), 1);
    }

    /// A store whose `get_route` always misses while writes see the real state, so every
    /// create attempt of `claim_route` loses its race.
    struct BlindReads(InMemoryStore);

    #[async_trait]
    impl OrchestratorStore for BlindReads {
        async fn ping(&self) -> Result<(), StoreError> {
            self.0.ping().await
        }
        async fn put_heartbeat(&self, r: &HeartbeatRecord, t: Duration) -> Result<(), StoreError> {
            self.0.put_heartbeat(r, t).await
        }
        async fn get_heartbeat(&self, a: &str) -> Result<Option<HeartbeatRecord>, StoreError> {
            self.0.get_heartbeat(a).await
        }
        async fn list_heartbeats(&self) -> Result<Vec<HeartbeatRecord>, StoreError> {
            self.0.list_heartbeats().await
        }
        async fn remove_heartbeat(&self, a: &str) -> Result<bool, StoreError> {
            self.0.remove_heartbeat(a).await
        }
        async fn put_route(
            &self,
            s: &str,
            r: &RoutingRecord,
            t: Duration,
        ) -> Result<(), StoreError> {
            self.0.put_route(s, r, t).await
        }
        async fn get_route(&self, _: &str) -> Result<Option<RoutingRecord>, StoreError> {
            Ok(None)
        }
        async fn list_routes(&self) -> Result<BTreeMap<String, RoutingRecord>, StoreError> {
            self.0.list_routes().await
        }
        async fn set_route_if(
            &self,
            s: &str,
            e: Option<&str>,
            r: &RoutingRecord,
            t: Duration,
        ) -> Result<bool, StoreError> {
            self.0.set_route_if(s, e, r, t).await
        }
        async fn remove_route(&self, s: &str) -> Result<bool, StoreError> {
            self.0.remove_route(s).await
        }
        async fn next_mappings_version(&self) -> Result<i64, StoreError> {
            self.0.next_mappings_version().await
        }
        async fn mappings_version(&self) -> Result<i64, StoreError> {
            self.0.mappings_version().await
        }
        async fn save_config_checked(
            &self,
            c: &DeploymentConfiguration,
            e: Option<u64>,
            t: Duration,
        ) -> Result<u64, StoreError> {
            self.0.save_config_checked(c, e, t).await
        }
        async fn current_config(&self) -> Result<Option<DeploymentConfiguration>, StoreError> {
            self.0.current_config().await
        }
        async fn config_version(
            &self,
            v: u64,
        ) -> Result<Option<DeploymentConfiguration>, StoreError> {
            self.0.config_version(v).await
        }
        async fn config_history(
            &self,
            l: usize,
        ) -> Result<Vec<DeploymentConfiguration>, StoreError> {
            self.0.config_history(l).await
        }
        async fn latest_config_version(&self) -> Result<u64, StoreError> {
            self.0.latest_config_version().await
        }
        async fn mark_config_stable(&self, v: u64) -> Result<bool, StoreError> {
            self.0.mark_config_stable(v).await
        }
        async fn last_stable_config(&self) -> Result<Option<DeploymentConfiguration>, StoreError> {
            self.0.last_stable_config().await
        }
        async fn prune_config_history(&self, k: Option<usize>) -> Result<usize, StoreError> {
            self.0.prune_config_history(k).await
        }
        async fn begin_deploy(&self, t: &DeploymentConfiguration) -> Result<(), StoreError> {
            self.0.begin_deploy(t).await
        }
        async fn end_deploy(&self, id: &str) -> Result<bool, StoreError> {
            self.0.end_deploy(id).await
        }
        async fn deploy_in_progress(&self) -> Result<Option<DeploymentConfiguration>, StoreError> {
            self.0.deploy_in_progress().await
        }
    }

    #[tokio::test]
    async fn claim_route_gives_up_with_conflict_after_three_lost_races() {
        let (inner, _) = fresh();
        let rec = |app: &str| RoutingRecord {
            app_id: app.into(),
            host: app.into(),
            port: 80,
            status: None,
            last_updated: Timestamp::UNIX_EPOCH,
            load_percent: 0,
        };
        let ttl = Duration::from_secs(60);
        inner.put_route("auth", &rec("owner"), ttl).await.unwrap();
        let racing = BlindReads(inner.clone());
        let err = racing.claim_route("auth", &rec("other"), ttl).await;
        assert!(
            matches!(&err, Err(StoreError::Conflict { key, .. }) if key == "orch:rt:auth"),
            "got {err:?}"
        );
        assert_eq!(inner.get_route("auth").await.unwrap(), Some(rec("owner")));
    }

    #[tokio::test]
    async fn expired_entries_are_dropped_from_memory() {
        let (store, time) = fresh();
        let rec = RoutingRecord {
            app_id: "a".into(),
            host: "a".into(),
            port: 80,
            status: None,
            last_updated: Timestamp::UNIX_EPOCH,
            load_percent: 0,
        };
        store
            .put_route("auth", &rec, Duration::from_secs(1))
            .await
            .unwrap();
        time.clock().advance(Duration::from_secs(1));
        assert!(store.list_routes().await.unwrap().is_empty());
        assert!(store.lock().0.routes.is_empty());
    }
}
