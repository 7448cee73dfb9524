//! The checkout table: the one place that knows its key layout.
//!
//! | item        | pk                          | sk       | notes                                   |
//! |-------------|-----------------------------|----------|-----------------------------------------|
//! | order head  | `ORDER#{id}`                | `ORDER`  | what changes: status, version, history, payment facts, shipments, returns, flags |
//! | order details | `ORDER#{id}`              | `DETAILS`| what placement fixed: customer, e-mail, lines, totals, address, methods; written once |
//! | idempotency | `IDEM#{customer}#{key}`     | `IDEM`   | the request's SHA-256 and the order id (the reply is rebuilt from the order); TTL 24 h |
//! | coupon      | `COUPON#{code}`             | `COUPON` | `redeemed` count of a limited coupon: +1 on placement, −1 on cancellation |
//! | outbox      | `OUTBOX#{event}`            | `OUTBOX` | see [`adapters::outbox`]                |
//! | inbox       | `INBOX#{event}`             | `INBOX`  | events the consumer took; see [`adapters::inbox`] |
//! | return      | `RETURN#{id}`               | `RETURN` | the admin listing's copy of a return, with its `order_id` |
//!
//! An order is two items of one partition, read together by one consistent `Query` (one read
//! unit while both stay under 4 KB): the head, rewritten at every change and kept under 1 KB
//! for a usual order (one write unit, where the whole 1.4–1.8 KB order cost two), and the
//! details, written once in the placement transaction. Only the head is written afterwards; the
//! domain never changes what the details hold.
//!
//! Order GSIs, all projecting keys only (a listing reads the orders it found with
//! `BatchGetItem`, so a status change costs one small index write instead of a copy of the
//! order): `ByCustomer` (`CUSTOMER#{sub}`, id), on the details, for `GET /orders`; on the head,
//! `ByStatus` (`STATUS#{status}#{k}`, the id's ULID complemented: [`newest_first`]) for the admin
//! list; `Open` (`OPEN#{k}`, `{deadline}#{id}`), present only while the order waits for the
//! saga, for the timeout sweep; `Flagged` (`FLAGGED`, id), present only while the order has a
//! flag, for `GET /admin/orders?flag=` (sparse: an order costs an index write only while
//! flagged, which is rare; the flag itself is a filter on that small partition, so it also
//! projects `flags`). `k` is the order id's shard ([`adapters::shard`], 16): every order enters
//! and leaves `Open` and each status it passes, and one constant partition would cap the shop
//! near 1,000 index writes a second. The sweep reads the `Open` shards one after another; the
//! status listing merges its shards. Ids are ULIDs: newest first is descending id order (the
//! per-customer and flagged listings query backwards).
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
    ConditionFailed, Item, Transaction, TransactionError, Unavailable, batch_get, get_consistent, key, put_if,
    query_partition,
};
use adapters::outbox;
use adapters::shard::{Listing, SHARDS, Sharded, SweepPosition};
use adapters::{Cursor, ListingKeys};
use kernel::{Currency, Money, OrderId, ReturnId, Sku};

use crate::order::{
    Address, CaptureFailure, Flag, FlagResolution, Order, OrderLine, PaymentFacts, Shipment, Status, Transition,
};
use crate::pricing::Totals;
use kernel::page::Page as SweepPage;

use crate::returns::{Dispute, Return, ReturnStatus};
use crate::service::{
    OrderStore, Page, PageError, Placed, Placement, ReturnsPage, Saved, SavedReply, StoreError, Write,
};

/// The index of open orders by deadline, and its partitions: `OPEN#{k}`, `k` the order id's
/// shard ([`adapters::shard`]), so no one index partition takes every order's write.
const OPEN_INDEX: &str = "Open";
const OPEN: Sharded = Sharded::new("OPEN", SHARDS);

/// The index of orders by status.
const BY_STATUS_INDEX: &str = "ByStatus";

/// The sparse index of orders an admin must look at, and its one partition.
const FLAGGED_INDEX: &str = "Flagged";
const FLAGGED_PARTITION: &str = "FLAGGED";

/// The index of returns by status.
const RETURNS_INDEX: &str = "Returns";

/// Saved replies are kept a day, as Stripe keeps idempotency keys.
const REPLY_RETENTION_SECS: i64 = 24 * 3600;

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

