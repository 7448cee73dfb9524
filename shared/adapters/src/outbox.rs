//! The transactional outbox.
//!
//! A domain never publishes to EventBridge itself. It adds [`put`] to the DynamoDB transaction
//! that changes its state, so the event exists if and only if the change does. The table's stream
//! carries the new outbox item to the relay function, which publishes it. The item expires by TTL
//! 7 days after its event (`expires_at`, enabled on every domain table in template.yaml): the
//! stream keeps a record only 24 hours, and the items are what an operator republishes from once
//! the stream has moved on (`functions/relay`, binary `republish`).
//!
//! The outbox item's layout is the same in every table, so it lives here, once.

use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use serde::{Deserialize, Serialize};

use domain_events::Envelope;

/// Partition key prefix of outbox items; the relay's stream filter matches on it.
pub const KEY_PREFIX: &str = "OUTBOX#";
/// The sort key of every outbox item.
pub const SORT_KEY: &str = "OUTBOX";
/// The TTL attribute of every domain table.
pub const TTL_ATTRIBUTE: &str = "expires_at";
/// How long an outbox item is kept after its event: 7 days, well past the stream's 24 hours, so
/// an event the relay parked or Lambda skipped can still be republished from the table. TTL
/// deletes expired items within a few days, not at once, so a few may outlive this.
const RETENTION_SECS: i64 = 7 * 24 * 3600;

/// An outbox item as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxRecord {
    pub pk: String,
    pub sk: String,
    pub source: String,
    pub detail_type: String,
    /// The event's `detail`, as JSON text.
    pub detail: String,
    pub correlation_id: String,
    /// Epoch seconds; DynamoDB TTL deletes the item after this.
    pub expires_at: i64,
    /// The X-Ray trace the event was written in ([`domain_events::trace`]); the relay publishes
    /// the event in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_header: Option<String>,
}

/// Why an event could not be put in the outbox.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("could not serialize the event")]
    Serialize(#[from] serde_json::Error),
    #[error("could not build the outbox item")]
    Item(#[from] serde_dynamo::Error),
    #[error("could not build the outbox write")]
    Build(#[from] aws_sdk_dynamodb::error::BuildError),
}

impl OutboxRecord {
    pub fn new(envelope: &Envelope) -> Result<Self, serde_json::Error> {
        let event_id = envelope.metadata.event_id;
        Ok(Self {
            pk: format!("{KEY_PREFIX}{event_id}"),
            sk: SORT_KEY.to_owned(),
            source: envelope.event.source().as_str().to_owned(),
            detail_type: envelope.event.detail_type().to_owned(),
            detail: envelope.detail()?.to_string(),
            correlation_id: envelope.metadata.correlation_id.clone(),
            expires_at: envelope.metadata.occurred_at.unix_timestamp() + RETENTION_SECS,
            trace_header: domain_events::trace::current(),
        })
    }
}

/// The key of the outbox item of event `event_id` (`evt_…`).
pub fn key(event_id: &str) -> crate::dynamo::Item {
    use aws_sdk_dynamodb::types::AttributeValue;
    [("pk", format!("{KEY_PREFIX}{event_id}")), ("sk", SORT_KEY.to_owned())]
        .map(|(name, value)| (name.to_owned(), AttributeValue::S(value)))
        .into()
}

/// The transaction action that writes `envelope` to `table`'s outbox. The condition makes a
/// retried transaction with the same event id a no-op conflict instead of a second event.
pub fn put(table: &str, envelope: &Envelope) -> Result<TransactWriteItem, OutboxError> {
    let item = serde_dynamo::to_item(OutboxRecord::new(envelope)?)?;
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk)")
        .build()?;
    Ok(TransactWriteItem::builder().put(put).build())
}
