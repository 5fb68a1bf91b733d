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
    // A transaction begun in one request is rolled back by another.
    s.query("BEGIN").await.unwrap();
    s.query("INSERT INTO analytics.stripe.t VALUES ('a')")
        .await
        .unwrap();
    s.query("ROLLBACK").await.unwrap();
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
