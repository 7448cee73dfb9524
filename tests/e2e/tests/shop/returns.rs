//! Returns of delivered units: asked for by the order's owner, received by an admin into a
//! warehouse (inventory puts the units back on hand there), refunded by payment, and shown on
//! the order. Orders are delivered the way staff deliver them: dispatch and deliver through the
//! admin shipments API.

use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use domain_events::Event;
use domain_events::fulfillment::ShipmentDelivered;
use e2e::flows::{Shopper, confirmed_shipment, order_when, shopper_with_cart};
use e2e::support::{Reply, call, eventually, handled_by, publish};
use kernel::{OrderId, ShipmentId};

/// A warehouse of this test only, which has never held the SKU.
fn warehouse(name: &str) -> String {
    testkit::unique(name).to_lowercase().replace('_', "-")
}

/// A delivered order whose total was captured: dispatched and delivered by staff.
async fn delivered(shopper: &Shopper) -> (String, Value) {
    let (id, shipment) = confirmed_shipment(shopper).await;
    let tracking = json!({ "carrier": "ups", "tracking_number": "1ZRETURN" });
    let dispatched = call(Method::POST, &format!("/admin/shipments/{shipment}/dispatch")).admin().json(&tracking);
    let dispatched = dispatched.send().await;
    assert_eq!(dispatched.status, 200, "{}", dispatched.body);
    let handed_over = call(Method::POST, &format!("/admin/shipments/{shipment}/deliver")).admin().send().await;
    assert_eq!(handed_over.status, 200, "{}", handed_over.body);
    let order =
        order_when(&shopper.token, &id, |o| o["status"] == "delivered" && !o["payment"]["captured"].is_null()).await;
    (id, order)
}

async fn ask_return(token: &str, order: &str, lines: Value) -> Reply {
    call(Method::POST, &format!("/orders/{order}/returns"))
        .token(token)
        .header("idempotency-key", &testkit::unique("ret"))
        .json(&json!({ "lines": lines, "reason": "damaged" }))
        .send()
        .await
}

fn admin_return(id: &str, action: &str, body: &Value) -> e2e::support::Call {
    call(Method::POST, &format!("/admin/returns/{id}/{action}")).admin().json(body)
}

fn amount(money: &Value) -> i64 {
    money["amount"].as_i64().unwrap_or_else(|| panic!("not money: {money}"))
}

/// What returning `returned` of the order's one line of `quantity` pays back, by the rule in
/// docs/api.md: captured less shipping and shipping's share of the tax, then the line's share.
fn documented_refund(order: &Value, returned: i64, quantity: i64) -> i64 {
    let totals = &order["totals"];
    let merchandise = amount(&totals["subtotal"]) - amount(&totals["discount"]);
    let (shipping, tax) = (amount(&totals["shipping"]), amount(&totals["tax"]));
    let shipping_tax = (tax * shipping + (merchandise + shipping) / 2) / (merchandise + shipping);
    let returnable = amount(&order["payment"]["captured"]) - shipping - shipping_tax;
    returnable * returned / quantity
}

/// `on_hand` of the SKU in the warehouse, by the admin stock API.
async fn on_hand(sku: &str, warehouse: &str) -> Option<u64> {
    let stock = call(Method::GET, &format!("/admin/inventory/{sku}")).admin().send().await.body;
    let warehouses = stock["warehouses"].as_array()?;
    warehouses.iter().find(|w| w["warehouse"] == warehouse).and_then(|w| w["on_hand"].as_u64())
}

