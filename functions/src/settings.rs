//! The functions' settings, from environment variables (the SAM template sets every one from its
//! parameters; the README's table documents them).

use crate::accounts::AccountRecord;
use crate::Error;
use stripe_pipeline::config::Incremental;
use stripe_pipeline::config::RedshiftConfig;
use stripe_pipeline::warehouse::redshift::RedshiftSettings;
#[cfg(test)]
use stripe_pipeline::warehouse::redshift::RedshiftTarget;

#[derive(Debug, Clone)]
pub struct Settings {
    /// `STRIPE_PIPELINE_ACCOUNTS_TABLE`: the DynamoDB table of accounts (`name`, `secret_arn`,
    /// `enabled`, `datasets`).
    pub accounts_table: String,
    /// `STRIPE_PIPELINE_STATE_TABLE`: the DynamoDB table of cursors, leases and slice marks.
    pub state_table: String,
    /// `STRIPE_PIPELINE_QUEUE_URL`: the SQS queue of slices.
    pub queue_url: String,
    /// `STRIPE_PIPELINE_LAKE_URL`: where Parquet files go, `s3://bucket/prefix`.
    pub lake_url: String,
    /// `STRIPE_PIPELINE_TOPIC_ARN`: the SNS topic for notifications (none: notifications are logged).
    pub topic_arn: Option<String>,
    /// `STRIPE_PIPELINE_SEED_ACCOUNTS`: accounts (a JSON list of `{"name", "secret_arn"}`) the
    /// scheduler adds to the accounts table if they are not in it.
    pub seed_accounts: Vec<AccountRecord>,
    /// `STRIPE_PIPELINE_API_BASE`: Stripe's API (default `https://api.stripe.com`).
    pub api_base: String,
    /// `STRIPE_PIPELINE_FAILURE_ALERT_AFTER`: consecutive failures of a slice before a notification
    /// (default 3).
    pub failure_alert_after: u32,
    /// `STRIPE_PIPELINE_LAG_SECS`, `STRIPE_PIPELINE_OVERLAP_SECS`,
    /// `STRIPE_PIPELINE_SNAPSHOT_INTERVAL_SECS`: as in the CLI's configuration.
    pub incremental: Incremental,
    /// `STRIPE_PIPELINE_RATE_BUDGET`: the share of Stripe's rate limit one worker uses (default 0.5).
    pub rate_budget: f64,
    /// `STRIPE_PIPELINE_CONCURRENCY`: segments listed at once by one worker (default 4).
    pub concurrency: usize,
    /// The Redshift warehouse the worker loads each slice into; none: the Parquet lake is the output.
    /// `STRIPE_PIPELINE_REDSHIFT_WORKGROUP` or `STRIPE_PIPELINE_REDSHIFT_CLUSTER` (setting one turns it
    /// on), `STRIPE_PIPELINE_REDSHIFT_DATABASE` (default `dev`), `STRIPE_PIPELINE_REDSHIFT_DB_USER` or
    /// `STRIPE_PIPELINE_REDSHIFT_SECRET_ARN`, and `STRIPE_PIPELINE_REDSHIFT_COPY_ROLE_ARN` (required).
    pub redshift: Option<RedshiftSettings>,
    /// Exports in Stripe's cloud-storage layout, when `STRIPE_PIPELINE_EXPORT_EVERY_MINUTES` > 0.
    pub export: Option<ExportSettings>,
}

/// Where and how often the worker builds exports in Stripe's layout (see `stripe_pipeline::export`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSettings {
    /// `s3://bucket/export`.
    pub url: String,
    /// One export per this many seconds of scheduler ticks.
    pub every_secs: i64,
    /// Complete exports kept per mode (0: all).
    pub keep: usize,
}

/// The Redshift settings from the environment (`STRIPE_PIPELINE_REDSHIFT_<FIELD>`, checked like the
/// CLI's `[redshift]` table): `Ok(None)` when neither a workgroup nor a cluster is set.
fn redshift(env: &impl Fn(&str) -> Option<String>) -> Result<Option<RedshiftSettings>, String> {
    let var = |field: &str| format!("STRIPE_PIPELINE_REDSHIFT_{}", field.to_uppercase());
    let get = |field: &str| env(&var(field)).filter(|v| !v.trim().is_empty());
    let config = RedshiftConfig {
        workgroup: get("workgroup"),
        cluster: get("cluster"),
        database: get("database"),
        db_user: get("db_user"),
        secret_arn: get("secret_arn"),
        copy_role_arn: get("copy_role_arn"),
    };
    if !config.is_set() {
        return Ok(None);
    }
    config.settings(var).map(Some)
}

