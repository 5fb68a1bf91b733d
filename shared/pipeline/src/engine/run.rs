//! [`Engine`], over the ports it is built with ([`EngineBuilder`]): one slice, as a Lambda worker runs
//! it ([`super::slice`]), or a whole sync of every account in parallel, as local mode runs it: the same
//! slices, through an in-process queue ([`super::queue`]).

use super::context::{Context, SharedWarehouse};
use super::error::SyncError;
use super::plan::SliceWork;
use super::queue;
use super::report::{AccountReport, Progress, Quiet, SyncReport};
use super::resolve::{self, Resolved};
use super::slice::{self, SliceRun};
use crate::catalog::Dataset;
use crate::changes::Event;
use crate::clock::{self, Clock};
use crate::config::Incremental;
use crate::lake::{Lake, LakeFile};
use crate::notify::Alerts;
use crate::push;
use crate::state::StateStore;
use crate::stripe::StripeClient;
use crate::warehouse::{LakeOnly, Warehouse};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// The sync engine over its ports. Build it with [`Engine::builder`].
pub struct Engine {
    cx: Arc<Context>,
}

/// Builds an [`Engine`]: the three ports every run needs are arguments, the rest has defaults (no
/// warehouse, the system clock, no progress, 8 segments per account, default incremental settings, no
/// deadline).
pub struct EngineBuilder {
    client: StripeClient,
    lake: Lake,
    state: StateStore,
    warehouse: Option<SharedWarehouse>,
    clock: Arc<dyn Clock>,
    progress: Arc<dyn Progress>,
    concurrency: usize,
    incremental: Incremental,
    run_id: Option<String>,
    deadline: Option<Instant>,
    alerts: Option<Arc<Alerts>>,
}

impl EngineBuilder {
    /// The warehouse loads go to (default: none, the lake is the output).
    pub fn warehouse(mut self, warehouse: Box<dyn Warehouse>) -> Self {
        self.warehouse = Some(Arc::from(warehouse));
        self
    }

    /// A warehouse already shared with other engines of the process (one connection for all).
    pub fn shared_warehouse(mut self, warehouse: SharedWarehouse) -> Self {
        self.warehouse = Some(warehouse);
        self
    }

    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = progress;
        self
    }

    /// Segments in flight per account (at least 1).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    pub fn incremental(mut self, incremental: Incremental) -> Self {
        self.incremental = incremental;
        self
    }

    /// Names this run's files, manifests and leases (default: `run-<unix seconds>`).
    pub fn run_id(mut self, run_id: impl Into<String>) -> Self {
        self.run_id = Some(run_id.into());
        self
    }

    /// Stop listing at this instant; see [`SyncError::Deadline`].
    pub fn deadline(mut self, deadline: Option<Instant>) -> Self {
        self.deadline = deadline;
        self
    }

    /// Tell the operators after each slice: failures, recoveries, the 30-day cliff, new columns, a
    /// first full load (default: nobody; the caller reads the reports).
    pub fn alerts(mut self, alerts: Arc<Alerts>) -> Self {
        self.alerts = Some(alerts);
        self
    }

    pub fn build(self) -> Engine {
        let run_id = self
            .run_id
            .unwrap_or_else(|| format!("run-{}", self.clock.now_secs()));
        Engine {
            cx: Arc::new(Context {
                client: self.client,
                lake: self.lake,
                state: self.state,
                warehouse: self.warehouse.unwrap_or_else(|| Arc::new(LakeOnly)),
                clock: self.clock,
                progress: self.progress,
                concurrency: self.concurrency,
                incremental: self.incremental,
                run_id,
                deadline: self.deadline,
                alerts: self.alerts,
                cohort: Default::default(),
                slots: Default::default(),
            }),
        }
    }
}

impl Engine {
    pub fn builder(client: StripeClient, lake: Lake, state: StateStore) -> EngineBuilder {
        EngineBuilder {
            client,
            lake,
            state,
            warehouse: None,
            clock: clock::system(),
            progress: Arc::new(Quiet),
            concurrency: 8,
            incremental: Incremental::default(),
            run_id: None,
            deadline: None,
            alerts: None,
        }
    }

    pub fn lake(&self) -> &Lake {
        &self.cx.lake
    }

    pub fn state(&self) -> &StateStore {
        &self.cx.state
    }

    /// The Stripe client (its `stats` count this engine's requests).
    pub fn client(&self) -> &StripeClient {
        &self.cx.client
    }

    pub fn run_id(&self) -> &str {
        &self.cx.run_id
    }

    /// Where loads go, for the summary (`DuckDB at …`, `none`).
    pub fn describe_warehouse(&self) -> String {
        self.cx.warehouse.describe()
    }

