//! The cart API Lambda.

use lambda_http::Error;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_glue::logging::init();
    let store = cart::store().await?;
    let store = &store;
    lambda_glue::http::serve(|request| cart::api::handle(store, request)).await
}
