//! The PostgreSQL warehouse: each table's new Parquet files are read from the lake and sent with binary
//! `COPY` into a session-local staging table, then merged with the shared SQL of [`super::sql`], all in
//! one transaction. Any PostgreSQL from 9.5 on works (no `MERGE` needed).
//!
//! The client is async (tokio-postgres). One session serves one call at a time: a transaction belongs to
//! the session, so a query sent beside a running load would run inside it.

use super::sql::{self, Dialect, Staging};
use super::{schema_name, Load, Warehouse, WarehouseError};
use crate::catalog::{Dataset, Table, TableKind, MERCHANT_ID};
use crate::config::Secret;
use arrow::array::{Array, AsArray, RecordBatch, RecordBatchReader};
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit, TimestampMicrosecondType};
use bytes::{BufMut, BytesMut};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::{Client, SimpleQueryMessage, Transaction};

const BACKEND: &str = "PostgreSQL";

/// Catalog types as PostgreSQL columns.
const DIALECT: Dialect = Dialect {
    text: "TEXT",
    ..sql::STANDARD
};

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01), for binary timestamps.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

pub struct Postgres {
    /// The session, locked for each call (see the module's doc).
    client: Mutex<Client>,
    /// `user@host:port/database`, for messages (never the password).
    target: String,
}

/// The message of a PostgreSQL error: the server's own text (with detail and hint) when it sent one.
fn message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut m = format!("{} ({})", db.message(), db.code().code());
            if let Some(d) = db.detail() {
                m.push_str(&format!("; detail: {d}"));
            }
            if let Some(h) = db.hint() {
                m.push_str(&format!("; hint: {h}"));
            }
            m
        }
        None => e.to_string(),
    }
}

fn sql_err(action: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> WarehouseError {
    let action = action.into();
    move |e| WarehouseError::Sql {
        backend: BACKEND,
        action,
        message: message(&e),
    }
}

fn other_err(action: impl Into<String>, message: impl ToString) -> WarehouseError {
    WarehouseError::Sql {
        backend: BACKEND,
        action: action.into(),
        message: message.to_string(),
    }
}

/// rustls with the webpki roots, plus the certificates of `ca_file` (a PEM bundle such as Amazon RDS's).
fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("cannot read ca_file {}: {e}", path.display()))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
        }
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}

/// `user@host:port/database` of a connection configuration.
fn describe(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{host}:{port}/{}",
        config.get_user().unwrap_or("?"),
        config
            .get_dbname()
            .unwrap_or_else(|| config.get_user().unwrap_or("?"))
    )
}

impl Postgres {
    /// Connects (TLS as the URL's `sslmode` says: `disable`, `prefer` (the default) or `require`; certificates
    /// are always verified when TLS is used) and checks the connection with one query.
    pub async fn connect(url: &Secret, ca_file: Option<&Path>) -> Result<Postgres, WarehouseError> {
        let open = |target: &str, message: String| WarehouseError::Open {
            backend: BACKEND,
            target: target.to_string(),
            message,
        };
        // The parser's messages name the option, never the URL's password.
        let mut config: tokio_postgres::Config = url.expose().parse().map_err(|e| {
            open(
                "the configured URL",
                format!("the connection URL is invalid ({e}); expected postgres://user:password@host:5432/database?sslmode=require"),
            )
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        let target = describe(&config);
        let tls = tls_config(ca_file).map_err(|m| open(&target, m))?;
        let (client, connection) = config
            .connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
            .await
            .map_err(|e| {
                open(
                    &target,
                    format!(
                        "{}; check the host, port, user, password, database and sslmode of the URL, and that the server accepts connections from here",
                        message(&e)
                    ),
                )
            })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %message(&e), "PostgreSQL connection closed");
            }
        });
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| open(&target, message(&e)))?;
        Ok(Postgres {
            client: Mutex::new(client),
            target,
        })
    }

    /// `user@host:port/database`.
    pub fn target(&self) -> &str {
        &self.target
    }
}

