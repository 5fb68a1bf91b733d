//! Planning: how work is cut and what each dataset needs this run. Pure decisions from state and
//! Stripe's clock, no I/O except reading state ([`plan`]).
//!
//! Slices are the units of work of the serverless deployment: a scheduler plans them from the state and
//! a worker runs one at a time, each under its own lease: an account-mode's change feed, or one
//! dataset's list (its backfill, a resume, a snapshot, or its new objects). A list that reaches the
//! worker's deadline commits what it has and reports [`SliceOutcome::Paused`]; running the same slice
//! again continues from the committed page cursors. Local mode runs the same slices, planned the same
//! way, through a queue in its own process ([`super::Engine::sync`]).

use super::error::SyncError;
use super::resolve::Resolved;
use crate::catalog::Dataset;
use crate::changes::Event;
use crate::config::Incremental;
use crate::state::{DatasetState, FeedState, StateStore};
use serde::{Deserialize, Serialize};

/// Marks dataset `d` of `r` for a full list: its next list is a backfill, which loads every object as
/// it is now and marks those that vanished deleted. What the feed does past the 30-day cliff or for a
/// dataset it cannot load, and what `stripe-pipeline resync` asks for. A run that holds the dataset's
/// state meanwhile loses its compare-and-swap and leaves the mark in place.
pub async fn relist(state: &StateStore, r: &Resolved, d: &Dataset) -> Result<(), SyncError> {
    let k = r.key(&d.name);
    let current = state.get::<DatasetState>(&k).await?;
    let mut st = current.value;
    st.backfill = None;
    state.put(&k, current.version, &st).await?;
    Ok(())
}

/// Rows buffered before a batch is delivered (files written, loaded, cursor committed).
pub const FLUSH_ROWS: usize = 20_000;

/// The most events the change feed reads into memory at once: a longer window is read in pieces of
/// at most this many, oldest first, the cursor committed after each (a feed paused for days holds
/// hundreds of thousands).
pub const FEED_PIECE_EVENTS: u64 = 20_000;
/// JSON bytes one segment reads at most before a batch is delivered: bounds each segment's memory
/// whatever the object size.
pub const FLUSH_BYTES: usize = 8 << 20;
/// JSON bytes all segments of an account read at most between deliveries: with many segments in
/// flight each delivers sooner (at least every MiB), so memory stays flat whatever `concurrency` is.
pub const BUFFER_BUDGET: usize = 128 << 20;

/// JSON bytes one segment reads before it delivers, when `concurrency` segments run at once.
pub fn flush_bytes(concurrency: usize) -> usize {
    (BUFFER_BUDGET / concurrency.max(1)).clamp(1 << 20, FLUSH_BYTES)
}
/// Segments per dataset planned at most. Planning costs a request per window it splits (the first
/// page of its older half; the newer half starts with the page already read), and its levels run one
/// after another, so it stops early: segments are split further while the list runs (see the list
/// stage).
pub const MAX_SEGMENTS: usize = 8;
/// Segments per dataset at most, counting those split off while the list runs.
pub const MAX_SEGMENTS_SPLIT: usize = 512;
/// How long an account's lease lasts without renewal.
pub const LEASE_SECS: i64 = 3600;

/// Which list a dataset gets this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ListKind {
    /// The first load (or a re-backfill after the event cursor fell past retention).
    Backfill,
    /// Continue a list an earlier run did not finish (or finish its sweep of vanished objects).
    Resume,
    /// A full re-list of a dataset whose changes have no events; vanished objects are marked deleted.
    Snapshot,
    /// Objects created since the last list, for datasets Stripe sends no events for at all.
    NewObjects,
}

/// Whether Stripe announces updates of this dataset's objects by events. Without an `*.updated` event
/// (balance transactions, payment intents, …) some changes only show in a new list.
pub fn needs_snapshots(d: &Dataset) -> bool {
    !d.event_types.iter().any(|t| t.ends_with(".updated"))
}

/// Decides a dataset's list for this run from its state and Stripe's clock.
pub fn list_work(
    state: &DatasetState,
    d: &Dataset,
    now: i64,
    settings: &Incremental,
) -> Option<ListKind> {
    if state
        .not_enabled
        .as_ref()
        .is_some_and(|n| now - n.checked_at < settings.snapshot_interval_secs)
    {
        return None;
    }
    let b = match &state.backfill {
        None => return Some(ListKind::Backfill),
        Some(b) => b,
    };
    if !b.complete() || (b.started > 0 && state.listed_at != Some(b.started)) {
        return Some(ListKind::Resume);
    }
    let due = |last: Option<i64>, every: i64| last.is_none_or(|t| now - t >= every);
    if relist_every(d, settings).is_some_and(|every| due(state.listed_at, every)) {
        return Some(ListKind::Snapshot);
    }
    // The last list of any kind reached up to `upper`.
    let new_objects_due =
        d.new_objects_every_run || due(Some(b.upper - 1), settings.unannounced_interval_secs);
    (!d.announces_creation && d.created_filter && new_objects_due).then_some(ListKind::NewObjects)
}

/// How often a dataset is listed again in full, if it is: every `snapshot_interval_secs` when some
/// changes have no event, and every `unannounced_interval_secs` when new objects have none and the list
/// cannot ask for new objects only (Terminal locations, webhook endpoints, Checkout sessions).
fn relist_every(d: &Dataset, settings: &Incremental) -> Option<i64> {
    let snapshots = needs_snapshots(d).then_some(settings.snapshot_interval_secs);
    if !d.announces_creation && !d.created_filter {
        let every = settings.unannounced_interval_secs;
        Some(snapshots.map_or(every, |s| s.min(every)))
    } else {
        snapshots
    }
}

