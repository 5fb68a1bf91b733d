//! The orchestrator: [`Engine`] runs a whole sync (every account, in parallel) or one slice, and leaves
//! the work itself to the stages. Per account and mode, under its lease: tables prepared, the change
//! feed ([`super::feed`]), then every dataset whose state asks for a list ([`super::list`]), under one
//! budget of segment slots.

use super::context::{Context, SharedWarehouse};
use super::deliver::{self, Written};
use super::error::SyncError;
use super::feed;
use super::list;
use super::plan::{
    list_work, ListKind, SliceOutcome, SliceWork, LEASE_SECS, SLICE_LEASE_GRACE_SECS,
};
use super::report::{AccountReport, Progress, Quiet, SyncReport};
use super::resolve::Resolved;
use crate::catalog::{Catalog, Dataset};
use crate::clock::{self, Clock};
use crate::config::Incremental;
use crate::lake::{Lake, LakeFile};
use crate::slots::Slots;
use crate::state::{DatasetState, StateStore};
use crate::stripe::StripeClient;
use crate::warehouse::{LakeOnly, Warehouse};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Mutex;

/// The sync engine over its ports. Build it with [`Engine::builder`].
pub struct Engine {
    cx: Arc<Context>,
}

/// Builds an [`Engine`]: the three ports every run needs are arguments, the rest has defaults (no
/// warehouse, the system clock, no progress, 8 segments per account, default incremental settings, no
/// deadline).
pub struct EngineBuilder {
    client: StripeClient,
    lake: Lake,
    state: StateStore,
    warehouse: Option<SharedWarehouse>,
    clock: Arc<dyn Clock>,
    progress: Arc<dyn Progress>,
    concurrency: usize,
    incremental: Incremental,
    run_id: Option<String>,
    deadline: Option<Instant>,
}

impl EngineBuilder {
    /// The warehouse loads go to (default: none, the lake is the output).
    pub fn warehouse(mut self, warehouse: Box<dyn Warehouse>) -> Self {
        self.warehouse = Some(Arc::from(warehouse));
        self
    }

    /// A warehouse already shared with other engines of the process (one connection for all).
    pub fn shared_warehouse(mut self, warehouse: SharedWarehouse) -> Self {
        self.warehouse = Some(warehouse);
        self
    }

    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = progress;
        self
    }

    /// Segments in flight per account (at least 1).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    pub fn incremental(mut self, incremental: Incremental) -> Self {
        self.incremental = incremental;
        self
    }

    /// Names this run's files, manifests and leases (default: `run-<unix seconds>`).
    pub fn run_id(mut self, run_id: impl Into<String>) -> Self {
        self.run_id = Some(run_id.into());
        self
    }

    /// Stop listing at this instant; see [`SyncError::Deadline`].
    pub fn deadline(mut self, deadline: Option<Instant>) -> Self {
        self.deadline = deadline;
        self
    }

    pub fn build(self) -> Engine {
        let run_id = self
            .run_id
            .unwrap_or_else(|| format!("run-{}", self.clock.now_secs()));
        Engine {
            cx: Arc::new(Context {
                client: self.client,
                lake: self.lake,
                state: self.state,
                warehouse: self.warehouse.unwrap_or_else(|| Arc::new(LakeOnly)),
                clock: self.clock,
                progress: self.progress,
                concurrency: self.concurrency,
                incremental: self.incremental,
                run_id,
                deadline: self.deadline,
            }),
        }
    }
}

impl Engine {
    pub fn builder(client: StripeClient, lake: Lake, state: StateStore) -> EngineBuilder {
        EngineBuilder {
            client,
            lake,
            state,
            warehouse: None,
            clock: clock::system(),
            progress: Arc::new(Quiet),
            concurrency: 8,
            incremental: Incremental::default(),
            run_id: None,
            deadline: None,
        }
    }

    pub fn lake(&self) -> &Lake {
        &self.cx.lake
    }

    pub fn state(&self) -> &StateStore {
        &self.cx.state
    }

    /// The Stripe client (its `stats` count this engine's requests).
    pub fn client(&self) -> &StripeClient {
        &self.cx.client
    }

    pub fn run_id(&self) -> &str {
        &self.cx.run_id
    }

    /// Where loads go, for the summary (`DuckDB at …`, `none`).
    pub fn describe_warehouse(&self) -> String {
        self.cx.warehouse.describe()
    }

