//! The fulfillment event consumer Lambda (SQS queue).

use adapters::inbox::DynamoInbox;
use fulfillment::Config;
use fulfillment::dynamo::DynamoFulfillment;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_glue::logging::init();
    let config = Config::from_env()?;
    let dynamodb = aws_sdk_dynamodb::Client::new(&adapters::aws::load_config().await);
    let inbox = DynamoInbox::new(dynamodb.clone(), &config.table);
    // The consumer never lists shipments, so it signs no cursor anyone reads: a key of its own
    // instead of the cursor secret (which it is not granted).
    let store = DynamoFulfillment::new(dynamodb, config.table);
    lambda_glue::consumer::serve(|trigger| fulfillment::events::handle(&store, &inbox, trigger)).await
}
