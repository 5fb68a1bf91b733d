//! Accounts, keys and every scope's data, plus the changes the control API makes.
//!
//! The fixed cast: two standard accounts (one whose default API version differs from the pinned one, so
//! its events are rendered in another version) and a Connect platform with two connected accounts. Every
//! account except the connected ones has secret and restricted keys for test and live mode.

use crate::generate::{self, Gen, Payment};
use crate::resources::Res;
use crate::rng::Rng;
use crate::scope::{Action, EventPolicy, Scope};
use crate::templates::template;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};

/// The API version the simulator renders objects in.
pub const PINNED_API_VERSION: &str = "2023-08-16";

/// When a control operation happens and which request made it (recorded in its events).
#[derive(Debug, Clone)]
pub struct Op {
    pub now: i64,
    pub request: String,
}

/// What kind of Stripe account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    Standard,
    Platform,
    Connected,
}

#[derive(Debug, Clone, Serialize)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub kind: AccountKind,
    /// The platform of a connected account.
    pub platform: Option<String>,
    /// The account's default API version (events are rendered in it).
    pub api_version: String,
    /// The account uses no Issuing, Treasury or Identity: their lists answer Stripe's "not set up"
    /// error, and it has none of their objects.
    pub basic: bool,
    /// A Custom connected account (the others are Express): its platform reads its persons and manages
    /// its external accounts (`connect`).
    pub custom: bool,
}

/// One API key as printed on start.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    pub key: String,
    pub account: String,
    /// `live` or `test`.
    pub mode: &'static str,
    /// `secret` or `restricted`.
    pub kind: &'static str,
    /// Resources a restricted key may read (`None`: everything).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<String>>,
}

impl KeyInfo {
    pub fn livemode(&self) -> bool {
        self.mode == "live"
    }

    /// Whether this key may read `res`.
    pub fn may_read(&self, res: Res) -> bool {
        match &self.allow {
            None => true,
            Some(allow) => allow.iter().any(|a| a == res.def().path),
        }
    }
}

/// A control-API request that cannot be carried out.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ControlError {
    #[error("unknown account '{0}': use one of the ids printed on start (GET /_sim/accounts)")]
    UnknownAccount(String),
    #[error("unknown resource '{0}': use a /v1 path segment such as 'charges'")]
    UnknownResource(String),
    #[error("{res} cannot be {what} through the simulator: {why}")]
    NotSupported {
        res: String,
        what: &'static str,
        why: &'static str,
    },
    #[error("invalid control request: {0}")]
    Invalid(String),
}

#[derive(Debug)]
pub struct World {
    pub accounts: Vec<Account>,
    pub keys: HashMap<String, KeyInfo>,
    /// Keyed by (account id, livemode).
    pub scopes: BTreeMap<(String, bool), Scope>,
    pub seed: u64,
    minted: u64,
}

fn account_id(rng: &mut Rng) -> String {
    format!("acct_1{}", rng.alnum(15))
}

