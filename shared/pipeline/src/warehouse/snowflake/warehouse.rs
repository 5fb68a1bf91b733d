//! The Snowflake warehouse: Snowflake reads the lake's Parquet files itself, with `COPY INTO` a
//! staging table (`FILE_FORMAT = (TYPE = PARQUET USE_LOGICAL_TYPE = TRUE)`, columns matched by name),
//! and the shared merge SQL of [`super::super::sql`] moves the newest version of each object into the
//! tables, in one transaction. No row passes through this client.
//!
//! Where Snowflake reads the files from:
//! - a lake on S3 with a storage integration configured: an external stage over the lake
//!   (`STRIPE_PIPELINE_LAKE` in each schema), the load naming its files;
//! - otherwise (a local lake): each file is uploaded with `PUT` to the internal stage
//!   `STRIPE_PIPELINE_UPLOADS` under a prefix of its own, loaded, and purged.
//!
//! Types: the catalog's strings and JSON as `VARCHAR` (Sigma-style SQL reads JSON columns as text, and
//! `PARSE_JSON` makes a `VARIANT` of one where wanted), integers `NUMBER(38,0)`, `FLOAT`, `BOOLEAN`,
//! and timestamps `TIMESTAMP_NTZ` holding UTC, as Stripe's Snowflake share has them. Names are upper
//! case, so the unquoted `stripe.charges` of Sigma-style SQL finds `STRIPE.CHARGES`.
//!
//! One session serves one call at a time: `BEGIN` … `COMMIT` belong to the session.

use super::super::sql::{self, Dialect, Staging};
use super::super::{schema_name, Load, Prepared, Warehouse, WarehouseError};
use super::client::{Login, QueryResult, Session, SnowflakeError};
use crate::catalog::Dataset;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::Mutex;

const BACKEND: &str = "Snowflake";

/// Catalog types as Snowflake columns, names in upper case.
pub const DIALECT: Dialect = Dialect {
    text: "VARCHAR",
    integer: "NUMBER(38,0)",
    float: "FLOAT",
    boolean: "BOOLEAN",
    timestamp: "TIMESTAMP_NTZ",
    upper_case_names: true,
};

/// The external stage over the lake, in each schema.
const LAKE_STAGE: &str = "stripe_pipeline_lake";
/// The internal stage files of a local lake are uploaded to, in each schema.
const UPLOAD_STAGE: &str = "stripe_pipeline_uploads";
/// `COPY INTO … FILES = (…)` names at most this many files.
const MAX_COPY_FILES: usize = 1000;
const FILE_FORMAT: &str = "FILE_FORMAT = (TYPE = PARQUET USE_LOGICAL_TYPE = TRUE) MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE";

/// Where and how to load.
pub struct SnowflakeSettings {
    pub login: Login,
    /// The storage integration Snowflake reads an S3 lake with (an external stage over the lake).
    /// Without one, files are uploaded to an internal stage.
    pub storage_integration: Option<String>,
}

pub struct Snowflake {
    session: Mutex<Session>,
    /// `user@account/database`, for messages.
    target: String,
    storage_integration: Option<String>,
    /// Names this session's staging tables and upload prefixes apart from other sessions'.
    tag: String,
    /// Loads of this session so far: each upload goes under a prefix of its own.
    loads: AtomicU64,
    /// Dataset shapes and lake stages made by this process.
    prepared: Prepared,
}

fn err(action: impl Into<String>) -> impl FnOnce(SnowflakeError) -> WarehouseError {
    let action = action.into();
    move |e| WarehouseError::Sql {
        backend: BACKEND,
        action,
        message: e.to_string(),
    }
}

