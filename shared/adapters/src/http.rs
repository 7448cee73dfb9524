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
//!   `timeout`; a failure to resolve or connect (refused, unreachable, reset or closed during the
//!   TLS handshake) and a connection closed, reset or aborted before the answer are `io`
//!   (transient: retried); a TLS handshake that rustls refused (a certificate that does not
//!   verify for the host, an unknown issuer, an alert from the server) is `other` with no kind,
//!   which the SDK's standard retry does not retry: the next attempt would meet the same
//!   certificate, and each attempt costs a TCP and TLS handshake and retry tokens (the SDK's own
//!   client calls it `io` and sends it 3 times). A request that cannot be built, or whose body
//!   fails while it is sent, is `user`; anything else (hyper-util's own refusals, such as a URI
//!   without a host, among them) `other`. The causes are kept (hyper-util's error, then hyper's,
//!   then the `io::Error`, whose payload holds rustls' error), so a caller can read them.
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
    /// The TLS config its connections use, for the tests to read (hyper-rustls does not say).
    #[cfg(test)]
    tls: Arc<ClientConfig>,
}

impl Connector {
    /// A connector keeping idle connections as `pool` says; `connect_timeout` bounds TCP and TLS
    /// together, `read_timeout` the wait for the response head. `None`: no bound.
    pub fn new(pool: Pool, connect_timeout: Option<Duration>, read_timeout: Option<Duration>) -> Self {
        Self::with_tls(pool, connect_timeout, read_timeout, tls_config())
    }

