//! The payment table: the one place that knows its key layout.
//!
//! | item    | pk               | sk       | notes                                      |
//! |---------|------------------|----------|--------------------------------------------|
//! | payment | `PAY#{order_id}` | `PAY`    | the facts, the stage, the PaymentIntent id |
//! | outbox  | `OUTBOX#{event}` | `OUTBOX` | see [`adapters::outbox`]                   |
//! | inbox   | `INBOX#{event}`  | `INBOX`  | events the consumer took; see [`adapters::inbox`] |
//! | webhook inbox | `STRIPE#{evt_…}` | `STRIPE` | Stripe events the webhook took (`status`, `lease_until`, `expires_at`) |
//! | refund  | `PAY#{order_id}` | `REFUND#{source}` | one refund; `source` is `key#{Idempotency-Key}`, `return#{ret_…}` or `stripe#{re_…}` |
//! | dispute | `PAY#{order_id}` | `DISPUTE#{dp_…}` | a dispute announced (`PaymentDisputed`), once |
//! | dispute closed | `PAY#{order_id}` | `DISPUTE#{dp_…}#CLOSED` | its closing announced (`PaymentDisputeClosed`), once |
//!
//! Refunds: the payment item keeps `refund_reserved` (the amounts of every refund not failed)
//! and `refunded` (the succeeded ones), in minor units. A refund item holds `refund_id`,
//! `amount`, `reason`, `note`, `return_id`, `status` (`pending`, `succeeded`, `failed`),
//! `created_at` (epoch seconds), `request` (an admin request's canonical body), `attempt` (the
//! idempotency key's suffix, absent for the first), `stripe_refund_id`, `look_again_at` (epoch
//! seconds; a refund Stripe holds `pending` has both while it stays `pending` here),
//! `refunded_total` and `failure_reason`. A pending refund is in the same sparse index as an
//! authorization, under `gsi1pk = REFUNDING#{k}`, `gsi1sk = {due}#{order_id}` (12-digit seconds:
//! when the sweep should carry it on, [`Refund::due_at`]), so the sweep finds refunds left pending
//! or due to be read back from Stripe; settling or failing removes it.
//!
//! One index, `Authorizing` (keys only), lists the payments being authorized (each shard oldest
//! claim first) for the stalled-authorization sweep: `gsi1pk = AUTHORIZING#{k}`,
//! `gsi1sk = {since}#{order_id}`
//! with `since` the claim's epoch seconds padded to 12 digits (so text order is time order). The
//! claim sets both keys, a takeover rewrites `gsi1sk`, and settling removes both, so the index is
//! sparse: it holds a payment only while it is authorizing, and costs two index writes per
//! authorization (the claim's insert and the settlement's delete). Nothing else it projects ever
//! changes, so recording facts and the PaymentIntent writes no index. `k` is the order id's shard
//! of [`SHARDS`] ([`adapters::shard`]), so the authorizations of every order in the shop do not
//! share one index partition (~1,000 writes/s); the sweeps read each shard in turn.
//!
//! Payment attributes: `order_id`; `total` (`{amount, currency}`) and `payment_method` from
//! `OrderPlaced`; `stock_reserved` and `cancelled` (true once recorded, never removed); `status`
//! (`authorizing`, `requires_action` (awaiting 3-D Secure), `authorized`, `failed`, `voided`, `capturing`, `captured`, `capture_failed`;
//! absent until claimed); `authorizing_since` (epoch seconds of the claim); `payment_intent_id`;
//! `failure_reason` and `decline_code`; `capture_failure_reason`. A capture writes no index: it
//! needs no sweep (see [`crate::capture`]). None is
//! called `expires_at`: that is the table's TTL attribute, for outbox and inbox items only.
//!
//! Recording a fact is an UpdateItem that only SETs, so the facts commute; it returns the whole
//! item (`ALL_NEW`) so the caller sees whether the other fact is in. Every stage change is
//! conditional on the stage it leaves, and a failed condition returns the item as it was
//! (`ReturnValuesOnConditionCheckFailure: ALL_OLD`, also on the stage change inside a
//! transaction), so no decision rests on a separate read. The one read, [`PaymentStore::get`], is
//! the sweep's, and every write it leads to is conditional as well.
//!
//! The condition expressions are [`Payment::apply`](crate::model::Payment::apply)'s conditions
//! (and the `SET`s of facts [`Payment::record`](crate::model::Payment::record)'s) in DynamoDB's
//! words; `tests/dynamo_store.rs` checks them against an emulator.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use serde::Deserialize;
use time::OffsetDateTime;

use adapters::dynamo::{ConditionFailed, Item, Transaction, TransactionError, Unavailable, get_consistent};
use adapters::outbox;
use adapters::shard::{SHARDS, Sharded, SweepPosition};
use domain_events::Envelope;
use kernel::page::Page;
use kernel::{Money, OrderId};

use crate::model::{CaptureSettlement, OrderPayment, Payment, PaymentIntentId, Settlement, Stage};
use crate::ports::{
    Claim, PaymentStore, Recorded, RefundStore, Reserved, StoreError, StripeEventId, WebhookInbox, Write,
};
use crate::refund::{PendingRefund, Refund, RefundStatus, RefundTotals, Source};

const AUTHORIZING: &str = "authorizing";
const REQUIRES_ACTION: &str = "requires_action";
const AUTHORIZED: &str = "authorized";
const FAILED: &str = "failed";
const VOIDED: &str = "voided";
const CAPTURING: &str = "capturing";
const CAPTURED: &str = "captured";
const CAPTURE_FAILED: &str = "capture_failed";

/// The sparse index of payments being authorized, and its partitions.
const AUTHORIZING_INDEX: &str = "Authorizing";
const AUTHORIZING_PK: Sharded = Sharded::new("AUTHORIZING", SHARDS);
/// Payments per page of the stalled listing.
const STALLED_PAGE: usize = 25;

/// `status` and `total` are DynamoDB reserved words: expressions name them through these.
const NAMES: [(&str, &str); 2] = [("#status", "status"), ("#total", "total")];

