//! SDK configuration, and the one HTTPS client every SDK client uses.
//!
//! The SDK's default client trusts the OS certificate store, which `rustls-native-certs` reads
//! when the first client is built: on Linux the bundle in `/etc/ssl/certs` and then each of the
//! ~150 files beside it, before the function's first `/next` — about half of a function's cold
//! init (BENCHMARKS.md). [`https_client`] is the same client (hyper 1, rustls on aws-lc-rs,
//! the SDK's own timeouts and retries) trusting Mozilla's root certificates as compiled into the
//! binary by the `webpki-root-certs` crate instead, so a cold start opens no certificate file.
//!
//! The trade, chosen for Lambda: a certificate authority added to the OS store (a corporate
//! TLS-inspecting proxy's, say) is not trusted, and the roots change when the crate is updated
//! (`cargo update -p webpki-root-certs`), not when the OS image is. AWS's endpoints chain to
//! Amazon Trust Services roots, which are in Mozilla's list.

use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_http_client::tls::{Provider, TlsContext, TrustStore};
use aws_smithy_runtime_api::client::http::{HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Loads the shared SDK configuration (region, credentials, `AWS_ENDPOINT_URL`) from the
/// environment, with [`https_client`] as every client's HTTP client. Call it once in `main` and
/// build every client from the result.
pub async fn load_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(https_client()).load().await
}

/// The SDK's hyper + rustls client, trusting the compiled-in Mozilla roots and nothing from
/// the OS.
pub fn https_client() -> SharedHttpClient {
    let client = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(tls_context())
        .build_https();
    SharedHttpClient::new(AtFirstRequest(client))
}

/// Trust the compiled-in roots and nothing else (`TrustStore::empty` turns the OS store off).
#[allow(clippy::expect_used, reason = "TlsContextBuilder::build has no failing path (aws-smithy-http-client 1.5)")]
fn tls_context() -> TlsContext {
    TlsContext::builder()
        .with_trust_store(TrustStore::empty().with_pem_certificate(root_bundle()))
        .build()
        .expect("a TLS context of PEM roots builds")
}

/// The SDK's client as it is, except when its TLS connector is built. The SDK builds one (and
/// with it parses every root certificate, ~0.3 ms for Mozilla's ~150) when each SDK client is
/// constructed, to surface the OS store's errors early, then builds another at the first request
/// (that one is kept). With compiled-in roots there is nothing to surface early, so this skips
/// the construction-time build: a function's init parses no certificate, and every client with
/// the same timeouts shares the one connector built at the first request.
#[derive(Debug)]
struct AtFirstRequest(SharedHttpClient);

impl HttpClient for AtFirstRequest {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        self.0.http_connector(settings, components)
    }

    fn connector_metadata(&self) -> Option<aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata> {
        self.0.connector_metadata()
    }
}

/// Every compiled-in root as one PEM bundle: the SDK's trust store takes PEM, the crate holds
/// DER.
fn root_bundle() -> Vec<u8> {
    let mut bundle = String::with_capacity(webpki_root_certs::TLS_SERVER_ROOT_CERTS.len() * 2048);
    for cert in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        bundle.push_str("-----BEGIN CERTIFICATE-----\n");
        STANDARD.encode_string(cert.as_ref(), &mut bundle);
        bundle.push_str("\n-----END CERTIFICATE-----\n");
    }
    bundle.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundle_holds_every_compiled_in_root_once() {
        let bundle = String::from_utf8(root_bundle()).unwrap();
        let certs: Vec<Vec<u8>> = bundle
            .split("-----BEGIN CERTIFICATE-----\n")
            .skip(1)
            .map(|block| {
                STANDARD.decode(block.trim_end().trim_end_matches("-----END CERTIFICATE-----").trim()).unwrap()
            })
            .collect();

        assert!(certs.len() > 100, "Mozilla's list has ~150 roots, got {}", certs.len());
        let expected: Vec<&[u8]> = webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().map(|c| c.as_ref()).collect();
        assert_eq!(certs.iter().map(Vec::as_slice).collect::<Vec<_>>(), expected);
    }

    #[tokio::test]
    async fn the_tls_connector_builds_on_the_compiled_in_roots() {
        // Building the connector parses every root (the SDK does it at the first request): a
        // bundle it could not read would panic here.
        let _connector = aws_smithy_http_client::Connector::builder()
            .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(tls_context())
            .build();
    }

    #[test]
    fn sdk_clients_build_on_it() {
        let config = aws_config::SdkConfig::builder()
            .http_client(https_client())
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        let _client = aws_sdk_dynamodb::Client::new(&config);
    }
}
