//! The scheduler: on every tick, plan the due slices of every enabled account and send each to the
//! queue once; and, when exports are on, one export message per export interval.

use crate::accounts::AccountRecord;
use crate::message::{ExportMessage, Resume, SliceMessage, TickMessage};
use crate::metrics;
use crate::{Error, Services};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use stripe_pipeline::config::Account;
use stripe_pipeline::engine::plan;
use stripe_pipeline::engine::{self, Resolved};
use stripe_pipeline::state::StateStore;

/// How long the scheduler remembers a sent slice (re-running a tick within this sends nothing).
pub const MARK_TTL_SECS: i64 = 7 * 86_400;
/// SQS takes at most 10 messages per batch.
const SQS_BATCH: usize = 10;
/// Accounts a tick works on at once.
const ACCOUNTS_AT_ONCE: usize = 16;
/// A Connect platform's connected accounts planned before their slices are sent.
const CONNECTED_PER_SEND: usize = 500;
/// Connected accounts whose slices of one work go in one message ([`SliceMessage::cohorts`]).
pub const COHORT_SIZE: usize = 25;
/// SQS delays a message by at most a quarter of an hour.
const MAX_DELAY_SECS: u64 = 900;

#[derive(Debug, Default, Serialize)]
pub struct TickReport {
    pub tick: i64,
    /// Accounts added from `STRIPE_PIPELINE_SEED_ACCOUNTS`.
    pub seeded: usize,
    /// Enabled accounts planned.
    pub accounts: usize,
    /// Slices planned: an account's feed or one of its lists each (a connected account's too).
    pub planned: usize,
    /// Slices sent.
    pub sent: usize,
    /// SQS messages sent: one per slice, except for connected accounts, whose slices of one work
    /// go [`COHORT_SIZE`] to a message.
    pub messages: usize,
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
    /// Where the rest of the tick starts, when it reached its deadline (a [`TickMessage`] was queued
    /// for a worker to plan it).
    pub continued: Option<Resume>,
}

impl TickReport {
    fn merge(&mut self, part: TickReport) {
        self.planned += part.planned;
        self.sent += part.sent;
        self.messages += part.messages;
        self.already_sent += part.already_sent;
        self.errors.extend(part.errors);
        self.overdue_secs = self.overdue_secs.max(part.overdue_secs);
        for (table, age) in part.data_age_secs {
            self.oldest(table, age);
        }
    }

