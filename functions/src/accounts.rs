//! The accounts table: which Stripe accounts to sync. One item per account (in one mode: the key
//! decides live or test), keyed by `name`, with the ARN of the Secrets Manager secret that holds its
//! key, an `enabled` flag and an optional list of datasets. Users add accounts with the AWS CLI or the
//! template's `Accounts` parameter (see the README); keys never enter the table.

use crate::Error;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use stripe_pipeline::catalog::{Catalog, Dataset};
use stripe_pipeline::state::refused_by_condition;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountRecord {
    pub name: String,
    /// The Secrets Manager secret with the account's restricted or secret key.
    pub secret_arn: String,
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Only these datasets; empty: every dataset of the catalog.
    #[serde(default)]
    pub datasets: Vec<String>,
    /// A Connect platform whose connected accounts are synced too (`connected_accounts`, and each
    /// one's data in the `connected_account_*` tables).
    #[serde(default)]
    pub connect: bool,
    /// The partner event source of the account's Stripe event destination of type Amazon
    /// EventBridge (`aws.partner/stripe.com/ed_…`): events arriving from it are this account's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_source: Option<String>,
}

fn enabled() -> bool {
    true
}

impl AccountRecord {
    /// The account's datasets, each checked against the catalog.
    pub fn datasets(&self) -> Result<Vec<&'static Dataset>, Error> {
        let catalog = Catalog::get();
        if self.datasets.is_empty() {
            return Ok(catalog.datasets.iter().collect());
        }
        self.datasets
            .iter()
            .map(|name| {
                catalog.dataset(name).ok_or_else(|| Error::Account {
                    account: self.name.clone(),
                    message: format!(
                        "unknown dataset '{name}' in the accounts table; fix its `datasets` list (`stripe-pipeline tables` lists them)"
                    ),
                })
            })
            .collect()
    }

    fn to_item(&self) -> HashMap<String, AttributeValue> {
        let mut item = HashMap::from([
            ("name".to_string(), AttributeValue::S(self.name.clone())),
            (
                "secret_arn".to_string(),
                AttributeValue::S(self.secret_arn.clone()),
            ),
            ("enabled".to_string(), AttributeValue::Bool(self.enabled)),
        ]);
        if self.connect {
            item.insert("connect".into(), AttributeValue::Bool(true));
        }
        if let Some(source) = &self.event_source {
            item.insert("event_source".into(), AttributeValue::S(source.clone()));
        }
        if !self.datasets.is_empty() {
            item.insert(
                "datasets".into(),
                AttributeValue::L(
                    self.datasets
                        .iter()
                        .map(|d| AttributeValue::S(d.clone()))
                        .collect(),
                ),
            );
        }
        item
    }

    fn from_item(item: &HashMap<String, AttributeValue>) -> Result<AccountRecord, Error> {
        let name = item
            .get("name")
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default();
        let bad = |message: &str| Error::Account {
            account: name.clone(),
            message: format!("{message} in the accounts table"),
        };
        let secret_arn = item
            .get("secret_arn")
            .and_then(|v| v.as_s().ok())
            .cloned()
            .ok_or_else(|| bad("no `secret_arn` (a string with the ARN of the key's secret)"))?;
        let enabled = match item.get("enabled") {
            None => true,
            Some(v) => *v.as_bool().map_err(|_| bad("`enabled` is not a boolean"))?,
        };
        let connect = match item.get("connect") {
            None => false,
            Some(v) => *v.as_bool().map_err(|_| bad("`connect` is not a boolean"))?,
        };
        let datasets = match item.get("datasets") {
            None => Vec::new(),
            Some(AttributeValue::L(list)) => list
                .iter()
                .map(|v| v.as_s().cloned())
                .collect::<Result<_, _>>()
                .map_err(|_| bad("`datasets` is not a list of strings"))?,
            Some(AttributeValue::Ss(set)) => set.clone(),
            Some(_) => return Err(bad("`datasets` is not a list of strings")),
        };
        let event_source = match item.get("event_source") {
            None => None,
            Some(v) => Some(
                v.as_s()
                    .map_err(|_| bad("`event_source` is not a string"))?
                    .clone(),
            ),
        };
        Ok(AccountRecord {
            name,
            secret_arn,
            enabled,
            datasets,
            connect,
            event_source,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Accounts {
    client: Client,
    table: String,
}

impl Accounts {
    pub fn new(client: Client, table: impl Into<String>) -> Accounts {
        Accounts {
            client,
            table: table.into(),
        }
    }

    /// Every account item; malformed items come back as errors next to the good ones.
    pub async fn all(&self) -> Result<Vec<Result<AccountRecord, Error>>, Error> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| Error::aws("DynamoDB", format!("reading table {}", self.table), e))?;
            out.extend(page.items().iter().map(AccountRecord::from_item));
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    /// One account by name.
    pub async fn get(&self, name: &str) -> Result<Option<AccountRecord>, Error> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("name", AttributeValue::S(name.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| Error::aws("DynamoDB", format!("reading account {name}"), e))?;
        out.item.as_ref().map(AccountRecord::from_item).transpose()
    }

    /// Turns an account on or off (a disabled account is not planned, and its queued slices are
    /// skipped; its data and cursors stay). False when there is no account of that name.
    pub async fn set_enabled(&self, name: &str, enabled: bool) -> Result<bool, Error> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("name", AttributeValue::S(name.to_string()))
            .update_expression("SET #e = :e")
            .condition_expression("attribute_exists(#n)")
            .expression_attribute_names("#e", "enabled")
            .expression_attribute_names("#n", "name")
            .expression_attribute_values(":e", AttributeValue::Bool(enabled))
            .send()
            .await;
        conditional(result, || format!("updating account {name}"))
    }

    /// Adds `record` unless an account of that name exists (user edits to the table win); true if
    /// it was added.
    pub async fn add_if_missing(&self, record: &AccountRecord) -> Result<bool, Error> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(record.to_item()))
            .condition_expression("attribute_not_exists(#n)")
            .expression_attribute_names("#n", "name")
            .send()
            .await;
        conditional(result, || format!("adding account {}", record.name))
    }
}

