//! What a run tells its caller: progress while it runs ([`Progress`]) and, at the end, a report of every
//! account, dataset and change feed with its error, if any. Nothing that failed is left out: the CLI's
//! exit code and the functions' batch failures are computed from [`SyncReport::failures`].

use super::plan::ListKind;
use super::resolve::Resolved;
use crate::catalog::Dataset;
use crate::changes::FeedCounts;
use crate::lake::LakeFile;
use crate::stripe::{CallKind, ClientStats};
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// What the sync reports while it runs (the CLI draws progress bars from it).
pub trait Progress: Send + Sync {
    fn rows(&self, account: &str, dataset: &str, objects: u64);
    fn dataset_done(&self, account: &str, dataset: &str, error: Option<&str>);
}

/// Reports nothing.
pub struct Quiet;

impl Progress for Quiet {
    fn rows(&self, _: &str, _: &str, _: u64) {}
    fn dataset_done(&self, _: &str, _: &str, _: Option<&str>) {}
}

#[derive(Debug, Clone, Serialize)]
pub struct DatasetReport {
    pub dataset: String,
    /// Objects listed this run.
    pub objects: u64,
    /// Objects changed according to the change feed.
    pub changes: u64,
    /// The list this dataset got this run, if any.
    pub list: Option<ListKind>,
    pub error: Option<String>,
    /// The account does not use this dataset's Stripe product (Stripe's message): not a failure.
    pub not_enabled: Option<String>,
}

/// What the change feed of one account and mode did.
#[derive(Debug, Clone, Serialize)]
pub struct FeedReport {
    /// The window read, `[from, to)` in Stripe's clock; `None` when nothing was read this run.
    pub window: Option<(i64, i64)>,
    pub counts: FeedCounts,
    pub error: Option<String>,
    /// Set when the cursor was past Stripe's event retention and the datasets are listed again.
    pub warning: Option<String>,
    /// The feed began this run (first sync, or after the cliff): changes are read from the next run on.
    pub started: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct AccountReport {
    pub name: String,
    pub merchant_id: String,
    /// The connected account, when this is one of a Connect platform's (`merchant_id`).
    pub connected: Option<String>,
    pub livemode: bool,
    pub datasets: Vec<DatasetReport>,
    pub feed: FeedReport,
    /// Why nothing was done for this account (another run holds it, the state store failed).
    pub error: Option<String>,
    /// Columns this run added to existing warehouse tables (`schema.table.column`): the catalog grew.
    pub columns_added: Vec<String>,
}

impl AccountReport {
    /// A report of an account where nothing happened yet.
    pub fn empty(r: &Resolved, datasets: &[&'static Dataset]) -> AccountReport {
        AccountReport {
            name: r.account.name.clone(),
            merchant_id: r.merchant_id.clone(),
            connected: r.connected.clone(),
            livemode: r.account.livemode,
            datasets: datasets
                .iter()
                .map(|d| DatasetReport {
                    dataset: d.name.clone(),
                    objects: 0,
                    changes: 0,
                    list: None,
                    error: None,
                    not_enabled: None,
                })
                .collect(),
            feed: FeedReport {
                window: None,
                counts: FeedCounts::default(),
                error: None,
                warning: None,
                started: false,
            },
            error: None,
            columns_added: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    pub run_id: String,
    pub accounts: Vec<AccountReport>,
    pub api_calls: u64,
    /// API calls by kind.
    pub calls: Vec<(CallKind, u64)>,
    pub rate_limited: u64,
    pub retries: u64,
    pub files: Vec<LakeFile>,
    /// Things the user must know although nothing failed (a re-backfill after the 30-day cliff).
    pub warnings: Vec<String>,
    pub elapsed_secs: f64,
}

impl SyncReport {
    /// The report of a finished run: the accounts' reports, the client's counters, the files written,
    /// and the warnings the user must see although nothing failed.
    pub(crate) fn assemble(
        run_id: &str,
        accounts: Vec<AccountReport>,
        stats: &ClientStats,
        files: Vec<LakeFile>,
        elapsed: Duration,
    ) -> SyncReport {
        let cliffs = accounts.iter().filter_map(|a| a.feed.warning.clone());
        let grown = accounts
            .iter()
            .filter(|a| !a.columns_added.is_empty())
            .map(|a| {
                format!(
                    "{}: new columns added to the warehouse: {}",
                    a.name,
                    a.columns_added.join(", ")
                )
            });
        let warnings = cliffs.chain(grown).collect();
        SyncReport {
            run_id: run_id.to_string(),
            accounts,
            api_calls: stats.requests.load(Ordering::Relaxed),
            calls: CallKind::ALL
                .iter()
                .map(|k| (*k, stats.calls(*k)))
                .collect(),
            rate_limited: stats.rate_limited.load(Ordering::Relaxed),
            retries: stats.retries.load(Ordering::Relaxed),
            files,
            warnings,
            elapsed_secs: elapsed.as_secs_f64(),
        }
    }

    /// `(account, what, error)` for every failed part: `what` is a dataset name, `events` for the
    /// change feed, or `account` when the account was not synced at all.
    pub fn failures(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for a in &self.accounts {
            if let Some(e) = &a.error {
                out.push((a.name.clone(), "account".to_string(), e.clone()));
            }
            if let Some(e) = &a.feed.error {
                out.push((a.name.clone(), "events".to_string(), e.clone()));
            }
            for d in &a.datasets {
                if let Some(e) = &d.error {
                    out.push((a.name.clone(), d.dataset.clone(), e.clone()));
                }
            }
        }
        out
    }
}
