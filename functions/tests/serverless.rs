//! The serverless deployment end to end, in moto with the simulator: a scheduler tick fans slices out
//! to SQS, workers drain the queue into the S3 lake with cursors and leases in DynamoDB, and the lake
//! equals the simulator's ground truth — after the first tick and after changes. Plus: a tick that
//! runs twice sends nothing twice, two workers on one slice run it once, a deadline is continued,
//! a failure retrying cannot fix is announced at once and
//! not retried, an unreadable message ends in the dead-letter queue, and recovery is announced too.

mod common;

use common::*;
use std::time::{Duration, Instant};
use stripe_pipeline::catalog::{Catalog, Dataset};
use stripe_pipeline::engine::SliceWork;
use stripe_pipeline::state::{DatasetState, FeedState, StateStore};
use stripe_pipeline::warehouse::duckdb::DuckDb;
use stripe_pipeline_functions::message::{Message, SliceMessage};
use stripe_pipeline_functions::settings::ExportSettings;
use stripe_pipeline_functions::worker::{self, Ran};
use stripe_pipeline_functions::{scheduler, Services};
use stripe_pipeline_testkit::acceptance::{
    assert_equal, assert_platform_equal, assert_platform_equal_in, assert_scopes_equal,
    assert_warehouse_equal, churn, core_datasets, key_without, merchants, platform_accounts,
    read_export, CORE_DATASETS,
};
use stripe_sim::{AccountKind, SimConfig};

/// Simulated seconds between changes and the next tick: more than the feed's lag.
const PAST_LAG: i64 = 120;

fn scopes(sim: &stripe_sim::RunningSim) -> Vec<(String, bool)> {
    merchants(sim)
        .into_iter()
        .flat_map(|m| [(m.clone(), true), (m, false)])
        .collect()
}

async fn queue_depth(d: &Deployment, url: &str) -> usize {
    let attrs = aws_sdk_sqs::Client::new(&d.sdk)
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap_or_default();
    attrs[&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages]
        .parse()
        .unwrap()
}

/// The simulator's Connect platform.
fn platform_id(sim: &stripe_sim::RunningSim) -> String {
    let platform = sim.info().account(AccountKind::Platform).unwrap();
    platform.id.clone()
}

/// Items of the state table whose key starts with `prefix`.
async fn state_items(d: &Deployment, prefix: &str) -> usize {
    let out = aws_sdk_dynamodb::Client::new(&d.sdk)
        .scan()
        .table_name(&d.services.settings.state_table)
        .send()
        .await
        .unwrap();
    out.items()
        .iter()
        .filter(|i| {
            i.get("key")
                .and_then(|k| k.as_s().ok())
                .is_some_and(|k| k.starts_with(prefix))
        })
        .count()
}

async fn check_lake(d: &Deployment, sim: &stripe_sim::RunningSim, datasets: &[&'static Dataset]) {
    let dir = tempfile::tempdir().unwrap();
    let files = replay_lake(d, dir.path()).await;
    assert!(files > 0, "no Parquet objects in s3://{}", d.bucket);
    assert_scopes_equal(dir.path(), sim, &scopes(sim), datasets).await;
}

/// The serverless path over the core datasets (`CORE_DATASETS`); the CLI's tests sync every dataset
/// through the same engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_fan_out_and_workers_keep_the_lake_equal_to_stripe() {
    let sim = stripe_pipeline_testkit::acceptance::sim(SimConfig::tiny()).await;
    let d = deploy(&sim, core_only).await;
    let tick = 1_800_000_000;

    let first = scheduler::tick(&d.services, tick).await.unwrap();
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    assert_eq!((first.seeded, first.accounts), (4, 4));
    // Nothing is loaded in full yet: no table has an age.
    assert!(first.data_age_secs.is_empty(), "{:?}", first.data_age_secs);
    // Every account-mode: its change feed and a first list of every dataset.
    assert_eq!(first.planned, 4 * (1 + core_datasets().len()));
    assert_eq!(first.sent, first.planned);
    assert_eq!(queue_depth(&d, &d.queue_url).await, first.sent);

    // The same tick again (EventBridge delivers at least once): nothing is sent twice.
    let again = scheduler::tick(&d.services, tick).await.unwrap();
    assert_eq!((again.seeded, again.sent), (0, 0));
    assert_eq!(again.already_sent, first.planned);
    assert_eq!(queue_depth(&d, &d.queue_url).await, first.sent);

    let drained = drain(&d, 10, 50, plenty).await;
    assert_eq!((drained.messages, drained.failures), (first.sent, 0));
    assert_eq!(queue_depth(&d, &d.queue_url).await, 0);

    // Cursors in DynamoDB: each feed started, each dataset's first list complete; no lease left.
    let state: StateStore = d.services.state.clone().into();
    for (merchant, livemode) in scopes(&sim) {
        let mode = if livemode { "live" } else { "test" };
        let feed = feed_state(&d, &merchant, livemode).await;
        assert!(feed.cursor.is_some(), "{merchant} {mode}: feed not started");
        for ds in core_datasets() {
            let st: DatasetState = state
                .get(&format!("{merchant}/{mode}/{}", ds.name))
                .await
                .unwrap()
                .value;
            assert!(
                st.backfill.as_ref().is_some_and(|b| b.complete()),
                "{merchant} {mode} {}: backfill not complete",
                ds.name
            );
        }
    }
    assert_eq!(state_items(&d, "lease#").await, 0, "leases left behind");
    assert_eq!(state_items(&d, "slice#").await, first.sent);
    check_lake(&d, &sim, &core_datasets()).await;

    // One notification per account: its first full load.
    let notes = notifications(&d).await;
    let loaded: Vec<&String> = notes.iter().filter(|n| n.contains("are loaded")).collect();
    assert_eq!(loaded.len(), 4, "{notes:#?}");

    // Changes in every account-mode, then the next tick: the feeds and snapshots bring them in.
    for (merchant, livemode) in scopes(&sim) {
        churn(&sim, &merchant, livemode);
    }
    sim.sim().advance(PAST_LAG);
    let second = scheduler::tick(&d.services, tick + 900).await.unwrap();
    assert!(second.errors.is_empty(), "{:?}", second.errors);
    assert!(second.sent >= 4, "feeds planned: {second:?}");
    let drained = drain(&d, 10, 50, plenty).await;
    assert_eq!(drained.failures, 0);
    assert!(
        drained
            .bodies
            .iter()
            .any(|b| b.contains("\"kind\":\"feed\"")),
        "the feeds ran"
    );
    check_lake(&d, &sim, &core_datasets()).await;
    // The first load is announced once, not again.
    assert!(notifications(&d).await.is_empty());

    // Every table's age is measured from the cursors; two hours without workers and it has grown.
    let tables: Vec<String> = core_datasets()
        .iter()
        .map(|d| d.main_table().name.clone())
        .collect();
    let aged: Vec<&String> = second.data_age_secs.keys().collect();
    assert_eq!(
        aged,
        tables
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
    );
    assert!(
        second
            .data_age_secs
            .values()
            .all(|age| (0..3600).contains(age)),
        "{:?}",
        second.data_age_secs
    );
    sim.sim().advance(7200);
    let stale = scheduler::tick(&d.services, tick + 1800).await.unwrap();
    for (table, age) in &stale.data_age_secs {
        assert!(*age >= 7200, "{table}: {age}");
        assert!(*age > second.data_age_secs[table], "{table}");
    }
    // Snapshots here are due on every tick, so the stalest table is overdue by its whole age.
    assert_eq!(
        stale.overdue_secs,
        *stale.data_age_secs.values().max().unwrap()
    );
    assert!(second.overdue_secs < 3600, "{second:?}");
}

