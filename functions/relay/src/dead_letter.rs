//! The relay's dead-letter queue: where a record that can never be published is parked, so the
//! shard moves on and an operator can see, fix and republish it. The letter carries the whole
//! stream record when it fits in one SQS message; otherwise (an entry too large for EventBridge is
//! too large for SQS as well) only its keys and why: the outbox item stays in its table for 7 days,
//! and `republish` reads it from there.

use aws_lambda_events::dynamodb::EventRecord;
use serde::Serialize;

/// Why a record was parked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The outbox item does not read as an [`adapters::outbox::OutboxRecord`] (a producer bug).
    UnreadableOutboxItem,
    /// The entry is over `PutEvents`' 256 KB on its own.
    EntryTooLarge,
    /// EventBridge refused the entry with a code retrying cannot change ([`crate::bus::refusal`]).
    RefusedByEventBridge,
}

/// The message body sent to the queue: the stream record as Lambda passed it, and why.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter<'a> {
    pub reason: Reason,
    /// EventBridge's `ErrorCode` for [`Reason::RefusedByEventBridge`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// What went wrong, in words (EventBridge's `ErrorMessage`, or the parse error).
    pub error: String,
    pub sequence_number: &'a str,
    /// The stream's ARN, which names the table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_source_arn: Option<&'a str>,
    /// The outbox item's key (`OUTBOX#evt_…`), also when the rest of it is unreadable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pk: Option<&'a str>,
    /// The stream record, left out when the letter would not fit in one SQS message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<&'a EventRecord>,
}

/// SQS's largest message body: 256 KiB.
pub const MAX_MESSAGE_BYTES: usize = 262_144;

impl<'a> DeadLetter<'a> {
    pub fn new(reason: Reason, error: String, sequence_number: &'a str, record: &'a EventRecord) -> Self {
        let pk = match record.change.keys.get("pk") {
            Some(serde_dynamo::AttributeValue::S(pk)) => Some(pk.as_str()),
            _ => None,
        };
        Self {
            reason,
            error_code: None,
            error,
            sequence_number,
            event_source_arn: record.event_source_arn.as_deref(),
            pk,
            record: Some(record),
        }
    }

    /// The message body: the whole letter if it fits in one SQS message, else the letter without
    /// the stream record (still naming its table, key, sequence number and reason).
    pub fn body(&self) -> Result<String, serde_json::Error> {
        let whole = serde_json::to_string(self)?;
        if whole.len() <= MAX_MESSAGE_BYTES {
            return Ok(whole);
        }
        serde_json::to_string(&Self { record: None, ..self.clone() })
    }
}

/// The queue could not take the record; the relay must not move past it.
#[derive(Debug, thiserror::Error)]
#[error("could not park the record in the dead-letter queue: {0}")]
pub struct DeadLetterFailed(pub String);

/// Where records that can never be published go.
#[allow(async_fn_in_trait)]
pub trait DeadLetters {
    async fn park(&self, letter: &DeadLetter<'_>) -> Result<(), DeadLetterFailed>;
}

/// The SQS queue named by `DEAD_LETTER_QUEUE_URL`.
#[derive(Debug, Clone)]
pub struct SqsDeadLetters {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsDeadLetters {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self { client, queue_url: queue_url.into() }
    }
}

impl DeadLetters for SqsDeadLetters {
    async fn park(&self, letter: &DeadLetter<'_>) -> Result<(), DeadLetterFailed> {
        let body = letter.body().map_err(|error| DeadLetterFailed(error.to_string()))?;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .map_err(|error| DeadLetterFailed(aws_sdk_sqs::error::DisplayErrorContext(&error).to_string()))?;
        Ok(())
    }
}
