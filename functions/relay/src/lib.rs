//! # Ferrocart outbox relay
//!
//! One instance per domain table, fed by the table's DynamoDB stream (new images). For every
//! inserted outbox item ([`adapters::outbox`]) it publishes the event to the EventBridge bus,
//! in stream order, at most 10 per `PutEvents` call (the API's limit).
//!
//! Failure handling keeps "a written order never loses its event": at the first record that
//! cannot be published, the relay stops and reports that record's sequence number, so Lambda
//! retries from there (nothing after it was sent). EventBridge may then see a record twice;
//! consumers are idempotent (see `docs/events.md`).

use aws_lambda_events::dynamodb::{Event as StreamEvent, EventRecord};
use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use adapters::outbox::{KEY_PREFIX, OutboxRecord};
use lambda_glue::batch::BatchResponse;

/// `PutEvents` accepts at most 10 entries per call.
const MAX_ENTRIES: usize = 10;

/// The relay's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `EVENT_BUS_NAME`: the bus to publish to.
    pub bus: String,
}

impl Config {
    pub fn from_env() -> Result<Self, lambda_glue::ConfigError> {
        Ok(Self { bus: lambda_glue::config::required("EVENT_BUS_NAME")? })
    }
}

/// An outbox record ready to publish, with the stream position it came from.
#[derive(Debug)]
struct Pending {
    sequence_number: String,
    record: OutboxRecord,
}

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

/// Publishes every outbox insert of the batch, in order.
pub async fn relay(client: &Client, config: &Config, event: StreamEvent) -> BatchResponse {
    let mut response = BatchResponse::default();
    let mut pending = Vec::new();
    for record in &event.records {
        let sequence_number = record.change.sequence_number.clone().unwrap_or_default();
        match outbox_record(record) {
            None => {}
            Some(Ok(record)) => pending.push(Pending { sequence_number, record }),
            Some(Err(error)) => {
                // A malformed outbox item is a bug in a producer; retrying cannot fix it, but
                // skipping it would lose an event. Stop here so it is retried and alarmed on.
                tracing::error!(%error, sequence_number, "unreadable outbox item");
                response.fail(sequence_number);
                return response;
            }
        }
    }
    for chunk in pending.chunks(MAX_ENTRIES) {
        if let Some(failed) = publish(client, config, chunk).await {
            response.fail(failed);
            return response;
        }
    }
    response
}

/// Publishes one chunk; returns the sequence number of the first entry that failed.
async fn publish(client: &Client, config: &Config, chunk: &[Pending]) -> Option<String> {
    let entries = chunk
        .iter()
        .map(|pending| {
            PutEventsRequestEntry::builder()
                .event_bus_name(&config.bus)
                .source(&pending.record.source)
                .detail_type(&pending.record.detail_type)
                .detail(&pending.record.detail)
                .resources(pending.record.correlation_id.clone())
                .build()
        })
        .collect::<Vec<_>>();
    let first = chunk.first().map(|p| p.sequence_number.clone());
    match client.put_events().set_entries(Some(entries)).send().await {
        Ok(output) => {
            let failed = output
                .entries()
                .iter()
                .position(|entry| entry.error_code().is_some())
                .and_then(|index| chunk.get(index));
            match failed {
                Some(pending) => {
                    tracing::warn!(
                        correlation_id = %pending.record.correlation_id,
                        detail_type = %pending.record.detail_type,
                        "EventBridge refused an entry; retrying from it"
                    );
                    Some(pending.sequence_number.clone())
                }
                None => {
                    for pending in chunk {
                        tracing::info!(
                            correlation_id = %pending.record.correlation_id,
                            detail_type = %pending.record.detail_type,
                            "event published"
                        );
                    }
                    None
                }
            }
        }
        Err(error) => {
            tracing::warn!(error = %aws_sdk_eventbridge::error::DisplayErrorContext(&error), "PutEvents failed");
            first
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `events/dynamodb/outbox-insert.json` is a stream record the relay publishes.
    #[test]
    fn the_outbox_stream_sample_holds_a_publishable_event() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events/dynamodb/outbox-insert.json");
        let event: StreamEvent = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let record = outbox_record(&event.records[0]).expect("an outbox insert").unwrap();
        assert_eq!((record.source.as_str(), record.detail_type.as_str()), ("ferrocart.checkout", "OrderPlaced"));
        let detail: serde_json::Value = serde_json::from_str(&record.detail).unwrap();
        domain_events::Envelope::from_parts(&record.detail_type, &record.source, detail).unwrap();
    }

    #[test]
    fn items_that_are_not_outbox_inserts_are_skipped() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events/dynamodb/outbox-insert.json");
        let mut event: StreamEvent = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        event.records[0].event_name = "MODIFY".to_owned();
        assert!(outbox_record(&event.records[0]).is_none());
    }
}
