//! Client-side rate limiting: a token bucket per account and mode, and one per account, mode and
//! endpoint, shared by every task of the process so parallel slices never exceed the budget together.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// Stripe's published limits (requests per second).
pub const STRIPE_LIVE_LIMIT: f64 = 100.0;
pub const STRIPE_TEST_LIMIT: f64 = 25.0;
pub const STRIPE_ENDPOINT_LIMIT: f64 = 25.0;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    rate: f64,
    at: Instant,
}

impl Bucket {
    /// Takes a token now, or says how long until one is there.
    fn take(&mut self, now: Instant) -> Option<Duration> {
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate)
            .min(self.rate.max(1.0));
        self.at = now;
        if self.tokens >= 1.0 {
            None
        } else {
            Some(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

/// The budget: a share of Stripe's limits.
#[derive(Debug)]
pub struct Limiter {
    budget: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Limiter {
    /// `budget` is the share of Stripe's limits to use, in (0, 1].
    pub fn new(budget: f64) -> Limiter {
        Limiter {
            budget,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Waits until both the account's and the endpoint's bucket have a token, then takes them.
    pub async fn acquire(&self, account: &str, livemode: bool, endpoint: &str) {
        let global = format!("{account}/{livemode}");
        let local = format!("{global}{endpoint}");
        let account_rate = self.budget
            * if livemode {
                STRIPE_LIVE_LIMIT
            } else {
                STRIPE_TEST_LIMIT
            };
        let endpoint_rate = self.budget * STRIPE_ENDPOINT_LIMIT;
        loop {
            let wait = {
                let now = Instant::now();
                let mut buckets = self.buckets.lock();
                let mut bucket = |key: &str, rate: f64| {
                    buckets
                        .entry(key.to_string())
                        .or_insert(Bucket {
                            tokens: rate.max(1.0),
                            rate,
                            at: now,
                        })
                        .take(now)
                };
                match (bucket(&global, account_rate), bucket(&local, endpoint_rate)) {
                    (None, None) => {
                        for key in [&global, &local] {
                            if let Some(b) = buckets.get_mut(key.as_str()) {
                                b.tokens -= 1.0;
                            }
                        }
                        return;
                    }
                    (a, b) => a.max(b).unwrap_or(Duration::from_millis(1)),
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_are_spread_to_the_budget() {
        let l = Limiter::new(0.2); // 5/s endpoint, 20/s live account
        let start = tokio::time::Instant::now();
        for _ in 0..15 {
            l.acquire("a", true, "/v1/charges").await;
        }
        // 5 tokens at start, then 10 more at 5/s.
        let elapsed = start.elapsed().as_secs_f64();
        assert!(elapsed >= 1.9, "{elapsed}");
    }
}