    /// [`Connector::new`] with `tls` for its TLS connections: [`tls_config`] in production, a
    /// config trusting a certificate authority made at test time in the tests.
    fn with_tls(
        pool: Pool,
        connect_timeout: Option<Duration>,
        read_timeout: Option<Duration>,
        tls: Arc<ClientConfig>,
    ) -> Self {
        let mut tcp = TcpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        #[cfg(test)]
        let kept = Arc::clone(&tls);
        let https = HttpsConnector::from((tcp, tls));
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(pool.idle_for)
            .pool_max_idle_per_host(pool.per_host)
            .build(Connect { https, timeout: connect_timeout });
        Self {
            client,
            read_timeout,
            #[cfg(test)]
            tls: kept,
        }
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
        // rustls judged what the server sent (its certificate, an alert) and refused: another
        // attempt meets the same certificate. A reset or close during the handshake carries no
        // rustls error and stays `io`.
        if cause::<rustls::Error>(&error).is_some() {
            return ConnectorError::other(error.into(), None);
        }
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

/// The first error of type `E` among `error` and its causes, an `io::Error`'s payload included:
/// an `io::Error`'s `source` is its payload's source, skipping the payload itself (rustls'
/// error, under tokio-rustls' `io::Error`, under hyper-rustls' `io::Error`).
fn cause<'a, E: StdError + 'static>(error: &'a (dyn StdError + 'static)) -> Option<&'a E> {
    std::iter::successors(Some(error), |&error| match error.downcast_ref::<std::io::Error>() {
        Some(io) => io.get_ref().map(|payload| payload as &(dyn StdError + 'static)),
        None => error.source(),
    })
    .find_map(|error| error.downcast_ref::<E>())
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

/// The production TLS config: [`client_config`] trusting Mozilla's roots (`webpki-roots`) and
/// nothing else. Built once, at the first connector, and shared.
fn tls_config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    Arc::clone(
        CONFIG
            .get_or_init(|| Arc::new(client_config(RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() }))),
    )
}

/// rustls on ring (TLS 1.2 and 1.3), verifying servers against `roots`, offering `http/1.1` by
/// ALPN.
#[allow(clippy::expect_used, reason = "ring's default provider supports rustls' default versions")]
fn client_config(roots: RootCertStore) -> ClientConfig {
    let mut config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
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
    use aws_smithy_runtime_api::client::http::{SharedHttpClient, http_client_fn};
    use aws_smithy_runtime_api::client::runtime_components::RuntimeComponentsBuilder;
    use aws_smithy_types::retry::RetryConfig;
    use aws_smithy_types::timeout::TimeoutConfig;
    use aws_types::SdkConfig;
    use aws_types::region::Region;
    use http_body_util::BodyExt as _;
    use rustls::{AlertDescription, CertificateError};
    use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    const ITEM: &str = r#"{"Item":{"pk":{"S":"order#1"},"total":{"N":"1200"}}}"#;

    /// One request off `stream`: its head, lower-cased (the `content-length` body is read and
    /// dropped); `None` when the connection closed first.
    async fn read_request<S: AsyncRead + Unpin>(stream: &mut BufReader<S>) -> Option<String> {
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
        dynamodb_via(crate::aws::https_client(), endpoint, retry, timeouts)
    }

    /// A DynamoDB client on `http`, against `endpoint`, with `retry` and `timeouts`.
    fn dynamodb_via(
        http: SharedHttpClient,
        endpoint: &str,
        retry: RetryConfig,
        timeouts: TimeoutConfig,
    ) -> aws_sdk_dynamodb::Client {
        let config = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .http_client(http)
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
    async fn sent_from(connector: &impl HttpConnector, endpoint: &str) -> (std::net::SocketAddr, ConnectionMetadata) {
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

    #[tokio::test]
    async fn equal_timeouts_share_one_connector_and_its_pool_other_timeouts_get_their_own() {
        let (endpoint, accepted) = server(answering).await;
        let client = Client::default();
        let components = RuntimeComponentsBuilder::for_tests().build().unwrap();
        let settings = |read: Option<u64>| {
            let mut settings = HttpConnectorSettings::builder().connect_timeout(Duration::from_millis(3100));
            settings.set_read_timeout(read.map(Duration::from_millis));
            settings.build()
        };

        let (first, _) = sent_from(&client.http_connector(&settings(None), &components), &endpoint).await;
        let (again, _) = sent_from(&client.http_connector(&settings(None), &components), &endpoint).await;
        let (other, _) = sent_from(&client.http_connector(&settings(Some(5000)), &components), &endpoint).await;

        assert_eq!(again, first, "the second connector for equal timeouts sent on the first one's kept connection");
        assert_ne!(other, first, "a connector for other timeouts has a pool of its own");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(client.connectors.lock().unwrap().len(), 2);
    }

    #[test]
    fn a_connector_trusts_exactly_the_compiled_in_roots_and_offers_http_1_1_only() {
        let connector = Connector::new(SDK_POOL, None, None);

        let config = &connector.tls;
        assert!(Arc::ptr_eq(config, &tls_config()), "the one production config, built once and shared");
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        // rustls has no accessor for the trust anchors a config holds; its verifier's Debug
        // prints the size of its store (`RootCertStore { roots: "(146 roots)" }`).
        let debug = format!("{config:?}");
        let store = format!(r#"RootCertStore {{ roots: "({} roots)" }}"#, webpki_roots::TLS_SERVER_ROOTS.len());
        assert_eq!((debug.matches("RootCertStore").count(), debug.matches(&store).count()), (1, 1), "{debug}");
    }

    /// A certificate authority made for one test.
    struct Ca(rcgen::CertifiedIssuer<'static, rcgen::KeyPair>);

    impl Ca {
        /// An authority named `name` (webpki looks an issuer up by name, then checks its key).
        fn new(name: &str) -> Self {
            let mut params = rcgen::CertificateParams::default();
            params.distinguished_name.push(rcgen::DnType::CommonName, name);
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
            Self(rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap())
        }

        /// A client config as the production one, trusting this authority and nothing else.
        fn trusted(&self) -> Arc<ClientConfig> {
            let mut roots = RootCertStore::empty();
            roots.add(self.0.der().clone()).unwrap();
            Arc::new(client_config(roots))
        }

        /// A server certificate for `name`, issued by this authority.
        fn issue(&self, name: &str) -> Identity {
            let key = rcgen::KeyPair::generate().unwrap();
            let certificate = server_params(name).signed_by(&key, &self.0).unwrap();
            Identity { certificate: certificate.der().clone(), key }
        }
    }

    /// A server certificate for `name` that signs itself.
    fn self_signed(name: &str) -> Identity {
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = server_params(name).self_signed(&key).unwrap();
        Identity { certificate: certificate.der().clone(), key }
    }

    fn server_params(name: &str) -> rcgen::CertificateParams {
        let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params
    }

    /// What a TLS server presents: its certificate and key.
    struct Identity {
        certificate: rustls::pki_types::CertificateDer<'static>,
        key: rcgen::KeyPair,
    }

    /// What a TLS server saw: the server name and protocol of each handshake it completed, the
    /// error that ended each it did not, and the requests it read.
    #[derive(Debug, Default)]
    struct Seen {
        handshakes: Vec<(Option<String>, Option<Vec<u8>>)>,
        refused: Vec<rustls::Error>,
        requests: usize,
    }

    /// A TLS server on a local port presenting `identity`, answering every request with
    /// [`ITEM`]. It prefers `h2` to `http/1.1`: a handshake that agrees on `http/1.1` had no `h2`
    /// offered.
    async fn tls_server(identity: Identity) -> (u16, Arc<AtomicUsize>, Arc<Mutex<Seen>>) {
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(identity.key.serialize_der().into());
        let mut config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![identity.certificate], key)
                .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let log = Arc::clone(&seen);
        let (endpoint, accepted) = server(move |stream| serve_tls(acceptor.clone(), Arc::clone(&log), stream)).await;
        let port = endpoint.rsplit(':').next().unwrap().parse().unwrap();
        (port, accepted, seen)
    }

    async fn serve_tls(acceptor: tokio_rustls::TlsAcceptor, seen: Arc<Mutex<Seen>>, stream: TcpStream) {
        let stream = match acceptor.accept(stream).await {
            Ok(stream) => stream,
            Err(error) => {
                let refusal = cause::<rustls::Error>(&error).cloned();
                seen.lock().unwrap().refused.push(refusal.unwrap_or(rustls::Error::General(error.to_string())));
                return;
            }
        };
        let (_, connection) = stream.get_ref();
        let handshake = (connection.server_name().map(str::to_owned), connection.alpn_protocol().map(<[u8]>::to_vec));
        seen.lock().unwrap().handshakes.push(handshake);
        let mut stream = BufReader::new(stream);
        while read_request(&mut stream).await.is_some() {
            seen.lock().unwrap().requests += 1;
            if stream.get_mut().write_all(answer(ITEM).as_bytes()).await.is_err() {
                return;
            }
        }
    }

    fn localhost(port: u16) -> String {
        format!("https://localhost:{port}/")
    }

    /// The SDK's HTTP client with every connector's TLS config `tls`.
    fn trusting(tls: Arc<ClientConfig>) -> SharedHttpClient {
        http_client_fn(move |_, _| {
            SharedHttpConnector::new(Connector::with_tls(SDK_POOL, None, None, Arc::clone(&tls)))
        })
    }

    /// Sends one GetItem through `http` to the TLS server on `port` with the SDK's standard
    /// retry (3 attempts) and asserts: the handshake failed as an `other` error with no kind (the
    /// SDK does not send again: one connection), the server got `alert` from the client and never
    /// a request. rustls' error on the client's side.
    async fn refused_once(
        http: SharedHttpClient,
        port: u16,
        accepted: &AtomicUsize,
        seen: &Mutex<Seen>,
        alert: AlertDescription,
    ) -> rustls::Error {
        let retry = RetryConfig::standard().with_max_attempts(3).with_initial_backoff(Duration::from_millis(1));
        let client = dynamodb_via(http, &localhost(port), retry, TimeoutConfig::builder().build());

        let error = get_item(&client).send().await.unwrap_err();

        let error = connector_error(&error);
        assert!(error.is_other() && error.as_other().is_none(), "{error:?}");
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one attempt: {error:?}");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while seen.lock().unwrap().refused.is_empty() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let seen = seen.lock().unwrap();
        assert_eq!(seen.refused, vec![rustls::Error::AlertReceived(alert)], "the client ended the handshake");
        assert!(seen.handshakes.is_empty() && seen.requests == 0, "{seen:?}");
        cause::<rustls::Error>(error).cloned().unwrap()
    }

    #[tokio::test]
    async fn an_https_request_checks_the_servers_certificate_for_its_host_and_agrees_on_http_1_1() {
        let ca = Ca::new("Ferrocart test CA");
        let (port, accepted, seen) = tls_server(ca.issue("localhost")).await;
        let connector = Connector::with_tls(SDK_POOL, Some(Duration::from_secs(5)), None, ca.trusted());

        let (first, _) = sent_from(&connector, &localhost(port)).await;
        let (second, _) = sent_from(&connector, &localhost(port)).await;

        let seen = seen.lock().unwrap();
        assert_eq!(seen.handshakes, vec![(Some("localhost".to_owned()), Some(b"http/1.1".to_vec()))]);
        assert_eq!((seen.requests, seen.refused.len()), (2, 0));
        assert_eq!(second, first, "the TLS connection is kept and used again");
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_certificate_for_another_name_is_refused_before_the_request_and_not_sent_again() {
        let ca = Ca::new("Ferrocart test CA");
        let (port, accepted, seen) = tls_server(ca.issue("other.example")).await;

        let error =
            refused_once(trusting(ca.trusted()), port, &accepted, &seen, AlertDescription::BadCertificate).await;

        assert!(
            matches!(
                error,
                rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
                )
            ),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_certificate_from_an_untrusted_authority_is_refused_before_the_request_and_not_sent_again() {
        let (trusted, other) = (Ca::new("Ferrocart test CA"), Ca::new("Someone else's CA"));
        let (port, accepted, seen) = tls_server(other.issue("localhost")).await;

        let error =
            refused_once(trusting(trusted.trusted()), port, &accepted, &seen, AlertDescription::UnknownCA).await;

        assert_eq!(error, rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer));
    }

    #[tokio::test]
    async fn the_production_trust_store_refuses_a_self_signed_server_for_the_sdk_and_for_stripe() {
        let (port, accepted, seen) = tls_server(self_signed("localhost")).await;

        let error = refused_once(crate::aws::https_client(), port, &accepted, &seen, AlertDescription::UnknownCA).await;
        assert_eq!(error, rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer));

        // payment's Stripe transport's connector.
        let stripe = crate::aws::https_connector(2, Duration::from_secs(20));
        let error = stripe.call(request(&localhost(port))).await.unwrap_err();
        assert!(error.is_other() && error.as_other().is_none(), "{error:?}");
        assert_eq!(
            cause::<rustls::Error>(&error),
            Some(&rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer))
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(seen.lock().unwrap().requests, 0);
    }
}
