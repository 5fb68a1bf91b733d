//! Snowflake load benchmark, against the emulator (fakesnow on DuckDB, started here): the time of one
//! `Warehouse::load` of `--objects` charges (default 100,000) from a local lake — `PUT` of the files to
//! the internal stage, `COPY INTO` the staging tables, the merge in one transaction — first into empty
//! tables, then as new versions of every charge. An emulator figure: a real account's warehouse size,
//! network and storage decide its own.
//!
//! `cargo bench -p stripe-pipeline --bench snowflake_load -- [--objects N]`

mod measure;

use measure::{arg, deliver, memory, templates};
use std::time::Instant;
use stripe_pipeline::catalog::Catalog;
use stripe_pipeline::lake::Lake;
use stripe_pipeline::warehouse::snowflake::Snowflake;
use stripe_pipeline::warehouse::{Load, Warehouse};
use stripe_pipeline_testkit::conformance::warehouse::snowflake_settings;
use stripe_pipeline_testkit::snowflake::Fakesnow;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let objects = arg("--objects", 100_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = Lake::local(&dir.path().join("lake")).expect("lake");
    let templates = templates();
    let ids: Vec<u64> = (0..objects).collect();
    let fakesnow = Fakesnow::start();
    let wh = Snowflake::connect(snowflake_settings(&fakesnow, "bench"))
        .await
        .expect("login");
    let charges = Catalog::get().dataset("charges").expect("charges");
    wh.prepare(true, charges).await.expect("prepare");
    println!("| load | rows changed | files | time | rows/s | peak RSS of this process |");
    println!("|---|---|---|---|---|---|");
    for (run, ts, label) in [
        ("r1", 1_000_000, "into empty tables"),
        ("r2", 2_000_000, "new versions of every charge"),
    ] {
        let files = deliver(&lake, &templates, &ids, ts, run).await;
        let n = files.len();
        let started = Instant::now();
        let changed = wh
            .load(&Load {
                dataset: charges,
                livemode: true,
                merchant_id: "acct_bench",
                lake: &lake,
                files,
                as_of: 1_795_694_400,
                tombstones: Vec::new(),
                tombstone_timestamp: 0,
            })
            .await
            .expect("load");
        let secs = started.elapsed().as_secs_f64();
        println!(
            "| {label} | {changed} | {n} | {secs:.1} s | {:.0} | {} MiB |",
            changed as f64 / secs,
            memory().1
        );
    }
}
