//! The bounded-memory merge of one merchant's dataset: the previous export's rows plus the change files
//! written since, reduced to the latest version of every object, with each object's metadata and child
//! rows taken from the version that won.
//!
//! Only object ids are held in memory, never rows: a map from each changed id to where its newest
//! version is. When more ids changed than [`ExportOptions::max_keys`], the ids are split into hash
//! partitions and every input is read once per partition, so memory stays bounded by the option and by
//! the size of one input file (change files are cut by the engine, export files every
//! [`ExportOptions::part_rows`] rows), however large the table is. Rows go from one input file at a time
//! to the output files.
//!
//! The rules are the warehouse merge's (`warehouse::sql::merge`), so an export and a warehouse loaded
//! from the same lake agree:
//! - per object the newest `batch_timestamp` wins, a change winning a tie with the previous export;
//!   a full row with `deleted` set (a `*.deleted` event's object) is a version like any other;
//! - a tombstone (a row of a `-deleted` file: an object found gone, with its id only) flags the kept
//!   version `deleted` with the tombstone's `batch_timestamp`, and leaves its metadata and child rows,
//!   unless the kept version was read after the tombstone (in time order, not in the order the files
//!   arrived); a tombstone of an object never seen in full is dropped;
//! - metadata and child rows are replaced per parent: those delivered with the winning version (same
//!   file name, same `batch_timestamp`), or the previous export's when the previous version won.

use super::{ExportError, ExportOptions};
use crate::catalog::{Dataset, Table, BATCH_TIMESTAMP, DELETED};
use crate::convert::table_schema;
use crate::lake::{writer_properties_for, Lake};
use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, TimestampMicrosecondArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{SchemaRef, TimestampMicrosecondType};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Rows decoded at a time from an input file.
const READ_BATCH_ROWS: usize = 8192;

/// The most hash partitions one merge uses (each is a pass over the inputs).
const MAX_PARTS: u32 = 1 << 12;

/// The inputs of one table of the dataset, for one merchant.
#[derive(Debug, Clone, Default)]
pub(super) struct TableInputs {
    /// Change files in the lake (paths in the source lake), in a stable order.
    pub changes: Vec<String>,
    /// The previous export's files for this merchant (paths in the export store).
    pub previous: Vec<String>,
}

/// What one table's merge wrote.
#[derive(Debug, Clone, Default)]
pub(super) struct TableOutput {
    pub rows: u64,
    pub files: usize,
}

/// Where the newest version of an object is: its `batch_timestamp` and its row in the change files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Version {
    ts: i64,
    file: u32,
    row: u32,
}

/// What the change files hold for one object id.
#[derive(Debug, Default)]
struct Changed {
    /// The newest full version.
    full: Option<Version>,
    /// The newest tombstone.
    tomb: Option<Version>,
    /// The previous export's version is newer than every full version in the changes.
    previous_won: bool,
}

impl Changed {
    fn offer(slot: &mut Option<Version>, v: Version) {
        if slot.is_none_or(|old| v.ts >= old.ts) {
            *slot = Some(v);
        }
    }

    /// The time to flag a kept version (of time `ts`) deleted at: the tombstone's, unless the version
    /// was read after it (then the object still existed when last seen).
    fn deleted_at(&self, ts: i64) -> Option<i64> {
        self.tomb.map(|t| t.ts).filter(|t| *t >= ts)
    }

    /// The change version whose metadata and child rows win, if a change version won.
    fn winner(&self) -> Option<Version> {
        self.full.filter(|_| !self.previous_won)
    }
}

/// FNV-1a: a small hash that is the same in every process and release.
pub(super) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A stable hash partition of an id, the same for a parent and its child rows.
fn partition(id: &str, parts: u32) -> u32 {
    if parts <= 1 {
        return 0;
    }
    (fnv1a(id.as_bytes()) % u64::from(parts)) as u32
}

