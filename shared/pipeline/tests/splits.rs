//! Segments split while a backfill runs: when slots are idle and a segment still has pages to go, the
//! older half of its window becomes a new segment. The halves must still cover the history exactly
//! once: every object is loaded, none twice, and the plan tiles `[HISTORY_START, upper)`.

use arrow::array::AsArray;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::HashMap;
use std::sync::Arc;
use stripe_pipeline::backfill::HISTORY_START;
use stripe_pipeline::catalog::Catalog;
use stripe_pipeline::config::{AccountConfig, Config, Secret};
use stripe_pipeline::lake::Lake;
use stripe_pipeline::state::{DatasetState, LocalState, StateStore};
use stripe_pipeline::stripe::{Limiter, RetryPolicy, StripeClient};
use stripe_pipeline::sync::{self, Engine, Quiet};
use stripe_pipeline::warehouse::LakeOnly;
use stripe_sim::SimConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_slots_split_long_segments_and_nothing_is_read_twice_or_lost() {
    // Latency keeps segments running long enough for slots to fall idle while dense ones remain.
    let sim = stripe_sim::start(SimConfig {
        latency_ms: 15,
        objects: 6_000,
        only: Some((0, true)),
        ..SimConfig::tiny()
    })
    .await
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let info = sim.info();
    let cfg = Config {
        output_dir: out.path().to_path_buf(),
        api_base: sim.base_url(),
        accounts: vec![AccountConfig {
            name: "live".into(),
            key: Some(Secret::new(info.key("secret", "live", 0).unwrap())),
            key_env: None,
        }],
        ..Config::default()
    };
    let accounts = cfg.accounts(|_| None).unwrap();
    let client = StripeClient::new(
        &cfg.api_base,
        Arc::new(Limiter::new(1.0)),
        RetryPolicy::default(),
    );
    let resolved = sync::resolve(&client, &accounts).await.unwrap();
    let state: StateStore = LocalState::open(&cfg.state_dir()).unwrap().into();
    let engine = Arc::new(Engine {
        client,
        lake: Lake::local(&cfg.lake_dir()).unwrap(),
        state: state.clone(),
        warehouse: Arc::new(std::sync::Mutex::new(Box::new(LakeOnly))),
        concurrency: 16,
        incremental: cfg.incremental(),
        progress: Arc::new(Quiet),
        run_id: "split".into(),
        deadline: None,
    });
    let datasets = ["customers", "charges"].map(|n| Catalog::get().dataset(n).unwrap());
    let report = engine.sync(&resolved, &datasets).await.unwrap();
    assert!(report.failures().is_empty(), "{:?}", report.failures());

    let account = &info.accounts[0].id;
    let mut split = 0;
    for d in datasets {
        // Every object once: ids in the lake's files equal the simulator's, with no repeats.
        let mut seen: HashMap<String, usize> = HashMap::new();
        for f in report
            .files
            .iter()
            .filter(|f| f.table == d.main_table().name)
        {
            let file = std::fs::File::open(cfg.lake_dir().join(&f.path)).unwrap();
            for batch in ParquetRecordBatchReaderBuilder::try_new(file)
                .unwrap()
                .build()
                .unwrap()
            {
                let batch = batch.unwrap();
                let ids = batch.column(batch.schema().index_of("id").unwrap());
                for id in ids.as_string::<i32>().iter().flatten() {
                    *seen.entry(id.to_string()).or_default() += 1;
                }
            }
        }
        let truth = sim.sim().truth(account, true, &d.name).unwrap();
        assert_eq!(seen.len(), truth.len(), "{}", d.name);
        for t in &truth {
            let id = t["object"]["id"].as_str().unwrap();
            assert_eq!(seen.get(id), Some(&1), "{}: {id}", d.name);
        }

        // The segments, split or not, tile the history: each window starts where the previous ends.
        let st: DatasetState = state.get(&resolved[0].key(&d.name)).await.unwrap().value;
        let b = st.backfill.unwrap();
        assert!(b.complete());
        // Planned segments are stored in order; split-off ones are appended after them.
        split += b
            .segments
            .windows(2)
            .filter(|w| w[1].from < w[0].from)
            .count();
        let mut windows: Vec<(i64, i64)> = b.segments.iter().map(|s| (s.from, s.to)).collect();
        windows.sort();
        assert_eq!(windows.first().map(|w| w.0), Some(HISTORY_START));
        assert_eq!(windows.last().map(|w| w.1), Some(b.upper));
        for w in windows.windows(2) {
            assert_eq!(w[0].1, w[1].0, "{}: gap or overlap in {windows:?}", d.name);
        }
    }
    assert!(split > 0, "no segment was split");
}
