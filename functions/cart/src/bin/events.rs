//! The cart read-model consumer Lambda.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_glue::logging::init();
    let store = cart::store().await?;
    lambda_glue::consumer::serve(|trigger| cart::events::handle(&store, trigger)).await
}