/// The order's head (`ORDER#{id}`, `ORDER`): everything that may change after placement, and
/// the keys of the indexes an order moves through. Rewritten on every change, so it is kept
/// small (empty facts are left out): under 1 KB, one write unit, for a usual order.
#[derive(Debug, Serialize, Deserialize)]
struct HeadRecord {
    pk: String,
    sk: String,
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
    status: Status,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    cancel_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    payment_failure: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    payment_intent_id: Option<String>,
    #[serde(skip_serializing_if = "is_default", default)]
    payment: PaymentFacts,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    shipment_count: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    shipments: Vec<Shipment>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    returns: Vec<Return>,
    /// [`Order::flags`], [`Order::capture_failure`] and [`Order::disputes`], which only admins see.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    flags: Vec<Flag>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    capture_failure: Option<CaptureFailure>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    disputes: Vec<Dispute>,
    /// [`Order::flag_resolutions`], admins only too.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    flag_resolutions: Vec<FlagResolution>,
    /// Times in the head are Unix nanoseconds (a number of 11 bytes, where RFC 3339 text took 30):
    /// the history grows by one entry per status.
    history: Vec<StoredTransition>,
    version: u64,
    updated_at: i64,
}

/// A [`Transition`] in the head.
#[derive(Debug, Serialize, Deserialize)]
struct StoredTransition {
    status: Status,
    at: i64,
}

/// `at` in Unix nanoseconds (an `i64` holds them until the year 2262).
fn nanos(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

fn from_nanos(nanos: i64) -> Result<OffsetDateTime, Unavailable> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos)).map_err(Unavailable::new)
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// What placement fixed for good (`ORDER#{id}`, `DETAILS`): the lines, totals, address and
/// payment method. Written once, in the placement transaction, and never again; it carries the
/// `ByCustomer` keys, which never move either. Amounts are kept as numbers in the order's one
/// `currency` (a money map per amount made a 3-line order's details 1.3 KB: two write units).
#[derive(Debug, Serialize, Deserialize)]
struct DetailsRecord {
    pk: String,
    sk: String,
    gsi1pk: String,
    gsi1sk: String,
    customer: String,
    email: String,
    currency: Currency,
    lines: Vec<StoredLine>,
    totals: StoredTotals,
    shipping_address: Address,
    shipping_method: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    promo_code: Option<String>,
    payment_method: String,
    /// [`Order::coupon_redemption`], which the API does not show.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    coupon_redemption: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    deadline: OffsetDateTime,
}

/// An [`OrderLine`] in the details: amounts in minor units of the order's currency.
#[derive(Debug, Serialize, Deserialize)]
struct StoredLine {
    sku: Sku,
    title: String,
    quantity: u32,
    unit_price: i64,
    line_total: i64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    discount: Option<i64>,
}

/// [`Totals`] in the details: amounts in minor units of the order's currency.
#[derive(Debug, Serialize, Deserialize)]
struct StoredTotals {
    subtotal: i64,
    discount: i64,
    shipping: i64,
    tax: i64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    rounding: Option<i64>,
    total: i64,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    promotions: Vec<String>,
}

const HEAD: &str = "ORDER";
const DETAILS: &str = "DETAILS";

fn order_pk(id: OrderId) -> String {
    format!("ORDER#{id}")
}

/// The `ByStatus` partitions of `status`: `STATUS#{status}#{k}`, `k` the order id's shard.
fn by_status(status: Status) -> Sharded {
    Sharded::owned(format!("STATUS#{}", status.as_str()), SHARDS)
}

/// An order id as `ByStatus` sorts it: its ULID's 128 bits complemented, written as a ULID (26
/// characters of Crockford's base 32, whose text order is numeric order). A later id is a larger
/// number, so its complement is smaller: ascending key order, the one [`Sharded::merged_page`]
/// merges shards in, is newest first.
fn newest_first(id: OrderId) -> String {
    ulid::Ulid(!id.ulid().0).to_string()
}

