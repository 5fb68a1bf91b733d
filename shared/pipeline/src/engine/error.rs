//! What can stop a sync, said by the part that failed: Stripe, the lake, the warehouse, the state store,
//! the configuration, or the engine itself (a panicked task). Each keeps its source, and knows whether
//! running the same work again can help.

use crate::lake::LakeError;
use crate::state::StateError;
use crate::stripe::StripeError;
use crate::warehouse::WarehouseError;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// A Stripe request failed after its retries, or Stripe answered with data the engine cannot use.
    #[error("account '{account}': {source}")]
    Stripe {
        account: String,
        #[source]
        source: Box<StripeError>,
    },
    /// Writing Parquet to the lake failed; nothing was loaded and no cursor moved.
    #[error("account '{account}': {dataset}: writing the lake failed: {source}")]
    Lake {
        account: String,
        dataset: String,
        #[source]
        source: Box<LakeError>,
    },
    /// The warehouse failed; its transaction rolled back and no cursor moved.
    #[error("account '{account}': {dataset}: {source}")]
    Warehouse {
        account: String,
        dataset: String,
        #[source]
        source: Box<WarehouseError>,
    },
    /// Rows could not be built into a record batch: a bug, reported instead of dropping the rows.
    #[error("account '{account}': {dataset}: building the batch's rows failed ({message}); this is a bug in stripe-pipeline, please report it")]
    Convert {
        account: String,
        dataset: String,
        message: String,
    },
    #[error(transparent)]
    State(#[from] StateError),
    /// The work asked for cannot be done with this configuration (a slice naming a dataset the account
    /// does not sync).
    #[error("account '{account}': {message}")]
    Config { account: String, message: String },
    /// A task of the engine panicked: a bug. The work it had is reported failed, never dropped.
    #[error("account '{account}': {what}: the sync task panicked ({message}); this is a bug in stripe-pipeline, please report it with the log")]
    Panicked {
        account: String,
        what: String,
        message: String,
    },
    /// The delivery this connected account's rows shared with other connected accounts of its
    /// platform failed ([`super::cohort`]): nothing of it was committed.
    #[error("account '{account}': delivered with other connected accounts of the platform, which failed: {message}")]
    Shared {
        account: String,
        message: String,
        retryable: bool,
    },
    #[error(
        "stopped at the deadline with the list's progress committed; a continuation resumes it"
    )]
    Deadline,
}

impl SyncError {
    /// Whether running the same work again may succeed without anyone changing anything: a network
    /// failure, Stripe's 5xx and 429, a lost compare-and-swap race, a warehouse or lake outage. A bad
    /// key, a missing permission or a bad configuration fail the same way until fixed.
    pub fn retryable(&self) -> bool {
        match self {
            SyncError::Stripe { source, .. } => matches!(
                **source,
                StripeError::RateLimited { .. }
                    | StripeError::Server { .. }
                    | StripeError::Network { .. }
            ),
            SyncError::Lake { .. } | SyncError::Warehouse { .. } => true,
            SyncError::State(e) => e.retryable(),
            SyncError::Config { .. } | SyncError::Panicked { .. } | SyncError::Convert { .. } => {
                false
            }
            SyncError::Shared { retryable, .. } => *retryable,
            SyncError::Deadline => true,
        }
    }

    /// A task that ended by panicking (or was cancelled) while doing `what` for `account`.
    pub(crate) fn joined(account: &str, what: &str, e: tokio::task::JoinError) -> SyncError {
        let message = if e.is_panic() {
            let payload = e.into_panic();
            payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into())
        } else {
            "cancelled".into()
        };
        SyncError::Panicked {
            account: account.to_string(),
            what: what.to_string(),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicked_task_becomes_a_failure_with_its_message() {
        let joined = tokio::spawn(async { panic!("boom at page 3") }).await;
        let e = SyncError::joined("shop", "charges", joined.unwrap_err());
        assert!(matches!(e, SyncError::Panicked { .. }));
        let text = e.to_string();
        assert!(
            text.contains("shop") && text.contains("charges") && text.contains("boom at page 3")
        );
        assert!(!e.retryable());
    }

    #[test]
    fn retryable_follows_what_failed() {
        let stripe = |source| SyncError::Stripe {
            account: "a".into(),
            source: Box::new(source),
        };
        assert!(stripe(StripeError::Network {
            base: "b".into(),
            attempts: 3,
            message: "reset".into()
        })
        .retryable());
        assert!(!stripe(StripeError::InvalidKey {
            message: "m".into(),
            request_id: "r".into()
        })
        .retryable());
        let config = SyncError::Config {
            account: "a".into(),
            message: "m".into(),
        };
        assert!(!config.retryable());
    }
}
