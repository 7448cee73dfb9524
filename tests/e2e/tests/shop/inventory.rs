//! Inventory through its API and its place in the saga: order events in, stock events out.

use reqwest::Method;
use serde_json::{Value, json};

use domain_events::Event;
use domain_events::checkout::{OrderCancelled, OrderConfirmed, OrderLine, OrderPlaced};
use kernel::{Currency, Money, OrderId, Sku};

use e2e::support::{Tap, call, handled_by, publish};

fn sku() -> String {
    testkit::unique("inv").to_uppercase()
}

async fn set_stock(sku: &str, warehouse: &str, on_hand: u32) -> Value {
    let reply = call(Method::PUT, &format!("/admin/inventory/{sku}"))
        .admin()
        .json(&json!({ "warehouse": warehouse, "on_hand": on_hand }))
        .send()
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

async fn available(sku: &str) -> u64 {
    let reply = call(Method::GET, &format!("/availability?skus={sku}")).send().await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["items"][0]["available"].as_u64().unwrap()
}

async fn stock(sku: &str) -> Value {
    call(Method::GET, &format!("/admin/inventory/{sku}")).admin().send().await.body
}

fn order(lines: &[(&str, u32)]) -> OrderPlaced {
    let price = Money::new(1000, Currency::USD).unwrap();
    OrderPlaced {
        order_id: OrderId::new(),
        customer: "alice".into(),
        email: "alice@example.com".into(),
        lines: lines
            .iter()
            .map(|(sku, quantity)| OrderLine { sku: Sku::parse(sku).unwrap(), quantity: *quantity, unit_price: price })
            .collect(),
        total: price,
        payment_method: "pm_card_visa".into(),
        cart: None,
    }
}

/// Waits for the inventory event about `order_id` of `detail_type`.
async fn inventory_event(tap: &Tap, order_id: OrderId, detail_type: &str) -> Value {
    let mine =
        |e: &Value| e["detail-type"] == detail_type && e["detail"]["data"]["order_id"] == json!(order_id.to_string());
    let events = tap.collect_until(|seen| seen.iter().any(mine)).await;
    events.into_iter().find(mine).unwrap_or_else(|| panic!("no {detail_type} for {order_id}"))
}

#[tokio::test]
async fn admins_set_stock_per_warehouse_and_shoppers_see_the_total() {
    let sku = sku();
    set_stock(&sku, "east", 3).await;
    let body = set_stock(&sku, "west", 4).await;

    assert_eq!(body["available"], 7);
    assert_eq!(body["warehouses"].as_array().unwrap().len(), 2);
    assert_eq!(available(&sku).await, 7);
    let unknown = sku.clone() + "-NONE";
    let reply = call(Method::GET, &format!("/availability?skus={sku},{unknown}")).send().await;
    assert_eq!(reply.body["items"], json!([{ "sku": sku, "available": 7 }, { "sku": unknown, "available": 0 }]));
}

#[tokio::test]
async fn bad_stock_requests_get_problem_details() {
    let sku = sku();
    let put = |body: Value| {
        let sku = sku.clone();
        async move { call(Method::PUT, &format!("/admin/inventory/{sku}")).admin().json(&body).send().await }
    };
    put(json!({ "warehouse": "East Coast", "on_hand": 1 })).await.expect_problem(422);
    put(json!({ "warehouse": "east", "on_hand": -1 })).await.expect_problem(422);
    put(json!({ "warehouse": "east", "on_hand": 2_000_000 })).await.expect_problem(422);
    put(json!({ "warehouse": "east" })).await.expect_problem(422);
    call(Method::PUT, "/admin/inventory/not-a-sku")
        .admin()
        .json(&json!({"warehouse": "east", "on_hand": 1}))
        .send()
        .await
        .expect_problem(400);
    call(Method::GET, "/availability").send().await.expect_problem(400);
    call(Method::GET, "/availability?skus=lower").send().await.expect_problem(400);
    let customer = testkit::shop().customer_token("alice");
    call(Method::GET, &format!("/admin/inventory/{sku}")).token(&customer).send().await.expect_problem(403);
}

#[tokio::test]
async fn a_count_based_on_an_on_hand_that_moved_since_is_refused_and_changes_nothing() {
    let sku = sku();
    set_stock(&sku, "east", 5).await;
    let put = |body: Value| {
        let sku = sku.clone();
        async move { call(Method::PUT, &format!("/admin/inventory/{sku}")).admin().json(&body).send().await }
    };

    let stale = put(json!({ "warehouse": "east", "on_hand": 12, "expected_on_hand": 3 })).await;
    let current = put(json!({ "warehouse": "east", "on_hand": 12, "expected_on_hand": 5 })).await;

    let problem = stale.expect_problem(412);
    assert!(problem["detail"].as_str().unwrap().contains("on_hand is 5 now"), "{problem}");
    assert_eq!(stale.pointers(), vec!["/expected_on_hand"]);
    assert_eq!(current.status, 200, "{}", current.body);
    assert_eq!(current.body["on_hand"], 12);
}

#[tokio::test]
async fn a_placed_order_reserves_across_warehouses_and_its_confirmation_commits() {
    let tap = Tap::new(json!({ "source": ["ferrocart.inventory"] })).await;
    let sku = sku();
    set_stock(&sku, "west", 5).await;
    set_stock(&sku, "east", 2).await;
    let order = order(&[(&sku, 4)]);

    publish(Event::OrderPlaced(order.clone()), &order.order_id.to_string()).await;
    let reserved = inventory_event(&tap, order.order_id, "StockReserved").await;

    assert_eq!(
        reserved["detail"]["data"]["lines"][0]["allocations"],
        json!([{ "warehouse": "east", "quantity": 2 }, { "warehouse": "west", "quantity": 2 }]),
        "warehouses in name order"
    );
    assert_eq!(available(&sku).await, 3);
    let held = stock(&sku).await;
    assert_eq!((held["on_hand"].as_u64(), held["reserved"].as_u64()), (Some(7), Some(4)));

    publish(
        Event::OrderConfirmed(OrderConfirmed { order_id: order.order_id, shipping: None }),
        &order.order_id.to_string(),
    )
    .await;
    let committed = inventory_event(&tap, order.order_id, "StockCommitted").await;
    assert_eq!(committed["detail"]["data"]["lines"], reserved["detail"]["data"]["lines"], "what ships from where");

    let sold = stock(&sku).await;
    assert_eq!(
        (sold["on_hand"].as_u64(), sold["reserved"].as_u64(), sold["available"].as_u64()),
        (Some(3), Some(0), Some(3))
    );
}

#[tokio::test]
async fn duplicate_order_events_reserve_once_and_a_cancellation_releases_once() {
    let tap = Tap::new(json!({ "source": ["ferrocart.inventory"] })).await;
    let sku = sku();
    set_stock(&sku, "east", 5).await;
    let order = order(&[(&sku, 2)]);
    let events = aws_sdk_eventbridge::Client::new(&testkit::shop().aws().await);

    let placed = publish(Event::OrderPlaced(order.clone()), &order.order_id.to_string()).await;
    e2e::support::publish_envelope(&events, &placed).await; // the same event again
    // The same order re-sent under a new event id: the inbox cannot tell, the reservation can.
    let resent = publish(Event::OrderPlaced(order.clone()), &order.order_id.to_string()).await;
    inventory_event(&tap, order.order_id, "StockReserved").await;
    handled_by("InventoryTable", &[&placed, &resent]).await;

    assert_eq!(available(&sku).await, 3, "reserved once");

    let cancelled =
        Event::OrderCancelled(OrderCancelled { order_id: order.order_id, reason: "customer_cancelled".into() });
    let first = publish(cancelled.clone(), &order.order_id.to_string()).await;
    let released = inventory_event(&tap, order.order_id, "StockReleased").await;
    assert_eq!(released["detail"]["data"]["reason"], "cancelled");
    let second = publish(cancelled, &order.order_id.to_string()).await;
    handled_by("InventoryTable", &[&first, &second]).await;

    assert_eq!(available(&sku).await, 5, "released once");
}

#[tokio::test]
async fn an_order_beyond_the_stock_is_rejected_naming_the_short_sku_and_reserves_nothing() {
    let tap = Tap::new(json!({ "source": ["ferrocart.inventory"] })).await;
    let (short, plenty) = (sku(), sku());
    set_stock(&short, "east", 1).await;
    set_stock(&plenty, "east", 10).await;
    let order = order(&[(&short, 2), (&plenty, 1)]);

    publish(Event::OrderPlaced(order.clone()), &order.order_id.to_string()).await;
    let rejected = inventory_event(&tap, order.order_id, "StockRejected").await;

    assert_eq!(rejected["detail"]["data"]["shortages"], json!([{ "sku": short, "requested": 2, "available": 1 }]));
    assert_eq!(available(&short).await, 1);
    assert_eq!(available(&plenty).await, 10, "all or nothing");
}

#[tokio::test]
async fn concurrent_orders_for_the_last_units_never_oversell() {
    let tap = Tap::new(json!({ "source": ["ferrocart.inventory"] })).await;
    let sku = sku();
    set_stock(&sku, "east", 3).await;
    set_stock(&sku, "west", 2).await;
    let orders: Vec<OrderPlaced> = (0..16).map(|_| order(&[(&sku, 1)])).collect();
    let ids: Vec<String> = orders.iter().map(|o| o.order_id.to_string()).collect();

    let publishing: Vec<_> = orders
        .into_iter()
        .map(|order| {
            tokio::spawn(async move { publish(Event::OrderPlaced(order.clone()), &order.order_id.to_string()).await })
        })
        .collect();
    for handle in publishing {
        handle.await.unwrap();
    }
    let decided = |e: &Value| ids.contains(&e["detail"]["data"]["order_id"].as_str().unwrap_or("").to_owned());
    let events = tap.collect_until(|seen| seen.iter().filter(|e| decided(e)).count() >= ids.len()).await;
    let count = |kind: &str| events.iter().filter(|e| decided(e) && e["detail-type"] == kind).count();

    assert_eq!(count("StockReserved"), 5, "exactly the stock on hand");
    assert_eq!(count("StockRejected"), 11);
    let final_stock = stock(&sku).await;
    assert_eq!((final_stock["available"].as_u64(), final_stock["reserved"].as_u64()), (Some(0), Some(5)));
}
