//! Local mode: the engine wired to a local lake directory, a local state store and a DuckDB file, and
//! the `status` view of them.

use crate::catalog::Catalog;
use crate::config::Config;
use crate::lake::Lake;
use crate::state::LocalState;
use crate::stripe::StripeClient;
use crate::sync::{Engine, Progress};
use crate::warehouse::duckdb::DuckDb;
use crate::warehouse::{schema_name, Warehouse};
use std::sync::Arc;

/// A Stripe client with the configured budget.
pub fn client(cfg: &Config) -> StripeClient {
    StripeClient::with_budget(&cfg.api_base, cfg.rate_budget)
}

/// The engine for local mode. Creates the output directory, the state store and the DuckDB file.
pub fn engine(
    cfg: &Config,
    client: StripeClient,
    progress: Arc<dyn Progress>,
    run_id: String,
) -> Result<Arc<Engine>, String> {
    let lake = Lake::local(&cfg.lake_dir()).map_err(|e| e.to_string())?;
    let state = LocalState::open(&cfg.state_dir()).map_err(|e| e.to_string())?;
    let warehouse: Box<dyn Warehouse> =
        Box::new(DuckDb::open(&cfg.duckdb_path()).map_err(|e| e.to_string())?);
    Ok(Arc::new(Engine {
        client,
        lake,
        state: state.into(),
        warehouse: Arc::new(std::sync::Mutex::new(warehouse)),
        concurrency: cfg.concurrency,
        incremental: cfg.incremental(),
        progress,
        run_id,
        deadline: None,
    }))
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
}

/// Per table and account: rows, when data landed, what it is complete up to, and the last error.
pub fn status(cfg: &Config) -> Result<Vec<StatusRow>, String> {
    let path = cfg.duckdb_path();
    if !path.exists() {
        return Err(format!(
            "no data yet: {} does not exist (run `stripe-pipeline sync` first)",
            path.display()
        ));
    }
    let mut db = DuckDb::open(&path).map_err(|e| e.to_string())?;
    let state = LocalState::open(&cfg.state_dir()).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for livemode in [true, false] {
        let schema = schema_name(livemode);
        let rows = db
            .query_strings(&format!(
                "SELECT table_name, merchant_id, CAST(data_landed AS VARCHAR), CAST(data_as_of AS VARCHAR) FROM \"{schema}\".data_load_times ORDER BY 2, 1"
            ))
            .unwrap_or_default();
        for r in rows {
            let [Some(table), Some(merchant), landed, as_of] =
                <[Option<String>; 4]>::try_from(r).unwrap_or([None, None, None, None])
            else {
                continue;
            };
            let count = db.count(livemode, &table, &merchant).unwrap_or(0);
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
            });
        }
    }
    Ok(out)
}
