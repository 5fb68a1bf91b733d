//! The pipeline's configuration, one model for both deployments: the CLI reads a TOML file and the
//! environment over it, the Lambda functions the environment alone (the SAM template's parameters);
//! validated up front, every problem listed at once.
//!
//! Every field's doc comment is its user documentation (the README's configuration table repeats it).
//! Keys are [`Secret`]s: they print as `***` in logs, errors and debug output.

use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// A Stripe API key. Debug and Display never show it.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The key itself, for the Authorization header only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `live` for `sk_live_…`/`rk_live_…`, `test` for `…_test_…`; `None` for anything else.
    pub fn livemode(&self) -> Option<bool> {
        let mut parts = self.0.splitn(3, '_');
        match (parts.next(), parts.next()) {
            (Some("sk" | "rk"), Some("live")) => Some(true),
            (Some("sk" | "rk"), Some("test")) => Some(false),
            _ => None,
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// One Stripe account (in one mode: the key decides live or test).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    /// A name for logs and messages (`acme-live`).
    pub name: String,
    /// The secret or restricted key (`sk_live_…`, `rk_live_…`). A restricted read-only key is recommended.
    #[serde(default)]
    pub key: Option<Secret>,
    /// Name of an environment variable holding the key, instead of `key`.
    #[serde(default)]
    pub key_env: Option<String>,
    /// A Connect platform: also sync its connected accounts (`GET /v1/accounts`, each read with the
    /// platform's key and `Stripe-Account`) into `connected_accounts` and the `connected_account_*`
    /// tables, whose `account` column names the connected account. Default false.
    #[serde(default)]
    pub connect: bool,
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where output goes: the Parquet lake in `<output_dir>/lake`, the DuckDB file
    /// `<output_dir>/stripe_pipeline.duckdb`, the state in `<output_dir>/state`. Default `./data`.
    #[serde(default = "default_output_dir")]
    pub output_dir: PathBuf,
    /// Stripe API base URL. Default `https://api.stripe.com`.
    #[serde(default = "default_api_base")]
    pub api_base: String,
    /// Share of Stripe's rate limits the pipeline may use, in (0, 1]. Default 0.5: the merchant's own
    /// integration shares the same limits.
    #[serde(default = "default_budget")]
    pub rate_budget: f64,
    /// Segments read at once per account (each a stream of pages). Default 8.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Datasets to sync (`charges`, `customers`, …). Empty: all of the catalog.
    #[serde(default)]
    pub datasets: Vec<String>,
    /// How far behind Stripe's clock the change feed reads, in seconds: events of the last `lag_secs`
    /// are left for the next run, because Stripe may still be writing them. Default 60.
    #[serde(default = "default_lag")]
    pub lag_secs: i64,
    /// How far back before its cursor the change feed reads again, in seconds, to catch events that
    /// became visible late (events are deduplicated, so re-reading is harmless). Default 300.
    #[serde(default = "default_overlap")]
    pub overlap_secs: i64,
    /// How often datasets whose changes Stripe does not announce by events (`balance_transactions`,
    /// `payment_intents`, `invoiceitems`, `setup_intents`, `application_fees`: no `*.updated` event)
    /// are listed again in full, in seconds; objects missing from such a list are marked deleted.
    /// 0: on every run. Default 86400 (daily).
    #[serde(default = "default_snapshot_interval")]
    pub snapshot_interval_secs: i64,
    /// How often datasets Stripe sends no events for at all (`file_links`, `shipping_rates`,
    /// `webhook_endpoints`, `terminal_locations`, …; `stripe-pipeline tables` marks them) are listed
    /// again, in seconds: their new objects where the list filters by `created`, in full otherwise.
    /// A run in between asks nothing of them, so an idle run stays one events call. 0: on every run.
    /// Default 3600 (hourly). A platform's connected accounts are listed on every run regardless.
    #[serde(default = "default_unannounced_interval")]
    pub unannounced_interval_secs: i64,
    /// Where the tables are loaded: `duckdb` (the file under `output_dir`; the default), `postgres`
    /// (configured in `[postgres]`), `redshift` (configured in `[redshift]`), `snowflake` (configured
    /// in `[snowflake]`) or `none` (the Parquet lake only).
    #[serde(default)]
    pub destination: Destination,
    /// The PostgreSQL warehouse, when `destination = "postgres"`.
    #[serde(default)]
    pub postgres: PostgresConfig,
    /// The Redshift warehouse, when `destination = "redshift"`.
    #[serde(default)]
    pub redshift: RedshiftConfig,
    /// The Snowflake warehouse, when `destination = "snowflake"`.
    #[serde(default)]
    pub snowflake: SnowflakeConfig,
    /// Where the Parquet lake is: empty for `<output_dir>/lake`, or `s3://bucket/prefix`,
    /// `gs://bucket/prefix`, `az://container/prefix` (credentials from the environment, as each cloud's
    /// tools read them). Redshift loads from S3 only.
    #[serde(default)]
    pub lake_url: Option<String>,
    /// After each sync, export the latest state of every object in Stripe's cloud-storage layout
    /// (`<export_url>/<livemode|testmode>/<YYYYMMDDHHMM>/<table>/*.parquet` and `coreapi_SUCCESS`).
    /// Default false.
    #[serde(default)]
    pub export: bool,
    /// Where exports go: empty for `<lake>/export`, or `s3://…`, `gs://…`, `az://…` (credentials from
    /// the environment, as for `lake_url`), or a local directory.
    #[serde(default)]
    pub export_url: Option<String>,
    /// Complete exports kept per mode; older ones are deleted when a new one is complete. 0 keeps all.
    /// Default 7.
    #[serde(default = "default_export_keep")]
    pub export_keep: usize,
    /// The accounts to sync.
    #[serde(default)]
    pub accounts: Vec<AccountConfig>,
}

/// The warehouse the lake's files are merged into.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Destination {
    #[default]
    Duckdb,
    Postgres,
    Redshift,
    Snowflake,
    /// No warehouse: the Parquet lake is the output.
    None,
}

