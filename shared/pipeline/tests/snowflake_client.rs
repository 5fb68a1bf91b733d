//! The Snowflake client against the emulator the tests start (fakesnow): logging in both ways,
//! statements and their errors, sessions that span requests, and results read as text from both of
//! Snowflake's formats.

use stripe_pipeline::config::Secret;
use stripe_pipeline::warehouse::snowflake::{
    Credential, KeyPairAuth, Login, ResultFormat, Session,
};
use stripe_pipeline_testkit::snowflake::Fakesnow;

/// A key for the emulator, which does not check it: the same throwaway test key as the unit tests.
const TEST_KEY: &str = include_str!("../src/warehouse/snowflake/testdata/rsa_key.p8");

fn login(base_url: &str, credential: Credential) -> Login {
    Login {
        base_url: base_url.to_string(),
        account: "xy12345.us-east-2.aws".into(),
        user: "loader".into(),
        role: Some("loader_role".into()),
        warehouse: Some("loading".into()),
        database: "analytics".into(),
        credential,
    }
}

async fn session(fakesnow: &Fakesnow) -> Session {
    let key = KeyPairAuth::from_pem(TEST_KEY).unwrap();
    Session::open(login(
        &fakesnow.base_url,
        Credential::KeyPair(Box::new(key)),
    ))
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_run_and_results_read_as_text_in_both_formats() {
    let fakesnow = Fakesnow::start();
    let mut s = session(&fakesnow).await;
    for sql in [
        "CREATE DATABASE IF NOT EXISTS analytics",
        "CREATE SCHEMA IF NOT EXISTS analytics.stripe",
        "CREATE TABLE analytics.stripe.charges (id VARCHAR, amount NUMBER(38,0), fee NUMBER(10,2), paid BOOLEAN, day DATE, created TIMESTAMP_NTZ, metadata VARIANT)",
    ] {
        s.query(sql).await.unwrap();
    }
    // DML answers in JSON (the affected rows).
    let inserted = s
        .query(
            "INSERT INTO analytics.stripe.charges SELECT 'ch_1', 1250, 36.55, TRUE, '2023-12-09', '2023-11-14 22:13:20.25', PARSE_JSON('{\"a\":1}') \
             UNION ALL SELECT 'ch_2', NULL, -0.5, FALSE, NULL, '1970-01-01 00:00:00', NULL",
        )
        .await
        .unwrap();
    assert_eq!(inserted.rows, vec![vec![Some("2".to_string())]]);
    assert_eq!(inserted.format, ResultFormat::Json);
    assert!(!inserted.query_id.is_empty());

    // A query answers in Arrow.
    let selected = s
        .query("SELECT id, amount, fee, paid, day, created, metadata FROM analytics.stripe.charges ORDER BY id")
        .await
        .unwrap();
    assert_eq!(
        selected.columns,
        ["ID", "AMOUNT", "FEE", "PAID", "DAY", "CREATED", "METADATA"]
    );
    assert_eq!(selected.format, ResultFormat::Arrow);
    let text = |v: &str| Some(v.to_string());
    assert_eq!(selected.rows.len(), 2);
    assert_eq!(
        selected.rows[0][..6],
        [
            text("ch_1"),
            text("1250"),
            text("36.55"),
            text("true"),
            text("2023-12-09"),
            text("2023-11-14 22:13:20.25"),
        ]
    );
    let metadata: serde_json::Value =
        serde_json::from_str(selected.rows[0][6].as_deref().unwrap()).unwrap();
    assert_eq!(metadata, serde_json::json!({"a": 1}));
    assert_eq!(
        selected.rows[1],
        [
            text("ch_2"),
            None,
            text("-0.50"),
            text("false"),
            None,
            text("1970-01-01 00:00:00"),
            None,
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_spans_requests_and_errors_carry_snowflakes_code() {
    let fakesnow = Fakesnow::start();
    let mut s = session(&fakesnow).await;
    s.query("CREATE DATABASE IF NOT EXISTS analytics")
        .await
        .unwrap();
    s.query("CREATE SCHEMA IF NOT EXISTS analytics.stripe")
        .await
        .unwrap();
    s.query("CREATE TABLE analytics.stripe.t (id VARCHAR)")
        .await
        .unwrap();
    // A transaction begun in one request is rolled back by another; the session knows one is open.
    assert!(!s.in_transaction());
    s.query("BEGIN").await.unwrap();
    s.query("INSERT INTO analytics.stripe.t VALUES ('a')")
        .await
        .unwrap();
    assert!(s.in_transaction());
    s.query("ROLLBACK").await.unwrap();
    assert!(!s.in_transaction());
    let count = s
        .query("SELECT COUNT(*) FROM analytics.stripe.t")
        .await
        .unwrap();
    assert_eq!(count.rows, vec![vec![Some("0".to_string())]]);

    let e = s
        .query("SELECT nothing FROM analytics.stripe.no_such_table")
        .await
        .unwrap_err();
    assert!(!e.retryable, "{e:?}");
    assert_eq!(e.code, "002003", "{e:?}");
    let shown = e.to_string();
    assert!(
        shown.contains("NO_SUCH_TABLE") && shown.contains("002003"),
        "{shown}"
    );
    // The session still works after a failed statement.
    s.query("SELECT 1").await.unwrap();

    // A password login works the same way, and nothing of the credentials shows in errors.
    let mut p = Session::open(login(
        &fakesnow.base_url,
        Credential::Password(Secret::new("hunter2-secret")),
    ))
    .await
    .unwrap();
    let e = p.query("SELEC 1").await.unwrap_err();
    assert!(!format!("{e} {e:?}").contains("hunter2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_that_fails_names_the_account_and_user() {
    // Nothing listens: the login fails after its retries, naming what it tried.
    let unreachable = login(
        "http://127.0.0.1:9",
        Credential::Password(Secret::new("hunter2-secret")),
    );
    let e = match Session::open(unreachable).await {
        Ok(_) => panic!("a login to a closed port succeeded"),
        Err(e) => e,
    };
    let shown = e.to_string();
    assert!(e.retryable, "{e:?}");
    assert!(
        shown.contains("loader") && shown.contains("xy12345"),
        "{shown}"
    );
    assert!(!shown.contains("hunter2"), "{shown}");
}

/// A stand-in for Snowflake and its result storage, for what the emulator never does: split a large
/// result into chunks. Login and query answers as Snowflake shapes them; chunk URLs that demand the
/// result key (`qrmk`) as an encryption header, a JSON chunk gzipped as Snowflake stores it, and an
/// Arrow chunk.
async fn chunked_service() -> String {
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;
    use base64::Engine as _;
    use std::io::Write as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn arrow_stream(ids: &[i64], names: &[&str]) -> Vec<u8> {
        let schema = std::sync::Arc::new(Schema::new(vec![
            Field::new("N", DataType::Int64, true),
            Field::new("S", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                std::sync::Arc::new(Int64Array::from(ids.to_vec())),
                std::sync::Arc::new(StringArray::from(names.to_vec())),
            ],
        )
        .unwrap();
        let mut out = Vec::new();
        let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut out, &schema).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
        drop(w);
        out
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let chunk_base = base.clone();
    tokio::spawn(async move {
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            let chunk_base = chunk_base.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // The head, then as much body as it announces.
                let (head, body_len) = loop {
                    let n = conn.read(&mut buf).await.unwrap();
                    request.extend_from_slice(&buf[..n]);
                    if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&request[..end]).to_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                        break (head, end + 4 + len);
                    }
                };
                while request.len() < body_len {
                    let n = conn.read(&mut buf).await.unwrap();
                    request.extend_from_slice(&buf[..n]);
                }
                let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                let keyed =
                    head.contains("x-amz-server-side-encryption-customer-key: the-result-key");
                let rowtype = serde_json::json!([
                    {"name": "N", "type": "fixed", "scale": 0},
                    {"name": "S", "type": "text"}
                ]);
                let chunks = |kind: &str| {
                    serde_json::json!([
                        {"url": format!("{chunk_base}/chunks/{kind}-1"), "rowCount": 2},
                        {"url": format!("{chunk_base}/chunks/{kind}-2"), "rowCount": 1}
                    ])
                };
                let (status, body): (u16, Vec<u8>) = if path
                    .starts_with("/session/v1/login-request")
                {
                    (
                        200,
                        serde_json::json!({"success": true, "data": {"token": "session-token"}})
                            .to_string()
                            .into_bytes(),
                    )
                } else if path.starts_with("/queries/v1/query-request") {
                    let arrow = String::from_utf8_lossy(&request).contains("arrow");
                    let data = if arrow {
                        serde_json::json!({"queryId": "q-arrow", "rowtype": rowtype, "queryResultFormat": "arrow",
                            "rowsetBase64": base64::engine::general_purpose::STANDARD.encode(arrow_stream(&[1], &["a"])),
                            "chunks": chunks("arrow"), "qrmk": "the-result-key"})
                    } else {
                        serde_json::json!({"queryId": "q-json", "rowtype": rowtype, "queryResultFormat": "json",
                            "rowset": [["1", "a"]], "chunks": chunks("json"), "qrmk": "the-result-key"})
                    };
                    (
                        200,
                        serde_json::json!({"success": true, "data": data})
                            .to_string()
                            .into_bytes(),
                    )
                } else if !keyed {
                    (403, b"<Error>the customer key is missing</Error>".to_vec())
                } else if path == "/chunks/json-1" {
                    let mut gz =
                        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    gz.write_all(br#"["2","b"],["3",null]"#).unwrap();
                    (200, gz.finish().unwrap())
                } else if path == "/chunks/json-2" {
                    (200, br#"["4","d"]"#.to_vec())
                } else if path == "/chunks/arrow-1" {
                    (200, arrow_stream(&[2, 3], &["b", "c"]))
                } else if path == "/chunks/arrow-2" {
                    (200, arrow_stream(&[4], &["d"]))
                } else {
                    (404, Vec::new())
                };
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                conn.write_all(head.as_bytes()).await.unwrap();
                conn.write_all(&body).await.unwrap();
                conn.shutdown().await.ok();
            });
        }
    });
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_result_is_read_from_its_chunks_in_both_formats() {
    let base = chunked_service().await;
    let mut s = Session::open(login(&base, Credential::Password(Secret::new("pw"))))
        .await
        .unwrap();
    let text = |v: &str| Some(v.to_string());
    let json = s.query("SELECT n, s FROM big").await.unwrap();
    assert_eq!(json.format, ResultFormat::Json);
    assert_eq!(
        json.rows,
        [
            [text("1"), text("a")],
            [text("2"), text("b")],
            [text("3"), None],
            [text("4"), text("d")],
        ]
    );
    let arrow = s.query("SELECT n, s FROM big -- arrow").await.unwrap();
    assert_eq!(arrow.format, ResultFormat::Arrow);
    assert_eq!(arrow.query_id, "q-arrow");
    let numbers: Vec<_> = arrow.rows.iter().map(|r| r[0].clone()).collect();
    assert_eq!(numbers, [text("1"), text("2"), text("3"), text("4")]);
}
