//! Fulfillment's use cases on its real DynamoDB adapter, against moto
//! (`infra/emulators/moto_server.py`), with the table exactly as template.yaml declares it.
//!
//! One moto serves the whole binary; each test has a table of its own (`testkit::table`). Needs
//! the emulators venv's Python (`make venv`), or the interpreter `FERROCART_PYTHON` names.

// Test helpers outside #[test] functions may unwrap too (clippy.toml covers only the tests).
#![allow(clippy::unwrap_used)]

use adapters::cursor::KeyError;
use adapters::secrets::{OnFirstUse, Stage};
use adapters::{CursorKeys, KeysUnavailable};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use domain_events::checkout::{Shipping, ShippingAddress};
use domain_events::inventory::{Allocation, ReservedLine};
use domain_events::queries::HoldForCancelReply;
use fulfillment::dynamo::DynamoFulfillment;
use fulfillment::model::{Flag, Status, Tracking, Warehouse};
use fulfillment::service::{self, Filter, FulfillmentError, FulfillmentStore};
use kernel::{OrderId, Sku};

const T0: OffsetDateTime = datetime!(2026-11-22 10:00 UTC);

struct Table {
    store: DynamoFulfillment,
    table: testkit::table::Table,
}

async fn table() -> Table {
    let table = testkit::table::Table::new("FulfillmentTable").await;
    let keys = CursorKeys::new(&[7; 32], None).unwrap();
    Table { store: DynamoFulfillment::new(table.client.clone(), &table.name).listing(keys), table }
}

impl Table {
    async fn events(&self, detail_type: &str) -> Vec<serde_json::Value> {
        self.table.outbox().await.into_iter().filter(|(kind, _)| kind == detail_type).map(|(_, data)| data).collect()
    }

    async fn listed(&self, status: Status, warehouse: Option<&str>) -> Vec<fulfillment::model::Shipment> {
        let filter = Filter { status, warehouse: warehouse.map(|w| Warehouse::parse(w).unwrap()) };
        self.store.list(&filter, 100, None).await.unwrap().items
    }
}

fn shipping() -> Shipping {
    Shipping {
        method: "standard".into(),
        address: ShippingAddress {
            name: "Alice".into(),
            line1: "1 Main St".into(),
            line2: None,
            city: "Springfield".into(),
            region: Some("IL".into()),
            postal_code: "62701".into(),
            country: "US".into(),
        },
    }
}

/// Two SKUs: one from `east` and `west`, one from `west` only.
fn lines() -> Vec<ReservedLine> {
    let allocation = |warehouse: &str, quantity| Allocation { warehouse: warehouse.into(), quantity };
    vec![
        ReservedLine {
            sku: Sku::parse("MUG-1").unwrap(),
            quantity: 3,
            allocations: vec![allocation("east", 2), allocation("west", 1)],
        },
        ReservedLine { sku: Sku::parse("TEE-1").unwrap(), quantity: 1, allocations: vec![allocation("west", 1)] },
    ]
}

fn ups() -> Tracking {
    Tracking::parse("ups", "1Z999", Some("https://ups.example.com/1Z999")).unwrap()
}

#[tokio::test]
async fn both_facts_in_either_order_and_repeated_create_one_shipment_per_warehouse_once() {
    let t = table().await;
    let (first, second) = (OrderId::new(), OrderId::new());

    service::on_stock_committed(&t.store, first, &lines(), T0).await.unwrap();
    service::on_order_confirmed(&t.store, first, Some(&shipping()), T0).await.unwrap();
    service::on_order_confirmed(&t.store, second, Some(&shipping()), T0).await.unwrap();
    service::on_stock_committed(&t.store, second, &lines(), T0).await.unwrap();
    // Every fact again, as redeliveries or re-sent events would bring them.
    for order in [first, second] {
        service::on_order_confirmed(&t.store, order, Some(&shipping()), T0).await.unwrap();
        service::on_stock_committed(&t.store, order, &lines(), T0).await.unwrap();
    }

    let created = t.events("ShipmentCreated").await;
    assert_eq!(created.len(), 4, "two orders, two warehouses each, once");
    let pending = t.listed(Status::Pending, None).await;
    assert_eq!(pending.len(), 4);
    let west = t.listed(Status::Pending, Some("west")).await;
    assert_eq!(west.len(), 2);
    assert!(west.iter().all(|s| s.lines.len() == 2 && s.shipment_count == 2 && s.shipping == shipping()));
}

