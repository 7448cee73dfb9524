//! The catalog Lambda: wires configuration, logging and the DynamoDB store to the handler.

use adapters::secrets::Prefetched;
use catalog::Config;
use catalog::dynamo::DynamoCatalog;
use lambda_glue::http::{Reply, internal};
use lambda_http::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_glue::logging::init();
    let Config { table, cursor_secret_arn } = Config::from_env()?;
    let aws = adapters::aws::load_config().await;
    let (dynamodb, secretsmanager) = (aws_sdk_dynamodb::Client::new(&aws), aws_sdk_secretsmanager::Client::new(&aws));
    // The cursor secret is read while the runtime asks for the first request, not before it.
    let store = Prefetched::start(move || {
        let (dynamodb, secretsmanager, table, arn) =
            (dynamodb.clone(), secretsmanager.clone(), table.clone(), cursor_secret_arn.clone());
        async move {
            let cursor_keys = adapters::CursorKeys::load(&secretsmanager, &arn).await?;
            Ok::<_, adapters::cursor::KeyError>(DynamoCatalog::new(dynamodb, table, cursor_keys))
        }
    });
    let store = &store;
    lambda_glue::http::serve(|request| async move {
        match store.get().await {
            Ok(store) => catalog::api::handle(store, request).await,
            Err(error) => Reply::problem(&internal(&error)),
        }
    })
    .await
}