impl World {
    /// Builds the cast and generates `n` objects per resource base count in every account and mode
    /// (connected accounts get a quarter), or only in the `only` keyed account and mode.
    pub fn generate(
        seed: u64,
        n: usize,
        now: i64,
        events: EventPolicy,
        only: Option<(usize, bool)>,
    ) -> World {
        let mut rng = Rng::new(seed, 0);
        let cast = [
            ("Acme Rockets", AccountKind::Standard, PINNED_API_VERSION),
            ("Globex Corporation", AccountKind::Standard, "2022-11-15"),
            (
                "Initech Platform",
                AccountKind::Platform,
                PINNED_API_VERSION,
            ),
            (
                "Initrode Custom",
                AccountKind::Connected,
                PINNED_API_VERSION,
            ),
            ("Hooli Express", AccountKind::Connected, PINNED_API_VERSION),
        ];
        let mut accounts: Vec<Account> = Vec::new();
        let mut platform = None;
        for (name, kind, version) in cast {
            let id = account_id(&mut rng);
            if kind == AccountKind::Platform {
                platform = Some(id.clone());
            }
            accounts.push(Account {
                id,
                name: name.to_string(),
                kind,
                platform: if kind == AccountKind::Connected {
                    platform.clone()
                } else {
                    None
                },
                api_version: version.to_string(),
                // The account on an older API version is an older integration, without the newer
                // products.
                basic: version != PINNED_API_VERSION,
                custom: name == "Initrode Custom",
            });
        }
        let mut keys = HashMap::new();
        for a in accounts.iter().filter(|a| a.kind != AccountKind::Connected) {
            for mode in ["test", "live"] {
                for (prefix, kind) in [("sk", "secret"), ("rk", "restricted")] {
                    let key = format!("{prefix}_{mode}_{}", rng.alnum(32));
                    keys.insert(
                        key.clone(),
                        KeyInfo {
                            key,
                            account: a.id.clone(),
                            mode,
                            kind,
                            allow: None,
                        },
                    );
                }
            }
        }
        let connected_of = |p: &str| -> Vec<String> {
            accounts
                .iter()
                .filter(|a| a.platform.as_deref() == Some(p))
                .map(|a| a.id.clone())
                .collect()
        };
        let keyed: Vec<&str> = accounts
            .iter()
            .filter(|a| a.kind != AccountKind::Connected)
            .map(|a| a.id.as_str())
            .collect();
        let chosen = only.and_then(|(k, live)| Some((keyed.get(k)?.to_string(), live)));
        let mut scopes = BTreeMap::new();
        for (i, a) in accounts.iter().enumerate() {
            for livemode in [false, true] {
                let stream = (i as u64) * 2 + livemode as u64 + 1;
                let mut scope = Scope::new(
                    &a.id,
                    livemode,
                    a.kind == AccountKind::Connected,
                    &a.api_version,
                    Rng::new(seed, stream),
                );
                scope.event_policy = events;
                scope.basic = a.basic;
                let count = match &chosen {
                    Some((id, live)) if *id != a.id || *live != livemode => 0,
                    _ if a.kind == AccountKind::Connected => n / 4,
                    _ => n,
                };
                let destinations = connected_of(&a.id);
                generate::generate(&mut scope, count, now, destinations.clone());
                for (j, dest) in destinations.iter().enumerate() {
                    let acct = account_object(
                        &accounts,
                        dest,
                        now - generate::HISTORY_SECS + (j as i64 + 1) * 86_400,
                        livemode,
                    );
                    scope.table_mut(Res::Account).push(crate::table::Row {
                        id: dest.as_str().into(),
                        created: acct["created"].as_i64().unwrap_or(0),
                        json: crate::scope::to_bytes(&acct),
                        deleted: false,
                        attrs: Box::new([]),
                        visible_at: 0,
                    });
                }
                scopes.insert((a.id.clone(), livemode), scope);
            }
        }
        World {
            accounts,
            keys,
            scopes,
            seed,
            minted: 0,
        }
    }

    pub fn account(&self, id: &str) -> Option<&Account> {
        self.accounts.iter().find(|a| a.id == id)
    }

    /// The `/v1/account` object.
    pub fn account_json(&self, id: &str, livemode: bool) -> Value {
        account_object(
            &self.accounts,
            id,
            crate::clock::DEFAULT_START - generate::HISTORY_SECS,
            livemode,
        )
    }

    /// The scope a control operation changes, with the operation's request id set for its events.
    fn begin(
        &mut self,
        account: &str,
        livemode: bool,
        op: &Op,
    ) -> Result<&mut Scope, ControlError> {
        let scope = self.scope_mut(account, livemode)?;
        scope.request_id = Some(op.request.clone());
        Ok(scope)
    }

