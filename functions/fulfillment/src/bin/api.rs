//! The fulfillment admin API Lambda.

use adapters::CursorKeys;
use adapters::secrets::OnFirstUse;
use fulfillment::Config;
use fulfillment::dynamo::DynamoFulfillment;
use lambda_http::Error;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_glue::logging::init();
    let Config { table } = Config::from_env()?;
    let cursor_secret = lambda_glue::config::required("CURSOR_SECRET_ARN")?;
    let aws = adapters::aws::load_config().await;
    let (dynamodb, secretsmanager) =
        (aws_sdk_dynamodb::Client::new(&aws), adapters::aws::Deferred::new(&aws, aws_sdk_secretsmanager::Client::new));
    // The cursor secret is read by the first listing, not at init; only listings await it, so
    // a secret that cannot be read fails them alone.
    let cursor_keys = OnFirstUse::new(CursorKeys::loader(secretsmanager, cursor_secret));
    let store = DynamoFulfillment::new(dynamodb, table).listing(cursor_keys);
    let store = &store;
    lambda_glue::http::serve(|request| fulfillment::api::handle(store, request)).await
}
