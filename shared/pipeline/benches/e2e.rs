//! End-to-end backfill benchmark: the simulator (in a child process, so its memory is not counted)
//! serves one live account behind Stripe's limits (100 requests/s per account, 25 per endpoint) with
//! 250 ms latency per request; the engine back-fills every dataset into the Parquet lake, committing
//! state after every batch, with its budget at the full limit. The ceiling is 100 requests/s × 100
//! objects = 10,000 objects/s. The warehouse is left out (`LakeOnly`): the DuckDB load is local mode's
//! concern and its optimised build alone takes longer than this machine's CI budget allows.
//!
//! `cargo bench -p stripe-pipeline --bench e2e -- [--base N] [--concurrency C] [--latency-ms L]
//! [--all | --datasets a,b]`
//!
//! `--base` is the simulator's base count per resource: 178,000 (the default) gives about 1,000,000
//! objects in the default datasets (105,000 about as many across every dataset with `--all`).

mod measure;

use measure::{arg, memory};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stripe_pipeline::catalog::{Catalog, Dataset};
use stripe_pipeline::config::{AccountConfig, Config, Secret};
use stripe_pipeline::engine::{self, Engine, Progress};
use stripe_pipeline::lake::Lake;
use stripe_pipeline::state::LocalState;
use stripe_pipeline::stripe::{Limiter, RetryPolicy, StripeClient};
use stripe_sim::{RateLimits, SimConfig};

/// The simulator's base count per resource: about 1,000,000 objects in the default datasets.
const DEFAULT_BASE: u64 = 178_000;

/// Datasets whose objects embed lists that often take requests of their own to complete (more than
/// 10 lines or items).
const SPILLING: &[&str] = &["invoices", "subscriptions"];

/// Whether a dataset's objects cost requests beyond its list pages, so the ceiling of 100 objects a
/// request does not apply: lists that spill, lists fetched per parent (a setup intent's attempts;
/// lists asked for with the page, `expand`, cost nothing), and lists of one parent at a time (a
/// financial account's transactions: a page per parent, however few its objects).
fn costs_requests_per_object(d: &Dataset) -> bool {
    SPILLING.contains(&d.name.as_str())
        || d.tables.iter().any(|t| t.fetch && !t.expand)
        || d.per_parent.is_some()
}

/// The child: a simulator with data in the first account's live mode only; prints its start info.
async fn serve_simulator() {
    let config = SimConfig {
        objects: arg("--base", DEFAULT_BASE) as usize,
        // Stripe's limits: 100 requests/s per live account, 25 per endpoint.
        rate_limits: RateLimits::default(),
        latency_ms: arg("--latency-ms", 250),
        only: Some((0, true)),
        ..SimConfig::tiny()
    };
    let sim = stripe_sim::start(config).await.expect("simulator");
    println!("{}", serde_json::to_string(sim.info()).expect("info"));
    // Serve until the parent closes our stdin.
    let _ = tokio::task::spawn_blocking(|| std::io::stdin().read_line(&mut String::new())).await;
}

/// Counts objects, and notes when each dataset finished.
struct Counter {
    objects: AtomicU64,
    /// List pages by how full they were: full (100 objects), partial, empty.
    pages: [AtomicU64; 3],
    started: Instant,
    finished: parking_lot::Mutex<Vec<(String, f64)>>,
}

