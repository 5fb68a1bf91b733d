//! Acceptance tests of local mode: the engine against the simulator over HTTP, into a real DuckDB file.

use stripe_pipeline_testkit::postgres as postgres_server;

use stripe_pipeline::catalog::{Catalog, Dataset};
use stripe_pipeline::config::{AccountConfig, Destination, Secret, SnowflakeConfig};
use stripe_pipeline::warehouse::duckdb::DuckDb;
use stripe_pipeline_testkit::acceptance::*;
use stripe_sim::{FaultKind, FaultRule, RateLimits, SimConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_sync_equals_ground_truth_and_a_second_sync_changes_nothing() {
    let sim = sim(SimConfig {
        objects: 60,
        ..SimConfig::tiny()
    })
    .await;
    let out = tempfile::tempdir().unwrap();
    let cfg = config(&sim, out.path());
    let report = run(&cfg).await;
    assert!(report.failures().is_empty(), "{:?}", report.failures());
    let all: Vec<&Dataset> = Catalog::get().datasets.iter().collect();
    assert_all_equal(out.path(), &sim, &all).await;
    // Merchant ids and schemas: live rows in `stripe`, test rows in `stripe_testmode`.
    let db = DuckDb::open(&out.path().join("stripe_pipeline.duckdb")).unwrap();
    let live = db
        .query_strings("SELECT DISTINCT CAST(livemode AS VARCHAR) FROM stripe.charges")
        .unwrap();
    assert_eq!(live, vec![vec![Some("true".to_string())]]);
    let test = db
        .query_strings("SELECT DISTINCT CAST(livemode AS VARCHAR) FROM stripe_testmode.charges")
        .unwrap();
    assert_eq!(test, vec![vec![Some("false".to_string())]]);
    let count = |db: &DuckDb| {
        db.query_strings("SELECT count(*)::VARCHAR FROM stripe.charges")
            .unwrap()[0][0]
            .clone()
    };
    let before = count(&db);
    drop(db);
    let second = run(&cfg).await;
    assert!(second.failures().is_empty());
    assert_all_equal(out.path(), &sim, &all).await;
    let db = DuckDb::open(&out.path().join("stripe_pipeline.duckdb")).unwrap();
    assert_eq!(count(&db), before);
    // The lake: Parquet per table and merchant, and a manifest per run and mode.
    let merchant = &merchants(&sim)[0];
    let dir = out
        .path()
        .join(format!("lake/livemode/charges/merchant_id={merchant}"));
    assert!(std::fs::read_dir(&dir).unwrap().any(|e| e
        .unwrap()
        .path()
        .extension()
        .is_some_and(|x| x == "parquet")));
    // The second run writes files (and a manifest) only where the feed's overlap saw events again.
    let manifests = |mode: &str| {
        out.path()
            .join(format!("lake/{mode}/_manifests"))
            .read_dir()
            .unwrap()
            .count()
    };
    assert!(manifests("livemode") >= 1 && manifests("testmode") >= 1);
    // data_load_times has every table of every merchant.
    let n = db
        .query_strings("SELECT count(DISTINCT table_name)::VARCHAR FROM stripe.data_load_times")
        .unwrap();
    assert_eq!(
        n[0][0].as_deref(),
        Some(Catalog::get().tables().count().to_string().as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_and_rate_limits_do_not_lose_or_duplicate_rows() {
    let rule = |kind, probability| FaultRule {
        kind,
        probability,
        every: 0,
        latency_ms: 0,
    };
    let sim = sim(SimConfig {
        objects: 40,
        rate_limits: RateLimits {
            enabled: true,
            live_per_sec: 30.0,
            test_per_sec: 30.0,
            // A burst of one: any two requests to an endpoint within a second meet a 429.
            endpoint_per_sec: 1.0,
        },
        faults: vec![
            rule(FaultKind::LockTimeout, 0.04),
            rule(FaultKind::Unavailable, 0.03),
            rule(FaultKind::ServerError, 0.03),
            rule(FaultKind::Drop, 0.03),
            rule(FaultKind::Truncate, 0.03),
        ],
        ..SimConfig::tiny()
    })
    .await;
    let out = tempfile::tempdir().unwrap();
    let mut cfg = config(&sim, out.path());
    cfg.datasets = vec![
        "charges".into(),
        "customers".into(),
        "invoices".into(),
        "balance_transactions".into(),
    ];
    let report = run(&cfg).await;
    assert!(report.failures().is_empty(), "{:?}", report.failures());
    assert!(report.retries > 0, "faults were retried");
    let stats = sim.sim().stats();
    assert!(stats.rate_limited > 0 && stats.faults > 0, "{stats:?}");
    let ds: Vec<&Dataset> = cfg
        .datasets
        .iter()
        .map(|d| Catalog::get().dataset(d).unwrap())
        .collect();
    assert_all_equal(out.path(), &sim, &ds).await;
}

/// Every table of `datasets` in the DuckDB file under `out` equals `merchant`'s test-mode truth.
async fn assert_test_mode_loaded(
    out: &std::path::Path,
    sim: &stripe_sim::RunningSim,
    merchant: &str,
    datasets: &[&str],
) {
    let db = DuckDb::open(&out.join("stripe_pipeline.duckdb")).unwrap();
    for d in datasets {
        assert_equal(
            &db,
            sim,
            merchant,
            false,
            Catalog::get().dataset(d).unwrap(),
        )
        .await;
    }
}

/// The account of the restricted-key tests, with `key`.
fn restricted(key: String) -> AccountConfig {
    AccountConfig {
        name: "restricted".into(),
        key: Some(Secret::new(key)),
        key_env: None,
        connect: false,
    }
}

/// `dataset` is the run's only failure, and its error names the permission that would fix it.
fn assert_fails_alone(
    report: &stripe_pipeline::engine::SyncReport,
    dataset: &str,
    permission: &str,
) {
    let failures = report.failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].1, dataset);
    assert!(failures[0].2.contains(permission), "{}", failures[0].2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restricted_key_without_one_permission_fails_that_dataset_only() {
    let sim = sim(SimConfig::tiny()).await;
    let info = sim.info();
    let merchant = info.accounts[0].id.clone();
    let key = key_without(&sim, &merchant, false, "disputes");
    let out = tempfile::tempdir().unwrap();
    let mut cfg = config(&sim, out.path());
    cfg.accounts = vec![restricted(key)];
    let report = run(&cfg).await;
    assert_fails_alone(&report, "disputes", "rak_dispute_read");
    assert_test_mode_loaded(out.path(), &sim, &merchant, &["charges"]).await;
}

/// A key that may read setup intents but not their attempts (a list fetched per parent): the setup
/// intents' dataset fails with Stripe's message naming the permission, everything else loads, and once
/// the permission is there the next run loads the intents and their attempts whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_may_not_read_a_child_list_fails_its_parent_only_and_loses_nothing() {
    let sim = sim(SimConfig::tiny()).await;
    let info = sim.info();
    let merchant = info.accounts[0].id.clone();
    let attempts = sim.sim().truth(&merchant, false, "setup_attempts").unwrap();
    assert!(!attempts.is_empty(), "the profile has setup attempts");
    let out = tempfile::tempdir().unwrap();
    let mut cfg = config(&sim, out.path());
    let key = key_without_lists(&sim, &merchant, false, &["setup_attempts"]);
    cfg.accounts = vec![restricted(key)];
    let report = run(&cfg).await;
    assert_fails_alone(&report, "setup_intents", "rak_setup_attempt_read");
    assert_test_mode_loaded(out.path(), &sim, &merchant, &["charges", "customers"]).await;
    // The permission granted: the same account's next run loads what the first could not.
    cfg.accounts = vec![restricted(info.key("secret", "test", 0).unwrap())];
    let report = run(&cfg).await;
    assert!(report.failures().is_empty(), "{:?}", report.failures());
    assert_test_mode_loaded(out.path(), &sim, &merchant, &["setup_intents"]).await;
}

/// A live balance transaction of a charge, of the simulator's first merchant.
fn charge_balance_transaction(sim: &stripe_sim::RunningSim) -> serde_json::Value {
    let merchant = &merchants(sim)[0];
    let truth = sim
        .sim()
        .truth(merchant, true, "balance_transactions")
        .unwrap();
    truth
        .into_iter()
        .find(|t| t["object"]["type"] == "charge")
        .unwrap()["object"]
        .clone()
}

/// What the README's join answers for one order of `bt`.
fn documented_join_answer(bt: &serde_json::Value) -> Vec<Vec<Option<String>>> {
    vec![vec![
        Some("2026-10-01".into()),
        Some("ORD-1".into()),
        Some(bt["amount"].to_string()),
        Some(bt["fee"].to_string()),
        None,
    ]]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_join_with_a_users_own_table_works() {
    let sim = sim(SimConfig::tiny()).await;
    let out = tempfile::tempdir().unwrap();
    let mut cfg = config(&sim, out.path());
    cfg.datasets = vec!["balance_transactions".into()];
    run(&cfg).await;
    let bt = charge_balance_transaction(&sim);
    let db = DuckDb::open(&out.path().join("stripe_pipeline.duckdb")).unwrap();
    db.query_strings(&format!(
        "CREATE SCHEMA mycompany; CREATE TABLE mycompany.orders (date DATE, order_no VARCHAR, stripe_txn_no VARCHAR); \
         INSERT INTO mycompany.orders VALUES ('2026-10-01', 'ORD-1', '{}'); SELECT 1",
        bt["id"].as_str().unwrap()
    ))
    .unwrap();
    let rows = db
        .query_strings("select orders.date::VARCHAR, orders.order_no, bts.amount::VARCHAR, bts.fee::VARCHAR, bts.automatic_transfer_id from mycompany.orders join stripe.balance_transactions bts on orders.stripe_txn_no = bts.id;")
        .unwrap();
    assert_eq!(rows, documented_join_answer(&bt));
}

/// Queries written against Stripe Sigma's names run unchanged: the card of a charge (`card_*`), the plan of a
/// subscription item (`plan_*`), a subscription's discount (`discount_*`) and a dispute's evidence
/// (`evidence_*`), each answering what the simulator holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigma_queries_of_cards_plans_discounts_and_evidence_run_unchanged() {
    let sim = sim(SimConfig {
        objects: 400,
        ..SimConfig::tiny()
    })
    .await;
    let out = tempfile::tempdir().unwrap();
    let mut cfg = config(&sim, out.path());
    cfg.datasets = ["charges", "subscriptions", "disputes"]
        .map(String::from)
        .to_vec();
    let report = run(&cfg).await;
    assert!(report.failures().is_empty(), "{:?}", report.failures());
    let merchant = &merchants(&sim)[0];
    let live = |resource: &str| -> Vec<serde_json::Value> {
        sim.sim()
            .truth(merchant, true, resource)
            .unwrap()
            .into_iter()
            .filter(|t| t["deleted"] != true)
            .map(|t| t["object"].clone())
            .collect()
    };
    let db = DuckDb::open(&out.path().join("stripe_pipeline.duckdb")).unwrap();
    let one = |sql: &str| -> String {
        let sql = sql.replace("{m}", merchant);
        db.query_strings(&sql).unwrap()[0][0]
            .clone()
            .unwrap_or_default()
    };

    let mut brands = std::collections::BTreeMap::<String, usize>::new();
    for ch in live("charges") {
        if let Some(b) = ch["payment_method_details"]["card"]["brand"].as_str() {
            *brands.entry(b.to_string()).or_default() += 1;
        }
    }
    assert!(!brands.is_empty());
    let rows = db
        .query_strings(&format!(
            "SELECT card_brand, count(*)::VARCHAR FROM stripe.charges WHERE merchant_id = '{merchant}' \
             AND NOT deleted AND card_brand IS NOT NULL GROUP BY card_brand ORDER BY card_brand"
        ))
        .unwrap();
    let want: Vec<Vec<Option<String>>> = brands
        .iter()
        .map(|(b, n)| vec![Some(b.clone()), Some(n.to_string())])
        .collect();
    assert_eq!(rows, want);

    let subscriptions = live("subscriptions");
    let mrr: i64 = subscriptions
        .iter()
        .flat_map(|s| s["items"]["data"].as_array().unwrap().clone())
        .map(|i| i["price"]["unit_amount"].as_i64().unwrap_or(0) * i["quantity"].as_i64().unwrap())
        .sum();
    assert!(mrr > 0);
    assert_eq!(
        one("SELECT sum(si.plan_amount * si.quantity)::VARCHAR FROM stripe.subscription_items si \
             JOIN stripe.subscriptions s ON s.id = si.subscription_id AND s.merchant_id = si.merchant_id \
             WHERE s.merchant_id = '{m}' AND NOT s.deleted AND si.plan_interval IS NOT NULL AND si.plan_id = si.price_id"),
        mrr.to_string()
    );
    let discounted = subscriptions
        .iter()
        .filter(|s| s["discount"]["coupon"]["id"].is_string())
        .count();
    assert!(discounted > 0);
    assert_eq!(
        one("SELECT count(discount_coupon_id)::VARCHAR FROM stripe.subscriptions WHERE merchant_id = '{m}' AND NOT deleted"),
        discounted.to_string()
    );
    let with_evidence = live("disputes")
        .iter()
        .filter(|d| d["evidence"]["customer_name"].is_string())
        .count();
    assert!(with_evidence > 0);
    assert_eq!(
        one("SELECT count(evidence_customer_name)::VARCHAR FROM stripe.disputes WHERE merchant_id = '{m}' AND NOT deleted"),
        with_evidence.to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sync_into_postgres_equals_ground_truth_and_a_second_changes_nothing() {
    let sim = sim(SimConfig {
        objects: 40,
        ..SimConfig::tiny()
    })
    .await;
    let out = tempfile::tempdir().unwrap();
    let mut cfg = config(&sim, out.path());
    cfg.destination = Destination::Postgres;
    cfg.postgres.url = Some(Secret::new(
        postgres_server::server().database("acceptance"),
    ));
    let all: Vec<&Dataset> = Catalog::get().datasets.iter().collect();
    let scopes: Vec<(String, bool)> = merchants(&sim)
        .into_iter()
        .flat_map(|m| [(m.clone(), true), (m, false)])
        .collect();
    let mut rows = Vec::new();
    for _ in 0..2 {
        let report = run(&cfg).await;
        assert!(report.failures().is_empty(), "{:?}", report.failures());
        let db = stripe_pipeline::local::open_warehouse(&cfg).await.unwrap();
        assert_warehouse_equal(db.as_ref(), &sim, &scopes, &all).await;
        let n = db
            .query_strings("SELECT CAST(COUNT(*) AS VARCHAR) FROM stripe.charges")
            .await
            .unwrap();
        rows.push(n);
    }
    assert_eq!(rows[0], rows[1], "a second sync adds no rows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dataset_the_feed_cannot_refetch_fails_alone_and_is_listed_again() {
    let sim = sim(SimConfig::tiny()).await;
    // Globex's events are in API version 2022-11-15: the feed reads every changed object again.
    let merchant = merchants(&sim)[1].clone();
    let full = sim.info().key("secret", "test", 1).unwrap();
    let restricted = key_without(&sim, &merchant, false, "charges");
    let out = tempfile::tempdir().unwrap();
    let mut cfg = config(&sim, out.path());
    let with_key = |key: &str| {
        vec![AccountConfig {
            name: "globex".into(),
            key: Some(Secret::new(key)),
            key_env: None,
            connect: false,
        }]
    };
    cfg.accounts = with_key(&full);
    let first = run(&cfg).await;
    assert!(first.failures().is_empty(), "{:?}", first.failures());

    // Charges and customers change; then the key loses the charges permission.
    churn(&sim, &merchant, false);
    sim.sim().advance(120);
    cfg.accounts = with_key(&restricted);
    let second = run(&cfg).await;
    let failures = second.failures();
    assert!(
        !failures.is_empty() && failures.iter().all(|f| f.1 == "charges"),
        "{failures:?}"
    );
    assert!(
        failures[0].2.contains("rak_charge_read"),
        "{}",
        failures[0].2
    );
    // The window was committed for everything else.
    let account = &second.accounts[0];
    let customers = account
        .datasets
        .iter()
        .find(|d| d.dataset == "customers")
        .unwrap();
    assert!(customers.changes > 0, "{customers:?}");
    assert_eq!(account.feed.error, None);
    let db = DuckDb::open(&out.path().join("stripe_pipeline.duckdb")).unwrap();
    let dataset = |name: &str| Catalog::get().dataset(name).unwrap();
    assert_equal(&db, &sim, &merchant, false, dataset("customers")).await;
    drop(db);

    // The key is fixed: charges are listed again in full, changes of the skipped window included.
    cfg.accounts = with_key(&full);
    let third = run(&cfg).await;
    assert!(third.failures().is_empty(), "{:?}", third.failures());
    let charges = third.accounts[0]
        .datasets
        .iter()
        .find(|d| d.dataset == "charges")
        .unwrap();
    assert_eq!(
        charges.list,
        Some(stripe_pipeline::engine::ListKind::Backfill)
    );
    let db = DuckDb::open(&out.path().join("stripe_pipeline.duckdb")).unwrap();
    for name in ["charges", "customers"] {
        assert_equal(&db, &sim, &merchant, false, dataset(name)).await;
    }
}

/// Simulator → lake → Snowflake (fakesnow, files uploaded with `PUT` and loaded with `COPY INTO`):
/// a first sync, then changes and deletes in both modes, equal to ground truth each time; the README's
/// join of a user's own table with `stripe.balance_transactions` runs unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_into_snowflake_follows_changes_and_deletes_and_the_documented_join_runs() {
    let sim = sim(SimConfig::tiny()).await;
    let fakesnow = stripe_pipeline_testkit::snowflake::Fakesnow::start();
    let out = tempfile::tempdir().unwrap();
    let mut cfg = config(&sim, out.path());
    cfg.destination = Destination::Snowflake;
    cfg.snowflake = SnowflakeConfig {
        account: Some("emulator".into()),
        user: Some("LOADER".into()),
        database: Some("ANALYTICS".into()),
        private_key_file: Some(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../shared/pipeline/src/warehouse/snowflake/testdata/rsa_key.p8"),
        ),
        url: Some(fakesnow.base_url.clone()),
        ..SnowflakeConfig::default()
    };
    let names = [
        "balance_transactions",
        "charges",
        "customers",
        "invoices",
        "subscriptions",
    ];
    cfg.datasets = names.iter().map(|d| d.to_string()).collect();
    let datasets: Vec<&Dataset> = names
        .iter()
        .map(|d| Catalog::get().dataset(d).unwrap())
        .collect();
    let scopes: Vec<(String, bool)> = merchants(&sim)
        .into_iter()
        .flat_map(|m| [(m.clone(), true), (m, false)])
        .collect();
    let first = run(&cfg).await;
    assert!(first.failures().is_empty(), "{:?}", first.failures());
    let db = stripe_pipeline::local::open_warehouse(&cfg).await.unwrap();
    assert_warehouse_equal(db.as_ref(), &sim, &scopes, &datasets).await;

    for (merchant, livemode) in &scopes {
        churn(&sim, merchant, *livemode);
    }
    sim.sim().advance(120);
    let second = run(&cfg).await;
    assert!(second.failures().is_empty(), "{:?}", second.failures());
    assert_warehouse_equal(db.as_ref(), &sim, &scopes, &datasets).await;
    let deleted = db
        .query_strings("SELECT CAST(COUNT(*) AS VARCHAR) FROM stripe.customers WHERE deleted")
        .await
        .unwrap();
    assert_ne!(
        deleted[0][0].as_deref(),
        Some("0"),
        "churn deletes customers"
    );

    // The README's query, as written, beside a table of the user's own.
    let bt = charge_balance_transaction(&sim);
    for sql in [
        "CREATE SCHEMA mycompany".to_string(),
        "CREATE TABLE mycompany.orders (date DATE, order_no VARCHAR, stripe_txn_no VARCHAR)"
            .to_string(),
        format!(
            "INSERT INTO mycompany.orders VALUES ('2026-10-01', 'ORD-1', '{}')",
            bt["id"].as_str().unwrap()
        ),
    ] {
        db.query_strings(&sql).await.unwrap();
    }
    let rows = db
        .query_strings("select orders.date, orders.order_no, bts.amount, bts.fee, bts.automatic_transfer_id from mycompany.orders join stripe.balance_transactions bts on orders.stripe_txn_no = bts.id;")
        .await
        .unwrap();
    assert_eq!(rows, documented_join_answer(&bt));
}
