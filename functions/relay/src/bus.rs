//! The event bus port, its EventBridge adapter, and what EventBridge's answers mean.

use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use adapters::outbox::OutboxRecord;

/// `PutEvents` accepts at most 10 entries per call.
pub const MAX_ENTRIES: usize = 10;
/// `PutEvents` accepts at most 256 KB of entries per call, counted as [`entry_size`] counts.
pub const MAX_CALL_BYTES: usize = 256 * 1024;

/// The size EventBridge counts for the entry of `record` ("Calculating PutEvents event entry
/// size"): the UTF-8 bytes of source, detail-type, detail and each resource; we send no `Time`.
pub fn entry_size(record: &OutboxRecord) -> usize {
    record.source.len() + record.detail_type.len() + record.detail.len() + record.correlation_id.len()
}

/// What EventBridge answered for one entry of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryOutcome {
    Published,
    /// The entry's `ErrorCode` and `ErrorMessage`.
    Refused {
        code: String,
        message: String,
    },
}

/// The call failed as a whole (transport error, throttling, 5xx, …): no entry is known to have
/// been published.
#[derive(Debug, thiserror::Error)]
#[error("PutEvents failed: {0}")]
pub struct CallFailed(pub String);

/// The bus the relay publishes to.
#[allow(async_fn_in_trait)]
pub trait EventBus {
    /// Publishes `records` in one call, in order: at most [`MAX_ENTRIES`] of them and
    /// [`MAX_CALL_BYTES`] in all. Returns one outcome per record, in the same order.
    async fn put(&self, records: &[&OutboxRecord]) -> Result<Vec<EntryOutcome>, CallFailed>;
}

/// Whether publishing an entry again can succeed where it was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Retrying may work: stop the batch here and let Lambda retry.
    Transient,
    /// The entry itself, or the relay's standing with the bus, is wrong: no retry will change the
    /// answer, so the record goes to the dead-letter queue.
    Permanent,
}

/// Sorts a `PutEventsResultEntry.ErrorCode`. The permanent codes are those the API reference
/// lists as non-retryable; `InternalFailure` and `ThrottlingException` (retryable there),
/// `InternalException`, and any code not listed here are transient, so an unknown answer blocks
/// the shard and raises the stuck-relay alarm instead of parking events without a person
/// looking at them.
pub fn refusal(code: &str) -> Refusal {
    match code {
        "MalformedDetail"
        | "InvalidArgument"
        | "AccessDeniedException"
        | "AccessDenied"
        | "InvalidAccountIdException"
        | "RedactionFailure"
        | "NotAuthorizedForSourceException"
        | "NotAuthorizedForDetailTypeException" => Refusal::Permanent,
        _ => Refusal::Transient,
    }
}

/// The EventBridge bus named in the configuration.
#[derive(Debug, Clone)]
pub struct EventBridgeBus {
    client: Client,
    bus: String,
}

impl EventBridgeBus {
    pub fn new(client: Client, bus: impl Into<String>) -> Self {
        Self { client, bus: bus.into() }
    }
}

impl EventBus for EventBridgeBus {
    async fn put(&self, records: &[&OutboxRecord]) -> Result<Vec<EntryOutcome>, CallFailed> {
        let entries = records
            .iter()
            .map(|record| {
                PutEventsRequestEntry::builder()
                    .event_bus_name(&self.bus)
                    .source(&record.source)
                    .detail_type(&record.detail_type)
                    .detail(&record.detail)
                    .resources(record.correlation_id.clone())
                    // Not counted in the entry size; EventBridge and SQS carry it to consumers.
                    .set_trace_header(record.trace_header.clone())
                    .build()
            })
            .collect::<Vec<_>>();
        let output = self
            .client
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|error| CallFailed(aws_sdk_eventbridge::error::DisplayErrorContext(&error).to_string()))?;
        // The result entries are in request order (PutEventsResponse.Entries); one that is
        // missing is reported as a transient refusal so the caller retries it.
        Ok((0..records.len())
            .map(|index| match output.entries().get(index) {
                Some(entry) => match entry.error_code() {
                    None => EntryOutcome::Published,
                    Some(code) => EntryOutcome::Refused {
                        code: code.to_owned(),
                        message: entry.error_message().unwrap_or_default().to_owned(),
                    },
                },
                None => EntryOutcome::Refused {
                    code: "MissingResultEntry".to_owned(),
                    message: "PutEvents answered fewer entries than it was sent".to_owned(),
                },
            })
            .collect())
    }
}

/// Groups records into `PutEvents` calls that respect both limits, keeping their order.
#[derive(Debug)]
pub struct Call<T> {
    items: Vec<T>,
    bytes: usize,
}

impl<T> Default for Call<T> {
    fn default() -> Self {
        Self { items: Vec::new(), bytes: 0 }
    }
}

impl<T> Call<T> {
    /// Whether an entry of `size` bytes still fits in this call.
    pub fn has_room_for(&self, size: usize) -> bool {
        self.items.len() < MAX_ENTRIES && self.bytes + size <= MAX_CALL_BYTES
    }

    pub fn push(&mut self, item: T, size: usize) {
        self.items.push(item);
        self.bytes += size;
    }

    /// The records gathered so far, leaving the call empty.
    pub fn take(&mut self) -> Vec<T> {
        self.bytes = 0;
        std::mem::take(&mut self.items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_codes_the_api_calls_non_retryable_are_permanent_and_the_rest_transient() {
        for code in ["MalformedDetail", "InvalidArgument", "AccessDeniedException", "NotAuthorizedForSourceException"] {
            assert_eq!(refusal(code), Refusal::Permanent, "{code}");
        }
        for code in ["ThrottlingException", "InternalFailure", "InternalException", "SomethingNew"] {
            assert_eq!(refusal(code), Refusal::Transient, "{code}");
        }
    }

    #[test]
    fn a_call_holds_at_most_ten_entries_and_256_kb() {
        let mut call = Call::default();
        for n in 0..MAX_ENTRIES {
            assert!(call.has_room_for(10));
            call.push(n, 10);
        }
        assert!(!call.has_room_for(10), "an eleventh entry");
        assert_eq!(call.take().len(), MAX_ENTRIES);
        call.push(0, MAX_CALL_BYTES - 10);
        assert!(call.has_room_for(10) && !call.has_room_for(11), "the byte limit");
    }
}
