//! The engine's entry point for a full sync: check every account's key, then back-fill every dataset of
//! every account in parallel (segments of all datasets share the account's rate budget), delivering
//! batches through the slice protocol in [`Engine::deliver`].

use crate::backfill::{self, PAGE_LIMIT};
use crate::catalog::Dataset;
use crate::config::Account;
use crate::convert::{Converter, RowContext};
use crate::lake::{Lake, LakeFile};
use crate::state::{Backfill, DatasetState, LocalState, Segment, StateError};
use crate::stripe::{Caller, Response, StripeClient, StripeError};
use crate::warehouse::{Load, Warehouse};
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Mutex, Semaphore};

/// Rows buffered before a batch is delivered (files written, loaded, cursor committed).
pub const FLUSH_ROWS: usize = 20_000;
/// JSON bytes read before a batch is delivered: bounds each segment's memory whatever the object size.
pub const FLUSH_BYTES: usize = 8 << 20;
/// Segments per dataset at most.
pub const MAX_SEGMENTS: usize = 32;
/// How long a dataset lease lasts without renewal.
pub const LEASE_SECS: i64 = 3600;

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
}

#[derive(Debug, Clone, Serialize)]
pub struct DatasetReport {
    pub dataset: String,
    pub objects: u64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AccountReport {
    pub name: String,
    pub merchant_id: String,
    pub livemode: bool,
    pub datasets: Vec<DatasetReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    pub run_id: String,
    pub accounts: Vec<AccountReport>,
    pub api_calls: u64,
    pub rate_limited: u64,
    pub retries: u64,
    pub files: Vec<LakeFile>,
    pub elapsed_secs: f64,
}

impl SyncReport {
    pub fn failures(&self) -> Vec<(String, String, String)> {
        self.accounts
            .iter()
            .flat_map(|a| {
                a.datasets.iter().filter_map(move |d| {
                    d.error
                        .clone()
                        .map(|e| (a.name.clone(), d.dataset.clone(), e))
                })
            })
            .collect()
    }
}

pub struct Engine {
    pub client: StripeClient,
    pub lake: Lake,
    pub state: LocalState,
    pub warehouse: Arc<std::sync::Mutex<Box<dyn Warehouse>>>,
    pub concurrency: usize,
    pub progress: Arc<dyn Progress>,
    pub run_id: String,
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
}

/// One dataset's in-memory state, shared by its segment tasks (commits are serialized through it).
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
        let acct = client
            .get(&caller, "/v1/account", &[])
            .await
            .map_err(|source| SyncError::Account {
                account: a.name.clone(),
                source,
            })?;
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
        });
    }
    Ok(out)
}

