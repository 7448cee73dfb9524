//! The Stripe webhook Lambda (`POST /webhooks/stripe`, no JWT: Stripe signs its requests).

use adapters::aws::load_config;
use lambda_http::Error;
use payment::Config;
use payment::dynamo::DynamoPayments;
use payment::secrets::SigningSource;
use payment::stripe::StripeGateway;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_glue::logging::init();
    let config = Config::from_env()?;
    let signing = SigningSource::from_env()?;
    let aws = load_config().await;
    let secretsmanager = aws_sdk_secretsmanager::Client::new(&aws);
    let secret = payment::secrets::resolve(config.stripe_secret, &secretsmanager).await?;
    let signing_secrets = payment::secrets::signing_secrets(signing, &secretsmanager).await?;
    let gateway = StripeGateway::new(&secret, config.stripe_api_base.as_deref())?;
    let store = DynamoPayments::new(aws_sdk_dynamodb::Client::new(&aws), config.table);
    let (store, gateway, signing_secrets) = (&store, &gateway, signing_secrets.as_slice());
    lambda_glue::http::serve(|request| async move {
        let now = time::OffsetDateTime::now_utc();
        payment::webhook::handle(store, gateway, store, signing_secrets, &request, now).await
    })
    .await
}
