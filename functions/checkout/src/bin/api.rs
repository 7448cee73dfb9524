//! The checkout API Lambda.

use checkout::Config;
use checkout::api::Context;
use checkout::cart_client::LambdaCarts;
use checkout::dynamo::DynamoOrders;
use checkout::fulfillment_client::LambdaFulfillment;
use lambda_http::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_glue::logging::init();
    let config = Config::from_env()?;
    let cart_query = lambda_glue::config::required("CART_QUERY_FUNCTION")?;
    let fulfillment_query = lambda_glue::config::required("FULFILLMENT_QUERY_FUNCTION")?;
    // Only this function serves listings, so only it is given the cursor secret (not checkout-events).
    let cursor_secret = lambda_glue::config::required("CURSOR_SECRET_ARN")?;
    let aws = adapters::aws::load_config().await;
    let lambda = aws_sdk_lambda::Client::new(&aws);
    let cursor_keys = adapters::CursorKeys::load(&aws_sdk_secretsmanager::Client::new(&aws), &cursor_secret).await?;
    let context = Context {
        store: DynamoOrders::new(aws_sdk_dynamodb::Client::new(&aws), config.table).listing(cursor_keys),
        carts: LambdaCarts::new(lambda.clone(), cart_query),
        fulfillment: LambdaFulfillment::new(lambda, fulfillment_query),
        settings: config.settings,
    };
    let context = &context;
    lambda_glue::http::serve(|request| checkout::api::handle(context, request)).await
}
