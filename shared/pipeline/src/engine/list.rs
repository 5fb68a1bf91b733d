//! The list stage: one dataset of one account, listed in `created` segments paged in parallel under the
//! account's budget of slots. A segment delivers a batch every [`FLUSH_ROWS`] rows (or bytes, or at the
//! deadline) through [`deliver::segment`]; a dense segment hands half of what it has left to a new one
//! ([`split_off`]); a complete list ends with [`deliver::sweep`].

use super::context::Context;
use super::deliver::{self, ListState, Written};
use super::error::SyncError;
use super::plan::{flush_bytes, ListKind, FLUSH_ROWS, MAX_SEGMENTS, MAX_SEGMENTS_SPLIT};
use super::resolve::Resolved;
use crate::backfill::{self, HISTORY_START, PAGE_LIMIT};
use crate::catalog::Dataset;
use crate::convert::{Converter, RowContext, Truncated};
use crate::failpoint;
use crate::slots::{Backlog, Slot, Slots};
use crate::state::{Backfill, DatasetState, NotEnabled, Segment, StateError};
use crate::stripe::{Response, StripeError};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Mutex;

/// The objects a segment has left, judged by its pace: `objects` read since its `created` was
/// `started_at` (pages go from the newest objects to the oldest). 0 before its first page.
fn objects_left(seg: &Segment, objects: u64, started_at: i64) -> f64 {
    let Some(at) = seg.after_created else {
        return 0.0;
    };
    let read = (started_at - at).max(1);
    objects as f64 * (at - seg.from).max(0) as f64 / read as f64
}

/// What a segment runs with besides the list's shared state: its slot, its first page if planning
/// read it, and how it hands part of its window to a new segment (see [`split_off`]).
struct Split<'a> {
    slots: &'a Arc<Slots>,
    spawn: &'a tokio::sync::mpsc::UnboundedSender<usize>,
    /// Held while the segment reads pages.
    slot: Option<Slot>,
    /// What the segment tells the slots about the objects it has left.
    backlog: Backlog,
    /// The segment's first page, when planning read it (see [`backfill::plan`]).
    first_page: Option<Response>,
}

/// Lists one dataset of one account: plan (or resume) its segments, page them in parallel, and at
/// the end of a complete list mark the objects it did not return as deleted.
pub(super) async fn run(
    cx: &Arc<Context>,
    r: &Resolved,
    dataset: &'static Dataset,
    kind: ListKind,
    files: &Written,
    slots: &Arc<Slots>,
) -> Result<Listed, SyncError> {
    let key = r.key(&dataset.name);
    let result = list_inner(cx, r, dataset, kind, files, &key, slots).await;
    if let Err(SyncError::Stripe { source, .. }) = &result {
        if let StripeError::NotEnabled { message, .. } = &**source {
            // Nothing was listed, so nothing is lost: the state says why, and the plan asks again
            // once the snapshot interval has passed.
            let mut current = cx.state.get::<DatasetState>(&key).await?;
            current.value.not_enabled = Some(NotEnabled {
                message: message.clone(),
                checked_at: r.server_time,
            });
            current.value.last_error = None;
            cx.state.put(&key, current.version, &current.value).await?;
            return Ok(Listed::NotEnabled(message.clone()));
        }
    }
    if let Some(e) = result
        .as_ref()
        .err()
        .filter(|e| !matches!(e, SyncError::Deadline))
    {
        if let Ok(mut current) = cx.state.get::<DatasetState>(&key).await {
            current.value.last_error = Some(e.to_string());
            let _ = cx.state.put(&key, current.version, &current.value).await;
        }
    }
    result.map(Listed::Objects)
}

/// What a list came to.
#[derive(Debug)]
pub(super) enum Listed {
    /// This many objects.
    Objects(u64),
    /// Nothing: the account does not use the dataset's Stripe product (Stripe's message).
    NotEnabled(String),
}

