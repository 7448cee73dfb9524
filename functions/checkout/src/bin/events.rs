//! The checkout saga consumer Lambda (SQS queue + timeout schedule).

use checkout::Config;
use checkout::dynamo::DynamoOrders;
use lambda_glue::consumer::Trigger;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_glue::logging::init();
    let config = Config::from_env()?;
    let aws = adapters::aws::load_config().await;
    let store = DynamoOrders::new(aws_sdk_dynamodb::Client::new(&aws), config.table);
    let store = &store;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        let trigger = Trigger::parse(event.payload)?;
        // Boxed: the saga handler's future is deep, and inlining it into `main`'s future makes its
        // layout exceed the compiler's query depth.
        Ok::<_, Error>(Box::pin(checkout::events::handle(store, trigger)).await?)
    }))
    .await
}
