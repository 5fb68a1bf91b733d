//! `--demo`: the built-in Stripe simulator, started in-process with the same demo data on every run.

use stripe_pipeline::config::{AccountConfig, Config, Secret};
use stripe_sim::{AccountKind, Profile, RateLimits, RunningSim, SimConfig};

/// Starts the simulator and points the configuration at it: every account with keys, in live and test
/// mode, at the full rate budget (the simulator's limits are Stripe's; no other integration shares them).
/// The Connect platform syncs its connected accounts (`connect = true`).
pub async fn start(cfg: &mut Config, quiet: bool) -> std::io::Result<RunningSim> {
    if !quiet {
        eprintln!("Starting the Stripe simulator with the demo data set (seed 42)…");
    }
    let sim = stripe_sim::start(SimConfig {
        rate_limits: RateLimits::default(),
        ..SimConfig::tiny().with_profile(Profile::Demo)
    })
    .await?;
    let info = sim.info();
    if !quiet {
        eprintln!(
            "Simulator at {} with {} objects.",
            info.base_url, info.objects
        );
    }
    cfg.api_base = info.base_url.clone();
    cfg.rate_budget = 1.0;
    cfg.accounts.clear();
    for (n, account) in info
        .accounts
        .iter()
        .filter(|a| a.kind != AccountKind::Connected)
        .enumerate()
    {
        for mode in ["live", "test"] {
            if let Some(key) = info.key("secret", mode, n) {
                let slug: String = account
                    .name
                    .split_whitespace()
                    .next()
                    .unwrap_or("account")
                    .to_lowercase();
                cfg.accounts.push(AccountConfig {
                    name: format!("{slug}-{mode}"),
                    key: Some(Secret::new(key)),
                    key_env: None,
                    connect: account.kind == AccountKind::Platform,
                });
            }
        }
    }
    Ok(sim)
}