    /// Syncs `datasets` of every resolved account; failures of single datasets (or of one account's
    /// change feed, or a panicked task) are reported, not fatal.
    pub async fn sync(
        &self,
        resolved: &[Resolved],
        datasets: &[&'static Dataset],
    ) -> Result<SyncReport, SyncError> {
        let started = Instant::now();
        let files: Written = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = tokio::task::JoinSet::new();
        let mut accounts = HashMap::new();
        for (i, r) in resolved.iter().enumerate() {
            let (cx, r, files, datasets) =
                (self.cx.clone(), r.clone(), files.clone(), datasets.to_vec());
            let task = tasks.spawn(async move { sync_account(&cx, &r, &datasets, &files).await });
            accounts.insert(task.id(), i);
        }
        let mut reports: Vec<Option<AccountReport>> = vec![None; resolved.len()];
        while let Some(joined) = tasks.join_next_with_id().await {
            let (i, report) = match joined {
                Ok((id, report)) => (accounts[&id], report),
                Err(e) => {
                    // The account's task panicked: it is a failed account, never a missing one.
                    let i = accounts[&e.id()];
                    let r = &resolved[i];
                    let mut report = AccountReport::empty(r, datasets);
                    report.error = Some(SyncError::joined(&r.account.name, "sync", e).to_string());
                    (i, report)
                }
            };
            reports[i] = Some(report);
        }
        let reports: Vec<AccountReport> = reports.into_iter().flatten().collect();
        let files = files.lock().await.clone();
        self.write_manifests(&files, &reports).await;
        Ok(SyncReport::assemble(
            &self.cx.run_id,
            reports,
            &self.cx.client.stats,
            files,
            started.elapsed(),
        ))
    }

    /// One manifest per mode with files: what the run wrote and what it reported.
    async fn write_manifests(&self, files: &[LakeFile], reports: &[AccountReport]) {
        for livemode in [false, true] {
            let mine: Vec<&LakeFile> = files
                .iter()
                .filter(|f| f.path.starts_with(crate::lake::mode_root(livemode)))
                .collect();
            if mine.is_empty() {
                continue;
            }
            let manifest = serde_json::json!({
                "run_id": self.cx.run_id,
                "finished_at": self.cx.clock.now_secs(),
                "files": mine,
                "accounts": reports.iter().filter(|a| a.livemode == livemode).collect::<Vec<_>>(),
            });
            if let Err(e) = self
                .cx
                .lake
                .write_manifest(livemode, &self.cx.run_id, &manifest)
                .await
            {
                tracing::warn!(error = %e, "could not write the run manifest");
            }
        }
    }

    /// Runs one slice of account-mode `r` under the slice's lease. `datasets` are the account's
    /// selected datasets (the feed routes changes to them). The report says what was listed, what the
    /// feed read, and every error; an `Err` means the slice could not run at all (lease held, state
    /// store failure).
    pub async fn run_slice(
        &self,
        r: &Resolved,
        datasets: &[&'static Dataset],
        work: &SliceWork,
    ) -> Result<(SliceOutcome, AccountReport), SyncError> {
        let cx = &self.cx;
        // A function that is killed at its deadline never releases its lease: let it expire shortly
        // after that deadline, so the next attempt is not held up for long.
        let ttl = cx.deadline.map_or(LEASE_SECS, |d| {
            d.saturating_duration_since(Instant::now()).as_secs() as i64 + SLICE_LEASE_GRACE_SECS
        });
        let lease = cx
            .state
            .acquire(&r.key(work.name()), &cx.run_id, ttl)
            .await?;
        let result = run_slice_leased(cx, r, datasets, work).await;
        cx.state.release(&lease).await;
        result
    }
}

/// One account and mode, under its lease: two runs on the same state never work on it at once.
async fn sync_account(
    cx: &Arc<Context>,
    r: &Resolved,
    datasets: &[&'static Dataset],
    files: &Written,
) -> AccountReport {
    let mut report = AccountReport::empty(r, datasets);
    let key = format!("{}/{}", r.merchant_id, r.mode());
    let lease = match cx.state.acquire(&key, &cx.run_id, LEASE_SECS).await {
        Ok(l) => l,
        Err(e) => {
            report.error = Some(e.to_string());
            return report;
        }
    };
    if let Err(e) = sync_account_leased(cx, r, datasets, files, &mut report).await {
        report.error = Some(e.to_string());
    }
    cx.state.release(&lease).await;
    report
}

async fn sync_account_leased(
    cx: &Arc<Context>,
    r: &Resolved,
    datasets: &[&'static Dataset],
    files: &Written,
    report: &mut AccountReport,
) -> Result<(), SyncError> {
    deliver::prepare_tables(cx, r, datasets, report).await?;
    feed::run(cx, r, datasets, files, report).await?;
    // Lists: every dataset that needs one, in parallel under one budget of segments per account
    // (bounds memory: each segment buffers up to FLUSH_ROWS rows), shared fairly between datasets
    // so the rate budget is spread across endpoints (see `Slots`). Lists without a `created` filter
    // can only be paged one page after another: start them first, so they run alongside the
    // segmented ones instead of after them.
    let slots = Slots::for_account(cx.concurrency, r.account.livemode);
    let mut ordered: Vec<&'static Dataset> = datasets.to_vec();
    ordered.sort_by_key(|d| d.created_filter);
    let mut tasks = tokio::task::JoinSet::new();
    let mut names = HashMap::new();
    for d in ordered {
        let state: DatasetState = cx.state.get(&r.key(&d.name)).await?.value;
        let Some(kind) = list_work(&state, d, r.server_time, &cx.incremental) else {
            cx.progress.dataset_done(&r.account.name, &d.name, None);
            continue;
        };
        let (cx, r, files, slots) = (cx.clone(), r.clone(), files.clone(), slots.clone());
        let task = tasks.spawn(async move {
            let result = list::run(&cx, &r, d, kind, &files, &slots).await;
            let error = result.as_ref().err().map(|e| e.to_string());
            cx.progress
                .dataset_done(&r.account.name, &d.name, error.as_deref());
            (result.unwrap_or(0), error)
        });
        names.insert(task.id(), (d, kind));
    }
    while let Some(joined) = tasks.join_next_with_id().await {
        let (id, (objects, error)) = match joined {
            Ok(done) => done,
            Err(e) => {
                // A panicked list is a failed dataset in the report (and a non-zero exit).
                let id = e.id();
                let d = names[&id].0;
                let error = SyncError::joined(&r.account.name, &d.name, e).to_string();
                cx.progress
                    .dataset_done(&r.account.name, &d.name, Some(&error));
                (id, (0, Some(error)))
            }
        };
        let (d, kind) = names[&id];
        if let Some(entry) = report.datasets.iter_mut().find(|e| e.dataset == d.name) {
            entry.list = Some(kind);
            entry.objects = objects;
            entry.error = error;
        }
    }
    Ok(())
}

async fn run_slice_leased(
    cx: &Arc<Context>,
    r: &Resolved,
    datasets: &[&'static Dataset],
    work: &SliceWork,
) -> Result<(SliceOutcome, AccountReport), SyncError> {
    let files: Written = Arc::new(Mutex::new(Vec::new()));
    match work {
        SliceWork::Feed => {
            let mut report = AccountReport::empty(r, datasets);
            deliver::prepare_tables(cx, r, datasets, &mut report).await?;
            feed::run(cx, r, datasets, &files, &mut report).await?;
            Ok((SliceOutcome::Done, report))
        }
        SliceWork::List { dataset } => {
            let d: &'static Dataset = Catalog::get()
                .dataset(dataset)
                .filter(|d| datasets.iter().any(|s| s.name == d.name))
                .ok_or_else(|| {
                    r.config_error(format!(
                        "a slice names dataset '{dataset}', which this account does not sync; add it to the account's datasets or drop the message"
                    ))
                })?;
            let mut report = AccountReport::empty(r, &[d]);
            feed::start_if_new(cx, r).await?;
            deliver::prepare_tables(cx, r, &[d], &mut report).await?;
            let state: DatasetState = cx.state.get(&r.key(&d.name)).await?.value;
            let Some(kind): Option<ListKind> = list_work(&state, d, r.server_time, &cx.incremental)
            else {
                return Ok((SliceOutcome::Done, report));
            };
            let slots = Slots::for_account(cx.concurrency, r.account.livemode);
            let result = list::run(cx, r, d, kind, &files, &slots).await;
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
