//! `stripe-sim-bench`: how fast the simulator generates data and serves list pages, and how much memory
//! it holds. Results go to BENCHMARKS.md by hand.
//!
//! Usage: `stripe-sim-bench [--profile large] [--seconds 10] [--connections 4] [--limit 100]`

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stripe_sim::{Profile, RateLimits, SimConfig};

#[derive(Debug, Parser)]
struct Args {
    /// Data size: tiny, small, demo or large (about 1,000,000 objects).
    #[arg(long, default_value = "large")]
    profile: String,
    /// How long to measure page serving.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent keep-alive client connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Page size of the list requests.
    #[arg(long, default_value_t = 100)]
    limit: usize,
}

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let profile =
        Profile::parse(&args.profile).ok_or("unknown profile: use tiny, small, demo or large")?;
    let config = SimConfig {
        rate_limits: RateLimits::off(),
        ..SimConfig::tiny().with_profile(profile)
    };
    let started = Instant::now();
    let sim = stripe_sim::start(config).await?;
    let generated = started.elapsed();
    let objects = sim.info().objects;
    println!(
        "generate: {objects} objects in {:.1} s ({:.0} objects/s)",
        generated.as_secs_f64(),
        objects as f64 / generated.as_secs_f64()
    );
    println!(
        "memory after generation: RSS {} MiB, peak {} MiB",
        rss_kib("VmRSS:") / 1024,
        rss_kib("VmHWM:") / 1024
    );

    let key = sim.info().key("secret", "live", 0).ok_or("no key")?;
    let base = sim.base_url();
    let pages = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    let account = sim.info().accounts[0].id.clone();
    for c in 0..args.connections {
        let (key, base, pages, bytes) = (key.clone(), base.clone(), pages.clone(), bytes.clone());
        let resources = ["charges", "customers", "balance_transactions", "invoices"];
        let resource = resources[c % resources.len()];
        // Cursors taken from ground truth, so the client spends no time parsing pages.
        let ids = sim.sim().ids(&account, true, resource)?;
        let limit = args.limit;
        tasks.push(tokio::spawn(async move {
            let client: Client<_, Empty<Bytes>> =
                Client::builder(TokioExecutor::new()).build_http();
            let mut page = 0usize;
            while Instant::now() < deadline {
                let start = (page * limit) % ids.len().max(1);
                page += 1;
                let after = if start == 0 {
                    String::new()
                } else {
                    format!("&starting_after={}", ids[start - 1])
                };
                let req = hyper::Request::get(format!("{base}/v1/{resource}?limit={limit}{after}"))
                    .header("authorization", format!("Bearer {key}"))
                    .body(Empty::new())
                    .expect("request");
                let Ok(resp) = client.request(req).await else {
                    continue;
                };
                let Ok(body) = resp.into_body().collect().await else {
                    continue;
                };
                bytes.fetch_add(body.to_bytes().len() as u64, Ordering::Relaxed);
                pages.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let secs = args.seconds as f64;
    let p = pages.load(Ordering::Relaxed) as f64;
    println!(
        "serve: {:.0} pages/s of {} objects ({:.0} objects/s, {:.0} MB/s) over {} connections",
        p / secs,
        args.limit,
        p * args.limit as f64 / secs,
        bytes.load(Ordering::Relaxed) as f64 / secs / 1e6,
        args.connections
    );
    println!(
        "memory at end: RSS {} MiB, peak {} MiB",
        rss_kib("VmRSS:") / 1024,
        rss_kib("VmHWM:") / 1024
    );
    Ok(())
}