    /// Counts `slices` planned, and their tables' data ages.
    fn planned(&mut self, slices: usize, ages: Ages) {
        self.planned += slices;
        for (table, age, allowed) in ages {
            self.overdue_secs = self.overdue_secs.max(age - allowed);
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

/// A table's data age and how old it may be by design: `(table, age, allowed)`, in seconds.
type Ages = Vec<(String, i64, i64)>;

/// The ages of a plan's tables at Stripe's time `now` (tables not loaded in full yet have none).
fn ages(planned: &plan::Plan, now: i64) -> impl Iterator<Item = (String, i64, i64)> + '_ {
    planned.freshness.iter().filter_map(move |f| {
        let age = (now - f.as_of?).max(0);
        Some((f.table.clone(), age, f.allowed_secs))
    })
}

/// An account's own slices due this tick with its tables' data ages; and, when it is a Connect
/// platform, its connected accounts as `GET /v1/accounts` lists them now (one that was deauthorized
/// is planned no more).
async fn plan_account(
    svc: &Services,
    record: &AccountRecord,
    tick: i64,
) -> Result<(Vec<SliceMessage>, Ages, Vec<Resolved>), Error> {
    let datasets = record.datasets()?;
    let r = resolve(svc, record).await?;
    let state = svc.state.clone().into();
    let settings = svc.settings.incremental();
    let planned = plan::plan(&state, &r, &r.datasets(&datasets), r.server_time, &settings).await?;
    let ages = ages(&planned, r.server_time).collect();
    let messages = planned
        .works
        .into_iter()
        .map(|w| SliceMessage::new(&record.name, w, tick).of_merchant(&r.merchant_id))
        .collect();
    let connected = engine::resolve::connected(&svc.stripe_client(), &r).await?;
    Ok((messages, ages, connected))
}

/// The slices due this tick of some of a platform's connected accounts, with their tables' data
/// ages: accounts whose first load is unfinished first, then those with the stalest table (SQS hands
/// out older messages first, roughly).
async fn plan_connected(
    svc: &Services,
    record: &AccountRecord,
    connected: &[Resolved],
    tick: i64,
) -> Result<(Vec<SliceMessage>, Ages), Error> {
    let datasets = record.datasets()?;
    let state: StateStore = svc.state.clone().into();
    let settings = svc.settings.incremental();
    let (state, settings, datasets) = (&state, &settings, &datasets);
    let mut plans: Vec<(&Resolved, plan::Plan)> = futures_util::stream::iter(connected)
        .map(|c| async move {
            let own = c.datasets(datasets);
            let planned = plan::plan(state, c, &own, c.server_time, settings).await;
            planned.map(|p| (c, p))
        })
        .buffered(ACCOUNTS_AT_ONCE)
        .try_collect()
        .await?;
    plans.sort_by_key(|(_, p)| {
        let loaded = p.freshness.iter().all(|f| f.as_of.is_some());
        let stalest = p.freshness.iter().filter_map(|f| f.as_of).min();
        (loaded, stalest)
    });
    let mut messages = Vec::new();
    let mut all = Vec::new();
    for (c, planned) in plans {
        all.extend(ages(&planned, c.server_time));
        let id = c.connected.as_deref().unwrap_or_default();
        messages.extend(planned.works.into_iter().map(|w| {
            SliceMessage::connected(&record.name, id, w, tick).of_merchant(&c.merchant_id)
        }));
    }
    Ok((messages, all))
}

/// One tick: seed accounts, plan, and send the slices not yet sent for this tick.
pub async fn tick(svc: &Services, tick: i64) -> Result<TickReport, Error> {
    tick_until(svc, tick, None, None).await
}

/// A tick, or the rest of one from `resume`, that stops starting accounts (and a platform's
/// connected accounts) at `stop` and queues a [`TickMessage`] for a worker to plan the rest: however
/// many accounts there are, a tick ends within the scheduler's timeout and none is left out. (A tick
/// killed by its timeout anyway is run again by Lambda with the same event; the marks keep it from
/// sending anything twice.)
pub async fn tick_until(
    svc: &Services,
    tick: i64,
    resume: Option<&Resume>,
    stop: Option<Instant>,
) -> Result<TickReport, Error> {
    let mut report = TickReport {
        tick,
        ..TickReport::default()
    };
    if resume.is_none() {
        for seed in &svc.settings.seed_accounts {
            if svc.accounts.add_if_missing(seed).await? {
                report.seeded += 1;
            }
        }
    }
    let mut records = Vec::new();
    for record in svc.accounts.all().await? {
        match record {
            Ok(r) if r.enabled && resume.is_none_or(|from| r.name >= from.account) => {
                records.push(r)
            }
            Ok(_) => {}
            Err(e) => report.errors.push(e.to_string()),
        }
    }
    records.sort_by(|a, b| a.name.cmp(&b.name));
    report.accounts = records.len();
    // Accounts are worked on several at once (a plan is a key check and a few state reads, its sends
    // a few conditional writes and an SQS call, all waiting on the network), and each account's slices
    // are sent as soon as its plan is in: a tick cut off by its timeout has sent those of every account
    // it got to. Parts come back in name order, so the first unfinished one is where the rest starts.
    let mut accounts = futures_util::stream::iter(records)
        .map(|record| {
            let after = resume
                .filter(|r| r.account == record.name)
                .and_then(|r| r.after_connected.clone());
            account_tick(svc, record, tick, after, stop)
        })
        .buffered(ACCOUNTS_AT_ONCE);
    let mut rest = None;
    while let Some(part) = accounts.next().await {
        let mut part = part?;
        if rest.is_none() {
            rest = part.continued.take();
        }
        report.merge(part);
    }
    if let Some(resume) = rest {
        continue_later(svc, tick, resume, &mut report).await?;
    }
    if resume.is_none() {
        if let Err(e) = plan_export(svc, tick, &mut report).await {
            report.errors.push(e.to_string());
        }
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
        messages = report.messages,
        already_sent = report.already_sent,
        errors = report.errors.len(),
        continued = ?report.continued,
        "scheduler tick"
    );
    Ok(report)
}

/// Queues the rest of a tick that reached its deadline, for a worker to plan.
async fn continue_later(
    svc: &Services,
    tick: i64,
    resume: Resume,
    report: &mut TickReport,
) -> Result<(), Error> {
    let message = TickMessage::new(tick, resume.clone());
    svc.sqs
        .send_message()
        .queue_url(&svc.settings.queue_url)
        .message_body(serde_json::to_string(&message).unwrap_or_default())
        .send()
        .await
        .map_err(|e| Error::aws("SQS", format!("queueing {}", message.id), e))?;
    tracing::warn!(tick, account = %resume.account, "the tick reached its deadline; a worker plans the rest");
    report.continued = Some(resume);
    Ok(())
}

/// One account's part of a tick: its plan, and its slices not yet sent for this tick, sent; then
/// those of its connected accounts (a Connect platform's), [`CONNECTED_PER_SEND`] at a time, so that
/// a tick cut off part-way has sent those it got to. A failed plan is the account's error (announced
/// as configured); a state store that fails the marks fails the tick.
async fn account_tick(
    svc: &Services,
    record: AccountRecord,
    tick: i64,
    after_connected: Option<String>,
    stop: Option<Instant>,
) -> Result<TickReport, Error> {
    let mut part = TickReport::default();
    let past = || stop.is_some_and(|s| Instant::now() >= s);
    let resume = |after_connected| Resume {
        account: record.name.clone(),
        after_connected,
    };
    if past() {
        part.continued = Some(resume(after_connected));
        return Ok(part);
    }
    let (mut messages, ages, mut connected) = match plan_account(svc, &record, tick).await {
        Ok(planned) => planned,
        Err(e) => return Ok(plan_failed(svc, &record.name, e, part).await),
    };
    if after_connected.is_some() {
        // Its own slices went with the part of the tick that reached the deadline.
        messages.clear();
    } else {
        part.planned(messages.len(), ages);
    }
    send_once(svc, tick, messages, &mut part).await?;
    // In id order, so that the rest of the tick can start after the last one planned.
    connected.sort_by(|a, b| a.connected.cmp(&b.connected));
    connected.retain(|c| after_connected.is_none() || c.connected > after_connected);
    for (i, chunk) in connected.chunks(CONNECTED_PER_SEND).enumerate() {
        if past() {
            // After the last one planned: the end of the chunk before, or where this part began.
            let after = match i {
                0 => after_connected,
                _ => connected[i * CONNECTED_PER_SEND - 1].connected.clone(),
            };
            part.continued = Some(resume(after));
            return Ok(part);
        }
        let (messages, ages) = match plan_connected(svc, &record, chunk, tick).await {
            Ok(planned) => planned,
            Err(e) => return Ok(plan_failed(svc, &record.name, e, part).await),
        };
        part.planned(messages.len(), ages);
        send_once(svc, tick, messages, &mut part).await?;
    }
    svc.alerts
        .succeeded(&account_scope(&record.name), &record.name, "account")
        .await;
    Ok(part)
}

/// An account whose plan failed: announced as configured, and in the tick's errors.
async fn plan_failed(svc: &Services, name: &str, e: Error, mut part: TickReport) -> TickReport {
    account_failed(svc, name, &e).await;
    part.errors.push(e.to_string());
    part
}

/// Sends the slices of this tick not sent yet. Each is marked before it is sent: two invocations of
/// the same tick (EventBridge delivers at least once) never both send a slice.
async fn send_once(
    svc: &Services,
    tick: i64,
    planned: Vec<SliceMessage>,
    report: &mut TickReport,
) -> Result<(), Error> {
    // Several marks at once (each is a conditional write waiting on the network), kept in order.
    let mut marks = futures_util::stream::iter(planned)
        .map(|m| async move {
            let key = format!("slice#{}", m.id);
            let fresh = svc.state.mark_once(&key, tick + MARK_TTL_SECS).await;
            fresh.map(|fresh| (m, fresh))
        })
        .buffered(ACCOUNTS_AT_ONCE);
    let mut fresh = Vec::new();
    while let Some(mark) = marks.next().await {
        match mark? {
            (m, true) => fresh.push(m),
            (_, false) => report.already_sent += 1,
        }
    }
    // Connected accounts' slices of one work go in cohorts: one message, one worker, their rows
    // delivered together.
    let messages = SliceMessage::cohorts(fresh, COHORT_SIZE);
    for chunk in messages.chunks(SQS_BATCH) {
        let failed = send_batch(svc, chunk, Duration::ZERO).await;
        report.messages += chunk.len() - failed.len();
        report.sent += chunk.iter().map(SliceMessage::slices).sum::<usize>();
        for (m, error) in failed {
            report.sent -= m.slices();
            // Not sent: forget the marks so a re-run of this tick sends them.
            for id in m.slice_ids() {
                let _ = svc.state.forget(&format!("slice#{id}")).await;
            }
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
