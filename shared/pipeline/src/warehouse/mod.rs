//! Warehouses: where the lake's Parquet files are merged into tables named like Stripe's.
//!
//! One trait, one behaviour for every backend: schemas `stripe` (live) and `stripe_testmode` (test);
//! tables and columns from the catalog, added to but never dropped; loads that are idempotent and keep
//! the newest version of each `(merchant_id, id)`; metadata and child rows replaced per parent object
//! whose new version won; and `data_load_times`.

#[cfg(feature = "duckdb")]
pub mod duckdb;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redshift")]
pub mod redshift;
#[cfg(feature = "snowflake")]
pub mod snowflake;
pub mod sql;

use crate::catalog::{Dataset, Owner, Table};
use crate::lake::Lake;

/// The warehouse schema of a mode.
pub fn schema_name(livemode: bool) -> &'static str {
    if livemode {
        "stripe"
    } else {
        "stripe_testmode"
    }
}

/// One load: a dataset's new files for one account and mode.
#[derive(Debug, Clone)]
pub struct Load<'a> {
    pub dataset: &'a Dataset,
    pub livemode: bool,
    pub merchant_id: &'a str,
    /// The lake the files are in.
    pub lake: &'a Lake,
    /// Parquet files per table name: `(table, path in the lake)`.
    pub files: Vec<(String, String)>,
    /// The data is complete up to this instant (Unix seconds), for `data_load_times`.
    pub as_of: i64,
    /// Objects known to be gone from Stripe without a final version to load (a complete re-list did not
    /// return them, or Stripe answered a fetch with "deleted"): their rows are kept, with `deleted` set.
    pub tombstones: Vec<String>,
    /// The `batch_timestamp` tombstoned rows get (when the deletion was observed).
    pub tombstone_timestamp: i64,
}

impl Load<'_> {
    pub fn files_of(&self, table: &Table) -> Vec<&String> {
        self.files
            .iter()
            .filter(|(t, _)| *t == table.name)
            .map(|(_, p)| p)
            .collect()
    }

    /// The dataset's tables that have new files, with their files, in the catalog's order: what a
    /// backend stages before the merge.
    pub fn staged_tables(&self) -> impl Iterator<Item = (&Table, Vec<&String>)> {
        self.dataset
            .tables
            .iter()
            .map(|t| (t, self.files_of(t)))
            .filter(|(_, files)| !files.is_empty())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    #[error("cannot open the {backend} warehouse at {target}: {message}")]
    Open {
        backend: &'static str,
        target: String,
        message: String,
    },
    #[error("{backend} failed while {action}: {message}")]
    Sql {
        backend: &'static str,
        action: String,
        message: String,
    },
}

/// What a process has made exist in the warehouse (datasets' table shapes in a schema, stages):
/// backends whose DDL costs round trips (Redshift, Snowflake) check each once per process, since the
/// catalog is fixed for a build (a Lambda container keeps this).
#[derive(Debug, Default)]
pub(crate) struct Prepared(parking_lot::Mutex<std::collections::HashSet<String>>);

impl Prepared {
    /// The key of a dataset's table shapes in a schema (`schema/table:columns/…`).
    pub fn shape(schema: &str, dataset: &Dataset) -> String {
        dataset.tables.iter().fold(schema.to_string(), |k, t| {
            format!("{k}/{}:{}", t.name, t.columns.len())
        })
    }

    pub fn contains(&self, key: &str) -> bool {
        self.0.lock().contains(key)
    }

    pub fn insert(&self, key: String) {
        self.0.lock().insert(key);
    }
}

/// Unix microseconds now (`data_landed`).
pub(crate) fn now_micros() -> i64 {
    use crate::clock::Clock;
    crate::clock::SystemClock.now_micros()
}

