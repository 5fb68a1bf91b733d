//! `stripe-pipeline`: sync Stripe accounts to Parquet and a warehouse (DuckDB by default; PostgreSQL).
//!
//! Exit codes: 0 everything synced; 1 some datasets failed (named in the summary); 2 bad configuration or
//! an invalid key (nothing was written); 3 the output (lake, state or warehouse) could not be used.

mod demo;
mod progress;
#[cfg(feature = "aws")]
mod stack;
mod summary;
mod webhooks;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use stripe_pipeline::catalog::{Catalog, TableKind};
use stripe_pipeline::config::{Config, Destination};
use stripe_pipeline::engine::freshness_kind;

#[derive(Debug, Parser)]
#[command(
    name = "stripe-pipeline",
    version,
    about = "Copy Stripe accounts into Parquet files and warehouse tables (DuckDB, PostgreSQL) named like Stripe's Data Pipeline"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct Common {
    /// TOML configuration file (see README: accounts, output_dir, api_base, rate_budget, concurrency, datasets).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Output directory (lake in <dir>/lake, DuckDB in <dir>/stripe_pipeline.duckdb, state in <dir>/state). Default ./data.
    #[arg(long)]
    output_dir: Option<PathBuf>,
    /// Warehouse: duckdb (default), postgres (URL from [postgres] in the config or STRIPE_PIPELINE_POSTGRES_URL), redshift ([redshift]), snowflake ([snowflake]), none (the Parquet lake only).
    #[arg(long, value_parser = Destination::NAMES)]
    destination: Option<String>,
}

/// What to read: the `--dataset` and `--api-base` flags of `sync`, `check` and `serve-webhooks`.
#[derive(Debug, clap::Args)]
struct Source {
    /// Only these datasets (repeatable), e.g. --dataset charges --dataset customers.
    #[arg(long = "dataset")]
    datasets: Vec<String>,
    /// Stripe API base URL (default https://api.stripe.com; env STRIPE_API_BASE).
    #[arg(long)]
    api_base: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sync every configured account and dataset into the lake and the warehouse: a backfill on the first run, then the changes since the last run (events, due snapshots).
    Sync {
        #[command(flatten)]
        common: Common,
        /// Sync the built-in Stripe simulator's demo data (5 accounts' worth, ~113,000 objects); no key needed.
        #[arg(long)]
        demo: bool,
        #[command(flatten)]
        source: Source,
        /// Share of Stripe's rate limits to use, in (0, 1] (default 0.5).
        #[arg(long)]
        rate_budget: Option<f64>,
        /// Segments in flight per account (default 8).
        #[arg(long)]
        concurrency: Option<usize>,
        /// No progress bars.
        #[arg(long, short)]
        quiet: bool,
        /// After the sync, export the latest state of every object in Stripe's cloud-storage layout (to export_url, default <lake>/export).
        #[arg(long)]
        export: bool,
    },
    /// Export the latest state of every object from the lake in Stripe's cloud-storage layout: <livemode|testmode>/<YYYYMMDDHHMM>/<table>/*.parquet and coreapi_SUCCESS (to export_url, default <lake>/export).
    Export {
        #[command(flatten)]
        common: Common,
    },
    /// Per table and account: rows, when data landed, what it is complete up to, the last error.
    Status {
        #[command(flatten)]
        common: Common,
    },
    /// Mark an account's datasets for a full list on the next sync: every object is loaded again and those gone from Stripe are marked deleted (after an outage, a restore of the warehouse, or a doubt).
    Resync {
        #[command(flatten)]
        common: Common,
        /// The configured account (its name in the config or in STRIPE_PIPELINE_KEYS).
        #[arg(long)]
        account: String,
        /// Only these datasets (repeatable); default: every dataset the configuration syncs.
        #[arg(long = "dataset")]
        datasets: Vec<String>,
        /// A deployed stack's state table (its output StateTableName), instead of the local state; needs --accounts-table.
        #[cfg(feature = "aws")]
        #[arg(long, requires = "accounts_table")]
        state_table: Option<String>,
        /// The stack's accounts table (its output AccountsTableName), where the account and its secret are.
        #[cfg(feature = "aws")]
        #[arg(long, requires = "state_table")]
        accounts_table: Option<String>,
    },
    /// A deployed stack's accounts (its DynamoDB accounts table): list, add, disable, enable.
    #[cfg(feature = "aws")]
    Accounts {
        /// The accounts table (the stack's output AccountsTableName).
        #[arg(long)]
        accounts_table: String,
        #[command(subcommand)]
        action: stack::AccountsAction,
    },
    /// Check the set-up without syncing: each account's key (its mode, and which datasets it may read), the lake, the export store, the warehouse. Prints what works and what to fix; exits 1 if anything fails.
    Check {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        source: Source,
    },
    /// Keep the warehouse fresh with Stripe's webhooks: receive signed deliveries on http://<listen>/webhooks/<account> (secret in STRIPE_PIPELINE_WEBHOOK_SECRET), apply their events within seconds, and run a whole sync every --sync-every seconds to catch anything a push missed.
    ServeWebhooks {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        source: Source,
        /// Address to listen on (behind a TLS proxy or a tunnel: Stripe delivers to https URLs only).
        #[arg(long, default_value = "127.0.0.1:8787")]
        listen: std::net::SocketAddr,
        /// Seconds between whole syncs, which also catch pushes that were lost (0: never).
        #[arg(long, default_value_t = 300)]
        sync_every: u64,
    },
    /// List the datasets and tables of the catalog.
    Tables,
}

