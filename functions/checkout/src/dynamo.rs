//! The checkout table: the one place that knows its key layout.
//!
//! | item        | pk                          | sk       | notes                                   |
//! |-------------|-----------------------------|----------|-----------------------------------------|
//! | order       | `ORDER#{id}`                | `ORDER`  | the order document and its version      |
//! | idempotency | `IDEM#{customer}#{key}`     | `IDEM`   | the request and the reply to replay; TTL 24 h |
//! | coupon      | `COUPON#{code}`             | `COUPON` | `redeemed` count of a limited coupon: +1 on placement, −1 on cancellation |
//! | outbox      | `OUTBOX#{event}`            | `OUTBOX` | see [`adapters::outbox`]                |
//! | inbox       | `INBOX#{event}`             | `INBOX`  | events the consumer took; see [`adapters::inbox`] |
//! | return      | `RETURN#{id}`               | `RETURN` | the admin listing's copy of a return, with its `order_id` |
//!
//! Order GSIs: `ByCustomer` (`CUSTOMER#{sub}`, id) for `GET /orders`; `ByStatus`
//! (`STATUS#{status}`, id) for the admin list; `Open` (`OPEN`, `{deadline}#{id}`), present only
//! while the order waits for the saga, for the timeout sweep; `Flagged` (`FLAGGED`, id), present
//! only while the order has a flag, for `GET /admin/orders?flag=` (sparse: an order costs an
//! index write only while flagged, which is rare; the flag itself is a filter on that small
//! partition). Ids are ULIDs: newest first is descending key order.
//!
//! Returns live on their order item (which decides them under its version); each also has an
//! item of its own, rewritten in the same transaction as the order whenever it changes, for the
//! admin: `GET /admin/returns/{id}` is one `GetItem` of it, and the `Returns` index
//! (`RETURNS#{status}`, id) lists them by status. Only return items carry its keys, and it
//! projects the listing's few attributes (INCLUDE), not whole items: a status change costs one
//! small index write, and orders never enter it.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use adapters::dynamo::{
    ConditionFailed, Item, Transaction, TransactionError, Unavailable, get_consistent, key, page_below, put_if,
};
use adapters::outbox;
use adapters::{Cursor, CursorKeys, ListingKeys};
use kernel::{OrderId, ReturnId};

use crate::order::{CaptureFailure, Flag, Order, Status};
use kernel::page::Page as SweepPage;

use crate::returns::{Dispute, Return, ReturnStatus};
use crate::service::{
    OrderStore, Page, PageError, Placed, Placement, ReturnsPage, Saved, SavedReply, StoreError, Write,
};

/// The index of open orders by deadline, and its one partition.
const OPEN_INDEX: &str = "Open";
const OPEN_PARTITION: &str = "OPEN";

/// The sparse index of orders an admin must look at, and its one partition.
const FLAGGED_INDEX: &str = "Flagged";
const FLAGGED_PARTITION: &str = "FLAGGED";

/// The index of returns by status.
const RETURNS_INDEX: &str = "Returns";

/// Saved replies are kept a day, as Stripe keeps idempotency keys.
const REPLY_RETENTION_SECS: i64 = 24 * 3600;

fn order_key(id: OrderId) -> Item {
    key(format!("ORDER#{id}"), "ORDER")
}

fn reply_key(customer: &str, idempotency_key: &str) -> Item {
    key(format!("IDEM#{customer}#{idempotency_key}"), "IDEM")
}

/// What each action of a checkout transaction is, so a cancellation says which condition failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// The reply saved under the idempotency key: exists already for a repeated key.
    Reply,
    /// The order: new on placement, at the version read on every later change.
    Order,
    /// An outbox event.
    Outbox,
    /// A limited coupon's redemption count: below its limit.
    Coupon,
    /// A return's own item (unconditional: the order's version decides).
    Return,
}

#[derive(Debug, Serialize, Deserialize)]
struct OrderRecord {
    pk: String,
    sk: String,
    gsi1pk: String,
    gsi1sk: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    gsi2pk: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    gsi2sk: Option<String>,
    gsi3pk: String,
    gsi3sk: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    gsi4pk: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    gsi4sk: Option<String>,
    /// [`Order::coupon_redemption`], which the API does not show.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    coupon_redemption: Option<String>,
    /// [`Order::flags`] and [`Order::capture_failure`], which only admins see.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    flags: Vec<Flag>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    capture_failure: Option<CaptureFailure>,
    /// [`Order::disputes`], which only admins see.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    disputes: Vec<Dispute>,
    #[serde(flatten)]
    order: Order,
}

