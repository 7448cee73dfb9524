//! The inventory's use cases on its real DynamoDB adapter, against moto
//! (`infra/emulators/moto_server.py`), with the table exactly as template.yaml declares it.
//!
//! The interleavings are deterministic: where a race matters, a wrapper around the store does
//! the other side's write at the exact point between our read and our write, or answers the
//! sweep's listing from a stale index (DynamoDB's GSIs are eventually consistent; moto's are not).
//!
//! One moto serves the whole binary; each test has a table of its own (`testkit::table`). Needs
//! the emulators venv's Python (`make venv`), or the interpreter `FERROCART_PYTHON` names.

// Test helpers outside #[test] functions may unwrap too (clippy.toml covers only the tests).
#![allow(clippy::unwrap_used)]

use std::sync::Mutex;

use adapters::shard::SweepPosition;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use domain_events::Envelope;
use domain_events::checkout::{OrderLine, OrderPlaced, ReturnLine, ReturnReceived};
use domain_events::inventory::RejectionReason;
use inventory::dynamo::DynamoInventory;
use inventory::service::{self, InventoryError, InventoryStore, Reservation, ReservationStatus, StoreError, Write};
use inventory::stock::{AllocatedLine, StockLevel, Warehouse};
use kernel::{Currency, Money, OrderId, ReturnId, Sku};
use lambda_glue::sweep::{Page, Sweep, Tick};

const T0: OffsetDateTime = datetime!(2026-11-22 10:00 UTC);
const HOLD: Duration = Duration::minutes(15);

struct Table {
    client: Client,
    name: String,
    store: DynamoInventory,
    outbox: testkit::table::Table,
}

/// A fresh inventory table, as template.yaml's `InventoryTable`.
async fn table() -> Table {
    let table = testkit::table::Table::new("InventoryTable").await;
    Table {
        store: DynamoInventory::new(table.client.clone(), &table.name),
        client: table.client.clone(),
        name: table.name.clone(),
        outbox: table,
    }
}

impl Table {
    /// `(detail_type, data)` of every event in the outbox.
    async fn events(&self) -> Vec<(String, serde_json::Value)> {
        self.outbox.outbox().await
    }

    async fn released(&self) -> Vec<serde_json::Value> {
        self.events().await.into_iter().filter(|(kind, _)| kind == "StockReleased").map(|(_, data)| data).collect()
    }

    /// (on_hand, reserved, available) of the SKU in the warehouse.
    async fn level(&self, sku: &Sku, warehouse: &str) -> (u32, u32, u32) {
        let levels = self.store.levels(std::slice::from_ref(sku)).await.unwrap();
        let level = levels.iter().find(|l| l.warehouse.as_str() == warehouse).unwrap();
        (level.on_hand, level.reserved, level.available)
    }

    async fn stock(&self, sku: &Sku, warehouse: &str, on_hand: u32) {
        service::set_stock(&self.store, sku.clone(), Warehouse::parse(warehouse).unwrap(), on_hand, None)
            .await
            .unwrap();
    }

    /// `OrderPlaced` for `lines`, handled at `T0`.
    async fn place(&self, lines: &[(&Sku, u32)]) -> OrderId {
        let price = Money::new(1000, Currency::USD).unwrap();
        let order = OrderPlaced {
            order_id: OrderId::new(),
            customer: "alice".into(),
            email: "alice@example.com".into(),
            lines: lines
                .iter()
                .map(|(sku, quantity)| OrderLine { sku: (*sku).clone(), quantity: *quantity, unit_price: price })
                .collect(),
            total: price,
            payment_method: "pm_card_visa".into(),
            cart: None,
        };
        service::on_order_placed(&self.store, &order, T0, HOLD).await.unwrap();
        order.order_id
    }
}

fn sku() -> Sku {
    Sku::parse(&format!("SKU-{}", OrderId::new().ulid())).unwrap()
}

fn sweep() -> Sweep {
    Sweep {
        name: "test",
        deadline: OffsetDateTime::now_utc() + Duration::minutes(1),
        item_budget: Duration::seconds(5),
    }
}

/// The store, but its expiry listing is what an index read a moment ago said: `listed`.
struct StaleIndex<'a> {
    inner: &'a DynamoInventory,
    listed: Vec<OrderId>,
}

/// The store, but right after the first read of a reservation the order's confirmation commits
/// it: the interleaving "sweep reads a held reservation, `OrderConfirmed` commits it, sweep writes".
struct CommitAfterRead<'a> {
    inner: &'a DynamoInventory,
    committed: Mutex<bool>,
}

