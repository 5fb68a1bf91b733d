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
use super::quarantine;
use super::report::AccountReport;
use super::resolve::Resolved;
use crate::catalog::Dataset;
use crate::convert::{Converter, RowContext};
use crate::failpoint;
use crate::lake::LakeFile;
use crate::state::{Backfill, DatasetState, FeedState, Segment};
use crate::warehouse::Load;
use arrow::record_batch::RecordBatch;
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
    /// Whether a batch of this list went to the warehouse in this run: its load recorded the list's
    /// `data_load_times` already, so a sweep with nothing to mark deleted need not load again.
    pub(crate) loaded: bool,
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

/// One delivery, converted: the rows of each of the dataset's tables and the tombstones, with the
/// instant the data is complete up to. Written and loaded at once ([`store`]), alone or, for a
/// connected account, with the deliveries of other connected accounts ([`super::cohort`]).
pub(crate) struct Delivery {
    pub(crate) dataset: &'static Dataset,
    /// Rows per table (tables without rows are left out).
    pub(crate) batches: Vec<(String, RecordBatch)>,
    /// The tombstones as rows of the main table, for the lake: the row has the id, `deleted` set and
    /// nothing else (the warehouse keeps the last version's columns and only sets the flag).
    pub(crate) deleted: Option<RecordBatch>,
    pub(crate) tombstones: Tombstones,
    pub(crate) as_of: i64,
}

impl Delivery {
    /// Converts the converter's rows (emptying it) and the tombstones of account `r`.
    pub(crate) fn take(
        r: &Resolved,
        dataset: &'static Dataset,
        converter: &mut Converter,
        as_of: i64,
        tombstones: Tombstones,
    ) -> Result<Delivery, SyncError> {
        let mut batches = Vec::new();
        for t in &mut converter.tables {
            if let Some(batch) = t.take().map_err(|e| convert_error(r, dataset, e))? {
                batches.push((t.table.name.clone(), batch));
            }
        }
        let mut deleted = None;
        if !tombstones.ids.is_empty() {
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
            let main = &dataset.main_table().name;
            if let Some(t) = marks.tables.iter_mut().find(|t| t.table.name == *main) {
                deleted = t.take().map_err(|e| convert_error(r, dataset, e))?;
            }
        }
        Ok(Delivery {
            dataset,
            batches,
            deleted,
            tombstones,
            as_of,
        })
    }

    /// Rows of the dataset's main table (its objects) in this delivery.
    pub(crate) fn objects(&self) -> u64 {
        let main = &self.dataset.main_table().name;
        self.batches
            .iter()
            .filter(|(t, _)| t == main)
            .map(|(_, b)| b.num_rows() as u64)
            .sum()
    }
}

/// Steps 1 and 2 of the slice protocol for deliveries of one dataset into one `merchant_id` folder
/// (the first's account `r` names errors): their rows go to Parquet files, one per table whatever
/// the number of deliveries, then into the warehouse in one transaction (one per tombstone instant:
/// rare, a sweep's). Returns the files written.
pub(crate) async fn store(
    cx: &Context,
    r: &Resolved,
    stem: &str,
    deliveries: Vec<Delivery>,
) -> Result<Vec<LakeFile>, SyncError> {
    let Some(dataset) = deliveries.first().map(|d| d.dataset) else {
        return Ok(Vec::new());
    };
    let livemode = r.account.livemode;
    let write = |batches: Vec<RecordBatch>, stem: String, table: String| async move {
        cx.lake
            .write(livemode, &r.merchant_id, &stem, &batches, &table)
            .await
            .map_err(|e| r.lake_error(&dataset.name, e))
    };
    let limit = cx.warehouse.max_text_bytes();
    let (mut written, mut load_files, mut quarantined) = (Vec::new(), Vec::new(), Vec::new());
    for table in &dataset.tables {
        let batches: Vec<RecordBatch> = deliveries
            .iter()
            .flat_map(|d| &d.batches)
            .filter(|(t, _)| *t == table.name)
            .map(|(_, b)| b.clone())
            .collect();
        let parted = match limit {
            Some(limit) => quarantine::part(table, &batches, limit)
                .map_err(|e| convert_error(r, dataset, e))?,
            None => None,
        };
        let Some(file) = write(batches, stem.to_string(), table.name.clone()).await? else {
            continue;
        };
        match parted {
            None => load_files.push((file.table.clone(), file.path.clone())),
            // The lake keeps every row; the warehouse loads a copy without those it cannot hold.
            Some(p) => {
                let aside = format!("_quarantine/{}", table.name);
                write(p.quarantined, stem.to_string(), aside).await?;
                let fitted = format!("_warehouse/{}", table.name);
                if let Some(f) = write(p.fits, stem.to_string(), fitted).await? {
                    load_files.push((table.name.clone(), f.path));
                }
                quarantined.extend(p.why);
            }
        }
        written.push(file);
    }
    let deleted: Vec<RecordBatch> = deliveries
        .iter()
        .filter_map(|d| d.deleted.clone())
        .collect();
    let main = dataset.main_table().name.clone();
    written.extend(write(deleted, format!("{stem}-deleted"), main).await?);
    failpoint::point("parquet");
    // The data of all of them is complete up to the earliest instant any of them is.
    let as_of = deliveries.iter().map(|d| d.as_of).min().unwrap_or(0);
    let mut marks: Vec<Tombstones> = Vec::new();
    for d in deliveries {
        match marks
            .iter_mut()
            .find(|m| m.timestamp == d.tombstones.timestamp)
        {
            Some(m) => m.ids.extend(d.tombstones.ids),
            None if !d.tombstones.ids.is_empty() => marks.push(d.tombstones),
            None => {}
        }
    }
    // The files go with the first transaction; another tombstone instant needs a transaction more.
    let mut marks = marks.into_iter();
    let mut loads = vec![(load_files, marks.next().unwrap_or_else(Tombstones::none))];
    loads.extend(marks.map(|m| (Vec::new(), m)));
    for (files, tombstones) in loads {
        let load = Load {
            dataset,
            livemode,
            merchant_id: &r.merchant_id,
            lake: &cx.lake,
            files,
            as_of,
            tombstones: tombstones.ids,
            tombstone_timestamp: tombstones.timestamp,
        };
        cx.warehouse
            .load(&load)
            .await
            .map_err(|e| r.warehouse_error(&dataset.name, e))?;
    }
    if !quarantined.is_empty() {
        tell_quarantined(cx, r, dataset, &quarantined, limit.unwrap_or_default()).await;
    }
    Ok(written)
}