async fn prepare_table(
    client: &Client,
    schema: &str,
    table: &Table,
) -> Result<Vec<String>, WarehouseError> {
    let existing: HashSet<String> = query(client, &DIALECT.columns_query(schema, &table.name))
        .await?
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect();
    let mut added = Vec::new();
    for ddl in DIALECT.complete_table(schema, table, &existing) {
        client
            .batch_execute(&ddl.sql)
            .await
            .map_err(sql_err(&ddl.action))?;
        added.extend(ddl.added);
    }
    if existing.is_empty() {
        // The merge looks rows up by object (main tables) or by parent (the others).
        let key = match table.kind {
            TableKind::Main => "id".to_string(),
            _ => table
                .parent_key
                .clone()
                .unwrap_or_else(|| "parent_id".into()),
        };
        client
            .batch_execute(&format!(
                "CREATE INDEX IF NOT EXISTS {} ON {} ({}, {})",
                sql::q(&format!("{}_by_object", table.name)),
                DIALECT.qualified(schema, &table.name),
                sql::q(MERCHANT_ID),
                sql::q(&key)
            ))
            .await
            .map_err(sql_err(format!("indexing {schema}.{}", table.name)))?;
    }
    Ok(added)
}

async fn load_in_transaction(client: &mut Client, load: &Load<'_>) -> Result<u64, WarehouseError> {
    let schema = schema_name(load.livemode);
    let tx = client
        .transaction()
        .await
        .map_err(sql_err("starting a transaction"))?;
    let mut staged: Vec<&str> = Vec::new();
    for (table, files) in load.staged_tables() {
        let action = format!("staging {schema}.{}", table.name);
        tx.batch_execute(
            &DIALECT
                .create_stage(schema, &table.name, Staging::Temporary)
                .join("; "),
        )
        .await
        .map_err(sql_err(&action))?;
        for path in files {
            let bytes = load
                .lake
                .read(path)
                .await
                .map_err(|e| other_err(&action, e))?;
            copy_parquet(&tx, &table.name, bytes)
                .await
                .map_err(|m| other_err(format!("{action} from {path}"), m))?;
        }
        staged.push(&table.name);
    }
    let mut changed = 0;
    for stmt in DIALECT
        .merge(schema, load.dataset, &staged, Staging::Temporary)
        .into_statements()
    {
        let n = tx
            .execute(stmt.sql.as_str(), &[])
            .await
            .map_err(sql_err(format!(
                "merging into {schema}.{}",
                load.dataset.name
            )))?;
        if stmt.counts {
            changed = n;
        }
    }
    let main = &load.dataset.main_table().name;
    if !load.tombstones.is_empty() {
        for update in DIALECT.tombstones(
            schema,
            main,
            load.merchant_id,
            &load.tombstones,
            load.tombstone_timestamp,
        ) {
            tx.batch_execute(&update)
                .await
                .map_err(sql_err(format!("marking deleted rows of {schema}.{main}")))?;
        }
    }
    let times = DIALECT.load_times(
        schema,
        load.dataset,
        load.merchant_id,
        super::now_micros(),
        load.as_of,
    );
    tx.batch_execute(&times.join("; "))
        .await
        .map_err(sql_err("recording data_load_times"))?;
    crate::failpoint::point("load");
    tx.commit().await.map_err(sql_err("committing the load"))?;
    Ok(changed)
}

/// Runs a query and returns every value as text (the simple protocol's form).
async fn query(client: &Client, sql: &str) -> Result<Vec<Vec<Option<String>>>, WarehouseError> {
    let messages = client
        .simple_query(sql)
        .await
        .map_err(sql_err(format!("running {sql}")))?;
    Ok(messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

/// One value of a staged row, borrowed from an Arrow array.
#[derive(Debug)]
enum Cell<'a> {
    Null,
    Text(&'a str),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Unix microseconds.
    Micros(i64),
}

impl ToSql for Cell<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Cell::Null => Ok(IsNull::Yes),
            Cell::Text(s) => s.to_sql(ty, out),
            Cell::Int(v) => v.to_sql(ty, out),
            Cell::Float(v) => v.to_sql(ty, out),
            Cell::Bool(v) => v.to_sql(ty, out),
            Cell::Micros(v) => {
                out.put_i64(v - PG_EPOCH_MICROS);
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(ty: &Type) -> bool {
        [
            Type::TEXT,
            Type::INT8,
            Type::FLOAT8,
            Type::BOOL,
            Type::TIMESTAMP,
        ]
        .contains(ty)
    }

    to_sql_checked!();
}

/// The wire type of an Arrow column of the lake.
fn wire_type(data_type: &DataType) -> Option<Type> {
    Some(match data_type {
        DataType::Utf8 => Type::TEXT,
        DataType::Int64 => Type::INT8,
        DataType::Float64 => Type::FLOAT8,
        DataType::Boolean => Type::BOOL,
        DataType::Timestamp(TimeUnit::Microsecond, None) => Type::TIMESTAMP,
        _ => return None,
    })
}

fn cell<'a>(array: &'a dyn Array, row: usize) -> Cell<'a> {
    if array.is_null(row) {
        return Cell::Null;
    }
    match array.data_type() {
        DataType::Utf8 => Cell::Text(array.as_string::<i32>().value(row)),
        DataType::Int64 => Cell::Int(array.as_primitive::<Int64Type>().value(row)),
        DataType::Float64 => Cell::Float(array.as_primitive::<Float64Type>().value(row)),
        DataType::Boolean => Cell::Bool(array.as_boolean().value(row)),
        DataType::Timestamp(TimeUnit::Microsecond, None) => {
            Cell::Micros(array.as_primitive::<TimestampMicrosecondType>().value(row))
        }
        _ => Cell::Null,
    }
}

