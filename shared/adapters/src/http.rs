//! The HTTP client every SDK client of a function sends through: HTTP/1.1 only, over rustls on
//! ring, trusting Mozilla's root certificates compiled into the binary.
//!
//! [`Client`] implements the SDK's [`HttpClient`] and [`Connector`] its [`HttpConnector`], on
//! hyper 1 and hyper-util's pooled client (`client-legacy`, `http1`, `tokio`) over hyper-rustls.
//! It replaces the SDK's own (aws-smithy-http-client with `rustls-ring`), which turns on hyper's
//! and hyper-util's `http2` unconditionally: h2 was 0.4 MB of code in every function, linked twice
//! (the Lambda runtime's hyper-util client gets the unified feature too), for services that all
//! answer HTTP/1.1 (DynamoDB, EventBridge, SQS, Secrets Manager, Lambda). What it does, as the
//! SDK's client does:
//!
//! - **Timeouts** from the SDK's [`HttpConnectorSettings`]: the connect timeout bounds TCP and the
//!   TLS handshake together, the read timeout the wait for the response head (from the request's
//!   start, a kept connection's wait included); the body is the caller's to bound. Both run on
//!   tokio's timer (every function runs a current-thread tokio runtime). [`Client`] keeps one
//!   [`Connector`] (one pool) per distinct pair of timeouts: our SDK clients all share one.
//! - **Errors** as [`ConnectorError`]s the SDK's standard retry reads: a connect or read timeout is
//!   `timeout`; a failure to resolve or connect (refused, unreachable, TLS handshake) and a
//!   connection closed, reset or aborted before the answer are `io` (transient: retried); a
//!   request that cannot be built, or whose body fails while it is sent, is `user`; anything
//!   else (hyper-util's own refusals, such as a URI without a host, among them) `other`. The causes are kept
//!   (hyper-util's error, then hyper's, then the `io::Error`), so a caller can read them.
//! - **Connection poisoning**: when the request carries the SDK's `CaptureSmithyConnection`, it
//!   gets the connection's addresses and a poison function (hyper-util's `Connected::poison`), so
//!   after a transient error the SDK's retry does not go out on the same connection.
//! - **Pool**: idle connections are kept 90 s, any number per host (hyper-util's defaults, and
//!   the SDK client's). A function runs one invocation at a time; an environment invoked more
//!   often than every 90 s pays one TCP + TLS handshake per host, not one per invocation, and a
//!   kept connection never outlives a NAT gateway's 350 s idle mapping. A kept connection that
//!   died while the environment was frozen is caught by hyper-util's resend of a request not yet
//!   written, or else by the SDK's retry (an `io` error, the connection poisoned).
//! - **Schemes**: `https`, and plain `http` for the local cloud's emulators
//!   (`AWS_ENDPOINT_URL=http://localstack:4566`, not only loopback); ALPN offers `http/1.1` only.
//!
//! Not built, on purpose: HTTP/2 (no AWS service we call needs it); proxies (neither did the SDK's
//! client read any for us: `HTTPS_PROXY` and friends are ignored); the SDK's per-attempt telemetry
//! hook. The trust store is `webpki-roots` (Mozilla's list as trust anchors, already parsed at
//! compile time), built into a `RootCertStore` at the first request: no certificate file is read,
//! nothing is parsed. A certificate authority added to the OS store is not trusted, and the roots
//! change with `cargo update -p webpki-roots`, not with the OS image. AWS's endpoints chain to
//! Amazon Trust Services roots, which are in Mozilla's list.
//!
//! The body type is the SDK's [`SdkBody`] both ways, so another caller (payment's Stripe client,
//! through [`crate::aws::https_connector`]) sends through the same instantiation of hyper's client.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::connection::{CaptureSmithyConnection, ConnectionMetadata};
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use hyper::Uri;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::{CaptureConnection, HttpConnector as TcpConnector, HttpInfo};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::{ClientConfig, RootCertStore};

/// How long an idle connection is kept, and how many per host, for the SDK's requests.
const SDK_POOL: Pool = Pool { idle_for: Duration::from_secs(90), per_host: usize::MAX };