impl HeadRecord {
    fn new(order: &Order) -> Self {
        let id = order.order_id.to_string();
        let open = order.status.is_open();
        let flagged = !order.flags.is_empty();
        Self {
            pk: order_pk(order.order_id),
            sk: HEAD.to_owned(),
            gsi2pk: open.then(|| OPEN.key_for(&id)),
            gsi2sk: open.then(|| format!("{:012}#{id}", order.deadline.unix_timestamp())),
            gsi3pk: by_status(order.status).key_for(&id),
            gsi3sk: newest_first(order.order_id),
            gsi4pk: flagged.then(|| FLAGGED_PARTITION.to_owned()),
            gsi4sk: flagged.then_some(id),
            status: order.status,
            cancel_reason: order.cancel_reason.clone(),
            payment_failure: order.payment_failure.clone(),
            payment_intent_id: order.payment_intent_id.clone(),
            payment: order.payment.clone(),
            shipment_count: order.shipment_count,
            shipments: order.shipments.clone(),
            returns: order.returns.clone(),
            flags: order.flags.clone(),
            capture_failure: order.capture_failure.clone(),
            disputes: order.disputes.clone(),
            flag_resolutions: order.flag_resolutions.clone(),
            history: order.history.iter().map(|t| StoredTransition { status: t.status, at: nanos(t.at) }).collect(),
            version: order.version,
            updated_at: nanos(order.updated_at),
        }
    }
}

impl DetailsRecord {
    fn new(order: &Order) -> Self {
        Self {
            pk: order_pk(order.order_id),
            sk: DETAILS.to_owned(),
            gsi1pk: format!("CUSTOMER#{}", order.customer),
            gsi1sk: order.order_id.to_string(),
            customer: order.customer.clone(),
            email: order.email.clone(),
            currency: order.totals.total.currency(),
            lines: order
                .lines
                .iter()
                .map(|line| StoredLine {
                    sku: line.sku.clone(),
                    title: line.title.clone(),
                    quantity: line.quantity,
                    unit_price: line.unit_price.amount(),
                    line_total: line.line_total.amount(),
                    discount: line.discount.map(|d| d.amount()),
                })
                .collect(),
            totals: StoredTotals {
                subtotal: order.totals.subtotal.amount(),
                discount: order.totals.discount.amount(),
                shipping: order.totals.shipping.amount(),
                tax: order.totals.tax.amount(),
                rounding: order.totals.rounding.map(|r| r.amount()),
                total: order.totals.total.amount(),
                promotions: order.totals.promotions.clone(),
            },
            shipping_address: order.shipping_address.clone(),
            shipping_method: order.shipping_method.clone(),
            promo_code: order.promo_code.clone(),
            payment_method: order.payment_method.clone(),
            coupon_redemption: order.coupon_redemption.clone(),
            created_at: order.created_at,
            deadline: order.deadline,
        }
    }
}

/// The order its two items make.
fn order_of(head: HeadRecord, details: DetailsRecord) -> Result<Order, Unavailable> {
    let order_id = details
        .pk
        .strip_prefix("ORDER#")
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| Unavailable::because(format!("an order item's key `{}` holds no order id", details.pk)))?;
    let money = |amount: i64| Money::new(amount, details.currency).map_err(Unavailable::new);
    let lines = details
        .lines
        .into_iter()
        .map(|line| {
            Ok(OrderLine {
                sku: line.sku,
                title: line.title,
                quantity: line.quantity,
                unit_price: money(line.unit_price)?,
                line_total: money(line.line_total)?,
                discount: line.discount.map(money).transpose()?,
            })
        })
        .collect::<Result<_, Unavailable>>()?;
    let stored = details.totals;
    let totals = Totals {
        subtotal: money(stored.subtotal)?,
        discount: money(stored.discount)?,
        shipping: money(stored.shipping)?,
        tax: money(stored.tax)?,
        rounding: stored.rounding.map(money).transpose()?,
        total: money(stored.total)?,
        promotions: stored.promotions,
    };
    Ok(Order {
        order_id,
        customer: details.customer,
        email: details.email,
        status: head.status,
        cancel_reason: head.cancel_reason,
        payment_failure: head.payment_failure,
        lines,
        totals,
        shipping_address: details.shipping_address,
        shipping_method: details.shipping_method,
        promo_code: details.promo_code,
        payment_method: details.payment_method,
        payment_intent_id: head.payment_intent_id,
        payment: head.payment,
        shipment_count: head.shipment_count,
        shipments: head.shipments,
        returns: head.returns,
        disputes: head.disputes,
        flags: head.flags,
        flag_resolutions: head.flag_resolutions,
        capture_failure: head.capture_failure,
        coupon_redemption: details.coupon_redemption,
        history: head
            .history
            .into_iter()
            .map(|t| Ok(Transition { status: t.status, at: from_nanos(t.at)? }))
            .collect::<Result<_, Unavailable>>()?,
        version: head.version,
        created_at: details.created_at,
        updated_at: from_nanos(head.updated_at)?,
        deadline: details.deadline,
    })
}

