//! Freshness of the serverless push path: the delay from a change in Stripe to its row in Redshift,
//! through Stripe's EventBridge event destination (the simulator's pushes into moto's EventBridge),
//! the template's rule, the push queue and a worker, into the Redshift Data API emulator.
//!
//! The deployment is the functions tests' (moto, the simulator, the Data API emulator over the test
//! PostgreSQL). A poller plays Lambda's event source of the push queue: it receives what is there
//! (waiting up to a second for the first message, then gathering for the batching window of a second,
//! at most 100), runs the worker on it and deletes the batch. A different customer is updated every
//! `--every-ms` (default 2,000); a change's delay is the time from the change to the end of the
//! worker invocation whose batch held it (the worker returns once the rows are committed in Redshift
//! and the state moved). At the end the bench checks in Redshift that every change is there.
//!
//! ```sh
//! cargo build -p stripe-pipeline-functions --examples --features stripe-pipeline-cli/aws
//! STRIPE_PIPELINE_VENV=/var/tmp/stripe-pipeline-venv $CARGO_TARGET_DIR/debug/examples/push_freshness --minutes 3
//! ```

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use std::time::{Duration, Instant};
use stripe_pipeline_functions::{scheduler, worker};
use stripe_pipeline_testkit::bench::{
    arg, assert_customers_current, change_customers_in_turn, delays, distribution, REVISIONS_SQL,
};
use stripe_sim::push::{PushConfig, Target};
use stripe_sim::SimConfig;

/// The ids of the objects the pushed events of these message bodies are about.
fn objects(bodies: &[String]) -> Vec<String> {
    bodies
        .iter()
        .filter_map(|b| serde_json::from_str::<serde_json::Value>(b).ok())
        .filter_map(|v| {
            v["detail"]["data"]["object"]["id"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (minutes, every_ms) = (arg("--minutes", 3), arg("--every-ms", 2000));
    let sim = stripe_pipeline_testkit::acceptance::sim(SimConfig::tiny()).await;
    let source = "aws.partner/stripe.com/ed_bench";
    let d = deploy_with(
        &sim,
        |s| {
            core_only(s);
            // One account-mode is pushed; the other three stay on the schedule.
            s.seed_accounts[0].event_source = Some(source.to_string());
        },
        true,
    )
    .await;
    let started = Instant::now();
    let first = scheduler::tick(&d.services, 1_800_000_000)
        .await
        .expect("tick");
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    let drained = drain(&d, 10, 100, plenty).await;
    assert_eq!(drained.failures, 0);
    println!(
        "first tick and its {} slices into Redshift: {:.1} s",
        drained.messages,
        started.elapsed().as_secs_f64()
    );
    stripe_event_bus(&d, source).await;
    let merchant = stripe_pipeline_testkit::acceptance::merchants(&sim)[0].clone();
    sim.sim().set_pushes(PushConfig {
        targets: vec![Target::EventBridge {
            account: merchant.clone(),
            livemode: Some(true),
            endpoint: d.moto.endpoint.clone(),
            bus: source.to_string(),
            source: "ed_bench".to_string(),
        }],
        ..PushConfig::default()
    });

    // The poller: batches as Lambda's event source makes them; (end of the invocation, objects).
    // It runs beside the changes in this task (the worker's future is not spawned).
    let stop = std::sync::atomic::AtomicBool::new(false);
    let poller = {
        let (d, stop) = (&d, &stop);
        async move {
            let sqs = aws_sdk_sqs::Client::new(&d.sdk);
            let mut applied: Vec<(Instant, Vec<String>)> = Vec::new();
            let mut invocations = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut messages = Vec::new();
                let mut window: Option<Instant> = None;
                while messages.len() < 100 && window.is_none_or(|w| Instant::now() < w) {
                    let got = sqs
                        .receive_message()
                        .queue_url(&d.push_url)
                        .max_number_of_messages(10)
                        .wait_time_seconds(1)
                        .visibility_timeout(60)
                        .send()
                        .await
                        .expect("receive")
                        .messages
                        .unwrap_or_default();
                    if got.is_empty() && window.is_none() {
                        break;
                    }
                    if window.is_none() && !got.is_empty() {
                        window = Some(Instant::now() + Duration::from_secs(1));
                    }
                    messages.extend(got);
                }
                if messages.is_empty() {
                    continue;
                }
                let records = messages.iter().map(record).collect();
                let bodies: Vec<String> = messages.iter().filter_map(|m| m.body.clone()).collect();
                invocations += 1;
                let response = worker::handle(
                    &d.services,
                    records,
                    &format!("push{invocations}"),
                    plenty(),
                )
                .await;
                assert!(response.batch_item_failures.is_empty(), "a push failed");
                applied.push((Instant::now(), objects(&bodies)));
                for m in &messages {
                    sqs.delete_message()
                        .queue_url(&d.push_url)
                        .receipt_handle(m.receipt_handle.clone().unwrap_or_default())
                        .send()
                        .await
                        .expect("delete");
                }
            }
            applied
        }
    };

    let changer = async {
        let changes = change_customers_in_turn(&sim, &merchant, minutes, every_ms).await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        changes
    };
    let (applied, changes) = tokio::join!(poller, changer);
    let (mut secs, missing) = delays(&changes, &applied);
    // Redshift holds every change: each customer as Stripe has it now.
    let warehouse = d.services.warehouse().await.expect("warehouse");
    let rows = warehouse
        .query_strings(REVISIONS_SQL)
        .await
        .expect("query Redshift");
    assert_customers_current(&sim, &merchant, &changes, rows);
    println!(
        "{} changes, one every {every_ms} ms; {} worker invocations; not seen applied: {missing}",
        changes.len(),
        applied.len()
    );
    match distribution(&mut secs) {
        Some(d) => println!("delay change → row in Redshift (EventBridge → SQS → worker): {d}"),
        None => println!("no change arrived"),
    }
}
