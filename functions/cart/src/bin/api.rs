//! The cart API Lambda.

use lambda_http::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_glue::logging::init();
    let store = cart::store().await?;
    let store = &store;
    lambda_http::run(service_fn(move |request| async move {
        Ok::<_, std::convert::Infallible>(cart::api::handle(store, request).await)
    }))
    .await
}
