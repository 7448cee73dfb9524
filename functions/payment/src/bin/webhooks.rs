//! The Stripe webhook Lambda (`POST /webhooks/stripe`, no JWT: Stripe signs its requests).

use adapters::aws::load_config;
use adapters::secrets::OnFirstUse;
use lambda_glue::http::{Reply, internal};
use lambda_http::Error;
use payment::Config;
use payment::dynamo::DynamoPayments;
use payment::secrets::{SigningSource, gateway_loader, signing_loader};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_glue::logging::init();
    let Config { table, stripe_secret, stripe_api_base } = Config::from_env()?;
    let signing = SigningSource::from_env()?;
    let aws = load_config().await;
    let secretsmanager = adapters::aws::Deferred::new(&aws, aws_sdk_secretsmanager::Client::new);
    // Both secrets are read, together, by the first request, not at init.
    let gateway = OnFirstUse::new(gateway_loader(secretsmanager.clone(), stripe_secret, stripe_api_base));
    let signing_secrets = OnFirstUse::new(signing_loader(secretsmanager, signing));
    let store = DynamoPayments::new(aws_sdk_dynamodb::Client::new(&aws), table);
    let (store, gateway, signing_secrets) = (&store, &gateway, &signing_secrets);
    lambda_glue::http::serve(|request| async move {
        let (gateway, signing_secrets) = match tokio::join!(gateway.get(), signing_secrets.get()) {
            (Ok(gateway), Ok(signing_secrets)) => (gateway, signing_secrets.as_slice()),
            (Err(error), _) => return Reply::problem(&internal(&error)),
            (_, Err(error)) => return Reply::problem(&internal(&error)),
        };
        let now = time::OffsetDateTime::now_utc();
        payment::webhook::handle(store, gateway, store, signing_secrets, &request, now).await
    })
    .await
}
