//! Two runs at once on the same state: for each account and mode exactly one of them works, the other
//! reports that another run holds it, and the state is the one run's.

use lake_engine::lake_engine;
use std::path::Path;
use std::time::Duration;
use stripe_pipeline::catalog::{Catalog, Dataset};
use stripe_pipeline::config::{AccountConfig, Config, Secret};
use stripe_sim::SimConfig;

use stripe_pipeline_testkit::lake_engine;

/// Waits until `owner` holds `n` leases in the local state folder `dir`: a lease is a `.lease` file
/// whose first line is its owner.
async fn wait_for_leases(dir: &Path, owner: &str, n: usize) {
    let held = || {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "lease"))
            // Account leases (`<merchant>__<mode>.lease`), not those of the slices under them.
            .filter(|e| e.file_name().to_string_lossy().matches("__").count() == 1)
            .filter(|e| {
                std::fs::read_to_string(e.path()).is_ok_and(|t| t.lines().next() == Some(owner))
            })
            .count()
    };
    for _ in 0..6000 {
        if held() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{owner} took {} of {n} leases in a minute", held());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_at_once_never_work_on_the_same_account() {
    let sim = stripe_sim::start(SimConfig {
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
                connect: false,
            })
            .collect(),
        ..Config::default()
    };
    let datasets: Vec<&'static Dataset> = Catalog::get().datasets.iter().collect();
    let (a, accounts, _) = lake_engine(&cfg, 2, "run-a").await;
    let (b, _, _) = lake_engine(&cfg, 2, "run-b").await;

    // Run A takes its leases and is then held mid-sync by the paused API, so run B starts while A
    // is surely working: no race decides the outcome.
    sim.sim().pause();
    let first = {
        let (accounts, datasets) = (accounts.clone(), datasets.clone());
        tokio::spawn(async move { a.sync(&accounts, &datasets).await })
    };
    wait_for_leases(&cfg.state_dir(), "run-a", accounts.len()).await;
    // Refused everywhere, B never calls the API; if it took a lease it would wait on the pause.
    let second = tokio::time::timeout(Duration::from_secs(60), b.sync(&accounts, &datasets))
        .await
        .expect("run B worked on an account run A holds: it waited on the paused API")
        .unwrap();
    sim.sim().resume();
    let first = first.await.unwrap().unwrap();

    for (ra, rb) in first.accounts.iter().zip(&second.accounts) {
        assert_eq!(ra.error, None, "run A holds {}", ra.name);
        assert!(
            ra.datasets.iter().any(|d| d.objects > 0),
            "run A synced {}",
            ra.name
        );
        let refused = rb.error.as_deref().unwrap_or_default();
        assert!(refused.contains("another run"), "run B: {refused:?}");
        assert!(
            rb.datasets.iter().all(|d| d.objects == 0),
            "run B synced {}",
            rb.name
        );
    }
    assert!(second.files.is_empty(), "run B wrote {:?}", second.files);

    // The leases are gone after both: a third run works on every account.
    let (c, _, _) = lake_engine(&cfg, 2, "run-c").await;
    let third = c.sync(&accounts, &datasets).await.unwrap();
    assert!(third.failures().is_empty(), "{:?}", third.failures());
}
