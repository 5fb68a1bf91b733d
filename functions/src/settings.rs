//! The functions' settings, from environment variables (the SAM template sets every one from its
//! parameters; the README's table documents them). The engine's settings are the CLI's
//! configuration model ([`Config`]), read from the same variables the CLI reads
//! ([`Config::apply_env`]) and checked by the same code; the rest is the deployment's own (its
//! tables, queue, topic, alerts and export schedule).

use crate::accounts::AccountRecord;
use crate::Error;
use stripe_pipeline::config::{
    env_var, Config, Destination, Incremental, SnowflakeConfig, Spelling,
};
use stripe_pipeline::warehouse::redshift::RedshiftSettings;
/// A variable the SAM template sets: its value, or empty with a problem noted when it is missing.
pub(crate) fn required(
    env: impl Fn(&str) -> Option<String>,
    name: &str,
    problems: &mut Vec<String>,
) -> String {
    env(name).filter(|v| !v.is_empty()).unwrap_or_else(|| {
        problems.push(format!(
            "{name} is not set (the SAM template sets it; set it when running the function elsewhere)"
        ));
        String::new()
    })
}

#[cfg(test)]
use stripe_pipeline::warehouse::redshift::RedshiftTarget;

/// The variable naming the Secrets Manager secret of the Snowflake user's private key.
pub const SNOWFLAKE_KEY_SECRET_ARN: &str = "STRIPE_PIPELINE_SNOWFLAKE_PRIVATE_KEY_SECRET_ARN";

