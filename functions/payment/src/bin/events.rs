//! The payment event consumer Lambda (SQS queue).

use adapters::inbox::DynamoInbox;
use payment::Config;
use payment::dynamo::DynamoPayments;
use payment::stripe::StripeGateway;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_glue::logging::init();
    let config = Config::from_env()?;
    let aws = adapters::aws::load_config().await;
    let secret = payment::secrets::resolve(config.stripe_secret, &aws_sdk_secretsmanager::Client::new(&aws)).await?;
    let gateway = StripeGateway::new(&secret, config.stripe_api_base.as_deref())?;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let inbox = DynamoInbox::new(dynamodb.clone(), &config.table);
    let store = DynamoPayments::new(dynamodb, config.table);
    lambda_glue::consumer::serve(|trigger| payment::events::handle(&store, &gateway, &inbox, trigger)).await
}
