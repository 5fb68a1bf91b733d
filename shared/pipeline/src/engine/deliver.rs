//! Delivery: the slice protocol, and the only place a cursor moves after data was delivered.
//!
//! Files first, then the warehouse, then the cursor — in that order only. A crash (or error) at each
//! step leads to:
//! 1. while writing Parquet files: some new files exist in the lake that nothing loaded; the rerun
//!    starts from the last committed cursor, reads the same pages again and writes new files.
//! 2. after the files, during the warehouse load: the load is one transaction and rolls back; as 1.
//! 3. after the load, before the cursor commit: the warehouse already has these rows; the rerun loads
//!    them again and the merge on `(merchant_id, id)` keeps one row per object. Nothing is lost,
//!    nothing is duplicated.
//! 4. after the commit: the batch is done; the rerun continues after it.
//!
//! Three cursors move here: a list segment's page cursor ([`segment`]), a finished list's sweep
//! ([`sweep`]: `as_of`, `listed_at`), and the change feed's window ([`feed_window`]).

use super::context::Context;
use super::error::SyncError;
use super::report::AccountReport;
use super::resolve::Resolved;
use crate::catalog::Dataset;
use crate::convert::{Converter, RowContext};
use crate::failpoint;
use crate::lake::LakeFile;
use crate::state::{Backfill, DatasetState, FeedState, Segment};
use crate::warehouse::Load;
use std::sync::Arc;
use tokio::sync::Mutex;

/// The files a run wrote, collected from all its tasks for the run's manifest and report.
pub(crate) type Written = Arc<Mutex<Vec<LakeFile>>>;

/// One dataset's list state in memory, shared by its segment tasks: commits are serialized through it,
/// each naming the version the previous one wrote.
pub(crate) struct ListState {
    pub(crate) key: String,
    pub(crate) version: u64,
    pub(crate) state: DatasetState,
}

/// Tombstones of one delivery: ids of objects known to be gone, and the `batch_timestamp` their rows get
/// (when the deletion was observed).
pub(crate) struct Tombstones {
    pub(crate) ids: Vec<String>,
    pub(crate) timestamp: i64,
}

impl Tombstones {
    pub(crate) fn none() -> Tombstones {
        Tombstones {
            ids: Vec::new(),
            timestamp: 0,
        }
    }
}

fn convert_error(r: &Resolved, dataset: &Dataset, e: arrow::error::ArrowError) -> SyncError {
    SyncError::Convert {
        account: r.account.name.clone(),
        dataset: dataset.name.clone(),
        message: e.to_string(),
    }
}

