//! SDK configuration.

/// Loads the shared SDK configuration (region, credentials, `AWS_ENDPOINT_URL`) from the
/// environment. Call it once in `main` and build every client from the result.
pub async fn load_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}
