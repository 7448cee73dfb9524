//! The payment event consumer Lambda (SQS queue).

use adapters::inbox::DynamoInbox;
use adapters::secrets::OnFirstUse;
use lambda_glue::consumer::HandlerError;
use payment::Config;
use payment::dynamo::DynamoPayments;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_glue::logging::init();
    let Config { table, stripe_secret, stripe_api_base } = Config::from_env()?;
    let aws = adapters::aws::load_config().await;
    let secretsmanager = adapters::aws::Deferred::new(&aws, aws_sdk_secretsmanager::Client::new);
    // The Stripe key is read by the first batch, not at init; a failed read fails that batch
    // (SQS delivers it again) and a later batch reads again.
    let gateway = OnFirstUse::new(payment::secrets::gateway_loader(secretsmanager, stripe_secret, stripe_api_base));
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let inbox = DynamoInbox::new(dynamodb.clone(), &table);
    let store = DynamoPayments::new(dynamodb, table);
    let (store, gateway, inbox) = (&store, &gateway, &inbox);
    lambda_glue::consumer::serve(|trigger| async move {
        let gateway = gateway.get().await.map_err(HandlerError::transient)?;
        payment::events::handle(store, gateway, inbox, trigger).await
    })
    .await
}
