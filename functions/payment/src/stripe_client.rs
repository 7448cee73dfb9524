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
//! The transport is the HTTP client every SDK client of a payment binary sends through
//! ([`adapters::aws::https_connector`], [`adapters::http`]): hyper 1 and hyper-util's pooled
//! client, HTTP/1.1 only, over rustls on ring trusting Mozilla's roots (`webpki-roots`), with a
//! pool of its own. So a payment binary links one HTTP stack for DynamoDB, Secrets Manager and
//! Stripe alike; a client of its own (hyper-util's client over hyper-rustls) was a second
//! instantiation of hyper's client beside the SDK's: 0.18 MB stripped and 0.1 MB zipped per
//! payment binary (BENCHMARKS.md).
//!
//! - **Kept connections.** Up to two idle connections are kept for 20 s, so the calls of one
//!   message (up to four) and of the next pay one TCP + TLS handshake, not one each. A kept
//!   connection may have died while the Lambda was frozen (the server or a NAT gateway dropped
//!   it), which shows only when a request is written to it: hyper-util sends again a request
//!   not yet written (`retry_canceled_requests`), and [`Transport`] sends once more a request
//!   whose connection (kept or new) closed or was reset before any answer, if it may be sent
//!   twice: a `GET`, or a request with an idempotency key (Stripe answers the repeat with the
//!   first result). A connection that could not be made is not such a case (nothing was sent).
//!   Otherwise one attempt per call whatever the strategy says (`Once` or `Idempotent`: the
//!   key is sent); SQS redelivery is the retry ([`crate::stripe`]). The connector has no
//!   timeouts of its own: each call, retry included, is bounded by the call's timeout.
//! - **Plain http** only to a loopback host (127.0.0.0/8, `::1`, `localhost`: the local
//!   emulator); any other `http://` base is refused when the transport is built, so a
//!   misconfigured `STRIPE_API_BASE` cannot send the secret key in clear.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{HttpConnector as _, SharedHttpConnector};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::http::Headers;
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue, USER_AGENT};
use stripe_client_core::{CustomizedStripeRequest, StripeClient, StripeClientErr, StripeMethod};

/// Stripe's API root.
const STRIPE_API: &str = "https://api.stripe.com/";

/// Idle connections kept to Stripe: a function handles one message at a time, so one is used
/// at once; two leave room for a call racing the pool's return of the last one.
const KEPT_CONNECTIONS: usize = 2;

/// How long an idle connection is kept: long enough for the next call of the same message or
/// batch (up to four per message), far below the keep-alive of the servers and NAT gateways on
/// the way (NAT gateway: 350 s; common HTTP servers: 60–75 s).
const KEPT_FOR: Duration = Duration::from_secs(20);

/// A call to Stripe that did not answer what was asked.
#[derive(Debug)]
pub enum StripeError {
    /// Stripe answered an error: its body, the HTTP status, and whether Stripe replayed an
    /// answer saved under the request's idempotency key (`Idempotent-Replayed: true`).
    Api { error: Box<ApiError>, status: u16, replayed: bool },
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
            Self::Api { error, status, replayed } => write!(
                f,
                "HTTP {status} {} {}: {}{}",
                error.type_,
                error.code.as_deref().unwrap_or("-"),
                error.message.as_deref().unwrap_or(""),
                if *replayed { " (replayed)" } else { "" }
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
    /// Why a `failed` refund failed.
    pub failure_reason: Option<String>,
}

/// A page of refunds (`GET /v1/refunds`).
#[derive(Debug, miniserde::Deserialize)]
pub struct RefundPage {
    pub data: Vec<RefundReply>,
    pub has_more: bool,
}

/// A Dispute as the gateway reads it (`GET /v1/disputes/{id}`).
#[derive(Debug, miniserde::Deserialize)]
pub struct DisputeReply {
    pub id: String,
    /// In Stripe's minor units.
    pub amount: i64,
    /// Lower-case ISO code.
    pub currency: String,
    pub payment_intent: Option<String>,
    pub reason: Option<String>,
    pub status: String,
}

/// Why a [`Transport`] was not built.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Never repeats the key.
    #[error("the Stripe secret key is not a valid header value")]
    Key,
    #[error("Stripe API base {0:?} is not an http:// or https:// URL with a host")]
    NotUrl(String),
    #[error(
        "Stripe API base {0:?} would send the secret key unencrypted: http:// is only for a loopback host \
         (127.0.0.0/8, ::1, localhost), such as the local emulator; use https://"
    )]
    PlainHttp(String),
}

