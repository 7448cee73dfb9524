//! The fulfillment admin API Lambda.

use fulfillment::Config;
use fulfillment::dynamo::DynamoFulfillment;
use lambda_http::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_glue::logging::init();
    let config = Config::from_env()?;
    let cursor_secret = lambda_glue::config::required("CURSOR_SECRET_ARN")?;
    let aws = adapters::aws::load_config().await;
    let cursor_keys = adapters::CursorKeys::load(&aws_sdk_secretsmanager::Client::new(&aws), &cursor_secret).await?;
    let store = DynamoFulfillment::new(aws_sdk_dynamodb::Client::new(&aws), config.table).listing(cursor_keys);
    let store = &store;
    lambda_glue::http::serve(|request| fulfillment::api::handle(store, request)).await
}