macro_rules! delegate_store {
    ($wrapper:ty) => {
        impl InventoryStore for $wrapper {
            type Cursor = SweepPosition;

            async fn levels(&self, skus: &[Sku]) -> Result<Vec<StockLevel>, StoreError> {
                self.inner.levels(skus).await
            }
            async fn set_on_hand(
                &self,
                read: Option<&StockLevel>,
                sku: &Sku,
                warehouse: &Warehouse,
                on_hand: u32,
            ) -> Result<Write, StoreError> {
                self.inner.set_on_hand(read, sku, warehouse, on_hand).await
            }
            async fn reservation(&self, order_id: OrderId) -> Result<Option<Reservation>, StoreError> {
                self.read_reservation(order_id).await
            }
            async fn reserve(
                &self,
                order_id: OrderId,
                lines: &[AllocatedLine],
                until: OffsetDateTime,
                event: &Envelope,
            ) -> Result<Write, StoreError> {
                self.inner.reserve(order_id, lines, until, event).await
            }
            async fn reject(&self, order_id: OrderId, event: &Envelope) -> Result<Write, StoreError> {
                self.inner.reject(order_id, event).await
            }
            async fn release(
                &self,
                reservation: Option<&Reservation>,
                order_id: OrderId,
                event: &Envelope,
            ) -> Result<Write, StoreError> {
                self.inner.release(reservation, order_id, event).await
            }
            async fn commit(&self, reservation: &Reservation, event: &Envelope) -> Result<Write, StoreError> {
                self.inner.commit(reservation, event).await
            }
            async fn expire(
                &self,
                reservation: &Reservation,
                now: OffsetDateTime,
                event: &Envelope,
            ) -> Result<Write, StoreError> {
                self.inner.expire(reservation, now, event).await
            }
            async fn restock(
                &self,
                return_id: ReturnId,
                order_id: OrderId,
                warehouse: &Warehouse,
                lines: &[(Sku, u32)],
            ) -> Result<Write, StoreError> {
                self.inner.restock(return_id, order_id, warehouse, lines).await
            }
            async fn expired(
                &self,
                now: OffsetDateTime,
                limit: usize,
                after: Option<SweepPosition>,
            ) -> Result<Page<OrderId, SweepPosition>, StoreError> {
                self.list_expired(now, limit, after).await
            }
        }
    };
}

delegate_store!(StaleIndex<'_>);
delegate_store!(CommitAfterRead<'_>);

impl StaleIndex<'_> {
    async fn read_reservation(&self, order_id: OrderId) -> Result<Option<Reservation>, StoreError> {
        self.inner.reservation(order_id).await
    }

    async fn list_expired(
        &self,
        _now: OffsetDateTime,
        _limit: usize,
        _after: Option<SweepPosition>,
    ) -> Result<Page<OrderId, SweepPosition>, StoreError> {
        Ok(Page { items: self.listed.clone(), next: None })
    }
}

impl CommitAfterRead<'_> {
    async fn read_reservation(&self, order_id: OrderId) -> Result<Option<Reservation>, StoreError> {
        let read = self.inner.reservation(order_id).await?;
        let first = !std::mem::replace(&mut *self.committed.lock().unwrap(), true);
        if first {
            service::commit(self.inner, order_id).await.unwrap();
        }
        Ok(read)
    }

    async fn list_expired(
        &self,
        now: OffsetDateTime,
        limit: usize,
        after: Option<SweepPosition>,
    ) -> Result<Page<OrderId, SweepPosition>, StoreError> {
        self.inner.expired(now, limit, after).await
    }
}

#[tokio::test]
async fn an_expiry_listed_before_the_order_was_confirmed_releases_nothing() {
    let (table, sku) = (table().await, sku());
    table.stock(&sku, "east", 5).await;
    let order_id = table.place(&[(&sku, 2)]).await;
    // The index listed the lapsed hold; then OrderConfirmed committed it.
    let stale = StaleIndex { inner: &table.store, listed: vec![order_id] };
    service::commit(&table.store, order_id).await.unwrap();

    let tick = inventory::events::sweep(&stale, T0 + HOLD + Duration::minutes(5), sweep()).await.unwrap();

    assert_eq!(tick, Tick { handled: 1, failed: 0, out_of_time: false });
    assert_eq!(table.level(&sku, "east").await, (3, 0, 3), "the sold units stay sold");
    assert_eq!(table.released().await, Vec::<serde_json::Value>::new(), "no StockReleased for a confirmed order");
    let reservation = table.store.reservation(order_id).await.unwrap().unwrap();
    assert_eq!(reservation.status, ReservationStatus::Committed);
}

