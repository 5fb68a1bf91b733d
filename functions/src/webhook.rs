//! The webhook function: Stripe's webhook deliveries on a Lambda function URL. Each delivery is
//! checked as `serve-webhooks` checks it ([`push::webhook_delivery`]: size, `Stripe-Signature`
//! against the signing secrets in Secrets Manager, the body as an event), its account looked up, and
//! its event queued on the push queue for the workers ([`crate::pushes`]); the answer goes back at
//! once. Refusals are 4xx with the reason and nothing queued; the body is never logged.

use crate::accounts::Accounts;
use crate::message::WebhookPush;
use crate::secrets::Secrets;
use crate::Error;
use aws_config::SdkConfig;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use stripe_pipeline::clock::{Clock, SystemClock};
use stripe_pipeline::push;

/// SQS's largest message. A larger event is answered 200 and left to the scheduled feed, which reads
/// it from `/v1/events` (Stripe would retry a refusal for days, to the same end).
const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// A function URL's request, the fields the function reads. (`aws_lambda_events` has the whole type
/// behind its `lambda_function_urls` feature, which turns on `bytes`' `serde` feature and so rebuilds
/// most of the dependency tree of every build: these few fields are cheaper.)
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UrlRequest {
    #[serde(default)]
    pub raw_path: String,
    /// Header names in lower case, as function URLs pass them.
    #[serde(default)]
    pub headers: HashMap<String, String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub is_base64_encoded: bool,
    #[serde(default)]
    pub request_context: UrlRequestContext,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct UrlRequestContext {
    #[serde(default)]
    pub http: UrlRequestHttp,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct UrlRequestHttp {
    #[serde(default)]
    pub method: String,
}

/// A function URL's response.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UrlResponse {
    pub status_code: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
    pub is_base64_encoded: bool,
}

/// What the webhook function needs, from its environment (the SAM template sets it).
pub struct Webhook {
    accounts: Accounts,
    secrets: Secrets,
    sqs: aws_sdk_sqs::Client,
    push_queue_url: String,
    secret_arn: String,
}

impl Webhook {
    /// `STRIPE_PIPELINE_ACCOUNTS_TABLE`, `STRIPE_PIPELINE_PUSH_QUEUE_URL` and
    /// `STRIPE_PIPELINE_WEBHOOK_SECRET_ARN`, all required.
    pub fn new(sdk: &SdkConfig, env: impl Fn(&str) -> Option<String>) -> Result<Webhook, Error> {
        let mut problems = Vec::new();
        let mut required = |name: &str| crate::settings::required(&env, name, &mut problems);
        let accounts_table = required("STRIPE_PIPELINE_ACCOUNTS_TABLE");
        let push_queue_url = required("STRIPE_PIPELINE_PUSH_QUEUE_URL");
        let secret_arn = required("STRIPE_PIPELINE_WEBHOOK_SECRET_ARN");
        if !problems.is_empty() {
            return Err(Error::Settings(problems));
        }
        Ok(Webhook {
            accounts: Accounts::new(aws_sdk_dynamodb::Client::new(sdk), accounts_table),
            secrets: Secrets::new(aws_sdk_secretsmanager::Client::new(sdk)),
            sqs: aws_sdk_sqs::Client::new(sdk),
            push_queue_url,
            secret_arn,
        })
    }

    pub async fn from_env() -> Result<Webhook, Error> {
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Webhook::new(&sdk, |name| std::env::var(name).ok())
    }

    /// One delivery: checked, queued, answered. Refusals are logged with their reason, never the body.
    pub async fn receive(&self, req: UrlRequest) -> UrlResponse {
        let (status, message) = match self.check(req).await {
            Ok(message) => (200, message),
            Err((status, message)) => {
                if status >= 500 {
                    tracing::error!(status, "webhook delivery not taken: {message}");
                } else {
                    tracing::warn!(status, "webhook delivery refused: {message}");
                }
                (status, message)
            }
        };
        UrlResponse {
            status_code: status,
            headers: HashMap::from([("content-type".into(), "application/json".into())]),
            body: serde_json::json!({ "message": message }).to_string(),
            is_base64_encoded: false,
        }
    }

    async fn check(&self, req: UrlRequest) -> Result<String, (u16, String)> {
        if req.request_context.http.method != "POST" {
            return Err((405, "only POST is accepted".into()));
        }
        let path = req.raw_path.as_str();
        let Some(account) = path
            .strip_prefix("/webhooks/")
            .filter(|name| !name.is_empty() && !name.contains('/'))
        else {
            return Err((
                404,
                format!("no endpoint {path}: deliveries go to /webhooks/<account name>"),
            ));
        };
        let body = match (req.body, req.is_base64_encoded) {
            (None, _) => Vec::new(),
            (Some(text), false) => text.into_bytes(),
            (Some(text), true) => base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|_| (400, "the body is not valid base64".to_string()))?,
        };
        let secrets = self
            .secrets
            .signing_secrets(&self.secret_arn)
            .await
            .map_err(|e| (500, e.to_string()))?;
        let header = req.headers.get("stripe-signature").map(String::as_str);
        let event = push::webhook_delivery(header, &body, &secrets, SystemClock.now_secs())
            .map_err(|e| (e.status(), e.to_string()))?;
        // Looked up only once the delivery is known to be Stripe's: the answers do not tell anyone
        // else which accounts exist.
        match self.accounts.get(account).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err((
                    404,
                    format!("no account '{account}' in the accounts table: the endpoint's URL must end in /webhooks/<account name>"),
                ))
            }
            Err(e) => return Err((500, e.to_string())),
        }
        let id = event.id.clone();
        let message = serde_json::to_string(&WebhookPush {
            pushed_to: account.to_string(),
            event,
        })
        .map_err(|e| (500, e.to_string()))?;
        if message.len() > MAX_MESSAGE_BYTES {
            tracing::warn!(event = %id, bytes = message.len(), "event over SQS's message size: not queued; the scheduled feed reads it");
            return Ok(format!("{id} received"));
        }
        self.sqs
            .send_message()
            .queue_url(&self.push_queue_url)
            .message_body(message)
            .send()
            .await
            .map_err(|e| {
                let error = stripe_pipeline::state::sdk_error_message(&e);
                (500, format!("SQS: queueing {id}: {error}"))
            })?;
        Ok(format!("{id} received"))
    }
}
