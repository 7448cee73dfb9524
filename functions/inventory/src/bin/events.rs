//! The inventory event consumer Lambda (SQS queue + expiry schedule).

use inventory::Config;
use inventory::dynamo::DynamoInventory;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_glue::logging::init();
    let config = Config::from_env()?;
    let aws = adapters::aws::load_config().await;
    let store = DynamoInventory::new(aws_sdk_dynamodb::Client::new(&aws), config.table);
    lambda_glue::consumer::serve(|trigger| inventory::events::handle(&store, trigger, config.hold)).await
}
