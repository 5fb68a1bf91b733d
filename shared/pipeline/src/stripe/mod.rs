//! The Stripe API client: the [`StripeApi`] port, and its stack of layers — HTTPS (rustls) with the
//! pinned API version and `Stripe-Account` ([`HttpApi`]), a shared rate budget ([`RateLimited`]), and
//! retries with exponential backoff and jitter for exactly the failures that a retry can fix
//! ([`Retrying`]).

mod error;
mod http;
mod layers;
mod limiter;

pub use error::{Attempt, StripeError};
pub use http::HttpApi;
pub use layers::{RateLimited, Retrying};
pub use limiter::{
    rate_slots, Limiter, STRIPE_ENDPOINT_LIMIT, STRIPE_LIVE_LIMIT, STRIPE_TEST_LIMIT,
};

use crate::catalog::Catalog;
use crate::config::Secret;
use bytes::Bytes;
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
        match path {
            "/v1/account" => CallKind::Account,
            "/v1/events" => CallKind::Events,
            _ if completes_nested_list(path, params) => CallKind::Nested,
            _ if is_list(path) => CallKind::List,
            _ if path.rsplit_once('/').is_some_and(|(list, _)| is_list(list)) => CallKind::Object,
            _ => CallKind::Nested,
        }
    }
}

/// Whether `path` is a top-level list: one segment (`/v1/charges`), or a dataset's list of two
/// (`/v1/issuing/cards`), so that `/v1/issuing/cards/ic_1` is an object and not a nested list.
fn is_list(path: &str) -> bool {
    path.strip_prefix("/v1/")
        .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
        || Catalog::get().datasets.iter().any(|d| d.list_path == path)
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

/// One `GET` to Stripe, as the port sees it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub caller: &'a Caller,
    pub path: &'a str,
    pub params: &'a [(String, String)],
    /// 1 for the first attempt; the retry layer counts up (errors name the attempts made).
    pub attempt: u32,
}

/// The Stripe API as the engine needs it: one request in, one classified [`Attempt`] out.
///
/// The transport ([`HttpApi`]) and the policies around it ([`RateLimited`], [`Retrying`]) implement
/// the same trait, so a stack is composed from layers (see [`stack`]) and a layer can be
/// replaced (a budget shared across processes, say) without touching the engine. Every adapter passes
/// the shared suite in `stripe_pipeline_testkit::conformance::stripe_api`.
#[async_trait::async_trait]
pub trait StripeApi: Send + Sync {
    async fn send(&self, request: Request<'_>) -> Attempt<Response>;
}

/// The standard stack: retries around the rate limit around HTTPS, so every attempt (retries too)
/// waits for its token. Requests, retries and 429s are counted in `stats`.
pub fn stack(
    base: &str,
    limiter: Arc<Limiter>,
    retry: RetryPolicy,
    stats: Arc<ClientStats>,
) -> Retrying<RateLimited<HttpApi>> {
    let http = HttpApi::new(base, retry.timeout, stats.clone());
    Retrying::new(RateLimited::new(http, limiter), retry, stats)
}

/// The client the engine calls: a [`StripeApi`] stack, and the counters its layers keep.
#[derive(Clone)]
pub struct StripeClient {
    api: Arc<dyn StripeApi>,
    pub stats: Arc<ClientStats>,
}

impl StripeClient {
    /// A client that uses `budget` (a share in (0, 1]) of Stripe's rate limit, with the default retries.
    pub fn with_budget(base: &str, budget: f64) -> StripeClient {
        StripeClient::new(base, Arc::new(Limiter::new(budget)), RetryPolicy::default())
    }

    /// A client over the standard [`stack`].
    pub fn new(base: &str, limiter: Arc<Limiter>, retry: RetryPolicy) -> StripeClient {
        let stats = Arc::new(ClientStats::default());
        let api = stack(base, limiter, retry, stats.clone());
        StripeClient::over(Arc::new(api), stats)
    }

    /// A client over any stack; `stats` are the counters its layers were given.
    pub fn over(api: Arc<dyn StripeApi>, stats: Arc<ClientStats>) -> StripeClient {
        StripeClient { api, stats }
    }

    /// `GET path?params` through the stack; the parsed JSON on success.
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

    /// `GET path?params` through the stack; the body (checked to be complete JSON) and Stripe's clock,
    /// for callers that convert the text directly.
    pub async fn get_raw(
        &self,
        caller: &Caller,
        path: &str,
        params: &[(String, String)],
    ) -> Result<Response, StripeError> {
        let request = Request {
            caller,
            path,
            params,
            attempt: 1,
        };
        self.api.send(request).await.into_result()
    }
}

/// `/v1/invoices/in_1/lines` → `/v1/invoices/{id}/lines`: the per-endpoint rate-limit key.
pub(crate) fn endpoint_of(path: &str) -> String {
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
        assert_eq!(CallKind::of("/v1/events/evt_1", none), CallKind::Object);
        // Resources of two segments.
        assert_eq!(CallKind::of("/v1/issuing/cards", none), CallKind::List);
        assert_eq!(
            CallKind::of("/v1/issuing/cards/ic_1", none),
            CallKind::Object
        );
        assert_eq!(
            CallKind::of("/v1/checkout/sessions/cs_1/line_items", none),
            CallKind::Nested
        );
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
