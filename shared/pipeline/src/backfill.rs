//! Backfill planning and paging: how a dataset's history is cut into `created` segments and read.
//!
//! Segments are found by probing density: a window whose first page says `has_more` is split in two,
//! until there are enough windows to keep the account's request budget busy. Endpoints without a
//! `created` filter are read as one sequential segment.

use crate::catalog::Dataset;
use crate::state::Segment;
use crate::stripe::{Caller, Response, StripeClient, StripeError};
use serde::Deserialize;
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

/// A planned segment, with its first page when planning read it (a probe of its window, or of a window
/// it is the newer part of): the segment starts with that page instead of asking for it again.
pub struct Planned {
    pub segment: Segment,
    pub first_page: Option<Response>,
}

/// What planning needs of a probe's page: how many objects, whether more follow, and the `created`
/// of the last (oldest) one.
#[derive(Deserialize)]
struct ProbeView {
    data: Vec<Created>,
    #[serde(default)]
    has_more: bool,
}

#[derive(Deserialize)]
struct Created {
    created: Option<i64>,
}

/// A window's first page, read by a probe or inherited from the window it was split from.
struct Probed {
    page: Response,
    objects: usize,
    has_more: bool,
    oldest: Option<i64>,
}

impl Probed {
    fn read(path: &str, page: Response) -> Result<Self, StripeError> {
        let view: ProbeView =
            serde_json::from_slice(&page.body).map_err(|e| StripeError::Decode {
                message: format!("{path} did not return a list ({e})"),
                request_id: page.request_id.clone(),
            })?;
        Ok(Probed {
            objects: view.data.len(),
            has_more: view.has_more,
            oldest: view.data.last().and_then(|o| o.created),
            page,
        })
    }

    /// Where `seg` splits: its middle, or earlier if this page reaches below the middle, so the page
    /// stays the first page of the newer part. `None`: the page reaches the window's start.
    fn split_at(&self, seg: &Segment) -> Option<i64> {
        let mid = seg.from + (seg.to - seg.from) / 2;
        let at = mid.min(self.oldest?);
        (self.has_more && at > seg.from).then_some(at)
    }
}

/// Cuts `[HISTORY_START, upper)` into at most `max` non-empty segments by probing where the objects are.
///
/// Level by level, every window whose first page says `has_more` is split in two, and the windows of a
/// level are probed at once (each probe is one request; at Stripe's latency, one after another would
/// cost seconds). A probe's page is the newest objects of its window, so it is also the first page of
/// the window's newer part: that part is not probed again, and the segment it ends in starts with the
/// page. Only the older parts cost a request each, and only probes of empty windows read nothing
/// kept. Empty windows are kept as finished segments but do not count against `max`, so a history
/// that starts late is still cut finely where its objects are. First pages are kept up to
/// `keep_bytes` in all (they wait in memory until their segment gets a slot); past it, a segment
/// asks for its first page again.
pub async fn plan(
    client: &StripeClient,
    caller: &Caller,
    dataset: &'static Dataset,
    upper: i64,
    max: usize,
    keep_bytes: usize,
) -> Result<Vec<Planned>, StripeError> {
    let whole = windows(client, caller, dataset, HISTORY_START, upper).await?;
    // A list per parent is cut by parent; a dense one is split while it runs.
    if !dataset.created_filter || max <= 1 || dataset.per_parent.is_some() {
        return Ok(whole
            .into_iter()
            .map(|segment| Planned {
                segment,
                first_page: None,
            })
            .collect());
    }
    let mut level: Vec<(Segment, Option<Probed>)> = whole.into_iter().map(|s| (s, None)).collect();
    let mut settled: Vec<(Segment, Option<Probed>)> = Vec::new();
    loop {
        let mut probes = tokio::task::JoinSet::new();
        for (i, (seg, _)) in level.iter().enumerate().filter(|(_, (_, p))| p.is_none()) {
            let (client, caller, params) = (
                client.clone(),
                caller.clone(),
                page_params(dataset, seg, PAGE_LIMIT),
            );
            probes.spawn(async move {
                let page = client.get_raw(&caller, &dataset.list_path, &params).await;
                (i, page.and_then(|p| Probed::read(&dataset.list_path, p)))
            });
        }
        while let Some(joined) = probes.join_next().await {
            let (i, probe) = joined.map_err(|e| StripeError::Decode {
                message: format!("a planning probe failed: {e}"),
                request_id: "-".into(),
            })?;
            level[i].1 = Some(probe?);
        }
        // Windows to split, with where.
        let mut dense = Vec::new();
        for (seg, probe) in level {
            match probe {
                Some(p) if p.objects == 0 => settled.push((Segment { done: true, ..seg }, None)),
                Some(p) => match p.split_at(&seg) {
                    Some(at) => dense.push((seg, p, at)),
                    None => settled.push((seg, Some(p))),
                },
                None => settled.push((seg, None)),
            }
        }
        let busy = settled.iter().filter(|(s, _)| !s.done).count();
        if dense.is_empty() || busy + 2 * dense.len() > max {
            settled.extend(dense.into_iter().map(|(s, p, _)| (s, Some(p))));
            break;
        }
        level = Vec::with_capacity(2 * dense.len());
        for (seg, probe, at) in dense {
            level.push((
                Segment {
                    to: at,
                    ..seg.clone()
                },
                None,
            ));
            level.push((Segment { from: at, ..seg }, Some(probe)));
        }
    }
    settled.sort_by_key(|(s, _)| s.from);
    let mut kept = 0;
    Ok(settled
        .into_iter()
        .map(|(segment, probe)| {
            let first_page = probe.map(|p| p.page).filter(|page| {
                kept += page.body.len();
                kept <= keep_bytes
            });
            Planned {
                segment,
                first_page,
            }
        })
        .collect())
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