impl Destination {
    pub const NAMES: [&'static str; 5] = ["duckdb", "postgres", "redshift", "snowflake", "none"];

    pub fn parse(name: &str) -> Result<Destination, String> {
        match name {
            "duckdb" => Ok(Destination::Duckdb),
            "postgres" | "postgresql" => Ok(Destination::Postgres),
            "redshift" => Ok(Destination::Redshift),
            "snowflake" => Ok(Destination::Snowflake),
            "none" => Ok(Destination::None),
            other => Err(format!(
                "unknown destination '{other}' (known: {})",
                Destination::NAMES.join(", ")
            )),
        }
    }
}

impl std::str::FromStr for Destination {
    type Err = String;

    fn from_str(name: &str) -> Result<Destination, String> {
        Destination::parse(name)
    }
}

/// Connection settings of the PostgreSQL warehouse.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// Connection URL, `postgres://user:password@host:5432/database?sslmode=require` (`sslmode`:
    /// `disable`, `prefer` (default) or `require`; with TLS the server certificate is always verified).
    /// It holds a password: prefer `url_env`.
    #[serde(default)]
    pub url: Option<Secret>,
    /// Name of an environment variable holding the URL. Without `url` and `url_env`,
    /// `STRIPE_PIPELINE_POSTGRES_URL` is read.
    #[serde(default)]
    pub url_env: Option<String>,
    /// A PEM file of CA certificates to trust besides the public roots (Amazon RDS's bundle, say).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// Connection settings of the Redshift warehouse (through the Redshift Data API; AWS credentials and
/// region from the environment, as the AWS CLI reads them).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedshiftConfig {
    /// A Redshift Serverless workgroup name; or
    #[serde(default)]
    pub workgroup: Option<String>,
    /// a provisioned cluster's identifier.
    #[serde(default)]
    pub cluster: Option<String>,
    /// The database (default `dev`).
    #[serde(default)]
    pub database: Option<String>,
    /// A database user, for temporary credentials (provisioned clusters); or
    #[serde(default)]
    pub db_user: Option<String>,
    /// the ARN of a Secrets Manager secret with `username` and `password`. Neither: the caller's IAM
    /// identity (serverless).
    #[serde(default)]
    pub secret_arn: Option<String>,
    /// The IAM role Redshift assumes for `COPY` from the lake (associated with the cluster or namespace).
    #[serde(default)]
    pub copy_role_arn: Option<String>,
}

#[cfg(feature = "redshift")]
impl RedshiftConfig {
    /// Whether Redshift is configured at all (a workgroup or a cluster is named).
    pub fn is_set(&self) -> bool {
        self.workgroup.is_some() || self.cluster.is_some()
    }

    /// Checks the settings, the same for every source; `name` spells a field as its source does (a
    /// TOML key, an environment variable), so a message names what to change.
    pub fn settings(
        &self,
        name: impl Fn(&str) -> String,
    ) -> Result<crate::warehouse::redshift::RedshiftSettings, String> {
        use crate::warehouse::redshift::{RedshiftSettings, RedshiftTarget};
        let target = match (&self.workgroup, &self.cluster) {
            (Some(w), None) => RedshiftTarget::Workgroup(w.clone()),
            (None, Some(c)) => RedshiftTarget::Cluster(c.clone()),
            _ => {
                return Err(format!(
                    "set {} (Redshift Serverless) or {} (a provisioned cluster), one of them",
                    name("workgroup"),
                    name("cluster")
                ))
            }
        };
        if self.db_user.is_some() && self.secret_arn.is_some() {
            return Err(format!(
                "set {} or {}, not both",
                name("db_user"),
                name("secret_arn")
            ));
        }
        let Some(copy_role_arn) = self.copy_role_arn.clone() else {
            return Err(format!(
                "set {}, the IAM role Redshift assumes to read the lake for COPY",
                name("copy_role_arn")
            ));
        };
        Ok(RedshiftSettings {
            target,
            database: self.database.clone().unwrap_or_else(|| "dev".into()),
            db_user: self.db_user.clone(),
            secret_arn: self.secret_arn.clone(),
            copy_role_arn,
        })
    }
}

/// Connection settings of the Snowflake warehouse.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnowflakeConfig {
    /// The account identifier: `myorg-account1` (organization and account name) or an account
    /// locator with its region (`xy12345.us-east-2.aws`).
    #[serde(default)]
    pub account: Option<String>,
    /// The user the pipeline logs in as.
    #[serde(default)]
    pub user: Option<String>,
    /// The role to use (default: the user's default role).
    #[serde(default)]
    pub role: Option<String>,
    /// The virtual warehouse that runs the loads (default: the user's default warehouse).
    #[serde(default)]
    pub warehouse: Option<String>,
    /// The database the `STRIPE` and `STRIPE_TESTMODE` schemas are made in.
    #[serde(default)]
    pub database: Option<String>,
    /// A file holding the user's unencrypted RSA private key in PEM (key-pair authentication); or
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
    /// the name of an environment variable holding it. Without either, and without `password_env`,
    /// `STRIPE_PIPELINE_SNOWFLAKE_PRIVATE_KEY` is read.
    #[serde(default)]
    pub private_key_env: Option<String>,
    /// The name of an environment variable holding a password, for users without a key pair.
    #[serde(default)]
    pub password_env: Option<String>,
    /// The storage integration Snowflake reads an S3 lake with (`CREATE STORAGE INTEGRATION … STORAGE_PROVIDER
    /// = 'S3'`). Required when `lake_url` is on S3; a local lake's files are uploaded with `PUT` instead.
    #[serde(default)]
    pub storage_integration: Option<String>,
    /// The service's address; default `https://<account>.snowflakecomputing.com`.
    #[serde(default)]
    pub url: Option<String>,
}

