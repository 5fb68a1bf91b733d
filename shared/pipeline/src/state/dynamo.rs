//! The state store on DynamoDB, for the Lambda functions.
//!
//! One table with the string partition key `key`. A state item holds `version` (a number) and `value`
//! (the JSON text of the state); a lease item is `lease#<key>` with `owner` and `until`. Every write is
//! a conditional write: a commit names the version it read, a lease is taken only if it is free,
//! expired or already ours. Items that only matter for a while (leases, slice marks) carry
//! `expires_at`, the table's TTL attribute, so DynamoDB removes them eventually.

use super::{Lease, StateBackend, StateError, Versioned};
use crate::clock::Clock;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use aws_sdk_dynamodb::Client;
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;

/// How long an expired lease item stays before DynamoDB's TTL removes it.
const LEASE_ITEM_GRACE_SECS: i64 = 86_400;

#[derive(Debug, Clone)]
pub struct DynamoState {
    client: Client,
    table: String,
}

type Item = HashMap<String, AttributeValue>;

fn now_secs() -> i64 {
    crate::clock::SystemClock.now_secs()
}

/// Whether DynamoDB refused a write because its condition did not hold (`ConditionalCheckFailed`):
/// the answer a conditional write is for, not a failure.
pub fn refused_by_condition<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error().and_then(|s| s.code()) == Some("ConditionalCheckFailedException")
}

/// An AWS SDK error in one line: the service's error code and message, or for errors before a reply
/// (no connection, timeouts, no credentials) the chain of causes.
pub fn sdk_error_message<E, R>(e: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    if let (Some(code), message) = (e.code(), e.message()) {
        return format!("{code}: {}", message.unwrap_or("no message"));
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn lease_key(key: &str) -> String {
    format!("lease#{key}")
}

fn number(item: &Item, name: &str) -> Option<i64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)?.as_s().ok().map(String::as_str)
}