/// The pool of a [`Connector`]: how long an idle connection is kept, and how many per host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool {
    pub idle_for: Duration,
    pub per_host: usize,
}

/// The SDK's [`HttpClient`]: builds nothing until the SDK asks for its first connector (the first
/// request), then one [`Connector`] per distinct pair of connect and read timeouts.
#[derive(Debug, Default)]
pub struct Client {
    connectors: Mutex<Vec<(Timeouts, SharedHttpConnector)>>,
}

/// A connector's connect and read timeouts.
type Timeouts = (Option<Duration>, Option<Duration>);

impl HttpClient for Client {
    fn http_connector(&self, settings: &HttpConnectorSettings, _: &RuntimeComponents) -> SharedHttpConnector {
        let timeouts = (settings.connect_timeout(), settings.read_timeout());
        let mut connectors = self.connectors.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, connector)) = connectors.iter().find(|(kept, _)| *kept == timeouts) {
            return connector.clone();
        }
        let connector = SharedHttpConnector::new(Connector::new(SDK_POOL, timeouts.0, timeouts.1));
        connectors.push((timeouts, connector.clone()));
        connector
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        Some(ConnectorMetadata::new("hyper", Some(Cow::Borrowed("1.x"))))
    }
}

/// One pool of HTTP/1.1 connections (plain or TLS) and the timeouts its requests get.
#[derive(Clone, Debug)]
pub struct Connector {
    client: hyper_util::client::legacy::Client<Connect, SdkBody>,
    read_timeout: Option<Duration>,
}

impl Connector {
    /// A connector keeping idle connections as `pool` says; `connect_timeout` bounds TCP and TLS
    /// together, `read_timeout` the wait for the response head. `None`: no bound.
    pub fn new(pool: Pool, connect_timeout: Option<Duration>, read_timeout: Option<Duration>) -> Self {
        let mut tcp = TcpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        let https = HttpsConnector::from((tcp, tls_config()));
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(pool.idle_for)
            .pool_max_idle_per_host(pool.per_host)
            .build(Connect { https, timeout: connect_timeout });
        Self { client, read_timeout }
    }
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let mut request = match request.try_into_http1x() {
            Ok(request) => request,
            Err(error) => return HttpConnectorFuture::ready(Err(ConnectorError::user(error.into()))),
        };
        let captured = hyper_util::client::legacy::connect::capture_connection(&mut request);
        if let Some(smithy) = request.extensions().get::<CaptureSmithyConnection>() {
            smithy.set_connection_retriever(move || connection_metadata(&captured));
        }
        let sending = self.client.request(request);
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let response = match read_timeout {
                None => sending.await,
                Some(limit) => tokio::time::timeout(limit, sending)
                    .await
                    .map_err(|_| ConnectorError::timeout(Box::new(TimedOut { stage: "response", after: limit })))?,
            };
            let response = response.map_err(classify)?;
            HttpResponse::try_from(response.map(SdkBody::from_body_1_x))
                .map_err(|error| ConnectorError::other(error.into(), None))
        })
    }
}

/// The connection's addresses and a poison function that keeps hyper-util's pool from handing it
/// out again, for the SDK's `CaptureSmithyConnection`; `None` before a connection was made.
fn connection_metadata(captured: &CaptureConnection) -> Option<ConnectionMetadata> {
    let connected = captured.connection_metadata();
    let connected = connected.as_ref()?;
    let mut extras = hyper::http::Extensions::new();
    connected.get_extras(&mut extras);
    let info = extras.get::<HttpInfo>();
    let poisoned = captured.clone();
    let mut metadata = ConnectionMetadata::builder().proxied(false).poison_fn(move || {
        if let Some(connected) = poisoned.connection_metadata().as_ref() {
            connected.poison();
        }
    });
    metadata.set_remote_addr(info.map(HttpInfo::remote_addr)).set_local_addr(info.map(HttpInfo::local_addr));
    Some(metadata.build())
}