#[tokio::test]
async fn a_fact_without_its_payload_creates_nothing() {
    let t = table().await;
    let order = OrderId::new();

    service::on_order_confirmed(&t.store, order, None, T0).await.unwrap();
    service::on_stock_committed(&t.store, order, &lines(), T0).await.unwrap();
    service::on_order_confirmed(&t.store, OrderId::new(), Some(&shipping()), T0).await.unwrap();

    assert!(t.events("ShipmentCreated").await.is_empty());
}

#[tokio::test]
async fn dispatch_then_deliver_each_once_and_impossible_steps_are_refused() {
    let t = table().await;
    let order = OrderId::new();
    service::on_order_confirmed(&t.store, order, Some(&shipping()), T0).await.unwrap();
    service::on_stock_committed(&t.store, order, &lines(), T0).await.unwrap();
    let pending = t.listed(Status::Pending, None).await;
    let (east, west) = (pending[0].shipment_id, pending[1].shipment_id);

    let early = service::deliver(&t.store, east, T0).await;
    let dispatched = service::dispatch(&t.store, east, ups(), T0).await.unwrap();
    let again = service::dispatch(&t.store, east, ups(), T0).await.unwrap();
    let delivered = service::deliver(&t.store, east, T0).await.unwrap();
    let delivered_again = service::deliver(&t.store, east, T0).await.unwrap();

    assert!(matches!(early, Err(FulfillmentError::Refused(_))));
    assert_eq!((dispatched.status, dispatched.version), (Status::Dispatched, 2));
    assert_eq!(again, dispatched, "a repeat answers the same shipment");
    assert_eq!(delivered.status, Status::Delivered);
    assert_eq!(delivered_again, delivered);
    assert_eq!(t.events("ShipmentDispatched").await.len(), 1);
    assert_eq!(t.events("ShipmentDelivered").await.len(), 1);
    assert_eq!(t.listed(Status::Delivered, Some("east")).await.len(), 1);
    assert_eq!(t.listed(Status::Pending, None).await.iter().map(|s| s.shipment_id).collect::<Vec<_>>(), vec![west]);
    assert!(matches!(service::shipment(&t.store, kernel::ShipmentId::new()).await, Err(FulfillmentError::NotFound(_))));
}

#[tokio::test]
async fn a_cancellation_cancels_pending_shipments_flags_a_dispatched_one_and_stops_later_ones() {
    let t = table().await;
    let order = OrderId::new();
    service::on_order_confirmed(&t.store, order, Some(&shipping()), T0).await.unwrap();
    service::on_stock_committed(&t.store, order, &lines(), T0).await.unwrap();
    let pending = t.listed(Status::Pending, None).await;
    let (east, west) = (pending[0].shipment_id, pending[1].shipment_id);
    service::dispatch(&t.store, east, ups(), T0).await.unwrap();

    service::on_order_cancelled(&t.store, order, T0).await.unwrap();
    service::on_order_cancelled(&t.store, order, T0).await.unwrap();

    let east = service::shipment(&t.store, east).await.unwrap();
    assert_eq!((east.status, east.flag), (Status::Dispatched, Some(Flag::CancelledAfterDispatch)));
    let west_now = service::shipment(&t.store, west).await.unwrap();
    assert_eq!(west_now.status, Status::Cancelled);
    assert_eq!(t.events("ShipmentCancelled").await.len(), 1, "once, and only the pending one");
    assert!(matches!(service::dispatch(&t.store, west, ups(), T0).await, Err(FulfillmentError::Refused(_))));

    // Cancelled before any fact: nothing is ever created, whatever comes next.
    let late = OrderId::new();
    service::on_order_cancelled(&t.store, late, T0).await.unwrap();
    service::on_order_confirmed(&t.store, late, Some(&shipping()), T0).await.unwrap();
    service::on_stock_committed(&t.store, late, &lines(), T0).await.unwrap();
    assert_eq!(t.events("ShipmentCreated").await.len(), 2, "only the first order's");
}

