//! The HTTP front: authentication, rate limits, faults, routing of `/v1/...` reads, and the headers
//! Stripe sends (`Request-Id`, `Stripe-Version`, `Date` in simulated time).

use crate::body::{json_response, SimBody};
use crate::error::{mask_key, ApiError};
use crate::expand;
use crate::limits::FaultKind;
use crate::list::{ListQuery, Page, DEFAULT_LIMIT};
use crate::resources::Res;
use crate::scope::{Scope, EVENT_RETENTION_SECS};
use crate::world::{AccountKind, KeyInfo, World, PINNED_API_VERSION};
use crate::{control, mode_name, Simulator};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Accepts connections until the task is aborted.
pub async fn accept_loop(listener: tokio::net::TcpListener, sim: Arc<Simulator>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let sim = sim.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(sim.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Returned instead of a response to close the connection (the `drop` fault).
#[derive(Debug)]
pub struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("simulated dropped connection")
    }
}

impl std::error::Error for Dropped {}

async fn handle(sim: Arc<Simulator>, req: Request<Incoming>) -> Result<Response<SimBody>, Dropped> {
    let request_id = sim.next_request_id();
    let path = req.uri().path().to_string();
    let mut response = if path.starts_with("/_sim/") {
        control::handle(&sim, req).await
    } else {
        match api(&sim, &req).await? {
            Ok((resp, _)) => resp,
            Err(e) => error_response(&e),
        }
    };
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert("request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&http_date(sim.now())) {
        headers.insert(hyper::header::DATE, v);
    }
    Ok(response)
}

pub fn error_response(e: &ApiError) -> Response<SimBody> {
    let mut resp = json_response(
        e.status,
        SimBody::json(serde_json::to_vec(&e.body()).unwrap_or_default()),
    );
    for (name, value) in &e.headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            resp.headers_mut().insert(*name, v);
        }
    }
    resp
}

/// The caller, resolved from the key and the `Stripe-Account` header.
struct Caller {
    key: KeyInfo,
    /// The account whose data is read.
    account: String,
    livemode: bool,
}

fn authenticate(world: &World, req: &Request<Incoming>) -> Result<Caller, ApiError> {
    let auth = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let key = match auth {
        Some(a) if a.starts_with("Bearer ") => a[7..].trim().to_string(),
        Some(a) if a.starts_with("Basic ") => decode_basic(&a[6..]).unwrap_or_default(),
        _ => String::new(),
    };
    if key.is_empty() {
        return Err(ApiError::unauthorized("You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, or we can help at https://support.stripe.com/.".into()));
    }
    let Some(info) = world.keys.get(&key) else {
        return Err(ApiError::unauthorized(format!(
            "Invalid API Key provided: {}",
            mask_key(&key)
        )));
    };
    let mut account = info.account.clone();
    if let Some(target) = req
        .headers()
        .get("stripe-account")
        .and_then(|v| v.to_str().ok())
    {
        let allowed = target == info.account
            || world.account(target).is_some_and(|a| {
                a.kind == AccountKind::Connected
                    && a.platform.as_deref() == Some(info.account.as_str())
            });
        if !allowed {
            return Err(ApiError::forbidden(format!("The provided key '{}' does not have access to account '{target}' (or that account does not exist). Application access may have been revoked.", mask_key(&key))));
        }
        account = target.to_string();
    }
    Ok(Caller {
        livemode: info.livemode(),
        key: info.clone(),
        account,
    })
}