impl Snowflake {
    /// Logs in and checks the session with one query.
    pub async fn connect(settings: SnowflakeSettings) -> Result<Snowflake, WarehouseError> {
        let l = &settings.login;
        let target = format!("{}@{}/{}", l.user, l.account, l.database);
        let open = |e: SnowflakeError| {
            WarehouseError::Open {
            backend: BACKEND,
            target: target.clone(),
            message: format!(
                "{e}; check the account identifier, the user and its key (or password), the role, the warehouse and the database"
            ),
        }
        };
        let mut session = Session::open(settings.login).await.map_err(open)?;
        session.query("SELECT 1").await.map_err(open)?;
        let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
        Ok(Snowflake {
            session: Mutex::new(session),
            target,
            storage_integration: settings.storage_integration,
            tag,
            loads: AtomicU64::new(0),
            prepared: Prepared::default(),
        })
    }

    fn staging(&self) -> Staging<'_> {
        Staging::InSchema { tag: &self.tag }
    }

    /// The external stage over an S3 lake, when one is configured.
    fn lake_stage_url(&self, load: &Load<'_>) -> Option<String> {
        self.storage_integration.as_ref()?;
        load.lake.url_of("").filter(|u| u.starts_with("s3://"))
    }
}

async fn run(
    session: &mut Session,
    action: &str,
    sql: &str,
) -> Result<QueryResult, WarehouseError> {
    let result = session.query(sql).await.map_err(err(action))?;
    tracing::debug!(query_id = %result.query_id, action, "Snowflake statement ran");
    Ok(result)
}

