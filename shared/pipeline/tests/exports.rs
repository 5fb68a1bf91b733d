//! Exports in Stripe's cloud-storage layout, built into real object stores started by the test: S3
//! (moto), Google Cloud Storage (gcp-storage-emulator) and Azure Blob Storage (Azurite). A reader
//! (DuckDB) loads each export and finds the simulator's ground truth, after a full sync and again after
//! changes.

use std::path::Path;
use stripe_pipeline::export::{ExportOptions, ExportReport, Exporter};
use stripe_pipeline::lake::Lake;
use stripe_pipeline::warehouse::duckdb::DuckDb;
use stripe_pipeline::warehouse::schema_name;
use stripe_pipeline_testkit::acceptance::{
    assert_warehouse_equal, churn, config, core_datasets, merchants, read_export, run, sim,
    CORE_DATASETS,
};
use stripe_pipeline_testkit::moto::{create_bucket, Moto};
use stripe_pipeline_testkit::storage::{Azurite, GcsEmulator};
use stripe_sim::SimConfig;

/// 2026-11-26T12:00:00Z.
const T0: i64 = 1_795_694_400;

/// Both modes of every account, as the reader of one store sees them, equal the ground truth, and
/// every table equals the warehouse that the syncs loaded from the same lake (row for row, every column,
/// deleted objects and their child rows included).
async fn assert_exports_equal(
    store: &Lake,
    reports: &[ExportReport],
    sim: &stripe_sim::RunningSim,
    warehouse: &Path,
    dir: &Path,
) {
    assert_eq!(reports.len(), 2, "a live and a test export: {reports:?}");
    let core = core_datasets();
    let db = DuckDb::open(&dir.join("reader.duckdb")).unwrap();
    let mut scopes = Vec::new();
    for report in reports {
        read_export(store, &report.folder, report.livemode, dir, &db).await;
        scopes.extend(merchants(sim).into_iter().map(|m| (m, report.livemode)));
    }
    assert_warehouse_equal(&db, sim, &scopes, &core).await;
    db.query_strings(&format!(
        "ATTACH '{}' AS loaded (READ_ONLY)",
        warehouse.display()
    ))
    .unwrap();
    for report in reports {
        let schema = schema_name(report.livemode);
        for table in core.iter().flat_map(|d| &d.tables) {
            for (a, b) in [("loaded.", ""), ("", "loaded.")] {
                let extra = db
                    .query_strings(&format!(
                        "SELECT CAST(COUNT(*) AS VARCHAR) FROM (SELECT * FROM {a}{schema}.{t} EXCEPT ALL SELECT * FROM {b}{schema}.{t}) AS extra",
                        t = table.name
                    ))
                    .unwrap();
                assert_eq!(
                    extra[0][0].as_deref(),
                    Some("0"),
                    "{schema}.{}: rows in {} and not in {}",
                    table.name,
                    if a.is_empty() {
                        "the export"
                    } else {
                        "the warehouse"
                    },
                    if a.is_empty() {
                        "the warehouse"
                    } else {
                        "the export"
                    },
                );
            }
        }
    }
    db.query_strings("DETACH loaded").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_in_s3_gcs_and_azure_hold_the_ground_truth_after_changes() {
    let sim = sim(SimConfig {
        objects: 40,
        ..SimConfig::tiny()
    })
    .await;
    let out = tempfile::tempdir().unwrap();
    // The syncs also load DuckDB from the same lake: the exports must hold exactly its rows.
    let mut cfg = config(&sim, out.path());
    // Event-less datasets are listed again on every run, so their updates show at once.
    cfg.snapshot_interval_secs = 0;
    cfg.unannounced_interval_secs = 0;
    // The core datasets: every other dataset is exported by the same code (an export has every
    // table, empty where nothing was synced), and the CLI's tests sync all of them.
    cfg.datasets = CORE_DATASETS.iter().map(|d| d.to_string()).collect();
    let report = run(&cfg).await;
    assert!(report.failures().is_empty(), "{:?}", report.failures());
    let lake = Lake::local(&cfg.lake_dir()).unwrap();

    let moto = Moto::start();
    create_bucket(&moto, "exports").await;
    let gcs = GcsEmulator::start();
    gcs.create_bucket("exports").await;
    let azurite = Azurite::start();
    azurite.create_container("exports").await;
    let stores = [
        (
            "s3",
            Lake::cloud("s3://exports/stripe", &moto.lake_options()).unwrap(),
        ),
        (
            "gcs",
            Lake::cloud("gs://exports/stripe", &gcs.lake_options()).unwrap(),
        ),
        (
            "azure",
            Lake::cloud("az://exports/stripe", &azurite.lake_options()).unwrap(),
        ),
    ];

    let mut firsts = Vec::new();
    for (name, store) in &stores {
        let exporter = Exporter {
            lake: &lake,
            out: store,
            options: ExportOptions::default(),
        };
        let reports = exporter.export_all(T0).await.unwrap();
        assert!(
            reports.iter().all(|r| r.previous.is_none() && r.rows > 0),
            "{name}: {reports:?}"
        );
        let dir = out.path().join(name).join("first");
        assert_exports_equal(store, &reports, &sim, &cfg.duckdb_path(), &dir).await;
        firsts.push(reports);
    }

    for merchant in merchants(&sim) {
        for livemode in [true, false] {
            churn(&sim, &merchant, livemode);
        }
    }
    // Past the change feed's lag, so the next sync reads every change.
    sim.sim().advance(120);
    let report = run(&cfg).await;
    assert!(report.failures().is_empty(), "{:?}", report.failures());

    for ((name, store), first) in stores.iter().zip(&firsts) {
        // No overlap: only the files of the second sync are read, so everything else must come from
        // the previous export.
        let exporter = Exporter {
            lake: &lake,
            out: store,
            options: ExportOptions {
                overlap_micros: 0,
                ..ExportOptions::default()
            },
        };
        let reports = exporter.export_all(T0 + 3600).await.unwrap();
        for (r, f) in reports.iter().zip(first) {
            assert_eq!(
                r.previous.as_deref(),
                Some(f.run_date.as_str()),
                "{name}: built on the previous export"
            );
        }
        let dir = out.path().join(name).join("second");
        assert_exports_equal(store, &reports, &sim, &cfg.duckdb_path(), &dir).await;
    }
}
