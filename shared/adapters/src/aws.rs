//! SDK configuration, and the one HTTPS client every SDK client uses.
//!
//! [`load_config`] reads everything from the environment, as Lambda sets it: the execution
//! role's credentials (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), the
//! region (`AWS_REGION`, else `AWS_DEFAULT_REGION`) and, for the local cloud's emulators,
//! `AWS_ENDPOINT_URL` and the per-service `AWS_ENDPOINT_URL_<SERVICE>` (`…_LAMBDA`). It does not
//! use aws-config's default chain (profile files, SSO, `credential_process`, web identity with
//! its STS client, ECS and EC2 instance metadata), which Lambda never needs: that chain was
//! ~0.4 MiB of every binary and opened `~/.aws/config` and `~/.aws/credentials` before the
//! first `/next`. The trade: a function takes credentials from the environment only, never from
//! a profile file or a metadata endpoint; run one outside Lambda with the three variables set
//! (`aws configure export-credentials --format env` prints them for a profile).
//!
//! The SDK's default client trusts the OS certificate store, which `rustls-native-certs` reads
//! when the first client is built: on Linux the bundle in `/etc/ssl/certs` and then each of the
//! ~150 files beside it, before the function's first `/next` — about half of a function's cold
//! init (BENCHMARKS.md). [`https_client`] is ours instead ([`crate::http`]): hyper 1 over rustls
//! on ring (the default aws-lc-rs is 0.7 MiB more per binary), HTTP/1.1 only (the SDK's client
//! links h2 whether or not a service speaks HTTP/2, and none we call needs it), the SDK's own
//! timeouts and retries, trusting Mozilla's root certificates as compiled into the binary by the
//! `webpki-roots` crate, already parsed, so a cold start opens no certificate file and parses
//! none. Nothing of it is built before the first request.
//!
//! [`https_connector`] is a connector of that client for another HTTPS API (payment's Stripe
//! client), so a binary links one HTTP stack.
//!
//! The trade, chosen for Lambda: a certificate authority added to the OS store (a corporate
//! TLS-inspecting proxy's, say) is not trusted, and the roots change when the crate is updated
//! (`cargo update -p webpki-roots`), not when the OS image is; no HTTP/2 and no proxy support
//! (the module [`crate::http`] says what else). AWS's endpoints chain to Amazon Trust Services
//! roots, which are in Mozilla's list.

use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use aws_smithy_async::rt::sleep::default_async_sleep;
use aws_smithy_async::time::SharedTimeSource;
use aws_smithy_runtime_api::client::behavior_version::BehaviorVersion;
use aws_smithy_runtime_api::client::http::{SharedHttpClient, SharedHttpConnector};
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use aws_types::SdkConfig;
use aws_types::region::Region;
use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};
use std::time::Duration;

/// Loads the shared SDK configuration from the environment (see the module docs), with
/// [`https_client`] as every client's HTTP client, the SDK's standard retries (3 attempts) and
/// its default 3.1 s connect timeout, as aws-config's defaults gave them. Call it once in
/// `main` and build every client from the result. Nothing is read from disk; a missing region
/// or credential fails each request, naming the variable.
pub async fn load_config() -> SdkConfig {
    from_env(|name| std::env::var(name).ok())
}