#[tokio::test]
async fn a_dispatch_for_an_order_known_cancelled_is_refused_even_before_its_shipment_is() {
    let t = table().await;
    let order = OrderId::new();
    service::on_order_confirmed(&t.store, order, Some(&shipping()), T0).await.unwrap();
    service::on_stock_committed(&t.store, order, &lines(), T0).await.unwrap();
    let shipment = t.listed(Status::Pending, None).await[0].shipment_id;
    // The fact recorded, its shipments not yet cancelled (the consumer is between its writes).
    t.store.record_cancelled(order).await.unwrap();

    let refused = service::dispatch(&t.store, shipment, ups(), T0).await;

    assert!(matches!(refused, Err(FulfillmentError::OrderClosed(_))), "{refused:?}");
    assert!(t.events("ShipmentDispatched").await.is_empty());
}

#[tokio::test]
async fn a_listing_pages_with_signed_cursors_scoped_to_its_filter() {
    let t = table().await;
    for _ in 0..3 {
        let order = OrderId::new();
        service::on_order_confirmed(&t.store, order, Some(&shipping()), T0).await.unwrap();
        service::on_stock_committed(&t.store, order, &lines(), T0).await.unwrap();
    }
    let east = Filter { status: Status::Pending, warehouse: Some(Warehouse::parse("east").unwrap()) };

    let first = t.store.list(&east, 2, None).await.unwrap();
    let cursor = first.next_cursor.clone().unwrap();
    let second = t.store.list(&east, 2, Some(&cursor)).await.unwrap();
    let elsewhere = Filter { status: Status::Pending, warehouse: None };
    let replayed = t.store.list(&elsewhere, 2, Some(&cursor)).await;

    assert_eq!(first.items.len(), 2);
    assert_eq!(second.items.len(), 1);
    assert!(second.items.iter().all(|s| s.warehouse.as_str() == "east"));
    assert!(matches!(replayed, Err(service::PageError::Cursor(_))));
}

/// Every page of `filter`'s listing, `limit` at a time: the shipment ids and each page's size.
async fn every_page(t: &Table, filter: &Filter, limit: usize) -> (Vec<String>, Vec<usize>) {
    let (mut listed, mut sizes, mut cursor) = (Vec::new(), Vec::new(), None);
    loop {
        let page = t.store.list(filter, limit, cursor.as_deref()).await.unwrap();
        sizes.push(page.items.len());
        listed.extend(page.items.iter().map(|s| format!("{}#{}", s.warehouse.as_str(), s.shipment_id)));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return (listed, sizes),
        }
    }
}

