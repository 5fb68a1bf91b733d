//! The scheduler: on every tick, plan the due slices of every enabled account and send each to the
//! queue once; and, when exports are on, one export message per export interval.

use crate::accounts::AccountRecord;
use crate::message::{ExportMessage, SliceMessage};
use crate::metrics;
use crate::{Error, Services};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use futures_util::StreamExt;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;
use stripe_pipeline::config::Account;
use stripe_pipeline::engine::plan;
use stripe_pipeline::engine::{self, Resolved};

/// How long the scheduler remembers a sent slice (re-running a tick within this sends nothing).
pub const MARK_TTL_SECS: i64 = 7 * 86_400;
/// SQS takes at most 10 messages per batch.
const SQS_BATCH: usize = 10;
/// Accounts a tick works on at once.
const ACCOUNTS_AT_ONCE: usize = 16;
/// SQS delays a message by at most a quarter of an hour.
const MAX_DELAY_SECS: u64 = 900;

#[derive(Debug, Default, Serialize)]
pub struct TickReport {
    pub tick: i64,
    /// Accounts added from `STRIPE_PIPELINE_SEED_ACCOUNTS`.
    pub seeded: usize,
    /// Enabled accounts planned.
    pub accounts: usize,
    pub planned: usize,
    pub sent: usize,
    /// Slices this tick had already sent (the tick ran before).
    pub already_sent: usize,
    /// An export message was sent (the first tick of an export interval).
    pub export_sent: bool,
    /// Accounts that could not be planned (bad key, unreadable secret, malformed item), and failed
    /// sends.
    pub errors: Vec<String>,
    /// Per table, the age of its stalest account's data in seconds (tables loaded in full only):
    /// published as the `DataAgeSeconds` metric.
    pub data_age_secs: BTreeMap<String, i64>,
    /// How far the stalest table of any account is past the age its schedule allows (the snapshot
    /// interval for snapshot tables, nothing for tables the change feed keeps current), in seconds:
    /// published as `OverdueSeconds`, which the stale-data alarm watches.
    pub overdue_secs: i64,
}

impl TickReport {
    fn merge(&mut self, part: TickReport) {
        self.planned += part.planned;
        self.sent += part.sent;
        self.already_sent += part.already_sent;
        self.errors.extend(part.errors);
        self.overdue_secs = self.overdue_secs.max(part.overdue_secs);
        for (table, age) in part.data_age_secs {
            self.oldest(table, age);
        }
    }

    /// Keeps the oldest age per table.
    fn oldest(&mut self, table: String, age: i64) {
        let oldest = self.data_age_secs.entry(table).or_default();
        *oldest = (*oldest).max(age);
    }
}

/// Resolves an account's key (`GET /v1/account`): its Stripe id, mode and Stripe's clock.
pub async fn resolve(svc: &Services, record: &AccountRecord) -> Result<Resolved, Error> {
    check(svc, account_of(svc, record).await?).await
}

/// The account of a record: its name, and its key from Secrets Manager (no request to Stripe yet).
pub async fn account_of(svc: &Services, record: &AccountRecord) -> Result<Account, Error> {
    let key = svc
        .secrets
        .stripe_key(&record.name, &record.secret_arn)
        .await?;
    let livemode = key.livemode().unwrap_or(false);
    Ok(Account {
        name: record.name.clone(),
        key,
        livemode,
        connect: record.connect,
    })
}

/// Checks an account's key with Stripe: its id and Stripe's clock.
pub async fn check(svc: &Services, account: Account) -> Result<Resolved, Error> {
    let name = account.name.clone();
    let mut resolved = engine::resolve(&svc.stripe_client(), &[account]).await?;
    resolved.pop().ok_or_else(|| Error::Account {
        account: name,
        message: "the key check returned nothing".into(),
    })
}

/// The scope notifications use for an account before its key is checked.
fn account_scope(name: &str) -> String {
    format!("account/{name}")
}

