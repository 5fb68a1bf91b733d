//! Local mode: the engine wired to a local lake directory, a local state store and the configured
//! warehouse (a DuckDB file by default), and the `status` view of them.

use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::config::{Config, Destination};
use crate::engine::{Engine, Progress};
use crate::export::{ExportOptions, ExportReport, Exporter};
use crate::lake::Lake;
use crate::state::LocalState;
use crate::stripe::StripeClient;
use crate::warehouse::duckdb::DuckDb;
use crate::warehouse::{schema_name, LakeOnly, Warehouse};
use std::sync::Arc;

/// A Stripe client with the configured budget.
pub fn client(cfg: &Config) -> StripeClient {
    StripeClient::with_budget(&cfg.api_base, cfg.rate_budget)
}

/// Opens the configured warehouse; for a server, connects and checks the connection with one query.
pub async fn open_warehouse(cfg: &Config) -> Result<Box<dyn Warehouse>, String> {
    Ok(match cfg.destination {
        Destination::Duckdb => {
            Box::new(DuckDb::open(&cfg.duckdb_path()).map_err(|e| e.to_string())?)
        }
        Destination::None => Box::new(LakeOnly),
        #[cfg(feature = "postgres")]
        Destination::Postgres => {
            let url = cfg.postgres_url(|k| std::env::var(k).ok())?;
            Box::new(
                crate::warehouse::postgres::Postgres::connect(
                    &url,
                    cfg.postgres.ca_file.as_deref(),
                )
                .await
                .map_err(|e| e.to_string())?,
            )
        }
        #[cfg(not(feature = "postgres"))]
        Destination::Postgres => {
            return Err("this build has no PostgreSQL support (cargo feature `postgres`)".into())
        }
        #[cfg(feature = "redshift")]
        Destination::Redshift => {
            let settings = cfg.redshift_settings(crate::config::Spelling::Toml)?;
            let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
            Box::new(
                crate::warehouse::redshift::Redshift::connect(&sdk, settings)
                    .await
                    .map_err(|e| e.to_string())?,
            )
        }
        #[cfg(not(feature = "redshift"))]
        Destination::Redshift => {
            return Err("this build has no Redshift support (cargo feature `redshift`)".into())
        }
        #[cfg(feature = "snowflake")]
        Destination::Snowflake => {
            let name = |field: &str| format!("[snowflake] {field}");
            let source = cfg.snowflake.credential_source(name)?;
            let env = |k: &str| std::env::var(k).ok();
            let credential = crate::config::snowflake_credential(&source, env)?;
            Box::new(
                crate::warehouse::snowflake::Snowflake::connect(cfg.snowflake.settings(credential))
                    .await
                    .map_err(|e| e.to_string())?,
            )
        }
        #[cfg(not(feature = "snowflake"))]
        Destination::Snowflake => {
            return Err("this build has no Snowflake support (cargo feature `snowflake`)".into())
        }
    })
}

/// The lake: `lake_url` in the cloud, else `<output_dir>/lake`.
pub fn open_lake(cfg: &Config) -> Result<Lake, String> {
    match &cfg.lake_url {
        None => Lake::local(&cfg.lake_dir()).map_err(|e| e.to_string()),
        #[cfg(feature = "cloud")]
        Some(url) => Lake::cloud(url, &[]).map_err(|e| e.to_string()),
        #[cfg(not(feature = "cloud"))]
        Some(_) => Err("this build has no cloud storage support (cargo feature `cloud`)".into()),
    }
}

/// The export store: `export_url` (a cloud URL or a local directory), or `<lake>/export`.
pub fn open_export(cfg: &Config) -> Result<Lake, String> {
    let target = export_target(cfg);
    if !target.contains("://") {
        return Lake::local(std::path::Path::new(&target)).map_err(|e| e.to_string());
    }
    #[cfg(feature = "cloud")]
    return Lake::cloud(&target, &[]).map_err(|e| e.to_string());
    #[cfg(not(feature = "cloud"))]
    Err("this build has no cloud storage support (cargo feature `cloud`)".into())
}

