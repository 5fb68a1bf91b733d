//! What the functions work with: settings, AWS clients, the lake, and the engine built on them.

use crate::accounts::Accounts;
use crate::notify::SnsNotifier;
use crate::secrets::Secrets;
use crate::settings::Settings;
use crate::Error;
use aws_config::{BehaviorVersion, SdkConfig};
use std::sync::Arc;
use std::time::Instant;
use stripe_pipeline::config::SnowflakeConfig;
use stripe_pipeline::engine::{Engine, SharedWarehouse};
use stripe_pipeline::lake::Lake;
use stripe_pipeline::notify::{Alerts, LogNotifier};
use stripe_pipeline::state::DynamoState;
use stripe_pipeline::stripe::{Limiter, RetryPolicy, StripeClient};
use stripe_pipeline::warehouse::redshift::Redshift;
use stripe_pipeline::warehouse::snowflake::{Credential, KeyPairAuth, Snowflake};
use stripe_pipeline::warehouse::{LakeOnly, Warehouse};
use tokio::sync::OnceCell;

pub struct Services {
    pub settings: Settings,
    pub state: DynamoState,
    pub accounts: Accounts,
    pub sqs: aws_sdk_sqs::Client,
    pub secrets: Secrets,
    pub alerts: Arc<Alerts>,
    pub lake: Lake,
    /// Where exports in Stripe's layout go, when they are on.
    pub export: Option<Lake>,
    /// AWS settings of the warehouse's Data API client (the functions' own, unless
    /// [`Services::with_warehouse_sdk`] names another endpoint).
    sdk: SdkConfig,
    /// Opened on first use and kept for the container's life (Redshift's connection check runs once).
    warehouse: OnceCell<SharedWarehouse>,
    /// This process's rate budget: one rate slot's part of each account's (other workers hold the
    /// others), kept across invocations so a 429's slow-down outlives the message that met it.
    limiter: Arc<Limiter>,
}

impl Services {
    /// Services from the function's environment: settings from `STRIPE_PIPELINE_*`, AWS credentials
    /// and region the SDK's usual way (in Lambda: the function's role).
    pub async fn from_env() -> Result<Services, Error> {
        let settings = Settings::from_env(|k| std::env::var(k).ok())?;
        let sdk = aws_config::load_defaults(BehaviorVersion::latest()).await;
        Services::new(settings, &sdk, &[])
    }

    /// Services on an explicit AWS configuration; `lake_options` are object_store settings for the
    /// lake (an endpoint, for an emulator).
    pub fn new(
        settings: Settings,
        sdk: &SdkConfig,
        lake_options: &[(String, String)],
    ) -> Result<Services, Error> {
        let lake = Lake::cloud(settings.lake_url(), lake_options)
            .map_err(|e| Error::Lake(e.to_string()))?;
        let export = match &settings.export {
            Some(e) => Some(
                Lake::cloud(&e.url, lake_options)
                    .map_err(|err| Error::Lake(format!("the export store: {err}")))?,
            ),
            None => None,
        };
        let state = DynamoState::new(sdk, &settings.state_table);
        let limiter = Arc::new(Limiter::per_slot(settings.pipeline.rate_budget));
        Ok(Services {
            accounts: Accounts::new(aws_sdk_dynamodb::Client::new(sdk), &settings.accounts_table),
            sqs: aws_sdk_sqs::Client::new(sdk),
            secrets: Secrets::new(aws_sdk_secretsmanager::Client::new(sdk)),
            alerts: Arc::new(Alerts::new(
                match &settings.topic_arn {
                    Some(topic) => Arc::new(SnsNotifier::new(
                        aws_sdk_sns::Client::new(sdk),
                        topic.clone(),
                    )),
                    None => Arc::new(LogNotifier),
                },
                state.clone().into(),
                settings.failure_alert_after,
            )),
            state,
            lake,
            export,
            settings,
            sdk: sdk.clone(),
            warehouse: OnceCell::new(),
            limiter,
        })
    }

    /// A Stripe client with this function's share of the rate limit: a slice it runs holds one of
    /// its account's rate slots (see [`Limiter`]).
    pub fn stripe_client(&self) -> StripeClient {
        StripeClient::new(
            &self.settings.pipeline.api_base,
            self.limiter.clone(),
            RetryPolicy::default(),
        )
    }

    /// Reaches the Redshift Data API with other AWS settings than the other services (an emulator
    /// on its own endpoint).
    pub fn with_warehouse_sdk(mut self, sdk: SdkConfig) -> Services {
        self.sdk = sdk;
        self
    }

    /// The warehouse slices load into: Redshift or Snowflake when configured (checked with one query
    /// on first use), else none (the Parquet lake is the output).
    pub async fn warehouse(&self) -> Result<SharedWarehouse, Error> {
        self.warehouse
            .get_or_try_init(|| async {
                let wh: Box<dyn Warehouse> = match &self.settings.redshift {
                    Some(settings) => Box::new(
                        Redshift::connect(&self.sdk, settings.clone())
                            .await
                            .map_err(|e| Error::Warehouse(e.to_string()))?,
                    ),
                    None => match &self.settings.snowflake {
                        Some((config, key_arn)) => Box::new(self.snowflake(config, key_arn).await?),
                        None => Box::new(LakeOnly),
                    },
                };
                Ok(Arc::from(wh))
            })
            .await
            .cloned()
    }

    /// Snowflake, logged in with the private key in Secrets Manager.
    async fn snowflake(&self, config: &SnowflakeConfig, key_arn: &str) -> Result<Snowflake, Error> {
        let pem = self.secrets.snowflake_key(key_arn).await?;
        let key = KeyPairAuth::from_pem(pem.expose()).map_err(|e| {
            Error::Settings(vec![format!("the Snowflake private key in {key_arn}: {e}")])
        })?;
        Snowflake::connect(config.settings(Credential::KeyPair(Box::new(key))))
            .await
            .map_err(|e| Error::Warehouse(e.to_string()))
    }

    /// The engine for one slice: the S3 lake, the DynamoDB state, the warehouse, stopping at `stop_at`.
    pub async fn engine(
        &self,
        run_id: String,
        stop_at: Option<Instant>,
    ) -> Result<Arc<Engine>, Error> {
        let engine = Engine::builder(
            self.stripe_client(),
            self.lake.clone(),
            self.state.clone().into(),
        )
        .shared_warehouse(self.warehouse().await?)
        .concurrency(self.settings.pipeline.concurrency)
        .incremental(self.settings.incremental())
        .run_id(run_id)
        .deadline(stop_at)
        .alerts(self.alerts.clone())
        .build();
        Ok(Arc::new(engine))
    }
}
