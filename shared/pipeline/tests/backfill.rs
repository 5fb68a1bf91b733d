//! Backfills against the simulator over HTTP, read back from the Parquet lake (no warehouse):
//! segments split while the lists run, and nested lists completed past their first 10 items.

use arrow::array::AsArray;
use lake_engine::lake_engine;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use stripe_pipeline::backfill::{self, HISTORY_START};
use stripe_pipeline::catalog::{Catalog, Dataset};
use stripe_pipeline::config::{AccountConfig, Config, Secret};
use stripe_pipeline::engine::SyncReport;
use stripe_pipeline::state::{DatasetState, StateStore};
use stripe_sim::SimConfig;

use stripe_pipeline_testkit::lake_engine;

/// A backfill of `datasets` of the simulator's first live account into a lake under `out`.
struct Run {
    cfg: Config,
    report: SyncReport,
    state: StateStore,
    key: Box<dyn Fn(&str) -> String>,
}

/// A lake under `out` for the simulator's first live account.
fn live_config(sim: &stripe_sim::RunningSim, out: &std::path::Path) -> Config {
    Config {
        output_dir: out.to_path_buf(),
        api_base: sim.base_url(),
        accounts: vec![AccountConfig {
            name: "live".into(),
            key: Some(Secret::new(sim.info().key("secret", "live", 0).unwrap())),
            key_env: None,
            connect: false,
        }],
        ..Config::default()
    }
}

async fn backfill(
    sim: &stripe_sim::RunningSim,
    out: &std::path::Path,
    datasets: &[&'static Dataset],
    concurrency: usize,
) -> Run {
    let cfg = live_config(sim, out);
    let (engine, resolved, state) = lake_engine(&cfg, concurrency, "backfill").await;
    let report = engine.sync(&resolved, datasets).await.unwrap();
    assert!(report.failures().is_empty(), "{:?}", report.failures());
    let r = resolved[0].clone();
    Run {
        cfg,
        report,
        state,
        key: Box::new(move |name| r.key(name)),
    }
}

/// Every value of `column` in the lake's files of `table`.
fn lake_column(run: &Run, table: &str, column: &str) -> Vec<String> {
    let mut values = Vec::new();
    for f in run.report.files.iter().filter(|f| f.table == table) {
        let file = std::fs::File::open(run.cfg.lake_dir().join(&f.path)).unwrap();
        for batch in ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
        {
            let batch = batch.unwrap();
            let array = batch.column(batch.schema().index_of(column).unwrap());
            values.extend(array.as_string::<i32>().iter().flatten().map(String::from));
        }
    }
    values
}

/// A simulator with `objects` as its base count, in the first account's live mode only.
async fn live_sim(objects: usize) -> stripe_sim::RunningSim {
    stripe_sim::start(SimConfig {
        objects,
        only: Some((0, true)),
        ..SimConfig::tiny()
    })
    .await
    .unwrap()
}

/// Every object of `d` once: ids in the lake's files equal the simulator's, with no repeats. Returns
/// the simulator's objects.
fn each_object_once(
    run: &Run,
    sim: &stripe_sim::RunningSim,
    account: &str,
    d: &Dataset,
) -> Vec<serde_json::Value> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for id in lake_column(run, &d.main_table().name, "id") {
        *seen.entry(id).or_default() += 1;
    }
    let truth = sim.sim().truth(account, true, d.resource()).unwrap();
    assert_eq!(seen.len(), truth.len(), "{}", d.name);
    for t in &truth {
        let id = t["object"]["id"].as_str().unwrap();
        assert_eq!(seen.get(id), Some(&1), "{}: {id}", d.name);
    }
    truth
}

/// When slots are idle and a segment still has pages to go, the older half of its window becomes a
/// new segment. The halves must still cover the history exactly once: every object is loaded, none
/// twice, and the plan tiles `[HISTORY_START, upper)`.
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
    let datasets = ["customers", "charges"].map(|n| Catalog::get().dataset(n).unwrap());
    let run = backfill(&sim, out.path(), &datasets, 16).await;

    let account = &sim.info().accounts[0].id;
    let mut split = 0;
    for d in datasets {
        each_object_once(&run, &sim, account, d);

        // The segments, split or not, tile the history: each window starts where the previous ends.
        let st: DatasetState = run.state.get(&(run.key)(&d.name)).await.unwrap().value;
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

/// Invoices with more than 10 lines come with the first 10 and `has_more`: the rest are paged through
/// `/v1/invoices/{id}/lines` before the invoice is converted, so every line lands, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoices_get_every_line_past_the_first_ten() {
    // Enough invoices that some have more than 10 lines.
    let sim = live_sim(3_000).await;
    let out = tempfile::tempdir().unwrap();
    let invoices = Catalog::get().dataset("invoices").unwrap();
    let run = backfill(&sim, out.path(), &[invoices], 8).await;
    let truth = sim
        .sim()
        .truth(&sim.info().accounts[0].id, true, "invoices")
        .unwrap();
    let mut expected: Vec<String> = Vec::new();
    for t in &truth {
        let lines = t["object"]["lines"]["data"].as_array().unwrap();
        expected.extend(lines.iter().map(|l| l["id"].as_str().unwrap().to_string()));
    }
    assert!(
        truth
            .iter()
            .any(|t| t["object"]["lines"]["data"].as_array().unwrap().len() > 10),
        "the data set has invoices with more than 10 lines"
    );
    let mut lines = lake_column(&run, "invoice_line_items", "id");
    lines.sort();
    expected.sort();
    assert_eq!(lines.len(), expected.len());
    assert_eq!(lines, expected);
    assert!(run
        .report
        .calls
        .iter()
        .any(|(kind, n)| format!("{kind:?}") == "Nested" && *n > 0));
}

