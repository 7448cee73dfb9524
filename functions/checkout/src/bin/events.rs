//! The checkout saga consumer Lambda (SQS queue + timeout schedule).

use checkout::Config;
use checkout::dynamo::DynamoOrders;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_glue::logging::init();
    let config = Config::from_env()?;
    let aws = adapters::aws::load_config().await;
    let store = DynamoOrders::new(aws_sdk_dynamodb::Client::new(&aws), config.table);
    lambda_glue::consumer::serve(|trigger| checkout::events::handle(&store, trigger)).await
}
