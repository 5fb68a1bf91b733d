//! The serverless deployment on AWS Lambda: the same engine as the CLI, split into slices.
//!
//! An EventBridge schedule runs the [`scheduler`]: it seeds and reads the accounts table, checks each
//! account's key, plans the slices that are due (one change feed per account-mode, the lists the state
//! asks for) and sends one SQS message per slice, once per tick. The [`worker`] runs each message's slice
//! with the DynamoDB state store and the S3 lake, re-enqueues a continuation when the function's deadline
//! comes first, and reports failed messages back to SQS (which moves them to the dead-letter queue after
//! the configured number of attempts), and applies the events Stripe pushes ([`pushes`]: from an
//! EventBridge rule, or from the [`webhook`] function's function URL). [`notify`] publishes the
//! incidents users must hear about to SNS.

pub mod accounts;
pub mod error;
pub mod message;
pub mod metrics;
pub mod notify;
pub mod pushes;
pub mod scheduler;
pub mod secrets;
pub mod services;
pub mod settings;
pub mod webhook;
pub mod worker;

pub use error::Error;
pub use services::Services;

/// Logs for CloudWatch: plain lines (no colours, no timestamps: CloudWatch adds them), level from
/// `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .without_time()
        .try_init();
}
