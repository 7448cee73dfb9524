//! The payment event consumer Lambda (SQS queue).

use lambda_glue::consumer::Trigger;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use payment::Config;
use payment::dynamo::DynamoPayments;
use payment::stripe::StripeGateway;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_glue::logging::init();
    let config = Config::from_env()?;
    let aws = adapters::aws::load_config().await;
    let secret = payment::secrets::resolve(config.stripe_secret, &aws_sdk_secretsmanager::Client::new(&aws)).await?;
    let gateway = StripeGateway::new(&secret, config.stripe_api_base.as_deref())?;
    let store = DynamoPayments::new(aws_sdk_dynamodb::Client::new(&aws), config.table);
    let (store, gateway) = (&store, &gateway);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        let trigger = Trigger::parse(event.payload)?;
        Ok::<_, Error>(payment::events::handle(store, gateway, trigger).await?)
    }))
    .await
}