/// The variable read for Snowflake's private key when the configuration names no credential.
pub const SNOWFLAKE_PRIVATE_KEY_ENV: &str = "STRIPE_PIPELINE_SNOWFLAKE_PRIVATE_KEY";

/// How a Snowflake login proves itself, before the key is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnowflakeCredentialSource {
    /// A PEM private key in this file;
    KeyFile(PathBuf),
    /// in this environment variable;
    KeyEnv(String),
    /// a password in this environment variable.
    PasswordEnv(String),
}

impl SnowflakeConfig {
    /// Whether Snowflake is configured at all (an account is named).
    pub fn is_set(&self) -> bool {
        self.account.is_some()
    }

    /// Where the credential comes from: at most one of the three settings.
    pub fn credential_source(
        &self,
        name: impl Fn(&str) -> String,
    ) -> Result<SnowflakeCredentialSource, String> {
        match (
            &self.private_key_file,
            &self.private_key_env,
            &self.password_env,
        ) {
            (None, None, None) => Ok(SnowflakeCredentialSource::KeyEnv(
                SNOWFLAKE_PRIVATE_KEY_ENV.into(),
            )),
            (Some(f), None, None) => Ok(SnowflakeCredentialSource::KeyFile(f.clone())),
            (None, Some(v), None) => Ok(SnowflakeCredentialSource::KeyEnv(v.clone())),
            (None, None, Some(v)) => Ok(SnowflakeCredentialSource::PasswordEnv(v.clone())),
            _ => Err(format!(
                "set one of {}, {} and {}",
                name("private_key_file"),
                name("private_key_env"),
                name("password_env")
            )),
        }
    }

    /// Every problem of the settings that needs no secret: required fields, identifiers, and whether
    /// Snowflake can read the lake at `lake_url`.
    pub fn problems(&self, name: impl Fn(&str) -> String, lake_url: Option<&str>) -> Vec<String> {
        let mut problems = Vec::new();
        for (field, value) in [
            ("account", &self.account),
            ("user", &self.user),
            ("database", &self.database),
        ] {
            if value.as_deref().is_none_or(|v| v.trim().is_empty()) {
                problems.push(format!("destination snowflake needs {}", name(field)));
            }
        }
        if let Err(p) = self.credential_source(&name) {
            problems.push(p);
        }
        let plain = |v: &str| {
            !v.is_empty()
                && !v.starts_with(|c: char| c.is_ascii_digit())
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        };
        if let Some(i) = self.storage_integration.as_deref().filter(|i| !plain(i)) {
            problems.push(format!(
                "{} = \"{i}\": use the integration's name as CREATE STORAGE INTEGRATION gave it (letters, digits, _ and $)",
                name("storage_integration")
            ));
        }
        match lake_url {
            Some(url) if url.starts_with("s3://") && self.storage_integration.is_none() => {
                problems.push(format!(
                    "Snowflake reads an S3 lake through a storage integration: set {} (see the README, \"Snowflake\")",
                    name("storage_integration")
                ))
            }
            Some(url) if url.starts_with("s3://") => {}
            None if self.storage_integration.is_some() => problems.push(format!(
                "{} reads a lake on S3, and this lake is local (its files are uploaded with PUT): set {} to s3://bucket/prefix, or remove {}",
                name("storage_integration"),
                name("lake_url"),
                name("storage_integration")
            )),
            Some(url) => problems.push(format!(
                "Snowflake loads from a lake on S3 or a local one, not {url}: set {} to s3://bucket/prefix or leave it empty",
                name("lake_url")
            )),
            None => {}
        }
        // Plain HTTP would carry the key's token and the session in clear: only to this machine.
        let local = ["http://127.0.0.1", "http://localhost", "http://[::1]"];
        if let Some(url) = self
            .url
            .as_deref()
            .filter(|u| !u.starts_with("https://") && !local.iter().any(|l| u.starts_with(l)))
        {
            problems.push(format!(
                "{} must be an https:// URL (http:// only to this machine), got '{url}'",
                name("url")
            ));
        }
        problems
    }
}

#[cfg(feature = "snowflake")]
impl SnowflakeConfig {
    /// The settings with `credential`, once [`SnowflakeConfig::problems`] found none.
    pub fn settings(
        &self,
        credential: crate::warehouse::snowflake::Credential,
    ) -> crate::warehouse::snowflake::SnowflakeSettings {
        let field = |v: &Option<String>| v.clone().unwrap_or_default();
        let account = field(&self.account);
        let base_url = self.url.clone().unwrap_or_else(|| {
            format!("https://{}.snowflakecomputing.com", account.to_lowercase())
        });
        crate::warehouse::snowflake::SnowflakeSettings {
            login: crate::warehouse::snowflake::Login {
                base_url,
                account,
                user: field(&self.user),
                role: self.role.clone(),
                warehouse: self.warehouse.clone(),
                database: field(&self.database),
                credential,
            },
            storage_integration: self.storage_integration.clone(),
        }
    }
}

