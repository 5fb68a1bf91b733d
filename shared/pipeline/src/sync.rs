//! The engine's entry point for a sync: check every account's key, then per account and mode read the
//! change feed (new objects, updates, deletes since the last run) and list the datasets that need a list
//! this run (first backfill, a due snapshot, a re-backfill after the event cursor fell past Stripe's
//! retention, new objects of datasets without events). Segments of all datasets share the account's
//! rate budget; batches go through the slice protocol in [`Engine::deliver`].

use crate::backfill::{self, HISTORY_START, PAGE_LIMIT};
use crate::catalog::Dataset;
use crate::config::Account;
use crate::convert::{Converter, RowContext};
use crate::failpoint;
use crate::feed::{self, FeedCounts, FeedStart};
use crate::lake::{Lake, LakeFile};
use crate::slots::Slots;
use crate::state::{Backfill, DatasetState, FeedState, Segment, StateError, StateStore};
use crate::stripe::{CallKind, Caller, Response, StripeClient, StripeError};
use crate::warehouse::{Load, Warehouse, WarehouseError};
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;

/// Rows buffered before a batch is delivered (files written, loaded, cursor committed).
pub const FLUSH_ROWS: usize = 20_000;
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
/// Segments per dataset planned at most. Planning costs a request per probe whose page is not kept,
/// so it stops early: segments are split further while the list runs (see `Engine::split_off`).
pub const MAX_SEGMENTS: usize = 8;
/// Segments per dataset at most, counting those split off while the list runs.
pub const MAX_SEGMENTS_SPLIT: usize = 512;
/// How long an account's lease lasts without renewal.
pub const LEASE_SECS: i64 = 3600;

/// Settings of incremental sync (see the configuration's `lag_secs`, `overlap_secs`,
/// `snapshot_interval_secs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incremental {
    pub lag_secs: i64,
    pub overlap_secs: i64,
    pub snapshot_interval_secs: i64,
}

impl Default for Incremental {
    fn default() -> Self {
        Incremental {
            lag_secs: 60,
            overlap_secs: 300,
            snapshot_interval_secs: 86_400,
        }
    }
}

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
    let b = match &state.backfill {
        None => return Some(ListKind::Backfill),
        Some(b) => b,
    };
    if !b.complete() || (b.started > 0 && state.listed_at != Some(b.started)) {
        return Some(ListKind::Resume);
    }
    let due = state
        .listed_at
        .is_none_or(|t| now - t >= settings.snapshot_interval_secs);
    if needs_snapshots(d) && due {
        Some(ListKind::Snapshot)
    } else if d.event_types.is_empty() && d.created_filter {
        Some(ListKind::NewObjects)
    } else {
        None
    }
}

/// What the sync reports while it runs (the CLI draws progress bars from it).
pub trait Progress: Send + Sync {
    fn rows(&self, account: &str, dataset: &str, objects: u64);
    fn dataset_done(&self, account: &str, dataset: &str, error: Option<&str>);
}

/// Reports nothing.
pub struct Quiet;

impl Progress for Quiet {
    fn rows(&self, _: &str, _: &str, _: u64) {}
    fn dataset_done(&self, _: &str, _: &str, _: Option<&str>) {}
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("account '{account}': {source}")]
    Account {
        account: String,
        source: StripeError,
    },
    #[error(transparent)]
    State(#[from] StateError),
    #[error(
        "stopped at the deadline with the list's progress committed; a continuation resumes it"
    )]
    Deadline,
}

#[derive(Debug, Clone, Serialize)]
pub struct DatasetReport {
    pub dataset: String,
    /// Objects listed this run.
    pub objects: u64,
    /// Objects changed according to the change feed.
    pub changes: u64,
    /// The list this dataset got this run, if any.
    pub list: Option<ListKind>,
    pub error: Option<String>,
}