/// Treasury's money movements are listed per financial account (`financial_account` is required):
/// the plan pages the financial accounts and gives each a segment of its own, with a `created` window
/// (transactions) or without (inbound transfers). Every object is loaded once, and each segment names a
/// financial account that exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_that_need_a_parent_are_listed_once_per_parent() {
    // Two financial accounts, fifteen objects of each kind.
    let sim = live_sim(3_000).await;
    let out = tempfile::tempdir().unwrap();
    let datasets = ["treasury_transactions", "treasury_inbound_transfers"]
        .map(|n| Catalog::get().dataset(n).unwrap());
    assert!(datasets.iter().all(|d| d.per_parent.is_some()));
    let run = backfill(&sim, out.path(), &datasets, 8).await;

    let account = &sim.info().accounts[0].id;
    let parents: Vec<String> = {
        let fa = Catalog::get()
            .dataset("treasury_financial_accounts")
            .unwrap();
        let mut ids: Vec<String> = sim
            .sim()
            .truth(account, true, fa.resource())
            .unwrap()
            .iter()
            .map(|t| t["object"]["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    assert!(parents.len() > 1, "{parents:?}");
    for d in datasets {
        let truth = each_object_once(&run, &sim, account, d);
        assert!(!truth.is_empty(), "{}", d.name);
        let mut owners = std::collections::HashSet::new();
        for t in &truth {
            owners.insert(
                t["object"]["financial_account"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
        assert!(
            owners.len() > 1,
            "{}: the objects of one parent only",
            d.name
        );

        let st: DatasetState = run.state.get(&(run.key)(&d.name)).await.unwrap().value;
        let b = st.backfill.unwrap();
        assert!(b.complete());
        let mut listed: Vec<String> = b.segments.iter().filter_map(|s| s.parent.clone()).collect();
        listed.sort();
        listed.dedup();
        assert_eq!(
            listed, parents,
            "{}: one segment (or more) per parent",
            d.name
        );
        assert!(b.segments.iter().all(|s| s.parent.is_some()));
    }
}

/// The ids of a list page's objects.
fn page_ids(body: &[u8]) -> Vec<String> {
    let page: serde_json::Value = serde_json::from_slice(body).unwrap();
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_string())
        .collect()
}

/// Planning reads each window's first page once: a probe's page is the newest objects of its window,
/// so the newer half of a split window inherits it rather than asking again, and every planned
/// segment with objects starts with the page a request for it returns. Planning costs one request a
/// segment (an empty window's included), not one for every window it looked at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_segment_starts_with_the_first_page_planning_read() {
    let sim = live_sim(3_000).await;
    let out = tempfile::tempdir().unwrap();
    let cfg = live_config(&sim, out.path());
    let (engine, resolved, _) = lake_engine(&cfg, 8, "plan").await;
    let (client, r) = (engine.client(), &resolved[0]);
    let customers = Catalog::get().dataset("customers").unwrap();
    let upper = r.server_time + 1;

    let before = client.stats.requests.load(Ordering::Relaxed);
    let planned = backfill::plan(client, &r.caller, customers, upper, 8, usize::MAX)
        .await
        .unwrap();
    let requests = client.stats.requests.load(Ordering::Relaxed) - before;

    let busy = planned.iter().filter(|p| !p.segment.done).count();
    assert!(busy > 2 && busy <= 8, "{busy} segments with objects");
    assert_eq!(
        requests,
        planned.len() as u64,
        "one request a planned segment"
    );
    let mut windows: Vec<(i64, i64)> = planned
        .iter()
        .map(|p| (p.segment.from, p.segment.to))
        .collect();
    windows.sort();
    assert_eq!(windows.first().map(|w| w.0), Some(HISTORY_START));
    assert_eq!(windows.last().map(|w| w.1), Some(upper));
    for w in windows.windows(2) {
        assert_eq!(w[0].1, w[1].0, "gap or overlap in {windows:?}");
    }
    for p in &planned {
        let kept = p.first_page.as_ref();
        assert_eq!(kept.is_some(), !p.segment.done, "{:?}", p.segment);
        let Some(kept) = kept else { continue };
        let params = backfill::page_params(customers, &p.segment, backfill::PAGE_LIMIT);
        let fresh = client
            .get_raw(&r.caller, &customers.list_path, &params)
            .await
            .unwrap();
        let ids = page_ids(&kept.body);
        assert!(!ids.is_empty());
        assert_eq!(ids, page_ids(&fresh.body), "{:?}", p.segment);
    }

    // With no memory for pages, the plan is the same and every segment asks for its first page.
    let lean = backfill::plan(client, &r.caller, customers, upper, 8, 0)
        .await
        .unwrap();
    assert!(lean.iter().all(|p| p.first_page.is_none()));
    let lean: Vec<(i64, i64)> = lean
        .iter()
        .map(|p| (p.segment.from, p.segment.to))
        .collect();
    let mut planned: Vec<(i64, i64)> = planned
        .iter()
        .map(|p| (p.segment.from, p.segment.to))
        .collect();
    planned.sort();
    assert_eq!(lean, planned);
}