async fn list_inner(
    cx: &Arc<Context>,
    r: &Resolved,
    dataset: &'static Dataset,
    kind: ListKind,
    files: &Written,
    key: &str,
    slots: &Arc<Slots>,
) -> Result<u64, SyncError> {
    let stored = cx.state.get::<DatasetState>(key).await?;
    let mut state = stored.value;
    let mut version = stored.version;
    let now = r.server_time;
    // First pages that planning read, by segment.
    let mut first_pages: HashMap<usize, Response> = HashMap::new();
    let plan = match kind {
        ListKind::Resume => None,
        ListKind::Backfill | ListKind::Snapshot => {
            let upper = now + 1;
            // Each planned segment's first page waits for its slot: one segment's buffer in all.
            let keep = flush_bytes(cx.concurrency);
            let planned = backfill::plan(&cx.client, &r.caller, dataset, upper, MAX_SEGMENTS, keep)
                .await
                .map_err(|e| r.error(e))?;
            let mut segments = Vec::with_capacity(planned.len());
            for (i, p) in planned.into_iter().enumerate() {
                segments.push(p.segment);
                if let Some(page) = p.first_page {
                    first_pages.insert(i, page);
                }
            }
            Some(Backfill {
                upper,
                started: now,
                segments,
            })
        }
        ListKind::NewObjects => {
            let last = state.backfill.as_ref().map_or(HISTORY_START, |b| b.upper);
            // Never after now: a clock that went back (a restarted simulator) lists nothing new.
            let from = (last - cx.incremental.overlap_secs).min(now);
            let segments = backfill::windows(&cx.client, &r.caller, dataset, from, now + 1)
                .await
                .map_err(|e| r.error(e))?;
            Some(Backfill {
                upper: now + 1,
                // No sweep: this list covers only the newest objects.
                started: 0,
                segments,
            })
        }
    };
    if let Some(plan) = plan {
        state.backfill = Some(plan);
        state.last_error = None;
        state.not_enabled = None;
        version = cx.state.put(key, version, &state).await?;
    }
    let shared = Arc::new(Mutex::new(ListState {
        key: key.to_string(),
        version,
        state,
        loaded: false,
    }));
    let pending: Vec<usize> = {
        let s = shared.lock().await;
        s.state
            .backfill
            .as_ref()
            .map(|b| {
                b.segments
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| !s.done)
                    .map(|(i, _)| i)
                    .collect()
            })
            .unwrap_or_default()
    };
    // Segments split off while the list runs (see `split_off`) arrive on `split_tx`.
    let (split_tx, mut split_rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
    let mut tasks = tokio::task::JoinSet::new();
    let spawn = |tasks: &mut tokio::task::JoinSet<_>, i: usize, first_page: Option<Response>| {
        let (cx, r, shared, files, slots, split_tx) = (
            cx.clone(),
            r.clone(),
            shared.clone(),
            files.clone(),
            slots.clone(),
            split_tx.clone(),
        );
        tasks.spawn(async move {
            // Its window counts towards the dataset's objects left while it waits for a slot.
            let mut backlog = slots.backlog(&dataset.name);
            let window = shared.lock().await.state.backfill.as_ref().and_then(|b| {
                let seg = b.segments.get(i)?;
                Some((seg.after_created.unwrap_or(seg.to) - seg.from).max(0) as f64)
            });
            backlog.unstarted(window.unwrap_or(0.0));
            let slot = slots.acquire(&dataset.name).await;
            let split = Split {
                slots: &slots,
                spawn: &split_tx,
                slot: Some(slot),
                backlog,
                first_page,
            };
            run_segment(&cx, &r, dataset, i, &shared, &files, split).await
        });
    };
    for i in pending {
        spawn(&mut tasks, i, first_pages.remove(&i));
    }
    let mut objects = 0;
    let mut first_error = None;
    loop {
        let joined = tokio::select! {
            Some(i) = split_rx.recv() => {
                spawn(&mut tasks, i, None);
                continue;
            }
            joined = tasks.join_next() => joined,
        };
        let Some(joined) = joined else {
            // Every task has ended; a split announced just before its task ended is still queued.
            match split_rx.try_recv() {
                Ok(i) => {
                    spawn(&mut tasks, i, None);
                    continue;
                }
                Err(_) => break,
            }
        };
        match joined {
            Ok(Ok(n)) => objects += n,
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(SyncError::joined(&r.account.name, &dataset.name, e));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let mut s = shared.lock().await;
    if let Some(b) = s.state.backfill.clone().filter(Backfill::complete) {
        deliver::sweep(cx, r, dataset, &b, &mut s, files).await?;
    }
    Ok(objects)
}

/// Pages one segment to its end, delivering a batch every [`FLUSH_ROWS`] rows. It starts with
/// `split.first_page` when planning read that page already.
async fn run_segment(
    cx: &Arc<Context>,
    r: &Resolved,
    dataset: &'static Dataset,
    index: usize,
    shared: &Arc<Mutex<ListState>>,
    files: &Written,
    mut split: Split<'_>,
) -> Result<u64, SyncError> {
    let mut seg: Segment = {
        let s = shared.lock().await;
        s.state
            .backfill
            .as_ref()
            .map(|b| b.segments[index].clone())
            .ok_or_else(|| StateError::Corrupt {
                path: s.key.clone().into(),
                message: "a segment is running but the dataset has no backfill plan".into(),
            })?
    };
    let mut converter = Converter::new(dataset);
    let mut objects = 0u64;
    // Where this run started in the segment (pages go from the newest objects to the oldest).
    let started_at = seg.after_created.unwrap_or(seg.to);
    // Where the previous page ended, for the `created` seconds each page covers.
    let mut last_at = started_at;
    let mut seq = 0u32;
    let mut pending_bytes = 0usize;
    loop {
        let params = backfill::page_params(dataset, &seg, PAGE_LIMIT);
        let read = match split.first_page.take() {
            Some(page) => Ok(page),
            None => {
                cx.client
                    .get_raw(&r.caller, &dataset.list_path, &params)
                    .await
            }
        };
        let resp = match read {
            Ok(p) => p,
            Err(e) if e.is_missing_cursor() && seg.after_created.is_some() => {
                // The cursor object was deleted: restart the window by time from its second.
                // Objects of that second are read again; the merge deduplicates them.
                tracing::info!(dataset = %dataset.name, "cursor object vanished; restarting the segment by time");
                seg.to = seg.after_created.unwrap_or(seg.to) + 1;
                seg.after = None;
                seg.after_created = None;
                continue;
            }
            Err(e) => return Err(r.error(e)),
        };
        failpoint::point("page");
        // Rows carry Stripe's clock (when this version was read), so a later read, or a later
        // event, always wins the merge against an earlier one.
        let batch_timestamp = resp.server_time.unwrap_or_else(|| cx.clock.now_secs()) * 1_000_000;
        let ctx = RowContext {
            merchant_id: &r.merchant_id,
            account: r.connected.as_deref(),
            batch_timestamp,
            deleted: false,
        };
        let summary = converter.push_page(&resp.body, ctx).map_err(|e| {
            r.error(StripeError::Decode {
                message: format!("{}: unexpected list page ({e})", dataset.list_path),
                request_id: resp.request_id.clone(),
            })
        })?;
        if !summary.truncated.is_empty() {
            // The completed lists count towards the buffer too: their lines can be most of it.
            pending_bytes +=
                complete_truncated(cx, r, dataset, &summary.truncated, &mut converter, ctx).await?;
        }
        pending_bytes += resp.body.len();
        let n = summary.objects as u64;
        if let Some((id, created)) = summary.last {
            seg.after = Some(id);
            seg.after_created = created.or(seg.after_created);
        }
        if let Some(at) = seg.after_created {
            split
                .backlog
                .read(summary.objects as f64, (last_at - at).max(0) as f64);
            last_at = at;
        }
        objects += n;
        cx.progress.rows(&r.account.name, &dataset.name, n);
        seg.done = !summary.has_more || n == 0;
        let out_of_time = cx.past_deadline();
        if seg.done
            || out_of_time
            || converter.buffered() >= FLUSH_ROWS
            || pending_bytes >= flush_bytes(cx.concurrency)
        {
            seq += 1;
            pending_bytes = 0;
            if seg.done && r.connected.is_some() {
                // A connected account's last batch waits for those of the others
                // (`super::cohort`): its pages are read, so another account may have the slot.
                split.slot = None;
            }
            let stem = r.file_stem(
                &cx.run_id,
                &format!("{}-s{index:02}-{seq:05}", dataset.name),
            );
            deliver::segment(
                cx,
                r,
                dataset,
                &mut converter,
                &stem,
                index,
                &seg,
                shared,
                files,
            )
            .await?;
        }
        if seg.done {
            return Ok(objects);
        }
        if out_of_time {
            return Err(SyncError::Deadline);
        }
        split.backlog.set(objects_left(&seg, objects, started_at));
        // Right after a delivery only: a segment waiting for a slot then holds no rows, so buffered
        // pages stay within the slots' budget (`flush_bytes` each).
        let empty = pending_bytes == 0 && converter.buffered() == 0;
        if empty && split.slot.is_some() && split.slots.should_yield(&dataset.name) {
            // Another dataset needs the slot more; this segment continues with the next one free.
            split.slot = None;
            split.slot = Some(split.slots.acquire(&dataset.name).await);
        }
        if split.slots.spare(&dataset.name) {
            let pace = (objects, started_at);
            if let Some(i) = split_off(cx, dataset, index, &mut seg, pace, shared).await? {
                // The receiver lives as long as the list; a closed channel means it has ended.
                let _ = split.spawn.send(i);
            }
        }
    }
}

/// Hands the older half of what is left of segment `index` to a new segment, when the segment
/// still has at least two pages to go (by [`objects_left`]). A dense window otherwise ends a backfill one page at a time
/// while every other slot is idle. The split is committed before the new segment runs: a crash
/// after it resumes both halves, which together cover exactly the window before it.
async fn split_off(
    cx: &Arc<Context>,
    dataset: &Dataset,
    index: usize,
    seg: &mut Segment,
    (objects, started_at): (u64, i64),
    shared: &Arc<Mutex<ListState>>,
) -> Result<Option<usize>, SyncError> {
    let Some(at) = seg.after_created else {
        return Ok(None);
    };
    let expected = objects_left(seg, objects, started_at);
    if !dataset.created_filter
        || at - seg.from < 2
        || objects < PAGE_LIMIT as u64
        || expected < 2.0 * PAGE_LIMIT as f64
    {
        return Ok(None);
    }
    let mid = seg.from + (at - seg.from) / 2;
    let mut s = shared.lock().await;
    let mut state = s.state.clone();
    let Some(b) = state.backfill.as_mut() else {
        return Ok(None);
    };
    if b.segments.len() >= MAX_SEGMENTS_SPLIT {
        return Ok(None);
    }
    b.segments.push(Segment {
        from: seg.from,
        to: mid,
        after: None,
        after_created: None,
        done: false,
        parent: seg.parent.clone(),
    });
    // The committed cursor of this segment stays (it is newer than `mid`); only its window shrinks.
    b.segments[index].from = mid;
    let new = b.segments.len() - 1;
    let key = s.key.clone();
    s.version = cx.state.put(&key, s.version, &state).await?;
    s.state = state;
    seg.from = mid;
    Ok(Some(new))
}

/// Pages the nested lists a page cut off (`has_more`) to their end and adds their items as rows of
/// their child tables; the rest of those objects was converted with the page. Returns the JSON bytes
/// of the items.
async fn complete_truncated(
    cx: &Arc<Context>,
    r: &Resolved,
    dataset: &'static Dataset,
    truncated: &[Truncated],
    converter: &mut Converter,
    ctx: RowContext<'_>,
) -> Result<usize, SyncError> {
    // Page all these lists at once: each is a chain of requests, and at Stripe's latency one after
    // another would stall the segment. Tables of one list (an account's external accounts, split by
    // kind) share its pages.
    let mut lists: Vec<(String, String, Vec<usize>)> = Vec::new();
    for t in truncated {
        for &table in &t.tables {
            let Some(template) = &dataset.tables[table].nested_list_path else {
                continue;
            };
            match lists
                .iter_mut()
                .find(|(id, tmpl, _)| *id == t.id && tmpl == template)
            {
                Some((.., tables)) => tables.push(table),
                None => lists.push((t.id.clone(), template.clone(), vec![table])),
            }
        }
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (n, (id, template, tables)) in lists.into_iter().enumerate() {
        let (client, caller) = (cx.client.clone(), r.caller.clone());
        tasks.spawn(async move {
            let items = backfill::nested_items(&client, &caller, &template, &id).await;
            (n, id, tables, items)
        });
    }
    let mut completed = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (n, id, tables, items) =
            joined.map_err(|e| SyncError::joined(&r.account.name, &dataset.name, e))?;
        completed.push((n, id, tables, items.map_err(|e| r.error(e))?));
    }
    // Keep the page's order, so the batch is the same whatever finished first.
    completed.sort_by_key(|(n, ..)| *n);
    Ok(completed
        .iter()
        .flat_map(|(_, id, tables, items)| tables.iter().map(move |&t| (t, id, items)))
        .map(|(table, id, items)| converter.push_items(table, id, items, ctx))
        .sum())
}