fn key(order_id: OrderId) -> Item {
    adapters::dynamo::key(format!("PAY#{order_id}"), "PAY")
}

/// The actions of a stage change's transaction, by what their conditions mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// The payment's stage change: its condition is the stage it leaves.
    StageChange,
    /// The event in the outbox: its condition is that the event is not there yet.
    Event,
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn epoch(at: OffsetDateTime) -> AttributeValue {
    AttributeValue::N(at.unix_timestamp().to_string())
}

/// A claim's place in the `Authorizing` index: its time, padded so text order is time order.
fn since_key(since: OffsetDateTime, order_id: OrderId) -> AttributeValue {
    s(format!("{:012}#{order_id}", since.unix_timestamp()))
}

fn order_of_key(order_id: Option<&AttributeValue>) -> Result<OrderId, Unavailable> {
    let pk =
        order_id.and_then(|pk| pk.as_s().ok()).ok_or_else(|| Unavailable::because("an index entry without a pk"))?;
    pk.strip_prefix("PAY#")
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| Unavailable::because(format!("the Authorizing index lists `{pk}`, not a payment")))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    Authorizing,
    RequiresAction,
    Authorized,
    Failed,
    Voided,
    Capturing,
    Captured,
    CaptureFailed,
}

#[derive(Debug, Deserialize)]
struct PaymentRecord {
    order_id: OrderId,
    total: Option<Money>,
    payment_method: Option<String>,
    #[serde(default)]
    stock_reserved: bool,
    #[serde(default)]
    cancelled: bool,
    status: Option<Status>,
    authorizing_since: Option<i64>,
    payment_intent_id: Option<String>,
    capture_failure_reason: Option<String>,
    #[serde(default)]
    refund_reserved: i64,
    #[serde(default)]
    refunded: i64,
}

impl PaymentRecord {
    fn into_payment(self) -> Result<Payment, StoreError> {
        let order_id = self.order_id;
        let corrupt = |detail: String| StoreError::Corrupt { order_id, detail };
        let intent = self
            .payment_intent_id
            .as_deref()
            .map(PaymentIntentId::parse)
            .transpose()
            .map_err(|e| corrupt(e.to_string()))?;
        let recorded_intent = || intent.clone().ok_or_else(|| corrupt("no payment_intent_id".to_owned()));
        let stage = match self.status {
            None => Stage::Pending,
            Some(Status::Authorizing) => {
                let since = self.authorizing_since.ok_or_else(|| corrupt("no authorizing_since".to_owned()))?;
                let since = OffsetDateTime::from_unix_timestamp(since).map_err(|e| corrupt(e.to_string()))?;
                Stage::Authorizing { since, intent: intent.clone() }
            }
            Some(Status::RequiresAction) => Stage::AwaitingAction { intent: recorded_intent()? },
            Some(Status::Authorized) => Stage::Authorized { intent: recorded_intent()? },
            Some(Status::Failed) => Stage::Failed,
            Some(Status::Voided) => Stage::Voided { intent: recorded_intent()? },
            Some(Status::Capturing) => Stage::Capturing { intent: recorded_intent()? },
            Some(Status::Captured) => Stage::Captured { intent: recorded_intent()? },
            Some(Status::CaptureFailed) => Stage::CaptureFailed {
                intent: recorded_intent()?,
                reason: self.capture_failure_reason.ok_or_else(|| corrupt("no capture_failure_reason".to_owned()))?,
            },
        };
        let order = match (self.total, self.payment_method) {
            (Some(total), Some(payment_method)) => Some(OrderPayment { total, payment_method }),
            (None, None) => None,
            _ => return Err(corrupt("only half of the order's payment is recorded".to_owned())),
        };
        let refunds = RefundTotals { reserved: self.refund_reserved, refunded: self.refunded };
        Ok(Payment { order_id, order, stock_reserved: self.stock_reserved, cancelled: self.cancelled, stage, refunds })
    }
}

fn payment(item: Item) -> Result<Payment, StoreError> {
    serde_dynamo::from_item::<_, PaymentRecord>(item).map_err(Unavailable::from)?.into_payment()
}

/// The DynamoDB implementation of [`PaymentStore`].
#[derive(Debug, Clone)]
pub struct DynamoPayments {
    client: Client,
    table: String,
}

impl DynamoPayments {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    /// One sweep page of a sharded `Authorizing` partition (`AUTHORIZING#k` or `REFUNDING#k`):
    /// the items claimed at `since` or earlier (every key of a claim made then sorts below the
    /// next second's), at most [`STALLED_PAGE`], after `cursor`.
    async fn due(
        &self,
        partition: &Sharded,
        since: OffsetDateTime,
        cursor: Option<SweepPosition>,
    ) -> Result<(Vec<Item>, Option<SweepPosition>), Unavailable> {
        let below = format!("{:012}", since.unix_timestamp() + 1);
        partition
            .page_below(
                &self.client,
                &self.table,
                AUTHORIZING_INDEX,
                "gsi1pk",
                ("gsi1sk", &below),
                STALLED_PAGE,
                cursor,
            )
            .await
    }

