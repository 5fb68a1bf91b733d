//! What every stage of a run works with: the ports the engine talks through (Stripe, the lake, the state
//! store, the warehouse, the clock, progress) and the run's settings. Built once per run by
//! [`super::EngineBuilder`]; stages borrow it and never reach past it to a concrete backend.

use super::cohort::Cohort;
use super::report::Progress;
use super::resolve::Resolved;
use crate::clock::Clock;
use crate::config::Incremental;
use crate::lake::Lake;
use crate::notify::Alerts;
use crate::slots::Slots;
use crate::state::StateStore;
use crate::stripe::StripeClient;
use crate::warehouse::Warehouse;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// A warehouse shared by the tasks (and engines) of a process; each adapter decides what of its work
/// may run at once.
pub type SharedWarehouse = Arc<dyn Warehouse>;

pub(crate) struct Context {
    pub(crate) client: StripeClient,
    pub(crate) lake: Lake,
    pub(crate) state: StateStore,
    pub(crate) warehouse: SharedWarehouse,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) progress: Arc<dyn Progress>,
    /// Segments in flight per account.
    pub(crate) concurrency: usize,
    pub(crate) incremental: Incremental,
    /// Names this run's files and leases.
    pub(crate) run_id: String,
    /// Stop listing at this instant (a Lambda function's deadline, less a margin): the batch in hand is
    /// delivered and committed, and the list ends with [`super::SyncError::Deadline`] for a
    /// continuation to resume. `None` in local mode.
    pub(crate) deadline: Option<Instant>,
    /// What to tell the operators after each slice (none: the caller reports).
    pub(crate) alerts: Option<Arc<Alerts>>,
    /// The connected accounts' deliveries, made together.
    pub(crate) cohort: Arc<Cohort>,
    /// One budget of segments per account-mode, shared by all its slices in this engine.
    pub(crate) slots: parking_lot::Mutex<HashMap<String, Arc<Slots>>>,
}

impl Context {
    pub(crate) fn past_deadline(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// The segment budget of `r`'s account-mode: the lists of one account (and of a platform's
    /// connected accounts) share it however many of them run at once, which bounds memory and spreads
    /// Stripe's rate limit over endpoints.
    pub(crate) fn slots(&self, r: &Resolved) -> Arc<Slots> {
        self.slots
            .lock()
            .entry(r.budget_scope())
            .or_insert_with(|| Slots::for_account(self.concurrency, r.account.livemode))
            .clone()
    }
}
