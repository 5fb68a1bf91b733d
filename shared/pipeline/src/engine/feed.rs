//! The feed stage: one account-mode's change feed. Starts it, detects the 30-day cliff, or reads its
//! window of `/v1/events`, collapses it to one change per object ([`crate::changes`]), completes or
//! re-reads what needs it, and delivers every dataset's changes; the cursor moves only after all of them
//! were delivered ([`super::deliver::feed_window`]).

use super::context::Context;
use super::deliver::{self, Tombstones, Written};
use super::error::SyncError;
use super::plan::{self, SliceOutcome, SliceWork, FEED_PIECE_EVENTS, FLUSH_ROWS};
use super::report::AccountReport;
use super::resolve::Resolved;
use crate::backfill;
use crate::catalog::Dataset;
use crate::changes::{
    self, Change, Collapser, Event, EventPage, FeedCounts, FeedStart, EVENT_TIE_MICROS,
    PUSH_TIE_MICROS,
};
use crate::convert::{Converter, RowContext};
use crate::failpoint;
use crate::state::{DatasetState, FeedState, StateError};
use crate::stripe::StripeError;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Objects fetched at once when completing or re-reading changes.
const FETCHES_IN_FLIGHT: usize = 16;

/// What a change becomes after any fetches it needed.
enum Outcome {
    Row {
        object: Value,
        batch_timestamp: i64,
        deleted: bool,
    },
    /// Gone from Stripe, with no version to load: keep the row, set `deleted`.
    Tombstone(String),
    /// Deleted while we looked; its delete event comes in a later window.
    Skip,
}

