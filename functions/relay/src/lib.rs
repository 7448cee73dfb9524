//! # Ferrocart outbox relay
//!
//! One instance per domain table, fed by the table's DynamoDB stream (new images). For every
//! inserted outbox item ([`adapters::outbox`]) it publishes the event to the EventBridge bus,
//! in stream order, at most 10 entries and 256 KB per `PutEvents` call (the API's limits).
//!
//! - [`relay`] decides, record by record, what to publish, what to park and where to stop;
//!   [`bus`] and [`dead_letter`] are its two ports with their AWS adapters, so the decisions are
//!   unit-tested with in-process fakes and the adapters on moto (`tests/e2e`).
//! - [`republish`] finds an order's outbox items and publishes them again through the same bus
//!   adapter, for the `republish` operator binary (`src/bin/republish.rs`).
//!
//! **Why the order of work matters.** With `ReportBatchItemFailures`, Lambda checkpoints every
//! record before the sequence number a stream function reports. So the relay reports a record
//! only after everything before it in the batch is published or parked, and nothing after it has
//! been looked at.
//!
//! **Failures.**
//! - *Permanent* (an outbox item that does not read as one, an entry over 256 KB, or an entry
//!   EventBridge refuses with a code retrying cannot change, see [`bus::refusal`]): the stream
//!   record goes to the dead-letter queue (`DEAD_LETTER_QUEUE_URL`) with the reason, and the
//!   relay goes on with the next record.
//! - *Transient* (a failed call, a throttled or internally failed entry, or the dead-letter
//!   queue refusing the record): the relay stops and reports that record's sequence number, so
//!   Lambda retries from there. Entries of the same call that EventBridge accepted after the
//!   failed one are published again on the retry; consumers are idempotent (`docs/events.md`).

use aws_lambda_events::dynamodb::{Event as StreamEvent, EventRecord};

use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};

use adapters::outbox::{KEY_PREFIX, OutboxRecord};
use domain_events::Envelope;

pub mod bus;
pub mod dead_letter;
pub mod metrics;
pub mod republish;

use bus::{Call, EntryOutcome, EventBus, MAX_CALL_BYTES, Refusal, entry_size, refusal};
use dead_letter::{DeadLetter, DeadLetters, Reason};
use metrics::PublishFailure;

/// The relay's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `EVENT_BUS_NAME`: the bus to publish to.
    pub bus: String,
    /// `DEAD_LETTER_QUEUE_URL`: the SQS queue for records that can never be published.
    pub dead_letter_queue_url: String,
}

impl Config {
    pub fn from_env() -> Result<Self, lambda_glue::ConfigError> {
        Ok(Self {
            bus: lambda_glue::config::required("EVENT_BUS_NAME")?,
            dead_letter_queue_url: lambda_glue::config::required("DEAD_LETTER_QUEUE_URL")?,
        })
    }
}

/// An outbox record ready to publish, with the stream record it came from.
#[derive(Debug)]
struct Pending<'a> {
    sequence_number: &'a str,
    stream: &'a EventRecord,
    record: OutboxRecord,
}

/// Where the batch stops: Lambda retries from this sequence number on.
#[derive(Debug)]
struct Stop(String);

/// The outbox item a stream record inserted, if it is one.
fn outbox_record(record: &EventRecord) -> Option<Result<OutboxRecord, serde_dynamo::Error>> {
    if record.event_name != "INSERT" {
        return None;
    }
    let is_outbox = matches!(
        record.change.keys.get("pk"),
        Some(serde_dynamo::AttributeValue::S(pk)) if pk.starts_with(KEY_PREFIX)
    );
    is_outbox.then(|| serde_dynamo::from_item(record.change.new_image.clone()))
}

/// Publishes every outbox insert of the batch in stream order, parks the ones that can never be
/// published, and reports the first record that must be retried, if any.
pub async fn relay(bus: &impl EventBus, dead_letters: &impl DeadLetters, event: &StreamEvent) -> DynamoDbEventResponse {
    let mut response = DynamoDbEventResponse::default();
    if let Err(Stop(sequence_number)) = relay_records(bus, dead_letters, &event.records).await {
        // Both types are `#[non_exhaustive]`: built from their defaults, not with literals.
        let mut failure = DynamoDbBatchItemFailure::default();
        failure.item_identifier = Some(sequence_number);
        response.batch_item_failures.push(failure);
    }
    response
}