/// Whether a main-table change file holds tombstones (objects found gone: ids only).
pub(super) fn is_tombstones(path: &str) -> bool {
    stem(path).ends_with("-deleted")
}

/// The delivery a change file belongs to: its stem, without `-deleted` for tombstones.
pub(super) fn delivery(path: &str) -> &str {
    let stem = stem(path);
    stem.strip_suffix("-deleted").unwrap_or(stem)
}

/// The file name of a path without `.parquet`: the same for every table of one delivery.
pub(super) fn stem(path: &str) -> &str {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.strip_suffix(".parquet").unwrap_or(name)
}

fn decode_error(path: &str) -> impl Fn(String) -> ExportError + '_ {
    move |message| ExportError::Decode {
        path: path.to_string(),
        message,
    }
}

/// Reads one Parquet file as batches of `schema` (columns the file lacks, written before the catalog
/// grew, are null). The file's bytes are fetched whole; its rows are decoded a batch at a time.
async fn read(lake: &Lake, path: &str, schema: &SchemaRef) -> Result<Batches, ExportError> {
    let bad = decode_error(path);
    let bytes = lake.read(path).await?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| bad(e.to_string()))?
        .with_batch_size(READ_BATCH_ROWS)
        .build()
        .map_err(|e| bad(e.to_string()))?;
    Ok(Batches {
        reader,
        path: path.to_string(),
        schema: schema.clone(),
    })
}

/// The batches of one file, conformed to the table's schema.
struct Batches {
    reader: parquet::arrow::arrow_reader::ParquetRecordBatchReader,
    path: String,
    schema: SchemaRef,
}

impl Iterator for Batches {
    type Item = Result<RecordBatch, ExportError>;

    fn next(&mut self) -> Option<Self::Item> {
        let batch = self.reader.next()?;
        Some(
            batch
                .map_err(|e| e.to_string())
                .and_then(|b| conform(b, &self.schema).map_err(|e| e.to_string()))
                .map_err(decode_error(&self.path)),
        )
    }
}

fn conform(
    batch: RecordBatch,
    schema: &SchemaRef,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch);
    }
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
            Some(c) => arrow::compute::cast(c, f.data_type()),
            None => Ok(arrow::array::new_null_array(
                f.data_type(),
                batch.num_rows(),
            )),
        })
        .collect::<Result<Vec<ArrayRef>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}

/// The key, version time and deleted flag of each row of a conformed batch.
struct Rows<'b> {
    keys: &'b arrow::array::StringArray,
    ts: &'b TimestampMicrosecondArray,
}

impl<'b> Rows<'b> {
    fn of(batch: &'b RecordBatch, key: &str) -> Rows<'b> {
        // `conform` gave the batch the table's schema: these columns exist with these types.
        Rows {
            keys: batch
                .column(batch.schema().index_of(key).unwrap_or(0))
                .as_string::<i32>(),
            ts: batch
                .column(batch.schema().index_of(BATCH_TIMESTAMP).unwrap_or(0))
                .as_primitive::<TimestampMicrosecondType>(),
        }
    }

    fn key(&self, i: usize) -> &'b str {
        if self.keys.is_valid(i) {
            self.keys.value(i)
        } else {
            ""
        }
    }

    fn ts(&self, i: usize) -> i64 {
        if self.ts.is_valid(i) {
            self.ts.value(i)
        } else {
            i64::MIN
        }
    }
}