impl Engine {
    /// Back-fills `datasets` for every resolved account; failures of single datasets are reported, not fatal.
    pub async fn sync(
        self: &Arc<Self>,
        resolved: &[Resolved],
        datasets: &[&'static Dataset],
    ) -> Result<SyncReport, SyncError> {
        let started = Instant::now();
        let files = Arc::new(Mutex::new(Vec::new()));
        let mut reports = Vec::new();
        let mut tasks = tokio::task::JoinSet::new();
        for r in resolved {
            // One budget of segments in flight per account, shared by its datasets: bounds memory
            // (each segment buffers up to FLUSH_ROWS rows) and spreads the rate budget across resources.
            let permits = Arc::new(Semaphore::new(self.concurrency.max(1)));
            // Lists without a `created` filter can only be paged one page after another: start them
            // first, so they run alongside the segmented ones instead of after them.
            let mut ordered: Vec<&'static Dataset> = datasets.to_vec();
            ordered.sort_by_key(|d| d.created_filter);
            for d in ordered {
                let engine = self.clone();
                let r = r.clone();
                let files = files.clone();
                let permits = permits.clone();
                tasks.spawn(async move {
                    let result = engine.backfill(&r, d, &files, &permits).await;
                    let error = result.as_ref().err().map(|e| e.to_string());
                    engine
                        .progress
                        .dataset_done(&r.account.name, &d.name, error.as_deref());
                    (
                        r.account.name.clone(),
                        DatasetReport {
                            dataset: d.name.clone(),
                            objects: result.unwrap_or(0),
                            error,
                        },
                    )
                });
            }
        }
        let mut by_account: Vec<(String, DatasetReport)> = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            if let Ok(pair) = joined {
                by_account.push(pair);
            }
        }
        for r in resolved {
            let mut datasets: Vec<DatasetReport> = by_account
                .iter()
                .filter(|(a, _)| *a == r.account.name)
                .map(|(_, d)| d.clone())
                .collect();
            datasets.sort_by(|a, b| a.dataset.cmp(&b.dataset));
            reports.push(AccountReport {
                name: r.account.name.clone(),
                merchant_id: r.merchant_id.clone(),
                livemode: r.account.livemode,
                datasets,
            });
        }
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
            rate_limited: stats.rate_limited.load(Ordering::Relaxed),
            retries: stats.retries.load(Ordering::Relaxed),
            files,
            elapsed_secs: started.elapsed().as_secs_f64(),
        })
    }

    /// Back-fills one dataset of one account: plan (or resume) segments, then page them in parallel.
    async fn backfill(
        self: &Arc<Self>,
        r: &Resolved,
        dataset: &'static Dataset,
        files: &Arc<Mutex<Vec<LakeFile>>>,
        permits: &Arc<Semaphore>,
    ) -> Result<u64, SyncError> {
        let mode = if r.account.livemode { "live" } else { "test" };
        let key = format!("{}/{mode}/{}", r.merchant_id, dataset.name);
        let lease = self.state.acquire(&key, &self.run_id, LEASE_SECS)?;
        let result = self.backfill_leased(r, dataset, files, &key, permits).await;
        if let Err(e) = &result {
            if let Ok(mut current) = self.state.get(&key) {
                current.value.last_error = Some(e.to_string());
                let _ = self.state.put(&key, current.version, &current.value);
            }
        }
        self.state.release(&lease);
        result
    }

    async fn backfill_leased(
        self: &Arc<Self>,
        r: &Resolved,
        dataset: &'static Dataset,
        files: &Arc<Mutex<Vec<LakeFile>>>,
        key: &str,
        permits: &Arc<Semaphore>,
    ) -> Result<u64, SyncError> {
        let account_err = |source| SyncError::Account {
            account: r.account.name.clone(),
            source,
        };
        let stored = self.state.get(key)?;
        let mut state = stored.value;
        let mut version = stored.version;
        if state.backfill.as_ref().is_none_or(|b| b.complete()) {
            // A complete backfill is redone in full (incremental sync is a later stage): MERGE keeps it exact.
            let upper = now_secs() + 1;
            let segments = backfill::plan(&self.client, &r.caller, dataset, upper, MAX_SEGMENTS)
                .await
                .map_err(account_err)?;
            state.backfill = Some(Backfill { upper, segments });
            state.last_error = None;
            version = self.state.put(key, version, &state)?;
        }
        {
            let mut wh = self.warehouse.lock().map_err(|_| StateError::Io {
                path: "warehouse".into(),
                source: std::io::Error::other("warehouse lock poisoned"),
            })?;
            wh.prepare(r.account.livemode, dataset).map_err(|e| {
                account_err(StripeError::Decode {
                    message: e.to_string(),
                    request_id: "-".into(),
                })
            })?;
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
        let mut tasks = tokio::task::JoinSet::new();
        for i in pending {
            let (engine, r, shared, files, permits) = (
                self.clone(),
                r.clone(),
                shared.clone(),
                files.clone(),
                permits.clone(),
            );
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                engine.run_segment(&r, dataset, i, &shared, &files).await
            });
        }
        let mut objects = 0;
        let mut first_error = None;
        while let Some(joined) = tasks.join_next().await {
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
            // Record freshness even when the dataset had nothing to load (an empty table is complete too).
            self.load_warehouse(r, dataset, Vec::new(), b.upper).await?;
            s.state.as_of = Some(b.upper);
            let st = s.state.clone();
            s.version = self.state.put(key, s.version, &st)?;
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
    ) -> Result<u64, SyncError> {
        let account_err = |source| SyncError::Account {
            account: r.account.name.clone(),
            source,
        };
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
                Err(e) => return Err(account_err(e)),
            };
            // Rows carry Stripe's clock (when this version was read), so a later read, or a later
            // event, always wins the merge against an earlier one.
            let batch_timestamp = resp.server_time.unwrap_or_else(now_secs) * 1_000_000;
            let ctx = RowContext {
                merchant_id: &r.merchant_id,
                batch_timestamp,
                deleted: false,
            };
            let summary = converter.push_page(&resp.body, ctx).map_err(|e| {
                account_err(StripeError::Decode {
                    message: format!("{}: unexpected list page ({e})", dataset.list_path),
                    request_id: resp.request_id.clone(),
                })
            })?;
            if !summary.truncated.is_empty() {
                self.complete_truncated(r, dataset, &resp, &summary.truncated, &mut converter, ctx)
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
            if seg.done || converter.buffered() >= FLUSH_ROWS || pending_bytes >= FLUSH_BYTES {
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
        }
    }

    /// Converts the objects of a page whose nested lists were cut off (`has_more`), after paging those
    /// lists to their end.
    async fn complete_truncated(
        &self,
        r: &Resolved,
        dataset: &'static Dataset,
        resp: &Response,
        ids: &[String],
        converter: &mut Converter,
        ctx: RowContext<'_>,
    ) -> Result<(), SyncError> {
        let account_err = |source| SyncError::Account {
            account: r.account.name.clone(),
            source,
        };
        let page: serde_json::Value = serde_json::from_slice(&resp.body).map_err(|e| {
            account_err(StripeError::Decode {
                message: format!("{}: {e}", dataset.list_path),
                request_id: resp.request_id.clone(),
            })
        })?;
        // Page the cut-off lists of all these objects at once: each is a chain of requests, and at
        // Stripe's latency one after another would stall the segment.
        let mut tasks = tokio::task::JoinSet::new();
        let objects = page["data"].as_array().into_iter().flatten();
        for (n, obj) in objects
            .filter(|o| {
                o["id"]
                    .as_str()
                    .is_some_and(|id| ids.iter().any(|t| t == id))
            })
            .enumerate()
        {
            let (client, caller, mut obj) = (self.client.clone(), r.caller.clone(), obj.clone());
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
            completed.push(done.map_err(account_err)?);
        }
        // Keep the page's order, so the batch is the same whatever finished first.
        completed.sort_by_key(|(n, _)| *n);
        for (_, obj) in completed {
            converter.push(&obj, ctx);
        }
        Ok(())
    }

    /// Merges `files` into the warehouse (blocking work, off the async threads) and records freshness.
    async fn load_warehouse(
        &self,
        r: &Resolved,
        dataset: &'static Dataset,
        files: Vec<(String, std::path::PathBuf)>,
        as_of: i64,
    ) -> Result<(), SyncError> {
        let (warehouse, livemode, merchant_id) = (
            self.warehouse.clone(),
            r.account.livemode,
            r.merchant_id.clone(),
        );
        let result = tokio::task::spawn_blocking(move || {
            let mut wh = warehouse
                .lock()
                .map_err(|_| "warehouse lock poisoned".to_string())?;
            wh.load(&Load {
                dataset,
                livemode,
                merchant_id: &merchant_id,
                files,
                as_of,
            })
            .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        result.map(|_| ()).map_err(|message| SyncError::Account {
            account: r.account.name.clone(),
            source: StripeError::Decode {
                message,
                request_id: "-".into(),
            },
        })
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
        let write_err = |message: String| SyncError::Account {
            account: r.account.name.clone(),
            source: StripeError::Decode {
                message,
                request_id: "-".into(),
            },
        };
        // 1. Parquet files.
        let mut written = Vec::new();
        for t in &mut converter.tables {
            let Some(batch) = t.take() else { continue };
            if let Some(f) = self
                .lake
                .write(
                    r.account.livemode,
                    &r.merchant_id,
                    stem,
                    &[batch],
                    &t.table.name,
                )
                .await
                .map_err(|e| write_err(e.to_string()))?
            {
                written.push(f);
            }
        }
        // 2. Warehouse load.
        let as_of = shared
            .lock()
            .await
            .state
            .backfill
            .as_ref()
            .map(|b| b.upper)
            .unwrap_or(0);
        let load_files: Vec<(String, std::path::PathBuf)> = written
            .iter()
            .filter_map(|f| Some((f.table.clone(), self.lake.local_path(&f.path)?)))
            .collect();
        if !load_files.is_empty() {
            self.load_warehouse(r, dataset, load_files, as_of).await?;
        }
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
        s.version = self.state.put(&key, s.version, &st)?;
        files.lock().await.extend(written);
        Ok(())
    }
}