async fn relay_records(
    bus: &impl EventBus,
    dead_letters: &impl DeadLetters,
    records: &[EventRecord],
) -> Result<(), Stop> {
    let mut call: Call<Pending<'_>> = Call::default();
    for stream in records {
        // Lambda always sets it on stream records; an empty identifier fails the whole batch.
        let sequence_number = stream.change.sequence_number.as_deref().unwrap_or_default();
        let letter = match outbox_record(stream) {
            None => continue,
            Some(Ok(record)) if entry_size(&record) <= MAX_CALL_BYTES => {
                let size = entry_size(&record);
                if !call.has_room_for(size) {
                    publish(bus, dead_letters, call.take()).await?;
                }
                call.push(Pending { sequence_number, stream, record }, size);
                continue;
            }
            Some(Ok(record)) => {
                let error = format!("the entry is {} bytes, over PutEvents' {MAX_CALL_BYTES}", entry_size(&record));
                DeadLetter::new(Reason::EntryTooLarge, error, sequence_number, stream)
            }
            Some(Err(error)) => {
                DeadLetter::new(Reason::UnreadableOutboxItem, error.to_string(), sequence_number, stream)
            }
        };
        // Everything before the parked record is published first, so stream order holds.
        publish(bus, dead_letters, call.take()).await?;
        park(dead_letters, &letter).await?;
    }
    publish(bus, dead_letters, call.take()).await
}

/// Publishes one call's records; parks those refused for good; stops at the first that must be
/// retried.
async fn publish(bus: &impl EventBus, dead_letters: &impl DeadLetters, chunk: Vec<Pending<'_>>) -> Result<(), Stop> {
    let Some(first) = chunk.first() else { return Ok(()) };
    let records: Vec<&OutboxRecord> = chunk.iter().map(|pending| &pending.record).collect();
    let outcomes = match bus.put(&records).await {
        Ok(outcomes) => outcomes,
        Err(error) => {
            tracing::warn!(%error, sequence_number = first.sequence_number, "PutEvents failed; retrying from this record");
            metrics::publish_failure(PublishFailure::Retried).emit();
            return Err(Stop(first.sequence_number.to_owned()));
        }
    };
    for (pending, outcome) in chunk.iter().zip(outcomes) {
        let (event_id, correlation_id, detail_type) = (
            pending.record.pk.trim_start_matches(KEY_PREFIX),
            &pending.record.correlation_id,
            &pending.record.detail_type,
        );
        match outcome {
            EntryOutcome::Published => {
                tracing::info!(event_id, %correlation_id, %detail_type, "event published");
                count_business_metrics(&pending.record);
            }
            EntryOutcome::Refused { code, message } if refusal(&code) == Refusal::Permanent => {
                tracing::error!(event_id, %correlation_id, %detail_type, %code, %message, "EventBridge refused the event for good; parking it");
                let mut letter =
                    DeadLetter::new(Reason::RefusedByEventBridge, message, pending.sequence_number, pending.stream);
                letter.error_code = Some(code);
                park(dead_letters, &letter).await?;
            }
            EntryOutcome::Refused { code, message } => {
                tracing::warn!(event_id, %correlation_id, %detail_type, %code, %message, "EventBridge refused the event for now; retrying from it");
                metrics::publish_failure(PublishFailure::Retried).emit();
                return Err(Stop(pending.sequence_number.to_owned()));
            }
        }
    }
    Ok(())
}

/// Writes the business metrics of a published event ([`metrics::business`]). An event this
/// relay cannot read as a Ferrocart event (a newer version) is published all the same, uncounted.
fn count_business_metrics(record: &OutboxRecord) {
    let envelope = serde_json::from_str(&record.detail).map_err(|e| e.to_string()).and_then(|detail| {
        Envelope::from_parts(&record.detail_type, &record.source, detail).map_err(|e| e.to_string())
    });
    match envelope {
        Ok(envelope) => {
            for metric in metrics::business(&envelope) {
                metric
                    .with("correlation_id", &envelope.metadata.correlation_id)
                    .with("event_id", envelope.metadata.event_id.to_string())
                    .emit();
            }
        }
        Err(error) => tracing::debug!(%error, "published event not counted"),
    }
}

