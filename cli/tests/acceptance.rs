//! Acceptance tests of local mode: the engine against the simulator over HTTP, into a real DuckDB file.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use stripe_pipeline::catalog::{Catalog, Column, ColumnType, Dataset, TableKind};
use stripe_pipeline::config::{AccountConfig, Config, Secret};
use stripe_pipeline::sync::{self, Quiet, SyncReport};
use stripe_pipeline::warehouse::duckdb::DuckDb;
use stripe_pipeline::warehouse::schema_name;
use stripe_sim::{AccountKind, FaultKind, FaultRule, RateLimits, RunningSim, SimConfig};

async fn sim(config: SimConfig) -> RunningSim {
    stripe_sim::start(config).await.expect("simulator")
}

/// Two accounts, live and test: four configured accounts.
fn config(sim: &RunningSim, out: &Path) -> Config {
    let info = sim.info();
    let mut accounts = Vec::new();
    for n in 0..2 {
        for mode in ["live", "test"] {
            accounts.push(AccountConfig {
                name: format!("a{n}-{mode}"),
                key: Some(Secret::new(info.key("secret", mode, n).unwrap())),
                key_env: None,
            });
        }
    }
    Config {
        output_dir: out.to_path_buf(),
        api_base: sim.base_url(),
        rate_budget: 1.0,
        concurrency: 4,
        datasets: vec![],
        accounts,
    }
}

async fn run(cfg: &Config) -> SyncReport {
    let accounts = cfg.accounts(|_| None).unwrap();
    let client = stripe_pipeline::local::client(cfg);
    let resolved = sync::resolve(&client, &accounts).await.unwrap();
    let engine = stripe_pipeline::local::engine(
        cfg,
        client,
        Arc::new(Quiet),
        format!(
            "test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ),
    )
    .unwrap();
    let datasets: Vec<&'static Dataset> = if cfg.datasets.is_empty() {
        Catalog::get().datasets.iter().collect()
    } else {
        cfg.datasets
            .iter()
            .map(|d| Catalog::get().dataset(d).unwrap())
            .collect()
    };
    engine.sync(&resolved, &datasets).await.unwrap()
}

/// The value a column should hold, as DuckDB prints it cast to text (timestamps as epoch seconds).
fn expected(col: &Column, obj: &Value) -> Option<String> {
    let v = col.path.iter().try_fold(obj, |v, k| v.get(k.as_str()))?;
    match v {
        Value::Null => None,
        Value::Object(o) if col.reference => {
            o.get("id").and_then(Value::as_str).map(str::to_string)
        }
        Value::Array(items) if col.join => Some(
            items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| i.to_string())
                })
                .collect::<Vec<_>>()
                .join(","),
        ),
        _ if col.kind == ColumnType::Json => Some(v.to_string()),
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn select_expr(col: &Column) -> String {
    match col.kind {
        ColumnType::Timestamp => {
            format!("CAST(CAST(epoch(\"{}\") AS BIGINT) AS VARCHAR)", col.name)
        }
        _ => format!("CAST(\"{}\" AS VARCHAR)", col.name),
    }
}

fn same(col: &Column, got: &Option<String>, want: &Option<String>) -> bool {
    match (col.kind, got, want) {
        (ColumnType::Json, Some(g), Some(w)) => {
            serde_json::from_str::<Value>(g).ok() == serde_json::from_str::<Value>(w).ok()
        }
        (ColumnType::Float64, Some(g), Some(w)) => g.parse::<f64>().ok() == w.parse::<f64>().ok(),
        _ => got == want,
    }
}

