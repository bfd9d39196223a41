//! When to publish `bannou.full-service-mappings`: at once on change, coalescing bursts
//! within a short window (D11 (docs/DECISIONS.md#d11)), plus the periodic rebroadcast
//! (docs/COMPATIBILITY.md#mappings-broadcast).
//!
//! [`BroadcastPolicy`] is a pure state machine; time is an input. The loop that drives it
//! (in `bannou-host`) is thin:
//!
//! ```text
//! loop {
//!     sleep_until(policy.next_deadline()) or wake on a table change -> policy.on_change(now)
//!     if let Some(reason) = policy.poll(now) {
//!         version = store.next_mappings_version();   // monotonic, never reset
//!         bus.publish(snapshot(table, version));      // non-blocking: fan-out buffer, never
//!                                                      // waits for any consumer
//!         policy.published(now, version);
//!     }
//! }
//! ```
//!
//! Publishing never waits on consumers: the bus only enqueues (tokio broadcast in memory,
//! `XADD` on Redis) and a slow node simply applies a later, newer snapshot. The loop must
//! build the snapshot and call [`BroadcastPolicy::published`] without applying table changes
//! in between, so a change is never marked published before it was included.

use std::time::Duration;

use orchestrator_core::time::Timestamp;

/// Default coalescing window: changes within it go out in one publication.
pub const DEFAULT_COALESCE_WINDOW: Duration = Duration::from_millis(100);

/// `FullMappingsIntervalSeconds` (docs/COMPATIBILITY.md#configuration-variables): periodic
/// rebroadcast interval.
pub const DEFAULT_REBROADCAST_INTERVAL: Duration = Duration::from_secs(30);

/// Why a publication is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishReason {
    /// The table changed and the coalescing window has elapsed.
    Changed,
    /// The rebroadcast interval elapsed since the last publication (or nothing was
    /// published yet: the first poll publishes at once so nodes catch up after a restart).
    Periodic,
}

/// A policy configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BroadcastConfigError {
    /// A zero rebroadcast interval would publish continuously.
    #[error("rebroadcast interval must be positive")]
    ZeroInterval,
    /// A window at least as long as the interval would make coalescing pointless.
    #[error(
        "coalesce window {window:?} must be shorter than the rebroadcast interval {interval:?}"
    )]
    WindowNotShorterThanInterval {
        /// The window given.
        window: Duration,
        /// The interval given.
        interval: Duration,
    },
}

/// Publish-on-change with burst coalescing and periodic rebroadcast, as a state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BroadcastPolicy {
    /// How long after the first change of a burst the publication happens.
    window: Duration,
    /// Maximum time between two publications.
    interval: Duration,
    /// First unpublished change of the current burst.
    dirty_since: Option<Timestamp>,
    /// Last publication: time and version.
    last_published: Option<(Timestamp, i64)>,
}

impl Default for BroadcastPolicy {
    /// 100 ms window, 30 s rebroadcast.
    fn default() -> Self {
        BroadcastPolicy {
            window: DEFAULT_COALESCE_WINDOW,
            interval: DEFAULT_REBROADCAST_INTERVAL,
            dirty_since: None,
            last_published: None,
        }
    }
}

// === impl BroadcastPolicy ===

impl BroadcastPolicy {
    /// A policy with coalescing `window` (zero publishes at the next poll) and
    /// `rebroadcast_interval` (positive, longer than the window).
    pub fn new(
        window: Duration,
        rebroadcast_interval: Duration,
    ) -> Result<Self, BroadcastConfigError> {
        if rebroadcast_interval.is_zero() {
            return Err(BroadcastConfigError::ZeroInterval);
        }
        if window >= rebroadcast_interval {
            return Err(BroadcastConfigError::WindowNotShorterThanInterval {
                window,
                interval: rebroadcast_interval,
            });
        }
        Ok(BroadcastPolicy {
            window,
            interval: rebroadcast_interval,
            dirty_since: None,
            last_published: None,
        })
    }

    /// Records a table change at `now` and returns when to publish it. The first change of
    /// a burst opens the window; later ones never push the deadline past `first + window`,
    /// so a steady stream of changes still publishes once per window.
    pub fn on_change(&mut self, now: Timestamp) -> Timestamp {
        let first = *self.dirty_since.get_or_insert(now);
        first + self.window
    }

    /// Whether to publish at `now`, and why. Does not change state; call
    /// [`published`](Self::published) once the snapshot went out.
    pub fn poll(&self, now: Timestamp) -> Option<PublishReason> {
        if let Some(first) = self.dirty_since
            && now >= first + self.window
        {
            return Some(PublishReason::Changed);
        }
        match self.last_published {
            None => Some(PublishReason::Periodic),
            Some((at, _)) if now >= at + self.interval => Some(PublishReason::Periodic),
            Some(_) => None,
        }
    }

