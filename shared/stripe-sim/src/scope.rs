//! One account in one mode: its tables, its invoices' full line lists, and its event log.
//!
//! Every change goes through [`Scope::insert`] or [`Scope::replace`], which keep the filter attributes in
//! step with the JSON and emit the events Stripe would emit, so the event log can never disagree with the
//! objects.

use crate::resources::Res;
use crate::rng::Rng;
use crate::table::{Row, Table};
use bytes::Bytes;
use serde_json::{json, Value};
use std::collections::HashMap;

/// How events are delivered: Stripe's eventual consistency and duplicates, when switched on.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventPolicy {
    /// Seconds after its `created` before an event shows in `/v1/events`.
    pub visibility_delay_secs: i64,
    /// Probability that an event is listed twice.
    pub duplicate_rate: f64,
}

/// Stripe keeps events for 30 days.
pub const EVENT_RETENTION_SECS: i64 = 30 * 24 * 3600;

/// What happened to an object, for [`Scope::touch_parent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Created,
    Updated,
    Deleted,
}

#[derive(Debug)]
pub struct Scope {
    pub account: String,
    pub livemode: bool,
    /// Set for connected accounts: their events carry `account`.
    pub connected: bool,
    /// The API version events are rendered in (the account's default version).
    pub api_version: String,
    pub tables: Vec<Table>,
    /// Every item of the lists objects own ([`Res::owned`]), by the owner's id, in order: an invoice's
    /// lines (its JSON embeds the first 10), a Checkout session's, quote's or payment link's line items
    /// (included only when asked for).
    pub lines: HashMap<Box<str>, Vec<(Box<str>, Bytes)>>,
    pub rng: Rng,
    /// Event emission settings; `None` while history is generated (events are added afterwards).
    pub events_on: bool,
    pub event_policy: EventPolicy,
    /// Request id recorded in events emitted by the current control call.
    pub request_id: Option<String>,
    /// The account uses no Issuing, Treasury or Identity ([`crate::resources::Product`]).
    pub basic: bool,
    /// Events emitted since the simulator last took them, for its pushes ([`crate::push`]).
    pub outbox: Vec<Bytes>,
}

impl Scope {
    pub fn new(
        account: &str,
        livemode: bool,
        connected: bool,
        api_version: &str,
        rng: Rng,
    ) -> Scope {
        Scope {
            account: account.to_string(),
            livemode,
            connected,
            api_version: api_version.to_string(),
            tables: Res::all().map(Table::new).collect(),
            lines: HashMap::new(),
            rng,
            events_on: false,
            event_policy: EventPolicy::default(),
            request_id: None,
            basic: false,
            outbox: Vec::new(),
        }
    }

    pub fn table(&self, res: Res) -> &Table {
        &self.tables[res.index()]
    }

    pub fn table_mut(&mut self, res: Res) -> &mut Table {
        &mut self.tables[res.index()]
    }

    /// The current JSON of an object, parsed.
    pub fn object(&self, res: Res, id: &str) -> Option<Value> {
        self.table(res)
            .get(id)
            .and_then(|r| serde_json::from_slice(&r.json).ok())
    }

    /// Stores a new object and emits its created event (`event` overrides the resource's default type).
    pub fn insert(&mut self, res: Res, obj: &Value, event: Option<&str>) {
        let created = obj["created"].as_i64().unwrap_or(0);
        self.insert_at(res, obj, created, event);
    }

    /// Like [`Scope::insert`], for objects that do not show their creation time (payment links,
    /// Terminal readers): lists still order them by it.
    pub fn insert_at(&mut self, res: Res, obj: &Value, created: i64, event: Option<&str>) {
        let row = Row {
            id: obj["id"].as_str().unwrap_or_default().into(),
            created,
            json: to_bytes(obj),
            deleted: false,
            attrs: attrs(res, obj),
            visible_at: created,
        };
        self.table_mut(res).push(row);
        if let Some(kind) = event.or(res.def().created_event) {
            self.emit(kind, obj, None, created);
        }
    }

    /// Replaces an object's JSON and emits `event` with `previous_attributes`.
    pub fn replace(
        &mut self,
        res: Res,
        obj: &Value,
        event: Option<&str>,
        previous: Option<Value>,
        now: i64,
    ) {
        let id = obj["id"].as_str().unwrap_or_default();
        let json = to_bytes(obj);
        let attrs = attrs(res, obj);
        if let Some(row) = self.table_mut(res).get_mut(id) {
            row.json = json;
            row.attrs = attrs;
        }
        if let Some(kind) = event {
            self.emit(kind, obj, previous, now);
        }
    }