    /// An UpdateItem on the payment. Without a condition it always succeeds (`Won`); with one,
    /// `Lost` carries the item as it was.
    async fn update(
        &self,
        order_id: OrderId,
        expression: &str,
        condition: Option<&str>,
        values: Item,
    ) -> Result<Claim, StoreError> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(order_id)))
            .update_expression(expression)
            .set_expression_attribute_values(Some(values))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        for (name, attribute) in NAMES {
            // DynamoDB rejects names that the expressions do not use.
            if expression.contains(name) || condition.is_some_and(|c| c.contains(name)) {
                request = request.expression_attribute_names(name, attribute);
            }
        }
        if let Some(condition) = condition {
            request = request.condition_expression(condition);
        }
        match request.send().await {
            Ok(output) => {
                let item = output.attributes.ok_or_else(|| StoreError::Corrupt {
                    order_id,
                    detail: "UpdateItem returned no attributes".to_owned(),
                })?;
                Ok(Claim::Won(payment(item)?))
            }
            Err(error) if error.is_condition_failed() => {
                // The exception carries the item as it was (`ReturnValuesOnConditionCheckFailure`).
                let old = match error.into_service_error() {
                    UpdateItemError::ConditionalCheckFailedException(failed) => failed.item,
                    _ => None,
                };
                let item = old.ok_or_else(|| StoreError::Corrupt {
                    order_id,
                    detail: "a conditional update found no payment".to_owned(),
                })?;
                Ok(Claim::Lost(payment(item)?))
            }
            Err(error) => Err(Unavailable::from(error).into()),
        }
    }

    /// An update that has no condition, so cannot lose.
    async fn record(&self, order_id: OrderId, expression: &str, values: Item) -> Result<Payment, StoreError> {
        match self.update(order_id, expression, None, values).await? {
            Claim::Won(payment) | Claim::Lost(payment) => Ok(payment),
        }
    }

    /// The payment's stage change and its outbox event, atomically.
    async fn transact(
        &self,
        order_id: OrderId,
        expression: &str,
        condition: &str,
        values: Item,
        event: &Envelope,
    ) -> Result<Write, StoreError> {
        let mut transaction = Transaction::new();
        transaction
            .push(Action::StageChange, update_action(&self.table, key(order_id), expression, condition, values)?)
            .push(Action::Event, outbox::put(&self.table, event).map_err(Unavailable::from)?);
        // The refused stage change is read from its cancellation reason, which carries the item
        // as it was (`ReturnValuesOnConditionCheckFailure: ALL_OLD` above).
        let failed = match transaction.commit_returning_old(&self.client).await {
            Ok(()) => return Ok(Write::Done),
            Err(TransactionError::ConditionsFailed(failed)) => failed,
            Err(error) => return Err(Unavailable::from(error).into()),
        };
        match failed.into_iter().find(|(action, _)| *action == Action::StageChange) {
            Some((_, old)) => {
                let item = old.ok_or_else(|| StoreError::Corrupt {
                    order_id,
                    detail: "a refused stage change found no payment".to_owned(),
                })?;
                Ok(Write::Refused(payment(item)?))
            }
            // Only the event's condition failed: its id is already in the outbox.
            None => {
                Err(Unavailable::because(format!("the outbox already holds event {}", event.metadata.event_id)).into())
            }
        }
    }
}

impl PaymentStore for DynamoPayments {
    /// The shard and its `LastEvaluatedKey`.
    type Cursor = SweepPosition;

    async fn get(&self, order_id: OrderId) -> Result<Option<Payment>, StoreError> {
        get_consistent(&self.client, &self.table, key(order_id)).await?.map(payment).transpose()
    }

    async fn stalled(
        &self,
        claimed_by: OffsetDateTime,
        cursor: Option<SweepPosition>,
    ) -> Result<Page<OrderId, SweepPosition>, StoreError> {
        let (listed, next) = self.due(&AUTHORIZING_PK, claimed_by, cursor).await?;
        let items = listed.iter().map(|item| order_of_key(item.get("pk"))).collect::<Result<_, _>>()?;
        Ok(Page { items, next })
    }

    async fn record_order(&self, order_id: OrderId, order: &OrderPayment) -> Result<Payment, StoreError> {
        let total = serde_dynamo::to_attribute_value(order.total).map_err(Unavailable::from)?;
        self.record(
            order_id,
            "SET order_id = :order_id, #total = if_not_exists(#total, :total), \
             payment_method = if_not_exists(payment_method, :payment_method)",
            HashMap::from([
                (":order_id".to_owned(), s(order_id.to_string())),
                (":total".to_owned(), total),
                (":payment_method".to_owned(), s(&order.payment_method)),
            ]),
        )
        .await
    }

    async fn record_stock_reserved(&self, order_id: OrderId) -> Result<Payment, StoreError> {
        self.record(
            order_id,
            "SET order_id = :order_id, stock_reserved = :true",
            HashMap::from([
                (":order_id".to_owned(), s(order_id.to_string())),
                (":true".to_owned(), AttributeValue::Bool(true)),
            ]),
        )
        .await
    }

    async fn record_cancelled(&self, order_id: OrderId) -> Result<Payment, StoreError> {
        self.record(
            order_id,
            "SET order_id = :order_id, cancelled = :true",
            HashMap::from([
                (":order_id".to_owned(), s(order_id.to_string())),
                (":true".to_owned(), AttributeValue::Bool(true)),
            ]),
        )
        .await
    }

    async fn claim(&self, order_id: OrderId, now: OffsetDateTime) -> Result<Claim, StoreError> {
        self.update(
            order_id,
            "SET #status = :authorizing, authorizing_since = :now, gsi1pk = :index, gsi1sk = :since_key",
            Some(
                "attribute_not_exists(#status) AND attribute_not_exists(cancelled) \
                 AND stock_reserved = :true AND attribute_exists(#total)",
            ),
            HashMap::from([
                (":authorizing".to_owned(), s(AUTHORIZING)),
                (":now".to_owned(), epoch(now)),
                (":true".to_owned(), AttributeValue::Bool(true)),
                (":index".to_owned(), s(AUTHORIZING_PK.key_for(&order_id.to_string()))),
                (":since_key".to_owned(), since_key(now, order_id)),
            ]),
        )
        .await
    }

