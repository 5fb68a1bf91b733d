//! Pushed events in the worker: the batch's messages from the push queue, which the EventBridge rule
//! (Stripe's event destination of type Amazon EventBridge) and the webhook function fill. Each event
//! is found its account (the webhook function names it; an EventBridge delivery's partner event
//! source is matched to the record whose `event_source` it is), and each account's events are
//! applied together as the engine's push slices ([`Engine::apply_pushed`]): the feed's change logic,
//! Parquet, warehouse, state. The scheduled feed stays the reconciler: a push that never came is read
//! from `/v1/events` on the next tick, and a push applied twice changes nothing.
//!
//! A push batch takes no rate slot: it rarely calls Stripe (the key check, nested lists to complete,
//! events of another API version read again) and must not wait behind the slices' slots; the client's
//! backoff on 429 covers the rare excess.

use crate::accounts::AccountRecord;
use crate::message::PushMessage;
use crate::scheduler::{account_failed, resolve};
use crate::{Error, Services};
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;
use stripe_pipeline::changes::Event;

/// A pushed event of the batch, with the SQS message it came in.
pub struct Pushed {
    pub message_id: String,
    pub push: PushMessage,
}

/// What applying a batch's pushed events did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Events applied, and the accounts they were applied to.
    pub events: usize,
    pub accounts: usize,
    /// Messages that failed, in groups with the error they share.
    pub failed: Vec<(Vec<String>, Error)>,
}

/// Applies the pushed events of a batch, account by account.
pub async fn apply(svc: &Services, pushed: Vec<Pushed>, run_id: &str, stop: Instant) -> Applied {
    let mut applied = Applied::default();
    let sources = match event_sources(svc, &pushed).await {
        Ok(sources) => sources,
        Err(e) => {
            let ids = pushed.into_iter().map(|p| p.message_id).collect();
            applied.failed.push((ids, e));
            return applied;
        }
    };
    let mut by_account: BTreeMap<String, Vec<(String, Event)>> = BTreeMap::new();
    for p in pushed {
        let account = match &p.push {
            PushMessage::Webhook(w) => Some(w.pushed_to.clone()),
            PushMessage::Bus(d) => sources.get(&d.source).map(|r| r.name.clone()),
        };
        match account {
            Some(account) => by_account
                .entry(account)
                .or_default()
                .push((p.message_id, p.push.event().clone())),
            None => {
                let PushMessage::Bus(d) = &p.push else {
                    continue;
                };
                // Retried, and kept by the dead-letter queue after the receive limit: once the
                // record names its source, a retry applies it (and the feed has read it meanwhile).
                let e = Error::Account {
                    account: d.source.clone(),
                    message: "events come from this EventBridge partner event source, and no account in the accounts table has it as its `event_source`: set it on the account whose Stripe event destination it is (README, \"Pushed events\")".into(),
                };
                applied.failed.push((vec![p.message_id], e));
            }
        }
    }
    for (n, (account, events)) in by_account.into_iter().enumerate() {
        let run_id = format!("{run_id}-push{n}");
        let ids: Vec<String> = events.iter().map(|(id, _)| id.clone()).collect();
        let events: Vec<Event> = events.into_iter().map(|(_, e)| e).collect();
        let count = events.len();
        // An EventBridge account's record came with the scan; a webhook's is read.
        let scanned = sources.values().find(|r| r.name == account).cloned();
        match apply_account(svc, &account, scanned, events, &run_id, stop).await {
            Ok(()) => {
                applied.events += count;
                applied.accounts += 1;
            }
            Err(e) => applied.failed.push((ids, e)),
        }
    }
    applied
}

/// Partner event source → account record, read from the accounts table when the batch holds
/// EventBridge deliveries (one scan per batch: the table is small, and a source set a moment ago
/// counts at once).
async fn event_sources(
    svc: &Services,
    pushed: &[Pushed],
) -> Result<HashMap<String, AccountRecord>, Error> {
    if !pushed.iter().any(|p| matches!(p.push, PushMessage::Bus(_))) {
        return Ok(HashMap::new());
    }
    Ok(svc
        .accounts
        .all()
        .await?
        .into_iter()
        .flatten()
        .filter_map(|r| Some((r.event_source.clone()?, r)))
        .collect())
}

/// One account's pushed events: its key checked, then the engine's push slices. Events of an
/// account gone from the table or disabled are dropped, as its slices are. `record`: the account's
/// item when the batch already read it.
async fn apply_account(
    svc: &Services,
    name: &str,
    record: Option<AccountRecord>,
    events: Vec<Event>,
    run_id: &str,
    stop: Instant,
) -> Result<(), Error> {
    let record = match record {
        Some(r) => Some(r),
        None => svc.accounts.get(name).await?,
    };
    let Some(record) = record else {
        tracing::warn!(
            account = name,
            events = events.len(),
            "pushed events for an account not in the accounts table are dropped"
        );
        return Ok(());
    };
    if !record.enabled {
        tracing::info!(
            account = name,
            events = events.len(),
            "pushed events for a disabled account are dropped"
        );
        return Ok(());
    }
    let datasets = record.datasets()?;
    let resolved = match resolve(svc, &record).await {
        Ok(r) => r,
        Err(e) => {
            account_failed(svc, name, &e).await;
            return Err(e);
        }
    };
    let engine = svc.engine(run_id.to_string(), Some(stop)).await?;
    let report = engine.apply_pushed(&[resolved], &datasets, events).await;
    if !report.unrouted.is_empty() {
        // The record's key reads one mode; events of the other mode (or of connected accounts of an
        // account without `connect`) are another record's to read.
        tracing::warn!(account = name, events = ?report.unrouted, "pushed events this account's key does not read are dropped: is the event destination the right account's, in the right mode?");
    }
    let failure = report.runs.into_iter().find_map(|run| match run {
        Ok(run) => run.failure,
        Err(e) => Some(e),
    });
    match failure {
        None => Ok(()),
        Some(source) => Err(Error::Slice {
            what: format!("{name}/_push"),
            source,
        }),
    }
}
