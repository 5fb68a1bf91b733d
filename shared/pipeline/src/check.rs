//! The set-up check (`stripe-pipeline check`), as Stripe's own product runs one before its first
//! load: each part the pipeline needs is tried once — every account's key and what it may read, the
//! stores it writes, the warehouse — and reported with what works or what to fix. Nothing is synced.

use crate::catalog::Dataset;
use crate::config::Account;
use crate::lake::Lake;
use crate::stripe::{Caller, StripeClient, StripeError};
use crate::warehouse::Warehouse;

/// What one part came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What was tried: `key of acme`, `acme: charges`, `lake ./data/lake`.
    pub part: String,
    pub ok: bool,
    /// What works, or what is wrong and how to fix it.
    pub detail: String,
}

impl Finding {
    pub fn ok(part: impl Into<String>, detail: impl Into<String>) -> Finding {
        Finding {
            part: part.into(),
            ok: true,
            detail: detail.into(),
        }
    }

    pub fn failed(part: impl Into<String>, detail: impl Into<String>) -> Finding {
        Finding {
            part: part.into(),
            ok: false,
            detail: detail.into(),
        }
    }
}

/// Every finding of a check.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.findings.iter().all(|f| f.ok)
    }

    /// The findings as a table: part, `ok` or `FAILED`, detail.
    pub fn table(&self) -> String {
        let width = self
            .findings
            .iter()
            .map(|f| f.part.chars().count())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for f in &self.findings {
            let result = if f.ok { "ok" } else { "FAILED" };
            out.push_str(&format!(
                "{:width$}  {result:6}  {}\n",
                f.part,
                f.detail,
                width = width
            ));
        }
        out
    }
}

/// Each account's key (valid, its mode, the account it opens), then which of `datasets` it may read:
/// one list call each, `limit=1`. A dataset of a product the account does not use is not a failure.
pub async fn accounts(
    client: &StripeClient,
    accounts: &[Account],
    datasets: &[&Dataset],
) -> Vec<Finding> {
    let mut out = Vec::new();
    for a in accounts {
        let part = format!("key of {}", a.name);
        // The same check a sync starts with.
        let (caller, id) = match crate::engine::open(client, a).await {
            Ok(opened) => (opened.caller, opened.merchant_id),
            Err(e) => {
                out.push(Finding::failed(part, e.to_string()));
                continue;
            }
        };
        let mode = if a.livemode { "live" } else { "test" };
        out.push(Finding::ok(part, format!("{mode} mode, account {id}")));
        let (mut readable, mut unused) = (0, Vec::new());
        for d in datasets {
            match probe(client, &caller, d).await {
                Ok(()) => readable += 1,
                Err(StripeError::NotEnabled { .. }) => unused.push(d.name.as_str()),
                Err(e) => out.push(Finding::failed(
                    format!("{}: {}", a.name, d.name),
                    e.to_string(),
                )),
            }
        }
        let mut detail = format!("{readable} of {} readable", datasets.len());
        if !unused.is_empty() {
            detail.push_str(&format!(
                "; products the account does not use: {}",
                unused.join(", ")
            ));
        }
        out.push(Finding::ok(format!("{}: datasets", a.name), detail));
    }
    out
}

/// One page of one object from the dataset's list (for a list under parents, from the parents' list).
async fn probe(
    client: &StripeClient,
    caller: &Caller,
    dataset: &Dataset,
) -> Result<(), StripeError> {
    let path = dataset
        .per_parent
        .as_ref()
        .map_or(dataset.list_path.as_str(), |p| p.list_path.as_str());
    let mut params = dataset.default_params.clone();
    params.push(("limit".into(), "1".into()));
    client.get_raw(caller, path, &params).await.map(|_| ())
}

/// A store the pipeline writes (the lake, the export store): a probe file written, read back and
/// deleted.
pub async fn store(part: String, store: &Lake) -> Finding {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let path = format!("_check/probe-{}-{nanos}", std::process::id());
    let body = format!("stripe-pipeline check {nanos}").into_bytes();
    let result = async {
        store
            .put(&path, body.clone())
            .await
            .map_err(|e| format!("cannot write: {e}"))?;
        let read = store
            .read(&path)
            .await
            .map_err(|e| format!("wrote a probe file but cannot read it back: {e}"))?;
        if read.as_ref() != body.as_slice() {
            return Err("a probe file read back differs from what was written".to_string());
        }
        store
            .delete(&path)
            .await
            .map_err(|e| format!("cannot delete the probe file {path}: {e}"))
    }
    .await;
    match result {
        Ok(()) => Finding::ok(part, "wrote, read back and deleted a probe file"),
        Err(e) => Finding::failed(part, e),
    }
}

/// The warehouse, asked one probe statement.
pub async fn warehouse(wh: &dyn Warehouse) -> Finding {
    let part = format!("warehouse {}", wh.describe());
    if !wh.keeps_rows() {
        return Finding::ok(part, "nothing to check");
    }
    match wh.query_strings("SELECT 1").await {
        Ok(rows)
            if rows
                .first()
                .and_then(|r| r.first().cloned().flatten())
                .as_deref()
                == Some("1") =>
        {
            Finding::ok(part, "answered a probe statement")
        }
        Ok(rows) => Finding::failed(part, format!("a probe statement answered {rows:?}")),
        Err(e) => Finding::failed(part, e.to_string()),
    }
}