    async fn reclaim(
        &self,
        order_id: OrderId,
        since: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<Claim, StoreError> {
        self.update(
            order_id,
            "SET authorizing_since = :now, gsi1sk = :since_key",
            Some("#status = :authorizing AND authorizing_since = :since AND attribute_not_exists(payment_intent_id)"),
            HashMap::from([
                (":authorizing".to_owned(), s(AUTHORIZING)),
                (":since".to_owned(), epoch(since)),
                (":now".to_owned(), epoch(now)),
                (":since_key".to_owned(), since_key(now, order_id)),
            ]),
        )
        .await
    }

    async fn record_intent(&self, order_id: OrderId, intent: &PaymentIntentId) -> Result<Claim, StoreError> {
        self.update(
            order_id,
            "SET payment_intent_id = :intent",
            Some("#status = :authorizing AND attribute_not_exists(payment_intent_id)"),
            HashMap::from([(":authorizing".to_owned(), s(AUTHORIZING)), (":intent".to_owned(), s(intent.as_str()))]),
        )
        .await
    }

    async fn settle(&self, order_id: OrderId, settlement: &Settlement, event: &Envelope) -> Result<Write, StoreError> {
        let mut values = HashMap::from([(":authorizing".to_owned(), s(AUTHORIZING))]);
        let (expression, intent) = match settlement {
            Settlement::Authorized { intent } => {
                values.insert(":authorized".to_owned(), s(AUTHORIZED));
                ("SET #status = :authorized REMOVE gsi1pk, gsi1sk", Some(intent))
            }
            // Out of the `Authorizing` index: the sweep leaves a payment awaiting 3-D Secure alone.
            Settlement::AwaitingAction { intent, .. } => {
                values.insert(":requires_action".to_owned(), s(REQUIRES_ACTION));
                ("SET #status = :requires_action REMOVE gsi1pk, gsi1sk", Some(intent))
            }
            Settlement::Failed { intent, reason, decline_code } => {
                values.insert(":failed".to_owned(), s(FAILED));
                values.insert(":reason".to_owned(), s(reason));
                match decline_code {
                    Some(code) => {
                        values.insert(":decline_code".to_owned(), s(code));
                        (
                            "SET #status = :failed, failure_reason = :reason, decline_code = :decline_code \
                             REMOVE gsi1pk, gsi1sk",
                            intent.as_ref(),
                        )
                    }
                    None => ("SET #status = :failed, failure_reason = :reason REMOVE gsi1pk, gsi1sk", intent.as_ref()),
                }
            }
        };
        // Only the recorded PaymentIntent settles the payment (or, for a create Stripe refused,
        // only a payment that recorded none); and an authorization only if the order is not
        // cancelled, so a cancellation that lands during the confirmation is seen by the settler.
        // A payment awaiting 3-D Secure settles as one authorizing would.
        let condition = match (intent, settlement) {
            (Some(intent), Settlement::Authorized { .. }) => {
                values.insert(":intent".to_owned(), s(intent.as_str()));
                values.insert(":requires_action".to_owned(), s(REQUIRES_ACTION));
                "#status IN (:authorizing, :requires_action) AND payment_intent_id = :intent \
                 AND attribute_not_exists(cancelled)"
            }
            (Some(intent), Settlement::AwaitingAction { .. }) => {
                values.insert(":intent".to_owned(), s(intent.as_str()));
                "#status = :authorizing AND payment_intent_id = :intent AND attribute_not_exists(cancelled)"
            }
            (Some(intent), Settlement::Failed { .. }) => {
                values.insert(":intent".to_owned(), s(intent.as_str()));
                values.insert(":requires_action".to_owned(), s(REQUIRES_ACTION));
                "#status IN (:authorizing, :requires_action) AND payment_intent_id = :intent"
            }
            (None, _) => "#status = :authorizing AND attribute_not_exists(payment_intent_id)",
        };
        self.transact(order_id, expression, condition, values, event).await
    }

    async fn void(&self, order_id: OrderId, intent: &PaymentIntentId, event: &Envelope) -> Result<Write, StoreError> {
        self.transact(
            order_id,
            "SET #status = :voided",
            "#status = :authorized AND payment_intent_id = :intent",
            HashMap::from([
                (":voided".to_owned(), s(VOIDED)),
                (":authorized".to_owned(), s(AUTHORIZED)),
                (":intent".to_owned(), s(intent.as_str())),
            ]),
            event,
        )
        .await
    }

    async fn start_capture(&self, order_id: OrderId, intent: &PaymentIntentId) -> Result<Claim, StoreError> {
        self.update(
            order_id,
            "SET #status = :capturing",
            Some("#status = :authorized AND payment_intent_id = :intent AND attribute_not_exists(cancelled)"),
            HashMap::from([
                (":capturing".to_owned(), s(CAPTURING)),
                (":authorized".to_owned(), s(AUTHORIZED)),
                (":intent".to_owned(), s(intent.as_str())),
            ]),
        )
        .await
    }

    async fn settle_capture(
        &self,
        order_id: OrderId,
        settlement: &CaptureSettlement,
        event: &Envelope,
    ) -> Result<Write, StoreError> {
        match settlement {
            CaptureSettlement::Captured { intent } => {
                self.transact(
                    order_id,
                    "SET #status = :captured",
                    "#status = :capturing AND payment_intent_id = :intent",
                    HashMap::from([
                        (":captured".to_owned(), s(CAPTURED)),
                        (":capturing".to_owned(), s(CAPTURING)),
                        (":intent".to_owned(), s(intent.as_str())),
                    ]),
                    event,
                )
                .await
            }
            // From `voided` too: a dispatch that reached payment after the void.
            CaptureSettlement::Failed { intent, reason } => {
                self.transact(
                    order_id,
                    "SET #status = :capture_failed, capture_failure_reason = :reason",
                    "#status IN (:capturing, :voided) AND payment_intent_id = :intent",
                    HashMap::from([
                        (":capture_failed".to_owned(), s(CAPTURE_FAILED)),
                        (":reason".to_owned(), s(reason)),
                        (":capturing".to_owned(), s(CAPTURING)),
                        (":voided".to_owned(), s(VOIDED)),
                        (":intent".to_owned(), s(intent.as_str())),
                    ]),
                    event,
                )
                .await
            }
        }
    }
}

/// The webhook inbox's item for a Stripe event.
fn notice_key(event: &StripeEventId) -> Item {
    adapters::dynamo::key(format!("STRIPE#{event}"), "STRIPE")
}

const NOTICE_IN_PROGRESS: &str = "in_progress";
const NOTICE_HANDLED: &str = "handled";
/// Stripe retries a webhook for up to three days; a receipt is kept a week beyond that.
const NOTICE_RETENTION_SECS: i64 = 10 * 24 * 3600;

impl WebhookInbox for DynamoPayments {
    async fn claim_notice(
        &self,
        event: &StripeEventId,
        lease_until: OffsetDateTime,
    ) -> Result<kernel::inbox::Claim, StoreError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let mut item = notice_key(event);
        item.insert("status".to_owned(), s(NOTICE_IN_PROGRESS));
        item.insert("lease_until".to_owned(), epoch(lease_until));
        item.insert(outbox::TTL_ATTRIBUTE.to_owned(), AttributeValue::N((now + NOTICE_RETENTION_SECS).to_string()));
        let claimed = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR (#status = :in_progress AND lease_until < :now)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":in_progress", s(NOTICE_IN_PROGRESS))
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let error = match claimed {
            Ok(_) => return Ok(kernel::inbox::Claim::Claimed),
            Err(error) => error,
        };
        let Some(PutItemError::ConditionalCheckFailedException(refused)) = error.as_service_error() else {
            return Err(Unavailable::from(error).into());
        };
        let handled = refused
            .item()
            .and_then(|item| item.get("status"))
            .and_then(|status| status.as_s().ok())
            .is_some_and(|status| status == NOTICE_HANDLED);
        Ok(if handled { kernel::inbox::Claim::Handled } else { kernel::inbox::Claim::InProgress })
    }

