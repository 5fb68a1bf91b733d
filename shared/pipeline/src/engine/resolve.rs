//! Resolving accounts: every key is checked with one cheap call (`GET /v1/account`) before anything is
//! written anywhere, which gives the account's Stripe id (`merchant_id` of every row) and Stripe's clock.

use super::error::SyncError;
use crate::catalog::{Catalog, Dataset, Owner, ACCOUNTS};
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
    /// Set for a connected account of the Connect platform `merchant_id`: the connected account's id
    /// (`acct_…`). Requests carry it as `Stripe-Account` with the platform's key (and spend the
    /// platform's rate budget); rows go to the `connected_account_*` tables with it as `account`.
    pub connected: Option<String>,
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

    /// `<merchant>/<mode>` (`<platform>/<mode>/<connected account>` for a connected account): the
    /// prefix of this account-mode's state keys, and its account lease.
    pub fn scope(&self) -> String {
        match &self.connected {
            None => format!("{}/{}", self.merchant_id, self.mode()),
            Some(c) => format!("{}/{}/{c}", self.merchant_id, self.mode()),
        }
    }

    /// `<merchant>/<mode>` of the key's own account (the platform's, for a connected account): what
    /// shares one budget of segments in flight.
    pub fn budget_scope(&self) -> String {
        format!("{}/{}", self.merchant_id, self.mode())
    }

    /// The state key of one of this account's datasets (or `_events` for its change feed).
    pub fn key(&self, name: &str) -> String {
        format!("{}/{name}", self.scope())
    }

    /// The datasets this account syncs of the `selected` ones: a connected account's are stored in
    /// the `connected_account_*` tables ([`Catalog::connected`]); a platform configured with
    /// `connect = true` syncs its connected accounts (`accounts`, [`Catalog::platform`]) too, and
    /// no other account does.
    pub fn datasets(&self, selected: &[&'static Dataset]) -> Vec<&'static Dataset> {
        let own = selected.iter().filter(|d| d.name != ACCOUNTS);
        match &self.connected {
            Some(_) => own
                .filter_map(|d| Catalog::connected().iter().find(|c| c.name == d.name))
                .collect(),
            None if self.account.connect => own.copied().chain(&Catalog::get().platform).collect(),
            None => own.copied().collect(),
        }
    }

    /// The connected account `id` of this platform, read with its key (no request is made: the key
    /// was checked; an account that is not connected answers 403 to the first request).
    pub fn connected(&self, id: String) -> Resolved {
        let mut account = self.account.clone();
        account.name = format!("{}/{id}", self.account.name);
        account.connect = false;
        let mut caller = self.caller.clone();
        caller.stripe_account = Some(id.clone());
        Resolved {
            account,
            merchant_id: self.merchant_id.clone(),
            connected: Some(id),
            caller,
            server_time: self.server_time,
        }
    }

    /// The name (without `.parquet`) of a file of this account written by run `run_id`:
    /// `<run>-<what>`, or `<run>-<acct_…>-<what>` for a connected account, whose files share the
    /// platform's folder with those of the platform's other connected accounts.
    pub fn file_stem(&self, run_id: &str, what: &str) -> String {
        match &self.connected {
            None => format!("{run_id}-{what}"),
            Some(c) => format!("{run_id}-{c}-{what}"),
        }
    }

    /// This account's rows in a table: its `merchant_id`, and for a connected account its `account`.
    pub fn owner(&self) -> Owner<'_> {
        Owner {
            merchant_id: &self.merchant_id,
            account: self.connected.as_deref(),
        }
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
        let opened = open(client, a).await.map_err(|source| SyncError::Stripe {
            account: a.name.clone(),
            source: Box::new(source),
        })?;
        out.push(Resolved {
            account: a.clone(),
            merchant_id: opened.merchant_id,
            connected: None,
            caller: opened.caller,
            server_time: opened.server_time,
        });
    }
    Ok(out)
}

/// An account as its key opens it: `GET /v1/account`.
pub struct Opened {
    pub caller: Caller,
    /// `acct_…`.
    pub merchant_id: String,
    /// Stripe's clock (Unix seconds), or this machine's when Stripe sent no `Date`.
    pub server_time: i64,
}

/// Checks an account's key with one call and reads the account's id: the check of [`resolve`], and
/// of `stripe-pipeline check` ([`crate::check`]).
pub async fn open(client: &StripeClient, a: &Account) -> Result<Opened, StripeError> {
    let caller = Caller {
        label: a.name.clone(),
        key: a.key.clone(),
        livemode: a.livemode,
        stripe_account: None,
    };
    let resp = client.get_raw(&caller, "/v1/account", &[]).await?;
    let acct: serde_json::Value = serde_json::from_slice(&resp.body).unwrap_or_default();
    let merchant_id = acct["id"]
        .as_str()
        .filter(|id| id.starts_with("acct_"))
        .ok_or_else(|| StripeError::Decode {
            message: "GET /v1/account returned no account id".into(),
            request_id: resp.request_id.clone(),
        })?;
    Ok(Opened {
        merchant_id: merchant_id.to_string(),
        caller,
        server_time: resp.server_time.unwrap_or_else(|| SystemClock.now_secs()),
    })
}

/// The connected accounts of a Connect platform (`connect = true`), each as an account of its own:
/// `GET /v1/accounts`, paged in full on every run, so that an account connected since the last run is
/// synced at once and one that was deauthorized (Stripe lists it no more) is no longer synced; its
/// rows stay. Nothing for an account without `connect`.
pub async fn connected(
    client: &StripeClient,
    platform: &Resolved,
) -> Result<Vec<Resolved>, SyncError> {
    if !platform.account.connect || platform.connected.is_some() {
        return Ok(Vec::new());
    }
    let mut ids: Vec<String> = Vec::new();
    loop {
        let mut params = vec![("limit".to_string(), "100".to_string())];
        if let Some(last) = ids.last() {
            params.push(("starting_after".into(), last.clone()));
        }
        let resp = client
            .get_raw(&platform.caller, "/v1/accounts", &params)
            .await
            .map_err(|e| platform.error(e))?;
        let page: AccountsPage = serde_json::from_slice(&resp.body).map_err(|e| {
            platform.error(StripeError::Decode {
                message: format!("GET /v1/accounts: {e}"),
                request_id: resp.request_id.clone(),
            })
        })?;
        let before = ids.len();
        ids.extend(
            page.data
                .into_iter()
                .map(|a| a.id)
                .filter(|id| id.starts_with("acct_")),
        );
        if !page.has_more || ids.len() == before {
            break;
        }
    }
    Ok(ids.into_iter().map(|id| platform.connected(id)).collect())
}

#[derive(serde::Deserialize)]
struct AccountsPage {
    data: Vec<AccountId>,
    #[serde(default)]
    has_more: bool,
}

#[derive(serde::Deserialize)]
struct AccountId {
    id: String,
}
