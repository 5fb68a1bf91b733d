//! One behaviour for every warehouse: the same scenarios run against DuckDB, a real PostgreSQL server,
//! Redshift through the real Data API client and the Data API emulator (SQL on PostgreSQL, `COPY`
//! from moto's S3), and Snowflake through its REST protocol and fakesnow (`PUT` to an internal
//! stage, `COPY INTO`), through the `Warehouse` trait the engine uses, with Parquet files written to a lake
//! the way the engine writes them. A new warehouse adds a [`Backend`] and passes every scenario; the
//! test file `shared/pipeline/tests/warehouse_conformance.rs` runs each once per backend.

use crate::moto::{create_bucket, Moto};
use crate::postgres as postgres_server;
use crate::redshift::{self as redshift_emulator, RedshiftEmulator};
use crate::snowflake::Fakesnow;

use serde_json::{json, Value};
use std::sync::OnceLock;
use stripe_pipeline::catalog::{Catalog, Dataset, Owner};
use stripe_pipeline::config::Secret;
use stripe_pipeline::convert::{Converter, RowContext};
use stripe_pipeline::lake::Lake;
use stripe_pipeline::warehouse::duckdb::DuckDb;
use stripe_pipeline::warehouse::postgres::Postgres;
use stripe_pipeline::warehouse::redshift::{Redshift, RedshiftSettings, RedshiftTarget};
use stripe_pipeline::warehouse::snowflake::{Credential, Login, Snowflake, SnowflakeSettings};
use stripe_pipeline::warehouse::{Load, Warehouse};

const T1: i64 = 1_795_694_400_000_000; // 2026-11-26T12:00:00Z, in microseconds
const T2: i64 = T1 + 60_000_000;
const T3: i64 = T1 + 120_000_000;
const M: &str = "acct_conformance";

/// One runtime for the whole suite: a PostgreSQL connection's task lives on the runtime that opened it.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    })
}

/// The warehouses the suite runs against.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    DuckDb,
    Postgres,
    Redshift,
    Snowflake,
}

struct Fixture {
    lake: Lake,
    wh: Box<dyn Warehouse>,
    batches: u32,
    /// Dropped after the warehouse: the emulators it talks to.
    _services: Option<Box<dyn std::any::Any>>,
    _dir: tempfile::TempDir,
}

fn dataset(name: &str) -> &'static Dataset {
    Catalog::get().dataset(name).unwrap()
}

impl Fixture {
    async fn open(backend: Backend, label: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let local = || Lake::local(&dir.path().join("lake")).unwrap();
        let (lake, wh, services): (Lake, Box<dyn Warehouse>, Option<Box<dyn std::any::Any>>) =
            match backend {
                Backend::DuckDb => (
                    local(),
                    Box::new(DuckDb::open(&dir.path().join("w.duckdb")).unwrap()),
                    None,
                ),
                Backend::Postgres => {
                    let url = postgres_server::server().database(label);
                    let wh = Postgres::connect(&Secret::new(url), None).await.unwrap();
                    (local(), Box::new(wh), None)
                }
                Backend::Redshift => {
                    let moto = Moto::start();
                    create_bucket(&moto, "lake").await;
                    let lake = Lake::cloud("s3://lake/stripe", &moto.lake_options()).unwrap();
                    let emulator = RedshiftEmulator::start(&moto);
                    let settings = RedshiftSettings {
                        target: RedshiftTarget::Workgroup("analytics".into()),
                        database: redshift_emulator::database(label),
                        db_user: None,
                        secret_arn: None,
                        copy_role_arn: "arn:aws:iam::123456789012:role/stripe-pipeline-copy".into(),
                    };
                    let wh = Redshift::connect(&emulator.sdk().await, settings)
                        .await
                        .unwrap();
                    // The emulator goes first, then moto.
                    let services: (RedshiftEmulator, Moto) = (emulator, moto);
                    (lake, Box::new(wh), Some(Box::new(services)))
                }
                Backend::Snowflake => {
                    let fakesnow = Fakesnow::start();
                    let wh = Snowflake::connect(snowflake_settings(&fakesnow, label))
                        .await
                        .unwrap();
                    (local(), Box::new(wh), Some(Box::new(fakesnow)))
                }
            };
        Fixture {
            lake,
            wh,
            batches: 0,
            _services: services,
            _dir: dir,
        }
    }

