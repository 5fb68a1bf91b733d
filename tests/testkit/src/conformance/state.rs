//! The state stores' contract, which every [`StateStore`] adapter must pass (the local directory and
//! DynamoDB in moto, run by `functions/tests/state_conformance.rs`): stale commits are rejected,
//! re-commits are versioned, many states read at once equal each read alone, leases are exclusive
//! until released or expired, and a lease holder may take its own lease again.

use stripe_pipeline::state::{DatasetState, StateError, StateStore};

/// Runs the whole contract against `s`, which must be empty.
pub async fn state_store(s: &StateStore) {
    // Absent state: version 0, default value.
    let v = s.get::<DatasetState>("acct/live/charges").await.unwrap();
    assert_eq!((v.version, v.value.rows), (0, 0));

    // Versioned commits; a stale commit is refused and changes nothing.
    let mut st = DatasetState {
        rows: 5,
        ..DatasetState::default()
    };
    assert_eq!(s.put("acct/live/charges", 0, &st).await.unwrap(), 1);
    st.rows = 7;
    assert_eq!(s.put("acct/live/charges", 1, &st).await.unwrap(), 2);
    match s.put("acct/live/charges", 1, &st).await {
        Err(StateError::Conflict {
            expected, found, ..
        }) => assert_eq!((expected, found), (1, 2)),
        other => panic!("stale commit accepted: {other:?}"),
    }
    // A second "first" write (version 0) of an existing key is stale too.
    assert!(matches!(
        s.put("acct/live/charges", 0, &st).await,
        Err(StateError::Conflict { .. })
    ));
    let v = s.get::<DatasetState>("acct/live/charges").await.unwrap();
    assert_eq!((v.version, v.value.rows), (2, 7));

    // Idempotent re-commit: committing the same value again is a new version, same content.
    assert_eq!(s.put("acct/live/charges", 2, &v.value).await.unwrap(), 3);
    assert_eq!(
        s.get::<DatasetState>("acct/live/charges")
            .await
            .unwrap()
            .value,
        v.value
    );

    // Many read at once, in the order asked (more than DynamoDB's 100 keys a call, a key twice, keys
    // with nothing yet): the same as one by one.
    let mut keys: Vec<String> = (0..150).map(|n| format!("acct/live/d{n:03}")).collect();
    for (n, key) in keys.iter().enumerate().filter(|(n, _)| n % 3 == 0) {
        let st = DatasetState {
            rows: n as u64,
            ..DatasetState::default()
        };
        s.put(key, 0, &st).await.unwrap();
    }
    keys.reverse();
    keys.push("acct/live/charges".into());
    keys.push("acct/live/d000".into());
    let many = s.get_many::<DatasetState>(&keys).await.unwrap();
    assert_eq!(many.len(), keys.len());
    for (key, got) in keys.iter().zip(&many) {
        let one = s.get::<DatasetState>(key).await.unwrap();
        assert_eq!(got, &one, "{key}");
    }
    assert_eq!(many.iter().filter(|v| v.version > 0).count(), 50 + 2);

    // Leases: exclusive; the holder may renew; released leases are free; expired ones are taken.
    let a = s.acquire("acct/live", "run-a", 60).await.unwrap();
    match s.acquire("acct/live", "run-b", 60).await {
        Err(StateError::Leased { owner, .. }) => assert_eq!(owner, "run-a"),
        other => panic!("lease not exclusive: {other:?}"),
    }
    assert!(s.acquire("acct/live", "run-a", 60).await.is_ok());
    s.release(&a).await;
    let b = s.acquire("acct/live", "run-b", -1).await.unwrap();
    // b's lease has expired already: a takes it over, and b's release leaves a's lease alone.
    let a2 = s.acquire("acct/live", "run-a", 60).await.unwrap();
    s.release(&b).await;
    assert!(matches!(
        s.acquire("acct/live", "run-c", 60).await,
        Err(StateError::Leased { .. })
    ));
    s.release(&a2).await;
    assert!(s.acquire("acct/live", "run-c", 60).await.is_ok());
}