fn decode_basic(b64: &str) -> Option<String> {
    const ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in b64.trim().bytes().filter(|c| *c != b'=') {
        bits = (bits << 6) | ALPHA.iter().position(|a| *a == c)? as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    let s = String::from_utf8(out).ok()?;
    Some(s.split(':').next().unwrap_or_default().to_string())
}

type ApiResult = Result<(Response<SimBody>, ()), ApiError>;

/// One `/v1` request. The outer `Err` drops the connection.
async fn api(sim: &Arc<Simulator>, req: &Request<Incoming>) -> Result<ApiResult, Dropped> {
    if req.uri().path() != "/v1/account" {
        sim.unpaused().await;
    }
    let latency = sim.latency_ms.load(std::sync::atomic::Ordering::Relaxed);
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let path = req.uri().path();
    let endpoint = endpoint_template(path);
    let caller = {
        let world = sim.world.read();
        authenticate(&world, req)
    };
    let caller = match caller {
        Ok(c) => c,
        Err(e) => return Ok(Err(record(sim, "-", false, &endpoint, e))),
    };
    let charged = format!("{} {}", caller.key.account, mode_name(caller.livemode));
    let in_last_second = sim.meter.arrive(&charged);
    {
        let mut stats = sim.stats.lock();
        let peak = stats.peak_per_sec.entry(charged).or_default();
        *peak = (*peak).max(in_last_second);
    }
    let limits = *sim.limits.read();
    if let Err(reason) = sim
        .limiter
        .admit(&limits, &caller.key.account, caller.livemode, &endpoint)
    {
        sim.stats.lock().rate_limited += 1;
        return Ok(Err(record(
            sim,
            &caller.account,
            caller.livemode,
            &endpoint,
            ApiError::rate_limited(reason),
        )));
    }
    let mut truncate = false;
    for fault in sim.faults.roll() {
        sim.stats.lock().faults += 1;
        let error = match fault.kind {
            FaultKind::Latency => {
                tokio::time::sleep(Duration::from_millis(fault.latency_ms)).await;
                continue;
            }
            FaultKind::Truncate => {
                truncate = true;
                continue;
            }
            FaultKind::Drop => return Err(Dropped),
            FaultKind::LockTimeout => ApiError::lock_timeout(),
            FaultKind::ServerError => ApiError::server(500),
            FaultKind::Unavailable => ApiError::server(503),
        };
        return Ok(Err(record(
            sim,
            &caller.account,
            caller.livemode,
            &endpoint,
            error,
        )));
    }
    let result = if req.method() != Method::GET {
        Err(ApiError::method_not_allowed(req.method().as_str(), path))
    } else {
        let params: Vec<(String, String)> =
            form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let world = sim.world.read();
        route(&world, &caller, path, &params, sim.now())
    };
    let version = req
        .headers()
        .get("stripe-version")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| PINNED_API_VERSION.to_string());
    Ok(match result {
        Ok(chunks) => {
            record_status(sim, &caller.account, caller.livemode, &endpoint, 200);
            let body = if truncate {
                SimBody::new(chunks).truncate_half()
            } else {
                SimBody::new(chunks)
            };
            let mut resp = json_response(200, body);
            if let Ok(v) = HeaderValue::from_str(&version) {
                resp.headers_mut().insert("stripe-version", v);
            }
            Ok((resp, ()))
        }
        Err(e) => Err(record(sim, &caller.account, caller.livemode, &endpoint, e)),
    })
}

fn record(sim: &Simulator, account: &str, livemode: bool, endpoint: &str, e: ApiError) -> ApiError {
    record_status(sim, account, livemode, endpoint, e.status);
    e
}

fn record_status(sim: &Simulator, account: &str, livemode: bool, endpoint: &str, status: u16) {
    let mut stats = sim.stats.lock();
    stats.requests += 1;
    *stats.by_status.entry(status).or_default() += 1;
    *stats
        .by_endpoint
        .entry(format!("{account} {} {endpoint}", mode_name(livemode)))
        .or_default() += 1;
}

/// `/v1/charges/ch_123` → `/v1/charges/{id}`: the key of per-endpoint limits and counters.
fn endpoint_template(path: &str) -> String {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // A resource of two segments (`checkout/sessions`) counts as one.
    let (v, r, rest) = match segs.as_slice() {
        [v, a, b, rest @ ..] if Res::from_path(&format!("{a}/{b}")).is_some() => {
            (*v, format!("{a}/{b}"), rest)
        }
        [v, r, rest @ ..] => (*v, r.to_string(), rest),
        _ => return path.to_string(),
    };
    match rest {
        [] => format!("/{v}/{r}"),
        [_] => format!("/{v}/{r}/{{id}}"),
        [_, sub] => format!("/{v}/{r}/{{id}}/{sub}"),
        _ => path.to_string(),
    }
}

