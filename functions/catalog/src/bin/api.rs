//! The catalog Lambda: wires configuration, logging and the DynamoDB store to the handler.

use catalog::Config;
use catalog::dynamo::DynamoCatalog;
use lambda_http::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_glue::logging::init();
    let config = Config::from_env()?;
    let aws = adapters::aws::load_config().await;
    let cursor_keys =
        adapters::CursorKeys::load(&aws_sdk_secretsmanager::Client::new(&aws), &config.cursor_secret_arn).await?;
    let store = DynamoCatalog::new(aws_sdk_dynamodb::Client::new(&aws), config.table, cursor_keys);
    let store = &store;
    lambda_glue::http::serve(|request| catalog::api::handle(store, request)).await
}