impl DynamoState {
    /// The store in `table` (which must exist; the SAM template creates it).
    pub fn new(config: &aws_config::SdkConfig, table: impl Into<String>) -> DynamoState {
        DynamoState {
            client: Client::new(config),
            table: table.into(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// A store error naming the table and what failed, with the SDK's full context (never a key's
    /// value: items hold no secrets).
    fn error<E, R>(&self, action: &str, e: SdkError<E, R>) -> StateError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        StateError::Store {
            table: self.table.clone(),
            message: format!("{action}: {}", sdk_error_message(&e)),
        }
    }

    async fn item(&self, key: &str) -> Result<Option<Item>, StateError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("key", AttributeValue::S(key.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error(&format!("reading {key}"), e))?;
        Ok(out.item)
    }

    /// Where `key`'s item is, for messages.
    fn item_location(&self, key: &str) -> PathBuf {
        PathBuf::from(format!("{}/{key}", self.table))
    }

    /// The document under `key`, if there is one.
    async fn read_doc(&self, key: &str) -> Result<Option<Versioned<Value>>, StateError> {
        let Some(item) = self.item(key).await? else {
            return Ok(None);
        };
        self.doc(key, &item).map(Some)
    }

    /// The documents under `keys`: `BatchGetItem`, 100 keys a call (DynamoDB's limit), consistent
    /// reads, keys DynamoDB leaves unprocessed asked again.
    async fn read_docs(
        &self,
        keys: &[String],
    ) -> Result<Vec<Option<Versioned<Value>>>, StateError> {
        let mut found: HashMap<String, Item> = HashMap::with_capacity(keys.len());
        let mut unique: Vec<&String> = keys.iter().collect();
        unique.sort();
        unique.dedup();
        for chunk in unique.chunks(100) {
            let mut wanted: Vec<HashMap<String, AttributeValue>> = chunk
                .iter()
                .map(|k| HashMap::from([("key".to_string(), AttributeValue::S(k.to_string()))]))
                .collect();
            let mut attempt = 0u32;
            while !wanted.is_empty() {
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut wanted)))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| StateError::Store {
                        table: self.table.clone(),
                        message: format!("reading {} keys: {e}", chunk.len()),
                    })?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| self.error(&format!("reading {} keys", chunk.len()), e))?;
                for item in out
                    .responses
                    .unwrap_or_default()
                    .remove(&self.table)
                    .unwrap_or_default()
                {
                    if let Some(key) = text(&item, "key") {
                        found.insert(key.to_string(), item);
                    }
                }
                wanted = out
                    .unprocessed_keys
                    .unwrap_or_default()
                    .remove(&self.table)
                    .map(|k| k.keys)
                    .unwrap_or_default();
                if !wanted.is_empty() {
                    // Throttled: DynamoDB asks for the rest again after a short wait.
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50 << attempt.min(5)))
                        .await;
                }
            }
        }
        keys.iter()
            .map(|k| found.get(k).map(|item| self.doc(k, item)).transpose())
            .collect()
    }

    /// The versioned document of `key`'s item.
    fn doc(&self, key: &str, item: &Item) -> Result<Versioned<Value>, StateError> {
        let corrupt = |message: String| StateError::Corrupt {
            path: self.item_location(key),
            message,
        };
        let version = number(item, "version").ok_or_else(|| corrupt("no version".into()))?;
        let value = text(item, "value").ok_or_else(|| corrupt("no value".into()))?;
        Ok(Versioned {
            version: version as u64,
            value: serde_json::from_str(value).map_err(|e| corrupt(e.to_string()))?,
        })
    }

    /// Writes `value` if the stored version is still `expected`; returns the new version.
    async fn write_doc(&self, key: &str, expected: u64, value: &Value) -> Result<u64, StateError> {
        let body = value.to_string();
        let next = expected + 1;
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("key", AttributeValue::S(key.to_string()))
            .item("version", AttributeValue::N(next.to_string()))
            .item("value", AttributeValue::S(body));
        put = if expected == 0 {
            put.condition_expression("attribute_not_exists(#k)")
                .expression_attribute_names("#k", "key")
        } else {
            put.condition_expression("#v = :expected")
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(":expected", AttributeValue::N(expected.to_string()))
        };
        match put.send().await {
            Ok(_) => Ok(next),
            Err(e) if refused_by_condition(&e) => {
                let found = match self.item(key).await? {
                    Some(item) => number(&item, "version").unwrap_or(0) as u64,
                    None => 0,
                };
                Err(StateError::Conflict {
                    key: key.to_string(),
                    expected,
                    found,
                })
            }
            Err(e) => Err(self.error(&format!("writing {key}"), e)),
        }
    }

    /// Takes the lease on `key` for `ttl_secs`, unless another owner holds an unexpired one.
    async fn take_lease(&self, key: &str, owner: &str, ttl_secs: i64) -> Result<Lease, StateError> {
        let now = now_secs();
        let until = now + ttl_secs;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("key", AttributeValue::S(lease_key(key)))
            .item("owner", AttributeValue::S(owner.to_string()))
            .item("until", AttributeValue::N(until.to_string()))
            .item(
                "expires_at",
                AttributeValue::N((until.max(now) + LEASE_ITEM_GRACE_SECS).to_string()),
            )
            .condition_expression("attribute_not_exists(#k) OR #until <= :now OR #owner = :owner")
            .expression_attribute_names("#k", "key")
            .expression_attribute_names("#until", "until")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Lease {
                key: key.to_string(),
                owner: owner.to_string(),
            }),
            Err(e) if refused_by_condition(&e) => {
                let holder = self.item(&lease_key(key)).await?.unwrap_or_default();
                Err(StateError::Leased {
                    key: key.to_string(),
                    owner: text(&holder, "owner").unwrap_or("another run").to_string(),
                    until: number(&holder, "until").unwrap_or(until),
                    path: PathBuf::from(format!(
                        "the item {} of DynamoDB table {}",
                        lease_key(key),
                        self.table
                    )),
                })
            }
            Err(e) => Err(self.error(&format!("taking the lease on {key}"), e)),
        }
    }

    /// Gives a lease back (a lease that is not ours any more is left alone).
    async fn give_back(&self, lease: &Lease) {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("key", AttributeValue::S(lease_key(&lease.key)))
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", AttributeValue::S(lease.owner.clone()))
            .send()
            .await;
        if let Err(e) = result {
            if !refused_by_condition(&e) {
                tracing::warn!(key = %lease.key, error = %sdk_error_message(&e), "could not release a lease; it expires by itself");
            }
        }
    }

    /// Records `key` once: true the first time, false if it was already recorded (and has not expired).
    /// The scheduler marks each slice it sends, so re-running a tick sends no duplicate work.
    pub async fn mark_once(&self, key: &str, expires_at: i64) -> Result<bool, StateError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("key", AttributeValue::S(key.to_string()))
            .item("expires_at", AttributeValue::N(expires_at.to_string()))
            .condition_expression("attribute_not_exists(#k) OR #e <= :now")
            .expression_attribute_names("#k", "key")
            .expression_attribute_names("#e", "expires_at")
            .expression_attribute_values(":now", AttributeValue::N(now_secs().to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if refused_by_condition(&e) => Ok(false),
            Err(e) => Err(self.error(&format!("marking {key}"), e)),
        }
    }

    /// Removes a mark made by [`DynamoState::mark_once`] (its work was not sent after all).
    pub async fn forget(&self, key: &str) -> Result<(), StateError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("key", AttributeValue::S(key.to_string()))
            .send()
            .await
            .map_err(|e| self.error(&format!("removing {key}"), e))?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl StateBackend for DynamoState {
    async fn read(&self, key: &str) -> Result<Option<Versioned<Value>>, StateError> {
        self.read_doc(key).await
    }

    async fn read_many(
        &self,
        keys: &[String],
    ) -> Result<Vec<Option<Versioned<Value>>>, StateError> {
        self.read_docs(keys).await
    }

    async fn write(&self, key: &str, expected: u64, value: &Value) -> Result<u64, StateError> {
        self.write_doc(key, expected, value).await
    }

    async fn acquire(&self, key: &str, owner: &str, ttl_secs: i64) -> Result<Lease, StateError> {
        self.take_lease(key, owner, ttl_secs).await
    }

    async fn release(&self, lease: &Lease) {
        self.give_back(lease).await
    }

    fn location(&self, key: &str) -> PathBuf {
        self.item_location(key)
    }
}
