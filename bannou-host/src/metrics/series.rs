//! Series handles made once per pool type and per route, so the paths taken on every
//! request (an acquire, a release, an HTTP request) only look a name up under a read
//! lock and touch atomics: no label strings are built and no family map is searched.
//!
//! Invariant: a handle shares its sample with the family it came from (prometheus-client
//! metrics are `Arc`s), and the families cached here are never cleared, so what a handle
//! records is what a scrape shows.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use super::families::Families;
use super::hooks::{ALL_ACQUIRE_OUTCOMES, AcquireOutcome, STALE_TOKEN_OPERATIONS, l};
use super::{Metrics, lock};

/// Worker states in the order of [`PoolSeries::workers`].
pub(super) const WORKER_STATES: [&str; 4] = ["pending", "available", "leased", "draining"];

/// Every series of one configured pool type.
pub(super) struct PoolSeries {
    /// Workers by state, in [`WORKER_STATES`] order.
    pub(super) workers: [Gauge; 4],
    pub(super) active_leases: Gauge,
    pub(super) queue_depth: Gauge,
    /// Releases by success: `[false, true]`.
    pub(super) releases: [Counter; 2],
    /// Acquire durations by outcome, in [`ALL_ACQUIRE_OUTCOMES`] order.
    acquire: [Histogram; 5],
    /// The last [`super::RECENT_ACQUIRES`] granted acquires' durations (ms), oldest first.
    pub(super) recent: Mutex<VecDeque<f64>>,
}

impl PoolSeries {
    fn new(f: &Families, pool: &str) -> Self {
        // Every label set made now, so rates and alerts see the pool from the start.
        f.pool_reclaimed.get_or_create_owned(&[("pool", l(pool))]);
        for operation in STALE_TOKEN_OPERATIONS {
            f.pool_stale_tokens
                .get_or_create_owned(&[("pool", l(pool)), ("operation", l(operation))]);
        }
        let gauge = |state: &str| {
            f.pool_workers
                .get_or_create_owned(&[("pool", l(pool)), ("state", l(state))])
        };
        let release = |success: &str| {
            f.pool_releases
                .get_or_create_owned(&[("pool", l(pool)), ("success", l(success))])
        };
        PoolSeries {
            workers: WORKER_STATES.map(gauge),
            active_leases: f
                .pool_active_leases
                .get_or_create_owned(&[("pool", l(pool))]),
            queue_depth: f.pool_queue_depth.get_or_create_owned(&[("pool", l(pool))]),
            releases: ["false", "true"].map(release),
            acquire: ALL_ACQUIRE_OUTCOMES.map(|o| {
                f.pool_acquire_duration
                    .get_or_create_owned(&[("pool", l(pool)), ("outcome", l(o.label()))])
            }),
            recent: Mutex::default(),
        }
    }

    /// The acquire-duration histogram of `outcome`.
    pub(super) fn acquire(&self, outcome: AcquireOutcome) -> &Histogram {
        let i = ALL_ACQUIRE_OUTCOMES
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(0);
        &self.acquire[i]
    }
}

/// One (method, status) of a route: its request counter.
struct StatusSeries {
    method: &'static str,
    status: u16,
    requests: Counter,
}

/// Every series of one declared route seen so far.
#[derive(Default)]
pub(super) struct RouteSeries {
    /// Few per route (a handful of methods and statuses): searched in order.
    statuses: RwLock<Vec<StatusSeries>>,
    durations: RwLock<Vec<(&'static str, Histogram)>>,
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The value under `key` of `map`, made by `make` the first time.
fn get_or_make<V>(
    map: &RwLock<HashMap<String, Arc<V>>>,
    key: &str,
    make: impl FnOnce() -> V,
) -> (Arc<V>, bool) {
    if let Some(v) = read(map).get(key) {
        return (Arc::clone(v), false);
    }
    let mut map = write(map);
    if let Some(v) = map.get(key) {
        return (Arc::clone(v), false);
    }
    let v = Arc::new(make());
    map.insert(key.to_owned(), Arc::clone(&v));
    (v, true)
}

impl Metrics {
    /// The series of `pool`, when it was seen configured.
    pub(super) fn pool_series(&self, pool: &str) -> Option<Arc<PoolSeries>> {
        read(&self.0.pools).get(pool).cloned()
    }

    /// The series of `pool`, made now if it is seen configured for the first time.
    pub(super) fn configured_pool(&self, pool: &str) -> Arc<PoolSeries> {
        get_or_make(&self.0.pools, pool, || {
            PoolSeries::new(&self.0.families, pool)
        })
        .0
    }

    /// Counts one request of `route`, `method` answered `status` after `secs`.
    pub(super) fn route_request(&self, route: &str, method: &'static str, status: u16, secs: f64) {
        let f = &self.0.families;
        let (series, _) = get_or_make(&self.0.routes, route, RouteSeries::default);
        let counted = read(&series.statuses)
            .iter()
            .find(|s| s.method == method && s.status == status)
            .map(|s| s.requests.inc())
            .is_some();
        if !counted {
            let mut statuses = write(&series.statuses);
            match statuses
                .iter()
                .find(|s| s.method == method && s.status == status)
            {
                Some(s) => {
                    s.requests.inc();
                }
                None => {
                    let requests = f.http_requests.get_or_create_owned(&[
                        ("route", l(route)),
                        ("method", l(method)),
                        ("status", status.to_string()),
                    ]);
                    requests.inc();
                    statuses.push(StatusSeries {
                        method,
                        status,
                        requests,
                    });
                }
            }
        }
        let observed = read(&series.durations)
            .iter()
            .find(|(m, _)| *m == method)
            .map(|(_, h)| h.observe(secs))
            .is_some();
        if !observed {
            let mut durations = write(&series.durations);
            if !durations.iter().any(|(m, _)| *m == method) {
                durations.push((
                    method,
                    f.http_duration
                        .get_or_create_owned(&[("route", l(route)), ("method", l(method))]),
                ));
            }
            if let Some((_, h)) = durations.iter().find(|(m, _)| *m == method) {
                h.observe(secs);
            }
        }
    }

    /// Records a granted acquire of `ms` in `series`' recent window.
    pub(super) fn recent_acquire(series: &PoolSeries, ms: f64) {
        let mut window = lock(&series.recent);
        if window.len() == super::RECENT_ACQUIRES {
            window.pop_front();
        }
        window.push_back(ms);
    }
}