/// Peak resident memory of this process so far (Linux `VmHWM`), in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A thousand accounts more: a tick cut off part-way has sent the slices of every account it reached,
/// the same tick run again sends the rest and nothing twice, and the next tick, reaching its deadline
/// part-way, has a worker plan the rest: every account planned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_of_a_thousand_accounts_cut_off_part_way_loses_nothing() {
    const ACCOUNTS: usize = 1_000;
    let sim = stripe_pipeline_testkit::acceptance::sim(SimConfig::tiny()).await;
    let d = deploy(&sim, core_only).await;
    // One secret for all (the scheduler reads it once and caches it): Secrets Manager is not measured.
    let key = sim.info().key("secret", "live", 0).unwrap();
    let arn = secret(&d.sdk, "many", &key).await;
    for n in 0..ACCOUNTS {
        let record = stripe_pipeline_functions::accounts::AccountRecord {
            name: format!("many-{n:04}"),
            secret_arn: arn.clone(),
            enabled: true,
            datasets: vec!["charges".into()],
            connect: false,
            event_source: None,
        };
        assert!(d.services.accounts.add_if_missing(&record).await.unwrap());
    }
    let tick = 1_800_000_000;
    // Cut off as soon as it has sent something, as a Lambda timeout would (the future is dropped
    // mid-way). Waiting for the first sends, not for a fixed time, keeps the cut part-way on a
    // machine of any speed.
    let first_sends = async {
        while queue_depth(&d, &d.queue_url).await == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::select! {
        _ = scheduler::tick(&d.services, tick) => panic!("the tick finished before it was cut"),
        () = first_sends => {}
    }
    // A send the dropped tick had already put on the wire still lands: count once the queue is still.
    let mut sent_before = queue_depth(&d, &d.queue_url).await;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = queue_depth(&d, &d.queue_url).await;
        if now == sent_before {
            break;
        }
        sent_before = now;
    }
    assert!(sent_before > 0, "the cut-off tick sent nothing");

    // The same tick again (Lambda's retry, or EventBridge's second delivery): the rest, none twice.
    let again = scheduler::tick(&d.services, tick).await.unwrap();
    assert!(again.errors.is_empty(), "{:?}", again.errors);
    assert_eq!(again.accounts, ACCOUNTS + 4);
    // Every account: its feed and its lists (one for each of the thousand).
    assert_eq!(
        again.planned,
        ACCOUNTS * 2 + 4 * (1 + core_datasets().len())
    );
    assert!(again.already_sent >= sent_before, "{again:?}");
    assert_eq!(
        queue_depth(&d, &d.queue_url).await,
        sent_before + again.sent
    );

    // The next tick plans every account again (no worker ran): what a cut fell between mark and send
    // is sent now. It reaches its deadline part-way, and queues the rest of its accounts for a worker,
    // which plans them: every slice of the tick is sent, once. Its time (both parts) and memory are
    // the scheduler's for this many accounts.
    let sqs = aws_sdk_sqs::Client::new(&d.sdk);
    sqs.purge_queue()
        .queue_url(&d.queue_url)
        .send()
        .await
        .unwrap();
    let started = Instant::now();
    let stop = Instant::now() + Duration::from_secs(3);
    let part = scheduler::tick_until(&d.services, tick + 900, None, Some(stop))
        .await
        .unwrap();
    assert!(part.errors.is_empty(), "{:?}", part.errors);
    assert_eq!((part.sent, part.already_sent), (part.planned, 0));
    let resume = part
        .continued
        .clone()
        .expect("the tick reached its deadline");
    let mut queued = Vec::new();
    loop {
        let received = sqs
            .receive_message()
            .queue_url(&d.queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(600)
            .send()
            .await
            .unwrap();
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        queued.extend(messages);
    }
    assert_eq!(queued.len(), part.sent + 1);
    let rest: Vec<_> = queued
        .iter()
        .filter(|m| {
            let body = m.body.as_deref().unwrap_or_default();
            matches!(Message::parse(body), Ok(Message::Tick(t)) if t.resume == resume)
        })
        .map(record)
        .collect();
    assert_eq!(rest.len(), 1);
    let ran = worker::handle(&d.services, rest, "rest", plenty()).await;
    assert!(ran.batch_item_failures.is_empty());
    let secs = started.elapsed().as_secs_f64();
    let total = ACCOUNTS * 2 + 4 * (1 + core_datasets().len());
    assert!(part.sent < total, "{part:?}");
    assert_eq!(part.sent + queue_depth(&d, &d.queue_url).await, total);
    eprintln!(
        "scheduler tick of {} accounts: {total} slices planned and sent in {secs:.1} s ({} before its deadline, the rest by a worker); peak RSS of the test process {:.0} MiB",
        part.accounts,
        part.sent,
        peak_rss_mib()
    );
}