    /// Writes `objects` (each with its `batch_timestamp`) as one batch of Parquet files, the way a slice
    /// does, and returns the files per table.
    async fn write(
        &mut self,
        dataset: &Dataset,
        livemode: bool,
        objects: &[(i64, Value)],
    ) -> Vec<(String, String)> {
        let mut converter = Converter::new(dataset);
        for (ts, obj) in objects {
            converter.push(
                obj,
                RowContext {
                    merchant_id: M,
                    account: None,
                    batch_timestamp: *ts,
                    deleted: obj.get("deleted") == Some(&json!(true)),
                },
            );
        }
        self.batches += 1;
        let stem = format!("batch-{}", self.batches);
        let mut files = Vec::new();
        for t in &mut converter.tables {
            if let Some(batch) = t.take().expect("rows fit their schema") {
                let f = self
                    .lake
                    .write(livemode, M, &stem, &[batch], &t.table.name)
                    .await
                    .unwrap()
                    .unwrap();
                files.push((f.table, f.path));
            }
        }
        files
    }

    async fn load_files(
        &mut self,
        dataset: &Dataset,
        livemode: bool,
        files: Vec<(String, String)>,
        tombstones: (Vec<String>, i64),
    ) -> u64 {
        self.wh
            .load(&Load {
                dataset,
                livemode,
                merchant_id: M,
                lake: &self.lake,
                files,
                as_of: 1_795_694_400,
                tombstones: tombstones.0,
                tombstone_timestamp: tombstones.1,
            })
            .await
            .unwrap()
    }

    async fn load(&mut self, dataset: &Dataset, objects: &[(i64, Value)]) -> u64 {
        let files = self.write(dataset, true, objects).await;
        self.load_files(dataset, true, files, (Vec::new(), 0)).await
    }

    async fn rows(&mut self, sql: &str) -> Vec<Vec<String>> {
        self.wh
            .query_strings(sql)
            .await
            .unwrap()
            .into_iter()
            .map(|r| {
                r.into_iter()
                    .map(|v| v.unwrap_or_else(|| "NULL".into()))
                    .collect()
            })
            .collect()
    }
}

/// A login to `fakesnow`, into a database of its own.
pub fn snowflake_settings(fakesnow: &Fakesnow, database: &str) -> SnowflakeSettings {
    SnowflakeSettings {
        login: Login {
            base_url: fakesnow.base_url.clone(),
            account: "emulator".into(),
            user: "loader".into(),
            role: None,
            warehouse: None,
            database: database.to_uppercase(),
            credential: Credential::Password(Secret::new("unused-by-the-emulator")),
        },
        storage_integration: None,
    }
}

fn charge(id: &str, amount: i64, description: Option<&str>, metadata: Value) -> Value {
    json!({"id": id, "object": "charge", "amount": amount, "currency": "usd",
           "description": description, "metadata": metadata, "created": 1_795_000_000})
}

fn strings(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| r.iter().map(|s| s.to_string()).collect())
        .collect()
}

const CHARGES: &str = "SELECT id, CAST(amount AS VARCHAR), description, CASE WHEN deleted THEN 'deleted' ELSE 'live' END FROM stripe.charges WHERE merchant_id = 'acct_conformance' ORDER BY id";
const CHARGE_METADATA: &str = "SELECT charge_id, key, value FROM stripe.charges_metadata WHERE merchant_id = 'acct_conformance' ORDER BY 1, 2";

pub async fn newest_version_wins_and_loads_are_idempotent(backend: Backend) {
    let mut f = Fixture::open(backend, "newest").await;
    let charges = dataset("charges");
    assert!(f.wh.prepare(true, charges).await.unwrap().is_empty());
    let v1 = f
        .write(
            charges,
            true,
            &[
                (
                    T1,
                    charge("ch_1", 100, Some("first"), json!({"a": "1", "b": "2"})),
                ),
                (T1, charge("ch_2", 200, None, json!({}))),
                // Two versions of one object in one batch: the newer one counts.
                (T1, charge("ch_3", 300, Some("old"), json!({"v": "old"}))),
                (T2, charge("ch_3", 310, Some("new"), json!({"v": "new"}))),
            ],
        )
        .await;
    assert_eq!(
        f.load_files(charges, true, v1.clone(), (Vec::new(), 0))
            .await,
        3
    );
    let v2 = f
        .write(
            charges,
            true,
            &[(T2, charge("ch_1", 150, Some("second"), json!({"a": "9"})))],
        )
        .await;
    f.load_files(charges, true, v2.clone(), (Vec::new(), 0))
        .await;
    // Replays: in the first batch, ch_1's version is older than the stored one and changes nothing
    // (ch_2 and ch_3 are re-applied as the same versions); the newer batch again duplicates nothing.
    assert_eq!(f.load_files(charges, true, v1, (Vec::new(), 0)).await, 2);
    f.load_files(charges, true, v2, (Vec::new(), 0)).await;
    assert_eq!(
        f.rows(CHARGES).await,
        strings(&[
            &["ch_1", "150", "second", "live"],
            &["ch_2", "200", "NULL", "live"],
            &["ch_3", "310", "new", "live"],
        ])
    );
    assert_eq!(
        f.rows(CHARGE_METADATA).await,
        strings(&[&["ch_1", "a", "9"], &["ch_3", "v", "new"]])
    );
    assert_eq!(f.wh.count(true, "charges", M).await.unwrap(), 3);
    assert_eq!(f.wh.count(true, "charges_metadata", M).await.unwrap(), 2);
    assert_eq!(f.wh.count(true, "charges", "acct_other").await.unwrap(), 0);
}

