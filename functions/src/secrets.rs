//! Stripe keys and webhook signing secrets from Secrets Manager, cached per container for a few
//! minutes (a rotated key is picked up without a redeploy). A key only ever lives in a [`Secret`],
//! which prints as `***`.

use crate::Error;
use aws_sdk_secretsmanager::Client;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use stripe_pipeline::config::Secret;
use stripe_pipeline::push::signature;
use tokio::sync::Mutex;

/// How long a key read from Secrets Manager is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub struct Secrets {
    client: Client,
    cache: Mutex<HashMap<String, (Instant, Secret)>>,
}

impl Secrets {
    pub fn new(client: Client) -> Secrets {
        Secrets {
            client,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The Stripe key in secret `arn`: the secret's string itself, or the `api_key` field of a JSON
    /// secret.
    pub async fn stripe_key(&self, account: &str, arn: &str) -> Result<Secret, Error> {
        let key = self
            .cached(
                arn,
                "api_key",
                format!("reading the key of account '{account}' from {arn} (the worker may read secrets named stripe-pipeline/*)"),
            )
            .await?;
        if key.livemode().is_none() {
            // Read again next time: a fixed secret counts at once.
            self.cache.lock().await.remove(arn);
            return Err(Error::Account {
                account: account.to_string(),
                message: format!(
                    "the secret {arn} does not hold a Stripe secret or restricted key (sk_live_…, rk_live_…, sk_test_…, rk_test_…), neither as its text nor as the `api_key` field of a JSON secret"
                ),
            });
        }
        Ok(key)
    }

    /// The webhook endpoints' signing secrets in secret `arn` (`whsec_…`, comma-separated while one is
    /// rolled): the secret's string itself, or the `signing_secret` field of a JSON secret.
    pub async fn signing_secrets(&self, arn: &str) -> Result<Vec<String>, Error> {
        let text = self
            .cached(
                arn,
                "signing_secret",
                format!("reading the webhook signing secret from {arn}"),
            )
            .await?;
        signature::parse_secrets(text.expose())
            .map_err(|e| Error::Settings(vec![format!("the secret {arn}: {e}")]))
    }

    /// [`Self::read`], reused for [`CACHE_TTL`].
    async fn cached(&self, arn: &str, field: &str, action: String) -> Result<Secret, Error> {
        if let Some((at, value)) = self.cache.lock().await.get(arn) {
            if at.elapsed() < CACHE_TTL {
                return Ok(value.clone());
            }
        }
        let value = self.read(arn, field, action).await?;
        self.cache
            .lock()
            .await
            .insert(arn.to_string(), (Instant::now(), value.clone()));
        Ok(value)
    }

    /// The Snowflake user's PEM private key in secret `arn`: the secret's string itself, or the
    /// `private_key` field of a JSON secret.
    pub async fn snowflake_key(&self, arn: &str) -> Result<Secret, Error> {
        self.read(
            arn,
            "private_key",
            format!("reading the Snowflake private key from {arn} (the worker may read secrets named stripe-pipeline/*)"),
        )
        .await
    }

    /// A secret's string, or its `field` when it is a JSON object.
    async fn read(&self, arn: &str, field: &str, action: String) -> Result<Secret, Error> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(arn)
            .send()
            .await
            .map_err(|e| Error::aws("Secrets Manager", action, e))?;
        let text = out.secret_string().unwrap_or_default().trim().to_string();
        Ok(Secret::new(
            match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(v) if v.is_object() => v[field].as_str().unwrap_or_default().to_string(),
                _ => text,
            },
        ))
    }
}
