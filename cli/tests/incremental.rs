//! Acceptance tests of incremental sync: after the simulator changes objects, the next sync makes every
//! table equal to the ground truth again (change feed, snapshots, deletes, late and duplicated events,
//! the 30-day event retention cliff), within the API budget of an idle run.

use stripe_pipeline::catalog::{Catalog, Dataset};
use stripe_pipeline::config::Config;
use stripe_pipeline::engine::SyncReport;
use stripe_pipeline::stripe::CallKind;
use stripe_pipeline_testkit::acceptance::*;
use stripe_sim::{EventPolicy, RunningSim, SimConfig};

/// Simulated seconds between a round of changes and the next sync: more than the feed's lag.
const PAST_LAG: i64 = 120;

fn all() -> Vec<&'static Dataset> {
    Catalog::get().datasets.iter().collect()
}

fn scopes(sim: &RunningSim) -> Vec<(String, bool)> {
    merchants(sim)
        .into_iter()
        .flat_map(|m| [(m.clone(), true), (m, false)])
        .collect()
}

fn incremental_config(sim: &RunningSim, out: &std::path::Path) -> Config {
    Config {
        // Snapshot datasets are listed again on every run, so event-less updates show at once, and
        // datasets without any events are asked for new objects on every run.
        snapshot_interval_secs: 0,
        unannounced_interval_secs: 0,
        ..config(sim, out)
    }
}

fn assert_ok(report: &SyncReport) {
    assert!(report.failures().is_empty(), "{:?}", report.failures());
}

fn changes(report: &SyncReport) -> u64 {
    report
        .accounts
        .iter()
        .flat_map(|a| &a.datasets)
        .map(|d| d.changes)
        .sum()
}