fn invoice(id: &str, lines: &[(&str, i64)]) -> Value {
    let data: Vec<Value> = lines
        .iter()
        .map(|(id, amount)| json!({"id": id, "object": "line_item", "amount": amount, "currency": "usd"}))
        .collect();
    json!({"id": id, "object": "invoice", "currency": "usd", "metadata": {},
           "lines": {"object": "list", "data": data, "has_more": false, "url": "/v1/invoices/x/lines"}})
}

pub async fn child_rows_are_replaced_per_parent(backend: Backend) {
    let mut f = Fixture::open(backend, "children").await;
    let invoices = dataset("invoices");
    f.wh.prepare(true, invoices).await.unwrap();
    f.load(
        invoices,
        &[
            (T1, invoice("in_1", &[("il_1", 10), ("il_2", 20)])),
            (T1, invoice("in_2", &[("il_3", 30)])),
        ],
    )
    .await;
    f.load(invoices, &[(T2, invoice("in_1", &[("il_4", 40)]))])
        .await;
    // An older version of in_2 arriving late does not bring back its old lines either.
    f.load(invoices, &[(T1 - 1, invoice("in_2", &[("il_9", 90)]))])
        .await;
    assert_eq!(
        f.rows("SELECT invoice_id, id, CAST(amount AS VARCHAR) FROM stripe.invoice_line_items WHERE merchant_id = 'acct_conformance' ORDER BY 1, 2").await,
        strings(&[&["in_1", "il_4", "40"], &["in_2", "il_3", "30"]])
    );
}

/// A re-list after the 30-day cliff can mark thousands of objects deleted in one load: more ids than
/// one statement of the Redshift Data API may hold (100 KB).
pub async fn thousands_of_deletes_in_one_load(backend: Backend) {
    const N: usize = 4_000;
    let mut f = Fixture::open(backend, "many_deletes").await;
    let charges = dataset("charges");
    f.wh.prepare(true, charges).await.unwrap();
    let ids: Vec<String> = (0..N).map(|n| format!("ch_3MqLiJLkdIw{n:014}")).collect();
    let objects: Vec<(i64, Value)> = ids
        .iter()
        .map(|id| (T1, charge(id, 100, None, json!({}))))
        .collect();
    f.load(charges, &objects).await;
    f.load_files(charges, true, Vec::new(), (ids[1..].to_vec(), T2))
        .await;
    assert_eq!(
        f.rows("SELECT CASE WHEN deleted THEN 'deleted' ELSE 'live' END, CAST(COUNT(*) AS VARCHAR) FROM stripe.charges WHERE merchant_id = 'acct_conformance' GROUP BY 1 ORDER BY 1")
            .await,
        strings(&[&["deleted", &(N - 1).to_string()], &["live", "1"]])
    );
}

