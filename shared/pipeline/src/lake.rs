//! The lake: Parquet files in an object store, through one `object_store` port: a local directory
//! ([`Lake::local`]) or, with the feature `cloud`, S3, Google Cloud Storage or Azure Blob Storage
//! ([`Lake::cloud`]).
//!
//! Layout: `<livemode|testmode>/<table>/merchant_id=<acct_…>/<run>-<slice>-<seq>.parquet`, and one
//! manifest per run at `<livemode|testmode>/_manifests/<run>.json`. Files are written once under a new
//! name and never rewritten, so a reader never sees a half-written file and a replayed slice only adds
//! files whose rows the warehouse merge deduplicates.

use crate::catalog::Owner;
use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit, TimestampMicrosecondType};
use arrow::record_batch::RecordBatch;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesBuilder};
use parquet::schema::types::ColumnPath;
use serde::Serialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Rows per Parquet row group.
pub const ROW_GROUP_ROWS: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("cannot use the directory {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot use the object store at {url}: {message}")]
    Url { url: String, message: String },
    #[error("cannot encode Parquet for {table}: {source}")]
    Encode {
        table: String,
        source: parquet::errors::ParquetError,
    },
    #[error("cannot read {path} from the lake: {source}")]
    Read {
        path: String,
        source: object_store::Error,
    },
    #[error("cannot read the Parquet file {path} of the lake ({message}); move it out of the lake if the pipeline did not write it")]
    Decode { path: String, message: String },
    #[error("cannot write {path} to the lake: {source}")]
    Write {
        path: String,
        source: object_store::Error,
    },
}

/// One file written.
#[derive(Debug, Clone, Serialize)]
pub struct LakeFile {
    pub table: String,
    pub path: String,
    pub rows: usize,
    pub bytes: usize,
}

/// An object found by [`Lake::list_dir`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    /// The store's last-modified time (its own clock), in microseconds since the epoch.
    pub modified_micros: i64,
}

/// One level of a folder: its objects and its subfolders.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub objects: Vec<Entry>,
    pub folders: Vec<String>,
}

#[derive(Clone)]
pub struct Lake {
    store: Arc<dyn ObjectStore>,
    /// Set when the store is a local directory (DuckDB reads the files from there).
    local_root: Option<PathBuf>,
    /// Set when the store is in the cloud: its URL without a trailing `/` (Redshift's `COPY` names files
    /// by URL).
    url: Option<String>,
}

/// How every Parquet file of the lake and of the exports is written: zstd, page statistics, row groups
/// of [`ROW_GROUP_ROWS`].
///
/// zstd at level 1: on pages of Stripe objects its files are no larger than level 3's (measured on
/// 2,000 charges: 0.3 % smaller) and encoding takes a fifth less time.
pub fn writer_properties() -> WriterProperties {
    properties().build()
}

fn properties() -> WriterPropertiesBuilder {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
}

/// [`writer_properties`] for a file whose rows start with `batch`:
/// - columns whose leading values are all different (ids, URLs, JSON documents, timestamps) are
///   written without a dictionary. A dictionary of unique values costs a hash and an insert per value
///   and saves nothing: zstd finds what repeats inside them.
/// - columns that are null in every row of `batch` (in a page of charges, about half of them: the
///   fields of features the merchant does not use) are written plain and uncompressed. Their pages
///   hold only a run of "null" levels, a few bytes, which compression cannot shrink, and each
///   compressed column costs a zstd context of its own.
pub fn writer_properties_for(batch: &RecordBatch) -> WriterProperties {
    let schema = batch.schema();
    batch
        .columns()
        .iter()
        .zip(schema.fields())
        .fold(properties(), |props, (column, field)| {
            let path = || ColumnPath::from(field.name().as_str());
            if column.null_count() == column.len() {
                props
                    .set_column_dictionary_enabled(path(), false)
                    .set_column_compression(path(), Compression::UNCOMPRESSED)
            } else if looks_unique(column.as_ref()) {
                props.set_column_dictionary_enabled(path(), false)
            } else {
                props
            }
        })
        .build()
}

