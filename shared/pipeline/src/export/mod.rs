//! Exports in Stripe's cloud-storage layout: after a run, the latest state of every object, as Parquet,
//! in a folder per run date, the way Stripe's Data Pipeline delivers to S3, Google Cloud Storage and
//! Azure Blob Storage:
//!
//! ```text
//! <export>/livemode/<YYYYMMDDHHMM>/<table>/<merchant_id>-<nnnnn>.parquet
//! <export>/livemode/<YYYYMMDDHHMM>/_export.json      what the export holds, and where the next one resumes
//! <export>/livemode/<YYYYMMDDHHMM>/coreapi_SUCCESS   written last: every table of this run date is complete
//! <export>/testmode/…
//! ```
//!
//! An export is built from the previous complete export and the lake's change files written since
//! (see [`merge`] for the rules and the memory bound). A merchant whose tables did not change has its
//! previous files copied inside the store. A folder without `coreapi_SUCCESS` is an export that did not
//! finish: readers ignore it, and the next export of the same run date removes it first. A table
//! without rows still gets one empty Parquet file, so every table's folder can be read.

mod merge;

use crate::catalog::{Catalog, Dataset};
use crate::convert::table_schema;
use crate::lake::{mode_root, writer_properties, Lake, LakeError};
use crate::state::{StateError, StateStore};
use merge::TableInputs;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// The marker of a complete run date, named as in Stripe's deliveries of its core API tables.
pub const MARKER: &str = "coreapi_SUCCESS";
/// What an export holds and the change-file horizon of the next one.
pub const MANIFEST: &str = "_export.json";
/// Written first into a run date's folder: the folder is this exporter's (it only ever removes its own).
pub const STARTED: &str = "_export_started";

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("cannot read or write the Parquet data of {path}: {message}")]
    Decode { path: String, message: String },
    #[error("{folder} holds files this exporter did not write (no {STARTED}); choose another export_url, or move them away")]
    Foreign { folder: String },
    /// The export lease could not be taken ([`StateError::Leased`]: another export is being built).
    #[error("cannot start the export: {0}")]
    State(#[from] StateError),
}

/// Tuning of an export; the defaults suit any table size.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Changed object ids one merge pass holds in memory (about 100 bytes each); more are merged in
    /// several passes over hash partitions of the ids.
    pub max_keys: usize,
    /// Rows per exported Parquet file.
    pub part_rows: usize,
    /// How far before the newest change file the previous export saw the next one looks again (on the
    /// store's clock), so that a file whose upload was under way during that listing is not missed.
    /// Reading a change file twice changes nothing: the merge keeps one version per object.
    pub overlap_micros: i64,
    /// Complete exports kept per mode; older ones are deleted once a new one is complete. 0 keeps all.
    pub keep: usize,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            max_keys: 1_000_000,
            part_rows: 100_000,
            overlap_micros: 3_600_000_000,
            keep: 7,
        }
    }
}

/// What one export did.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub livemode: bool,
    pub run_date: String,
    /// The run date's folder in the export store.
    pub folder: String,
    /// This run date was already complete: nothing was written.
    pub already_complete: bool,
    /// The run date the export was built on, if any.
    pub previous: Option<String>,
    pub tables: usize,
    pub rows: u64,
    pub files: usize,
    /// Change files merged.
    pub change_files: usize,
    /// Files of the previous export copied unchanged.
    pub copied: usize,
    /// The most hash partitions one merchant's dataset needed (1: all changed ids fit in memory at once).
    pub passes: u32,
    /// Older run dates removed (see [`ExportOptions::keep`]).
    pub removed: Vec<String>,
    pub elapsed_secs: f64,
}

/// The manifest of an export (`_export.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Manifest {
    run_date: String,
    previous: Option<String>,
    /// Change files modified at or after this instant (store clock, µs) are read by the next export.
    horizon_micros: i64,
    tables: BTreeMap<String, TableStats>,
    /// Per table, a fingerprint of its columns: files of a table whose columns changed since are
    /// rewritten, not copied, so a table's folder never mixes schemas.
    #[serde(default)]
    schemas: BTreeMap<String, String>,
}

/// A fingerprint of a table's columns (names and types, in order).
fn fingerprint(table: &crate::catalog::Table) -> String {
    let columns: String = crate::convert::table_columns(table)
        .iter()
        .map(|(name, kind)| format!("{name}:{kind:?},"))
        .collect();
    format!("{:016x}", merge::fnv1a(columns.as_bytes()))
}