fn calls(report: &SyncReport, kind: CallKind) -> u64 {
    report
        .calls
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or(0, |(_, n)| *n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rounds_of_random_changes_converge_to_the_ground_truth() {
    let sim = sim(SimConfig::tiny()).await;
    let out = tempfile::tempdir().unwrap();
    let cfg = incremental_config(&sim, out.path());
    assert_ok(&run(&cfg).await);
    assert_all_equal(out.path(), &sim, &all()).await;
    let before = sim.sim().now();
    for round in 0..3 {
        for (merchant, livemode) in scopes(&sim) {
            churn(&sim, &merchant, livemode);
        }
        sim.sim().advance(PAST_LAG);
        let report = run(&cfg).await;
        assert_ok(&report);
        assert!(changes(&report) > 0, "round {round}: the feed saw changes");
        assert_all_equal(out.path(), &sim, &all()).await;
    }
    // The rounds exercised what the feed must get right: invoices whose lines an event cuts at 10,
    // canceled subscriptions, deleted customers, products and coupons.
    let (merchant, livemode) = &scopes(&sim)[0];
    let truth = |r: &str| sim.sim().truth(merchant, *livemode, r).unwrap();
    let new_long_invoice = truth("invoices").iter().any(|t| {
        t["object"]["created"].as_i64() >= Some(before)
            && t["object"]["lines"]["data"]
                .as_array()
                .is_some_and(|l| l.len() > 10)
    });
    assert!(
        new_long_invoice,
        "an invoice with more than 10 lines was created"
    );
    assert!(truth("subscriptions")
        .iter()
        .any(|t| t["object"]["status"] == "canceled"
            && t["object"]["canceled_at"].as_i64() >= Some(before)));
    for r in ["customers", "products", "coupons"] {
        assert!(truth(r).iter().any(|t| t["deleted"] == true), "{r} deleted");
    }
    // Rows of fetched tables came and went through their parents: value list items and tax ids
    // (announced by their own events), setup attempts (by the setup intents' snapshot).
    for (parent, key) in [
        ("radar/value_lists", "value_list_items"),
        ("setup_intents", "setup_attempts"),
        ("customers", "tax_ids"),
    ] {
        let new_children = truth(parent)
            .iter()
            .flat_map(|t| {
                t["object"][key]["data"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter(|i| i["created"].as_i64() >= Some(before))
            .count();
        assert!(new_children > 0, "{key} created in the rounds");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_and_duplicated_events_still_converge() {
    let sim = sim(SimConfig::tiny()).await;
    let out = tempfile::tempdir().unwrap();
    let cfg = incremental_config(&sim, out.path());
    assert_ok(&run(&cfg).await);
    // Events show up 150 s after they happened (more than the lag, less than lag + overlap), and
    // about a third of them twice.
    sim.sim().set_event_policy(EventPolicy {
        visibility_delay_secs: 150,
        duplicate_rate: 0.3,
    });
    let mut duplicates = 0;
    for _ in 0..2 {
        for (merchant, livemode) in scopes(&sim) {
            churn(&sim, &merchant, livemode);
        }
        sim.sim().advance(PAST_LAG);
        let report = run(&cfg).await;
        assert_ok(&report);
        duplicates += report
            .accounts
            .iter()
            .map(|a| a.feed.counts.duplicates)
            .sum::<u64>();
    }
    // Past the delay: the overlap reads the window's end again and finds the late events.
    sim.sim().advance(200);
    let report = run(&cfg).await;
    assert_ok(&report);
    assert!(duplicates > 0, "duplicated events were seen and dropped");
    assert_all_equal(out.path(), &sim, &all()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_past_the_event_retention_is_detected_and_rebackfilled() {
    let sim = sim(SimConfig::tiny()).await;
    let out = tempfile::tempdir().unwrap();
    let cfg = incremental_config(&sim, out.path());
    assert_ok(&run(&cfg).await);
    for (merchant, livemode) in scopes(&sim) {
        churn(&sim, &merchant, livemode);
    }
    // 31 days without a sync: the events of these changes are gone from Stripe.
    sim.sim().advance(31 * 86_400);
    let report = run(&cfg).await;
    assert_ok(&report);
    assert_eq!(
        report.warnings.len(),
        scopes(&sim).len(),
        "{:?}",
        report.warnings
    );
    for w in &report.warnings {
        assert!(
            w.contains("30-day event retention") && w.contains("customers, "),
            "{w}"
        );
    }
    // Deleted customers, products and coupons had no event to read any more: the re-list marked them.
    assert_all_equal(out.path(), &sim, &all()).await;
    // Back to normal: the next run reads events again.
    sim.sim().advance(PAST_LAG);
    let next = run(&cfg).await;
    assert_ok(&next);
    assert!(next.warnings.is_empty());
    assert!(next.accounts.iter().all(|a| a.feed.window.is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_run_makes_one_events_call_per_account_and_mode() {
    let sim = sim(SimConfig::tiny()).await;
    let out = tempfile::tempdir().unwrap();
    // Snapshots once a day (the default): none is due in the next minutes.
    let cfg = config(&sim, out.path());
    assert_ok(&run(&cfg).await);
    sim.sim().advance(400);
    assert_ok(&run(&cfg).await);
    sim.sim().advance(400);
    let idle = run(&cfg).await;
    assert_ok(&idle);
    let n = scopes(&sim).len() as u64;
    assert_eq!(changes(&idle), 0);
    assert!(calls(&idle, CallKind::Events) <= n, "{:?}", idle.calls);
    // Balance transactions have no events at all: one list call per account and mode for new ones.
    assert!(calls(&idle, CallKind::List) <= n, "{:?}", idle.calls);
    assert_eq!(calls(&idle, CallKind::Nested), 0, "{:?}", idle.calls);
    assert_eq!(calls(&idle, CallKind::Object), 0, "{:?}", idle.calls);
    assert_eq!(calls(&idle, CallKind::Account), n, "{:?}", idle.calls);
    assert_eq!(
        idle.api_calls,
        idle.calls.iter().map(|(_, c)| c).sum::<u64>()
    );
}

/// The simulator's Connect platform in both modes, with `connect = true`, syncing the core datasets
/// (a connected account's datasets go through the code of any account's, tested in full above).
fn platform_config(sim: &RunningSim, out: &std::path::Path) -> Config {
    Config {
        accounts: platform_accounts(sim),
        datasets: CORE_DATASETS.iter().map(|d| d.to_string()).collect(),
        ..incremental_config(sim, out)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_platform_syncs_its_connected_accounts_as_they_come_and_go() {
    let sim = sim(SimConfig::tiny()).await;
    let out = tempfile::tempdir().unwrap();
    let cfg = platform_config(&sim, out.path());
    assert_ok(&run(&cfg).await);
    let db_path = out.path().join("stripe_pipeline.duckdb");
    let platform_equal = || async {
        let db = stripe_pipeline::warehouse::duckdb::DuckDb::open(&db_path).unwrap();
        assert_platform_equal(&db, &sim, &core_datasets()).await
    };
    let first = platform_equal().await;
    assert_eq!(
        first.len(),
        2,
        "the simulator's platform has two connected accounts"
    );
    // Stripe's layout: the connected accounts' rows name the platform and the account.
    let db = stripe_pipeline::warehouse::duckdb::DuckDb::open(
        &out.path().join("stripe_pipeline.duckdb"),
    )
    .unwrap();
    let owners = db
        .query_strings(
            "SELECT DISTINCT account FROM stripe.connected_account_charges ORDER BY account",
        )
        .unwrap();
    let mut want: Vec<Vec<Option<String>>> = first.iter().map(|a| vec![Some(a.clone())]).collect();
    want.sort();
    assert_eq!(owners, want);
    drop(db);

    // A new account connects, one changes, one leaves: the next runs follow.
    let platform = sim
        .info()
        .account(stripe_sim::AccountKind::Platform)
        .unwrap()
        .id
        .clone();
    let added = sim.sim().connect_accounts(&platform, 2, 2).unwrap();
    for livemode in [true, false] {
        churn(&sim, &first[0], livemode);
    }
    sim.sim().advance(PAST_LAG);
    assert_ok(&run(&cfg).await);
    let now = platform_equal().await;
    assert!(added.iter().all(|a| now.contains(a)), "{now:?}");

    sim.sim().deauthorize(&first[1]).unwrap();
    for livemode in [true, false] {
        churn(&sim, &added[0], livemode);
    }
    sim.sim().advance(PAST_LAG);
    let report = run(&cfg).await;
    assert_ok(&report);
    assert!(
        report.accounts.iter().all(|a| !a.name.contains(&first[1])),
        "a deauthorized account is no longer synced"
    );
    // Its rows stay; the connected accounts table marks it gone (the platform's snapshot).
    let left = platform_equal().await;
    assert!(!left.contains(&first[1]));
    let db = stripe_pipeline::warehouse::duckdb::DuckDb::open(
        &out.path().join("stripe_pipeline.duckdb"),
    )
    .unwrap();
    let kept = db
        .query_strings(&format!(
            "SELECT CAST(COUNT(*) AS VARCHAR) FROM stripe.connected_account_customers WHERE account = '{}' AND NOT deleted",
            first[1]
        ))
        .unwrap();
    assert_ne!(kept[0][0].as_deref(), Some("0"), "its data is kept");
    let gone = db
        .query_strings(&format!(
            "SELECT CAST(deleted AS VARCHAR) FROM stripe.connected_accounts WHERE id = '{}'",
            first[1]
        ))
        .unwrap();
    assert_eq!(gone, vec![vec![Some("true".to_string())]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datasets_of_products_an_account_does_not_use_are_a_state_not_a_failure() {
    let sim = sim(SimConfig::tiny()).await;
    let out = tempfile::tempdir().unwrap();
    let gated = [
        "issuing_cards",
        "treasury_financial_accounts",
        // Listed per financial account: the list of those says the product is not enabled.
        "treasury_transactions",
        "verification_sessions",
    ];
    let cfg = Config {
        datasets: gated
            .iter()
            .chain(&["charges"])
            .map(|s| s.to_string())
            .collect(),
        ..config(&sim, out.path())
    };
    let chosen: Vec<&'static Dataset> = cfg
        .datasets
        .iter()
        .map(|n| Catalog::get().dataset(n).unwrap())
        .collect();
    // The simulator's second account is an older integration without Issuing, Treasury or
    // Identity: Stripe answers their lists with a 400 saying so.
    let basic = sim.info().accounts[1].id.clone();
    let first = run(&cfg).await;
    assert_ok(&first);
    for a in &first.accounts {
        for d in &a.datasets {
            let expect = a.merchant_id == basic && gated.contains(&d.dataset.as_str());
            assert_eq!(d.not_enabled.is_some(), expect, "{} {}", a.name, d.dataset);
            assert!(d.error.is_none());
        }
    }
    assert_all_equal(out.path(), &sim, &chosen).await;
    let status = stripe_pipeline::local::status(&cfg).await.unwrap();
    let shown = status
        .iter()
        .find(|r| r.merchant_id == basic && r.table == "issuing_cards");
    assert!(
        shown.is_some_and(|r| r.last_error.is_none()
            && r.not_enabled
                .as_deref()
                .is_some_and(|m| m.contains("not set up to use Issuing"))),
        "{shown:?}"
    );
    // Not asked again before the snapshot interval has passed; asked again after it.
    let asked = || {
        sim.sim()
            .stats()
            .by_endpoint
            .iter()
            .filter(|(k, _)| k.starts_with(&basic) && k.contains("/v1/issuing/cards"))
            .map(|(_, n)| *n)
            .sum::<u64>()
    };
    let before = asked();
    assert!(before > 0);
    sim.sim().advance(400);
    assert_ok(&run(&cfg).await);
    assert_eq!(asked(), before, "asked again within the snapshot interval");
    sim.sim().advance(86_400);
    let later = run(&cfg).await;
    assert_ok(&later);
    assert!(asked() > before, "asked again after the snapshot interval");
    assert!(later
        .accounts
        .iter()
        .any(|a| a.merchant_id == basic && a.datasets.iter().any(|d| d.not_enabled.is_some())));
}
