//! Each function once as a real binary behind the Lambda Runtime API emulator of `cargo lambda watch`
//! (`--only-lambda-apis`: the emulator serves the runtime API, the test starts the binary the way
//! Lambda starts `bootstrap`), with the sample events of `events/`, against moto and the simulator.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use stripe_pipeline::state::{DatasetState, StateStore};
use stripe_sim::SimConfig;

/// `cargo lambda watch --only-lambda-apis` on a free port, killed when dropped.
struct Emulator {
    server: ChildServer,
}

impl Emulator {
    fn start() -> Emulator {
        let bin = venv_bin("cargo-lambda", "cargo-lambda");
        let server = start_server("cargo lambda watch", |port| {
            let mut watch = Command::new(&bin);
            watch
                .args([
                    "lambda",
                    "watch",
                    "--only-lambda-apis",
                    "--timeout",
                    "120",
                    "-A",
                    "127.0.0.1",
                    "-P",
                ])
                .arg(port.to_string())
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            watch
        });
        Emulator { server }
    }

    /// Starts `binary` as the function (the emulator's default function `_`), sends it one event,
    /// and returns its response, the time from process start to the response (cold start and
    /// the invocation).
    async fn invoke(
        &self,
        binary: &str,
        env: &BTreeMap<String, String>,
        event: &Value,
    ) -> (Value, Duration, String) {
        let log = tempfile::NamedTempFile::new().unwrap();
        let started = Instant::now();
        let mut function = Command::new(binary)
            .envs(env)
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{}/.rt", self.server.port),
            )
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("the function binary starts");
        let url = format!(
            "http://127.0.0.1:{}/2015-03-31/functions/_/invocations",
            self.server.port
        );
        let (status, body) = http("POST", &url, serde_json::to_vec(event).unwrap()).await;
        let took = started.elapsed();
        let _ = function.kill();
        let _ = function.wait();
        let log = std::fs::read_to_string(log.path()).unwrap_or_default();
        assert_eq!(status, 200, "{}\n{log}", String::from_utf8_lossy(&body));
        (serde_json::from_slice(&body).unwrap(), took, log)
    }
}

fn sample(name: &str) -> Value {
    let path = format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_and_the_worker_run_as_lambda_binaries() {
    let sim = stripe_pipeline_testkit::acceptance::sim(SimConfig::tiny()).await;
    let d = deploy(&sim, |_| {}).await;
    // The functions find moto the way they find AWS: through the environment.
    let mut env = d.env.clone();
    for (k, v) in [
        ("AWS_ENDPOINT_URL", d.moto.endpoint.as_str()),
        ("AWS_ENDPOINT", d.moto.endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "false"),
    ] {
        env.insert(k.into(), v.into());
    }
    let emulator = Emulator::start();

    let (report, took, log) = emulator
        .invoke(
            env!("CARGO_BIN_EXE_scheduler"),
            &env,
            &sample("scheduled.json"),
        )
        .await;
    eprintln!("scheduler: start to response {took:?}");
    let planned = 4 * (1 + stripe_pipeline::catalog::Catalog::get().datasets.len());
    assert_eq!(report["sent"], planned, "{report}\n{log}");
    // The sample event's time, to the minute, is the tick.
    assert_eq!(report["tick"], 1_795_694_400, "{report}");

    // One list slice from the queue, in the sample SQS event's shape.
    let sqs = aws_sdk_sqs::Client::new(&d.sdk);
    let message = sqs
        .receive_message()
        .queue_url(&d.queue_url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default()
        .into_iter()
        .find(|m| m.body().is_some_and(|b| b.contains("\"kind\":\"list\"")))
        .expect("a list slice in the queue");
    let slice: Value = serde_json::from_str(message.body().unwrap()).unwrap();
    let mut event = sample("slice.json");
    event["Records"][0]["messageId"] = message.message_id().unwrap().into();
    event["Records"][0]["body"] = message.body().unwrap().into();
    let (response, took, log) = emulator
        .invoke(env!("CARGO_BIN_EXE_worker"), &env, &event)
        .await;
    eprintln!("worker: start to response {took:?}");
    assert_eq!(
        response["batchItemFailures"],
        serde_json::json!([]),
        "{response}\n{log}"
    );

    // The slice's dataset is loaded: its state in DynamoDB says the list is complete.
    let account = slice["account"].as_str().unwrap();
    let (n, mode) = (&account[1..2], &account[3..]);
    let merchant =
        &stripe_pipeline_testkit::acceptance::merchants(&sim)[n.parse::<usize>().unwrap()];
    let state: StateStore = d.services.state.clone().into();
    let st: DatasetState = state
        .get(&format!(
            "{merchant}/{mode}/{}",
            slice["dataset"].as_str().unwrap()
        ))
        .await
        .unwrap()
        .value;
    assert!(st.backfill.is_some_and(|b| b.complete()), "{slice}");

    // A message that is not a slice fails alone and is reported as that item.
    event["Records"][0]["body"] = "{\"not\": \"a slice\"}".into();
    let (response, _, _) = emulator
        .invoke(env!("CARGO_BIN_EXE_worker"), &env, &event)
        .await;
    assert_eq!(
        response["batchItemFailures"][0]["itemIdentifier"],
        message.message_id().unwrap()
    );
}