fn route(
    world: &World,
    caller: &Caller,
    path: &str,
    params: &[(String, String)],
    now: i64,
) -> Result<Vec<bytes::Bytes>, ApiError> {
    let segs: Vec<&str> = path
        .trim_start_matches("/v1/")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    if !path.starts_with("/v1/") {
        return Err(ApiError::not_found(path));
    }
    let scope = world
        .scopes
        .get(&(caller.account.clone(), caller.livemode))
        .ok_or_else(|| ApiError::not_found(path))?;
    let object = |v: &Value| {
        Ok(vec![bytes::Bytes::from(
            serde_json::to_vec(v).unwrap_or_default(),
        )])
    };
    match segs.as_slice() {
        // Stripe answers `/v1/accounts/{id}` with the caller's own account as well as its connected ones.
        ["account"] => object(&world.account_json(&caller.account, caller.livemode)),
        ["accounts", id] if *id == caller.account => {
            object(&world.account_json(&caller.account, caller.livemode))
        }
        ["accounts", id, sub @ ("external_accounts" | "persons" | "capabilities")] => {
            connected_list(world, caller, scope, id, sub, params)
        }
        _ => {
            // `checkout/sessions/cs_1` is a resource of two segments; `charges/ch_1` one of one.
            let (res, name, rest) = match segs.as_slice() {
                [a, b, rest @ ..] if Res::from_path(&format!("{a}/{b}")).is_some() => {
                    let name = format!("{a}/{b}");
                    (Res::from_path(&name), name, rest)
                }
                [a, rest @ ..] => (Res::from_path(a), a.to_string(), rest),
                [] => (None, String::new(), &[][..]),
            };
            let res = res.ok_or_else(|| ApiError::not_found(path))?;
            if let Some(product) = res.product().filter(|_| scope.basic) {
                return Err(product.not_enabled(path));
            }
            let nested = match rest {
                [_, sub] if res.owned() == Some(*sub) => None,
                [_, sub] => Some(Res::nested(res, sub).ok_or_else(|| ApiError::not_found(path))?),
                [_, _, _, ..] => return Err(ApiError::not_found(path)),
                _ => None,
            };
            if !caller.key.may_read(res) {
                return Err(lacks_permission(caller, res));
            }
            match rest {
                [] => {
                    let mut q = ListQuery::parse(res, params)?;
                    expand::validate(res, &q.expand, true)?;
                    if res == Res::Event {
                        q.not_before = now - EVENT_RETENTION_SECS;
                    }
                    let mut page = scope.table(res).list(&q, now)?;
                    if !q.expand.is_empty() {
                        for item in &mut page.data {
                            let mut v: Value = serde_json::from_slice(item).unwrap_or(Value::Null);
                            for p in &q.expand {
                                expand::apply(scope, res, &mut v, p, now);
                            }
                            *item = bytes::Bytes::from(serde_json::to_vec(&v).unwrap_or_default());
                        }
                    }
                    Ok(page.into_chunks(&format!("/v1/{name}")))
                }
                [id] => {
                    let expand_paths: Vec<String> = params
                        .iter()
                        .filter(|(k, _)| k.starts_with("expand"))
                        .map(|(_, v)| v.clone())
                        .collect();
                    for (k, _) in params {
                        if !k.starts_with("expand") {
                            return Err(ApiError::unknown_parameter(k));
                        }
                    }
                    expand::validate(res, &expand_paths, false)?;
                    let row = scope
                        .table(res)
                        .get(id)
                        .ok_or_else(|| missing(world, caller, res, id))?;
                    if res == Res::Event && row.created < now - EVENT_RETENTION_SECS {
                        return Err(ApiError::invalid(
                            Some("resource_missing"),
                            format!("No such event: '{id}'. Events are only kept for 30 days."),
                        )
                        .param("id"));
                    }
                    if row.deleted {
                        return object(
                            &serde_json::json!({"id": id, "object": res.def().object, "deleted": true}),
                        );
                    }
                    if expand_paths.is_empty() {
                        return Ok(vec![row.json.clone()]);
                    }
                    let mut v: Value = serde_json::from_slice(&row.json).unwrap_or(Value::Null);
                    for p in &expand_paths {
                        expand::apply(scope, res, &mut v, p, now);
                    }
                    object(&v)
                }
                [id, sub] => match nested {
                    Some(item) => {
                        nested_list(world, caller, scope, (res, id), (item, sub), params, now)
                            .map(|page| page.into_chunks(&format!("/v1/{name}/{id}/{sub}")))
                    }
                    None => {
                        // A parent that owns no items yet lists none; no parent is a 404.
                        let lines = match scope.lines.get(*id) {
                            Some(lines) => lines.as_slice(),
                            None if scope.table(res).get(id).is_some() => &[],
                            None => return Err(missing(world, caller, res, id)),
                        };
                        owned_list(lines, params, &format!("/v1/{name}/{id}/{sub}"))
                    }
                },
                _ => Err(ApiError::not_found(path)),
            }
        }
    }
}