/// An API base the key may be sent to: any `https://` URL, or `http://` to a loopback host
/// (127.0.0.0/8, `::1`, `localhost`), where the local emulator listens. Plain http to anywhere
/// else would put the secret key on the network in clear, so a misconfigured
/// `STRIPE_API_BASE` fails here, before any request, rather than leaking it.
fn check_base(base: &str) -> Result<(), TransportError> {
    let not_url = || TransportError::NotUrl(base.to_owned());
    let uri: hyper::Uri = base.parse().map_err(|_| not_url())?;
    let host = uri.host().filter(|host| !host.is_empty()).ok_or_else(not_url)?;
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") => {
            // An IPv6 literal comes bracketed (`[::1]`).
            let ip = host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>();
            let loopback = ip.is_ok_and(|ip| ip.is_loopback()) || host.eq_ignore_ascii_case("localhost");
            if loopback { Ok(()) } else { Err(TransportError::PlainHttp(base.to_owned())) }
        }
        _ => Err(not_url()),
    }
}

/// The HTTP client for Stripe: implements async-stripe's [`StripeClient`].
#[derive(Clone)]
pub struct Transport {
    connector: SharedHttpConnector,
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

impl Transport {
    /// A client for `api_base` (Stripe itself when `None`) with `secret_key`, each call
    /// limited to `timeout`. Refused when the key cannot be a header value, or when `api_base`
    /// would carry it in clear to another machine ([`check_base`]). Built with the gateway, at
    /// the first invocation that needs Stripe, not at init.
    pub fn new(secret_key: &str, api_base: Option<&str>, timeout: Duration) -> Result<Self, TransportError> {
        let mut api_base = api_base.unwrap_or(STRIPE_API).to_owned();
        check_base(&api_base)?;
        if !api_base.ends_with('/') {
            api_base.push('/');
        }
        let mut authorization =
            HeaderValue::from_str(&format!("Bearer {secret_key}")).map_err(|_| TransportError::Key)?;
        authorization.set_sensitive(true);
        let connector = adapters::aws::https_connector(KEPT_CONNECTIONS, KEPT_FOR);
        Ok(Self { connector, api_base, authorization, timeout })
    }

