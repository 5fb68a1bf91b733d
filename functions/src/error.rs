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
    #[error("cannot open the lake: {0}")]
    Lake(String),
    #[error("{0}")]
    Warehouse(String),
    #[error("{0}")]
    Export(String),
}

impl Error {
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
