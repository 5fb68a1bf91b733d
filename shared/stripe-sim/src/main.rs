//! `stripe-sim`: serve a simulated Stripe API until killed.

use clap::Parser;
use std::net::SocketAddr;
use stripe_sim::{EventPolicy, FaultRule, Profile, RateLimits, SimConfig};

/// A stateful Stripe API simulator. Prints one JSON line (base URL, accounts, keys), then serves until
/// killed. See shared/stripe-sim/README.md for the control API.
#[derive(Debug, Parser)]
#[command(name = "stripe-sim", version)]
struct Args {
    /// TCP port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Address to bind instead of 127.0.0.1.
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// Seed of all generated data: same seed, same accounts, keys and objects.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Data size by name: tiny (~1.8k objects), small (~10.5k), demo (~113k), large (~1M).
    #[arg(long, default_value = "small", value_parser = parse_profile)]
    profile: Profile,
    /// Base objects per resource per account and mode; overrides --profile.
    #[arg(long)]
    objects: Option<usize>,
    /// Requests per second per account in live mode (Stripe: 100). 0 switches rate limits off.
    #[arg(long, default_value_t = 100.0)]
    rate_limit: f64,
    /// Requests per second per account in test mode (Stripe: 25).
    #[arg(long, default_value_t = 25.0)]
    test_rate_limit: f64,
    /// Requests per second per account, mode and endpoint (Stripe: about 25).
    #[arg(long, default_value_t = 25.0)]
    endpoint_rate_limit: f64,
    /// Latency added to every API request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// An injected fault, repeatable: KIND:PROBABILITY or KIND:every=N, KIND one of lock_timeout, 500,
    /// 503, drop, truncate, latency=MS. Example: --fault lock_timeout:0.05 --fault 503:every=20
    #[arg(long = "fault", value_parser = FaultRule::parse)]
    faults: Vec<FaultRule>,
    /// Events show in /v1/events only this many seconds after their `created` (eventual consistency).
    #[arg(long, default_value_t = 0)]
    event_delay_secs: i64,
    /// Probability that an event is listed twice.
    #[arg(long, default_value_t = 0.0)]
    event_duplicate_rate: f64,
    /// Simulated time at start, Unix seconds (default 2026-11-01T00:00:00Z, so data is the same every run).
    #[arg(long, default_value_t = stripe_sim::DEFAULT_START)]
    now: i64,
}

fn parse_profile(s: &str) -> Result<Profile, String> {
    Profile::parse(s)
        .ok_or_else(|| format!("unknown profile '{s}': use tiny, small, demo or large"))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let rate_limits = if args.rate_limit <= 0.0 {
        RateLimits::off()
    } else {
        RateLimits {
            enabled: true,
            live_per_sec: args.rate_limit,
            test_per_sec: args.test_rate_limit,
            endpoint_per_sec: args.endpoint_rate_limit,
        }
    };
    let config = SimConfig {
        seed: args.seed,
        objects: args.objects.unwrap_or(args.profile.objects()),
        start: args.now,
        rate_limits,
        latency_ms: args.latency_ms,
        faults: args.faults,
        events: EventPolicy {
            visibility_delay_secs: args.event_delay_secs,
            duplicate_rate: args.event_duplicate_rate,
        },
        only: None,
    };
    let running = stripe_sim::start_on(config, SocketAddr::new(args.host, args.port)).await?;
    println!(
        "{}",
        serde_json::to_string(running.info()).map_err(std::io::Error::other)?
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
