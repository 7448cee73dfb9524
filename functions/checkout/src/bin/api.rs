//! The checkout API Lambda.

use adapters::CursorKeys;
use adapters::secrets::OnFirstUse;
use checkout::Config;
use checkout::api::Context;
use checkout::cart_client::LambdaCarts;
use checkout::dynamo::DynamoOrders;
use checkout::fulfillment_client::LambdaFulfillment;
use lambda_http::Error;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_glue::logging::init();
    let Config { table, settings } = Config::from_env()?;
    let cart_query = lambda_glue::config::required("CART_QUERY_FUNCTION")?;
    let fulfillment_query = lambda_glue::config::required("FULFILLMENT_QUERY_FUNCTION")?;
    // Only this function serves listings, so only it is given the cursor secret (not checkout-events).
    let cursor_secret = lambda_glue::config::required("CURSOR_SECRET_ARN")?;
    let aws = adapters::aws::load_config().await;
    // Built by the first placement or cancellation that asks another domain, not at init.
    let lambda = adapters::aws::Deferred::new(&aws, aws_sdk_lambda::Client::new);
    let carts = LambdaCarts::new(lambda.clone(), cart_query);
    let fulfillment = LambdaFulfillment::new(lambda, fulfillment_query);
    let (dynamodb, secretsmanager) =
        (aws_sdk_dynamodb::Client::new(&aws), adapters::aws::Deferred::new(&aws, aws_sdk_secretsmanager::Client::new));
    // The cursor secret is read by the first listing, not at init; only listings await it, so
    // a secret that cannot be read fails them alone.
    let cursor_keys = OnFirstUse::new(CursorKeys::loader(secretsmanager, cursor_secret));
    let store = DynamoOrders::new(dynamodb, table).listing(cursor_keys);
    let context = Context { store, carts, fulfillment, settings };
    let context = &context;
    lambda_glue::http::serve(|request| checkout::api::handle(context, request)).await
}
