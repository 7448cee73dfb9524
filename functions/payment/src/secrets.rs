//! The Stripe secret key from AWS Secrets Manager, read once at cold start
//! ([`adapters::secrets`] does the reading).
//!
//! The secret's `SecretString` is either the key itself (`sk_live_…`) or a JSON object with a
//! `secret_key` field (what the console's key/value editor writes). Nothing here logs or formats
//! the value, and errors name the secret's ARN only.

use crate::{SecretSource, StripeSecret};

/// Why the Stripe secret key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("could not read the Stripe secret")]
    Read(#[from] adapters::secrets::SecretError),
    #[error("the Stripe secret {arn} is empty, or JSON without a non-empty string `secret_key`")]
    NoKey { arn: String },
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

#[cfg(test)]
mod tests {
    use super::*;

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
