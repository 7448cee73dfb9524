//! The Stripe webhook Lambda (`POST /webhooks/stripe`, no JWT: Stripe signs its requests).

use adapters::aws::load_config;
use adapters::secrets::Prefetched;
use lambda_glue::http::{Reply, internal};
use lambda_http::Error;
use payment::Config;
use payment::dynamo::DynamoPayments;
use payment::secrets::{GatewayStartError, SigningSource};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_glue::logging::init();
    let Config { table, stripe_secret, stripe_api_base } = Config::from_env()?;
    let signing = SigningSource::from_env()?;
    let aws = load_config().await;
    let secretsmanager = aws_sdk_secretsmanager::Client::new(&aws);
    // Both secrets are read, together, while the runtime asks for the first request.
    let secrets = Prefetched::start(move || {
        let (secretsmanager, source, api_base) =
            (secretsmanager.clone(), stripe_secret.clone(), stripe_api_base.clone());
        let signing = signing.clone();
        async move {
            let (gateway, signing_secrets) = tokio::join!(
                payment::secrets::gateway(source, &secretsmanager, api_base.as_deref()),
                payment::secrets::signing_secrets(signing, &secretsmanager),
            );
            Ok::<_, GatewayStartError>((gateway?, signing_secrets?))
        }
    });
    let store = DynamoPayments::new(aws_sdk_dynamodb::Client::new(&aws), table);
    let (store, secrets) = (&store, &secrets);
    lambda_glue::http::serve(|request| async move {
        let (gateway, signing_secrets) = match secrets.get().await {
            Ok((gateway, signing_secrets)) => (gateway, signing_secrets.as_slice()),
            Err(error) => return Reply::problem(&internal(&error)),
        };
        let now = time::OffsetDateTime::now_utc();
        payment::webhook::handle(store, gateway, store, signing_secrets, &request, now).await
    })
    .await
}
