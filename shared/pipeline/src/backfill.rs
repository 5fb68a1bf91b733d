//! Backfill planning and paging: how a dataset's history is cut into `created` segments and read.
//!
//! Segments are found by probing density: a window whose first page says `has_more` is split in two,
//! until there are enough windows to keep the account's request budget busy. Endpoints without a
//! `created` filter are read as one sequential segment.

use crate::catalog::Dataset;
use crate::state::Segment;
use crate::stripe::{Caller, StripeClient, StripeError};
use serde_json::Value;

/// Stripe accounts have no objects before 2010.
pub const HISTORY_START: i64 = 1_262_304_000;
/// Page size (Stripe's maximum).
pub const PAGE_LIMIT: usize = 100;

/// One page of a list.
pub struct Page {
    pub data: Vec<Value>,
    pub has_more: bool,
}

/// The query of one page of a segment.
pub fn page_params(dataset: &Dataset, seg: &Segment, limit: usize) -> Vec<(String, String)> {
    let mut p: Vec<(String, String)> = dataset.default_params.clone();
    p.push(("limit".into(), limit.to_string()));
    if dataset.created_filter {
        p.push(("created[gte]".into(), seg.from.to_string()));
        p.push(("created[lt]".into(), seg.to.to_string()));
    }
    if let (Some(per_parent), Some(parent)) = (&dataset.per_parent, &seg.parent) {
        p.push((per_parent.param.clone(), parent.clone()));
    }
    if let Some(after) = &seg.after {
        p.push(("starting_after".into(), after.clone()));
    }
    p
}

/// The segments that cover objects created in `[from, to)`: one, or for a list that needs a parent
/// (`Dataset::per_parent`) one per parent, whose ids are paged from the parent's list. No parent, no
/// segment: the list is then complete with nothing in it.
pub async fn windows(
    client: &StripeClient,
    caller: &Caller,
    dataset: &Dataset,
    from: i64,
    to: i64,
) -> Result<Vec<Segment>, StripeError> {
    let whole = Segment {
        from,
        to,
        after: None,
        after_created: None,
        done: false,
        parent: None,
    };
    let Some(per_parent) = &dataset.per_parent else {
        return Ok(vec![whole]);
    };
    let parents = list_all(client, caller, &per_parent.list_path, Vec::new()).await?;
    Ok(parents
        .iter()
        .filter_map(|p| p["id"].as_str())
        .map(|id| Segment {
            parent: Some(id.to_string()),
            ..whole.clone()
        })
        .collect())
}

/// Reads one page.
pub async fn fetch_page(
    client: &StripeClient,
    caller: &Caller,
    path: &str,
    params: &[(String, String)],
) -> Result<Page, StripeError> {
    let v = client.get(caller, path, params).await?;
    let data = match v.get("data") {
        Some(Value::Array(a)) => a.clone(),
        _ => {
            return Err(StripeError::Decode {
                message: format!("{path} did not return a list"),
                request_id: "-".into(),
            });
        }
    };
    Ok(Page {
        data,
        has_more: v["has_more"].as_bool().unwrap_or(false),
    })
}