/// What the change feed of one account and mode did.
#[derive(Debug, Clone, Serialize)]
pub struct FeedReport {
    /// The window read, `[from, to)` in Stripe's clock; `None` when nothing was read this run.
    pub window: Option<(i64, i64)>,
    pub counts: FeedCounts,
    pub error: Option<String>,
    /// Set when the cursor was past Stripe's event retention and the datasets are listed again.
    pub warning: Option<String>,
    /// The feed began this run (first sync, or after the cliff): changes are read from the next run on.
    pub started: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct AccountReport {
    pub name: String,
    pub merchant_id: String,
    pub livemode: bool,
    pub datasets: Vec<DatasetReport>,
    pub feed: FeedReport,
    /// Why nothing was done for this account (another run holds it, the state store failed).
    pub error: Option<String>,
    /// Columns this run added to existing warehouse tables (`schema.table.column`): the catalog grew.
    pub columns_added: Vec<String>,
}

impl AccountReport {
    /// A report of an account where nothing happened yet.
    pub fn empty(r: &Resolved, datasets: &[&'static Dataset]) -> AccountReport {
        AccountReport {
            name: r.account.name.clone(),
            merchant_id: r.merchant_id.clone(),
            livemode: r.account.livemode,
            datasets: datasets
                .iter()
                .map(|d| DatasetReport {
                    dataset: d.name.clone(),
                    objects: 0,
                    changes: 0,
                    list: None,
                    error: None,
                })
                .collect(),
            feed: FeedReport {
                window: None,
                counts: FeedCounts::default(),
                error: None,
                warning: None,
                started: false,
            },
            error: None,
            columns_added: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    pub run_id: String,
    pub accounts: Vec<AccountReport>,
    pub api_calls: u64,
    /// API calls by kind.
    pub calls: Vec<(CallKind, u64)>,
    pub rate_limited: u64,
    pub retries: u64,
    pub files: Vec<LakeFile>,
    /// Things the user must know although nothing failed (a re-backfill after the 30-day cliff).
    pub warnings: Vec<String>,
    pub elapsed_secs: f64,
}

impl SyncReport {
    /// `(account, what, error)` for every failed part: `what` is a dataset name, `events` for the
    /// change feed, or `account` when the account was not synced at all.
    pub fn failures(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for a in &self.accounts {
            if let Some(e) = &a.error {
                out.push((a.name.clone(), "account".to_string(), e.clone()));
            }
            if let Some(e) = &a.feed.error {
                out.push((a.name.clone(), "events".to_string(), e.clone()));
            }
            for d in &a.datasets {
                if let Some(e) = &d.error {
                    out.push((a.name.clone(), d.dataset.clone(), e.clone()));
                }
            }
        }
        out
    }
}

pub struct Engine {
    pub client: StripeClient,
    pub lake: Lake,
    pub state: StateStore,
    pub warehouse: Arc<std::sync::Mutex<Box<dyn Warehouse>>>,
    pub concurrency: usize,
    pub incremental: Incremental,
    pub progress: Arc<dyn Progress>,
    pub run_id: String,
    /// Stop listing at this instant (a Lambda function's deadline, less a margin): the batch in hand is
    /// delivered and committed, and the list ends with [`SyncError::Deadline`] for a continuation to
    /// resume. `None` in local mode.
    pub deadline: Option<Instant>,
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A checked account: its key works and its Stripe id is known.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub account: Account,
    pub merchant_id: String,
    pub caller: Caller,
    /// Stripe's clock when the key was checked: the run's "now" for lists, the feed and the cliff.
    pub server_time: i64,
}

impl Resolved {
    pub fn mode(&self) -> &'static str {
        if self.account.livemode {
            "live"
        } else {
            "test"
        }
    }

    /// The state key of one of this account's datasets (or `_events` for its change feed).
    pub fn key(&self, name: &str) -> String {
        format!("{}/{}/{name}", self.merchant_id, self.mode())
    }

    pub fn error(&self, source: StripeError) -> SyncError {
        SyncError::Account {
            account: self.account.name.clone(),
            source,
        }
    }
}

/// An error of the pipeline's own (a write or a load), in the same shape as Stripe's.
fn local_error(r: &Resolved, message: String) -> SyncError {
    r.error(StripeError::Decode {
        message,
        request_id: "-".into(),
    })
}

/// One dataset's in-memory state, shared by its segment tasks (commits are serialized through it).
/// The objects a segment has left, judged by its pace: `objects` read since its `created` was
/// `started_at` (pages go from the newest objects to the oldest). 0 before its first page.
fn objects_left(seg: &Segment, objects: u64, started_at: i64) -> f64 {
    let Some(at) = seg.after_created else {
        return 0.0;
    };
    let read = (started_at - at).max(1);
    objects as f64 * (at - seg.from).max(0) as f64 / read as f64
}

/// How a running segment hands part of its window to a new one (see [`Engine::split_off`]).
struct Split<'a> {
    slots: &'a Arc<Slots>,
    spawn: &'a tokio::sync::mpsc::UnboundedSender<usize>,
}

struct Shared {
    key: String,
    version: u64,
    state: DatasetState,
}

/// Checks every key with one cheap call (`GET /v1/account`), before anything is written anywhere.
pub async fn resolve(
    client: &StripeClient,
    accounts: &[Account],
) -> Result<Vec<Resolved>, SyncError> {
    let mut out = Vec::new();
    for a in accounts {
        let caller = Caller {
            label: a.name.clone(),
            key: a.key.clone(),
            livemode: a.livemode,
            stripe_account: None,
        };
        let resp = client
            .get_raw(&caller, "/v1/account", &[])
            .await
            .map_err(|source| SyncError::Account {
                account: a.name.clone(),
                source,
            })?;
        let acct: serde_json::Value = serde_json::from_slice(&resp.body).unwrap_or_default();
        let merchant_id = acct["id"]
            .as_str()
            .filter(|id| id.starts_with("acct_"))
            .ok_or_else(|| SyncError::Account {
                account: a.name.clone(),
                source: StripeError::Decode {
                    message: "GET /v1/account returned no account id".into(),
                    request_id: "-".into(),
                },
            })?;
        out.push(Resolved {
            account: a.clone(),
            merchant_id: merchant_id.to_string(),
            caller,
            server_time: resp.server_time.unwrap_or_else(now_secs),
        });
    }
    Ok(out)
}

impl Engine {
    /// Syncs `datasets` of every resolved account; failures of single datasets (or of one account's
    /// change feed) are reported, not fatal.
    pub async fn sync(
        self: &Arc<Self>,
        resolved: &[Resolved],
        datasets: &[&'static Dataset],
    ) -> Result<SyncReport, SyncError> {
        let started = Instant::now();
        let files = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = tokio::task::JoinSet::new();
        for (i, r) in resolved.iter().enumerate() {
            let (engine, r, files, datasets) =
                (self.clone(), r.clone(), files.clone(), datasets.to_vec());
            tasks.spawn(async move { (i, engine.sync_account(&r, &datasets, &files).await) });
        }
        let mut results = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            if let Ok(done) = joined {
                results.push(done);
            }
        }
        results.sort_by_key(|(i, _)| *i);
        let reports: Vec<AccountReport> = results.into_iter().map(|(_, r)| r).collect();
        let warnings = reports
            .iter()
            .filter_map(|a| a.feed.warning.clone())
            .chain(
                reports
                    .iter()
                    .filter(|a| !a.columns_added.is_empty())
                    .map(|a| {
                        format!(
                            "{}: new columns added to the warehouse: {}",
                            a.name,
                            a.columns_added.join(", ")
                        )
                    }),
            )
            .collect();
        let files = files.lock().await.clone();
        for livemode in [false, true] {
            let mine: Vec<&LakeFile> = files
                .iter()
                .filter(|f| f.path.starts_with(crate::lake::mode_root(livemode)))
                .collect();
            if mine.is_empty() {
                continue;
            }
            let manifest = serde_json::json!({
                "run_id": self.run_id,
                "finished_at": now_secs(),
                "files": mine,
                "accounts": reports.iter().filter(|a| a.livemode == livemode).collect::<Vec<_>>(),
            });
            if let Err(e) = self
                .lake
                .write_manifest(livemode, &self.run_id, &manifest)
                .await
            {
                tracing::warn!(error = %e, "could not write the run manifest");
            }
        }
        let stats = &self.client.stats;
        Ok(SyncReport {
            run_id: self.run_id.clone(),
            accounts: reports,
            api_calls: stats.requests.load(Ordering::Relaxed),
            calls: CallKind::ALL
                .iter()
                .map(|k| (*k, stats.calls(*k)))
                .collect(),
            rate_limited: stats.rate_limited.load(Ordering::Relaxed),
            retries: stats.retries.load(Ordering::Relaxed),
            files,
            warnings,
            elapsed_secs: started.elapsed().as_secs_f64(),
        })
    }

