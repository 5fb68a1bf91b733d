//! Notifications to the SNS topic (e-mail subscribers): an account's first full load is done; a slice
//! failed N times in a row (with the error), and later recovered; the change feed fell past Stripe's
//! 30-day event retention and a re-backfill started. One message per incident, not per retry: each
//! incident's count and whether it was announced live in the state table (`alert#…` items).

use crate::Error;
use serde::{Deserialize, Serialize};
use stripe_pipeline::state::{StateError, StateStore};

/// What is remembered about one slice's failures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Incident {
    /// Failures in a row.
    failures: u32,
    /// A notification went out for the current run of failures (or, for `_first_load`, the load).
    announced: bool,
}

pub struct Notifier {
    sns: aws_sdk_sns::Client,
    topic: Option<String>,
    state: StateStore,
    alert_after: u32,
}

/// SNS subjects: ASCII, at most 100 characters.
fn subject(text: &str) -> String {
    let ascii: String = text
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_control() {
                c
            } else {
                '?'
            }
        })
        .collect();
    ascii.chars().take(100).collect()
}

impl Notifier {
    pub fn new(
        sns: aws_sdk_sns::Client,
        topic: Option<String>,
        state: StateStore,
        alert_after: u32,
    ) -> Notifier {
        Notifier {
            sns,
            topic,
            state,
            alert_after: alert_after.max(1),
        }
    }

    /// Publishes one message (logged too; only logged when no topic is configured).
    pub async fn publish(&self, title: &str, message: &str) -> Result<(), Error> {
        tracing::warn!(notification = title, "{message}");
        let Some(topic) = &self.topic else {
            return Ok(());
        };
        self.sns
            .publish()
            .topic_arn(topic)
            .subject(subject(&format!("Stripe pipeline: {title}")))
            .message(message)
            .send()
            .await
            .map_err(|e| Error::aws("SNS", format!("publishing to {topic}"), e))?;
        Ok(())
    }

    /// Updates an incident with compare-and-swap (two workers may report at once); returns what to
    /// publish, decided from the state that was written.
    async fn update(
        &self,
        key: &str,
        change: impl Fn(&mut Incident) -> Option<(String, String)>,
    ) -> Result<Option<(String, String)>, Error> {
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
                Err(e) => return Err(e.into()),
            }
        }
        Ok(None)
    }

    async fn send(&self, result: Result<Option<(String, String)>, Error>) {
        let outcome = match result {
            Ok(Some((title, message))) => self.publish(&title, &message).await,
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = outcome {
            // A notification must never fail the slice whose data is already committed.
            tracing::error!(error = %e, "could not send a notification");
        }
    }

    /// `what` of `account` (a dataset, `_events`, or `account`) failed again; `scope` is the state
    /// prefix of the account and mode (or `account/<name>` before its key was checked).
    pub async fn failed(&self, scope: &str, account: &str, what: &str, error: &str) {
        let after = self.alert_after;
        let result = self
            .update(&format!("alert#{scope}/{what}"), |i| {
                i.failures += 1;
                if i.failures >= after && !i.announced {
                    i.announced = true;
                    Some((
                        format!("{account} {what} is failing"),
                        format!(
                            "Account '{account}', {what}: failed {} times in a row. The last error:\n\n{error}\n\nThe pipeline keeps retrying on every schedule tick; you get one more message when it recovers.",
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

    /// The change feed fell past Stripe's event retention (`warning` names the datasets re-listed).
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

    pub async fn retention_cliff(&self, account: &str, warning: &str) {
        let result = Ok(Some((
            format!("{account} re-backfill after 30 days"),
            warning.to_string(),
        )));
        self.send(result).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_ascii_and_short() {
        let s = subject(&format!("Zürich {}", "x".repeat(200)));
        assert!(s.starts_with("Z?rich"));
        assert_eq!(s.chars().count(), 100);
    }
}
