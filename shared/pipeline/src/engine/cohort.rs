//! Connected accounts deliver together. A Connect platform may have thousands of connected accounts
//! with a few objects each; delivered one by one, every account's every batch would be a Parquet file
//! per table and a warehouse transaction (10,000 accounts: hundreds of thousands of files a day, and
//! a warehouse busy with tiny merges). Instead, the deliveries of the connected accounts that run at
//! the same time wait for each other briefly and go as one: a file per table and one transaction per
//! dataset and platform ([`super::deliver::store`]), after which each account commits its own cursor.
//!
//! The slice protocol is unchanged for each account: its cursor moves only after the shared files
//! and transaction succeeded, and when they fail every account of the group gets the failure and
//! moves nothing. Rows of different accounts never collide: the merge keys on `(merchant_id, id)` and
//! Stripe's ids are unique.
//!
//! When to go: as soon as every connected account with a slice running has a delivery waiting, or
//! the waiting rows reach [`FLUSH_ROWS`], or the oldest delivery has waited [`LINGER`] (an account
//! still paging holds the others no longer than that).

use super::context::Context;
use super::deliver::{self, Delivery};
use super::error::SyncError;
use super::plan::FLUSH_ROWS;
use super::resolve::Resolved;
use crate::catalog::Dataset;
use crate::lake::LakeFile;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

/// How long a delivery waits at most for those of the other connected accounts.
pub const LINGER: Duration = Duration::from_secs(2);

/// What a connected account hands over to be delivered with the others.
enum Work {
    /// Rows and tombstones, written and loaded.
    Load(Delivery),
    /// The change feed found nothing new for these datasets up to `as_of`: recorded in
    /// `data_load_times`.
    Fresh {
        datasets: Vec<&'static Dataset>,
        as_of: i64,
    },
}

/// Where a delivery's answer goes: the files written, or why nothing was.
type Reply = oneshot::Sender<Result<Vec<LakeFile>, SyncError>>;

struct Part {
    r: Resolved,
    work: Work,
    reply: Reply,
}

/// What delivers together: the mode, the platform, and the dataset (`None`: the freshness records).
type Group = (bool, String, Option<String>);

impl Part {
    fn group(&self) -> Group {
        let dataset = match &self.work {
            Work::Load(d) => Some(d.dataset.name.clone()),
            Work::Fresh { .. } => None,
        };
        (self.r.account.livemode, self.r.merchant_id.clone(), dataset)
    }
}

#[derive(Default)]
struct Waiting {
    /// Slices running per connected account (its scope).
    running: HashMap<String, usize>,
    parts: Vec<Part>,
    rows: usize,
}

/// The connected accounts of an engine that deliver together.
#[derive(Default)]
pub(crate) struct Cohort {
    waiting: parking_lot::Mutex<Waiting>,
    /// Wakes waiting deliveries when an account's slice ends (the others may be all that is left).
    wake: Notify,
    /// Numbers the shared files of the run.
    seq: AtomicU64,
}

/// A connected account's running slice, counted while it lives.
pub(crate) struct Member {
    cohort: Arc<Cohort>,
    scope: String,
}

impl Drop for Member {
    fn drop(&mut self) {
        let mut w = self.cohort.waiting.lock();
        if let Some(n) = w.running.get_mut(&self.scope) {
            *n -= 1;
            if *n == 0 {
                w.running.remove(&self.scope);
            }
        }
        drop(w);
        self.cohort.wake.notify_waiters();
    }
}

impl Cohort {
    /// Counts a slice of connected account `r` as running until the guard is dropped.
    pub(crate) fn join(self: &Arc<Self>, r: &Resolved) -> Member {
        let scope = r.scope();
        *self
            .waiting
            .lock()
            .running
            .entry(scope.clone())
            .or_default() += 1;
        Member {
            cohort: self.clone(),
            scope,
        }
    }

    /// Delivers connected account `r`'s rows with those of the others; returns the files written
    /// (listed with one of the accounts only).
    pub(crate) async fn deliver(
        &self,
        cx: &Context,
        r: &Resolved,
        delivery: Delivery,
    ) -> Result<Vec<LakeFile>, SyncError> {
        let rows = delivery.batches.iter().map(|(_, b)| b.num_rows()).sum();
        self.wait(cx, r, Work::Load(delivery), rows).await
    }

