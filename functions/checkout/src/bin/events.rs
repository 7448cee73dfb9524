//! The checkout saga consumer Lambda (SQS queue + timeout schedule).

use adapters::inbox::DynamoInbox;
use checkout::Config;
use checkout::dynamo::DynamoOrders;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_glue::logging::init();
    let config = Config::from_env()?;
    let dynamodb = aws_sdk_dynamodb::Client::new(&adapters::aws::load_config().await);
    let inbox = DynamoInbox::new(dynamodb.clone(), &config.table);
    // The consumer never lists orders for a client: its store has no cursor keys, so it needs
    // neither the cursor secret nor the IAM grant to read it.
    let store = DynamoOrders::new(dynamodb, config.table);
    lambda_glue::consumer::serve(|trigger| checkout::events::handle(&store, &inbox, trigger)).await
}