/// Creates the account-mode's schema and the datasets' tables, adding catalog columns they lack
/// (recorded in the report).
pub(crate) async fn prepare_tables(
    cx: &Context,
    r: &Resolved,
    datasets: &[&'static Dataset],
    report: &mut AccountReport,
) -> Result<(), SyncError> {
    let mut added = Vec::new();
    for d in datasets {
        let columns = cx.warehouse.prepare(r.account.livemode, d).await;
        added.extend(columns.map_err(|e| r.warehouse_error("tables", e))?);
    }
    if !added.is_empty() {
        tracing::info!(account = %r.account.name, columns = %added.join(", "), "added new columns to the warehouse");
    }
    report.columns_added.extend(added);
    Ok(())
}

/// Steps 1 and 2 of the slice protocol: the converter's rows (and the tombstones) go to Parquet files,
/// then into the warehouse in one transaction. Returns the files written.
pub(crate) async fn write_and_load(
    cx: &Context,
    r: &Resolved,
    dataset: &'static Dataset,
    converter: &mut Converter,
    stem: &str,
    as_of: i64,
    tombstones: Tombstones,
) -> Result<Vec<LakeFile>, SyncError> {
    let mut batches = Vec::new();
    for t in &mut converter.tables {
        let batch = t.take().map_err(|e| convert_error(r, dataset, e))?;
        if let Some(batch) = batch {
            batches.push((t.table.name.clone(), batch));
        }
    }
    let mut written = Vec::new();
    for (table, batch) in batches {
        if let Some(f) = cx
            .lake
            .write(r.account.livemode, &r.merchant_id, stem, &[batch], &table)
            .await
            .map_err(|e| r.lake_error(&dataset.name, e))?
        {
            written.push(f);
        }
    }
    let load_files: Vec<(String, String)> = written
        .iter()
        .map(|f| (f.table.clone(), f.path.clone()))
        .collect();
    if !tombstones.ids.is_empty() {
        // In the lake, a deleted object is a row with its id, `deleted` set and nothing else; the
        // warehouse keeps the last version's columns and only sets the flag.
        let mut marks = Converter::new(dataset);
        for id in &tombstones.ids {
            marks.push_deleted(
                id,
                RowContext {
                    merchant_id: &r.merchant_id,
                    account: r.connected.as_deref(),
                    batch_timestamp: tombstones.timestamp,
                    deleted: true,
                },
            );
        }
        let main = dataset.main_table().name.clone();
        let batch = match marks.tables.iter_mut().find(|t| t.table.name == main) {
            Some(t) => t.take().map_err(|e| convert_error(r, dataset, e))?,
            None => None,
        };
        if let Some(batch) = batch {
            if let Some(f) = cx
                .lake
                .write(
                    r.account.livemode,
                    &r.merchant_id,
                    &format!("{stem}-deleted"),
                    &[batch],
                    &main,
                )
                .await
                .map_err(|e| r.lake_error(&dataset.name, e))?
            {
                written.push(f);
            }
        }
    }
    failpoint::point("parquet");
    let load = Load {
        dataset,
        livemode: r.account.livemode,
        merchant_id: &r.merchant_id,
        lake: &cx.lake,
        files: load_files,
        as_of,
        tombstones: tombstones.ids,
        tombstone_timestamp: tombstones.timestamp,
    };
    cx.warehouse
        .load(&load)
        .await
        .map_err(|e| r.warehouse_error(&dataset.name, e))?;
    Ok(written)
}

/// Delivers a list segment's batch: files, warehouse, then the segment's page cursor `seg`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn segment(
    cx: &Context,
    r: &Resolved,
    dataset: &'static Dataset,
    converter: &mut Converter,
    stem: &str,
    index: usize,
    seg: &Segment,
    list: &Mutex<ListState>,
    files: &Written,
) -> Result<(), SyncError> {
    let as_of = list
        .lock()
        .await
        .state
        .backfill
        .as_ref()
        .map(|b| b.upper)
        .unwrap_or(0);
    let written =
        write_and_load(cx, r, dataset, converter, stem, as_of, Tombstones::none()).await?;
    failpoint::point("commit");
    // Cursor commit (conditional on the version this run holds).
    let mut s = list.lock().await;
    if let Some(b) = s.state.backfill.as_mut() {
        b.segments[index] = seg.clone();
    }
    s.state.landed_at = Some(cx.clock.now_secs());
    s.state.rows += written
        .iter()
        .filter(|f| f.table == dataset.main_table().name)
        .map(|f| f.rows as u64)
        .sum::<u64>();
    let st = s.state.clone();
    let key = s.key.clone();
    s.version = cx.state.put(&key, s.version, &st).await?;
    files.lock().await.extend(written);
    Ok(())
}

/// Ends a complete list: objects it did not return are gone from Stripe (rows older than the list's
/// start that no page refreshed, in the warehouse or, without one, in the lake) and are marked
/// deleted; then the dataset is complete up to the
/// list's `upper`. Recorded even when nothing vanished, so freshness shows for an empty table too.
pub(crate) async fn sweep(
    cx: &Context,
    r: &Resolved,
    dataset: &'static Dataset,
    b: &Backfill,
    s: &mut ListState,
    files: &Written,
) -> Result<(), SyncError> {
    let tombstones = if b.started > 0 {
        let before = b.started * 1_000_000;
        if cx.warehouse.keeps_rows() {
            cx.warehouse
                .stale_ids(r.account.livemode, dataset, r.owner(), before)
                .await
                .map_err(|e| r.warehouse_error(&dataset.name, e))?
        } else {
            let table = &dataset.main_table().name;
            cx.lake
                .stale_ids(r.account.livemode, table, r.owner(), before)
                .await
                .map_err(|e| r.lake_error(&dataset.name, e))?
        }
    } else {
        Vec::new()
    };
    let stem = r.file_stem(&cx.run_id, &format!("{}-sweep", dataset.name));
    let marks = Tombstones {
        ids: tombstones,
        timestamp: b.started * 1_000_000,
    };
    let written = write_and_load(
        cx,
        r,
        dataset,
        &mut Converter::new(dataset),
        &stem,
        b.upper,
        marks,
    )
    .await?;
    files.lock().await.extend(written);
    failpoint::point("sweep-commit");
    s.state.as_of = Some(b.upper);
    if b.started > 0 {
        s.state.listed_at = Some(b.started);
    }
    let st = s.state.clone();
    s.version = cx.state.put(&s.key, s.version, &st).await?;
    Ok(())
}

/// Moves the change feed's cursor to the end of a window (or piece of one) whose changes were all
/// delivered, or records why they were not, leaving the cursor where it was. Returns the state's new
/// version, for the next piece's commit.
pub(crate) async fn feed_window(
    cx: &Context,
    key: &str,
    version: u64,
    feed: &mut FeedState,
    outcome: Result<i64, String>,
) -> Result<u64, SyncError> {
    match outcome {
        Ok(to) => {
            failpoint::point("feed-commit");
            feed.cursor = Some(to);
            feed.last_error = None;
        }
        Err(e) => feed.last_error = Some(e),
    }
    Ok(cx.state.put(key, version, feed).await?)
}
