//! The inventory table: the one place that knows its key layout.
//!
//! | item        | pk               | sk               | notes                                            |
//! |-------------|------------------|------------------|--------------------------------------------------|
//! | stock       | `STOCK#{sku}`    | `WH#{warehouse}` | `on_hand`, `reserved`, `available`               |
//! | reservation | `RES#{order_id}` | `RES`            | status, allocated lines; in GSI `Expiring` while held |
//! | restock     | `RETURN#{return_id}` | `RETURN`     | a return whose units went back on hand: written once |
//! | outbox      | `OUTBOX#{event}` | `OUTBOX`         | see [`adapters::outbox`]                          |
//! | inbox       | `INBOX#{event}`  | `INBOX`          | events the consumer took; see [`adapters::inbox`] |
//!
//! `available` is stored, not computed, because a DynamoDB condition cannot do arithmetic: a
//! reservation decrements it under `available >= :quantity`, so stock never goes below zero
//! however many orders race for the last unit. The reservation item is written in the same
//! transaction under `attribute_not_exists`, which makes a redelivered `OrderPlaced` a no-op.
//!
//! **The `Expiring` index** (`gsi1pk`, `gsi1sk`): a held reservation is in it under
//! `gsi1pk = HELD#{k}`, `k` = its order id's shard of [`SHARDS`] ([`adapters::shard`]), and
//! `gsi1sk = {held_until:012}#{order_id}`; commit and release remove both keys. Sharded so the
//! holds of every order in the shop do not share one index partition (~1,000 writes/s); the
//! expiry sweep reads each shard in turn.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use adapters::dynamo::{
    ConditionFailed, Item, Transaction, TransactionError, Unavailable, get_consistent, key, put_if, query_partition,
};
use adapters::outbox;
use adapters::shard::{SHARDS, Sharded, SweepPosition};
use domain_events::Envelope;
use kernel::{OrderId, ReturnId, Sku};

use kernel::page::Page;

use crate::service::{InventoryStore, Reservation, ReservationStatus, StoreError, Write};
use crate::stock::{AllocatedLine, StockLevel, Warehouse};

const EXPIRING_INDEX: &str = "Expiring";
/// The `Expiring` index's partitions: `HELD#{shard of the order id}`.
const HELD: Sharded = Sharded::new("HELD", SHARDS);

fn stock_key(sku: &Sku, warehouse: &Warehouse) -> Item {
    key(format!("STOCK#{sku}"), format!("WH#{warehouse}"))
}

fn reservation_key(order_id: OrderId) -> Item {
    key(format!("RES#{order_id}"), "RES")
}

fn number(value: u32) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn text(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

/// The `Expiring` index's sort key: lapse time first, so a query reads the oldest holds first.
fn expiring_sort_key(held_until: i64, order_id: OrderId) -> String {
    format!("{held_until:012}#{order_id}")
}

/// What each action of an inventory transaction is, so a cancellation says what failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// A stock item, conditional on the units being there.
    Stock,
    /// The reservation item: its condition decides duplicates and races with other decisions.
    Reservation,
    /// The outbox event (conditional only on its own fresh key).
    Outbox,
    /// The record of a return's restock: exists already for a return restocked before.
    Restock,
}