/// Orders from the items read of their partitions (any order, other items ignored), by id; an
/// order missing either item is left out.
fn assemble(items: Vec<Item>) -> Result<HashMap<String, Order>, Unavailable> {
    let mut heads = HashMap::new();
    let mut details = HashMap::new();
    for item in items {
        let pk = item.get("pk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        match item.get("sk").and_then(|v| v.as_s().ok()).map(String::as_str) {
            Some(HEAD) => {
                heads.insert(pk, serde_dynamo::from_item::<_, HeadRecord>(item)?);
            }
            Some(DETAILS) => {
                details.insert(pk, serde_dynamo::from_item::<_, DetailsRecord>(item)?);
            }
            _ => {}
        }
    }
    heads
        .into_iter()
        .filter_map(|(pk, head)| {
            let details = details.remove(&pk)?;
            Some(order_of(head, details).map(|order| (pk, order)))
        })
        .collect()
}

/// The table key of an order's item, from the `pk` an index entry carries.
#[derive(Debug, Deserialize)]
struct Entry {
    pk: String,
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

/// What an idempotency key keeps: the request's fingerprint and the order it placed. The
/// reply is rebuilt from the order ([`Order::as_placed`]), so this stays a fixed ~150 bytes
/// whatever the order holds.
#[derive(Debug, Serialize, Deserialize)]
struct ReplyRecord {
    pk: String,
    sk: String,
    request: String,
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
    /// clients send back (the API's store, whose keys only listings await; a consumer's never
    /// lists).
    #[must_use]
    pub fn listing(mut self, cursor_keys: impl Into<ListingKeys>) -> Self {
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
        let keys = self.cursor_keys.get().await?;
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

impl DynamoOrders {
    /// A page of orders listed by a keys-only index: the index gives the order ids (in its
    /// order), strongly consistent `BatchGetItem`s of 50 orders each, made at once, read their
    /// heads and details, and `keep` drops an order whose head has moved on since the index saw
    /// it (the index is eventually consistent), so a page can come back short. The read must be
    /// consistent: an eventually consistent one could return a head older than the index entry
    /// (an order the index already lists under its new status read with its old one), and the
    /// order would be dropped from both listings while the cursor moved past it.
    async fn orders(
        &self,
        (entries, next_cursor): (Vec<Entry>, Option<String>),
        keep: impl Fn(&Order) -> bool,
    ) -> Result<Page, PageError> {
        let keys: Vec<Item> =
            entries.iter().flat_map(|entry| [key(entry.pk.clone(), HEAD), key(entry.pk.clone(), DETAILS)]).collect();
        let mut found = assemble(batch_get(&self.client, &self.table, keys, true).await?)?;
        let orders = entries.iter().filter_map(|entry| found.remove(&entry.pk)).filter(|order| keep(order)).collect();
        Ok(Page { orders, next_cursor })
    }
}

impl OrderStore for DynamoOrders {
    /// The `Open` index's shard and `LastEvaluatedKey` there.
    type Cursor = SweepPosition;

    async fn saved_reply(&self, customer: &str, key: &str) -> Result<Option<SavedReply>, StoreError> {
        let item = get_consistent(&self.client, &self.table, reply_key(customer, key)).await?;
        let Some(item) = item else { return Ok(None) };
        let record: ReplyRecord = serde_dynamo::from_item(item).map_err(Unavailable::from)?;
        Ok(Some(SavedReply { request: record.request, order_id: record.order_id }))
    }

    async fn place(&self, placement: &Placement) -> Result<Placed, StoreError> {
        let order = &placement.order;
        let reply = ReplyRecord {
            pk: format!("IDEM#{}#{}", order.customer, placement.idempotency_key),
            sk: "IDEM".to_owned(),
            request: placement.request.clone(),
            order_id: order.order_id,
            expires_at: order.created_at.unix_timestamp() + REPLY_RETENTION_SECS,
        };
        let mut tx = Transaction::new();
        let reply = serde_dynamo::to_item(reply).map_err(Unavailable::from)?;
        let head = serde_dynamo::to_item(HeadRecord::new(order)).map_err(Unavailable::from)?;
        let details = serde_dynamo::to_item(DetailsRecord::new(order)).map_err(Unavailable::from)?;
        tx.push(Action::Reply, self.put(reply, "attribute_not_exists(pk)", None)?)
            .push(Action::Order, self.put(head, "attribute_not_exists(pk)", None)?)
            .push(Action::Order, self.put(details, "attribute_not_exists(pk)", None)?)
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
            Err(failure) => Err(StoreError(Unavailable::from(failure))),
        }
    }

    /// One consistent `Query` of the order's partition: its head and details (1 read unit while
    /// both together stay under 4 KB, as one `GetItem` of a single item would).
    async fn get(&self, id: OrderId) -> Result<Option<Order>, StoreError> {
        let items = query_partition(&self.client, &self.table, &order_pk(id), true).await?;
        Ok(assemble(items)?.into_values().next())
    }

    async fn save(&self, order: &Order, expected: u64, write: Write<'_>) -> Result<Saved, StoreError> {
        let Write { events, returned_coupon, returns } = write;
        let values = HashMap::from([(":expected".to_owned(), AttributeValue::N(expected.to_string()))]);
        // Only the head: the details never change after placement.
        let record = serde_dynamo::to_item(HeadRecord::new(order)).map_err(Unavailable::from)?;
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
            Err(failure) => Err(StoreError(Unavailable::from(failure))),
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
        let entries = self.query_page("ByCustomer", partition, None, limit, cursor).await?;
        self.orders(entries, |_| true).await
    }

    /// Every shard of the status at once ([`Sharded::listing_page`]), newest first: the sort
    /// key is the id turned around ([`newest_first`]).
    async fn by_status(&self, status: Status, limit: usize, cursor: Option<&str>) -> Result<Page, PageError> {
        let keys = self.cursor_keys.get().await?;
        let listing =
            Listing { index: BY_STATUS_INDEX, partition_key: "gsi3pk", sort_key: "gsi3sk", sort_prefix: None };
        let (items, next_cursor) = by_status(status)
            .listing_page::<PageError>(&self.client, &self.table, &listing, keys, limit, cursor)
            .await?;
        let entries = serde_dynamo::from_items(items).map_err(Unavailable::from)?;
        self.orders((entries, next_cursor), |order| order.status == status).await
    }

    async fn by_flag(&self, flag: Flag, limit: usize, cursor: Option<&str>) -> Result<Page, PageError> {
        let partition = ("gsi4pk", FLAGGED_PARTITION.to_owned());
        let entries = self.query_page(FLAGGED_INDEX, partition, Some(flag), limit, cursor).await?;
        self.orders(entries, |order| order.flags.contains(&flag)).await
    }

    async fn overdue(
        &self,
        now: OffsetDateTime,
        limit: usize,
        after: Option<SweepPosition>,
    ) -> Result<SweepPage<OrderId, SweepPosition>, StoreError> {
        // Index keys sort as `{deadline:012}#{order_id}`; `~` sorts after every id character.
        let below = format!("{:012}#~", now.unix_timestamp());
        let (items, next) =
            OPEN.page_below(&self.client, &self.table, OPEN_INDEX, "gsi2pk", ("gsi2sk", &below), limit, after).await?;
        // The `Open` index projects keys only: the order id is in the table key.
        let orders =
            items.iter().filter_map(|item| item.get("pk")?.as_s().ok()?.strip_prefix("ORDER#")?.parse().ok()).collect();
        Ok(SweepPage { items: orders, next })
    }
}

#[cfg(test)]
mod tests {
    use kernel::ShipmentId;
    use time::Duration;

