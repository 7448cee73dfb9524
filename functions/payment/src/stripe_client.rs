//! The HTTP client that sends async-stripe's requests, and the few fields of Stripe's answers
//! that payment reads.
//!
//! The requests themselves are async-stripe's (`async-stripe-core`: `CreatePaymentIntent`,
//! `CreateRefund`, … build the path and the form body; `async-stripe-client-core`: the
//! [`StripeClient`] trait, [`RequestStrategy`] and idempotency keys). What is ours is the transport
//! and what an answer is read into:
//!
//! - **Answers.** A request is sent with `.build().customize::<T>()`, `T` one of the small
//!   structs below ([`IntentReply`], [`RefundReply`], [`RefundPage`]) that name only what the
//!   gateway reads. async-stripe's own `PaymentIntent` and `Refund` reach, through their
//!   expandable fields, nearly every object of Stripe's API (charges, accounts, every payment
//!   method, issuing), and a binary that deserializes one links all of their generated
//!   deserializers: 2.6 MiB of code per payment binary (`cargo bloat`, BENCHMARKS.md).
//! - **Errors.** async-stripe's hyper `Client` reads every error answer into its `ApiErrors`,
//!   which embeds a whole `PaymentIntent`, `PaymentMethod`, `SetupIntent` and payment source, so
//!   using that client links the same deserializers whatever the answers are read into. Ours reads
//!   an error into [`ApiError`]: type, code, decline code, message, parameter.
//!
//! The transport is hyper 1 with rustls (ring) and compiled-in roots (webpki-root-certs), the
//! stack the AWS SDK already links; HTTP/1.1, no idle connections kept (a frozen Lambda's pooled
//! connection is dead when it thaws), `http://` allowed for the local emulator. One attempt per
//! call whatever the strategy says (`Once` or `Idempotent`: the idempotency key is sent); SQS
//! redelivery is the retry ([`crate::stripe`]).

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue, USER_AGENT};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use stripe_client_core::{CustomizedStripeRequest, StripeClient, StripeClientErr, StripeMethod};

/// Stripe's API root.
const STRIPE_API: &str = "https://api.stripe.com/";

/// A call to Stripe that did not answer what was asked.
#[derive(Debug)]
pub enum StripeError {
    /// Stripe answered an error (its body and the HTTP status).
    Api(Box<ApiError>, u16),
    /// No answer: the connection failed.
    Connection(String),
    /// No answer within the call's timeout.
    Timeout,
    /// An answer that could not be read.
    Unreadable(String),
    /// A request we could not send as built (a header value that is not one).
    Config(String),
}

impl fmt::Display for StripeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Api(error, status) => write!(
                f,
                "HTTP {status} {} {}: {}",
                error.type_,
                error.code.as_deref().unwrap_or("-"),
                error.message.as_deref().unwrap_or("")
            ),
            Self::Connection(message) => write!(f, "could not reach Stripe: {message}"),
            Self::Timeout => f.write_str("no answer from Stripe in time"),
            Self::Unreadable(message) => write!(f, "unreadable answer from Stripe: {message}"),
            Self::Config(message) => write!(f, "request not sent: {message}"),
        }
    }
}

impl std::error::Error for StripeError {}

impl StripeClientErr for StripeError {
    fn deserialize_err(msg: impl fmt::Display) -> Self {
        Self::Unreadable(msg.to_string())
    }
}

/// Stripe's error object (`{"error": {...}}`), the fields the gateway sorts errors by.
#[derive(Debug, Clone, PartialEq, Eq, miniserde::Deserialize)]
pub struct ApiError {
    /// `card_error`, `invalid_request_error`, `idempotency_error`, `api_error`, …
    #[serde(rename = "type")]
    pub type_: String,
    pub code: Option<String>,
    pub decline_code: Option<String>,
    pub message: Option<String>,
    pub param: Option<String>,
}

#[derive(miniserde::Deserialize)]
struct ErrorEnvelope {
    error: ApiError,
}

/// A PaymentIntent as the gateway reads it.
#[derive(Debug, miniserde::Deserialize)]
pub struct IntentReply {
    pub id: String,
    /// `requires_payment_method`, `requires_confirmation`, `requires_action`, `processing`,
    /// `requires_capture`, `canceled`, `succeeded`.
    pub status: String,
    pub client_secret: Option<String>,
    pub last_payment_error: Option<ApiError>,
    pub metadata: Option<HashMap<String, String>>,
}

