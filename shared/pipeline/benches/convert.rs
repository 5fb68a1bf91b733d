//! JSON → Arrow → Parquet throughput for charges and balance transactions (one core).
//!
//! `cargo bench -p stripe-pipeline --bench convert`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::Value;
use stripe_pipeline::catalog::Catalog;
use stripe_pipeline::convert::{Converter, RowContext};

/// Every object of one resource of a simulated account (about 2,000 charges; 5,000 balance
/// transactions).
fn objects(resource: &str) -> Vec<Value> {
    let sim = stripe_sim::Simulator::new(stripe_sim::SimConfig {
        objects: 2_000,
        ..stripe_sim::SimConfig::tiny()
    });
    let info = sim.info("");
    let account = &info.accounts[0].id;
    sim.truth(account, true, resource)
        .unwrap_or_default()
        .into_iter()
        .map(|t| t["object"].clone())
        .collect()
}

/// A list page of `objs` (what the API returns), as text.
fn page(objs: &[Value]) -> Vec<u8> {
    serde_json::to_vec(
        &serde_json::json!({"object": "list", "url": "/v1/x", "has_more": true, "data": objs}),
    )
    .expect("json")
}

/// Converts one page (parsing included) and encodes every table as zstd Parquet; returns the bytes.
fn to_parquet(dataset: &str, page: &[u8]) -> usize {
    let ds = Catalog::get().dataset(dataset).expect("dataset");
    let mut c = Converter::new(ds);
    let ctx = RowContext {
        merchant_id: "acct_bench",
        batch_timestamp: 1,
        deleted: false,
    };
    c.push_page(page, ctx).expect("page");
    let mut bytes = 0;
    for t in &mut c.tables {
        if let Some(batch) = t.take() {
            bytes += stripe_pipeline::lake::encode(&[batch], &t.table.name)
                .expect("encode")
                .len();
        }
    }
    bytes
}

fn bench(c: &mut Criterion) {
    for dataset in ["charges", "balance_transactions"] {
        let objs = objects(dataset);
        let text = page(&objs);
        let mut group = c.benchmark_group(dataset);
        group.sample_size(10);
        group.throughput(Throughput::Elements(objs.len() as u64));
        group.bench_function("objects", |b| b.iter(|| to_parquet(dataset, &text)));
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function("json_bytes", |b| b.iter(|| to_parquet(dataset, &text)));
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