/// A warehouse backend: the port the engine loads through.
///
/// Async, and shared by every task of a run (`&self`): the engine never serialises warehouse work
/// itself. Each adapter decides what may run at once and says why (one DuckDB connection, one PostgreSQL
/// session, Redshift's serializable isolation); blocking clients run their calls on blocking threads
/// inside the adapter, never on the engine's.
#[async_trait::async_trait]
pub trait Warehouse: Send + Sync {
    /// The backend and where it is (`PostgreSQL user@host:5432/db`), for messages.
    fn describe(&self) -> String;
    /// Creates the schema and the dataset's tables, and adds catalog columns that the tables lack.
    /// Returns the columns added to existing tables (`schema.table.column`), for notifications.
    async fn prepare(
        &self,
        livemode: bool,
        dataset: &Dataset,
    ) -> Result<Vec<String>, WarehouseError>;
    /// Merges a load in one transaction; returns the number of main-table rows inserted or updated.
    async fn load(&self, load: &Load<'_>) -> Result<u64, WarehouseError>;
    /// Records in `data_load_times`, in one transaction, that these datasets are complete up to `as_of`
    /// (the change feed found nothing new for them).
    async fn record_freshness(
        &self,
        livemode: bool,
        datasets: &[&Dataset],
        merchant_id: &str,
        as_of: i64,
    ) -> Result<(), WarehouseError>;
    /// Runs a query; every value comes back as text (`NULL` as `None`). For `status` and tests.
    async fn query_strings(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, WarehouseError>;

    /// Its SQL dialect, in which the queries below are written (names, and how they are cased). A
    /// backend without SQL of its own keeps [`sql::STANDARD`].
    fn dialect(&self) -> &'static sql::Dialect {
        &sql::STANDARD
    }

    /// The longest text value (in bytes) its text columns hold, when they have a limit: longer values
    /// would fail every load of their dataset, so the engine keeps their rows out of the load
    /// (`engine::quarantine`).
    fn max_text_bytes(&self) -> Option<usize> {
        None
    }

    /// Whether it keeps the rows it loads, and so can answer [`Warehouse::stale_ids`]; without a
    /// warehouse the engine asks the lake ([`crate::lake::Lake::stale_ids`]).
    fn keeps_rows(&self) -> bool {
        true
    }

    /// Ids of the dataset's rows of one owner that are not deleted and older than `before` (a
    /// `batch_timestamp`, Unix microseconds): after a complete re-list that started at `before`, these
    /// objects are gone.
    async fn stale_ids(
        &self,
        livemode: bool,
        dataset: &Dataset,
        owner: Owner<'_>,
        before: i64,
    ) -> Result<Vec<String>, WarehouseError> {
        let query = self.dialect().stale_ids(
            schema_name(livemode),
            &dataset.main_table().name,
            owner,
            before,
        );
        Ok(self
            .query_strings(&query)
            .await?
            .into_iter()
            .filter_map(|r| r.into_iter().next().flatten())
            .collect())
    }

    /// Rows of a table for one merchant (for summaries and `status`).
    async fn count(
        &self,
        livemode: bool,
        table: &str,
        merchant_id: &str,
    ) -> Result<u64, WarehouseError> {
        let query = self
            .dialect()
            .count(schema_name(livemode), table, merchant_id);
        let rows = self.query_strings(&query).await?;
        let text = rows.first().and_then(|r| r.first().cloned().flatten());
        text.as_deref()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| WarehouseError::Sql {
                backend: "warehouse",
                action: format!("counting {table}"),
                message: format!("unexpected answer {text:?}"),
            })
    }
}

/// No warehouse: the Parquet lake is the output (for users who query the files with Athena, Spark or
/// DuckDB themselves). Loads succeed without doing anything, so the slice protocol is unchanged. It keeps
/// no rows: objects that vanish without a delete event are found in the lake instead
/// ([`Warehouse::keeps_rows`]).
#[derive(Debug, Default)]
pub struct LakeOnly;

#[async_trait::async_trait]
impl Warehouse for LakeOnly {
    fn describe(&self) -> String {
        "no warehouse (Parquet lake only)".into()
    }
    fn keeps_rows(&self) -> bool {
        false
    }
    async fn prepare(&self, _: bool, _: &Dataset) -> Result<Vec<String>, WarehouseError> {
        Ok(Vec::new())
    }
    async fn load(&self, _: &Load<'_>) -> Result<u64, WarehouseError> {
        Ok(0)
    }
    async fn record_freshness(
        &self,
        _: bool,
        _: &[&Dataset],
        _: &str,
        _: i64,
    ) -> Result<(), WarehouseError> {
        Ok(())
    }
    async fn stale_ids(
        &self,
        _: bool,
        _: &Dataset,
        _: Owner<'_>,
        _: i64,
    ) -> Result<Vec<String>, WarehouseError> {
        Ok(Vec::new())
    }
    async fn count(&self, _: bool, _: &str, _: &str) -> Result<u64, WarehouseError> {
        Ok(0)
    }
    async fn query_strings(&self, _: &str) -> Result<Vec<Vec<Option<String>>>, WarehouseError> {
        Ok(Vec::new())
    }
}