pub async fn deletes_are_kept_as_flags(backend: Backend) {
    let mut f = Fixture::open(backend, "deletes").await;
    let charges = dataset("charges");
    f.wh.prepare(true, charges).await.unwrap();
    f.load(
        charges,
        &[
            (T1, charge("ch_1", 100, None, json!({}))),
            (
                T1,
                charge("ch_2", 200, Some("gone soon"), json!({"k": "v"})),
            ),
        ],
    )
    .await;
    // Nothing older than T1: nothing stale; everything older than T3: both.
    assert!(f
        .wh
        .stale_ids(true, charges, Owner::merchant(M), T1)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        f.wh.stale_ids(true, charges, Owner::merchant(M), T3)
            .await
            .unwrap(),
        ["ch_1", "ch_2"]
    );
    f.load_files(charges, true, Vec::new(), (vec!["ch_2".into()], T2))
        .await;
    // The tombstone keeps the last version's columns; a late older version does not revive it.
    f.load(charges, &[(T1, charge("ch_2", 999, None, json!({})))])
        .await;
    assert_eq!(
        f.rows(CHARGES).await,
        strings(&[
            &["ch_1", "100", "NULL", "live"],
            &["ch_2", "200", "gone soon", "deleted"],
        ])
    );
    assert_eq!(
        f.wh.stale_ids(true, charges, Owner::merchant(M), T3)
            .await
            .unwrap(),
        ["ch_1"]
    );
    // A deletion that arrives as a row (a `*.deleted` event's object).
    let customers = dataset("customers");
    f.wh.prepare(true, customers).await.unwrap();
    f.load(
        customers,
        &[(
            T1,
            json!({"id": "cus_1", "object": "customer", "email": "a@example.com", "metadata": {}}),
        )],
    )
    .await;
    f.load(
        customers,
        &[(
            T2,
            json!({"id": "cus_1", "object": "customer", "deleted": true}),
        )],
    )
    .await;
    assert_eq!(
        f.rows("SELECT id, CASE WHEN deleted THEN 'deleted' ELSE 'live' END FROM stripe.customers WHERE merchant_id = 'acct_conformance'").await,
        strings(&[&["cus_1", "deleted"]])
    );
}

pub async fn new_catalog_columns_are_added_and_old_files_still_load(backend: Backend) {
    let mut f = Fixture::open(backend, "evolution").await;
    let full = dataset("charges");
    let mut older = full.clone();
    older.tables[0].columns.retain(|c| c.name != "description");
    f.wh.prepare(true, &older).await.unwrap();
    let old_files = f
        .write(
            &older,
            true,
            &[(T1, charge("ch_1", 100, Some("lost"), json!({})))],
        )
        .await;
    f.load_files(&older, true, old_files.clone(), (Vec::new(), 0))
        .await;
    assert_eq!(
        f.wh.prepare(true, full).await.unwrap(),
        ["stripe.charges.description"]
    );
    assert!(f.wh.prepare(true, full).await.unwrap().is_empty());
    f.load(full, &[(T2, charge("ch_2", 200, Some("kept"), json!({})))])
        .await;
    // A file written before the column existed, replayed after: it loads, the column empty.
    f.load_files(full, true, old_files, (Vec::new(), 0)).await;
    assert_eq!(
        f.rows(CHARGES).await,
        strings(&[
            &["ch_1", "100", "NULL", "live"],
            &["ch_2", "200", "kept", "live"],
        ])
    );
}

pub async fn modes_have_their_schemas_and_load_times(backend: Backend) {
    let mut f = Fixture::open(backend, "modes").await;
    let charges = dataset("charges");
    f.wh.prepare(false, charges).await.unwrap();
    let files = f
        .write(
            charges,
            false,
            &[(T1, charge("ch_t", 1, None, json!({"x": "y"})))],
        )
        .await;
    f.load_files(charges, false, files, (Vec::new(), 0)).await;
    assert_eq!(f.wh.count(false, "charges", M).await.unwrap(), 1);
    assert_eq!(
        f.rows("SELECT id FROM stripe_testmode.charges WHERE merchant_id = 'acct_conformance'")
            .await,
        strings(&[&["ch_t"]])
    );
    let times = "SELECT table_name, CAST(CAST(EXTRACT(EPOCH FROM data_as_of) AS BIGINT) AS VARCHAR), CASE WHEN data_landed IS NULL THEN 'no' ELSE 'yes' END FROM stripe_testmode.data_load_times WHERE merchant_id = 'acct_conformance' ORDER BY 1";
    assert_eq!(
        f.rows(times).await,
        strings(&[
            &["charges", "1795694400", "yes"],
            &["charges_metadata", "1795694400", "yes"],
        ])
    );
    f.wh.record_freshness(false, &[charges], M, 1_795_698_000)
        .await
        .unwrap();
    assert_eq!(
        f.rows(times).await,
        strings(&[
            &["charges", "1795698000", "yes"],
            &["charges_metadata", "1795698000", "yes"],
        ])
    );
    // The live schema exists only once something is prepared for it.
    f.wh.prepare(true, charges).await.unwrap();
    assert_eq!(f.wh.count(true, "charges", M).await.unwrap(), 0);
}
