//! What a connected account has under its own path: external accounts (bank accounts and debit cards
//! in one list), persons and capabilities (`/v1/accounts/{id}/external_accounts|persons|capabilities`).
//!
//! They are made from the account object alone (its id seeds them), so the stored account, the lists
//! and the ground truth always agree, and an account minted later gets them too. A Custom account has
//! a dozen external accounts (more than the 10 its object embeds, so the rest must be paged), three
//! persons and three capabilities; an Express or Standard one a bank account and two capabilities, and
//! its persons are not the platform's to read (Stripe answers 403).

use crate::rng::Rng;
use crate::templates::template;
use serde_json::{json, Value};

/// How many external accounts an account's object embeds; the list pages the rest.
pub const EMBEDDED: usize = 10;

/// The key under which the ground truth carries an account's capabilities: the pipeline's catalog
/// puts the list there, since the account's own `capabilities` is the map of their statuses.
pub const CAPABILITIES_KEY: &str = "account_capabilities";

/// A connected account's lists, items in Stripe's order (newest first for the paged ones).
pub struct Attached {
    pub external_accounts: Vec<Value>,
    pub persons: Vec<Value>,
    /// Whether the platform may read the persons (the account is Custom).
    pub readable_persons: bool,
    pub capabilities: Vec<Value>,
}

fn custom(account: &Value) -> bool {
    account["type"] == "custom"
}

/// The capabilities an account of this type has, with their statuses (the account's `capabilities`).
pub fn capability_statuses(custom: bool) -> Vec<(&'static str, &'static str)> {
    let mut c = vec![("card_payments", "active"), ("transfers", "active")];
    if custom {
        c.push(("us_bank_account_ach_payments", "pending"));
    }
    c
}

/// The lists of the account object `account` (its `id`, `type` and `created` decide them).
pub fn attached(account: &Value) -> Attached {
    let id = account["id"].as_str().unwrap_or_default();
    let created = account["created"].as_i64().unwrap_or_default();
    let custom = custom(account);
    let seed = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    });
    let mut rng = Rng::new(seed, 7);
    let suffix = |rng: &mut Rng| format!("1{}{}", &id[5..13.min(id.len())], rng.alnum(14));
    let mut external_accounts = Vec::new();
    for i in 0..if custom { 12 } else { 1 } {
        let mut o = if i % 3 == 2 {
            let mut card = template("card");
            card["id"] = json!(format!("card_{}", suffix(&mut rng)));
            card["last4"] = json!(format!("{:04}", rng.range(0, 9999)));
            card["exp_month"] = json!(rng.range(1, 12));
            card["exp_year"] = json!(2027 + rng.range(0, 5));
            card["funding"] = json!("debit");
            card["customer"] = Value::Null;
            card
        } else {
            let mut bank = template("bank_account");
            bank["id"] = json!(format!("ba_{}", suffix(&mut rng)));
            bank["last4"] = json!(format!("{:04}", rng.range(0, 9999)));
            bank["customer"] = Value::Null;
            bank["status"] = json!("verified");
            bank
        };
        o["account"] = json!(id);
        o["currency"] = json!("usd");
        o["default_for_currency"] = json!(i == 0);
        o["metadata"] = json!({});
        external_accounts.push(o);
    }
    let mut persons = Vec::new();
    if custom {
        for (i, (first, last)) in [("Ada", "Lovelace"), ("Grace", "Hopper"), ("Alan", "Turing")]
            .into_iter()
            .enumerate()
        {
            let mut p = template("person");
            p["id"] = json!(format!("person_{}", suffix(&mut rng)));
            p["account"] = json!(id);
            p["created"] = json!(created + 60 * (3 - i as i64));
            p["first_name"] = json!(first);
            p["last_name"] = json!(last);
            p["email"] = json!(format!("{}@example.com", first.to_lowercase()));
            p["relationship"]["representative"] = json!(i == 0);
            p["relationship"]["owner"] = json!(i > 0);
            p["relationship"]["percent_ownership"] = if i > 0 { json!(50.0) } else { Value::Null };
            persons.push(p);
        }
    }
    let capabilities = capability_statuses(custom)
        .into_iter()
        .map(|(name, status)| {
            let mut c = template("capability");
            c["id"] = json!(name);
            c["account"] = json!(id);
            c["requested_at"] = json!(created);
            c["status"] = json!(status);
            c
        })
        .collect();
    Attached {
        external_accounts,
        persons,
        readable_persons: custom,
        capabilities,
    }
}

/// Sets the account object's embedded lists: its external accounts' first page and its capabilities'
/// statuses.
pub fn embed(account: &mut Value) {
    let id = account["id"].as_str().unwrap_or_default().to_string();
    let all = attached(account).external_accounts;
    account["external_accounts"] = json!({
        "object": "list",
        "data": all.iter().take(EMBEDDED).collect::<Vec<_>>(),
        "has_more": all.len() > EMBEDDED,
        "url": format!("/v1/accounts/{id}/external_accounts"),
    });
    account["capabilities"] = capability_statuses(custom(account))
        .into_iter()
        .map(|(name, status)| (name.to_string(), json!(status)))
        .collect::<serde_json::Map<_, _>>()
        .into();
}

/// The account object with every list complete, as the ground truth holds it: what a platform can
/// read (an account's persons only where it may).
pub fn complete(account: &mut Value) {
    let lists = attached(account);
    let list = |data: Vec<Value>| json!({"object": "list", "data": data, "has_more": false});
    account["external_accounts"]["data"] = Value::Array(lists.external_accounts);
    account["external_accounts"]["has_more"] = json!(false);
    account["persons"] = list(lists.persons);
    account[CAPABILITIES_KEY] = list(lists.capabilities);
}
