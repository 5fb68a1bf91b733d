//! Segment slots of one account and mode, shared fairly by its datasets.
//!
//! A slot bounds memory (each segment in flight buffers up to a batch of rows) and the requests in the
//! air. Stripe also limits each endpoint (25 requests/s, a quarter of a live account's 100), so a
//! dataset holding more slots than its endpoint can serve leaves them idle while other datasets wait:
//! a plain first-come semaphore let the first dataset planned take every slot and capped a backfill at
//! one endpoint's rate. Here a dataset may hold at most `max(its endpoint's share of the slots × 1.25,
//! the slots / the datasets still waiting or running)`, and a freed slot goes to the waiting dataset
//! that needs it most (see `Usage::rank`). A dataset alone still gets every slot.

use crate::stripe::{STRIPE_ENDPOINT_LIMIT, STRIPE_LIVE_LIMIT, STRIPE_TEST_LIMIT};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Notify;

/// Headroom over an endpoint's exact share, so latency jitter does not leave its rate unused.
const SHARE_HEADROOM: f64 = 1.25;

/// How much more backlog per slot a waiting dataset needs before a running one yields a slot to it,
/// so two datasets of about the same backlog do not hand a slot back and forth every page.
const YIELD_MARGIN: f64 = 1.25;

#[derive(Debug, Default)]
struct Usage {
    running: usize,
    waiting: usize,
    /// Objects its started segments expect to read still (see [`Slots::estimate`]).
    backlog: f64,
    /// The `created` seconds its segments that have not read a page yet cover.
    unstarted_span: f64,
    /// Objects its segments have read, and the `created` seconds those pages covered: the dataset's
    /// density, by which an unstarted segment's objects are estimated.
    read_objects: f64,
    read_span: f64,
}

impl Usage {
    /// Who gets a contested slot first: a dataset that has none (so every dataset starts and its
    /// backlog becomes known), then the most backlog per slot (so the largest lists, which one
    /// endpoint's limit makes the slowest to finish, are not left running alone at the end), then
    /// the fewest slots.
    fn rank(&self) -> (bool, f64, std::cmp::Reverse<usize>) {
        (
            self.running == 0,
            self.left() / (self.running + 1) as f64,
            std::cmp::Reverse(self.running),
        )
    }

    /// The objects it has left: its started segments' estimates, and its unstarted segments' windows
    /// at the density its pages have shown. Without the second, a dataset whose segments mostly wait
    /// (split off, or planned) looked small, got no more slots and ended alone at its endpoint's rate
    /// (payment intents, 15–50 s after the others in a 120 s backfill).
    fn left(&self) -> f64 {
        let density = if self.read_span > 0.0 {
            self.read_objects / self.read_span
        } else {
            0.0
        };
        self.backlog + density * self.unstarted_span
    }
}

#[derive(Debug)]
struct Inner {
    free: usize,
    datasets: HashMap<String, Usage>,
}

/// The slots of one account and mode.
#[derive(Debug)]
pub struct Slots {
    total: usize,
    /// The most any dataset may hold while others want slots.
    share: usize,
    inner: Mutex<Inner>,
    freed: Notify,
}

/// A held slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    dataset: String,
}

impl Slots {
    /// `total` slots; `endpoint_share` is the fraction of the account's request rate one endpoint may
    /// use (0.25 for a live Stripe account, 1.0 in test mode, where both limits are 25 requests/s).
    pub fn new(total: usize, endpoint_share: f64) -> Arc<Slots> {
        let total = total.max(1);
        let share =
            (total as f64 * endpoint_share.clamp(0.0, 1.0) * SHARE_HEADROOM).ceil() as usize;
        Arc::new(Slots {
            total,
            share: share.clamp(1, total),
            inner: Mutex::new(Inner {
                free: total,
                datasets: HashMap::new(),
            }),
            freed: Notify::new(),
        })
    }

    /// The slots of a Stripe account in live or test mode (a quarter of them per endpoint in live mode).
    pub fn for_account(total: usize, livemode: bool) -> Arc<Slots> {
        let account = if livemode {
            STRIPE_LIVE_LIMIT
        } else {
            STRIPE_TEST_LIMIT
        };
        Slots::new(total, STRIPE_ENDPOINT_LIMIT / account)
    }

