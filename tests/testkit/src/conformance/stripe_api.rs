//! The Stripe API port's contract, which every [`StripeApi`] adapter and stack must pass against the
//! simulator over real HTTP (run by `shared/pipeline/tests/stripe_api_conformance.rs`): answers carry
//! Stripe's request id and clock, final errors are final and name the problem without the key,
//! transient faults are either retried (a retrying stack) or handed up as retryable (a bare
//! transport), and `Stripe-Account` reaches a platform's connected account.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use stripe_pipeline::config::Secret;
use stripe_pipeline::stripe::{
    stack, Attempt, Caller, ClientStats, HttpApi, Limiter, Request, Response, RetryPolicy,
    StripeApi, StripeError,
};
use stripe_sim::{AccountKind, FaultKind, FaultRule, RunningSim, SimConfig};

/// The adapters the suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adapter {
    /// [`HttpApi`] alone: one attempt per request.
    Transport,
    /// The engine's stack ([`stack`]): retries around the rate limit around HTTPS.
    Stack,
}

struct Fixture {
    api: Arc<dyn StripeApi>,
    stats: Arc<ClientStats>,
    sim: RunningSim,
}

impl Fixture {
    async fn open(adapter: Adapter, config: SimConfig) -> Fixture {
        let sim = stripe_sim::start(config).await.expect("simulator");
        let base = sim.info().base_url.clone();
        // Short waits: the suite checks what is retried, not how long it waits.
        let policy = RetryPolicy {
            base_delay: std::time::Duration::from_millis(1),
            max_delay: std::time::Duration::from_millis(5),
            ..RetryPolicy::default()
        };
        let stats = Arc::new(ClientStats::default());
        let api: Arc<dyn StripeApi> = match adapter {
            Adapter::Transport => Arc::new(HttpApi::new(&base, policy.timeout, stats.clone())),
            Adapter::Stack => Arc::new(stack(
                &base,
                Arc::new(Limiter::new(1.0)),
                policy,
                stats.clone(),
            )),
        };
        Fixture { api, stats, sim }
    }

    fn caller(&self, key: String) -> Caller {
        Caller {
            label: "conformance".into(),
            key: Secret::new(key),
            livemode: false,
            stripe_account: None,
        }
    }

    fn test_key(&self) -> String {
        self.sim
            .info()
            .key("secret", "test", 0)
            .expect("a test key")
    }

    async fn get(&self, caller: &Caller, path: &str, params: &[(&str, &str)]) -> Attempt<Response> {
        let params: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.api
            .send(Request {
                caller,
                path,
                params: &params,
                attempt: 1,
            })
            .await
    }

    fn requests(&self) -> u64 {
        self.stats.requests.load(Ordering::Relaxed)
    }
}

fn ok(outcome: Attempt<Response>) -> Response {
    match outcome {
        Attempt::Ok(r) => r,
        Attempt::Retry(e) | Attempt::Fail(e) => panic!("expected an answer, got {e}"),
    }
}

pub async fn answers_carry_the_request_id_and_stripes_clock(adapter: Adapter) {
    let f = Fixture::open(adapter, SimConfig::tiny()).await;
    let caller = f.caller(f.test_key());
    let page = ok(f.get(&caller, "/v1/customers", &[("limit", "3")]).await);
    let json: serde_json::Value = serde_json::from_slice(&page.body).unwrap();
    assert_eq!(json["object"], "list");
    assert_eq!(json["data"].as_array().map(Vec::len), Some(3), "{json}");
    assert!(page.request_id.starts_with("req_"), "{}", page.request_id);
    // The simulator's clock, not this machine's: it starts years away from now.
    let stripe_now = f.sim.sim().now();
    let server_time = page.server_time.expect("a Date header");
    assert!(
        (server_time - stripe_now).abs() <= 5,
        "{server_time} vs {stripe_now}"
    );
    assert_eq!(f.requests(), 1);
}

