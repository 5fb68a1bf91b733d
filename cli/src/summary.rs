//! Running a sync from the command line and printing what happened.

use crate::progress::BarProgress;
use std::process::ExitCode;
use std::sync::Arc;
use stripe_pipeline::catalog::{Catalog, Dataset};
use stripe_pipeline::clock::{Clock, SystemClock};
use stripe_pipeline::config::Config;
use stripe_pipeline::engine::{self, AccountReport, Engine, Resolved, SyncReport};
use stripe_pipeline::local::StatusRow;

/// What a command that syncs starts from: the accounts' keys checked, the stores usable, the engine.
pub struct Started {
    pub datasets: Vec<&'static Dataset>,
    pub resolved: Vec<Resolved>,
    pub engine: Engine,
    pub progress: Arc<BarProgress>,
}

/// Validates the configuration, checks the stores and every key (an invalid key stops the command
/// before anything is written) and opens the engine for a run named `<run>-<time>-<pid>`; the exit
/// code of the first thing that fails.
pub async fn start(cfg: &Config, quiet: bool, run: &str) -> Result<Started, ExitCode> {
    let accounts = cfg
        .accounts(|k| std::env::var(k).ok())
        .map_err(|e| crate::fail(2, &e.to_string()))?;
    let catalog = Catalog::get();
    let datasets: Vec<&'static Dataset> = if cfg.datasets.is_empty() {
        catalog.datasets.iter().collect()
    } else {
        cfg.datasets
            .iter()
            .filter_map(|d| catalog.dataset(d))
            .collect()
    };
    stripe_pipeline::local::check_stores(cfg)
        .await
        .map_err(|e| crate::fail(3, &e))?;
    let client = stripe_pipeline::local::client(cfg);
    let resolved = engine::resolve(&client, &accounts)
        .await
        .map_err(|e| crate::fail(2, &e.to_string()))?;
    let names: Vec<String> = accounts.iter().map(|a| a.name.clone()).collect();
    let progress = Arc::new(BarProgress::new(&names, datasets.len(), quiet));
    let run_id = format!("{run}-{}-{}", SystemClock.now_secs(), std::process::id());
    let engine = stripe_pipeline::local::engine(cfg, client, progress.clone(), run_id)
        .await
        .map_err(|e| crate::fail(3, &e))?;
    Ok(Started {
        datasets,
        resolved,
        engine,
        progress,
    })
}

/// Validates, checks keys, syncs, prints the summary; returns the exit code.
pub async fn run_sync(cfg: Config, quiet: bool) -> ExitCode {
    let Started {
        datasets,
        resolved,
        engine,
        progress,
    } = match start(&cfg, quiet, "run").await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let warehouse = engine.describe_warehouse();
    let report = engine.sync(&resolved, &datasets).await;
    progress.finish();
    let report = match report {
        Ok(r) => r,
        Err(e) => return crate::fail(1, &e.to_string()),
    };
    print_summary(&cfg, &warehouse, &report);
    let failures = report.failures();
    for (account, dataset, error) in &failures {
        eprintln!("error: account '{account}', {dataset} failed: {error}");
    }
    // The export runs after a partial failure too: it holds everything the lake has.
    let exported = if cfg.export {
        export(&cfg, engine.lake()).await
    } else {
        ExitCode::SUCCESS
    };
    if failures.is_empty() {
        exported
    } else {
        ExitCode::from(1)
    }
}

/// `stripe-pipeline export`: builds the exports from the lake alone.
pub async fn run_export(cfg: &Config) -> ExitCode {
    match stripe_pipeline::local::open_lake(cfg) {
        Ok(lake) => export(cfg, &lake).await,
        Err(e) => crate::fail(3, &e),
    }
}

async fn export(cfg: &Config, lake: &stripe_pipeline::lake::Lake) -> ExitCode {
    let target = stripe_pipeline::local::export_target(cfg);
    let reports = match stripe_pipeline::local::export(cfg, lake).await {
        Ok(r) => r,
        Err(e) => return crate::fail(1, &e),
    };
    if reports.is_empty() {
        println!(
            "Export: nothing to export yet (the lake {} is empty).",
            cfg.lake_label()
        );
    }
    for r in &reports {
        if r.already_complete {
            println!("Export {target}/{}: already complete.", r.folder);
            continue;
        }
        let base = match &r.previous {
            Some(p) => format!(
                "on {p}: {} change files merged, {} files copied",
                r.change_files, r.copied
            ),
            None => format!("from {} change files", r.change_files),
        };
        println!(
            "Export {target}/{}: {} tables, {} rows in {} files ({base}) in {:.1} s.",
            r.folder, r.tables, r.rows, r.files, r.elapsed_secs
        );
        if !r.removed.is_empty() {
            println!("    removed older exports: {}", r.removed.join(", "));
        }
    }
    ExitCode::SUCCESS
}