/// The rows of `batch` to keep, with the ones to flag deleted (at a time) changed accordingly.
fn select(
    batch: &RecordBatch,
    keep: Vec<bool>,
    deleted_at: &[Option<i64>],
) -> Result<Option<RecordBatch>, arrow::error::ArrowError> {
    let mask = BooleanArray::from(keep);
    if mask.true_count() == 0 {
        return Ok(None);
    }
    let out = filter_record_batch(batch, &mask)?;
    if deleted_at.iter().all(Option::is_none) {
        return Ok(Some(out));
    }
    let kept: Vec<Option<i64>> = deleted_at
        .iter()
        .zip(mask.values().iter())
        .filter(|(_, k)| *k)
        .map(|(d, _)| *d)
        .collect();
    let schema = out.schema();
    let (ts_at, del_at) = (schema.index_of(BATCH_TIMESTAMP)?, schema.index_of(DELETED)?);
    let old_ts = out.column(ts_at).as_primitive::<TimestampMicrosecondType>();
    let old_del = out.column(del_at).as_boolean();
    let ts: TimestampMicrosecondArray = kept
        .iter()
        .enumerate()
        .map(|(i, d)| d.or_else(|| old_ts.is_valid(i).then(|| old_ts.value(i))))
        .collect();
    let deleted: BooleanArray = kept
        .iter()
        .enumerate()
        .map(|(i, d)| {
            if d.is_some() {
                Some(true)
            } else {
                old_del.is_valid(i).then(|| old_del.value(i))
            }
        })
        .collect();
    let mut columns = out.columns().to_vec();
    columns[ts_at] = Arc::new(ts);
    columns[del_at] = Arc::new(deleted);
    RecordBatch::try_new(schema, columns).map(Some)
}

/// Output files of one table for one merchant: `<dir>/<merchant>-<nnnnn>.parquet`, a new one every
/// `part_rows` rows, each stored whole (an atomic put) when it is complete.
struct Parts<'a> {
    out: &'a Lake,
    dir: String,
    merchant: &'a str,
    schema: SchemaRef,
    part_rows: usize,
    writer: Option<ArrowWriter<Vec<u8>>>,
    in_part: usize,
    done: TableOutput,
}

impl Parts<'_> {
    async fn push(&mut self, batch: Option<RecordBatch>) -> Result<(), ExportError> {
        let Some(batch) = batch.filter(|b| b.num_rows() > 0) else {
            return Ok(());
        };
        let dir = self.dir.clone();
        let bad = decode_error(&dir);
        let writer = match &mut self.writer {
            Some(w) => w,
            None => self.writer.insert(
                ArrowWriter::try_new(
                    Vec::new(),
                    self.schema.clone(),
                    Some(writer_properties_for(&batch)),
                )
                .map_err(|e| bad(e.to_string()))?,
            ),
        };
        writer.write(&batch).map_err(|e| bad(e.to_string()))?;
        self.in_part += batch.num_rows();
        self.done.rows += batch.num_rows() as u64;
        if self.in_part >= self.part_rows {
            self.finish().await?;
        }
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), ExportError> {
        let Some(writer) = self.writer.take() else {
            return Ok(());
        };
        let bytes = writer
            .into_inner()
            .map_err(|e| decode_error(&self.dir)(e.to_string()))?;
        let path = format!(
            "{}/{}-{:05}.parquet",
            self.dir, self.merchant, self.done.files
        );
        self.out.put(&path, bytes).await?;
        self.done.files += 1;
        self.in_part = 0;
        Ok(())
    }
}