/// The number a DML statement reports (rows inserted, updated or deleted).
fn changed_rows(result: &QueryResult) -> u64 {
    result
        .rows
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

impl Snowflake {
    async fn create_tables(
        &self,
        session: &mut Session,
        schema: &str,
        dataset: &Dataset,
    ) -> Result<Vec<String>, WarehouseError> {
        let creating = format!("creating schema {schema}");
        for sql in DIALECT.create_schema(schema) {
            run(session, &creating, &sql).await?;
        }
        run(
            session,
            &creating,
            &format!(
                "CREATE STAGE IF NOT EXISTS {}",
                DIALECT.qualified(schema, UPLOAD_STAGE)
            ),
        )
        .await?;
        let existing = sql::columns_by_table(
            run(
                session,
                &format!("reading the columns of schema {schema}"),
                &DIALECT.schema_columns_query(schema),
            )
            .await?
            .rows,
        );
        let mut added = Vec::new();
        let none = HashSet::new();
        for table in &dataset.tables {
            let columns = existing.get(&DIALECT.name(&table.name)).unwrap_or(&none);
            for ddl in DIALECT.complete_table(schema, table, columns) {
                run(session, &ddl.action, &ddl.sql).await?;
                added.extend(ddl.added);
            }
        }
        Ok(added)
    }

    /// Fills the staging table of each table with new files; returns the tables staged.
    async fn stage<'l>(
        &self,
        session: &mut Session,
        load: &'l Load<'l>,
    ) -> Result<Vec<&'l str>, WarehouseError> {
        let schema = schema_name(load.livemode);
        let staging = self.staging();
        let external = self.lake_stage_url(load);
        if let Some(url) = &external {
            let key = format!("{schema} stage {url}");
            if !self.prepared.contains(&key) {
                let integration = self.storage_integration.as_deref().unwrap_or_default();
                run(
                    session,
                    &format!("creating the stage over the lake in {schema}"),
                    &external_stage(schema, url, integration),
                )
                .await?;
                self.prepared.insert(key);
            }
        }
        let n = self.loads.fetch_add(1, Ordering::Relaxed);
        let mut staged = Vec::new();
        for (table, files) in load.staged_tables() {
            let action = format!("staging {schema}.{}", table.name);
            for sql in DIALECT.create_stage(schema, &table.name, staging) {
                run(session, &action, &sql).await?;
            }
            let into = DIALECT.stage_table(schema, &table.name, staging);
            let copies = match &external {
                Some(_) => files
                    .chunks(MAX_COPY_FILES)
                    .map(|chunk| {
                        let names: Vec<String> = chunk.iter().map(|f| sql::lit(f)).collect();
                        format!(
                            "COPY INTO {into} FROM @{} FILES = ({}) {FILE_FORMAT} FORCE = TRUE",
                            DIALECT.qualified(schema, LAKE_STAGE),
                            names.join(", ")
                        )
                    })
                    .collect(),
                None => {
                    // A prefix of this load alone: files a failed load left behind are not loaded.
                    let prefix = format!(
                        "@{}/{}/{n}/{}/",
                        DIALECT.qualified(schema, UPLOAD_STAGE),
                        self.tag,
                        table.name
                    );
                    for (i, path) in files.iter().enumerate() {
                        let bytes =
                            load.lake
                                .read(path)
                                .await
                                .map_err(|e| WarehouseError::Sql {
                                    backend: BACKEND,
                                    action: action.clone(),
                                    message: e.to_string(),
                                })?;
                        session
                            .put(&prefix, &format!("{i}.parquet"), bytes)
                            .await
                            .map_err(err(format!("{action}: uploading {path}")))?;
                    }
                    vec![format!(
                        "COPY INTO {into} FROM {prefix} {FILE_FORMAT} FORCE = TRUE PURGE = TRUE"
                    )]
                }
            };
            for copy in copies {
                run(session, &action, &copy).await?;
            }
            staged.push(table.name.as_str());
        }
        Ok(staged)
    }

    /// Stages, then merges in one transaction (Snowflake commits an open transaction at any DDL, so
    /// the staging tables are made before it and dropped after it).
    async fn load_staged(
        &self,
        session: &mut Session,
        load: &Load<'_>,
    ) -> Result<u64, WarehouseError> {
        let loaded = self.stage_and_merge(session, load).await;
        self.drop_staging(session, load).await;
        loaded
    }

    /// Drops the load's staging tables, whatever became of it (a table may not exist). Best effort:
    /// a table left behind holds nothing a later load reads; and never while a transaction is open,
    /// which the drop would commit.
    async fn drop_staging(&self, session: &mut Session, load: &Load<'_>) {
        if ready(session).await.is_err() {
            return;
        }
        let schema = schema_name(load.livemode);
        let tables = load
            .staged_tables()
            .map(|(t, _)| t.name.as_str())
            .chain(["newest"]);
        for table in tables {
            let sql = format!(
                "DROP TABLE IF EXISTS {}",
                DIALECT.stage_table(schema, table, self.staging())
            );
            if let Err(e) = session.query(&sql).await {
                tracing::warn!(error = %e, "a Snowflake staging table was not dropped");
            }
        }
    }

    async fn stage_and_merge(
        &self,
        session: &mut Session,
        load: &Load<'_>,
    ) -> Result<u64, WarehouseError> {
        let schema = schema_name(load.livemode);
        let staged = self.stage(session, load).await?;
        let merge = DIALECT.merge(schema, load.dataset, &staged, self.staging());
        let merging = format!("merging into {schema}.{}", load.dataset.name);
        for sql in &merge.prepare {
            run(session, &merging, sql).await?;
        }
        let main = &load.dataset.main_table().name;
        let mut apply: Vec<(String, sql::Statement)> = merge
            .apply
            .into_iter()
            .map(|s| (merging.clone(), s))
            .collect();
        let plain = |sql| sql::Statement { sql, counts: false };
        for sql in DIALECT.tombstones(
            schema,
            main,
            load.merchant_id,
            &load.tombstones,
            load.tombstone_timestamp,
        ) {
            apply.push((
                format!("marking deleted rows of {schema}.{main}"),
                plain(sql),
            ));
        }
        for sql in DIALECT.load_times(
            schema,
            load.dataset,
            load.merchant_id,
            super::super::now_micros(),
            load.as_of,
        ) {
            apply.push(("recording data_load_times".into(), plain(sql)));
        }
        transaction(session, &apply).await
    }
}

/// Rolls back a transaction a failure left open in the session (a failed `COMMIT` or `ROLLBACK`, a
/// panic between them), before anything else runs in it: Snowflake would commit it at the next DDL.
async fn ready(session: &mut Session) -> Result<(), WarehouseError> {
    if session.in_transaction() {
        tracing::warn!("rolling back a Snowflake transaction a failed load left open");
        run(
            session,
            "rolling back a failed load's transaction",
            "ROLLBACK",
        )
        .await?;
    }
    Ok(())
}