#[derive(Debug, Serialize, Deserialize)]
struct StockRecord {
    pk: String,
    sk: String,
    #[serde(flatten)]
    level: StockLevel,
    updated_at: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct ReservationRecord {
    pk: String,
    sk: String,
    order_id: OrderId,
    status: ReservationStatus,
    lines: Vec<AllocatedLine>,
    /// Epoch seconds when the hold lapses (not `expires_at`: that is the table's TTL attribute).
    held_until: i64,
    /// `Expiring` index keys, present only while the reservation is held.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    gsi1pk: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    gsi1sk: Option<String>,
}

impl ReservationRecord {
    /// A reservation that holds nothing: rejected, or released before it was ever placed.
    fn decided(order_id: OrderId, status: ReservationStatus) -> Self {
        Self {
            pk: format!("RES#{order_id}"),
            sk: "RES".to_owned(),
            order_id,
            status,
            lines: Vec::new(),
            held_until: 0,
            gsi1pk: None,
            gsi1sk: None,
        }
    }
}

/// What the expiry sweep reads of a reservation in the `Expiring` index.
#[derive(Debug, Deserialize)]
struct Listed {
    order_id: OrderId,
}

/// The DynamoDB implementation of [`InventoryStore`].
#[derive(Debug, Clone)]
pub struct DynamoInventory {
    client: Client,
    table: String,
}

impl DynamoInventory {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    fn update(
        &self,
        key: Item,
        expression: &str,
        values: Item,
        condition: Option<&str>,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key))
            .update_expression(expression)
            .set_expression_attribute_values(Some(values));
        if let Some(condition) = condition {
            update = update.condition_expression(condition);
        }
        if expression.contains("#status") || condition.is_some_and(|c| c.contains("#status")) {
            update = update.expression_attribute_names("#status", "status");
        }
        Ok(TransactWriteItem::builder().update(update.build().map_err(Unavailable::from)?).build())
    }

    /// Adds one stock update per warehouse allocation of `lines`: `expression` with `:q` the
    /// allocated quantity, under `condition`.
    fn change_stock(
        &self,
        tx: &mut Transaction<Action>,
        lines: &[AllocatedLine],
        expression: &str,
        condition: Option<&str>,
    ) -> Result<(), StoreError> {
        for line in lines {
            for allocation in &line.allocations {
                let quantity = HashMap::from([(":q".to_owned(), number(allocation.quantity))]);
                let update =
                    self.update(stock_key(&line.sku, &allocation.warehouse), expression, quantity, condition)?;
                tx.push(Action::Stock, update);
            }
        }
        Ok(())
    }

    fn put_reservation(&self, record: ReservationRecord) -> Result<TransactWriteItem, StoreError> {
        let item = serde_dynamo::to_item(record).map_err(Unavailable::from)?;
        Ok(put_if(&self.table, item, "attribute_not_exists(pk)", None)?)
    }

    /// Runs a transaction whose reservation write decides duplicates: if its condition failed the
    /// reservation was already decided; a stock condition that failed, or a conflict with another
    /// transaction, means stock moved under us.
    async fn decide(&self, tx: Transaction<Action>) -> Result<Write, StoreError> {
        match tx.commit(&self.client).await {
            Ok(()) => Ok(Write::Done),
            Err(failure) if failure.failed(&Action::Reservation) => Ok(Write::AlreadyDecided),
            Err(TransactionError::ConditionsFailed(_) | TransactionError::Conflict) => Ok(Write::StockChanged),
            Err(TransactionError::TooLarge(actions)) => {
                Err(Unavailable::because(format!("a reservation of {actions} writes")).into())
            }
            Err(TransactionError::Unavailable(error)) => Err(error.into()),
        }
    }

    fn outbox(&self, event: &Envelope) -> Result<TransactWriteItem, StoreError> {
        Ok(outbox::put(&self.table, event).map_err(Unavailable::from)?)
    }
}

impl InventoryStore for DynamoInventory {
    /// The shard and its `LastEvaluatedKey`.
    type Cursor = SweepPosition;

    async fn levels(&self, skus: &[Sku]) -> Result<Vec<StockLevel>, StoreError> {
        let mut levels = Vec::new();
        for sku in skus {
            let items = query_partition(&self.client, &self.table, &format!("STOCK#{sku}"), true).await?;
            let records: Vec<StockRecord> = serde_dynamo::from_items(items).map_err(Unavailable::from)?;
            levels.extend(records.into_iter().map(|r| r.level));
        }
        Ok(levels)
    }

