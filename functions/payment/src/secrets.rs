//! The Stripe secret key from AWS Secrets Manager, read once per cold start
//! ([`adapters::secrets`] does the reading). Each payment function reads it when an invocation
//! first needs it, `OnFirstUse::new(gateway_loader(..))` ([`gateway_loader`] builds the
//! [`StripeGateway`] with [`gateway`]; the webhook function also keeps [`signing_loader`]), not
//! at init; a failed read fails that invocation, and a later one reads again after
//! [`adapters::secrets::OnFirstUse`]'s backoff.
//!
//! The secret's `SecretString` is either the key itself (`sk_live_…`) or a JSON object with a
//! `secret_key` field (what the console's key/value editor writes). Nothing here logs or formats
//! the value, and errors name the secret's ARN only.

use adapters::aws::Deferred;
use adapters::secrets::Loading;

use crate::ports::GatewayError;
use crate::signature::SigningSecret;
use crate::stripe::StripeGateway;
use crate::{SecretSource, StripeSecret};

/// Why the Stripe secret key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("could not read the Stripe secret")]
    Read(#[from] adapters::secrets::SecretError),
    #[error(
        "the Stripe secret {arn} is empty, or JSON without a non-empty string `secret_key` (`signing_secret` for the webhook's)"
    )]
    NoKey { arn: String },
}

/// Why the Stripe gateway could not be built.
#[derive(Debug, thiserror::Error)]
pub enum GatewayStartError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("could not build the Stripe client")]
    Client(#[from] GatewayError),
}

/// The Stripe gateway for `api_base` (Stripe itself when `None`), its key resolved from `source`.
pub async fn gateway(
    source: SecretSource,
    client: &aws_sdk_secretsmanager::Client,
    api_base: Option<&str>,
) -> Result<StripeGateway, GatewayStartError> {
    Ok(StripeGateway::new(&resolve(source, client).await?, api_base)?)
}

/// What [`OnFirstUse`] runs to build the Stripe gateway ([`gateway`]): every payment
/// function's, so the three do not each spell out the same closure.
///
/// [`OnFirstUse`]: adapters::secrets::OnFirstUse
pub fn gateway_loader(
    client: Deferred<aws_sdk_secretsmanager::Client>,
    source: SecretSource,
    api_base: Option<String>,
) -> impl Fn() -> Loading<StripeGateway, GatewayStartError> + Send + Sync + 'static {
    move || {
        let (client, source, api_base) = (client.clone(), source.clone(), api_base.clone());
        Box::pin(async move { gateway(source, client.get(), api_base.as_deref()).await })
    }
}

/// What [`OnFirstUse`] runs to read the webhook's signing secrets ([`signing_secrets`]).
///
/// [`OnFirstUse`]: adapters::secrets::OnFirstUse
pub fn signing_loader(
    client: Deferred<aws_sdk_secretsmanager::Client>,
    source: SigningSource,
) -> impl Fn() -> Loading<Vec<SigningSecret>, SecretError> + Send + Sync + 'static {
    move || {
        let (client, source) = (client.clone(), source.clone());
        Box::pin(async move { signing_secrets(source, client.get()).await })
    }
}

/// The key itself, fetching it from Secrets Manager when that is where it lives.
pub async fn resolve(
    source: SecretSource,
    client: &aws_sdk_secretsmanager::Client,
) -> Result<StripeSecret, SecretError> {
    let arn = match source {
        SecretSource::Key(key) => return Ok(key),
        SecretSource::SecretsManager { arn } => arn,
    };
    let value = adapters::secrets::current(client, &arn).await?;
    parse(value.expose()).ok_or(SecretError::NoKey { arn })
}

/// Reads a `SecretString`: `{"secret_key": "sk_…"}` or the bare key.
pub fn parse(value: &str) -> Option<StripeSecret> {
    #[derive(serde::Deserialize)]
    struct Stored {
        secret_key: String,
    }
    let value = value.trim();
    if value.starts_with('{') {
        // The parse error is dropped on purpose: serde_json quotes the values it could not read.
        let stored: Stored = serde_json::from_str(value).ok()?;
        return StripeSecret::new(stored.secret_key);
    }
    StripeSecret::new(value)
}

/// Where the webhook's signing secret comes from: `STRIPE_WEBHOOK_SECRET` (the secret itself,
/// local runs and tests) or `STRIPE_WEBHOOK_SECRET_ARN` (Secrets Manager, in AWS).
#[derive(Debug, Clone)]
pub enum SigningSource {
    Value(String),
    SecretsManager { arn: String },
}

