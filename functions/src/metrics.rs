//! Metrics in CloudWatch's embedded metric format: JSON lines a function prints to its log, which
//! CloudWatch Logs turns into metrics. No SDK and no API call (nor its IAM permission and latency):
//! the line is the metric.

use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The metric of one table's staleness: seconds between Stripe's clock and the instant its data is
/// complete up to, for the stalest account (dimension `Table`).
pub const DATA_AGE: &str = "DataAgeSeconds";
/// How far the stalest table is past the age its schedule allows (no dimension): what the
/// stale-data alarm watches. A snapshot table may be as old as the snapshot interval by design.
pub const OVERDUE: &str = "OverdueSeconds";

/// The lines publishing a tick's data ages in `namespace`: one per table, and how overdue the
/// stalest is. Nothing when no table is loaded in full yet (the alarm treats missing data as not
/// stale; the queue-age alarm watches first loads).
pub fn data_age(
    namespace: &str,
    tick: i64,
    ages: &BTreeMap<String, i64>,
    overdue: i64,
) -> Vec<String> {
    let timestamp = tick.saturating_mul(1000);
    let metric = |dimensions: Value, name: &str| {
        json!({
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": dimensions,
                "Metrics": [{"Name": name, "Unit": "Seconds"}],
            }],
        })
    };
    let mut lines: Vec<String> = ages
        .iter()
        .map(|(table, age)| {
            json!({"_aws": metric(json!([["Table"]]), DATA_AGE), "Table": table, DATA_AGE: age})
                .to_string()
        })
        .collect();
    if !ages.is_empty() {
        lines.push(
            json!({"_aws": metric(json!([[]]), OVERDUE), OVERDUE: overdue.max(0)}).to_string(),
        );
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_table_and_the_oldest_are_metrics_in_the_embedded_format() {
        let ages = BTreeMap::from([("charges".to_string(), 120), ("payouts".to_string(), 7200)]);
        let lines = data_age("StripePipeline/prod", 1_800_000_000, &ages, 3600);
        let parsed: Vec<Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(parsed.len(), 3);
        for p in &parsed {
            let directive = &p["_aws"]["CloudWatchMetrics"][0];
            assert_eq!(directive["Namespace"], "StripePipeline/prod");
            assert_eq!(p["_aws"]["Timestamp"], 1_800_000_000_000i64);
            // Every metric and dimension a directive names is a member of the line.
            let name = directive["Metrics"][0]["Name"].as_str().unwrap();
            assert!(p[name].is_i64(), "{p}");
            for d in directive["Dimensions"][0].as_array().unwrap() {
                assert!(p[d.as_str().unwrap()].is_string(), "{p}");
            }
        }
        assert_eq!(parsed[0]["Table"], "charges");
        assert_eq!(parsed[1][DATA_AGE], 7200);
        assert_eq!(parsed[2][OVERDUE], 3600);
        assert!(data_age("x", 0, &BTreeMap::new(), 0).is_empty());
    }
}