/// Checks the cloud lake (`lake_url`) and, with `export`, the export store, with one cheap call each (a
/// listing), so a wrong URL, a missing bucket or missing credentials stop a sync before it reads
/// anything.
pub async fn check_stores(cfg: &Config) -> Result<(), String> {
    if let Some(url) = &cfg.lake_url {
        reachable("the lake", url, open_lake(cfg)).await?;
    }
    if cfg.export {
        reachable("the export store", &export_target(cfg), open_export(cfg)).await?;
    }
    Ok(())
}

async fn reachable(what: &str, target: &str, store: Result<Lake, String>) -> Result<(), String> {
    let fail = |e: String| {
        format!("cannot use {what} {target}: {e} (check the URL, that the bucket or container exists, and the credentials in the environment)")
    };
    store
        .map_err(fail)?
        .list_dir("livemode")
        .await
        .map(|_| ())
        .map_err(|e| fail(e.to_string()))
}

/// The set-up check of a configuration and its resolved accounts ([`crate::check`]): the keys and the
/// datasets they may read, the lake, the export store (with `export`), the warehouse.
pub async fn check(cfg: &Config, accounts: &[crate::config::Account]) -> crate::check::Report {
    use crate::check::{self, Finding};
    let catalog = Catalog::get();
    let datasets: Vec<&crate::catalog::Dataset> = catalog
        .datasets
        .iter()
        .filter(|d| cfg.datasets.is_empty() || cfg.datasets.contains(&d.name))
        .collect();
    let mut findings = check::accounts(&client(cfg), accounts, &datasets).await;
    let lake = match &cfg.lake_url {
        Some(url) => format!("lake {url}"),
        None => format!("lake {}", cfg.lake_dir().display()),
    };
    findings.push(match open_lake(cfg) {
        Ok(store) => check::store(lake, &store).await,
        Err(e) => Finding::failed(lake, e),
    });
    if cfg.export {
        let part = format!("export store {}", export_target(cfg));
        findings.push(match open_export(cfg) {
            Ok(store) => check::store(part, &store).await,
            Err(e) => Finding::failed(part, e),
        });
    }
    findings.push(match open_warehouse(cfg).await {
        Ok(wh) => check::warehouse(wh.as_ref()).await,
        Err(e) => Finding::failed("warehouse", e),
    });
    check::Report { findings }
}

/// Whether exports are configured, or the default export folder exists (`status` shows them then).
pub fn has_exports(cfg: &Config) -> bool {
    cfg.export
        || cfg.export_url.is_some()
        || (cfg.lake_url.is_none() && cfg.lake_dir().join("export").is_dir())
}

/// The newest complete export of each mode (for `status`).
pub async fn latest_exports(cfg: &Config) -> Result<Vec<crate::export::Latest>, String> {
    let out = open_export(cfg)?;
    crate::export::latest(&out)
        .await
        .map_err(|e| format!("cannot read the exports at {}: {e}", export_target(cfg)))
}

/// Builds the exports of every mode with data (see [`crate::export`]), after a sync.
pub async fn export(cfg: &Config, lake: &Lake) -> Result<Vec<ExportReport>, String> {
    let out = open_export(cfg)
        .map_err(|e| format!("cannot open the export store {}: {e}", export_target(cfg)))?;
    let exporter = Exporter {
        lake,
        out: &out,
        options: ExportOptions {
            keep: cfg.export_keep,
            ..ExportOptions::default()
        },
    };
    let now = crate::clock::SystemClock.now_secs();
    let state: crate::state::StateStore = LocalState::open(&cfg.state_dir())
        .map_err(|e| e.to_string())?
        .into();
    let owner = format!("export-{}-{now}", std::process::id());
    match exporter
        .export_leased(&state, &owner, EXPORT_LEASE_SECS, now)
        .await
    {
        Ok(reports) => Ok(reports),
        Err(e @ crate::export::ExportError::State(_)) => Err(e.to_string()),
        Err(e) => Err(format!("the export to {} failed: {e}", export_target(cfg))),
    }
}