impl OrderRecord {
    fn new(order: &Order) -> Self {
        let id = order.order_id.to_string();
        let open = order.status.is_open();
        let flagged = !order.flags.is_empty();
        Self {
            pk: format!("ORDER#{id}"),
            sk: "ORDER".to_owned(),
            gsi1pk: format!("CUSTOMER#{}", order.customer),
            gsi1sk: id.clone(),
            gsi2pk: open.then(|| OPEN_PARTITION.to_owned()),
            gsi2sk: open.then(|| format!("{:012}#{id}", order.deadline.unix_timestamp())),
            gsi3pk: format!("STATUS#{}", order.status.as_str()),
            gsi3sk: id.clone(),
            gsi4pk: flagged.then(|| FLAGGED_PARTITION.to_owned()),
            gsi4sk: flagged.then_some(id),
            coupon_redemption: order.coupon_redemption.clone(),
            flags: order.flags.clone(),
            capture_failure: order.capture_failure.clone(),
            disputes: order.disputes.clone(),
            order: order.clone(),
        }
    }

    fn into_order(self) -> Order {
        let mut order = Order {
            coupon_redemption: self.coupon_redemption,
            flags: self.flags,
            capture_failure: self.capture_failure,
            disputes: self.disputes,
            ..self.order
        };
        // Orders authorized before the order kept the amount: payment authorizes the total.
        if order.payment.authorized.is_none() && order.history.iter().any(|t| t.status == Status::Authorized) {
            order.payment.authorized = Some(order.totals.total);
        }
        order
    }
}

/// A return's own item: the admin listing's copy, and where its order is.
#[derive(Debug, Serialize, Deserialize)]
struct ReturnRecord {
    pk: String,
    sk: String,
    gsi5pk: String,
    gsi5sk: String,
    order_id: OrderId,
    customer: String,
    #[serde(flatten)]
    ret: Return,
}