/// The change feed of one account and mode: start it, detect the 30-day cliff, or read and apply
/// its window piece by piece ([`read_window`]), committing the cursor after each. A failed read or
/// load leaves the cursor after the last piece that was delivered; it is in the report and returned
/// as the failure. The outcome is [`SliceOutcome::Paused`] when the deadline came before the window's
/// end. `Err` means the feed could not run at all (its state could not be read or written).
pub(super) async fn run(
    cx: &Arc<Context>,
    r: &Resolved,
    datasets: &[&'static Dataset],
    files: &Written,
    report: &mut AccountReport,
) -> Result<(SliceOutcome, Option<SyncError>), SyncError> {
    let key = r.key(SliceWork::Feed.name());
    let stored = cx.state.get::<FeedState>(&key).await?;
    let mut feed = stored.value;
    let now = r.server_time;
    let inc = &cx.incremental;
    match changes::start(feed.cursor, now, inc.lag_secs, inc.overlap_secs) {
        FeedStart::Begin => {
            // Before any list starts: changes made while the lists run are read next time.
            feed.cursor = Some(now);
            match cx.state.put(&key, stored.version, &feed).await {
                // A list slice of the account started it first (`start_if_new`), as early.
                Ok(_) | Err(StateError::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            report.feed.started = true;
        }
        FeedStart::Cliff { cursor } => {
            let affected: Vec<&Dataset> = datasets
                .iter()
                .copied()
                .filter(|d| !d.event_types.is_empty())
                .collect();
            let names: Vec<&str> = affected.iter().map(|d| d.name.as_str()).collect();
            let message = format!(
                "account '{}' ({}): the change feed was last read up to {} (Stripe time), more than Stripe's 30-day event retention ago, so changes since then cannot be read as events. Listing these datasets again in full and marking objects missing from the new lists as deleted: {}",
                r.account.name,
                r.mode(),
                cursor,
                names.join(", ")
            );
            tracing::warn!("{message}");
            report.feed.warning = Some(message);
            report.feed.started = true;
            // Datasets first, cursor second: a crash in between finds the old cursor and
            // starts over, never a moved cursor without the re-backfill.
            for d in affected {
                plan::relist(&cx.state, r, d).await?;
            }
            feed.cursor = Some(now);
            cx.state.put(&key, stored.version, &feed).await?;
        }
        FeedStart::Wait => {}
        FeedStart::Read { from, to } => {
            let window = Window {
                key: &key,
                version: stored.version,
                from,
                to,
            };
            return read_window(cx, r, datasets, files, report, feed, window).await;
        }
    }
    Ok((SliceOutcome::Done, None))
}

/// The window of events a feed slice reads, and the version of the feed's state it read it from.
struct Window<'a> {
    key: &'a str,
    version: u64,
    from: i64,
    to: i64,
}

/// Reads `[from, to)` in pieces of at most [`FEED_PIECE_EVENTS`] events, oldest first, delivering each
/// and committing the cursor after it: memory stays bounded however long the feed was paused, and at
/// the deadline (a Lambda's) the slice stops between pieces with its progress kept, for a
/// continuation. Stripe lists events newest first and cannot count them, so a piece that turns out
/// to hold too many is given up after [`FEED_PIECE_EVENTS`] and tried shorter: as long as the newest
/// of them spanned, less a fifth. The length that worked is kept in the state, so the next read (a
/// continuation) starts with it; a piece well under the limit doubles it.
async fn read_window(
    cx: &Arc<Context>,
    r: &Resolved,
    datasets: &[&'static Dataset],
    files: &Written,
    report: &mut AccountReport,
    mut feed: FeedState,
    w: Window<'_>,
) -> Result<(SliceOutcome, Option<SyncError>), SyncError> {
    let (key, mut version) = (w.key, w.version);
    let mut failed: Vec<(String, SyncError)> = Vec::new();
    let mut lo = w.from;
    let mut piece = feed.piece_secs.unwrap_or(w.to - w.from).max(1);
    report.feed.window = Some((w.from, w.to));
    while lo < w.to {
        let hi = lo.saturating_add(piece).min(w.to);
        // A dataset that failed for good in an earlier piece is listed again in full: skip it.
        let remaining: Vec<&'static Dataset> = datasets
            .iter()
            .copied()
            .filter(|d| !failed.iter().any(|(n, _)| *n == d.name))
            .collect();
        let read = match read_feed(cx, r, &remaining, lo, hi, files).await {
            Ok(Piece::Crowded { newest_span }) => {
                piece = (newest_span * 4 / 5).clamp(1, hi - lo - 1);
                continue;
            }
            Ok(Piece::Read(read)) => read,
            Err(e) => {
                report.feed.error = Some(e.to_string());
                report.feed.window = Some((w.from, lo));
                deliver::feed_window(cx, key, version, &mut feed, Err(e.to_string())).await?;
                return Ok((SliceOutcome::Done, first(failed).or(Some(e))));
            }
        };
        tally(report, &read);
        failed.extend(read.failed);
        let whole = hi - lo >= w.to - w.from;
        if read.counts.events < FEED_PIECE_EVENTS / 4 {
            piece = piece.saturating_mul(2);
        }
        // A window read in one piece needs no length kept: the next starts with its whole window.
        feed.piece_secs = (!whole).then_some(piece);
        version = deliver::feed_window(cx, key, version, &mut feed, Ok(hi)).await?;
        lo = hi;
        if lo < w.to && cx.past_deadline() {
            report.feed.window = Some((w.from, lo));
            return Ok((SliceOutcome::Paused, first(failed)));
        }
    }
    Ok((SliceOutcome::Done, first(failed)))
}

/// Applies events Stripe pushed for this account-mode (a webhook or an EventBridge delivery) with the
/// feed's change logic: one change per object (the newest event wins; an event delivered twice counts
/// once), deletes as rows, truncated nested lists completed, events rendered in another API version
/// read again by id. The feed's cursor does not move: the scheduled read of `/v1/events` still reads
/// these events and catches any push that was lost, and loading an object's version again changes no
/// table (the warehouse keeps the newest version per object by `batch_timestamp`).
pub(super) async fn push(
    cx: &Arc<Context>,
    r: &Resolved,
    datasets: &[&'static Dataset],
    mut events: Vec<Event>,
    files: &Written,
    report: &mut AccountReport,
) -> Result<Option<SyncError>, SyncError> {
    // The collapser takes events in the feed's order: newest first.
    events.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| b.id.cmp(&a.id)));
    let mut collapser = Collapser::default();
    collapser.add(events, datasets);
    // The tables are as fresh as the feed made them; a push proves nothing about other objects.
    let feed: FeedState = cx.state.get(&r.key(SliceWork::Feed.name())).await?.value;
    let as_of = feed.cursor.unwrap_or(r.server_time);
    let read = apply_collapsed(cx, r, datasets, collapser, Reach::Pushed { as_of }, files).await?;
    tally(report, &read);
    Ok(first(read.failed))
}

/// Adds what a read or a push applied to the slice's report.
fn tally(report: &mut AccountReport, read: &FeedRead) {
    for d in report.datasets.iter_mut() {
        d.changes += read.changes.get(&d.dataset).copied().unwrap_or(0);
        if let Some((_, e)) = read.failed.iter().find(|(n, _)| *n == d.dataset) {
            d.error = Some(e.to_string());
        }
    }
    report.feed.counts.add(&read.counts);
}

/// The first failure of a feed slice: what it reports.
fn first(failed: Vec<(String, SyncError)>) -> Option<SyncError> {
    failed.into_iter().next().map(|(_, e)| e)
}

/// What reading one piece of the window came to.
pub(super) enum Piece {
    Read(FeedRead),
    /// More than [`FEED_PIECE_EVENTS`] events: nothing was applied; the newest of those read spanned
    /// `newest_span` seconds up to the piece's end.
    Crowded {
        newest_span: i64,
    },
}

/// What a window of the change feed did.
pub(super) struct FeedRead {
    /// Changed objects per dataset.
    pub(super) changes: HashMap<String, u64>,
    pub(super) counts: FeedCounts,
    /// Datasets whose changes could not be loaded for a reason a retry cannot fix; each is listed
    /// again in full (see [`read_feed`]).
    pub(super) failed: Vec<(String, SyncError)>,
}

/// Reads the piece `[from, to)` of the account's events and applies it dataset by dataset (Parquet,
/// then the warehouse), unless it holds more than [`FEED_PIECE_EVENTS`] events and can be cut
/// ([`Piece::Crowded`]; a piece of one second is read however many it holds). The caller commits
/// the cursor when this returns `Ok(Piece::Read)`; a failure that a retry may fix (Stripe's 5xx, the
/// network, the warehouse) is an `Err` and the piece is read again next run. A failure of one dataset
/// that no retry fixes (the key may not read that resource; Stripe
/// answers with an object that cannot be used) holds back no other dataset: that dataset is marked
/// for a full list before the cursor moves past its changes, so nothing of it is lost.
pub(super) async fn read_feed(
    cx: &Arc<Context>,
    r: &Resolved,
    datasets: &[&'static Dataset],
    from: i64,
    to: i64,
    files: &Written,
) -> Result<Piece, SyncError> {
    let mut collapser = Collapser::default();
    let mut after: Option<String> = None;
    let may_cut = to - from > 1;
    loop {
        let resp = cx
            .client
            .get_raw(
                &r.caller,
                "/v1/events",
                &changes::page_params(from, to, after.as_deref()),
            )
            .await
            .map_err(|e| r.error(e))?;
        let page: EventPage = serde_json::from_slice(&resp.body).map_err(|e| {
            r.error(StripeError::Decode {
                message: format!("/v1/events: unexpected list page ({e})"),
                request_id: resp.request_id.clone(),
            })
        })?;
        failpoint::point("feed-page");
        let more = page.has_more && !page.data.is_empty();
        after = page.data.last().map(|e| e.id.clone());
        let oldest = page.data.last().map_or(to, |e| e.created);
        collapser.add(page.data, datasets);
        if !more {
            break;
        }
        if may_cut && collapser.counts.events >= FEED_PIECE_EVENTS {
            return Ok(Piece::Crowded {
                newest_span: (to - oldest).max(1),
            });
        }
    }
    apply_collapsed(
        cx,
        r,
        datasets,
        collapser,
        Reach::Window { from, to },
        files,
    )
    .await
    .map(Piece::Read)
}

/// How far the changes of a [`Collapser`] bring the tables.
#[derive(Clone, Copy)]
enum Reach {
    /// The feed's window `[from, to)`: a dataset whose list is complete is now complete up to `to`,
    /// with or without changes in it.
    Window { from: i64, to: i64 },
    /// Events Stripe pushed: they prove nothing about what else happened, so the tables stay as
    /// fresh as the feed's cursor, `as_of`.
    Pushed { as_of: i64 },
}

impl Reach {
    /// Added to an event's `created` for the `batch_timestamp` of its version.
    fn tie_micros(self) -> i64 {
        match self {
            Reach::Window { .. } => EVENT_TIE_MICROS,
            Reach::Pushed { .. } => PUSH_TIE_MICROS,
        }
    }
}

/// Applies collapsed changes dataset by dataset (Parquet, then the warehouse). A failure of one
/// dataset that no retry fixes marks it for a full list and holds back no other ([`read_feed`]).
async fn apply_collapsed(
    cx: &Arc<Context>,
    r: &Resolved,
    datasets: &[&'static Dataset],
    collapser: Collapser,
    reach: Reach,
    files: &Written,
) -> Result<FeedRead, SyncError> {
    let (mut changes, mut counts) = collapser.finish();
    let mut per_dataset = HashMap::new();
    let mut failed = Vec::new();
    let mut unchanged = Vec::new();
    for d in datasets {
        let list = changes.remove(&d.name).unwrap_or_default();
        let complete = cx
            .state
            .get::<DatasetState>(&r.key(&d.name))
            .await?
            .value
            .backfill
            .is_some_and(|b| b.complete());
        if list.is_empty() {
            if complete {
                unchanged.push(*d);
            }
            continue;
        }
        let as_of = match reach {
            // A dataset whose list is complete is now complete up to the window's end.
            Reach::Window { from, to } => {
                if complete {
                    to
                } else {
                    from
                }
            }
            Reach::Pushed { as_of } => as_of,
        };
        counts.refetched += list.iter().filter(|c| !c.trusted).count() as u64;
        let n = list.len() as u64;
        match apply(cx, r, d, list, (as_of, reach.tie_micros()), files).await {
            Ok(()) => {
                cx.progress.rows(&r.account.name, &d.name, n);
                per_dataset.insert(d.name.clone(), n);
            }
            Err(e) if dataset_only(&e) => {
                tracing::warn!(account = %r.account.name, dataset = %d.name, error = %e, "the change feed cannot load this dataset's changes; it is listed again in full");
                plan::relist(&cx.state, r, d).await?;
                failed.push((d.name.clone(), e));
            }
            Err(e) => return Err(e),
        }
    }
    // Datasets without changes are complete up to the window's end too: one transaction for all.
    let to = match reach {
        Reach::Window { to, .. } => to,
        Reach::Pushed { .. } => {
            return Ok(FeedRead {
                changes: per_dataset,
                counts,
                failed,
            })
        }
    };
    match r.connected {
        Some(_) if unchanged.is_empty() => {}
        Some(_) => cx.cohort.fresh(cx, r, &unchanged, to).await?,
        None => cx
            .warehouse
            .record_freshness(r.account.livemode, &unchanged, &r.merchant_id, to)
            .await
            .map_err(|e| r.warehouse_error("freshness", e))?,
    }
    Ok(FeedRead {
        changes: per_dataset,
        counts,
        failed,
    })
}

/// Whether a failure to load one dataset's changes concerns that dataset alone: Stripe refused the
/// key that resource, or answered with an object that cannot be used. A bad key, an outage or a
/// throttle concern every dataset, and fail the window.
fn dataset_only(e: &SyncError) -> bool {
    matches!(
        e,
        SyncError::Stripe { source, .. }
            if matches!(**source, StripeError::PermissionDenied { .. } | StripeError::Decode { .. })
    )
}

/// Turns one dataset's changes into rows and tombstones and loads them, complete up to `as_of`; an
/// event's version is stamped `tie` microseconds into its second ([`Reach::tie_micros`]).
async fn apply(
    cx: &Arc<Context>,
    r: &Resolved,
    dataset: &'static Dataset,
    changes: Vec<Change>,
    (as_of, tie): (i64, i64),
    files: &Written,
) -> Result<(), SyncError> {
    let permits = Arc::new(Semaphore::new(FETCHES_IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    for (n, change) in changes.into_iter().enumerate() {
        let (cx, r, permits) = (cx.clone(), r.clone(), permits.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            outcome(&cx, &r, dataset, change, tie).await.map(|o| (n, o))
        });
    }
    let mut outcomes = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let done = joined.map_err(|e| SyncError::joined(&r.account.name, &dataset.name, e))?;
        outcomes.push(done?);
    }
    // The order of the changes, whatever finished first: the same window gives the same files.
    outcomes.sort_by_key(|(n, _)| *n);
    let mut converter = Converter::new(dataset);
    let mut tombstones = Vec::new();
    let mut part = 0;
    let total = outcomes.len();
    for (i, (_, outcome)) in outcomes.into_iter().enumerate() {
        match outcome {
            Outcome::Row {
                object,
                batch_timestamp,
                deleted,
            } => {
                converter.push(
                    &object,
                    RowContext {
                        merchant_id: &r.merchant_id,
                        account: r.connected.as_deref(),
                        batch_timestamp,
                        deleted,
                    },
                );
            }
            Outcome::Tombstone(id) => tombstones.push(id),
            Outcome::Skip => {}
        }
        if converter.buffered() >= FLUSH_ROWS || i + 1 == total {
            part += 1;
            let stem = r.file_stem(&cx.run_id, &format!("{}-events-{part:03}", dataset.name));
            let marks = Tombstones {
                ids: std::mem::take(&mut tombstones),
                timestamp: r.server_time * 1_000_000,
            };
            let delivered =
                deliver::write_and_load(cx, r, dataset, &mut converter, &stem, as_of, marks)
                    .await?;
            files.lock().await.extend(delivered.files);
        }
    }
    Ok(())
}

/// What to load for one change: its event's payload, or a fresh read when the payload is in
/// another API version; truncated nested lists paged to their end.
async fn outcome(
    cx: &Context,
    r: &Resolved,
    dataset: &'static Dataset,
    change: Change,
    tie: i64,
) -> Result<Outcome, SyncError> {
    let missing = |e: &StripeError| matches!(e, StripeError::ResourceMissing { .. });
    if change.trusted {
        let mut object = change.object;
        if !change.deleted {
            match backfill::complete_nested(&cx.client, &r.caller, dataset, &mut object).await {
                Ok(()) => {}
                Err(e) if missing(&e) => return Ok(Outcome::Skip),
                Err(e) => return Err(r.error(e)),
            }
        }
        return Ok(Outcome::Row {
            object,
            batch_timestamp: change.created * 1_000_000 + tie,
            deleted: change.deleted,
        });
    }
    let path = format!("{}/{}", dataset.list_path, change.id);
    let resp = match cx.client.get_raw(&r.caller, &path, &[]).await {
        Ok(resp) => resp,
        Err(e) if missing(&e) => return Ok(Outcome::Tombstone(change.id)),
        Err(e) => return Err(r.error(e)),
    };
    let mut object: Value = serde_json::from_slice(&resp.body).map_err(|e| {
        r.error(StripeError::Decode {
            message: format!("{path}: {e}"),
            request_id: resp.request_id.clone(),
        })
    })?;
    if object["deleted"].as_bool() == Some(true) {
        return Ok(Outcome::Tombstone(change.id));
    }
    match backfill::complete_nested(&cx.client, &r.caller, dataset, &mut object).await {
        Ok(()) => {}
        Err(e) if missing(&e) => return Ok(Outcome::Tombstone(change.id)),
        Err(e) => return Err(r.error(e)),
    }
    Ok(Outcome::Row {
        object,
        batch_timestamp: resp.server_time.unwrap_or(r.server_time) * 1_000_000,
        deleted: false,
    })
}

/// Starts the account-mode's change feed at Stripe's now if it has not started: a list must never
/// begin before the feed's cursor, or changes made while it runs would be read by neither.
pub(super) async fn start_if_new(cx: &Context, r: &Resolved) -> Result<(), SyncError> {
    let key = r.key(SliceWork::Feed.name());
    let stored = cx.state.get::<FeedState>(&key).await?;
    if stored.value.cursor.is_some() {
        return Ok(());
    }
    let feed = FeedState {
        cursor: Some(r.server_time),
        ..FeedState::default()
    };
    match cx.state.put(&key, stored.version, &feed).await {
        // Another slice started it first: its cursor is as early as ours would be.
        Ok(_) | Err(StateError::Conflict { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
