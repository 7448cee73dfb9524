//! The cart read-model consumer Lambda.

use lambda_glue::consumer::Trigger;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_glue::logging::init();
    let store = cart::store().await?;
    let store = &store;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        let trigger = Trigger::parse(event.payload)?;
        Ok::<_, Error>(cart::events::handle(store, trigger).await?)
    }))
    .await
}
