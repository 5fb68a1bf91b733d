//! Slices: the units of work of the serverless deployment. A scheduler plans them from the state and a
//! worker runs one at a time, each under its own lease: an account-mode's change feed, or one dataset's
//! list (its backfill, a resume, a snapshot, or its new objects). A list that reaches the worker's
//! deadline commits what it has and reports [`SliceOutcome::Paused`]; running the same slice again
//! continues from the committed page cursors.
//!
//! The local CLI runs the same steps per account in one process ([`Engine::sync`]); slices only split
//! them so many function invocations can share the work.

use crate::catalog::{Catalog, Dataset};
use crate::slots::Slots;
use crate::state::{DatasetState, FeedState, StateStore};
use crate::sync::{list_work, AccountReport, Engine, Incremental, Resolved, SyncError, LEASE_SECS};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::sync::Mutex;

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
}

impl SliceWork {
    /// `_events` or the dataset's name: the last part of the slice's state and lease keys.
    pub fn name(&self) -> &str {
        match self {
            SliceWork::Feed => "_events",
            SliceWork::List { dataset } => dataset,
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

/// The slices an account-mode needs now: its change feed always, and a list of every dataset whose
/// state asks for one at Stripe's time `now`.
pub async fn plan(
    state: &StateStore,
    r: &Resolved,
    datasets: &[&'static Dataset],
    now: i64,
    settings: &Incremental,
) -> Result<Vec<SliceWork>, SyncError> {
    let mut out = vec![SliceWork::Feed];
    for d in datasets {
        let st: DatasetState = state.get(&r.key(&d.name)).await?.value;
        if list_work(&st, d, now, settings).is_some() {
            out.push(SliceWork::List {
                dataset: d.name.clone(),
            });
        }
    }
    Ok(out)
}

impl Engine {
    /// Runs one slice of account-mode `r` under the slice's lease. `datasets` are the account's
    /// selected datasets (the feed routes changes to them). The report says what was listed, what the
    /// feed read, and every error; an `Err` means the slice could not run at all (lease held, state
    /// store failure).
    pub async fn run_slice(
        self: &Arc<Self>,
        r: &Resolved,
        datasets: &[&'static Dataset],
        work: &SliceWork,
    ) -> Result<(SliceOutcome, AccountReport), SyncError> {
        // A function that is killed at its deadline never releases its lease: let it expire shortly
        // after that deadline, so the next attempt is not held up for long.
        let ttl = self.deadline.map_or(LEASE_SECS, |d| {
            d.saturating_duration_since(std::time::Instant::now())
                .as_secs() as i64
                + SLICE_LEASE_GRACE_SECS
        });
        let lease = self
            .state
            .acquire(&r.key(work.name()), &self.run_id, ttl)
            .await?;
        let result = self.run_slice_leased(r, datasets, work).await;
        self.state.release(&lease).await;
        result
    }

    async fn run_slice_leased(
        self: &Arc<Self>,
        r: &Resolved,
        datasets: &[&'static Dataset],
        work: &SliceWork,
    ) -> Result<(SliceOutcome, AccountReport), SyncError> {
        let files = Arc::new(Mutex::new(Vec::new()));
        match work {
            SliceWork::Feed => {
                let mut report = AccountReport::empty(r, datasets);
                self.prepare_tables(r, datasets, &mut report).await?;
                self.feed_step(r, datasets, &files, &mut report).await?;
                Ok((SliceOutcome::Done, report))
            }
            SliceWork::List { dataset } => {
                let d: &'static Dataset = Catalog::get()
                    .dataset(dataset)
                    .filter(|d| datasets.iter().any(|s| s.name == d.name))
                    .ok_or_else(|| {
                        r.error(crate::stripe::StripeError::Decode {
                            message: format!(
                                "slice names dataset '{dataset}', which this account does not sync"
                            ),
                            request_id: "-".into(),
                        })
                    })?;
                let mut report = AccountReport::empty(r, &[d]);
                self.start_feed(r).await?;
                self.prepare_tables(r, &[d], &mut report).await?;
                let state: DatasetState = self.state.get(&r.key(&d.name)).await?.value;
                let Some(kind) = list_work(&state, d, r.server_time, &self.incremental) else {
                    return Ok((SliceOutcome::Done, report));
                };
                let slots = Slots::for_account(self.concurrency, r.account.livemode);
                let result = self.list(r, d, kind, &files, &slots).await;
                let entry = &mut report.datasets[0];
                entry.list = Some(kind);
                match result {
                    Ok(objects) => {
                        entry.objects = objects;
                        Ok((SliceOutcome::Done, report))
                    }
                    Err(SyncError::Deadline) => Ok((SliceOutcome::Paused, report)),
                    Err(e) => {
                        entry.error = Some(e.to_string());
                        Ok((SliceOutcome::Done, report))
                    }
                }
            }
        }
    }

    /// Starts the account-mode's change feed at Stripe's now if it has not started: a list must never
    /// begin before the feed's cursor, or changes made while it runs would be read by neither.
    async fn start_feed(&self, r: &Resolved) -> Result<(), SyncError> {
        let key = r.key(SliceWork::Feed.name());
        let stored = self.state.get::<FeedState>(&key).await?;
        if stored.value.cursor.is_some() {
            return Ok(());
        }
        let feed = FeedState {
            cursor: Some(r.server_time),
            last_error: None,
        };
        match self.state.put(&key, stored.version, &feed).await {
            // Another slice started it first: its cursor is as early as ours would be.
            Ok(_) | Err(crate::state::StateError::Conflict { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
