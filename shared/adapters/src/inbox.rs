//! The consumer inbox on a domain's own table: one item per event the domain's consumer handled.
//!
//! Item: `pk = INBOX#<event id>`, `sk = INBOX` and `expires_at` (TTL), 40-odd bytes: one write
//! unit. The consumer reads it (strongly consistent, one read unit) before it runs a handler and
//! writes it with one `PutItem` after the handler succeeded, so a delivery that comes after that
//! is acknowledged without running the handler again. Nothing is written before the handler
//! runs: two deliveries of one event that overlap may both run it, and a crash between the
//! handler's writes and this one means the redelivery runs it again. Both are safe because every
//! handler is idempotent on its own (each state change is a conditional write on the state it
//! leaves; see docs/events.md, "Idempotent consumers"). Items expire after [`RETENTION_SECS`]
//! (the dead-letter queues keep messages 14 days, and a message redriven from one must still be
//! recognised). The relay ignores these items: its stream filter takes only outbox items.
//!
//! Until this design the inbox wrote twice per event (a leased claim before the handler, then a
//! `handled` mark): BENCHMARKS.md has the measurement and the reasons for the change.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::AttributeValue;
use time::OffsetDateTime;

use kernel::EventId;
use kernel::inbox::{Inbox, InboxError};

use crate::dynamo::{Item, get_consistent};
use crate::outbox::TTL_ATTRIBUTE;

/// Partition key prefix of inbox items.
pub const KEY_PREFIX: &str = "INBOX#";
/// How long the inbox remembers an event: the dead-letter queues' retention.
pub const RETENTION_SECS: i64 = 14 * 24 * 3600;

/// The inbox of the consumer that owns `table`.
#[derive(Debug, Clone)]
pub struct DynamoInbox {
    client: Client,
    table: String,
}

impl DynamoInbox {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    fn key(event: EventId) -> Item {
        Item::from([
            ("pk".to_owned(), AttributeValue::S(format!("{KEY_PREFIX}{event}"))),
            ("sk".to_owned(), AttributeValue::S("INBOX".to_owned())),
        ])
    }
}

/// A DynamoDB failure, with the SDK's whole context (its `Display` alone says "unhandled error").
fn failed(step: &'static str, error: impl std::error::Error + Send + Sync + 'static) -> InboxError {
    InboxError { step, detail: DisplayErrorContext(&error).to_string(), source: Box::new(error) }
}

fn number(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

impl Inbox for DynamoInbox {
    async fn handled_before(&self, event: EventId) -> Result<bool, InboxError> {
        let found = get_consistent(&self.client, &self.table, Self::key(event)).await.map_err(|e| failed("read", e))?;
        Ok(found.is_some())
    }

    async fn handled(&self, event: EventId) -> Result<(), InboxError> {
        // Unconditional: two overlapping runs that both succeeded write the same item.
        let mut item = Self::key(event);
        item.insert(TTL_ATTRIBUTE.to_owned(), number(OffsetDateTime::now_utc().unix_timestamp() + RETENTION_SECS));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|error| failed("handled", error))?;
        Ok(())
    }
}
