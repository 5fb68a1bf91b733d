//! The wall clock, as a port: the engine asks the [`Clock`] it was built with for "now" instead of the
//! system (a test or a replay can give it another), and every conversion from `SystemTime` to Unix time
//! lives here once.
//!
//! Stripe's own clock (the `Date` of its responses) decides windows, cursors and `batch_timestamp`; this
//! one only stamps what the pipeline itself did (`landed_at`, lease expiry, manifests, export times).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where "now" comes from.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> SystemTime;

    /// Unix seconds.
    fn now_secs(&self) -> i64 {
        unix_secs(self.now())
    }

    /// Unix milliseconds.
    fn now_millis(&self) -> i64 {
        since_epoch(self.now()).as_millis() as i64
    }

    /// Unix microseconds.
    fn now_micros(&self) -> i64 {
        since_epoch(self.now()).as_micros() as i64
    }
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// The system clock, shared.
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// Unix seconds of `t`; instants before 1970 (a badly set clock) count as 0.
pub fn unix_secs(t: SystemTime) -> i64 {
    since_epoch(t).as_secs() as i64
}

fn since_epoch(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_times_convert_once() {
        #[derive(Debug)]
        struct At(SystemTime);
        impl Clock for At {
            fn now(&self) -> SystemTime {
                self.0
            }
        }
        let c = At(UNIX_EPOCH + Duration::from_millis(1_700_000_001_500));
        assert_eq!(c.now_secs(), 1_700_000_001);
        assert_eq!(c.now_millis(), 1_700_000_001_500);
        assert_eq!(c.now_micros(), 1_700_000_001_500_000);
        assert_eq!(unix_secs(UNIX_EPOCH - Duration::from_secs(5)), 0);
        assert!(SystemClock.now_secs() > 1_700_000_000);
    }
}