    fn scope_mut(&mut self, account: &str, livemode: bool) -> Result<&mut Scope, ControlError> {
        self.scopes
            .get_mut(&(account.to_string(), livemode))
            .ok_or_else(|| ControlError::UnknownAccount(account.to_string()))
    }

    fn destinations(&self, account: &str) -> Vec<String> {
        self.accounts
            .iter()
            .filter(|a| a.platform.as_deref() == Some(account))
            .map(|a| a.id.clone())
            .collect()
    }

    /// Creates `count` objects of `res` (with the related objects they need) at `now`, emitting events.
    pub fn create(
        &mut self,
        account: &str,
        livemode: bool,
        res: Res,
        count: usize,
        op: Op,
    ) -> Result<Vec<String>, ControlError> {
        let destinations = self.destinations(account);
        let scope = self.begin(account, livemode, &op)?;
        if scope.basic && res.product().is_some() {
            return Err(ControlError::NotSupported {
                res: res.def().path.into(),
                what: "created in this account",
                why: "the account does not use the product (its lists answer Stripe's \"not set up\" error)",
            });
        }
        let now = op.now;
        let mut g = Gen::live(scope, now, destinations);
        let mut ids = Vec::new();
        for _ in 0..count {
            let id = match res {
                Res::Customer => Some(g.customer()),
                Res::Product => Some(g.product()),
                Res::Price => g.price(),
                Res::Coupon => Some(g.coupon()),
                Res::Charge => g.payment(Payment { succeed: true, ..Payment::default() }).charge,
                Res::PaymentIntent => Some(g.payment(Payment::default()).payment_intent),
                Res::Refund => g.payment(Payment { refund: true, ..Payment::default() }).refund,
                Res::Dispute => g.payment(Payment { dispute: true, ..Payment::default() }).dispute,
                Res::Invoice => g.invoice(false),
                Res::InvoiceItem => g.invoice_item(None, None).map(|(id, _)| id),
                Res::Subscription => g.subscription(),
                Res::CreditNote => {
                    let mut made = None;
                    for _ in 0..20 {
                        made = g.credit_note();
                        if made.is_some() {
                            break;
                        }
                    }
                    made
                }
                Res::SetupIntent => g.setup_intent(),
                Res::Payout | Res::BalanceTransaction => Some(g.payout()),
                Res::Transfer => g.standalone_transfer(),
                // A plan is a recurring price (`generate::plan_of`).
                Res::Generic(_) if res.def().path == generate::PLANS => g.plan(),
                Res::Generic(_) => g.generic(res),
                Res::ApplicationFee | Res::SubscriptionItem | Res::Event | Res::Account => {
                    return Err(ControlError::NotSupported {
                        res: res.def().path.into(),
                        what: "created directly",
                        why: "they are made as part of other objects (application fees by destination charges on a platform, subscription items by subscriptions, events by every change)",
                    })
                }
            };
            match id {
                Some(id) => ids.push(id),
                None => {
                    return Err(ControlError::NotSupported {
                        res: res.def().path.into(),
                        what: "created in this account",
                        why: "the objects it needs do not exist here (customers, prices, paid invoices or connected accounts)",
                    })
                }
            }
        }
        scope_done(g.scope);
        Ok(ids)
    }

