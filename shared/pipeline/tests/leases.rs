//! Two runs started at once on the same state: for each account and mode exactly one of them works,
//! the other reports that another run holds it, and the state is the one run's.

use lake_engine::lake_engine;
use stripe_pipeline::catalog::{Catalog, Dataset};
use stripe_pipeline::config::{AccountConfig, Config, Secret};
use stripe_pipeline::sync::SyncReport;
use stripe_sim::SimConfig;

#[path = "support/lake_engine.rs"]
mod lake_engine;

async fn run(cfg: &Config, run_id: &str) -> SyncReport {
    let (engine, resolved, _) = lake_engine(cfg, 2, run_id).await;
    let datasets: Vec<&'static Dataset> = Catalog::get().datasets.iter().collect();
    engine.sync(&resolved, &datasets).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_at_once_never_work_on_the_same_account() {
    // Latency keeps the first run busy while the second starts.
    let sim = stripe_sim::start(SimConfig {
        latency_ms: 20,
        objects: 60,
        ..SimConfig::tiny()
    })
    .await
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let info = sim.info();
    let cfg = Config {
        output_dir: out.path().to_path_buf(),
        api_base: sim.base_url(),
        accounts: ["live", "test"]
            .iter()
            .map(|mode| AccountConfig {
                name: format!("a-{mode}"),
                key: Some(Secret::new(info.key("secret", mode, 0).unwrap())),
                key_env: None,
            })
            .collect(),
        ..Config::default()
    };
    let (a, b) = tokio::join!(run(&cfg, "run-a"), run(&cfg, "run-b"));
    for (ra, rb) in a.accounts.iter().zip(&b.accounts) {
        let refused: Vec<&String> = [&ra.error, &rb.error].into_iter().flatten().collect();
        assert_eq!(refused.len(), 1, "exactly one run per account: {refused:?}");
        assert!(refused[0].contains("another run"), "{}", refused[0]);
    }
    // The lease is gone after both: a third run works on every account.
    let c = run(&cfg, "run-c").await;
    assert!(c.failures().is_empty(), "{:?}", c.failures());
}
