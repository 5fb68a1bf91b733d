//! The Amazon Redshift warehouse, through the Redshift Data API (no network path to the cluster, no
//! driver: the functions call an AWS API like any other). Serverless workgroups and provisioned clusters;
//! database-user (temporary credentials) or Secrets Manager authentication.
//!
//! A load is one `BatchExecuteStatement`, which Redshift runs as one transaction: per table, a temporary
//! staging table, `COPY … FROM 's3://…' IAM_ROLE … FORMAT AS PARQUET` of the slice's files from the lake
//! (which must be on S3), then the shared merge SQL of [`super::sql`]. The statement is polled with
//! `DescribeStatement` (backing off from 100 ms to 2 s) until it finishes; a failure carries Redshift's
//! error text, the failing sub-statement and the statement id.

use super::sql::{self, Dialect, Staging};
use super::{schema_name, Load, Warehouse, WarehouseError};
use crate::catalog::Dataset;
use crate::state::sdk_error_message;
use aws_sdk_redshiftdata::types::{Field, StatusString};
use aws_sdk_redshiftdata::Client;
use std::collections::HashSet;
use std::time::Duration;

const BACKEND: &str = "Redshift";

/// Catalog types as Redshift columns. Text is `VARCHAR(65535)`, Redshift's widest: a JSON column longer
/// than 64 KiB fails the load with Redshift's "value too long" error instead of being cut.
const DIALECT: Dialect = Dialect {
    text: "VARCHAR(65535)",
    ..sql::STANDARD
};

/// The longest value of a `VARCHAR(65535)` column, in bytes.
const MAX_TEXT_BYTES: usize = 65_535;
/// `BatchExecuteStatement` takes at most this many statements.
const MAX_BATCH: usize = 40;
/// Times a batch that Redshift aborted for a conflict with a concurrent transaction is run again.
const CONFLICT_ATTEMPTS: u32 = 8;

/// Where and as whom statements run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedshiftSettings {
    /// A Redshift Serverless workgroup, or a provisioned cluster's identifier.
    pub target: RedshiftTarget,
    pub database: String,
    /// Database user for temporary credentials (provisioned clusters); or
    pub db_user: Option<String>,
    /// a Secrets Manager secret with `username` and `password`. Neither: serverless IAM credentials.
    pub secret_arn: Option<String>,
    /// The IAM role Redshift assumes to read the lake for `COPY` (attached to the cluster or namespace).
    pub copy_role_arn: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedshiftTarget {
    Workgroup(String),
    Cluster(String),
}

impl std::fmt::Display for RedshiftSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.target {
            RedshiftTarget::Workgroup(w) => write!(f, "workgroup {w}")?,
            RedshiftTarget::Cluster(c) => write!(f, "cluster {c}")?,
        }
        write!(f, ", database {}", self.database)
    }
}

pub struct Redshift {
    client: Client,
    settings: RedshiftSettings,
    /// Schemas and table shapes (`schema/table:columns/…`) checked complete by this process: the
    /// catalog is fixed for a build, so they need no Data API calls again (a Lambda container keeps
    /// this).
    prepared: super::Prepared,
    /// Held by each writing transaction (loads, `data_load_times`). Redshift's isolation is
    /// serializable: two concurrent transactions that write the same table (every load writes
    /// `data_load_times`) make Redshift abort one of them ("Serializable isolation violation"), so
    /// this process sends one at a time. Queries run beside them. Other processes' transactions can
    /// still conflict with ours: [`Redshift::run`] runs an aborted batch again.
    writes: tokio::sync::Mutex<()>,
}

/// What a finished statement left: per sub-statement, the rows it changed or returned.
struct Finished {
    id: String,
    rows: Vec<i64>,
}

/// Whether Redshift aborted the transaction for a conflict with a concurrent one.
fn is_conflict(error: &str) -> bool {
    error.contains("Serializable isolation violation")
}