/// Sends one Parquet file's rows into `stage_<table>` with binary `COPY` (by column name, so files
/// written before a column was added load too).
async fn copy_parquet(
    tx: &Transaction<'_>,
    table: &str,
    bytes: bytes::Bytes,
) -> Result<u64, String> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|b| b.with_batch_size(8192).build())
        .map_err(|e| format!("cannot read the Parquet file: {e}"))?;
    let schema = reader.schema();
    let mut types = Vec::new();
    for field in schema.fields() {
        types.push(wire_type(field.data_type()).ok_or_else(|| {
            format!(
                "column {} has the unexpected type {} (not written by this pipeline?)",
                field.name(),
                field.data_type()
            )
        })?);
    }
    let columns: Vec<String> = schema.fields().iter().map(|f| sql::q(f.name())).collect();
    let sink = tx
        .copy_in(&format!(
            "COPY {} ({}) FROM STDIN (FORMAT binary)",
            DIALECT.stage_table("", table, Staging::Temporary),
            columns.join(", ")
        ))
        .await
        .map_err(|e| message(&e))?;
    let writer = BinaryCopyInWriter::new(sink, &types);
    tokio::pin!(writer);
    for batch in reader {
        let batch: RecordBatch = batch.map_err(|e| format!("cannot read the Parquet file: {e}"))?;
        let arrays: Vec<&dyn Array> = batch.columns().iter().map(|c| c.as_ref()).collect();
        let mut cells: Vec<Cell<'_>> = Vec::with_capacity(arrays.len());
        for row in 0..batch.num_rows() {
            cells.clear();
            cells.extend(arrays.iter().map(|a| cell(*a, row)));
            let values: Vec<&(dyn ToSql + Sync)> =
                cells.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
            writer
                .as_mut()
                .write(&values)
                .await
                .map_err(|e| message(&e))?;
        }
    }
    writer.as_mut().finish().await.map_err(|e| message(&e))
}

#[async_trait::async_trait]
impl Warehouse for Postgres {
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
        let client = self.client.lock().await;
        client
            .batch_execute(&DIALECT.create_schema(schema).join("; "))
            .await
            .map_err(sql_err(format!("creating schema {schema}")))?;
        let mut added = Vec::new();
        for table in &dataset.tables {
            added.extend(prepare_table(&client, schema, table).await?);
        }
        Ok(added)
    }

    async fn load(&self, load: &Load<'_>) -> Result<u64, WarehouseError> {
        load_in_transaction(&mut *self.client.lock().await, load).await
    }

    async fn record_freshness(
        &self,
        livemode: bool,
        datasets: &[&Dataset],
        merchant_id: &str,
        as_of: i64,
    ) -> Result<(), WarehouseError> {
        let statements = DIALECT.freshness(livemode, datasets, merchant_id, as_of);
        let mut client = self.client.lock().await;
        let tx = client
            .transaction()
            .await
            .map_err(sql_err("starting a transaction"))?;
        tx.batch_execute(&statements.join("; "))
            .await
            .map_err(sql_err("recording data_load_times"))?;
        tx.commit()
            .await
            .map_err(sql_err("committing data_load_times"))
    }

    async fn query_strings(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, WarehouseError> {
        query(&*self.client.lock().await, sql).await
    }
}