/// The configuration [`load_config`] builds, reading variables through `var`.
fn from_env(var: impl Fn(&str) -> Option<String>) -> SdkConfig {
    let var = |name: &str| var(name).filter(|value| !value.is_empty());
    let mut config = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(https_client())
        .time_source(SharedTimeSource::default())
        .retry_config(RetryConfig::standard())
        .timeout_config(TimeoutConfig::builder().connect_timeout(Duration::from_millis(3100)).build())
        .credentials_provider(SharedCredentialsProvider::new(FromEnvironment))
        .service_config(ServiceEndpoints);
    config.set_sleep_impl(default_async_sleep());
    config.set_region(var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")).map(Region::new));
    config.set_endpoint_url(var("AWS_ENDPOINT_URL"));
    config.build()
}

/// An SDK client built by its first use instead of at init, for a client most invocations of
/// a function never call (Secrets Manager, read once per cold start; checkout's Lambda client,
/// used by placement and cancellation but not by order reads): building one sets up its
/// configuration, runtime plugins and endpoint resolver, page faults included, and a cold
/// start that never needs it should not pay for it. Clones share the one client.
pub struct Deferred<C> {
    config: SdkConfig,
    client: std::sync::Arc<std::sync::OnceLock<C>>,
    build: fn(&SdkConfig) -> C,
}

impl<C> Deferred<C> {
    /// Keeps `config` for `build` (an SDK client's `Client::new`), called at the first [`Self::get`].
    pub fn new(config: &SdkConfig, build: fn(&SdkConfig) -> C) -> Self {
        Self { config: config.clone(), client: std::sync::Arc::default(), build }
    }

    /// The client, built now if this is its first use.
    pub fn get(&self) -> &C {
        self.client.get_or_init(|| (self.build)(&self.config))
    }
}

impl<C> Clone for Deferred<C> {
    fn clone(&self) -> Self {
        Self { config: self.config.clone(), client: std::sync::Arc::clone(&self.client), build: self.build }
    }
}

impl<C> std::fmt::Debug for Deferred<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deferred").field("built", &self.client.get().is_some()).finish_non_exhaustive()
    }
}

/// The execution role's credentials, read from the environment when the SDK asks (once, then
/// cached by the SDK's identity cache), as aws-config's environment provider reads them.
#[derive(Debug)]
struct FromEnvironment;

impl ProvideCredentials for FromEnvironment {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::ready(credentials(|name| std::env::var(name).ok()))
    }
}

/// Credentials from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and (optional)
/// `AWS_SESSION_TOKEN`, read through `var`; an unset or empty key is an error naming it.
fn credentials(var: impl Fn(&str) -> Option<String>) -> Result<Credentials, CredentialsError> {
    let var = |name: &str| var(name).filter(|value| !value.is_empty());
    let required = |name: &'static str| {
        var(name).ok_or_else(|| {
            CredentialsError::not_loaded(format!("{name} is not set (credentials come from the environment only)"))
        })
    };
    Ok(Credentials::new(
        required("AWS_ACCESS_KEY_ID")?,
        required("AWS_SECRET_ACCESS_KEY")?,
        var("AWS_SESSION_TOKEN"),
        None,
        "Environment",
    ))
}

/// Per-service endpoints from the environment (`AWS_ENDPOINT_URL_LAMBDA` for the service id
/// `Lambda`: upper case, spaces as `_`), which the SDK's clients prefer to `AWS_ENDPOINT_URL`.
/// Profile files are not read.
#[derive(Debug)]
struct ServiceEndpoints;

impl LoadServiceConfig for ServiceEndpoints {
    fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
        service_value(key, |name| std::env::var(name).ok())
    }
}

fn service_value(key: ServiceConfigKey<'_>, var: impl Fn(&str) -> Option<String>) -> Option<String> {
    let service = key.service_id().to_uppercase().replace(' ', "_");
    var(&format!("{}_{service}", key.env())).filter(|value| !value.is_empty())
}

/// The HTTP client of every SDK client ([`crate::http::Client`]: HTTP/1.1, rustls on ring, the
/// compiled-in Mozilla roots and nothing from the OS). Nothing is built until the first request.
pub fn https_client() -> SharedHttpClient {
    SharedHttpClient::new(crate::http::Client::default())
}