    async fn notice_handled(&self, event: &StripeEventId) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(notice_key(event)))
            .update_expression("SET #status = :handled REMOVE lease_until")
            // Never create a receipt without its TTL.
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":handled", s(NOTICE_HANDLED))
            .send()
            .await
            .map_err(Unavailable::from)?;
        Ok(())
    }

    async fn release_notice(&self, event: &StripeEventId, lease_until: OffsetDateTime) -> Result<(), StoreError> {
        let released = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(notice_key(event)))
            .condition_expression("#status = :in_progress AND lease_until = :mine")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":in_progress", s(NOTICE_IN_PROGRESS))
            .expression_attribute_values(":mine", epoch(lease_until))
            .send()
            .await;
        match released {
            Ok(_) => Ok(()),
            Err(error) if error.is_condition_failed() => Ok(()),
            Err(error) => Err(Unavailable::from(error).into()),
        }
    }
}

const REFUND_PENDING: &str = "pending";
const REFUND_SUCCEEDED: &str = "succeeded";
const REFUND_FAILED: &str = "failed";
/// The partitions of pending refunds in the `Authorizing` index.
const REFUNDING_PK: Sharded = Sharded::new("REFUNDING", SHARDS);
const REFUND_PREFIX: &str = "REFUND#";

fn refund_key(order_id: OrderId, source: &Source) -> Item {
    adapters::dynamo::key(format!("PAY#{order_id}"), format!("{REFUND_PREFIX}{}", source.encode()))
}

/// The actions of a refund's transaction, by what their conditions mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefundAction {
    /// The payment's sums: the room is left, or the refunded sum is the one read.
    Payment,
    /// The refund: it does not exist yet, or it is still pending.
    Refund,
    /// The event in the outbox (or the dispute's marker): not there yet.
    Event,
}

#[derive(Debug, Deserialize)]
struct RefundRecord {
    sk: String,
    refund_id: kernel::RefundId,
    order_id: OrderId,
    amount: Money,
    reason: domain_events::payment::RefundReason,
    note: Option<String>,
    return_id: Option<kernel::ReturnId>,
    status: String,
    created_at: i64,
    request: Option<String>,
    attempt: Option<u32>,
    stripe_refund_id: Option<String>,
    look_again_at: Option<i64>,
    refunded_total: Option<Money>,
    failure_reason: Option<String>,
}

impl RefundRecord {
    fn into_refund(self) -> Result<Refund, StoreError> {
        let order_id = self.order_id;
        let corrupt =
            |detail: &str| StoreError::Corrupt { order_id, detail: format!("refund {}: {detail}", self.refund_id) };
        let source =
            self.sk.strip_prefix(REFUND_PREFIX).and_then(Source::decode).ok_or_else(|| corrupt("unreadable source"))?;
        let look_again_at = self.look_again_at.map(OffsetDateTime::from_unix_timestamp).transpose();
        let look_again_at = look_again_at.map_err(|_| corrupt("look_again_at"))?;
        let status = match (self.status.as_str(), self.stripe_refund_id, self.refunded_total) {
            (REFUND_PENDING, Some(stripe_refund_id), _) => RefundStatus::Processing {
                stripe_refund_id,
                look_again_at: look_again_at.ok_or_else(|| corrupt("pending at Stripe without look_again_at"))?,
            },
            (REFUND_PENDING, None, _) => RefundStatus::Pending,
            (REFUND_SUCCEEDED, Some(stripe_refund_id), Some(refunded_total)) => {
                RefundStatus::Succeeded { stripe_refund_id, refunded_total }
            }
            (REFUND_FAILED, _, _) => {
                RefundStatus::Failed { reason: self.failure_reason.unwrap_or_else(|| "unknown".to_owned()) }
            }
            _ => return Err(corrupt("a status without its details")),
        };
        let created_at = OffsetDateTime::from_unix_timestamp(self.created_at).map_err(|_| corrupt("created_at"))?;
        Ok(Refund {
            refund_id: self.refund_id,
            order_id,
            source,
            amount: self.amount,
            reason: self.reason,
            note: self.note,
            return_id: self.return_id,
            status,
            created_at,
            request: self.request,
            attempt: self.attempt.unwrap_or(0),
        })
    }
}

fn refund_of(item: Item) -> Result<Refund, StoreError> {
    serde_dynamo::from_item::<_, RefundRecord>(item).map_err(Unavailable::from)?.into_refund()
}

