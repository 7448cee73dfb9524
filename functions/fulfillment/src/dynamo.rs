//! The fulfillment table: the one place that knows its key layout.
//!
//! | item     | pk                 | sk       | notes                                              |
//! |----------|--------------------|----------|----------------------------------------------------|
//! | order    | `ORDER#{order_id}` | `ORDER`  | the facts: `shipping`, `lines`, `cancelled`, `shipment_ids`; `dispatched`, `hold_until` (below) |
//! | shipment | `SHIP#{id}`        | `SHIP`   | the shipment and its `version`; in GSI `ByStatus`   |
//! | outbox   | `OUTBOX#{event}`   | `OUTBOX` | see [`adapters::outbox`]                            |
//! | inbox    | `INBOX#{event}`    | `INBOX`  | events the consumer took; see [`adapters::inbox`]   |
//!
//! **Facts commute.** Each saga event records its fact with an `UpdateItem` that only sets
//! attributes (`if_not_exists`, so the first value stays) and returns the whole item
//! (`ALL_NEW`): whichever of `OrderConfirmed` and `StockCommitted` comes second sees both and
//! creates the shipments. The creation is one transaction: the order item gets `shipment_ids`
//! on the condition that it has none and no `cancelled`, each shipment is put under
//! `attribute_not_exists(pk)`, and each `ShipmentCreated` goes to the outbox. Two deliveries that
//! both see both facts race on that condition, so the shipments exist exactly once; a
//! cancellation recorded first makes the condition fail, so none are created after it.
//!
//! **Cancel holds.** A dispatch is one transaction with an update of the order item:
//! `SET dispatched = true` on the condition `attribute_not_exists(cancelled) AND
//! (attribute_not_exists(hold_until) OR hold_until < :now)` (unix seconds). A `HoldForCancel`
//! sets `hold_until` on the condition `attribute_not_exists(dispatched)`. Both conditions are
//! on the same item, so of a dispatch and a hold only one wins: the customer's cancel is refused
//! (a shipment left) or no shipment leaves until the hold lapses or `cancelled` is recorded.
//!
//! **Listing.** GSI `ByStatus`: `gsi1pk = STATUS#{status}#{k}`, `gsi1sk =
//! {warehouse}#{shipment_id}` (projection ALL), `k` the shipment id's shard of [`SHARDS`]
//! ([`adapters::shard`]): a status is 16 index partitions, so every order's shipment writes do
//! not queue on one (~1,000 writes/s). A listing queries the 16 and merges them in sort-key
//! order, so a page is what one partition would give: a warehouse within a status is a
//! `begins_with` on the sort key (warehouse codes never contain `#`), and shipment ids are
//! ULIDs, so each warehouse's shipments read oldest first: a pick list. The cursor carries the
//! last sort key, unique per shipment. Every save rewrites both keys from the status.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, TransactWriteItem, Update};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use adapters::dynamo::{Item, Transaction, TransactionError, Unavailable, get_consistent, key, put_if};
use adapters::shard::{Listing, SHARDS, Sharded};
use adapters::{ListingKeys, outbox};
use domain_events::Envelope;
use domain_events::checkout::Shipping;
use domain_events::inventory::ReservedLine;
use domain_events::queries::HoldForCancelReply;
use kernel::{OrderId, ShipmentId};

use crate::model::{OrderFacts, Shipment};
use crate::service::{Filter, FulfillmentStore, Guard, Page, PageError, StoreError, Write};

const BY_STATUS_INDEX: &str = "ByStatus";

fn order_key(order_id: OrderId) -> Item {
    key(format!("ORDER#{order_id}"), "ORDER")
}

fn shipment_key(id: ShipmentId) -> Item {
    key(format!("SHIP#{id}"), "SHIP")
}

/// What each action of a fulfillment transaction is, so a cancellation says which condition failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// The order's facts: no shipments yet and not cancelled.
    Order,
    /// A shipment: new, or still at the version read.
    Shipment,
    /// An outbox event.
    Outbox,
}

/// The order item as stored.
#[derive(Debug, Deserialize)]
struct OrderRecord {
    #[serde(default)]
    shipping: Option<Shipping>,
    #[serde(default)]
    lines: Option<Vec<ReservedLine>>,
    #[serde(default)]
    cancelled: Option<bool>,
    #[serde(default)]
    shipment_ids: Option<Vec<ShipmentId>>,
}

