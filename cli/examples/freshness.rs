//! Freshness benchmark: the delay from a change in Stripe to its row in DuckDB when `stripe-pipeline sync`
//! runs once a minute, as a scheduler would run it.
//!
//! The simulator runs in real time in this process (one live account, every dataset). A customer is
//! updated every 15 s; after each sync the bench reads `stripe.customers_metadata` and records, for every
//! change that arrived, the time from the change to the end of the sync that loaded it.
//!
//! ```sh
//! cargo build --workspace --examples
//! $CARGO_TARGET_DIR/debug/examples/freshness --minutes 10
//! ```
//! (An example rather than a `cargo bench` target: benches build in release, and an optimised DuckDB
//! takes hours to compile on the project's machine. The delay is dominated by the lag and the schedule,
//! not by the build.)

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use stripe_pipeline::warehouse::duckdb::DuckDb;
use stripe_sim::SimConfig;

const PERIOD: Duration = Duration::from_secs(60);
const CHANGE_EVERY: Duration = Duration::from_secs(15);

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `stripe-pipeline` binary next to this example's directory.
fn cli_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    let dir = exe.parent().and_then(|p| p.parent()).expect("target dir");
    dir.join("stripe-pipeline")
}

fn sync(config: &std::path::Path) -> Duration {
    let started = Instant::now();
    let status = Command::new(cli_binary())
        .args(["sync", "--quiet", "--config"])
        .arg(config)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run stripe-pipeline");
    assert!(status.success(), "sync failed");
    started.elapsed()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let minutes = arg("--minutes", 10);
    let sim = stripe_sim::start(SimConfig {
        only: Some((0, true)),
        ..SimConfig::tiny()
    })
    .await
    .expect("simulator");
    let account = sim.info().accounts[0].id.clone();
    let key = sim.info().key("secret", "live", 0).expect("a live key");
    let out = tempfile::tempdir().expect("output dir");
    let config = out.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "output_dir = {:?}\napi_base = {:?}\n\n[[accounts]]\nname = \"bench\"\nkey = \"{key}\"\n",
            out.path().display().to_string(),
            sim.base_url()
        ),
    )
    .expect("config");
    let first = tokio::task::spawn_blocking({
        let config = config.clone();
        move || sync(&config)
    })
    .await
    .expect("backfill");
    println!("backfill: {:.1} s", first.as_secs_f64());

    // Changes: (customer, revision, when).
    let pending = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, u64, Instant)>::new()));
    let changer = {
        let (sim, pending, account) = (sim.sim().clone(), pending.clone(), account.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(CHANGE_EVERY).await;
                let Ok(ids) = sim.update(&account, true, "customers", 1, &[]) else {
                    continue;
                };
                let truth = sim.truth(&account, true, "customers").unwrap_or_default();
                for id in ids {
                    let rev = truth
                        .iter()
                        .find(|t| t["id"] == id.as_str())
                        .and_then(|t| t["object"]["metadata"]["sim_revision"].as_str())
                        .and_then(|r| r.parse().ok())
                        .unwrap_or(0);
                    if let Ok(mut p) = pending.lock() {
                        p.push((id, rev, Instant::now()));
                    }
                }
            }
        })
    };

    let mut delays = Vec::new();
    let mut runs = Vec::new();
    let end = Instant::now() + Duration::from_secs(minutes * 60);
    while Instant::now() < end {
        let tick = Instant::now();
        let took = tokio::task::spawn_blocking({
            let config = config.clone();
            move || sync(&config)
        })
        .await
        .expect("sync");
        runs.push(took.as_secs_f64());
        let db = DuckDb::open(&out.path().join("stripe_pipeline.duckdb")).expect("duckdb");
        let rows = db
            .query_strings("SELECT customer_id, value FROM stripe.customers_metadata WHERE key = 'sim_revision'")
            .expect("query");
        drop(db);
        let loaded: std::collections::HashMap<String, u64> = rows
            .into_iter()
            .filter_map(|r| Some((r[0].clone()?, r[1].clone()?.parse().ok()?)))
            .collect();
        let now = Instant::now();
        pending
            .lock()
            .expect("pending changes")
            .retain(|(id, rev, at)| {
                if loaded.get(id).is_some_and(|l| l >= rev) {
                    delays.push(now.duration_since(*at).as_secs_f64());
                    false
                } else {
                    true
                }
            });
        tokio::time::sleep(PERIOD.saturating_sub(tick.elapsed())).await;
    }
    changer.abort();
    delays.sort_by(|a, b| a.total_cmp(b));
    runs.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{} incremental runs, duration median {:.1} s, max {:.1} s",
        runs.len(),
        percentile(&runs, 0.5),
        percentile(&runs, 1.0)
    );
    if delays.is_empty() {
        println!("no change arrived");
        return;
    }
    println!(
        "{} changes arrived (still pending at the end: {}); delay change → row in DuckDB: min {:.0} s, median {:.0} s, p90 {:.0} s, max {:.0} s",
        delays.len(),
        pending.lock().map(|p| p.len()).unwrap_or(0),
        delays[0],
        percentile(&delays, 0.5),
        percentile(&delays, 0.9),
        percentile(&delays, 1.0)
    );
}
