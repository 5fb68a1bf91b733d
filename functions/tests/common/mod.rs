//! Test support for the functions: a moto server (the AWS emulator, from the test venv) on a free
//! loopback port, the deployment's resources created in it the way the SAM template declares them, a
//! queue drain that plays Lambda's SQS event source, and a replay of the S3 lake into DuckDB so the
//! acceptance suite's ground-truth comparison applies.
#![allow(dead_code)]

pub use stripe_pipeline_testkit::moto::*;
pub use stripe_pipeline_testkit::redshift::{self as redshift, RedshiftEmulator};

use aws_config::SdkConfig;
use aws_lambda_events::sqs::SqsMessage;
use object_store::ObjectStoreExt;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use stripe_pipeline::catalog::Catalog;
use stripe_pipeline::warehouse::duckdb::DuckDb;
use stripe_pipeline::warehouse::{Load, Warehouse};
use stripe_pipeline_functions::accounts::AccountRecord;
use stripe_pipeline_functions::settings::Settings;
use stripe_pipeline_functions::{worker, Services};
use stripe_sim::RunningSim;

/// Unique names per test (one moto per test, but readable names help when one fails).
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The deployment in moto: tables, the slice queue with a dead-letter queue, the lake bucket, the
/// alert topic with an SQS subscription the test reads notifications from, one secret per account.
pub struct Deployment {
    /// The Redshift Data API emulator, when the deployment loads Redshift (dropped before moto).
    pub redshift: Option<RedshiftEmulator>,
    pub moto: Moto,
    pub sdk: SdkConfig,
    pub services: Services,
    pub queue_url: String,
    /// The push queue (the EventBridge rule's target and the webhook function's), redriven to the
    /// dead-letter queue.
    pub push_url: String,
    pub dlq_url: String,
    pub alerts_url: String,
    pub bucket: String,
    /// The functions' environment (as the SAM template sets it), without the AWS endpoint settings.
    pub env: BTreeMap<String, String>,
}

pub async fn queue(sdk: &SdkConfig, name: &str) -> String {
    aws_sdk_sqs::Client::new(sdk)
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap()
}

pub async fn queue_arn(sdk: &SdkConfig, url: &str) -> String {
    aws_sdk_sqs::Client::new(sdk)
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone()
}

/// Stores a Stripe key as a secret named `stripe-pipeline/<name>`; returns its ARN.
pub async fn secret(sdk: &SdkConfig, name: &str, key: &str) -> String {
    aws_sdk_secretsmanager::Client::new(sdk)
        .create_secret()
        .name(format!("stripe-pipeline/{name}"))
        .secret_string(key)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap()
}

/// The four accounts of the acceptance suite (two merchants, live and test), as seeds.
pub async fn seed_accounts(sdk: &SdkConfig, sim: &RunningSim) -> Vec<AccountRecord> {
    let mut out = Vec::new();
    for n in 0..2 {
        for mode in ["live", "test"] {
            let name = format!("a{n}-{mode}");
            let key = sim.info().key("secret", mode, n).unwrap();
            out.push(AccountRecord {
                secret_arn: secret(sdk, &name, &key).await,
                name,
                enabled: true,
                datasets: Vec::new(),
                connect: false,
                event_source: None,
            });
        }
    }
    out
}

/// Settings whose seeded accounts sync only the core datasets (`CORE_DATASETS`).
pub fn core_only(s: &mut Settings) {
    for seed in &mut s.seed_accounts {
        seed.datasets = stripe_pipeline_testkit::acceptance::CORE_DATASETS
            .iter()
            .map(|d| d.to_string())
            .collect();
    }
}

pub async fn deploy(sim: &RunningSim, tune: impl FnOnce(&mut Settings)) -> Deployment {
    deploy_with(sim, tune, false).await
}

/// The deployment with a Redshift workgroup: the worker loads every slice through the Data API
/// emulator (a fresh database on the test PostgreSQL server), for the core datasets.
pub async fn deploy_redshift(sim: &RunningSim) -> Deployment {
    deploy_with(sim, core_only, true).await
}