pub async fn final_errors_are_not_retried_and_never_show_the_key(adapter: Adapter) {
    let f = Fixture::open(adapter, SimConfig::tiny()).await;
    let bogus = "sk_test_conformance_not_a_key_0123456789";
    match f.get(&f.caller(bogus.into()), "/v1/customers", &[]).await {
        Attempt::Fail(e @ StripeError::InvalidKey { .. }) => {
            assert!(!e.to_string().contains(bogus), "the key shows: {e}");
            assert!(e.to_string().contains("Check the key"), "{e}");
        }
        other => panic!("a bad key must fail at once: {other:?}"),
    }
    let caller = f.caller(f.test_key());
    match f.get(&caller, "/v1/customers/cus_missing", &[]).await {
        Attempt::Fail(StripeError::ResourceMissing { status, .. }) => assert_eq!(status, 404),
        other => panic!("a missing object must fail at once: {other:?}"),
    }
    match f
        .get(&caller, "/v1/customers", &[("limit", "not-a-number")])
        .await
    {
        Attempt::Fail(StripeError::InvalidRequest { status, .. }) => assert_eq!(status, 400),
        other => panic!("a bad parameter must fail at once: {other:?}"),
    }
    assert_eq!(f.requests(), 3, "one request each, none retried");
    assert_eq!(f.stats.retries.load(Ordering::Relaxed), 0);
}

pub async fn transient_faults_are_retried_or_handed_up_as_retryable(adapter: Adapter) {
    let config = SimConfig {
        faults: vec![FaultRule {
            kind: FaultKind::ServerError,
            probability: 0.0,
            every: 2,
            latency_ms: 0,
        }],
        ..SimConfig::tiny()
    };
    let f = Fixture::open(adapter, config).await;
    let caller = f.caller(f.test_key());
    let mut answered = 0;
    let mut retryable = 0;
    for _ in 0..4 {
        match f.get(&caller, "/v1/customers", &[("limit", "1")]).await {
            Attempt::Ok(_) => answered += 1,
            Attempt::Retry(StripeError::Server { status: 500, .. }) => retryable += 1,
            other => panic!("a 500 is transient: {other:?}"),
        }
    }
    let retries = f.stats.retries.load(Ordering::Relaxed);
    match adapter {
        Adapter::Transport => {
            assert_eq!((answered, retryable), (2, 2));
            assert_eq!((f.requests(), retries), (4, 0));
        }
        Adapter::Stack => {
            assert_eq!((answered, retryable), (4, 0));
            assert!(retries >= 2, "{retries} retries");
            assert_eq!(f.requests(), 4 + retries, "each retry is one more request");
        }
    }
}

pub async fn stripe_account_reaches_a_connected_account(adapter: Adapter) {
    let f = Fixture::open(adapter, SimConfig::tiny()).await;
    let info = f.sim.info();
    let platform = info
        .accounts
        .iter()
        .find(|a| a.kind == AccountKind::Platform)
        .expect("the simulator has a platform");
    let connected = info
        .accounts
        .iter()
        .find(|a| a.platform.as_deref() == Some(platform.id.as_str()))
        .expect("the platform has connected accounts");
    let key = info
        .keys
        .iter()
        .find(|k| k.account == platform.id && k.kind == "secret" && k.mode == "test")
        .expect("a platform key")
        .key
        .clone();
    let mut caller = f.caller(key);
    let own = ok(f.get(&caller, "/v1/account", &[]).await);
    let own: serde_json::Value = serde_json::from_slice(&own.body).unwrap();
    assert_eq!(own["id"], platform.id.as_str());
    caller.stripe_account = Some(connected.id.clone());
    let theirs = ok(f.get(&caller, "/v1/account", &[]).await);
    let theirs: serde_json::Value = serde_json::from_slice(&theirs.body).unwrap();
    assert_eq!(theirs["id"], connected.id.as_str());
}