/// A Refund as the gateway reads it.
#[derive(Debug, miniserde::Deserialize)]
pub struct RefundReply {
    pub id: String,
    /// In Stripe's minor units.
    pub amount: i64,
    /// Lower-case ISO code.
    pub currency: String,
    pub status: Option<String>,
    pub metadata: Option<HashMap<String, String>>,
}

/// A page of refunds (`GET /v1/refunds`).
#[derive(Debug, miniserde::Deserialize)]
pub struct RefundPage {
    pub data: Vec<RefundReply>,
    pub has_more: bool,
}

/// The HTTP client for Stripe: implements async-stripe's [`StripeClient`].
#[derive(Clone)]
pub struct Transport {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    api_base: String,
    authorization: HeaderValue,
    timeout: Duration,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("Transport").field("api_base", &self.api_base).finish_non_exhaustive()
    }
}

/// rustls on ring, named explicitly (a build that also links aws-lc-rs, as the workspace's test
/// tools do, has no single default provider for `ClientConfig::builder` to pick), trusting the
/// compiled-in Mozilla roots: the same `webpki-root-certs` the SDK's client trusts
/// (`adapters::aws`), so one copy of the roots is linked. They are parsed here, when the gateway
/// is built at the first invocation that needs Stripe, not at init.
#[allow(clippy::expect_used, reason = "ring's default provider supports rustls' default protocol versions")]
fn tls_config() -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(rustls::crypto::ring::default_provider().into())
        .with_safe_default_protocol_versions()
        .expect("ring supports TLS 1.2 and 1.3")
        .with_root_certificates(roots())
        .with_no_client_auth()
}

/// Every compiled-in root as a trust anchor.
fn roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned());
    roots
}

impl Transport {
    /// A client for `api_base` (Stripe itself when `None`) with `secret_key`, each attempt
    /// limited to `timeout`. `None` when the key cannot be a header value.
    pub fn new(secret_key: &str, api_base: Option<&str>, timeout: Duration) -> Option<Self> {
        let mut authorization = HeaderValue::from_str(&format!("Bearer {secret_key}")).ok()?;
        authorization.set_sensitive(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config())
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(0).build(connector);
        let mut api_base = api_base.unwrap_or(STRIPE_API).to_owned();
        if !api_base.ends_with('/') {
            api_base.push('/');
        }
        Some(Self { client, api_base, authorization, timeout })
    }

    async fn attempt(&self, request: hyper::Request<Full<Bytes>>) -> Result<(u16, Bytes), StripeError> {
        let response = self.client.request(request).await.map_err(|error| StripeError::Connection(chain(&error)))?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.map_err(|error| StripeError::Connection(chain(&error)))?;
        Ok((status, body.to_bytes()))
    }
}

