//! Fulfillment through its admin API and its place in the saga: order and stock events in,
//! shipments out, dispatched and delivered by staff.

use reqwest::Method;
use serde_json::{Value, json};

use domain_events::Event;
use domain_events::checkout::{OrderCancelled, OrderConfirmed, Shipping, ShippingAddress};
use domain_events::inventory::{Allocation, ReservedLine, StockCommitted};
use kernel::{OrderId, Sku};

use e2e::support::{Tap, call, handled_by, publish};

fn shipping() -> Shipping {
    Shipping {
        method: "standard".into(),
        address: ShippingAddress {
            name: "Alice Liddell".into(),
            line1: "1 Main St".into(),
            line2: None,
            city: "Springfield".into(),
            region: Some("IL".into()),
            postal_code: "62701".into(),
            country: "US".into(),
        },
    }
}

/// A warehouse of this test only, so listings filtered by it see nothing else.
fn warehouse(name: &str) -> String {
    testkit::unique(name).to_lowercase().replace('_', "-")
}

/// `OrderConfirmed` and `StockCommitted` for an order whose one SKU comes from two warehouses.
async fn confirmed_and_committed(east: &str, west: &str) -> OrderId {
    let order_id = OrderId::new();
    let sku = Sku::parse(&testkit::unique("ful").to_uppercase()).unwrap();
    let allocation = |warehouse: &str, quantity| Allocation { warehouse: warehouse.into(), quantity };
    let lines = vec![ReservedLine { sku, quantity: 3, allocations: vec![allocation(east, 2), allocation(west, 1)] }];
    // Stock first: the facts may come in either order.
    let committed = publish(Event::StockCommitted(StockCommitted { order_id, lines }), &order_id.to_string()).await;
    let confirmed =
        publish(Event::OrderConfirmed(OrderConfirmed { order_id, shipping: Some(shipping()) }), &order_id.to_string())
            .await;
    handled_by("FulfillmentTable", &[&committed, &confirmed]).await;
    order_id
}

async fn pending_in(warehouse: &str) -> Vec<Value> {
    let reply =
        call(Method::GET, &format!("/admin/shipments?status=pending&warehouse={warehouse}")).admin().send().await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["items"].as_array().unwrap().clone()
}

async fn shipment(id: &str) -> Value {
    let reply = call(Method::GET, &format!("/admin/shipments/{id}")).admin().send().await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

fn dispatch(id: &str, body: &Value) -> e2e::support::Call {
    call(Method::POST, &format!("/admin/shipments/{id}/dispatch")).admin().json(body)
}

fn ups() -> Value {
    json!({ "carrier": "ups", "tracking_number": "1Z999AA10123456784", "tracking_url": "https://ups.example.com/track/1Z999" })
}

#[tokio::test]
async fn an_order_from_two_warehouses_ships_twice_and_each_shipment_moves_once() {
    let tap = Tap::new(json!({ "source": ["ferrocart.fulfillment"] })).await;
    let (east, west) = (warehouse("east"), warehouse("west"));

    let order_id = confirmed_and_committed(&east, &west).await;
    let (east_list, west_list) = (pending_in(&east).await, pending_in(&west).await);

    assert_eq!((east_list.len(), west_list.len()), (1, 1), "one shipment per warehouse");
    let (first, second) = (&east_list[0], &west_list[0]);
    assert_eq!(first["order_id"], json!(order_id.to_string()));
    assert_eq!((first["shipment_count"].as_u64(), first["lines"][0]["quantity"].as_u64()), (Some(2), Some(2)));
    assert_eq!(second["lines"][0]["quantity"], 1);
    assert_eq!(first["shipping"]["address"]["city"], "Springfield");
    let id = first["id"].as_str().unwrap().to_owned();

    let early = call(Method::POST, &format!("/admin/shipments/{id}/deliver")).admin().send().await;
    let dispatched = dispatch(&id, &ups()).send().await;
    let mine = |e: &Value| e["detail-type"] == "ShipmentDispatched" && e["detail"]["data"]["shipment_id"] == json!(id);
    let events = tap.collect_until(|seen| seen.iter().any(mine)).await;
    let again = dispatch(&id, &ups()).send().await;
    let delivered = call(Method::POST, &format!("/admin/shipments/{id}/deliver")).admin().send().await;

    early.expect_problem(409);
    assert_eq!(dispatched.status, 200, "{}", dispatched.body);
    assert_eq!(
        (dispatched.body["status"].as_str(), dispatched.body["carrier"].as_str()),
        (Some("dispatched"), Some("ups"))
    );
    let event = events.iter().find(|e| mine(e)).expect("ShipmentDispatched on the bus");
    assert_eq!(event["detail"]["data"]["tracking_number"], "1Z999AA10123456784");
    assert_eq!(event["detail"]["data"]["shipment_count"], 2);
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body, dispatched.body, "a repeat answers the same shipment");
    assert_eq!(delivered.status, 200, "{}", delivered.body);
    assert_eq!(delivered.body["status"], "delivered");
    // The delivery's event follows the dispatch's; by then a second dispatch event would be there too.
    let delivered_event =
        |e: &Value| e["detail-type"] == "ShipmentDelivered" && e["detail"]["data"]["shipment_id"] == json!(id);
    let later = tap.collect_until(|seen| seen.iter().any(delivered_event)).await;
    assert!(later.iter().any(delivered_event), "ShipmentDelivered on the bus");
    assert!(!later.iter().any(mine), "no second ShipmentDispatched");
    assert_eq!(shipment(second["id"].as_str().unwrap()).await["status"], "pending");
}

