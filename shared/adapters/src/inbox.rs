//! The consumer inbox on a domain's own table: one item per event the domain's consumer took.
//!
//! Item: `pk = INBOX#<event id>`, `sk = INBOX`, `status` (`in_progress` | `handled`),
//! `lease_until` (epoch seconds, while in progress) and `expires_at` (TTL). A claim is one
//! conditional `PutItem` — "no item, or an in-progress item whose lease has lapsed" — so two
//! deliveries of the same event can never both run the handler at once, and a delivery after the
//! event was handled is recognised from the item the failed condition returns. Items expire after
//! [`RETENTION_SECS`] (the dead-letter queues keep messages 14 days, and a message redriven from
//! one must still be recognised). The relay ignores these items: its stream filter takes only
//! outbox items.
//!
//! The lease ends at the invocation's deadline, so a claim outlives its invocation only when that
//! invocation crashed. This relies on the queue's visibility timeout being at least the
//! function's timeout (Lambda refuses an SQS event source otherwise; ours is 180 s for 30 s): by
//! the time SQS delivers the message again, a crashed claim has lapsed.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use time::OffsetDateTime;

use kernel::EventId;
use kernel::inbox::{Claim, Inbox, InboxError};

use crate::dynamo::{ConditionFailed, Item, get_consistent};
use crate::outbox::TTL_ATTRIBUTE;

/// Partition key prefix of inbox items.
pub const KEY_PREFIX: &str = "INBOX#";
/// How long the inbox remembers an event: the dead-letter queues' retention.
pub const RETENTION_SECS: i64 = 14 * 24 * 3600;

const IN_PROGRESS: &str = "in_progress";
const HANDLED: &str = "handled";

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

fn string(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

impl Inbox for DynamoInbox {
    async fn claim(&self, event: EventId, lease_until: OffsetDateTime) -> Result<Claim, InboxError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let mut item = Self::key(event);
        item.insert("status".to_owned(), string(IN_PROGRESS));
        item.insert("lease_until".to_owned(), number(lease_until.unix_timestamp()));
        item.insert(TTL_ATTRIBUTE.to_owned(), number(now + RETENTION_SECS));
        let claimed = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR (#status = :in_progress AND lease_until < :now)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":in_progress", string(IN_PROGRESS))
            .expression_attribute_values(":now", number(now))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let error = match claimed {
            Ok(_) => return Ok(Claim::Claimed),
            Err(error) => error,
        };
        let Some(PutItemError::ConditionalCheckFailedException(refused)) = error.as_service_error() else {
            return Err(failed("claim", error));
        };
        // The failed condition returns the item that failed it; read it if an endpoint does not.
        let existing = match refused.item() {
            Some(item) => Some(item.clone()),
            None => get_consistent(&self.client, &self.table, Self::key(event))
                .await
                .map_err(|e| failed("claim read", e))?,
        };
        Ok(match existing.as_ref().and_then(|item| item.get("status")).and_then(|s| s.as_s().ok()) {
            Some(status) if status == HANDLED => Claim::Handled,
            // Claimed by a live invocation, or released between our write and our read: the
            // retry will tell.
            _ => Claim::InProgress,
        })
    }

    async fn handled(&self, event: EventId) -> Result<(), InboxError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(event)))
            .update_expression("SET #status = :handled REMOVE lease_until")
            // Never create an item without its TTL: a claim that vanished stays vanished.
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":handled", string(HANDLED))
            .send()
            .await
            .map_err(|error| failed("handled", error))?;
        Ok(())
    }

    async fn release(&self, event: EventId, lease_until: OffsetDateTime) -> Result<(), InboxError> {
        // Only this invocation's claim, still in progress: never forget an event that was
        // handled, nor a claim another invocation took after ours lapsed.
        let released = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(event)))
            .condition_expression("#status = :in_progress AND lease_until = :mine")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":in_progress", string(IN_PROGRESS))
            .expression_attribute_values(":mine", number(lease_until.unix_timestamp()))
            .send()
            .await;
        match released {
            Ok(_) => Ok(()),
            Err(error) if error.is_condition_failed() => Ok(()),
            Err(error) => Err(failed("release", error)),
        }
    }
}
