//! The AWS emulator for tests: a moto server from the test venv on a free loopback port, and the SDK
//! and object_store settings that reach it. Each test starts its own and it stops when dropped. Also
//! what every emulator shares: the test venv, and starting a child server on a free port.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A moto server, killed when dropped.
pub struct Moto {
    _server: ChildServer,
    pub endpoint: String,
}

/// A server the tests started as a child process, listening on `port` of 127.0.0.1; killed when
/// dropped.
pub struct ChildServer {
    child: Child,
    pub port: u16,
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A program installed in the test venv (`STRIPE_PIPELINE_VENV`, default the one `tests/run` creates).
pub fn venv_bin(name: &str, package: &str) -> PathBuf {
    let venv = std::env::var("STRIPE_PIPELINE_VENV")
        .unwrap_or_else(|_| "/var/tmp/stripe-pipeline-venv".into());
    let bin = Path::new(&venv).join("bin").join(name);
    assert!(
        bin.exists(),
        "{} not found: run tests/run, which installs {package} into the test venv",
        bin.display()
    );
    bin
}

/// A script of the workspace's `tests/emulators`, beside this crate.
pub fn emulator_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join("tests/emulators").join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("tests/emulators/{name} in the workspace"))
}

/// Starts `what`, the command `command` builds for a port, on a free loopback port, and waits until
/// it listens (at most a minute). The port is free when it is chosen, but another process may take
/// it before the child binds it (a listener of another test, or the source port of a connection):
/// a child that exits before it listens is started again on another port, up to five times.
pub fn start_server(what: &str, mut command: impl FnMut(u16) -> Command) -> ChildServer {
    const ATTEMPTS: usize = 5;
    for attempt in 1..=ATTEMPTS {
        let port = free_port();
        let child = command(port)
            .spawn()
            .unwrap_or_else(|e| panic!("{what} does not start: {e}"));
        let mut server = ChildServer { child, port };
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                eprintln!(
                    "{what} exited ({status}) before it listened on port {port} (attempt {attempt} of {ATTEMPTS})"
                );
                break;
            }
            if crate::postgres::listens(port) {
                return server;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{what} did not listen on port {port} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    panic!("{what} exited before it listened, {ATTEMPTS} times: run it by hand to see why");
}

/// AWS settings that send every call to an emulator at `endpoint` (any credentials, `us-east-1`).
pub async fn sdk_at(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing", "testing", None, None, "emulator",
        ))
        .load()
        .await
}

/// A table with one string partition key, like the template's tables.
pub async fn create_table(sdk: &SdkConfig, name: &str, key: &str) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    aws_sdk_dynamodb::Client::new(sdk)
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(key)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(key)
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

/// A port of 127.0.0.1 that nothing listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Moto {
    /// Starts moto's server from the test venv (`STRIPE_PIPELINE_VENV`, default the one `tests/run`
    /// creates) and waits until it answers. It runs through `tests/emulators/moto_server.py`, which
    /// removes a quadratic cost of moto's SQS and answers as moto does (the reason is in that file).
    pub fn start() -> Moto {
        let python = venv_bin("python", "moto[server]");
        let script = emulator_script("moto_server.py");
        let server = start_server("moto_server", |port| {
            let mut moto = Command::new(&python);
            moto.arg(&script)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            moto
        });
        Moto {
            endpoint: format!("http://127.0.0.1:{}", server.port),
            _server: server,
        }
    }

    pub async fn sdk(&self) -> SdkConfig {
        sdk_at(&self.endpoint).await
    }

    /// object_store settings for S3 in moto.
    pub fn lake_options(&self) -> Vec<(String, String)> {
        [
            ("aws_endpoint", self.endpoint.as_str()),
            ("aws_allow_http", "true"),
            ("aws_access_key_id", "testing"),
            ("aws_secret_access_key", "testing"),
            ("aws_region", "us-east-1"),
            ("aws_virtual_hosted_style_request", "false"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

/// Creates a bucket (object_store cannot; the S3 call is one PUT, without pulling in the S3 SDK).
pub async fn create_bucket(moto: &Moto, bucket: &str) {
    // moto accepts unsigned requests: `PUT /<bucket>` creates it.
    let (status, _) = http("PUT", &format!("{}/{bucket}", moto.endpoint), Vec::new()).await;
    assert!(status < 300, "creating bucket {bucket}: HTTP {status}");
}

/// One EventBridge call in moto (`action` such as `CreateEventBus`, JSON in and out; moto checks no
/// signature, so no EventBridge SDK is built for the tests).
pub async fn eventbridge(moto: &Moto, action: &str, body: serde_json::Value) -> serde_json::Value {
    let target = format!("AWSEvents.{action}");
    let headers = [
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", target.as_str()),
        (
            "authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/events/aws4_request, SignedHeaders=host, Signature=0",
        ),
    ];
    let (status, answer) = http_with_headers(
        "POST",
        &moto.endpoint,
        &headers,
        body.to_string().into_bytes(),
    )
    .await;
    let answer = String::from_utf8_lossy(&answer).to_string();
    assert_eq!(status, 200, "EventBridge {action}: {answer}");
    serde_json::from_str(&answer).unwrap_or_default()
}

/// One plain HTTP/1.1 request; returns the status and the body.
pub async fn http(method: &str, url: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    http_with_headers(method, url, &[], body).await
}

/// [`http`] with a JSON body.
pub async fn http_json(method: &str, url: &str, body: &serde_json::Value) -> (u16, Vec<u8>) {
    let headers = [("content-type", "application/json")];
    http_with_headers(method, url, &headers, body.to_string().into_bytes()).await
}

/// An HTTP/1 request with `headers`: the status and the body of the answer.
pub async fn http_with_headers(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, Vec<u8>) {
    use http_body_util::BodyExt;
    let uri: hyper::Uri = url.parse().unwrap();
    let host = uri.authority().unwrap().to_string();
    let stream = tokio::net::TcpStream::connect(&host).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::builder();
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req
        .method(method)
        .uri(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header("host", host)
        .header("content-length", body.len().to_string())
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, body)
}
