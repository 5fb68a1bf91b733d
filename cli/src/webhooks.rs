//! `stripe-pipeline serve-webhooks`: local mode kept fresh by pushes. Stripe's webhook deliveries are
//! checked (`Stripe-Signature`), answered at once and queued; one loop applies the queue's events in
//! small batches (the engine's push slices) and runs a whole sync every `--sync-every` seconds, which
//! reads `/v1/events` and so catches whatever a push missed. One loop for both: the local warehouse
//! (DuckDB) takes one writer.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stripe_pipeline::catalog::Dataset;
use stripe_pipeline::changes::Event;
use stripe_pipeline::clock::{Clock, SystemClock};
use stripe_pipeline::config::Config;
use stripe_pipeline::engine::{Engine, Resolved};
use stripe_pipeline::push::{self, signature};
use tokio::sync::mpsc;

/// The environment variable holding the endpoints' signing secrets (`whsec_…`, comma-separated while
/// one is being rolled).
pub const SECRET_ENV: &str = "STRIPE_PIPELINE_WEBHOOK_SECRET";

/// Events waiting to be applied, at most; a delivery beyond it is answered 503, and Stripe sends it
/// again later.
const QUEUE: usize = 10_000;

/// How long the loop gathers events into one batch after the first arrives: long enough to apply a
/// burst together, short enough to keep a change's way to the warehouse within seconds.
const GATHER: Duration = Duration::from_millis(250);

/// What `serve-webhooks` is asked to do.
pub struct Serve {
    pub listen: SocketAddr,
    /// Seconds between whole syncs (0: none, pushes only; the poller then never catches a lost push).
    pub sync_every: u64,
}

/// A checked delivery, for the loop.
struct Pushed {
    account: String,
    event: Event,
}

/// What the HTTP side shares.
struct Receiver {
    secrets: Vec<String>,
    accounts: Vec<String>,
    queue: mpsc::Sender<Pushed>,
}

pub async fn run(cfg: Config, serve: Serve) -> ExitCode {
    let secrets = match signature::parse_secrets(&std::env::var(SECRET_ENV).unwrap_or_default()) {
        Ok(secrets) => secrets,
        Err(e) => return crate::fail(2, &format!("{SECRET_ENV}: {e}")),
    };
    let started = match crate::summary::start(&cfg, true, "push").await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let names: Vec<String> = started
        .resolved
        .iter()
        .map(|r| r.account.name.clone())
        .collect();
    let listener = match tokio::net::TcpListener::bind(serve.listen).await {
        Ok(l) => l,
        Err(e) => return crate::fail(3, &format!("cannot listen on {}: {e}", serve.listen)),
    };
    let (queue, events) = mpsc::channel(QUEUE);
    let receiver = Arc::new(Receiver {
        secrets,
        accounts: names.clone(),
        queue,
    });
    let addr = listener.local_addr().unwrap_or(serve.listen);
    println!(
        "Receiving Stripe's webhooks on http://{addr}/webhooks/<account> for {}; a whole sync every {} s.",
        names.join(", "),
        serve.sync_every
    );
    tokio::spawn(accept(listener, receiver));
    tokio::select! {
        () = apply(started.engine, started.resolved, started.datasets, events, serve.sync_every) => ExitCode::SUCCESS,
        _ = tokio::signal::ctrl_c() => {
            println!("Stopped.");
            ExitCode::SUCCESS
        }
    }
}

async fn accept(listener: tokio::net::TcpListener, receiver: Arc<Receiver>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let receiver = receiver.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let receiver = receiver.clone();
                async move { Ok::<_, std::convert::Infallible>(receiver.receive(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

impl Receiver {
    /// One delivery: checked, queued, answered. Refusals say why (Stripe's Dashboard shows the answer)
    /// and are logged without the body.
    async fn receive(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (status, message) = self.check(req).await;
        if !status.is_success() {
            tracing::warn!(
                status = status.as_u16(),
                "webhook delivery refused: {message}"
            );
        }
        let body = serde_json::json!({ "message": message }).to_string();
        let mut resp = Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() = status;
        resp
    }

    async fn check(&self, req: Request<Incoming>) -> (StatusCode, String) {
        if req.method() != Method::POST {
            return (
                StatusCode::METHOD_NOT_ALLOWED,
                "only POST is accepted".into(),
            );
        }
        let path = req.uri().path().to_string();
        let Some(account) = path
            .strip_prefix("/webhooks/")
            .filter(|name| self.accounts.iter().any(|a| a == name))
        else {
            return (
                StatusCode::NOT_FOUND,
                format!(
                    "no endpoint {path}: deliveries go to /webhooks/<account>, one of {}",
                    self.accounts.join(", ")
                ),
            );
        };
        let header = req
            .headers()
            .get("stripe-signature")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = match Limited::new(req.into_body(), push::MAX_BODY_BYTES)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "the body is over {} bytes, or was cut off",
                        push::MAX_BODY_BYTES
                    ),
                )
            }
        };
        let event = match push::webhook_delivery(
            header.as_deref(),
            &body,
            &self.secrets,
            SystemClock.now_secs(),
        ) {
            Ok(event) => event,
            Err(e) => {
                let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
                return (status, e.to_string());
            }
        };
        let id = event.id.clone();
        let pushed = Pushed {
            account: account.to_string(),
            event,
        };
        match self.queue.try_send(pushed) {
            Ok(()) => (StatusCode::OK, format!("{id} received")),
            Err(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "too many events are waiting: send it again later".into(),
            ),
        }
    }
}

