//! The worker: runs the slices of an SQS batch, one after another, each through the engine.
//!
//! A message is a slice, an export in Stripe's layout ([`export`]), the rest of a scheduler tick
//! that reached its deadline ([`resume_tick`]), or a pushed event (the batch's are applied together
//! first: [`crate::pushes`]). The engine runs the slice and tells
//! the operators how it went ([`stripe_pipeline::engine::Engine::run_slice`]); the worker only turns
//! the outcome into what SQS must do. Each message ends one of six ways: done (the message is
//! deleted), continued (the deadline came first: progress is committed and a continuation message is
//! queued), deferred (every rate slot of the account is held by other workers: the message is sent
//! again to run half a minute or so later, and Stripe was not called), skipped (the account is gone or
//! disabled, or another worker holds the slice's lease and is running it), failed for good (a bad key, a missing permission, a bad setting: retrying cannot help,
//! so the message is deleted; the alert went out at once, and the next tick plans the slice again), or
//! failed for now (reported back to SQS as a batch item failure, visible again after a [`backoff`] of
//! minutes, and after the queue's receive limit moved to the dead-letter queue). A message that is not
//! a slice or an export goes the last way too: the dead-letter queue keeps it for someone to read.

use crate::accounts::AccountRecord;
use crate::message::{ExportMessage, Message, PushMessage, SliceMessage, TickMessage};
use crate::pushes;
use crate::scheduler::{account_failed, account_of, check, send_batch, tick_until};
use crate::{Error, Services};
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsMessage};
use std::time::{Duration, Instant};
use stripe_pipeline::catalog::Dataset;
use stripe_pipeline::clock::{Clock, SystemClock};
use stripe_pipeline::config::Account;
use stripe_pipeline::engine::plan;
use stripe_pipeline::engine::{AccountReport, Engine, Resolved, SliceOutcome, SyncError};
use stripe_pipeline::export::{ExportError, ExportOptions, ExportReport, Exporter};
use stripe_pipeline::state::{Lease, StateError, StateStore};
use stripe_pipeline::stripe::rate_slots;

/// How a message ended.
#[derive(Debug)]
pub enum Ran {
    Done(Box<AccountReport>),
    /// The rest of a scheduler tick was planned: slices planned and sent, and whether this too
    /// reached its deadline (and queued the rest).
    Ticked {
        planned: usize,
        sent: usize,
        continued: bool,
    },
    /// A slice of a cohort of connected accounts: this many finished it (the others' slices were
    /// being run by another worker).
    Cohort(usize),
    Exported(Vec<ExportReport>),
    Continued(String),
    /// Every rate slot of the account was held by other workers: the message was sent again with a
    /// delay.
    Deferred(String),
    Skipped(String),
}

/// How long a slice waits when its account's rate slots are all held: the setting (half a minute by
/// default), plus up to as much again so that the waiting slices of an account do not all come back
/// together.
fn rate_slot_wait(secs: u64) -> Duration {
    Duration::from_secs(secs + fastrand::u64(0..=secs))
}

/// When to stop listing, given the invocation's deadline (Unix milliseconds): early enough to write,
/// load and commit the batch in hand and queue a continuation — a quarter of the time left, at most a
/// minute.
pub fn stop_at(deadline_ms: u64) -> Instant {
    let now_ms = SystemClock.now_millis() as u64;
    // Lambda sends Unix milliseconds; `cargo lambda watch` sends the timeout itself (600000). A value
    // before 2001 cannot be a deadline: read it as milliseconds from now.
    let left = if deadline_ms < 1_000_000_000_000 {
        Duration::from_millis(deadline_ms)
    } else {
        Duration::from_millis(deadline_ms.saturating_sub(now_ms))
    };
    Instant::now() + left - (left / 4).min(Duration::from_secs(60))
}