/// A conditional write's answer: `true` done, `false` refused by its condition; other failures are
/// errors naming `action`.
fn conditional<T, E, R>(
    result: Result<T, SdkError<E, R>>,
    action: impl FnOnce() -> String,
) -> Result<bool, Error>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match result {
        Ok(_) => Ok(true),
        Err(e) if refused_by_condition(&e) => Ok(false),
        Err(e) => Err(Error::aws("DynamoDB", action(), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip_and_bad_items_name_the_problem() {
        let r = AccountRecord {
            name: "acme".into(),
            secret_arn: "arn:x".into(),
            enabled: false,
            datasets: vec!["charges".into()],
            connect: true,
            event_source: Some("aws.partner/stripe.com/ed_test_1".into()),
        };
        assert_eq!(AccountRecord::from_item(&r.to_item()).unwrap(), r);
        let mut item = r.to_item();
        item.insert("event_source".into(), AttributeValue::Bool(true));
        let e = AccountRecord::from_item(&item).unwrap_err().to_string();
        assert!(e.contains("event_source"), "{e}");
        assert_eq!(r.datasets().unwrap()[0].name, "charges");
        let mut item = r.to_item();
        item.remove("secret_arn");
        let e = AccountRecord::from_item(&item).unwrap_err().to_string();
        assert!(e.contains("acme") && e.contains("secret_arn"), "{e}");
        let unknown = AccountRecord {
            datasets: vec!["chargez".into()],
            ..r
        };
        assert!(unknown
            .datasets()
            .unwrap_err()
            .to_string()
            .contains("chargez"));
    }
}
