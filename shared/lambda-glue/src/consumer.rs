//! The shape of every Ferrocart event consumer: an SQS batch of EventBridge events, handled one
//! message at a time, with a partial batch response.
//!
//! A message that cannot be read, or whose handler fails, is reported in `batchItemFailures`:
//! SQS makes it visible again after the visibility timeout and, after `maxReceiveCount` (5)
//! receives, moves it to the consumer's dead-letter queue, where an alarm fires. Every other
//! message of the batch is done.
//!
//! SQS delivers at least once, so every event passes through the consumer's [`Inbox`]: before the
//! handler runs, a consistent read keyed by the event id tells whether the event was handled
//! already (then the message is acknowledged without running the handler, and counted in
//! `InboxDuplicates`); after the handler succeeded, one write records it. That is the inbox's one
//! write per event. Nothing is written before the handler, so two deliveries of one event that
//! overlap in time may both run it, and a crash between the handler's writes and the inbox's
//! record means the redelivery runs it again: both are safe because every handler is idempotent
//! on its own (every state change is a conditional write on the saga's state, and its outbox event
//! is written in the same transaction), which the chaos tests prove by re-sending every saga event
//! under new event ids, past the inbox.

use std::future::Future;

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;
use time::OffsetDateTime;
use tracing::Instrument;

use domain_events::Envelope;

use crate::metrics::{Metric, Unit};
#[cfg(any(test, feature = "test-util"))]
use kernel::EventId;

/// The partial batch response a consumer returns, `{"batchItemFailures": [{"itemIdentifier": …}]}`
/// with the message ids of the failed messages. With `FunctionResponseTypes:
/// [ReportBatchItemFailures]` on the event source mapping, SQS deletes every other message of
/// the batch, so one bad message never fails its batch.
pub use aws_lambda_events::sqs::SqsBatchResponse;

/// Why a handler did not finish an event.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// A dependency failed (throttling, a timeout, a conflict that outlasted our retries):
    /// trying again later should work.
    #[error("transient failure: {0}")]
    Transient(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The event can never be handled as it is (a bug or a contract break): it will end in the
    /// dead-letter queue for a human.
    #[error("cannot handle the event: {0}")]
    Permanent(String),
}

impl HandlerError {
    pub fn transient(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Transient(Box::new(error))
    }
}

/// What invoked a consumer function.
#[derive(Debug)]
pub enum Trigger {
    /// A batch from the function's SQS queue, to be handled before `deadline` (the invocation's).
    Queue { batch: SqsEvent, deadline: OffsetDateTime },
    /// A schedule tick (EventBridge `Scheduled Event`), with the time it was scheduled for, to be
    /// finished before `deadline` (the invocation's).
    Schedule { time: OffsetDateTime, deadline: OffsetDateTime },
}

impl Trigger {
    /// Reads the invocation payload: an SQS event has `Records`, a schedule has
    /// `detail-type: Scheduled Event`. `deadline` is when the invocation times out.
    pub fn parse(payload: Value, deadline: OffsetDateTime) -> Result<Self, String> {
        if payload.get("Records").is_some() {
            return serde_json::from_value(payload)
                .map(|batch| Self::Queue { batch, deadline })
                .map_err(|e| format!("bad SQS event: {e}"));
        }
        if payload.get("detail-type").and_then(Value::as_str) == Some("Scheduled Event") {
            let time = payload
                .get("time")
                .and_then(Value::as_str)
                .and_then(|t| OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
                .unwrap_or_else(OffsetDateTime::now_utc);
            return Ok(Self::Schedule { time, deadline });
        }
        Err("neither an SQS batch nor a scheduled event".to_owned())
    }
}

/// Runs a consumer function: reads each invocation as a [`Trigger`] and answers with `handle`'s
/// partial batch response. An invocation that is not a trigger, or a handler error, fails the
/// whole invocation (Lambda retries the batch).
pub async fn serve<F, Fut>(handle: F) -> Result<(), lambda_runtime::Error>
where
    F: Fn(Trigger) -> Fut,
    Fut: Future<Output = Result<SqsBatchResponse, HandlerError>>,
{
    let handle = &handle;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| invoke(handle, event))).await
}

