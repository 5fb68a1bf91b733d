//! Rate limits and injected faults: the two ways the simulator refuses to answer normally.
//!
//! Rate limits are token buckets per account and mode and per (account, mode, endpoint), refilled in real
//! time, like Stripe's. Faults are rules that fire by probability or on every n-th request, from a seeded
//! generator so a run can be repeated.

use crate::rng::Rng;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Stripe's request budget per account and endpoint (requests per second).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    /// Off: every request passes (benchmarks of the simulator itself).
    pub enabled: bool,
    /// Live-mode requests per second per account (Stripe: 100).
    pub live_per_sec: f64,
    /// Test-mode requests per second per account (Stripe: 25).
    pub test_per_sec: f64,
    /// Requests per second per account, mode and endpoint (Stripe: about 25).
    pub endpoint_per_sec: f64,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            enabled: true,
            live_per_sec: 100.0,
            test_per_sec: 25.0,
            endpoint_per_sec: 25.0,
        }
    }
}

impl RateLimits {
    pub fn off() -> Self {
        RateLimits {
            enabled: false,
            ..RateLimits::default()
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets keyed by account/mode and by account/mode/endpoint.
#[derive(Debug, Default)]
pub struct Limiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Limiter {
    /// Takes one token from each bucket, or says which limit refused (`global-rate` / `endpoint-rate`).
    pub fn admit(
        &self,
        limits: &RateLimits,
        account: &str,
        livemode: bool,
        endpoint: &str,
    ) -> Result<(), &'static str> {
        if !limits.enabled {
            return Ok(());
        }
        let now = Instant::now();
        let account_rate = if livemode {
            limits.live_per_sec
        } else {
            limits.test_per_sec
        };
        let global = format!("{account}/{livemode}");
        let per_endpoint = format!("{global}/{endpoint}");
        let mut buckets = self.buckets.lock();
        let has = |b: &mut HashMap<String, Bucket>, key: &str, rate: f64| -> bool {
            let bucket = b.entry(key.to_string()).or_insert(Bucket {
                tokens: rate,
                at: now,
            });
            bucket.tokens = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate)
                .min(rate.max(1.0));
            bucket.at = now;
            bucket.tokens >= 1.0
        };
        if !has(&mut buckets, &global, account_rate) {
            return Err("global-rate");
        }
        if !has(&mut buckets, &per_endpoint, limits.endpoint_per_sec) {
            return Err("endpoint-rate");
        }
        for key in [global, per_endpoint] {
            if let Some(b) = buckets.get_mut(&key) {
                b.tokens -= 1.0;
            }
        }
        Ok(())
    }
}

/// Requests per account and mode in the last second, for the peak rate [`crate::Stats`] reports: a
/// client's rate limiter is judged by the most requests it ever let through in one second, not by its
/// average.
#[derive(Debug, Default)]
pub struct RateMeter {
    arrivals: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl RateMeter {
    /// Counts a request of `key` now; returns the requests of `key` in the second up to now.
    pub fn arrive(&self, key: &str) -> u64 {
        let now = Instant::now();
        let mut arrivals = self.arrivals.lock();
        let window = arrivals.entry(key.to_string()).or_default();
        window.push_back(now);
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            window.pop_front();
        }
        window.len() as u64
    }

    pub fn reset(&self) {
        self.arrivals.lock().clear();
    }
}

/// What an injected fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// 429 `lock_timeout` with `Stripe-Should-Retry: true`.
    LockTimeout,
    /// 500 `api_error`.
    ServerError,
    /// 503 `api_error`.
    Unavailable,
    /// The connection is closed without a response.
    Drop,
    /// The response announces its full length and stops half-way.
    Truncate,
    /// The response is delayed by `latency_ms`.
    Latency,
}

/// When a fault fires: with `probability`, or on every `every`-th request (1-based), or both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    pub kind: FaultKind,
    #[serde(default)]
    pub probability: f64,
    #[serde(default)]
    pub every: u64,
    /// Extra latency for `latency` faults.
    #[serde(default)]
    pub latency_ms: u64,
}

