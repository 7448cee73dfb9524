//! The fulfillment query Lambda, invoked directly by checkout before a customer cancel.

use domain_events::queries::HoldForCancel;
use fulfillment::Config;
use fulfillment::dynamo::DynamoFulfillment;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_glue::logging::init();
    let config = Config::from_env()?;
    let dynamodb = aws_sdk_dynamodb::Client::new(&adapters::aws::load_config().await);
    // The query never lists shipments: a cursor key of its own, not the secret it is not granted.
    let store = DynamoFulfillment::new(dynamodb, config.table);
    let store = &store;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<HoldForCancel>| async move {
        Ok::<_, Error>(fulfillment::query::handle(store, event.payload, time::OffsetDateTime::now_utc()).await?)
    }))
    .await
}