/// One invocation through `handle`, exactly as [`serve`] runs it (the warm benchmark,
/// `bench/src/warm.rs`, calls this in-process without the Runtime API).
pub async fn invoke<F, Fut>(handle: &F, event: LambdaEvent<Value>) -> Result<SqsBatchResponse, lambda_runtime::Error>
where
    F: Fn(Trigger) -> Fut,
    Fut: Future<Output = Result<SqsBatchResponse, HandlerError>>,
{
    let deadline = i128::from(event.context.deadline) * 1_000_000;
    let deadline = OffsetDateTime::from_unix_timestamp_nanos(deadline)?;
    let trigger = Trigger::parse(event.payload, deadline)?;
    // Boxed: a saga handler's future is deep, and inlining it into the runtime's future
    // makes its layout exceed rustc's query depth ("queries overflow the depth limit").
    Ok(Box::pin(handle(trigger)).await?)
}

/// The inbox port (`kernel::inbox`), implemented on each domain's own table
/// (`adapters::inbox`) and in memory by [`MemoryInbox`] for unit tests.
pub use kernel::inbox::{Inbox, InboxError};

/// Handles every message of an SQS batch with `handle`, skipping the events the inbox records
/// handled, reporting the messages that failed.
///
/// `per_message` is the longest one handler can take. A message is only started while that much
/// of the invocation is left; the rest of the batch is reported as failed without being touched
/// (SQS delivers them again after the visibility timeout), so a slow dependency never lets the
/// Lambda timeout fail the whole batch, including the messages that were done.
pub async fn consume<F, Fut>(
    batch: SqsEvent,
    deadline: OffsetDateTime,
    per_message: time::Duration,
    inbox: &impl Inbox,
    handle: F,
) -> SqsBatchResponse
where
    F: Fn(Envelope) -> Fut,
    Fut: Future<Output = Result<(), HandlerError>>,
{
    let mut response = SqsBatchResponse::default();
    let mut out_of_time = false;
    let mut ages = Vec::with_capacity(batch.records.len());
    let mut duplicates = 0;
    for message in batch.records {
        let id = message.message_id.clone().unwrap_or_default();
        out_of_time = out_of_time || OffsetDateTime::now_utc() + per_message >= deadline;
        if out_of_time {
            tracing::warn!(message_id = %id, "not enough time left in this invocation; the message comes again");
            response.add_failure(id);
            continue;
        }
        let body = message.body.as_deref().unwrap_or_default();
        let envelope = match Envelope::from_eventbridge(body) {
            Ok(envelope) => envelope,
            Err(error) => {
                tracing::error!(message_id = %id, %error, "unreadable message");
                response.add_failure(id);
                continue;
            }
        };
        // The trace the event was published in (SQS's `AWSTraceHeader`): what the handler writes
        // stays in the order's trace (`domain_events::trace`).
        let trace = message.attributes.get(TRACE_ATTRIBUTE).cloned();
        let span = tracing::info_span!(
            "event",
            message_id = %id,
            event_id = %envelope.metadata.event_id,
            correlation_id = %envelope.metadata.correlation_id,
            detail_type = envelope.event.detail_type(),
            trace = trace.as_deref().unwrap_or_default(),
        );
        ages.push(age_millis(envelope.metadata.occurred_at, OffsetDateTime::now_utc()));
        match domain_events::trace::within(trace, once(envelope, inbox, &handle)).instrument(span).await {
            Outcome::Done => {}
            Outcome::Duplicate => duplicates += 1,
            Outcome::Again => response.add_failure(id),
        }
    }
    batch_metrics(ages, duplicates).iter().for_each(Metric::emit);
    response
}

/// The SQS system attribute that carries the X-Ray trace header.
const TRACE_ATTRIBUTE: &str = "AWSTraceHeader";

/// What became of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Handled now.
    Done,
    /// Recorded handled before: acknowledged without running the handler.
    Duplicate,
    /// Not done: the message must come again.
    Again,
}

/// How long after it happened an event reached its consumer, in milliseconds (0 when the
/// clocks disagree the other way).
fn age_millis(occurred_at: OffsetDateTime, now: OffsetDateTime) -> u64 {
    u64::try_from((now - occurred_at).whole_milliseconds()).unwrap_or(0)
}