    /// Records a publication of `version` at `now`: pending changes count as published and
    /// the periodic timer restarts.
    pub fn published(&mut self, now: Timestamp, version: i64) {
        self.dirty_since = None;
        self.last_published = Some((now, version));
    }

    /// The earliest instant at which [`poll`](Self::poll) returns a reason; a loop sleeps
    /// exactly until then (or until the next change). Before the first publication this is
    /// the Unix epoch, i.e. due now.
    pub fn next_deadline(&self) -> Timestamp {
        let periodic = match self.last_published {
            None => Timestamp::UNIX_EPOCH,
            Some((at, _)) => at + self.interval,
        };
        match self.dirty_since {
            Some(first) => periodic.min(first + self.window),
            None => periodic,
        }
    }

    /// When the pending change is due, `None` when nothing changed: the deadline of a
    /// replica that publishes changes but leaves the periodic rebroadcast to the leader.
    pub fn change_deadline(&self) -> Option<Timestamp> {
        self.dirty_since.map(|first| first + self.window)
    }

    /// True while a change awaits publication.
    pub fn is_dirty(&self) -> bool {
        self.dirty_since.is_some()
    }

    /// Version and time of the last publication.
    pub fn last_published(&self) -> Option<(Timestamp, i64)> {
        self.last_published
    }

    /// The coalescing window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The rebroadcast interval.
    pub fn rebroadcast_interval(&self) -> Duration {
        self.interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: i64) -> Timestamp {
        Timestamp::from_unix_millis(1_800_000_000_000 + n)
    }

    /// A policy that has just published version 1 at 0 ms.
    fn started() -> BroadcastPolicy {
        let mut p = BroadcastPolicy::default();
        assert_eq!(
            p.poll(ms(0)),
            Some(PublishReason::Periodic),
            "first poll publishes"
        );
        p.published(ms(0), 1);
        p
    }

    #[test]
    fn validates_configuration() {
        assert_eq!(
            BroadcastPolicy::new(Duration::ZERO, Duration::ZERO),
            Err(BroadcastConfigError::ZeroInterval)
        );
        assert!(BroadcastPolicy::new(Duration::from_secs(30), Duration::from_secs(30)).is_err());
        let p = BroadcastPolicy::new(Duration::ZERO, Duration::from_secs(1)).unwrap();
        assert_eq!(p.window(), Duration::ZERO);
        assert_eq!(
            BroadcastPolicy::default().rebroadcast_interval(),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn a_change_publishes_once_the_window_elapsed() {
        let mut p = started();
        assert_eq!(p.poll(ms(1_000)), None);
        assert_eq!(p.change_deadline(), None, "nothing pending");
        assert_eq!(p.on_change(ms(1_000)), ms(1_100));
        assert_eq!(p.next_deadline(), ms(1_100));
        assert_eq!(p.change_deadline(), Some(ms(1_100)));
        assert_eq!(p.poll(ms(1_099)), None);
        assert_eq!(p.poll(ms(1_100)), Some(PublishReason::Changed));
        p.published(ms(1_100), 2);
        assert!(!p.is_dirty());
        assert_eq!(p.change_deadline(), None);
        assert_eq!(p.last_published(), Some((ms(1_100), 2)));
        assert_eq!(p.next_deadline(), ms(31_100), "periodic timer restarts");
    }

    #[test]
    fn a_burst_is_coalesced_and_a_steady_stream_still_publishes_every_window() {
        let mut p = started();
        let mut publications = Vec::new();
        // A change every 10 ms for one second.
        for n in (1_000..2_000).step_by(10) {
            if p.poll(ms(n)).is_some() {
                publications.push(n);
                p.published(ms(n), 0);
            }
            assert!(p.on_change(ms(n)) <= ms(n + 100));
        }
        assert_eq!(
            publications,
            (1_100..2_000).step_by(100).collect::<Vec<_>>()
        );
    }

    #[test]
    fn periodic_rebroadcast_without_changes() {
        let p = started();
        assert_eq!(p.next_deadline(), ms(30_000));
        assert_eq!(p.poll(ms(29_999)), None);
        assert_eq!(p.poll(ms(30_000)), Some(PublishReason::Periodic));
    }

    #[test]
    fn deadline_is_the_earlier_of_window_and_interval() {
        let mut p = started();
        p.on_change(ms(29_950));
        assert_eq!(p.next_deadline(), ms(30_000));
        assert_eq!(p.poll(ms(30_000)), Some(PublishReason::Periodic));
        assert_eq!(
            BroadcastPolicy::default().next_deadline(),
            Timestamp::UNIX_EPOCH
        );
    }
}
