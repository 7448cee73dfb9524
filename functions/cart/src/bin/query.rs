//! The cart query Lambda, invoked directly by checkout.

use domain_events::queries::GetCart;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_glue::logging::init();
    let store = cart::store().await?;
    let store = &store;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<GetCart>| async move {
        Ok::<_, Error>(cart::query::handle(store, event.payload).await?)
    }))
    .await
}
