//! Export benchmark: builds Stripe-layout exports of a local lake of charges, and reports time, rows/s and
//! the peak memory of each export. Each export runs in a child process of its own, so its peak memory is
//! its own (not the lake generation's, nor a previous export's).
//!
//! 1. a first export, from the change files alone;
//! 2. an export after `--changed-pct` of the charges changed, built on the first;
//! 3. the first export again with `--max-keys` ids per pass (hash partitions), into a new store.
//!
//! `cargo bench -p stripe-pipeline --bench export -- [--objects N] [--changed-pct P] [--max-keys K]`

mod measure;

use measure::{arg, deliver, memory, templates};
use std::time::Instant;
use stripe_pipeline::export::{ExportOptions, ExportReport, Exporter};
use stripe_pipeline::lake::Lake;

/// The child: one export of `<lake>` into `<out>` at `<now>` with `<max_keys>` and `<overlap>`; prints
/// its row of the table.
async fn export_child(args: &[String]) {
    let [lake, out, now, max_keys, overlap, label] = args else {
        panic!("--export-child <lake> <out> <now> <max_keys> <overlap_micros> <label>");
    };
    let lake = Lake::local(std::path::Path::new(lake)).expect("lake");
    let out = Lake::local(std::path::Path::new(out)).expect("store");
    let exporter = Exporter {
        lake: &lake,
        out: &out,
        options: ExportOptions {
            max_keys: max_keys.parse().expect("max_keys"),
            overlap_micros: overlap.parse().expect("overlap"),
            ..ExportOptions::default()
        },
    };
    let started = Instant::now();
    let report: ExportReport = exporter
        .export(true, now.parse().expect("now"))
        .await
        .expect("export");
    let secs = started.elapsed().as_secs_f64();
    println!(
        "| {label} | {} rows, {} files | {:.1} s | {:.0} rows/s | {} | {} MiB |",
        report.rows,
        report.files,
        secs,
        report.rows as f64 / secs,
        report.passes,
        memory().1
    );
}

fn measure(dir: &std::path::Path, out: &str, now: i64, max_keys: usize, overlap: i64, label: &str) {
    let status = std::process::Command::new(std::env::current_exe().expect("exe"))
        .arg("--export-child")
        .arg(dir.join("lake"))
        .arg(dir.join(out))
        .args([
            now.to_string(),
            max_keys.to_string(),
            overlap.to_string(),
            label.to_string(),
        ])
        .status()
        .expect("child");
    assert!(status.success(), "{label}: {status}");
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--export-child") {
        return export_child(&args[i + 1..]).await;
    }
    let objects = arg("--objects", 1_000_000);
    let changed_pct = arg("--changed-pct", 1);
    let max_keys = arg("--max-keys", 100_000) as usize;
    let dir = tempfile::tempdir().expect("tempdir");
    let lake = Lake::local(&dir.path().join("lake")).expect("lake");
    let templates = templates();
    let generated = Instant::now();
    let ids: Vec<u64> = (0..objects).collect();
    deliver(&lake, &templates, &ids, 1_000_000, "r1").await;
    println!(
        "lake: {objects} charges written in {:.1} s; memory before the exports: {} MiB",
        generated.elapsed().as_secs_f64(),
        memory().0
    );
    println!("| export | output | time | rows/s | hash partitions | peak RSS |");
    println!("|---|---|---|---|---|---|");
    let defaults = ExportOptions::default();
    let t0 = 1_795_694_400;
    measure(
        dir.path(),
        "export",
        t0,
        defaults.max_keys,
        defaults.overlap_micros,
        "first, from the change files",
    );
    let step = (100 / changed_pct.max(1)).max(1);
    let changed: Vec<u64> = (0..objects).step_by(step as usize).collect();
    deliver(&lake, &templates, &changed, 2_000_000, "r2").await;
    let label = format!("next, {} changed ({changed_pct} %)", changed.len());
    measure(
        dir.path(),
        "export",
        t0 + 3600,
        defaults.max_keys,
        0,
        &label,
    );
    let label = format!("all change files, max_keys {max_keys}");
    measure(
        dir.path(),
        "partitioned",
        t0,
        max_keys,
        defaults.overlap_micros,
        &label,
    );
}