/// Workers at once on the same accounts: each worker's limiter allows a rate slot's part of an
/// account's budget, and no more slices of an account run than it has slots, so the simulator's
/// busiest second of each account stays within the budget (Stripe's limit × `RateBudget`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_together_keep_each_account_within_its_rate_budget() {
    const BUDGET: f64 = 0.5;
    const WORKERS: usize = 6;
    let sim = stripe_pipeline_testkit::acceptance::sim(SimConfig::tiny()).await;
    sim.sim().set_latency_ms(20);
    let d = deploy(&sim, |s| {
        s.pipeline.rate_budget = BUDGET;
        s.rate_slot_wait_secs = 1;
        core_only(s);
    })
    .await;
    // A second record holding the first account's live key: both records spend that Stripe
    // account's one budget (the slots are the account's, not the record's).
    let key = sim.info().key("secret", "live", 0).unwrap();
    let again = stripe_pipeline_functions::accounts::AccountRecord {
        secret_arn: secret(&d.sdk, "a0-live-again", &key).await,
        name: "a0-live-again".into(),
        enabled: true,
        datasets: CORE_DATASETS.iter().map(|d| d.to_string()).collect(),
        connect: false,
        event_source: None,
    };
    assert!(d.services.accounts.add_if_missing(&again).await.unwrap());
    let workers: Vec<Services> = (0..WORKERS).map(|_| worker(&d)).collect();
    let tick = scheduler::tick(&d.services, 1_800_000_000).await.unwrap();
    assert!(tick.errors.is_empty(), "{:?}", tick.errors);
    assert_eq!(tick.accounts, 5);
    sim.sim().reset_stats();

    let started = Instant::now();
    let drained = drain_together(&d, &workers).await;
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(drained.failures, 0);
    // Slices found their account's slots all held and were sent again: the cap was in force.
    let deferred = drained.messages - tick.sent;
    assert!(deferred > 0, "no slice waited for a rate slot");

    let stats = sim.sim().stats();
    eprintln!(
        "{WORKERS} workers, {} slices ({deferred} deferred), {} requests in {secs:.1} s; busiest second per account: {:?}",
        tick.sent, stats.requests, stats.peak_per_sec
    );
    assert_eq!(stats.peak_per_sec.len(), 4, "{:?}", stats.peak_per_sec);
    for (account, peak) in &stats.peak_per_sec {
        let limit = if account.ends_with(" live") {
            100.0
        } else {
            25.0
        };
        assert!(
            *peak as f64 <= BUDGET * limit,
            "{account}: {peak} requests in one second, over the budget of {}",
            BUDGET * limit
        );
    }
    assert_eq!(state_items(&d, "lease#").await, 0, "leases left behind");
    check_lake(&d, &sim, &core_datasets()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_given_the_same_slice_run_it_once() {
    let sim = stripe_pipeline_testkit::acceptance::sim(SimConfig::tiny()).await;
    let d = deploy(&sim, |_| {}).await;
    scheduler::tick(&d.services, 1_800_000_000).await.unwrap();
    let message = SliceMessage::new(
        "a0-live",
        SliceWork::List {
            dataset: "charges".into(),
        },
        1_800_000_000,
    );
    // The first worker checks its key and takes the slice's lease; the paused API then holds it
    // mid-list, so the second starts while the first surely holds the lease: no race decides it.
    sim.sim().pause();
    let first = worker::run(&d.services, &message, "worker-1", plenty());
    let second = async {
        let started = Instant::now();
        while state_items(&d, "lease#").await == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no lease taken"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Refused, the second worker never lists; had it taken the lease, it would wait on the pause.
        let ran = tokio::time::timeout(
            Duration::from_secs(60),
            worker::run(&d.services, &message, "worker-2", plenty()),
        )
        .await
        .expect("the second worker listed while the first held the slice");
        sim.sim().resume();
        ran
    };
    let (a, b) = tokio::join!(first, second);
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(matches!(a, Ran::Done(_)), "{a:?}");
    match b {
        Ran::Skipped(why) => assert!(why.contains("worker-1"), "{why}"),
        other => panic!("the second worker ran the slice too: {other:?}"),
    }
    // The lake holds each charge once: rows written equal the charges in Stripe.
    let dir = tempfile::tempdir().unwrap();
    replay_lake(&d, dir.path()).await;
    let merchant = &merchants(&sim)[0];
    let truth = sim.sim().truth(merchant, true, "charges").unwrap();
    let rows = parquet_rows(dir.path(), "charges");
    assert_eq!(rows, truth.len(), "charge rows in the lake");
    let db = DuckDb::open(&dir.path().join("stripe_pipeline.duckdb")).unwrap();
    assert_equal(
        &db,
        &sim,
        merchant,
        true,
        Catalog::get().dataset("charges").unwrap(),
    )
    .await;
}

/// Rows in the lake's Parquet files of a table (all accounts), counted by DuckDB.
fn parquet_rows(dir: &std::path::Path, table: &str) -> usize {
    let db = DuckDb::open(&dir.join("count.duckdb")).unwrap();
    let glob = dir.join(format!("lake/*/{table}/*/*.parquet"));
    let n = db
        .query_strings(&format!(
            "SELECT count(*)::VARCHAR FROM read_parquet('{}')",
            glob.display()
        ))
        .unwrap();
    n[0][0].as_deref().unwrap().parse().unwrap()
}

/// A change feed paused for hours holds 200,000 events: the worker reads its window in pieces of at
/// most `FEED_PIECE_EVENTS`, commits the cursor after each, and stops at its deadline for a
/// continuation; at the end the lake equals Stripe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_200_000_events_is_read_in_pieces_across_continuations() {
    const EVENTS: usize = 200_000;
    let sim = stripe_pipeline_testkit::acceptance::sim(SimConfig::tiny()).await;
    // The simulator enforces no rate limit here: a budget over Stripe's only shortens the test.
    let d = deploy(&sim, |s| {
        s.pipeline.rate_budget = 4.0;
        core_only(s)
    })
    .await;
    let tick = 1_800_000_000;
    scheduler::tick(&d.services, tick).await.unwrap();
    assert_eq!(drain(&d, 10, 100, plenty).await.failures, 0);

    // The backlog: every customer of one account updated again and again, over more than two hours.
    let merchant = &merchants(&sim)[0];
    let customers = sim.sim().ids(merchant, true, "customers").unwrap();
    let mut made = 0;
    while made < EVENTS {
        sim.sim().advance(1);
        sim.sim()
            .update(merchant, true, "customers", 0, &customers)
            .unwrap();
        made += customers.len();
    }
    sim.sim().advance(PAST_LAG);
    let next = scheduler::tick(&d.services, tick + 900).await.unwrap();
    assert!(next.errors.is_empty(), "{:?}", next.errors);

    // Each invocation stops three seconds after it starts: a piece or two, then a continuation.
    let started = Instant::now();
    let drained = drain(&d, 1, 1_000, || Instant::now() + Duration::from_secs(3)).await;
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(drained.failures, 0);
    let continuations = drained
        .bodies
        .iter()
        .filter_map(|b| serde_json::from_str::<SliceMessage>(b).ok())
        .filter(|m| m.continuation > 0 && m.work == SliceWork::Feed)
        .count();
    eprintln!(
        "{made} events read in {secs:.1} s ({:.0} events/s) with {continuations} continuations",
        made as f64 / secs
    );
    assert!(
        continuations >= 3,
        "{continuations} continuations: the backlog was not cut"
    );
    let feed = feed_state(&d, merchant, true).await;
    assert!(feed.last_error.is_none(), "{feed:?}");
    assert!(
        feed.cursor.unwrap() >= sim.sim().now() - PAST_LAG,
        "{feed:?}"
    );
    check_lake(&d, &sim, &core_datasets()).await;
}

