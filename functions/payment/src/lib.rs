//! # Ferrocart payment
//!
//! Authorizes an order's total on the customer's card once the order is placed *and* its stock
//! is reserved, voids the authorization when the order is cancelled, and captures the whole total
//! when the order's first shipment is dispatched. Payment takes part in the order saga by
//! choreography: it reacts to `OrderPlaced` and `OrderCancelled` (checkout), `StockReserved`
//! (inventory) and `ShipmentDispatched` (fulfillment) from its SQS queue, and answers with
//! `PaymentAuthorized`, `PaymentFailed`, `PaymentVoided`, `PaymentCaptured` or
//! `PaymentCaptureFailed` through its table's outbox. Every minute a sweep finishes
//! the authorizations whose invocation died and whose messages did not come back. A card that
//! needs 3-D Secure leaves the payment awaiting the customer (`PaymentActionRequired`, with the
//! client secret for Stripe.js), and Stripe's webhooks (`POST /webhooks/stripe`) settle it as
//! Stripe says, with the saga's own conditional writes. It never reads another domain's table.
//!
//! The crate reads from the domain outwards:
//!
//! - [`model`]: the payment as data (`Payment`, `Stage`, `Settlement`, `PaymentIntentId`) and
//!   the decisions made from it without I/O: [`model::Payment::next`] (what a delivery or the
//!   sweep does next), [`model::Payment::on_dispatch`] (what a dispatch does) and
//!   [`model::Payment::apply`] (the condition of every stage change).
//! - [`ports`]: what the use cases need from the outside, [`ports::PaymentStore`] and
//!   [`ports::PaymentGateway`], with their errors.
//! - The use cases, each returning [`error::PaymentError`] (transient or not, nothing about
//!   Lambda): [`authorize`] (`OrderPlaced`, `StockReserved`: when to authorize, how a crashed
//!   authorization resumes without charging twice), [`cancel`] (`OrderCancelled`: void, or
//!   abandon an authorization still running), [`capture`] (`ShipmentDispatched`: capture the whole
//!   total once, on the first dispatch; why a whole-order capture; what a lapsed authorization
//!   does), [`sweep`] (list and finish the stalled authorizations) and [`webhook`] (Stripe's
//!   events: what each one does, idempotency by Stripe event id, convergence with the saga).
//! - [`signature`]: `Stripe-Signature` verification (HMAC-SHA256, several `v1`, 300 s
//!   tolerance, constant-time), pure and checked before a webhook's body is read.
//! - The adapters: [`dynamo`], the DynamoDB store and the only module that knows the table's key
//!   layout (every state change is a conditional write); [`stripe`], the Stripe gateway
//!   (async-stripe's requests), creating and cancelling with idempotency keys derived from the
//!   order; [`stripe_client`], the HTTP client that sends them and the few answer fields read; [`secrets`], the Stripe secret
//!   key and the webhook's signing secrets from Secrets Manager at cold start.
//! - [`events`]: the Lambda entry point (binary `payment-events`): the SQS consumer, the sweep's
//!   schedule driven by the glue's sweep loop, and the one mapping of [`error::PaymentError`] to
//!   a transient or permanent handler error. The webhook's entry point is the binary
//!   `payment-webhooks` (`src/bin/webhooks.rs`) around [`webhook::handle`].
//! - `testing` (feature `test-util`): [`ports`] in memory, `FakeStore` and `FakeStripe`, for
//!   unit tests here and in other crates.
//!
//! Card data never reaches Ferrocart: the storefront turns the card into a Stripe payment method
//! (`pm_…`) and checkout passes on only its id.

pub mod admin;
pub mod authorize;
pub mod cancel;
pub mod capture;
pub mod dispute;
pub mod dynamo;
pub mod error;
pub mod events;
pub mod model;
pub mod ports;
pub mod refund;
pub mod refunding;
pub mod secrets;
pub mod signature;
pub mod stripe;
pub mod stripe_client;
pub mod sweep;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod webhook;

use lambda_glue::ConfigError;
use lambda_glue::config::required;

/// A Stripe secret key (`sk_…` or a restricted `rk_…`). Its `Debug` prints `***` and it has no
/// `Display`, so it cannot reach a log line by accident.
#[derive(Clone)]
pub struct StripeSecret(String);

impl StripeSecret {
    /// Wraps a key, refusing an empty one.
    pub fn new(key: impl Into<String>) -> Option<Self> {
        let key = key.into().trim().to_owned();
        (!key.is_empty()).then_some(Self(key))
    }

    /// The key itself, for the Stripe client's `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for StripeSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StripeSecret(***)")
    }
}

/// Where the Stripe secret key comes from.
#[derive(Debug, Clone)]
pub enum SecretSource {
    /// `STRIPE_SECRET_KEY`: the key itself (local runs and tests).
    Key(StripeSecret),
    /// `STRIPE_SECRET_ARN`: a Secrets Manager secret, read once at cold start (in AWS).
    SecretsManager { arn: String },
}

/// The payment function's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `PAYMENT_TABLE`.
    pub table: String,
    /// `STRIPE_SECRET_KEY` if set, otherwise `STRIPE_SECRET_ARN`.
    pub stripe_secret: SecretSource,
    /// `STRIPE_API_BASE` (optional): another Stripe endpoint, such as the local emulator. Always
    /// ends with `/`, because the client appends `v1/…` to it.
    pub stripe_api_base: Option<String>,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let stripe_secret = match std::env::var("STRIPE_SECRET_KEY").ok().and_then(StripeSecret::new) {
            Some(key) => SecretSource::Key(key),
            None => SecretSource::SecretsManager { arn: required("STRIPE_SECRET_ARN")? },
        };
        let stripe_api_base = match std::env::var("STRIPE_API_BASE") {
            Ok(url) if !url.trim().is_empty() => Some(api_base(url.trim())?),
            _ => None,
        };
        Ok(Self { table: required("PAYMENT_TABLE")?, stripe_secret, stripe_api_base })
    }
}

fn api_base(url: &str) -> Result<String, ConfigError> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(ConfigError::Invalid {
            name: "STRIPE_API_BASE",
            value: url.to_owned(),
            reason: "must be an http:// or https:// URL".to_owned(),
        });
    }
    Ok(if url.ends_with('/') { url.to_owned() } else { format!("{url}/") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_shows_in_debug_output() {
        let secret = StripeSecret::new("sk_test_do_not_print").unwrap();

        let printed = format!("{secret:?} {:?}", SecretSource::Key(secret.clone()));

        assert!(!printed.contains("sk_test"), "{printed}");
        assert_eq!(secret.expose(), "sk_test_do_not_print");
    }

    #[test]
    fn an_empty_secret_is_refused() {
        assert!(StripeSecret::new("  ").is_none());
    }

    #[test]
    fn the_api_base_always_ends_with_a_slash_and_must_be_http() {
        assert_eq!(api_base("http://127.0.0.1:4242").unwrap(), "http://127.0.0.1:4242/");
        assert_eq!(api_base("https://stripe.test/prefix/").unwrap(), "https://stripe.test/prefix/");
        assert!(api_base("127.0.0.1:4242").is_err());
    }
}
