//! Client-side rate limiting: a token bucket per account and mode, and one per account, mode and
//! endpoint, shared by every task of the process so parallel slices never exceed the budget together.
//!
//! Across processes (Lambda workers, each with its own limiter) the budget is shared by *rate slots*:
//! an account-mode has [`rate_slots`] of them, a process holds one while it runs a slice (a lease in
//! the state store, taken by the Lambda worker), and a limiter built with [`Limiter::per_slot`] spends
//! only one slot's part of the account's budget. A slot is one endpoint's worth of the account's limit (25 of a
//! live account's 100 requests per second, all 25 of a test account's), so a slice — which lists one
//! endpoint — loses nothing to the split, and however many workers run, the account sees at most its
//! budget.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// Stripe's published limits (requests per second).
pub const STRIPE_LIVE_LIMIT: f64 = 100.0;
pub const STRIPE_TEST_LIMIT: f64 = 25.0;
pub const STRIPE_ENDPOINT_LIMIT: f64 = 25.0;

/// The part of a rate the limiter actually uses when the process holds the whole budget (local mode).
/// Requests are spaced evenly (a bucket holds one token, no burst), so any one-second window sees at
/// most the rate plus the bucket's one token and its wake-up slack, rounded down: at 99 % of a live
/// account's 100 requests per second that is 100, and 25 of an endpoint's 25. No more margin is
/// needed: every request of the account is this process's, and Stripe's own limiter (a bucket too)
/// tolerates the jitter between taking a token and the request arriving. Measured: at 0.9 the
/// 1M-object backfill could not reach 90 % of its ceiling even when scheduled perfectly
/// (BENCHMARKS.md).
const SEND_MARGIN_WHOLE: f64 = 0.99;
/// The same for one rate slot of several processes: the key check a worker makes before it holds a
/// slot, and the rounding of four processes' windows that are not aligned, must fit inside the budget.
const SEND_MARGIN_SLOT: f64 = 0.9;

/// How late a waiter may wake without losing its time: a bucket holds one token plus what this
/// much time earns. The timer rounds a sleep up to the next millisecond and a busy machine wakes
/// later still; with exactly one token the time past the token was lost on every request (measured:
/// 88 requests/s of a 98/s budget in the 1M-object backfill). The surplus shortens the next wait
/// instead, and adds at most a fraction of a request to any one second (0.4 at 99/s).
const WAKE_SLACK_SECS: f64 = 0.004;

/// The shortest wait for a token.
const MIN_WAIT: Duration = Duration::from_micros(100);

/// After a 429 the bucket's rate is halved, down to this part of its budget at most…
const THROTTLE_FLOOR: f64 = 0.1;
/// …and climbs back to the whole budget over this many seconds without another 429.
const RECOVERY_SECS: f64 = 30.0;

/// How many rate slots an account-mode's budget is split into when several processes share it.
pub fn rate_slots(livemode: bool) -> usize {
    (account_limit(livemode) / STRIPE_ENDPOINT_LIMIT)
        .round()
        .max(1.0) as usize
}

fn account_limit(livemode: bool) -> f64 {
    if livemode {
        STRIPE_LIVE_LIMIT
    } else {
        STRIPE_TEST_LIMIT
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    /// Requests per second when nothing was throttled.
    rate: f64,
    /// The part of `rate` in use: below 1 after a 429 (the merchant's own traffic takes the rest).
    factor: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: 1.0,
            rate,
            factor: 1.0,
            at: now,
        }
    }

    /// Takes a token now, or says how long until one is there.
    fn take(&mut self, now: Instant) -> Option<Duration> {
        let elapsed = now.duration_since(self.at).as_secs_f64();
        self.factor = (self.factor + elapsed / RECOVERY_SECS).min(1.0);
        let rate = self.rate * self.factor;
        self.tokens = (self.tokens + elapsed * rate).min(1.0 + rate * WAKE_SLACK_SECS);
        self.at = now;
        if self.tokens >= 1.0 {
            None
        } else {
            // Never a zero wait: a sleep of nothing lets no time pass, and a token short by a
            // rounding error would be asked for again at once, forever.
            Some(Duration::from_secs_f64((1.0 - self.tokens) / rate).max(MIN_WAIT))
        }
    }

    fn throttle(&mut self) {
        self.factor = (self.factor * 0.5).max(THROTTLE_FLOOR);
    }
}