    /// Keeps an item's parent in step after the item was created, changed or deleted (`action`): a
    /// parent that embeds the list's first page (a transfer's `reversals`) gets it again, and Stripe's
    /// event about the parent (`transfer.updated`) is emitted where the item has none of its own for
    /// the change.
    pub fn touch_parent(&mut self, item: Res, obj: &Value, action: Action, now: i64) {
        let Some(g) = item.generic() else {
            return;
        };
        if let (Some(field), Action::Created) = (g.latest_on_parent, action) {
            self.set_latest(g, field, obj, now);
        }
        let Some(n) = g.nested.as_ref() else {
            return;
        };
        let (Some(parent_res), Some(parent_id)) = (Res::from_path(n.parent), obj[n.field].as_str())
        else {
            return;
        };
        let def = item.def();
        let own_event = match action {
            Action::Created => def.created_event,
            Action::Updated => def.updated_event,
            Action::Deleted => def.deleted_event,
        };
        let event = n.touch.filter(|_| own_event.is_none());
        // An item's own change leaves an unembedding parent as it is (a customer's tax id).
        if !n.embedded && (event.is_none() || action != Action::Created) {
            return;
        }
        if self
            .table(parent_res)
            .get(parent_id)
            .is_none_or(|r| r.deleted)
        {
            return;
        }
        let Some(mut parent) = self.object(parent_res, parent_id) else {
            return;
        };
        let previous = parent.get(n.segment).cloned();
        if n.embedded {
            let url = format!("/v1/{}/{parent_id}/{}", n.parent, n.segment);
            if let Some(list) = crate::expand::first_page(self, item, n.field, parent_id, &url, now)
            {
                parent[n.segment] = list;
            }
        }
        let previous = previous.map(|p| json!({ n.segment: p }));
        self.replace(parent_res, &parent, event, previous, now);
    }

    /// Points the parent of a new item at it (`latest_attempt` of a setup intent), with the parent's
    /// updated event.
    fn set_latest(&mut self, g: &crate::resources::Generic, field: &str, obj: &Value, now: i64) {
        for (param, object) in &g.parents {
            let (Some(res), Some(id)) = (Res::from_object(object), obj[*param].as_str()) else {
                continue;
            };
            let Some(mut parent) = self.object(res, id) else {
                continue;
            };
            let previous = json!({ field: parent[field].clone() });
            parent[field] = obj["id"].clone();
            self.replace(res, &parent, res.def().updated_event, Some(previous), now);
        }
    }

    /// Appends an event to the log (when event emission is on).
    pub fn emit(&mut self, kind: &str, obj: &Value, previous: Option<Value>, created: i64) {
        if !self.events_on {
            return;
        }
        let id = format!("evt_{}", self.rng.alnum(24));
        let mut data = json!({ "object": obj });
        if let Some(prev) = previous {
            data["previous_attributes"] = prev;
        }
        let mut event = json!({
            "id": id,
            "object": "event",
            "api_version": self.api_version,
            "created": created,
            "data": data,
            "livemode": self.livemode,
            "pending_webhooks": 0,
            "request": {"id": self.request_id, "idempotency_key": self.request_id.as_ref().map(|_| format!("sim-{}", self.rng.alnum(16)))},
            "type": kind,
        });
        if self.connected {
            event["account"] = json!(self.account);
        }
        let json = to_bytes(&event);
        let visible_at = created + self.event_policy.visibility_delay_secs;
        let duplicate = self.event_policy.duplicate_rate > 0.0
            && self.rng.chance(self.event_policy.duplicate_rate);
        let row = Row {
            id: id.into(),
            created,
            json,
            deleted: false,
            attrs: vec![Box::<str>::from(kind)].into_boxed_slice(),
            visible_at,
        };
        self.outbox.push(row.json.clone());
        let events = self.table_mut(Res::Event);
        if duplicate {
            events.push(row.clone());
        }
        events.push(row);
    }

