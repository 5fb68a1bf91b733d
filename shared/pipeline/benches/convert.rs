//! JSON → Arrow → Parquet throughput for charges and balance transactions (one core), from compact
//! pages (as the simulator serves them) and from pretty-printed ones (as Stripe serves them).
//!
//! `cargo bench -p stripe-pipeline --bench convert`

use arrow::record_batch::RecordBatch;
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

/// A list page of `objs` (what the API returns), as compact text (what the simulator serves).
fn page(objs: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&list(objs)).expect("json")
}

/// The same page pretty-printed with two-space indentation, as Stripe's API serves it: half again as
/// many bytes, and JSON columns have to be copied without their whitespace.
fn pretty_page(objs: &[Value]) -> Vec<u8> {
    serde_json::to_vec_pretty(&list(objs)).expect("json")
}

fn list(objs: &[Value]) -> Value {
    serde_json::json!({"object": "list", "url": "/v1/x", "has_more": true, "data": objs})
}

/// Converts one page (parsing included) into record batches, one per table with rows. The converter
/// is kept from page to page, as a sync's segment keeps one for all the pages it reads.
fn to_arrow(c: &mut Converter, page: &[u8]) -> Vec<(String, RecordBatch)> {
    let ctx = RowContext {
        merchant_id: "acct_bench",
        account: None,
        batch_timestamp: 1,
        deleted: false,
    };
    c.push_page(page, ctx).expect("page");
    c.tables
        .iter_mut()
        .filter_map(|t| {
            t.take()
                .expect("rows fit their schema")
                .map(|b| (t.table.name.clone(), b))
        })
        .collect()
}

/// Converts one page and encodes every table as zstd Parquet; returns the bytes.
fn to_parquet(c: &mut Converter, page: &[u8]) -> usize {
    to_arrow(c, page)
        .into_iter()
        .map(|(table, batch)| {
            stripe_pipeline::lake::encode(&[batch], &table)
                .expect("encode")
                .len()
        })
        .sum()
}

fn bench(c: &mut Criterion) {
    for dataset in ["charges", "balance_transactions"] {
        let objs = objects(dataset);
        let text = page(&objs);
        let mut conv = Converter::new(Catalog::get().dataset(dataset).expect("dataset"));
        let mut group = c.benchmark_group(dataset);
        group.sample_size(10);
        group.throughput(Throughput::Elements(objs.len() as u64));
        group.bench_function("objects", |b| b.iter(|| to_parquet(&mut conv, &text)));
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function("json_bytes", |b| b.iter(|| to_parquet(&mut conv, &text)));
        let pretty = pretty_page(&objs);
        group.throughput(Throughput::Elements(objs.len() as u64));
        group.bench_function("pretty_objects", |b| {
            b.iter(|| to_parquet(&mut conv, &pretty))
        });
        // The two halves: JSON → Arrow alone, and Arrow → Parquet alone.
        group.throughput(Throughput::Elements(objs.len() as u64));
        group.bench_function("arrow_only", |b| b.iter(|| to_arrow(&mut conv, &text)));
        let batches = to_arrow(&mut conv, &text);
        group.bench_function("parquet_only", |b| {
            b.iter(|| {
                batches
                    .iter()
                    .map(|(table, batch)| {
                        stripe_pipeline::lake::encode(std::slice::from_ref(batch), table)
                            .expect("encode")
                            .len()
                    })
                    .sum::<usize>()
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