impl From<OrderRecord> for OrderFacts {
    fn from(record: OrderRecord) -> Self {
        Self {
            shipping: record.shipping,
            lines: record.lines,
            cancelled: record.cancelled.unwrap_or(false),
            shipments: record.shipment_ids,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct ShipmentRecord {
    pk: String,
    sk: String,
    gsi1pk: String,
    gsi1sk: String,
    #[serde(flatten)]
    shipment: Shipment,
}

impl ShipmentRecord {
    fn new(shipment: &Shipment) -> Self {
        let id = shipment.shipment_id;
        Self {
            pk: format!("SHIP#{id}"),
            sk: "SHIP".to_owned(),
            gsi1pk: by_status(shipment.status.as_str()).key_for(&id.to_string()),
            gsi1sk: format!("{}#{id}", shipment.warehouse),
            shipment: shipment.clone(),
        }
    }
}

/// A status's `ByStatus` partitions: `STATUS#{status}#{shard of the shipment id}`.
fn by_status(status: &str) -> Sharded {
    Sharded::owned(format!("STATUS#{status}"), SHARDS)
}

/// The DynamoDB implementation of [`FulfillmentStore`].
#[derive(Debug, Clone)]
pub struct DynamoFulfillment {
    client: Client,
    table: String,
    cursor_keys: ListingKeys,
}

impl DynamoFulfillment {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into(), cursor_keys: ListingKeys::default() }
    }

    /// The same store, able to list: `cursor_keys` sign the listings' cursors and check the ones
    /// clients send back (the API's store, whose keys only listings await; a consumer's never
    /// lists).
    #[must_use]
    pub fn listing(mut self, cursor_keys: impl Into<ListingKeys>) -> Self {
        self.cursor_keys = cursor_keys.into();
        self
    }

    /// Sets the fact `attribute` on the order item (creating it if need be), keeping a value
    /// already there when `keep_first`, and returns the order's facts as the write left them.
    /// SETs only, so facts commute. Names go through placeholders: `lines` is a DynamoDB
    /// reserved word.
    async fn record(
        &self,
        order_id: OrderId,
        attribute: &str,
        value: AttributeValue,
        keep_first: bool,
    ) -> Result<OrderFacts, StoreError> {
        let set = if keep_first { "#fact = if_not_exists(#fact, :fact)" } else { "#fact = :fact" };
        let output = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(order_key(order_id)))
            .update_expression(format!("SET #order_id = if_not_exists(#order_id, :order_id), {set}"))
            .expression_attribute_names("#order_id", "order_id")
            .expression_attribute_names("#fact", attribute)
            .expression_attribute_values(":order_id", AttributeValue::S(order_id.to_string()))
            .expression_attribute_values(":fact", value)
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(Unavailable::from)?;
        let record: OrderRecord =
            serde_dynamo::from_item(output.attributes.unwrap_or_default()).map_err(Unavailable::from)?;
        Ok(record.into())
    }

    fn put_shipment(
        &self,
        shipment: &Shipment,
        condition: &str,
        values: Option<Item>,
    ) -> Result<TransactWriteItem, StoreError> {
        let item = serde_dynamo::to_item(ShipmentRecord::new(shipment)).map_err(Unavailable::from)?;
        Ok(put_if(&self.table, item, condition, values)?)
    }

    fn outbox(&self, tx: &mut Transaction<Action>, events: &[Envelope]) -> Result<(), StoreError> {
        for event in events {
            tx.push(Action::Outbox, outbox::put(&self.table, event).map_err(Unavailable::from)?);
        }
        Ok(())
    }
}

fn attribute<T: Serialize>(value: &T) -> Result<AttributeValue, StoreError> {
    Ok(serde_dynamo::to_attribute_value(value).map_err(Unavailable::from)?)
}

impl FulfillmentStore for DynamoFulfillment {
    async fn record_shipping(&self, order_id: OrderId, shipping: &Shipping) -> Result<OrderFacts, StoreError> {
        self.record(order_id, "shipping", attribute(shipping)?, true).await
    }

    async fn record_lines(&self, order_id: OrderId, lines: &[ReservedLine]) -> Result<OrderFacts, StoreError> {
        self.record(order_id, "lines", attribute(&lines)?, true).await
    }

    async fn record_cancelled(&self, order_id: OrderId) -> Result<OrderFacts, StoreError> {
        self.record(order_id, "cancelled", AttributeValue::Bool(true), false).await
    }