    use super::*;
    use crate::order::{Dispatch, SagaStep, ShipmentLine};

    /// An item's size as DynamoDB bills it: attribute names plus values (numbers by their
    /// digits, maps and lists 3 bytes plus 1 per element).
    fn size(item: &Item) -> usize {
        fn value(v: &AttributeValue) -> usize {
            match v {
                AttributeValue::S(s) => s.len(),
                AttributeValue::N(n) => n.trim_start_matches('-').len().div_ceil(2) + 1,
                AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
                AttributeValue::L(list) => 3 + list.iter().map(|v| 1 + value(v)).sum::<usize>(),
                AttributeValue::M(map) => 3 + map.iter().map(|(k, v)| 1 + k.len() + value(v)).sum::<usize>(),
                _ => 0,
            }
        }
        item.iter().map(|(name, v)| name.len() + value(v)).sum()
    }

    fn usd(amount: i64) -> Money {
        Money::new(amount, Currency::USD).unwrap()
    }

    /// A usual order as placement writes it: three lines, a promotion, a full address.
    fn placed() -> Order {
        let at = OffsetDateTime::now_utc();
        let lines: Vec<OrderLine> = (0..3)
            .map(|i| OrderLine {
                sku: Sku::parse(&format!("TEE-ORGANIC-{i}-LARGE")).unwrap(),
                title: format!("Organic cotton tee, large, colour {i}"),
                quantity: 2,
                unit_price: usd(2499),
                line_total: usd(4998),
                discount: Some(usd(500)),
            })
            .collect();
        Order {
            order_id: OrderId::new(),
            customer: "6f1c9a52-7d0e-4c1b-9b8e-2f4a0d3c5e71".into(),
            email: "ada.lovelace@example.com".into(),
            status: Status::Pending,
            cancel_reason: None,
            payment_failure: None,
            lines,
            totals: Totals {
                subtotal: usd(14994),
                discount: usd(1500),
                shipping: usd(0),
                tax: usd(2699),
                rounding: None,
                total: usd(16193),
                promotions: vec!["10% off tees".into()],
            },
            shipping_address: Address {
                name: "Ada Lovelace".into(),
                line1: "12 Analytical Row".into(),
                line2: Some("Flat 3".into()),
                city: "London".into(),
                region: None,
                postal_code: "N1 9GU".into(),
                country: "GB".into(),
            },
            shipping_method: "express".into(),
            promo_code: Some("TEES10".into()),
            payment_method: "pm_1QxYzAbCdEfGhIjKlMnOpQrS".into(),
            payment_intent_id: None,
            payment: PaymentFacts::default(),
            shipment_count: None,
            shipments: Vec::new(),
            returns: Vec::new(),
            disputes: Vec::new(),
            flags: Vec::new(),
            flag_resolutions: Vec::new(),
            capture_failure: None,
            coupon_redemption: Some("TEES10".into()),
            history: vec![Transition { status: Status::Pending, at }],
            version: 1,
            created_at: at,
            updated_at: at,
            deadline: at + Duration::minutes(10),
        }
    }