fn load_config(common: &Common) -> Result<Config, String> {
    let mut cfg = match &common.config {
        Some(path) => Config::from_file(path).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    // Precedence: flags, then the environment, then the file, then the defaults.
    cfg.merge_env(|k| std::env::var(k).ok())
        .map_err(|e| e.to_string())?;
    if let Some(dir) = &common.output_dir {
        cfg.output_dir = dir.clone();
    }
    if let Some(name) = &common.destination {
        cfg.destination = Destination::parse(name)?;
    }
    Ok(cfg)
}

/// [`load_config`] with the `--dataset` and `--api-base` flags of `sync`, `check` and `serve-webhooks`
/// over it.
fn load_config_for(common: &Common, source: Source) -> Result<Config, String> {
    let mut cfg = load_config(common)?;
    if !source.datasets.is_empty() {
        cfg.datasets = source.datasets;
    }
    if let Some(b) = source.api_base {
        cfg.api_base = b;
    }
    Ok(cfg)
}

fn main() -> ExitCode {
    end_quietly_when_the_reader_stops();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STRIPE_PIPELINE_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(3);
        }
    };
    match cli.command {
        Command::Sync {
            common,
            demo,
            source,
            rate_budget,
            concurrency,
            quiet,
            export,
        } => runtime.block_on(async {
            let mut cfg = match load_config_for(&common, source) {
                Ok(c) => c,
                Err(e) => return fail(2, &e),
            };
            if let Some(b) = rate_budget {
                cfg.rate_budget = b;
            }
            if let Some(c) = concurrency {
                cfg.concurrency = c;
            }
            cfg.export |= export;
            let _sim = if demo {
                match demo::start(&mut cfg, quiet).await {
                    Ok(sim) => Some(sim),
                    Err(e) => return fail(3, &format!("cannot start the demo simulator: {e}")),
                }
            } else {
                None
            };
            summary::run_sync(cfg, quiet).await
        }),
        Command::Check { common, source } => runtime.block_on(async {
            let cfg = match load_config_for(&common, source) {
                Ok(c) => c,
                Err(e) => return fail(2, &e),
            };
            let accounts = match cfg.accounts(|k| std::env::var(k).ok()) {
                Ok(a) => a,
                Err(e) => return fail(2, &e.to_string()),
            };
            let report = stripe_pipeline::local::check(&cfg, &accounts).await;
            print!("{}", report.table());
            if report.ok() {
                ExitCode::SUCCESS
            } else {
                println!("Some parts failed: fix what the lines marked FAILED say, then run check again.");
                ExitCode::from(1)
            }
        }),
        Command::ServeWebhooks {
            common,
            source,
            listen,
            sync_every,
        } => runtime.block_on(async {
            let cfg = match load_config_for(&common, source) {
                Ok(c) => c,
                Err(e) => return fail(2, &e),
            };
            let serve = webhooks::Serve { listen, sync_every };
            webhooks::run(cfg, serve).await
        }),
        Command::Export { common } => runtime.block_on(async {
            let cfg = match load_config(&common) {
                Ok(c) => c,
                Err(e) => return fail(2, &e),
            };
            summary::run_export(&cfg).await
        }),
        Command::Status { common } => {
            let cfg = match load_config(&common) {
                Ok(c) => c,
                Err(e) => return fail(2, &e),
            };
            let exports = stripe_pipeline::local::has_exports(&cfg);
            match runtime.block_on(stripe_pipeline::local::status(&cfg)) {
                Ok(rows) => summary::print_status(&rows),
                // The lake and its exports are the output: nothing in a warehouse to show.
                Err(_) if exports && cfg.destination == Destination::None => {}
                Err(e) => return fail(3, &e),
            }
            if exports {
                match runtime.block_on(stripe_pipeline::local::latest_exports(&cfg)) {
                    Ok(latest) => summary::print_exports(&cfg, &latest),
                    Err(e) => return fail(3, &e),
                }
            }
            ExitCode::SUCCESS
        }
        Command::Resync {
            common,
            account,
            datasets,
            #[cfg(feature = "aws")]
            state_table,
            #[cfg(feature = "aws")]
            accounts_table,
        } => {
            let cfg = match load_config(&common) {
                Ok(c) => c,
                Err(e) => return fail(2, &e),
            };
            #[cfg(feature = "aws")]
            if let (Some(state), Some(accounts)) = (&state_table, &accounts_table) {
                return runtime.block_on(stack::resync(&cfg, accounts, state, &account, &datasets));
            }
            match runtime.block_on(stripe_pipeline::local::resync(&cfg, &account, &datasets)) {
                Ok((r, marked)) => {
                    println!(
                        "account '{account}' ({}, {}): {} marked for a full list; the next sync lists them again and marks objects gone from Stripe deleted",
                        r.merchant_id,
                        r.mode(),
                        marked.join(", ")
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e.code, &e.message),
            }
        }
        #[cfg(feature = "aws")]
        Command::Accounts {
            accounts_table,
            action,
        } => runtime.block_on(stack::accounts(&accounts_table, action)),
        Command::Tables => {
            let catalog = Catalog::get();
            let line = |d: &stripe_pipeline::catalog::Dataset| {
                let tables: Vec<String> = d
                    .tables
                    .iter()
                    .map(|t| match t.kind {
                        TableKind::Metadata => format!("{} (key, value)", t.name),
                        TableKind::Child if t.fetch => {
                            format!(
                                "{} ({} columns, listed per parent)",
                                t.name,
                                t.columns.len()
                            )
                        }
                        _ => format!("{} ({} columns)", t.name, t.columns.len()),
                    })
                    .collect();
                println!("  {:<30} {}", d.name, tables.join(", "));
                println!("  {:<30} fresh by: {}", "", freshness_kind(d));
                if let Some(p) = &d.per_parent {
                    println!("  {:<30} listed per {} ({})", "", p.param, p.list_path);
                }
            };
            println!(
                "Every account ({} datasets), by product:",
                catalog.datasets.len()
            );
            let mut groups: Vec<&str> = Vec::new();
            for d in &catalog.datasets {
                if !groups.contains(&d.group.as_str()) {
                    groups.push(&d.group);
                }
            }
            for group in groups {
                println!("{group}:");
                catalog
                    .datasets
                    .iter()
                    .filter(|d| d.group == group)
                    .for_each(line);
            }
            println!();
            println!("Connect platforms (`connect = true`): their connected accounts, and each one's data in");
            println!("`connected_account_<table>` (every table above, with an `account` column):");
            catalog.platform.iter().for_each(line);
            ExitCode::SUCCESS
        }
    }
}

/// `stripe-pipeline tables | head -1`: when whoever reads the output stops reading, the process ends
/// quietly, as Unix tools do. Rust ignores SIGPIPE, so without this the next write fails and
/// `println!` panics. A sync ended this way loses nothing: its state survives being killed at any
/// point.
#[cfg(unix)]
fn end_quietly_when_the_reader_stops() {
    // SAFETY: called first thing in `main`, before any other thread exists; it only restores the
    // default action of one signal.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn end_quietly_when_the_reader_stops() {}

fn fail(code: u8, message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(code)
}