/// Merges one merchant's dataset into `<root>/<table>/` of the export store. `inputs` holds one entry
/// per table of `dataset`, in the dataset's order. Returns per table what was written, and the number
/// of hash partitions used.
#[allow(clippy::too_many_arguments)]
pub(super) async fn merge(
    lake: &Lake,
    out: &Lake,
    dataset: &Dataset,
    merchant: &str,
    inputs: &[TableInputs],
    root: &str,
    options: &ExportOptions,
) -> Result<(Vec<TableOutput>, u32), ExportError> {
    let main_at = dataset
        .tables
        .iter()
        .position(|t| t.name == dataset.main_table().name)
        .unwrap_or(0);
    let main = &dataset.tables[main_at];
    let main_schema = table_schema(main);
    let mut outputs: Vec<Parts> = dataset
        .tables
        .iter()
        .map(|t| Parts {
            out,
            dir: format!("{root}/{}", t.name),
            merchant,
            schema: table_schema(t),
            part_rows: options.part_rows.max(1),
            writer: None,
            in_part: 0,
            done: TableOutput::default(),
        })
        .collect();

    // Size the partitions on the first one, stopping as soon as it holds too many ids (so memory never
    // goes past the limit by more than one file's ids): ids hash evenly, so the others hold about as
    // many. At the most partitions, every partition is taken whatever its size.
    let changes = &inputs[main_at].changes;
    let limit = options.max_keys.max(1);
    let mut parts: u32 = 1;
    let mut first = loop {
        let cap = if parts >= MAX_PARTS {
            usize::MAX
        } else {
            limit
        };
        match changed_ids(lake, changes, &main_schema, (0, parts), cap).await? {
            (changed, None) => break changed,
            (_, Some(files_read)) => {
                let factor = changes.len().div_ceil(files_read).max(1) as u32;
                parts = parts
                    .saturating_mul(factor.saturating_mul(2))
                    .min(MAX_PARTS);
            }
        }
    };
    for p in 0..parts {
        let mut changed = if p == 0 {
            std::mem::take(&mut first)
        } else {
            changed_ids(lake, changes, &main_schema, (p, parts), usize::MAX)
                .await?
                .0
        };
        merge_main(
            lake,
            out,
            main,
            &inputs[main_at],
            &mut changed,
            (p, parts),
            &mut outputs[main_at],
        )
        .await?;
        for (i, table) in dataset.tables.iter().enumerate() {
            if i == main_at {
                continue;
            }
            merge_children(
                lake,
                out,
                table,
                &inputs[main_at].changes,
                &inputs[i],
                &changed,
                (p, parts),
                &mut outputs[i],
            )
            .await?;
        }
    }
    let mut done = Vec::with_capacity(outputs.len());
    for mut o in outputs {
        o.finish().await?;
        done.push(o.done);
    }
    Ok((done, parts))
}

/// The ids of partition `p` in the main table's change files, with their newest versions. Stops early
/// once they are more than `limit`, and then also says after how many files.
async fn changed_ids(
    lake: &Lake,
    changes: &[String],
    schema: &SchemaRef,
    (p, parts): (u32, u32),
    limit: usize,
) -> Result<(HashMap<String, Changed>, Option<usize>), ExportError> {
    let mut changed: HashMap<String, Changed> = HashMap::new();
    for (file, path) in changes.iter().enumerate() {
        let tombstones = is_tombstones(path);
        let mut row = 0u32;
        for batch in read(lake, path, schema).await? {
            let batch = batch?;
            let rows = Rows::of(&batch, "id");
            for i in 0..batch.num_rows() {
                let id = rows.key(i);
                if partition(id, parts) == p {
                    let v = Version {
                        ts: rows.ts(i),
                        file: file as u32,
                        row: row + i as u32,
                    };
                    let entry = changed.entry(id.to_string()).or_default();
                    if tombstones {
                        Changed::offer(&mut entry.tomb, v);
                    } else {
                        Changed::offer(&mut entry.full, v);
                    }
                }
            }
            row += batch.num_rows() as u32;
        }
        if changed.len() > limit {
            return Ok((changed, Some(file + 1)));
        }
    }
    Ok((changed, None))
}