    /// The order's two items as the store writes them, and the order read back from them.
    fn round_trip(order: &Order) -> (Item, Item, Order) {
        let head: Item = serde_dynamo::to_item(HeadRecord::new(order)).unwrap();
        let details: Item = serde_dynamo::to_item(DetailsRecord::new(order)).unwrap();
        let read = assemble(vec![details.clone(), head.clone()]).unwrap().into_values().next().unwrap();
        (head, details, read)
    }

    /// Everything that happens to a usual order on its way to `delivered`, in order.
    fn saga(shipment: ShipmentId) -> Vec<SagaStep> {
        let at = OffsetDateTime::now_utc();
        let lines =
            (0..3).map(|i| ShipmentLine { sku: Sku::parse(&format!("TEE-ORGANIC-{i}-LARGE")).unwrap(), quantity: 2 });
        vec![
            SagaStep::StockReserved,
            SagaStep::PaymentAuthorized { payment_intent_id: "pi_3QxYzAbCdEfGhIjK1a2b3c4d".into(), amount: usd(16193) },
            SagaStep::ShipmentCreated { shipment, count: 1, warehouse: "main".into(), lines: lines.collect() },
            SagaStep::ShipmentDispatched(Dispatch {
                shipment,
                count: 1,
                warehouse: "main".into(),
                carrier: "dhl".into(),
                tracking_number: "JD014600006281473690".into(),
                tracking_url: Some("https://www.dhl.com/track?tracking-id=JD014600006281473690".into()),
                at,
            }),
            SagaStep::PaymentCaptured { amount: usd(16193), at },
            SagaStep::ShipmentDelivered { shipment, count: 1, at },
        ]
    }

