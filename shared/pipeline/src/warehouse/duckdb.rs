//! The embedded DuckDB warehouse (local mode). It stages each table's new files with `read_parquet`
//! straight from the local lake and merges them with the shared SQL of [`super::sql`].

use super::sql::{self, Dialect, Staging};
use super::{schema_name, Load, Warehouse, WarehouseError};
use crate::catalog::{Dataset, Table};
use crate::convert::table_columns;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

const BACKEND: &str = "DuckDB";

const DIALECT: Dialect = Dialect {
    float: "DOUBLE",
    ..sql::STANDARD
};

pub struct DuckDb {
    /// One connection, one call at a time: a DuckDB file has one writer, and the `duckdb` crate is
    /// blocking, so every call runs on a blocking thread with the connection locked ([`DuckDb::call`]).
    conn: Arc<Mutex<duckdb::Connection>>,
    target: String,
    /// What [`Warehouse::prepare`] knows of the tables (see [`Known`]).
    known: Arc<Mutex<Known>>,
}

/// The columns of the schemas' tables, read once per schema and kept up to date by this connection's
/// own DDL: the file has no other writer while it is open. Asking DuckDB each time cost more than
/// the loads: its `information_schema.columns` lists every column of every table whatever the filter,
/// and every slice prepares its tables (the demo: 4,600 queries of ~14,000 rows, a third of its time).
#[derive(Default)]
struct Known {
    schemas: HashSet<String>,
    /// Columns by `schema.table`.
    tables: HashMap<String, HashSet<String>>,
}

fn err(action: impl Into<String>) -> impl FnOnce(duckdb::Error) -> WarehouseError {
    let action = action.into();
    move |e| WarehouseError::Sql {
        backend: BACKEND,
        action,
        message: e.to_string(),
    }
}

impl DuckDb {
    pub fn open(path: &Path) -> Result<DuckDb, WarehouseError> {
        let target = path.display().to_string();
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = duckdb::Connection::open(path).map_err(|e| WarehouseError::Open {
            backend: BACKEND,
            target: target.clone(),
            message: explain_open_error(e.to_string()),
        })?;
        pin_time_zone(&conn)?;
        Ok(DuckDb {
            conn: Arc::new(Mutex::new(conn)),
            target,
            known: Arc::default(),
        })
    }

    /// The DuckDB file's path (for messages).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Runs a query on the calling thread, which it blocks (tests and tools outside a runtime); one row
    /// of strings per result row. The engine uses [`Warehouse::query_strings`].
    pub fn query_strings(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, WarehouseError> {
        query_strings(&self.conn.lock(), sql)
    }

    /// Runs `work` with the connection on a blocking thread. A panic inside is a bug and goes on to
    /// the engine's task boundary, which reports it as one.
    async fn call<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut duckdb::Connection) -> Result<T, WarehouseError> + Send + 'static,
    ) -> Result<T, WarehouseError> {
        let conn = Arc::clone(&self.conn);
        match tokio::task::spawn_blocking(move || work(&mut conn.lock())).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(WarehouseError::Sql {
                backend: BACKEND,
                action: "running a DuckDB call".into(),
                message: e.to_string(),
            }),
        }
    }
}

/// Sessions work in UTC whatever the machine's time zone. The prebuilt DuckDB has ICU, which makes
/// `TIMESTAMPTZ` arithmetic, casts to `TIMESTAMP` and `current_timestamp` follow the `TimeZone`
/// setting (the machine's zone by default); the catalog's timestamps are UTC, as in Stripe's data.
/// A DuckDB without ICU (`duckdb-bundled`) has no such setting and is always UTC.
fn pin_time_zone(conn: &duckdb::Connection) -> Result<(), WarehouseError> {
    let setting = "select name from duckdb_settings() where name = 'TimeZone'";
    if !query_strings(conn, setting)?.is_empty() {
        execute(conn, "setting the time zone to UTC", "SET TimeZone = 'UTC'")?;
    }
    Ok(())
}

fn query_strings(
    conn: &duckdb::Connection,
    sql: &str,
) -> Result<Vec<Vec<Option<String>>>, WarehouseError> {
    let mut stmt = conn.prepare(sql).map_err(err(format!("preparing {sql}")))?;
    let mut rows = stmt.query([]).map_err(err(format!("running {sql}")))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(err("reading rows"))? {
        let n = row.as_ref().column_count();
        let mut vals = Vec::with_capacity(n);
        for i in 0..n {
            let v: duckdb::types::Value = row.get(i).map_err(err("reading a value"))?;
            vals.push(match v {
                duckdb::types::Value::Null => None,
                duckdb::types::Value::Text(s) => Some(s),
                other => Some(text(other)),
            });
        }
        out.push(vals);
    }
    Ok(out)
}