/// The whole refund item as written: pending with its place in the index, or succeeded.
fn refund_item(refund: &Refund) -> Result<Item, StoreError> {
    let mut item = refund_key(refund.order_id, &refund.source);
    let money = |money: Money| serde_dynamo::to_attribute_value(money).map_err(Unavailable::from);
    let reason = serde_dynamo::to_attribute_value(refund.reason).map_err(Unavailable::from)?;
    item.insert("refund_id".to_owned(), s(refund.refund_id.to_string()));
    item.insert("order_id".to_owned(), s(refund.order_id.to_string()));
    item.insert("amount".to_owned(), money(refund.amount)?);
    item.insert("reason".to_owned(), reason);
    item.insert("status".to_owned(), s(refund.status.as_str()));
    item.insert("created_at".to_owned(), epoch(refund.created_at));
    if let Some(note) = &refund.note {
        item.insert("note".to_owned(), s(note));
    }
    if let Some(return_id) = refund.return_id {
        item.insert("return_id".to_owned(), s(return_id.to_string()));
    }
    if let Some(request) = &refund.request {
        item.insert("request".to_owned(), s(request));
    }
    if refund.attempt > 0 {
        item.insert("attempt".to_owned(), n(i64::from(refund.attempt)));
    }
    if let Some(due) = refund.due_at() {
        item.insert("gsi1pk".to_owned(), s(REFUNDING_PK.key_for(&refund.order_id.to_string())));
        item.insert("gsi1sk".to_owned(), since_key(due, refund.order_id));
    }
    match &refund.status {
        RefundStatus::Pending => {}
        RefundStatus::Processing { stripe_refund_id, look_again_at } => {
            item.insert("stripe_refund_id".to_owned(), s(stripe_refund_id));
            item.insert("look_again_at".to_owned(), epoch(*look_again_at));
        }
        RefundStatus::Succeeded { stripe_refund_id, refunded_total } => {
            item.insert("stripe_refund_id".to_owned(), s(stripe_refund_id));
            item.insert("refunded_total".to_owned(), money(*refunded_total)?);
        }
        RefundStatus::Failed { reason } => {
            item.insert("failure_reason".to_owned(), s(reason));
        }
    }
    Ok(item)
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// A Put (only where no item exists), returning the item in the way when it fails.
fn put_new(table: &str, item: Item) -> Result<TransactWriteItem, StoreError> {
    let put = aws_sdk_dynamodb::types::Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk)")
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .build()
        .map_err(Unavailable::from)?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// An Update in a transaction, returning the item as it was when its condition fails.
fn update_action(
    table: &str,
    key: Item,
    expression: &str,
    condition: &str,
    values: Item,
) -> Result<TransactWriteItem, StoreError> {
    let mut update = Update::builder()
        .table_name(table)
        .set_key(Some(key))
        .update_expression(expression)
        .condition_expression(condition)
        .set_expression_attribute_values(Some(values))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
    for (name, attribute) in NAMES {
        if expression.contains(name) || condition.contains(name) {
            update = update.expression_attribute_names(name, attribute);
        }
    }
    Ok(TransactWriteItem::builder().update(update.build().map_err(Unavailable::from)?).build())
}

/// A refund's move out of `pending` (and so out of the sweep's index): `SET set`, `values`
/// filling it, only while the refund is pending.
fn leave_pending(table: &str, refund: &Refund, set: &str, mut values: Item) -> Result<TransactWriteItem, StoreError> {
    values.insert(":pending".to_owned(), s(REFUND_PENDING));
    let expression = format!("SET {set} REMOVE gsi1pk, gsi1sk");
    update_action(table, refund_key(refund.order_id, &refund.source), &expression, "#status = :pending", values)
}

/// The condition that the payment's refunded sum is still the one read.
fn refunded_is(seen: i64) -> &'static str {
    if seen == 0 { "attribute_not_exists(refunded) OR refunded = :seen" } else { "refunded = :seen" }
}

impl DynamoPayments {
    /// Runs a refund transaction: which labelled conditions failed, with the items as they were.
    async fn refund_transaction(
        &self,
        transaction: &Transaction<RefundAction>,
    ) -> Result<Vec<(RefundAction, Option<Item>)>, StoreError> {
        match transaction.commit_returning_old(&self.client).await {
            Ok(()) => Ok(Vec::new()),
            Err(TransactionError::ConditionsFailed(failed)) => Ok(failed),
            // Another write on the same items at the same moment: like a lost race.
            Err(TransactionError::Conflict) => Ok(vec![(RefundAction::Payment, None)]),
            Err(error) => Err(Unavailable::from(error).into()),
        }
    }

    /// A refund's move to `failed` (`failing`), the release of its amount on the payment
    /// (`released`) and its `RefundFailed`, in one transaction.
    async fn record_failure(
        &self,
        failing: TransactWriteItem,
        released: TransactWriteItem,
        event: &Envelope,
    ) -> Result<Recorded, StoreError> {
        let mut transaction = Transaction::new();
        transaction
            .push(RefundAction::Refund, failing)
            .push(RefundAction::Payment, released)
            .push(RefundAction::Event, outbox::put(&self.table, event).map_err(Unavailable::from)?);
        Self::recorded(self.refund_transaction(&transaction).await?)
    }

    /// The outcome of a settle, fail or record from the conditions that failed.
    fn recorded(failed: Vec<(RefundAction, Option<Item>)>) -> Result<Recorded, StoreError> {
        if failed.is_empty() {
            return Ok(Recorded::Done);
        }
        if let Some((_, old)) = failed.iter().find(|(action, _)| *action == RefundAction::Refund) {
            let item = old.clone().ok_or_else(|| Unavailable::because("a refused refund write found no refund"))?;
            return Ok(Recorded::Already(Box::new(refund_of(item)?)));
        }
        if failed.iter().any(|(action, _)| *action == RefundAction::Payment) {
            return Ok(Recorded::Moved);
        }
        Err(Unavailable::because("the outbox already holds this refund's event").into())
    }
}

impl RefundStore for DynamoPayments {
    /// The index's `LastEvaluatedKey`.
    type RefundCursor = SweepPosition;

    async fn refund(&self, order_id: OrderId, source: &Source) -> Result<Option<Refund>, StoreError> {
        get_consistent(&self.client, &self.table, refund_key(order_id, source)).await?.map(refund_of).transpose()
    }