pub async fn deploy_with(
    sim: &RunningSim,
    tune: impl FnOnce(&mut Settings),
    with_redshift: bool,
) -> Deployment {
    let moto = Moto::start();
    let sdk = moto.sdk().await;
    let (accounts, state, bucket) = (unique("accounts"), unique("state"), unique("lake"));
    create_table(&sdk, &accounts, "name").await;
    create_table(&sdk, &state, "key").await;
    create_bucket(&moto, &bucket).await;
    let dlq_url = queue(&sdk, &unique("dlq")).await;
    let queue_url = queue(&sdk, &unique("slices")).await;
    let push_url = queue(&sdk, &unique("pushes")).await;
    let redrive = serde_json::json!({
        "deadLetterTargetArn": queue_arn(&sdk, &dlq_url).await,
        "maxReceiveCount": 3,
    });
    for url in [&queue_url, &push_url] {
        aws_sdk_sqs::Client::new(&sdk)
            .set_queue_attributes()
            .queue_url(url)
            .attributes(
                aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
                redrive.to_string(),
            )
            .send()
            .await
            .unwrap();
    }
    let (topic, alerts_url) = topic_with_inbox(&sdk).await;
    let seeds = seed_accounts(&sdk, sim).await;
    let env: BTreeMap<String, String> = [
        ("STRIPE_PIPELINE_ACCOUNTS_TABLE", accounts),
        ("STRIPE_PIPELINE_STATE_TABLE", state),
        ("STRIPE_PIPELINE_QUEUE_URL", queue_url.clone()),
        ("STRIPE_PIPELINE_PUSH_QUEUE_URL", push_url.clone()),
        ("STRIPE_PIPELINE_LAKE_URL", format!("s3://{bucket}/lake")),
        ("STRIPE_PIPELINE_TOPIC_ARN", topic),
        ("STRIPE_PIPELINE_API_BASE", sim.base_url()),
        (
            "STRIPE_PIPELINE_SEED_ACCOUNTS",
            serde_json::to_string(&seeds).unwrap(),
        ),
        // Snapshot datasets are listed on every tick, so event-less updates show at once, and
        // datasets without any events are asked for new objects on every tick.
        ("STRIPE_PIPELINE_SNAPSHOT_INTERVAL_SECS", "0".into()),
        ("STRIPE_PIPELINE_UNANNOUNCED_INTERVAL_SECS", "0".into()),
        ("STRIPE_PIPELINE_RATE_BUDGET", "1".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut env = env;
    let emulator = with_redshift.then(|| RedshiftEmulator::start(&moto));
    if with_redshift {
        env.insert(
            "STRIPE_PIPELINE_REDSHIFT_WORKGROUP".into(),
            "analytics".into(),
        );
        env.insert(
            "STRIPE_PIPELINE_REDSHIFT_DATABASE".into(),
            redshift::database("serverless"),
        );
        env.insert(
            "STRIPE_PIPELINE_REDSHIFT_COPY_ROLE_ARN".into(),
            "arn:aws:iam::123456789012:role/stripe-pipeline-copy".into(),
        );
    }
    let mut settings = Settings::from_env(|k| env.get(k).cloned()).unwrap();
    tune(&mut settings);
    let mut services = Services::new(settings, &sdk, &moto.lake_options()).unwrap();
    if let Some(e) = &emulator {
        services = services.with_warehouse_sdk(e.sdk().await);
    }
    Deployment {
        redshift: emulator,
        moto,
        sdk,
        services,
        queue_url,
        push_url,
        dlq_url,
        alerts_url,
        bucket,
        env,
    }
}

/// A Stripe event destination of type Amazon EventBridge, as the template wires it: the partner event
/// source `source` (Stripe makes it when the destination is made), its bus (named after it) and the
/// rule sending Stripe's events on it to the push queue.
pub async fn stripe_event_bus(d: &Deployment, source: &str) {
    let push_arn = queue_arn(&d.sdk, &d.push_url).await;
    let pattern = serde_json::json!({"source": [{"prefix": "aws.partner/stripe.com"}]});
    let calls = [
        (
            "CreatePartnerEventSource",
            serde_json::json!({"Name": source, "Account": "123456789012"}),
        ),
        (
            "CreateEventBus",
            serde_json::json!({"Name": source, "EventSourceName": source}),
        ),
        (
            "PutRule",
            serde_json::json!({"Name": "stripe-events", "EventBusName": source,
                "EventPattern": pattern.to_string(), "State": "ENABLED"}),
        ),
        (
            "PutTargets",
            serde_json::json!({"Rule": "stripe-events", "EventBusName": source,
                "Targets": [{"Id": "push-queue", "Arn": push_arn}]}),
        ),
    ];
    for (action, body) in calls {
        eventbridge(&d.moto, action, body).await;
    }
}

/// What draining the queue did.
#[derive(Debug, Default)]
pub struct Drained {
    pub messages: usize,
    pub failures: usize,
    pub bodies: Vec<String>,
}

/// Plays Lambda's SQS event source: receives up to `batch` messages, runs the worker on them, deletes
/// the ones it did not report as failed, and makes failed ones visible again; until the queue is empty
/// or `rounds` batches ran. `stop` gives each invocation its deadline.
/// A received SQS message as Lambda's event source hands it to the worker.
pub fn record(m: &aws_sdk_sqs::types::Message) -> SqsMessage {
    let mut r = SqsMessage::default();
    r.message_id = m.message_id.clone();
    r.body = m.body.clone();
    r.receipt_handle = m.receipt_handle.clone();
    r
}

pub async fn drain(
    d: &Deployment,
    batch: i32,
    rounds: usize,
    stop: impl Fn() -> Instant,
) -> Drained {
    drain_by(d, &d.services, batch, rounds, "drain", stop).await
}

/// [`drain`] by one worker process (`svc`): another Lambda container of the same deployment, with its
/// own rate limiter; `name` keeps its run ids apart from the other workers'.
pub async fn drain_by(
    d: &Deployment,
    svc: &Services,
    batch: i32,
    rounds: usize,
    name: &str,
    stop: impl Fn() -> Instant,
) -> Drained {
    drain_from(d, &d.queue_url, svc, batch, rounds, name, stop).await
}

/// Plays the push queue's event source: batches of up to ten pushed events until the queue is empty.
pub async fn drain_pushes(d: &Deployment) -> Drained {
    drain_from(d, &d.push_url, &d.services, 10, 1000, "push", plenty).await
}

/// [`drain_by`] from the queue at `queue_url`.
pub async fn drain_from(
    d: &Deployment,
    queue_url: &str,
    svc: &Services,
    batch: i32,
    rounds: usize,
    name: &str,
    stop: impl Fn() -> Instant,
) -> Drained {
    let sqs = aws_sdk_sqs::Client::new(&d.sdk);
    let mut out = Drained::default();
    for _ in 0..rounds {
        let received = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(batch)
            .visibility_timeout(60)
            .send()
            .await
            .unwrap();
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            return out;
        }
        let records: Vec<SqsMessage> = messages.iter().map(record).collect();
        out.messages += records.len();
        out.bodies
            .extend(messages.iter().filter_map(|m| m.body.clone()));
        // Unique across calls, as Lambda's request ids are: run ids name the lake's files.
        static INVOCATIONS: AtomicU32 = AtomicU32::new(0);
        let invocation = INVOCATIONS.fetch_add(1, Ordering::Relaxed);
        let response = worker::handle(svc, records, &format!("{name}{invocation}"), stop()).await;
        let failed: Vec<String> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        out.failures += failed.len();
        for m in &messages {
            let handle = m.receipt_handle.clone().unwrap_or_default();
            if failed.contains(&m.message_id.clone().unwrap_or_default()) {
                sqs.change_message_visibility()
                    .queue_url(queue_url)
                    .receipt_handle(handle)
                    .visibility_timeout(0)
                    .send()
                    .await
                    .unwrap();
            } else {
                sqs.delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .unwrap();
            }
        }
    }
    out
}

/// Messages in the queue, visible, in flight or delayed.
pub async fn queued(d: &Deployment) -> usize {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let names = [
        A::ApproximateNumberOfMessages,
        A::ApproximateNumberOfMessagesNotVisible,
        A::ApproximateNumberOfMessagesDelayed,
    ];
    let attrs = aws_sdk_sqs::Client::new(&d.sdk)
        .get_queue_attributes()
        .queue_url(&d.queue_url)
        .set_attribute_names(Some(names.to_vec()))
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap_or_default();
    names
        .iter()
        .map(|n| {
            attrs
                .get(n)
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0)
        })
        .sum()
}

