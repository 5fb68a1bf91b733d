//! An engine that syncs from the simulator into a local lake without a warehouse: what the lake-level
//! tests share.

use std::sync::Arc;
use stripe_pipeline::config::Config;
use stripe_pipeline::engine::{self, Engine, Resolved};
use stripe_pipeline::lake::Lake;
use stripe_pipeline::state::{LocalState, StateStore};
use stripe_pipeline::stripe::{Limiter, RetryPolicy, StripeClient};

/// The engine for `cfg` (the simulator's URL, its accounts, the output folder) at full API budget,
/// with the state in `cfg`'s state folder, and `cfg`'s accounts resolved against the API.
pub async fn lake_engine(
    cfg: &Config,
    concurrency: usize,
    run_id: &str,
) -> (Arc<Engine>, Vec<Resolved>, StateStore) {
    let accounts = cfg.accounts(|_| None).unwrap();
    let client = StripeClient::new(
        &cfg.api_base,
        Arc::new(Limiter::new(1.0)),
        RetryPolicy::default(),
    );
    let resolved = engine::resolve(&client, &accounts).await.unwrap();
    let state: StateStore = LocalState::open(&cfg.state_dir()).unwrap().into();
    let engine = Arc::new(
        Engine::builder(client, Lake::local(&cfg.lake_dir()).unwrap(), state.clone())
            .concurrency(concurrency)
            .incremental(cfg.incremental())
            .run_id(run_id)
            .build(),
    );
    (engine, resolved, state)
}