    async fn refunds(&self, order_id: OrderId) -> Result<Vec<Refund>, StoreError> {
        let items =
            adapters::dynamo::query_partition(&self.client, &self.table, &format!("PAY#{order_id}"), true).await?;
        items
            .into_iter()
            .filter(|item| item.get("sk").and_then(|sk| sk.as_s().ok()).is_some_and(|sk| sk.starts_with(REFUND_PREFIX)))
            .map(refund_of)
            .collect()
    }

    async fn due_refunds(
        &self,
        now: OffsetDateTime,
        cursor: Option<SweepPosition>,
    ) -> Result<Page<PendingRefund, SweepPosition>, StoreError> {
        let (listed, next) = self.due(&REFUNDING_PK, now, cursor).await?;
        let items = listed
            .iter()
            .map(|item| {
                let order_id = order_of_key(item.get("pk"))?;
                let source = item
                    .get("sk")
                    .and_then(|sk| sk.as_s().ok())
                    .and_then(|sk| sk.strip_prefix(REFUND_PREFIX))
                    .and_then(Source::decode)
                    .ok_or_else(|| {
                        Unavailable::because("the Refunding partition lists an item that is not a refund")
                    })?;
                Ok(PendingRefund { order_id, source })
            })
            .collect::<Result<_, Unavailable>>()?;
        Ok(Page { items, next })
    }

    async fn reserve_refund(&self, payment: &Payment, refund: &Refund) -> Result<Reserved, StoreError> {
        let total = payment.order.as_ref().map_or(0, |order| order.total.amount());
        let room = total - refund.amount.amount();
        let mut transaction = Transaction::new();
        transaction
            .push(
                RefundAction::Payment,
                update_action(
                    &self.table,
                    key(payment.order_id),
                    "SET refund_reserved = if_not_exists(refund_reserved, :zero) + :amount",
                    "#status = :captured AND (attribute_not_exists(refund_reserved) OR refund_reserved <= :room)",
                    HashMap::from([
                        (":zero".to_owned(), n(0)),
                        (":amount".to_owned(), n(refund.amount.amount())),
                        (":captured".to_owned(), s(CAPTURED)),
                        (":room".to_owned(), n(room)),
                    ]),
                )?,
            )
            .push(RefundAction::Refund, put_new(&self.table, refund_item(refund)?)?);
        let failed = self.refund_transaction(&transaction).await?;
        if failed.is_empty() {
            return Ok(Reserved::Done);
        }
        if let Some((_, old)) = failed.iter().find(|(action, _)| *action == RefundAction::Refund) {
            let item = old.clone().ok_or_else(|| Unavailable::because("a refused refund found no refund"))?;
            return Ok(Reserved::Exists(Box::new(refund_of(item)?)));
        }
        Ok(Reserved::Moved)
    }

    async fn settle_refund(
        &self,
        payment: &Payment,
        refund: &Refund,
        event: &Envelope,
    ) -> Result<Recorded, StoreError> {
        let RefundStatus::Succeeded { stripe_refund_id, refunded_total } = &refund.status else {
            return Err(Unavailable::because("settling a refund that has not succeeded").into());
        };
        let seen = payment.refunds.refunded;
        let mut transaction = Transaction::new();
        transaction
            .push(
                RefundAction::Refund,
                leave_pending(
                    &self.table,
                    refund,
                    "#status = :succeeded, stripe_refund_id = :stripe_refund_id, refunded_total = :refunded_total",
                    HashMap::from([
                        (":succeeded".to_owned(), s(REFUND_SUCCEEDED)),
                        (":stripe_refund_id".to_owned(), s(stripe_refund_id)),
                        (
                            ":refunded_total".to_owned(),
                            serde_dynamo::to_attribute_value(refunded_total).map_err(Unavailable::from)?,
                        ),
                    ]),
                )?,
            )
            .push(
                RefundAction::Payment,
                update_action(
                    &self.table,
                    key(payment.order_id),
                    "SET refunded = :refunded",
                    refunded_is(seen),
                    HashMap::from([
                        (":seen".to_owned(), n(seen)),
                        (":refunded".to_owned(), n(refunded_total.amount())),
                    ]),
                )?,
            )
            .push(RefundAction::Event, outbox::put(&self.table, event).map_err(Unavailable::from)?);
        Self::recorded(self.refund_transaction(&transaction).await?)
    }

    async fn fail_refund(&self, refund: &Refund, event: &Envelope) -> Result<Recorded, StoreError> {
        let RefundStatus::Failed { reason } = &refund.status else {
            return Err(Unavailable::because("failing a refund that has not failed").into());
        };
        let failing = leave_pending(
            &self.table,
            refund,
            "#status = :failed, failure_reason = :reason",
            HashMap::from([(":failed".to_owned(), s(REFUND_FAILED)), (":reason".to_owned(), s(reason))]),
        )?;
        let released = update_action(
            &self.table,
            key(refund.order_id),
            "SET refund_reserved = refund_reserved - :amount",
            "attribute_exists(refund_reserved)",
            HashMap::from([(":amount".to_owned(), n(refund.amount.amount()))]),
        )?;
        self.record_failure(failing, released, event).await
    }

    async fn fail_succeeded_refund(
        &self,
        refund: &Refund,
        stripe_refund_id: &str,
        event: &Envelope,
    ) -> Result<Recorded, StoreError> {
        let RefundStatus::Failed { reason } = &refund.status else {
            return Err(Unavailable::because("failing a refund that has not failed").into());
        };
        let failing = update_action(
            &self.table,
            refund_key(refund.order_id, &refund.source),
            "SET #status = :failed, failure_reason = :reason REMOVE refunded_total",
            "#status = :succeeded AND stripe_refund_id = :stripe_refund_id",
            HashMap::from([
                (":failed".to_owned(), s(REFUND_FAILED)),
                (":reason".to_owned(), s(reason)),
                (":succeeded".to_owned(), s(REFUND_SUCCEEDED)),
                (":stripe_refund_id".to_owned(), s(stripe_refund_id)),
            ]),
        )?;
        // Commutative: a settle racing this one conditions on the refunded sum it read, so it
        // loses and plans again from the sum without this refund.
        let released = update_action(
            &self.table,
            key(refund.order_id),
            "SET refunded = refunded - :amount, refund_reserved = refund_reserved - :amount",
            "refunded >= :amount AND refund_reserved >= :amount",
            HashMap::from([(":amount".to_owned(), n(refund.amount.amount()))]),
        )?;
        self.record_failure(failing, released, event).await
    }