#[tokio::test]
async fn a_cancelled_order_cancels_its_pending_shipments_but_not_one_that_left() {
    let (east, west) = (warehouse("east"), warehouse("west"));
    let order_id = confirmed_and_committed(&east, &west).await;
    // This order's cancellations only: other tests cancel shipments on the same bus.
    let tap = Tap::new(json!({ "source": ["ferrocart.fulfillment"], "detail-type": ["ShipmentCancelled"],
        "detail": { "data": { "order_id": [order_id.to_string()] } } }))
    .await;
    let gone = pending_in(&east).await[0]["id"].as_str().unwrap().to_owned();
    let waiting = pending_in(&west).await[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(dispatch(&gone, &ups()).send().await.status, 200);

    let cancelled = publish(
        Event::OrderCancelled(OrderCancelled { order_id, reason: "customer_cancelled".into() }),
        &order_id.to_string(),
    )
    .await;
    handled_by("FulfillmentTable", &[&cancelled]).await;

    let waiting_now = shipment(&waiting).await;
    let gone_now = shipment(&gone).await;
    assert_eq!(waiting_now["status"], "cancelled");
    assert_eq!(
        (gone_now["status"].as_str(), gone_now["flag"].as_str()),
        (Some("dispatched"), Some("cancelled_after_dispatch"))
    );
    let is_waiting = |e: &Value| e["detail"]["data"]["shipment_id"] == json!(waiting);
    let events = tap.collect_until(|seen| seen.iter().any(is_waiting)).await;
    let ids: Vec<_> = events.iter().map(|e| e["detail"]["data"]["shipment_id"].clone()).collect();
    assert_eq!(ids, vec![json!(waiting)], "only the pending shipment is cancelled");
    dispatch(&waiting, &ups()).send().await.expect_problem(409);
}

#[tokio::test]
async fn bad_requests_get_problem_details_and_write_nothing() {
    let (east, west) = (warehouse("east"), warehouse("west"));
    confirmed_and_committed(&east, &west).await;
    let id = pending_in(&east).await[0]["id"].as_str().unwrap().to_owned();
    let customer = testkit::shop().customer_token("alice");

    let unknown = dispatch(&kernel::ShipmentId::new().to_string(), &ups()).send().await;
    let malformed = call(Method::GET, "/admin/shipments/not-an-id").admin().send().await;
    let forbidden =
        call(Method::POST, &format!("/admin/shipments/{id}/dispatch")).token(&customer).json(&ups()).send().await;
    let listing = call(Method::GET, "/admin/shipments").token(&customer).send().await;
    let no_carrier = dispatch(&id, &json!({ "tracking_number": "1Z" })).send().await;
    let blank = dispatch(&id, &json!({ "carrier": " ", "tracking_number": "" })).send().await;
    let http_url = dispatch(
        &id,
        &json!({ "carrier": "ups", "tracking_number": "1Z", "tracking_url": "http://ups.example.com/1Z" }),
    )
    .send()
    .await;
    let bad_status = call(Method::GET, "/admin/shipments?status=lost").admin().send().await;
    let bad_cursor = call(Method::GET, "/admin/shipments?cursor=forged.cursor").admin().send().await;

    unknown.expect_problem(404);
    malformed.expect_problem(404);
    forbidden.expect_problem(403);
    listing.expect_problem(403);
    no_carrier.expect_problem(422);
    assert_eq!(no_carrier.pointers(), vec!["/carrier"]);
    blank.expect_problem(422);
    assert_eq!(blank.pointers(), vec!["/carrier", "/tracking_number"]);
    http_url.expect_problem(422);
    assert_eq!(http_url.pointers(), vec!["/tracking_url"]);
    bad_status.expect_problem(400);
    bad_cursor.expect_problem(400);
    let untouched = shipment(&id).await;
    assert_eq!(
        (untouched["status"].as_str(), untouched["version"].as_u64()),
        (Some("pending"), Some(1)),
        "nothing written"
    );
}

#[tokio::test]
async fn a_listing_pages_through_a_warehouse_with_its_cursor() {
    let (east, west) = (warehouse("east"), warehouse("west"));
    for _ in 0..3 {
        confirmed_and_committed(&east, &west).await;
    }

    let first = call(Method::GET, &format!("/admin/shipments?warehouse={east}&limit=2")).admin().send().await;
    let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
    let second =
        call(Method::GET, &format!("/admin/shipments?warehouse={east}&limit=2&cursor={cursor}")).admin().send().await;

    assert_eq!(first.body["items"].as_array().unwrap().len(), 2);
    assert_eq!(second.body["items"].as_array().unwrap().len(), 1);
    assert!(second.body["next_cursor"].is_null());
}