impl ReturnRecord {
    fn new(order: &Order, ret: &Return) -> Self {
        Self {
            pk: format!("RETURN#{}", ret.id),
            sk: "RETURN".to_owned(),
            gsi5pk: format!("RETURNS#{}", ret.status.as_str()),
            gsi5sk: ret.id.to_string(),
            order_id: order.order_id,
            customer: order.customer.clone(),
            ret: ret.clone(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct ReplyRecord {
    pk: String,
    sk: String,
    request: String,
    status: u16,
    body: String,
    order_id: OrderId,
    expires_at: i64,
}

/// The DynamoDB implementation of [`OrderStore`].
#[derive(Debug, Clone)]
pub struct DynamoOrders {
    client: Client,
    table: String,
    cursor_keys: ListingKeys,
}

impl DynamoOrders {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into(), cursor_keys: ListingKeys::default() }
    }

    /// The same store, able to list: `cursor_keys` sign the listings' cursors and check the ones
    /// clients send back (the API's store; a consumer's never lists).
    #[must_use]
    pub fn listing(mut self, cursor_keys: CursorKeys) -> Self {
        self.cursor_keys = cursor_keys.into();
        self
    }

    fn put(&self, item: Item, condition: &str, values: Option<Item>) -> Result<TransactWriteItem, StoreError> {
        Ok(put_if(&self.table, item, condition, values)?)
    }

    /// A page of `index`'s `partition` read as `T`, newest first, and the signed cursor of the
    /// next; with `flag`, only the orders that carry it (a filter: DynamoDB applies `Limit`
    /// before it, so a page can come back short).
    async fn query_page<T: serde::de::DeserializeOwned>(
        &self,
        index: &str,
        partition: (&str, String),
        flag: Option<Flag>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<T>, Option<String>), PageError> {
        let (pk_name, pk_value) = partition;
        let sk_name = pk_name.replace("pk", "sk");
        let key_names = ["pk", "sk", pk_name, sk_name.as_str()];
        let scope = match flag {
            Some(flag) => format!("{index}:{pk_value}:{}", flag.as_str()),
            None => format!("{index}:{pk_value}"),
        };
        let keys = self.cursor_keys.get()?;
        let start = cursor.map(|raw| Cursor::decode(raw, &scope, &key_names, keys)).transpose()?.map(|c| c.start_key());
        let mut names = HashMap::from([("#pk".to_owned(), pk_name.to_owned())]);
        let mut values = HashMap::from([(":pk".to_owned(), AttributeValue::S(pk_value))]);
        if let Some(flag) = flag {
            names.insert("#flags".to_owned(), "flags".to_owned());
            values.insert(":flag".to_owned(), AttributeValue::S(flag.as_str().to_owned()));
        }
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(index)
            .key_condition_expression("#pk = :pk")
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .scan_index_forward(false)
            .limit(i32::try_from(limit).unwrap_or(100))
            .set_exclusive_start_key(start)
            .set_filter_expression(flag.map(|_| "contains(#flags, :flag)".to_owned()))
            .send()
            .await
            .map_err(Unavailable::from)?;
        let next_cursor = output
            .last_evaluated_key
            .as_ref()
            .and_then(|last| Cursor::after(scope.clone(), last, &key_names))
            .map(|c| c.encode(keys));
        let items = serde_dynamo::from_items(output.items.unwrap_or_default()).map_err(Unavailable::from)?;
        Ok((items, next_cursor))
    }
}

/// A page of orders as [`DynamoOrders::query_page`] read them.
fn orders((records, next_cursor): (Vec<OrderRecord>, Option<String>)) -> Page {
    Page { orders: records.into_iter().map(OrderRecord::into_order).collect(), next_cursor }
}

impl OrderStore for DynamoOrders {
    /// The `Open` index's `LastEvaluatedKey`.
    type Cursor = Item;

    async fn saved_reply(&self, customer: &str, key: &str) -> Result<Option<SavedReply>, StoreError> {
        let item = get_consistent(&self.client, &self.table, reply_key(customer, key)).await?;
        let Some(item) = item else { return Ok(None) };
        let record: ReplyRecord = serde_dynamo::from_item(item).map_err(Unavailable::from)?;
        Ok(Some(SavedReply { request: record.request, status: record.status, body: record.body }))
    }

    async fn place(&self, placement: &Placement) -> Result<Placed, StoreError> {
        let order = &placement.order;
        let reply = ReplyRecord {
            pk: format!("IDEM#{}#{}", order.customer, placement.idempotency_key),
            sk: "IDEM".to_owned(),
            request: placement.reply.request.clone(),
            status: placement.reply.status,
            body: placement.reply.body.clone(),
            order_id: order.order_id,
            expires_at: order.created_at.unix_timestamp() + REPLY_RETENTION_SECS,
        };
        let mut tx = Transaction::new();
        let reply = serde_dynamo::to_item(reply).map_err(Unavailable::from)?;
        let record = serde_dynamo::to_item(OrderRecord::new(order)).map_err(Unavailable::from)?;
        tx.push(Action::Reply, self.put(reply, "attribute_not_exists(pk)", None)?)
            .push(Action::Order, self.put(record, "attribute_not_exists(pk)", None)?)
            .push(Action::Outbox, outbox::put(&self.table, &placement.event).map_err(Unavailable::from)?);
        if let Some((code, max)) = &placement.coupon_limit {
            let update = Update::builder()
                .table_name(&self.table)
                .set_key(Some(key(format!("COUPON#{code}"), "COUPON")))
                .update_expression("ADD redeemed :one")
                .condition_expression("attribute_not_exists(redeemed) OR redeemed < :max")
                .expression_attribute_values(":one", AttributeValue::N("1".to_owned()))
                .expression_attribute_values(":max", AttributeValue::N(max.to_string()))
                .build()
                .map_err(Unavailable::from)?;
            tx.push(Action::Coupon, TransactWriteItem::builder().update(update).build());
        }
        match tx.commit(&self.client).await {
            Ok(()) => Ok(Placed::Done),
            Err(failure) if failure.failed(&Action::Reply) => Ok(Placed::DuplicateKey),
            Err(failure) if failure.failed(&Action::Coupon) => Ok(Placed::CouponExhausted),
            Err(TransactionError::Conflict) => Ok(Placed::Conflict),
            Err(failure) => Err(StoreError(Unavailable::new(failure))),
        }
    }

    async fn get(&self, id: OrderId) -> Result<Option<Order>, StoreError> {
        let item = get_consistent(&self.client, &self.table, order_key(id)).await?;
        let order = item.map(|item| serde_dynamo::from_item::<_, OrderRecord>(item).map(OrderRecord::into_order));
        Ok(order.transpose().map_err(Unavailable::from)?)
    }

    async fn save(&self, order: &Order, expected: u64, write: Write<'_>) -> Result<Saved, StoreError> {
        let Write { events, returned_coupon, returns } = write;
        let values = HashMap::from([(":expected".to_owned(), AttributeValue::N(expected.to_string()))]);
        let record = serde_dynamo::to_item(OrderRecord::new(order)).map_err(Unavailable::from)?;
        if events.is_empty() && returned_coupon.is_none() && returns.is_empty() {
            // Nothing to write with it (the shipment and capture steps announce nothing): one
            // conditional PutItem, since a transaction bills every write twice.
            let put = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(record))
                .condition_expression("version = :expected")
                .set_expression_attribute_values(Some(values))
                .send()
                .await;
            return match put {
                Ok(_) => Ok(Saved::Done),
                Err(error) if error.is_condition_failed() => Ok(Saved::Stale),
                Err(error) => Err(Unavailable::from(error).into()),
            };
        }
        let mut tx = Transaction::new();
        tx.push(Action::Order, self.put(record, "version = :expected", Some(values))?);
        for event in events {
            tx.push(Action::Outbox, outbox::put(&self.table, event).map_err(Unavailable::from)?);
        }
        for ret in returns {
            // No condition of its own: the order's version condition decides the change.
            let item = serde_dynamo::to_item(ReturnRecord::new(order, ret)).map_err(Unavailable::from)?;
            let put = Put::builder().table_name(&self.table).set_item(Some(item)).build().map_err(Unavailable::from)?;
            tx.push(Action::Return, TransactWriteItem::builder().put(put).build());
        }
        if let Some(code) = returned_coupon {
            // No condition: the count was raised when this order was placed, so it is at least 1.
            let update = Update::builder()
                .table_name(&self.table)
                .set_key(Some(key(format!("COUPON#{code}"), "COUPON")))
                .update_expression("ADD redeemed :minus_one")
                .expression_attribute_values(":minus_one", AttributeValue::N("-1".to_owned()))
                .build()
                .map_err(Unavailable::from)?;
            tx.push(Action::Coupon, TransactWriteItem::builder().update(update).build());
        }
        match tx.commit(&self.client).await {
            Ok(()) => Ok(Saved::Done),
            Err(failure) if failure.failed(&Action::Order) => Ok(Saved::Stale),
            Err(TransactionError::Conflict) => Ok(Saved::Stale),
            Err(failure) => Err(StoreError(Unavailable::new(failure))),
        }
    }

    async fn get_return(&self, id: ReturnId) -> Result<Option<(OrderId, Return)>, StoreError> {
        let item = get_consistent(&self.client, &self.table, key(format!("RETURN#{id}"), "RETURN")).await?;
        let Some(item) = item else { return Ok(None) };
        let record: ReturnRecord = serde_dynamo::from_item(item).map_err(Unavailable::from)?;
        Ok(Some((record.order_id, record.ret)))
    }

    async fn returns_by_status(
        &self,
        status: ReturnStatus,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<ReturnsPage, PageError> {
        let partition = ("gsi5pk", format!("RETURNS#{}", status.as_str()));
        let (items, next_cursor) = self.query_page(RETURNS_INDEX, partition, None, limit, cursor).await?;
        Ok(ReturnsPage { items, next_cursor })
    }

    async fn by_customer(&self, customer: &str, limit: usize, cursor: Option<&str>) -> Result<Page, PageError> {
        let partition = ("gsi1pk", format!("CUSTOMER#{customer}"));
        Ok(orders(self.query_page("ByCustomer", partition, None, limit, cursor).await?))
    }

    async fn by_status(&self, status: Status, limit: usize, cursor: Option<&str>) -> Result<Page, PageError> {
        let partition = ("gsi3pk", format!("STATUS#{}", status.as_str()));
        Ok(orders(self.query_page("ByStatus", partition, None, limit, cursor).await?))
    }

    async fn by_flag(&self, flag: Flag, limit: usize, cursor: Option<&str>) -> Result<Page, PageError> {
        let partition = ("gsi4pk", FLAGGED_PARTITION.to_owned());
        Ok(orders(self.query_page(FLAGGED_INDEX, partition, Some(flag), limit, cursor).await?))
    }

    async fn overdue(
        &self,
        now: OffsetDateTime,
        limit: usize,
        after: Option<Item>,
    ) -> Result<SweepPage<OrderId, Item>, StoreError> {
        // Index keys sort as `{deadline:012}#{order_id}`; `~` sorts after every id character.
        let below = format!("{:012}#~", now.unix_timestamp());
        let partition = ("gsi2pk", OPEN_PARTITION);
        let (items, next) =
            page_below(&self.client, &self.table, OPEN_INDEX, partition, ("gsi2sk", &below), limit, after).await?;
        // The `Open` index projects keys only: the order id is in the table key.
        let orders =
            items.iter().filter_map(|item| item.get("pk")?.as_s().ok()?.strip_prefix("ORDER#")?.parse().ok()).collect();
        Ok(SweepPage { items: orders, next })
    }
}