#[tokio::test]
async fn a_confirmation_that_commits_between_the_expiry_read_and_write_wins() {
    let (table, sku) = (table().await, sku());
    table.stock(&sku, "east", 5).await;
    let order_id = table.place(&[(&sku, 2)]).await;
    let racing = CommitAfterRead { inner: &table.store, committed: Mutex::new(false) };

    service::expire(&racing, order_id, T0 + HOLD + Duration::minutes(5)).await.unwrap();

    assert_eq!(table.level(&sku, "east").await, (3, 0, 3));
    assert!(table.released().await.is_empty());
}

#[tokio::test]
async fn a_cancellation_that_races_the_confirmation_puts_the_sold_units_back_on_the_shelf() {
    let (table, sku) = (table().await, sku());
    table.stock(&sku, "east", 5).await;
    let order_id = table.place(&[(&sku, 2)]).await;
    // The cancellation reads the reservation as held; OrderConfirmed commits it before the
    // cancellation writes.
    let racing = CommitAfterRead { inner: &table.store, committed: Mutex::new(false) };

    service::release(&racing, order_id).await.unwrap();

    let reservation = table.store.reservation(order_id).await.unwrap().unwrap();
    assert_eq!((table.level(&sku, "east").await, reservation.status), ((5, 0, 5), ReservationStatus::Released));
    assert_eq!(table.released().await, vec![serde_json::json!({ "order_id": order_id, "reason": "cancelled" })]);
}

#[tokio::test]
async fn a_hold_is_released_once_it_lapsed_and_not_before() {
    let (table, sku) = (table().await, sku());
    table.stock(&sku, "east", 5).await;
    let order_id = table.place(&[(&sku, 2)]).await;
    // Even an index listing it early changes nothing before the hold lapsed.
    let early = StaleIndex { inner: &table.store, listed: vec![order_id] };

    inventory::events::sweep(&early, T0 + HOLD - Duration::seconds(1), sweep()).await.unwrap();
    let before = table.level(&sku, "east").await;
    let tick = inventory::events::sweep(&table.store, T0 + HOLD + Duration::seconds(1), sweep()).await.unwrap();

    assert_eq!(before, (5, 2, 3));
    assert_eq!(tick.handled, 1);
    assert_eq!(table.level(&sku, "east").await, (5, 0, 5));
    let released = table.released().await;
    assert_eq!(released, vec![serde_json::json!({ "order_id": order_id, "reason": "expired" })]);
}

