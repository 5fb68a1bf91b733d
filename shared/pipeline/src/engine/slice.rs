//! One slice, as both deployments run it: a Lambda worker per SQS message, local mode per entry of its
//! in-process queue ([`super::queue`]). Under the slice's lease: the tables prepared, then the change
//! feed or one dataset's list; afterwards the operators are told what they must know ([`announce`]).

use super::context::Context;
use super::deliver::{self, Written};
use super::error::SyncError;
use super::feed;
use super::list::{self, Listed};
use super::plan::{list_work, ListKind, SliceOutcome, SliceWork};
use super::plan::{LEASE_SECS, SLICE_LEASE_GRACE_SECS};
use super::report::AccountReport;
use super::resolve::Resolved;
use crate::catalog::Dataset;
use crate::lake::LakeFile;
use crate::state::{DatasetState, Lease, StateError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// How a slice ran.
#[derive(Debug)]
pub struct SliceRun {
    pub outcome: SliceOutcome,
    /// What the slice did, with every error as text (for the summary and the manifests).
    pub report: AccountReport,
    /// What failed in it, typed: the caller decides with [`SyncError::retryable`] whether running it
    /// again can help. `None` when everything the slice did is committed.
    pub failure: Option<SyncError>,
    /// The Parquet files it wrote.
    pub files: Vec<LakeFile>,
}

/// Runs one slice under its lease, then announces how it went. `Err` means it could not run at all
/// (another run holds its lease, the state store failed, the slice names a dataset the account does
/// not sync).
pub(super) async fn run(
    cx: &Arc<Context>,
    r: &Resolved,
    datasets: &[&'static Dataset],
    work: &SliceWork,
) -> Result<SliceRun, SyncError> {
    // A function that is killed at its deadline never releases its lease: let it expire shortly
    // after that deadline, so the next attempt is not held up for long.
    let ttl = cx.deadline.map_or(LEASE_SECS, |d| {
        d.saturating_duration_since(Instant::now()).as_secs() as i64 + SLICE_LEASE_GRACE_SECS
    });
    let result = match acquire(cx, r, work, ttl).await {
        Ok(lease) => {
            // A connected account delivers with the others running now (`super::cohort`).
            let member = r.connected.as_ref().map(|_| cx.cohort.join(r));
            let result = leased(cx, r, datasets, work).await;
            drop(member);
            cx.state.release(&lease).await;
            result
        }
        Err(e) => Err(e.into()),
    };
    announce(cx, r, datasets, work, &result).await;
    result
}

/// How long a push slice waits for its lease when another push of the same account-mode holds it.
const PUSH_LEASE_WAIT: Duration = Duration::from_secs(30);

/// Takes the slice's lease. Pushed batches of one account-mode can reach two workers at once (the
/// push queue hands out batches in parallel); a push slice takes seconds, so the second waits its
/// turn, polling, rather than failing and walking its messages towards the dead-letter queue. Other
/// slices fail at once: their work is planned again.
async fn acquire(
    cx: &Context,
    r: &Resolved,
    work: &SliceWork,
    ttl: i64,
) -> Result<Lease, StateError> {
    let give_up = Instant::now()
        + cx.deadline.map_or(PUSH_LEASE_WAIT, |d| {
            d.saturating_duration_since(Instant::now())
                .min(PUSH_LEASE_WAIT)
        });
    loop {
        match cx.state.acquire(&r.key(work.name()), &cx.run_id, ttl).await {
            Err(StateError::Leased { .. })
                if matches!(work, SliceWork::Push { .. }) && Instant::now() < give_up =>
            {
                tokio::time::sleep(Duration::from_millis(200 + fastrand::u64(0..300))).await;
            }
            other => return other,
        }
    }
}

async fn leased(
    cx: &Arc<Context>,
    r: &Resolved,
    datasets: &[&'static Dataset],
    work: &SliceWork,
) -> Result<SliceRun, SyncError> {
    let files: Written = Arc::new(Mutex::new(Vec::new()));
    let (outcome, report, failure) = match work {
        SliceWork::Feed => {
            let mut report = AccountReport::empty(r, datasets);
            deliver::prepare_tables(cx, r, datasets, &mut report).await?;
            let (outcome, failure) = feed::run(cx, r, datasets, &files, &mut report).await?;
            (outcome, report, failure)
        }
        SliceWork::Push { events } => {
            let mut report = AccountReport::empty(r, datasets);
            feed::start_if_new(cx, r).await?;
            deliver::prepare_tables(cx, r, datasets, &mut report).await?;
            let failure = feed::push(cx, r, datasets, events.clone(), &files, &mut report).await?;
            (SliceOutcome::Done, report, failure)
        }
        SliceWork::List { dataset } => {
            let d: &'static Dataset = datasets
                .iter()
                .copied()
                .find(|d| d.name == *dataset)
                .ok_or_else(|| {
                    r.config_error(format!(
                        "a slice names dataset '{dataset}', which this account does not sync; add it to the account's datasets or drop the message"
                    ))
                })?;
            let mut report = AccountReport::empty(r, &[d]);
            feed::start_if_new(cx, r).await?;
            deliver::prepare_tables(cx, r, &[d], &mut report).await?;
            let state: DatasetState = cx.state.get(&r.key(&d.name)).await?.value;
            match list_work(&state, d, r.server_time, &cx.incremental) {
                None => (SliceOutcome::Done, report, None),
                Some(kind) => {
                    let result = list::run(cx, r, d, kind, &files, &cx.slots(r)).await;
                    let entry = &mut report.datasets[0];
                    entry.list = Some(kind);
                    match result {
                        Ok(Listed::Objects(objects)) => {
                            entry.objects = objects;
                            (SliceOutcome::Done, report, None)
                        }
                        Ok(Listed::NotEnabled(message)) => {
                            entry.not_enabled = Some(message);
                            (SliceOutcome::Done, report, None)
                        }
                        Err(SyncError::Deadline) => (SliceOutcome::Paused, report, None),
                        Err(e) => {
                            entry.error = Some(e.to_string());
                            (SliceOutcome::Done, report, Some(e))
                        }
                    }
                }
            }
        }
    };
    let files = files.lock().await.clone();
    Ok(SliceRun {
        outcome,
        report,
        failure,
        files,
    })
}

/// Tells the operators (when the engine has [`crate::notify::Alerts`]) what a slice's end means: a
/// failure (announced once per incident; at once when retrying cannot help), a recovery, the 30-day
/// cliff, new warehouse columns, and the account's first full load. A held lease is no news: another
/// run is doing the work.
async fn announce(
    cx: &Context,
    r: &Resolved,
    datasets: &[&'static Dataset],
    work: &SliceWork,
    result: &Result<SliceRun, SyncError>,
) {
    let Some(alerts) = &cx.alerts else {
        return;
    };
    let (scope, name, what) = (r.scope(), r.account.name.as_str(), work.name());
    let run = match result {
        Ok(run) => run,
        Err(SyncError::State(StateError::Leased { .. })) => return,
        Err(e) => {
            alerts
                .failed(&scope, name, what, &e.to_string(), !e.retryable())
                .await;
            return;
        }
    };
    if let Some(warning) = &run.report.feed.warning {
        alerts.retention_cliff(name, warning).await;
    }
    if !run.report.columns_added.is_empty() {
        alerts.columns_added(name, &run.report.columns_added).await;
    }
    if run.outcome == SliceOutcome::Paused {
        return;
    }
    if let Some(e) = &run.failure {
        alerts
            .failed(&scope, name, what, &e.to_string(), !e.retryable())
            .await;
        return;
    }
    alerts.succeeded(&scope, name, what).await;
    let listed = run.report.datasets.first().and_then(|d| d.list);
    // The first load of the platform is news; that of each of its (maybe thousands of) connected
    // accounts is not.
    if r.connected.is_none()
        && matches!(work, SliceWork::List { .. })
        && matches!(listed, Some(ListKind::Backfill | ListKind::Resume))
        && all_loaded(cx, r, datasets).await
    {
        alerts.first_load_done(&scope, name, datasets.len()).await;
    }
}

/// Whether every dataset of the account has completed a full list, or found that the account does not
/// use its product (a state read that fails counts as not yet: the announcement comes with a later
/// slice).
async fn all_loaded(cx: &Context, r: &Resolved, datasets: &[&'static Dataset]) -> bool {
    for d in datasets {
        match cx.state.get::<DatasetState>(&r.key(&d.name)).await {
            Ok(st)
                if st.value.backfill.as_ref().is_some_and(|b| b.complete())
                    || st.value.not_enabled.is_some() => {}
            _ => return false,
        }
    }
    true
}