/// A value that is not text, as SQL would cast it: numbers and booleans as written; other types (the
/// callers cast those in SQL) in the driver's notation.
fn text(value: duckdb::types::Value) -> String {
    use duckdb::types::Value as V;
    match value {
        V::Boolean(b) => b.to_string(),
        V::TinyInt(n) => n.to_string(),
        V::SmallInt(n) => n.to_string(),
        V::Int(n) => n.to_string(),
        V::BigInt(n) => n.to_string(),
        V::HugeInt(n) => n.to_string(),
        V::UTinyInt(n) => n.to_string(),
        V::USmallInt(n) => n.to_string(),
        V::UInt(n) => n.to_string(),
        V::UBigInt(n) => n.to_string(),
        V::Float(x) => x.to_string(),
        V::Double(x) => x.to_string(),
        other => format!("{other:?}"),
    }
}

fn execute(
    conn: &duckdb::Connection,
    action: impl Into<String>,
    sql: &str,
) -> Result<(), WarehouseError> {
    conn.execute_batch(sql).map_err(err(action))
}

fn prepare_table(
    conn: &duckdb::Connection,
    schema: &str,
    table: &Table,
    known: &mut Known,
) -> Result<Vec<String>, WarehouseError> {
    let existing = known
        .tables
        .entry(format!("{schema}.{}", table.name))
        .or_default();
    let mut added = Vec::new();
    for ddl in DIALECT.complete_table(schema, table, existing) {
        if let Err(e) = execute(conn, ddl.action, &ddl.sql) {
            // Part of the DDL may have run: the next call reads the schema again.
            known.schemas.remove(schema);
            return Err(e);
        }
        added.extend(ddl.added);
    }
    existing.extend(table_columns(table).into_iter().map(|(name, _)| name));
    Ok(added)
}

/// Creates the schema if this connection has not seen it yet, and reads what tables and columns it has.
fn learn_schema(
    conn: &duckdb::Connection,
    schema: &str,
    known: &mut Known,
) -> Result<(), WarehouseError> {
    if known.schemas.contains(schema) {
        return Ok(());
    }
    execute(
        conn,
        format!("creating schema {schema}"),
        &DIALECT.create_schema(schema).join("; "),
    )?;
    let prefix = format!("{schema}.");
    known.tables.retain(|key, _| !key.starts_with(&prefix));
    for row in query_strings(conn, &DIALECT.schema_columns_query(schema))? {
        if let [Some(table), Some(column)] = &row[..] {
            known
                .tables
                .entry(format!("{schema}.{table}"))
                .or_default()
                .insert(column.clone());
        }
    }
    known.schemas.insert(schema.to_string());
    Ok(())
}

/// Adds the fix to DuckDB's message for a file written by a newer DuckDB: earlier versions of this
/// project linked DuckDB 2.0, whose files the linked DuckDB 1.5.6 cannot read.
fn explain_open_error(message: String) -> String {
    if message.contains("newer version of DuckDB") {
        format!(
            "{message}\nTo fix: this file was written by a newer DuckDB than the DuckDB 1.5.6 this build links \
             (earlier versions of this project used DuckDB 2.0). Move the file away and sync again; to load \
             every table in full, also move away the state directory beside it.",
        )
    } else {
        message
    }
}

/// A batch of SQL and what it does, for the error if it fails.
struct Step {
    action: String,
    sql: String,
}

/// Runs statements in a transaction, returning the row count of the one marked `counts`.
fn run(
    tx: &duckdb::Transaction<'_>,
    action: &str,
    statements: &[sql::Statement],
) -> Result<u64, WarehouseError> {
    let mut changed = 0;
    for stmt in statements {
        let n = tx.execute(&stmt.sql, []).map_err(err(action.to_string()))?;
        if stmt.counts {
            changed = n as u64;
        }
    }
    Ok(changed)
}