#[tokio::test]
async fn holds_spread_over_the_index_shards_are_each_listed_once_across_pages_and_all_expire() {
    let (table, sku) = (table().await, sku());
    table.stock(&sku, "east", 40).await;
    let mut placed = Vec::new();
    for _ in 0..20 {
        placed.push(table.place(&[(&sku, 1)]).await);
    }
    let mut shards = std::collections::BTreeSet::new();
    for order_id in &placed {
        let key = adapters::dynamo::key(format!("RES#{order_id}"), "RES");
        let item = adapters::dynamo::get_consistent(&table.client, &table.name, key).await.unwrap().unwrap();
        shards.insert(item["gsi1pk"].as_s().unwrap().clone());
    }
    let lapsed = T0 + HOLD + Duration::seconds(1);

    let (mut listed, mut after, mut pages) = (Vec::new(), None, 0);
    loop {
        let page = table.store.expired(lapsed, 3, after).await.unwrap();
        assert!(page.items.len() <= 3, "at most the page size");
        listed.extend(page.items);
        pages += 1;
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let tick = inventory::events::sweep(&table.store, lapsed, sweep()).await.unwrap();

    assert!(shards.len() > 4 && shards.iter().all(|s| s.starts_with("HELD#")), "spread: {shards:?}");
    assert!(pages >= 7, "{pages} pages of 3");
    let (mut want, mut got) = (placed.clone(), listed.clone());
    want.sort_unstable();
    got.sort_unstable();
    assert_eq!(got, want, "every hold listed once");
    assert_eq!(tick.handled, 20);
    assert_eq!(table.level(&sku, "east").await, (40, 0, 40));
    assert!(table.store.expired(lapsed, 3, None).await.unwrap().items.is_empty(), "released holds leave the index");
}

#[tokio::test]
async fn a_reservation_that_cannot_be_read_does_not_stop_the_sweep_behind_it() {
    let (table, sku) = (table().await, sku());
    table.stock(&sku, "east", 5).await;
    // A lapsed reservation in the index is unreadable (a bug wrote it); a good one is listed too.
    let broken = OrderId::new();
    let held = adapters::shard::Sharded::new("HELD", adapters::shard::SHARDS).key_for(&broken.to_string());
    table
        .client
        .put_item()
        .table_name(&table.name)
        .item("pk", AttributeValue::S(format!("RES#{broken}")))
        .item("sk", AttributeValue::S("RES".into()))
        .item("order_id", AttributeValue::S(broken.to_string()))
        .item("status", AttributeValue::S("reserved".into()))
        .item("lines", AttributeValue::S("not a list of lines".into()))
        .item("held_until", AttributeValue::N("1".into()))
        .item("gsi1pk", AttributeValue::S(held))
        .item("gsi1sk", AttributeValue::S(format!("{:012}#{broken}", 1)))
        .send()
        .await
        .unwrap();
    let order_id = table.place(&[(&sku, 2)]).await;

    let tick = inventory::events::sweep(&table.store, T0 + HOLD + Duration::minutes(1), sweep()).await.unwrap();

    assert_eq!(tick, Tick { handled: 1, failed: 1, out_of_time: false });
    assert_eq!(table.level(&sku, "east").await, (5, 0, 5), "the good reservation behind the bad one expired");
    assert_eq!(table.released().await, vec![serde_json::json!({ "order_id": order_id, "reason": "expired" })]);
}

#[tokio::test]
async fn an_order_that_needs_more_stock_writes_than_one_transaction_holds_is_rejected_as_too_large() {
    let table = table().await;
    // 50 lines, each 2 units from two warehouses with 1 each: 100 stock writes, + reservation + event.
    let skus: Vec<Sku> = (0..50).map(|_| sku()).collect();
    for sku in &skus {
        table.stock(sku, "east", 1).await;
        table.stock(sku, "west", 1).await;
    }
    let lines: Vec<(&Sku, u32)> = skus.iter().map(|sku| (sku, 2)).collect();

    let order_id = table.place(&lines).await;

    let rejected: Vec<_> = table.events().await.into_iter().filter(|(kind, _)| kind == "StockRejected").collect();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].1["reason"], RejectionReason::OrderTooLarge.as_str());
    assert_eq!(rejected[0].1["order_id"], serde_json::json!(order_id));
    assert_eq!(table.level(&skus[0], "east").await, (1, 0, 1), "nothing was reserved");
    assert_eq!(table.store.reservation(order_id).await.unwrap().unwrap().status, ReservationStatus::Rejected);
}

#[tokio::test]
async fn an_order_drawing_from_more_warehouses_than_one_order_can_ship_from_is_rejected_as_too_large() {
    let (table, sku) = (table().await, sku());
    // 50 warehouses with 1 unit each, one line of 50: 50 stock writes fit a transaction, but
    // fulfillment creates at most MAX_SHIPMENTS (49) shipments for an order.
    for n in 0..50 {
        table.stock(&sku, &format!("w{n:02}"), 1).await;
    }

    let order_id = table.place(&[(&sku, 50)]).await;

    let rejected: Vec<_> = table.events().await.into_iter().filter(|(kind, _)| kind == "StockRejected").collect();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].1["reason"], RejectionReason::OrderTooLarge.as_str());
    assert_eq!(table.store.reservation(order_id).await.unwrap().unwrap().status, ReservationStatus::Rejected);
}

#[tokio::test]
async fn an_order_with_as_many_stock_writes_as_fit_is_reserved() {
    let table = table().await;
    // 49 lines from two warehouses each: 98 stock writes + reservation + event = 100 actions.
    let skus: Vec<Sku> = (0..49).map(|_| sku()).collect();
    for sku in &skus {
        table.stock(sku, "east", 1).await;
        table.stock(sku, "west", 1).await;
    }
    let lines: Vec<(&Sku, u32)> = skus.iter().map(|sku| (sku, 2)).collect();

    let order_id = table.place(&lines).await;

    assert_eq!(table.store.reservation(order_id).await.unwrap().unwrap().status, ReservationStatus::Reserved);
    assert_eq!(table.level(&skus[48], "west").await, (1, 1, 0));
}

