//! Payment's admin API Lambda (`POST /admin/orders/{id}/refunds`, group `admin`).

use adapters::aws::load_config;
use lambda_http::Error;
use payment::Config;
use payment::dynamo::DynamoPayments;
use payment::stripe::StripeGateway;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_glue::logging::init();
    let config = Config::from_env()?;
    let aws = load_config().await;
    let secret = payment::secrets::resolve(config.stripe_secret, &aws_sdk_secretsmanager::Client::new(&aws)).await?;
    let gateway = StripeGateway::new(&secret, config.stripe_api_base.as_deref())?;
    let store = DynamoPayments::new(aws_sdk_dynamodb::Client::new(&aws), config.table);
    let (store, gateway) = (&store, &gateway);
    lambda_glue::http::serve(|request| async move {
        payment::admin::handle(store, gateway, &request, time::OffsetDateTime::now_utc()).await
    })
    .await
}