/// Values sampled by [`looks_unique`]: enough that a column of a few hundred distinct values (a
/// currency, a status, a country) shows a repeat, few enough to cost nothing next to the encoding.
const UNIQUE_SAMPLE: usize = 64;

/// Whether the first [`UNIQUE_SAMPLE`] non-null values of a column are all different. Columns with
/// fewer non-null values keep their dictionary (a mostly-null column costs little either way).
fn looks_unique(column: &dyn Array) -> bool {
    fn all_distinct<T: Eq + std::hash::Hash>(values: impl Iterator<Item = T>) -> bool {
        let mut seen = HashSet::with_capacity(UNIQUE_SAMPLE);
        let mut n = 0;
        for v in values.take(UNIQUE_SAMPLE) {
            if !seen.insert(v) {
                return false;
            }
            n += 1;
        }
        n == UNIQUE_SAMPLE
    }
    match column.data_type() {
        DataType::Utf8 => all_distinct(column.as_string::<i32>().iter().flatten()),
        DataType::Int64 => all_distinct(column.as_primitive::<Int64Type>().iter().flatten()),
        DataType::Timestamp(TimeUnit::Microsecond, _) => all_distinct(
            column
                .as_primitive::<TimestampMicrosecondType>()
                .iter()
                .flatten(),
        ),
        DataType::Float64 => all_distinct(
            column
                .as_primitive::<Float64Type>()
                .iter()
                .flatten()
                .map(f64::to_bits),
        ),
        _ => false,
    }
}

/// Encodes one table's batches as one Parquet file (see [`writer_properties_for`]).
pub fn encode(batches: &[RecordBatch], table: &str) -> Result<Vec<u8>, LakeError> {
    let encode = |source| LakeError::Encode {
        table: table.to_string(),
        source,
    };
    let Some(first) = batches.first() else {
        return Ok(Vec::new());
    };
    let mut writer = ArrowWriter::try_new(
        Vec::new(),
        first.schema(),
        Some(writer_properties_for(first)),
    )
    .map_err(encode)?;
    for b in batches {
        writer.write(b).map_err(encode)?;
    }
    writer.into_inner().map_err(encode)
}

/// Folds the rows of one Parquet file of the lake into `newest`: per id, the newest
/// `(batch_timestamp µs, deleted)`.
fn newest_versions(
    path: &str,
    bytes: bytes::Bytes,
    account: Option<&str>,
    newest: &mut std::collections::HashMap<String, (i64, bool)>,
) -> Result<(), LakeError> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ProjectionMask;
    let bad = |message: String| LakeError::Decode {
        path: path.to_string(),
        message,
    };
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| bad(e.to_string()))?;
    let mut wanted = vec!["id", "batch_timestamp", "deleted"];
    wanted.extend(account.map(|_| crate::catalog::ACCOUNT));
    let mask = ProjectionMask::columns(builder.parquet_schema(), wanted);
    let reader = builder
        .with_projection(mask)
        .build()
        .map_err(|e| bad(e.to_string()))?;
    for batch in reader {
        let batch = batch.map_err(|e| bad(e.to_string()))?;
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .cloned()
                .ok_or_else(|| bad(format!("no column {name}")))
        };
        let ids = arrow::compute::cast(&column("id")?, &DataType::Utf8)
            .map_err(|e| bad(e.to_string()))?;
        let ts = arrow::compute::cast(&column("batch_timestamp")?, &DataType::Int64)
            .map_err(|e| bad(e.to_string()))?;
        let deleted = column("deleted")?;
        let (ids, ts) = (ids.as_string::<i32>(), ts.as_primitive::<Int64Type>());
        let deleted = deleted
            .as_boolean_opt()
            .ok_or_else(|| bad("deleted is not a boolean column".into()))?;
        let owners = match account {
            Some(_) => Some(column(crate::catalog::ACCOUNT)?),
            None => None,
        };
        let owners = owners.as_ref().and_then(|o| o.as_string_opt::<i32>());
        for i in 0..batch.num_rows() {
            if ids.is_null(i) || ts.is_null(i) {
                continue;
            }
            // A connected account's rows share their platform's folder with the other accounts'.
            if let (Some(want), Some(owners)) = (account, owners) {
                if owners.is_null(i) || owners.value(i) != want {
                    continue;
                }
            }
            let version = (ts.value(i), !deleted.is_null(i) && deleted.value(i));
            match newest.get_mut(ids.value(i)) {
                Some(kept) => *kept = (*kept).max(version),
                None => {
                    newest.insert(ids.value(i).to_string(), version);
                }
            }
        }
    }
    Ok(())
}