/// Tells the operators that the key check or the plan of account `name` failed: after
/// `FailureAlertAfter` failures in a row, or at once when retrying cannot help.
pub async fn account_failed(svc: &Services, name: &str, e: &Error) {
    let scope = account_scope(name);
    svc.alerts
        .failed(&scope, name, "account", &e.to_string(), !e.retryable())
        .await;
}

/// An account's slices due this tick, and the age of each of its tables' data (seconds of Stripe's
/// clock; tables not loaded in full yet have none) with how old it may be by design.
async fn plan_account(
    svc: &Services,
    record: &AccountRecord,
    tick: i64,
) -> Result<(Vec<SliceMessage>, Vec<(String, i64, i64)>), Error> {
    let datasets = record.datasets()?;
    let r = resolve(svc, record).await?;
    let state = svc.state.clone().into();
    let settings = svc.settings.incremental();
    let mut ages = Vec::new();
    let mut age = |planned: &plan::Plan| {
        ages.extend(planned.freshness.iter().filter_map(|f| {
            let age = (r.server_time - f.as_of?).max(0);
            Some((f.table.clone(), age, f.allowed_secs))
        }));
    };
    let planned = plan::plan(&state, &r, &r.datasets(&datasets), r.server_time, &settings).await?;
    age(&planned);
    let mut messages: Vec<SliceMessage> = planned
        .works
        .into_iter()
        .map(|w| SliceMessage::new(&record.name, w, tick).of_merchant(&r.merchant_id))
        .collect();
    // A platform's connected accounts, as `GET /v1/accounts` lists them now: one that was
    // deauthorized is planned no more.
    for c in engine::resolve::connected(&svc.stripe_client(), &r).await? {
        let id = c.connected.clone().unwrap_or_default();
        let planned =
            plan::plan(&state, &c, &c.datasets(&datasets), r.server_time, &settings).await?;
        age(&planned);
        messages.extend(planned.works.into_iter().map(|w| {
            SliceMessage::connected(&record.name, &id, w, tick).of_merchant(&r.merchant_id)
        }));
    }
    Ok((messages, ages))
}

/// One tick: seed accounts, plan, and send the slices not yet sent for this tick.
pub async fn tick(svc: &Services, tick: i64) -> Result<TickReport, Error> {
    let mut report = TickReport {
        tick,
        ..TickReport::default()
    };
    for seed in &svc.settings.seed_accounts {
        if svc.accounts.add_if_missing(seed).await? {
            report.seeded += 1;
        }
    }
    let mut records = Vec::new();
    for record in svc.accounts.all().await? {
        match record {
            Ok(r) if r.enabled => records.push(r),
            Ok(_) => {}
            Err(e) => report.errors.push(e.to_string()),
        }
    }
    report.accounts = records.len();
    // Accounts are worked on several at once (a plan is a key check and a few state reads, its sends
    // a few conditional writes and an SQS call, all waiting on the network), and each account's slices
    // are sent as soon as its plan is in: a tick cut off by its timeout has sent those of every account
    // it got to, and the next tick plans the rest.
    let mut accounts = futures_util::stream::iter(records)
        .map(|record| account_tick(svc, record, tick))
        .buffer_unordered(ACCOUNTS_AT_ONCE);
    while let Some(part) = accounts.next().await {
        report.merge(part?);
    }
    if let Err(e) = plan_export(svc, tick, &mut report).await {
        report.errors.push(e.to_string());
    }
    let namespace = &svc.settings.metrics_namespace;
    for line in metrics::data_age(namespace, tick, &report.data_age_secs, report.overdue_secs) {
        // Lambda's standard output goes to CloudWatch Logs, which turns these lines into metrics.
        println!("{line}");
    }
    tracing::info!(
        tick,
        export = report.export_sent,
        accounts = report.accounts,
        planned = report.planned,
        sent = report.sent,
        already_sent = report.already_sent,
        errors = report.errors.len(),
        "scheduler tick"
    );
    Ok(report)
}