#[tokio::test]
async fn a_partial_return_is_received_into_its_warehouse_restocked_there_and_refunded_with_its_share() {
    let shopper = shopper_with_cart(5, 3).await;
    let (id, order) = delivered(&shopper).await;
    let returns_to = warehouse("returns");

    let asked = ask_return(&shopper.token, &id, json!([{ "sku": shopper.sku, "quantity": 1 }])).await;
    assert_eq!(asked.status, 201, "{}", asked.body);
    let return_id = asked.body["id"].as_str().unwrap().to_owned();
    assert!(return_id.starts_with("ret_"), "{return_id}");
    assert_eq!((asked.body["status"].as_str(), asked.body["order_id"].as_str()), (Some("requested"), Some(&*id)));
    let listed = call(Method::GET, "/admin/returns?status=requested&limit=100").admin().send().await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let mine = listed.body["items"].as_array().unwrap().iter().find(|r| r["id"] == return_id).cloned();
    assert_eq!(mine.map(|r| r["lines"][0]["quantity"].clone()), Some(json!(1)), "{}", listed.body);

    let received = admin_return(&return_id, "receive", &json!({ "warehouse": returns_to })).send().await;
    let again = admin_return(&return_id, "receive", &json!({ "warehouse": returns_to })).send().await;
    let elsewhere = admin_return(&return_id, "receive", &json!({ "warehouse": "main" })).send().await;

    assert_eq!(received.status, 200, "{}", received.body);
    assert_eq!(received.body["status"], "received");
    let refund = amount(&received.body["refund"]);
    assert_eq!(refund, documented_refund(&order, 1, 3), "its share of the tax, no shipping: {order:#}");
    assert!(refund > 0 && refund < amount(&order["totals"]["total"]) / 3, "{refund}");
    assert_eq!((again.status.as_u16(), &again.body), (200, &received.body), "the same answer");
    elsewhere.expect_problem(409);
    let restocked = eventually(20, || async { on_hand(&shopper.sku, &returns_to).await.filter(|n| *n > 0) }).await;
    assert_eq!(restocked, Some(1), "one unit back on hand in {returns_to}, once");
    let shown = call(Method::GET, &format!("/orders/{id}")).token(&shopper.token).send().await.body;
    assert_eq!(shown["return_status"], "partially_returned");
    assert_eq!(shown["returns"][0]["id"], return_id.as_str());

    // PAYMENT-DEPENDENT: from here on the test needs payment's consumer of ReturnReceived
    // (functions/payment, built in parallel): it refunds the received return and announces
    // RefundIssued{return_id}; checkout then marks the return refunded and shows the refund.
    let refunded = eventually(30, || async {
        let ret = call(Method::GET, &format!("/admin/returns/{return_id}")).admin().send().await.body;
        (ret["status"] == "refunded").then_some(ret)
    })
    .await;
    let refunded = refunded
        .expect("payment never refunded the received return (its ReturnReceived consumer, RefundIssued{return_id})");
    assert_eq!(amount(&refunded["refund"]), refund);
    let order = order_when(&shopper.token, &id, |o| !o["payment"]["refunded"].is_null()).await;
    assert_eq!(amount(&order["payment"]["refunded"]), refund);
    let refunds = order["payment"]["refunds"].as_array().unwrap();
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    assert_eq!((refunds[0]["return_id"].as_str(), amount(&refunds[0]["amount"])), (Some(&*return_id), refund));
    assert_eq!(order["returns"][0]["status"], "refunded");
}

#[tokio::test]
async fn returning_more_than_was_delivered_counting_earlier_returns_is_refused_naming_the_line() {
    let shopper = shopper_with_cart(5, 2).await;
    let (id, _) = delivered(&shopper).await;
    let first = ask_return(&shopper.token, &id, json!([{ "sku": shopper.sku, "quantity": 1 }])).await;
    assert_eq!(first.status, 201, "{}", first.body);

    let over = ask_return(&shopper.token, &id, json!([{ "sku": shopper.sku, "quantity": 2 }])).await;

    let problem = over.expect_problem(422);
    assert_eq!(over.pointers(), vec!["/lines/0/quantity"], "{problem}");
    let listed = call(Method::GET, &format!("/orders/{id}")).token(&shopper.token).send().await.body;
    assert_eq!(listed["returns"].as_array().map(Vec::len), Some(1), "nothing recorded");
}