/// `/v1/{parent}/{id}/{segment}` (a customer's tax ids): the items whose parent field holds `id`, paged
/// like any list; 404 when the parent does not exist.
fn nested_list(
    world: &World,
    caller: &Caller,
    scope: &Scope,
    (parent, id): (Res, &str),
    (item, segment): (Res, &str),
    params: &[(String, String)],
    now: i64,
) -> Result<Page, ApiError> {
    let field = item
        .generic()
        .and_then(|g| g.nested.as_ref())
        .map(|n| n.field)
        .ok_or_else(|| ApiError::not_found(segment))?;
    if scope.table(parent).get(id).is_none_or(|r| r.deleted) {
        return Err(missing(world, caller, parent, id));
    }
    if params.iter().any(|(k, _)| k == field) {
        return Err(ApiError::unknown_parameter(field));
    }
    let mut params = params.to_vec();
    params.push((field.to_string(), id.to_string()));
    let q = ListQuery::parse(item, &params)?;
    scope.table(item).list(&q, now)
}

/// 403 for a restricted key without the resource's read permission.
fn lacks_permission(caller: &Caller, res: Res) -> ApiError {
    ApiError::forbidden(format!(
        "The provided key '{}' does not have the required permissions for this endpoint on account '{}'. Having the '{}' permission would allow this request to continue.",
        mask_key(&caller.key.key),
        caller.account,
        res.def().permission
    ))
}

/// A connected account's external accounts, persons or capabilities (`crate::connect`), paged like
/// any list; 404 for an account that is not the caller's, 403 for the persons of one that is not
/// Custom.
fn connected_list(
    world: &World,
    caller: &Caller,
    scope: &Scope,
    id: &str,
    sub: &str,
    params: &[(String, String)],
) -> Result<Vec<bytes::Bytes>, ApiError> {
    if !caller.key.may_read(Res::Account) {
        return Err(lacks_permission(caller, Res::Account));
    }
    let row = scope
        .table(Res::Account)
        .get(id)
        .filter(|r| !r.deleted)
        .ok_or_else(|| missing(world, caller, Res::Account, id))?;
    let account: Value = serde_json::from_slice(&row.json).unwrap_or(Value::Null);
    let lists = crate::connect::attached(&account);
    let items = match sub {
        "external_accounts" => lists.external_accounts,
        "persons" if !lists.readable_persons => {
            return Err(ApiError::forbidden(format!(
                "You cannot access the persons of account '{id}': a platform can read the persons of its Custom connected accounts only."
            )))
        }
        "persons" => lists.persons,
        _ => lists.capabilities,
    };
    let lines: Vec<(Box<str>, bytes::Bytes)> = items
        .iter()
        .map(|o| {
            let key = o["id"].as_str().unwrap_or_default().into();
            (
                key,
                bytes::Bytes::from(serde_json::to_vec(o).unwrap_or_default()),
            )
        })
        .collect();
    owned_list(&lines, params, &format!("/v1/accounts/{id}/{sub}"))
}

