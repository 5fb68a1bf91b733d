//! The Stripe API client: HTTPS (rustls), pinned API version, `Stripe-Account`, a shared rate budget, and
//! retries with exponential backoff and jitter for exactly the failures that a retry can fix.

mod error;
mod limiter;

pub use error::StripeError;
pub use limiter::{Limiter, STRIPE_ENDPOINT_LIMIT, STRIPE_LIVE_LIMIT, STRIPE_TEST_LIMIT};

use crate::catalog::Catalog;
use crate::config::Secret;
use bytes::Bytes;
use error::{classify, Attempt};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The API version every request pins, so object shapes match the catalog.
pub const API_VERSION: &str = "2023-08-16";

/// How failed requests are retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included. Default 8.
    pub max_attempts: u32,
    /// First backoff. Default 250 ms; doubles per attempt, with equal jitter (see [`backoff`]).
    pub base_delay: Duration,
    /// Backoff ceiling. Default 20 s.
    pub max_delay: Duration,
    /// Per-attempt timeout. Default 80 s (Stripe's own request timeout is 80 s).
    pub timeout: Duration,
}

/// The wait before retry `attempt`: equal jitter, `unit` (uniform in [0, 1)) picking a point in
/// [cap/2, cap], where cap = min(max_delay, base_delay × 2^attempt).
pub fn backoff(policy: &RetryPolicy, attempt: u32, unit: f64) -> Duration {
    let cap = policy
        .base_delay
        .saturating_mul(1u32 << attempt.min(16))
        .min(policy.max_delay);
    cap.mul_f64(0.5 + unit.clamp(0.0, 1.0) / 2.0)
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(20),
            timeout: Duration::from_secs(80),
        }
    }
}

/// Counters for the closing summary.
#[derive(Debug, Default)]
pub struct ClientStats {
    pub requests: AtomicU64,
    pub rate_limited: AtomicU64,
    pub retries: AtomicU64,
    /// Requests by kind (retries included), so a summary can show where the API budget went.
    pub by_kind: [AtomicU64; CallKind::ALL.len()],
}

/// What a request was for, from the shape of its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallKind {
    /// `GET /v1/account`: the key check.
    Account,
    /// `GET /v1/events`: the change feed.
    Events,
    /// `GET /v1/<resource>`: list pages of backfills and snapshots.
    List,
    /// `GET /v1/<resource>/<id>/<list>` (or a list filtered by the parent, as subscription items are):
    /// nested lists cut off at 10 items.
    Nested,
    /// `GET /v1/<resource>/<id>`: single objects (events rendered in another API version).
    Object,
}

impl CallKind {
    pub const ALL: [CallKind; 5] = [
        CallKind::Account,
        CallKind::Events,
        CallKind::List,
        CallKind::Nested,
        CallKind::Object,
    ];

    pub fn of(path: &str, params: &[(String, String)]) -> CallKind {
        let segments: Vec<&str> = path
            .trim_start_matches("/v1/")
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        match segments.as_slice() {
            ["account"] => CallKind::Account,
            ["events"] => CallKind::Events,
            [_] if completes_nested_list(path, params) => CallKind::Nested,
            [_] => CallKind::List,
            [_, _] => CallKind::Object,
            _ => CallKind::Nested,
        }
    }
}

/// Whether `path?params` pages an object's nested list through a top-level list filtered by its parent
/// (subscription items of one subscription): a catalog table names that list as its
/// `nested_list_path`, with the parent filter in the query.
fn completes_nested_list(path: &str, params: &[(String, String)]) -> bool {
    Catalog::get()
        .tables()
        .filter_map(|(_, t)| t.nested_list_path.as_deref()?.split_once('?'))
        .any(|(list, query)| {
            list == path
                && form_urlencoded::parse(query.as_bytes())
                    .all(|(key, _)| params.iter().any(|(k, _)| *k == key))
        })
}

impl ClientStats {
    /// Requests of one kind so far.
    pub fn calls(&self, kind: CallKind) -> u64 {
        self.by_kind[kind as usize].load(Ordering::Relaxed)
    }
}

/// A successful response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Complete JSON text.
    pub body: Bytes,
    /// Stripe's clock when it answered (`Date`), Unix seconds. Stripe time, not ours, decides event
    /// lags, cursor ages and which version of an object is newer.
    pub server_time: Option<i64>,
    pub request_id: String,
}