fn print_summary(cfg: &Config, warehouse: &str, report: &SyncReport) {
    println!(
        "Synced {} account(s) in {:.1} s: {} API calls, {} rate-limited (429), {} retries.",
        report.accounts.len(),
        report.elapsed_secs,
        report.api_calls,
        report.rate_limited,
        report.retries
    );
    let calls: Vec<String> = report
        .calls
        .iter()
        .map(|(kind, n)| {
            format!(
                "{} {n}",
                serde_json::to_value(kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            )
        })
        .collect();
    println!("API calls by kind: {}.", calls.join(", "));
    // A platform may have thousands of connected accounts: one line per platform and mode, and
    // each connected account that failed below it.
    let mut platforms: std::collections::BTreeMap<(&str, bool), Vec<&AccountReport>> =
        Default::default();
    for a in report.accounts.iter().filter(|a| a.connected.is_some()) {
        let platform = a.name.rsplit_once('/').map_or(a.name.as_str(), |(p, _)| p);
        platforms.entry((platform, a.livemode)).or_default().push(a);
    }
    for a in &report.accounts {
        if a.connected.is_some() {
            continue;
        }
        let objects: u64 = a.datasets.iter().map(|d| d.objects).sum();
        let changes: u64 = a.datasets.iter().map(|d| d.changes).sum();
        let schema = if a.livemode {
            "stripe"
        } else {
            "stripe_testmode"
        };
        println!(
            "  {} ({}, {schema}): {objects} objects listed, {changes} changed objects from events",
            a.name, a.merchant_id
        );
        if let Some(e) = &a.error {
            println!("    NOT SYNCED: {e}");
            continue;
        }
        let f = &a.feed;
        match (&f.error, f.window) {
            (Some(e), _) => println!("    change feed FAILED: {e}"),
            (None, Some((from, to))) => println!(
                "    change feed: {} events ({} duplicates) in [{from}, {to}), {} objects changed, {} re-read in the pinned API version",
                f.counts.events, f.counts.duplicates, f.counts.objects, f.counts.refetched
            ),
            (None, None) if f.started => {
                println!("    change feed: started (reads changes from the next run on)")
            }
            (None, None) => println!("    change feed: nothing to read yet (the last read is within the lag)"),
        }
        for d in &a.datasets {
            let list = d
                .list
                .and_then(|k| serde_json::to_value(k).ok())
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| "-".into());
            match (&d.error, &d.not_enabled) {
                (Some(e), _) => println!("    {:<22} FAILED: {e}", d.dataset),
                (None, Some(why)) => println!(
                    "    {:<22} not enabled for this account (asked again after snapshot_interval_secs): {why}",
                    d.dataset
                ),
                (None, None) => println!(
                    "    {:<22} {:>9} listed ({list}), {:>7} changed",
                    d.dataset, d.objects, d.changes
                ),
            }
        }
    }
    for ((platform, livemode), connected) in &platforms {
        let datasets = connected.iter().flat_map(|a| &a.datasets);
        let objects: u64 = datasets.clone().map(|d| d.objects).sum();
        let changes: u64 = datasets.map(|d| d.changes).sum();
        println!(
            "  {platform}: {} connected account(s) (connected_account_* in {}): {objects} objects listed, {changes} changed objects from events",
            connected.len(),
            stripe_pipeline::warehouse::schema_name(*livemode)
        );
        for a in connected {
            let failed: Vec<&str> = a
                .datasets
                .iter()
                .filter(|d| d.error.is_some())
                .map(|d| d.dataset.as_str())
                .collect();
            if let Some(e) = a.error.as_ref().or(a.feed.error.as_ref()) {
                println!("    {} FAILED: {e}", a.name);
            } else if !failed.is_empty() {
                println!("    {} FAILED: {}", a.name, failed.join(", "));
            }
        }
    }
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    let mut per_table: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for f in &report.files {
        *per_table.entry(f.table.as_str()).or_default() += f.rows;
    }
    println!("Rows written this run, per table:");
    for (table, rows) in per_table {
        println!("    {table:<34} {rows:>9}");
    }
    println!("Lake: {}   Warehouse: {warehouse}", cfg.lake_label());
}

pub fn print_status(rows: &[StatusRow]) {
    println!(
        "{:<16} {:<34} {:<22} {:>9}  {:<26} {:<26} last error",
        "schema", "table", "merchant_id", "rows", "data landed", "data as of"
    );
    for r in rows {
        println!(
            "{:<16} {:<34} {:<22} {:>9}  {:<26} {:<26} {}",
            r.schema,
            r.table,
            r.merchant_id,
            r.rows,
            r.data_landed.as_deref().unwrap_or("-"),
            r.data_as_of.as_deref().unwrap_or("-"),
            match (&r.last_error, &r.not_enabled) {
                (Some(e), _) => e.clone(),
                (None, Some(why)) => format!("not enabled for this account: {why}"),
                (None, None) => "-".into(),
            }
        );
    }
}

/// The newest complete export of each mode (`status` with exports on).
pub fn print_exports(cfg: &Config, latest: &[stripe_pipeline::export::Latest]) {
    let target = stripe_pipeline::local::export_target(cfg);
    if latest.is_empty() {
        println!("Exports in Stripe's layout at {target}: none complete yet.");
    }
    for l in latest {
        let mode = if l.livemode { "livemode" } else { "testmode" };
        println!(
            "Export {target}/{mode}/{}: complete, {} tables, {} rows.",
            l.run_date, l.tables, l.rows
        );
    }
}
