//! JSON → Arrow → Parquet throughput for charges and balance transactions (one core).
//!
//! `cargo bench -p stripe-pipeline --bench convert`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::Value;
use stripe_pipeline::catalog::Catalog;
use stripe_pipeline::convert::{Converter, RowContext};

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

fn to_parquet(dataset: &str, objs: &[Value]) -> usize {
    let ds = Catalog::get().dataset(dataset).expect("dataset");
    let mut c = Converter::new(ds);
    let ctx = RowContext {
        merchant_id: "acct_bench",
        batch_timestamp: 1,
        deleted: false,
    };
    for o in objs {
        c.push(o, ctx);
    }
    let mut bytes = 0;
    for t in &mut c.tables {
        if let Some(batch) = t.take() {
            let mut w = parquet::arrow::ArrowWriter::try_new(
                Vec::new(),
                batch.schema(),
                Some(
                    parquet::file::properties::WriterProperties::builder()
                        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
                        .build(),
                ),
            )
            .expect("writer");
            w.write(&batch).expect("write");
            bytes += w.into_inner().expect("finish").len();
        }
    }
    bytes
}

fn bench(c: &mut Criterion) {
    for (dataset, resource) in [
        ("charges", "charges"),
        ("balance_transactions", "balance_transactions"),
    ] {
        let objs = objects(resource);
        let json_bytes: usize = objs.iter().map(|o| o.to_string().len()).sum();
        // Parsing is part of the work: pages arrive as JSON text.
        let texts: Vec<String> = objs.iter().map(Value::to_string).collect();
        let mut group = c.benchmark_group(dataset);
        group.sample_size(10);
        group.throughput(Throughput::Elements(objs.len() as u64));
        group.bench_function("objects", |b| {
            b.iter(|| {
                let parsed: Vec<Value> = texts
                    .iter()
                    .map(|t| serde_json::from_str(t).expect("json"))
                    .collect();
                to_parquet(dataset, &parsed)
            })
        });
        group.throughput(Throughput::Bytes(json_bytes as u64));
        group.bench_function("bytes", |b| {
            b.iter(|| {
                let parsed: Vec<Value> = texts
                    .iter()
                    .map(|t| serde_json::from_str(t).expect("json"))
                    .collect();
                to_parquet(dataset, &parsed)
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