/// Who is calling: the key, and the connected account to act for.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Rate-limit bucket name (one per Stripe account).
    pub label: String,
    pub key: Secret,
    pub livemode: bool,
    /// `Stripe-Account` header (Connect).
    pub stripe_account: Option<String>,
}

#[derive(Clone)]
pub struct StripeClient {
    http: Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>,
    base: String,
    limiter: Arc<Limiter>,
    retry: RetryPolicy,
    pub stats: Arc<ClientStats>,
}

impl StripeClient {
    /// A client that uses `budget` (a share in (0, 1]) of Stripe's rate limit, with the default retries.
    pub fn with_budget(base: &str, budget: f64) -> StripeClient {
        StripeClient::new(base, Arc::new(Limiter::new(budget)), RetryPolicy::default())
    }

    pub fn new(base: &str, limiter: Arc<Limiter>, retry: RetryPolicy) -> StripeClient {
        // ring, named explicitly: when the AWS crates are linked too, rustls has two providers and
        // would refuse to pick one.
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .expect("ring's default provider supports TLS 1.2 and 1.3")
            .https_or_http()
            .enable_http1()
            .build();
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        StripeClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            limiter,
            retry,
            stats: Arc::default(),
        }
    }

    /// `GET path?params`, rate limited and retried; the parsed JSON on success.
    pub async fn get(
        &self,
        caller: &Caller,
        path: &str,
        params: &[(String, String)],
    ) -> Result<Value, StripeError> {
        let resp = self.get_raw(caller, path, params).await?;
        serde_json::from_slice(&resp.body).map_err(|e| StripeError::Decode {
            message: format!("{path}: {e}"),
            request_id: resp.request_id,
        })
    }

    /// `GET path?params`, rate limited and retried; the body (checked to be complete JSON) and Stripe's
    /// clock, for callers that convert the text directly.
    pub async fn get_raw(
        &self,
        caller: &Caller,
        path: &str,
        params: &[(String, String)],
    ) -> Result<Response, StripeError> {
        let query = {
            let mut q = form_urlencoded::Serializer::new(String::new());
            for (k, v) in params {
                q.append_pair(k, v);
            }
            q.finish()
        };
        let url = if query.is_empty() {
            format!("{}{path}", self.base)
        } else {
            format!("{}{path}?{query}", self.base)
        };
        let endpoint = endpoint_of(path);
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.limiter
                .acquire(&caller.label, caller.livemode, &endpoint)
                .await;
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            self.stats.by_kind[CallKind::of(path, params) as usize].fetch_add(1, Ordering::Relaxed);
            let (outcome, date, request_id) = self.attempt(caller, &url, attempt).await;
            let error = match outcome {
                Attempt::Ok(body) => {
                    return Ok(Response {
                        body,
                        server_time: date,
                        request_id,
                    })
                }
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry(e) => e,
            };
            if let StripeError::RateLimited { .. } = error {
                self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
            }
            if attempt >= self.retry.max_attempts {
                return Err(error);
            }
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(account = %caller.label, path, attempt, %error, "retrying");
            tokio::time::sleep(self.backoff(attempt)).await;
        }
    }

    /// Equal jitter: uniform in [cap/2, cap] with cap = min(max, base × 2^attempt). Half the cap is
    /// always waited, so a retry after a 429 never comes at once; the random half spreads the retries
    /// of many segments that failed together.
    fn backoff(&self, attempt: u32) -> Duration {
        backoff(&self.retry, attempt, fastrand::f64())
    }

    /// One attempt: its outcome, the response's `Date` (Unix seconds) and `Request-Id`.
    async fn attempt(
        &self,
        caller: &Caller,
        url: &str,
        attempts: u32,
    ) -> (Attempt, Option<i64>, String) {
        let mut req = hyper::Request::get(url)
            .header("authorization", format!("Bearer {}", caller.key.expose()))
            .header("stripe-version", API_VERSION)
            .header(
                "user-agent",
                concat!("stripe-pipeline/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(acct) = &caller.stripe_account {
            req = req.header("stripe-account", acct);
        }
        let req = match req.body(Empty::new()) {
            Ok(r) => r,
            Err(e) => {
                let error = StripeError::Decode {
                    message: format!("cannot build request: {e}"),
                    request_id: "-".into(),
                };
                return (Attempt::Fail(error), None, "-".into());
            }
        };
        let network = |message: String| StripeError::Network {
            base: self.base.clone(),
            attempts,
            message,
        };
        let resp = match tokio::time::timeout(self.retry.timeout, self.http.request(req)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return (Attempt::Retry(network(error_chain(&e))), None, "-".into()),
            Err(_) => {
                let message = format!("no response within {:?}", self.retry.timeout);
                return (Attempt::Retry(network(message)), None, "-".into());
            }
        };
        let status = resp.status().as_u16();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let request_id = header("request-id").unwrap_or_else(|| "-".into());
        let should_retry = header("stripe-should-retry").map(|v| v == "true");
        let rate_reason = header("stripe-rate-limited-reason");
        let date = header("date")
            .and_then(|d| httpdate::parse_http_date(&d).ok())
            .map(crate::clock::unix_secs);
        let body = match tokio::time::timeout(self.retry.timeout, resp.into_body().collect()).await
        {
            Ok(Ok(b)) => b.to_bytes(),
            Ok(Err(e)) => {
                let message = format!("response body cut off: {}", error_chain(&e));
                return (Attempt::Retry(network(message)), date, request_id);
            }
            Err(_) => {
                let message = "response body timed out".to_string();
                return (Attempt::Retry(network(message)), date, request_id);
            }
        };
        let outcome = classify(
            status,
            should_retry,
            rate_reason,
            request_id.clone(),
            body,
            attempts,
        );
        (outcome, date, request_id)
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// `/v1/invoices/in_1/lines` → `/v1/invoices/{id}/lines`: the per-endpoint rate-limit key.
fn endpoint_of(path: &str) -> String {
    path.split('/')
        .enumerate()
        .map(|(i, seg)| {
            if i >= 3 && seg.contains('_') {
                "{id}"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    #[test]
    fn endpoints_group_by_template() {
        assert_eq!(super::endpoint_of("/v1/charges"), "/v1/charges");
        assert_eq!(
            super::endpoint_of("/v1/invoices/in_123/lines"),
            "/v1/invoices/{id}/lines"
        );
    }

    #[test]
    fn calls_are_classified_by_path_shape() {
        use super::CallKind;
        let none = &[];
        assert_eq!(CallKind::of("/v1/account", none), CallKind::Account);
        assert_eq!(CallKind::of("/v1/events", none), CallKind::Events);
        assert_eq!(CallKind::of("/v1/charges", none), CallKind::List);
        assert_eq!(CallKind::of("/v1/customers/cus_1", none), CallKind::Object);
        assert_eq!(
            CallKind::of("/v1/invoices/in_1/lines", none),
            CallKind::Nested
        );
        // Subscription items: the dataset's own list, or one subscription's items beyond its first 10.
        let limit = ("limit".to_string(), "100".to_string());
        assert_eq!(
            CallKind::of("/v1/subscription_items", std::slice::from_ref(&limit)),
            CallKind::List
        );
        let parent = ("subscription".to_string(), "sub_1".to_string());
        assert_eq!(
            CallKind::of("/v1/subscription_items", &[parent, limit]),
            CallKind::Nested
        );
    }

    #[test]
    fn backoff_is_equal_jitter_under_the_ceiling() {
        use super::{backoff, RetryPolicy};
        use std::time::Duration;
        let p = RetryPolicy::default();
        // attempt 2: cap = 250 ms × 4 = 1 s; the wait is in [0.5 s, 1 s].
        assert_eq!(backoff(&p, 2, 0.0), Duration::from_millis(500));
        assert_eq!(backoff(&p, 2, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(&p, 2, 0.5), Duration::from_millis(750));
        // The ceiling holds however many attempts.
        assert_eq!(backoff(&p, 30, 1.0), p.max_delay);
        // Real random draws spread over the range (not the clock's nanoseconds).
        let waits: std::collections::HashSet<_> =
            (0..50).map(|_| backoff(&p, 3, fastrand::f64())).collect();
        assert!(waits.len() > 40);
        assert!(waits
            .iter()
            .all(|w| *w >= Duration::from_secs(1) && *w <= Duration::from_secs(2)));
    }
}
