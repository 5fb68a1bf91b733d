//! Warehouses: where the lake's Parquet files are merged into tables named like Stripe's.
//!
//! One trait, one behaviour for every backend: schemas `stripe` (live) and `stripe_testmode` (test);
//! tables and columns from the catalog, added to but never dropped; loads that are idempotent and keep
//! the newest version of each `(merchant_id, id)`; metadata and child rows replaced per parent object
//! whose new version won; and `data_load_times`.

#[cfg(feature = "duckdb")]
pub mod duckdb;

use crate::catalog::{Dataset, Table};
use std::path::PathBuf;

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
    /// Parquet files per table name.
    pub files: Vec<(String, PathBuf)>,
    /// The data is complete up to this instant (Unix seconds), for `data_load_times`.
    pub as_of: i64,
    /// Objects known to be gone from Stripe without a final version to load (a complete re-list did not
    /// return them, or Stripe answered a fetch with "deleted"): their rows are kept, with `deleted` set.
    pub tombstones: Vec<String>,
    /// The `batch_timestamp` tombstoned rows get (when the deletion was observed).
    pub tombstone_timestamp: i64,
}

impl Load<'_> {
    pub fn files_of(&self, table: &Table) -> Vec<&PathBuf> {
        self.files
            .iter()
            .filter(|(t, _)| *t == table.name)
            .map(|(_, p)| p)
            .collect()
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

/// A warehouse backend.
pub trait Warehouse: Send {
    /// Creates the schema and the dataset's tables, and adds catalog columns that the tables lack.
    fn prepare(&mut self, livemode: bool, dataset: &Dataset) -> Result<(), WarehouseError>;
    /// Merges a load in one transaction; returns the number of main-table rows inserted or updated.
    fn load(&mut self, load: &Load<'_>) -> Result<u64, WarehouseError>;
    /// Records in `data_load_times`, in one transaction, that these datasets are complete up to `as_of`
    /// (the change feed found nothing new for them).
    fn record_freshness(
        &mut self,
        livemode: bool,
        datasets: &[&Dataset],
        merchant_id: &str,
        as_of: i64,
    ) -> Result<(), WarehouseError>;
    /// Ids of the dataset's rows for one merchant that are not deleted and older than `before` (a
    /// `batch_timestamp`): after a complete re-list that started at `before`, these objects are gone.
    fn stale_ids(
        &mut self,
        livemode: bool,
        dataset: &Dataset,
        merchant_id: &str,
        before: i64,
    ) -> Result<Vec<String>, WarehouseError>;
    /// Rows of a table for one merchant (for summaries and `status`).
    fn count(
        &mut self,
        livemode: bool,
        table: &str,
        merchant_id: &str,
    ) -> Result<u64, WarehouseError>;
}

/// No warehouse: the Parquet lake is the output (for users who query the files with Athena, Spark or
/// DuckDB themselves). Loads succeed without doing anything, so the slice protocol is unchanged. It keeps
/// no rows, so it knows no stale ids: objects that vanish without a delete event are only detected with a
/// warehouse.
#[derive(Debug, Default)]
pub struct LakeOnly;

impl Warehouse for LakeOnly {
    fn prepare(&mut self, _: bool, _: &Dataset) -> Result<(), WarehouseError> {
        Ok(())
    }
    fn load(&mut self, _: &Load<'_>) -> Result<u64, WarehouseError> {
        Ok(0)
    }
    fn record_freshness(
        &mut self,
        _: bool,
        _: &[&Dataset],
        _: &str,
        _: i64,
    ) -> Result<(), WarehouseError> {
        Ok(())
    }
    fn stale_ids(
        &mut self,
        _: bool,
        _: &Dataset,
        _: &str,
        _: i64,
    ) -> Result<Vec<String>, WarehouseError> {
        Ok(Vec::new())
    }
    fn count(&mut self, _: bool, _: &str, _: &str) -> Result<u64, WarehouseError> {
        Ok(0)
    }
}