    /// Updates `count` random objects of `res` (or the given ids), emitting `*.updated` with
    /// `previous_attributes` where Stripe has such an event.
    pub fn update(
        &mut self,
        account: &str,
        livemode: bool,
        res: Res,
        count: usize,
        ids: &[String],
        op: Op,
    ) -> Result<Vec<String>, ControlError> {
        if matches!(res, Res::Event | Res::Account) {
            return Err(ControlError::NotSupported {
                res: res.def().path.into(),
                what: "updated",
                why: "events and accounts are read-only",
            });
        }
        let scope = self.begin(account, livemode, &op)?;
        let now = op.now;
        let targets = choose(scope, res, count, ids, |_| true)?;
        // A plan is its recurring price: either changes both (`generate::plan_of`).
        let res = if twin(res) == Some(Res::Price) {
            Res::Price
        } else {
            res
        };
        for id in &targets {
            let Some(mut obj) = scope.object(res, id) else {
                continue;
            };
            let previous = mutate(res, &mut obj, &mut scope.rng, now);
            scope.replace(
                res,
                &obj,
                res.def().updated_event,
                Some(previous.clone()),
                now,
            );
            scope.touch_parent(res, &obj, Action::Updated, now);
            if let (Some(plans), Some(plan)) = (twin(res), generate::plan_of(&obj)) {
                if scope.table(plans).get(id).is_some_and(|r| !r.deleted) {
                    scope.replace(plans, &plan, plans.def().updated_event, Some(previous), now);
                }
            }
        }
        scope_done(scope);
        Ok(targets)
    }

    /// Sets top-level `fields` of object `id` of `res`, emitting its `*.updated` event (for values
    /// no generator makes, such as a field longer than a warehouse column holds).
    pub fn set_fields(
        &mut self,
        account: &str,
        livemode: bool,
        res: Res,
        id: &str,
        fields: &serde_json::Map<String, Value>,
        op: Op,
    ) -> Result<(), ControlError> {
        let scope = self.begin(account, livemode, &op)?;
        let Some(mut obj) = scope.object(res, id) else {
            return Err(ControlError::Invalid(format!("no {} {id}", res.def().path)));
        };
        let mut previous = serde_json::Map::new();
        for (key, value) in fields {
            previous.insert(key.clone(), obj[key.as_str()].clone());
            obj[key.as_str()] = value.clone();
        }
        scope.replace(
            res,
            &obj,
            res.def().updated_event,
            Some(Value::Object(previous)),
            op.now,
        );
        scope_done(scope);
        Ok(())
    }

    /// Deletes `count` random objects of `res` (or the given ids). Only resources with a `*.deleted`
    /// event can be deleted; invoices only as drafts, invoice items only while pending.
    pub fn delete(
        &mut self,
        account: &str,
        livemode: bool,
        res: Res,
        count: usize,
        ids: &[String],
        op: Op,
    ) -> Result<Vec<String>, ControlError> {
        let Some(event) = res.def().deleted_event else {
            return Err(ControlError::NotSupported {
                res: res.def().path.into(),
                what: "deleted",
                why: "Stripe has no deleted event for it",
            });
        };
        let scope = self.begin(account, livemode, &op)?;
        let now = op.now;
        let targets = choose(scope, res, count, ids, |o| match res {
            Res::Invoice => o["status"] == "draft",
            Res::InvoiceItem => o["invoice"].is_null(),
            _ => true,
        })?;
        for id in &targets {
            let Some(obj) = scope.object(res, id) else {
                continue;
            };
            if res == Res::Customer {
                let subs: Vec<String> = scope
                    .table(Res::Subscription)
                    .rows()
                    .iter()
                    .filter(|r| {
                        !r.deleted
                            && r.attrs.first().is_some_and(|c| **c == **id)
                            && r.attrs.get(1).is_some_and(|s| &**s != "canceled")
                    })
                    .map(|r| r.id.to_string())
                    .collect();
                for sub in subs {
                    cancel(scope, &sub, now);
                }
            }
            if let Some(row) = scope.table_mut(res).get_mut(id) {
                row.deleted = true;
            }
            scope.emit(event, &obj, None, now);
            scope.touch_parent(res, &obj, Action::Deleted, now);
            // A plan and its recurring price are one object: either goes with the other.
            if let Some(twin) = twin(res) {
                let live = scope.table(twin).get(id).is_some_and(|r| !r.deleted);
                if let (true, Some(other)) = (live, scope.object(twin, id)) {
                    if let Some(row) = scope.table_mut(twin).get_mut(id) {
                        row.deleted = true;
                    }
                    if let Some(event) = twin.def().deleted_event {
                        scope.emit(event, &other, None, now);
                    }
                }
            }
        }
        scope_done(scope);
        Ok(targets)
    }