/// A Snowflake credential from its source: a PEM key (checked now, so a bad key fails before any
/// load) or a password. Errors name the source, never the secret.
#[cfg(feature = "snowflake")]
pub fn snowflake_credential(
    source: &SnowflakeCredentialSource,
    env: impl Fn(&str) -> Option<String>,
) -> Result<crate::warehouse::snowflake::Credential, String> {
    use crate::warehouse::snowflake::{Credential, KeyPairAuth};
    let key = |pem: &str, from: &str| {
        KeyPairAuth::from_pem(pem)
            .map(|k| Credential::KeyPair(Box::new(k)))
            .map_err(|e| format!("the Snowflake private key in {from}: {e}"))
    };
    match source {
        SnowflakeCredentialSource::KeyFile(path) => {
            let pem = std::fs::read_to_string(path).map_err(|e| {
                format!("cannot read the Snowflake private key file {}: {e}", path.display())
            })?;
            key(&pem, &path.display().to_string())
        }
        SnowflakeCredentialSource::KeyEnv(var) => match env(var) {
            Some(pem) if !pem.trim().is_empty() => key(&pem, &format!("the environment variable {var}")),
            _ => Err(format!(
                "destination snowflake needs the user's private key: set the environment variable {var} to the PEM key, or private_key_file / private_key_env / password_env in [snowflake]"
            )),
        },
        SnowflakeCredentialSource::PasswordEnv(var) => match env(var) {
            Some(p) if !p.is_empty() => Ok(Credential::Password(Secret::new(p))),
            _ => Err(format!("[snowflake] password_env: the environment variable {var} is not set")),
        },
    }
}

/// The variable read for the PostgreSQL URL when the configuration names none.
pub const POSTGRES_URL_ENV: &str = "STRIPE_PIPELINE_POSTGRES_URL";

fn default_output_dir() -> PathBuf {
    PathBuf::from("./data")
}

fn default_api_base() -> String {
    "https://api.stripe.com".into()
}

fn default_budget() -> f64 {
    0.5
}

fn default_concurrency() -> usize {
    8
}

fn default_lag() -> i64 {
    60
}

fn default_overlap() -> i64 {
    300
}

fn default_snapshot_interval() -> i64 {
    86_400
}

fn default_unannounced_interval() -> i64 {
    3_600
}

fn default_export_keep() -> usize {
    7
}

impl Default for Config {
    fn default() -> Self {
        Config {
            output_dir: default_output_dir(),
            api_base: default_api_base(),
            rate_budget: default_budget(),
            concurrency: default_concurrency(),
            datasets: Vec::new(),
            lag_secs: default_lag(),
            overlap_secs: default_overlap(),
            snapshot_interval_secs: default_snapshot_interval(),
            unannounced_interval_secs: default_unannounced_interval(),
            destination: Destination::default(),
            postgres: PostgresConfig::default(),
            redshift: RedshiftConfig::default(),
            snowflake: SnowflakeConfig::default(),
            lake_url: None,
            export: false,
            export_url: None,
            export_keep: default_export_keep(),
            accounts: Vec::new(),
        }
    }
}

/// The DuckDB file under `output_dir`. Not `stripe.duckdb`: DuckDB names a database after its file, and a
/// database called `stripe` makes `stripe.charges` ambiguous with the schema `stripe` that Stripe-compatible
/// SQL names.
pub const DUCKDB_FILE: &str = "stripe_pipeline.duckdb";

/// Settings of incremental sync (see the configuration's `lag_secs`, `overlap_secs`,
/// `snapshot_interval_secs`, `unannounced_interval_secs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incremental {
    pub lag_secs: i64,
    pub overlap_secs: i64,
    pub snapshot_interval_secs: i64,
    pub unannounced_interval_secs: i64,
}

impl Default for Incremental {
    fn default() -> Self {
        Incremental {
            lag_secs: 60,
            overlap_secs: 300,
            snapshot_interval_secs: default_snapshot_interval(),
            unannounced_interval_secs: default_unannounced_interval(),
        }
    }
}

/// An account ready to sync: its key resolved.
#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub key: Secret,
    pub livemode: bool,
    /// Also sync the platform's connected accounts ([`AccountConfig::connect`]).
    pub connect: bool,
}

/// Everything wrong with a configuration, in one message.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration{}:\n  - {}", source_name.as_ref().map(|s| format!(" in {s}")).unwrap_or_default(), problems.join("\n  - "))]
pub struct ConfigError {
    pub source_name: Option<String>,
    pub problems: Vec<String>,
}

/// How a setting is spelled where it is read: a TOML key (`rate_budget`, `[redshift] cluster`) or an
/// environment variable ([`env_var`]), so that a message names what to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spelling {
    Toml,
    Env,
}

impl Spelling {
    /// `key` is the setting's path in the TOML file: `rate_budget`, `redshift.cluster`.
    pub fn name(self, key: &str) -> String {
        match (self, key.split_once('.')) {
            (Spelling::Env, _) => env_var(key),
            (Spelling::Toml, Some((table, field))) => format!("[{table}] {field}"),
            (Spelling::Toml, None) => key.to_string(),
        }
    }
}

/// The environment variable of the setting at `key`: `STRIPE_PIPELINE_` and the key in capitals, a
/// table's name joined to its field (`redshift.cluster` is `STRIPE_PIPELINE_REDSHIFT_CLUSTER`).
pub fn env_var(key: &str) -> String {
    format!("STRIPE_PIPELINE_{}", key.replace('.', "_").to_uppercase())
}

