//! The outbox relay Lambda: a DynamoDB stream consumer that publishes to EventBridge and parks
//! what can never be published in its dead-letter queue.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use relay::Config;
use relay::bus::EventBridgeBus;
use relay::dead_letter::SqsDeadLetters;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_glue::logging::init();
    let config = Config::from_env()?;
    let aws = adapters::aws::load_config().await;
    let bus = EventBridgeBus::new(aws_sdk_eventbridge::Client::new(&aws), config.bus);
    let dead_letters = SqsDeadLetters::new(aws_sdk_sqs::Client::new(&aws), config.dead_letter_queue_url);
    let (bus, dead_letters) = (&bus, &dead_letters);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<aws_lambda_events::dynamodb::Event>| async move {
        Ok::<_, Error>(relay::relay(bus, dead_letters, &event.payload).await)
    }))
    .await
}
