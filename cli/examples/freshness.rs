//! Freshness benchmark: the delay from a change in Stripe to its row in DuckDB, polled or pushed.
//!
//! Polled (the default): `stripe-pipeline sync` runs once a minute, as a scheduler would run it. The
//! simulator runs in real time in this process (one live account, every dataset). A customer is updated
//! every 15 s; after each sync the bench reads `stripe.customers_metadata` and records, for every change
//! that arrived, the time from the change to the end of the sync that loaded it.
//!
//! Pushed (`--push`): `stripe-pipeline serve-webhooks` runs, and the simulator pushes each event to it as
//! a signed webhook when it happens. A different customer is updated every `--every-ms` (default 2,000);
//! the delay of a change is the time until serve-webhooks reports (its debug log, written once a
//! batch is in DuckDB) a batch holding that customer. At the end the bench stops serve-webhooks and
//! checks in DuckDB that every change reported is there, so the log cannot claim what the tables lack.
//!
//! ```sh
//! cargo build --workspace --examples
//! $CARGO_TARGET_DIR/debug/examples/freshness --minutes 10
//! $CARGO_TARGET_DIR/debug/examples/freshness --push --minutes 3
//! ```
//! (An example rather than a `cargo bench` target: benches build in release, and an optimised DuckDB
//! takes hours to compile on the project's machine. The delay is dominated by the lag and the schedule,
//! not by the build.)

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use stripe_pipeline::warehouse::duckdb::DuckDb;
use stripe_pipeline_testkit::bench::{
    arg, assert_customers_current, change_customers_in_turn, delays, distribution, percentile,
    REVISIONS_SQL,
};
use stripe_sim::SimConfig;

const PERIOD: Duration = Duration::from_secs(60);
const CHANGE_EVERY: Duration = Duration::from_secs(15);

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

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--push") {
        return pushed(arg("--minutes", 3), arg("--every-ms", 2000)).await;
    }
    let minutes = arg("--minutes", 10);
    let (sim, out, config) = setup().await;
    let account = sim.info().accounts[0].id.clone();
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

/// The simulator and a configuration for one live account in a new directory: `(sim, dir, config)`.
async fn setup() -> (stripe_sim::RunningSim, tempfile::TempDir, PathBuf) {
    let sim = stripe_sim::start(SimConfig {
        only: Some((0, true)),
        ..SimConfig::tiny()
    })
    .await
    .expect("simulator");
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
    (sim, out, config)
}

/// `--push`: serve-webhooks fed by the simulator's signed pushes.
async fn pushed(minutes: u64, every_ms: u64) {
    use std::io::BufRead;
    use std::sync::{Arc, Mutex};
    use stripe_sim::push::{PushConfig, Target};
    const SECRET: &str = "whsec_freshness_bench_0123456789";
    let (sim, out, config) = setup().await;
    let account = sim.info().accounts[0].id.clone();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    // The backfill first; then serve-webhooks with pushes alone (no whole sync of its own).
    let backfill = tokio::task::spawn_blocking({
        let config = config.clone();
        move || sync(&config)
    })
    .await
    .expect("backfill");
    println!("backfill: {:.1} s", backfill.as_secs_f64());
    let started = Instant::now();
    let mut child = Command::new(cli_binary())
        .args(["serve-webhooks", "--sync-every", "0", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--config")
        .arg(&config)
        .env("STRIPE_PIPELINE_WEBHOOK_SECRET", SECRET)
        .env("STRIPE_PIPELINE_LOG", "stripe_pipeline::webhooks=debug")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run stripe-pipeline serve-webhooks");
    // Every line of both streams, with when it was read.
    let lines: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    for stream in [
        stdout.map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        stderr.map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stream)
                .lines()
                .map_while(Result::ok)
            {
                if let Ok(mut l) = lines.lock() {
                    l.push((Instant::now(), line));
                }
            }
        });
    }
    let seen = |what: &str| {
        lines
            .lock()
            .map(|l| l.iter().any(|(_, line)| line.contains(what)))
            .unwrap_or(false)
    };
    while !seen("Receiving Stripe's webhooks") {
        let exited = child.try_wait().ok().flatten();
        if exited.is_some() || started.elapsed() > Duration::from_secs(300) {
            let output: Vec<String> = lines
                .lock()
                .map(|l| l.iter().map(|(_, line)| line.clone()).collect())
                .unwrap_or_default();
            panic!(
                "serve-webhooks did not start (exit: {exited:?}):\n{}",
                output.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "serve-webhooks listening after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    sim.sim().set_pushes(PushConfig {
        targets: vec![Target::Webhook {
            account: account.clone(),
            livemode: Some(true),
            url: format!("http://127.0.0.1:{port}/webhooks/bench"),
            secret: SECRET.into(),
        }],
        ..PushConfig::default()
    });
    let changes = change_customers_in_turn(&sim, &account, minutes, every_ms).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let _ = child.kill();
    let _ = child.wait();
    // When each batch was in DuckDB, and the objects it held (serve-webhooks' debug line).
    let applied: Vec<(Instant, Vec<String>)> = lines
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, l)| l.contains("pushed events applied"))
        .map(|(when, l)| {
            let objects = l.split("objects=").nth(1).unwrap_or_default();
            let ids = objects.split([',', ' ']).map(str::to_string).collect();
            (when, ids)
        })
        .collect();
    let (mut secs, missing) = delays(&changes, &applied);
    // The tables hold every change the log reported, and the rest.
    let db = DuckDb::open(&out.path().join("stripe_pipeline.duckdb")).expect("duckdb");
    assert_customers_current(
        &sim,
        &account,
        &changes,
        db.query_strings(REVISIONS_SQL).expect("query"),
    );
    println!(
        "{} changes, one every {every_ms} ms; {} batches applied; not reported applied: {missing}",
        changes.len(),
        applied.len(),
    );
    match distribution(&mut secs) {
        Some(d) => println!("delay change → row in DuckDB (pushed): {d}"),
        None => println!("no change arrived"),
    }
}
