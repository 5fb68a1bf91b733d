//! The embedded DuckDB warehouse (local mode).

use super::{schema_name, Load, Warehouse, WarehouseError};
use crate::catalog::{
    ColumnType, Dataset, Table, TableKind, BATCH_TIMESTAMP, DELETED, MERCHANT_ID,
};
use crate::convert::table_columns;
use std::collections::HashSet;
use std::path::Path;

pub struct DuckDb {
    conn: duckdb::Connection,
    target: String,
}

fn sql_type(kind: ColumnType) -> &'static str {
    match kind {
        ColumnType::String | ColumnType::Json => "VARCHAR",
        ColumnType::Int64 => "BIGINT",
        ColumnType::Float64 => "DOUBLE",
        ColumnType::Bool => "BOOLEAN",
        ColumnType::Timestamp => "TIMESTAMP",
    }
}

/// A double-quoted identifier.
fn q(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A single-quoted string literal.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl DuckDb {
    pub fn open(path: &Path) -> Result<DuckDb, WarehouseError> {
        let target = path.display().to_string();
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = duckdb::Connection::open(path).map_err(|e| WarehouseError::Open {
            backend: "DuckDB",
            target: target.clone(),
            message: e.to_string(),
        })?;
        Ok(DuckDb { conn, target })
    }

    fn err(action: impl Into<String>) -> impl FnOnce(duckdb::Error) -> WarehouseError {
        let action = action.into();
        move |e| WarehouseError::Sql {
            backend: "DuckDB",
            action,
            message: e.to_string(),
        }
    }

    /// The DuckDB file's path (for messages).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Runs a query returning one row of strings per result row (tests and `status`).
    pub fn query_strings(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, WarehouseError> {
        let mut stmt = self
            .conn
            .prepare(sql)
            .map_err(Self::err(format!("preparing {sql}")))?;
        let mut rows = stmt
            .query([])
            .map_err(Self::err(format!("running {sql}")))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(Self::err("reading rows"))? {
            let n = row.as_ref().column_count();
            let mut vals = Vec::with_capacity(n);
            for i in 0..n {
                let v: duckdb::types::Value = row.get(i).map_err(Self::err("reading a value"))?;
                vals.push(match v {
                    duckdb::types::Value::Null => None,
                    duckdb::types::Value::Text(s) => Some(s),
                    other => Some(format!("{other:?}")),
                });
            }
            out.push(vals);
        }
        Ok(out)
    }

    fn existing_columns(
        &self,
        schema: &str,
        table: &str,
    ) -> Result<HashSet<String>, WarehouseError> {
        let rows = self.query_strings(&format!(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = {} AND table_name = {}",
            lit(schema),
            lit(table)
        ))?;
        Ok(rows
            .into_iter()
            .filter_map(|r| r.into_iter().next().flatten())
            .collect())
    }

    fn prepare_table(&mut self, schema: &str, table: &Table) -> Result<(), WarehouseError> {
        let cols = table_columns(table);
        let existing = self.existing_columns(schema, &table.name)?;
        if existing.is_empty() {
            let defs: Vec<String> = cols
                .iter()
                .map(|(n, k)| format!("{} {}", q(n), sql_type(*k)))
                .collect();
            let sql = format!(
                "CREATE TABLE IF NOT EXISTS {}.{} ({})",
                q(schema),
                q(&table.name),
                defs.join(", ")
            );
            self.conn
                .execute_batch(&sql)
                .map_err(Self::err(format!("creating {schema}.{}", table.name)))?;
        } else {
            for (name, kind) in cols.iter().filter(|(n, _)| !existing.contains(n)) {
                let sql = format!(
                    "ALTER TABLE {}.{} ADD COLUMN {} {}",
                    q(schema),
                    q(&table.name),
                    q(name),
                    sql_type(*kind)
                );
                self.conn.execute_batch(&sql).map_err(Self::err(format!(
                    "adding column {name} to {schema}.{}",
                    table.name
                )))?;
            }
        }
        Ok(())
    }
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Replaces the `data_load_times` rows of a dataset's tables for one merchant.
fn record_load_times(
    tx: &duckdb::Transaction<'_>,
    schema: &str,
    dataset: &Dataset,
    merchant_id: &str,
    as_of: i64,
) -> Result<(), WarehouseError> {
    for table in &dataset.tables {
        tx.execute_batch(&format!(
            "DELETE FROM {s}.data_load_times WHERE table_name = {t} AND merchant_id = {mid}; \
             INSERT INTO {s}.data_load_times VALUES ({t}, {mid}, make_timestamp({landed}), make_timestamp({asof}));",
            s = q(schema),
            t = lit(&table.name),
            mid = lit(merchant_id),
            landed = now_micros(),
            asof = as_of.saturating_mul(1_000_000)
        ))
        .map_err(DuckDb::err("recording data_load_times"))?;
    }
    Ok(())
}

fn file_list(files: &[&std::path::PathBuf]) -> String {
    let items: Vec<String> = files
        .iter()
        .map(|p| lit(&p.display().to_string()))
        .collect();
    format!("[{}]", items.join(", "))
}

impl Warehouse for DuckDb {
    fn prepare(&mut self, livemode: bool, dataset: &Dataset) -> Result<(), WarehouseError> {
        let schema = schema_name(livemode);
        self.conn
            .execute_batch(&format!(
                "CREATE SCHEMA IF NOT EXISTS {s}; CREATE TABLE IF NOT EXISTS {s}.data_load_times (table_name VARCHAR, merchant_id VARCHAR, data_landed TIMESTAMP, data_as_of TIMESTAMP);",
                s = q(schema)
            ))
            .map_err(Self::err(format!("creating schema {schema}")))?;
        for table in &dataset.tables {
            self.prepare_table(schema, table)?;
        }
        Ok(())
    }

    fn load(&mut self, load: &Load<'_>) -> Result<u64, WarehouseError> {
        let schema = schema_name(load.livemode);
        let main = load.dataset.main_table();
        let main_files = load.files_of(main);
        let tx = self
            .conn
            .transaction()
            .map_err(Self::err("starting a transaction"))?;
        let target = format!("{}.{}", q(schema), q(&main.name));
        let cols: Vec<String> = table_columns(main).into_iter().map(|(n, _)| n).collect();
        let col_list = cols.iter().map(|c| q(c)).collect::<Vec<_>>().join(", ");
        let mut changed = 0u64;
        if !main_files.is_empty() {
            // The newest version of each object in this load.
            tx.execute_batch(&format!(
                "CREATE OR REPLACE TEMP TABLE stage AS SELECT {col_list} FROM read_parquet({}, union_by_name = true) \
                 QUALIFY row_number() OVER (PARTITION BY {m}, id ORDER BY {b} DESC) = 1;",
                file_list(&main_files),
                m = q(MERCHANT_ID),
                b = q(BATCH_TIMESTAMP)
            ))
            .map_err(Self::err(format!("staging {}", main.name)))?;
            let set = cols
                .iter()
                .filter(|c| *c != "id" && *c != MERCHANT_ID)
                .map(|c| format!("{} = s.{}", q(c), q(c)))
                .collect::<Vec<_>>()
                .join(", ");
            let values = cols
                .iter()
                .map(|c| format!("s.{}", q(c)))
                .collect::<Vec<_>>()
                .join(", ");
            changed = tx
                .execute(
                    &format!(
                        "MERGE INTO {target} AS t USING stage AS s ON t.{m} = s.{m} AND t.id = s.id \
                         WHEN MATCHED AND s.{b} >= t.{b} THEN UPDATE SET {set} \
                         WHEN NOT MATCHED THEN INSERT ({col_list}) VALUES ({values})",
                        m = q(MERCHANT_ID),
                        b = q(BATCH_TIMESTAMP)
                    ),
                    [],
                )
                .map_err(Self::err(format!("merging into {schema}.{}", main.name)))? as u64;
            for table in load
                .dataset
                .tables
                .iter()
                .filter(|t| t.kind != TableKind::Main)
            {
                let parent = q(table.parent_key.as_deref().unwrap_or("parent_id"));
                let child = format!("{}.{}", q(schema), q(&table.name));
                // Replace the children of every parent whose staged version is now the stored one.
                tx.execute_batch(&format!(
                    "DELETE FROM {child} WHERE ({m}, {parent}) IN (SELECT s.{m}, s.id FROM stage s JOIN {target} t ON t.{m} = s.{m} AND t.id = s.id AND t.{b} = s.{b});",
                    m = q(MERCHANT_ID),
                    b = q(BATCH_TIMESTAMP)
                ))
                .map_err(Self::err(format!("replacing rows of {schema}.{}", table.name)))?;
                let files = load.files_of(table);
                if files.is_empty() {
                    continue;
                }
                let ccols: Vec<String> = table_columns(table)
                    .into_iter()
                    .map(|(n, _)| format!("c.{}", q(&n)))
                    .collect();
                tx.execute_batch(&format!(
                    "INSERT INTO {child} SELECT {} FROM read_parquet({}, union_by_name = true) c JOIN {target} t ON t.{m} = c.{m} AND t.id = c.{parent} AND t.{b} = c.{b};",
                    ccols.join(", "),
                    file_list(&files),
                    m = q(MERCHANT_ID),
                    b = q(BATCH_TIMESTAMP)
                ))
                .map_err(Self::err(format!("inserting into {schema}.{}", table.name)))?;
            }
            tx.execute_batch("DROP TABLE IF EXISTS stage;")
                .map_err(Self::err("dropping the staging table"))?;
        }
        if !load.tombstones.is_empty() {
            // Keep the last version's columns; only the flag and the version's time change. A later
            // load of an older version cannot undo it: its batch_timestamp is not newer.
            let ids: Vec<String> = load.tombstones.iter().map(|id| lit(id)).collect();
            tx.execute(
                &format!(
                    "UPDATE {target} SET {d} = true, {b} = greatest({b}, make_timestamp({ts})) \
                     WHERE {m} = {mid} AND id IN (SELECT unnest([{ids}]))",
                    d = q(DELETED),
                    b = q(BATCH_TIMESTAMP),
                    m = q(MERCHANT_ID),
                    ts = load.tombstone_timestamp,
                    mid = lit(load.merchant_id),
                    ids = ids.join(", ")
                ),
                [],
            )
            .map_err(Self::err(format!(
                "marking deleted rows of {schema}.{}",
                main.name
            )))?;
        }
        record_load_times(&tx, schema, load.dataset, load.merchant_id, load.as_of)?;
        crate::failpoint::point("load");
        tx.commit().map_err(Self::err("committing the load"))?;
        Ok(changed)
    }

    fn record_freshness(
        &mut self,
        livemode: bool,
        datasets: &[&Dataset],
        merchant_id: &str,
        as_of: i64,
    ) -> Result<(), WarehouseError> {
        let tx = self
            .conn
            .transaction()
            .map_err(Self::err("starting a transaction"))?;
        for d in datasets {
            record_load_times(&tx, schema_name(livemode), d, merchant_id, as_of)?;
        }
        tx.commit().map_err(Self::err("committing data_load_times"))
    }

    fn stale_ids(
        &mut self,
        livemode: bool,
        dataset: &Dataset,
        merchant_id: &str,
        before: i64,
    ) -> Result<Vec<String>, WarehouseError> {
        let sql = format!(
            "SELECT id FROM {}.{} WHERE {m} = {} AND NOT coalesce({d}, false) AND {b} < make_timestamp({before}) ORDER BY id",
            q(schema_name(livemode)),
            q(&dataset.main_table().name),
            lit(merchant_id),
            m = q(MERCHANT_ID),
            d = q(DELETED),
            b = q(BATCH_TIMESTAMP),
        );
        Ok(self
            .query_strings(&sql)?
            .into_iter()
            .filter_map(|r| r.into_iter().next().flatten())
            .collect())
    }

    fn count(
        &mut self,
        livemode: bool,
        table: &str,
        merchant_id: &str,
    ) -> Result<u64, WarehouseError> {
        let sql = format!(
            "SELECT count(*) FROM {}.{} WHERE {} = {}",
            q(schema_name(livemode)),
            q(table),
            q(MERCHANT_ID),
            lit(merchant_id)
        );
        self.conn
            .query_row(&sql, [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(Self::err(format!("counting {table}")))
    }
}
