//! The control API under `/_sim/`: the HTTP face of the library's control calls. It needs no key: the
//! simulator is a test server bound to loopback.

use crate::body::{json_response, SimBody};
use crate::limits::{FaultRule, RateLimits};
use crate::push::PushConfig;
use crate::scope::EventPolicy;
use crate::Simulator;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// Body of create / update / delete / cancel_subscriptions.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Change {
    account: String,
    /// `live` or `test`.
    mode: String,
    #[serde(default)]
    resource: String,
    #[serde(default)]
    count: usize,
    #[serde(default)]
    ids: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    seconds: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MintKey {
    account: String,
    mode: String,
    allow: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Connect {
    platform: String,
    count: usize,
    #[serde(default = "one")]
    objects: usize,
}

fn one() -> usize {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Deauthorize {
    account: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Pause {
    paused: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Latency {
    ms: u64,
}

fn livemode(mode: &str) -> Result<bool, String> {
    match mode {
        "live" => Ok(true),
        "test" => Ok(false),
        other => Err(format!("mode must be 'live' or 'test', not '{other}'")),
    }
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))
}

pub async fn handle(sim: &Arc<Simulator>, req: Request<Incoming>) -> Response<SimBody> {
    let method = req.method().clone();
    let path = req.uri().path().trim_start_matches("/_sim/").to_string();
    let query: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return reply(Err(format!("could not read the request body: {e}"))),
    };
    let q = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let result: Result<Value, String> = match (&method, path.as_str()) {
        (&Method::GET, "info") => Ok(json!(sim.info(""))),
        (&Method::GET, "clock") => Ok(json!({"now": sim.now()})),
        (&Method::POST, "clock/advance") => parse::<Advance>(&body).map(|a| json!({"now": sim.advance(a.seconds)})),
        (&Method::POST, op @ ("create" | "update" | "delete" | "cancel_subscriptions")) => parse::<Change>(&body).and_then(|c| {
            let live = livemode(&c.mode)?;
            let ids = match op {
                "create" => sim.create(&c.account, live, &c.resource, c.count),
                "update" => sim.update(&c.account, live, &c.resource, c.count, &c.ids),
                "delete" => sim.delete(&c.account, live, &c.resource, c.count, &c.ids),
                _ => sim.cancel_subscriptions(&c.account, live, c.count, &c.ids),
            };
            ids.map(|ids| json!({"ids": ids})).map_err(|e| e.to_string())
        }),
        (&Method::GET, "truth") => livemode(&q("mode"))
            .and_then(|live| sim.truth(&q("account"), live, &q("resource")).map_err(|e| e.to_string()))
            .map(|data| json!({"now": sim.now(), "data": data})),
        (&Method::GET, "stats") => Ok(json!(sim.stats())),
        (&Method::POST, "stats/reset") => {
            sim.reset_stats();
            Ok(json!({}))
        }
        (&Method::GET, "faults") => Ok(json!(sim.faults.rules())),
        (&Method::PUT, "faults") => parse::<Vec<FaultRule>>(&body).map(|rules| {
            sim.set_faults(rules);
            json!(sim.faults.rules())
        }),
        (&Method::GET, "rate_limits") => Ok(json!(*sim.limits.read())),
        (&Method::PUT, "rate_limits") => parse::<RateLimits>(&body).map(|l| {
            sim.set_rate_limits(l);
            json!(l)
        }),
        (&Method::PUT, "events") => parse::<EventPolicy>(&body).map(|p| {
            sim.set_event_policy(p);
            json!(p)
        }),
        (&Method::PUT, "pushes") => parse::<PushConfig>(&body).map(|p| {
            let targets = p.targets.len();
            sim.set_pushes(p);
            json!({"targets": targets})
        }),
        (&Method::GET, "pushes") => {
            let [delivered, duplicated, lost, failed] = sim.push_counts();
            Ok(json!({"delivered": delivered, "duplicated": duplicated, "lost": lost, "failed": failed}))
        }
        (&Method::PUT, "latency") => parse::<Latency>(&body).map(|l| {
            sim.set_latency_ms(l.ms);
            json!({"ms": l.ms})
        }),
        (&Method::PUT, "pause") => parse::<Pause>(&body).map(|p| {
            if p.paused {
                sim.pause();
            } else {
                sim.resume();
            }
            json!({"paused": p.paused})
        }),
        (&Method::POST, "connected_accounts") => parse::<Connect>(&body).and_then(|c| {
            sim.connect_accounts(&c.platform, c.count, c.objects).map(|ids| json!({"ids": ids})).map_err(|e| e.to_string())
        }),
        (&Method::POST, "deauthorize") => parse::<Deauthorize>(&body).and_then(|d| {
            sim.deauthorize(&d.account).map(|()| json!({"account": d.account})).map_err(|e| e.to_string())
        }),
        (&Method::POST, "keys") => parse::<MintKey>(&body).and_then(|k| {
            let live = livemode(&k.mode)?;
            let allow: Vec<&str> = k.allow.iter().map(String::as_str).collect();
            sim.mint_restricted_key(&k.account, live, &allow).map(|info| json!(info)).map_err(|e| e.to_string())
        }),
        _ => {
            return json_response(404, SimBody::json(serde_json::to_vec(&json!({"error": format!("no control endpoint {method} /_sim/{path}; see shared/stripe-sim/README.md")})).unwrap_or_default()))
        }
    };
    reply(result)
}

fn reply(result: Result<Value, String>) -> Response<SimBody> {
    match result {
        Ok(v) => json_response(
            200,
            SimBody::json(serde_json::to_vec(&v).unwrap_or_default()),
        ),
        Err(message) => json_response(
            400,
            SimBody::json(serde_json::to_vec(&json!({"error": message})).unwrap_or_default()),
        ),
    }
}