#[derive(Debug, Clone)]
pub struct Settings {
    /// The engine's settings, as the CLI's file would give them: `STRIPE_PIPELINE_API_BASE`,
    /// `_RATE_BUDGET` (default 0.5), `_CONCURRENCY` (segments listed at once by one worker; default 4
    /// here), `_LAG_SECS`, `_OVERLAP_SECS`, `_SNAPSHOT_INTERVAL_SECS`, `_UNANNOUNCED_INTERVAL_SECS`, `_LAKE_URL` (required here:
    /// `s3://bucket/prefix`), `_EXPORT_URL`, `_EXPORT_KEEP`, `_REDSHIFT_<FIELD>` and `_SNOWFLAKE_<FIELD>`.
    pub pipeline: Config,
    /// `STRIPE_PIPELINE_ACCOUNTS_TABLE`: the DynamoDB table of accounts (`name`, `secret_arn`,
    /// `enabled`, `datasets`).
    pub accounts_table: String,
    /// `STRIPE_PIPELINE_STATE_TABLE`: the DynamoDB table of cursors, leases and slice marks.
    pub state_table: String,
    /// `STRIPE_PIPELINE_QUEUE_URL`: the SQS queue of slices.
    pub queue_url: String,
    /// `STRIPE_PIPELINE_PUSH_QUEUE_URL`: the SQS queue of pushed events (from the EventBridge rule
    /// and the webhook function); none: the slices' queue.
    pub push_queue_url: Option<String>,
    /// `STRIPE_PIPELINE_TOPIC_ARN`: the SNS topic for notifications (none: notifications are logged).
    pub topic_arn: Option<String>,
    /// `STRIPE_PIPELINE_SEED_ACCOUNTS`: accounts (a JSON list of `{"name", "secret_arn"}`) the
    /// scheduler adds to the accounts table if they are not in it.
    pub seed_accounts: Vec<AccountRecord>,
    /// `STRIPE_PIPELINE_FAILURE_ALERT_AFTER`: consecutive failures of a slice before a notification
    /// (default 3; a failure retrying cannot fix is announced at once).
    pub failure_alert_after: u32,
    /// `STRIPE_PIPELINE_RATE_SLOT_WAIT_SECS`: how long a slice waits when its account's rate slots are
    /// all held by other workers (default 30; the wait is this plus up to as much again, at random).
    pub rate_slot_wait_secs: u64,
    /// `STRIPE_PIPELINE_METRICS_NAMESPACE`: the CloudWatch namespace of the scheduler's metrics
    /// (default `StripePipeline`; the template names it after the stack, so stacks do not mix).
    pub metrics_namespace: String,
    /// The Redshift warehouse the worker loads each slice into, checked from `pipeline.redshift`
    /// (naming a workgroup or a cluster turns it on); none: the Parquet lake is the output.
    pub redshift: Option<RedshiftSettings>,
    /// The Snowflake warehouse the worker loads each slice into (naming an account turns it on), and
    /// the Secrets Manager secret holding its user's private key
    /// (`STRIPE_PIPELINE_SNOWFLAKE_PRIVATE_KEY_SECRET_ARN`).
    pub snowflake: Option<(SnowflakeConfig, String)>,
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

impl Settings {
    /// Reads and checks every setting; lists every problem at once.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Settings, Error> {
        let mut problems = Vec::new();
        let mut pipeline = Config {
            // A worker is one of many at once; the CLI's default is 8.
            concurrency: 4,
            ..Config::default()
        };
        if let Err(e) = pipeline.apply_env(&env) {
            problems.extend(e.problems);
        }
        // The functions load the warehouse that is named (Redshift or Snowflake), if any.
        pipeline.destination = match (pipeline.redshift.is_set(), pipeline.snowflake.is_set()) {
            (true, true) => {
                problems.push(format!(
                    "name one warehouse: {} or {}, not both",
                    env_var("redshift.workgroup"),
                    env_var("snowflake.account")
                ));
                Destination::None
            }
            (true, false) => Destination::Redshift,
            (false, true) => Destination::Snowflake,
            (false, false) => Destination::None,
        };
        // The functions take the key from Secrets Manager alone: the CLI's other sources would be ignored.
        for (field, set) in [
            (
                "snowflake.private_key_file",
                pipeline.snowflake.private_key_file.is_some(),
            ),
            (
                "snowflake.private_key_env",
                pipeline.snowflake.private_key_env.is_some(),
            ),
            (
                "snowflake.password_env",
                pipeline.snowflake.password_env.is_some(),
            ),
        ] {
            if set {
                problems.push(format!(
                    "{} is not read by the functions: their Snowflake key comes from the secret {SNOWFLAKE_KEY_SECRET_ARN} names",
                    env_var(field)
                ));
            }
        }
        let key_arn = SNOWFLAKE_KEY_SECRET_ARN;
        let snowflake_key = env(key_arn).filter(|v| !v.trim().is_empty());
        if pipeline.destination == Destination::Snowflake && snowflake_key.is_none() {
            problems.push(format!(
                "{key_arn} is not set: the Snowflake user's private key is read from Secrets Manager (the SAM template's SnowflakePrivateKeySecretArn)"
            ));
        }
        let mut required = |name: &str| required(&env, name, &mut problems);
        let accounts_table = required("STRIPE_PIPELINE_ACCOUNTS_TABLE");
        let state_table = required("STRIPE_PIPELINE_STATE_TABLE");
        let queue_url = required("STRIPE_PIPELINE_QUEUE_URL");
        let lake = env_var("lake_url");
        match pipeline.lake_url.as_deref() {
            None => problems.push(format!(
                "{lake} is not set (the SAM template sets it; set it when running the function elsewhere)"
            )),
            Some(url) if !url.contains("://") => problems.push(format!(
                "{lake} must be a URL like s3://bucket/lake, got '{url}'"
            )),
            Some(_) => {}
        }
        problems.extend(pipeline.problems(Spelling::Env, &env));
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
        let rate_slot_wait_secs = number("STRIPE_PIPELINE_RATE_SLOT_WAIT_SECS", 30.0, 1.0, 450.0);
        let export_every_minutes =
            number("STRIPE_PIPELINE_EXPORT_EVERY_MINUTES", 0.0, 0.0, 525_600.0) as i64;
        let seed_accounts = match env("STRIPE_PIPELINE_SEED_ACCOUNTS").filter(|v| !v.trim().is_empty()) {
            None => Vec::new(),
            Some(v) => serde_json::from_str(&v).unwrap_or_else(|e| {
                problems.push(format!(
                    "STRIPE_PIPELINE_SEED_ACCOUNTS must be a JSON list like [{{\"name\": \"acme-live\", \"secret_arn\": \"arn:aws:secretsmanager:…\"}}] ({e})"
                ));
                Vec::new()
            }),
        };
        let export_url = pipeline.export_url.clone().unwrap_or_default();
        if export_every_minutes > 0 && !export_url.contains("://") {
            problems.push(format!(
                "STRIPE_PIPELINE_EXPORT_EVERY_MINUTES is {export_every_minutes}: set {} to a URL like s3://bucket/export",
                env_var("export_url")
            ));
        }
        if !problems.is_empty() {
            return Err(Error::Settings(problems));
        }
        let redshift = match pipeline.destination {
            Destination::Redshift => Some(
                pipeline
                    .redshift_settings(Spelling::Env)
                    .map_err(|p| Error::Settings(vec![p]))?,
            ),
            _ => None,
        };
        let snowflake = match pipeline.destination {
            Destination::Snowflake => snowflake_key.map(|arn| (pipeline.snowflake.clone(), arn)),
            _ => None,
        };
        Ok(Settings {
            accounts_table,
            state_table,
            queue_url,
            push_queue_url: env("STRIPE_PIPELINE_PUSH_QUEUE_URL").filter(|v| !v.is_empty()),
            topic_arn: env("STRIPE_PIPELINE_TOPIC_ARN").filter(|v| !v.is_empty()),
            seed_accounts,
            failure_alert_after: failure_alert_after as u32,
            rate_slot_wait_secs: rate_slot_wait_secs as u64,
            metrics_namespace: env("STRIPE_PIPELINE_METRICS_NAMESPACE")
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| "StripePipeline".into()),
            redshift,
            snowflake,
            export: (export_every_minutes > 0).then(|| ExportSettings {
                url: export_url,
                every_secs: export_every_minutes * 60,
                keep: pipeline.export_keep,
            }),
            pipeline,
        })
    }

    /// Where Parquet files go (checked to be set by [`Settings::from_env`]).
    pub fn lake_url(&self) -> &str {
        self.pipeline.lake_url.as_deref().unwrap_or_default()
    }

    /// The incremental-sync settings the engine and the scheduler's plans use.
    pub fn incremental(&self) -> Incremental {
        self.pipeline.incremental()
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
        assert_eq!(s.incremental(), Incremental::default());
        assert_eq!(s.failure_alert_after, 3);
        assert_eq!(s.rate_slot_wait_secs, 30);
        assert_eq!(s.pipeline.api_base, "https://api.stripe.com");
        assert_eq!(s.pipeline.concurrency, 4);
        assert_eq!(s.lake_url(), "s3://b/lake");
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
    fn snowflake_is_on_when_an_account_is_named_and_its_key_is_a_secret() {
        let base = [
            ("STRIPE_PIPELINE_ACCOUNTS_TABLE", "a"),
            ("STRIPE_PIPELINE_STATE_TABLE", "s"),
            ("STRIPE_PIPELINE_QUEUE_URL", "q"),
            ("STRIPE_PIPELINE_LAKE_URL", "s3://b/lake"),
            ("STRIPE_PIPELINE_SNOWFLAKE_ACCOUNT", "myorg-analytics"),
            ("STRIPE_PIPELINE_SNOWFLAKE_USER", "LOADER"),
            ("STRIPE_PIPELINE_SNOWFLAKE_DATABASE", "ANALYTICS"),
        ];
        let Err(Error::Settings(problems)) = Settings::from_env(env(&base)) else {
            panic!("accepted without a key or an integration");
        };
        let problems = problems.join(" ");
        assert!(problems.contains(SNOWFLAKE_KEY_SECRET_ARN), "{problems}");
        assert!(
            problems.contains("set STRIPE_PIPELINE_SNOWFLAKE_STORAGE_INTEGRATION"),
            "{problems}"
        );
        let mut on = base.to_vec();
        on.push((
            SNOWFLAKE_KEY_SECRET_ARN,
            "arn:aws:secretsmanager:us-east-1:1:secret:sf",
        ));
        on.push((
            "STRIPE_PIPELINE_SNOWFLAKE_STORAGE_INTEGRATION",
            "STRIPE_LAKE",
        ));
        let s = Settings::from_env(env(&on)).unwrap();
        assert_eq!(s.pipeline.destination, Destination::Snowflake);
        assert!(s.redshift.is_none());
        let (config, arn) = s.snowflake.unwrap();
        assert_eq!(config.storage_integration.as_deref(), Some("STRIPE_LAKE"));
        assert!(arn.ends_with(":secret:sf"));
        let mut password = on.clone();
        password.push(("STRIPE_PIPELINE_SNOWFLAKE_PASSWORD_ENV", "SF_PASSWORD"));
        let Err(Error::Settings(problems)) = Settings::from_env(env(&password)) else {
            panic!("accepted a credential source the functions do not read");
        };
        assert!(
            problems
                .join(" ")
                .contains("STRIPE_PIPELINE_SNOWFLAKE_PASSWORD_ENV is not read"),
            "{problems:?}"
        );
        let mut both = on.clone();
        both.push(("STRIPE_PIPELINE_REDSHIFT_WORKGROUP", "analytics"));
        both.push((
            "STRIPE_PIPELINE_REDSHIFT_COPY_ROLE_ARN",
            "arn:aws:iam::1:role/copy",
        ));
        let Err(Error::Settings(problems)) = Settings::from_env(env(&both)) else {
            panic!("accepted two warehouses");
        };
        assert!(
            problems.join(" ").contains("name one warehouse"),
            "{problems:?}"
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
