//! Wall-clock time as the domain sees it: a value passed in, never read from a clock here.
//!
//! [`Timestamp`] wraps a UTC instant and writes it the way upstream's C# `DateTimeOffset`
//! does (`2026-03-02T14:05:31.512+00:00`), while reading any RFC 3339 text.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A UTC instant with millisecond precision on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// The Unix epoch, useful as "never" in tests and defaults.
    pub const UNIX_EPOCH: Timestamp = Timestamp(DateTime::<Utc>::UNIX_EPOCH);

    /// Wraps a chrono instant.
    pub const fn from_datetime(dt: DateTime<Utc>) -> Self {
        Timestamp(dt)
    }

    /// Instant `ms` milliseconds after the Unix epoch (clamped to the representable range).
    pub fn from_unix_millis(ms: i64) -> Self {
        Timestamp(
            Utc.timestamp_millis_opt(ms)
                .single()
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        )
    }

    /// Milliseconds since the Unix epoch.
    pub fn unix_millis(self) -> i64 {
        self.0.timestamp_millis()
    }

    /// The chrono instant.
    pub const fn as_datetime(self) -> DateTime<Utc> {
        self.0
    }

    /// Time elapsed from `earlier` to `self`, or zero when `earlier` is later.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        (self.0 - earlier.0).to_std().unwrap_or(Duration::ZERO)
    }

    /// Parses RFC 3339 text (any offset); the result is in UTC.
    pub fn parse(s: &str) -> Result<Self, chrono::ParseError> {
        DateTime::parse_from_rfc3339(s).map(|dt| Timestamp(dt.with_timezone(&Utc)))
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(dt: DateTime<Utc>) -> Self {
        Timestamp(dt)
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        let d = chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        Timestamp(
            self.0
                .checked_add_signed(d)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        )
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Timestamp;
    fn sub(self, d: Duration) -> Timestamp {
        let d = chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        Timestamp(
            self.0
                .checked_sub_signed(d)
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
        )
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `+00:00` rather than `Z`: the spelling upstream's serializer writes.
        let s = self.0.to_rfc3339_opts(SecondsFormat::Millis, false);
        f.write_str(&s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Timestamp::parse(&s)
            .map_err(|e| serde::de::Error::custom(format!("invalid timestamp `{s}`: {e}")))
    }
}

/// Formats a duration as upstream's `hh:mm:ss` (hours may exceed 24).
pub fn format_hms(d: Duration) -> String {
    let s = d.as_secs();
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_upstream_offset_spelling_and_reads_any_offset() {
        let t = Timestamp::parse("2026-03-02T16:05:31.512+02:00").unwrap();
        assert_eq!(t.to_string(), "2026-03-02T14:05:31.512+00:00");
        let z = Timestamp::parse("2026-03-02T14:05:31.512Z").unwrap();
        assert_eq!(t, z);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2026-03-02T14:05:31.512+00:00\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        assert!(serde_json::from_str::<Timestamp>("\"yesterday\"").is_err());
    }

    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp::from_unix_millis(10_000);
        assert_eq!((t + Duration::from_millis(500)).unix_millis(), 10_500);
        assert_eq!(
            t.saturating_since(t + Duration::from_secs(1)),
            Duration::ZERO
        );
        assert_eq!(
            (t + Duration::from_secs(90)).saturating_since(t),
            Duration::from_secs(90)
        );
    }

    #[test]
    fn hms_format() {
        assert_eq!(format_hms(Duration::from_secs(0)), "00:00:00");
        assert_eq!(
            format_hms(Duration::from_secs(3 * 3600 + 7 * 60 + 9)),
            "03:07:09"
        );
        assert_eq!(format_hms(Duration::from_secs(30 * 3600)), "30:00:00");
    }
}

/// A source of "now" for the adapters that need one (in-memory TTLs, loops).
///
/// Domain functions take `now` as an argument instead; a clock is only handed to code that
/// must read time itself. Tests use [`ManualClock`].
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

/// A clock that only moves when told to. Clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock(std::sync::Arc<std::sync::atomic::AtomicI64>);

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: Timestamp) -> Self {
        ManualClock(std::sync::Arc::new(std::sync::atomic::AtomicI64::new(
            start.unix_millis(),
        )))
    }

    /// Moves the clock forward.
    pub fn advance(&self, d: Duration) {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        self.0.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }

    /// Sets the clock to `t`.
    pub fn set(&self, t: Timestamp) {
        self.0
            .store(t.unix_millis(), std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_millis(self.0.load(std::sync::atomic::Ordering::SeqCst))
    }
}
