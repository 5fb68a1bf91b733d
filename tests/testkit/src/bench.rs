//! What the benchmark programs share: their flags and how they print a distribution of delays.

/// The number after flag `name` on the command line, else `default`.
pub fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The value at fraction `p` of `sorted` (nearest rank).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `min …, median …, p90 …, p99 …, max …` of `secs` (sorted here), or `None` when there are none.
pub fn distribution(secs: &mut [f64]) -> Option<String> {
    if secs.is_empty() {
        return None;
    }
    secs.sort_by(|a, b| a.total_cmp(b));
    Some(format!(
        "min {:.2} s, median {:.2} s, p90 {:.2} s, p99 {:.2} s, max {:.2} s",
        secs[0],
        percentile(secs, 0.5),
        percentile(secs, 0.9),
        percentile(secs, 0.99),
        percentile(secs, 1.0)
    ))
}

/// Updates `merchant`'s live customers one after another, one every `every_ms`, for `minutes`: each
/// change is the only one of its customer in flight (the list is long enough), so the first batch
/// holding a customer after its change is the one that applied it. Returns `(customer, when)`.
pub async fn change_customers_in_turn(
    sim: &stripe_sim::RunningSim,
    merchant: &str,
    minutes: u64,
    every_ms: u64,
) -> Vec<(String, std::time::Instant)> {
    use std::time::{Duration, Instant};
    let customers = sim
        .sim()
        .ids(merchant, true, "customers")
        .expect("the merchant's customers");
    assert!(!customers.is_empty(), "no customers to change");
    let mut changes = Vec::new();
    let end = Instant::now() + Duration::from_secs(minutes * 60);
    for id in customers.iter().cycle() {
        if Instant::now() >= end {
            break;
        }
        let at = Instant::now();
        if sim
            .sim()
            .update(merchant, true, "customers", 0, std::slice::from_ref(id))
            .is_ok()
        {
            changes.push((id.clone(), at));
        }
        tokio::time::sleep(Duration::from_millis(every_ms)).await;
    }
    changes
}

/// The delay of each change: from it to the first applied batch after it that holds its customer
/// (`applied`: when each batch was in the tables, and the objects it held). Returns the delays and
/// how many changes no batch applied.
pub fn delays(
    changes: &[(String, std::time::Instant)],
    applied: &[(std::time::Instant, Vec<String>)],
) -> (Vec<f64>, usize) {
    let mut secs = Vec::new();
    let mut missing = 0;
    for (id, at) in changes {
        match applied
            .iter()
            .find(|(when, ids)| when > at && ids.contains(id))
        {
            Some((when, _)) => secs.push(when.duration_since(*at).as_secs_f64()),
            None => missing += 1,
        }
    }
    (secs, missing)
}

/// Checks that a warehouse holds each changed customer as Stripe has it now (its `sim_revision`
/// metadata): `rows` are `(customer_id, value)` of `customers_metadata` where the key is
/// `sim_revision`.
pub fn assert_customers_current(
    sim: &stripe_sim::RunningSim,
    merchant: &str,
    changes: &[(String, std::time::Instant)],
    rows: Vec<Vec<Option<String>>>,
) {
    use std::collections::HashMap;
    let truth: HashMap<String, String> = sim
        .sim()
        .truth(merchant, true, "customers")
        .expect("truth")
        .iter()
        .filter_map(|t| {
            Some((
                t["id"].as_str()?.to_string(),
                t["object"]["metadata"]["sim_revision"]
                    .as_str()?
                    .to_string(),
            ))
        })
        .collect();
    let loaded: HashMap<String, String> = rows
        .into_iter()
        .filter_map(|r| Some((r.first()?.clone()?, r.get(1)?.clone()?)))
        .collect();
    for (id, _) in changes {
        assert_eq!(
            loaded.get(id),
            truth.get(id),
            "{id}: the warehouse differs from Stripe"
        );
    }
}

/// The query [`assert_customers_current`] reads.
pub const REVISIONS_SQL: &str =
    "SELECT customer_id, value FROM stripe.customers_metadata WHERE key = 'sim_revision'";