#[tokio::test]
async fn a_listing_over_every_shard_returns_each_shipment_once_in_index_order_page_after_page() {
    let t = table().await;
    for _ in 0..12 {
        let order = OrderId::new();
        service::on_order_confirmed(&t.store, order, Some(&shipping()), T0).await.unwrap();
        service::on_stock_committed(&t.store, order, &lines(), T0).await.unwrap();
    }
    let scanned = t.table.client.scan().table_name(&t.table.name).send().await.unwrap().items.unwrap_or_default();
    let shipments: Vec<_> = scanned.iter().filter(|item| item["sk"].as_s().unwrap() == "SHIP").collect();
    let mut partitions: Vec<_> = shipments.iter().map(|item| item["gsi1pk"].as_s().unwrap().clone()).collect();
    partitions.sort_unstable();
    partitions.dedup();
    let mut expected: Vec<String> = shipments.iter().map(|item| item["gsi1sk"].as_s().unwrap().clone()).collect();
    expected.sort_unstable();
    let all = Filter { status: Status::Pending, warehouse: None };
    let west = Filter { status: Status::Pending, warehouse: Some(Warehouse::parse("west").unwrap()) };

    let (listed, sizes) = every_page(&t, &all, 5).await;
    let (west_listed, west_sizes) = every_page(&t, &west, 4).await;

    assert!(partitions.len() > 4 && partitions.iter().all(|p| p.starts_with("STATUS#pending#")), "{partitions:?}");
    assert_eq!(listed, expected, "every shipment once, east then west, oldest first in each");
    assert_eq!(sizes, [5, 5, 5, 5, 4], "full pages, then the rest");
    let west_expected: Vec<_> = expected.iter().filter(|k| k.starts_with("west#")).cloned().collect();
    assert_eq!(west_listed, west_expected);
    assert_eq!(west_sizes, [4, 4, 4]);
    // One at a time: each shard's query after the cursor starts with the cursor's own item.
    let (one_by_one, _) = every_page(&t, &west, 1).await;
    assert_eq!(one_by_one, west_expected, "pages of one list every shipment once, in order");
}

#[tokio::test]
async fn of_two_invocations_that_both_saw_both_facts_only_one_creates_shipments() {
    let t = table().await;
    let order = OrderId::new();
    // Each invocation plans on its own, so their shipment ids differ.
    let ours = fulfillment::model::plan(order, &shipping(), &lines(), T0).unwrap();
    let theirs = fulfillment::model::plan(order, &shipping(), &lines(), T0).unwrap();

    let first = t.store.create(order, &ours, &[]).await.unwrap();
    let second = t.store.create(order, &theirs, &[]).await.unwrap();

    assert_eq!((first, second), (service::Write::Done, service::Write::Lost));
    let mut listed: Vec<_> = t.listed(Status::Pending, None).await.into_iter().map(|s| s.shipment_id).collect();
    let mut planned: Vec<_> = ours.iter().map(|s| s.shipment_id).collect();
    listed.sort();
    planned.sort();
    assert_eq!(listed, planned, "only the first plan's shipments exist");
}

/// An order confirmed and committed: its two shipments (east, west), pending.
async fn shipped_from_two_warehouses(t: &Table, order: OrderId) -> Vec<kernel::ShipmentId> {
    service::on_order_confirmed(&t.store, order, Some(&shipping()), T0).await.unwrap();
    service::on_stock_committed(&t.store, order, &lines(), T0).await.unwrap();
    t.listed(Status::Pending, None).await.into_iter().filter(|s| s.order_id == order).map(|s| s.shipment_id).collect()
}

#[tokio::test]
async fn a_hold_after_a_dispatch_answers_already_dispatched_and_holds_nothing() {
    let t = table().await;
    let order = OrderId::new();
    let shipments = shipped_from_two_warehouses(&t, order).await;
    service::dispatch(&t.store, shipments[0], ups(), T0).await.unwrap();

    let held = service::hold_for_cancel(&t.store, order, T0 + Duration::seconds(1)).await.unwrap();

    assert_eq!(held, HoldForCancelReply::AlreadyDispatched);
    let second = service::dispatch(&t.store, shipments[1], ups(), T0 + Duration::seconds(2)).await;
    assert!(second.is_ok(), "no hold was written: the rest of the order still ships: {second:?}");
}

