//! The scheduler function (EventBridge schedule → one SQS message per due slice).

use aws_lambda_events::eventbridge::EventBridgeEvent;
use lambda_runtime::{service_fn, LambdaEvent};
use std::sync::Arc;
use stripe_pipeline::clock::{Clock, SystemClock};
use stripe_pipeline_functions::{scheduler, Services};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    stripe_pipeline_functions::init_tracing();
    let services = Arc::new(Services::from_env().await?);
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<EventBridgeEvent<serde_json::Value>>| {
            let services = services.clone();
            async move {
                // The scheduled time, to the minute: a redelivered event is the same tick.
                let time = event
                    .payload
                    .time
                    .map_or_else(|| SystemClock.now_secs(), |t| t.timestamp());
                scheduler::tick(&services, time / 60 * 60)
                    .await
                    .map_err(lambda_runtime::Error::from)
            }
        },
    ))
    .await
}