    /// Waits for a slot for a segment of `dataset`.
    pub async fn acquire(self: &Arc<Self>, dataset: &str) -> Slot {
        self.inner
            .lock()
            .datasets
            .entry(dataset.to_string())
            .or_default()
            .waiting += 1;
        // Withdraws the wait if this future is dropped before it got a slot.
        let mut pending = Pending {
            slots: self,
            dataset,
            armed: true,
        };
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a slot freed in between still wakes us.
            freed.as_mut().enable();
            if let Some(left) = self.try_take(dataset) {
                pending.armed = false;
                if left > 0 {
                    // Waiters that stood back for a poorer dataset try again.
                    self.freed.notify_waiters();
                }
                return Slot {
                    slots: self.clone(),
                    dataset: dataset.to_string(),
                };
            }
            freed.await;
        }
    }

    /// Takes a slot for `dataset` if one is free, the dataset is under its cap, and no waiting dataset
    /// that is also under its cap ranks before it. Returns the slots left free.
    fn try_take(&self, dataset: &str) -> Option<usize> {
        let mut inner = self.inner.lock();
        if inner.free == 0 {
            return None;
        }
        let cap = self.cap(&inner);
        let me = inner.datasets.get(dataset)?;
        if me.running >= cap {
            return None;
        }
        let rank = me.rank();
        let someone_first = inner.datasets.iter().any(|(name, u)| {
            name != dataset && u.waiting > 0 && u.running < cap && u.rank() > rank
        });
        if someone_first {
            return None;
        }
        inner.free -= 1;
        if let Some(u) = inner.datasets.get_mut(dataset) {
            u.waiting -= 1;
            u.running += 1;
        }
        Some(inner.free)
    }

    fn release(&self, dataset: &str) {
        {
            let mut inner = self.inner.lock();
            inner.free += 1;
            if let Some(u) = inner.datasets.get_mut(dataset) {
                u.running = u.running.saturating_sub(1);
            }
        }
        self.freed.notify_waiters();
    }

    fn withdraw(&self, dataset: &str) {
        if let Some(u) = self.inner.lock().datasets.get_mut(dataset) {
            u.waiting = u.waiting.saturating_sub(1);
        }
        // The caps of the others may have grown.
        self.freed.notify_waiters();
    }

    /// What one segment of `dataset` tells the slots about the objects it has left; its share of the
    /// dataset's backlog is withdrawn when it is dropped.
    pub fn backlog(self: &Arc<Self>, dataset: &str) -> Backlog {
        Backlog {
            slots: self.clone(),
            dataset: dataset.to_string(),
            said: 0.0,
            unstarted: 0.0,
        }
    }

    fn estimate(&self, dataset: &str, old: f64, new: f64) {
        if let Some(u) = self.inner.lock().datasets.get_mut(dataset) {
            u.backlog = (u.backlog + new - old).max(0.0);
        }
    }

    fn unstarted(&self, dataset: &str, old: f64, new: f64) {
        let mut inner = self.inner.lock();
        let u = inner.datasets.entry(dataset.to_string()).or_default();
        u.unstarted_span = (u.unstarted_span + new - old).max(0.0);
    }

    fn read(&self, dataset: &str, objects: f64, span: f64) {
        if let Some(u) = self.inner.lock().datasets.get_mut(dataset) {
            u.read_objects += objects;
            u.read_span += span;
        }
    }

    /// Whether a new segment of `dataset` would be worth starting: the dataset is under its cap and
    /// nothing waits for it yet, and either a slot is free that nobody waits for or the dataset ranks
    /// before every dataset waiting (so the new segment takes the next slot that frees).
    pub fn spare(&self, dataset: &str) -> bool {
        let inner = self.inner.lock();
        let Some(mine) = inner.datasets.get(dataset) else {
            return false;
        };
        let cap = self.cap(&inner);
        if mine.running >= cap || mine.waiting > 0 {
            return false;
        }
        let waiting: usize = inner.datasets.values().map(|u| u.waiting).sum();
        let first = inner
            .datasets
            .values()
            .filter(|u| u.waiting > 0 && u.running < cap)
            .all(|u| u.rank() < mine.rank());
        inner.free > waiting || first
    }

    /// Whether a running segment of `dataset` should hand its slot back and wait for the next: a
    /// waiting dataset under its cap has none, or would still have clearly more objects left per slot
    /// than `dataset` with one slot fewer. Segments hold their slot from page to page, so without this
    /// the slots stay where the run's start put them: a rate-limited account shares its requests by
    /// slots held, and the largest lists, given no more slots than the others, ran alone at the end
    /// (measured: customers and balance transactions the last 25 s of a 125 s backfill, each at its
    /// endpoint's limit). A dataset keeps at least one slot.
    pub fn should_yield(&self, dataset: &str) -> bool {
        let inner = self.inner.lock();
        let Some(mine) = inner.datasets.get(dataset) else {
            return false;
        };
        if mine.running <= 1 {
            return false;
        }
        let cap = self.cap(&inner);
        let mine_after = mine.left() / mine.running as f64;
        inner.datasets.iter().any(|(name, u)| {
            name != dataset
                && u.waiting > 0
                && u.running < cap
                && (u.running == 0 || u.left() / (u.running + 1) as f64 > YIELD_MARGIN * mine_after)
        })
    }

    /// The most one dataset may hold now.
    fn cap(&self, inner: &Inner) -> usize {
        let wanting = inner
            .datasets
            .values()
            .filter(|u| u.waiting > 0 || u.running > 0)
            .count()
            .max(1);
        self.share.max(self.total.div_ceil(wanting))
    }

    /// Slots held by `dataset` now.
    pub fn running(&self, dataset: &str) -> usize {
        self.inner
            .lock()
            .datasets
            .get(dataset)
            .map_or(0, |u| u.running)
    }
}

