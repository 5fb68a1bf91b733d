//! Local mode's orchestration: the serverless deployment's, in one process. Per account and mode,
//! under the account's lease, the slices are planned as the scheduler plans them ([`super::plan::plan`])
//! and run as a worker runs them ([`super::slice::run`]): the change feed first (it can ask for new
//! lists: a cliff resets the datasets), then every planned list at once, as SQS would deliver them to
//! parallel workers. A paused list goes back in the queue, as a worker's continuation message does.

use super::context::Context;
use super::error::SyncError;
use super::plan::{self, SliceOutcome, SliceWork, LEASE_SECS};
use super::report::{AccountReport, DatasetReport};
use super::resolve::Resolved;
use super::slice::{self, SliceRun};
use crate::catalog::Dataset;
use crate::lake::LakeFile;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::task::JoinSet;

/// One account and mode, under its lease (two local runs never work on the same account at once):
/// its report, and the files its slices wrote.
pub(super) async fn sync_account(
    cx: &Arc<Context>,
    r: &Resolved,
    datasets: &[&'static Dataset],
) -> (AccountReport, Vec<LakeFile>) {
    let mut account = Account {
        report: AccountReport::empty(r, datasets),
        files: Vec::new(),
    };
    match cx.state.acquire(&r.scope(), &cx.run_id, LEASE_SECS).await {
        Ok(lease) => {
            if let Err(e) = account.run(cx, r, datasets).await {
                account.report.error = Some(e.to_string());
            }
            cx.state.release(&lease).await;
        }
        Err(e) => account.report.error = Some(e.to_string()),
    }
    (account.report, account.files)
}

/// What the slices of one account have done so far.
struct Account {
    report: AccountReport,
    files: Vec<LakeFile>,
}

impl Account {
    async fn run(
        &mut self,
        cx: &Arc<Context>,
        r: &Resolved,
        datasets: &[&'static Dataset],
    ) -> Result<(), SyncError> {
        let feed = slice::run(cx, r, datasets, &SliceWork::Feed).await?;
        self.merge_feed(feed);
        let planned = plan::plan(&cx.state, r, datasets, r.server_time, &cx.incremental)
            .await?
            .works;
        let mut lists: Vec<&'static Dataset> = datasets
            .iter()
            .copied()
            .filter(|d| planned.iter().any(|w| w.name() == d.name))
            .collect();
        for d in datasets
            .iter()
            .filter(|d| !lists.iter().any(|l| l.name == d.name))
        {
            cx.progress.dataset_done(&r.account.name, &d.name, None);
        }
        // Lists without a `created` filter can only be paged one page after another: start them first,
        // so they run alongside the segmented ones instead of after them. All share the account's
        // budget of segments (`Context::slots`).
        lists.sort_by_key(|d| d.created_filter);
        let mut tasks = JoinSet::new();
        let mut names = HashMap::new();
        let spawn = |tasks: &mut JoinSet<Result<SliceRun, SyncError>>, d: &'static Dataset| {
            let (cx, r, datasets) = (cx.clone(), r.clone(), datasets.to_vec());
            let work = SliceWork::List {
                dataset: d.name.clone(),
            };
            let task = tasks.spawn(async move { slice::run(&cx, &r, &datasets, &work).await });
            (task.id(), d)
        };
        for d in lists {
            let (id, d) = spawn(&mut tasks, d);
            names.insert(id, d);
        }
        while let Some(joined) = tasks.join_next_with_id().await {
            let (id, result) = match joined {
                Ok((id, result)) => (id, result),
                // A panicked list is a failed dataset in the report (and a non-zero exit).
                Err(e) => {
                    let id = e.id();
                    let d = names[&id];
                    (id, Err(SyncError::joined(&r.account.name, &d.name, e)))
                }
            };
            let d = names[&id];
            let error = match result {
                // Only with a deadline: what it listed is committed, and the same slice goes on.
                Ok(run) if run.outcome == SliceOutcome::Paused => {
                    self.merge_list(d, run);
                    let (id, d) = spawn(&mut tasks, d);
                    names.insert(id, d);
                    continue;
                }
                Ok(run) => {
                    let error = run.failure.as_ref().map(|e| e.to_string());
                    self.merge_list(d, run);
                    error
                }
                Err(e) => {
                    let error = e.to_string();
                    if let Some(entry) = self.dataset(d) {
                        entry.error = Some(error.clone());
                    }
                    Some(error)
                }
            };
            cx.progress
                .dataset_done(&r.account.name, &d.name, error.as_deref());
        }
        Ok(())
    }

    /// The feed slice prepared every table and read the change feed: its report is the account's so far.
    fn merge_feed(&mut self, run: SliceRun) {
        self.report = run.report;
        self.files.extend(run.files);
    }

    fn merge_list(&mut self, d: &Dataset, run: SliceRun) {
        self.report.columns_added.extend(run.report.columns_added);
        let listed = run.report.datasets.into_iter().next();
        if let (Some(listed), Some(entry)) = (listed, self.dataset(d)) {
            entry.list = listed.list;
            entry.objects += listed.objects;
            entry.error = listed.error;
            entry.not_enabled = listed.not_enabled;
        }
        self.files.extend(run.files);
    }

    fn dataset(&mut self, d: &Dataset) -> Option<&mut DatasetReport> {
        self.report
            .datasets
            .iter_mut()
            .find(|e| e.dataset == d.name)
    }
}
