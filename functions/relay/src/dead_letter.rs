//! The relay's dead-letter queue: where a record that can never be published is parked, whole,
//! so the shard moves on and an operator can see, fix and republish it.

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
    pub record: &'a EventRecord,
}

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
            record,
        }
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
        // An outbox item is at most 400 KB (DynamoDB's item limit) and in practice a few KB;
        // a body over SQS's message size limit fails here and the batch stops at this record.
        let body = serde_json::to_string(letter).map_err(|error| DeadLetterFailed(error.to_string()))?;
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