    /// Cancels `count` random subscriptions that are not canceled yet (or the given ids).
    pub fn cancel_subscriptions(
        &mut self,
        account: &str,
        livemode: bool,
        count: usize,
        ids: &[String],
        op: Op,
    ) -> Result<Vec<String>, ControlError> {
        let scope = self.begin(account, livemode, &op)?;
        let now = op.now;
        let targets = choose(scope, Res::Subscription, count, ids, |o| {
            o["status"] != "canceled"
        })?;
        for id in &targets {
            cancel(scope, id, now);
        }
        scope_done(scope);
        Ok(targets)
    }

    /// Mints a restricted key that may read only `allow` (resource path names).
    pub fn mint_key(
        &mut self,
        account: &str,
        livemode: bool,
        allow: Vec<String>,
    ) -> Result<KeyInfo, ControlError> {
        let a = self
            .account(account)
            .ok_or_else(|| ControlError::UnknownAccount(account.to_string()))?;
        if a.kind == AccountKind::Connected {
            return Err(ControlError::Invalid("connected accounts are reached with their platform's key and the Stripe-Account header".into()));
        }
        for name in &allow {
            if Res::from_path(name).is_none() {
                return Err(ControlError::UnknownResource(name.clone()));
            }
        }
        self.minted += 1;
        let mode = if livemode { "live" } else { "test" };
        let mut rng = Rng::new(self.seed, 1_000_000 + self.minted);
        let key = format!("rk_{mode}_{}", rng.alnum(32));
        let info = KeyInfo {
            key: key.clone(),
            account: account.to_string(),
            mode,
            kind: "restricted",
            allow: Some(allow),
        };
        self.keys.insert(key, info.clone());
        Ok(info)
    }

    /// Connects `count` new accounts to `platform` now, each with a small history of `objects` per
    /// resource base count in both modes; they show in the platform's `GET /v1/accounts` and answer
    /// its key with their `Stripe-Account` id. Returns their ids.
    pub fn connect_accounts(
        &mut self,
        platform: &str,
        count: usize,
        objects: usize,
        now: i64,
    ) -> Result<Vec<String>, ControlError> {
        match self.account(platform) {
            Some(a) if a.kind == AccountKind::Platform => {}
            Some(_) => {
                return Err(ControlError::Invalid(format!(
                    "{platform} is not a Connect platform"
                )))
            }
            None => return Err(ControlError::UnknownAccount(platform.to_string())),
        }
        let mut ids = Vec::with_capacity(count);
        for _ in 0..count {
            self.minted += 1;
            let mut rng = Rng::new(self.seed, 2_000_000 + self.minted);
            let id = account_id(&mut rng);
            self.accounts.push(Account {
                id: id.clone(),
                name: format!("Connected {}", self.minted),
                kind: AccountKind::Connected,
                platform: Some(platform.to_string()),
                api_version: PINNED_API_VERSION.to_string(),
                basic: false,
                // Every other one, so a platform has both kinds.
                custom: self.minted % 2 == 1,
            });
            for livemode in [false, true] {
                let stream = 3_000_000 + self.minted * 2 + livemode as u64;
                let mut scope = Scope::new(
                    &id,
                    livemode,
                    true,
                    PINNED_API_VERSION,
                    Rng::new(self.seed, stream),
                );
                if let Some(platform_scope) = self.scopes.get(&(platform.to_string(), livemode)) {
                    scope.event_policy = platform_scope.event_policy;
                }
                generate::generate(&mut scope, objects, now, Vec::new());
                self.scopes.insert((id.clone(), livemode), scope);
                let acct = account_object(&self.accounts, &id, now, livemode);
                self.scope_mut(platform, livemode)?
                    .table_mut(Res::Account)
                    .push(crate::table::Row {
                        id: id.as_str().into(),
                        created: now,
                        json: crate::scope::to_bytes(&acct),
                        deleted: false,
                        attrs: Box::new([]),
                        visible_at: 0,
                    });
            }
            ids.push(id);
        }
        Ok(ids)
    }

