//! What the benchmark binaries share: their command-line numbers, this process's memory, and a lake of
//! charges.

use serde_json::Value;
use stripe_pipeline::catalog::Catalog;
use stripe_pipeline::convert::{Converter, RowContext};
use stripe_pipeline::lake::Lake;

/// The number after `name` on the command line, or `default`.
pub fn arg(name: &str, default: u64) -> u64 {
    text_arg(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The text after `name` on the command line.
#[allow(dead_code)] // Not every bench takes a text argument.
pub fn text_arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// Resident and peak resident memory of this process, in MiB.
pub fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            / 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Charges as the simulator makes them, to copy with new ids.
#[allow(dead_code)] // Only the benches that write charges.
pub fn templates() -> Vec<Value> {
    let sim = stripe_sim::Simulator::new(stripe_sim::SimConfig {
        objects: 2_000,
        ..stripe_sim::SimConfig::tiny()
    });
    let info = sim.info("");
    sim.truth(&info.accounts[0].id, true, "charges")
        .unwrap_or_default()
        .into_iter()
        .map(|t| t["object"].clone())
        .collect()
}

/// Writes charges `ids` (each a copy of a template) as change files of 20,000 objects; returns the
/// files, `(table, path)`.
#[allow(dead_code)] // Only the benches that write charges.
pub async fn deliver(
    lake: &Lake,
    templates: &[Value],
    ids: &[u64],
    ts: i64,
    run: &str,
) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let dataset = Catalog::get().dataset("charges").expect("charges");
    for (n, chunk) in ids.chunks(20_000).enumerate() {
        let mut conv = Converter::new(dataset);
        for id in chunk {
            let mut obj = templates[*id as usize % templates.len()].clone();
            obj["id"] = Value::from(format!("ch_bench{id:08}"));
            conv.push(
                &obj,
                RowContext {
                    merchant_id: "acct_bench",
                    account: None,
                    batch_timestamp: ts,
                    deleted: false,
                },
            );
        }
        for t in conv.tables.iter_mut() {
            if let Some(batch) = t.take().expect("rows fit their schema") {
                let name = t.table.name.clone();
                let file = lake
                    .write(
                        true,
                        "acct_bench",
                        &format!("{run}-charges-s00-{n:05}"),
                        &[batch],
                        &name,
                    )
                    .await
                    .expect("write")
                    .expect("a file");
                files.push((file.table, file.path));
            }
        }
    }
    files
}
