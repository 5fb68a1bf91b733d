//! The webhook function (a function URL → Stripe's signed deliveries checked and queued).

use lambda_runtime::{service_fn, LambdaEvent};
use std::sync::Arc;
use stripe_pipeline_functions::webhook::{UrlRequest, Webhook};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    stripe_pipeline_functions::init_tracing();
    let webhook = Arc::new(Webhook::from_env().await?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<UrlRequest>| {
        let webhook = webhook.clone();
        async move { Ok::<_, lambda_runtime::Error>(webhook.receive(event.payload).await) }
    }))
    .await
}
