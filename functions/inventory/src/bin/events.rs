//! The inventory event consumer Lambda (SQS queue + expiry schedule).

use adapters::inbox::DynamoInbox;
use inventory::Config;
use inventory::dynamo::DynamoInventory;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_glue::logging::init();
    let config = Config::from_env()?;
    let dynamodb = aws_sdk_dynamodb::Client::new(&adapters::aws::load_config().await);
    let inbox = DynamoInbox::new(dynamodb.clone(), &config.table);
    let store = DynamoInventory::new(dynamodb, config.table);
    lambda_glue::consumer::serve(|trigger| inventory::events::handle(&store, &inbox, trigger, config.hold)).await
}