/// 404 for an object that does not exist, saying so when it exists in the other mode (as Stripe does).
fn missing(world: &World, caller: &Caller, res: Res, id: &str) -> ApiError {
    let mut e = ApiError::no_such(res.def().object, id);
    let other = world
        .scopes
        .get(&(caller.account.clone(), !caller.livemode));
    if other.is_some_and(|s| s.table(res).get(id).is_some()) {
        let (has, used) = if caller.livemode {
            ("test", "live")
        } else {
            ("live", "test")
        };
        e.message = format!("{}; a similar object exists in {has} mode, but a {used} mode key was used to make this request.", e.message);
    }
    e
}

/// A list its parent owns (`/v1/invoices/{id}/lines`, `/v1/checkout/sessions/{id}/line_items`): every
/// item in the parent's order, paged with the usual cursors.
fn owned_list(
    lines: &[(Box<str>, bytes::Bytes)],
    params: &[(String, String)],
    url: &str,
) -> Result<Vec<bytes::Bytes>, ApiError> {
    let mut limit = DEFAULT_LIMIT;
    let (mut after, mut before) = (None, None);
    for (k, v) in params {
        match k.as_str() {
            "limit" => limit = ListQuery::parse(Res::Coupon, &[(k.clone(), v.clone())])?.limit,
            "starting_after" => after = Some(v.as_str()),
            "ending_before" => before = Some(v.as_str()),
            _ => return Err(ApiError::unknown_parameter(k)),
        }
    }
    if after.is_some() && before.is_some() {
        return Err(ApiError::invalid(
            None,
            "You may only specify one of these parameters: ending_before, starting_after.",
        ));
    }
    let pos = |param: &str, id: &str| {
        lines.iter().position(|(l, _)| &**l == id).ok_or_else(|| {
            ApiError::invalid(
                Some("resource_missing"),
                format!("No such line item: '{id}'"),
            )
            .param(param)
        })
    };
    let (start, end) = match (after, before) {
        (Some(a), _) => (pos("starting_after", a)? + 1, lines.len()),
        (_, Some(b)) => {
            let e = pos("ending_before", b)?;
            (e.saturating_sub(limit), e)
        }
        _ => (0, lines.len()),
    };
    let take = (end - start).min(limit);
    let has_more = if before.is_some() {
        start > 0
    } else {
        end - start > take
    };
    let page = Page {
        data: lines[start..start + take]
            .iter()
            .map(|(_, b)| b.clone())
            .collect(),
        has_more,
    };
    Ok(page.into_chunks(url))
}

/// RFC 7231 date (`Sun, 01 Nov 2026 00:00:00 GMT`) from Unix seconds (before 1970: the epoch).
pub fn http_date(secs: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    httpdate::fmt_http_date(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            http_date(crate::DEFAULT_START),
            "Sun, 01 Nov 2026 00:00:00 GMT"
        );
    }

    #[test]
    fn basic_auth_takes_the_user_name() {
        // "sk_test_abc:" in base64
        assert_eq!(
            decode_basic("c2tfdGVzdF9hYmM6").as_deref(),
            Some("sk_test_abc")
        );
    }

    #[test]
    fn endpoint_templates() {
        assert_eq!(endpoint_template("/v1/charges"), "/v1/charges");
        assert_eq!(endpoint_template("/v1/charges/ch_1"), "/v1/charges/{id}");
        assert_eq!(
            endpoint_template("/v1/invoices/in_1/lines"),
            "/v1/invoices/{id}/lines"
        );
        assert_eq!(
            endpoint_template("/v1/checkout/sessions/cs_1"),
            "/v1/checkout/sessions/{id}"
        );
    }
}