    /// Emits the created events of history objects inside the retention window, then orders the log.
    pub fn emit_history_events(&mut self, now: i64) {
        self.events_on = true;
        let cutoff = now - EVENT_RETENTION_SECS;
        for res in Res::all() {
            let Some(kind) = res.def().created_event else {
                continue;
            };
            let recent: Vec<Bytes> = self
                .table(res)
                .rows()
                .iter()
                .filter(|r| r.created >= cutoff)
                .map(|r| r.json.clone())
                .collect();
            for json in recent {
                if let Ok(obj) = serde_json::from_slice::<Value>(&json) {
                    let created = obj["created"].as_i64().unwrap_or(now);
                    let kind = match (res, obj["status"].as_str()) {
                        (Res::Charge, Some("failed")) => "charge.failed",
                        (Res::Charge, Some("pending")) => "charge.pending",
                        _ => kind,
                    };
                    self.emit(kind, &obj, None, created);
                }
            }
        }
        self.table_mut(Res::Event).sort();
    }

    /// Every object of a resource with nested lists complete, deleted ones flagged.
    pub fn truth(&self, res: Res) -> Vec<Value> {
        // Subscriptions embed at most 10 items; the complete lists come from the items table.
        let mut items: HashMap<&str, Vec<Value>> = HashMap::new();
        if res == Res::Subscription {
            for row in self
                .table(Res::SubscriptionItem)
                .rows()
                .iter()
                .filter(|r| !r.deleted)
            {
                if let (Some(sub), Ok(item)) = (
                    row.attrs.first(),
                    serde_json::from_slice::<Value>(&row.json),
                ) {
                    items.entry(&**sub).or_default().push(item);
                }
            }
        }
        // Lists that need the parent's id (`/v1/setup_attempts?setup_intent=…`): under the key the
        // pipeline's catalog puts them, the list's last path segment.
        let per_parent: Vec<(&str, HashMap<String, Vec<Value>>)> = Res::all()
            .filter_map(|child| {
                let (param, _) = child
                    .generic()?
                    .parents
                    .iter()
                    .find(|(_, object)| *object == res.def().object)?;
                let mut by_parent: HashMap<String, Vec<Value>> = HashMap::new();
                for row in self.table(child).rows().iter().filter(|r| !r.deleted) {
                    let Ok(item) = serde_json::from_slice::<Value>(&row.json) else {
                        continue;
                    };
                    if let Some(parent) = item[*param].as_str() {
                        by_parent.entry(parent.to_string()).or_default().push(item);
                    }
                }
                let key = child.def().path.rsplit('/').next()?;
                Some((key, by_parent))
            })
            .collect();
        self.table(res)
            .rows()
            .iter()
            .filter_map(|r| {
                let mut obj: Value = serde_json::from_slice(&r.json).ok()?;
                if let (Some(key), Some(lines)) = (res.owned(), self.lines.get(&r.id)) {
                    obj[key]["object"] = json!("list");
                    obj[key]["data"] = Value::Array(
                        lines
                            .iter()
                            .filter_map(|(_, b)| serde_json::from_slice(b).ok())
                            .collect(),
                    );
                    obj[key]["has_more"] = json!(false);
                }
                if let Some(all) = items.remove(&*r.id) {
                    obj["items"]["data"] = Value::Array(all);
                    obj["items"]["has_more"] = json!(false);
                }
                for (key, children) in &per_parent {
                    let data = children.get(&*r.id).cloned().unwrap_or_default();
                    obj[*key] = json!({"object": "list", "data": data, "has_more": false});
                }
                if res == Res::Account {
                    crate::connect::complete(&mut obj);
                }
                Some(json!({"id": r.id, "deleted": r.deleted, "object": obj}))
            })
            .collect()
    }

    /// Number of objects (not events), deleted included.
    pub fn object_count(&self) -> usize {
        Res::all()
            .filter(|r| *r != Res::Event)
            .map(|r| self.table(r).len())
            .sum::<usize>()
            + self.lines.values().map(Vec::len).sum::<usize>()
    }
}

/// Serializes compactly; `Value` serialization cannot fail. The buffer is shrunk to fit: serde grows it
/// by doubling, which would waste a third of the simulator's memory at a million objects.
pub fn to_bytes(obj: &Value) -> Bytes {
    Bytes::from(
        serde_json::to_vec(obj)
            .unwrap_or_default()
            .into_boxed_slice(),
    )
}

/// The filter attributes of an object: each filter field as a string ("" for null or absent).
fn attrs(res: Res, obj: &Value) -> Box<[Box<str>]> {
    res.def()
        .filters
        .iter()
        .map(|f| match &obj[f.name()] {
            Value::String(s) => s.as_str().into(),
            Value::Bool(b) => b.to_string().into(),
            Value::Number(n) => n.to_string().into(),
            Value::Object(o) => o
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .into(),
            _ => "".into(),
        })
        .collect()
}
