//! Sync state: per account, mode and dataset, how far the backfill got (segments and page cursors), when
//! data last landed, and the last error; the change feed's cursor; and leases so two runs never work on
//! the same thing at once.
//!
//! The engine owns the port, [`StateBackend`]: versioned JSON documents under keys, and leases. Two
//! adapters implement it and pass one conformance suite (`stripe_pipeline_testkit::conformance::state`):
//! a directory of JSON files for local mode ([`LocalState`]) and a DynamoDB table for the Lambda
//! functions ([`DynamoState`], feature `aws`). [`StateStore`] puts typed values on either. Every write
//! names the version it read (compare-and-swap): a stale writer is refused instead of overwriting newer
//! progress.

#[cfg(feature = "aws")]
mod dynamo;
mod local;

#[cfg(feature = "aws")]
pub use dynamo::{refused_by_condition, sdk_error_message, DynamoState};
pub use local::LocalState;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// One `created` window `[from, to)` of a backfill and how far it was paged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub from: i64,
    pub to: i64,
    /// Last object loaded (`starting_after` of the next page).
    pub after: Option<String>,
    /// `created` of that object: where to restart by time if the cursor object is deleted.
    pub after_created: Option<i64>,
    pub done: bool,
    /// The parent this segment lists the objects of, for a list that needs one (`Dataset::per_parent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

/// Progress of a full list of a dataset: its first load, a snapshot re-list, or a re-backfill after the
/// event cursor fell past Stripe's retention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backfill {
    /// Objects created before this instant are covered by the backfill.
    pub upper: i64,
    /// Stripe's clock when the list started. When the list completes, stored rows older than this that
    /// the list did not return are gone from Stripe and get marked deleted (0: plans from before this
    /// field existed, no sweep).
    #[serde(default)]
    pub started: i64,
    pub segments: Vec<Segment>,
}

impl Backfill {
    pub fn complete(&self) -> bool {
        self.segments.iter().all(|s| s.done)
    }
}

/// Everything the pipeline remembers about one dataset of one account and mode.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DatasetState {
    pub backfill: Option<Backfill>,
    /// When data last landed (Unix seconds).
    pub landed_at: Option<i64>,
    /// The data is complete up to this instant.
    pub as_of: Option<i64>,
    pub rows: u64,
    pub last_error: Option<String>,
    /// When the last complete list of this dataset started (Stripe's clock): snapshot datasets are
    /// listed again once it is older than the snapshot interval.
    #[serde(default)]
    pub listed_at: Option<i64>,
    /// The account does not use the Stripe product of this dataset (Issuing, Treasury, Identity):
    /// Stripe's answer, and when (Stripe's clock) it was given. Asked again once the snapshot interval
    /// has passed; cleared by the first list Stripe serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_enabled: Option<NotEnabled>,
}

/// Stripe's answer to a list of a product the account does not use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotEnabled {
    pub message: String,
    pub checked_at: i64,
}

/// The change feed of one account and mode: how far `/v1/events` has been read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeedState {
    /// Every event created before this instant (Stripe's clock) has been applied, except those made
    /// visible late, which the next read's overlap window catches.
    pub cursor: Option<i64>,
    pub last_error: Option<String>,
    /// Seconds of events the last read took in one piece, when a window had to be cut (more events
    /// than one piece may hold): where the next read starts instead of trying its whole window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub piece_secs: Option<i64>,
}

/// A stored value with the version a conditional write must name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Versioned<T> {
    pub version: u64,
    pub value: T,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state for {key} changed under us (expected version {expected}, found {found}): another run is working on it")]
    Conflict {
        key: String,
        expected: u64,
        found: u64,
    },
    #[error("{key} is leased by {owner} until {until}: another run is working on it; wait or remove {path}")]
    Leased {
        key: String,
        owner: String,
        until: i64,
        path: PathBuf,
    },
    #[error("state store at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("DynamoDB state table {table}: {message}")]
    Store { table: String, message: String },
    #[error(
        "state file {path} is not valid state ({message}); move it away to start that dataset over"
    )]
    Corrupt { path: PathBuf, message: String },
}

impl StateError {
    /// Whether the same call may succeed later without anyone changing anything: a lost race, a held
    /// lease, an outage of the store. A corrupt state file stays corrupt until someone moves it.
    pub fn retryable(&self) -> bool {
        !matches!(self, StateError::Corrupt { .. })
    }
}

/// A held lease; give it back with [`StateStore::release`].
#[derive(Debug, Clone)]
pub struct Lease {
    pub key: String,
    pub owner: String,
}