    #[test]
    fn a_usual_orders_head_stays_under_1_kb_at_every_step_to_delivered_and_reads_back_whole() {
        let mut order = placed();
        let (_, details, read) = round_trip(&order);
        assert_eq!(read, order);
        assert!(size(&details) <= 1024, "details of 3 lines: {} bytes", size(&details));
        for step in saga(ShipmentId::new()) {
            order.apply(&step, OffsetDateTime::now_utc()).unwrap().unwrap();
            let (head, again, read) = round_trip(&order);
            assert_eq!(read, order, "after {step:?}");
            assert_eq!(again, details, "the details never change");
            assert!(size(&head) <= 1024, "head after {step:?}: {} bytes", size(&head));
        }
        assert_eq!(order.status, Status::Delivered);
    }

    #[test]
    fn what_only_admins_see_and_the_coupon_survive_the_split() {
        let mut order = placed();
        order.flags = vec![Flag::CaptureFailed, Flag::Disputed];
        order.capture_failure = Some(CaptureFailure { reason: "card_declined".into(), at: order.created_at });
        order.disputes = vec![Dispute {
            dispute_id: "dp_1".into(),
            amount: usd(16193),
            reason: "fraudulent".into(),
            at: order.created_at,
            outcome: Some(domain_events::payment::DisputeOutcome::Lost),
            closed_at: Some(order.created_at),
        }];
        order.flag_resolutions = vec![crate::order::FlagResolution {
            flag: Flag::DispatchedAfterCancel,
            by: "root".into(),
            note: "parcel recovered".into(),
            at: order.created_at,
        }];
        order.cancel_reason = Some("timeout".into());
        order.payment_failure = Some("card_declined".into());

        let (head, _, read) = round_trip(&order);

        assert_eq!(read, order);
        assert_eq!(head.get("gsi4pk").and_then(|v| v.as_s().ok()).map(String::as_str), Some(FLAGGED_PARTITION));
    }

    #[test]
    fn by_status_sorts_newer_orders_first_and_spreads_them_over_the_shards() {
        // A millisecond apart (the ULID's first 10 characters are its time), then a ms later still.
        let ids =
            ["ord_01JD4X6Z8Q9R2S3T4V5W6X7Y8Z", "ord_01JD4X6Z8RAAAAAAAAAAAAAAAA", "ord_01JD4X6Z8S0000000000000000"]
                .map(|id| id.parse::<OrderId>().unwrap());
        let mut sorted = ids.map(newest_first);
        sorted.sort();

        assert_eq!(sorted, [ids[2], ids[1], ids[0]].map(newest_first), "newest first");
        // The stored format, pinned: the complement of the smallest and of the largest ULID.
        let key = |id: &str| newest_first(id.parse().unwrap());
        assert_eq!(key("ord_00000000000000000000000000"), "7ZZZZZZZZZZZZZZZZZZZZZZZZZ");
        assert_eq!(key("ord_7ZZZZZZZZZZZZZZZZZZZZZZZZZ"), "00000000000000000000000000");
        let order = placed();
        let head: HeadRecord = HeadRecord::new(&order);
        let shard = |key: &str| key.rsplit_once('#').map(|(_, k)| k.parse::<u16>().unwrap());
        assert!(head.gsi3pk.starts_with("STATUS#pending#") && shard(&head.gsi3pk) < Some(SHARDS));
        assert!(head.gsi2pk.as_deref().is_some_and(|pk| pk.starts_with("OPEN#") && shard(pk) < Some(SHARDS)));
    }

    #[test]
    fn an_order_missing_either_item_is_not_an_order() {
        let order = placed();
        let (head, details, _) = round_trip(&order);
        assert!(assemble(vec![head]).unwrap().is_empty());
        assert!(assemble(vec![details]).unwrap().is_empty());
    }
}
