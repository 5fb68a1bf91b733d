//! Progress bars: one line per account, counting objects read and datasets finished. A platform's
//! connected accounts (named `<platform>/<acct_…>`) count their objects on the platform's line.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::sync::Mutex;
use stripe_pipeline::engine::Progress;

#[derive(Default)]
struct Counts {
    objects: u64,
    done: usize,
    failed: usize,
}

pub struct BarProgress {
    multi: MultiProgress,
    bars: HashMap<String, ProgressBar>,
    counts: Mutex<HashMap<String, Counts>>,
    datasets: usize,
}

impl BarProgress {
    pub fn new(accounts: &[String], datasets: usize, quiet: bool) -> BarProgress {
        let target = if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let multi = MultiProgress::with_draw_target(target);
        let style =
            ProgressStyle::with_template("{spinner} {prefix:<16} {msg}  [{elapsed_precise}]")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let bars = accounts
            .iter()
            .map(|a| {
                let bar = multi.add(
                    ProgressBar::new_spinner()
                        .with_style(style.clone())
                        .with_prefix(a.clone()),
                );
                bar.enable_steady_tick(std::time::Duration::from_millis(200));
                (a.clone(), bar)
            })
            .collect();
        BarProgress {
            multi,
            bars,
            counts: Mutex::new(HashMap::new()),
            datasets,
        }
    }

    pub fn finish(&self) {
        for bar in self.bars.values() {
            bar.finish();
        }
        let _ = self.multi.clear();
    }

    fn change(&self, account: &str, f: impl FnOnce(&mut Counts)) {
        let Ok(mut counts) = self.counts.lock() else {
            return;
        };
        let account = self.line_of(account);
        let c = counts.entry(account.to_string()).or_default();
        f(c);
        if let Some(bar) = self.bars.get(account) {
            let failed = if c.failed > 0 {
                format!(", {} failed", c.failed)
            } else {
                String::new()
            };
            bar.set_message(format!(
                "{} objects, {}/{} datasets{failed}",
                c.objects, c.done, self.datasets
            ));
        }
    }
}

impl BarProgress {
    /// The line an account's progress shows on: its own, or its platform's.
    fn line_of<'a>(&self, account: &'a str) -> &'a str {
        match account.rsplit_once('/') {
            Some((platform, _)) if !self.bars.contains_key(account) => platform,
            _ => account,
        }
    }
}

impl Progress for BarProgress {
    fn rows(&self, account: &str, _dataset: &str, objects: u64) {
        self.change(account, |c| c.objects += objects);
    }

    fn dataset_done(&self, account: &str, _dataset: &str, error: Option<&str>) {
        // A connected account's datasets are not the platform's: only their failures show there.
        let connected = self.line_of(account) != account;
        self.change(account, |c| {
            if connected {
                c.failed += usize::from(error.is_some());
                return;
            }
            c.done += 1;
            if error.is_some() {
                c.failed += 1;
            }
        });
    }
}
