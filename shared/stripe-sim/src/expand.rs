//! `expand[]`: replacing reference ids with the objects they name, and including the properties Stripe
//! leaves out unless asked (a charge's `refunds`, a customer's `subscriptions`), up to four levels.
//!
//! Which fields of which object can be expanded, and into what, is Stripe's own statement: every schema's
//! `x-expandableFields` in the spec for API 2023-08-16, digested by the catalog generator
//! (`shared/pipeline/catalog/generate.py`) into `data/expansions.json`. Nothing here names a field.

use crate::error::ApiError;
use crate::list::ListQuery;
use crate::resources::Res;
use crate::scope::Scope;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::OnceLock;

/// Stripe refuses expansions deeper than this.
pub const MAX_DEPTH: usize = 4;

/// Stripe includes this many items of an includable list (`has_more` says whether there are more).
const INCLUDED_LIST_ITEMS: usize = 10;

static EXPANSIONS: &str = include_str!("../data/expansions.json");

/// How one expandable field expands (one entry of `data/expansions.json`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct How {
    /// An id that becomes the object it names, of one of these object types.
    #[serde(rename = "ref")]
    refs: Option<Vec<String>>,
    /// A list object of items of these types, present only when expanded.
    list: Option<Vec<String>>,
    /// An embedded object of this schema: expansion goes on inside it.
    object: Option<String>,
    /// An array whose every item expands like this.
    each: Option<Box<How>>,
}

type Expansions = HashMap<String, HashMap<String, How>>;

fn expansions() -> &'static Expansions {
    static PARSED: OnceLock<Expansions> = OnceLock::new();
    // The file is generated and embedded at build time; `expansions_file_parses` keeps it valid.
    PARSED.get_or_init(|| serde_json::from_str(EXPANSIONS).unwrap_or_default())
}

fn how(schema: &str, field: &str) -> Option<&'static How> {
    expansions().get(schema)?.get(field)
}

/// Where a path goes after one field: the schema of what the field holds, if it has just one.
enum Next<'a> {
    Schema(&'a str),
    /// A list object: the next segment is `data`, then the items' schema.
    List(Option<&'a str>),
    /// Nothing further can be expanded (a value, or a reference to one of several types).
    End,
}

/// The one type of a list of object types, if there is just one.
fn single(types: &Option<Vec<String>>) -> Option<&str> {
    match types.as_deref() {
        Some([one]) => Some(one.as_str()),
        _ => None,
    }
}

impl How {
    fn next(&self) -> Next<'_> {
        if let Some(each) = &self.each {
            return each.next();
        }
        if self.refs.is_some() {
            single(&self.refs).map_or(Next::End, Next::Schema)
        } else if self.list.is_some() {
            Next::List(single(&self.list))
        } else if let Some(o) = &self.object {
            Next::Schema(o)
        } else {
            Next::End
        }
    }
}

fn cannot(shown: &str) -> ApiError {
    ApiError::invalid(None, format!("This property cannot be expanded ({shown}).")).param("expand")
}

/// Checks every path against the objects' expandable fields before any data is read.
pub fn validate(res: Res, paths: &[String], list: bool) -> Result<(), ApiError> {
    for path in paths {
        let shown = if list {
            format!("data.{path}")
        } else {
            path.clone()
        };
        let segments: Vec<&str> = path.split('.').collect();
        if segments.len() > MAX_DEPTH {
            return Err(ApiError::invalid(None, format!("You cannot expand more than {MAX_DEPTH} levels of a property. Property: {shown}")).param("expand"));
        }
        let mut at = Next::Schema(res.def().object);
        for seg in segments {
            at = match at {
                Next::Schema(schema) => how(schema, seg).ok_or_else(|| cannot(&shown))?.next(),
                Next::List(items) if seg == "data" => items.map_or(Next::End, Next::Schema),
                Next::List(_) | Next::End => return Err(cannot(&shown)),
            };
        }
    }
    Ok(())
}

/// Expands `path` (already validated) inside `obj`, an object of `res` that lives in `scope`.
pub fn apply(scope: &Scope, res: Res, obj: &mut Value, path: &str, now: i64) {
    let segments: Vec<&str> = path.split('.').collect();
    expand_in(scope, res.def().object, obj, &segments, now);
}

/// Expands `segments` inside `obj`, an object of schema `schema`.
fn expand_in(scope: &Scope, schema: &str, obj: &mut Value, segments: &[&str], now: i64) {
    let Some((head, rest)) = segments.split_first() else {
        return;
    };
    let Some(how) = how(schema, head) else {
        return;
    };
    let owner = Owner {
        object: schema,
        id: obj.get("id").and_then(Value::as_str).map(str::to_string),
        field: head,
    };
    if let Some(slot) = obj
        .as_object_mut()
        .map(|o| o.entry(*head).or_insert(Value::Null))
    {
        expand_value(scope, how, slot, rest, &owner, now);
    }
}

/// The object a field belongs to, for building the list an includable field stands for.
struct Owner<'a> {
    object: &'a str,
    id: Option<String>,
    field: &'a str,
}

