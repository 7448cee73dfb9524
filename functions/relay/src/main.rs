//! The outbox relay Lambda: a DynamoDB stream consumer that publishes to EventBridge.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use relay::Config;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_glue::logging::init();
    let config = Config::from_env()?;
    let aws = adapters::aws::load_config().await;
    let client = aws_sdk_eventbridge::Client::new(&aws);
    let (client, config) = (&client, &config);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<aws_lambda_events::dynamodb::Event>| async move {
        Ok::<_, Error>(relay::relay(client, config, event.payload).await)
    }))
    .await
}
