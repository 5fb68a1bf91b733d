//! Helpers shared by the acceptance suites: a simulator, a configuration for it, a sync run, and the
//! comparison of every warehouse table with the simulator's ground truth (in SQL that DuckDB,
//! PostgreSQL and Redshift all run).

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use stripe_pipeline::catalog::{Catalog, Column, ColumnType, Dataset, Owner, TableKind};
use stripe_pipeline::config::{AccountConfig, Config, Secret};
use stripe_pipeline::engine::{self, Quiet, SyncReport};
use stripe_pipeline::export::MARKER;
use stripe_pipeline::lake::Lake;
use stripe_pipeline::warehouse::duckdb::DuckDb;
use stripe_pipeline::warehouse::sql::Dialect;
use stripe_pipeline::warehouse::{schema_name, Warehouse};
use stripe_sim::{AccountKind, RunningSim, SimConfig};

pub async fn sim(config: SimConfig) -> RunningSim {
    stripe_sim::start(config).await.expect("simulator")
}

/// Two accounts, live and test: four configured accounts.
pub fn config(sim: &RunningSim, out: &Path) -> Config {
    let info = sim.info();
    let mut accounts = Vec::new();
    for n in 0..2 {
        for mode in ["live", "test"] {
            accounts.push(AccountConfig {
                name: format!("a{n}-{mode}"),
                key: Some(Secret::new(info.key("secret", mode, n).unwrap())),
                key_env: None,
                connect: false,
            });
        }
    }
    Config {
        output_dir: out.to_path_buf(),
        api_base: sim.base_url(),
        rate_budget: 1.0,
        concurrency: 4,
        accounts,
        ..Config::default()
    }
}