    /// One account and mode, under its lease: two runs on the same state never work on it at once.
    async fn sync_account(
        self: &Arc<Self>,
        r: &Resolved,
        datasets: &[&'static Dataset],
        files: &Arc<Mutex<Vec<LakeFile>>>,
    ) -> AccountReport {
        let mut report = AccountReport::empty(r, datasets);
        let lease = match self
            .state
            .acquire(
                &format!("{}/{}", r.merchant_id, r.mode()),
                &self.run_id,
                LEASE_SECS,
            )
            .await
        {
            Ok(l) => l,
            Err(e) => {
                report.error = Some(e.to_string());
                return report;
            }
        };
        if let Err(e) = self
            .sync_account_leased(r, datasets, files, &mut report)
            .await
        {
            report.error = Some(e.to_string());
        }
        self.state.release(&lease).await;
        report
    }

    async fn sync_account_leased(
        self: &Arc<Self>,
        r: &Resolved,
        datasets: &[&'static Dataset],
        files: &Arc<Mutex<Vec<LakeFile>>>,
        report: &mut AccountReport,
    ) -> Result<(), SyncError> {
        self.prepare_tables(r, datasets, report).await?;
        self.feed_step(r, datasets, files, report).await?;
        // Lists: every dataset that needs one, in parallel under one budget of segments per account
        // (bounds memory: each segment buffers up to FLUSH_ROWS rows), shared fairly between datasets
        // so the rate budget is spread across endpoints (see `Slots`). Lists without a `created` filter
        // can only be paged one page after another: start them first, so they run alongside the
        // segmented ones instead of after them.
        let slots = Slots::for_account(self.concurrency, r.account.livemode);
        let mut ordered: Vec<&'static Dataset> = datasets.to_vec();
        ordered.sort_by_key(|d| d.created_filter);
        let mut tasks = tokio::task::JoinSet::new();
        for d in ordered {
            let state: DatasetState = self.state.get(&r.key(&d.name)).await?.value;
            let Some(kind) = list_work(&state, d, r.server_time, &self.incremental) else {
                self.progress.dataset_done(&r.account.name, &d.name, None);
                continue;
            };
            let (engine, r, files, slots) = (self.clone(), r.clone(), files.clone(), slots.clone());
            tasks.spawn(async move {
                let result = engine.list(&r, d, kind, &files, &slots).await;
                let error = result.as_ref().err().map(|e| e.to_string());
                engine
                    .progress
                    .dataset_done(&r.account.name, &d.name, error.as_deref());
                (d.name.clone(), kind, result.unwrap_or(0), error)
            });
        }
        while let Some(joined) = tasks.join_next().await {
            let Ok((name, kind, objects, error)) = joined else {
                continue;
            };
            if let Some(d) = report.datasets.iter_mut().find(|d| d.dataset == name) {
                d.list = Some(kind);
                d.objects = objects;
                d.error = error;
            }
        }
        Ok(())
    }

    /// The change feed of one account and mode: start it, detect the 30-day cliff, or read and apply
    /// its window and then commit its cursor. A failed read or load leaves the cursor where it was.
    pub(crate) async fn feed_step(
        self: &Arc<Self>,
        r: &Resolved,
        datasets: &[&'static Dataset],
        files: &Arc<Mutex<Vec<LakeFile>>>,
        report: &mut AccountReport,
    ) -> Result<(), SyncError> {
        let key = r.key("_events");
        let stored = self.state.get::<FeedState>(&key).await?;
        let mut feed = stored.value;
        let now = r.server_time;
        let inc = &self.incremental;
        match feed::start(feed.cursor, now, inc.lag_secs, inc.overlap_secs) {
            FeedStart::Begin => {
                // Before any list starts: changes made while the lists run are read next time.
                feed.cursor = Some(now);
                self.state.put(&key, stored.version, &feed).await?;
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
                    let k = r.key(&d.name);
                    let current = self.state.get::<DatasetState>(&k).await?;
                    let mut st = current.value;
                    st.backfill = None;
                    self.state.put(&k, current.version, &st).await?;
                }
                feed.cursor = Some(now);
                self.state.put(&key, stored.version, &feed).await?;
            }
            FeedStart::Wait => {}
            FeedStart::Read { from, to } => {
                report.feed.window = Some((from, to));
                match self.read_feed(r, datasets, from, to, files).await {
                    Ok((per_dataset, counts)) => {
                        for d in report.datasets.iter_mut() {
                            d.changes = per_dataset.get(&d.dataset).copied().unwrap_or(0);
                        }
                        report.feed.counts = counts;
                        failpoint::point("feed-commit");
                        feed.cursor = Some(to);
                        feed.last_error = None;
                    }
                    Err(e) => {
                        report.feed.error = Some(e.to_string());
                        feed.last_error = Some(e.to_string());
                    }
                }
                self.state.put(&key, stored.version, &feed).await?;
            }
        }
        Ok(())
    }

    /// Lists one dataset of one account: plan (or resume) its segments, page them in parallel, and at
    /// the end of a complete list mark the objects it did not return as deleted.
    pub(crate) async fn list(
        self: &Arc<Self>,
        r: &Resolved,
        dataset: &'static Dataset,
        kind: ListKind,
        files: &Arc<Mutex<Vec<LakeFile>>>,
        slots: &Arc<Slots>,
    ) -> Result<u64, SyncError> {
        let key = r.key(&dataset.name);
        let result = self.list_inner(r, dataset, kind, files, &key, slots).await;
        if let Some(e) = result
            .as_ref()
            .err()
            .filter(|e| !matches!(e, SyncError::Deadline))
        {
            if let Ok(mut current) = self.state.get::<DatasetState>(&key).await {
                current.value.last_error = Some(e.to_string());
                let _ = self.state.put(&key, current.version, &current.value).await;
            }
        }
        result
    }

    async fn list_inner(
        self: &Arc<Self>,
        r: &Resolved,
        dataset: &'static Dataset,
        kind: ListKind,
        files: &Arc<Mutex<Vec<LakeFile>>>,
        key: &str,
        slots: &Arc<Slots>,
    ) -> Result<u64, SyncError> {
        let stored = self.state.get::<DatasetState>(key).await?;
        let mut state = stored.value;
        let mut version = stored.version;
        let now = r.server_time;
        let plan = match kind {
            ListKind::Resume => None,
            ListKind::Backfill | ListKind::Snapshot => {
                let upper = now + 1;
                let segments =
                    backfill::plan(&self.client, &r.caller, dataset, upper, MAX_SEGMENTS)
                        .await
                        .map_err(|e| r.error(e))?;
                Some(Backfill {
                    upper,
                    started: now,
                    segments,
                })
            }
            ListKind::NewObjects => {
                let last = state.backfill.as_ref().map_or(HISTORY_START, |b| b.upper);
                Some(Backfill {
                    upper: now + 1,
                    // No sweep: this list covers only the newest objects.
                    started: 0,
                    segments: vec![Segment {
                        // Never after now: a clock that went back (a restarted simulator) lists nothing new.
                        from: (last - self.incremental.overlap_secs).min(now),
                        to: now + 1,
                        after: None,
                        after_created: None,
                        done: false,
                    }],
                })
            }
        };
        if let Some(plan) = plan {
            state.backfill = Some(plan);
            state.last_error = None;
            version = self.state.put(key, version, &state).await?;
        }
        let shared = Arc::new(Mutex::new(Shared {
            key: key.to_string(),
            version,
            state,
        }));
        let pending: Vec<usize> = {
            let s = shared.lock().await;
            s.state
                .backfill
                .as_ref()
                .map(|b| {
                    b.segments
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| !s.done)
                        .map(|(i, _)| i)
                        .collect()
                })
                .unwrap_or_default()
        };
        // Segments split off while the list runs (see `split_off`) arrive on `split_tx`.
        let (split_tx, mut split_rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
        let mut tasks = tokio::task::JoinSet::new();
        let spawn = |tasks: &mut tokio::task::JoinSet<_>, i: usize| {
            let (engine, r, shared, files, slots, split_tx) = (
                self.clone(),
                r.clone(),
                shared.clone(),
                files.clone(),
                slots.clone(),
                split_tx.clone(),
            );
            tasks.spawn(async move {
                let _slot = slots.acquire(&dataset.name).await;
                let split = Split {
                    slots: &slots,
                    spawn: &split_tx,
                };
                engine
                    .run_segment(&r, dataset, i, &shared, &files, split)
                    .await
            });
        };
        for i in pending {
            spawn(&mut tasks, i);
        }
        let mut objects = 0;
        let mut first_error = None;
        loop {
            let joined = tokio::select! {
                Some(i) = split_rx.recv() => {
                    spawn(&mut tasks, i);
                    continue;
                }
                joined = tasks.join_next() => joined,
            };
            let Some(joined) = joined else {
                // Every task has ended; a split announced just before its task ended is still queued.
                match split_rx.try_recv() {
                    Ok(i) => {
                        spawn(&mut tasks, i);
                        continue;
                    }
                    Err(_) => break,
                }
            };
            match joined {
                Ok(Ok(n)) => objects += n,
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    first_error.get_or_insert(SyncError::State(StateError::Io {
                        path: key.into(),
                        source: std::io::Error::other(e.to_string()),
                    }));
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        let mut s = shared.lock().await;
        if let Some(b) = s.state.backfill.clone().filter(Backfill::complete) {
            // Objects the complete list did not return are gone from Stripe: rows older than the
            // list's start that no page refreshed. Recorded even when there are none, so freshness
            // shows for an empty table too.
            let tombstones = if b.started > 0 {
                let (livemode, merchant_id) = (r.account.livemode, r.merchant_id.clone());
                let before = b.started * 1_000_000;
                self.with_warehouse(r, move |wh| {
                    wh.stale_ids(livemode, dataset, &merchant_id, before)
                })
                .await?
            } else {
                Vec::new()
            };
            let stem = format!("{}-{}-sweep", self.run_id, dataset.name);
            let written = self
                .write_and_load(
                    r,
                    dataset,
                    &mut Converter::new(dataset),
                    &stem,
                    b.upper,
                    (tombstones, b.started * 1_000_000),
                )
                .await?;
            files.lock().await.extend(written);
            failpoint::point("sweep-commit");
            s.state.as_of = Some(b.upper);
            if b.started > 0 {
                s.state.listed_at = Some(b.started);
            }
            let st = s.state.clone();
            s.version = self.state.put(key, s.version, &st).await?;
        }
        Ok(objects)
    }

    /// Pages one segment to its end, delivering a batch every [`FLUSH_ROWS`] rows.
    async fn run_segment(
        &self,
        r: &Resolved,
        dataset: &'static Dataset,
        index: usize,
        shared: &Arc<Mutex<Shared>>,
        files: &Arc<Mutex<Vec<LakeFile>>>,
        split: Split<'_>,
    ) -> Result<u64, SyncError> {
        let mut seg: Segment = {
            let s = shared.lock().await;
            s.state
                .backfill
                .as_ref()
                .map(|b| b.segments[index].clone())
                .ok_or_else(|| StateError::Io {
                    path: s.key.clone().into(),
                    source: std::io::Error::other("no backfill plan"),
                })?
        };
        let mut converter = Converter::new(dataset);
        let mut objects = 0u64;
        // Where this run started in the segment (pages go from the newest objects to the oldest).
        let started_at = seg.after_created.unwrap_or(seg.to);
        let mut backlog = split.slots.backlog(&dataset.name);
        let mut seq = 0u32;
        let mut pending_bytes = 0usize;
        loop {
            let params = backfill::page_params(dataset, &seg, PAGE_LIMIT);
            let resp = match self
                .client
                .get_raw(&r.caller, &dataset.list_path, &params)
                .await
            {
                Ok(p) => p,
                Err(e) if e.is_missing_cursor() && seg.after_created.is_some() => {
                    // The cursor object was deleted: restart the window by time from its second.
                    // Objects of that second are read again; the merge deduplicates them.
                    tracing::info!(dataset = %dataset.name, "cursor object vanished; restarting the segment by time");
                    seg.to = seg.after_created.unwrap_or(seg.to) + 1;
                    seg.after = None;
                    seg.after_created = None;
                    continue;
                }
                Err(e) => return Err(r.error(e)),
            };
            failpoint::point("page");
            // Rows carry Stripe's clock (when this version was read), so a later read, or a later
            // event, always wins the merge against an earlier one.
            let batch_timestamp = resp.server_time.unwrap_or_else(now_secs) * 1_000_000;
            let ctx = RowContext {
                merchant_id: &r.merchant_id,
                batch_timestamp,
                deleted: false,
            };
            let summary = converter.push_page(&resp.body, ctx).map_err(|e| {
                r.error(StripeError::Decode {
                    message: format!("{}: unexpected list page ({e})", dataset.list_path),
                    request_id: resp.request_id.clone(),
                })
            })?;
            if !summary.truncated.is_empty() {
                // The completed objects count towards the buffer too: their lines can be most of it.
                pending_bytes += self
                    .complete_truncated(r, dataset, &resp, &summary.truncated, &mut converter, ctx)
                    .await?;
            }
            pending_bytes += resp.body.len();
            let n = summary.objects as u64;
            if let Some((id, created)) = summary.last {
                seg.after = Some(id);
                seg.after_created = created.or(seg.after_created);
            }
            objects += n;
            self.progress.rows(&r.account.name, &dataset.name, n);
            seg.done = !summary.has_more || n == 0;
            let out_of_time = self.deadline.is_some_and(|d| Instant::now() >= d);
            if seg.done
                || out_of_time
                || converter.buffered() >= FLUSH_ROWS
                || pending_bytes >= flush_bytes(self.concurrency)
            {
                seq += 1;
                pending_bytes = 0;
                let stem = format!("{}-{}-s{index:02}-{seq:05}", self.run_id, dataset.name);
                self.deliver(
                    r,
                    dataset,
                    &mut converter,
                    &stem,
                    index,
                    &seg,
                    shared,
                    files,
                )
                .await?;
            }
            if seg.done {
                return Ok(objects);
            }
            if out_of_time {
                return Err(SyncError::Deadline);
            }
            backlog.set(objects_left(&seg, objects, started_at));
            if split.slots.spare(&dataset.name) {
                let pace = (objects, started_at);
                if let Some(i) = self
                    .split_off(dataset, index, &mut seg, pace, shared)
                    .await?
                {
                    // The receiver lives as long as the list; a closed channel means it has ended.
                    let _ = split.spawn.send(i);
                }
            }
        }
    }

    /// Hands the older half of what is left of segment `index` to a new segment, when the segment
    /// still has at least two pages to go (by [`objects_left`]). A dense window otherwise ends a backfill one page at a time
    /// while every other slot is idle. The split is committed before the new segment runs: a crash
    /// after it resumes both halves, which together cover exactly the window before it.
    async fn split_off(
        &self,
        dataset: &Dataset,
        index: usize,
        seg: &mut Segment,
        (objects, started_at): (u64, i64),
        shared: &Arc<Mutex<Shared>>,
    ) -> Result<Option<usize>, SyncError> {
        let Some(at) = seg.after_created else {
            return Ok(None);
        };
        let expected = objects_left(seg, objects, started_at);
        if !dataset.created_filter
            || at - seg.from < 2
            || objects < PAGE_LIMIT as u64
            || expected < 2.0 * PAGE_LIMIT as f64
        {
            return Ok(None);
        }
        let mid = seg.from + (at - seg.from) / 2;
        let mut s = shared.lock().await;
        let mut state = s.state.clone();
        let Some(b) = state.backfill.as_mut() else {
            return Ok(None);
        };
        if b.segments.len() >= MAX_SEGMENTS_SPLIT {
            return Ok(None);
        }
        b.segments.push(Segment {
            from: seg.from,
            to: mid,
            after: None,
            after_created: None,
            done: false,
        });
        // The committed cursor of this segment stays (it is newer than `mid`); only its window shrinks.
        b.segments[index].from = mid;
        let new = b.segments.len() - 1;
        let key = s.key.clone();
        s.version = self.state.put(&key, s.version, &state).await?;
        s.state = state;
        seg.from = mid;
        Ok(Some(new))
    }

    /// Converts the objects of a page whose nested lists were cut off (`has_more`), after paging those
    /// lists to their end. Returns the JSON bytes of the completed objects.
    async fn complete_truncated(
        &self,
        r: &Resolved,
        dataset: &'static Dataset,
        resp: &Response,
        ids: &[String],
        converter: &mut Converter,
        ctx: RowContext<'_>,
    ) -> Result<usize, SyncError> {
        let mut page: serde_json::Value = serde_json::from_slice(&resp.body).map_err(|e| {
            r.error(StripeError::Decode {
                message: format!("{}: {e}", dataset.list_path),
                request_id: resp.request_id.clone(),
            })
        })?;
        // Only the cut-off objects are kept (moved out, not copied): the parsed page is several times
        // its text, and every segment of a dataset with long nested lists may be here at once.
        let objects = match page.get_mut("data") {
            Some(serde_json::Value::Array(data)) => std::mem::take(data),
            _ => Vec::new(),
        };
        drop(page);
        // Page the cut-off lists of all these objects at once: each is a chain of requests, and at
        // Stripe's latency one after another would stall the segment.
        let mut tasks = tokio::task::JoinSet::new();
        for (n, mut obj) in objects
            .into_iter()
            .filter(|o| {
                o["id"]
                    .as_str()
                    .is_some_and(|id| ids.iter().any(|t| t == id))
            })
            .enumerate()
        {
            let (client, caller) = (self.client.clone(), r.caller.clone());
            tasks.spawn(async move {
                let done = backfill::complete_nested(&client, &caller, dataset, &mut obj).await;
                done.map(|()| (n, obj))
            });
        }
        let mut completed = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let done = joined.map_err(|e| StateError::Io {
                path: dataset.name.clone().into(),
                source: std::io::Error::other(e.to_string()),
            })?;
            completed.push(done.map_err(|e| r.error(e))?);
        }
        // Keep the page's order, so the batch is the same whatever finished first.
        completed.sort_by_key(|(n, _)| *n);
        Ok(completed
            .into_iter()
            .map(|(_, obj)| converter.push(&obj, ctx))
            .sum())
    }

    /// Merges `files` into the warehouse (blocking work, off the async threads) and records freshness.
    async fn load_warehouse(
        &self,
        r: &Resolved,
        dataset: &'static Dataset,
        files: Vec<(String, String)>,
        as_of: i64,
        (tombstones, tombstone_timestamp): (Vec<String>, i64),
    ) -> Result<(), SyncError> {
        let (livemode, merchant_id) = (r.account.livemode, r.merchant_id.clone());
        let lake = self.lake.clone();
        self.with_warehouse(r, move |wh| {
            wh.load(&Load {
                dataset,
                livemode,
                merchant_id: &merchant_id,
                lake: &lake,
                files,
                as_of,
                tombstones,
                tombstone_timestamp,
            })
        })
        .await
        .map(|_| ())
    }

    /// Creates the account-mode's schema and the datasets' tables, adding catalog columns they lack
    /// (recorded in the report).
    pub(crate) async fn prepare_tables(
        &self,
        r: &Resolved,
        datasets: &[&'static Dataset],
        report: &mut AccountReport,
    ) -> Result<(), SyncError> {
        let (livemode, all) = (r.account.livemode, datasets.to_vec());
        let added = self
            .with_warehouse(r, move |wh| {
                let mut added = Vec::new();
                for d in all {
                    added.extend(wh.prepare(livemode, d)?);
                }
                Ok(added)
            })
            .await?;
        if !added.is_empty() {
            tracing::info!(account = %r.account.name, columns = %added.join(", "), "added new columns to the warehouse");
        }
        report.columns_added.extend(added);
        Ok(())
    }

    /// Runs blocking warehouse work off the async threads, one caller at a time.
    pub(crate) async fn with_warehouse<T: Send + 'static>(
        &self,
        r: &Resolved,
        work: impl FnOnce(&mut dyn Warehouse) -> Result<T, WarehouseError> + Send + 'static,
    ) -> Result<T, SyncError> {
        let warehouse = self.warehouse.clone();
        tokio::task::spawn_blocking(move || {
            let mut wh = warehouse
                .lock()
                .map_err(|_| "warehouse lock poisoned".to_string())?;
            work(wh.as_mut()).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|x| x)
        .map_err(|message| local_error(r, message))
    }

    /// Steps 1 and 2 of the slice protocol: the converter's rows (and `tombstones`: ids of objects
    /// known to be gone, with the `batch_timestamp` their rows get) go to Parquet files, then into the
    /// warehouse in one transaction. Returns the files written.
    pub(crate) async fn write_and_load(
        &self,
        r: &Resolved,
        dataset: &'static Dataset,
        converter: &mut Converter,
        stem: &str,
        as_of: i64,
        (tombstones, tombstone_timestamp): (Vec<String>, i64),
    ) -> Result<Vec<LakeFile>, SyncError> {
        let mut batches = Vec::new();
        for t in &mut converter.tables {
            if let Some(batch) = t.take() {
                batches.push((t.table.name.clone(), batch));
            }
        }
        let mut written = Vec::new();
        for (table, batch) in batches {
            if let Some(f) = self
                .lake
                .write(r.account.livemode, &r.merchant_id, stem, &[batch], &table)
                .await
                .map_err(|e| local_error(r, e.to_string()))?
            {
                written.push(f);
            }
        }
        let load_files: Vec<(String, String)> = written
            .iter()
            .map(|f| (f.table.clone(), f.path.clone()))
            .collect();
        if !tombstones.is_empty() {
            // In the lake, a deleted object is a row with its id, `deleted` set and nothing else; the
            // warehouse keeps the last version's columns and only sets the flag.
            let mut marks = Converter::new(dataset);
            for id in &tombstones {
                let stub = serde_json::json!({"id": id, "object": dataset.object});
                marks.push(
                    &stub,
                    RowContext {
                        merchant_id: &r.merchant_id,
                        batch_timestamp: tombstone_timestamp,
                        deleted: true,
                    },
                );
            }
            let main = dataset.main_table().name.clone();
            if let Some(batch) = marks
                .tables
                .iter_mut()
                .find_map(|t| (t.table.name == main).then(|| t.take()).flatten())
            {
                if let Some(f) = self
                    .lake
                    .write(
                        r.account.livemode,
                        &r.merchant_id,
                        &format!("{stem}-deleted"),
                        &[batch],
                        &main,
                    )
                    .await
                    .map_err(|e| local_error(r, e.to_string()))?
                {
                    written.push(f);
                }
            }
        }
        failpoint::point("parquet");
        self.load_warehouse(
            r,
            dataset,
            load_files,
            as_of,
            (tombstones, tombstone_timestamp),
        )
        .await?;
        Ok(written)
    }

    /// The slice protocol: files first, then the warehouse, then the cursor — in that order only.
    ///
    /// A crash (or error) at each step leads to:
    /// 1. while writing Parquet files: some new files exist in the lake that nothing loaded; the rerun
    ///    starts from the last committed cursor, reads the same pages again and writes new files.
    /// 2. after the files, during the warehouse load: the load is one transaction and rolls back; as 1.
    /// 3. after the load, before the cursor commit: the warehouse already has these rows; the rerun loads
    ///    them again and the merge on `(merchant_id, id)` keeps one row per object. Nothing is lost,
    ///    nothing is duplicated.
    /// 4. after the commit: the batch is done; the rerun continues after it.
    #[allow(clippy::too_many_arguments)]
    async fn deliver(
        &self,
        r: &Resolved,
        dataset: &'static Dataset,
        converter: &mut Converter,
        stem: &str,
        index: usize,
        seg: &Segment,
        shared: &Arc<Mutex<Shared>>,
        files: &Arc<Mutex<Vec<LakeFile>>>,
    ) -> Result<(), SyncError> {
        let as_of = shared
            .lock()
            .await
            .state
            .backfill
            .as_ref()
            .map(|b| b.upper)
            .unwrap_or(0);
        // 1 and 2: Parquet files, then the warehouse load.
        let written = self
            .write_and_load(r, dataset, converter, stem, as_of, (Vec::new(), 0))
            .await?;
        failpoint::point("commit");
        // 3. Cursor commit (conditional on the version this run holds).
        let mut s = shared.lock().await;
        if let Some(b) = s.state.backfill.as_mut() {
            b.segments[index] = seg.clone();
        }
        s.state.landed_at = Some(now_secs());
        s.state.rows += written
            .iter()
            .filter(|f| f.table == dataset.main_table().name)
            .map(|f| f.rows as u64)
            .sum::<u64>();
        let st = s.state.clone();
        let key = s.key.clone();
        s.version = self.state.put(&key, s.version, &st).await?;
        files.lock().await.extend(written);
        Ok(())
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