impl FaultRule {
    /// Parses `KIND:RATE`, `KIND:every=N`, or `latency=MS:RATE` (command-line form).
    pub fn parse(spec: &str) -> Result<FaultRule, String> {
        let (kind, when) = spec
            .split_once(':')
            .ok_or_else(|| format!("fault '{spec}': expected KIND:PROBABILITY or KIND:every=N"))?;
        let (kind, arg) = match kind.split_once('=') {
            Some((k, a)) => (k, Some(a)),
            None => (kind, None),
        };
        let kind = match kind {
            "lock_timeout" => FaultKind::LockTimeout,
            "500" | "server_error" => FaultKind::ServerError,
            "503" | "unavailable" => FaultKind::Unavailable,
            "drop" => FaultKind::Drop,
            "truncate" => FaultKind::Truncate,
            "latency" => FaultKind::Latency,
            other => return Err(format!("fault '{spec}': unknown kind '{other}' (lock_timeout, 500, 503, drop, truncate, latency=MS)")),
        };
        let latency_ms = match (kind, arg) {
            (FaultKind::Latency, Some(ms)) => ms.parse().map_err(|_| {
                format!("fault '{spec}': latency needs milliseconds, as in latency=250:0.1")
            })?,
            (FaultKind::Latency, None) => {
                return Err(format!(
                    "fault '{spec}': latency needs milliseconds, as in latency=250:0.1"
                ))
            }
            _ => 0,
        };
        let mut rule = FaultRule {
            kind,
            probability: 0.0,
            every: 0,
            latency_ms,
        };
        match when.strip_prefix("every=") {
            Some(n) => {
                rule.every = n.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    format!("fault '{spec}': every=N needs a positive whole number")
                })?
            }
            None => {
                rule.probability = when
                    .parse()
                    .ok()
                    .filter(|p: &f64| (0.0..=1.0).contains(p))
                    .ok_or_else(|| {
                        format!("fault '{spec}': the probability must be between 0 and 1")
                    })?
            }
        }
        Ok(rule)
    }
}

/// The active fault rules and their deterministic dice.
#[derive(Debug)]
pub struct Faults {
    rules: Mutex<(Vec<FaultRule>, Rng, u64)>,
}

impl Faults {
    pub fn new(rules: Vec<FaultRule>, seed: u64) -> Faults {
        Faults {
            rules: Mutex::new((rules, Rng::new(seed, 0xFA17), 0)),
        }
    }

    pub fn set(&self, rules: Vec<FaultRule>) {
        let mut g = self.rules.lock();
        g.0 = rules;
        g.2 = 0;
    }

    pub fn rules(&self) -> Vec<FaultRule> {
        self.rules.lock().0.clone()
    }

    /// Rolls the dice for one request: the faults that fire (at most one of each kind).
    pub fn roll(&self) -> Vec<FaultRule> {
        let mut g = self.rules.lock();
        let (rules, rng, count) = &mut *g;
        *count += 1;
        let n = *count;
        rules
            .iter()
            .filter(|r| {
                (r.every > 0 && n % r.every == 0)
                    || (r.probability > 0.0 && rng.chance(r.probability))
            })
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_forms() {
        assert_eq!(
            FaultRule::parse("lock_timeout:0.1").unwrap().probability,
            0.1
        );
        assert_eq!(FaultRule::parse("503:every=7").unwrap().every, 7);
        let l = FaultRule::parse("latency=250:0.5").unwrap();
        assert_eq!((l.kind, l.latency_ms), (FaultKind::Latency, 250));
        assert!(FaultRule::parse("bogus:0.1").is_err());
        assert!(FaultRule::parse("drop:2").is_err());
        assert!(FaultRule::parse("drop").is_err());
    }

    #[test]
    fn every_nth_fires_exactly() {
        let f = Faults::new(vec![FaultRule::parse("500:every=3").unwrap()], 1);
        let fired: Vec<bool> = (0..6).map(|_| !f.roll().is_empty()).collect();
        assert_eq!(fired, [false, false, true, false, false, true]);
    }

    #[test]
    fn bucket_refuses_past_its_rate() {
        let l = Limiter::default();
        let limits = RateLimits {
            enabled: true,
            live_per_sec: 5.0,
            test_per_sec: 5.0,
            endpoint_per_sec: 3.0,
        };
        let ok = (0..10)
            .filter(|_| l.admit(&limits, "a", true, "/v1/charges").is_ok())
            .count();
        assert_eq!(ok, 3);
        assert_eq!(
            l.admit(&limits, "a", true, "/v1/charges"),
            Err("endpoint-rate")
        );
        assert!(l.admit(&limits, "a", true, "/v1/customers").is_ok());
        assert!(l.admit(&limits, "a", true, "/v1/customers").is_ok());
        assert_eq!(
            l.admit(&limits, "a", true, "/v1/customers"),
            Err("global-rate")
        );
        assert!(l.admit(&limits, "b", true, "/v1/customers").is_ok());
    }
}