/// How long an export's lease lasts if the process dies without releasing it.
const EXPORT_LEASE_SECS: i64 = 3600;

/// Where exports go: `export_url`, or the folder `export` of the lake (a URL or a local directory).
pub fn export_target(cfg: &Config) -> String {
    match (&cfg.export_url, &cfg.lake_url) {
        (Some(url), _) => url.clone(),
        (None, Some(lake)) => format!("{}/export", lake.trim_end_matches('/')),
        (None, None) => cfg.lake_dir().join("export").display().to_string(),
    }
}

/// The engine for local mode. Creates the output directory and the state store, and opens the
/// warehouse.
pub async fn engine(
    cfg: &Config,
    client: StripeClient,
    progress: Arc<dyn Progress>,
    run_id: String,
) -> Result<Engine, String> {
    let lake = open_lake(cfg)?;
    let state = LocalState::open(&cfg.state_dir()).map_err(|e| e.to_string())?;
    let warehouse = open_warehouse(cfg).await?;
    Ok(Engine::builder(client, lake, state.into())
        .warehouse(warehouse)
        .concurrency(cfg.concurrency)
        .incremental(cfg.incremental())
        .progress(progress)
        .run_id(run_id)
        .build())
}

/// Why `resync` did nothing: the exit code it means (2 a bad request or key, 3 the state store) and
/// the message.
#[derive(Debug)]
pub struct ResyncError {
    pub code: u8,
    pub message: String,
}

/// `stripe-pipeline resync`: marks `datasets` of the configured account `name` (all it syncs when
/// empty) for a full list on the next sync, which loads every object again and marks those gone from
/// Stripe deleted. Checks the key first (the state is kept per Stripe account). Returns the account's
/// resolved id and mode and the datasets marked.
pub async fn resync(
    cfg: &Config,
    name: &str,
    datasets: &[String],
) -> Result<(crate::engine::Resolved, Vec<&'static str>), ResyncError> {
    let bad = |message: String| ResyncError { code: 2, message };
    let accounts = cfg
        .accounts(|k| std::env::var(k).ok())
        .map_err(|e| bad(e.to_string()))?;
    let Some(account) = accounts.iter().find(|a| a.name == name) else {
        let names: Vec<&str> = accounts.iter().map(|a| a.name.as_str()).collect();
        return Err(bad(format!(
            "no account named '{name}' in the configuration; the configured accounts are: {}",
            names.join(", ")
        )));
    };
    let catalog = Catalog::get();
    let wanted: Vec<&String> = if datasets.is_empty() {
        cfg.datasets.iter().collect()
    } else {
        datasets.iter().collect()
    };
    let mut marked: Vec<&'static crate::catalog::Dataset> = Vec::new();
    for d in wanted {
        match catalog.dataset(d) {
            Some(d) => marked.push(d),
            None => {
                return Err(bad(format!(
                    "unknown dataset '{d}'; `stripe-pipeline tables` lists them"
                )))
            }
        }
    }
    if marked.is_empty() {
        marked = catalog.datasets.iter().collect();
    }
    let resolved = crate::engine::resolve(&client(cfg), std::slice::from_ref(account))
        .await
        .map_err(|e| bad(e.to_string()))?;
    let r = resolved.into_iter().next().ok_or_else(|| ResyncError {
        code: 2,
        message: format!("account '{name}': the key check returned nothing"),
    })?;
    let state: crate::state::StateStore = LocalState::open(&cfg.state_dir())
        .map_err(|e| ResyncError {
            code: 3,
            message: e.to_string(),
        })?
        .into();
    for d in &marked {
        crate::engine::plan::relist(&state, &r, d)
            .await
            .map_err(|e| ResyncError {
                code: 3,
                message: e.to_string(),
            })?;
    }
    Ok((r, marked.iter().map(|d| d.name.as_str()).collect()))
}