/// Whether a dataset's data is as fresh as its last list rather than the change feed: some of its
/// changes, or its new objects, come only with a list.
fn fresh_by_lists(d: &Dataset) -> bool {
    needs_snapshots(d) || !d.announces_creation
}

/// How a dataset's data is kept fresh, naming the settings that time it (`stripe-pipeline tables`).
pub fn freshness_kind(d: &Dataset) -> &'static str {
    let events = !d.event_types.is_empty();
    match (d.announces_creation, needs_snapshots(d), d.created_filter) {
        (false, _, true) if d.new_objects_every_run => {
            "new objects every run, full list every snapshot_interval_secs"
        }
        (true, false, _) => "events",
        (true, true, _) => "events, and a full list every snapshot_interval_secs",
        (false, _, true) if events => {
            "events, new objects every unannounced_interval_secs, full list every snapshot_interval_secs"
        }
        (false, _, true) => {
            "new objects every unannounced_interval_secs, full list every snapshot_interval_secs"
        }
        (false, _, false) if events => "events, and a full list every unannounced_interval_secs",
        (false, _, false) => "full list every unannounced_interval_secs",
    }
}

/// How long a slice's lease outlives the worker's deadline (the time to stop and commit).
pub const SLICE_LEASE_GRACE_SECS: i64 = 120;

/// What a slice does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SliceWork {
    /// Read the account-mode's change feed (start it, detect the 30-day cliff, or apply its window).
    Feed,
    /// List one dataset, if its state says it needs a list.
    List { dataset: String },
    /// Apply events Stripe pushed (a webhook or an EventBridge delivery) as the feed applies the
    /// events it reads; the feed's cursor does not move.
    Push { events: Vec<Event> },
}

impl SliceWork {
    /// `_events`, the dataset's name or `_push`: the last part of the slice's lease key (and of the
    /// state's, for the first two).
    pub fn name(&self) -> &str {
        match self {
            SliceWork::Feed => "_events",
            SliceWork::List { dataset } => dataset,
            SliceWork::Push { .. } => "_push",
        }
    }
}

/// How a slice ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SliceOutcome {
    /// Everything the slice had to do is committed (possibly nothing).
    Done,
    /// The deadline came first; progress is committed and the same slice continues it.
    Paused,
}

/// What an account-mode needs now, and how fresh its tables are.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Its change feed always, and a list of every dataset whose state asks for one.
    pub works: Vec<SliceWork>,
    /// How fresh each dataset's data is.
    pub freshness: Vec<Freshness>,
}

/// How fresh one dataset's data of one account is.
#[derive(Debug, Clone, PartialEq)]
pub struct Freshness {
    /// The dataset's main table.
    pub table: String,
    /// The instant (Stripe's clock) its data is complete up to ([`data_as_of`]; `None`: not loaded
    /// in full yet).
    pub as_of: Option<i64>,
    /// How old its data may be by design: the snapshot interval for a dataset whose updates only a
    /// new list brings, 0 for one the change feed keeps current.
    pub allowed_secs: i64,
}

/// The slices an account-mode needs at Stripe's time `now` ([`Plan`]), from its state.
pub async fn plan(
    state: &StateStore,
    r: &Resolved,
    datasets: &[&'static Dataset],
    now: i64,
    settings: &Incremental,
) -> Result<Plan, SyncError> {
    let feed: FeedState = state.get(&r.key(SliceWork::Feed.name())).await?.value;
    let mut out = Plan {
        works: vec![SliceWork::Feed],
        freshness: Vec::with_capacity(datasets.len()),
    };
    // One read for all of them: a tick plans every dataset of every account.
    let keys: Vec<String> = datasets.iter().map(|d| r.key(&d.name)).collect();
    let states = state.get_many::<DatasetState>(&keys).await?;
    for (d, st) in datasets.iter().zip(states) {
        let st = st.value;
        if list_work(&st, d, now, settings).is_some() {
            out.works.push(SliceWork::List {
                dataset: d.name.clone(),
            });
        }
        if st.not_enabled.is_some() {
            // Nothing to be fresh: the account does not use the product.
            continue;
        }
        out.freshness.push(Freshness {
            table: d.main_table().name.clone(),
            as_of: data_as_of(&feed, &st, d),
            allowed_secs: match relist_every(d, settings) {
                Some(every) => every,
                None if !d.announces_creation => settings.unannounced_interval_secs,
                None => 0,
            },
        });
    }
    Ok(out)
}

/// The instant (Stripe's clock) a dataset's data is complete up to: `None` until its first full list
/// is done; then the change feed's cursor for a dataset whose changes come by events, and the start
/// of its last complete list for one that is listed again instead (snapshots, new objects).
pub fn data_as_of(feed: &FeedState, st: &DatasetState, d: &Dataset) -> Option<i64> {
    if !st.backfill.as_ref().is_some_and(|b| b.complete()) {
        return None;
    }
    if fresh_by_lists(d) {
        st.as_of
    } else {
        feed.cursor.max(st.as_of)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_share_one_buffer_budget() {
        assert_eq!(flush_bytes(8), FLUSH_BYTES);
        assert_eq!(flush_bytes(40), BUFFER_BUDGET / 40);
        assert!(flush_bytes(40) * 40 <= BUFFER_BUDGET);
        assert_eq!(flush_bytes(1000), 1 << 20);
        assert_eq!(flush_bytes(0), FLUSH_BYTES);
    }
}