/// A connector of the same client for another HTTPS API (payment's Stripe client): the same
/// instantiation of hyper's client and the same TLS configuration as [`https_client`]'s, keeping
/// up to `kept` idle connections per host for `kept_for`. No timeouts of its own: the caller
/// bounds each call. `http://` URIs are sent in clear; where that is allowed is the caller's to
/// decide.
pub fn https_connector(kept: usize, kept_for: Duration) -> SharedHttpConnector {
    let pool = crate::http::Pool { idle_for: kept_for, per_host: kept };
    SharedHttpConnector::new(crate::http::Connector::new(pool, None, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| vars.iter().find(|(key, _)| *key == name).map(|(_, value)| (*value).to_owned())
    }

    #[test]
    fn a_deferred_client_is_built_by_its_first_use_and_shared_by_its_clones() {
        static BUILT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        fn build(config: &SdkConfig) -> Option<String> {
            BUILT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            config.region().map(|region| region.to_string())
        }
        let deferred = Deferred::new(&from_env(env(&[("AWS_REGION", "eu-west-1")])), build);
        let clone = deferred.clone();
        assert_eq!(BUILT.load(std::sync::atomic::Ordering::SeqCst), 0, "nothing built at init");

        assert_eq!(clone.get().as_deref(), Some("eu-west-1"));
        assert_eq!(deferred.get().as_deref(), Some("eu-west-1"));
        assert_eq!(BUILT.load(std::sync::atomic::Ordering::SeqCst), 1, "built once, for both");
    }

    #[test]
    fn credentials_come_from_the_three_variables_lambda_sets() {
        let vars = [("AWS_ACCESS_KEY_ID", "AKID"), ("AWS_SECRET_ACCESS_KEY", "secret"), ("AWS_SESSION_TOKEN", "token")];
        let credentials = credentials(env(&vars)).unwrap();
        assert_eq!(credentials.access_key_id(), "AKID");
        assert_eq!(credentials.secret_access_key(), "secret");
        assert_eq!(credentials.session_token(), Some("token"));

        let without_token = credentials_from_keys_only();
        assert_eq!(without_token.session_token(), None);
    }

    fn credentials_from_keys_only() -> Credentials {
        credentials(env(&[
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", ""),
        ]))
        .unwrap()
    }

    #[test]
    fn a_missing_or_empty_key_is_an_error_naming_it() {
        let missing = credentials(env(&[("AWS_SECRET_ACCESS_KEY", "secret")])).unwrap_err();
        assert!(format!("{:?}", missing).contains("AWS_ACCESS_KEY_ID"), "{missing:?}");
        let empty = credentials(env(&[("AWS_ACCESS_KEY_ID", "AKID"), ("AWS_SECRET_ACCESS_KEY", "")])).unwrap_err();
        assert!(format!("{:?}", empty).contains("AWS_SECRET_ACCESS_KEY"), "{empty:?}");
    }

    #[test]
    fn region_and_endpoint_come_from_the_environment() {
        let config = from_env(env(&[
            ("AWS_REGION", "eu-west-1"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
        ]));
        assert_eq!(config.region().map(Region::as_ref), Some("eu-west-1"));
        assert_eq!(config.endpoint_url(), Some("http://127.0.0.1:5000"));
        assert!(
            config.credentials_provider().is_some() && config.http_client().is_some() && config.sleep_impl().is_some()
        );
        assert_eq!(config.retry_config().map(RetryConfig::max_attempts), Some(3));

        let fallback = from_env(env(&[("AWS_DEFAULT_REGION", "us-east-1")]));
        assert_eq!(fallback.region().map(Region::as_ref), Some("us-east-1"));
        assert_eq!(fallback.endpoint_url(), None);
        assert_eq!(from_env(env(&[])).region(), None);
    }

    #[test]
    fn a_service_endpoint_is_read_under_the_services_own_variable() {
        let key = ServiceConfigKey::builder()
            .service_id("Lambda")
            .env("AWS_ENDPOINT_URL")
            .profile("endpoint_url")
            .build()
            .unwrap();
        let vars = [("AWS_ENDPOINT_URL_LAMBDA", "http://127.0.0.1:3000")];
        assert_eq!(service_value(key.clone(), env(&vars)).as_deref(), Some("http://127.0.0.1:3000"));
        assert_eq!(service_value(key, env(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")])), None);
        let spaced = ServiceConfigKey::builder()
            .service_id("Secrets Manager")
            .env("AWS_ENDPOINT_URL")
            .profile("endpoint_url")
            .build()
            .unwrap();
        let vars = [("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://127.0.0.1:4000")];
        assert_eq!(service_value(spaced, env(&vars)).as_deref(), Some("http://127.0.0.1:4000"));
    }

    #[test]
    fn sdk_clients_build_on_it() {
        let config = from_env(env(&[("AWS_REGION", "us-east-1")]));
        let _dynamodb = aws_sdk_dynamodb::Client::new(&config);
        let _secrets = aws_sdk_secretsmanager::Client::new(&config);
    }
}
