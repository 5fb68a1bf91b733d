//! The worker function (SQS → one slice per message, partial batch failures reported).

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{service_fn, LambdaEvent};
use std::sync::Arc;
use stripe_pipeline_functions::{worker, Services};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    stripe_pipeline_functions::init_tracing();
    let services = Arc::new(Services::from_env().await?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let services = services.clone();
        async move {
            let stop = worker::stop_at(event.context.deadline);
            let run_id = format!("lambda-{}", event.context.request_id);
            Ok::<_, lambda_runtime::Error>(
                worker::handle(&services, event.payload.records, &run_id, stop).await,
            )
        }
    }))
    .await
}