/// Sets `into` from the variable of `key` when it is set and not blank; `what` says what it must be.
fn from_env<T: std::str::FromStr>(
    env: &dyn Fn(&str) -> Option<String>,
    key: &str,
    what: &str,
    into: &mut T,
    problems: &mut Vec<String>,
) {
    let var = env_var(key);
    if let Some(v) = env(&var).filter(|v| !v.trim().is_empty()) {
        match v.trim().parse() {
            Ok(value) => *into = value,
            Err(_) => problems.push(format!("{var} must be {what}, got '{v}'")),
        }
    }
}

impl Config {
    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let one = |p: String| ConfigError {
            source_name: Some(path.display().to_string()),
            problems: vec![p],
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| one(format!("cannot read the file: {e}")))?;
        toml::from_str(&text).map_err(|e| one(e.to_string()))
    }

    /// Sets from the environment every setting it names, over what the file said: each setting but
    /// the accounts and `[postgres]` is read from its [`env_var`] (`STRIPE_PIPELINE_CONCURRENCY`,
    /// `STRIPE_PIPELINE_REDSHIFT_CLUSTER`, …; `datasets` comma-separated). The Lambda functions read
    /// their whole configuration this way, from the variables the SAM template sets. A value that does
    /// not parse is a problem; all of them are listed at once.
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let env: &dyn Fn(&str) -> Option<String> = &env;
        let mut problems = Vec::new();
        let p = &mut problems;
        let number = "a number";
        let whole = "a whole number";
        from_env(env, "output_dir", "a directory", &mut self.output_dir, p);
        from_env(env, "api_base", "a URL", &mut self.api_base, p);
        from_env(env, "rate_budget", number, &mut self.rate_budget, p);
        from_env(env, "concurrency", whole, &mut self.concurrency, p);
        from_env(env, "lag_secs", whole, &mut self.lag_secs, p);
        from_env(env, "overlap_secs", whole, &mut self.overlap_secs, p);
        from_env(
            env,
            "snapshot_interval_secs",
            whole,
            &mut self.snapshot_interval_secs,
            p,
        );
        from_env(
            env,
            "unannounced_interval_secs",
            whole,
            &mut self.unannounced_interval_secs,
            p,
        );
        let destinations = format!("one of {}", Destination::NAMES.join(", "));
        from_env(env, "destination", &destinations, &mut self.destination, p);
        from_env(env, "export", "true or false", &mut self.export, p);
        from_env(env, "export_keep", whole, &mut self.export_keep, p);
        let text = |key: &str| env(&env_var(key)).filter(|v| !v.trim().is_empty());
        if let Some(path) = text("snowflake.private_key_file") {
            self.snowflake.private_key_file = Some(PathBuf::from(path.trim()));
        }
        if let Some(list) = text("datasets") {
            self.datasets = list
                .split(',')
                .map(|d| d.trim().to_string())
                .filter(|d| !d.is_empty())
                .collect();
        }
        let r = &mut self.redshift;
        let sf = &mut self.snowflake;
        for (key, field) in [
            ("snowflake.account", &mut sf.account),
            ("snowflake.user", &mut sf.user),
            ("snowflake.role", &mut sf.role),
            ("snowflake.warehouse", &mut sf.warehouse),
            ("snowflake.database", &mut sf.database),
            ("snowflake.private_key_env", &mut sf.private_key_env),
            ("snowflake.password_env", &mut sf.password_env),
            ("snowflake.storage_integration", &mut sf.storage_integration),
            ("snowflake.url", &mut sf.url),
            ("lake_url", &mut self.lake_url),
            ("export_url", &mut self.export_url),
            ("redshift.workgroup", &mut r.workgroup),
            ("redshift.cluster", &mut r.cluster),
            ("redshift.database", &mut r.database),
            ("redshift.db_user", &mut r.db_user),
            ("redshift.secret_arn", &mut r.secret_arn),
            ("redshift.copy_role_arn", &mut r.copy_role_arn),
        ] {
            if let Some(v) = text(key) {
                *field = Some(v.trim().to_string());
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                source_name: Some("the environment".into()),
                problems,
            })
        }
    }

    /// The CLI's environment, over its file: [`Config::apply_env`], accounts added from
    /// `STRIPE_PIPELINE_KEYS` (`name=key,name=key`), and `STRIPE_API_BASE` (the name Stripe's own
    /// tools use) over `api_base`.
    pub fn merge_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        self.apply_env(&env)?;
        if let Some(keys) = env("STRIPE_PIPELINE_KEYS") {
            for (i, pair) in keys
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .enumerate()
            {
                let (name, key) = pair.split_once('=').unwrap_or(("", pair));
                let name = if name.is_empty() {
                    format!("account-{}", i + 1)
                } else {
                    name.to_string()
                };
                self.accounts.push(AccountConfig {
                    name,
                    key: Some(Secret::new(key)),
                    key_env: None,
                    connect: false,
                });
            }
        }
        if let Some(base) = env("STRIPE_API_BASE") {
            self.api_base = base;
        }
        Ok(())
    }

    /// The PostgreSQL URL: `[postgres] url`, else the variable `url_env` names, else
    /// `STRIPE_PIPELINE_POSTGRES_URL`.
    pub fn postgres_url(&self, env: impl Fn(&str) -> Option<String>) -> Result<Secret, String> {
        let p = &self.postgres;
        match (&p.url, &p.url_env) {
            (Some(_), Some(_)) => Err("[postgres]: set url or url_env, not both".into()),
            (Some(url), None) => Ok(url.clone()),
            (None, var) => {
                let var = var.as_deref().unwrap_or(POSTGRES_URL_ENV);
                match env(var) {
                    Some(v) if !v.is_empty() => Ok(Secret::new(v)),
                    _ => Err(format!(
                        "destination postgres needs a connection URL: set the environment variable {var} (postgres://user:password@host:5432/database), or url_env / url in [postgres]"
                    )),
                }
            }
        }
    }

    /// The Redshift settings, checked; problems name the fields as `spelling` spells them.
    #[cfg(feature = "redshift")]
    pub fn redshift_settings(
        &self,
        spelling: Spelling,
    ) -> Result<crate::warehouse::redshift::RedshiftSettings, String> {
        self.redshift
            .settings(|field| spelling.name(&format!("redshift.{field}")))
    }

    #[cfg(not(feature = "redshift"))]
    pub fn redshift_settings(
        &self,
        _spelling: Spelling,
    ) -> Result<std::convert::Infallible, String> {
        Err("this build has no Redshift support (cargo feature `redshift`)".into())
    }

    /// Every problem of the settings other than the accounts, each naming its setting as `spelling`
    /// spells it; `env` is read for the PostgreSQL URL.
    pub fn problems(
        &self,
        spelling: Spelling,
        env: impl Fn(&str) -> Option<String>,
    ) -> Vec<String> {
        let name = |key: &str| spelling.name(key);
        let mut problems = Vec::new();
        if !(self.rate_budget > 0.0 && self.rate_budget <= 1.0) {
            problems.push(format!(
                "{} must be in (0, 1], got {}",
                name("rate_budget"),
                self.rate_budget
            ));
        }
        if self.concurrency == 0 || self.concurrency > 64 {
            problems.push(format!(
                "{} must be between 1 and 64, got {}",
                name("concurrency"),
                self.concurrency
            ));
        }
        if !(0..=3600).contains(&self.lag_secs) {
            problems.push(format!(
                "{} must be between 0 and 3600, got {}",
                name("lag_secs"),
                self.lag_secs
            ));
        }
        if !(0..=86_400).contains(&self.overlap_secs) {
            problems.push(format!(
                "{} must be between 0 and 86400, got {}",
                name("overlap_secs"),
                self.overlap_secs
            ));
        }
        for (key, value) in [
            ("snapshot_interval_secs", self.snapshot_interval_secs),
            ("unannounced_interval_secs", self.unannounced_interval_secs),
        ] {
            if value < 0 {
                problems.push(format!("{} must be 0 or more, got {value}", name(key)));
            }
        }
        if !self.api_base.starts_with("http://") && !self.api_base.starts_with("https://") {
            problems.push(format!(
                "{} must be an http(s) URL, got '{}'",
                name("api_base"),
                self.api_base
            ));
        }
        let catalog = crate::catalog::Catalog::get();
        for d in &self.datasets {
            if catalog.dataset(d).is_none() {
                let known: Vec<&str> = catalog.datasets.iter().map(|d| d.name.as_str()).collect();
                problems.push(format!(
                    "unknown dataset '{d}' (known: {})",
                    known.join(", ")
                ));
            }
        }
        if self.destination == Destination::Postgres {
            if let Err(p) = self.postgres_url(&env) {
                problems.push(p);
            }
            if let Some(ca) = self.postgres.ca_file.as_ref().filter(|p| !p.is_file()) {
                problems.push(format!(
                    "[postgres] ca_file {} does not exist",
                    ca.display()
                ));
            }
        }
        if self.destination == Destination::Duckdb && self.lake_url.is_some() {
            problems.push(format!("destination duckdb reads the lake from a local directory: remove {}, or choose destination postgres, redshift, snowflake or none", name("lake_url")));
        }
        if self.destination == Destination::Snowflake {
            problems.extend(self.snowflake.problems(
                |field| name(&format!("snowflake.{field}")),
                self.lake_url.as_deref(),
            ));
        }
        if self.destination == Destination::Redshift {
            problems.extend(self.redshift_settings(spelling).err());
            if !self.lake_url.as_deref().unwrap_or("").starts_with("s3://") {
                problems.push(format!(
                    "Redshift loads from S3: set {} to s3://bucket/prefix",
                    name("lake_url")
                ));
            }
        }
        for (key, url) in [
            ("lake_url", &self.lake_url),
            ("export_url", &self.export_url),
        ] {
            let Some(url) = url.as_deref().filter(|u| u.contains("://")) else {
                continue;
            };
            let scheme = url.split("://").next().unwrap_or_default();
            if !["s3", "s3a", "gs", "az", "abfs", "abfss"].contains(&scheme) {
                problems.push(format!("{} = \"{url}\": use s3://bucket/prefix, gs://bucket/prefix or az://container/prefix (or, for export_url, a local directory)", name(key)));
            }
        }
        problems
    }

    /// Checks every setting ([`Config::problems`]) and resolves keys; lists every problem at once.
    pub fn accounts(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<Account>, ConfigError> {
        let mut problems = self.problems(Spelling::Toml, &env);
        if self.accounts.is_empty() {
            problems.push("no accounts: add [[accounts]] with name and key (or key_env) to the config file, set STRIPE_PIPELINE_KEYS=name=sk_live_…, or try --demo".into());
        }
        let mut out = Vec::new();
        let mut names = std::collections::HashSet::new();
        for a in &self.accounts {
            if !names.insert(a.name.clone()) {
                problems.push(format!("account name '{}' is used twice", a.name));
            }
            let key = match (&a.key, &a.key_env) {
                (Some(k), None) => Some(k.clone()),
                (None, Some(var)) => match env(var) {
                    Some(v) if !v.is_empty() => Some(Secret::new(v)),
                    _ => {
                        problems.push(format!(
                            "account '{}': environment variable {var} is not set",
                            a.name
                        ));
                        None
                    }
                },
                (Some(_), Some(_)) => {
                    problems.push(format!(
                        "account '{}': set key or key_env, not both",
                        a.name
                    ));
                    None
                }
                (None, None) => {
                    problems.push(format!("account '{}': no key (set key or key_env)", a.name));
                    None
                }
            };
            if let Some(key) = key {
                match key.livemode() {
                    Some(livemode) => out.push(Account { name: a.name.clone(), key, livemode, connect: a.connect }),
                    None => problems.push(format!("account '{}': the key does not look like a Stripe secret or restricted key (sk_live_…, rk_live_…, sk_test_…, rk_test_…)", a.name)),
                }
            }
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(ConfigError {
                source_name: None,
                problems,
            })
        }
    }

    pub fn lake_dir(&self) -> PathBuf {
        self.output_dir.join("lake")
    }

    /// Where the lake is, for messages: its URL, or the local directory.
    pub fn lake_label(&self) -> String {
        self.lake_url
            .clone()
            .unwrap_or_else(|| self.lake_dir().display().to_string())
    }

    pub fn duckdb_path(&self) -> PathBuf {
        self.output_dir.join(DUCKDB_FILE)
    }

    pub fn state_dir(&self) -> PathBuf {
        self.output_dir.join("state")
    }

    /// The incremental-sync settings the engine runs with.
    pub fn incremental(&self) -> Incremental {
        Incremental {
            lag_secs: self.lag_secs,
            overlap_secs: self.overlap_secs,
            snapshot_interval_secs: self.snapshot_interval_secs,
            unannounced_interval_secs: self.unannounced_interval_secs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("sk_live_abcdef");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(s.livemode(), Some(true));
        assert_eq!(Secret::new("rk_test_x").livemode(), Some(false));
        assert_eq!(Secret::new("pk_live_x").livemode(), None);
    }

    #[cfg(feature = "redshift")]
    #[test]
    fn redshift_problems_name_the_field_as_its_source_spells_it() {
        let toml = |text: &str| {
            toml::from_str::<Config>(text)
                .unwrap()
                .redshift_settings(Spelling::Toml)
        };
        let err = toml("[redshift]\nworkgroup = \"w\"\ncluster = \"c\"").unwrap_err();
        assert!(
            err.contains("[redshift] workgroup") && err.contains("[redshift] cluster"),
            "{err}"
        );
        let err = toml("[redshift]\nworkgroup = \"w\"").unwrap_err();
        assert!(err.contains("set [redshift] copy_role_arn"), "{err}");
        let both = RedshiftConfig {
            cluster: Some("c".into()),
            db_user: Some("u".into()),
            secret_arn: Some("arn:s".into()),
            copy_role_arn: Some("arn:r".into()),
            ..RedshiftConfig::default()
        };
        let err = both.settings(|f| format!("VAR_{f}")).unwrap_err();
        assert_eq!(err, "set VAR_db_user or VAR_secret_arn, not both");
        let ok = toml("[redshift]\ncluster = \"c\"\ncopy_role_arn = \"arn:r\"").unwrap();
        assert_eq!(ok.database, "dev");
    }

    #[test]
    fn snowflake_problems_name_the_setting_and_the_fix() {
        let problems = |text: &str| {
            toml::from_str::<Config>(text)
                .unwrap()
                .problems(Spelling::Toml, |_| None)
                .join("\n")
        };
        let all = problems("destination = \"snowflake\"");
        for field in ["account", "user", "database"] {
            assert!(all.contains(&format!("needs [snowflake] {field}")), "{all}");
        }
        let base = "destination = \"snowflake\"\n[snowflake]\naccount = \"a\"\nuser = \"u\"\ndatabase = \"d\"\n";
        assert_eq!(problems(base), "");
        let s3 = format!("lake_url = \"s3://b/lake\"\n{base}");
        assert!(problems(&s3).contains("set [snowflake] storage_integration"));
        assert_eq!(
            problems(&format!("{s3}storage_integration = \"STRIPE_LAKE\"\n")),
            ""
        );
        let quoted = format!("{s3}storage_integration = \"lake; DROP\"\n");
        assert!(
            problems(&quoted).contains("letters, digits"),
            "{}",
            problems(&quoted)
        );
        let local = format!("{base}storage_integration = \"STRIPE_LAKE\"\n");
        assert!(
            problems(&local).contains("this lake is local"),
            "{}",
            problems(&local)
        );
        let plain = format!("{base}url = \"http://snowflake.example.com\"\n");
        assert!(
            problems(&plain).contains("https:// URL"),
            "{}",
            problems(&plain)
        );
        assert_eq!(
            problems(&format!("{base}url = \"http://127.0.0.1:8123\"\n")),
            ""
        );
        let gcs = format!("lake_url = \"gs://b/lake\"\n{base}");
        assert!(problems(&gcs).contains("S3 or a local one"));
        let two = format!("{base}private_key_env = \"K\"\npassword_env = \"P\"\n");
        assert!(problems(&two).contains("set one of [snowflake] private_key_file"));
        // From the environment, as the functions read it.
        let mut cfg = Config::default();
        cfg.apply_env(|k| match k {
            "STRIPE_PIPELINE_DESTINATION" => Some("snowflake".into()),
            "STRIPE_PIPELINE_SNOWFLAKE_ACCOUNT" => Some("myorg-acct".into()),
            "STRIPE_PIPELINE_SNOWFLAKE_PRIVATE_KEY_FILE" => Some("/k.p8".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(cfg.snowflake.account.as_deref(), Some("myorg-acct"));
        assert_eq!(
            cfg.snowflake.credential_source(|f| f.to_string()),
            Ok(SnowflakeCredentialSource::KeyFile("/k.p8".into()))
        );
        let env_problems = cfg.problems(Spelling::Env, |_| None).join("\n");
        assert!(
            env_problems.contains("needs STRIPE_PIPELINE_SNOWFLAKE_USER"),
            "{env_problems}"
        );
    }

    #[cfg(feature = "snowflake")]
    #[test]
    fn a_snowflake_credential_never_shows_the_secret() {
        let source = SnowflakeCredentialSource::KeyEnv("SF_KEY".into());
        let not_pem = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n";
        let err = snowflake_credential(&source, |_| Some(not_pem.into()))
            .err()
            .unwrap();
        assert!(err.contains("the environment variable SF_KEY"), "{err}");
        assert!(!err.contains("c2VjcmV0"), "{err}");
        let err = snowflake_credential(&source, |_| None).err().unwrap();
        assert!(err.contains("set the environment variable SF_KEY"), "{err}");
        let pem = include_str!("warehouse/snowflake/testdata/rsa_key.p8");
        assert!(snowflake_credential(&source, |_| Some(pem.into())).is_ok());
        let file = SnowflakeCredentialSource::KeyFile("/nonexistent/k.p8".into());
        let err = snowflake_credential(&file, |_| None).err().unwrap();
        assert!(err.contains("/nonexistent/k.p8"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let cfg: Config = toml::from_str(
            r#"
            rate_budget = 2.0
            datasets = ["charges", "nope"]
            [[accounts]]
            name = "a"
            key = "pk_live_123"
            [[accounts]]
            name = "b"
            key_env = "MISSING_VAR"
            "#,
        )
        .unwrap();
        let err = cfg.accounts(|_| None).unwrap_err().to_string();
        for needle in [
            "rate_budget",
            "unknown dataset 'nope'",
            "account 'a'",
            "MISSING_VAR",
        ] {
            assert!(err.contains(needle), "{needle} in {err}");
        }
        assert!(!err.contains("pk_live_123"), "keys are never echoed");
    }

    #[test]
    fn unknown_keys_are_rejected_and_env_adds_accounts() {
        assert!(toml::from_str::<Config>("bogus = 1").is_err());
        let mut cfg = Config::default();
        cfg.merge_env(|k| {
            (k == "STRIPE_PIPELINE_KEYS").then(|| "acme=sk_test_1, rk_live_2".to_string())
        })
        .unwrap();
        let accounts = cfg.accounts(|_| None).unwrap();
        assert_eq!(accounts.len(), 2);
        assert_eq!(
            (accounts[0].name.as_str(), accounts[0].livemode),
            ("acme", false)
        );
        assert_eq!(
            (accounts[1].name.as_str(), accounts[1].livemode),
            ("account-2", true)
        );
    }

    #[test]
    fn the_environment_sets_what_the_file_can_and_names_its_variables() {
        let vars: std::collections::HashMap<&str, &str> = [
            ("STRIPE_PIPELINE_CONCURRENCY", "3"),
            ("STRIPE_PIPELINE_DATASETS", "charges, customers"),
            ("STRIPE_PIPELINE_DESTINATION", "redshift"),
            ("STRIPE_PIPELINE_LAKE_URL", "s3://b/lake"),
            ("STRIPE_PIPELINE_REDSHIFT_CLUSTER", "c1"),
            ("STRIPE_PIPELINE_LAG_SECS", ""),
        ]
        .into();
        let env = |k: &str| vars.get(k).map(|v| v.to_string());
        let mut cfg: Config = toml::from_str("concurrency = 5\nlag_secs = 30").unwrap();
        cfg.apply_env(env).unwrap();
        assert_eq!(cfg.concurrency, 3, "the environment wins over the file");
        assert_eq!(cfg.lag_secs, 30, "a blank variable leaves the file's value");
        assert_eq!(cfg.datasets, ["charges", "customers"]);
        assert_eq!(cfg.destination, Destination::Redshift);
        assert_eq!(cfg.redshift.cluster.as_deref(), Some("c1"));
        // The cluster has no COPY role: the message names the variable to set.
        let problems = cfg.problems(Spelling::Env, env).join("\n");
        #[cfg(feature = "redshift")]
        assert!(
            problems.contains("set STRIPE_PIPELINE_REDSHIFT_COPY_ROLE_ARN"),
            "{problems}"
        );
        assert!(!problems.contains("LAKE_URL"), "{problems}");

        let bad: std::collections::HashMap<&str, &str> = [
            ("STRIPE_PIPELINE_RATE_BUDGET", "half"),
            ("STRIPE_PIPELINE_DESTINATION", "oracle"),
        ]
        .into();
        let err = Config::default()
            .apply_env(|k| bad.get(k).map(|v| v.to_string()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("STRIPE_PIPELINE_RATE_BUDGET must be a number, got 'half'"),
            "{err}"
        );
        assert!(
            err.contains("STRIPE_PIPELINE_DESTINATION must be one of duckdb"),
            "{err}"
        );
        let mut over = Config::default();
        over.apply_env(|k| (k == "STRIPE_PIPELINE_RATE_BUDGET").then(|| "2".into()))
            .unwrap();
        let problems = over.problems(Spelling::Env, |_| None).join("\n");
        assert!(
            problems.contains("STRIPE_PIPELINE_RATE_BUDGET must be in (0, 1]"),
            "{problems}"
        );
    }
}
