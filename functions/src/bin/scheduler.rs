//! The scheduler function (EventBridge schedule → one SQS message per due slice).

use aws_lambda_events::eventbridge::EventBridgeEvent;
use lambda_runtime::{service_fn, LambdaEvent};
use std::sync::Arc;
use stripe_pipeline::clock::{Clock, SystemClock};
use stripe_pipeline_functions::{scheduler, worker, Services};

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
                // Accounts not reached before the deadline are planned by a worker (`TickMessage`).
                let stop = worker::stop_at(event.context.deadline);
                scheduler::tick_until(&services, time / 60 * 60, None, Some(stop))
                    .await
                    .map_err(lambda_runtime::Error::from)
            }
        },
    ))
    .await
}
