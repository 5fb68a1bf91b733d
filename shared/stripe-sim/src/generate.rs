//! Deterministic, self-consistent Stripe data.
//!
//! The same functions build the generated history (random times over several years, bursts of objects in
//! the same second) and the objects the control API creates later (time = simulated now, events emitted).
//! Related objects are built together so references always resolve: a payment makes its payment intent,
//! charge, balance transaction and, by chance, refunds and a dispute; a subscription makes its items and
//! invoices; an invoice makes its lines and invoice items.

use crate::resources::Res;
use crate::scope::{Action, Scope};
use crate::templates::template;
use serde_json::{json, Value};

const YEAR: i64 = 365 * 24 * 3600;
const DAY: i64 = 24 * 3600;
/// How far back generated history reaches.
pub const HISTORY_SECS: i64 = 3 * YEAR;

const FIRST: &[&str] = &[
    "Jenny", "Zoë", "José", "Åsa", "Mikołaj", "Chloé", "Søren", "Ngozi", "李", "Олег", "Ana",
    "Ravi", "Fatma", "Kenji", "Émile", "Noa",
];
const LAST: &[&str] = &[
    "Rosen",
    "Müller",
    "García",
    "Øster",
    "Wiśniewski",
    "Dubois",
    "Nakamura",
    "Okafor",
    "王",
    "Иванов",
    "Silva",
    "Patel",
    "Yılmaz",
    "Brown",
    "Lefèvre",
    "Cohen",
];
const CITIES: &[(&str, &str)] = &[
    ("San Francisco", "US"),
    ("Zürich", "CH"),
    ("München", "DE"),
    ("São Paulo", "BR"),
    ("東京", "JP"),
    ("Kraków", "PL"),
    ("Paris", "FR"),
    ("London", "GB"),
];
const META_KEYS: &[&str] = &[
    "order_id",
    "plan",
    "région",
    "客户编号",
    "campaign",
    "note",
    "sku",
    "канал",
    "referrer",
    "🚀_launch",
    "crm_id",
    "cohort",
];
const META_VALUES: &[&str] = &[
    "42",
    "gold",
    "Île-de-France",
    "東京都",
    "spring-sale",
    "naïve café ☕",
    "A-1001",
    "веб",
    "partner:acme",
    "✓ yes",
    "",
    "long value with spaces and ünïcödé",
];
const PRODUCTS: &[&str] = &[
    "Rocket Fuel",
    "Launch Pad",
    "Orbital Insurance",
    "Telemetry Pro",
    "Ground Station",
    "Café Crème Plan",
    "Support Añadido",
    "Mission Control",
];
const CURRENCIES: &[(&str, u32)] = &[("usd", 70), ("eur", 15), ("gbp", 10), ("jpy", 5)];

/// Builds objects into one scope.
pub struct Gen<'a> {
    pub scope: &'a mut Scope,
    /// Simulated now: history ends here; live creation happens here.
    pub now: i64,
    /// True while generating history (random past times, no events).
    pub history: bool,
    burst: Option<i64>,
    /// Other accounts' ids this account may transfer to (its connected accounts).
    pub destinations: Vec<String>,
}

/// Ratios of generated objects to the base count `n` of one account and mode.
pub fn generate(scope: &mut Scope, n: usize, now: i64, destinations: Vec<String>) {
    let mut g = Gen {
        scope,
        now,
        history: true,
        burst: None,
        destinations,
    };
    let n = n.max(1);
    for _ in 0..(n / 40).max(3) {
        g.product();
    }
    for _ in 0..(n / 50).max(2) {
        g.coupon();
    }
    for _ in 0..n {
        g.customer();
    }
    for _ in 0..n / 4 {
        g.subscription();
    }
    for _ in 0..n / 8 {
        g.invoice(false);
    }
    for _ in 0..n / 10 {
        g.invoice_item(None, None);
    }
    for _ in 0..n / 2 {
        g.payment(Payment::default());
    }
    for _ in 0..n / 30 {
        g.credit_note();
    }
    for _ in 0..n / 5 {
        g.setup_intent();
    }
    for _ in 0..(n / 10).max(1) {
        g.payout();
    }
    // Last, so the hand-written objects above stay what they were before these resources existed.
    let basic = g.scope.basic;
    for res in Res::all().filter(|r| r.generic().is_some() && !(basic && r.product().is_some())) {
        if res.def().path == PLANS {
            // Made with their prices (`Gen::insert_price`).
            continue;
        }
        // Stripe's own reference objects (a country spec `US`) have no id prefix: one of each. A
        // resource whose id other lists require (a Treasury financial account, a Radar value list) is
        // one an account keeps a few of, with many objects each: two at least, so every profile lists
        // per parent, and one more per 20,000 (the large profile's account has ten).
        let required_parent = Res::all().filter_map(Res::generic).any(|g| {
            g.nested.is_none()
                && g.parents
                    .iter()
                    .any(|(_, object)| *object == res.def().object)
        });
        let count = if res.def().id_prefix.is_empty() {
            1
        } else if required_parent {
            2 + n / REQUIRED_PARENT_SHARE
        } else {
            (n / GENERIC_SHARE).max(1)
        };
        for _ in 0..count {
            g.generic(res);
        }
    }
    for table in &mut g.scope.tables {
        table.sort();
    }
    g.scope.emit_history_events(now);
}

/// The list of plans: Stripe's older Plans API, which shows every recurring price as a plan.
pub const PLANS: &str = "plans";

/// The plan of a recurring price: the same object as the Plans API shows it, with the same id (`None`
/// for a one-time price).
pub fn plan_of(price: &Value) -> Option<Value> {
    let recurring = price["recurring"].as_object()?;
    let mut plan = crate::templates::template("plan");
    let shared = [
        "id",
        "active",
        "created",
        "currency",
        "livemode",
        "metadata",
        "nickname",
        "product",
        "billing_scheme",
        "tiers_mode",
        "transform_usage",
    ];
    for key in shared {
        if let Some(v) = price.get(key) {
            plan[key] = v.clone();
        }
    }
    plan["amount"] = price["unit_amount"].clone();
    plan["amount_decimal"] = price["unit_amount_decimal"].clone();
    for key in [
        "interval",
        "interval_count",
        "usage_type",
        "aggregate_usage",
        "trial_period_days",
    ] {
        if let Some(v) = recurring.get(key) {
            plan[key] = v.clone();
        }
    }
    Some(plan)
}

