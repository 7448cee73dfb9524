//! The catalog Lambda: wires configuration, logging and the DynamoDB store to the handler.

use adapters::CursorKeys;
use adapters::secrets::OnFirstUse;
use catalog::Config;
use catalog::dynamo::DynamoCatalog;
use lambda_http::Error;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_glue::logging::init();
    let Config { table, cursor_secret_arn } = Config::from_env()?;
    let aws = adapters::aws::load_config().await;
    let (dynamodb, secretsmanager) =
        (aws_sdk_dynamodb::Client::new(&aws), adapters::aws::Deferred::new(&aws, aws_sdk_secretsmanager::Client::new));
    // The cursor secret is read by the first listing, not at init; only listings await it, so
    // a secret that cannot be read fails them alone.
    let cursor_keys = OnFirstUse::new(CursorKeys::loader(secretsmanager, cursor_secret_arn));
    let store = DynamoCatalog::new(dynamodb, table, cursor_keys);
    let store = &store;
    lambda_glue::http::serve(|request| catalog::api::handle(store, request)).await
}
