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
    if let Some(after) = &seg.after {
        p.push(("starting_after".into(), after.clone()));
    }
    p
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

/// Cuts `[HISTORY_START, upper)` into at most `max` segments by probing where the objects are.
pub async fn plan(
    client: &StripeClient,
    caller: &Caller,
    dataset: &Dataset,
    upper: i64,
    max: usize,
) -> Result<Vec<Segment>, StripeError> {
    let whole = Segment {
        from: HISTORY_START,
        to: upper,
        after: None,
        after_created: None,
        done: false,
    };
    if !dataset.created_filter || max <= 1 {
        return Ok(vec![whole]);
    }
    let mut todo = vec![whole];
    let mut done = Vec::new();
    while let Some(seg) = todo.pop() {
        if done.len() + todo.len() + 1 >= max || seg.to - seg.from < 2 {
            done.push(seg);
            continue;
        }
        let probe = fetch_page(
            client,
            caller,
            &dataset.list_path,
            &page_params(dataset, &seg, PAGE_LIMIT),
        )
        .await?;
        if probe.data.is_empty() {
            // Nothing here: keep the (empty) window so the plan still covers all of history.
            done.push(Segment { done: true, ..seg });
            continue;
        }
        if !probe.has_more {
            // One page holds the whole window: splitting it would only cost requests.
            done.push(seg);
            continue;
        }
        let mid = seg.from + (seg.to - seg.from) / 2;
        todo.push(Segment {
            to: mid,
            ..seg.clone()
        });
        todo.push(Segment { from: mid, ..seg });
    }
    done.sort_by_key(|s| s.from);
    Ok(done)
}

/// Replaces truncated nested lists (`has_more`) in `obj` by their complete contents.
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
        let url = template.replace("{id}", &id);
        let (path, query) = url.split_once('?').unwrap_or((&url, ""));
        let base: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
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
                break;
            }
        }
        list["data"] = Value::Array(items);
        list["has_more"] = Value::Bool(false);
    }
    Ok(())
}