    /// Records with the others' that `datasets` of connected account `r` are complete up to `as_of`.
    pub(crate) async fn fresh(
        &self,
        cx: &Context,
        r: &Resolved,
        datasets: &[&'static Dataset],
        as_of: i64,
    ) -> Result<(), SyncError> {
        let work = Work::Fresh {
            datasets: datasets.to_vec(),
            as_of,
        };
        self.wait(cx, r, work, 0).await.map(|_| ())
    }

    async fn wait(
        &self,
        cx: &Context,
        r: &Resolved,
        work: Work,
        rows: usize,
    ) -> Result<Vec<LakeFile>, SyncError> {
        let (reply, mut done) = oneshot::channel();
        {
            let mut w = self.waiting.lock();
            w.parts.push(Part {
                r: r.clone(),
                work,
                reply,
            });
            w.rows += rows;
        }
        let until = Instant::now() + LINGER;
        loop {
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if self.ready() {
                break;
            }
            tokio::select! {
                result = &mut done => return answered(r, result),
                () = tokio::time::sleep_until(until) => break,
                () = &mut woken => {}
            }
        }
        // This flush, or one already under way, has taken this delivery: its answer comes.
        self.flush(cx).await;
        answered(r, done.await)
    }

    /// Whether every connected account with a slice running has a delivery waiting, or enough rows
    /// wait.
    fn ready(&self) -> bool {
        let w = self.waiting.lock();
        if w.parts.is_empty() {
            return false;
        }
        let waiting: HashSet<String> = w.parts.iter().map(|p| p.r.scope()).collect();
        w.rows >= FLUSH_ROWS || w.running.keys().all(|s| waiting.contains(s))
    }

    /// Writes and loads every waiting delivery, grouped by mode, platform and dataset, and answers
    /// each.
    async fn flush(&self, cx: &Context) {
        let parts = {
            let mut w = self.waiting.lock();
            w.rows = 0;
            std::mem::take(&mut w.parts)
        };
        if parts.is_empty() {
            return;
        }
        let mut groups: BTreeMap<Group, Vec<Part>> = BTreeMap::new();
        for part in parts {
            groups.entry(part.group()).or_default().push(part);
        }
        for ((.., dataset), group) in groups {
            match dataset {
                Some(_) => self.load(cx, group).await,
                None => self.record_fresh(cx, group).await,
            }
        }
    }

    /// One dataset of one platform's connected accounts: one file per table, one transaction.
    async fn load(&self, cx: &Context, group: Vec<Part>) {
        let (mut deliveries, mut replies) = (Vec::new(), Vec::new());
        for part in group {
            if let Work::Load(d) = part.work {
                deliveries.push(d);
                replies.push((part.r, part.reply));
            }
        }
        let first = replies[0].0.clone();
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let stem = format!(
            "{}-connected{seq:05}-{}",
            cx.run_id, deliveries[0].dataset.name
        );
        let result = deliver::store(cx, &first, &stem, deliveries).await;
        answer(replies, result);
    }

    /// The platform's `data_load_times`: every dataset any of them named, as of the earliest instant.
    async fn record_fresh(&self, cx: &Context, group: Vec<Part>) {
        let mut datasets: Vec<&'static Dataset> = Vec::new();
        let mut as_of = i64::MAX;
        let mut replies = Vec::new();
        for part in group {
            if let Work::Fresh {
                datasets: ds,
                as_of: t,
            } = part.work
            {
                for d in ds {
                    if !datasets.iter().any(|e| e.name == d.name) {
                        datasets.push(d);
                    }
                }
                as_of = as_of.min(t);
            }
            replies.push((part.r, part.reply));
        }
        let first = replies[0].0.clone();
        let result = cx
            .warehouse
            .record_freshness(first.account.livemode, &datasets, &first.merchant_id, as_of)
            .await
            .map(|()| Vec::new())
            .map_err(|e| first.warehouse_error("freshness", e));
        answer(replies, result);
    }
}

/// The answer a delivery got, or the failure of a delivery whose flush was dropped half-way.
fn answered(
    r: &Resolved,
    answer: Result<Result<Vec<LakeFile>, SyncError>, oneshot::error::RecvError>,
) -> Result<Vec<LakeFile>, SyncError> {
    answer.unwrap_or_else(|_| {
        Err(SyncError::Panicked {
            account: r.account.name.clone(),
            what: "delivery".into(),
            message: "the shared delivery was dropped before it finished".into(),
        })
    })
}

/// Answers every account of a group: the files go to the first (so each is listed once), a failure
/// to each, naming it.
fn answer(replies: Vec<(Resolved, Reply)>, result: Result<Vec<LakeFile>, SyncError>) {
    let shared = result
        .as_ref()
        .err()
        .map(|e| (e.to_string(), e.retryable()));
    let mut result = Some(result);
    for (r, reply) in replies {
        let answer = match (&shared, result.take()) {
            (None, Some(ok)) => ok,
            (None, None) => Ok(Vec::new()),
            (Some(_), Some(first)) => first,
            (Some((message, retryable)), None) => Err(SyncError::Shared {
                account: r.account.name.clone(),
                message: message.clone(),
                retryable: *retryable,
            }),
        };
        // An account whose slice has gone no longer waits for its answer.
        let _ = reply.send(answer);
    }
}
