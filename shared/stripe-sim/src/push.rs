//! Pushes: the simulator delivers each event it emits, as Stripe's event destinations do, to a webhook
//! endpoint (a POST of the event, signed with the endpoint's secret in `Stripe-Signature`) or to an
//! Amazon EventBridge bus (`PutEvents`, the event as the entry's `Detail`, from the partner source).
//! Deliveries can be delayed, duplicated and lost, at rates the test sets, so a receiver's handling of
//! each can be shown. A delivery that fails is not retried (Stripe retries; a test wanting that sets
//! no loss and a receiver that answers).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use ring::hmac;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where an account's events are pushed.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Target {
    /// A webhook endpoint of `account` (a platform's receives its connected accounts' events too).
    Webhook {
        account: String,
        /// Only the events of this mode, as a Stripe endpoint made in live or test mode receives;
        /// none: both.
        #[serde(default)]
        livemode: Option<bool>,
        url: String,
        /// The endpoint's signing secret (`whsec_…`).
        secret: String,
    },
    /// An EventBridge bus in AWS (or moto) at `endpoint`, as Stripe's partner event source
    /// `aws.partner/stripe.com/<source>`.
    EventBridge {
        account: String,
        /// Only the events of this mode; none: both.
        #[serde(default)]
        livemode: Option<bool>,
        endpoint: String,
        bus: String,
        source: String,
    },
}

impl Target {
    /// Whether the target receives an event of `account` in mode `livemode`.
    fn receives(&self, account: &str, livemode: bool) -> bool {
        let (owner, mode) = match self {
            Target::Webhook {
                account, livemode, ..
            }
            | Target::EventBridge {
                account, livemode, ..
            } => (account, livemode),
        };
        owner == account && mode.is_none_or(|m| m == livemode)
    }
}

/// An event to push: the account whose endpoints receive it, its mode, and the event as JSON.
pub type Outgoing = (String, bool, Bytes);

/// Pushes and how they misbehave.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushConfig {
    pub targets: Vec<Target>,
    /// Each delivery waits this long after its event (deliveries overlap, so they can arrive out of
    /// order).
    #[serde(default)]
    pub delay_ms: u64,
    /// Added to the delay at random, up to this much: reorders deliveries.
    #[serde(default)]
    pub jitter_ms: u64,
    /// Probability that a delivery is made twice.
    #[serde(default)]
    pub duplicate_rate: f64,
    /// Probability that a delivery is never made.
    #[serde(default)]
    pub loss_rate: f64,
}

/// What the pushes did.
#[derive(Debug, Default)]
pub struct PushCounts {
    pub delivered: AtomicU64,
    pub duplicated: AtomicU64,
    pub lost: AtomicU64,
    /// Deliveries the receiver refused or that could not be made.
    pub failed: AtomicU64,
}

/// Delivers events to the targets of their account.
pub struct Pusher {
    config: PushConfig,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    counts: Arc<PushCounts>,
    rng: parking_lot::Mutex<crate::rng::Rng>,
}

impl Pusher {
    pub fn new(config: PushConfig, seed: u64, counts: Arc<PushCounts>) -> Pusher {
        Pusher {
            config,
            client: Client::builder(TokioExecutor::new()).build_http(),
            counts,
            rng: parking_lot::Mutex::new(crate::rng::Rng::new(seed, 0x9054)),
        }
    }

    /// Starts the deliveries of `events` (each with the account whose endpoints receive it) in the
    /// background: each waits its delay, and may be lost or made twice.
    pub fn send(self: &Arc<Self>, events: Vec<Outgoing>) {
        for (account, livemode, event) in events {
            for target in self
                .config
                .targets
                .iter()
                .filter(|t| t.receives(&account, livemode))
            {
                let (lost, twice, wait) = {
                    let mut rng = self.rng.lock();
                    let lost = self.config.loss_rate > 0.0 && rng.chance(self.config.loss_rate);
                    let twice =
                        self.config.duplicate_rate > 0.0 && rng.chance(self.config.duplicate_rate);
                    let jitter = match self.config.jitter_ms {
                        0 => 0,
                        j => rng.below(j + 1),
                    };
                    (lost, twice, self.config.delay_ms + jitter)
                };
                if lost {
                    self.counts.lost.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if twice {
                    self.counts.duplicated.fetch_add(1, Ordering::Relaxed);
                }
                for _ in 0..if twice { 2 } else { 1 } {
                    let (pusher, target, event) = (self.clone(), target.clone(), event.clone());
                    // Outside any runtime (a control call from a plain thread) there is nothing to
                    // deliver with: the test that pushes runs the simulator on a runtime.
                    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                        self.counts.failed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    runtime.spawn(async move {
                        tokio::time::sleep(Duration::from_millis(wait)).await;
                        let ok = pusher.deliver(&target, event).await;
                        let count = if ok {
                            &pusher.counts.delivered
                        } else {
                            &pusher.counts.failed
                        };
                        count.fetch_add(1, Ordering::Relaxed);
                    });
                }
            }
        }
    }

    /// One delivery; `true` when the receiver answered 2xx.
    async fn deliver(&self, target: &Target, event: Bytes) -> bool {
        let request = match target {
            Target::Webhook { url, secret, .. } => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                hyper::Request::post(url.as_str())
                    .header("content-type", "application/json; charset=utf-8")
                    .header("stripe-signature", signature_header(secret, now, &event))
                    .header(
                        "user-agent",
                        "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                    )
                    .body(Full::new(event))
            }
            Target::EventBridge {
                endpoint,
                bus,
                source,
                ..
            } => {
                let detail: Value = serde_json::from_slice(&event).unwrap_or_default();
                let body = json!({"Entries": [{
                    "Source": format!("aws.partner/stripe.com/{source}"),
                    "DetailType": detail["type"],
                    "Detail": String::from_utf8_lossy(&event),
                    "EventBusName": bus,
                }]});
                hyper::Request::post(endpoint.as_str())
                    .header("content-type", "application/x-amz-json-1.1")
                    .header("x-amz-target", "AWSEvents.PutEvents")
                    // moto reads the service from the credential scope; it checks no signature.
                    .header(
                        "authorization",
                        "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/events/aws4_request, SignedHeaders=host, Signature=0",
                    )
                    .body(Full::new(Bytes::from(body.to_string())))
            }
        };
        let Ok(request) = request else {
            return false;
        };
        let Ok(resp) = self.client.request(request).await else {
            return false;
        };
        if !resp.status().is_success() {
            return false;
        }
        // PutEvents answers 200 and counts the entries it could not take.
        let body = resp.into_body().collect().await.map(|b| b.to_bytes());
        let failed_entries = body
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| v["FailedEntryCount"].as_u64())
            .unwrap_or(0);
        failed_entries == 0
    }
}

/// `Stripe-Signature` for `body` signed at `t` with `secret`: `t=…,v1=<hex HMAC-SHA256 of "t.body">`.
pub fn signature_header(secret: &str, t: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    let tag = hmac::sign(&key, &signed);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}
