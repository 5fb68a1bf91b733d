//! The simulated clock: a start instant that moves with real time, plus explicit advances.
//!
//! Objects are generated relative to the start instant, so a fixed start keeps "same seed, same data"; the
//! clock keeps ticking so that objects created later get later `created` values, and `advance` lets a test
//! jump days ahead (event retention, lags) without waiting.

use parking_lot::Mutex;
use std::time::Instant;

/// 2026-11-01T00:00:00Z, the default start of simulated time.
pub const DEFAULT_START: i64 = 1_793_491_200;

#[derive(Debug)]
pub struct Clock {
    start: i64,
    started_at: Instant,
    offset: Mutex<i64>,
}

impl Clock {
    pub fn new(start: i64) -> Clock {
        Clock {
            start,
            started_at: Instant::now(),
            offset: Mutex::new(0),
        }
    }

    /// Simulated now, in Unix seconds.
    pub fn now(&self) -> i64 {
        self.start + self.started_at.elapsed().as_secs() as i64 + *self.offset.lock()
    }

    /// Moves simulated time forward by `seconds` (negative values are ignored: time never goes back).
    pub fn advance(&self, seconds: i64) -> i64 {
        *self.offset.lock() += seconds.max(0);
        self.now()
    }
}