/// One account's part of a tick: its plan, and its slices not yet sent for this tick, sent. A failed
/// plan is the account's error (announced as configured); a state store that fails the marks fails
/// the tick.
async fn account_tick(
    svc: &Services,
    record: AccountRecord,
    tick: i64,
) -> Result<TickReport, Error> {
    let mut part = TickReport::default();
    match plan_account(svc, &record, tick).await {
        Ok((messages, ages)) => {
            svc.alerts
                .succeeded(&account_scope(&record.name), &record.name, "account")
                .await;
            part.planned = messages.len();
            for (table, age, allowed) in ages {
                part.overdue_secs = part.overdue_secs.max(age - allowed);
                part.oldest(table, age);
            }
            send_once(svc, tick, messages, &mut part).await?;
        }
        Err(e) => {
            account_failed(svc, &record.name, &e).await;
            part.errors.push(e.to_string());
        }
    }
    Ok(part)
}

/// Sends the slices of this tick not sent yet. Each is marked before it is sent: two invocations of
/// the same tick (EventBridge delivers at least once) never both send a slice.
async fn send_once(
    svc: &Services,
    tick: i64,
    planned: Vec<SliceMessage>,
    report: &mut TickReport,
) -> Result<(), Error> {
    let mut fresh = Vec::new();
    for m in planned {
        if svc
            .state
            .mark_once(&format!("slice#{}", m.id), tick + MARK_TTL_SECS)
            .await?
        {
            fresh.push(m);
        } else {
            report.already_sent += 1;
        }
    }
    for chunk in fresh.chunks(SQS_BATCH) {
        let failed = send_batch(svc, chunk, Duration::ZERO).await;
        report.sent += chunk.len() - failed.len();
        for (m, error) in failed {
            // Not sent: forget the mark so a re-run of this tick sends it.
            let _ = svc.state.forget(&format!("slice#{}", m.id)).await;
            report.errors.push(format!("slice {}: {error}", m.id));
        }
    }
    Ok(())
}

/// Sends the export message of this tick's export interval, once. It goes after the tick's slices: the
/// export holds what the lake has when a worker runs it, and the next one catches up with the rest.
async fn plan_export(svc: &Services, tick: i64, report: &mut TickReport) -> Result<(), Error> {
    let Some(export) = &svc.settings.export else {
        return Ok(());
    };
    let mark = format!("export#{}", tick.div_euclid(export.every_secs.max(60)));
    if !svc
        .state
        .mark_once(&mark, tick + export.every_secs + MARK_TTL_SECS)
        .await?
    {
        return Ok(());
    }
    let message = ExportMessage::new(tick);
    let sent = svc
        .sqs
        .send_message()
        .queue_url(&svc.settings.queue_url)
        .message_body(serde_json::to_string(&message).unwrap_or_default())
        .send()
        .await;
    if let Err(e) = sent {
        let _ = svc.state.forget(&mark).await;
        return Err(Error::aws("SQS", format!("sending {}", message.id), e));
    }
    report.export_sent = true;
    Ok(())
}

/// Sends up to ten messages, each visible after `delay`; returns those that were not sent, with why.
pub async fn send_batch<'a>(
    svc: &Services,
    messages: &'a [SliceMessage],
    delay: Duration,
) -> Vec<(&'a SliceMessage, String)> {
    let entries: Vec<SendMessageBatchRequestEntry> = messages
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(serde_json::to_string(m).unwrap_or_default())
                .delay_seconds(delay.as_secs().min(MAX_DELAY_SECS) as i32)
                .build()
                .ok()
        })
        .collect();
    let result = svc
        .sqs
        .send_message_batch()
        .queue_url(&svc.settings.queue_url)
        .set_entries(Some(entries))
        .send()
        .await;
    match result {
        Ok(out) => out
            .failed()
            .iter()
            .filter_map(|f| {
                let m = messages.get(f.id().parse::<usize>().ok()?)?;
                Some((
                    m,
                    format!("{}: {}", f.code(), f.message().unwrap_or_default()),
                ))
            })
            .collect(),
        Err(e) => {
            let e = Error::aws("SQS", "sending slices", e).to_string();
            messages.iter().map(|m| (m, e.clone())).collect()
        }
    }
}
