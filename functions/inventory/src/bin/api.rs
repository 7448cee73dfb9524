//! The inventory API Lambda.

use inventory::Config;
use inventory::dynamo::DynamoInventory;
use lambda_http::Error;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_glue::logging::init();
    let config = Config::from_env()?;
    let aws = adapters::aws::load_config().await;
    let store = DynamoInventory::new(aws_sdk_dynamodb::Client::new(&aws), config.table);
    let store = &store;
    lambda_glue::http::serve(|request| inventory::api::handle(store, request)).await
}