/// Asserts that every table of `dataset` for one merchant equals the simulator's ground truth.
async fn assert_equal(
    db: &DuckDb,
    sim: &RunningSim,
    merchant: &str,
    livemode: bool,
    dataset: &Dataset,
) {
    let mode = if livemode { "live" } else { "test" };
    let truth: Vec<Value> = sim.sim().truth(merchant, livemode, &dataset.name).unwrap();
    let live: Vec<&Value> = truth
        .iter()
        .filter(|t| t["deleted"] == false)
        .map(|t| &t["object"])
        .collect();
    let schema = schema_name(livemode);
    for table in &dataset.tables {
        let ctx = format!("{schema}.{} for {merchant} ({mode})", table.name);
        match table.kind {
            TableKind::Main => {
                let cols: Vec<String> = table.columns.iter().map(select_expr).collect();
                let rows = db
                    .query_strings(&format!(
                        "SELECT {} FROM {schema}.{} WHERE merchant_id = '{merchant}' ORDER BY id",
                        cols.join(", "),
                        table.name
                    ))
                    .unwrap();
                let got: BTreeMap<String, Vec<Option<String>>> = rows
                    .into_iter()
                    .map(|r| (r[0].clone().unwrap(), r))
                    .collect();
                assert_eq!(got.len(), live.len(), "{ctx}: row count");
                for obj in &live {
                    let id = obj["id"].as_str().unwrap();
                    let row = got.get(id).unwrap_or_else(|| panic!("{ctx}: {id} missing"));
                    for (col, value) in table.columns.iter().zip(row) {
                        let want = expected(col, obj);
                        assert!(
                            same(col, value, &want),
                            "{ctx}: {id}.{}: got {value:?}, want {want:?}",
                            col.name
                        );
                    }
                }
            }
            TableKind::Metadata => {
                let parent = table.parent_key.as_deref().unwrap();
                let rows = db.query_strings(&format!("SELECT {parent}, key, value FROM {schema}.{} WHERE merchant_id = '{merchant}'", table.name)).unwrap();
                let got: BTreeSet<(String, String, String)> = rows
                    .into_iter()
                    .map(|r| {
                        (
                            r[0].clone().unwrap(),
                            r[1].clone().unwrap(),
                            r[2].clone().unwrap_or_default(),
                        )
                    })
                    .collect();
                let want: BTreeSet<(String, String, String)> = live
                    .iter()
                    .flat_map(|o| {
                        let id = o["id"].as_str().unwrap().to_string();
                        o["metadata"]
                            .as_object()
                            .into_iter()
                            .flatten()
                            .map(move |(k, v)| {
                                (
                                    id.clone(),
                                    k.clone(),
                                    v.as_str().unwrap_or_default().to_string(),
                                )
                            })
                    })
                    .collect();
                assert_eq!(got, want, "{ctx}");
            }
            TableKind::Child => {
                let parent = table.parent_key.as_deref().unwrap();
                let n = db.query_strings(&format!("SELECT count(*)::VARCHAR FROM {schema}.{} WHERE merchant_id = '{merchant}'", table.name)).unwrap();
                let want: usize = live
                    .iter()
                    .map(
                        |o| match table.source.iter().try_fold(*o, |v, k| v.get(k.as_str())) {
                            Some(Value::Array(a)) => a.len(),
                            Some(Value::Object(l)) => l["data"].as_array().map_or(0, Vec::len),
                            _ => 0,
                        },
                    )
                    .sum();
                assert_eq!(
                    n[0][0].as_deref(),
                    Some(want.to_string().as_str()),
                    "{ctx}: child rows"
                );
                if table.columns.iter().any(|c| c.name == "id") {
                    let rows = db
                        .query_strings(&format!(
                            "SELECT {parent}, id FROM {schema}.{} WHERE merchant_id = '{merchant}'",
                            table.name
                        ))
                        .unwrap();
                    let got: BTreeSet<(String, String)> = rows
                        .into_iter()
                        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
                        .collect();
                    let want: BTreeSet<(String, String)> = live
                        .iter()
                        .flat_map(|o| {
                            let id = o["id"].as_str().unwrap().to_string();
                            let items =
                                match table.source.iter().try_fold(*o, |v, k| v.get(k.as_str())) {
                                    Some(Value::Object(l)) => {
                                        l["data"].as_array().cloned().unwrap_or_default()
                                    }
                                    Some(Value::Array(a)) => a.clone(),
                                    _ => vec![],
                                };
                            items.into_iter().map(move |i| {
                                (id.clone(), i["id"].as_str().unwrap_or_default().to_string())
                            })
                        })
                        .collect();
                    assert_eq!(got, want, "{ctx}");
                }
            }
        }
    }
}

fn merchants(sim: &RunningSim) -> Vec<String> {
    sim.info()
        .accounts
        .iter()
        .filter(|a| a.kind != AccountKind::Connected)
        .take(2)
        .map(|a| a.id.clone())
        .collect()
}

async fn assert_all_equal(out: &Path, sim: &RunningSim, datasets: &[&Dataset]) {
    let db = DuckDb::open(&out.join("stripe_pipeline.duckdb")).unwrap();
    for merchant in merchants(sim) {
        for livemode in [true, false] {
            for d in datasets {
                assert_equal(&db, sim, &merchant, livemode, d).await;
            }
        }
    }
    for livemode in [true, false] {
        for t in datasets.iter().map(|d| d.main_table()) {
            let dups = db
                .query_strings(&format!(
                    "SELECT (count(*) - count(DISTINCT (merchant_id, id)))::VARCHAR FROM {}.{}",
                    schema_name(livemode),
                    t.name
                ))
                .unwrap();
            assert_eq!(dups[0][0].as_deref(), Some("0"), "duplicates in {}", t.name);
        }
    }
}

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
    assert!(
        out.path()
            .join("lake/testmode/_manifests")
            .read_dir()
            .unwrap()
            .count()
            >= 2
    );
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
            endpoint_per_sec: 4.0,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restricted_key_without_one_permission_fails_that_dataset_only() {
    let sim = sim(SimConfig::tiny()).await;
    let info = sim.info();
    let merchant = info.accounts[0].id.clone();
    let allow: Vec<&str> = Catalog::get()
        .datasets
        .iter()
        .map(|d| d.name.as_str())
        .filter(|d| *d != "disputes")
        .chain(["subscription_items"])
        .collect();
    let key = sim
        .sim()
        .mint_restricted_key(&merchant, false, &allow)
        .unwrap()
        .key;
    let out = tempfile::tempdir().unwrap();
    let mut cfg = config(&sim, out.path());
    cfg.accounts = vec![AccountConfig {
        name: "restricted".into(),
        key: Some(Secret::new(key)),
        key_env: None,
    }];
    let report = run(&cfg).await;
    let failures = report.failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].1, "disputes");
    assert!(
        failures[0].2.contains("rak_dispute_read"),
        "{}",
        failures[0].2
    );
    let db = DuckDb::open(&out.path().join("stripe_pipeline.duckdb")).unwrap();
    assert_equal(
        &db,
        &sim,
        &merchant,
        false,
        Catalog::get().dataset("charges").unwrap(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_join_with_a_users_own_table_works() {
    let sim = sim(SimConfig::tiny()).await;
    let out = tempfile::tempdir().unwrap();
    let mut cfg = config(&sim, out.path());
    cfg.datasets = vec!["balance_transactions".into()];
    run(&cfg).await;
    let merchant = &merchants(&sim)[0];
    let truth = sim
        .sim()
        .truth(merchant, true, "balance_transactions")
        .unwrap();
    let bt = &truth
        .iter()
        .find(|t| t["object"]["type"] == "charge")
        .unwrap()["object"];
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
    assert_eq!(
        rows,
        vec![vec![
            Some("2026-10-01".into()),
            Some("ORD-1".into()),
            Some(bt["amount"].to_string()),
            Some(bt["fee"].to_string()),
            None
        ]]
    );
}
