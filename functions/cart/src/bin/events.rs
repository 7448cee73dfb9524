//! The cart read-model consumer Lambda.

use adapters::inbox::DynamoInbox;
use cart::Config;
use cart::dynamo::DynamoCarts;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_glue::logging::init();
    let config = Config::from_env()?;
    let dynamodb = aws_sdk_dynamodb::Client::new(&adapters::aws::load_config().await);
    let inbox = DynamoInbox::new(dynamodb.clone(), &config.table);
    let store = DynamoCarts::new(dynamodb, config.table);
    lambda_glue::consumer::serve(|trigger| cart::events::handle(&store, &inbox, trigger)).await
}
