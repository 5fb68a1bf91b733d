//! Notifications to the operators: the [`Notifier`] port (a channel: SNS in the Lambda functions, the
//! log by default), and [`Alerts`], which decides what to tell them — an account's first full load is
//! done; a slice failed N times in a row (with the error), and later recovered; the change feed fell
//! past Stripe's 30-day event retention and a re-backfill started; new warehouse columns. One message
//! per incident, not per retry: each incident's count and whether it was announced live in the state
//! store (`alert#…` documents), so every worker of a deployment shares them.

use crate::state::{StateError, StateStore};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One message to the operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// A line: an e-mail's subject. Channels may shorten it to what they accept.
    pub title: String,
    /// The whole text, several lines.
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot send a notification through {channel}: {message}")]
pub struct NotifyError {
    pub channel: String,
    pub message: String,
}

/// A channel to the operators. Every adapter passes the shared suite in
/// `stripe_pipeline_testkit::conformance::notifier`.
#[async_trait::async_trait]
pub trait Notifier: Send + Sync {
    /// The channel, for messages (`SNS topic arn:…`).
    fn describe(&self) -> String;
    /// Delivers one notification (once: a channel does not retry on its own after reporting success).
    async fn publish(&self, notification: &Notification) -> Result<(), NotifyError>;
}

/// The log as the channel: a warning per notification, for deployments without a topic and for local
/// mode.
#[derive(Debug, Default)]
pub struct LogNotifier;

#[async_trait::async_trait]
impl Notifier for LogNotifier {
    fn describe(&self) -> String {
        "the log".into()
    }

    async fn publish(&self, n: &Notification) -> Result<(), NotifyError> {
        tracing::warn!(notification = %n.title, "{}", n.message);
        Ok(())
    }
}

/// What is remembered about one slice's failures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Incident {
    /// Failures in a row.
    failures: u32,
    /// A notification went out for the current run of failures (or, for `_first_load`, the load).
    announced: bool,
}

/// Decides what to tell the operators, and tells them through a [`Notifier`].
pub struct Alerts {
    notifier: Arc<dyn Notifier>,
    state: StateStore,
    alert_after: u32,
}

impl Alerts {
    /// `alert_after`: failures in a row before a slice's incident is announced (at least 1).
    pub fn new(notifier: Arc<dyn Notifier>, state: StateStore, alert_after: u32) -> Alerts {
        Alerts {
            notifier,
            state,
            alert_after: alert_after.max(1),
        }
    }

    /// Updates an incident with compare-and-swap (two workers may report at once); returns what to
    /// publish, decided from the state that was written.
    async fn update(
        &self,
        key: &str,
        change: impl Fn(&mut Incident) -> Option<(String, String)>,
    ) -> Result<Option<(String, String)>, StateError> {
        for _ in 0..5 {
            let current = self.state.get::<Incident>(key).await?;
            let mut next = current.value.clone();
            let publish = change(&mut next);
            if next == current.value {
                return Ok(publish);
            }
            match self.state.put(key, current.version, &next).await {
                Ok(_) => return Ok(publish),
                Err(StateError::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    async fn send(&self, result: Result<Option<(String, String)>, StateError>) {
        // A notification must never fail the slice whose data is already committed.
        match result {
            Ok(Some((title, message))) => {
                if let Err(e) = self
                    .notifier
                    .publish(&Notification { title, message })
                    .await
                {
                    tracing::error!(error = %e, "could not send a notification");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "could not record an incident"),
        }
    }

    /// `what` of `account` (a dataset, `_events`, or `account`) failed again; `scope` is the state
    /// prefix of the account and mode (or `account/<name>` before its key was checked). A `permanent`
    /// failure (a bad key, a missing permission, bad configuration: retrying cannot fix it) is
    /// announced at once; others after `alert_after` in a row.
    pub async fn failed(
        &self,
        scope: &str,
        account: &str,
        what: &str,
        error: &str,
        permanent: bool,
    ) {
        let after = if permanent { 1 } else { self.alert_after };
        let result = self
            .update(&format!("alert#{scope}/{what}"), |i| {
                i.failures += 1;
                if i.failures >= after && !i.announced {
                    i.announced = true;
                    let retrying = if permanent {
                        "Retrying cannot fix this: the error says what to change. The pipeline tries again on every schedule tick"
                    } else {
                        "The pipeline keeps retrying on every schedule tick"
                    };
                    Some((
                        format!("{account} {what} is failing"),
                        format!(
                            "Account '{account}', {what}: failed {} time(s) in a row. The last error:\n\n{error}\n\n{retrying}; you get one more message when it recovers.",
                            i.failures
                        ),
                    ))
                } else {
                    None
                }
            })
            .await;
        self.send(result).await;
    }

    /// `what` of `account` succeeded: ends an incident (with a recovery message if it was announced).
    pub async fn succeeded(&self, scope: &str, account: &str, what: &str) {
        let result = self
            .update(&format!("alert#{scope}/{what}"), |i| {
                let was = std::mem::take(i);
                was.announced.then(|| {
                    (
                        format!("{account} {what} recovered"),
                        format!(
                            "Account '{account}', {what}: working again after {} failures in a row.",
                            was.failures
                        ),
                    )
                })
            })
            .await;
        self.send(result).await;
    }

    /// The first full load of `account` is done (sent once per account and mode).
    pub async fn first_load_done(&self, scope: &str, account: &str, datasets: usize) {
        let result = self
            .update(&format!("alert#{scope}/_first_load"), |i| {
                (!i.announced).then(|| {
                    i.announced = true;
                    (
                        format!("{account} first full load done"),
                        format!(
                            "Account '{account}': all {datasets} datasets are loaded. From now on the pipeline reads changes on every schedule tick."
                        ),
                    )
                })
            })
            .await;
        self.send(result).await;
    }

    /// The warehouse got new columns (the catalog grew with a new release): queries may use them now,
    /// and rows loaded before have them empty until their objects change or are listed again.
    pub async fn columns_added(&self, account: &str, columns: &[String]) {
        let result = Ok(Some((
            format!("new warehouse columns ({account})"),
            format!(
                "Syncing account '{account}' added {} column(s) to existing warehouse tables:\n\n{}\n\nRows loaded before hold NULL in them until their objects change or are listed again.",
                columns.len(),
                columns.join("\n")
            ),
        )));
        self.send(result).await;
    }

    /// Rows of `account` were kept out of the warehouse (`message` names them and why).
    pub async fn quarantined(&self, account: &str, message: &str) {
        let result = Ok(Some((
            format!("rows kept out of the warehouse ({account})"),
            format!("Syncing account '{account}': {message}"),
        )));
        self.send(result).await;
    }

    /// The change feed fell past Stripe's event retention (`warning` names the datasets re-listed).
    pub async fn retention_cliff(&self, account: &str, warning: &str) {
        let result = Ok(Some((
            format!("{account} re-backfill after 30 days"),
            warning.to_string(),
        )));
        self.send(result).await;
    }
}