/// Without a warehouse (the serverless default), objects gone from Stripe whose delete events are past
/// Stripe's retention are found in the lake: past the 30-day cliff, the re-list marks them deleted
/// there, and the lake replayed into DuckDB equals Stripe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_cliff_a_lake_without_warehouse_marks_vanished_objects_deleted() {
    let sim = stripe_pipeline_testkit::acceptance::sim(SimConfig::tiny()).await;
    let d = deploy(&sim, core_only).await;
    let tick = 1_800_000_000;
    scheduler::tick(&d.services, tick).await.unwrap();
    assert_eq!(drain(&d, 10, 100, plenty).await.failures, 0);
    let merchant = &merchants(&sim)[0];
    // Two customers the lake holds, deleted; more changes of every kind.
    let synced = sim.sim().ids(merchant, true, "customers").unwrap();
    let gone = sim
        .sim()
        .delete(merchant, true, "customers", 0, &synced[..2])
        .unwrap();
    assert_eq!(gone.len(), 2);
    churn(&sim, merchant, true);
    // 31 days without a tick: the events of these changes are gone from Stripe.
    sim.sim().advance(31 * 86_400);
    // The first tick's feed meets the cliff and marks the datasets for a full list; the second lists.
    for n in 1..=2 {
        let next = scheduler::tick(&d.services, tick + 900 * n).await.unwrap();
        assert!(next.errors.is_empty(), "{:?}", next.errors);
        assert_eq!(drain(&d, 10, 200, plenty).await.failures, 0);
        sim.sim().advance(PAST_LAG);
    }
    // The deleted customers are in the lake as deletions, and every table equals Stripe.
    let dir = tempfile::tempdir().unwrap();
    replay_lake(&d, dir.path()).await;
    let db = DuckDb::open(&dir.path().join("stripe_pipeline.duckdb")).unwrap();
    let marked = db
        .query_strings(&format!(
            "SELECT id FROM stripe.customers WHERE merchant_id = '{merchant}' AND deleted ORDER BY id"
        ))
        .unwrap();
    for id in &gone {
        assert!(
            marked.iter().any(|r| r[0].as_deref() == Some(id.as_str())),
            "{id} is not marked deleted: {marked:?}"
        );
    }
    drop(db);
    assert_scopes_equal(dir.path(), &sim, &scopes(&sim), &core_datasets()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopped_at_its_deadline_is_continued() {
    let sim = stripe_pipeline_testkit::acceptance::sim(SimConfig::tiny()).await;
    let merchant = &merchants(&sim)[0];
    // 250 charges created in the same second: no `created` window splits them, so one segment takes
    // several pages.
    sim.sim().create(merchant, true, "charges", 250).unwrap();
    let d = deploy(&sim, |s| {
        s.pipeline.concurrency = 1;
        core_only(s)
    })
    .await;
    scheduler::tick(&d.services, 1_800_000_000).await.unwrap();
    let truth = sim.sim().truth(merchant, true, "charges").unwrap();
    let message = SliceMessage::new(
        "a0-live",
        SliceWork::List {
            dataset: "charges".into(),
        },
        1_800_000_000,
    );
    // The deadline has passed by the time the first page is in: that page is committed and a
    // continuation is queued.
    let ran = worker::run(&d.services, &message, "short", Instant::now())
        .await
        .unwrap();
    let Ran::Continued(next) = ran else {
        panic!("not continued: {ran:?}");
    };
    assert_eq!(next, format!("{}+c1", message.id));
    let state: StateStore = d.services.state.clone().into();
    let key = format!("{merchant}/live/charges");
    let st: DatasetState = state.get(&key).await.unwrap().value;
    let b = st.backfill.unwrap();
    assert!(
        !b.complete() && b.segments.iter().any(|s| !s.done && s.after.is_some()),
        "{b:?}"
    );
    assert!(
        st.rows > 0 && (st.rows as usize) < truth.len(),
        "{}",
        st.rows
    );

    // The queue now holds the scheduler's slices and the continuation: drain it all.
    let drained = drain(&d, 10, 50, plenty).await;
    assert_eq!(drained.failures, 0);
    assert!(drained.bodies.iter().any(|b| b.contains(&next)));
    let st: DatasetState = state.get(&key).await.unwrap().value;
    assert!(st.backfill.unwrap().complete());
    let dir = tempfile::tempdir().unwrap();
    replay_lake(&d, dir.path()).await;
    let db = DuckDb::open(&dir.path().join("stripe_pipeline.duckdb")).unwrap();
    assert_equal(
        &db,
        &sim,
        merchant,
        true,
        Catalog::get().dataset("charges").unwrap(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_retrying_cannot_fix_is_announced_at_once_and_not_retried() {
    let sim = stripe_pipeline_testkit::acceptance::sim(SimConfig::tiny()).await;
    // Transient failures are announced after two in a row; a missing permission at the first.
    let d = deploy(&sim, |s| {
        s.failure_alert_after = 2;
        core_only(s)
    })
    .await;
    // a0-live's key may read everything but charges: its charges list answers 403.
    let merchant = merchants(&sim)[0].clone();
    let restricted = key_without(&sim, &merchant, true, "charges");
    let secrets = aws_sdk_secretsmanager::Client::new(&d.sdk);
    let set_key = |key: String| {
        secrets
            .put_secret_value()
            .secret_id("stripe-pipeline/a0-live")
            .secret_string(key)
            .send()
    };
    set_key(restricted.clone()).await.unwrap();
    scheduler::tick(&d.services, 1_800_000_000).await.unwrap();

    // Batches with good and bad slices: the bad one ran once and was dropped, not handed back to SQS
    // to fail twice more; nothing waits in either queue.
    let drained = drain(&d, 10, 50, plenty).await;
    assert_eq!(drained.failures, 0, "a 403 is not retried");
    assert_eq!(queue_depth(&d, &d.queue_url).await, 0);
    assert_eq!(queue_depth(&d, &d.dlq_url).await, 0);
    let charges = format!("{merchant}/live/charges");
    let state: StateStore = d.services.state.clone().into();
    let st: DatasetState = state.get(&charges).await.unwrap().value;
    assert!(
        st.backfill.as_ref().is_none_or(|b| !b.complete()),
        "charges were never listed, so the next tick plans them again: {st:?}"
    );

    // One failure, one notification at once, with the error and what to do.
    let notes: Vec<String> = notifications(&d)
        .await
        .into_iter()
        .filter(|n| !n.contains("are loaded"))
        .collect();
    assert_eq!(notes.len(), 1, "{notes:#?}");
    assert!(
        notes[0].contains("a0-live")
            && notes[0].contains("charges")
            && notes[0].contains("403")
            && notes[0].contains("Retrying cannot fix this"),
        "{}",
        notes[0]
    );
    // No key in it.
    assert!(!notes[0].contains(&restricted));

    // A message that is no slice at all is retried up to the queue's receive limit, then kept in the
    // dead-letter queue for someone to read. Its retry waits a minute, not the visibility timeout:
    // received to be visible again after 1 s, it is still hidden after 3.
    let sqs = aws_sdk_sqs::Client::new(&d.sdk);
    sqs.send_message()
        .queue_url(&d.queue_url)
        .message_body("{\"not\": \"a slice\"}")
        .send()
        .await
        .unwrap();
    let received = sqs
        .receive_message()
        .queue_url(&d.queue_url)
        .visibility_timeout(1)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    let record = record(&received[0]);
    let response = worker::handle(&d.services, vec![record.clone()], "backoff", plenty()).await;
    assert_eq!(response.batch_item_failures.len(), 1);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        queue_depth(&d, &d.queue_url).await,
        0,
        "hidden for its backoff"
    );
    sqs.change_message_visibility()
        .queue_url(&d.queue_url)
        .receipt_handle(record.receipt_handle.unwrap_or_default())
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    let drained = drain(&d, 10, 50, plenty).await;
    assert_eq!(drained.failures, 2, "one message, three attempts in all");
    assert_eq!(queue_depth(&d, &d.dlq_url).await, 1);
    let dead = aws_sdk_sqs::Client::new(&d.sdk)
        .receive_message()
        .queue_url(&d.dlq_url)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    let body = dead[0].body.clone().unwrap_or_default();
    assert!(body.contains("not"), "{body}");

    // The key is fixed; a new container (no cached key) runs the slice: one recovery message.
    set_key(sim.info().key("secret", "live", 0).unwrap())
        .await
        .unwrap();
    let fresh = Services::new(d.services.settings.clone(), &d.sdk, &d.moto.lake_options()).unwrap();
    let message = SliceMessage::new(
        "a0-live",
        SliceWork::List {
            dataset: "charges".into(),
        },
        1_800_000_900,
    );
    let ran = worker::run(&fresh, &message, "recovery", plenty())
        .await
        .unwrap();
    assert!(matches!(ran, Ran::Done(_)), "{ran:?}");
    let notes = notifications(&d).await;
    let recovered: Vec<&String> = notes
        .iter()
        .filter(|n| n.contains("working again"))
        .collect();
    assert_eq!(recovered.len(), 1, "{notes:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_load_redshift_through_the_data_api() {
    let sim = stripe_pipeline_testkit::acceptance::sim(SimConfig::tiny()).await;
    let d = deploy_redshift(&sim).await;
    let tick = 1_800_000_000;
    let check = || async {
        let warehouse = d.services.warehouse().await.unwrap();
        assert!(warehouse
            .describe()
            .starts_with("Redshift workgroup analytics"));
        assert_warehouse_equal(warehouse.as_ref(), &sim, &scopes(&sim), &core_datasets()).await;
    };
    let first = scheduler::tick(&d.services, tick).await.unwrap();
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    let drained = drain(&d, 10, 50, plenty).await;
    assert_eq!((drained.messages, drained.failures), (first.sent, 0));
    check().await;
    for (merchant, livemode) in scopes(&sim) {
        churn(&sim, &merchant, livemode);
    }
    sim.sim().advance(PAST_LAG);
    let second = scheduler::tick(&d.services, tick + 900).await.unwrap();
    assert!(second.errors.is_empty(), "{:?}", second.errors);
    let drained = drain(&d, 10, 50, plenty).await;
    assert_eq!(drained.failures, 0);
    check().await;

    // A value longer than Redshift's widest column (65,535 bytes): its row is kept out of the
    // warehouse, named in an alert and copied aside, and nothing else of the dataset is held back;
    // a version that fits goes in as usual. Only the first account's live change feed has anything
    // to load, so the worker runs that slice alone (a whole tick is 24 slices, about 40 s here).
    let (merchant, livemode) = scopes(&sim).remove(0);
    assert_eq!(
        (merchant.as_str(), livemode),
        (merchants(&sim)[0].as_str(), true)
    );
    let feed = |at: i64| {
        let message = SliceMessage::new("a0-live", SliceWork::Feed, at);
        let services = &d.services;
        async move {
            let ran = worker::run(services, &message, "feed", plenty())
                .await
                .unwrap();
            assert!(matches!(ran, Ran::Done(_)), "{ran:?}");
        }
    };
    let ids = sim.sim().ids(&merchant, livemode, "customers").unwrap();
    let (long, other) = (&ids[0], &ids[1]);
    let describe = |text: String| {
        let fields = serde_json::json!({ "description": text });
        let fields = fields.as_object().unwrap().clone();
        sim.sim()
            .set_fields(&merchant, livemode, "customers", long, &fields)
            .unwrap();
    };
    describe("x".repeat(70_000));
    sim.sim()
        .update(
            &merchant,
            livemode,
            "customers",
            0,
            std::slice::from_ref(other),
        )
        .unwrap();
    sim.sim().advance(PAST_LAG);
    feed(tick + 1800).await;
    let warehouse = d.services.warehouse().await.unwrap();
    let schema = if livemode {
        "stripe"
    } else {
        "stripe_testmode"
    };
    let length = |id: &str| {
        let sql = format!("SELECT LENGTH(description) FROM {schema}.customers WHERE id = '{id}'");
        let warehouse = warehouse.clone();
        async move { warehouse.query_strings(&sql).await.unwrap()[0][0].clone() }
    };
    let kept = length(long)
        .await
        .map_or(0, |n| n.parse::<usize>().unwrap());
    assert!(kept < 65_535, "the long value reached the warehouse");
    let aside = format!(
        "{}/_quarantine/customers/",
        stripe_pipeline::lake::mode_root(livemode)
    );
    assert_eq!(parquet_objects(&d, &aside).await, 1);
    let told = notifications(&d).await;
    assert!(
        told.iter()
            .any(|n| n.contains(long.as_str()) && n.contains("65535 bytes")),
        "{told:?}"
    );
    describe("fits again".into());
    sim.sim().advance(PAST_LAG);
    feed(tick + 2700).await;
    // Both customers' last versions are in (the rest was compared above and did not change).
    let customers = Catalog::get().dataset("customers").unwrap();
    assert_equal(warehouse.as_ref(), &sim, &merchant, livemode, customers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_warehouse_columns_are_announced_once() {
    let sim = stripe_pipeline_testkit::acceptance::sim(SimConfig::tiny()).await;
    let d = deploy_redshift(&sim).await;
    let tick = 1_800_000_000;
    // The tick seeds the accounts; its messages stay queued, the test runs one slice itself.
    scheduler::tick(&d.services, tick).await.unwrap();
    // An earlier release created stripe.charges without `description`.
    let mut older = Catalog::get().dataset("charges").unwrap().clone();
    older.tables[0].columns.retain(|c| c.name != "description");
    let warehouse = d.services.warehouse().await.unwrap();
    warehouse.prepare(true, &older).await.unwrap();
    let services = &d.services;
    let run = |at: i64| {
        let message = SliceMessage::new(
            "a0-live",
            SliceWork::List {
                dataset: "charges".into(),
            },
            at,
        );
        async move { worker::run(services, &message, "worker-1", plenty()).await }
    };
    let ran = run(tick).await.unwrap();
    assert!(matches!(ran, Ran::Done(_)), "{ran:?}");
    let notes = notifications(&d).await;
    let added: Vec<&String> = notes.iter().filter(|n| n.contains("column(s)")).collect();
    assert_eq!(added.len(), 1, "{notes:#?}");
    assert!(
        added[0].contains("a0-live") && added[0].contains("stripe.charges.description"),
        "{}",
        added[0]
    );
    // The next slice finds the table complete: nothing more to announce.
    run(tick + 900).await.unwrap();
    let notes = notifications(&d).await;
    assert!(!notes.iter().any(|n| n.contains("column(s)")), "{notes:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_build_exports_in_stripes_layout_once_per_interval() {
    let sim = stripe_pipeline_testkit::acceptance::sim(SimConfig::tiny()).await;
    let d = deploy(&sim, |s| {
        core_only(s);
        s.export = Some(ExportSettings {
            url: format!("{}/export", s.lake_url().trim_end_matches("/lake")),
            every_secs: 3600,
            keep: 7,
        })
    })
    .await;
    let tick = 1_800_000_000;
    let first = scheduler::tick(&d.services, tick).await.unwrap();
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    assert!(first.export_sent);
    let drained = drain(&d, 10, 50, plenty).await;
    assert_eq!((drained.messages, drained.failures), (first.sent + 1, 0));
    // The same interval sends no second export.
    let later = scheduler::tick(&d.services, tick + 900).await.unwrap();
    assert!(!later.export_sent);
    drain(&d, 10, 50, plenty).await;
    // The first export may have run before some slices; the next interval's holds the whole lake.
    let next = scheduler::tick(&d.services, tick + 3600).await.unwrap();
    assert!(next.export_sent);
    let drained = drain(&d, 10, 50, plenty).await;
    assert_eq!(drained.failures, 0);
    let store = d.services.export.as_ref().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = DuckDb::open(&dir.path().join("reader.duckdb")).unwrap();
    let date = stripe_pipeline::export::run_date(tick + 3600);
    for livemode in [true, false] {
        let mode = if livemode { "livemode" } else { "testmode" };
        read_export(store, &format!("{mode}/{date}"), livemode, dir.path(), &db).await;
    }
    assert_warehouse_equal(&db, &sim, &scopes(&sim), &core_datasets()).await;
}

/// A Connect platform (`connect` in its record): each tick lists its connected accounts and plans
/// their slices with the platform's key; workers load them into the `connected_account_*` tables.
/// An account connected later is synced from the next tick, one deauthorized is planned no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platforms_connected_accounts_are_planned_and_loaded() {
    let sim = stripe_pipeline_testkit::acceptance::sim(SimConfig::tiny()).await;
    let d = deploy(&sim, |s| s.seed_accounts.clear()).await;
    for a in platform_accounts(&sim) {
        let key = a.key.as_ref().unwrap().expose().to_string();
        let record = stripe_pipeline_functions::accounts::AccountRecord {
            secret_arn: secret(&d.sdk, &a.name, &key).await,
            name: a.name,
            enabled: true,
            datasets: CORE_DATASETS.iter().map(|d| d.to_string()).collect(),
            connect: true,
            event_source: None,
        };
        assert!(d.services.accounts.add_if_missing(&record).await.unwrap());
    }
    let platform_equal = || async {
        let dir = tempfile::tempdir().unwrap();
        replay_lake(&d, dir.path()).await;
        let db = DuckDb::open(&dir.path().join("stripe_pipeline.duckdb")).unwrap();
        assert_platform_equal(&db, &sim, &core_datasets()).await
    };
    let tick = 1_800_000_000;
    let first = scheduler::tick(&d.services, tick).await.unwrap();
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    // Per mode: the platform's feed and lists (its datasets and `accounts`), and each of its two
    // connected accounts' feed and lists.
    assert_eq!(
        first.planned,
        2 * ((2 + core_datasets().len()) + 2 * (1 + core_datasets().len()))
    );
    assert_eq!(first.sent, first.planned);
    // Each connected account's feed and lists ride with the other's: one message per work.
    assert_eq!(
        first.messages,
        2 * ((2 + core_datasets().len()) + (1 + core_datasets().len()))
    );
    let drained = drain(&d, 10, 50, plenty).await;
    assert_eq!((drained.messages, drained.failures), (first.messages, 0));
    let connected = platform_equal().await;
    assert_eq!(connected.len(), 2);

    let platform = platform_id(&sim);
    let added = sim.sim().connect_accounts(&platform, 1, 2).unwrap();
    sim.sim().deauthorize(&connected[1]).unwrap();
    for livemode in [true, false] {
        churn(&sim, &connected[0], livemode);
    }
    sim.sim().advance(PAST_LAG);
    let second = scheduler::tick(&d.services, tick + 900).await.unwrap();
    assert!(second.errors.is_empty(), "{:?}", second.errors);
    let drained = drain(&d, 10, 50, plenty).await;
    assert_eq!(drained.failures, 0);
    assert!(
        !drained.bodies.iter().any(|b| b.contains(&connected[1])),
        "a deauthorized account is planned no more"
    );
    assert!(drained.bodies.iter().any(|b| b.contains(&added[0])));
    let now = platform_equal().await;
    assert_eq!(now, vec![connected[0].clone(), added[0].clone()]);
}

/// A Connect platform with a thousand connected accounts more, a few objects each: one tick plans
/// them all (their slices sent in cohorts, the unloaded first), workers in four processes load them
/// within the platform's one rate budget, the connected tables hold few files, not one per account,
/// and every table equals the ground truth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_with_a_thousand_connected_accounts_is_loaded_in_cohorts() {
    const CONNECTED: usize = 1_000;
    const BUDGET: f64 = 1.0;
    let sim = stripe_pipeline_testkit::acceptance::sim(SimConfig::tiny()).await;
    let platform = platform_id(&sim);
    sim.sim().connect_accounts(&platform, CONNECTED, 1).unwrap();
    let d = deploy(&sim, |s| {
        s.seed_accounts.clear();
        s.pipeline.rate_budget = BUDGET;
        s.rate_slot_wait_secs = 1;
    })
    .await;
    // The platform's live key, one dataset (and the platform's `accounts`): the cost is per account.
    let customers = Catalog::get().dataset("customers").unwrap();
    let live = &platform_accounts(&sim)[0];
    let key = live.key.as_ref().unwrap().expose().to_string();
    let record = stripe_pipeline_functions::accounts::AccountRecord {
        secret_arn: secret(&d.sdk, &live.name, &key).await,
        name: live.name.clone(),
        enabled: true,
        datasets: vec!["customers".into()],
        connect: true,
        event_source: None,
    };
    assert!(d.services.accounts.add_if_missing(&record).await.unwrap());

    let started = Instant::now();
    let tick = scheduler::tick(&d.services, 1_800_000_000).await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert!(tick.errors.is_empty(), "{:?}", tick.errors);
    // The platform's feed, customers and accounts; each connected account's feed and customers.
    let accounts = CONNECTED + 2;
    assert_eq!(
        (tick.planned, tick.sent),
        (3 + 2 * accounts, 3 + 2 * accounts)
    );
    let cohorts = accounts.div_ceil(scheduler::COHORT_SIZE);
    assert_eq!(tick.messages, 3 + 2 * cohorts);
    eprintln!(
        "scheduler tick of a platform with {accounts} connected accounts: {} slices in {} messages in {secs:.1} s; peak RSS of the test process {:.0} MiB",
        tick.planned,
        tick.messages,
        peak_rss_mib()
    );

    sim.sim().reset_stats();
    let workers: Vec<Services> = (0..4).map(|_| worker(&d)).collect();
    let started = Instant::now();
    let drained = drain_together(&d, &workers).await;
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(drained.failures, 0);
    let stats = sim.sim().stats();
    let peak = stats.peak_per_sec[&format!("{platform} live")];
    eprintln!(
        "4 workers: {} messages, {} requests in {secs:.1} s; the platform's busiest second: {peak} requests",
        drained.messages, stats.requests
    );
    assert!(
        peak as f64 <= BUDGET * 100.0,
        "{peak} requests in one second"
    );

    // Few files: a cohort's accounts share each file of a delivery.
    let files = parquet_objects(&d, "livemode/connected_account_customers/").await;
    eprintln!("{files} Parquet files of connected_account_customers for {accounts} accounts");
    assert!(
        files <= accounts / 5,
        "{files} files for the customers of {accounts} connected accounts"
    );
    let dir = tempfile::tempdir().unwrap();
    replay_lake(&d, dir.path()).await;
    let db = DuckDb::open(&dir.path().join("stripe_pipeline.duckdb")).unwrap();
    let loaded = assert_platform_equal_in(&db, &sim, &[customers], &[true]).await;
    assert_eq!(loaded.len(), accounts);
}

/// Parquet objects in the lake whose path starts with `prefix`.
async fn parquet_objects(d: &Deployment, prefix: &str) -> usize {
    use futures_util::TryStreamExt;
    let store = d.services.lake.store().clone();
    let objects: Vec<object_store::ObjectMeta> = store.list(None).try_collect().await.unwrap();
    objects
        .iter()
        .filter(|m| {
            let path = m.location.to_string();
            path.starts_with(prefix) && path.ends_with(".parquet")
        })
        .count()
}

/// Workers in several processes load one account's feed and lists into the same Redshift tables at
/// once. Redshift (its isolation is serializable) aborts one of two conflicting transactions with
/// error 1023; the aborted batch is run again, so no slice fails and the warehouse equals the ground
/// truth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_loading_redshift_at_once_run_aborted_loads_again() {
    let sim = stripe_pipeline_testkit::acceptance::sim(SimConfig::tiny()).await;
    let d = deploy_with(
        &sim,
        |s| {
            s.rate_slot_wait_secs = 1;
            core_only(s)
        },
        true,
    )
    .await;
    let tick = 1_800_000_000;
    let first = scheduler::tick(&d.services, tick).await.unwrap();
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    // One worker first: it creates the tables.
    let drained = drain(&d, 10, 50, plenty).await;
    assert_eq!(drained.failures, 0);
    for round in 0..2 {
        for (merchant, livemode) in scopes(&sim) {
            churn(&sim, &merchant, livemode);
        }
        sim.sim().advance(PAST_LAG);
        let next = scheduler::tick(&d.services, tick + 900 * (round + 1))
            .await
            .unwrap();
        assert!(next.errors.is_empty(), "{:?}", next.errors);
        let mut workers = Vec::new();
        for _ in 0..4 {
            workers.push(redshift_worker(&d).await);
        }
        let drained = drain_together(&d, &workers).await;
        assert_eq!(drained.failures, 0, "round {round}");
    }
    let warehouse = d.services.warehouse().await.unwrap();
    assert_warehouse_equal(warehouse.as_ref(), &sim, &scopes(&sim), &core_datasets()).await;
    // The loads did race: Redshift aborted some (and they were run again).
    let client = aws_sdk_redshiftdata::Client::new(&d.redshift.as_ref().unwrap().sdk().await);
    let failed = client
        .list_statements()
        .status(aws_sdk_redshiftdata::types::StatusString::Failed)
        .send()
        .await
        .unwrap();
    let mut conflicts = 0;
    for st in failed.statements() {
        let described = client
            .describe_statement()
            .id(st.id())
            .send()
            .await
            .unwrap();
        let error = described.error().unwrap_or_default();
        assert!(
            error.contains("Serializable isolation violation"),
            "{error}"
        );
        conflicts += 1;
    }
    eprintln!("{conflicts} conflicting loads aborted by Redshift and run again");
    assert!(conflicts > 0, "no two loads conflicted: nothing raced");
}

/// The datasets the pushed-event tests change (with [`evented_changes`]) and compare.
fn evented_datasets() -> Vec<&'static Dataset> {
    ["customers", "products", "charges", "invoices"]
        .iter()
        .map(|n| Catalog::get().dataset(n).unwrap())
        .collect()
}

/// The change feed's state of an account-mode.
async fn feed_state(d: &Deployment, merchant: &str, livemode: bool) -> FeedState {
    let state: StateStore = d.services.state.clone().into();
    let mode = if livemode { "live" } else { "test" };
    state
        .get(&format!("{merchant}/{mode}/_events"))
        .await
        .unwrap()
        .value
}

/// The feed cursors of every account-mode, to show that pushes alone changed the lake.
async fn feed_cursors(d: &Deployment, sim: &stripe_sim::RunningSim) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for (merchant, livemode) in scopes(sim) {
        let feed = feed_state(d, &merchant, livemode).await;
        out.push(serde_json::to_string(&feed.cursor).ok());
    }
    out
}

/// Customer ids in the lake (both modes), replayed into DuckDB.
async fn customers_in_lake(d: &Deployment) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    replay_lake(d, dir.path()).await;
    let db = DuckDb::open(&dir.path().join("stripe_pipeline.duckdb")).unwrap();
    db.query_strings(
        "SELECT id FROM stripe.customers UNION ALL SELECT id FROM stripe_testmode.customers",
    )
    .unwrap()
    .into_iter()
    .filter_map(|row| row[0].clone())
    .collect()
}

/// Stripe's event destinations of type Amazon EventBridge, played by the simulator into moto: one
/// partner event bus per account-mode, named after its source, with the template's rule sending
/// Stripe's events to the push queue. Deliveries delayed, reordered and some made twice; workers
/// drain the push queue in batches that mix accounts, and the lake equals Stripe without any feed
/// slice running (the feed cursors do not move). Then every push is lost: the changes are missing
/// until the next tick's feed reads them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_pushed_through_eventbridge_reach_the_lake_and_the_feed_catches_lost_ones() {
    use stripe_pipeline_testkit::acceptance::{evented_changes, pushes_settled};
    use stripe_sim::push::{PushConfig, Target};
    let sim = stripe_pipeline_testkit::acceptance::sim(SimConfig::tiny()).await;
    let source = |name: &str| format!("aws.partner/stripe.com/ed_{name}");
    let d = deploy(&sim, |s| {
        core_only(s);
        for seed in &mut s.seed_accounts {
            seed.event_source = Some(source(&seed.name));
        }
    })
    .await;
    let tick = 1_800_000_000;
    let first = scheduler::tick(&d.services, tick).await.unwrap();
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    assert_eq!(drain(&d, 10, 50, plenty).await.failures, 0);

    let merchants = merchants(&sim);
    let mut targets = Vec::new();
    for seed in &d.services.settings.seed_accounts {
        let bus = source(&seed.name);
        stripe_event_bus(&d, &bus).await;
        // Seeds are `a<n>-<mode>`: the simulator's merchant n, in that mode.
        let (n, mode) = seed.name[1..].split_once('-').unwrap();
        targets.push(Target::EventBridge {
            account: merchants[n.parse::<usize>().unwrap()].clone(),
            livemode: Some(mode == "live"),
            endpoint: d.moto.endpoint.clone(),
            bus: bus.clone(),
            source: format!("ed_{}", seed.name),
        });
    }
    let pushes = |loss_rate: f64| PushConfig {
        targets: targets.clone(),
        delay_ms: 50,
        jitter_ms: 300,
        duplicate_rate: 0.3,
        loss_rate,
    };
    let cursors = feed_cursors(&d, &sim).await;
    sim.sim().set_pushes(pushes(0.0));
    for (merchant, livemode) in scopes(&sim) {
        evented_changes(&sim, &merchant, livemode);
    }
    let [delivered, duplicated, lost, failed] = pushes_settled(&sim).await;
    assert!(
        delivered > 40 && duplicated > 0,
        "{delivered} delivered, {duplicated} twice"
    );
    assert_eq!((lost, failed), (0, 0));
    let pushed = drain_pushes(&d).await;
    assert_eq!(
        (pushed.messages as u64, pushed.failures),
        (delivered, 0),
        "every delivery reached the push queue and was applied"
    );
    assert!(pushed.bodies.iter().all(|b| b.contains("\"detail-type\"")));
    check_lake(&d, &sim, &evented_datasets()).await;
    assert_eq!(feed_cursors(&d, &sim).await, cursors, "a feed ran");
    assert_eq!(queue_depth(&d, &d.dlq_url).await, 0);

    // A Stripe event from a source no account names: not applied, handed back to SQS for a retry
    // (and the dead-letter queue after the receive limit), and nothing else held back.
    let bus = source("a0-live");
    let stray = serde_json::json!({"id": "evt_stray", "object": "event", "created": 1,
        "type": "customer.created", "livemode": true, "api_version": "2023-08-16",
        "data": {"object": {"id": "cus_stray", "object": "customer"}}});
    eventbridge(
        &d.moto,
        "PutEvents",
        serde_json::json!({"Entries": [{"Source": "aws.partner/stripe.com/ed_unknown",
            "DetailType": "customer.created", "Detail": stray.to_string(), "EventBusName": bus}]}),
    )
    .await;
    let stray = drain_from(&d, &d.push_url, &d.services, 10, 1, "stray", plenty).await;
    assert_eq!((stray.messages, stray.failures), (1, 1));
    // Received again until the receive limit (3 here), then kept by the dead-letter queue.
    let again = drain_pushes(&d).await;
    assert_eq!((again.messages, again.failures), (2, 2));
    assert_eq!(queue_depth(&d, &d.dlq_url).await, 1);
    assert!(!customers_in_lake(&d)
        .await
        .contains(&"cus_stray".to_string()));

    // Every push lost: the changes are not in the lake until the feed reads them.
    sim.sim().set_pushes(pushes(1.0));
    let mut unseen = Vec::new();
    for (merchant, livemode) in scopes(&sim) {
        unseen.extend(evented_changes(&sim, &merchant, livemode));
    }
    let [_, _, lost, _] = pushes_settled(&sim).await;
    assert!(lost > 0);
    assert_eq!(drain_pushes(&d).await.messages, 0);
    let have = customers_in_lake(&d).await;
    assert!(
        !unseen.iter().any(|id| have.contains(id)),
        "a lost push arrived"
    );
    sim.sim().advance(PAST_LAG);
    let second = scheduler::tick(&d.services, tick + 900).await.unwrap();
    assert!(second.errors.is_empty(), "{:?}", second.errors);
    assert_eq!(drain(&d, 10, 50, plenty).await.failures, 0);
    check_lake(&d, &sim, &evented_datasets()).await;
}