    /// The connected account revokes its platform's access, as `account.application.deauthorized`
    /// reports: the platform's `GET /v1/accounts` lists it no more (its ground truth shows it
    /// deleted) and the platform's requests for it are refused with 403. Its own data stays.
    pub fn deauthorize(&mut self, account: &str) -> Result<(), ControlError> {
        let a = self
            .accounts
            .iter_mut()
            .find(|a| a.id == account)
            .ok_or_else(|| ControlError::UnknownAccount(account.to_string()))?;
        let Some(platform) = a.platform.take() else {
            return Err(ControlError::Invalid(format!(
                "{account} is not connected to a platform"
            )));
        };
        for livemode in [false, true] {
            if let Some(row) = self
                .scope_mut(&platform, livemode)?
                .table_mut(Res::Account)
                .get_mut(account)
            {
                row.deleted = true;
            }
        }
        Ok(())
    }

    /// The events emitted since the last call, each with the account whose endpoints receive it (a
    /// connected account's go to its platform's, as Stripe's Connect endpoints receive them) and
    /// its mode.
    pub fn take_pushes(&mut self) -> Vec<crate::push::Outgoing> {
        let mut out = Vec::new();
        for ((account, livemode), scope) in self.scopes.iter_mut() {
            if scope.outbox.is_empty() {
                continue;
            }
            let owner = self
                .accounts
                .iter()
                .find(|a| a.id == *account)
                .and_then(|a| a.platform.clone())
                .unwrap_or_else(|| account.clone());
            out.extend(
                scope
                    .outbox
                    .drain(..)
                    .map(|json| (owner.clone(), *livemode, json)),
            );
        }
        out
    }

    pub fn set_event_policy(&mut self, policy: EventPolicy) {
        for scope in self.scopes.values_mut() {
            scope.event_policy = policy;
        }
    }

    /// Number of objects (not events) in every scope.
    pub fn object_count(&self) -> usize {
        self.scopes.values().map(Scope::object_count).sum()
    }
}

/// The other half of a plan and its recurring price, which are one object with one id
/// (`generate::plan_of`): prices' for plans, plans' for prices.
fn twin(res: Res) -> Option<Res> {
    let plans = Res::from_path(generate::PLANS)?;
    match res {
        Res::Price => Some(plans),
        _ if res == plans => Some(Res::Price),
        _ => None,
    }
}

fn scope_done(scope: &mut Scope) {
    scope.request_id = None;
}

/// Picks targets: the given ids (which must exist and pass `eligible`), or `count` random eligible ones.
fn choose(
    scope: &mut Scope,
    res: Res,
    count: usize,
    ids: &[String],
    eligible: impl Fn(&Value) -> bool,
) -> Result<Vec<String>, ControlError> {
    if !ids.is_empty() {
        for id in ids {
            match scope.object(res, id) {
                Some(o) if !scope.table(res).get(id).is_some_and(|r| r.deleted) && eligible(&o) => {
                }
                _ => {
                    return Err(ControlError::Invalid(format!(
                        "{} '{id}' does not exist, is deleted, or cannot take this change",
                        res.def().object
                    )))
                }
            }
        }
        return Ok(ids.to_vec());
    }
    let mut candidates: Vec<Box<str>> = scope.table(res).live_ids();
    let mut chosen = Vec::new();
    while chosen.len() < count && !candidates.is_empty() {
        let i = scope.rng.below(candidates.len() as u64) as usize;
        let id = candidates.swap_remove(i);
        if scope.object(res, &id).is_some_and(|o| eligible(&o)) {
            chosen.push(id.to_string());
        }
    }
    Ok(chosen)
}

