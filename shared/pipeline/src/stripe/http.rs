//! The transport: one HTTPS request to Stripe per [`StripeApi::send`], classified by [`classify`]. No
//! waiting and no retrying here; those are the layers around it.

use super::error::{classify, Attempt, StripeError};
use super::{CallKind, Caller, ClientStats, Request, Response, StripeApi, API_VERSION};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Stripe over HTTPS (or plain HTTP, for the simulator), with pooled connections.
pub struct HttpApi {
    http: crate::https::HttpsClient<Empty<Bytes>>,
    base: String,
    /// Per request: for the response's head and, again, for its body.
    timeout: Duration,
    /// Every request sent, by kind.
    stats: Arc<ClientStats>,
}

impl HttpApi {
    pub fn new(base: &str, timeout: Duration, stats: Arc<ClientStats>) -> HttpApi {
        let http = crate::https::client();
        HttpApi {
            http,
            base: base.trim_end_matches('/').to_string(),
            timeout,
            stats,
        }
    }

    fn url(&self, path: &str, params: &[(String, String)]) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in params {
            q.append_pair(k, v);
        }
        let query = q.finish();
        if query.is_empty() {
            format!("{}{path}", self.base)
        } else {
            format!("{}{path}?{query}", self.base)
        }
    }

    fn request(&self, caller: &Caller, url: &str) -> Result<hyper::Request<Empty<Bytes>>, String> {
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
        req.body(Empty::new()).map_err(|e| e.to_string())
    }
}

#[async_trait::async_trait]
impl StripeApi for HttpApi {
    async fn send(&self, r: Request<'_>) -> Attempt<Response> {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        self.stats.by_kind[CallKind::of(r.path, r.params) as usize].fetch_add(1, Ordering::Relaxed);
        let req = match self.request(r.caller, &self.url(r.path, r.params)) {
            Ok(req) => req,
            Err(e) => {
                return Attempt::Fail(StripeError::Decode {
                    message: format!("cannot build request: {e}"),
                    request_id: "-".into(),
                })
            }
        };
        let network = |message: String| StripeError::Network {
            base: self.base.clone(),
            attempts: r.attempt,
            message,
        };
        let resp = match tokio::time::timeout(self.timeout, self.http.request(req)).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => return Attempt::Retry(network(error_chain(&e))),
            Err(_) => {
                return Attempt::Retry(network(format!("no response within {:?}", self.timeout)))
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
        let server_time = header("date")
            .and_then(|d| httpdate::parse_http_date(&d).ok())
            .map(crate::clock::unix_secs);
        let body = match tokio::time::timeout(self.timeout, resp.into_body().collect()).await {
            Ok(Ok(b)) => b.to_bytes(),
            Ok(Err(e)) => {
                let message = format!("response body cut off: {}", error_chain(&e));
                return Attempt::Retry(network(message));
            }
            Err(_) => return Attempt::Retry(network("response body timed out".into())),
        };
        match classify(
            status,
            should_retry,
            rate_reason,
            request_id.clone(),
            body,
            r.attempt,
        ) {
            Attempt::Ok(body) => Attempt::Ok(Response {
                body,
                server_time,
                request_id,
            }),
            Attempt::Retry(e) => Attempt::Retry(e),
            Attempt::Fail(e) => Attempt::Fail(e),
        }
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