    async fn set_on_hand(
        &self,
        read: Option<&StockLevel>,
        sku: &Sku,
        warehouse: &Warehouse,
        on_hand: u32,
    ) -> Result<Write, StoreError> {
        let reserved = read.map_or(0, |level| level.reserved);
        let record = StockRecord {
            pk: format!("STOCK#{sku}"),
            sk: format!("WH#{warehouse}"),
            level: StockLevel {
                sku: sku.clone(),
                warehouse: warehouse.clone(),
                on_hand,
                reserved,
                available: on_hand.saturating_sub(reserved),
            },
            updated_at: OffsetDateTime::now_utc().unix_timestamp(),
        };
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(serde_dynamo::to_item(record).map_err(Unavailable::from)?));
        // Conditional on everything the caller read: an order reserving or committing moves
        // `reserved`, a cancelled order's restock moves `on_hand`; either sends the caller back to
        // read again instead of being overwritten.
        let put = match read {
            Some(level) => put
                .condition_expression("on_hand = :on_hand AND reserved = :reserved")
                .expression_attribute_values(":on_hand", number(level.on_hand))
                .expression_attribute_values(":reserved", number(level.reserved)),
            None => put.condition_expression("attribute_not_exists(pk)"),
        };
        match put.send().await {
            Ok(_) => Ok(Write::Done),
            Err(error) if error.is_condition_failed() => Ok(Write::StockChanged),
            Err(error) => Err(Unavailable::from(error).into()),
        }
    }

    async fn reservation(&self, order_id: OrderId) -> Result<Option<Reservation>, StoreError> {
        let item = get_consistent(&self.client, &self.table, reservation_key(order_id)).await?;
        let Some(item) = item else { return Ok(None) };
        let record: ReservationRecord = serde_dynamo::from_item(item).map_err(Unavailable::from)?;
        let held_until = OffsetDateTime::from_unix_timestamp(record.held_until).map_err(Unavailable::new)?;
        Ok(Some(Reservation { order_id: record.order_id, status: record.status, lines: record.lines, held_until }))
    }

    async fn reserve(
        &self,
        order_id: OrderId,
        lines: &[AllocatedLine],
        until: OffsetDateTime,
        event: &Envelope,
    ) -> Result<Write, StoreError> {
        let mut tx = Transaction::new();
        self.change_stock(
            &mut tx,
            lines,
            "SET available = available - :q, reserved = reserved + :q",
            Some("available >= :q"),
        )?;
        let held_until = until.unix_timestamp();
        tx.push(
            Action::Reservation,
            self.put_reservation(ReservationRecord {
                pk: format!("RES#{order_id}"),
                sk: "RES".to_owned(),
                order_id,
                status: ReservationStatus::Reserved,
                lines: lines.to_vec(),
                held_until,
                gsi1pk: Some(HELD.key_for(&order_id.to_string())),
                gsi1sk: Some(expiring_sort_key(held_until, order_id)),
            })?,
        );
        tx.push(Action::Outbox, self.outbox(event)?);
        self.decide(tx).await
    }

    async fn reject(&self, order_id: OrderId, event: &Envelope) -> Result<Write, StoreError> {
        let mut tx = Transaction::new();
        tx.push(
            Action::Reservation,
            self.put_reservation(ReservationRecord::decided(order_id, ReservationStatus::Rejected))?,
        );
        tx.push(Action::Outbox, self.outbox(event)?);
        self.decide(tx).await
    }

    async fn release(
        &self,
        reservation: Option<&Reservation>,
        order_id: OrderId,
        event: &Envelope,
    ) -> Result<Write, StoreError> {
        let Some(reservation) = reservation else {
            // Cancelled before it was placed (events can overtake each other): leave a
            // tombstone so the late OrderPlaced finds the order decided. Nothing to announce.
            let tombstone = self.put_reservation(ReservationRecord::decided(order_id, ReservationStatus::Released))?;
            let mut tx = Transaction::new();
            tx.push(Action::Reservation, tombstone);
            return match self.decide(tx).await? {
                // Placed meanwhile: read it again and release it properly.
                Write::AlreadyDecided => Ok(Write::StockChanged),
                other => Ok(other),
            };
        };
        // Held units go back to `available`; sold ones (an order cancelled after confirmation,
        // before shipment) go back on the shelf.
        match reservation.status {
            ReservationStatus::Reserved => self.give_back(reservation, Giving::Held { lapsed_by: None }, event).await,
            ReservationStatus::Committed => self.give_back(reservation, Giving::Sold, event).await,
            ReservationStatus::Released | ReservationStatus::Rejected => Ok(Write::AlreadyDecided),
        }
    }

    async fn commit(&self, reservation: &Reservation, event: &Envelope) -> Result<Write, StoreError> {
        let mut tx = Transaction::new();
        self.change_stock(
            &mut tx,
            &reservation.lines,
            "SET on_hand = on_hand - :q, reserved = reserved - :q",
            Some("reserved >= :q"),
        )?;
        tx.push(
            Action::Reservation,
            self.update(
                reservation_key(reservation.order_id),
                "SET #status = :committed REMOVE gsi1pk, gsi1sk",
                HashMap::from([
                    (":committed".to_owned(), AttributeValue::S("committed".to_owned())),
                    (":reserved".to_owned(), AttributeValue::S("reserved".to_owned())),
                ]),
                Some("#status = :reserved"),
            )?,
        );
        tx.push(Action::Outbox, self.outbox(event)?);
        self.decide(tx).await
    }

    async fn expire(
        &self,
        reservation: &Reservation,
        now: OffsetDateTime,
        event: &Envelope,
    ) -> Result<Write, StoreError> {
        self.give_back(reservation, Giving::Held { lapsed_by: Some(now) }, event).await
    }

    async fn restock(
        &self,
        return_id: ReturnId,
        order_id: OrderId,
        warehouse: &Warehouse,
        lines: &[(Sku, u32)],
    ) -> Result<Write, StoreError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let mut tx = Transaction::new();
        let record = HashMap::from([
            ("pk".to_owned(), text(&format!("RETURN#{return_id}"))),
            ("sk".to_owned(), text("RETURN")),
            ("order_id".to_owned(), text(&order_id.to_string())),
            ("warehouse".to_owned(), text(warehouse.as_str())),
            ("restocked_at".to_owned(), AttributeValue::N(now.to_string())),
        ]);
        tx.push(Action::Restock, put_if(&self.table, record, "attribute_not_exists(pk)", None)?);
        for (sku, quantity) in lines {
            // A warehouse that never held the SKU gets its stock row here, as an admin's PUT makes it.
            let values = HashMap::from([
                (":q".to_owned(), number(*quantity)),
                (":zero".to_owned(), number(0)),
                (":sku".to_owned(), text(sku.as_str())),
                (":warehouse".to_owned(), text(warehouse.as_str())),
                (":now".to_owned(), AttributeValue::N(now.to_string())),
            ]);
            let update = Update::builder()
                .table_name(&self.table)
                .set_key(Some(stock_key(sku, warehouse)))
                .update_expression(
                    "SET #sku = :sku, #warehouse = :warehouse, on_hand = if_not_exists(on_hand, :zero) + :q, \
                     available = if_not_exists(available, :zero) + :q, reserved = if_not_exists(reserved, :zero), \
                     updated_at = :now",
                )
                .expression_attribute_names("#sku", "sku")
                .expression_attribute_names("#warehouse", "warehouse")
                .set_expression_attribute_values(Some(values))
                .build()
                .map_err(Unavailable::from)?;
            tx.push(Action::Stock, TransactWriteItem::builder().update(update).build());
        }
        match tx.commit(&self.client).await {
            Ok(()) => Ok(Write::Done),
            Err(failure) if failure.failed(&Action::Restock) => Ok(Write::AlreadyDecided),
            Err(TransactionError::Conflict) => Ok(Write::StockChanged),
            Err(failure) => Err(Unavailable::from(failure).into()),
        }
    }

    async fn expired(
        &self,
        now: OffsetDateTime,
        limit: usize,
        after: Option<SweepPosition>,
    ) -> Result<Page<OrderId, SweepPosition>, StoreError> {
        // Index keys sort as `{held_until:012}#{order_id}`; `~` sorts after every id character.
        let below = format!("{:012}#~", now.unix_timestamp());
        let (items, next) = HELD
            .page_below(&self.client, &self.table, EXPIRING_INDEX, "gsi1pk", ("gsi1sk", &below), limit, after)
            .await?;
        // Only the order id: a reservation whose other attributes cannot be read must not keep
        // the sweep from listing the ones behind it (it fails on its own when it is handled).
        let listed: Vec<Listed> = serde_dynamo::from_items(items).map_err(Unavailable::from)?;
        Ok(Page { items: listed.into_iter().map(|r| r.order_id).collect(), next })
    }
}