/// The SDK's kind of a failed request: see the module docs.
fn classify(error: hyper_util::client::legacy::Error) -> ConnectorError {
    if cause::<TimedOut>(&error).is_some() {
        return ConnectorError::timeout(error.into());
    }
    if error.is_connect() {
        return ConnectorError::io(error.into());
    }
    if let Some(hyper) = cause::<hyper::Error>(&error) {
        if hyper.is_timeout() {
            return ConnectorError::timeout(error.into());
        }
        if hyper.is_user() {
            return ConnectorError::user(error.into());
        }
        if hyper.is_closed() || hyper.is_canceled() || hyper.is_incomplete_message() {
            return ConnectorError::io(error.into());
        }
    }
    if cause::<std::io::Error>(&error).is_some() {
        return ConnectorError::io(error.into());
    }
    ConnectorError::other(error.into(), None)
}

/// The first error of type `E` among `error` and its causes.
fn cause<'a, E: StdError + 'static>(error: &'a (dyn StdError + 'static)) -> Option<&'a E> {
    std::iter::successors(Some(error), |&error| error.source()).find_map(|error| error.downcast_ref::<E>())
}

/// A connect or read timeout ran out.
#[derive(Debug, thiserror::Error)]
#[error("no {stage} within {after:?}")]
struct TimedOut {
    /// "connection" or "response".
    stage: &'static str,
    after: Duration,
}

/// hyper-rustls' connector (TCP, then TLS for `https`) with the connect timeout around both.
#[derive(Clone, Debug)]
struct Connect {
    https: HttpsConnector<TcpConnector>,
    timeout: Option<Duration>,
}

type Stream = MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>;

impl tower_service::Service<Uri> for Connect {
    type Response = Stream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.https.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.https.call(uri);
        let timeout = self.timeout;
        Box::pin(async move {
            match timeout {
                None => connecting.await,
                Some(limit) => tokio::time::timeout(limit, connecting)
                    .await
                    .map_err(|_| Box::new(TimedOut { stage: "connection", after: limit }) as BoxError)?,
            }
        })
    }
}