    /// Syncs `datasets` of every resolved account, and of the connected accounts of those that are
    /// Connect platforms (`connect = true`; found now, [`resolve::connected`]); failures of single
    /// datasets (or of one account's change feed, or a panicked task) are reported, not fatal.
    pub async fn sync(
        &self,
        resolved: &[Resolved],
        datasets: &[&'static Dataset],
    ) -> Result<SyncReport, SyncError> {
        let started = Instant::now();
        let mut all: Vec<Resolved> = resolved.to_vec();
        let mut reports: Vec<Option<AccountReport>> = Vec::new();
        for r in resolved {
            match resolve::connected(&self.cx.client, r).await {
                Ok(connected) => all.extend(connected),
                // The platform's own data still syncs; its report says why its connected accounts' did not.
                Err(e) => {
                    let mut report = AccountReport::empty(r, &[]);
                    report.name = format!("{} (connected accounts)", r.account.name);
                    report.error = Some(format!("could not list the connected accounts: {e}"));
                    reports.push(Some(report));
                }
            }
        }
        // Connected accounts take turns: a platform may have thousands, and each one's slices hold
        // leases and buffers while they run. Their segments share the platform's budget
        // (`Context::slots`) and their requests its rate limit.
        let turns = Arc::new(tokio::sync::Semaphore::new(self.cx.concurrency));
        let mut tasks = tokio::task::JoinSet::new();
        let mut accounts = HashMap::new();
        let first = reports.len();
        for (i, r) in all.iter().enumerate() {
            let (cx, r, datasets) = (self.cx.clone(), r.clone(), r.datasets(datasets));
            let turns = turns.clone();
            let task = tasks.spawn(async move {
                let _turn = match r.connected {
                    Some(_) => turns.acquire_owned().await.ok(),
                    None => None,
                };
                queue::sync_account(&cx, &r, &datasets).await
            });
            accounts.insert(task.id(), first + i);
        }
        reports.resize(first + all.len(), None);
        let mut files = Vec::new();
        while let Some(joined) = tasks.join_next_with_id().await {
            let (i, report) = match joined {
                Ok((id, (report, written))) => {
                    files.extend(written);
                    (accounts[&id], report)
                }
                Err(e) => {
                    // The account's task panicked: it is a failed account, never a missing one.
                    let i = accounts[&e.id()];
                    let r = &all[i - first];
                    let mut report = AccountReport::empty(r, &r.datasets(datasets));
                    report.error = Some(SyncError::joined(&r.account.name, "sync", e).to_string());
                    (i, report)
                }
            };
            reports[i] = Some(report);
        }
        let reports: Vec<AccountReport> = reports.into_iter().flatten().collect();
        self.write_manifests(&files, &reports).await;
        Ok(SyncReport::assemble(
            &self.cx.run_id,
            reports,
            &self.cx.client.stats,
            files,
            started.elapsed(),
        ))
    }

    /// One manifest per mode with files: what the run wrote and what it reported.
    async fn write_manifests(&self, files: &[LakeFile], reports: &[AccountReport]) {
        for livemode in [false, true] {
            let mine: Vec<&LakeFile> = files
                .iter()
                .filter(|f| f.path.starts_with(crate::lake::mode_root(livemode)))
                .collect();
            if mine.is_empty() {
                continue;
            }
            let manifest = serde_json::json!({
                "run_id": self.cx.run_id,
                "finished_at": self.cx.clock.now_secs(),
                "files": mine,
                "accounts": reports.iter().filter(|a| a.livemode == livemode).collect::<Vec<_>>(),
            });
            if let Err(e) = self
                .cx
                .lake
                .write_manifest(livemode, &self.cx.run_id, &manifest)
                .await
            {
                tracing::warn!(error = %e, "could not write the run manifest");
            }
        }
    }

    /// Runs one slice of account-mode `r` under the slice's lease, then tells the operators what they
    /// must know (when the engine has [`Alerts`]). `datasets` are the account's selected datasets (the
    /// feed routes changes to them). An `Err` means the slice could not run at all (lease held, state
    /// store failure, a dataset the account does not sync).
    pub async fn run_slice(
        &self,
        r: &Resolved,
        datasets: &[&'static Dataset],
        work: &SliceWork,
    ) -> Result<SliceRun, SyncError> {
        slice::run(&self.cx, r, &r.datasets(datasets), work).await
    }

    /// Applies events Stripe pushed to the endpoint of one account (`resolved`: its keys, live and
    /// test), as the feed applies the events it reads: grouped by mode and connected account
    /// ([`push::route`]), one push slice each ([`SliceWork::Push`]).
    pub async fn apply_pushed(
        &self,
        resolved: &[Resolved],
        datasets: &[&'static Dataset],
        events: Vec<Event>,
    ) -> PushReport {
        let mut report = PushReport::default();
        for ((livemode, connected), events) in push::route(events) {
            let r = resolved
                .iter()
                .find(|r| r.account.livemode == livemode)
                .and_then(|r| match connected {
                    None => Some(r.clone()),
                    Some(id) if r.account.connect => Some(r.connected(id)),
                    Some(_) => None,
                });
            let Some(r) = r else {
                report.unrouted.extend(events.into_iter().map(|e| e.id));
                continue;
            };
            let work = SliceWork::Push { events };
            report.runs.push(self.run_slice(&r, datasets, &work).await);
        }
        report
    }
}

/// What applying pushed events did.
#[derive(Debug, Default)]
pub struct PushReport {
    /// A push slice per account-mode the events went to.
    pub runs: Vec<Result<SliceRun, SyncError>>,
    /// The ids of events for an account-mode no key of the account reads (a mode without a key; a
    /// connected account of an account not configured with `connect = true`): not applied.
    pub unrouted: Vec<String>,
}
