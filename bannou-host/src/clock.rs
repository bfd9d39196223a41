//! The wall clock of the host: a `Timestamp` that advances with tokio's clock.
//!
//! The domain takes `now` as an input; the host's loops read it here. [`TokioClock`] reads
//! the system time once, then adds tokio's monotonic elapsed time, so `tokio::time::pause`
//! and `advance` move it in tests exactly as they move timers, and a wall-clock jump never
//! makes leases expire early.

use orchestrator_core::Timestamp;
use orchestrator_core::time::Clock;

/// `start + (tokio now - tokio start)`.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    base: Timestamp,
    started: tokio::time::Instant,
}

impl TokioClock {
    /// A clock starting at the current system time.
    pub fn system() -> Self {
        Self::starting_at(Timestamp::from_datetime(chrono::Utc::now()))
    }

    /// A clock starting at `base` (tests pick a fixed instant).
    pub fn starting_at(base: Timestamp) -> Self {
        TokioClock {
            base,
            started: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        self.base + self.started.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn follows_paused_tokio_time() {
        let clock = TokioClock::starting_at(Timestamp::from_unix_millis(1_000));
        assert_eq!(clock.now().unix_millis(), 1_000);
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(clock.now().unix_millis(), 91_000);
    }
}
