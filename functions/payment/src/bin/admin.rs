//! Payment's admin API Lambda (`POST /admin/orders/{id}/refunds`, group `admin`).

use adapters::aws::load_config;
use adapters::secrets::OnFirstUse;
use lambda_glue::http::{Reply, internal};
use lambda_http::Error;
use payment::Config;
use payment::dynamo::DynamoPayments;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_glue::logging::init();
    let Config { table, stripe_secret, stripe_api_base } = Config::from_env()?;
    let aws = load_config().await;
    let secretsmanager = adapters::aws::Deferred::new(&aws, aws_sdk_secretsmanager::Client::new);
    // The Stripe key is read by the first request that needs it, not at init.
    let gateway = OnFirstUse::new(payment::secrets::gateway_loader(secretsmanager, stripe_secret, stripe_api_base));
    let store = DynamoPayments::new(aws_sdk_dynamodb::Client::new(&aws), table);
    let (store, gateway) = (&store, &gateway);
    lambda_glue::http::serve(|request| async move {
        match gateway.get().await {
            Ok(gateway) => payment::admin::handle(store, gateway, &request, time::OffsetDateTime::now_utc()).await,
            Err(error) => Reply::problem(&internal(&error)),
        }
    })
    .await
}
