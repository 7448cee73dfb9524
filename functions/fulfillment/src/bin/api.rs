//! The fulfillment admin API Lambda.

use adapters::secrets::Prefetched;
use fulfillment::Config;
use fulfillment::dynamo::DynamoFulfillment;
use lambda_glue::http::{Reply, internal};
use lambda_http::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_glue::logging::init();
    let Config { table } = Config::from_env()?;
    let cursor_secret = lambda_glue::config::required("CURSOR_SECRET_ARN")?;
    let aws = adapters::aws::load_config().await;
    let (dynamodb, secretsmanager) = (aws_sdk_dynamodb::Client::new(&aws), aws_sdk_secretsmanager::Client::new(&aws));
    // The cursor secret is read while the runtime asks for the first request, not before it.
    let store = Prefetched::start(move || {
        let (dynamodb, secretsmanager, table, arn) =
            (dynamodb.clone(), secretsmanager.clone(), table.clone(), cursor_secret.clone());
        async move {
            let cursor_keys = adapters::CursorKeys::load(&secretsmanager, &arn).await?;
            Ok::<_, adapters::cursor::KeyError>(DynamoFulfillment::new(dynamodb, table).listing(cursor_keys))
        }
    });
    let store = &store;
    lambda_glue::http::serve(|request| async move {
        match store.get().await {
            Ok(store) => fulfillment::api::handle(store, request).await,
            Err(error) => Reply::problem(&internal(&error)),
        }
    })
    .await
}