#[tokio::test]
async fn an_admin_count_based_on_an_on_hand_that_a_restock_moved_is_refused_and_the_restock_kept() {
    let (table, sku) = (table().await, sku());
    table.stock(&sku, "east", 5).await;
    let order_id = table.place(&[(&sku, 2)]).await;
    service::commit(&table.store, order_id).await.unwrap();
    let (seen_by_admin, _, _) = table.level(&sku, "east").await;
    // The confirmed order is cancelled: its 2 units go back on the shelf.
    service::release(&table.store, order_id).await.unwrap();

    let result =
        service::set_stock(&table.store, sku.clone(), Warehouse::parse("east").unwrap(), 13, Some(seen_by_admin)).await;

    assert_eq!(seen_by_admin, 3);
    assert!(matches!(result, Err(InventoryError::OnHandChanged { expected: 3, current: 5 })), "{result:?}");
    assert_eq!(table.level(&sku, "east").await, (5, 0, 5));
}

#[tokio::test]
async fn a_stock_write_based_on_a_stale_read_is_not_applied() {
    let (table, sku) = (table().await, sku());
    table.stock(&sku, "east", 5).await;
    let order_id = table.place(&[(&sku, 2)]).await;
    service::commit(&table.store, order_id).await.unwrap();
    let read = table.store.levels(std::slice::from_ref(&sku)).await.unwrap().remove(0);
    service::release(&table.store, order_id).await.unwrap();

    let written = table.store.set_on_hand(Some(&read), &sku, &Warehouse::parse("east").unwrap(), 10).await.unwrap();

    assert_eq!(written, Write::StockChanged);
    assert_eq!(table.level(&sku, "east").await, (5, 0, 5));
}

fn return_of(lines: &[(&Sku, u32)], warehouse: &str) -> ReturnReceived {
    ReturnReceived {
        order_id: OrderId::new(),
        return_id: ReturnId::new(),
        warehouse: Warehouse::parse(warehouse).unwrap(),
        lines: lines.iter().map(|(sku, quantity)| ReturnLine { sku: (*sku).clone(), quantity: *quantity }).collect(),
        refund: Money::new(1000, Currency::USD).unwrap(),
    }
}

#[tokio::test]
async fn a_received_return_goes_back_on_hand_once_in_its_warehouse_even_one_that_never_held_the_sku() {
    let table = table().await;
    let (mug, tee) = (Sku::parse("MUG-RET").unwrap(), Sku::parse("TEE-RET").unwrap());
    table.stock(&mug, "east", 5).await;
    let order = table.place(&[(&mug, 2)]).await;
    let received = return_of(&[(&mug, 2), (&tee, 1)], "east");

    service::restock(&table.store, &received).await.unwrap();
    // The same fact again (a duplicate, or re-sent under a new event id): nothing more.
    service::restock(&table.store, &received).await.unwrap();

    assert_eq!(table.level(&mug, "east").await, (7, 2, 5), "on hand and available up by 2; the hold kept");
    assert_eq!(table.level(&tee, "east").await, (1, 0, 1), "a new stock row");
    assert!(table.events().await.iter().all(|(kind, _)| kind != "StockReleased"), "a restock announces nothing");
    assert!(table.store.reservation(order).await.unwrap().is_some());
}

/// `adapters::dynamo::batch_get` is shared by every table; it is proved here, on one.
#[tokio::test]
async fn a_batch_read_of_more_keys_than_one_batch_get_takes_returns_every_item_once_in_call_order() {
    let table = table().await;
    let key = |n: usize| adapters::dynamo::key(format!("BATCH#{n:03}"), "BATCH");
    let stored: Vec<usize> = (0..550).filter(|n| n % 100 != 7).collect();
    for batch in stored.chunks(25) {
        let writes = batch.iter().map(|&n| {
            let mut item = key(n);
            item.insert("n".into(), AttributeValue::N(n.to_string()));
            let put = aws_sdk_dynamodb::types::PutRequest::builder().set_item(Some(item)).build().unwrap();
            aws_sdk_dynamodb::types::WriteRequest::builder().put_request(put).build()
        });
        table.client.batch_write_item().request_items(&table.name, writes.collect()).send().await.unwrap();
    }
    // 550 keys, 6 of them not stored: six calls of BatchGetItem's 100 keys at most, more than
    // the four made at once, so a later call starts when an earlier one is done.
    let keys = (0..550).map(key).collect();

    let found = adapters::dynamo::batch_get(&table.client, &table.name, keys, true).await.unwrap();

    let numbers: Vec<usize> = found.iter().map(|item| item["n"].as_n().unwrap().parse().unwrap()).collect();
    let calls: Vec<usize> = numbers.iter().map(|n| n / 100).collect();
    assert!(calls.is_sorted(), "each call's items after the call before's: {calls:?}");
    let mut sorted = numbers;
    sorted.sort_unstable();
    assert_eq!(sorted, stored);
}