/// A state store adapter: versioned JSON documents under keys, written by compare-and-swap, and
/// leases. Adapters keep documents as they are given; typing them is [`StateStore`]'s work.
#[async_trait::async_trait]
pub trait StateBackend: Send + Sync + fmt::Debug {
    /// The document under `key` with its version; `None` when there is none yet.
    async fn read(&self, key: &str) -> Result<Option<Versioned<Value>>, StateError>;

    /// The documents under `keys`, in their order (`None` where there is none yet). A plan reads a
    /// document per dataset of an account: a store that can read many in one round trip says so here.
    async fn read_many(
        &self,
        keys: &[String],
    ) -> Result<Vec<Option<Versioned<Value>>>, StateError> {
        let mut docs = Vec::with_capacity(keys.len());
        for key in keys {
            docs.push(self.read(key).await?);
        }
        Ok(docs)
    }

    /// Writes `value` if the stored version is still `expected` (0: none yet); returns the new
    /// version. A stale `expected` is [`StateError::Conflict`].
    async fn write(&self, key: &str, expected: u64, value: &Value) -> Result<u64, StateError>;

    /// Takes the lease on `key` for `ttl_secs`, unless another owner holds an unexpired one.
    async fn acquire(&self, key: &str, owner: &str, ttl_secs: i64) -> Result<Lease, StateError>;

    /// Gives a lease back (a lease that is not ours any more is left alone).
    async fn release(&self, lease: &Lease);

    /// Where `key` is kept (a file, a table's item), for messages that tell the user where to look.
    fn location(&self, key: &str) -> PathBuf;
}

/// A document as `T`: the default at version 0 when there is none yet; a document that is not a `T`
/// is [`StateError::Corrupt`] at `location`.
pub fn typed<T: DeserializeOwned + Default>(
    doc: Option<Versioned<Value>>,
    location: impl FnOnce() -> PathBuf,
) -> Result<Versioned<T>, StateError> {
    let Some(Versioned { version, value }) = doc else {
        return Ok(Versioned {
            version: 0,
            value: T::default(),
        });
    };
    match serde_json::from_value(value) {
        Ok(value) => Ok(Versioned { version, value }),
        Err(e) => Err(StateError::Corrupt {
            path: location(),
            message: e.to_string(),
        }),
    }
}

/// The state store the engine runs on: typed values over any [`StateBackend`].
#[derive(Debug, Clone)]
pub struct StateStore(Arc<dyn StateBackend>);

impl StateStore {
    pub fn new(backend: impl StateBackend + 'static) -> StateStore {
        StateStore(Arc::new(backend))
    }

    /// The state of `key` (version 0 and the default value when there is none yet).
    pub async fn get<T: DeserializeOwned + Default>(
        &self,
        key: &str,
    ) -> Result<Versioned<T>, StateError> {
        typed(self.0.read(key).await?, || self.0.location(key))
    }

    /// The states of `keys`, in their order, read together ([`StateBackend::read_many`]).
    pub async fn get_many<T: DeserializeOwned + Default>(
        &self,
        keys: &[String],
    ) -> Result<Vec<Versioned<T>>, StateError> {
        let docs = self.0.read_many(keys).await?;
        keys.iter()
            .zip(docs)
            .map(|(key, doc)| typed(doc, || self.0.location(key)))
            .collect()
    }

    /// Writes `value` if the stored version is still `expected`; returns the new version.
    pub async fn put<T: Serialize>(
        &self,
        key: &str,
        expected: u64,
        value: &T,
    ) -> Result<u64, StateError> {
        let doc = serde_json::to_value(value).map_err(|e| StateError::Corrupt {
            path: self.0.location(key),
            message: format!("the new state cannot be written as JSON: {e}"),
        })?;
        self.0.write(key, expected, &doc).await
    }

    /// Takes the lease on `key` for `ttl_secs`, unless another owner holds an unexpired one.
    pub async fn acquire(
        &self,
        key: &str,
        owner: &str,
        ttl_secs: i64,
    ) -> Result<Lease, StateError> {
        self.0.acquire(key, owner, ttl_secs).await
    }

    /// Gives a lease back (a lease that is not ours any more is left alone).
    pub async fn release(&self, lease: &Lease) {
        self.0.release(lease).await
    }
}

impl From<LocalState> for StateStore {
    fn from(s: LocalState) -> Self {
        StateStore::new(s)
    }
}

#[cfg(feature = "aws")]
impl From<DynamoState> for StateStore {
    fn from(s: DynamoState) -> Self {
        StateStore::new(s)
    }
}
