//! The commands for a deployed stack (feature `aws`), run as the binary against its tables in moto:
//! `accounts add|list|disable|enable` on the accounts table, and `resync` into the state table with the
//! key from Secrets Manager and the simulator as Stripe.
#![cfg(feature = "aws")]

use std::process::{Command, Output};
use stripe_pipeline::state::{Backfill, DatasetState, DynamoState, StateStore};
use stripe_pipeline_testkit::moto::{create_table, Moto};
use stripe_sim::SimConfig;

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_and_resync_work_on_a_stacks_tables() {
    let sim = stripe_sim::start(SimConfig::tiny()).await.unwrap();
    let merchant = sim.info().accounts[0].id.clone();
    let moto = Moto::start();
    let sdk = moto.sdk().await;
    create_table(&sdk, "accounts", "name").await;
    create_table(&sdk, "state", "key").await;
    let key = sim.info().key("secret", "live", 0).unwrap();
    let arn = aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name("stripe-pipeline/acme")
        .secret_string(&key)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    // A completed backfill of customers, as a worker leaves it.
    let state: StateStore = DynamoState::new(&sdk, "state").into();
    let customers = format!("{merchant}/live/customers");
    let done = DatasetState {
        backfill: Some(Backfill {
            upper: 1_700_000_000,
            started: 1_700_000_000,
            segments: Vec::new(),
        }),
        ..DatasetState::default()
    };
    state.put(&customers, 0, &done).await.unwrap();

    let (endpoint, base, secret) = (moto.endpoint.clone(), sim.base_url(), arn.clone());
    let out = tokio::task::spawn_blocking(move || {
        let run = |args: &[&str]| {
            Command::new(env!("CARGO_BIN_EXE_stripe-pipeline"))
                .args(args)
                .env("AWS_ENDPOINT_URL", &endpoint)
                .env("AWS_ACCESS_KEY_ID", "testing")
                .env("AWS_SECRET_ACCESS_KEY", "testing")
                .env("AWS_REGION", "us-east-1")
                .env_remove("AWS_PROFILE")
                .env("STRIPE_PIPELINE_API_BASE", &base)
                .output()
                .unwrap()
        };
        let with = |rest: &[&str]| {
            let mut args = vec!["accounts", "--accounts-table", "accounts"];
            args.extend_from_slice(rest);
            run(&args)
        };
        [
            with(&[
                "add",
                "acme",
                "--secret-arn",
                &secret,
                "--dataset",
                "customers",
            ]),
            with(&["add", "acme", "--secret-arn", &secret]),
            with(&["disable", "acme"]),
            with(&["list"]),
            with(&["enable", "acme"]),
            with(&["disable", "nobody"]),
            run(&[
                "resync",
                "--account",
                "acme",
                "--accounts-table",
                "accounts",
                "--state-table",
                "state",
            ]),
            run(&[
                "resync",
                "--account",
                "acme",
                "--dataset",
                "charges",
                "--accounts-table",
                "accounts",
                "--state-table",
                "state",
            ]),
        ]
    })
    .await
    .unwrap();
    let [added, again, disabled, listed, enabled, missing, resynced, not_synced] = out;
    assert_eq!(added.status.code(), Some(0), "{}", text(&added));
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(text(&again).contains("already"), "{}", text(&again));
    assert_eq!(disabled.status.code(), Some(0), "{}", text(&disabled));
    let list = text(&listed);
    let row = list
        .lines()
        .find(|l| l.starts_with("acme"))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(
        row.contains(" no ") && row.contains("customers") && row.contains(&arn),
        "{row}"
    );
    assert_eq!(enabled.status.code(), Some(0), "{}", text(&enabled));
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing).contains("no account named 'nobody'"));
    // The resync marked the customers list for a full list again; the key never showed.
    let said = text(&resynced);
    assert_eq!(resynced.status.code(), Some(0), "{said}");
    assert!(
        said.contains(&merchant) && said.contains("customers marked"),
        "{said}"
    );
    assert!(!said.contains(&key));
    let after = state.get::<DatasetState>(&customers).await.unwrap();
    assert_eq!(after.version, 2);
    assert!(after.value.backfill.is_none(), "{after:?}");
    assert_eq!(not_synced.status.code(), Some(2));
    assert!(
        text(&not_synced).contains("does not sync a dataset 'charges'"),
        "{}",
        text(&not_synced)
    );
}