/// The main table's partition `p`: the previous export's rows that still win, then the winning change
/// rows. Marks in `changed` which objects kept their previous version.
async fn merge_main(
    lake: &Lake,
    out: &Lake,
    table: &Table,
    inputs: &TableInputs,
    changed: &mut HashMap<String, Changed>,
    (p, parts): (u32, u32),
    output: &mut Parts<'_>,
) -> Result<(), ExportError> {
    let schema = table_schema(table);
    for path in &inputs.previous {
        for batch in read(out, path, &schema).await? {
            let batch = batch?;
            let rows = Rows::of(&batch, "id");
            let n = batch.num_rows();
            let (mut keep, mut deleted_at) = (vec![false; n], vec![None; n]);
            for i in 0..n {
                let id = rows.key(i);
                if partition(id, parts) != p {
                    continue;
                }
                let ts = rows.ts(i);
                match changed.get_mut(id) {
                    None => keep[i] = true,
                    Some(c) if c.full.is_none_or(|f| ts > f.ts) => {
                        c.previous_won = true;
                        keep[i] = true;
                        deleted_at[i] = c.deleted_at(ts);
                    }
                    Some(_) => {}
                }
            }
            let picked =
                select(&batch, keep, &deleted_at).map_err(|e| decode_error(path)(e.to_string()))?;
            output.push(picked).await?;
        }
    }
    for (file, path) in inputs.changes.iter().enumerate() {
        let mut row = 0u32;
        for batch in read(lake, path, &schema).await? {
            let batch = batch?;
            let rows = Rows::of(&batch, "id");
            let n = batch.num_rows();
            let (mut keep, mut deleted_at) = (vec![false; n], vec![None; n]);
            for i in 0..n {
                let id = rows.key(i);
                if partition(id, parts) != p {
                    continue;
                }
                let here = Version {
                    ts: rows.ts(i),
                    file: file as u32,
                    row: row + i as u32,
                };
                let Some(c) = changed.get(id) else { continue };
                if c.previous_won {
                    continue;
                }
                if c.full == Some(here) {
                    keep[i] = true;
                    deleted_at[i] = c.deleted_at(here.ts);
                }
            }
            row += n as u32;
            let picked =
                select(&batch, keep, &deleted_at).map_err(|e| decode_error(path)(e.to_string()))?;
            output.push(picked).await?;
        }
    }
    Ok(())
}

/// A metadata or child table's partition `p`: the previous export's rows of parents whose previous
/// version won (or that did not change), then the rows delivered with each winning change version.
#[allow(clippy::too_many_arguments)]
async fn merge_children(
    lake: &Lake,
    out: &Lake,
    table: &Table,
    main_changes: &[String],
    inputs: &TableInputs,
    changed: &HashMap<String, Changed>,
    (p, parts): (u32, u32),
    output: &mut Parts<'_>,
) -> Result<(), ExportError> {
    let schema = table_schema(table);
    let key = table.parent_key.as_deref().unwrap_or("parent_id");
    for path in &inputs.previous {
        for batch in read(out, path, &schema).await? {
            let batch = batch?;
            let rows = Rows::of(&batch, key);
            let keep: Vec<bool> = (0..batch.num_rows())
                .map(|i| {
                    let parent = rows.key(i);
                    partition(parent, parts) == p
                        && changed.get(parent).is_none_or(|c| c.winner().is_none())
                })
                .collect();
            let picked =
                select(&batch, keep, &[]).map_err(|e| decode_error(path)(e.to_string()))?;
            output.push(picked).await?;
        }
    }
    let winning_stems: HashSet<&str> = changed
        .values()
        .filter_map(Changed::winner)
        .filter_map(|v| main_changes.get(v.file as usize))
        .map(|path| stem(path))
        .collect();
    for path in inputs
        .changes
        .iter()
        .filter(|path| winning_stems.contains(stem(path)))
    {
        let here = stem(path);
        for batch in read(lake, path, &schema).await? {
            let batch = batch?;
            let rows = Rows::of(&batch, key);
            let keep: Vec<bool> = (0..batch.num_rows())
                .map(|i| {
                    let parent = rows.key(i);
                    partition(parent, parts) == p
                        && changed
                            .get(parent)
                            .and_then(Changed::winner)
                            .is_some_and(|v| {
                                v.ts == rows.ts(i)
                                    && main_changes
                                        .get(v.file as usize)
                                        .is_some_and(|w| stem(w) == here)
                            })
                })
                .collect();
            let picked =
                select(&batch, keep, &[]).map_err(|e| decode_error(path)(e.to_string()))?;
            output.push(picked).await?;
        }
    }
    Ok(())
}