/// rustls on ring, trusting Mozilla's roots (`webpki-roots`) and nothing else, offering
/// `http/1.1` by ALPN. Built once, at the first connector, and shared.
#[allow(clippy::expect_used, reason = "ring's default provider supports rustls' default versions")]
fn tls_config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    Arc::clone(CONFIG.get_or_init(|| {
        let roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        let mut config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports TLS 1.2 and 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use aws_credential_types::Credentials;
    use aws_credential_types::provider::SharedCredentialsProvider;
    use aws_sdk_dynamodb::error::SdkError;
    use aws_sdk_dynamodb::types::AttributeValue;
    use aws_smithy_async::rt::sleep::default_async_sleep;
    use aws_smithy_runtime_api::client::behavior_version::BehaviorVersion;
    use aws_smithy_runtime_api::client::runtime_components::RuntimeComponentsBuilder;
    use aws_smithy_types::retry::RetryConfig;
    use aws_smithy_types::timeout::TimeoutConfig;
    use aws_types::SdkConfig;
    use aws_types::region::Region;
    use http_body_util::BodyExt as _;
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    const ITEM: &str = r#"{"Item":{"pk":{"S":"order#1"},"total":{"N":"1200"}}}"#;

    /// One request off `stream`: its head, lower-cased (the `content-length` body is read and
    /// dropped); `None` when the connection closed first.
    async fn read_request(stream: &mut BufReader<TcpStream>) -> Option<String> {
        let mut head = String::new();
        loop {
            let start = head.len();
            if stream.read_line(&mut head).await.ok()? == 0 {
                return None;
            }
            if &head[start..] == "\r\n" {
                break;
            }
        }
        let head = head.to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .map_or(0, |value| value.trim().parse::<usize>().unwrap());
        stream.read_exact(&mut vec![0; length]).await.ok()?;
        Some(head)
    }

    fn answer(body: &str) -> String {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    /// A server on a local port that hands every connection it accepts to `serve`, counting them.
    async fn server<F, Fut>(serve: F) -> (String, Arc<AtomicUsize>)
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream));
            }
        });
        (format!("http://{address}"), accepted)
    }

    /// Answers every request on a connection with [`ITEM`], keeping it open.
    async fn answering(stream: TcpStream) {
        let mut stream = BufReader::new(stream);
        while read_request(&mut stream).await.is_some() {
            if stream.get_mut().write_all(answer(ITEM).as_bytes()).await.is_err() {
                return;
            }
        }
    }

    /// Reads the request, then closes the connection without a word.
    async fn hanging_up(stream: TcpStream) {
        let _ = read_request(&mut BufReader::new(stream)).await;
    }

    /// Reads the request and never answers (holds the connection until the client goes).
    async fn silent(stream: TcpStream) {
        let mut stream = BufReader::new(stream);
        let _ = read_request(&mut stream).await;
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
    }

    /// Accepts and holds the connection, reading nothing and writing nothing.
    async fn mute(mut stream: TcpStream) {
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
    }

    /// A DynamoDB client on our HTTP client, against `endpoint`, with `retry` and `timeouts`.
    fn dynamodb(endpoint: &str, retry: RetryConfig, timeouts: TimeoutConfig) -> aws_sdk_dynamodb::Client {
        let config = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .http_client(crate::aws::https_client())
            .sleep_impl(default_async_sleep().unwrap())
            .region(Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "AKID", "secret", None, None, "test",
            )))
            .retry_config(retry)
            .timeout_config(timeouts)
            .build();
        aws_sdk_dynamodb::Client::new(&config)
    }

    fn get_item(
        client: &aws_sdk_dynamodb::Client,
    ) -> aws_sdk_dynamodb::operation::get_item::builders::GetItemFluentBuilder {
        client.get_item().table_name("Orders").key("pk", AttributeValue::S("order#1".to_owned()))
    }

    fn request(uri: &str) -> HttpRequest {
        HttpRequest::try_from(hyper::Request::builder().uri(uri).body(SdkBody::empty()).unwrap()).unwrap()
    }

    fn connector_error<E: std::fmt::Debug, R: std::fmt::Debug>(error: &SdkError<E, R>) -> &ConnectorError {
        match error {
            SdkError::DispatchFailure(failure) => failure.as_connector_error().unwrap(),
            other => panic!("not a dispatch failure: {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_sdk_client_reads_its_answer_through_it() {
        let (endpoint, accepted) = server(answering).await;
        let client = dynamodb(&endpoint, RetryConfig::standard(), TimeoutConfig::builder().build());

        let item = get_item(&client).send().await.unwrap().item.unwrap();
        assert_eq!(item["pk"], AttributeValue::S("order#1".to_owned()));
        assert_eq!(item["total"], AttributeValue::N("1200".to_owned()));
        get_item(&client).send().await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "the second call went out on the kept connection");
    }

    #[tokio::test]
    async fn a_connection_closed_before_an_answer_is_io_and_the_sdk_sends_again() {
        let (endpoint, accepted) = server(hanging_up).await;
        let retry = RetryConfig::standard().with_max_attempts(3).with_initial_backoff(Duration::from_millis(1));
        let client = dynamodb(&endpoint, retry, TimeoutConfig::builder().build());

        let error = get_item(&client).send().await.unwrap_err();
        let error = connector_error(&error);
        assert!(error.is_io(), "{error:?}");
        assert_eq!(accepted.load(Ordering::SeqCst), 3, "three attempts, each on a new connection");
    }

    #[tokio::test]
    async fn a_server_that_never_answers_is_a_timeout_after_the_read_timeout() {
        let (endpoint, _) = server(silent).await;
        let timeouts = TimeoutConfig::builder().read_timeout(Duration::from_millis(200)).build();
        let client = dynamodb(&endpoint, RetryConfig::standard().with_max_attempts(1), timeouts);

        let started = std::time::Instant::now();
        let error = get_item(&client).send().await.unwrap_err();
        let error = connector_error(&error);
        assert!(error.is_timeout(), "{error:?}");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(200) && waited < Duration::from_secs(2), "{waited:?}");
    }

    #[tokio::test]
    async fn a_tls_handshake_that_never_ends_is_a_connect_timeout() {
        let (endpoint, accepted) = server(mute).await;
        let connector = Connector::new(SDK_POOL, Some(Duration::from_millis(200)), None);

        let started = std::time::Instant::now();
        let error = connector.call(request(&endpoint.replace("http://", "https://"))).await.unwrap_err();
        assert!(error.is_timeout(), "{error:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "TCP connected; the handshake is what ran out");
    }

    #[tokio::test]
    async fn a_closed_port_is_io() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let connector = Connector::new(SDK_POOL, Some(Duration::from_secs(1)), None);

        let error = connector.call(request(&format!("http://{address}/"))).await.unwrap_err();
        assert!(error.is_io(), "{error:?}");
        assert!(
            cause::<hyper_util::client::legacy::Error>(&error)
                .is_some_and(hyper_util::client::legacy::Error::is_connect),
            "hyper-util's connect error is kept among the causes: {error:?}"
        );
    }

    #[tokio::test]
    async fn a_request_body_that_fails_is_a_user_error() {
        let (endpoint, _) = server(answering).await;
        let connector = Connector::new(SDK_POOL, None, None);
        let request = hyper::Request::post(endpoint).body(SdkBody::from_body_1_x(FailingBody)).unwrap();

        let error = connector.call(HttpRequest::try_from(request).unwrap()).await.unwrap_err();
        assert!(error.is_user(), "{error:?}");
    }

    /// A request body of unknown length whose source fails at once.
    struct FailingBody;

    impl hyper::body::Body for FailingBody {
        type Data = hyper::body::Bytes;
        type Error = BoxError;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
            Poll::Ready(Some(Err("the body's source failed".into())))
        }
    }

    /// The local address of the connection `request` went out on, read through the SDK's capture.
    async fn sent_from(connector: &Connector, endpoint: &str) -> (std::net::SocketAddr, ConnectionMetadata) {
        let capture = CaptureSmithyConnection::new();
        let mut request = request(endpoint);
        request.add_extension(capture.clone());
        let response = connector.call(request).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, ITEM.as_bytes());
        // hyper-util puts the connection back in the pool from a task of its own once the body
        // is read: let it run.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let metadata = capture.get().unwrap();
        (metadata.local_addr().unwrap(), metadata)
    }

    #[tokio::test]
    async fn a_poisoned_connection_is_not_used_again() {
        let (endpoint, accepted) = server(answering).await;
        let connector = Connector::new(SDK_POOL, None, None);

        let (first, metadata) = sent_from(&connector, &endpoint).await;
        assert_eq!(metadata.remote_addr().map(|address| format!("http://{address}")), Some(endpoint.clone()));
        let (second, metadata) = sent_from(&connector, &endpoint).await;
        assert_eq!(second, first, "a healthy connection is kept and used again");

        metadata.poison();
        let (third, _) = sent_from(&connector, &endpoint).await;
        assert_ne!(third, first, "the poisoned connection was dropped");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn one_connector_per_distinct_timeouts() {
        let client = Client::default();
        let components = RuntimeComponentsBuilder::for_tests().build().unwrap();
        let settings = |connect: u64, read: Option<u64>| {
            let mut settings = HttpConnectorSettings::builder().connect_timeout(Duration::from_millis(connect));
            settings.set_read_timeout(read.map(Duration::from_millis));
            settings.build()
        };
        let a = client.http_connector(&settings(3100, None), &components);
        let again = client.http_connector(&settings(3100, None), &components);
        let other = client.http_connector(&settings(3100, Some(500)), &components);
        let id = |connector: &SharedHttpConnector| format!("{connector:?}");
        assert_eq!(client.connectors.lock().unwrap().len(), 2);
        assert_eq!(id(&a), id(&again));
        assert_ne!(id(&a), id(&other));
    }

    #[test]
    fn tls_trusts_the_compiled_in_roots_and_offers_http_1_1_only() {
        assert!(webpki_roots::TLS_SERVER_ROOTS.len() > 100, "Mozilla's list has ~150 roots");
        let config = tls_config();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert!(Arc::ptr_eq(&config, &tls_config()), "built once and shared");
    }
}