    async fn create(
        &self,
        order_id: OrderId,
        shipments: &[Shipment],
        events: &[Envelope],
    ) -> Result<Write, StoreError> {
        let ids: Vec<ShipmentId> = shipments.iter().map(|s| s.shipment_id).collect();
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(order_key(order_id)))
            .update_expression("SET shipment_ids = :ids")
            .condition_expression("attribute_not_exists(shipment_ids) AND attribute_not_exists(cancelled)")
            .expression_attribute_values(":ids", attribute(&ids)?)
            .build()
            .map_err(Unavailable::from)?;
        let mut tx = Transaction::new();
        tx.push(Action::Order, TransactWriteItem::builder().update(update).build());
        for shipment in shipments {
            tx.push(Action::Shipment, self.put_shipment(shipment, "attribute_not_exists(pk)", None)?);
        }
        self.outbox(&mut tx, events)?;
        match tx.commit(&self.client).await {
            Ok(()) => Ok(Write::Done),
            Err(failure) if failure.failed(&Action::Order) => Ok(Write::Lost),
            // A conflict (another delivery recording a fact at this moment) decided nothing: the
            // message is retried, and the facts are read again.
            Err(failure) => Err(StoreError(Unavailable::from(failure))),
        }
    }

    async fn shipment(&self, id: ShipmentId) -> Result<Option<Shipment>, StoreError> {
        let item = get_consistent(&self.client, &self.table, shipment_key(id)).await?;
        let record = item.map(serde_dynamo::from_item::<_, ShipmentRecord>).transpose().map_err(Unavailable::from)?;
        Ok(record.map(|r| r.shipment))
    }

    async fn save(
        &self,
        shipment: &Shipment,
        expected: u64,
        events: &[Envelope],
        guard: Guard,
    ) -> Result<Write, StoreError> {
        let values = HashMap::from([(":expected".to_owned(), AttributeValue::N(expected.to_string()))]);
        let mut tx = Transaction::new();
        tx.push(Action::Shipment, self.put_shipment(shipment, "version = :expected", Some(values))?);
        if let Guard::OrderOpen { now } = guard {
            // Refused while a cancel hold is live; records the dispatch so no hold is granted
            // after it. Both sides condition on this one item: a hold and a dispatch never both win.
            let update = Update::builder()
                .table_name(&self.table)
                .set_key(Some(order_key(shipment.order_id)))
                .update_expression("SET dispatched = :dispatched")
                .condition_expression(
                    "attribute_not_exists(cancelled) AND (attribute_not_exists(hold_until) OR hold_until < :now)",
                )
                .expression_attribute_values(":dispatched", AttributeValue::Bool(true))
                .expression_attribute_values(":now", AttributeValue::N(now.unix_timestamp().to_string()))
                .build()
                .map_err(Unavailable::from)?;
            tx.push(Action::Order, TransactWriteItem::builder().update(update).build());
        }
        self.outbox(&mut tx, events)?;
        match tx.commit(&self.client).await {
            Ok(()) => Ok(Write::Done),
            Err(failure) if failure.failed(&Action::Shipment) => Ok(Write::Lost),
            Err(failure) if failure.failed(&Action::Order) => Ok(Write::OrderClosed),
            Err(TransactionError::Conflict) => Ok(Write::Lost),
            Err(failure) => Err(StoreError(Unavailable::from(failure))),
        }
    }

    async fn hold(&self, order_id: OrderId, until: OffsetDateTime) -> Result<HoldForCancelReply, StoreError> {
        // May create the order item (a hold before `OrderConfirmed` reached fulfillment): the
        // facts that come later still record, and the creation still sees the hold at dispatch.
        let sent = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(order_key(order_id)))
            .update_expression("SET order_id = if_not_exists(order_id, :order_id), hold_until = :until")
            .condition_expression("attribute_not_exists(dispatched)")
            .expression_attribute_values(":order_id", AttributeValue::S(order_id.to_string()))
            .expression_attribute_values(":until", AttributeValue::N(until.unix_timestamp().to_string()))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(HoldForCancelReply::Held),
            Err(error)
                if matches!(error.as_service_error(), Some(UpdateItemError::ConditionalCheckFailedException(_))) =>
            {
                Ok(HoldForCancelReply::AlreadyDispatched)
            }
            Err(error) => Err(StoreError(Unavailable::from(error))),
        }
    }

    async fn list(&self, filter: &Filter, limit: usize, cursor: Option<&str>) -> Result<Page, PageError> {
        let warehouse = filter.warehouse.as_ref().map(|w| format!("{w}#"));
        let keys = self.cursor_keys.get().await?;
        let listing = Listing {
            index: BY_STATUS_INDEX,
            partition_key: "gsi1pk",
            sort_key: "gsi1sk",
            sort_prefix: warehouse.as_deref(),
        };
        let (items, next_cursor) = by_status(filter.status.as_str())
            .listing_page::<PageError>(&self.client, &self.table, &listing, keys, limit, cursor)
            .await?;
        let records: Vec<ShipmentRecord> =
            serde_dynamo::from_items(items).map_err(|e| StoreError(Unavailable::from(e)))?;
        Ok(Page { items: records.into_iter().map(|r| r.shipment).collect(), next_cursor })
    }
}
