//! The glue between Lambda and a Ferrocart domain, shared by every function.
//!
//! - [`config`]: typed configuration read once at cold start; a missing variable is named.
//! - [`logging`]: JSON logs on stdout for CloudWatch, carrying the Lambda request id and X-Ray
//!   trace id from the runtime's invocation span.
//! - [`http`]: reading JSON bodies (size, media type and shape checked, every failure a
//!   problem+json naming the field), query and path parameters, and writing JSON and
//!   problem+json responses.
//! - [`consumer`]: the loop every event consumer runs: SQS batch in, each EventBridge event
//!   claimed in the consumer's inbox and handled once, partial batch response out
//!   (`aws_lambda_events`' [`SqsBatchResponse`](consumer::SqsBatchResponse)); and schedule ticks.
//! - [`sweep`]: the loop every scheduled sweep runs: due items page by page, each on its own,
//!   within the invocation's time.
//! - [`metrics`]: counters as CloudWatch Embedded Metric Format lines on stdout.
//! - [`auth`]: who is calling, from the claims API Gateway's JWT authorizer put in the request
//!   context; functions never see or verify the token itself.
//!
//! A function's `main` wires these up; its handler translates a request into one domain call.

pub mod auth;
pub mod config;
pub mod consumer;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod sweep;

pub use auth::Caller;
pub use config::ConfigError;
pub use http::{ApiResult, Reply};