#[async_trait::async_trait]
impl Warehouse for DuckDb {
    fn dialect(&self) -> &'static Dialect {
        &DIALECT
    }

    fn describe(&self) -> String {
        format!("{BACKEND} {}", self.target)
    }

    async fn prepare(
        &self,
        livemode: bool,
        dataset: &Dataset,
    ) -> Result<Vec<String>, WarehouseError> {
        let schema = schema_name(livemode);
        let tables = dataset.tables.clone();
        let known = Arc::clone(&self.known);
        self.call(move |conn| {
            let mut known = known.lock();
            learn_schema(conn, schema, &mut known)?;
            let mut added = Vec::new();
            for table in &tables {
                added.extend(prepare_table(conn, schema, table, &mut known)?);
            }
            Ok(added)
        })
        .await
    }

    /// The SQL is written here, on the caller's thread; the blocking thread only runs it.
    async fn load(&self, load: &Load<'_>) -> Result<u64, WarehouseError> {
        let schema = schema_name(load.livemode);
        let mut staging = Vec::new();
        let mut staged: Vec<&str> = Vec::new();
        for (table, files) in load.staged_tables() {
            let action = format!("staging {schema}.{}", table.name);
            let mut paths = Vec::new();
            for f in files {
                let local = load.lake.local_path(f).ok_or_else(|| WarehouseError::Sql {
                    backend: BACKEND,
                    action: action.clone(),
                    message: format!(
                        "DuckDB reads the lake from a local directory, and {f} is not in one"
                    ),
                })?;
                paths.push(sql::lit(&local.display().to_string()));
            }
            // By name, so files written before a column was added load too (the column empty).
            let sql = format!(
                "DROP TABLE IF EXISTS {stage}; CREATE TEMP TABLE {stage} AS SELECT * FROM {target} LIMIT 0; \
                 INSERT INTO {stage} BY NAME SELECT * FROM read_parquet([{}], union_by_name = true)",
                paths.join(", "),
                stage = DIALECT.stage_table(schema, &table.name, Staging::Temporary),
                target = DIALECT.qualified(schema, &table.name),
            );
            staging.push(Step { action, sql });
            staged.push(&table.name);
        }
        let main = &load.dataset.main_table().name;
        let merge_action = format!("merging into {schema}.{main}");
        let merge = DIALECT
            .merge(schema, load.dataset, &staged, Staging::Temporary)
            .into_statements();
        let mut after = Vec::new();
        for sql in DIALECT.tombstones(
            schema,
            main,
            load.merchant_id,
            &load.tombstones,
            load.tombstone_timestamp,
        ) {
            after.push(Step {
                action: format!("marking deleted rows of {schema}.{main}"),
                sql,
            });
        }
        after.push(Step {
            action: "recording data_load_times".into(),
            sql: DIALECT
                .load_times(
                    schema,
                    load.dataset,
                    load.merchant_id,
                    super::now_micros(),
                    load.as_of,
                )
                .join("; "),
        });
        self.call(move |conn| {
            let tx = conn.transaction().map_err(err("starting a transaction"))?;
            for step in &staging {
                tx.execute_batch(&step.sql).map_err(err(&step.action))?;
            }
            let changed = run(&tx, &merge_action, &merge)?;
            for step in &after {
                tx.execute_batch(&step.sql).map_err(err(&step.action))?;
            }
            crate::failpoint::point("load");
            tx.commit().map_err(err("committing the load"))?;
            Ok(changed)
        })
        .await
    }

    async fn record_freshness(
        &self,
        livemode: bool,
        datasets: &[&Dataset],
        merchant_id: &str,
        as_of: i64,
    ) -> Result<(), WarehouseError> {
        let statements = DIALECT
            .freshness(livemode, datasets, merchant_id, as_of)
            .join("; ");
        self.call(move |conn| {
            let tx = conn.transaction().map_err(err("starting a transaction"))?;
            tx.execute_batch(&statements)
                .map_err(err("recording data_load_times"))?;
            tx.commit().map_err(err("committing data_load_times"))
        })
        .await
    }

    async fn query_strings(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, WarehouseError> {
        let sql = sql.to_string();
        self.call(move |conn| query_strings(conn, &sql)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(db: &DuckDb, sql: &str) -> Option<String> {
        db.query_strings(sql).unwrap().remove(0).remove(0)
    }

    #[test]
    fn links_the_pinned_prebuilt_duckdb_and_works_in_utc() {
        let dir = tempfile::tempdir().unwrap();
        let db = DuckDb::open(&dir.path().join("t.duckdb")).unwrap();
        // With `duckdb-bundled` the version is the crate's own; by default it is the pinned library.
        if cfg!(not(feature = "duckdb-bundled")) {
            assert_eq!(scalar(&db, "select version()").as_deref(), Some("v1.5.6"));
            assert_eq!(
                scalar(&db, "select current_setting('TimeZone')").as_deref(),
                Some("UTC")
            );
        }
        // Parquet is built in: nothing is downloaded at run time.
        let file = dir.path().join("t.parquet").display().to_string();
        execute(
            &db.conn.lock(),
            "writing parquet",
            &format!("copy (select 42 as n) to '{file}' (format parquet)"),
        )
        .unwrap();
        assert_eq!(
            scalar(
                &db,
                &format!("select n::varchar from read_parquet('{file}')")
            )
            .as_deref(),
            Some("42")
        );
    }

    #[test]
    fn a_file_of_a_newer_duckdb_is_explained_and_other_errors_are_left_as_they_are() {
        let newer = "IO Error: ... The database file was created with a newer version of DuckDB.";
        let message = explain_open_error(newer.into());
        assert!(message.starts_with(newer), "{message}");
        assert!(
            message.contains("Move the file away and sync again"),
            "{message}"
        );
        assert_eq!(
            explain_open_error("IO Error: permission denied".into()),
            "IO Error: permission denied"
        );
    }
}