/// An error with its causes (`client error (Connect): tcp connect error: Connection refused`):
/// hyper's own message names only the stage that failed.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl StripeClient for Transport {
    type Err = StripeError;

    async fn execute(&self, request: CustomizedStripeRequest) -> Result<Bytes, StripeError> {
        let (request, config) = request.into_pieces();
        let mut uri = format!("{}v1{}", self.api_base, request.path);
        if let Some(query) = &request.query {
            uri.push('?');
            uri.push_str(query);
        }
        let method = match request.method {
            StripeMethod::Get => hyper::Method::GET,
            StripeMethod::Post => hyper::Method::POST,
            StripeMethod::Delete => hyper::Method::DELETE,
        };
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(uri)
            .header(AUTHORIZATION, self.authorization.clone())
            .header(USER_AGENT, "ferrocart (async-stripe-core)")
            .header(HeaderName::from_static("stripe-version"), stripe_shared::version::VERSION.as_str());
        if let Some(key) = config.request_strategy.as_ref().and_then(|strategy| strategy.get_key()) {
            builder = builder.header(HeaderName::from_static("idempotency-key"), key.as_str());
        }
        if let Some(account) = &config.account_id {
            builder = builder.header(HeaderName::from_static("stripe-account"), account.as_str());
        }
        if request.body.is_some() {
            builder = builder.header(CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        let request = builder
            .body(Full::new(request.body.map(Bytes::from).unwrap_or_default()))
            .map_err(|error| StripeError::Config(error.to_string()))?;
        let timeout = config.timeout.unwrap_or(self.timeout);
        let (status, body) =
            tokio::time::timeout(timeout, self.attempt(request)).await.map_err(|_| StripeError::Timeout)??;
        if (200..300).contains(&status) {
            return Ok(body);
        }
        Err(api_error(status, &body))
    }
}

/// An error answer read as [`StripeError::Api`]. One that is not Stripe's error object is
/// unreadable, except a 429 or 5xx: a proxy or load balancer in front of Stripe answers those
/// with a page of its own, and they are Stripe's `api_error` (try again later), not a contract
/// break.
fn api_error(status: u16, body: &[u8]) -> StripeError {
    let envelope =
        std::str::from_utf8(body).ok().and_then(|text| miniserde::json::from_str::<ErrorEnvelope>(text).ok());
    match envelope {
        Some(envelope) => StripeError::Api(Box::new(envelope.error), status),
        None if status == 429 || status >= 500 => StripeError::Api(
            Box::new(ApiError {
                type_: "api_error".to_owned(),
                code: None,
                decline_code: None,
                message: Some(format!("HTTP {status} without Stripe's error object")),
                param: None,
            }),
            status,
        ),
        None => StripeError::Unreadable(format!("HTTP {status} without Stripe's error object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_compiled_in_root_is_trusted() {
        // The roots are the SDK's, as DER: one that rustls could not parse would be dropped.
        assert!(webpki_root_certs::TLS_SERVER_ROOT_CERTS.len() > 100);
        assert_eq!(roots().len(), webpki_root_certs::TLS_SERVER_ROOT_CERTS.len());
        let _config = tls_config();
    }

    #[test]
    fn an_error_answer_reads_as_stripes_type_code_and_decline_code() {
        let body = br#"{"error": {"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds",
            "message": "Your card has insufficient funds.", "payment_intent": {"id": "pi_1", "object": "payment_intent"}}}"#;

        let StripeError::Api(error, 402) = api_error(402, body) else { panic!("not an API error") };
        assert_eq!((error.type_.as_str(), error.code.as_deref()), ("card_error", Some("card_declined")));
        assert_eq!(error.decline_code.as_deref(), Some("insufficient_funds"));
        assert_eq!(error.param, None);
    }

    #[test]
    fn an_error_answer_that_is_not_stripes_is_unreadable_unless_it_says_try_again() {
        assert!(matches!(api_error(400, b"<html>Bad Request</html>"), StripeError::Unreadable(_)));
        for status in [429, 500, 502, 503] {
            let error = api_error(status, b"<html>Bad Gateway</html>");
            assert!(
                matches!(&error, StripeError::Api(api, s) if api.type_ == "api_error" && *s == status),
                "{status}: {error}"
            );
        }
    }

    #[test]
    fn a_payment_intent_reads_as_its_id_status_secret_error_and_metadata() {
        let intent: IntentReply = miniserde::json::from_str(
            r#"{"id": "pi_1", "object": "payment_intent", "amount": 1999, "status": "requires_payment_method",
                "client_secret": null, "latest_charge": {"id": "ch_1", "outcome": {"type": "issuer_declined"}},
                "last_payment_error": {"type": "card_error", "code": "card_declined"},
                "metadata": {"order_id": "ord_1"}}"#,
        )
        .unwrap();

        assert_eq!((intent.id.as_str(), intent.status.as_str()), ("pi_1", "requires_payment_method"));
        assert_eq!(intent.client_secret, None);
        assert_eq!(intent.last_payment_error.and_then(|error| error.code).as_deref(), Some("card_declined"));
        assert_eq!(intent.metadata.unwrap()["order_id"], "ord_1");
    }

    #[test]
    fn a_page_of_refunds_reads_as_amounts_currencies_and_metadata() {
        let page: RefundPage = miniserde::json::from_str(
            r#"{"object": "list", "has_more": false, "url": "/v1/refunds", "data": [
                {"id": "re_1", "amount": 500, "currency": "usd", "status": "succeeded", "charge": "ch_1",
                 "metadata": {"refund_id": "rfd_1"}},
                {"id": "re_2", "amount": 100, "currency": "usd", "status": null, "metadata": null}]}"#,
        )
        .unwrap();

        assert!(!page.has_more);
        assert_eq!(page.data.iter().map(|refund| refund.amount).collect::<Vec<_>>(), [500, 100]);
        assert_eq!(page.data[0].metadata.as_ref().unwrap()["refund_id"], "rfd_1");
        assert_eq!((page.data[1].status.as_deref(), page.data[1].metadata.is_none()), (None, true));
    }
}