/// Runs a batch; returns the messages that failed. Pushed events go first, all together (they are
/// what keeps the tables seconds behind Stripe); then the other messages, one after another.
pub async fn handle(
    svc: &Services,
    records: Vec<SqsMessage>,
    run_id: &str,
    stop: Instant,
) -> SqsBatchResponse {
    let mut failures = Vec::new();
    let mut pushed = Vec::new();
    let mut others = Vec::new();
    for record in records {
        match Message::parse(record.body.as_deref().unwrap_or("")) {
            Ok(Message::Push(push)) => pushed.push((record, push)),
            parsed => others.push((record, parsed)),
        }
    }
    if !pushed.is_empty() {
        failures.extend(apply_pushed(svc, pushed, run_id, stop).await);
    }
    for (i, (record, parsed)) in others.into_iter().enumerate() {
        let id = record.message_id.clone().unwrap_or_default();
        if Instant::now() >= stop {
            // No time left to start it: visible again at once, for another invocation.
            tracing::warn!(message_id = %id, "no time left in this invocation; the slice is retried");
            retry_after(svc, &svc.settings.queue_url, &record, Duration::ZERO).await;
            failures.push(id);
            continue;
        }
        let run_id = format!("{run_id}-{i}");
        let outcome = match parsed {
            Ok(Message::Slice(m)) => run(svc, &m, &run_id, stop).await,
            Ok(Message::Export(m)) => export(svc, &m, &run_id).await,
            Ok(Message::Tick(m)) => resume_tick(svc, &m, stop).await,
            Ok(Message::Push(_)) => unreachable!("pushed events were taken out above"),
            Err(e) => Err(Error::Message(e)),
        };
        match outcome {
            Ok(ran) => tracing::info!(message_id = %id, outcome = ?ran, "slice finished"),
            Err(e) if e.retryable() || matches!(e, Error::Message(_)) => {
                let wait = backoff(receive_count(&record));
                tracing::error!(message_id = %id, error = %e, retry_in_secs = wait.as_secs(), "slice failed; SQS retries it");
                retry_after(svc, &svc.settings.queue_url, &record, wait).await;
                failures.push(id);
            }
            Err(e) => tracing::error!(
                message_id = %id,
                error = %e,
                "slice failed, and retrying cannot fix it: the message is dropped; the next tick plans the slice again"
            ),
        }
    }
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures
        .into_iter()
        .map(|item_identifier| {
            let mut f = BatchItemFailure::default();
            f.item_identifier = item_identifier;
            f
        })
        .collect();
    response
}

/// Applies the batch's pushed events ([`pushes::apply`]); returns the ids of the messages to retry.
/// Every failure is retried with the [`backoff`], whatever its kind: a push that cannot be applied
/// ends in the dead-letter queue (whose alarm tells the operators), and the scheduled feed applies
/// its event meanwhile, so nothing is lost either way.
async fn apply_pushed(
    svc: &Services,
    pushed: Vec<(SqsMessage, PushMessage)>,
    run_id: &str,
    stop: Instant,
) -> Vec<String> {
    let queue = svc
        .settings
        .push_queue_url
        .as_deref()
        .unwrap_or(&svc.settings.queue_url);
    let mut records = std::collections::HashMap::new();
    let mut batch = Vec::new();
    for (record, push) in pushed {
        let message_id = record.message_id.clone().unwrap_or_default();
        records.insert(message_id.clone(), record);
        batch.push(pushes::Pushed { message_id, push });
    }
    let started = Instant::now();
    let applied = pushes::apply(svc, batch, run_id, stop).await;
    tracing::info!(
        events = applied.events,
        accounts = applied.accounts,
        seconds = started.elapsed().as_secs_f64(),
        "pushed events applied"
    );
    let mut failed = Vec::new();
    for (ids, e) in applied.failed {
        let receives = ids
            .iter()
            .filter_map(|id| records.get(id))
            .map(receive_count)
            .max()
            .unwrap_or(1);
        let wait = backoff(receives);
        tracing::error!(messages = ids.len(), error = %e, retry_in_secs = wait.as_secs(), "pushed events failed; SQS retries them (the scheduled feed reads them meanwhile)");
        for id in ids {
            if let Some(record) = records.get(&id) {
                retry_after(svc, queue, record, wait).await;
            }
            failed.push(id);
        }
    }
    failed
}