/// `livemode` or `testmode`: the lake's root folder for a mode.
pub fn mode_root(livemode: bool) -> &'static str {
    if livemode {
        "livemode"
    } else {
        "testmode"
    }
}

impl std::fmt::Debug for Lake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lake")
            .field("store", &self.store.to_string())
            .field("local_root", &self.local_root)
            .finish()
    }
}

impl Lake {
    /// A lake in a local directory (created if missing).
    pub fn local(root: &Path) -> Result<Lake, LakeError> {
        std::fs::create_dir_all(root).map_err(|source| LakeError::Open {
            path: root.to_path_buf(),
            source,
        })?;
        let root = root.canonicalize().map_err(|source| LakeError::Open {
            path: root.to_path_buf(),
            source,
        })?;
        let store = LocalFileSystem::new_with_prefix(&root).map_err(|e| LakeError::Open {
            path: root.clone(),
            source: std::io::Error::other(e),
        })?;
        Ok(Lake {
            store: Arc::new(store),
            local_root: Some(root),
            url: None,
        })
    }

    /// A lake in cloud object storage: `s3://bucket/prefix`, `gs://bucket/prefix` or
    /// `az://container/prefix`. Credentials and settings come from the environment the way each cloud's
    /// tools read them (`AWS_*`, `GOOGLE_*`, `AZURE_*`; in Lambda, the function's role), and `options`
    /// (object_store's keys, e.g. `aws_endpoint`) override them.
    #[cfg(feature = "cloud")]
    pub fn cloud(url: &str, options: &[(String, String)]) -> Result<Lake, LakeError> {
        let bad = |message: String| LakeError::Url {
            url: url.to_string(),
            message,
        };
        let parsed = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        if !matches!(
            parsed.scheme(),
            "s3" | "s3a" | "gs" | "az" | "abfs" | "abfss"
        ) {
            return Err(bad(
                "use s3://bucket/prefix, gs://bucket/prefix or az://container/prefix".into(),
            ));
        }
        let mut opts: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| {
                ["AWS_", "GOOGLE_", "AZURE_"]
                    .iter()
                    .any(|p| k.starts_with(p))
            })
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        opts.extend(options.iter().cloned());
        let (store, prefix) =
            object_store::parse_url_opts(&parsed, opts).map_err(|e| bad(e.to_string()))?;
        let store: Arc<dyn ObjectStore> = if prefix.as_ref().is_empty() {
            Arc::from(store)
        } else {
            Arc::new(object_store::prefix::PrefixStore::new(store, prefix))
        };
        Ok(Lake {
            store,
            local_root: None,
            url: Some(url.trim_end_matches('/').to_string()),
        })
    }

    /// The object store under the lake (readers in tests and tools list and fetch files through it).
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// A local path for a lake path, when the lake is a local directory.
    pub fn local_path(&self, path: &str) -> Option<PathBuf> {
        self.local_root.as_ref().map(|r| r.join(path))
    }

    /// The URL of a lake path, when the lake is in the cloud (`s3://bucket/prefix/livemode/…`).
    pub fn url_of(&self, path: &str) -> Option<String> {
        self.url.as_ref().map(|u| format!("{u}/{path}"))
    }

    /// Encodes `batches` (one table's rows) as one zstd Parquet file and stores it under a new name.
    pub async fn write(
        &self,
        livemode: bool,
        merchant_id: &str,
        file_stem: &str,
        batches: &[RecordBatch],
        table: &str,
    ) -> Result<Option<LakeFile>, LakeError> {
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if rows == 0 {
            return Ok(None);
        }
        let bytes = encode(batches, table)?;
        let path = format!(
            "{}/{table}/merchant_id={merchant_id}/{file_stem}.parquet",
            mode_root(livemode)
        );
        let size = bytes.len();
        self.store
            .put(&StorePath::from(path.as_str()), PutPayload::from(bytes))
            .await
            .map_err(|source| LakeError::Write {
                path: path.clone(),
                source,
            })?;
        Ok(Some(LakeFile {
            table: table.to_string(),
            path,
            rows,
            bytes: size,
        }))
    }

    /// Reads a whole file of the lake (a Parquet file a warehouse loads).
    pub async fn read(&self, path: &str) -> Result<bytes::Bytes, LakeError> {
        let read = |source| LakeError::Read {
            path: path.to_string(),
            source,
        };
        let location = StorePath::from(path);
        self.store
            .get(&location)
            .await
            .map_err(read)?
            .bytes()
            .await
            .map_err(read)
    }

    /// Stores `bytes` at `path` (one atomic put: a reader sees the whole object or none).
    pub async fn put(&self, path: &str, bytes: Vec<u8>) -> Result<(), LakeError> {
        self.store
            .put(&StorePath::from(path), PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|source| LakeError::Write {
                path: path.to_string(),
                source,
            })
    }

    /// The objects directly under the folder `prefix` and its subfolders' paths (one level, every
    /// page of the listing).
    pub async fn list_dir(&self, prefix: &str) -> Result<Listing, LakeError> {
        let listed = self
            .store
            .list_with_delimiter(Some(&StorePath::from(prefix)))
            .await
            .map_err(|source| LakeError::Read {
                path: format!("{prefix}/"),
                source,
            })?;
        Ok(Listing {
            objects: listed
                .objects
                .into_iter()
                .map(|m| Entry {
                    path: m.location.to_string(),
                    modified_micros: m.last_modified.timestamp_micros(),
                })
                .collect(),
            folders: listed
                .common_prefixes
                .into_iter()
                .map(|p| p.to_string())
                .collect(),
        })
    }

    /// The store's clock now (µs since the epoch): the last-modified time of a probe object written at
    /// `probe`. Comparing it with other objects' times needs no agreement between clocks.
    pub async fn clock(&self, probe: &str) -> Result<i64, LakeError> {
        self.put(probe, Vec::new()).await?;
        let meta = self
            .store
            .head(&StorePath::from(probe))
            .await
            .map_err(|source| LakeError::Read {
                path: probe.to_string(),
                source,
            })?;
        Ok(meta.last_modified.timestamp_micros())
    }

    /// Whether an object exists.
    pub async fn exists(&self, path: &str) -> Result<bool, LakeError> {
        match self.store.head(&StorePath::from(path)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(source) => Err(LakeError::Read {
                path: path.to_string(),
                source,
            }),
        }
    }

    /// Copies an object inside the store (server-side where the store can).
    pub async fn copy(&self, from: &str, to: &str) -> Result<(), LakeError> {
        self.store
            .copy(&StorePath::from(from), &StorePath::from(to))
            .await
            .map_err(|source| LakeError::Write {
                path: to.to_string(),
                source,
            })
    }

    /// Deletes an object; one already gone is not an error.
    pub async fn delete(&self, path: &str) -> Result<(), LakeError> {
        match self.store.delete(&StorePath::from(path)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(LakeError::Write {
                path: path.to_string(),
                source,
            }),
        }
    }

    /// Writes a run's manifest (after all its files).
    /// Ids of `table`'s objects of one owner whose newest version in the lake is not deleted and
    /// older than `before` (a `batch_timestamp`, Unix microseconds): after a complete list that started
    /// at `before`, these objects are gone from Stripe. What a warehouse answers with SQL, for a
    /// deployment without one; it reads every file of the table's merchant folder (only the `id`,
    /// `batch_timestamp` and `deleted` columns are decoded), which a complete list (the snapshot
    /// interval, the 30-day cliff) makes rare enough.
    pub async fn stale_ids(
        &self,
        livemode: bool,
        table: &str,
        owner: Owner<'_>,
        before: i64,
    ) -> Result<Vec<String>, LakeError> {
        let folder = format!(
            "{}/{table}/merchant_id={}",
            mode_root(livemode),
            owner.merchant_id
        );
        // Newest (batch_timestamp, deleted) per id; at the same time a deletion wins, as in the
        // warehouse, whose marks only move the version time forward.
        let mut newest: std::collections::HashMap<String, (i64, bool)> = Default::default();
        for entry in self.list_dir(&folder).await?.objects {
            if !entry.path.ends_with(".parquet") {
                continue;
            }
            let bytes = self.read(&entry.path).await?;
            newest_versions(&entry.path, bytes, owner.account, &mut newest)?;
        }
        let mut stale: Vec<String> = newest
            .into_iter()
            .filter(|(_, (ts, deleted))| !deleted && *ts < before)
            .map(|(id, _)| id)
            .collect();
        stale.sort();
        Ok(stale)
    }

    pub async fn write_manifest(
        &self,
        livemode: bool,
        run_id: &str,
        manifest: &serde_json::Value,
    ) -> Result<String, LakeError> {
        let path = format!("{}/_manifests/{run_id}.json", mode_root(livemode));
        let body = serde_json::to_vec_pretty(manifest).unwrap_or_default();
        self.store
            .put(&StorePath::from(path.as_str()), PutPayload::from(body))
            .await
            .map_err(|source| LakeError::Write {
                path: path.clone(),
                source,
            })?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Int64Array, StringArray};
    use bytes::Bytes;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReader;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    #[test]
    fn columns_of_distinct_values_are_written_without_a_dictionary_and_null_ones_plain() {
        let rows = 1_000;
        let ids: Vec<String> = (0..rows).map(|i| format!("ch_{i:08}")).collect();
        let currencies: Vec<&str> = (0..rows).map(|i| ["usd", "eur", "gbp"][i % 3]).collect();
        let amounts: Vec<i64> = (0..rows as i64).map(|i| i % 10 * 100).collect();
        let created: Vec<i64> = (0..rows as i64).map(|i| 1_700_000_000 + i).collect();
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("id", Arc::new(StringArray::from(ids))),
            ("currency", Arc::new(StringArray::from(currencies))),
            ("amount", Arc::new(Int64Array::from(amounts))),
            ("created", Arc::new(Int64Array::from(created))),
            // Too few values to judge: keeps its dictionary.
            (
                "description",
                Arc::new(StringArray::from_iter(
                    (0..rows).map(|i| (i < 10).then(|| format!("d{i}"))),
                )),
            ),
            // Null in every row: plain and uncompressed.
            (
                "review",
                Arc::new(StringArray::from(vec![None::<&str>; rows])),
            ),
        ];
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        let file = Bytes::from(encode(std::slice::from_ref(&batch), "charges").unwrap());
        let reader = SerializedFileReader::new(file.clone()).unwrap();
        let written: Vec<(String, bool, Compression)> = reader
            .metadata()
            .row_group(0)
            .columns()
            .iter()
            .map(|c| {
                (
                    c.column_path().string(),
                    c.dictionary_page_offset().is_some(),
                    c.compression(),
                )
            })
            .collect();
        let zstd = properties().build().compression(&ColumnPath::from("id"));
        let expected = [
            ("id", false, zstd),
            ("currency", true, zstd),
            ("amount", true, zstd),
            ("created", false, zstd),
            ("description", true, zstd),
            ("review", false, Compression::UNCOMPRESSED),
        ]
        .map(|(name, dict, codec)| (name.to_string(), dict, codec));
        assert_eq!(written, expected);
        // Either way the file holds what was given.
        let back = ParquetRecordBatchReader::try_new(file, rows)
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(back, batch);
    }
}