/// Runs statements in one transaction (rolled back on a failure); returns the rows the counting one
/// changed.
async fn transaction(
    session: &mut Session,
    statements: &[(String, sql::Statement)],
) -> Result<u64, WarehouseError> {
    run(session, "starting a transaction", "BEGIN").await?;
    let mut changed = 0;
    for (action, statement) in statements {
        match run(session, action, &statement.sql).await {
            Ok(result) if statement.counts => changed = changed_rows(&result),
            Ok(_) => {}
            Err(e) => {
                if let Err(rollback) = session.query("ROLLBACK").await {
                    tracing::warn!(error = %rollback, "Snowflake did not roll back a failed load");
                }
                return Err(e);
            }
        }
    }
    crate::failpoint::point("load");
    if let Err(e) = run(session, "committing the load", "COMMIT").await {
        // Not left open for the next call's DDL to commit ([`ready`] tries again if this fails).
        if let Err(rollback) = session.query("ROLLBACK").await {
            tracing::warn!(error = %rollback, "Snowflake did not roll back a failed commit");
        }
        return Err(e);
    }
    Ok(changed)
}

/// The external stage over the lake at `url`, read with `integration` (a plain identifier, checked
/// by the configuration; unquoted, it names the integration as `CREATE STORAGE INTEGRATION` named it).
/// Made once: a stage of that name that exists is kept as it is.
fn external_stage(schema: &str, url: &str, integration: &str) -> String {
    format!(
        "CREATE STAGE IF NOT EXISTS {} URL = {} STORAGE_INTEGRATION = {} FILE_FORMAT = (TYPE = PARQUET USE_LOGICAL_TYPE = TRUE)",
        DIALECT.qualified(schema, LAKE_STAGE),
        sql::lit(url),
        integration
    )
}

#[async_trait::async_trait]
impl Warehouse for Snowflake {
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
        let key = Prepared::shape(schema, dataset);
        if self.prepared.contains(&key) {
            return Ok(Vec::new());
        }
        let mut session = self.session.lock().await;
        ready(&mut session).await?;
        let added = self.create_tables(&mut session, schema, dataset).await?;
        self.prepared.insert(key);
        Ok(added)
    }

    async fn load(&self, load: &Load<'_>) -> Result<u64, WarehouseError> {
        let mut session = self.session.lock().await;
        ready(&mut session).await?;
        self.load_staged(&mut session, load).await
    }

    async fn record_freshness(
        &self,
        livemode: bool,
        datasets: &[&Dataset],
        merchant_id: &str,
        as_of: i64,
    ) -> Result<(), WarehouseError> {
        let statements: Vec<(String, sql::Statement)> = DIALECT
            .freshness(livemode, datasets, merchant_id, as_of)
            .into_iter()
            .map(|sql| {
                let statement = sql::Statement { sql, counts: false };
                ("recording data_load_times".to_string(), statement)
            })
            .collect();
        if statements.is_empty() {
            return Ok(());
        }
        let mut session = self.session.lock().await;
        ready(&mut session).await?;
        transaction(&mut session, &statements).await.map(|_| ())
    }

    async fn query_strings(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, WarehouseError> {
        let mut session = self.session.lock().await;
        ready(&mut session).await?;
        Ok(run(&mut session, &format!("running {sql}"), sql)
            .await?
            .rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lake_stage_reads_parquet_through_the_integration() {
        assert_eq!(
            external_stage("stripe", "s3://lake/stripe/", "lake_reader"),
            "CREATE STAGE IF NOT EXISTS \"STRIPE\".\"STRIPE_PIPELINE_LAKE\" URL = 's3://lake/stripe/' STORAGE_INTEGRATION = lake_reader FILE_FORMAT = (TYPE = PARQUET USE_LOGICAL_TYPE = TRUE)"
        );
    }
}
