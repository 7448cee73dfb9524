//! The X-Ray trace an event is published in, so one order is one trace from `POST /checkout` to
//! its last event.
//!
//! The outbox item of every event records [`current`] (`adapters::outbox`); the relay puts it
//! on the `PutEvents` entry (`TraceHeader`), which EventBridge and SQS carry to each consumer's
//! message (`AWSTraceHeader`); the consumer handles the message [`within`] that header, so the
//! events its handler writes carry it on. Outside a consumer the header is the invocation's own
//! (`_X_AMZN_TRACE_ID`, which `lambda_runtime` sets for each invocation).

use std::future::Future;

tokio::task_local! {
    static TRACE_HEADER: Option<String>;
}

/// The variable Lambda (and `lambda_runtime`) set to the invocation's trace header.
pub const LAMBDA_TRACE_ENV: &str = "_X_AMZN_TRACE_ID";

/// Runs `work` as part of the trace `header` (a consumed message's `AWSTraceHeader`); with
/// `None`, as part of the invocation's own trace.
pub async fn within<F: Future>(header: Option<String>, work: F) -> F::Output {
    TRACE_HEADER.scope(header, work).await
}

/// The trace header events written now belong to: the consumed message's, else the
/// invocation's, else none (outside Lambda).
pub fn current() -> Option<String> {
    TRACE_HEADER
        .try_with(Clone::clone)
        .ok()
        .flatten()
        .or_else(|| std::env::var(LAMBDA_TRACE_ENV).ok().filter(|header| !header.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_within_a_message_s_trace_writes_that_trace_and_only_there() {
        let header = "Root=1-67891233-abcdef012345678912345678;Parent=53995c3f42cd8ad8;Sampled=1";

        let inside = within(Some(header.to_owned()), async {
            tokio::task::yield_now().await;
            current()
        })
        .await;

        assert_eq!(inside.as_deref(), Some(header));
        assert_ne!(current().as_deref(), Some(header), "the scope ends with the message");
    }
}