/// Cuts `[HISTORY_START, upper)` into at most `max` non-empty segments by probing where the objects are.
///
/// Level by level, every window whose first page says `has_more` is halved, and the windows of a level
/// are probed at once (each probe is one request; at Stripe's latency, one after another would cost
/// seconds). Empty windows are kept as finished segments but do not count against `max`, so a
/// history that starts late is still cut finely where its objects are.
pub async fn plan(
    client: &StripeClient,
    caller: &Caller,
    dataset: &'static Dataset,
    upper: i64,
    max: usize,
) -> Result<Vec<Segment>, StripeError> {
    let mut level = windows(client, caller, dataset, HISTORY_START, upper).await?;
    // A list per parent is cut by parent; a dense one is split while it runs.
    if !dataset.created_filter || max <= 1 || dataset.per_parent.is_some() {
        return Ok(level);
    }
    let mut settled: Vec<Segment> = Vec::new();
    loop {
        let mut probes = tokio::task::JoinSet::new();
        for (i, seg) in level.iter().enumerate() {
            let (client, caller, params) = (
                client.clone(),
                caller.clone(),
                page_params(dataset, seg, PAGE_LIMIT),
            );
            probes.spawn(async move {
                let page = fetch_page(&client, &caller, &dataset.list_path, &params).await;
                (i, page.map(|p| (p.data.is_empty(), p.has_more)))
            });
        }
        let mut results = vec![(false, false); level.len()];
        while let Some(joined) = probes.join_next().await {
            let (i, probe) = joined.map_err(|e| StripeError::Decode {
                message: format!("a planning probe failed: {e}"),
                request_id: "-".into(),
            })?;
            results[i] = probe?;
        }
        let mut next = Vec::new();
        let mut dense = Vec::new();
        for (seg, (empty, more)) in level.into_iter().zip(results) {
            if empty {
                settled.push(Segment { done: true, ..seg });
            } else if more && seg.to - seg.from >= 2 {
                dense.push(seg);
            } else {
                settled.push(seg);
            }
        }
        let busy = settled.iter().filter(|s| !s.done).count();
        if dense.is_empty() || busy + 2 * dense.len() > max {
            settled.extend(dense);
            break;
        }
        for seg in dense {
            let mid = seg.from + (seg.to - seg.from) / 2;
            next.push(Segment {
                to: mid,
                ..seg.clone()
            });
            next.push(Segment { from: mid, ..seg });
        }
        level = next;
    }
    settled.sort_by_key(|s| s.from);
    Ok(settled)
}

/// Replaces truncated nested lists (`has_more`) in `obj` by their complete contents, and puts the
/// complete lists of fetched tables (`Table::fetch`) under their `source` key (where `obj` does not
/// carry them already: an expanded list, `Table::expand`).
pub async fn complete_nested(
    client: &StripeClient,
    caller: &Caller,
    dataset: &Dataset,
    obj: &mut Value,
) -> Result<(), StripeError> {
    let id = obj["id"].as_str().unwrap_or_default().to_string();
    for table in &dataset.tables {
        let Some(template) = &table.nested_list_path else {
            continue;
        };
        let carried = table.expand && table.source.first().is_some_and(|k| obj.get(k).is_some());
        if table.fetch && !carried {
            // A parent whose hint says it has none (`fetch_when`): nothing to page.
            let items = if table.fetched_for(obj) {
                nested_items(client, caller, template, &id).await?
            } else {
                Vec::new()
            };
            let (Some(key), Some(fields)) = (table.source.first(), obj.as_object_mut()) else {
                continue;
            };
            fields.insert(
                key.clone(),
                serde_json::json!({"object": "list", "data": items, "has_more": false}),
            );
            continue;
        }
        let Some(list) = table
            .source
            .iter()
            .try_fold(&mut *obj, |v, k| v.get_mut(k.as_str()))
        else {
            continue;
        };
        if !list["has_more"].as_bool().unwrap_or(false) {
            continue;
        }
        let items = nested_items(client, caller, template, &id).await?;
        list["data"] = Value::Array(items);
        list["has_more"] = Value::Bool(false);
    }
    Ok(())
}

/// Every item of a nested list, paged from its own endpoint: `template` is a table's
/// `nested_list_path`, `{id}` the parent object's id.
pub async fn nested_items(
    client: &StripeClient,
    caller: &Caller,
    template: &str,
    id: &str,
) -> Result<Vec<Value>, StripeError> {
    let url = template.replace("{id}", id);
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let base: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    list_all(client, caller, path, base).await
}

/// Every object of the list at `path` with the query `base`, paged to its end.
async fn list_all(
    client: &StripeClient,
    caller: &Caller,
    path: &str,
    base: Vec<(String, String)>,
) -> Result<Vec<Value>, StripeError> {
    let mut items: Vec<Value> = Vec::new();
    loop {
        let mut params = base.clone();
        params.push(("limit".into(), PAGE_LIMIT.to_string()));
        if let Some(last) = items.last().and_then(|i| i["id"].as_str()) {
            params.push(("starting_after".into(), last.to_string()));
        }
        let page = fetch_page(client, caller, path, &params).await?;
        let more = page.has_more && !page.data.is_empty();
        items.extend(page.data);
        if !more {
            return Ok(items);
        }
    }
}