/// Tells the operators which rows a load kept out of the warehouse ([`quarantine`]).
async fn tell_quarantined(
    cx: &Context,
    r: &Resolved,
    dataset: &Dataset,
    rows: &[quarantine::Quarantined],
    limit: usize,
) {
    let list: Vec<String> = rows.iter().map(ToString::to_string).collect();
    let message = format!(
        "{} row(s) of {} were kept out of {}, whose text columns hold at most {limit} bytes: {}. Each is in the lake as it is, and copied to {}/_quarantine/<table>/; the warehouse keeps the object's previous version until a version that fits comes. The rest of the dataset was loaded.",
        rows.len(),
        dataset.name,
        cx.warehouse.describe(),
        list.join("; "),
        crate::lake::mode_root(r.account.livemode),
    );
    tracing::warn!(account = %r.account.name, dataset = %dataset.name, "{message}");
    if let Some(alerts) = &cx.alerts {
        alerts.quarantined(&r.account.name, &message).await;
    }
}

/// What a delivery came to: the files written (a connected account's delivery written with others
/// lists them with one of those only) and the objects it had.
pub(crate) struct Delivered {
    pub(crate) files: Vec<LakeFile>,
    pub(crate) objects: u64,
}

/// Steps 1 and 2 of the slice protocol: the converter's rows (and the tombstones) go to Parquet files,
/// then into the warehouse in one transaction. A connected account's rows go with those of the other
/// connected accounts delivering at the same time ([`super::cohort`]): few files for many small
/// accounts.
pub(crate) async fn write_and_load(
    cx: &Context,
    r: &Resolved,
    dataset: &'static Dataset,
    converter: &mut Converter,
    stem: &str,
    as_of: i64,
    tombstones: Tombstones,
) -> Result<Delivered, SyncError> {
    let delivery = Delivery::take(r, dataset, converter, as_of, tombstones)?;
    let objects = delivery.objects();
    let files = match r.connected {
        Some(_) => cx.cohort.deliver(cx, r, delivery).await?,
        None => store(cx, r, stem, vec![delivery]).await?,
    };
    Ok(Delivered { files, objects })
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
    // A merchant's empty batch (the last page of a segment that ended on a full one, a parent with no
    // objects) has nothing to write or load: only its cursor moves. A connected account's goes with
    // the others' (`super::cohort`), which count on its delivery.
    let empty = converter.buffered() == 0 && r.connected.is_none();
    let delivered = if empty {
        Delivered {
            files: Vec::new(),
            objects: 0,
        }
    } else {
        write_and_load(cx, r, dataset, converter, stem, as_of, Tombstones::none()).await?
    };
    failpoint::point("commit");
    // Cursor commit (conditional on the version this run holds).
    let mut s = list.lock().await;
    s.loaded |= !empty;
    if let Some(b) = s.state.backfill.as_mut() {
        b.segments[index] = seg.clone();
    }
    s.state.landed_at = Some(cx.clock.now_secs());
    s.state.rows += delivered.objects;
    let st = s.state.clone();
    let key = s.key.clone();
    s.version = cx.state.put(&key, s.version, &st).await?;
    files.lock().await.extend(delivered.files);
    Ok(())
}

/// Ends a complete list: objects it did not return are gone from Stripe (rows older than the list's
/// start that no page refreshed, in the warehouse or, without one, in the lake) and are marked
/// deleted, unless it is the dataset's first; then the dataset is complete up to the
/// list's `upper`. Recorded even when nothing vanished, so freshness shows for an empty table too.
pub(crate) async fn sweep(
    cx: &Context,
    r: &Resolved,
    dataset: &'static Dataset,
    b: &Backfill,
    s: &mut ListState,
    files: &Written,
) -> Result<(), SyncError> {
    // A dataset's first complete list has nothing of its own to compare with: what the change feed
    // loaded meanwhile, its later events mark deleted. Skipping the scan keeps a first load from
    // reading the whole table (in a lake without a warehouse, every file of the platform's table for
    // each of its connected accounts: quadratic in their number).
    let first = s.state.as_of.is_none();
    let tombstones = if b.started > 0 && !first {
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
    // Nothing vanished and a batch of this list was loaded in this run (recording `b.upper` in
    // `data_load_times`): the sweep has nothing to load. Otherwise it loads, if only to record that an
    // empty table is complete. In the demo, this and the empty batches above were a third of the
    // loads, which DuckDB runs one at a time.
    if !(tombstones.is_empty() && s.loaded && r.connected.is_none()) {
        let stem = r.file_stem(&cx.run_id, &format!("{}-sweep", dataset.name));
        let marks = Tombstones {
            ids: tombstones,
            timestamp: b.started * 1_000_000,
        };
        let delivered = write_and_load(
            cx,
            r,
            dataset,
            &mut Converter::new(dataset),
            &stem,
            b.upper,
            marks,
        )
        .await?;
        files.lock().await.extend(delivered.files);
    }
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
