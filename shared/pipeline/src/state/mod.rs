//! Sync state: per account, mode and dataset, how far the backfill got (segments and page cursors), when
//! data last landed, and the last error; the change feed's cursor; and leases so two runs never work on
//! the same thing at once.
//!
//! Two stores behave the same (one conformance suite, `tests/state_conformance.rs`): a directory of
//! JSON files for local mode ([`LocalState`]) and a DynamoDB table for the Lambda functions
//! ([`DynamoState`], feature `aws`). Every write names the version it read (compare-and-swap): a stale
//! writer is refused instead of overwriting newer progress.

#[cfg(feature = "aws")]
mod dynamo;
mod local;

#[cfg(feature = "aws")]
pub use dynamo::{sdk_error_message, DynamoState};
pub use local::LocalState;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

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
}

/// The change feed of one account and mode: how far `/v1/events` has been read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeedState {
    /// Every event created before this instant (Stripe's clock) has been applied, except those made
    /// visible late, which the next read's overlap window catches.
    pub cursor: Option<i64>,
    pub last_error: Option<String>,
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

/// A held lease; give it back with [`StateStore::release`].
#[derive(Debug, Clone)]
pub struct Lease {
    pub key: String,
    pub owner: String,
}

/// The state store the engine runs on.
#[derive(Debug, Clone)]
pub enum StateStore {
    Local(LocalState),
    #[cfg(feature = "aws")]
    Dynamo(DynamoState),
}

impl From<LocalState> for StateStore {
    fn from(s: LocalState) -> Self {
        StateStore::Local(s)
    }
}

#[cfg(feature = "aws")]
impl From<DynamoState> for StateStore {
    fn from(s: DynamoState) -> Self {
        StateStore::Dynamo(s)
    }
}

impl StateStore {
    /// The state of `key` (version 0 and the default value when there is none yet).
    pub async fn get<T: DeserializeOwned + Default>(
        &self,
        key: &str,
    ) -> Result<Versioned<T>, StateError> {
        match self {
            StateStore::Local(s) => s.get(key),
            #[cfg(feature = "aws")]
            StateStore::Dynamo(s) => s.get(key).await,
        }
    }

    /// Writes `value` if the stored version is still `expected`; returns the new version.
    pub async fn put<T: Serialize + DeserializeOwned + Default>(
        &self,
        key: &str,
        expected: u64,
        value: &T,
    ) -> Result<u64, StateError> {
        match self {
            StateStore::Local(s) => s.put(key, expected, value),
            #[cfg(feature = "aws")]
            StateStore::Dynamo(s) => s.put(key, expected, value).await,
        }
    }

    /// Takes the lease on `key` for `ttl_secs`, unless another owner holds an unexpired one.
    pub async fn acquire(
        &self,
        key: &str,
        owner: &str,
        ttl_secs: i64,
    ) -> Result<Lease, StateError> {
        match self {
            StateStore::Local(s) => s.acquire(key, owner, ttl_secs),
            #[cfg(feature = "aws")]
            StateStore::Dynamo(s) => s.acquire(key, owner, ttl_secs).await,
        }
    }

    /// Gives a lease back (a lease that is not ours any more is left alone).
    pub async fn release(&self, lease: &Lease) {
        match self {
            StateStore::Local(s) => s.release(lease),
            #[cfg(feature = "aws")]
            StateStore::Dynamo(s) => s.release(lease).await,
        }
    }
}