/// What a dataset's export is built on.
struct Base<'m> {
    previous: Option<&'m Manifest>,
    /// Change files modified from this instant on are read.
    since: i64,
    /// Unchanged merchants' files may be copied: the dataset's columns are those of the previous export.
    copy: bool,
}

impl<'m> Base<'m> {
    fn of(dataset: &Dataset, previous: Option<&'m Manifest>) -> Base<'m> {
        let Some(p) = previous else {
            return Base {
                previous: None,
                since: i64::MIN,
                copy: false,
            };
        };
        // A table the previous export did not have (new in the catalog) may have change files from
        // before its horizon: read them all.
        let known = dataset
            .tables
            .iter()
            .all(|t| p.schemas.contains_key(&t.name));
        Base {
            previous: Some(p),
            since: if known { p.horizon_micros } else { i64::MIN },
            copy: dataset
                .tables
                .iter()
                .all(|t| p.schemas.get(&t.name) == Some(&fingerprint(t))),
        }
    }
}

/// One table of an export: its files, and its rows per merchant.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct TableStats {
    files: usize,
    rows: BTreeMap<String, u64>,
}

/// The newest complete export of a mode in `out` before `date`, with its manifest. Folders without a
/// readable manifest (another tool's, or damaged) are passed over: an older export and the change files
/// since give the same result.
async fn newest_complete(
    out: &Lake,
    mode: &str,
    date: &str,
) -> Result<Option<Manifest>, ExportError> {
    let mut dates: Vec<String> = out
        .list_dir(mode)
        .await?
        .folders
        .iter()
        .map(|f| last_segment(f).to_string())
        .filter(|d| is_run_date(d) && d.as_str() < date)
        .collect();
    dates.sort();
    for d in dates.iter().rev() {
        let path = format!("{mode}/{d}/{MANIFEST}");
        if !out.exists(&format!("{mode}/{d}/{MARKER}")).await? || !out.exists(&path).await? {
            continue;
        }
        let bytes = out.read(&path).await?;
        match serde_json::from_slice::<Manifest>(&bytes) {
            Ok(m) => return Ok(Some(m)),
            Err(e) => {
                tracing::warn!(path, error = %e, "unreadable export manifest; using an older export")
            }
        }
    }
    Ok(None)
}

/// The newest complete export of one mode, for `status`.
#[derive(Debug, Clone, Serialize)]
pub struct Latest {
    pub livemode: bool,
    pub run_date: String,
    pub tables: usize,
    pub rows: u64,
}

/// The newest complete export of each mode in `out`.
pub async fn latest(out: &Lake) -> Result<Vec<Latest>, ExportError> {
    let mut found = Vec::new();
    for livemode in [true, false] {
        if let Some(m) = newest_complete(out, mode_root(livemode), "999999999999").await? {
            found.push(Latest {
                livemode,
                run_date: m.run_date,
                tables: m.tables.len(),
                rows: m.tables.values().flat_map(|t| t.rows.values()).sum(),
            });
        }
    }
    Ok(found)
}

/// `YYYYMMDDHHMM` (UTC) of a Unix time: the run-date folder's name.
pub fn run_date(unix_secs: i64) -> String {
    let (days, rest) = (unix_secs.div_euclid(86_400), unix_secs.rem_euclid(86_400));
    let (y, m, d) = crate::warehouse::sql::civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}",
        rest / 3600,
        rest % 3600 / 60
    )
}

fn is_run_date(name: &str) -> bool {
    name.len() == 12 && name.bytes().all(|b| b.is_ascii_digit())
}

fn last_segment(path: &str) -> &str {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(path)
}

/// Builds exports from a lake (`lake`, the change files) into an export store (`out`, which may be the
/// same store).
pub struct Exporter<'a> {
    pub lake: &'a Lake,
    pub out: &'a Lake,
    pub options: ExportOptions,
}

/// A table's inputs for every merchant.
type ByMerchant = BTreeMap<String, TableInputs>;

