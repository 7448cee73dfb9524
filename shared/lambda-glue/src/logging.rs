//! JSON logs for CloudWatch.
//!
//! One JSON object per line on stdout. The Lambda runtime wraps each invocation in a span with
//! `requestId` and `xrayTraceId`; consumers open a span per event (`event_id`, `correlation_id`,
//! `detail_type`, `trace`) and API functions one per request (`route`, `correlation_id`). Every
//! line carries the list of its spans (`spans`), so a log search by request id, order id or
//! event id finds everything done for it.

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the JSON subscriber and records the cold start (`ColdStart`, see [`crate::metrics`]):
/// every function calls this once, first thing in `main`.
///
/// The level comes from `AWS_LAMBDA_LOG_LEVEL` (which Lambda sets
/// from the template's `LoggingConfig.ApplicationLogLevel`), else `RUST_LOG`, else `info`
/// ([`filter`]).
pub fn init() {
    let filter =
        filter(std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref(), std::env::var("RUST_LOG").ok().as_deref());
    let format = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(false)
        .with_span_list(true)
        .flatten_event(true)
        .with_target(false);
    // `try_init` so a test binary that calls this twice does not panic (and counts one start).
    let installed = tracing_subscriber::registry().with(format).with(filter).try_init();
    if installed.is_ok() {
        crate::metrics::cold_start();
    }
}

/// What is logged: Lambda's level (`TRACE` … `ERROR`, or `FATAL`, read as `error`), else
/// `RUST_LOG`'s directives (`info`, `debug,aws_smithy_runtime=warn`: a default level and levels by
/// target prefix, without `EnvFilter`'s span and field matching, which would link a regex engine
/// into every function), else `info`. A value that does not parse counts as absent.
pub fn filter(lambda_level: Option<&str>, rust_log: Option<&str>) -> Targets {
    let lambda = lambda_level.and_then(|level| match level.trim().to_ascii_lowercase().as_str() {
        "fatal" => Some(LevelFilter::ERROR),
        level => level.parse::<LevelFilter>().ok(),
    });
    if let Some(level) = lambda {
        return Targets::new().with_default(level);
    }
    rust_log
        .and_then(|directives| directives.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO))
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

    use tracing::Level;

    use super::filter;

    #[test]
    fn lambdas_level_wins_over_rust_log_and_fatal_means_error() {
        let debug = filter(Some("DEBUG"), Some("error"));
        let fatal = filter(Some("FATAL"), None);

        assert!(debug.would_enable("payment", &Level::DEBUG) && !debug.would_enable("payment", &Level::TRACE));
        assert!(fatal.would_enable("cart", &Level::ERROR) && !fatal.would_enable("cart", &Level::WARN));
    }

    #[test]
    fn rust_log_sets_a_default_level_and_levels_by_target() {
        let directives = filter(None, Some("warn,payment=debug"));

        assert!(directives.would_enable("payment::stripe", &Level::DEBUG));
        assert!(!directives.would_enable("cart", &Level::INFO) && directives.would_enable("cart", &Level::WARN));
    }

    #[test]
    fn without_a_level_or_with_one_that_does_not_parse_the_level_is_info() {
        for (lambda, rust_log) in [(None, None), (Some("loud"), None), (None, Some("payment=[{x}]=loud"))] {
            let chosen = filter(lambda, rust_log);

            assert!(chosen.would_enable("cart", &Level::INFO), "{lambda:?} {rust_log:?}");
            assert!(!chosen.would_enable("cart", &Level::DEBUG), "{lambda:?} {rust_log:?}");
        }
    }
    #[derive(Debug, thiserror::Error)]
    #[error("could not reserve")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn a_cause_chain_names_every_cause_in_order() {
        let error = Outer(std::io::Error::other("throttled"));

        assert_eq!(super::cause_chain(&error), "could not reserve: throttled");
    }
}