/// Log lines of this test process, kept for a test to read.
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The webhook function on its function URL: Stripe's signed deliveries (one account's changes,
/// sent newest first and each twice, some base64-encoded as function URLs pass binary bodies) are
/// answered 200 and queued, and the workers bring the lake to Stripe's state; every kind of bad
/// delivery gets its 4xx, nothing of it is queued and nothing of its body is logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_function_queues_signed_deliveries_and_refuses_the_rest() {
    use base64::Engine as _;
    use stripe_pipeline_functions::webhook::{UrlRequest, Webhook};
    use stripe_pipeline_testkit::acceptance::{
        bad_deliveries, evented_changes, good_delivery, BadDelivery, NEVER_LOGGED,
    };
    use stripe_sim::push::signature_header;
    const SECRET: &str = "whsec_function_test_0123456789abcdef";
    let logs = Logs::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    let sim = stripe_pipeline_testkit::acceptance::sim(SimConfig::tiny()).await;
    let d = deploy(&sim, core_only).await;
    let tick = 1_800_000_000;
    scheduler::tick(&d.services, tick).await.unwrap();
    assert_eq!(drain(&d, 10, 50, plenty).await.failures, 0);
    let arn = secret(
        &d.sdk,
        "webhook",
        &format!("whsec_rolled_out_0000,{SECRET}"),
    )
    .await;
    let mut env = d.env.clone();
    env.insert("STRIPE_PIPELINE_WEBHOOK_SECRET_ARN".into(), arn);
    let webhook = Webhook::new(&d.sdk, |k| env.get(k).cloned()).unwrap();
    let request = |method: &str, path: &str, signature: Option<String>, body: &[u8], b64: bool| {
        let mut req = UrlRequest {
            raw_path: path.to_string(),
            ..UrlRequest::default()
        };
        req.request_context.http.method = method.to_string();
        if let Some(s) = signature {
            req.headers.insert("stripe-signature".into(), s);
        }
        req.body = Some(if b64 {
            base64::engine::general_purpose::STANDARD.encode(body)
        } else {
            String::from_utf8_lossy(body).to_string()
        });
        req.is_base64_encoded = b64;
        req
    };

    // Every kind of bad delivery: refused, nothing queued, its body's marker never logged.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let signed = |t: i64, body: &str| Some(signature_header(SECRET, t, body.as_bytes()));
    let (event, signature) = good_delivery(SECRET, now);
    let path = "/webhooks/a0-live";
    let mut cases: Vec<(&str, BadDelivery)> = bad_deliveries(SECRET, now)
        .into_iter()
        .map(|c| (path, c))
        .collect();
    for (what, to) in [
        ("not under /webhooks/", "/a0-live"),
        ("an account not in the table", "/webhooks/initech"),
    ] {
        let case = BadDelivery {
            what,
            method: "POST",
            signature: Some(signature.clone()),
            body: event.clone(),
            status: 404,
        };
        cases.push((to, case));
    }
    for (path, case) in cases {
        let req = request(
            case.method,
            path,
            case.signature,
            case.body.as_bytes(),
            false,
        );
        let resp = webhook.receive(req).await;
        assert_eq!(
            resp.status_code, case.status,
            "{}: {}",
            case.what, resp.body
        );
    }
    assert_eq!(
        queue_depth(&d, &d.push_url).await,
        0,
        "a refused delivery was queued"
    );

    // One account's changes, delivered as Stripe would (the events as `/v1/events` has them), newest
    // first and each twice.
    let merchant = merchants(&sim)[0].clone();
    let since = sim.sim().now();
    evented_changes(&sim, &merchant, true);
    let key = sim.info().key("secret", "live", 0).unwrap();
    let auth = format!("Bearer {key}");
    let (status, page) = http_with_headers(
        "GET",
        &format!(
            "{}/v1/events?limit=100&created[gte]={since}",
            sim.base_url()
        ),
        &[("authorization", auth.as_str())],
        Vec::new(),
    )
    .await;
    assert_eq!(status, 200);
    let page: serde_json::Value = serde_json::from_slice(&page).unwrap();
    let events = page["data"].as_array().unwrap();
    assert!(events.len() > 8, "{} events", events.len());
    let mut accepted = 0;
    for round in 0..2 {
        for (i, e) in events.iter().enumerate() {
            let body = e.to_string();
            let resp = webhook
                .receive(request(
                    "POST",
                    "/webhooks/a0-live",
                    signed(now, &body),
                    body.as_bytes(),
                    (i + round) % 3 == 0,
                ))
                .await;
            assert_eq!(resp.status_code, 200, "{:?}", resp.body);
            accepted += 1;
        }
    }
    let pushed = drain_pushes(&d).await;
    assert_eq!((pushed.messages, pushed.failures), (accepted, 0));
    assert!(pushed
        .bodies
        .iter()
        .all(|b| b.contains("\"pushed_to\":\"a0-live\"")));
    check_lake(&d, &sim, &evented_datasets()).await;
    let logged = String::from_utf8_lossy(&logs.0.lock().unwrap()).to_string();
    assert!(logged.contains("webhook delivery refused"), "{logged}");
    assert!(!logged.contains(NEVER_LOGGED), "{logged}");
    assert!(!logged.contains(SECRET), "{logged}");
}
