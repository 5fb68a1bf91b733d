//! Policies as layers around any [`StripeApi`]: the rate budget before each attempt (lowered for a
//! while after a 429), and retries of the attempts that a retry can fix.

use super::error::{Attempt, StripeError};
use super::limiter::Limiter;
use super::{backoff, endpoint_of, ClientStats, Request, Response, RetryPolicy, StripeApi};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Waits for a token of the caller's account and of the endpoint before each request, and slows the
/// account down when Stripe answers that it is over its rate.
pub struct RateLimited<A> {
    inner: A,
    limiter: Arc<Limiter>,
}

impl<A> RateLimited<A> {
    /// `limiter` may be shared by several stacks: its buckets are per account, not per client.
    pub fn new(inner: A, limiter: Arc<Limiter>) -> RateLimited<A> {
        RateLimited { inner, limiter }
    }
}

#[async_trait::async_trait]
impl<A: StripeApi> StripeApi for RateLimited<A> {
    async fn send(&self, r: Request<'_>) -> Attempt<Response> {
        let endpoint = endpoint_of(r.path);
        self.limiter
            .acquire(&r.caller.label, r.caller.livemode, &endpoint)
            .await;
        let attempt = self.inner.send(r).await;
        if let Attempt::Retry(e) = &attempt {
            if e.is_over_rate() {
                self.limiter
                    .throttled(&r.caller.label, r.caller.livemode, &endpoint);
            }
        }
        attempt
    }
}

/// Sends again what the inner layer calls retryable, after [`backoff`], up to the policy's attempts;
/// what it returns is final (never [`Attempt::Retry`]).
pub struct Retrying<A> {
    inner: A,
    policy: RetryPolicy,
    /// Where retries and 429s are counted.
    stats: Arc<ClientStats>,
}

impl<A> Retrying<A> {
    pub fn new(inner: A, policy: RetryPolicy, stats: Arc<ClientStats>) -> Retrying<A> {
        Retrying {
            inner,
            policy,
            stats,
        }
    }
}

#[async_trait::async_trait]
impl<A: StripeApi> StripeApi for Retrying<A> {
    async fn send(&self, r: Request<'_>) -> Attempt<Response> {
        let mut attempt = r.attempt.max(1);
        loop {
            let error = match self.inner.send(Request { attempt, ..r }).await {
                Attempt::Retry(e) => e,
                done => return done,
            };
            if let StripeError::RateLimited { .. } = error {
                self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
            }
            if attempt >= self.policy.max_attempts {
                return Attempt::Fail(error);
            }
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(account = %r.caller.label, path = r.path, attempt, %error, "retrying");
            // Equal jitter: half the cap is always waited, so a retry after a 429 never comes at once;
            // the random half spreads the retries of many segments that failed together.
            tokio::time::sleep(backoff(&self.policy, attempt, fastrand::f64())).await;
            attempt += 1;
        }
    }
}