impl Settings {
    /// Reads and checks every setting; lists every problem at once.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Settings, Error> {
        let mut problems = Vec::new();
        let mut required = |name: &str| {
            env(name).filter(|v| !v.is_empty()).unwrap_or_else(|| {
                problems.push(format!(
                    "{name} is not set (the SAM template sets it; set it when running the function elsewhere)"
                ));
                String::new()
            })
        };
        let accounts_table = required("STRIPE_PIPELINE_ACCOUNTS_TABLE");
        let state_table = required("STRIPE_PIPELINE_STATE_TABLE");
        let queue_url = required("STRIPE_PIPELINE_QUEUE_URL");
        let lake_url = required("STRIPE_PIPELINE_LAKE_URL");
        let defaults = Incremental::default();
        let mut number = |name: &str, default: f64, min: f64, max: f64| -> f64 {
            match env(name).filter(|v| !v.is_empty()) {
                None => default,
                Some(v) => match v.parse::<f64>() {
                    Ok(n) if (min..=max).contains(&n) => n,
                    _ => {
                        problems.push(format!(
                            "{name} must be a number between {min} and {max}, got '{v}'"
                        ));
                        default
                    }
                },
            }
        };
        let failure_alert_after = number("STRIPE_PIPELINE_FAILURE_ALERT_AFTER", 3.0, 1.0, 1000.0);
        let incremental = Incremental {
            lag_secs: number(
                "STRIPE_PIPELINE_LAG_SECS",
                defaults.lag_secs as f64,
                0.0,
                3600.0,
            ) as i64,
            overlap_secs: number(
                "STRIPE_PIPELINE_OVERLAP_SECS",
                defaults.overlap_secs as f64,
                0.0,
                86_400.0,
            ) as i64,
            snapshot_interval_secs: number(
                "STRIPE_PIPELINE_SNAPSHOT_INTERVAL_SECS",
                defaults.snapshot_interval_secs as f64,
                0.0,
                1e9,
            ) as i64,
        };
        let rate_budget = number("STRIPE_PIPELINE_RATE_BUDGET", 0.5, 0.01, 1.0);
        let export_every_minutes =
            number("STRIPE_PIPELINE_EXPORT_EVERY_MINUTES", 0.0, 0.0, 525_600.0) as i64;
        let export_keep = number("STRIPE_PIPELINE_EXPORT_KEEP", 7.0, 0.0, 10_000.0) as usize;
        let concurrency = number("STRIPE_PIPELINE_CONCURRENCY", 4.0, 1.0, 64.0) as usize;
        let seed_accounts = match env("STRIPE_PIPELINE_SEED_ACCOUNTS").filter(|v| !v.trim().is_empty()) {
            None => Vec::new(),
            Some(v) => serde_json::from_str(&v).unwrap_or_else(|e| {
                problems.push(format!(
                    "STRIPE_PIPELINE_SEED_ACCOUNTS must be a JSON list like [{{\"name\": \"acme-live\", \"secret_arn\": \"arn:aws:secretsmanager:…\"}}] ({e})"
                ));
                Vec::new()
            }),
        };
        let api_base = env("STRIPE_PIPELINE_API_BASE")
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "https://api.stripe.com".into());
        if !api_base.starts_with("https://") && !api_base.starts_with("http://") {
            problems.push(format!(
                "STRIPE_PIPELINE_API_BASE must be an http(s) URL, got '{api_base}'"
            ));
        }
        if !lake_url.is_empty() && !lake_url.contains("://") {
            problems.push(format!(
                "STRIPE_PIPELINE_LAKE_URL must be a URL like s3://bucket/lake, got '{lake_url}'"
            ));
        }
        let redshift = redshift(&env).unwrap_or_else(|p| {
            problems.push(p);
            None
        });
        if redshift.is_some() && !lake_url.starts_with("s3://") {
            problems.push(format!(
                "Redshift loads from S3: STRIPE_PIPELINE_LAKE_URL must be s3://bucket/prefix, got '{lake_url}'"
            ));
        }
        let export_url = env("STRIPE_PIPELINE_EXPORT_URL").filter(|v| !v.is_empty());
        if export_every_minutes > 0 && !export_url.as_deref().unwrap_or("").contains("://") {
            problems.push(format!(
                "STRIPE_PIPELINE_EXPORT_EVERY_MINUTES is {export_every_minutes}: set STRIPE_PIPELINE_EXPORT_URL to a URL like s3://bucket/export"
            ));
        }
        if !problems.is_empty() {
            return Err(Error::Settings(problems));
        }
        Ok(Settings {
            accounts_table,
            state_table,
            queue_url,
            lake_url,
            topic_arn: env("STRIPE_PIPELINE_TOPIC_ARN").filter(|v| !v.is_empty()),
            seed_accounts,
            api_base,
            failure_alert_after: failure_alert_after as u32,
            incremental,
            rate_budget,
            concurrency,
            redshift,
            export: (export_every_minutes > 0).then(|| ExportSettings {
                url: export_url.unwrap_or_default(),
                every_secs: export_every_minutes * 60,
                keep: export_keep,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn every_problem_is_named_at_once() {
        let Err(Error::Settings(problems)) = Settings::from_env(env(&[
            ("STRIPE_PIPELINE_STATE_TABLE", "state"),
            ("STRIPE_PIPELINE_LAG_SECS", "soon"),
            ("STRIPE_PIPELINE_SEED_ACCOUNTS", "{not a list"),
        ])) else {
            panic!("accepted");
        };
        let all = problems.join("\n");
        for name in [
            "STRIPE_PIPELINE_ACCOUNTS_TABLE",
            "STRIPE_PIPELINE_QUEUE_URL",
            "STRIPE_PIPELINE_LAKE_URL",
            "STRIPE_PIPELINE_LAG_SECS",
            "STRIPE_PIPELINE_SEED_ACCOUNTS",
        ] {
            assert!(all.contains(name), "{name} not named in:\n{all}");
        }
        assert!(!all.contains("STRIPE_PIPELINE_STATE_TABLE"));
    }

    #[test]
    fn defaults_and_seeds() {
        let s = Settings::from_env(env(&[
            ("STRIPE_PIPELINE_ACCOUNTS_TABLE", "a"),
            ("STRIPE_PIPELINE_STATE_TABLE", "s"),
            ("STRIPE_PIPELINE_QUEUE_URL", "http://q"),
            ("STRIPE_PIPELINE_LAKE_URL", "s3://b/lake"),
            (
                "STRIPE_PIPELINE_SEED_ACCOUNTS",
                r#"[{"name": "acme", "secret_arn": "arn:aws:secretsmanager:us-east-1:1:secret:stripe-pipeline/acme"}]"#,
            ),
        ]))
        .unwrap();
        assert_eq!(s.incremental, Incremental::default());
        assert_eq!(s.failure_alert_after, 3);
        assert_eq!(s.api_base, "https://api.stripe.com");
        assert_eq!(s.seed_accounts.len(), 1);
        assert!(s.seed_accounts[0].enabled);
        assert!(s.topic_arn.is_none());
    }

    #[test]
    fn exports_are_off_by_default_and_need_a_url() {
        let base = [
            ("STRIPE_PIPELINE_ACCOUNTS_TABLE", "a"),
            ("STRIPE_PIPELINE_STATE_TABLE", "s"),
            ("STRIPE_PIPELINE_QUEUE_URL", "q"),
            ("STRIPE_PIPELINE_LAKE_URL", "s3://b/lake"),
        ];
        assert_eq!(Settings::from_env(env(&base)).unwrap().export, None);
        let mut on = base.to_vec();
        on.push(("STRIPE_PIPELINE_EXPORT_EVERY_MINUTES", "180"));
        let err = Settings::from_env(env(&on)).unwrap_err().to_string();
        assert!(err.contains("STRIPE_PIPELINE_EXPORT_URL"), "{err}");
        on.push(("STRIPE_PIPELINE_EXPORT_URL", "s3://b/export"));
        on.push(("STRIPE_PIPELINE_EXPORT_KEEP", "3"));
        let export = Settings::from_env(env(&on)).unwrap().export.unwrap();
        assert_eq!(
            export,
            ExportSettings {
                url: "s3://b/export".into(),
                every_secs: 10_800,
                keep: 3
            }
        );
    }

    #[test]
    fn redshift_is_on_when_a_workgroup_or_cluster_is_named() {
        let base = [
            ("STRIPE_PIPELINE_ACCOUNTS_TABLE", "a"),
            ("STRIPE_PIPELINE_STATE_TABLE", "s"),
            ("STRIPE_PIPELINE_QUEUE_URL", "q"),
            ("STRIPE_PIPELINE_LAKE_URL", "s3://b/lake"),
        ];
        assert!(Settings::from_env(env(&base)).unwrap().redshift.is_none());
        let mut on = base.to_vec();
        on.push(("STRIPE_PIPELINE_REDSHIFT_WORKGROUP", "analytics"));
        let Err(Error::Settings(problems)) = Settings::from_env(env(&on)) else {
            panic!("accepted without a COPY role");
        };
        assert!(problems
            .join(" ")
            .contains("STRIPE_PIPELINE_REDSHIFT_COPY_ROLE_ARN"));
        on.push((
            "STRIPE_PIPELINE_REDSHIFT_COPY_ROLE_ARN",
            "arn:aws:iam::1:role/copy",
        ));
        let mut two = on.clone();
        two.push(("STRIPE_PIPELINE_REDSHIFT_CLUSTER", "c1"));
        let Err(Error::Settings(problems)) = Settings::from_env(env(&two)) else {
            panic!("accepted a workgroup and a cluster");
        };
        assert!(
            problems.join(" ").contains("set STRIPE_PIPELINE_REDSHIFT_WORKGROUP (Redshift Serverless) or STRIPE_PIPELINE_REDSHIFT_CLUSTER"),
            "{problems:?}"
        );
        let r = Settings::from_env(env(&on)).unwrap().redshift.unwrap();
        assert_eq!(r.target, RedshiftTarget::Workgroup("analytics".into()));
        assert_eq!(r.database, "dev");
        on[3] = ("STRIPE_PIPELINE_LAKE_URL", "gs://b/lake");
        let Err(Error::Settings(problems)) = Settings::from_env(env(&on)) else {
            panic!("accepted a lake Redshift cannot COPY from");
        };
        assert!(problems.join(" ").contains("Redshift loads from S3"));
    }
}