impl SigningSource {
    pub fn from_env() -> Result<Self, lambda_glue::ConfigError> {
        Ok(match std::env::var("STRIPE_WEBHOOK_SECRET") {
            Ok(value) if !value.trim().is_empty() => Self::Value(value),
            _ => Self::SecretsManager { arn: lambda_glue::config::required("STRIPE_WEBHOOK_SECRET_ARN")? },
        })
    }
}

/// The webhook endpoint's signing secrets, read once at cold start: the current one and, while
/// it is being rolled, the previous one.
pub async fn signing_secrets(
    source: SigningSource,
    client: &aws_sdk_secretsmanager::Client,
) -> Result<Vec<SigningSecret>, SecretError> {
    let (value, arn) = match source {
        SigningSource::Value(value) => (value, "STRIPE_WEBHOOK_SECRET".to_owned()),
        SigningSource::SecretsManager { arn } => {
            (adapters::secrets::current(client, &arn).await?.expose().to_owned(), arn)
        }
    };
    let secrets = parse_signing(&value);
    if secrets.is_empty() {
        return Err(SecretError::NoKey { arn });
    }
    Ok(secrets)
}

/// Reads a signing secret's `SecretString`: the bare `whsec_…`, or
/// `{"signing_secret": "whsec_…", "previous_signing_secret": "whsec_…"}` while rolling it.
pub fn parse_signing(value: &str) -> Vec<SigningSecret> {
    #[derive(serde::Deserialize)]
    struct Stored {
        signing_secret: String,
        previous_signing_secret: Option<String>,
    }
    let value = value.trim();
    if value.starts_with('{') {
        // The parse error is dropped on purpose: serde_json quotes the values it could not read.
        let Ok(stored) = serde_json::from_str::<Stored>(value) else { return Vec::new() };
        return [Some(stored.signing_secret), stored.previous_signing_secret]
            .into_iter()
            .flatten()
            .filter_map(|secret| SigningSecret::new(&secret))
            .collect();
    }
    SigningSecret::new(value).into_iter().collect()
}

#[cfg(test)]
mod tests {
    use adapters::secrets::OnFirstUse;

    use super::*;

    #[tokio::test]
    async fn the_gateway_loader_builds_the_gateway_and_a_failed_build_fails_the_use_that_awaited_it() {
        let client = Deferred::new(&adapters::aws::load_config().await, aws_sdk_secretsmanager::Client::new);
        let key = SecretSource::Key(StripeSecret::new("sk_test_1").unwrap());
        let local = OnFirstUse::new(gateway_loader(client.clone(), key.clone(), Some("http://127.0.0.1:12111".into())));
        let in_clear = OnFirstUse::new(gateway_loader(client, key, Some("http://stripe.example.com".into())));

        let (built, refused) = (local.get().await.is_ok(), in_clear.get().await.err());

        assert!(built);
        assert!(matches!(refused.as_ref().map(|e| e.error()), Some(GatewayStartError::Client(_))), "{refused:?}");
    }

    #[test]
    fn a_signing_secret_is_bare_or_json_with_the_previous_one_while_rolling() {
        assert_eq!(parse_signing(" whsec_1\n").len(), 1);
        assert_eq!(parse_signing(r#"{"signing_secret": "whsec_2", "previous_signing_secret": "whsec_1"}"#).len(), 2);
        assert!(parse_signing(r#"{"secret": "whsec_2"}"#).is_empty());
        assert!(parse_signing("").is_empty());
    }

    #[test]
    fn a_bare_key_is_the_key() {
        assert_eq!(parse(" sk_test_123\n").map(|s| s.expose().to_owned()).as_deref(), Some("sk_test_123"));
    }

    #[test]
    fn a_json_secret_gives_its_secret_key_field() {
        let secret = parse(r#"{"secret_key": "sk_test_456", "publishable_key": "pk_test_1"}"#);

        assert_eq!(secret.map(|s| s.expose().to_owned()).as_deref(), Some("sk_test_456"));
    }

    #[test]
    fn json_without_a_secret_key_or_an_empty_value_gives_nothing() {
        assert!(parse(r#"{"key": "sk_test_456"}"#).is_none());
        assert!(parse(r#"{"secret_key": ""}"#).is_none());
        assert!(parse("").is_none());
    }
}