/// A resource whose id other lists require gets two objects and one more per this many customers.
const REQUIRED_PARENT_SHARE: usize = 20_000;

/// A resource without a hand-written generator gets one object per this many customers: the dozens of
/// such resources add a few percent to a profile, so its size and memory stay what they were.
const GENERIC_SHARE: usize = 200;

/// Options of one payment.
#[derive(Default, Clone)]
pub struct Payment {
    pub customer: Option<String>,
    pub amount: Option<i64>,
    pub currency: Option<String>,
    pub invoice: Option<String>,
    pub at: Option<i64>,
    /// Force a refund / a dispute / a successful outcome (live creation of refunds and disputes).
    pub refund: bool,
    pub dispute: bool,
    pub succeed: bool,
}

/// The subscription side of a subscription invoice.
#[derive(Clone, Copy)]
struct SubInvoice<'a> {
    id: &'a str,
    /// (item id, price, quantity) per item.
    items: &'a [(String, Value, i64)],
    /// `billing_reason`.
    reason: &'a str,
    period: (i64, i64),
}

/// Ids made by one payment.
pub struct PaymentIds {
    pub payment_intent: String,
    pub charge: Option<String>,
    pub refund: Option<String>,
    pub dispute: Option<String>,
}

impl Gen<'_> {
    /// A generator for live creation at `now` (events are emitted).
    pub fn live(scope: &mut Scope, now: i64, destinations: Vec<String>) -> Gen<'_> {
        Gen {
            scope,
            now,
            history: false,
            burst: None,
            destinations,
        }
    }

    fn rng(&mut self) -> &mut crate::rng::Rng {
        &mut self.scope.rng
    }

    /// A creation time: live → now; history → anywhere in the last years, often in a burst second.
    fn when(&mut self) -> i64 {
        self.when_after(i64::MIN)
    }

    /// Like [`Gen::when`], but not before `min` (the creation of an object this one refers to).
    fn when_after(&mut self, min: i64) -> i64 {
        if !self.history {
            return self.now;
        }
        if let Some(t) = self.burst {
            if t >= min && self.rng().chance(0.7) {
                return t;
            }
            if self.rng().chance(0.3) {
                self.burst = None;
            }
        }
        // Skewed towards recent times, as real accounts grow.
        let u = self.rng().unit().sqrt();
        let t = (self.now - HISTORY_SECS + (u * (HISTORY_SECS - 60) as f64) as i64)
            .max(min)
            .min(self.now);
        if self.rng().chance(0.05) {
            self.burst = Some(t);
        }
        t
    }

    /// A time at most `max_delay` after `t`, never after now.
    fn after(&mut self, t: i64, max_delay: i64) -> i64 {
        if !self.history {
            return self.now;
        }
        (t + self.rng().range(0, max_delay)).min(self.now)
    }

    fn id(&mut self, prefix: &str) -> String {
        format!("{prefix}_{}", self.rng().alnum(24))
    }

    fn currency(&mut self) -> String {
        self.rng().weighted(CURRENCIES).to_string()
    }

    fn metadata(&mut self) -> Value {
        let n = *self.rng().weighted(&[
            (0u32, 40),
            (1, 20),
            (2, 12),
            (3, 8),
            (5, 10),
            (12, 6),
            (50, 4),
        ]);
        let n = if n > 3 {
            self.rng().range(4, n as i64) as usize
        } else {
            n as usize
        };
        let mut m = serde_json::Map::new();
        for i in 0..n {
            let base = *self.rng().pick(META_KEYS);
            let key = if i < META_KEYS.len() {
                base.to_string()
            } else {
                format!("{base}_{i}")
            };
            let value = *self.rng().pick(META_VALUES);
            m.insert(key, json!(value));
        }
        Value::Object(m)
    }

    fn base(&mut self, kind: &str, id: &str, created: i64) -> Value {
        let mut o = template(kind);
        o["id"] = json!(id);
        o["created"] = json!(created);
        o["livemode"] = json!(self.scope.livemode);
        if o.get("metadata").is_some() {
            o["metadata"] = self.metadata();
        }
        o
    }

    /// An object of a resource without a hand-written generator: Stripe's example object with a new id,
    /// creation time and metadata, its references pointing at existing objects (or null), and its
    /// parent (`financial_account` of a Treasury transaction) an existing one. `None` without a parent.
    pub fn generic(&mut self, res: Res) -> Option<String> {
        let g = res.generic()?;
        let created = self.when();
        let mut o = template(g.def.object);
        let id = if g.def.id_prefix.is_empty() {
            o["id"].as_str().unwrap_or_default().to_string()
        } else {
            self.id(g.def.id_prefix)
        };
        o["id"] = json!(id);
        if o.get("created").is_some() {
            o["created"] = json!(created);
        }
        if o.get("livemode").is_some() {
            o["livemode"] = json!(self.scope.livemode);
        }
        if o.get("metadata").is_some() {
            o["metadata"] = self.metadata();
        }
        for (field, object) in &g.refs {
            if o.get(*field).is_some() {
                let target = Res::from_object(object).and_then(|r| self.pick(r));
                o[*field] = target.map_or(Value::Null, |t| t["id"].clone());
            }
        }
        for (param, object) in &g.parents {
            let parent = Res::from_object(object).and_then(|r| self.pick(r))?;
            o[*param] = parent["id"].clone();
        }
        if g.owned.is_some() {
            // The first owner of each kind has more than a page, so every data set pages one.
            let first = self.scope.table(res).len() == 0;
            let items = self.line_items(first);
            self.scope.lines.insert(id.as_str().into(), items);
        }
        self.scope.insert_at(res, &o, created, None);
        let now = self.now;
        self.scope.touch_parent(res, &o, Action::Created, now);
        Some(id)
    }

    /// The line items of a Checkout session, quote or payment link: existing prices, embedded whole as
    /// Stripe does; one owner in twenty has more than a page of them, and a `long` one always.
    fn line_items(&mut self, long: bool) -> Vec<(Box<str>, bytes::Bytes)> {
        let n = match long {
            true => 12,
            false => *self
                .rng()
                .weighted(&[(1usize, 60), (2, 25), (3, 10), (12, 5)]),
        };
        (0..n)
            .filter_map(|_| {
                let price = self.pick(Res::Price)?;
                let id = self.id("li");
                let quantity = self.rng().range(1, 5);
                let amount = price["unit_amount"].as_i64().unwrap_or(0) * quantity;
                let mut item = template("item");
                item["id"] = json!(id);
                item["currency"] = price["currency"].clone();
                if price["nickname"].is_string() {
                    item["description"] = price["nickname"].clone();
                }
                item["quantity"] = json!(quantity);
                item["amount_subtotal"] = json!(amount);
                item["amount_total"] = json!(amount);
                item["price"] = price;
                Some((id.into(), crate::scope::to_bytes(&item)))
            })
            .collect()
    }

    /// A random live object of `res` (not deleted), as JSON.
    pub fn pick(&mut self, res: Res) -> Option<Value> {
        let table = self.scope.table(res);
        let n = table.len();
        if n == 0 {
            return None;
        }
        for _ in 0..8 {
            let i = self.scope.rng.below(n as u64) as usize;
            let row = &self.scope.table(res).rows()[i];
            if !row.deleted {
                return serde_json::from_slice(&row.json).ok();
            }
        }
        None
    }

    fn name(&mut self) -> String {
        format!("{} {}", self.rng().pick(FIRST), self.rng().pick(LAST))
    }

    pub fn product(&mut self) -> String {
        let id = self.id("prod");
        let created = self.when();
        let mut p = self.base("product", &id, created);
        let name = format!("{} {}", self.rng().pick(PRODUCTS), self.rng().range(1, 999));
        p["name"] = json!(name);
        p["active"] = json!(self.rng().chance(0.9));
        p["description"] = if self.rng().chance(0.5) {
            json!(format!("{name} — ünïcödé description"))
        } else {
            Value::Null
        };
        p["updated"] = json!(created);
        let prices: Vec<Value> = (0..self.rng().range(1, 3))
            .map(|_| self.price_for(&id, created))
            .collect();
        p["default_price"] = prices[0]["id"].clone();
        self.scope.insert(Res::Product, &p, None);
        for price in prices {
            self.insert_price(&price);
        }
        id
    }

    /// A new recurring price, so a new plan (live creation of a plan).
    pub fn plan(&mut self) -> Option<String> {
        let product = self.pick(Res::Product)?;
        let created = self.when();
        let mut price = self.price_for(product["id"].as_str()?, created);
        price["type"] = json!("recurring");
        price["recurring"] = json!({"aggregate_usage": null, "interval": "month", "interval_count": 1, "usage_type": "licensed"});
        self.insert_price(&price);
        price["id"].as_str().map(str::to_string)
    }

    /// Stores a price, and a recurring one's plan (`plan_of`).
    fn insert_price(&mut self, price: &Value) {
        self.scope.insert(Res::Price, price, None);
        if let (Some(plan), Some(plans)) = (plan_of(price), Res::from_path(PLANS)) {
            self.scope.insert(plans, &plan, None);
        }
    }

    fn price_for(&mut self, product: &str, created: i64) -> Value {
        let id = self.id("price");
        let mut p = self.base("price", &id, created);
        let currency = self.currency();
        let amount = self.rng().range(1, 500) * 100;
        p["product"] = json!(product);
        p["currency"] = json!(currency);
        p["unit_amount"] = json!(amount);
        p["unit_amount_decimal"] = json!(amount.to_string());
        p["active"] = json!(self.rng().chance(0.9));
        p["nickname"] = if self.rng().chance(0.3) {
            json!("Standard")
        } else {
            Value::Null
        };
        if self.rng().chance(0.7) {
            let interval = *self.rng().pick(&["month", "year", "week"]);
            p["type"] = json!("recurring");
            p["recurring"] = json!({"aggregate_usage": null, "interval": interval, "interval_count": 1, "usage_type": "licensed"});
        } else {
            p["type"] = json!("one_time");
            p["recurring"] = Value::Null;
        }
        p
    }

    /// An existing recurring price: Stripe refuses a one-time price on a subscription item.
    fn recurring_price(&mut self) -> Option<Value> {
        (0..32)
            .filter_map(|_| self.pick(Res::Price))
            .find(|p| p["type"] == "recurring")
    }

    /// A new price on an existing product (live creation).
    pub fn price(&mut self) -> Option<String> {
        let product = self.pick(Res::Product)?;
        let created = self.when();
        let price = self.price_for(product["id"].as_str()?, created);
        self.insert_price(&price);
        price["id"].as_str().map(str::to_string)
    }

    pub fn coupon(&mut self) -> String {
        let id = self.rng().alnum(8).to_uppercase();
        let created = self.when();
        let mut c = self.base("coupon", &id, created);
        if self.rng().chance(0.6) {
            c["percent_off"] = json!(*self.rng().pick(&[5.0, 10.0, 25.0, 50.0, 12.5]));
            c["amount_off"] = Value::Null;
            c["currency"] = Value::Null;
        } else {
            c["percent_off"] = Value::Null;
            c["amount_off"] = json!(self.rng().range(1, 50) * 100);
            c["currency"] = json!("usd");
        }
        let duration = *self.rng().pick(&["once", "repeating", "forever"]);
        c["duration"] = json!(duration);
        c["duration_in_months"] = if duration == "repeating" {
            json!(self.rng().range(1, 12))
        } else {
            Value::Null
        };
        c["name"] = json!(format!("Promo {id}"));
        c["times_redeemed"] = json!(self.rng().range(0, 500));
        c["valid"] = json!(self.rng().chance(0.8));
        self.scope.insert(Res::Coupon, &c, None);
        id
    }

    pub fn customer(&mut self) -> String {
        let id = format!("cus_{}", self.rng().alnum(14));
        let created = self.when();
        let mut c = self.base("customer", &id, created);
        let name = self.name();
        let (city, country) = *self.rng().pick(CITIES);
        c["name"] = json!(name);
        c["email"] = json!(format!(
            "{}.{}@example.com",
            self.rng().alnum(6).to_lowercase(),
            self.rng().range(1, 99_999)
        ));
        c["description"] = if self.rng().chance(0.3) {
            json!(format!("Customer {name}"))
        } else {
            Value::Null
        };
        c["balance"] = json!(if self.rng().chance(0.1) {
            self.rng().range(-5000, 5000)
        } else {
            0
        });
        c["currency"] = json!(self.currency());
        c["delinquent"] = json!(self.rng().chance(0.05));
        c["invoice_prefix"] = json!(self.rng().alnum(8).to_uppercase());
        c["phone"] = if self.rng().chance(0.4) {
            json!(format!("+1415555{:04}", self.rng().range(0, 9999)))
        } else {
            Value::Null
        };
        c["address"] = if self.rng().chance(0.6) {
            json!({"city": city, "country": country, "line1": "1 Example Straße", "line2": null, "postal_code": "10001", "state": null})
        } else {
            Value::Null
        };
        c["preferred_locales"] = json!(if self.rng().chance(0.2) {
            vec!["fr", "en"]
        } else {
            vec![]
        });
        self.scope.insert(Res::Customer, &c, None);
        id
    }

    fn customer_for(&mut self, at: i64) -> Option<(String, i64)> {
        let c = self.pick(Res::Customer)?;
        let created = c["created"].as_i64().unwrap_or(at);
        Some((c["id"].as_str()?.to_string(), created))
    }

    /// A balance transaction for `source`; returns its JSON (disputes embed it).
    fn balance_transaction(
        &mut self,
        source: &str,
        kind: &str,
        amount: i64,
        currency: &str,
        at: i64,
    ) -> Value {
        let id = self.id("txn");
        let mut b = self.base("balance_transaction", &id, at);
        let fee = if kind == "charge" {
            amount * 29 / 1000 + 30
        } else {
            0
        };
        b["amount"] = json!(amount);
        b["currency"] = json!(currency);
        b["fee"] = json!(fee);
        b["net"] = json!(amount - fee);
        b["fee_details"] = if fee > 0 {
            json!([{"amount": fee, "application": null, "currency": currency, "description": "Stripe processing fees", "type": "stripe_fee"}])
        } else {
            json!([])
        };
        b["source"] = json!(source);
        b["type"] = json!(kind);
        b["reporting_category"] = json!(match kind {
            "payment_failure_refund" => "refund_failure",
            "payout_failure" => "payout_reversal",
            "adjustment" => "dispute",
            other => other,
        });
        b["description"] = json!(format!("{kind} {source}"));
        b["available_on"] = json!(at + 2 * DAY);
        b["status"] = json!(if at + 2 * DAY > self.now {
            "pending"
        } else {
            "available"
        });
        b["exchange_rate"] = Value::Null;
        self.scope.insert(Res::BalanceTransaction, &b, None);
        b
    }

    /// A payment: payment intent, charge, balance transaction, maybe refunds, a dispute, a transfer and an
    /// application fee (destination charges on Connect platforms).
    pub fn payment(&mut self, opts: Payment) -> PaymentIds {
        let customer = match opts.customer.clone() {
            Some(c) => Some((c, i64::MIN)),
            None if self.rng().chance(0.85) => self.customer_for(self.now),
            None => None,
        };
        let at = match opts.at {
            Some(t) => t,
            None => self.when_after(customer.as_ref().map_or(i64::MIN, |c| c.1)),
        };
        let customer = customer.map(|c| c.0);
        let currency = opts.currency.clone().unwrap_or_else(|| self.currency());
        let amount = opts.amount.unwrap_or_else(|| self.rng().range(50, 250_000));
        let outcome = if opts.succeed || opts.refund || opts.dispute {
            "succeeded"
        } else {
            *self.rng().weighted(&[
                ("succeeded", 82),
                ("failed", 9),
                ("pending", 2),
                ("uncaptured", 3),
                ("canceled", 2),
                ("requires_action", 2),
            ])
        };
        let pi_id = self.id("pi");
        let mut pi = self.base("payment_intent", &pi_id, at);
        pi["amount"] = json!(amount);
        pi["currency"] = json!(currency);
        pi["customer"] = json!(customer);
        pi["invoice"] = json!(opts.invoice);
        pi["description"] = if self.rng().chance(0.4) {
            json!("Order ✓ confirmed")
        } else {
            Value::Null
        };
        pi["payment_method_types"] = json!(["card"]);
        pi["client_secret"] = json!(format!("{pi_id}_secret_{}", self.rng().alnum(16)));
        pi["status"] = json!(match outcome {
            "succeeded" => "succeeded",
            "failed" => "requires_payment_method",
            "pending" => "processing",
            "uncaptured" => "requires_capture",
            "canceled" => "canceled",
            _ => "requires_action",
        });
        pi["amount_received"] = json!(if outcome == "succeeded" { amount } else { 0 });
        pi["amount_capturable"] = json!(if outcome == "uncaptured" { amount } else { 0 });
        pi["canceled_at"] = if outcome == "canceled" {
            json!(at)
        } else {
            Value::Null
        };
        pi["cancellation_reason"] = if outcome == "canceled" {
            json!("abandoned")
        } else {
            Value::Null
        };
        pi["payment_method"] = json!(format!("pm_{}", self.rng().alnum(24)));
        pi["latest_charge"] = Value::Null;
        let mut ids = PaymentIds {
            payment_intent: pi_id.clone(),
            charge: None,
            refund: None,
            dispute: None,
        };
        if matches!(outcome, "canceled" | "requires_action") {
            self.scope.insert(Res::PaymentIntent, &pi, None);
            return ids;
        }
        let ch_id = self.id("ch");
        pi["latest_charge"] = json!(ch_id);
        self.scope.insert(Res::PaymentIntent, &pi, None);
        let mut ch = self.base("charge", &ch_id, at);
        ch.as_object_mut().map(|o| o.remove("refunds"));
        let captured = outcome == "succeeded";
        ch["amount"] = json!(amount);
        ch["amount_captured"] = json!(if captured { amount } else { 0 });
        ch["currency"] = json!(currency);
        ch["customer"] = json!(customer);
        ch["invoice"] = json!(opts.invoice);
        ch["payment_intent"] = json!(pi_id);
        ch["payment_method"] = pi["payment_method"].clone();
        ch["description"] = pi["description"].clone();
        ch["status"] = json!(match outcome {
            "failed" => "failed",
            "pending" => "pending",
            _ => "succeeded",
        });
        ch["paid"] = json!(matches!(outcome, "succeeded" | "uncaptured"));
        ch["captured"] = json!(captured);
        ch["billing_details"]["name"] = json!(self.name());
        let brand = *self.rng().pick(&["visa", "mastercard", "amex", "discover"]);
        ch["payment_method_details"]["card"]["brand"] = json!(brand);
        ch["payment_method_details"]["card"]["network"] = json!(brand);
        ch["payment_method_details"]["card"]["last4"] =
            json!(format!("{:04}", self.rng().range(0, 9999)));
        ch["payment_method_details"]["card"]["exp_year"] = json!(2024 + self.rng().range(0, 6));
        ch["receipt_url"] = json!(format!(
            "https://pay.stripe.com/receipts/payment/{}",
            self.rng().alnum(40)
        ));
        let (network_status, out_type, reason) = match outcome {
            "failed" => (
                "declined_by_network",
                "issuer_declined",
                json!("generic_decline"),
            ),
            _ => ("approved_by_network", "authorized", Value::Null),
        };
        ch["outcome"] = json!({"network_status": network_status, "reason": reason, "risk_level": "normal", "risk_score": self.rng().range(0, 99), "seller_message": "Payment complete.", "type": out_type});
        if outcome == "failed" {
            ch["failure_code"] = json!("card_declined");
            ch["failure_message"] = json!("Your card was declined.");
        }
        let mut amount_refunded = 0;
        if captured {
            let bt = self.balance_transaction(&ch_id, "charge", amount, &currency, at);
            ch["balance_transaction"] = bt["id"].clone();
        } else {
            ch["balance_transaction"] = Value::Null;
        }
        // Destination charges on a platform: a transfer to a connected account and an application fee.
        if captured && !self.destinations.is_empty() && self.rng().chance(0.3) {
            let dests = self.destinations.clone();
            let dest = self.rng().pick(&dests).clone();
            let fee_amount = amount / 10;
            let tr = self.transfer(&dest, amount - fee_amount, &currency, at, Some(&ch_id));
            let fee = self.application_fee(&dest, &ch_id, fee_amount, &currency, at);
            ch["transfer_data"] = json!({"amount": null, "destination": dest});
            ch["transfer"] = json!(tr);
            ch["application_fee"] = json!(fee);
            ch["application_fee_amount"] = json!(fee_amount);
            ch["on_behalf_of"] = json!(dest);
        }
        if captured && (opts.refund || self.rng().chance(0.12)) {
            let full = opts.refund || self.rng().chance(0.6);
            let r_amount = if full { amount } else { (amount / 2).max(1) };
            let r_at = self.after(at, 30 * DAY);
            let re = self.refund(&ch_id, &pi_id, r_amount, &currency, r_at);
            ids.refund = Some(re);
            amount_refunded = r_amount;
        }
        ch["amount_refunded"] = json!(amount_refunded);
        ch["refunded"] = json!(captured && amount_refunded == amount);
        if captured && (opts.dispute || self.rng().chance(0.04)) {
            let dp = self.dispute(&ch_id, &pi_id, amount, &currency, at);
            ch["disputed"] = json!(true);
            ids.dispute = Some(dp);
        }
        self.scope.insert(
            Res::Charge,
            &ch,
            Some(match outcome {
                "failed" => "charge.failed",
                "pending" => "charge.pending",
                _ => "charge.succeeded",
            }),
        );
        ids.charge = Some(ch_id);
        ids
    }

    fn refund(&mut self, charge: &str, pi: &str, amount: i64, currency: &str, at: i64) -> String {
        let id = self.id("re");
        let mut r = self.base("refund", &id, at);
        let status = *self.rng().weighted(&[
            ("succeeded", 82),
            ("pending", 9),
            ("failed", 5),
            ("canceled", 4),
        ]);
        r["amount"] = json!(amount);
        r["currency"] = json!(currency);
        r["charge"] = json!(charge);
        r["payment_intent"] = json!(pi);
        r["status"] = json!(status);
        r["reason"] =
            json!(*self
                .rng()
                .pick(&["requested_by_customer", "duplicate", "fraudulent"]));
        let bt = self.balance_transaction(&id, "refund", -amount, currency, at);
        r["balance_transaction"] = bt["id"].clone();
        if status == "failed" {
            let fbt = self.balance_transaction(&id, "payment_failure_refund", amount, currency, at);
            r["failure_balance_transaction"] = fbt["id"].clone();
            r["failure_reason"] = json!("expired_or_canceled_card");
        }
        self.scope.insert(Res::Refund, &r, None);
        id
    }

    /// A subscription's discount, for one subscription in five while there are coupons: the coupon
    /// embedded whole, as Stripe returns it.
    fn discount(&mut self, customer: &str, subscription: &str, at: i64) -> Value {
        if !self.rng().chance(0.2) {
            return Value::Null;
        }
        let Some(coupon) = self.pick(Res::Coupon) else {
            return Value::Null;
        };
        let end = match coupon["duration_in_months"].as_i64() {
            Some(months) => json!(at + months * 30 * DAY),
            None => Value::Null,
        };
        json!({
            "id": format!("di_{}", self.rng().alnum(24)),
            "object": "discount",
            "checkout_session": null,
            "coupon": coupon,
            "customer": customer,
            "end": end,
            "invoice": null,
            "invoice_item": null,
            "promotion_code": null,
            "start": at,
            "subscription": subscription,
        })
    }

    fn dispute(&mut self, charge: &str, pi: &str, amount: i64, currency: &str, at: i64) -> String {
        let id = self.id("dp");
        let d_at = self.after(at, 60 * DAY);
        let mut d = self.base("dispute", &id, d_at);
        let status = *self.rng().weighted(&[
            ("needs_response", 15),
            ("under_review", 15),
            ("won", 30),
            ("lost", 25),
            ("warning_needs_response", 5),
            ("warning_under_review", 5),
            ("warning_closed", 5),
        ]);
        d["amount"] = json!(amount);
        d["currency"] = json!(currency);
        d["charge"] = json!(charge);
        d["payment_intent"] = json!(pi);
        d["status"] = json!(status);
        d["reason"] = json!(*self.rng().pick(&[
            "fraudulent",
            "product_not_received",
            "duplicate",
            "subscription_canceled",
            "general"
        ]));
        d["is_charge_refundable"] = json!(status.starts_with("warning"));
        if !status.ends_with("needs_response") {
            // Evidence submitted: what a merchant typically sends.
            let name = self.name();
            let email = format!("{}@example.com", name.to_lowercase().replace(' ', "."));
            d["evidence"]["customer_name"] = json!(name);
            d["evidence"]["customer_email_address"] = json!(email);
            d["evidence"]["product_description"] = json!("Annual plan, delivered by e-mail");
            d["evidence"]["uncategorized_text"] =
                json!("The customer used the service after the charge.");
            d["evidence_details"]["has_evidence"] = json!(true);
            d["evidence_details"]["submission_count"] = json!(1);
        }
        let bts: Vec<Value> = if status.starts_with("warning") {
            vec![]
        } else {
            vec![self.balance_transaction(&id, "adjustment", -amount, currency, d_at)]
        };
        d["balance_transactions"] = json!(bts);
        self.scope.insert(Res::Dispute, &d, None);
        id
    }

    fn transfer(
        &mut self,
        dest: &str,
        amount: i64,
        currency: &str,
        at: i64,
        source: Option<&str>,
    ) -> String {
        let id = self.id("tr");
        let mut t = self.base("transfer", &id, at);
        let bt = self.balance_transaction(&id, "transfer", -amount, currency, at);
        t["amount"] = json!(amount);
        t["currency"] = json!(currency);
        t["destination"] = json!(dest);
        t["destination_payment"] = json!(format!("py_{}", self.rng().alnum(24)));
        t["balance_transaction"] = bt["id"].clone();
        t["source_transaction"] = json!(source);
        t["reversed"] = json!(false);
        t["amount_reversed"] = json!(0);
        t["reversals"]["url"] = json!(format!("/v1/transfers/{id}/reversals"));
        t["transfer_group"] = json!(format!("group_{}", &id[3..11]));
        self.scope.insert(Res::Transfer, &t, None);
        id
    }

    /// A standalone transfer to one of the connected accounts (live creation on platforms).
    pub fn standalone_transfer(&mut self) -> Option<String> {
        let dest = self.destinations.first()?.clone();
        let at = self.when();
        let amount = self.rng().range(100, 100_000);
        Some(self.transfer(&dest, amount, "usd", at, None))
    }

    fn application_fee(
        &mut self,
        account: &str,
        charge: &str,
        amount: i64,
        currency: &str,
        at: i64,
    ) -> String {
        let id = self.id("fee");
        let mut f = self.base("application_fee", &id, at);
        let bt = self.balance_transaction(&id, "application_fee", amount, currency, at);
        f["account"] = json!(account);
        f["amount"] = json!(amount);
        f["amount_refunded"] = json!(0);
        f["currency"] = json!(currency);
        f["charge"] = json!(charge);
        f["originating_transaction"] = json!(charge);
        f["balance_transaction"] = bt["id"].clone();
        f["application"] = json!(format!("ca_{}", self.rng().alnum(24)));
        f["refunds"]["url"] = json!(format!("/v1/application_fees/{id}/refunds"));
        self.scope.insert(Res::ApplicationFee, &f, None);
        id
    }

    fn line(
        &mut self,
        invoice: &str,
        price: &Value,
        kind: &str,
        source: &str,
        period: (i64, i64),
        quantity: i64,
    ) -> Value {
        let mut l = template("line_item");
        let unit = price["unit_amount"].as_i64().unwrap_or(1000);
        l["id"] = json!(if kind == "subscription" {
            format!("il_{}", self.rng().alnum(24))
        } else {
            format!("il_tmp_{}", &source[3..])
        });
        l["livemode"] = json!(self.scope.livemode);
        l["amount"] = json!(unit * quantity);
        l["amount_excluding_tax"] = json!(unit * quantity);
        l["currency"] = price["currency"].clone();
        l["description"] = json!(format!(
            "{quantity} × {}",
            price["nickname"].as_str().unwrap_or("item")
        ));
        l["price"] = price.clone();
        l["quantity"] = json!(quantity);
        l["type"] = json!(kind);
        l["period"] = json!({"start": period.0, "end": period.1});
        l["metadata"] = json!({});
        l["unit_amount_excluding_tax"] = json!(unit.to_string());
        if kind == "subscription" {
            l["subscription"] = json!(source.split(':').next());
            l["subscription_item"] = json!(source.split(':').nth(1));
            l["invoice_item"] = Value::Null;
        } else {
            l["invoice_item"] = json!(source);
            l["subscription"] = Value::Null;
        }
        let _ = invoice;
        l
    }

    /// An invoice item; attached to `invoice` or pending when `None`.
    pub fn invoice_item(
        &mut self,
        customer: Option<(String, i64)>,
        invoice: Option<(&str, i64)>,
    ) -> Option<(String, Value)> {
        let (customer, c_created) = match customer {
            Some(c) => c,
            None => self.customer_for(self.now)?,
        };
        let at = match invoice {
            Some((_, t)) => t,
            None => self.when_after(c_created),
        };
        let price = self.pick(Res::Price)?;
        let id = self.id("ii");
        let mut ii = self.base("invoiceitem", &id, at);
        let quantity = self.rng().range(1, 5);
        let unit = price["unit_amount"].as_i64().unwrap_or(1000);
        ii["customer"] = json!(customer);
        ii["invoice"] = json!(invoice.map(|(i, _)| i));
        ii["amount"] = json!(unit * quantity);
        ii["unit_amount"] = json!(unit);
        ii["unit_amount_decimal"] = json!(unit.to_string());
        ii["quantity"] = json!(quantity);
        ii["currency"] = price["currency"].clone();
        ii["price"] = price.clone();
        ii["date"] = json!(at);
        ii["period"] = json!({"start": at, "end": at});
        ii["description"] = json!(format!(
            "Add-on: {}",
            price["nickname"].as_str().unwrap_or("extra")
        ));
        ii["subscription"] = Value::Null;
        self.scope.insert(Res::InvoiceItem, &ii, None);
        Some((id, price))
    }

    /// An invoice; `subscription` lines come from the subscription's items, other invoices from invoice
    /// items. Paid invoices get a payment. Returns the invoice id.
    pub fn invoice(&mut self, draft_only: bool) -> Option<String> {
        let (customer, c_created) = self.customer_for(self.now)?;
        let at = self.when_after(c_created);
        self.invoice_with(&customer, at, None, draft_only)
    }

    fn invoice_with(
        &mut self,
        customer: &str,
        at: i64,
        sub: Option<SubInvoice<'_>>,
        draft_only: bool,
    ) -> Option<String> {
        let id = self.id("in");
        let status = if draft_only {
            "draft"
        } else {
            *self.rng().weighted(&[
                ("paid", 65),
                ("open", 12),
                ("draft", 8),
                ("void", 8),
                ("uncollectible", 7),
            ])
        };
        let mut lines: Vec<Value> = Vec::new();
        match sub {
            Some(SubInvoice {
                id: sub_id,
                items,
                period,
                ..
            }) => {
                for (si_id, price, qty) in items {
                    let l = self.line(
                        &id,
                        price,
                        "subscription",
                        &format!("{sub_id}:{si_id}"),
                        period,
                        *qty,
                    );
                    lines.push(l);
                }
            }
            None => {
                let n = if self.rng().chance(0.06) {
                    self.rng().range(11, 25)
                } else {
                    self.rng().range(1, 5)
                };
                for _ in 0..n {
                    let (ii, price) =
                        self.invoice_item(Some((customer.to_string(), at)), Some((&id, at)))?;
                    let qty = 1;
                    lines.push(self.line(&id, &price, "invoiceitem", &ii, (at, at), qty));
                }
            }
        }
        let total: i64 = lines
            .iter()
            .map(|l| l["amount"].as_i64().unwrap_or(0))
            .sum();
        let currency = lines
            .first()
            .map(|l| l["currency"].clone())
            .unwrap_or(json!("usd"));
        let mut inv = self.base("invoice", &id, at);
        inv["customer"] = json!(customer);
        inv["customer_email"] = json!(format!("{}@example.com", &customer[4..]));
        inv["customer_name"] = json!(self.name());
        inv["subscription"] = json!(sub.map(|s| s.id));
        inv["billing_reason"] = json!(sub.map_or("manual", |s| s.reason));
        inv["currency"] = currency.clone();
        inv["status"] = json!(status);
        inv["subtotal"] = json!(total);
        inv["subtotal_excluding_tax"] = json!(total);
        inv["total"] = json!(total);
        inv["total_excluding_tax"] = json!(total);
        inv["amount_due"] = json!(total);
        inv["amount_paid"] = json!(if status == "paid" { total } else { 0 });
        inv["amount_remaining"] = json!(if status == "paid" || status == "void" {
            0
        } else {
            total
        });
        inv["attempted"] = json!(matches!(status, "paid" | "open" | "uncollectible"));
        inv["attempt_count"] = json!(if status == "draft" { 0 } else { 1 });
        inv["paid"] = json!(status == "paid");
        inv["number"] = if status == "draft" {
            Value::Null
        } else {
            json!(format!(
                "{}-{:04}",
                &id[3..11].to_uppercase(),
                self.rng().range(1, 9999)
            ))
        };
        inv["period_start"] = json!(sub.map_or(at, |s| s.period.0));
        inv["period_end"] = json!(sub.map_or(at, |s| s.period.1));
        inv["due_date"] = Value::Null;
        inv["effective_at"] = if status == "draft" {
            Value::Null
        } else {
            json!(at)
        };
        let finalized = if status == "draft" {
            Value::Null
        } else {
            json!(at)
        };
        inv["status_transitions"] = json!({
            "finalized_at": finalized,
            "paid_at": if status == "paid" { json!(at) } else { Value::Null },
            "voided_at": if status == "void" { json!(at) } else { Value::Null },
            "marked_uncollectible_at": if status == "uncollectible" { json!(at) } else { Value::Null },
        });
        inv["hosted_invoice_url"] = if status == "draft" {
            Value::Null
        } else {
            json!(format!(
                "https://invoice.stripe.com/i/{}",
                self.rng().alnum(32)
            ))
        };
        inv["charge"] = Value::Null;
        inv["payment_intent"] = Value::Null;
        if matches!(status, "paid" | "open" | "uncollectible") && total > 0 {
            let pay = self.payment(Payment {
                customer: Some(customer.to_string()),
                amount: Some(total),
                currency: currency.as_str().map(str::to_string),
                invoice: Some(id.clone()),
                at: Some(at),
                succeed: status == "paid",
                ..Payment::default()
            });
            inv["charge"] = json!(pay.charge);
            inv["payment_intent"] = json!(pay.payment_intent);
        }
        let stored: Vec<(Box<str>, bytes::Bytes)> = lines
            .iter()
            .map(|l| {
                (
                    l["id"].as_str().unwrap_or_default().into(),
                    crate::scope::to_bytes(l),
                )
            })
            .collect();
        let has_more = lines.len() > 10;
        lines.truncate(10);
        inv["lines"] = json!({"object": "list", "data": lines, "has_more": has_more, "total_count": stored.len(), "url": format!("/v1/invoices/{id}/lines")});
        self.scope.lines.insert(id.as_str().into(), stored);
        self.scope.insert(Res::Invoice, &inv, None);
        Some(id)
    }

    /// A subscription with its items and up to three invoices.
    pub fn subscription(&mut self) -> Option<String> {
        let (customer, c_created) = self.customer_for(self.now)?;
        let at = self.when_after(c_created);
        let id = self.id("sub");
        let n_items = if self.rng().chance(0.04) {
            self.rng().range(11, 14)
        } else {
            self.rng().range(1, 3)
        };
        let mut items: Vec<(String, Value, i64)> = Vec::new();
        let mut item_objs = Vec::new();
        for _ in 0..n_items {
            let price = self.recurring_price()?;
            let si_id = format!("si_{}", self.rng().alnum(14));
            let qty = self.rng().range(1, 10);
            let mut si = self.base("subscription_item", &si_id, at);
            si["price"] = price.clone();
            si["quantity"] = json!(qty);
            si["subscription"] = json!(id);
            item_objs.push(si);
            items.push((si_id, price, qty));
        }
        let status = if !self.history {
            *self
                .rng()
                .weighted(&[("active", 70), ("trialing", 20), ("incomplete", 10)])
        } else {
            *self.rng().weighted(&[
                ("active", 45),
                ("canceled", 20),
                ("trialing", 8),
                ("past_due", 6),
                ("unpaid", 5),
                ("incomplete", 5),
                ("incomplete_expired", 5),
                ("paused", 6),
            ])
        };
        let month = 30 * DAY;
        let elapsed = ((self.now - at) / month).max(0);
        let period_start = at + elapsed * month;
        let mut s = self.base("subscription", &id, at);
        s["customer"] = json!(customer);
        s["status"] = json!(status);
        s["currency"] = items[0].1["currency"].clone();
        s["billing_cycle_anchor"] = json!(at);
        s["current_period_start"] = json!(period_start);
        s["current_period_end"] = json!(period_start + month);
        s["start_date"] = json!(at);
        s["cancel_at_period_end"] = json!(false);
        let ended = if status == "canceled" || status == "incomplete_expired" {
            Some(self.after(at, 400 * DAY))
        } else {
            None
        };
        s["cancel_at"] = Value::Null;
        s["canceled_at"] = json!(ended);
        s["ended_at"] = json!(ended);
        if status == "canceled" {
            s["cancellation_details"] = json!({"comment": null, "feedback": "too_expensive", "reason": "cancellation_requested"});
        }
        let trial = status == "trialing";
        s["trial_start"] = if trial { json!(at) } else { Value::Null };
        s["trial_end"] = if trial {
            json!(at + 14 * DAY)
        } else {
            Value::Null
        };
        s["pause_collection"] = if status == "paused" {
            json!({"behavior": "void", "resumes_at": null})
        } else {
            Value::Null
        };
        s["next_pending_invoice_item_invoice"] = Value::Null;
        s["discount"] = self.discount(&customer, &id, at);
        s["plan"] = Value::Null;
        s["quantity"] = Value::Null;
        let mut latest_invoice = Value::Null;
        if !trial {
            let last = ended.unwrap_or(self.now);
            let periods = (((last - at) / month) + 1).clamp(1, 3);
            for k in 0..periods {
                let start = if self.history {
                    at + k * month
                } else {
                    self.now
                };
                if start > self.now {
                    break;
                }
                let reason = if k == 0 {
                    "subscription_create"
                } else {
                    "subscription_cycle"
                };
                if let Some(inv) = self.invoice_with(
                    &customer,
                    start,
                    Some(SubInvoice {
                        id: &id,
                        items: &items,
                        reason,
                        period: (start, start + month),
                    }),
                    false,
                ) {
                    latest_invoice = json!(inv);
                }
            }
        }
        s["latest_invoice"] = latest_invoice;
        let has_more = item_objs.len() > 10;
        let embedded: Vec<Value> = item_objs.iter().take(10).cloned().collect();
        s["items"] = json!({"object": "list", "data": embedded, "has_more": has_more, "total_count": item_objs.len(), "url": format!("/v1/subscription_items?subscription={id}")});
        self.scope.insert(Res::Subscription, &s, None);
        for si in &item_objs {
            self.scope.insert(Res::SubscriptionItem, si, None);
        }
        Some(id)
    }

    /// A credit note on a paid invoice, with its refund.
    pub fn credit_note(&mut self) -> Option<String> {
        let inv = self.pick(Res::Invoice)?;
        let inv_id = inv["id"].as_str()?.to_string();
        let customer = inv["customer"].as_str()?.to_string();
        let total = inv["total"].as_i64().unwrap_or(0);
        if total <= 0 || inv["status"] != "paid" {
            return None;
        }
        let at = self.after(inv["created"].as_i64().unwrap_or(self.now), 20 * DAY);
        let id = self.id("cn");
        let amount = (total / 2).max(1);
        let refund = match (inv["charge"].as_str(), inv["payment_intent"].as_str()) {
            (Some(ch), Some(pi)) => Some(self.refund(
                ch,
                pi,
                amount,
                inv["currency"].as_str().unwrap_or("usd"),
                at,
            )),
            _ => None,
        };
        let mut cn = self.base("credit_note", &id, at);
        cn["invoice"] = json!(inv_id);
        cn["customer"] = json!(customer);
        cn["amount"] = json!(amount);
        cn["subtotal"] = json!(amount);
        cn["total"] = json!(amount);
        cn["currency"] = inv["currency"].clone();
        cn["refund"] = json!(refund);
        cn["status"] = json!(if self.rng().chance(0.9) {
            "issued"
        } else {
            "void"
        });
        cn["type"] = json!("post_payment");
        cn["reason"] = json!(*self.rng().pick(&[
            "duplicate",
            "fraudulent",
            "order_change",
            "product_unsatisfactory"
        ]));
        cn["number"] = json!(format!("CN-{}", self.rng().alnum(8).to_uppercase()));
        cn["memo"] = json!("Crédit — thank you");
        cn["lines"]["url"] = json!(format!("/v1/credit_notes/{id}/lines"));
        if let Some(line) = cn["lines"]["data"].get_mut(0) {
            line["id"] = json!(format!("cnli_{}", self.rng().alnum(24)));
            line["amount"] = json!(amount);
            line["livemode"] = json!(self.scope.livemode);
        }
        self.scope.insert(Res::CreditNote, &cn, None);
        Some(id)
    }

    pub fn setup_intent(&mut self) -> Option<String> {
        let (customer, c_created) = self.customer_for(self.now)?;
        let at = self.when_after(c_created);
        let id = self.id("seti");
        let mut s = self.base("setup_intent", &id, at);
        let status = *self.rng().weighted(&[
            ("succeeded", 60),
            ("requires_payment_method", 15),
            ("requires_action", 5),
            ("canceled", 15),
            ("processing", 5),
        ]);
        s["customer"] = json!(customer);
        s["status"] = json!(status);
        s["usage"] = json!(*self.rng().pick(&["off_session", "on_session"]));
        s["payment_method"] = if status == "succeeded" {
            json!(format!("pm_{}", self.rng().alnum(24)))
        } else {
            Value::Null
        };
        s["client_secret"] = json!(format!("{id}_secret_{}", self.rng().alnum(16)));
        s["cancellation_reason"] = if status == "canceled" {
            json!("abandoned")
        } else {
            Value::Null
        };
        self.scope.insert(Res::SetupIntent, &s, None);
        Some(id)
    }

    pub fn payout(&mut self) -> String {
        let at = self.when();
        let id = self.id("po");
        let mut p = self.base("payout", &id, at);
        let status = *self.rng().weighted(&[
            ("paid", 70),
            ("pending", 6),
            ("in_transit", 6),
            ("failed", 9),
            ("canceled", 9),
        ]);
        let amount = self.rng().range(1_000, 5_000_000);
        p["amount"] = json!(amount);
        p["currency"] = json!("usd");
        p["status"] = json!(status);
        p["arrival_date"] = json!(at + 2 * DAY);
        p["method"] = json!(if self.rng().chance(0.1) {
            "instant"
        } else {
            "standard"
        });
        p["destination"] = json!(format!("ba_{}", self.rng().alnum(24)));
        p["automatic"] = json!(self.rng().chance(0.8));
        let bt = self.balance_transaction(&id, "payout", -amount, "usd", at);
        p["balance_transaction"] = bt["id"].clone();
        if status == "failed" {
            let fbt = self.balance_transaction(&id, "payout_failure", amount, "usd", at);
            p["failure_balance_transaction"] = fbt["id"].clone();
            p["failure_code"] = json!("account_closed");
            p["failure_message"] = json!("The bank account has been closed.");
        }
        self.scope.insert(Res::Payout, &p, None);
        id
    }
}