fn err(action: impl Into<String>, message: impl Into<String>) -> WarehouseError {
    WarehouseError::Sql {
        backend: BACKEND,
        action: action.into(),
        message: message.into(),
    }
}

impl Redshift {
    /// A Data API client for `settings`, checked with one `SELECT 1` (which also proves the
    /// credentials, the database and the workgroup or cluster).
    pub async fn connect(
        sdk: &aws_config::SdkConfig,
        settings: RedshiftSettings,
    ) -> Result<Redshift, WarehouseError> {
        let redshift = Redshift {
            client: Client::new(sdk),
            settings,
            prepared: super::Prepared::default(),
            writes: tokio::sync::Mutex::new(()),
        };
        redshift
            .run(vec!["SELECT 1".into()])
            .await
            .map_err(|e| WarehouseError::Open {
                backend: BACKEND,
                target: redshift.settings.to_string(),
                message: format!(
                    "{e}; check the workgroup or cluster name, the database, the credentials (db_user or secret_arn) and that this role may call redshift-data:ExecuteStatement"
                ),
            })?;
        Ok(redshift)
    }

    /// Runs statements as one `BatchExecuteStatement` (one transaction, even for one statement: one
    /// code path, and results are read per sub-statement) and waits until they finish.
    ///
    /// Redshift's isolation is serializable: of two transactions that conflict (workers in other
    /// processes loading one account's feed and a list into the same tables, both writing
    /// `data_load_times`), it aborts one with error 1023. The aborted batch changed nothing and
    /// every batch here may run twice (loads keep the newest version, DDL says `IF NOT EXISTS`), so
    /// it is run again after a short random wait, instead of failing the slice.
    async fn run(&self, sqls: Vec<String>) -> Result<Finished, String> {
        let mut attempt = 1;
        loop {
            match self.run_once(sqls.clone()).await {
                Err(e) if attempt < CONFLICT_ATTEMPTS && is_conflict(&e) => {
                    let ceiling = 200u64 << attempt.min(4);
                    let wait = Duration::from_millis(ceiling / 2 + fastrand::u64(0..=ceiling / 2));
                    tracing::info!(attempt, error = %e, "Redshift aborted a conflicting transaction; running it again");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn run_once(&self, sqls: Vec<String>) -> Result<Finished, String> {
        if sqls.len() > MAX_BATCH {
            return Err(format!(
                "{} statements, and the Data API runs at most {MAX_BATCH} in one transaction",
                sqls.len()
            ));
        }
        let s = &self.settings;
        let (workgroup, cluster) = match &s.target {
            RedshiftTarget::Workgroup(w) => (Some(w.clone()), None),
            RedshiftTarget::Cluster(c) => (None, Some(c.clone())),
        };
        let submitted = self
            .client
            .batch_execute_statement()
            .set_sqls(Some(sqls))
            .database(&s.database)
            .set_workgroup_name(workgroup)
            .set_cluster_identifier(cluster)
            .set_db_user(s.db_user.clone())
            .set_secret_arn(s.secret_arn.clone())
            .statement_name("stripe-pipeline")
            .send()
            .await
            .map_err(|e| sdk_error_message(&e))?;
        let Some(id) = submitted.id else {
            return Err("the Data API accepted the statement without returning its id".into());
        };
        self.wait(id).await
    }

    /// Polls `DescribeStatement` until the statement finishes.
    async fn wait(&self, id: String) -> Result<Finished, String> {
        let mut delay = Duration::from_millis(100);
        loop {
            let d = self
                .client
                .describe_statement()
                .id(&id)
                .send()
                .await
                .map_err(|e| format!("{} (statement {id})", sdk_error_message(&e)))?;
            match d.status() {
                Some(StatusString::Finished) => {
                    let rows = d.sub_statements().iter().map(|s| s.result_rows()).collect();
                    return Ok(Finished { id, rows });
                }
                Some(StatusString::Failed) | Some(StatusString::Aborted) => {
                    let failing = d.sub_statements().iter().find(|s| s.error().is_some());
                    let text = failing
                        .and_then(|s| s.error())
                        .or(d.error())
                        .unwrap_or("no error text");
                    let sql = failing.and_then(|s| s.query_string()).map(|q| {
                        let q: String = q.chars().take(160).collect();
                        format!(" in `{q}`")
                    });
                    return Err(format!(
                        "{}{} (statement {id}, status {})",
                        text,
                        sql.unwrap_or_default(),
                        d.status().map(|s| s.as_str()).unwrap_or("?")
                    ));
                }
                _ => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 3 / 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Runs one query and reads every page of its result as text.
    async fn query(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
        let finished = self.run(vec![sql.to_string()]).await?;
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .get_statement_result()
                // The query is the batch's first (only) sub-statement.
                .id(format!("{}:1", finished.id))
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| format!("{} (statement {})", sdk_error_message(&e), finished.id))?;
            for record in page.records() {
                out.push(record.iter().map(text).collect());
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// Creates the schema and the dataset's tables, and adds missing columns: one query for what
    /// exists, then a statement per table or column that is missing.
    async fn create_tables(
        &self,
        schema: &str,
        dataset: &Dataset,
    ) -> Result<Vec<String>, WarehouseError> {
        self.run(DIALECT.create_schema(schema))
            .await
            .map_err(|m| err(format!("creating schema {schema}"), m))?;
        let existing = sql::columns_by_table(
            self.query(&DIALECT.schema_columns_query(schema))
                .await
                .map_err(|m| err(format!("reading the columns of schema {schema}"), m))?,
        );
        let mut added = Vec::new();
        let none = HashSet::new();
        for table in &dataset.tables {
            let columns = existing.get(&DIALECT.name(&table.name)).unwrap_or(&none);
            // One statement each: Redshift runs ALTER TABLE ADD COLUMN outside multi-statement blocks.
            for ddl in DIALECT.complete_table(schema, table, columns) {
                self.run(vec![ddl.sql])
                    .await
                    .map_err(|m| err(&ddl.action, m))?;
                added.extend(ddl.added);
            }
        }
        Ok(added)
    }

    async fn load_batch(&self, load: &Load<'_>) -> Result<u64, WarehouseError> {
        let schema = schema_name(load.livemode);
        let action = format!("loading {schema}.{}", load.dataset.name);
        let mut statements: Vec<sql::Statement> = Vec::new();
        let plain = |sql: String| sql::Statement { sql, counts: false };
        let mut staged: Vec<&str> = Vec::new();
        for (table, files) in load.staged_tables() {
            statements.extend(
                DIALECT
                    .create_stage(schema, &table.name, Staging::Temporary)
                    .into_iter()
                    .map(plain),
            );
            for path in files {
                let uri = load
                    .lake
                    .url_of(path)
                    .filter(|u| u.starts_with("s3://"))
                    .ok_or_else(|| {
                        err(
                            &action,
                            "Redshift loads from S3: set the lake to s3://bucket/prefix",
                        )
                    })?;
                let columns = file_columns(load, path)
                    .await
                    .map_err(|m| err(&action, m))?;
                statements.push(plain(format!(
                    "COPY {} ({}) FROM {} IAM_ROLE {} FORMAT AS PARQUET",
                    DIALECT.stage_table(schema, &table.name, Staging::Temporary),
                    columns
                        .iter()
                        .map(|c| sql::q(c))
                        .collect::<Vec<_>>()
                        .join(", "),
                    sql::lit(&uri),
                    sql::lit(&self.settings.copy_role_arn)
                )));
            }
            staged.push(&table.name);
        }
        statements.extend(
            DIALECT
                .merge(schema, load.dataset, &staged, Staging::Temporary)
                .into_statements(),
        );
        let main = &load.dataset.main_table().name;
        // The first statement of deletes goes into the load's transaction; a longer list (a re-list
        // after the cliff) runs the rest after it, a statement per call, since a batch of the Data
        // API holds 40 statements at most. Marking is idempotent and the cursor moves only after all
        // of them, so a crash in between is redone whole.
        let mut deletes = DIALECT
            .tombstones(
                schema,
                main,
                load.merchant_id,
                &load.tombstones,
                load.tombstone_timestamp,
            )
            .into_iter();
        if let Some(first) = deletes.next() {
            statements.push(plain(first));
        }
        statements.extend(
            DIALECT
                .load_times(
                    schema,
                    load.dataset,
                    load.merchant_id,
                    super::now_micros(),
                    load.as_of,
                )
                .into_iter()
                .map(plain),
        );
        let counted = statements.iter().position(|s| s.counts);
        let finished = self
            .run(statements.into_iter().map(|s| s.sql).collect())
            .await
            .map_err(|m| err(&action, m))?;
        for update in deletes {
            self.run(vec![update])
                .await
                .map_err(|m| err(format!("marking deleted rows of {schema}.{main}"), m))?;
        }
        crate::failpoint::point("load");
        Ok(counted
            .and_then(|i| finished.rows.get(i))
            .map(|n| (*n).max(0) as u64)
            .unwrap_or(0))
    }
}

/// The column names of a lake file, in the file's order (`COPY` maps Parquet columns by position).
async fn file_columns(load: &Load<'_>, path: &str) -> Result<Vec<String>, String> {
    let bytes = load.lake.read(path).await.map_err(|e| e.to_string())?;
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| format!("cannot read {path}: {e}"))?;
    Ok(builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect())
}

/// A result field as text (`None` for SQL NULL).
fn text(field: &Field) -> Option<String> {
    match field {
        Field::StringValue(s) => Some(s.clone()),
        Field::LongValue(n) => Some(n.to_string()),
        Field::DoubleValue(x) => Some(x.to_string()),
        Field::BooleanValue(b) => Some(b.to_string()),
        Field::IsNull(true) => None,
        Field::BlobValue(b) => Some(String::from_utf8_lossy(b.as_ref()).into_owned()),
        _ => None,
    }
}

#[async_trait::async_trait]
impl Warehouse for Redshift {
    fn dialect(&self) -> &'static Dialect {
        &DIALECT
    }

    fn describe(&self) -> String {
        format!("{BACKEND} {}", self.settings)
    }

    fn max_text_bytes(&self) -> Option<usize> {
        Some(MAX_TEXT_BYTES)
    }

    async fn prepare(
        &self,
        livemode: bool,
        dataset: &Dataset,
    ) -> Result<Vec<String>, WarehouseError> {
        let schema = schema_name(livemode);
        let key = super::Prepared::shape(schema, dataset);
        if self.prepared.contains(&key) {
            return Ok(Vec::new());
        }
        let _writing = self.writes.lock().await;
        let added = self.create_tables(schema, dataset).await?;
        self.prepared.insert(key);
        Ok(added)
    }

    async fn load(&self, load: &Load<'_>) -> Result<u64, WarehouseError> {
        let _writing = self.writes.lock().await;
        self.load_batch(load).await
    }

    async fn record_freshness(
        &self,
        livemode: bool,
        datasets: &[&Dataset],
        merchant_id: &str,
        as_of: i64,
    ) -> Result<(), WarehouseError> {
        let statements = DIALECT.freshness(livemode, datasets, merchant_id, as_of);
        if statements.is_empty() {
            return Ok(());
        }
        let _writing = self.writes.lock().await;
        // Within the Data API's limit per transaction: each chunk is complete pairs of rows.
        for chunk in statements.chunks(MAX_BATCH - MAX_BATCH % 2) {
            self.run(chunk.to_vec())
                .await
                .map_err(|m| err("recording data_load_times", m))?;
        }
        Ok(())
    }

    async fn query_strings(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, WarehouseError> {
        self.query(sql)
            .await
            .map_err(|m| err(format!("running {sql}"), m))
    }
}