fn cancel(scope: &mut Scope, id: &str, now: i64) {
    let Some(mut sub) = scope.object(Res::Subscription, id) else {
        return;
    };
    sub["status"] = json!("canceled");
    sub["canceled_at"] = json!(now);
    sub["ended_at"] = json!(now);
    sub["cancellation_details"] =
        json!({"comment": null, "feedback": null, "reason": "cancellation_requested"});
    scope.replace(
        Res::Subscription,
        &sub,
        Some("customer.subscription.deleted"),
        None,
        now,
    );
}

/// Changes an object the way an update through the API would; returns `previous_attributes`.
fn mutate(res: Res, obj: &mut Value, rng: &mut Rng, now: i64) -> Value {
    let mut prev = serde_json::Map::new();
    let mut set = |obj: &mut Value, key: &str, value: Value| {
        prev.insert(key.to_string(), obj[key].clone());
        obj[key] = value;
    };
    if res.generic().is_some() && obj.get("metadata").is_none() {
        // Objects without metadata (Terminal readers, files) change a text field they have.
        let field = [
            "description",
            "label",
            "name",
            "nickname",
            "display_name",
            "url",
        ]
        .into_iter()
        .find(|f| obj.get(*f).is_some_and(|v| v.is_string() || v.is_null()));
        if let Some(field) = field {
            set(
                obj,
                field,
                json!(format!("updated {now} №{}", rng.range(1, 1_000_000))),
            );
        }
        return Value::Object(prev);
    }
    let mut meta = obj["metadata"].as_object().cloned().unwrap_or_default();
    let rev = meta
        .get("sim_revision")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    meta.insert("sim_revision".into(), json!(rev.to_string()));
    meta.insert(
        "sim_note".into(),
        json!(format!("mis à jour №{}", rng.range(1, 1_000_000))),
    );
    set(obj, "metadata", Value::Object(meta));
    match res {
        Res::Customer => set(
            obj,
            "email",
            json!(format!(
                "updated.{}@example.com",
                rng.alnum(8).to_lowercase()
            )),
        ),
        Res::Charge
        | Res::PaymentIntent
        | Res::Invoice
        | Res::Subscription
        | Res::InvoiceItem
        | Res::Payout
        | Res::Transfer
        | Res::Product
        | Res::SetupIntent => set(obj, "description", json!(format!("Updated at {now} — ✓"))),
        Res::Price => set(obj, "nickname", json!(format!("Tier {}", rng.range(1, 9)))),
        Res::Coupon => set(obj, "name", json!(format!("Promo ✨ {}", rng.range(1, 99)))),
        Res::Dispute if obj["status"] == "needs_response" => {
            set(obj, "status", json!("under_review"))
        }
        _ => {}
    }
    if res == Res::Product {
        obj["updated"] = json!(now);
    }
    Value::Object(prev)
}

fn account_object(accounts: &[Account], id: &str, created: i64, livemode: bool) -> Value {
    let a = accounts.iter().find(|a| a.id == id);
    let mut o = template("account");
    o["id"] = json!(id);
    o["object"] = json!("account");
    o["created"] = json!(created);
    o["business_profile"]["name"] = json!(a.map(|a| a.name.clone()));
    o["settings"]["dashboard"]["display_name"] = json!(a.map(|a| a.name.clone()));
    o["email"] = json!(format!("ops+{}@example.com", &id[5..12].to_lowercase()));
    o["type"] = json!(match a.map(|a| (a.kind, a.custom)) {
        Some((AccountKind::Connected, true)) => "custom",
        Some((AccountKind::Connected, false)) => "express",
        _ => "standard",
    });
    o["charges_enabled"] = json!(true);
    o["payouts_enabled"] = json!(true);
    o["details_submitted"] = json!(true);
    o["country"] = json!("US");
    o["default_currency"] = json!("usd");
    crate::connect::embed(&mut o);
    let _ = livemode;
    o
}
