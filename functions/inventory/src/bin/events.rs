//! The inventory event consumer Lambda (SQS queue + expiry schedule).

use inventory::Config;
use inventory::dynamo::DynamoInventory;
use lambda_glue::consumer::Trigger;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_glue::logging::init();
    let config = Config::from_env()?;
    let aws = adapters::aws::load_config().await;
    let store = DynamoInventory::new(aws_sdk_dynamodb::Client::new(&aws), config.table);
    let (store, hold) = (&store, config.hold);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        let trigger = Trigger::parse(event.payload)?;
        Ok::<_, Error>(inventory::events::handle(store, trigger, hold).await?)
    }))
    .await
}