/// Parks a record, or stops the batch at it when the queue will not take it.
async fn park(dead_letters: &impl DeadLetters, letter: &DeadLetter<'_>) -> Result<(), Stop> {
    match dead_letters.park(letter).await {
        Ok(()) => {
            tracing::error!(reason = ?letter.reason, pk = letter.pk, sequence_number = letter.sequence_number, "record parked in the dead-letter queue");
            metrics::publish_failure(PublishFailure::Parked).emit();
            Ok(())
        }
        Err(error) => {
            tracing::warn!(%error, sequence_number = letter.sequence_number, "retrying from this record");
            Err(Stop(letter.sequence_number.to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::bus::CallFailed;
    use super::dead_letter::DeadLetterFailed;
    use super::*;

    fn sample() -> StreamEvent {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events/dynamodb/outbox-insert.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// The sample outbox insert as event `evt_{n}` at sequence number `n`.
    fn good(n: u32) -> EventRecord {
        let mut record = sample().records.remove(0);
        let pk = serde_dynamo::AttributeValue::S(format!("{KEY_PREFIX}evt_{n}"));
        record.change.keys.insert("pk".to_owned(), pk.clone());
        record.change.new_image.insert("pk".to_owned(), pk);
        record.change.sequence_number = Some(n.to_string());
        record
    }

    /// An outbox insert without its `detail`: it cannot be read as an outbox record.
    fn unreadable(n: u32) -> EventRecord {
        let mut record = good(n);
        record.change.new_image.remove("detail");
        record
    }

    fn batch(records: Vec<EventRecord>) -> StreamEvent {
        let mut event = sample();
        event.records = records;
        event
    }

    fn failures(response: &DynamoDbEventResponse) -> Vec<&str> {
        response.batch_item_failures.iter().filter_map(|f| f.item_identifier.as_deref()).collect()
    }

    /// EventBridge in-process: publishes every entry except the event ids it is told to refuse.
    #[derive(Default)]
    struct FakeBus {
        refuse: Vec<(&'static str, &'static str)>,
        down: bool,
        published: RefCell<Vec<String>>,
        calls: RefCell<Vec<usize>>,
    }

    impl EventBus for FakeBus {
        async fn put(&self, records: &[&OutboxRecord]) -> Result<Vec<EntryOutcome>, CallFailed> {
            assert!(records.len() <= bus::MAX_ENTRIES, "PutEvents takes at most 10 entries");
            self.calls.borrow_mut().push(records.len());
            if self.down {
                return Err(CallFailed("connection refused".to_owned()));
            }
            Ok(records
                .iter()
                .map(|record| {
                    let id = record.pk.trim_start_matches(KEY_PREFIX);
                    match self.refuse.iter().find(|(refused, _)| *refused == id) {
                        Some((_, code)) => EntryOutcome::Refused { code: (*code).to_owned(), message: "no".to_owned() },
                        None => {
                            self.published.borrow_mut().push(id.to_owned());
                            EntryOutcome::Published
                        }
                    }
                })
                .collect())
        }
    }

    /// The dead-letter queue in-process: what was parked, as (pk, reason, error code).
    #[derive(Default)]
    struct FakeQueue {
        down: bool,
        parked: RefCell<Vec<(String, Reason, Option<String>)>>,
    }

    impl DeadLetters for FakeQueue {
        async fn park(&self, letter: &DeadLetter<'_>) -> Result<(), DeadLetterFailed> {
            if self.down {
                return Err(DeadLetterFailed("queue unavailable".to_owned()));
            }
            // SQS refuses a body over its message size, as the real queue would.
            let body = letter.body().map_err(|error| DeadLetterFailed(error.to_string()))?;
            if body.len() > crate::dead_letter::MAX_MESSAGE_BYTES {
                return Err(DeadLetterFailed(format!("a message of {} bytes", body.len())));
            }
            let pk = letter.pk.unwrap_or_default().to_owned();
            self.parked.borrow_mut().push((pk, letter.reason, letter.error_code.clone()));
            Ok(())
        }
    }

    fn parked(queue: &FakeQueue) -> Vec<(String, Reason, Option<String>)> {
        queue.parked.borrow().clone()
    }

    fn published(bus: &FakeBus) -> Vec<String> {
        bus.published.borrow().clone()
    }

    /// `events/dynamodb/outbox-insert.json` is a stream record the relay publishes.
    #[test]
    fn the_outbox_stream_sample_holds_a_publishable_event() {
        let event = sample();
        let record = outbox_record(&event.records[0]).expect("an outbox insert").unwrap();
        assert_eq!((record.source.as_str(), record.detail_type.as_str()), ("ferrocart.checkout", "OrderPlaced"));
        let detail: serde_json::Value = serde_json::from_str(&record.detail).unwrap();
        domain_events::Envelope::from_parts(&record.detail_type, &record.source, detail).unwrap();
    }

    #[test]
    fn items_that_are_not_outbox_inserts_are_skipped() {
        let mut event = sample();
        event.records[0].event_name = "MODIFY".to_owned();
        assert!(outbox_record(&event.records[0]).is_none());
    }

    #[tokio::test]
    async fn an_unreadable_item_is_parked_after_the_records_before_it_are_published_and_the_rest_follow() {
        // Arrange
        let (bus, queue) = (FakeBus::default(), FakeQueue::default());
        let event = batch(vec![good(1), good(2), unreadable(3), good(4)]);

        // Act
        let response = relay(&bus, &queue, &event).await;

        // Assert
        assert_eq!(published(&bus), ["evt_1", "evt_2", "evt_4"], "stream order, the bad record left out");
        assert_eq!(parked(&queue), [("OUTBOX#evt_3".to_owned(), Reason::UnreadableOutboxItem, None)]);
        assert_eq!(*bus.calls.borrow(), [2, 1], "the records before the bad one went out before it was parked");
        assert!(response.batch_item_failures.is_empty(), "nothing to retry: {response:?}");
    }

    #[tokio::test]
    async fn when_the_dead_letter_queue_is_down_the_relay_stops_at_the_unreadable_item_after_publishing_the_ones_before()
     {
        let (bus, queue) = (FakeBus::default(), FakeQueue { down: true, ..FakeQueue::default() });

        let response = relay(&bus, &queue, &batch(vec![good(1), good(2), unreadable(3), good(4)])).await;

        assert_eq!(published(&bus), ["evt_1", "evt_2"]);
        assert_eq!(failures(&response), ["3"], "Lambda retries from the unreadable item");
    }

    #[tokio::test]
    async fn an_entry_eventbridge_refuses_for_good_is_parked_with_its_code_and_the_batch_goes_on() {
        let bus = FakeBus { refuse: vec![("evt_2", "MalformedDetail")], ..FakeBus::default() };
        let queue = FakeQueue::default();

        let response = relay(&bus, &queue, &batch(vec![good(1), good(2), good(3)])).await;

        assert_eq!(published(&bus), ["evt_1", "evt_3"]);
        assert_eq!(
            parked(&queue),
            [("OUTBOX#evt_2".to_owned(), Reason::RefusedByEventBridge, Some("MalformedDetail".to_owned()))]
        );
        assert!(response.batch_item_failures.is_empty());
    }

    #[tokio::test]
    async fn a_throttled_entry_stops_the_batch_at_that_record_without_parking_it() {
        let bus = FakeBus { refuse: vec![("evt_2", "ThrottlingException")], ..FakeBus::default() };
        let queue = FakeQueue::default();

        let response = relay(&bus, &queue, &batch(vec![good(1), good(2), good(3)])).await;

        assert_eq!(failures(&response), ["2"]);
        assert!(parked(&queue).is_empty(), "a transient refusal is retried, not parked");
    }

    #[tokio::test]
    async fn a_failed_call_stops_the_batch_at_the_first_record_of_that_call() {
        let bus = FakeBus { down: true, ..FakeBus::default() };
        let queue = FakeQueue::default();

        let response = relay(&bus, &queue, &batch((1..=12).map(good).collect())).await;

        assert_eq!(failures(&response), ["1"]);
        assert_eq!(*bus.calls.borrow(), [10], "nothing after the failed call was tried");
    }

    #[tokio::test]
    async fn the_record_to_retry_from_is_reported_as_the_json_lambda_reads() {
        let bus = FakeBus { down: true, ..FakeBus::default() };

        let response = relay(&bus, &FakeQueue::default(), &batch(vec![good(7)])).await;

        // The shape Lambda's ReportBatchItemFailures (and infra/localcloud's triggers) read.
        let expected = serde_json::json!({ "batchItemFailures": [{ "itemIdentifier": "7" }] });
        assert_eq!(serde_json::to_value(&response).unwrap(), expected);
    }

    #[tokio::test]
    async fn a_batch_that_went_out_reports_no_failures() {
        let (bus, queue) = (FakeBus::default(), FakeQueue::default());

        let response = relay(&bus, &queue, &batch(vec![good(1)])).await;

        assert_eq!(serde_json::to_value(&response).unwrap(), serde_json::json!({ "batchItemFailures": [] }));
    }

    #[tokio::test]
    async fn a_large_batch_goes_out_ten_entries_a_call_in_order() {
        let (bus, queue) = (FakeBus::default(), FakeQueue::default());

        let response = relay(&bus, &queue, &batch((1..=23).map(good).collect())).await;

        assert_eq!(*bus.calls.borrow(), [10, 10, 3]);
        assert_eq!(published(&bus), (1..=23).map(|n| format!("evt_{n}")).collect::<Vec<_>>());
        assert!(response.batch_item_failures.is_empty());
    }

    #[tokio::test]
    async fn an_entry_over_256_kb_is_parked_without_being_sent() {
        let (bus, queue) = (FakeBus::default(), FakeQueue::default());
        let mut huge = good(2);
        let detail = serde_dynamo::AttributeValue::S("x".repeat(MAX_CALL_BYTES));
        huge.change.new_image.insert("detail".to_owned(), detail);

        let response = relay(&bus, &queue, &batch(vec![good(1), huge, good(3)])).await;

        assert_eq!(published(&bus), ["evt_1", "evt_3"]);
        assert_eq!(parked(&queue), [("OUTBOX#evt_2".to_owned(), Reason::EntryTooLarge, None)]);
        assert!(response.batch_item_failures.is_empty());
    }
}