/// `workers` (one [`Services`] per Lambda container) drain the queue at once, a message at a time
/// each, until nothing is left in it, delayed messages included.
pub async fn drain_together(d: &Deployment, workers: &[Services]) -> Drained {
    let mut out = Drained::default();
    loop {
        let so_far = out.messages;
        let rounds = workers.iter().enumerate().map(|(n, svc)| {
            let name = format!("worker{n}-{so_far}-");
            async move { drain_by(d, svc, 1, 10_000, &name, plenty).await }
        });
        for drained in futures_util::future::join_all(rounds).await {
            out.messages += drained.messages;
            out.failures += drained.failures;
            out.bodies.extend(drained.bodies);
        }
        if queued(d).await == 0 {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Another worker container of the deployment: the same settings, its own clients and rate limiter.
pub fn worker(d: &Deployment) -> Services {
    Services::new(d.services.settings.clone(), &d.sdk, &d.moto.lake_options()).unwrap()
}

/// Another worker container of a deployment with Redshift, loading through the Data API emulator.
pub async fn redshift_worker(d: &Deployment) -> Services {
    let emulator = d.redshift.as_ref().expect("a deployment with Redshift");
    worker(d).with_warehouse_sdk(emulator.sdk().await)
}

/// No deadline pressure: ten minutes per invocation.
pub fn plenty() -> Instant {
    Instant::now() + Duration::from_secs(600)
}

/// Notifications published so far (their messages), read from the topic's SQS subscription.
pub async fn notifications(d: &Deployment) -> Vec<String> {
    drain_queue(&d.sdk, &d.alerts_url).await
}

/// An SNS topic and the SQS queue subscribed to it (raw delivery: each message's body is the
/// notification's message): `(topic arn, queue url)`.
pub async fn topic_with_inbox(sdk: &SdkConfig) -> (String, String) {
    let sns = aws_sdk_sns::Client::new(sdk);
    let topic = sns
        .create_topic()
        .name(unique("alerts"))
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let inbox = queue(sdk, &unique("alert-inbox")).await;
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(queue_arn(sdk, &inbox).await)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .unwrap();
    (topic, inbox)
}

/// Receives and deletes every message waiting in a queue; their bodies.
pub async fn drain_queue(sdk: &SdkConfig, url: &str) -> Vec<String> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let mut out = Vec::new();
    loop {
        let got = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        if got.is_empty() {
            return out;
        }
        for m in got {
            out.push(m.body.clone().unwrap_or_default());
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle.unwrap_or_default())
                .send()
                .await
                .unwrap();
        }
    }
}

/// Copies the lake from S3 to `dir` and merges every batch into a DuckDB file at
/// `dir/stripe_pipeline.duckdb`, the way the warehouse merges them (newest version per object wins,
/// whatever the order): the acceptance suite's comparison then checks the lake's content.
pub async fn replay_lake(d: &Deployment, dir: &Path) -> usize {
    use futures_util::TryStreamExt;
    let store = d.services.lake.store().clone();
    let objects: Vec<object_store::ObjectMeta> = store.list(None).try_collect().await.unwrap();
    // (mode, merchant, stem) -> [(table, local file)]
    let mut batches: BTreeMap<(bool, String, String), Vec<(String, String)>> = BTreeMap::new();
    for meta in &objects {
        let path = meta.location.to_string();
        let parts: Vec<&str> = path.split('/').collect();
        let [mode, table, merchant, file] = parts[..] else {
            continue;
        };
        let Some(stem) = file.strip_suffix(".parquet") else {
            continue;
        };
        let local = dir.join("lake").join(&path);
        std::fs::create_dir_all(local.parent().unwrap()).unwrap();
        let bytes = store
            .get(&meta.location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        std::fs::write(&local, &bytes).unwrap();
        let merchant = merchant.trim_start_matches("merchant_id=").to_string();
        batches
            .entry((mode == "livemode", merchant, stem.to_string()))
            .or_default()
            .push((table.to_string(), path.clone()));
    }
    let lake = stripe_pipeline::lake::Lake::local(&dir.join("lake")).unwrap();
    let db = DuckDb::open(&dir.join("stripe_pipeline.duckdb")).unwrap();
    // Every dataset: a merchant's own, a platform's connected accounts, and theirs.
    let catalog = Catalog::get();
    let every = || {
        catalog
            .datasets
            .iter()
            .chain(&catalog.platform)
            .chain(Catalog::connected())
    };
    for livemode in [true, false] {
        for dataset in every() {
            db.prepare(livemode, dataset).await.unwrap();
        }
    }
    for ((livemode, merchant, _), files) in &batches {
        let dataset = every()
            .find(|ds| ds.tables.iter().any(|t| t.name == files[0].0))
            .unwrap();
        db.load(&Load {
            dataset,
            livemode: *livemode,
            merchant_id: merchant,
            lake: &lake,
            files: files.clone(),
            as_of: 0,
            tombstones: Vec::new(),
            tombstone_timestamp: 0,
        })
        .await
        .unwrap();
    }
    objects.len()
}