/// How much of an account's budget this process may spend.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Share {
    /// All of it: the process is the only one sending for the account (local mode, under the
    /// account's lease).
    Whole,
    /// One rate slot's part: other processes may hold the account's other slots.
    Slot,
}

/// The budget: a share of Stripe's limits.
#[derive(Debug)]
pub struct Limiter {
    budget: f64,
    share: Share,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Limiter {
    /// A limiter that spends all of `budget` (the share of Stripe's limits to use, in (0, 1]).
    pub fn new(budget: f64) -> Limiter {
        Limiter {
            budget,
            share: Share::Whole,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// A limiter that spends one rate slot's part of `budget` per account: for processes that hold a
    /// slot (see the module doc) while they send.
    pub fn per_slot(budget: f64) -> Limiter {
        Limiter {
            share: Share::Slot,
            ..Limiter::new(budget)
        }
    }

    /// Requests per second this limiter allows for one account-mode, and for one of its endpoints.
    pub fn rates(&self, livemode: bool) -> (f64, f64) {
        let mut account = self.budget * account_limit(livemode);
        let margin = match self.share {
            Share::Whole => SEND_MARGIN_WHOLE,
            Share::Slot => {
                account /= rate_slots(livemode) as f64;
                SEND_MARGIN_SLOT
            }
        };
        let endpoint = (self.budget * STRIPE_ENDPOINT_LIMIT).min(account);
        (account * margin, endpoint * margin)
    }

    fn keys(account: &str, livemode: bool, endpoint: &str) -> [String; 2] {
        let global = format!("{account}/{livemode}");
        let local = format!("{global}{endpoint}");
        [global, local]
    }

    /// Waits until both the account's and the endpoint's bucket have a token, then takes them.
    pub async fn acquire(&self, account: &str, livemode: bool, endpoint: &str) {
        let keys = Limiter::keys(account, livemode, endpoint);
        let (account_rate, endpoint_rate) = self.rates(livemode);
        loop {
            let wait = {
                let now = Instant::now();
                let mut buckets = self.buckets.lock();
                let mut take = |key: &str, rate: f64| {
                    buckets
                        .entry(key.to_string())
                        .or_insert_with(|| Bucket::new(rate, now))
                        .take(now)
                };
                match (take(&keys[0], account_rate), take(&keys[1], endpoint_rate)) {
                    (None, None) => {
                        for key in &keys {
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

    /// Stripe answered 429 for the account's rate: halve the rates of the account and the endpoint
    /// (the merchant's own traffic uses more of the limit than usual); they climb back over
    /// [`RECOVERY_SECS`].
    pub fn throttled(&self, account: &str, livemode: bool, endpoint: &str) {
        let (account_rate, endpoint_rate) = self.rates(livemode);
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        for (key, rate) in Limiter::keys(account, livemode, endpoint)
            .into_iter()
            .zip([account_rate, endpoint_rate])
        {
            let bucket = buckets.entry(key).or_insert_with(|| Bucket::new(rate, now));
            // Bring the recovery up to now before halving.
            let _ = bucket.take(now);
            bucket.throttle();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Requests taken in `secs` seconds, one after another, by a single caller.
    async fn taken_in(l: &Limiter, livemode: bool, endpoint: &str, secs: f64) -> usize {
        let start = Instant::now();
        let mut n = 0;
        while start.elapsed().as_secs_f64() < secs {
            l.acquire("a", livemode, endpoint).await;
            n += 1;
        }
        n
    }

    #[tokio::test(start_paused = true)]
    async fn requests_are_spaced_to_the_budget_without_bursts() {
        let l = Limiter::new(0.2); // 5/s endpoint, 20/s live account, less the margin
        let n = taken_in(&l, true, "/v1/charges", 3.0).await;
        // 4.9/s for 3 s, and the first at once: no second's worth of burst at the start.
        assert!((14..=16).contains(&n), "{n}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_whole_budget_never_puts_more_than_the_limit_in_one_second() {
        let l = Arc::new(Limiter::new(1.0));
        let start = Instant::now();
        // Six endpoints at once, three callers each: the account's limit binds, and one endpoint's.
        let mut tasks = tokio::task::JoinSet::new();
        for e in 0..6 {
            for _ in 0..3 {
                let l = l.clone();
                tasks.spawn(async move {
                    let endpoint = format!("/v1/e{e}");
                    let mut at = Vec::new();
                    while start.elapsed().as_secs_f64() < 5.0 {
                        l.acquire("a", true, &endpoint).await;
                        at.push((e, start.elapsed().as_secs_f64()));
                    }
                    at
                });
            }
        }
        let mut at: Vec<(usize, f64)> = Vec::new();
        while let Some(done) = tasks.join_next().await {
            at.extend(done.expect("caller"));
        }
        at.sort_by(|a, b| a.1.total_cmp(&b.1));
        // Every window of one second, starting at each request.
        let busiest = |of: &[f64]| {
            (0..of.len())
                .map(|i| of[i..].iter().take_while(|&&t| t - of[i] < 1.0).count())
                .max()
                .unwrap_or(0)
        };
        let all: Vec<f64> = at.iter().map(|(_, t)| *t).collect();
        let first: Vec<f64> = at
            .iter()
            .filter(|(e, _)| *e == 0)
            .map(|(_, t)| *t)
            .collect();
        assert!(
            busiest(&all) <= 100,
            "the account's limit is 100/s: {}",
            busiest(&all)
        );
        assert!(
            busiest(&first) <= 25,
            "an endpoint's is 25/s: {}",
            busiest(&first)
        );
        // And the budget is spent: 99/s for 5 s.
        assert!(all.len() >= 5 * 97, "{} requests in 5 s", all.len());
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_spends_one_endpoints_part_of_the_account() {
        let whole = Limiter::new(1.0);
        let slot = Limiter::per_slot(1.0);
        assert_eq!(rate_slots(true), 4);
        assert_eq!(rate_slots(false), 1);
        // Live: the whole account 100/s, a slot 25/s; an endpoint 25/s either way.
        assert_eq!(whole.rates(true), (99.0, 24.75));
        assert_eq!(slot.rates(true), (22.5, 22.5));
        // Test: one slot, the account's 25/s.
        assert_eq!(slot.rates(false), (22.5, 22.5));
        // Four endpoints at once, through one slot: together no more than the slot's rate.
        let mut n = 0;
        let start = Instant::now();
        while start.elapsed().as_secs_f64() < 2.0 {
            for e in ["/v1/a", "/v1/b", "/v1/c", "/v1/d"] {
                slot.acquire("a", true, e).await;
                n += 1;
            }
        }
        assert!(n <= 48, "{n}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_halves_the_rate_and_it_recovers() {
        let l = Limiter::new(0.4); // 9.8/s endpoint
        let before = taken_in(&l, true, "/v1/charges", 2.0).await;
        l.throttled("a", true, "/v1/charges");
        let after = taken_in(&l, true, "/v1/charges", 2.0).await;
        assert!(after * 10 < before * 7, "{before} then {after}");
        tokio::time::sleep(Duration::from_secs(RECOVERY_SECS as u64)).await;
        let recovered = taken_in(&l, true, "/v1/charges", 2.0).await;
        assert!(recovered + 1 >= before, "{before} then {recovered}");
    }
}