    /// Sends the request `build` makes and reads the answer. A request that may be sent twice
    /// is sent once more when its connection closed before any answer came: a kept connection
    /// the server or a NAT gateway dropped while the Lambda was frozen looks open until a
    /// request is written to it. (hyper-util already sends again, whatever the request, when a
    /// kept connection is found closed before the request is written: `retry_canceled_requests`,
    /// on by default.) A connection that fails after the answer began is not retried.
    async fn attempt(
        &self,
        build: impl Fn() -> Result<HttpRequest, StripeError>,
        repeatable: bool,
    ) -> Result<Answer, StripeError> {
        let response = match self.connector.call(build()?).await {
            Err(error) if repeatable && closed_unanswered(&error) => {
                tracing::warn!(error = %chain(&error), "Stripe connection closed before an answer; sending once more");
                self.connector.call(build()?).await
            }
            sent => sent,
        };
        let response = response.map_err(|error| StripeError::Connection(chain(&error)))?;
        let status = response.status().as_u16();
        let replayed = replayed(response.headers());
        let body = response.into_body().collect().await.map_err(|error| StripeError::Connection(chain(&*error)))?;
        Ok(Answer { status, replayed, body: body.to_bytes() })
    }
}

/// An answer as [`Transport::attempt`] read it.
struct Answer {
    status: u16,
    /// Stripe replayed the answer saved under the request's idempotency key.
    replayed: bool,
    body: Bytes,
}

/// Whether the answer carries `Idempotent-Replayed: true`: the answer Stripe saved under the
/// idempotency key when a request with it first began executing, sent again.
fn replayed(headers: &Headers) -> bool {
    headers.get("idempotent-replayed").is_some_and(|value| value.trim().eq_ignore_ascii_case("true"))
}

/// Whether a request's connection closed (or was reset) before the answer's head: the server
/// ended it without answering (hyper's "connection closed before message completed"; over TLS,
/// rustls' "peer closed connection without sending TLS close_notify", an `UnexpectedEof`) or the
/// peer reset it. Failing to connect (hyper-util's connect error, whatever its cause) is not
/// such a case: nothing was sent. Read from the causes the connector keeps under its
/// [`ConnectorError`].
fn closed_unanswered(error: &ConnectorError) -> bool {
    use std::error::Error as _;
    use std::io::ErrorKind;
    let mut source = error.source();
    while let Some(cause) = source {
        if cause.downcast_ref::<hyper_util::client::legacy::Error>().is_some_and(|error| error.is_connect()) {
            return false;
        }
        if cause.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_incomplete_message) {
            return true;
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::BrokenPipe
                    | ErrorKind::UnexpectedEof
            ) {
                return true;
            }
            // An io::Error's `source` is its payload's source: the payload (another io::Error,
            // say, as the TLS connector wraps a reset) would be skipped.
            source = io.get_ref().map(|payload| payload as &(dyn std::error::Error + 'static));
            continue;
        }
        source = cause.source();
    }
    false
}

/// An error with its causes (`io error: client error (Connect): tcp connect error: Connection
/// refused`): each message names only its own stage.
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
        let key = config.request_strategy.as_ref().and_then(|strategy| strategy.get_key());
        // A GET changes nothing, and Stripe answers a request sent again under its idempotency
        // key with the first one's result: only those may be sent twice.
        let repeatable = method == hyper::Method::GET || key.is_some();
        let body = request.body.map(Bytes::from).unwrap_or_default();
        let build = || {
            let mut builder = hyper::Request::builder()
                .method(method.clone())
                .uri(uri.as_str())
                .header(AUTHORIZATION, self.authorization.clone())
                .header(USER_AGENT, "ferrocart (async-stripe-core)")
                .header(HeaderName::from_static("stripe-version"), stripe_shared::version::VERSION.as_str());
            if let Some(key) = &key {
                builder = builder.header(HeaderName::from_static("idempotency-key"), key.as_str());
            }
            if let Some(account) = &config.account_id {
                builder = builder.header(HeaderName::from_static("stripe-account"), account.as_str());
            }
            if !body.is_empty() {
                builder = builder.header(CONTENT_TYPE, "application/x-www-form-urlencoded");
            }
            let request =
                builder.body(SdkBody::from(body.clone())).map_err(|error| StripeError::Config(error.to_string()))?;
            HttpRequest::try_from(request).map_err(|error| StripeError::Config(error.to_string()))
        };
        let timeout = config.timeout.unwrap_or(self.timeout);
        let answer = tokio::time::timeout(timeout, self.attempt(build, repeatable))
            .await
            .map_err(|_| StripeError::Timeout)??;
        if (200..300).contains(&answer.status) {
            return Ok(answer.body);
        }
        Err(api_error(answer.status, answer.replayed, &answer.body))
    }
}

