//! JSON logs for CloudWatch.
//!
//! One JSON object per line on stdout. The Lambda runtime wraps each invocation in a span with
//! `requestId` and `xrayTraceId`; consumers open a span per event (`event_id`, `correlation_id`,
//! `detail_type`, `trace`) and API functions one per request (`route`, `correlation_id`). Every
//! line carries the list of its spans (`spans`), so a log search by request id, order id or
//! event id finds everything done for it.

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber and records the cold start (`ColdStart`, see [`crate::metrics`]):
/// every function calls this once, first thing in `main`.
///
/// The level comes from `AWS_LAMBDA_LOG_LEVEL` (which Lambda sets
/// from the template's `LoggingConfig.ApplicationLogLevel`), else `RUST_LOG`, else `info`.
pub fn init() {
    let filter = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .ok()
        .map(|level| EnvFilter::new(level.to_lowercase()))
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    // `try_init` so a test binary that calls this twice does not panic (and counts one start).
    let installed = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_span_list(true)
        .flatten_event(true)
        .with_target(false)
        .try_init();
    if installed.is_ok() {
        crate::metrics::cold_start();
    }
}

/// An error and its causes in one line (`outer: inner: root`), so a failure is logged once, at
/// the edge that decides what to do with it, with everything that led to it.
pub fn cause_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    chain
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("could not reserve")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn a_cause_chain_names_every_cause_in_order() {
        let error = Outer(std::io::Error::other("throttled"));

        assert_eq!(super::cause_chain(&error), "could not reserve: throttled");
    }
}