/// How long a failed message waits before SQS hands it out again: a minute after its first receive,
/// doubling with each receive, at most a quarter of an hour. Without it, a failed message would wait
/// out the queue's visibility timeout (six times the worker's timeout: 90 minutes by default).
pub fn backoff(receive_count: u32) -> Duration {
    let doublings = receive_count.saturating_sub(1).min(4);
    Duration::from_secs(60 << doublings).min(Duration::from_secs(900))
}

/// The times SQS has handed this message out, this time included (1 when SQS does not say).
fn receive_count(record: &SqsMessage) -> u32 {
    record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// Makes a failed message visible again after `wait`. If SQS refuses, it comes back after the
/// queue's visibility timeout instead: later, but not lost.
async fn retry_after(svc: &Services, queue_url: &str, record: &SqsMessage, wait: Duration) {
    let Some(handle) = record.receipt_handle.as_deref() else {
        return;
    };
    let changed = svc
        .sqs
        .change_message_visibility()
        .queue_url(queue_url)
        .receipt_handle(handle)
        .visibility_timeout(wait.as_secs() as i32)
        .send()
        .await;
    if let Err(e) = changed {
        let error = stripe_pipeline::state::sdk_error_message(&e);
        tracing::warn!(%error, "could not shorten the failed message's wait; it is retried after the queue's visibility timeout");
    }
}

/// Runs one slice message.
pub async fn run(
    svc: &Services,
    message: &SliceMessage,
    run_id: &str,
    stop: Instant,
) -> Result<Ran, Error> {
    let Some(record) = svc.accounts.get(&message.account).await? else {
        return Ok(Ran::Skipped(format!(
            "account '{}' is not in the accounts table any more",
            message.account
        )));
    };
    if !record.enabled {
        return Ok(Ran::Skipped(format!(
            "account '{}' is disabled",
            record.name
        )));
    }
    let datasets = record.datasets()?;
    let account = match account_of(svc, &record).await {
        Ok(account) => account,
        Err(e) => {
            account_failed(svc, &record.name, &e).await;
            return Err(e);
        }
    };
    let state: StateStore = svc.state.clone().into();
    // The Stripe account the scheduler found for the key; a message from before it named one: the
    // record.
    let budget = message.merchant_id.as_deref().unwrap_or(&record.name);
    let Some(slot) = rate_slot(&state, budget, account.livemode, run_id, stop).await? else {
        return defer(svc, message, &account).await;
    };
    let ran = run_in_slot(svc, message, &record, account, &datasets, run_id, stop).await;
    state.release(&slot).await;
    ran
}

/// Takes one of a Stripe account's rate slots (see [`Limiter`](stripe_pipeline::stripe::Limiter)):
/// a lease on `_rate/<merchant>/<mode>/<n>`, held until the slice ends, its key check included, so
/// every request of the slice is within the slot's part of the budget. A platform's connected
/// accounts spend the platform's. `None`: all are held.
async fn rate_slot(
    state: &StateStore,
    budget: &str,
    livemode: bool,
    owner: &str,
    stop: Instant,
) -> Result<Option<Lease>, Error> {
    // Like the slice's lease: a function killed at its deadline frees the slot shortly after.
    let ttl = stop.saturating_duration_since(Instant::now()).as_secs() as i64
        + plan::SLICE_LEASE_GRACE_SECS;
    let mode = if livemode { "live" } else { "test" };
    for n in 0..rate_slots(livemode) {
        let key = format!("_rate/{budget}/{mode}/{n}");
        match state.acquire(&key, owner, ttl).await {
            Ok(lease) => return Ok(Some(lease)),
            Err(StateError::Leased { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

/// Sends the message again to run after [`rate_slot_wait`]: sent rather than made visible again,
/// since waiting for a slot is not a failed receive and must not walk the message towards the
/// dead-letter queue.
async fn defer(svc: &Services, message: &SliceMessage, account: &Account) -> Result<Ran, Error> {
    let wait = rate_slot_wait(svc.settings.rate_slot_wait_secs);
    send_one(svc, message, wait, "deferring").await?;
    Ok(Ran::Deferred(format!(
        "every rate slot of '{}' is held by another worker; {} runs in {} s",
        account.name,
        message.id,
        wait.as_secs()
    )))
}

/// Sends one slice message, visible after `delay`; a refusal is an SQS error naming `action` and the
/// slice.
async fn send_one(
    svc: &Services,
    message: &SliceMessage,
    delay: Duration,
    action: &str,
) -> Result<(), Error> {
    match send_batch(svc, std::slice::from_ref(message), delay)
        .await
        .pop()
    {
        None => Ok(()),
        Some((_, error)) => Err(Error::Aws {
            service: "SQS",
            action: format!("{action} {}", message.id),
            message: error,
        }),
    }
}

/// Runs a slice while its account's rate slot is held: the key check, then the engine.
async fn run_in_slot(
    svc: &Services,
    message: &SliceMessage,
    record: &AccountRecord,
    account: Account,
    datasets: &[&'static Dataset],
    run_id: &str,
    stop: Instant,
) -> Result<Ran, Error> {
    let r = match check(svc, account).await {
        Ok(r) => r,
        Err(e) => {
            account_failed(svc, &record.name, &e).await;
            return Err(e);
        }
    };
    let engine = match svc.engine(run_id.to_string(), Some(stop)).await {
        Ok(engine) => engine,
        Err(e) => {
            let warehouse = e.to_string();
            svc.alerts
                .failed(
                    &r.scope(),
                    &record.name,
                    "warehouse",
                    &warehouse,
                    !e.retryable(),
                )
                .await;
            return Err(e);
        }
    };
    if !message.connected.is_empty() {
        return run_cohort(svc, &engine, message, &r, datasets).await;
    }
    let ran = match engine.run_slice(&r, datasets, &message.work).await {
        Ok(ran) => ran,
        Err(SyncError::State(StateError::Leased { owner, .. })) => {
            return Ok(Ran::Skipped(format!(
                "{} is being run by {owner}",
                message.id
            )));
        }
        Err(e) => return Err(e.into()),
    };
    if ran.outcome == SliceOutcome::Paused {
        let next = message.continuation();
        // The progress is committed; the next tick plans the rest if this retry fails too.
        send_one(svc, &next, Duration::ZERO, "queueing continuation").await?;
        return Ok(Ran::Continued(next.id));
    }
    match ran.failure {
        Some(source) => Err(Error::Slice {
            what: message.work.name().to_string(),
            source,
        }),
        None => Ok(Ran::Done(Box::new(ran.report))),
    }
}

/// Runs a slice of a platform's connected accounts, all at once in this engine (their rows are
/// delivered together), each with the platform's checked key and its `Stripe-Account`. The message
/// ends as its worst account: a failure a retry may fix retries the whole message (the accounts that
/// finished find nothing left to do); accounts stopped at the deadline are continued alone; a
/// failure no retry fixes drops it (each failed account was announced by the engine).
async fn run_cohort(
    svc: &Services,
    engine: &Engine,
    message: &SliceMessage,
    platform: &Resolved,
    datasets: &[&'static Dataset],
) -> Result<Ran, Error> {
    let runs = futures_util::future::join_all(message.connected.iter().map(|id| {
        let r = platform.connected(id.clone());
        async move { (id, engine.run_slice(&r, datasets, &message.work).await) }
    }))
    .await;
    let (mut paused, mut failures, mut done) = (Vec::new(), Vec::new(), 0);
    for (id, ran) in runs {
        let what = format!("{id}/{}", message.work.name());
        match ran {
            Ok(run) if run.outcome == SliceOutcome::Paused => paused.push(id.clone()),
            Ok(run) => match run.failure {
                Some(source) => failures.push(Error::Slice { what, source }),
                None => done += 1,
            },
            // Another worker runs this account's slice.
            Err(SyncError::State(StateError::Leased { .. })) => {}
            Err(source) => failures.push(Error::Slice { what, source }),
        }
    }
    if let Some(i) = failures.iter().position(Error::retryable) {
        return Err(failures.swap_remove(i));
    }
    if !paused.is_empty() {
        let next = message.continuation_of(paused);
        send_one(svc, &next, Duration::ZERO, "queueing continuation").await?;
        return Ok(Ran::Continued(next.id));
    }
    match failures.pop() {
        Some(e) => Err(e),
        None => Ok(Ran::Cohort(done)),
    }
}

/// Plans the rest of a scheduler tick that reached its deadline (and queues what is left at this
/// invocation's deadline in turn).
async fn resume_tick(svc: &Services, m: &TickMessage, stop: Instant) -> Result<Ran, Error> {
    let report = tick_until(svc, m.resume_tick, Some(&m.resume), Some(stop)).await?;
    Ok(Ran::Ticked {
        planned: report.planned,
        sent: report.sent,
        continued: report.continued.is_some(),
    })
}

/// How long an export's lease lasts if its function dies without releasing it (Lambda's longest run).
const EXPORT_LEASE_SECS: i64 = 900;

/// Builds the exports in Stripe's layout for the message's tick, under one lease for the whole
/// deployment (two exports at once would remove each other's unfinished folders). An export that does
/// not finish leaves a folder without `coreapi_SUCCESS`; the retry replaces it.
pub async fn export(svc: &Services, message: &ExportMessage, run_id: &str) -> Result<Ran, Error> {
    let (Some(settings), Some(out)) = (&svc.settings.export, &svc.export) else {
        return Ok(Ran::Skipped(format!(
            "{}: exports are off (STRIPE_PIPELINE_EXPORT_EVERY_MINUTES is 0)",
            message.id
        )));
    };
    let state: StateStore = svc.state.clone().into();
    let exporter = Exporter {
        lake: &svc.lake,
        out,
        options: ExportOptions {
            keep: settings.keep,
            ..ExportOptions::default()
        },
    };
    let result = exporter
        .export_leased(&state, run_id, EXPORT_LEASE_SECS, message.export_tick)
        .await;
    match result {
        Ok(reports) => {
            for r in &reports {
                tracing::info!(folder = %r.folder, rows = r.rows, files = r.files, copied = r.copied, seconds = r.elapsed_secs, "export complete");
            }
            Ok(Ran::Exported(reports))
        }
        Err(ExportError::State(StateError::Leased { owner, .. })) => Ok(Ran::Skipped(format!(
            "{}: an export is being built by {owner}",
            message.id
        ))),
        Err(ExportError::State(e)) => Err(e.into()),
        // SQS retries it; after the receive limit it goes to the dead-letter queue, whose alarm alerts.
        Err(e) => Err(Error::Export(format!(
            "the export to {} failed: {e}",
            settings.url
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_messages_wait_a_minute_doubling_to_a_quarter_hour() {
        let secs: Vec<u64> = (0..8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [60, 60, 120, 240, 480, 900, 900, 900]);
    }

    #[test]
    fn the_stop_leaves_a_quarter_of_the_time_at_most_a_minute() {
        let now_ms = SystemClock.now_millis() as u64;
        let left = |stop: Instant| stop.saturating_duration_since(Instant::now()).as_secs_f64();
        // 900 s left: stop a minute early.
        assert!((left(stop_at(now_ms + 900_000)) - 840.0).abs() < 2.0);
        // 20 s left: stop 5 s early.
        assert!((left(stop_at(now_ms + 20_000)) - 15.0).abs() < 1.0);
        // Passed: stop now.
        assert!(left(stop_at(now_ms - 1_000)) < 0.01);
        // A timeout instead of a deadline (the local emulator): from now.
        assert!((left(stop_at(600_000)) - 540.0).abs() < 2.0);
    }
}
