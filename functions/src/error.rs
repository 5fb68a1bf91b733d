//! The functions' errors: each names what failed and, where there is one, the fix.

use stripe_pipeline::engine::SyncError;
use stripe_pipeline::state::StateError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid function configuration:\n  - {}", .0.join("\n  - "))]
    Settings(Vec<String>),
    /// A call to an AWS service failed (the SDK's message, which never includes credentials).
    #[error("{service}: {action}: {message}")]
    Aws {
        service: &'static str,
        action: String,
        message: String,
    },
    #[error("account '{account}': {message}")]
    Account { account: String, message: String },
    #[error("not a slice or export message ({0}); it is left to the dead-letter queue")]
    Message(String),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// A slice ran and `what` (a dataset, or `_events`) failed in it; its cursor did not move.
    #[error("{what}: {source}")]
    Slice {
        what: String,
        #[source]
        source: SyncError,
    },
    #[error("cannot open the lake: {0}")]
    Lake(String),
    #[error("{0}")]
    Warehouse(String),
    #[error("{0}")]
    Export(String),
}

impl Error {
    /// Whether handling the same message again may succeed without anyone changing anything (an
    /// outage, a throttle, a lost race). A bad key, a missing permission or a bad setting fail the
    /// same way until someone fixes them: the worker does not retry those.
    pub fn retryable(&self) -> bool {
        match self {
            Error::Settings(_) | Error::Account { .. } | Error::Message(_) | Error::Lake(_) => {
                false
            }
            Error::Aws { .. } | Error::Warehouse(_) | Error::Export(_) => true,
            Error::State(e) => e.retryable(),
            Error::Sync(e) | Error::Slice { source: e, .. } => e.retryable(),
        }
    }

    /// An AWS SDK error with its full context (service error code and message).
    pub fn aws<E, R>(
        service: &'static str,
        action: impl Into<String>,
        e: aws_sdk_dynamodb::error::SdkError<E, R>,
    ) -> Error
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        Error::Aws {
            service,
            action: action.into(),
            message: stripe_pipeline::state::sdk_error_message(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_a_retry_can_fix_is_retried() {
        let conflict = StateError::Conflict {
            key: "k".into(),
            expected: 1,
            found: 2,
        };
        let corrupt = StateError::Corrupt {
            path: "k.json".into(),
            message: "not JSON".into(),
        };
        let config = SyncError::Config {
            account: "a".into(),
            message: "no such dataset".into(),
        };
        let retried = [
            Error::Aws {
                service: "SQS",
                action: "sending".into(),
                message: "throttled".into(),
            },
            Error::State(conflict),
            Error::Warehouse("Redshift is resuming".into()),
        ];
        let dropped = [
            Error::Settings(vec!["STRIPE_PIPELINE_QUEUE_URL is not set".into()]),
            Error::Message("not JSON".into()),
            Error::State(corrupt),
            Error::Slice {
                what: "charges".into(),
                source: config,
            },
        ];
        assert!(retried.iter().all(Error::retryable));
        assert!(!dropped.iter().any(Error::retryable));
    }
}