/// One line of `status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatusRow {
    pub schema: String,
    pub table: String,
    pub merchant_id: String,
    pub rows: u64,
    pub data_landed: Option<String>,
    pub data_as_of: Option<String>,
    pub last_error: Option<String>,
    /// The account does not use the table's Stripe product (Stripe's message): a state, not an error.
    pub not_enabled: Option<String>,
}

/// Per table and account of the configured warehouse: rows, when data landed, what it is complete up
/// to, and the last error.
pub async fn status(cfg: &Config) -> Result<Vec<StatusRow>, String> {
    match cfg.destination {
        Destination::None => {
            return Err("status reads the warehouse, and the destination is none (the lake only): read the run manifests under <lake>/<mode>/_manifests instead".into())
        }
        Destination::Duckdb if !cfg.duckdb_path().exists() => {
            return Err(format!(
                "no data yet: {} does not exist (run `stripe-pipeline sync` first)",
                cfg.duckdb_path().display()
            ))
        }
        _ => {}
    }
    let db = open_warehouse(cfg).await?;
    let state = LocalState::open(&cfg.state_dir()).map_err(|e| e.to_string())?;
    Ok(status_rows(db.as_ref(), &state).await)
}

async fn status_rows(db: &dyn Warehouse, state: &LocalState) -> Vec<StatusRow> {
    let mut out = Vec::new();
    for livemode in [true, false] {
        let schema = schema_name(livemode);
        // No schema yet (nothing synced in this mode): no rows.
        let rows = db
            .query_strings(&db.dialect().load_times_query(schema))
            .await
            .unwrap_or_default();
        for r in rows {
            let [Some(table), Some(merchant), landed, as_of] =
                <[Option<String>; 4]>::try_from(r).unwrap_or([None, None, None, None])
            else {
                continue;
            };
            let count = db.count(livemode, &table, &merchant).await.unwrap_or(0);
            let dataset = Catalog::get()
                .tables()
                .find(|(_, t)| t.name == table)
                .map(|(d, _)| d.name.clone())
                .unwrap_or_default();
            let prefix = format!("{merchant}/{}", if livemode { "live" } else { "test" });
            // The dataset's own error first; else the account's change feed, which feeds every table.
            let last_error = state
                .get::<crate::state::DatasetState>(&format!("{prefix}/{dataset}"))
                .ok()
                .and_then(|v| v.value.last_error)
                .or_else(|| {
                    state
                        .get::<crate::state::FeedState>(&format!("{prefix}/_events"))
                        .ok()
                        .and_then(|v| v.value.last_error)
                        .map(|e| format!("change feed: {e}"))
                });
            out.push(StatusRow {
                schema: schema.into(),
                table,
                merchant_id: merchant,
                rows: count,
                data_landed: landed,
                data_as_of: as_of,
                last_error,
                not_enabled: None,
            });
        }
        // A dataset of a product the account does not use never loads: its state says so.
        let merchants: std::collections::BTreeSet<String> = out
            .iter()
            .filter(|r| r.schema == schema)
            .map(|r| r.merchant_id.clone())
            .collect();
        for merchant in merchants {
            let prefix = format!("{merchant}/{}", if livemode { "live" } else { "test" });
            for d in &Catalog::get().datasets {
                let not_enabled = state
                    .get::<crate::state::DatasetState>(&format!("{prefix}/{}", d.name))
                    .ok()
                    .and_then(|v| v.value.not_enabled);
                if let Some(n) = not_enabled {
                    out.push(StatusRow {
                        schema: schema.into(),
                        table: d.main_table().name.clone(),
                        merchant_id: merchant.clone(),
                        rows: 0,
                        data_landed: None,
                        data_as_of: None,
                        last_error: None,
                        not_enabled: Some(n.message),
                    });
                }
            }
        }
    }
    out
}