/// What a release gives back.
#[derive(Debug, Clone, Copy)]
enum Giving {
    /// Held units, back to `available`; for an expiry, only if the hold lapsed by this time.
    Held { lapsed_by: Option<OffsetDateTime> },
    /// Sold units, back on the shelf.
    Sold,
}

impl DynamoInventory {
    /// One transaction: the units back, the reservation `released` (only from the status it was
    /// read in, and for an expiry only if its hold lapsed), and the event.
    async fn give_back(
        &self,
        reservation: &Reservation,
        giving: Giving,
        event: &Envelope,
    ) -> Result<Write, StoreError> {
        let (stock_change, stock_condition, from) = match giving {
            Giving::Held { .. } => {
                ("SET available = available + :q, reserved = reserved - :q", Some("reserved >= :q"), "reserved")
            }
            Giving::Sold => ("SET available = available + :q, on_hand = on_hand + :q", None, "committed"),
        };
        let mut tx = Transaction::new();
        self.change_stock(&mut tx, &reservation.lines, stock_change, stock_condition)?;
        let mut values = HashMap::from([(":released".to_owned(), text("released")), (":from".to_owned(), text(from))]);
        let condition = match giving {
            Giving::Held { lapsed_by: Some(now) } => {
                values.insert(":now".to_owned(), AttributeValue::N(now.unix_timestamp().to_string()));
                "#status = :from AND held_until <= :now"
            }
            _ => "#status = :from",
        };
        tx.push(
            Action::Reservation,
            self.update(
                reservation_key(reservation.order_id),
                "SET #status = :released REMOVE gsi1pk, gsi1sk",
                values,
                Some(condition),
            )?,
        );
        tx.push(Action::Outbox, self.outbox(event)?);
        match self.decide(tx).await? {
            // The reservation is no longer in the status it was read in (a confirmation committed
            // it, another release or an expiry decided it): read it again and decide again.
            Write::AlreadyDecided => Ok(Write::StockChanged),
            other => Ok(other),
        }
    }
}