/// The batch's saga-health metrics, by consumer: `EventAge` (the queue lag of each event read,
/// one document for the batch) and `InboxDuplicates` (deliveries of events the inbox had recorded
/// handled, acknowledged without running the handler).
fn batch_metrics(ages: Vec<u64>, duplicates: u64) -> Vec<Metric> {
    let function = crate::metrics::function_name();
    let mut metrics = Vec::new();
    if !ages.is_empty() {
        let mut age = Metric::value("EventAge", Unit::Milliseconds, 0).by("FunctionName", function);
        age.values = ages;
        metrics.push(age);
    }
    if duplicates > 0 {
        metrics.push(Metric::value("InboxDuplicates", Unit::Count, duplicates).by("FunctionName", function));
    }
    metrics
}

/// Handles one event unless the inbox has it, and records it handled.
async fn once<F, Fut>(envelope: Envelope, inbox: &impl Inbox, handle: &F) -> Outcome
where
    F: Fn(Envelope) -> Fut,
    Fut: Future<Output = Result<(), HandlerError>>,
{
    let event_id = envelope.metadata.event_id;
    match inbox.handled_before(event_id).await {
        Ok(false) => {}
        Ok(true) => {
            tracing::info!("duplicate delivery of a handled event; acknowledged");
            return Outcome::Duplicate;
        }
        Err(error) => {
            tracing::warn!(%error, "could not read the inbox; the event will be retried");
            return Outcome::Again;
        }
    }
    match handle(envelope).await {
        Ok(()) => {
            if let Err(error) = inbox.handled(event_id).await {
                // The work is done; a redelivery re-runs an idempotent handler.
                tracing::warn!(%error, "handled, but the inbox could not record it");
            }
            Outcome::Done
        }
        Err(error) => {
            match &error {
                HandlerError::Transient(cause) => {
                    let cause: &(dyn std::error::Error + 'static) = cause.as_ref();
                    tracing::warn!(error = %crate::logging::cause_chain(cause), "event failed; it will be retried");
                }
                HandlerError::Permanent(reason) => {
                    tracing::error!(%reason, "event cannot be handled; it will reach the DLQ");
                }
            }
            Outcome::Again
        }
    }
}

/// An [`Inbox`] in memory, for unit tests of consumers (feature `test-util`).
#[cfg(any(test, feature = "test-util"))]
#[derive(Debug, Default)]
pub struct MemoryInbox {
    handled: std::sync::Mutex<std::collections::HashSet<EventId>>,
}

#[cfg(any(test, feature = "test-util"))]
impl MemoryInbox {
    fn events(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<EventId>> {
        self.handled.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(any(test, feature = "test-util"))]
impl Inbox for MemoryInbox {
    async fn handled_before(&self, event: EventId) -> Result<bool, InboxError> {
        Ok(self.events().contains(&event))
    }

    async fn handled(&self, event: EventId) -> Result<(), InboxError> {
        self.events().insert(event);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain_events::checkout::OrderCancelled;
    use domain_events::{Event, Metadata};
    use kernel::OrderId;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const BUDGET: time::Duration = time::Duration::seconds(5);

    fn soon() -> OffsetDateTime {
        OffsetDateTime::now_utc() + time::Duration::minutes(1)
    }

    fn queue(records: &[Value]) -> SqsEvent {
        let Trigger::Queue { batch, .. } = Trigger::parse(serde_json::json!({ "Records": records }), soon()).unwrap()
        else {
            panic!("not a queue batch")
        };
        batch
    }

    fn message(id: &str, body: &str) -> Value {
        serde_json::json!({ "messageId": id, "receiptHandle": "r", "body": body, "attributes": {},
            "messageAttributes": {}, "eventSource": "aws:sqs" })
    }

    fn cancelled_body() -> String {
        let order_id = OrderId::new();
        let envelope = Envelope::new(
            Metadata::new(order_id.to_string()),
            Event::OrderCancelled(OrderCancelled { order_id, reason: "timeout".into() }),
        );
        serde_json::json!({ "detail-type": "OrderCancelled", "source": "ferrocart.checkout",
            "detail": envelope.detail().unwrap() })
        .to_string()
    }

    #[test]
    fn a_batch_reports_the_lag_of_every_event_read_and_its_duplicates_by_consumer() {
        let metrics = batch_metrics(vec![120, 4_500], 1);

        let names: Vec<_> = metrics.iter().map(|m| (m.name, m.values.clone())).collect();
        assert_eq!(names, vec![("EventAge", vec![120, 4_500]), ("InboxDuplicates", vec![1])]);
        assert!(metrics.iter().all(|m| m.dimensions == vec![("FunctionName", "local".to_owned())]));
        assert!(batch_metrics(Vec::new(), 0).is_empty(), "an empty batch writes no metric");
    }

    #[test]
    fn an_event_from_a_clock_ahead_of_ours_has_no_negative_age() {
        let now = OffsetDateTime::now_utc();

        assert_eq!(age_millis(now - time::Duration::milliseconds(250), now), 250);
        assert_eq!(age_millis(now + time::Duration::seconds(3), now), 0);
    }

    #[tokio::test]
    async fn one_bad_message_never_fails_its_batch() {
        let batch = queue(&[
            message("good-1", &cancelled_body()),
            message("poison", "{not json"),
            message("good-2", &cancelled_body()),
        ]);
        let handled = AtomicUsize::new(0);

        let response = consume(batch, soon(), BUDGET, &MemoryInbox::default(), |_| async {
            handled.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .await;

        assert_eq!(handled.into_inner(), 2);
        let failed: Vec<_> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
        assert_eq!(failed, vec!["poison"]);
    }

    #[tokio::test]
    async fn the_partial_batch_response_is_the_json_lambda_reads() {
        let batch = queue(&[message("good", &cancelled_body()), message("poison", "{not json")]);

        let response = consume(batch, soon(), BUDGET, &MemoryInbox::default(), |_| async { Ok(()) }).await;

        // The shape Lambda's ReportBatchItemFailures (and infra/localcloud's triggers) read.
        let expected = serde_json::json!({ "batchItemFailures": [{ "itemIdentifier": "poison" }] });
        assert_eq!(serde_json::to_value(&response).unwrap(), expected);
    }

    #[tokio::test]
    async fn a_failing_handler_reports_only_its_message() {
        let batch = queue(&[message("a", &cancelled_body()), message("b", &cancelled_body())]);
        let calls = AtomicUsize::new(0);

        let response = consume(batch, soon(), BUDGET, &MemoryInbox::default(), |_| async {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                Err(HandlerError::Permanent("first one breaks".into()))
            } else {
                Ok(())
            }
        })
        .await;

        assert_eq!(response.batch_item_failures.len(), 1);
        assert_eq!(response.batch_item_failures[0].item_identifier, "a");
    }

    #[tokio::test]
    async fn an_event_delivered_again_after_it_was_handled_is_acknowledged_without_handling() {
        let body = cancelled_body();
        let (inbox, calls) = (MemoryInbox::default(), AtomicUsize::new(0));
        let count = |_| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(())
        };

        let first = consume(queue(&[message("m1", &body), message("m2", &body)]), soon(), BUDGET, &inbox, count).await;
        let later = consume(queue(&[message("m3", &body)]), soon(), BUDGET, &inbox, count).await;

        assert_eq!(calls.into_inner(), 1);
        assert!(first.batch_item_failures.is_empty() && later.batch_item_failures.is_empty());
    }

    #[tokio::test]
    async fn a_failed_event_is_handled_again_on_its_retry() {
        let body = cancelled_body();
        let (inbox, calls) = (MemoryInbox::default(), AtomicUsize::new(0));
        let fail_first = |_| async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 => Err(HandlerError::Permanent("not yet".into())),
                _ => Ok(()),
            }
        };

        let first = consume(queue(&[message("m1", &body)]), soon(), BUDGET, &inbox, fail_first).await;
        let retry = consume(queue(&[message("m1", &body)]), soon(), BUDGET, &inbox, fail_first).await;

        assert_eq!(first.batch_item_failures.len(), 1);
        assert!(retry.batch_item_failures.is_empty());
        assert_eq!(calls.into_inner(), 2);
    }

    #[tokio::test]
    async fn a_batch_delivered_again_right_after_it_succeeded_is_acknowledged_without_handling() {
        // The local cloud's chaos delivers every batch twice in a row with failed messages back
        // after 1 s: a duplicate that had to wait for a lease would reach the dead-letter queue.
        let body = cancelled_body();
        let (inbox, calls) = (MemoryInbox::default(), AtomicUsize::new(0));
        let count = |_| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(())
        };
        let batch = || queue(&[message("m1", &body)]);

        let first = consume(batch(), soon(), BUDGET, &inbox, count).await;
        let again = consume(batch(), soon(), BUDGET, &inbox, count).await;

        assert!(first.batch_item_failures.is_empty() && again.batch_item_failures.is_empty());
        assert_eq!(calls.into_inner(), 1);
    }

    #[tokio::test]
    async fn an_event_is_recorded_only_once_its_handler_succeeded() {
        let body = cancelled_body();
        let event_id = Envelope::from_eventbridge(&body).unwrap().metadata.event_id;
        let inbox = MemoryInbox::default();

        consume(queue(&[message("m1", &body)]), soon(), BUDGET, &inbox, |_| async {
            assert!(!inbox.handled_before(event_id).await.unwrap(), "nothing is written before the handler");
            Err(HandlerError::Permanent("fails".into()))
        })
        .await;
        assert!(!inbox.handled_before(event_id).await.unwrap(), "a failed event is not recorded");

        consume(queue(&[message("m1", &body)]), soon(), BUDGET, &inbox, |_| async { Ok(()) }).await;
        assert!(inbox.handled_before(event_id).await.unwrap());
    }

    #[tokio::test]
    async fn messages_the_invocation_has_no_time_left_for_are_reported_without_being_handled() {
        let batch = queue(&[message("a", &cancelled_body()), message("b", &cancelled_body())]);
        let deadline = OffsetDateTime::now_utc() + time::Duration::seconds(3);

        let response =
            consume(batch, deadline, BUDGET, &MemoryInbox::default(), |_| async { panic!("started without time") })
                .await;

        let failed: Vec<_> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
        assert_eq!(failed, vec!["a", "b"]);
    }

    #[test]
    fn a_scheduled_event_carries_its_time() {
        let payload = serde_json::json!({ "detail-type": "Scheduled Event", "source": "aws.events",
            "time": "2026-11-22T10:00:00Z", "detail": {} });
        let Trigger::Schedule { time, .. } = Trigger::parse(payload, soon()).unwrap() else { panic!("not a schedule") };
        assert_eq!(time.unix_timestamp(), 1_795_341_600);
    }
}

/// The sample payloads in `events/` are what `cargo lambda invoke --data-file` sends: each must
/// read as the functions read real ones.
#[cfg(test)]
mod samples {
    use super::*;

    fn samples(folder: &str) -> Vec<(String, Value)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events").join(folder);
        let mut found: Vec<(String, Value)> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .map(|path| {
                let text = std::fs::read_to_string(&path).unwrap();
                (path.display().to_string(), serde_json::from_str(&text).unwrap())
            })
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        assert!(!found.is_empty(), "no samples in {}", dir.display());
        found
    }

    #[test]
    fn every_sqs_sample_is_a_batch_of_readable_domain_events() {
        for (path, payload) in samples("sqs") {
            let deadline = OffsetDateTime::now_utc();
            let Ok(Trigger::Queue { batch, .. }) = Trigger::parse(payload, deadline) else {
                panic!("{path} is not an SQS batch")
            };
            for record in batch.records {
                let body = record.body.unwrap_or_default();
                Envelope::from_eventbridge(&body).unwrap_or_else(|e| panic!("{path}: {e}"));
            }
        }
    }

    #[test]
    fn every_eventbridge_sample_is_a_readable_domain_event() {
        for (path, payload) in samples("eventbridge") {
            Envelope::from_eventbridge(&payload.to_string()).unwrap_or_else(|e| panic!("{path}: {e}"));
        }
    }

    #[test]
    fn the_schedule_sample_is_a_schedule_tick() {
        for (path, payload) in samples("schedule") {
            let deadline = OffsetDateTime::now_utc();
            assert!(matches!(Trigger::parse(payload, deadline), Ok(Trigger::Schedule { .. })), "{path}");
        }
    }

    #[test]
    fn the_get_cart_sample_is_a_cart_query() {
        for (path, payload) in samples("lambda") {
            serde_json::from_value::<domain_events::queries::GetCart>(payload)
                .unwrap_or_else(|e| panic!("{path}: {e}"));
        }
    }

    #[test]
    fn every_api_gateway_sample_is_an_http_api_request() {
        for (path, payload) in samples("apigw") {
            let request =
                lambda_http::request::from_str(&payload.to_string()).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert!(!crate::http::route_key(&request).is_empty(), "{path} has no routeKey");
        }
    }
}