    async fn follow_refund(&self, refund: &Refund, first: Option<&Envelope>) -> Result<Recorded, StoreError> {
        let (RefundStatus::Processing { stripe_refund_id, look_again_at }, Some(due)) =
            (&refund.status, refund.due_at())
        else {
            return Err(Unavailable::because("following a refund Stripe does not hold pending").into());
        };
        const FOLLOW: &str = "SET stripe_refund_id = :id, look_again_at = :at, gsi1sk = :due";
        let values = HashMap::from([
            (":id".to_owned(), s(stripe_refund_id)),
            (":at".to_owned(), epoch(*look_again_at)),
            (":due".to_owned(), since_key(due, refund.order_id)),
            (":pending".to_owned(), s(REFUND_PENDING)),
        ]);
        let key = refund_key(refund.order_id, &refund.source);
        if let Some(event) = first {
            // The first record of it pending at Stripe, and its `RefundPending`: one transaction.
            let condition = "#status = :pending AND attribute_not_exists(stripe_refund_id)";
            let following = update_action(&self.table, key, FOLLOW, condition, values)?;
            let mut transaction = Transaction::new();
            transaction
                .push(RefundAction::Refund, following)
                .push(RefundAction::Event, outbox::put(&self.table, event).map_err(Unavailable::from)?);
            return Self::recorded(self.refund_transaction(&transaction).await?);
        }
        // Read back still pending: when to look again, no event (and no transaction, at half the
        // write units).
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .update_expression(FOLLOW)
            .condition_expression("#status = :pending AND stripe_refund_id = :id")
            .expression_attribute_names("#status", "status")
            .set_expression_attribute_values(Some(values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        match update.send().await {
            Ok(_) => Ok(Recorded::Done),
            Err(error) if error.is_condition_failed() => {
                // The exception carries the refund as it is (`ReturnValuesOnConditionCheckFailure`).
                let old = match error.into_service_error() {
                    UpdateItemError::ConditionalCheckFailedException(failed) => failed.item,
                    _ => None,
                };
                let old = old.ok_or_else(|| Unavailable::because("following a refund that is not stored"))?;
                Ok(Recorded::Already(Box::new(refund_of(old)?)))
            }
            Err(error) => Err(Unavailable::from(error).into()),
        }
    }

    async fn next_attempt(&self, refund: &Refund) -> Result<bool, StoreError> {
        let condition = if refund.attempt == 0 {
            "#status = :pending AND attribute_not_exists(attempt)"
        } else {
            "#status = :pending AND attempt = :seen"
        };
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(refund_key(refund.order_id, &refund.source)))
            .update_expression("SET attempt = :next")
            .condition_expression(condition)
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":next", n(i64::from(refund.attempt) + 1))
            .expression_attribute_values(":pending", s(REFUND_PENDING));
        if refund.attempt > 0 {
            update = update.expression_attribute_values(":seen", n(i64::from(refund.attempt)));
        }
        match update.send().await {
            Ok(_) => Ok(true),
            Err(error) if error.is_condition_failed() => Ok(false),
            Err(error) => Err(Unavailable::from(error).into()),
        }
    }

    async fn record_stripe_refund(
        &self,
        payment: &Payment,
        refund: &Refund,
        event: &Envelope,
    ) -> Result<Recorded, StoreError> {
        let RefundStatus::Succeeded { refunded_total, .. } = &refund.status else {
            return Err(Unavailable::because("recording a Stripe refund that has not succeeded").into());
        };
        let seen = payment.refunds.refunded;
        let mut transaction = Transaction::new();
        transaction
            .push(RefundAction::Refund, put_new(&self.table, refund_item(refund)?)?)
            .push(
                RefundAction::Payment,
                update_action(
                    &self.table,
                    key(payment.order_id),
                    "SET refunded = :refunded, refund_reserved = if_not_exists(refund_reserved, :zero) + :amount",
                    refunded_is(seen),
                    HashMap::from([
                        (":seen".to_owned(), n(seen)),
                        (":zero".to_owned(), n(0)),
                        (":refunded".to_owned(), n(refunded_total.amount())),
                        (":amount".to_owned(), n(refund.amount.amount())),
                    ]),
                )?,
            )
            .push(RefundAction::Event, outbox::put(&self.table, event).map_err(Unavailable::from)?);
        Self::recorded(self.refund_transaction(&transaction).await?)
    }

    async fn record_dispute(&self, order_id: OrderId, dispute_id: &str, event: &Envelope) -> Result<bool, StoreError> {
        self.announce_once(order_id, format!("DISPUTE#{dispute_id}"), event).await
    }

    async fn record_dispute_closed(
        &self,
        order_id: OrderId,
        dispute_id: &str,
        event: &Envelope,
    ) -> Result<bool, StoreError> {
        self.announce_once(order_id, format!("DISPUTE#{dispute_id}#CLOSED"), event).await
    }
}

impl DynamoPayments {
    /// Writes the marker `sk` of the order's partition with `event`, in one transaction that
    /// fails on the marker if it exists: false when it did (announced before).
    async fn announce_once(&self, order_id: OrderId, sk: String, event: &Envelope) -> Result<bool, StoreError> {
        let mut marker = adapters::dynamo::key(format!("PAY#{order_id}"), sk);
        marker.insert("order_id".to_owned(), s(order_id.to_string()));
        let mut transaction = Transaction::new();
        transaction
            .push(RefundAction::Refund, put_new(&self.table, marker)?)
            .push(RefundAction::Event, outbox::put(&self.table, event).map_err(Unavailable::from)?);
        let failed = self.refund_transaction(&transaction).await?;
        if failed.iter().any(|(action, _)| *action == RefundAction::Refund) {
            return Ok(false);
        }
        if failed.is_empty() { Ok(true) } else { Err(Unavailable::because("a dispute's write conflicted").into()) }
    }
}
