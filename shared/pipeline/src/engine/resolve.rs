//! Resolving accounts: every key is checked with one cheap call (`GET /v1/account`) before anything is
//! written anywhere, which gives the account's Stripe id (`merchant_id` of every row) and Stripe's clock.

use super::error::SyncError;
use crate::clock::{Clock, SystemClock};
use crate::config::Account;
use crate::lake::LakeError;
use crate::stripe::{Caller, StripeClient, StripeError};
use crate::warehouse::WarehouseError;

/// A checked account: its key works and its Stripe id is known.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub account: Account,
    pub merchant_id: String,
    pub caller: Caller,
    /// Stripe's clock when the key was checked: the run's "now" for lists, the feed and the cliff.
    pub server_time: i64,
}

impl Resolved {
    pub fn mode(&self) -> &'static str {
        if self.account.livemode {
            "live"
        } else {
            "test"
        }
    }

    /// `<merchant>/<mode>`: the prefix of this account-mode's state keys, and its account lease.
    pub fn scope(&self) -> String {
        format!("{}/{}", self.merchant_id, self.mode())
    }

    /// The state key of one of this account's datasets (or `_events` for its change feed).
    pub fn key(&self, name: &str) -> String {
        format!("{}/{}/{name}", self.merchant_id, self.mode())
    }

    /// A failed Stripe request of this account.
    pub fn error(&self, source: StripeError) -> SyncError {
        SyncError::Stripe {
            account: self.account.name.clone(),
            source: Box::new(source),
        }
    }

    /// A failed lake write of one of this account's datasets.
    pub fn lake_error(&self, dataset: &str, source: LakeError) -> SyncError {
        SyncError::Lake {
            account: self.account.name.clone(),
            dataset: dataset.to_string(),
            source: Box::new(source),
        }
    }

    /// A failed warehouse call for one of this account's datasets (`schema` for the account's tables).
    pub fn warehouse_error(&self, dataset: &str, source: WarehouseError) -> SyncError {
        SyncError::Warehouse {
            account: self.account.name.clone(),
            dataset: dataset.to_string(),
            source: Box::new(source),
        }
    }

    /// Work that cannot be done with this account's configuration.
    pub fn config_error(&self, message: String) -> SyncError {
        SyncError::Config {
            account: self.account.name.clone(),
            message,
        }
    }
}

/// Checks every key with one cheap call (`GET /v1/account`), before anything is written anywhere.
pub async fn resolve(
    client: &StripeClient,
    accounts: &[Account],
) -> Result<Vec<Resolved>, SyncError> {
    let mut out = Vec::new();
    for a in accounts {
        let caller = Caller {
            label: a.name.clone(),
            key: a.key.clone(),
            livemode: a.livemode,
            stripe_account: None,
        };
        let resp = client
            .get_raw(&caller, "/v1/account", &[])
            .await
            .map_err(|source| SyncError::Stripe {
                account: a.name.clone(),
                source: Box::new(source),
            })?;
        let acct: serde_json::Value = serde_json::from_slice(&resp.body).unwrap_or_default();
        let merchant_id = acct["id"]
            .as_str()
            .filter(|id| id.starts_with("acct_"))
            .ok_or_else(|| SyncError::Stripe {
                account: a.name.clone(),
                source: Box::new(StripeError::Decode {
                    message: "GET /v1/account returned no account id".into(),
                    request_id: resp.request_id.clone(),
                }),
            })?;
        out.push(Resolved {
            account: a.clone(),
            merchant_id: merchant_id.to_string(),
            caller,
            server_time: resp.server_time.unwrap_or_else(|| SystemClock.now_secs()),
        });
    }
    Ok(out)
}