#[tokio::test]
async fn a_dispatch_during_a_live_hold_is_refused_and_nothing_leaves() {
    let t = table().await;
    let order = OrderId::new();
    let shipments = shipped_from_two_warehouses(&t, order).await;
    assert_eq!(service::hold_for_cancel(&t.store, order, T0).await.unwrap(), HoldForCancelReply::Held);

    let refused = service::dispatch(&t.store, shipments[0], ups(), T0 + Duration::seconds(59)).await;

    assert!(matches!(refused, Err(FulfillmentError::OrderClosed(_))), "{refused:?}");
    assert!(t.events("ShipmentDispatched").await.is_empty());
    assert_eq!(t.store.shipment(shipments[0]).await.unwrap().unwrap().status, Status::Pending);
    let again = service::hold_for_cancel(&t.store, order, T0 + Duration::seconds(60)).await.unwrap();
    assert_eq!(again, HoldForCancelReply::Held, "a refused dispatch records nothing");
}

#[tokio::test]
async fn a_dispatch_after_the_hold_lapsed_goes_through_and_a_later_hold_is_refused() {
    let t = table().await;
    let order = OrderId::new();
    let shipments = shipped_from_two_warehouses(&t, order).await;
    service::hold_for_cancel(&t.store, order, T0).await.unwrap();

    // The cancel that asked for the hold never landed: the order ships after it lapses.
    let dispatched = service::dispatch(&t.store, shipments[0], ups(), T0 + Duration::seconds(61)).await;

    assert_eq!(dispatched.unwrap().status, Status::Dispatched);
    assert_eq!(t.events("ShipmentDispatched").await.len(), 1);
    let late = service::hold_for_cancel(&t.store, order, T0 + Duration::seconds(62)).await.unwrap();
    assert_eq!(late, HoldForCancelReply::AlreadyDispatched);
}

#[tokio::test]
async fn a_hold_before_fulfillment_heard_of_the_order_still_holds_its_shipments_once_created() {
    let t = table().await;
    let order = OrderId::new();
    assert_eq!(service::hold_for_cancel(&t.store, order, T0).await.unwrap(), HoldForCancelReply::Held);

    let shipments = shipped_from_two_warehouses(&t, order).await;
    let refused = service::dispatch(&t.store, shipments[0], ups(), T0 + Duration::seconds(1)).await;

    assert_eq!(shipments.len(), 2, "the facts recorded after the hold still create the shipments");
    assert!(matches!(refused, Err(FulfillmentError::OrderClosed(_))), "{refused:?}");
}

#[tokio::test]
async fn a_store_built_without_cursor_keys_refuses_to_list() {
    let t = table().await;
    let consumer = DynamoFulfillment::new(t.table.client.clone(), &t.table.name);

    let listed = consumer.list(&Filter { status: Status::Pending, warehouse: None }, 10, None).await;

    assert!(matches!(listed, Err(fulfillment::service::PageError::Keys(KeysUnavailable::NotListing))), "{listed:?}");
}

#[tokio::test]
async fn while_the_cursor_secret_cannot_be_read_shipments_are_made_read_and_dispatched_and_only_listings_fail() {
    let t = table().await;
    let unreadable = || async {
        Err(KeyError::TooShort {
            arn: "arn:aws:secretsmanager:us-east-1:1:secret:Cursor".into(),
            stage: Stage::Current,
        })
    };
    let api = DynamoFulfillment::new(t.table.client.clone(), &t.table.name).listing(OnFirstUse::new(unreadable));
    let order = OrderId::new();
    service::on_order_confirmed(&api, order, Some(&shipping()), T0).await.unwrap();
    service::on_stock_committed(&api, order, &lines(), T0).await.unwrap();
    let created = t.events("ShipmentCreated").await;
    let id: kernel::ShipmentId = serde_json::from_value(created[0]["shipment_id"].clone()).unwrap();

    let read = service::shipment(&api, id).await;
    let dispatched = service::dispatch(&api, id, ups(), T0).await;
    let listed = api.list(&Filter { status: Status::Pending, warehouse: None }, 10, None).await;

    assert_eq!(read.map(|s| s.shipment_id).ok(), Some(id));
    assert_eq!(dispatched.map(|s| s.status).ok(), Some(Status::Dispatched));
    assert!(matches!(listed, Err(fulfillment::service::PageError::Keys(KeysUnavailable::NotLoaded(_)))), "{listed:?}");
}