pub async fn run(cfg: &Config) -> SyncReport {
    let accounts = cfg.accounts(|_| None).unwrap();
    let client = stripe_pipeline::local::client(cfg);
    let resolved = engine::resolve(&client, &accounts).await.unwrap();
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
    .await
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

/// A column as text, its name quoted as the warehouse stores it (some are SQL keywords).
fn select_expr(dialect: &Dialect, col: &Column) -> String {
    let name = dialect.q(&col.name);
    match col.kind {
        ColumnType::Timestamp => {
            format!("CAST(CAST(EXTRACT(EPOCH FROM {name}) AS BIGINT) AS VARCHAR)")
        }
        _ => format!("CAST({name} AS VARCHAR)"),
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

/// Rows of a child or metadata table whose parent is not deleted (rows of deleted objects are kept as
/// they were last seen).
/// `SELECT {select}` of a child or metadata table's rows of one owner (`filter`) whose parent is not
/// deleted.
fn of_live_parents(
    select: &str,
    schema: &str,
    dataset: &Dataset,
    table: &stripe_pipeline::catalog::Table,
    filter: &str,
) -> String {
    let parent = table.parent_key.as_deref().unwrap();
    format!(
        "SELECT {select} FROM {schema}.{t} WHERE {filter} AND {parent} IN (SELECT id FROM {schema}.{main} WHERE {filter} AND NOT deleted)",
        t = table.name,
        main = dataset.main_table().name
    )
}

/// The items of a child table in a ground-truth object: an array, or a list object's `data`, of the
/// table's kind of object where it keeps one kind only (`Table::object_filter`).
fn child_items<'v>(table: &stripe_pipeline::catalog::Table, obj: &'v Value) -> Vec<&'v Value> {
    let items: Vec<&Value> = match table.source.iter().try_fold(obj, |v, k| v.get(k.as_str())) {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(Value::Object(l)) => l["data"].as_array().into_iter().flatten().collect(),
        _ => Vec::new(),
    };
    match &table.object_filter {
        Some(kind) => items
            .into_iter()
            .filter(|i| i["object"] == **kind)
            .collect(),
        None => items,
    }
}

/// Asserts that every table of `dataset` for one merchant equals the simulator's ground truth.
pub async fn assert_equal(
    db: &dyn Warehouse,
    sim: &RunningSim,
    merchant: &str,
    livemode: bool,
    dataset: &Dataset,
) {
    assert_owner_equal(db, sim, Owner::merchant(merchant), livemode, dataset).await
}

/// Asserts that every table of `dataset` for one owner (a merchant, or a platform's connected
/// account: pass the dataset of [`Catalog::connected`]) equals the simulator's ground truth.
pub async fn assert_owner_equal(
    db: &dyn Warehouse,
    sim: &RunningSim,
    owner: Owner<'_>,
    livemode: bool,
    dataset: &Dataset,
) {
    let mode = if livemode { "live" } else { "test" };
    let (merchant, filter) = match owner.account {
        None => (
            owner.merchant_id,
            format!("merchant_id = '{}'", owner.merchant_id),
        ),
        Some(a) => (
            a,
            format!("merchant_id = '{}' AND account = '{a}'", owner.merchant_id),
        ),
    };
    let truth: Vec<Value> = sim
        .sim()
        .truth(merchant, livemode, dataset.resource())
        .unwrap();
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
                let cols: Vec<String> = table
                    .columns
                    .iter()
                    .map(|c| select_expr(db.dialect(), c))
                    .collect();
                let rows = db
                    .query_strings(&format!(
                        "SELECT {} FROM {schema}.{} WHERE {filter} AND NOT deleted ORDER BY id",
                        cols.join(", "),
                        table.name
                    ))
                    .await
                    .unwrap();
                let got: BTreeMap<String, Vec<Option<String>>> = rows
                    .into_iter()
                    .map(|r| (r[0].clone().unwrap(), r))
                    .collect();
                assert_eq!(got.len(), live.len(), "{ctx}: rows not deleted");
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
                // Deleted rows are kept, flagged: each is an object Stripe deleted.
                let gone: BTreeSet<&str> = truth
                    .iter()
                    .filter(|t| t["deleted"] == true)
                    .filter_map(|t| t["id"].as_str())
                    .collect();
                let flagged = db
                    .query_strings(&format!(
                        "SELECT id FROM {schema}.{} WHERE {filter} AND deleted",
                        table.name
                    ))
                    .await
                    .unwrap();
                for r in flagged {
                    let id = r[0].clone().unwrap();
                    assert!(
                        gone.contains(id.as_str()),
                        "{ctx}: {id} is marked deleted but exists"
                    );
                }
            }
            TableKind::Metadata => {
                let parent = table.parent_key.as_deref().unwrap();
                let select = format!("{parent}, key, value");
                let query = of_live_parents(&select, schema, dataset, table, &filter);
                let rows = db.query_strings(&query).await.unwrap();
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
                let count = "CAST(COUNT(*) AS VARCHAR)";
                let query = of_live_parents(count, schema, dataset, table, &filter);
                let n = db.query_strings(&query).await.unwrap();
                let want: usize = live.iter().map(|o| child_items(table, o).len()).sum();
                assert_eq!(
                    n[0][0].as_deref(),
                    Some(want.to_string().as_str()),
                    "{ctx}: child rows"
                );
                if table.columns.iter().any(|c| c.name == "id") {
                    let select = format!("{parent}, id");
                    let query = of_live_parents(&select, schema, dataset, table, &filter);
                    let rows = db.query_strings(&query).await.unwrap();
                    let got: BTreeSet<(String, String)> = rows
                        .into_iter()
                        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
                        .collect();
                    let want: BTreeSet<(String, String)> = live
                        .iter()
                        .flat_map(|o| {
                            let id = o["id"].as_str().unwrap().to_string();
                            child_items(table, o).into_iter().map(move |i| {
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

/// A restricted key of `merchant` in one mode that may read every dataset (and events) but `dataset`:
/// Stripe answers its requests for that one with 403.
/// The simulator's resources a dataset reads: its own, and the lists of its fetched tables that need
/// their parent's id as a parameter (`setup_attempts` of setup intents). Lists under the parent's path
/// (a customer's tax ids) are read with the parent's permission and made with the parent.
fn resources(d: &'static Dataset) -> impl Iterator<Item = &'static str> {
    let fetched = d.tables.iter().filter(|t| t.fetch).filter_map(|t| {
        let (path, _) = t.nested_list_path.as_deref()?.split_once('?')?;
        Some(path.trim_start_matches("/v1/"))
    });
    std::iter::once(d.resource()).chain(fetched)
}

/// A restricted key that may read every list of the catalog except those of `dataset` (its own and
/// the ones fetched per parent).
pub fn key_without(sim: &RunningSim, merchant: &str, livemode: bool, dataset: &str) -> String {
    let own: Vec<&str> = Catalog::get()
        .dataset(dataset)
        .into_iter()
        .flat_map(resources)
        .collect();
    key_without_lists(sim, merchant, livemode, &own)
}

/// A restricted key that may read every list of the catalog except `lists` (`setup_attempts`).
pub fn key_without_lists(
    sim: &RunningSim,
    merchant: &str,
    livemode: bool,
    lists: &[&str],
) -> String {
    let allow: Vec<&str> = Catalog::get()
        .datasets
        .iter()
        .flat_map(resources)
        .chain(["subscription_items", "events"])
        .filter(|r| !lists.contains(r))
        .collect();
    sim.sim()
        .mint_restricted_key(merchant, livemode, &allow)
        .expect("a restricted key")
        .key
}

/// The datasets of the tests of scale, warehouses and serverless operation: every kind of table and
/// list the engine has (child tables, metadata, nested lists cut at 10, snapshots, deletes, events,
/// Connect's fees), without the breadth of the catalog. The other datasets go through the same code;
/// the acceptance, incremental, crash and export tests sync all of them. Syncing all in every test of
/// scale would take the suite past its time budget.
pub const CORE_DATASETS: [&str; 17] = [
    "balance_transactions",
    "charges",
    "customers",
    "payment_intents",
    "refunds",
    "disputes",
    "payouts",
    "transfers",
    "invoices",
    "invoiceitems",
    "subscriptions",
    "prices",
    "products",
    "coupons",
    "credit_notes",
    "setup_intents",
    "application_fees",
];

/// [`CORE_DATASETS`] from the catalog.
pub fn core_datasets() -> Vec<&'static Dataset> {
    CORE_DATASETS
        .iter()
        .map(|n| Catalog::get().dataset(n).expect("a core dataset"))
        .collect()
}

pub fn merchants(sim: &RunningSim) -> Vec<String> {
    sim.info()
        .accounts
        .iter()
        .filter(|a| a.kind != AccountKind::Connected)
        .take(2)
        .map(|a| a.id.clone())
        .collect()
}

/// The simulator's Connect platform (the third keyed account) in both modes, as configured accounts
/// with `connect = true`.
pub fn platform_accounts(sim: &RunningSim) -> Vec<AccountConfig> {
    let info = sim.info();
    ["live", "test"]
        .map(|mode| AccountConfig {
            name: format!("platform-{mode}"),
            key: Some(Secret::new(info.key("secret", mode, 2).unwrap())),
            key_env: None,
            connect: true,
        })
        .to_vec()
}

/// Every table of the simulator's Connect platform (`datasets` and its connected accounts) and of
/// each of its accounts connected now (`datasets` in the `connected_account_*` tables) equals the
/// ground truth in a warehouse, in both modes; returns the connected accounts.
pub async fn assert_platform_equal(
    db: &dyn Warehouse,
    sim: &RunningSim,
    datasets: &[&Dataset],
) -> Vec<String> {
    assert_platform_equal_in(db, sim, datasets, &[true, false]).await
}

/// [`assert_platform_equal`] in the modes `livemodes` only.
pub async fn assert_platform_equal_in(
    db: &dyn Warehouse,
    sim: &RunningSim,
    datasets: &[&Dataset],
    livemodes: &[bool],
) -> Vec<String> {
    // Now, not at start: accounts connect and leave.
    let info = sim.sim().info(&sim.base_url());
    let platform = info.account(AccountKind::Platform).unwrap().id.clone();
    let connected: Vec<String> = info
        .accounts
        .iter()
        .filter(|a| a.platform.as_deref() == Some(platform.as_str()))
        .map(|a| a.id.clone())
        .collect();
    let accounts = Catalog::get().dataset("accounts").unwrap();
    for &livemode in livemodes {
        for d in datasets.iter().copied().chain([accounts]) {
            assert_equal(db, sim, &platform, livemode, d).await;
        }
        for acct in &connected {
            for d in Catalog::connected()
                .iter()
                .filter(|c| datasets.iter().any(|d| d.name == c.name))
            {
                let owner = Owner {
                    merchant_id: &platform,
                    account: Some(acct),
                };
                assert_owner_equal(db, sim, owner, livemode, d).await;
            }
        }
    }
    connected
}

pub async fn assert_all_equal(out: &Path, sim: &RunningSim, datasets: &[&Dataset]) {
    let scopes: Vec<(String, bool)> = merchants(sim)
        .into_iter()
        .flat_map(|m| [(m.clone(), true), (m, false)])
        .collect();
    assert_scopes_equal(out, sim, &scopes, datasets).await;
}

/// Every table of the given accounts and modes in the DuckDB file under `out` equals the ground truth,
/// and no table has a duplicate.
pub async fn assert_scopes_equal(
    out: &Path,
    sim: &RunningSim,
    scopes: &[(String, bool)],
    datasets: &[&Dataset],
) {
    let db = DuckDb::open(&out.join("stripe_pipeline.duckdb")).unwrap();
    assert_warehouse_equal(&db, sim, scopes, datasets).await;
}

/// Every table of the given accounts and modes in a warehouse equals the ground truth, and no table has
/// a duplicate.
pub async fn assert_warehouse_equal(
    db: &dyn Warehouse,
    sim: &RunningSim,
    scopes: &[(String, bool)],
    datasets: &[&Dataset],
) {
    for (merchant, livemode) in scopes {
        for d in datasets {
            assert_equal(db, sim, merchant, *livemode, d).await;
        }
    }
    let modes: BTreeSet<bool> = scopes.iter().map(|(_, livemode)| *livemode).collect();
    for livemode in modes {
        for t in datasets.iter().map(|d| d.main_table()) {
            let dups = db
                .query_strings(&format!(
                    "SELECT CAST(COUNT(*) AS VARCHAR) FROM (SELECT merchant_id, id FROM {}.{} GROUP BY merchant_id, id HAVING COUNT(*) > 1) AS dups",
                    schema_name(livemode),
                    t.name
                )).await
                .unwrap();
            assert_eq!(dups[0][0].as_deref(), Some("0"), "duplicates in {}", t.name);
        }
    }
}

/// One round of changes in one account and mode: creates, updates (with and without events),
/// deletes of customers, products, coupons, prices, draft invoices and pending invoice items, and
/// canceled subscriptions. Operations the scope cannot do right now (nothing eligible) are skipped.
/// Waits until the simulator's pushes are all made (none pending for a second), and returns its
/// counts: `[delivered, duplicated, lost, failed]`.
pub async fn pushes_settled(sim: &RunningSim) -> [u64; 4] {
    let mut last = sim.sim().push_counts();
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let now = sim.sim().push_counts();
        if now == last {
            return now;
        }
        last = now;
    }
}

/// Changes that each emit events (no change seen only by a re-list), one simulated second apart, in
/// `merchant`'s mode `livemode`: customers created, updated and deleted, a product created, charges
/// and invoices updated. Returns the customers created.
pub fn evented_changes(sim: &RunningSim, merchant: &str, livemode: bool) -> Vec<String> {
    let s = sim.sim();
    let created = s.create(merchant, livemode, "customers", 2).unwrap();
    s.advance(1);
    s.update(merchant, livemode, "customers", 0, &created)
        .unwrap();
    s.advance(1);
    s.update(merchant, livemode, "customers", 3, &[]).unwrap();
    s.advance(1);
    s.delete(merchant, livemode, "customers", 1, &[]).unwrap();
    s.advance(1);
    s.create(merchant, livemode, "products", 1).unwrap();
    s.advance(1);
    s.update(merchant, livemode, "charges", 2, &[]).unwrap();
    s.advance(1);
    s.update(merchant, livemode, "invoices", 2, &[]).unwrap();
    s.advance(1);
    created
}

pub fn churn(sim: &RunningSim, merchant: &str, livemode: bool) {
    let s = sim.sim();
    for (resource, n) in [
        ("customers", 3),
        ("products", 2),
        ("prices", 2),
        ("coupons", 1),
        ("charges", 3),
        ("payment_intents", 1),
        ("refunds", 1),
        ("invoices", 20),
        ("invoiceitems", 2),
        ("subscriptions", 2),
        ("setup_intents", 1),
        ("payouts", 1),
    ] {
        let _ = s.create(merchant, livemode, resource, n);
    }
    for (resource, n) in [
        ("customers", 3),
        ("charges", 2),
        ("invoices", 3),
        ("subscriptions", 2),
        ("products", 1),
        ("prices", 1),
        ("coupons", 1),
        // No `*.updated` events: only a snapshot re-list sees these.
        ("balance_transactions", 2),
        ("payment_intents", 1),
        ("invoiceitems", 1),
        ("setup_intents", 1),
    ] {
        let _ = s.update(merchant, livemode, resource, n, &[]);
    }
    for (resource, n) in [
        ("customers", 1),
        ("products", 1),
        ("coupons", 1),
        ("prices", 1),
        ("invoices", 1),
        ("invoiceitems", 1),
    ] {
        let _ = s.delete(merchant, livemode, resource, n, &[]);
    }
    let _ = s.cancel_subscriptions(merchant, livemode, 1, &[]);
    // Every resource the simulator serves from the spec's table: one deleted where Stripe can delete
    // it (the others refuse, which is fine), one created, one updated. Deleted first, so the object
    // created survives its round (the small profiles keep one or two of a kind).
    // Lists under a parent's path (`customers/{customer}/tax_ids`) included: their parents change too.
    for res in stripe_sim::Res::all().filter(|r| r.generic().is_some()) {
        let resource = res.def().path;
        let _ = s.delete(merchant, livemode, resource, 1, &[]);
        let _ = s.create(merchant, livemode, resource, 1);
        let _ = s.update(merchant, livemode, resource, 1, &[]);
    }
}

/// Copies one export's run-date folder (`<mode>/<YYYYMMDDHHMM>`) to `dir` and loads it into a DuckDB
/// file, the way a reader of Stripe's layout would: every table from `<table>/*.parquet`.
pub async fn read_export(store: &Lake, folder: &str, livemode: bool, dir: &Path, db: &DuckDb) {
    let local = dir.join(folder);
    let top = store.list_dir(folder).await.unwrap();
    let names: Vec<String> = top
        .objects
        .iter()
        .map(|o| o.path.rsplit('/').next().unwrap().to_string())
        .collect();
    assert!(names.contains(&MARKER.to_string()), "{names:?}");
    for table_dir in &top.folders {
        for object in store.list_dir(table_dir).await.unwrap().objects {
            let to = local.join(object.path.strip_prefix(&format!("{}/", folder)).unwrap());
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::write(&to, store.read(&object.path).await.unwrap()).unwrap();
        }
    }
    let schema = schema_name(livemode);
    for dataset in &Catalog::get().datasets {
        db.prepare(livemode, dataset).await.unwrap();
        for table in &dataset.tables {
            let files = local.join(&table.name);
            assert!(files.is_dir(), "{}: no folder for {}", folder, table.name);
            db.query_strings(&format!(
                "INSERT INTO {schema}.{} BY NAME SELECT * FROM read_parquet('{}/*.parquet')",
                table.name,
                files.display()
            ))
            .unwrap();
        }
    }
}

/// A webhook delivery an endpoint must refuse, and the status it must answer.
#[derive(Debug, Clone)]
pub struct BadDelivery {
    pub what: &'static str,
    pub method: &'static str,
    /// The `Stripe-Signature` header, when there is one.
    pub signature: Option<String>,
    pub body: String,
    pub status: u16,
}

/// The text every [`bad_deliveries`] body holds: a receiver's logs must never show it.
pub const NEVER_LOGGED: &str = "marker_never_logged";

/// A signed delivery of an event to an endpoint with signing secret `secret` at Unix time `now`: its
/// body and `Stripe-Signature`. (An endpoint must accept it; sent to an unknown account, refuse it.)
pub fn good_delivery(secret: &str, now: i64) -> (String, String) {
    let event = serde_json::json!({
        "id": format!("evt_{NEVER_LOGGED}"), "object": "event", "created": now, "livemode": true,
        "type": "customer.updated", "api_version": "2023-08-16",
        "data": {"object": {"id": format!("cus_{NEVER_LOGGED}"), "object": "customer"}},
    })
    .to_string();
    let signature = stripe_sim::push::signature_header(secret, now, event.as_bytes());
    (event, signature)
}

/// Every kind of delivery an endpoint with signing secret `secret` must refuse at Unix time `now`,
/// whatever its path: unsigned, signed with another secret or too long ago, changed after signing,
/// not an event, not JSON, too large, not a POST.
pub fn bad_deliveries(secret: &str, now: i64) -> Vec<BadDelivery> {
    use stripe_sim::push::signature_header;
    let (event, _) = good_delivery(secret, now);
    let signed = |t: i64, body: &str| Some(signature_header(secret, t, body.as_bytes()));
    let not_event = format!("{{\"{NEVER_LOGGED}\":1}}");
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(2 << 20));
    let case = |what, signature, body: &str, status| BadDelivery {
        what,
        method: "POST",
        signature,
        body: body.to_string(),
        status,
    };
    vec![
        case("no signature", None, &event, 400),
        case(
            "another secret",
            Some(signature_header("whsec_other", now, event.as_bytes())),
            &event,
            400,
        ),
        case("older than 300 s", signed(now - 400, &event), &event, 400),
        case(
            "body changed after signing",
            signed(now, &event),
            &event.replace("cus_marker", "cus_other"),
            400,
        ),
        case(
            "signed, but not an event",
            signed(now, &not_event),
            &not_event,
            400,
        ),
        case(
            "signed, not JSON",
            signed(now, NEVER_LOGGED),
            NEVER_LOGGED,
            400,
        ),
        case("too large", signed(now, &big), &big, 413),
        BadDelivery {
            method: "GET",
            ..case("not a POST", None, "", 405)
        },
    ]
}