/// One segment's estimate of the objects it has left (see [`Slots::backlog`]).
#[derive(Debug)]
pub struct Backlog {
    slots: Arc<Slots>,
    dataset: String,
    said: f64,
    unstarted: f64,
}

impl Backlog {
    /// The objects the segment has left, once it has read a page (its unstarted window withdrawn).
    pub fn set(&mut self, objects: f64) {
        self.slots.estimate(&self.dataset, self.said, objects);
        self.said = objects;
        self.unstarted(0.0);
    }

    /// The `created` seconds the segment covers before it has read a page.
    pub fn unstarted(&mut self, span: f64) {
        self.slots.unstarted(&self.dataset, self.unstarted, span);
        self.unstarted = span;
    }

    /// A page's objects and the `created` seconds it covered: the dataset's density.
    pub fn read(&self, objects: f64, span: f64) {
        self.slots.read(&self.dataset, objects, span);
    }
}

impl Drop for Backlog {
    fn drop(&mut self) {
        self.set(0.0);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.release(&self.dataset);
    }
}

struct Pending<'a> {
    slots: &'a Slots,
    dataset: &'a str,
    armed: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.slots.withdraw(self.dataset);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Starts `n` waiters for `dataset` that keep their slot; returns their handles.
    fn waiters(
        slots: &Arc<Slots>,
        dataset: &'static str,
        n: usize,
    ) -> Vec<tokio::task::JoinHandle<Slot>> {
        (0..n)
            .map(|_| {
                let slots = slots.clone();
                tokio::spawn(async move { slots.acquire(dataset).await })
            })
            .collect()
    }

    /// A slot for each of `datasets`, in order.
    async fn hold(slots: &Arc<Slots>, datasets: &[&str]) -> Vec<Slot> {
        let mut held = Vec::new();
        for d in datasets {
            held.push(slots.acquire(d).await);
        }
        held
    }

    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    #[tokio::test]
    async fn a_dataset_alone_gets_every_slot() {
        let slots = Slots::new(8, 0.25);
        let held = waiters(&slots, "charges", 12);
        settle().await;
        assert_eq!(slots.running("charges"), 8);
        drop(held);
    }

    #[tokio::test]
    async fn the_first_dataset_cannot_take_the_slots_of_the_others() {
        // 40 slots, a live account: one endpoint's share is 10 (12.5 with headroom → 13).
        let slots = Slots::new(40, 0.25);
        // Alone, it has them all …
        let mut first = Vec::new();
        for _ in 0..40 {
            first.push(slots.acquire("charges").await);
        }
        let more = waiters(&slots, "charges", 8);
        settle().await;
        assert_eq!(slots.running("charges"), 40);
        // … and as its segments end, the slots go to the datasets that came later.
        let others: Vec<_> = ["customers", "payment_intents", "balance_transactions"]
            .into_iter()
            .flat_map(|d| waiters(&slots, d, 32))
            .collect();
        settle().await;
        first.truncate(0);
        settle().await;
        for d in ["customers", "payment_intents", "balance_transactions"] {
            assert!(slots.running(d) >= 9, "{d}: {} slots", slots.running(d));
        }
        assert!(slots.running("charges") <= 13);
        let total: usize = [
            "charges",
            "customers",
            "payment_intents",
            "balance_transactions",
        ]
        .iter()
        .map(|d| slots.running(d))
        .sum();
        assert_eq!(total, 40);
        drop((more, others));
    }

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_dataset_holding_the_fewest() {
        let slots = Slots::new(4, 1.0);
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(slots.acquire("a").await);
        }
        held.push(slots.acquire("b").await);
        let waiting_a = waiters(&slots, "a", 1);
        let waiting_c = waiters(&slots, "c", 1);
        settle().await;
        assert_eq!(slots.running("c"), 0);
        held.remove(0);
        settle().await;
        assert_eq!(slots.running("c"), 1, "c holds none, a holds 2");
        assert_eq!(slots.running("a"), 2);
        drop((waiting_a, waiting_c));
    }

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_largest_backlog_per_slot() {
        let slots = Slots::new(4, 1.0);
        let mut held = Vec::new();
        for d in ["small", "small", "large", "large"] {
            held.push(slots.acquire(d).await);
        }
        let mut small = slots.backlog("small");
        small.set(100.0);
        let mut large = slots.backlog("large");
        large.set(10_000.0);
        let waiting = [waiters(&slots, "small", 1), waiters(&slots, "large", 1)];
        settle().await;
        held.remove(0);
        settle().await;
        assert_eq!(slots.running("large"), 3);
        assert_eq!(slots.running("small"), 1);
        // A backlog leaves with the segment that reported it.
        drop(large);
        assert_eq!(slots.inner.lock().datasets["large"].backlog, 0.0);
        drop((waiting, small));
    }

    /// A segment that has not read a page counts its window at the density the dataset's pages have
    /// shown: a dataset with one segment running and many waiting is not mistaken for a small one.
    #[tokio::test]
    async fn segments_waiting_for_a_slot_count_at_their_datasets_density() {
        let slots = Slots::new(4, 1.0);
        let held = hold(&slots, &["small", "small", "small", "large"]).await;
        let mut small = slots.backlog("small");
        small.set(3_000.0);
        let mut large = slots.backlog("large");
        // 1,000 objects over 100 seconds of `created` so far; 500 left in the running segment.
        large.read(1_000.0, 100.0);
        large.set(500.0);
        // Three split-off segments wait, 1,000 seconds each: 30,000 objects at 10 a second.
        let mut queued: Vec<Backlog> = (0..3).map(|_| slots.backlog("large")).collect();
        for q in &mut queued {
            q.unstarted(1_000.0);
        }
        let waiting = waiters(&slots, "large", 3);
        settle().await;
        let left = slots.inner.lock().datasets["large"].left();
        assert_eq!(left, 30_500.0);
        // 30,500 over 2 slots against 3,000 over 2: small hands one over.
        assert!(slots.should_yield("small"));
        // A segment's window leaves the estimate once it reads its first page.
        queued[0].set(9_000.0);
        assert_eq!(slots.inner.lock().datasets["large"].left(), 29_500.0);
        drop(queued);
        assert_eq!(slots.inner.lock().datasets["large"].left(), 500.0);
        drop((waiting, held, small, large));
    }

    #[tokio::test]
    async fn a_running_segment_yields_to_a_dataset_with_far_more_left_per_slot() {
        let slots = Slots::new(4, 1.0);
        let mut held = hold(&slots, &["small", "small", "small", "large"]).await;
        let mut small = slots.backlog("small");
        let mut large = slots.backlog("large");
        small.set(3_000.0);
        large.set(2_000.0);
        // Nobody waits: keep the slot.
        assert!(!slots.should_yield("small"));
        let waiting = waiters(&slots, "large", 1);
        settle().await;
        // 1,000 a slot each way (3,000 over 3 against 2,000 over 1 + 1): not worth a hand-over.
        assert!(!slots.should_yield("small"));
        large.set(30_000.0);
        assert!(slots.should_yield("small"));
        assert!(!slots.should_yield("large"), "the waiter's own dataset");
        // Handing over: the slot goes to the waiter, not back to the one that yielded.
        held.remove(0);
        let again = {
            let slots = slots.clone();
            tokio::spawn(async move { slots.acquire("small").await })
        };
        settle().await;
        assert_eq!((slots.running("large"), slots.running("small")), (2, 2));
        // A dataset keeps one slot whatever waits.
        drop(held.drain(..2));
        settle().await;
        assert_eq!(slots.running("small"), 1);
        assert!(!slots.should_yield("small"));
        drop((waiting, again, small, large));
    }

    #[tokio::test]
    async fn a_cancelled_wait_gives_up_its_turn() {
        let slots = Slots::new(1, 1.0);
        let held = slots.acquire("a").await;
        let cancelled = waiters(&slots, "b", 1);
        settle().await;
        cancelled[0].abort();
        settle().await;
        assert_eq!(slots.inner.lock().datasets["b"].waiting, 0);
        drop(held);
        let again = tokio::time::timeout(Duration::from_secs(5), slots.acquire("a")).await;
        assert!(again.is_ok());
    }
}
