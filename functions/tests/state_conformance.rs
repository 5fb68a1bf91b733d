//! The state stores' contract (`stripe_pipeline_testkit::conformance::state`), run against both: the
//! local directory and DynamoDB (in moto); and what only DynamoDB has (slice marks).

mod common;

use common::{create_table, unique, Moto};
use stripe_pipeline::state::{DatasetState, DynamoState, LocalState, StateStore};
use stripe_pipeline_testkit::conformance::state::state_store;

#[tokio::test]
async fn the_local_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    state_store(&LocalState::open(dir.path()).unwrap().into()).await;
}

#[tokio::test]
async fn the_dynamodb_store_conforms() {
    let moto = Moto::start();
    let sdk = moto.sdk().await;
    let table = unique("state");
    create_table(&sdk, &table, "key").await;
    let store = DynamoState::new(&sdk, &table);
    state_store(&store.clone().into()).await;

    // Slice marks: once per key.
    assert!(store.mark_once("slice#x@1", i64::MAX / 2).await.unwrap());
    assert!(!store.mark_once("slice#x@1", i64::MAX / 2).await.unwrap());
    store.forget("slice#x@1").await.unwrap();
    assert!(store.mark_once("slice#x@1", i64::MAX / 2).await.unwrap());

    // A missing table is an error naming the table, not a panic or a silent default.
    let missing = StateStore::from(DynamoState::new(&sdk, "no-such-table"));
    let e = missing
        .get::<DatasetState>("k")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("no-such-table"), "{e}");
}