/// An error answer read as [`StripeError::Api`]. One that is not Stripe's error object is
/// unreadable, except a 429 or 5xx: a proxy or load balancer in front of Stripe answers those
/// with a page of its own, and they are Stripe's `api_error` (try again later), not a contract
/// break.
fn api_error(status: u16, replayed: bool, body: &[u8]) -> StripeError {
    let envelope =
        std::str::from_utf8(body).ok().and_then(|text| miniserde::json::from_str::<ErrorEnvelope>(text).ok());
    match envelope {
        Some(envelope) => StripeError::Api { error: Box::new(envelope.error), status, replayed },
        None if status == 429 || status >= 500 => StripeError::Api {
            error: Box::new(ApiError {
                type_: "api_error".to_owned(),
                code: None,
                decline_code: None,
                message: Some(format!("HTTP {status} without Stripe's error object")),
                param: None,
            }),
            status,
            replayed,
        },
        None => StripeError::Unreadable(format!("HTTP {status} without Stripe's error object")),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use stripe_client_core::{IdempotencyKey, RequestBuilder, RequestStrategy};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    const REFUND: &str = r#"{"id": "re_1", "amount": 500, "currency": "usd", "status": "succeeded", "metadata": null}"#;

    /// One request's head (with its body, if any) read off `stream`; `None` at end of stream.
    async fn read_request(stream: &mut TcpStream) -> Option<String> {
        let mut buffer = Vec::new();
        let mut chunk = [0_u8; 4096];
        loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .map_or(0, |n| n.trim().parse::<usize>().unwrap());
                if buffer.len() >= end + 4 + length {
                    return Some(head);
                }
            }
            let read = stream.read(&mut chunk).await.ok()?;
            if read == 0 {
                return None;
            }
            buffer.extend_from_slice(&chunk[..read]);
        }
    }

    /// A Stripe on loopback whose first connection answers one request, then takes the next
    /// and closes without answering a byte: what a kept connection that went stale while the
    /// Lambda was frozen does (the server or a NAT dropped it). Later connections answer every
    /// request. Returns its base URL and the heads of the requests it received.
    async fn stripe_dropping_a_kept_connection() -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&received);
        tokio::spawn(async move {
            for connection in 0.. {
                let Ok((mut stream, _)) = listener.accept().await else { return };
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    for request in 0.. {
                        let Some(head) = read_request(&mut stream).await else { return };
                        seen.lock().unwrap().push(head);
                        if connection == 0 && request == 1 {
                            return; // closed, not a byte answered
                        }
                        let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{REFUND}", REFUND.len());
                        if stream.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (base, received)
    }

    async fn refund(client: &Transport, strategy: RequestStrategy) -> Result<RefundReply, StripeError> {
        RequestBuilder::new(StripeMethod::Post, "/refunds")
            .form(&[("payment_intent", "pi_1")])
            .customize::<RefundReply>()
            .request_strategy(strategy)
            .send(client)
            .await
    }

    fn key(value: &str) -> RequestStrategy {
        RequestStrategy::Idempotent(IdempotencyKey::new(value).unwrap())
    }

    fn idempotency_keys(received: &Mutex<Vec<String>>) -> Vec<String> {
        let received = received.lock().unwrap();
        received
            .iter()
            .map(|head| head.lines().find_map(|l| l.strip_prefix("idempotency-key: ")).unwrap_or("-").to_owned())
            .collect()
    }

    #[tokio::test]
    async fn a_kept_connection_closed_before_any_answer_is_sent_again_once_under_the_same_key() {
        let (base, received) = stripe_dropping_a_kept_connection().await;
        let client = Transport::new("sk_test_1", Some(&base), Duration::from_secs(5)).unwrap();
        refund(&client, key("ferrocart:first")).await.unwrap();

        let second = refund(&client, key("ferrocart:second")).await;

        assert_eq!(second.unwrap().id, "re_1");
        assert_eq!(idempotency_keys(&received), ["ferrocart:first", "ferrocart:second", "ferrocart:second"]);
    }

    #[tokio::test]
    async fn a_request_without_an_idempotency_key_is_not_sent_again() {
        let (base, received) = stripe_dropping_a_kept_connection().await;
        let client = Transport::new("sk_test_1", Some(&base), Duration::from_secs(5)).unwrap();
        refund(&client, key("ferrocart:first")).await.unwrap();

        let second = refund(&client, RequestStrategy::Once).await;

        assert!(matches!(second, Err(StripeError::Connection(_))), "{second:?}");
        assert_eq!(idempotency_keys(&received), ["ferrocart:first", "-"]);
    }

    /// A server on loopback that takes each connection's first byte (the start of a TLS
    /// ClientHello) and closes it with the rest unread, so the client sees a reset during the
    /// handshake. Returns its `https://` base and how many connections it took.
    async fn resetting_every_handshake() -> (String, Arc<Mutex<usize>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("https://{}/", listener.local_addr().unwrap());
        let accepted = Arc::new(Mutex::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                *count.lock().unwrap() += 1;
                let _ = stream.read(&mut [0_u8; 1]).await;
            }
        });
        (base, accepted)
    }

    #[test]
    fn a_tls_connection_closed_without_close_notify_is_closed_before_any_answer() {
        // What rustls answers when a kept HTTPS connection was closed by the server (FIN, no
        // close_notify) and the request is written to it; plain http reads the same close as
        // hyper's incomplete message, which the tests above meet.
        let eof = std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "peer closed connection without sending TLS close_notify",
        );
        assert!(closed_unanswered(&ConnectorError::io(Box::new(eof))));
    }

    #[tokio::test]
    async fn a_connection_reset_while_connecting_is_not_sent_again() {
        let (base, accepted) = resetting_every_handshake().await;
        let client = Transport::new("sk_test_1", Some(&base), Duration::from_secs(5)).unwrap();

        let read: Result<RefundReply, _> =
            RequestBuilder::new(StripeMethod::Get, "/refunds/re_1").customize().send(&client).await;

        let Err(StripeError::Connection(message)) = read else { panic!("not a connection error: {read:?}") };
        assert!(message.contains("Connect"), "{message}");
        assert_eq!(*accepted.lock().unwrap(), 1, "a GET whose connection was never made is sent once");
    }

    /// A Stripe on loopback answering every request with a 500, the first one fresh and the
    /// next ones replayed under the key, as Stripe answers a 5xx it saved.
    async fn stripe_failing_then_replaying() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let body = r#"{"error": {"type": "api_error", "message": "An unknown error occurred"}}"#;
            let Ok((mut stream, _)) = listener.accept().await else { return };
            for request in 0.. {
                if read_request(&mut stream).await.is_none() {
                    return;
                }
                let replayed = if request == 0 { "" } else { "Idempotent-Replayed: true\r\n" };
                let answer = format!(
                    "HTTP/1.1 500 Internal Server Error\r\n{replayed}content-length: {}\r\n\r\n{body}",
                    body.len()
                );
                if stream.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
        base
    }

    #[tokio::test]
    async fn a_5xx_answer_says_whether_stripe_replayed_it() {
        let client =
            Transport::new("sk_test_1", Some(&stripe_failing_then_replaying().await), Duration::from_secs(5)).unwrap();

        let first = refund(&client, key("ferrocart:k")).await;
        let again = refund(&client, key("ferrocart:k")).await;

        assert!(matches!(first, Err(StripeError::Api { status: 500, replayed: false, .. })), "{first:?}");
        assert!(matches!(again, Err(StripeError::Api { status: 500, replayed: true, .. })), "{again:?}");
    }

    #[test]
    fn the_key_goes_over_plain_http_only_to_a_loopback_host() {
        for base in [
            "https://api.stripe.com/",
            "https://stripe.internal.example:8443",
            "http://127.0.0.1:12111/",
            "http://127.8.9.10",
            "http://[::1]:12111/",
            "http://localhost:12111",
            "http://LOCALHOST/",
        ] {
            assert!(check_base(base).is_ok(), "{base}");
        }

        for base in
            ["http://api.stripe.com/", "http://10.0.0.5:12111/", "http://[::2]/", "http://localhost.evil.example/"]
        {
            assert!(matches!(check_base(base), Err(TransportError::PlainHttp(_))), "{base}");
        }
        for base in ["ftp://127.0.0.1/", "api.stripe.com", "http:///v1", ""] {
            assert!(matches!(check_base(base), Err(TransportError::NotUrl(_))), "{base}");
        }
    }

    #[test]
    fn a_transport_for_a_plain_http_base_elsewhere_is_refused_saying_why() {
        let refused = Transport::new("sk_test_1", Some("http://stripe.example.com/"), Duration::from_secs(1));

        let message = refused.unwrap_err().to_string();
        assert!(message.contains("http://stripe.example.com/") && message.contains("loopback"), "{message}");
        assert!(!message.contains("sk_test"), "{message}");
    }

    #[test]
    fn an_error_answer_reads_as_stripes_type_code_and_decline_code() {
        let body = br#"{"error": {"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds",
            "message": "Your card has insufficient funds.", "payment_intent": {"id": "pi_1", "object": "payment_intent"}}}"#;

        let StripeError::Api { error, status: 402, replayed: false } = api_error(402, false, body) else {
            panic!("not an API error")
        };
        assert_eq!((error.type_.as_str(), error.code.as_deref()), ("card_error", Some("card_declined")));
        assert_eq!(error.decline_code.as_deref(), Some("insufficient_funds"));
        assert_eq!(error.param, None);
    }

    #[test]
    fn an_error_answer_that_is_not_stripes_is_unreadable_unless_it_says_try_again() {
        assert!(matches!(api_error(400, false, b"<html>Bad Request</html>"), StripeError::Unreadable(_)));
        for status in [429, 500, 502, 503] {
            let error = api_error(status, false, b"<html>Bad Gateway</html>");
            assert!(
                matches!(&error, StripeError::Api { error: api, status: s, .. } if api.type_ == "api_error" && *s == status),
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