impl Exporter<'_> {
    /// [`Exporter::export_all`] under the `export` lease of `state`, which every process exporting to
    /// the same store shares: two exports at once would remove each other's unfinished folders. The
    /// lease lasts `lease_secs` if its holder dies without releasing it.
    pub async fn export_leased(
        &self,
        state: &StateStore,
        owner: &str,
        lease_secs: i64,
        now_secs: i64,
    ) -> Result<Vec<ExportReport>, ExportError> {
        let lease = state.acquire("export", owner, lease_secs).await?;
        let result = self.export_all(now_secs).await;
        state.release(&lease).await;
        result
    }

    /// Exports each mode that has data in the lake, for the run date of `now_secs`.
    pub async fn export_all(&self, now_secs: i64) -> Result<Vec<ExportReport>, ExportError> {
        let mut out = Vec::new();
        for livemode in [true, false] {
            if self
                .lake
                .list_dir(mode_root(livemode))
                .await?
                .folders
                .is_empty()
            {
                continue;
            }
            out.push(self.export(livemode, now_secs).await?);
        }
        Ok(out)
    }

    /// Builds the export of one mode for the run date of `now_secs`.
    pub async fn export(&self, livemode: bool, now_secs: i64) -> Result<ExportReport, ExportError> {
        let started = Instant::now();
        let mode = mode_root(livemode);
        let date = run_date(now_secs);
        let folder = format!("{mode}/{date}");
        let mut report = ExportReport {
            livemode,
            run_date: date.clone(),
            folder: folder.clone(),
            already_complete: false,
            previous: None,
            tables: 0,
            rows: 0,
            files: 0,
            change_files: 0,
            copied: 0,
            passes: 1,
            removed: Vec::new(),
            elapsed_secs: 0.0,
        };
        if self.out.exists(&format!("{folder}/{MARKER}")).await? {
            if !self.out.exists(&format!("{folder}/{STARTED}")).await? {
                return Err(ExportError::Foreign { folder });
            }
            report.already_complete = true;
            return Ok(report);
        }
        // The lake's clock now: change files up to this instant are read by this export, and the next
        // one reads again from `overlap` before it (files whose upload was under way still show up).
        let cutoff = self
            .lake
            .clock(&format!("{mode}/_manifests/_export_clock"))
            .await?;
        self.remove_folder(&folder).await?;
        self.out
            .put(&format!("{folder}/{STARTED}"), Vec::new())
            .await?;
        let previous = self.previous(mode, &date).await?;
        report.previous = previous.as_ref().map(|p| p.run_date.clone());
        let mut tables = BTreeMap::new();
        let mut schemas = BTreeMap::new();
        for dataset in &Catalog::get().datasets {
            let base = Base::of(dataset, previous.as_ref());
            let inputs = self
                .inputs(
                    mode,
                    dataset,
                    (base.since, cutoff),
                    report.previous.as_deref(),
                )
                .await?;
            let written = self
                .export_dataset(dataset, &folder, &inputs, &base, &mut report)
                .await?;
            tables.extend(written);
            schemas.extend(
                dataset
                    .tables
                    .iter()
                    .map(|t| (t.name.clone(), fingerprint(t))),
            );
        }
        for (table, stats) in tables.iter_mut() {
            if stats.files == 0 {
                self.write_empty(&folder, table).await?;
                stats.files = 1;
            }
            report.rows += stats.rows.values().sum::<u64>();
            report.files += stats.files;
        }
        report.tables = tables.len();
        let manifest = Manifest {
            run_date: date.clone(),
            previous: report.previous.clone(),
            horizon_micros: cutoff.saturating_sub(self.options.overlap_micros),
            tables,
            schemas,
        };
        let body = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
        self.out.put(&format!("{folder}/{MANIFEST}"), body).await?;
        self.out
            .put(&format!("{folder}/{MARKER}"), Vec::new())
            .await?;
        report.removed = self.retire(mode, &date).await?;
        report.elapsed_secs = started.elapsed().as_secs_f64();
        Ok(report)
    }

    /// The newest complete export of this exporter before `date`, with its manifest.
    async fn previous(&self, mode: &str, date: &str) -> Result<Option<Manifest>, ExportError> {
        newest_complete(self.out, mode, date).await
    }

    /// A dataset's inputs per merchant: the change files of every delivery (file stem) with a file
    /// modified in `[since, cutoff]` (all of its files, so a delivery is never split between two
    /// exports), and the previous export's files.
    async fn inputs(
        &self,
        mode: &str,
        dataset: &Dataset,
        (since, cutoff): (i64, i64),
        previous: Option<&str>,
    ) -> Result<Vec<ByMerchant>, ExportError> {
        // Per merchant: (table index, path, modified).
        let mut found: BTreeMap<String, Vec<(usize, String, i64)>> = BTreeMap::new();
        for (t, table) in dataset.tables.iter().enumerate() {
            for folder in self
                .lake
                .list_dir(&format!("{mode}/{}", table.name))
                .await?
                .folders
            {
                let Some(merchant) = last_segment(&folder).strip_prefix("merchant_id=") else {
                    continue;
                };
                let files = found.entry(merchant.to_string()).or_default();
                for o in self.lake.list_dir(&folder).await?.objects {
                    if o.path.ends_with(".parquet") {
                        files.push((t, o.path, o.modified_micros));
                    }
                }
            }
        }
        let mut inputs: Vec<ByMerchant> = vec![ByMerchant::new(); dataset.tables.len()];
        for (merchant, files) in found {
            let fresh: BTreeSet<&str> = files
                .iter()
                .filter(|(_, _, m)| (since..=cutoff).contains(m))
                .map(|(_, path, _)| merge::delivery(path))
                .collect();
            for (t, path, _) in &files {
                if fresh.contains(merge::delivery(path)) {
                    inputs[*t]
                        .entry(merchant.clone())
                        .or_default()
                        .changes
                        .push(path.clone());
                }
            }
        }
        if let Some(prev) = previous {
            for (t, table) in dataset.tables.iter().enumerate() {
                for object in self
                    .out
                    .list_dir(&format!("{mode}/{prev}/{}", table.name))
                    .await?
                    .objects
                {
                    let name = last_segment(&object.path);
                    let Some((merchant, _)) = name.rsplit_once('-') else {
                        continue;
                    };
                    if name.ends_with(".parquet") {
                        inputs[t]
                            .entry(merchant.to_string())
                            .or_default()
                            .previous
                            .push(object.path);
                    }
                }
            }
        }
        for by_merchant in &mut inputs {
            for i in by_merchant.values_mut() {
                i.changes.sort();
                i.previous.sort();
            }
        }
        Ok(inputs)
    }

    /// One dataset for every merchant: merged where anything changed, copied where nothing did.
    /// Returns per table its rows and files.
    async fn export_dataset(
        &self,
        dataset: &Dataset,
        folder: &str,
        inputs: &[ByMerchant],
        base: &Base<'_>,
        report: &mut ExportReport,
    ) -> Result<BTreeMap<String, TableStats>, ExportError> {
        let mut written: BTreeMap<String, TableStats> = dataset
            .tables
            .iter()
            .map(|t| (t.name.clone(), TableStats::default()))
            .collect();
        let merchants: BTreeSet<&String> = inputs.iter().flat_map(|m| m.keys()).collect();
        for merchant in merchants {
            let mine: Vec<TableInputs> = inputs
                .iter()
                .map(|m| m.get(merchant).cloned().unwrap_or_default())
                .collect();
            if base.copy && mine.iter().all(|t| t.changes.is_empty()) {
                for (table, t) in dataset.tables.iter().zip(&mine) {
                    let stats = written.entry(table.name.clone()).or_default();
                    for path in &t.previous {
                        let to = format!("{folder}/{}/{}", table.name, last_segment(path));
                        self.out.copy(path, &to).await?;
                        stats.files += 1;
                        report.copied += 1;
                    }
                    let rows = base
                        .previous
                        .and_then(|p| p.tables.get(&table.name))
                        .and_then(|s| s.rows.get(merchant.as_str()))
                        .copied()
                        .unwrap_or(0);
                    if rows > 0 {
                        stats.rows.insert(merchant.clone(), rows);
                    }
                }
                continue;
            }
            report.change_files += mine.iter().map(|t| t.changes.len()).sum::<usize>();
            let (outputs, passes) = merge::merge(
                self.lake,
                self.out,
                dataset,
                merchant,
                &mine,
                folder,
                &self.options,
            )
            .await?;
            report.passes = report.passes.max(passes);
            for (table, o) in dataset.tables.iter().zip(outputs) {
                let stats = written.entry(table.name.clone()).or_default();
                stats.files += o.files;
                if o.rows > 0 {
                    stats.rows.insert(merchant.clone(), o.rows);
                }
            }
        }
        Ok(written)
    }

    /// One Parquet file without rows (the table's columns only), so the table's folder exists.
    async fn write_empty(&self, folder: &str, table: &str) -> Result<(), ExportError> {
        let Some((_, t)) = Catalog::get().tables().find(|(_, t)| t.name == table) else {
            return Ok(());
        };
        let path = format!("{folder}/{table}/empty.parquet");
        let bad = |e: parquet::errors::ParquetError| ExportError::Decode {
            path: path.clone(),
            message: e.to_string(),
        };
        let writer = parquet::arrow::ArrowWriter::try_new(
            Vec::new(),
            table_schema(t),
            Some(writer_properties()),
        )
        .map_err(bad)?;
        let bytes = writer.into_inner().map_err(bad)?;
        self.out.put(&path, bytes).await?;
        Ok(())
    }

    /// Deletes every object under a run date's folder (a previous attempt that did not finish), if the
    /// folder is this exporter's.
    async fn remove_folder(&self, folder: &str) -> Result<(), ExportError> {
        let top = self.out.list_dir(folder).await?;
        let mut objects = Vec::new();
        for sub in &top.folders {
            objects.extend(self.out.list_dir(sub).await?.objects);
        }
        // The folder's own mark goes last: an interrupted removal is still recognised as ours.
        let (mark, rest): (Vec<_>, Vec<_>) = top
            .objects
            .into_iter()
            .partition(|o| last_segment(&o.path) == STARTED);
        objects.extend(rest);
        if objects.is_empty() && mark.is_empty() {
            return Ok(());
        }
        if mark.is_empty() {
            return Err(ExportError::Foreign {
                folder: folder.to_string(),
            });
        }
        for object in objects.into_iter().chain(mark) {
            self.out.delete(&object.path).await?;
        }
        Ok(())
    }

    /// Removes complete exports beyond the newest [`ExportOptions::keep`], and unfinished ones older
    /// than `date`. Returns the run dates removed.
    async fn retire(&self, mode: &str, date: &str) -> Result<Vec<String>, ExportError> {
        if self.options.keep == 0 {
            return Ok(Vec::new());
        }
        let mut dates: Vec<String> = self
            .out
            .list_dir(mode)
            .await?
            .folders
            .iter()
            .map(|f| last_segment(f).to_string())
            .filter(|d| is_run_date(d) && d.as_str() <= date)
            .collect();
        dates.sort();
        dates.reverse();
        let mut complete = 0;
        let mut removed = Vec::new();
        for d in dates {
            if !self.out.exists(&format!("{mode}/{d}/{STARTED}")).await? {
                continue; // not this exporter's
            }
            let done = self.out.exists(&format!("{mode}/{d}/{MARKER}")).await?;
            if done {
                complete += 1;
            }
            if complete > self.options.keep || (!done && d.as_str() < date) {
                // The marker goes first: a reader never sees a complete export with files missing.
                self.out.delete(&format!("{mode}/{d}/{MARKER}")).await?;
                self.remove_folder(&format!("{mode}/{d}")).await?;
                removed.push(d);
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::{Converter, RowContext};
    use arrow::array::{Array, AsArray, RecordBatch};
    use arrow::datatypes::TimestampMicrosecondType;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use serde_json::{json, Value};

    #[tokio::test]
    async fn one_export_at_a_time_per_store_and_the_lease_is_given_back() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::local(&dir.path().join("lake")).unwrap();
        let out = Lake::local(&dir.path().join("export")).unwrap();
        let state: StateStore = crate::state::LocalState::open(&dir.path().join("state"))
            .unwrap()
            .into();
        let exporter = Exporter {
            lake: &lake,
            out: &out,
            options: ExportOptions::default(),
        };
        let now = 1_795_694_400;
        let held = state.acquire("export", "other-run", 60).await.unwrap();
        match exporter.export_leased(&state, "this-run", 60, now).await {
            Err(ExportError::State(StateError::Leased { owner, .. })) => {
                assert_eq!(owner, "other-run")
            }
            other => panic!("exported beside another export: {other:?}"),
        }
        state.release(&held).await;
        let reports = exporter.export_leased(&state, "this-run", 60, now).await;
        assert!(reports.unwrap().is_empty(), "an empty lake exports nothing");
        // Given back: another run takes the lease at once.
        state.acquire("export", "third-run", 60).await.unwrap();
    }

    #[test]
    fn run_dates_are_utc_minutes() {
        // 2026-11-26T12:34:56Z
        assert_eq!(run_date(1_795_694_400 + 34 * 60 + 56), "202611261234");
        assert!(is_run_date("202611261234"));
        assert!(!is_run_date("_manifests"));
    }

    const T0: i64 = 1_795_694_400;

    fn invoice(id: &str, metadata: Value, lines: &[&str]) -> Value {
        let data: Vec<Value> = lines
            .iter()
            .map(|l| json!({"id": l, "object": "line_item", "amount": 5}))
            .collect();
        json!({"id": id, "object": "invoice", "customer": "cus_1", "metadata": metadata,
               "lines": {"object": "list", "data": data, "has_more": false}})
    }

    /// Writes one delivery (`stem`) of invoices for a merchant into the lake, as the engine does.
    async fn deliver(
        lake: &Lake,
        merchant: &str,
        stem: &str,
        ts: i64,
        objects: &[Value],
        deleted: bool,
    ) {
        let dataset = Catalog::get().dataset("invoices").unwrap();
        let mut conv = Converter::new(dataset);
        for o in objects {
            conv.push(
                o,
                RowContext {
                    merchant_id: merchant,
                    account: None,
                    batch_timestamp: ts,
                    deleted,
                },
            );
        }
        for t in conv.tables.iter_mut() {
            if let Some(batch) = t.take().expect("rows fit their schema") {
                let name = t.table.name.clone();
                lake.write(true, merchant, stem, &[batch], &name)
                    .await
                    .unwrap();
            }
        }
    }

    async fn batches(store: &Lake, folder: &str, table: &str) -> Vec<RecordBatch> {
        let mut out = Vec::new();
        for o in store
            .list_dir(&format!("{folder}/{table}"))
            .await
            .unwrap()
            .objects
        {
            let bytes = store.read(&o.path).await.unwrap();
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                .unwrap()
                .build()
                .unwrap();
            out.extend(reader.map(Result::unwrap));
        }
        out
    }

    /// `(merchant, key, ts, deleted, extra)` per row; `extra` is `customer_id` for invoices, `key=value`
    /// for metadata and the line id for lines.
    async fn rows(
        store: &Lake,
        folder: &str,
        table: &str,
    ) -> Vec<(String, String, i64, bool, String)> {
        let mut out = Vec::new();
        for b in batches(store, folder, table).await {
            let s = |name: &str| b.column_by_name(name).unwrap().as_string::<i32>().clone();
            let (merchant, ts) = (
                s("merchant_id"),
                b.column_by_name("batch_timestamp")
                    .unwrap()
                    .as_primitive::<TimestampMicrosecondType>()
                    .clone(),
            );
            let deleted = b.column_by_name("deleted").unwrap().as_boolean().clone();
            let (key, extra) = match table {
                "invoices" => (s("id"), s("customer_id")),
                "invoices_metadata" => (s("invoice_id"), s("key")),
                _ => (s("invoice_id"), s("id")),
            };
            for i in 0..b.num_rows() {
                let extra = if extra.is_valid(i) {
                    extra.value(i).to_string()
                } else {
                    String::new()
                };
                let extra = if table == "invoices_metadata" {
                    format!("{extra}={}", s("value").value(i))
                } else {
                    extra
                };
                out.push((
                    merchant.value(i).to_string(),
                    key.value(i).to_string(),
                    ts.value(i),
                    deleted.is_valid(i) && deleted.value(i),
                    extra,
                ));
            }
        }
        out.sort();
        out
    }

    fn row(
        m: &str,
        key: &str,
        ts: i64,
        deleted: bool,
        extra: &str,
    ) -> (String, String, i64, bool, String) {
        (m.into(), key.into(), ts, deleted, extra.into())
    }

    #[tokio::test]
    async fn exports_merge_the_previous_export_with_the_changes_since() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::local(&dir.path().join("lake")).unwrap();
        let out = Lake::local(&dir.path().join("export")).unwrap();
        // Merchant B first: its files are older than every file of A.
        let b = invoice("in_b", json!({"k": "v"}), &["il_b"]);
        deliver(&lake, "acct_B", "r1-invoices-s00-00000", 100, &[b], false).await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let first_run = [
            invoice("in_1", json!({"a": "1"}), &["il_1"]),
            invoice("in_2", json!({"b": "2"}), &["il_2", "il_3"]),
            invoice("in_3", json!({}), &[]),
        ];
        deliver(
            &lake,
            "acct_A",
            "r1-invoices-s00-00000",
            100,
            &first_run,
            false,
        )
        .await;
        let exporter = Exporter {
            lake: &lake,
            out: &out,
            options: ExportOptions {
                overlap_micros: 0,
                keep: 1,
                ..ExportOptions::default()
            },
        };
        let first = exporter.export(true, T0).await.unwrap();
        assert_eq!(first.previous, None);
        assert!(out
            .exists(&format!("{}/{MARKER}", first.folder))
            .await
            .unwrap());
        assert_eq!(rows(&out, &first.folder, "invoices").await.len(), 4);
        assert_eq!(
            rows(&out, &first.folder, "invoice_line_items").await.len(),
            4
        );
        // Every table of the catalog has a readable folder.
        assert_eq!(first.tables, Catalog::get().tables().count());
        let charges = batches(&out, &first.folder, "charges").await;
        assert_eq!(charges.iter().map(RecordBatch::num_rows).sum::<usize>(), 0);

        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        // in_1 updated (new metadata, no lines), in_2 found gone, in_4 new, and a late older in_3.
        let updates = [
            invoice("in_1", json!({"a": "9"}), &[]),
            invoice("in_4", json!({}), &["il_4"]),
        ];
        deliver(
            &lake,
            "acct_A",
            "r2-invoices-events-00000",
            200,
            &updates,
            false,
        )
        .await;
        let stub = |id: &str| json!({"id": id, "object": "invoice"});
        deliver(
            &lake,
            "acct_A",
            "r2-invoices-events-00000-deleted",
            200,
            &[stub("in_2")],
            true,
        )
        .await;
        let late = invoice("in_3", json!({"old": "x"}), &["il_old"]);
        deliver(&lake, "acct_A", "r2-invoices-s00-00000", 50, &[late], false).await;
        // An `invoice.deleted` event's object is a full version (its columns and lines win); a
        // tombstone of an object never seen is dropped; one older than the kept version flags nothing.
        let mut gone = invoice("in_5", json!({"e": "1"}), &["il_5"]);
        gone["customer"] = json!("cus_2");
        deliver(
            &lake,
            "acct_A",
            "r2-invoices-events-00001",
            210,
            &[gone],
            true,
        )
        .await;
        deliver(
            &lake,
            "acct_A",
            "r2-invoices-events-00001-deleted",
            210,
            &[stub("in_9")],
            true,
        )
        .await;
        deliver(
            &lake,
            "acct_A",
            "r2-invoices-sweep-deleted",
            150,
            &[stub("in_4")],
            true,
        )
        .await;
        let second = exporter.export(true, T0 + 60).await.unwrap();
        assert_eq!(second.previous.as_deref(), Some(first.run_date.as_str()));
        assert_eq!(
            second.copied, 3,
            "merchant B's three files are copied: {second:?}"
        );
        assert_eq!(second.removed, vec![first.run_date.clone()], "keep = 1");
        let want_invoices = vec![
            row("acct_A", "in_1", 200, false, "cus_1"),
            row("acct_A", "in_2", 200, true, "cus_1"),
            row("acct_A", "in_3", 100, false, "cus_1"),
            row("acct_A", "in_4", 200, false, "cus_1"),
            row("acct_A", "in_5", 210, true, "cus_2"),
            row("acct_B", "in_b", 100, false, "cus_1"),
        ];
        assert_eq!(rows(&out, &second.folder, "invoices").await, want_invoices);
        let want_metadata = vec![
            row("acct_A", "in_1", 200, false, "a=9"),
            row("acct_A", "in_2", 100, false, "b=2"),
            row("acct_A", "in_5", 210, true, "e=1"),
            row("acct_B", "in_b", 100, false, "k=v"),
        ];
        assert_eq!(
            rows(&out, &second.folder, "invoices_metadata").await,
            want_metadata
        );
        let want_lines = vec![
            row("acct_A", "in_2", 100, false, "il_2"),
            row("acct_A", "in_2", 100, false, "il_3"),
            row("acct_A", "in_4", 200, false, "il_4"),
            row("acct_A", "in_5", 210, true, "il_5"),
            row("acct_B", "in_b", 100, false, "il_b"),
        ];
        assert_eq!(
            rows(&out, &second.folder, "invoice_line_items").await,
            want_lines
        );
        assert_eq!(second.rows, 6 + 4 + 5);
        // The same minute again: already complete, nothing written.
        assert!(
            exporter
                .export(true, T0 + 61)
                .await
                .unwrap()
                .already_complete
        );

        // Ids split over many hash partitions give the same export, built from the change files
        // alone, in files of one row.
        let small = Lake::local(&dir.path().join("small")).unwrap();
        let partitioned = Exporter {
            lake: &lake,
            out: &small,
            options: ExportOptions {
                max_keys: 1,
                part_rows: 1,
                ..ExportOptions::default()
            },
        };
        let report = partitioned.export(true, T0 + 60).await.unwrap();
        assert!(report.passes > 1, "{report:?}");
        assert_eq!(
            rows(&small, &report.folder, "invoices").await,
            want_invoices
        );
        assert_eq!(
            rows(&small, &report.folder, "invoices_metadata").await,
            want_metadata
        );
        assert_eq!(
            rows(&small, &report.folder, "invoice_line_items").await,
            want_lines
        );
        let files = small
            .list_dir(&format!("{}/invoices", report.folder))
            .await
            .unwrap();
        assert_eq!(files.objects.len(), 6, "one row per file");

        // And built on that export with partitions too: the previous export's branches.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let again = [invoice("in_3", json!({"z": "1"}), &["il_z"])];
        deliver(
            &lake,
            "acct_A",
            "r3-invoices-events-00000",
            300,
            &again,
            false,
        )
        .await;
        let next = Exporter {
            lake: &lake,
            out: &small,
            options: ExportOptions {
                max_keys: 1,
                part_rows: 2,
                overlap_micros: 0,
                ..ExportOptions::default()
            },
        };
        let third = next.export(true, T0 + 120).await.unwrap();
        assert_eq!(third.previous.as_deref(), Some(report.run_date.as_str()));
        let mut want = want_invoices.clone();
        want[2] = row("acct_A", "in_3", 300, false, "cus_1");
        assert_eq!(rows(&small, &third.folder, "invoices").await, want);
        let mut want = want_metadata.clone();
        want.insert(2, row("acct_A", "in_3", 300, false, "z=1"));
        assert_eq!(rows(&small, &third.folder, "invoices_metadata").await, want);
        let mut want = want_lines.clone();
        want.insert(2, row("acct_A", "in_3", 300, false, "il_z"));
        assert_eq!(
            rows(&small, &third.folder, "invoice_line_items").await,
            want
        );
    }

    #[tokio::test]
    async fn an_unfinished_export_is_replaced_and_foreign_folders_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::local(&dir.path().join("lake")).unwrap();
        let out = Lake::local(&dir.path().join("export")).unwrap();
        let one = [invoice("in_1", json!({}), &[])];
        deliver(&lake, "acct_A", "r1-invoices-s00-00000", 100, &one, false).await;
        let folder = format!("livemode/{}", run_date(T0));
        // A crashed export: started, a stray file, no marker.
        out.put(&format!("{folder}/{STARTED}"), Vec::new())
            .await
            .unwrap();
        let stray = format!("{folder}/invoices/acct_A-00000.parquet");
        out.put(&stray, b"not parquet".to_vec()).await.unwrap();
        // Another tool's folder with a run date's name: never used, removed or written into.
        let foreign = format!("livemode/{}", run_date(T0 - 86_400));
        out.put(&format!("{foreign}/{MARKER}"), Vec::new())
            .await
            .unwrap();
        let theirs = format!("{foreign}/invoices/part-0.parquet");
        out.put(&theirs, b"theirs".to_vec()).await.unwrap();
        let exporter = Exporter {
            lake: &lake,
            out: &out,
            options: ExportOptions::default(),
        };
        let later = exporter.export(true, T0 + 3600).await.unwrap();
        assert_eq!(later.previous, None, "neither folder is a base");
        assert_eq!(
            later.removed,
            vec![run_date(T0)],
            "the unfinished one is removed"
        );
        assert!(out.exists(&theirs).await.unwrap());
        let err = exporter.export(true, T0 - 86_400 + 30).await.unwrap_err();
        assert!(matches!(err, ExportError::Foreign { .. }), "{err}");
        let again = exporter.export(true, T0).await.unwrap();
        assert!(!again.already_complete);
        let want = vec![row("acct_A", "in_1", 100, false, "cus_1")];
        assert_eq!(rows(&out, &folder, "invoices").await, want);
    }
}