impl Progress for Counter {
    fn rows(&self, _: &str, _: &str, objects: u64) {
        self.objects.fetch_add(objects, Ordering::Relaxed);
        let fill = match objects {
            0 => 2,
            100.. => 0,
            _ => 1,
        };
        self.pages[fill].fetch_add(1, Ordering::Relaxed);
    }
    fn dataset_done(&self, _: &str, dataset: &str, _: Option<&str>) {
        let at = self.started.elapsed().as_secs_f64();
        self.finished.lock().push((dataset.to_string(), at));
    }
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--sim-child") {
        serve_simulator().await;
        return;
    }
    let base = arg("--base", DEFAULT_BASE);
    let concurrency = arg("--concurrency", 40) as usize;
    let latency = arg("--latency-ms", 250);
    eprintln!("starting the simulator (base {base}; generating takes a while)…");
    let exe = std::env::current_exe().expect("own path");
    let mut child = Command::new(exe)
        .args([
            "--sim-child",
            "--base",
            &base.to_string(),
            "--latency-ms",
            &latency.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the simulator");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("simulator start line");
    let info: serde_json::Value = serde_json::from_str(&line).expect("start info");
    let objects_total = info["objects"].as_u64().unwrap_or(0);
    let key = info["keys"]
        .as_array()
        .and_then(|keys| {
            let first = info["accounts"][0]["id"].as_str()?;
            keys.iter()
                .find(|k| k["account"] == first && k["mode"] == "live" && k["kind"] == "secret")
        })
        .and_then(|k| k["key"].as_str())
        .expect("a live secret key")
        .to_string();
    let out = tempfile::Builder::new()
        .prefix("e2e-bench-")
        .tempdir_in(std::env::temp_dir())
        .expect("output dir");
    let cfg = Config {
        output_dir: out.path().to_path_buf(),
        api_base: info["base_url"].as_str().unwrap_or_default().to_string(),
        rate_budget: 1.0,
        concurrency,
        accounts: vec![AccountConfig {
            name: "bench".into(),
            key: Some(Secret::new(key)),
            key_env: None,
            connect: false,
        }],
        ..Config::default()
    };
    let accounts = cfg.accounts(|_| None).expect("accounts");
    let client = StripeClient::new(
        &cfg.api_base,
        Arc::new(Limiter::new(cfg.rate_budget)),
        RetryPolicy::default(),
    );
    let resolved = engine::resolve(&client, &accounts).await.expect("key");
    let counter = Arc::new(Counter {
        objects: AtomicU64::new(0),
        pages: Default::default(),
        started: Instant::now(),
        finished: parking_lot::Mutex::new(Vec::new()),
    });
    let engine = Engine::builder(
        client,
        Lake::local(&cfg.lake_dir()).expect("lake"),
        LocalState::open(&cfg.state_dir()).expect("state").into(),
    )
    .concurrency(concurrency)
    .incremental(cfg.incremental())
    .progress(counter.clone())
    .run_id("bench")
    .build();
    // The ceiling (100 requests/s × 100 objects) holds for lists whose every request returns a
    // full page: by default every dataset listed by `created` whose objects do not embed lists that
    // need requests of their own. `--all` adds invoices and subscriptions (lines beyond the first 10 of
    // an invoice are paged through `/v1/invoices/{id}/lines`, items beyond 10 of a subscription through
    // `/v1/subscription_items`, each one endpoint capped at 25 requests/s) and credit notes (no
    // `created` filter: one page after another); `--datasets a,b` picks them by name.
    let all = std::env::args().any(|a| a == "--all");
    let named = measure::text_arg("--datasets");
    let datasets: Vec<_> = Catalog::get()
        .datasets
        .iter()
        .filter(|d| match &named {
            Some(names) => names.split(',').any(|n| n == d.name),
            None => all || (d.created_filter && !costs_requests_per_object(d)),
        })
        .collect();
    assert!(!datasets.is_empty(), "no dataset selected");
    eprintln!(
        "datasets: {}",
        datasets
            .iter()
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );

    // Sample memory as the backfill goes: (seconds, objects so far, RSS MiB).
    let samples = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let started = Instant::now();
    let sampler = {
        let (samples, counter) = (samples.clone(), counter.clone());
        let stats = engine.client().stats.clone();
        tokio::spawn(async move {
            let mut last = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let n = counter.objects.load(Ordering::Relaxed);
                let requests = stats.requests.load(Ordering::Relaxed);
                samples
                    .lock()
                    .push((started.elapsed().as_secs(), n, memory().0));
                eprintln!(
                    "{:>4} s  {n:>9} objects  {:>4} requests/s  {:>5} MiB",
                    started.elapsed().as_secs(),
                    requests - last,
                    memory().0
                );
                last = requests;
            }
        })
    };
    let report = engine.sync(&resolved, &datasets).await.expect("sync");
    sampler.abort();
    let elapsed = started.elapsed().as_secs_f64();
    let objects: u64 = report
        .accounts
        .iter()
        .flat_map(|a| &a.datasets)
        .map(|d| d.objects)
        .sum();
    let (_, peak) = memory();
    let _ = child.kill();
    let _ = child.wait();
    let failures = report.failures();
    assert!(failures.is_empty(), "datasets failed: {failures:?}");

    let rate = objects as f64 / elapsed;
    println!("## End-to-end backfill");
    println!();
    println!("| measure | result |");
    println!("|---|---|");
    println!("| objects in the simulator's synced account (all resources, embedded ones too) | {objects_total} |");
    println!("| objects back-filled (main tables) | {objects} |");
    println!("| elapsed | {elapsed:.1} s |");
    println!(
        "| throughput | {rate:.0} objects/s ({:.0} % of the 10,000/s ceiling) |",
        rate / 100.0
    );
    println!(
        "| API calls / 429s / retries | {} / {} / {} |",
        report.api_calls, report.rate_limited, report.retries
    );
    println!(
        "| Parquet files | {} ({:.0} MiB) |",
        report.files.len(),
        report.files.iter().map(|f| f.bytes).sum::<usize>() as f64 / 1048576.0
    );
    let pages = counter.pages.each_ref().map(|p| p.load(Ordering::Relaxed));
    println!(
        "| list pages: full / partial / empty | {} / {} / {} |",
        pages[0], pages[1], pages[2]
    );
    let calls: Vec<String> = report
        .calls
        .iter()
        .map(|(kind, n)| format!("{kind:?} {n}"))
        .collect();
    println!("| API calls by kind | {} |", calls.join(", "));
    println!("| peak RSS of the pipeline | {peak} MiB |");
    let samples = samples.lock();
    let at = |fraction: f64| {
        samples
            .iter()
            .find(|(_, n, _)| *n as f64 >= fraction * objects as f64)
            .map(|(s, _, rss)| format!("{rss} MiB at {s} s"))
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "| RSS at 25 / 50 / 75 / 100 % of the objects | {} / {} / {} / {} |",
        at(0.25),
        at(0.5),
        at(0.75),
        at(0.999)
    );
    println!("| concurrency (segments in flight) | {concurrency} |");
    println!();
    println!("| dataset | objects | finished after |");
    println!("|---|---|---|");
    for (dataset, at) in counter.finished.lock().iter() {
        let n = report
            .accounts
            .iter()
            .flat_map(|a| &a.datasets)
            .find(|d| &d.dataset == dataset)
            .map_or(0, |d| d.objects);
        println!("| {dataset} | {n} | {at:.1} s |");
    }
}