/// The loop: pushed events in batches as they come, and a whole sync when one is due.
async fn apply(
    engine: Engine,
    resolved: Vec<Resolved>,
    datasets: Vec<&'static Dataset>,
    mut events: mpsc::Receiver<Pushed>,
    sync_every: u64,
) {
    let every = (sync_every > 0).then(|| Duration::from_secs(sync_every));
    let mut next_sync = Instant::now();
    loop {
        let wait = match every {
            Some(every) => {
                if Instant::now() >= next_sync {
                    sync(&engine, &resolved, &datasets).await;
                    next_sync = Instant::now() + every;
                }
                next_sync.saturating_duration_since(Instant::now())
            }
            None => Duration::from_secs(3600),
        };
        let first = match tokio::time::timeout(wait, events.recv()).await {
            Ok(Some(first)) => first,
            Ok(None) => return,
            Err(_) => continue,
        };
        let mut batch = vec![first];
        let until = Instant::now() + GATHER;
        while let Ok(Some(more)) = tokio::time::timeout_at(until.into(), events.recv()).await {
            batch.push(more);
            if batch.len() >= QUEUE {
                break;
            }
        }
        let mut by_account: BTreeMap<String, Vec<Event>> = BTreeMap::new();
        for p in batch {
            by_account.entry(p.account).or_default().push(p.event);
        }
        for (account, events) in by_account {
            apply_batch(&engine, &resolved, &datasets, &account, events).await;
        }
    }
}

/// Applies one account's pushed events; prints a line of what they changed.
async fn apply_batch(
    engine: &Engine,
    resolved: &[Resolved],
    datasets: &[&'static Dataset],
    account: &str,
    events: Vec<Event>,
) {
    let started = Instant::now();
    let n = events.len();
    let objects: Vec<String> = events
        .iter()
        .filter_map(|e| e.data.object.get("id")?.as_str().map(str::to_string))
        .collect();
    // The account's keys, and any other key of the same Stripe account (its other mode).
    let merchant = resolved
        .iter()
        .find(|r| r.account.name == account)
        .map(|r| r.merchant_id.clone());
    let mine: Vec<Resolved> = resolved
        .iter()
        .filter(|r| Some(&r.merchant_id) == merchant.as_ref())
        .cloned()
        .collect();
    let report = engine.apply_pushed(&mine, datasets, events).await;
    let mut changed = 0;
    for run in &report.runs {
        match run {
            Ok(run) => {
                changed += run.report.datasets.iter().map(|d| d.changes).sum::<u64>();
                if let Some(e) = &run.failure {
                    eprintln!("error: account '{account}', pushed events: {e}");
                }
            }
            Err(e) => eprintln!("error: account '{account}', pushed events: {e}"),
        }
    }
    if !report.unrouted.is_empty() {
        eprintln!(
            "warning: account '{account}': {} pushed events are for a mode or connected account this configuration does not sync (e.g. {})",
            report.unrouted.len(),
            report.unrouted[0]
        );
    }
    // Which objects a batch carried, once they are in the tables (the freshness bench reads it).
    tracing::debug!(account, objects = %objects.join(","), "pushed events applied");
    println!(
        "pushed: {n} events for {account}, {changed} objects changed in {:.2} s",
        started.elapsed().as_secs_f64()
    );
}

/// A whole sync, as `stripe-pipeline sync` runs it; prints a line.
async fn sync(engine: &Engine, resolved: &[Resolved], datasets: &[&'static Dataset]) {
    let started = Instant::now();
    match engine.sync(resolved, datasets).await {
        Ok(report) => {
            for (account, dataset, error) in report.failures() {
                eprintln!("error: account '{account}', {dataset} failed: {error}");
            }
            println!("sync: done in {:.1} s", started.elapsed().as_secs_f64());
        }
        Err(e) => eprintln!("error: the sync failed: {e}"),
    }
}