#[tokio::test]
async fn a_return_request_retried_with_its_idempotency_key_records_one_return() {
    let shopper = shopper_with_cart(5, 2).await;
    let (id, _) = delivered(&shopper).await;
    let body = json!({ "lines": [{ "sku": shopper.sku, "quantity": 1 }], "reason": "damaged" });
    let ask = |body: Value| {
        call(Method::POST, &format!("/orders/{id}/returns"))
            .token(&shopper.token)
            .header("idempotency-key", "ret-1")
            .json(&body)
            .send()
    };

    let (first, retry) = tokio::join!(ask(body.clone()), ask(body.clone()));
    let other = ask(json!({ "lines": [{ "sku": shopper.sku, "quantity": 2 }], "reason": "damaged" })).await;

    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(retry.status, 201, "{}", retry.body);
    assert_eq!(first.body["id"], retry.body["id"], "the retry answers the same return");
    other.expect_problem(422);
    assert_eq!(other.pointers(), vec!["header:Idempotency-Key"]);
    // Without a key a retry could not be told from a second return: refused, nothing recorded.
    let keyless = call(Method::POST, &format!("/orders/{id}/returns")).token(&shopper.token).json(&body).send().await;
    keyless.expect_problem(400);
    assert_eq!(keyless.pointers(), vec!["header:Idempotency-Key"]);
    let order = call(Method::GET, &format!("/orders/{id}")).token(&shopper.token).send().await.body;
    assert_eq!(order["returns"].as_array().map(Vec::len), Some(1), "one return recorded: {order}");
}

#[tokio::test]
async fn another_customers_order_cannot_be_returned_and_is_not_found() {
    let shopper = shopper_with_cart(5, 1).await;
    let (id, _) = delivered(&shopper).await;
    let mallory = testkit::shop().customer_token(&testkit::unique("mallory"));

    let refused = ask_return(&mallory, &id, json!([{ "sku": shopper.sku, "quantity": 1 }])).await;

    refused.expect_problem(404);
    let order = call(Method::GET, &format!("/orders/{id}")).token(&shopper.token).send().await.body;
    assert_eq!(order["returns"], json!([]));
}

#[tokio::test]
async fn units_delivered_longer_ago_than_the_window_cannot_be_returned() {
    let shopper = shopper_with_cart(5, 1).await;
    let (id, shipment) = confirmed_shipment(&shopper).await;
    // Delivered 31 days ago (the window is 30): fulfillment's event says when, checkout keeps it.
    let long_ago = (OffsetDateTime::now_utc() - time::Duration::days(31)).format(&Rfc3339).unwrap();
    let (order_id, shipment_id): (OrderId, ShipmentId) = (id.parse().unwrap(), shipment.parse().unwrap());
    let delivery = ShipmentDelivered { order_id, shipment_id, shipment_count: 1, delivered_at: long_ago.clone() };
    let delivery = publish(Event::ShipmentDelivered(delivery), &id).await;
    handled_by("CheckoutTable", &[&delivery]).await;

    let late = ask_return(&shopper.token, &id, json!([{ "sku": shopper.sku, "quantity": 1 }])).await;

    let problem = late.expect_problem(422);
    assert_eq!(late.pointers(), vec!["/lines/0"], "{problem}");
    assert!(problem["errors"][0]["detail"].as_str().unwrap().contains("window"), "{problem}");
}

#[tokio::test]
async fn a_rejected_return_frees_its_units_and_admins_list_returns_by_status() {
    let shopper = shopper_with_cart(5, 1).await;
    let (id, _) = delivered(&shopper).await;
    let first = ask_return(&shopper.token, &id, json!([{ "sku": shopper.sku, "quantity": 1 }])).await;
    let first_id = first.body["id"].as_str().unwrap().to_owned();

    let rejected = admin_return(&first_id, "reject", &json!({ "note": "the parcel never arrived" })).send().await;
    let receive_rejected = admin_return(&first_id, "receive", &json!({ "warehouse": "main" })).send().await;
    let second = ask_return(&shopper.token, &id, json!([{ "sku": shopper.sku, "quantity": 1 }])).await;
    let listed = call(Method::GET, "/admin/returns?status=rejected&limit=100").admin().send().await;
    let bad_status = call(Method::GET, "/admin/returns?status=lost").admin().send().await;
    let as_customer = call(Method::GET, "/admin/returns?status=requested").token(&shopper.token).send().await;

    assert_eq!((rejected.status.as_u16(), rejected.body["status"].as_str()), (200, Some("rejected")));
    assert_eq!(rejected.body["note"], "the parcel never arrived");
    receive_rejected.expect_problem(409);
    assert_eq!(second.status, 201, "the rejected unit may be returned again: {}", second.body);
    assert!(listed.body["items"].as_array().unwrap().iter().any(|r| r["id"] == first_id.as_str()));
    assert_eq!(bad_status.expect_problem(400)["errors"][0]["pointer"], "query:status");
    as_customer.expect_problem(403);
}