fn expand_value(
    scope: &Scope,
    how: &How,
    slot: &mut Value,
    rest: &[&str],
    owner: &Owner,
    now: i64,
) {
    if let Some(each) = &how.each {
        if let Some(items) = slot.as_array_mut() {
            for item in items {
                expand_value(scope, each, item, rest, owner, now);
            }
        }
    } else if let Some(types) = &how.refs {
        if let Some(id) = slot.as_str() {
            let target = match types.as_slice() {
                [one] => Res::from_object(one),
                _ => Res::from_id(id),
            };
            if let Some(obj) = target.and_then(|t| fetch(scope, t, id)) {
                *slot = obj;
            }
        }
        expand_as_its_type(scope, slot, rest, now);
    } else if let Some(types) = &how.list {
        if slot.is_null() {
            *slot = included_list(scope, types, owner, now);
        }
        if let (Some((&"data", rest)), Some(items)) =
            (rest.split_first(), slot["data"].as_array_mut())
        {
            for item in items {
                expand_as_its_type(scope, item, rest, now);
            }
        }
    } else if let Some(schema) = &how.object {
        if slot.is_object() {
            expand_in(scope, schema, slot, rest, now);
        }
    }
}

/// Expands `segments` inside `obj` as the schema its own `object` field names (an object reached
/// through a reference, or an item of a list, whose type is only known from the value).
fn expand_as_its_type(scope: &Scope, obj: &mut Value, segments: &[&str], now: i64) {
    if let Some(object) = obj
        .get("object")
        .and_then(Value::as_str)
        .map(str::to_string)
    {
        expand_in(scope, &object, obj, segments, now);
    }
}

/// An object as a reference expands to it (a deleted one as Stripe's deletion stub).
fn fetch(scope: &Scope, res: Res, id: &str) -> Option<Value> {
    let row = scope.table(res).get(id)?;
    Some(if row.deleted {
        json!({"id": id, "object": res.def().object, "deleted": true})
    } else {
        serde_json::from_slice(&row.json).unwrap_or(Value::Null)
    })
}

/// The first page of an includable list (a charge's refunds): the items whose field named after the
/// owner's object type holds the owner's id, as the list endpoint filtered that way would return them.
/// Items the simulator does not keep (a customer's cards and sources) make an empty list.
fn included_list(scope: &Scope, types: &[String], owner: &Owner, now: i64) -> Value {
    let id = owner.id.clone().unwrap_or_default();
    let parent = Res::from_object(owner.object);
    let parent_path = parent.map_or(owner.object, |r| r.def().path);
    let url = format!("/v1/{parent_path}/{id}/{}", owner.field);
    if parent.and_then(Res::owned) == Some(owner.field) {
        // Items the parent owns (a Checkout session's line items) are kept with it.
        let lines = scope.lines.get(id.as_str()).map_or(&[][..], Vec::as_slice);
        let data: Vec<Value> = lines
            .iter()
            .take(INCLUDED_LIST_ITEMS)
            .filter_map(|(_, b)| serde_json::from_slice(b).ok())
            .collect();
        let has_more = lines.len() > data.len();
        return json!({"object": "list", "data": data, "has_more": has_more, "url": url});
    }
    let empty = json!({"object": "list", "data": [], "has_more": false, "url": url});
    let [item_type] = types else {
        return empty;
    };
    let Some(item) = Res::from_object(item_type) else {
        return empty;
    };
    first_page(scope, item, owner.object, &id, &url, now).unwrap_or(empty)
}

/// The first page (10 items) of `item`'s objects whose `field` holds `parent`, as a list embedded in
/// its parent (an includable list, a transfer's `reversals`). `None` when the list cannot filter so.
pub fn first_page(
    scope: &Scope,
    item: Res,
    field: &str,
    parent: &str,
    url: &str,
    now: i64,
) -> Option<Value> {
    let params = [
        (field.to_string(), parent.to_string()),
        ("limit".to_string(), INCLUDED_LIST_ITEMS.to_string()),
    ];
    let page = ListQuery::parse(item, &params)
        .and_then(|q| scope.table(item).list(&q, now))
        .ok()?;
    serde_json::from_slice(&page.into_chunks(url).concat()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansions_file_parses() {
        let parsed: Expansions = serde_json::from_str(EXPANSIONS).expect("data/expansions.json");
        assert!(parsed["charge"]["customer"].refs.is_some());
    }

    #[test]
    fn validation_follows_the_spec() {
        let ok = |res, p: &str| validate(res, &[p.to_string()], true).is_ok();
        assert!(ok(Res::Charge, "customer"));
        assert!(ok(Res::Charge, "balance_transaction.source"));
        assert!(ok(Res::Refund, "charge.customer"));
        // Includable properties, not returned unless expanded.
        assert!(ok(Res::Charge, "refunds"));
        assert!(ok(Res::Charge, "refunds.data.balance_transaction"));
        assert!(ok(Res::Customer, "sources"));
        assert!(ok(Res::Customer, "subscriptions"));
        assert!(ok(Res::Customer, "tax_ids"));
        // Through embedded objects, the hidden `plan` included.
        assert!(ok(Res::Subscription, "plan.tiers"));
        assert!(ok(Res::InvoiceItem, "plan.tiers"));
        assert!(!ok(Res::Charge, "amount"));
        assert!(!ok(Res::Charge, "refunds.balance_transaction"));
        assert!(!ok(Res::BalanceTransaction, "source.customer"));
        let deep = "payment_intent.latest_charge.payment_intent.latest_charge.customer".to_string();
        let e = validate(Res::Charge, &[deep], true).unwrap_err();
        assert!(e.message.contains("more than 4 levels"));
        let e = validate(Res::Charge, &["nope".into()], true).unwrap_err();
        assert_eq!(e.message, "This property cannot be expanded (data.nope).");
    }
}
