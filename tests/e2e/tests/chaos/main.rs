//! The saga under stress: every SQS message delivered twice, consumers that crash after doing
//! their work, poison messages, a stalled payment service, time travel for timeouts and
//! reservation expiry, an authorization stalled with the card held, an order with nothing to
//! pay, dispatches that must capture the payment once (or report a capture Stripe refuses), and a
//! customer cancel that crosses a dispatch, a received return whose event comes twice and again
//! under a new id (restocked and refunded once), and Stripe's own word on refunds made in its
//! Dashboard, on a refund it fails after success and on disputes, delivered at once, again and
//! under new event ids (recorded and counted once, in the metrics too). A stack of its own, so its
//! chaos, its clock and its pricing never touch `tests/shop`.

// Test helpers may fail loudly: a panic is how a test reports.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::RwLock;

use adapters::dynamo::Item;
use domain_events::Event;
use domain_events::checkout::{OrderConfirmed, OrderLine, OrderPlaced, ReturnReceived};
use domain_events::fulfillment::ShipmentDispatched;
use domain_events::inventory::{Allocation, ReservedLine, StockReserved};
use domain_events::payment::{PaymentAuthorized, RefundPending, RefundReason};
use e2e::flows::{
    add_when_on_sale, available, captured, checkout_body, confirmed_shipment, new_cart, order_when, place,
    product_on_sale, put_item, shopper_with_cart, stock,
};
use e2e::support::{
    Tap, call, deliver_webhook, eventually, handled_by, logged, metric, payment_intents, post_to_stripe, publish,
    publish_envelope, refunds_at_stripe, stored,
};
use kernel::{Currency, Money, OrderId, ShipmentId, Sku};

/// Every message twice; failed messages visible again after 1 s instead of the queue's 180 s.
/// Pricing is the default plus a 100 % coupon and free pickup, so an order can total zero, and a
/// coupon only one order at a time may use.
fn settings() -> testkit::Settings {
    let path = testkit::root().join("functions/checkout/src/pricing.default.json");
    let mut pricing: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    pricing["promotions"].as_array_mut().unwrap().push(json!({
        "code": "ONTHEHOUSE", "description": "Everything free", "kind": "percent_off_category",
        "category": "cart-things", "percent": 100, "max_redemptions": 1000
    }));
    pricing["promotions"].as_array_mut().unwrap().push(json!({
        "code": "ONCEONLY", "description": "5% off, once", "kind": "percent_off_category",
        "category": "cart-things", "percent": 5, "max_redemptions": 1
    }));
    pricing["shipping_methods"].as_array_mut().unwrap().push(json!({
        "id": "pickup", "name": "Pick up in store", "rates": { "USD": 0 }
    }));
    testkit::Settings {
        chaos: localcloud::triggers::Chaos { failed_visibility_secs: Some(1), duplicate_delivery: true },
        parameters: vec![("PricingConfig", pricing.to_string())],
    }
}

fn shop() -> &'static testkit::Shop {
    testkit::shop_with(settings)
}

/// Tests that pause a consumer or move the clock take this exclusively; the others share it.
static CLOCK: RwLock<()> = RwLock::const_new(());

fn later(minutes: i64) -> String {
    (OffsetDateTime::now_utc() + time::Duration::minutes(minutes))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

async fn confirmed_order(shopper: &e2e::flows::Shopper, payment_method: &str, settled: &str) -> Value {
    let placed = place(&shopper.token, &testkit::unique("key"), &checkout_body(&shopper.cart, payment_method)).await;
    assert_eq!(placed.status, 202, "{}", placed.body);
    order_when(&shopper.token, placed.body["order_id"].as_str().unwrap(), |o| o["status"] == settled).await
}

#[tokio::test]
async fn with_every_message_delivered_twice_an_order_reserves_and_authorizes_once() {
    shop();
    let _shared = CLOCK.read().await;
    let shopper = shopper_with_cart(5, 2).await;

    let order = confirmed_order(&shopper, "pm_card_visa", "confirmed").await;

    let intents = payment_intents(order["order_id"].as_str().unwrap()).await;
    assert_eq!(intents.len(), 1, "one authorization: {intents:#?}");
    let path: Vec<&str> = order["history"].as_array().unwrap().iter().filter_map(|t| t["status"].as_str()).collect();
    assert_eq!(path, vec!["pending", "reserved", "authorized", "confirmed"], "each step once");
    let stock = eventually(10, || async {
        let stock = call(Method::GET, &format!("/admin/inventory/{}", shopper.sku)).admin().send().await.body;
        (stock["reserved"] == 0).then_some(stock)
    })
    .await
    .unwrap();
    assert_eq!((stock["on_hand"].as_u64(), stock["available"].as_u64()), (Some(3), Some(3)), "committed once");
}

#[tokio::test]
async fn a_consumer_that_crashes_after_its_work_is_retried_without_a_second_effect() {
    shop();
    let _shared = CLOCK.read().await;
    let shopper = shopper_with_cart(5, 1).await;
    shop().control("InventoryEventsFunction", "crash-after-next").await.unwrap();
    shop().control("PaymentEventsFunction", "crash-after-next").await.unwrap();

    let order = confirmed_order(&shopper, "pm_card_visa", "confirmed").await;

    assert_eq!(payment_intents(order["order_id"].as_str().unwrap()).await.len(), 1);
    let path = format!("/admin/inventory/{}", shopper.sku);
    let committed = eventually(20, || async {
        let stock = call(Method::GET, &path).admin().send().await.body;
        (stock["reserved"] == 0).then_some(stock)
    })
    .await;
    let last = call(Method::GET, &path).admin().send().await.body;
    let stock = committed.unwrap_or_else(|| panic!("never committed: stock {last}, order {order}"));
    assert_eq!(stock["on_hand"], 4, "one unit sold, once");
}

#[tokio::test]
async fn a_poison_message_ends_in_the_dead_letter_queue_while_real_events_flow() {
    shop();
    let _shared = CLOCK.read().await;
    let aws = shop().aws().await;
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let queue = shop().resource("CheckoutQueue").unwrap();
    let dead_letters = shop().resource("CheckoutDeadLetterQueue").unwrap().to_owned();
    let marker = testkit::unique("poison");
    sqs.send_message()
        .queue_url(queue)
        .message_body(format!("{{\"not\": \"an event\", \"marker\": \"{marker}\"}}"))
        .send()
        .await
        .unwrap();
    let shopper = shopper_with_cart(5, 1).await;

    confirmed_order(&shopper, "pm_card_visa", "confirmed").await;

    let dead = eventually(30, || {
        let (sqs, url, marker) = (sqs.clone(), dead_letters.clone(), marker.clone());
        async move {
            let output = sqs.receive_message().queue_url(&url).max_number_of_messages(10).send().await.ok()?;
            output.messages.unwrap_or_default().into_iter().find(|m| m.body.as_deref().unwrap_or("").contains(&marker))
        }
    })
    .await;
    assert!(dead.is_some(), "the poison message reached the DLQ after maxReceiveCount receives");
}

#[tokio::test]
async fn an_order_stuck_before_confirmation_times_out_and_every_effect_is_undone() {
    shop();
    let _exclusive = CLOCK.write().await;
    let shopper = shopper_with_cart(5, 2).await;
    shop().control("PaymentEventsFunction", "pause").await.unwrap();

    let placed = place(&shopper.token, &testkit::unique("key"), &checkout_body(&shopper.cart, "pm_card_visa")).await;
    let id = placed.body["order_id"].as_str().unwrap().to_owned();
    order_when(&shopper.token, &id, |o| o["status"] == "reserved").await;
    assert_eq!(available(&shopper.sku).await, 3);
    shop().fire_schedule("CheckoutEventsFunction", "Timeouts", Some(&later(11))).await.unwrap();
    let order = order_when(&shopper.token, &id, |o| o["status"] == "cancelled").await;
    shop().control("PaymentEventsFunction", "resume").await.unwrap();

    assert_eq!(order["cancel_reason"], "timeout");
    let released = eventually(15, || async { (available(&shopper.sku).await == 5).then_some(()) }).await;
    assert!(released.is_some(), "stock released");
    // Payment, back online, learns of the cancellation and settles: nothing stays authorized.
    let settled = eventually(15, || async {
        let payment = payment_record(&id).await?;
        let status = payment.get("status").and_then(|s| s.as_s().ok()).map(String::as_str);
        (flag(&payment, "cancelled") && !matches!(status, Some("authorizing" | "authorized"))).then_some(())
    })
    .await;
    assert!(settled.is_some(), "payment learnt of the cancellation");
    let held: Vec<Value> =
        payment_intents(&id).await.into_iter().filter(|pi| pi["status"] == "requires_capture").collect();
    assert!(held.is_empty(), "no authorization is left holding the card: {held:#?}");
}

#[tokio::test]
async fn a_3d_secure_challenge_left_unanswered_times_out_and_its_payment_intent_is_cancelled_at_stripe() {
    shop();
    let _exclusive = CLOCK.write().await;
    let shopper = shopper_with_cart(5, 2).await;
    let waiting = confirmed_order(&shopper, "pm_card_authenticationRequired", "requires_action").await;
    let id = waiting["order_id"].as_str().unwrap().to_owned();

    shop().fire_schedule("CheckoutEventsFunction", "Timeouts", Some(&later(11))).await.unwrap();

    let order = order_when(&shopper.token, &id, |o| o["status"] == "cancelled").await;
    assert_eq!(order["cancel_reason"], "timeout");
    assert_eq!(order["payment"].get("client_secret"), None);
    let released = eventually(15, || async { (available(&shopper.sku).await == 5).then_some(()) }).await;
    assert!(released.is_some(), "stock released");
    let cancelled = eventually(15, || async {
        let intents = payment_intents(&id).await;
        (intents.len() == 1 && intents[0]["status"] == "canceled").then_some(())
    })
    .await;
    assert!(cancelled.is_some(), "the PaymentIntent was cancelled at Stripe: {:#?}", payment_intents(&id).await);
    let failed = eventually(15, || async {
        let payment = payment_record(&id).await?;
        (payment.get("status").and_then(|s| s.as_s().ok()).map(String::as_str) == Some("failed")).then_some(())
    })
    .await;
    assert!(failed.is_some(), "payment recorded the abandoned challenge");
}

#[tokio::test]
async fn a_reservation_never_confirmed_expires_and_its_stock_returns() {
    shop();
    let _exclusive = CLOCK.write().await;
    let tap = Tap::new(json!({ "source": ["ferrocart.inventory"], "detail-type": ["StockReleased"] })).await;
    let sku = testkit::unique("exp").to_uppercase();
    e2e::flows::stock(&sku, 4).await;
    let price = Money::new(100, Currency::USD).unwrap();
    let order = OrderPlaced {
        order_id: OrderId::new(),
        customer: "nobody".into(),
        email: "nobody@example.com".into(),
        lines: vec![OrderLine { sku: Sku::parse(&sku).unwrap(), quantity: 3, unit_price: price }],
        total: price,
        // A card that needs 3-D Secure: payment never authorizes, so nothing confirms the hold.
        payment_method: "pm_card_authenticationRequired".into(),
        cart: None,
    };
    publish(Event::OrderPlaced(order.clone()), &order.order_id.to_string()).await;
    let held = eventually(15, || async { (available(&sku).await == 1).then_some(()) }).await;
    assert!(held.is_some(), "three units held");

    shop().fire_schedule("InventoryEventsFunction", "ExpirySweep", Some(&later(16))).await.unwrap();

    let events = tap
        .collect_until(|seen| seen.iter().any(|e| e["detail"]["data"]["order_id"] == json!(order.order_id.to_string())))
        .await;
    let released =
        events.iter().find(|e| e["detail"]["data"]["order_id"] == json!(order.order_id.to_string())).unwrap();
    assert_eq!(released["detail"]["data"]["reason"], "expired");
    assert_eq!(available(&sku).await, 4);
}

#[tokio::test]
async fn an_order_with_nothing_to_pay_is_confirmed_without_stripe_and_cancels_without_a_void() {
    shop();
    let _shared = CLOCK.read().await;
    let shopper = shopper_with_cart(5, 2).await;
    let mut body = checkout_body(&shopper.cart, "pm_card_visa");
    body["shipping_method"] = json!("pickup");
    body["promo_code"] = json!("ONTHEHOUSE");

    let placed = place(&shopper.token, &testkit::unique("key"), &body).await;
    assert_eq!(placed.status, 202, "{}", placed.body);
    assert_eq!(placed.body["totals"]["total"]["amount"], 0, "{}", placed.body);
    let id = placed.body["order_id"].as_str().unwrap().to_owned();
    let order = order_when(&shopper.token, &id, |o| o["status"] == "confirmed" || o["status"] == "cancelled").await;

    assert_eq!(order["status"], "confirmed", "{order:#}");
    let path: Vec<&str> = order["history"].as_array().unwrap().iter().filter_map(|t| t["status"].as_str()).collect();
    assert_eq!(path, vec!["pending", "reserved", "confirmed"], "no authorization step");
    let cancelled = call(Method::POST, &format!("/orders/{id}/cancel")).token(&shopper.token).send().await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    let restocked = eventually(15, || async { (available(&shopper.sku).await == 5).then_some(()) }).await;
    assert!(restocked.is_some(), "both units back on the shelf");
    let payment = eventually(15, || async {
        let payment = payment_record(&id).await?;
        (flag(&payment, "stock_reserved") && payment.contains_key("total")).then_some(payment)
    })
    .await
    .expect("payment learnt of the order and its reservation");
    assert!(!payment.contains_key("status"), "never claimed for authorization: {payment:?}");
    assert!(!payment.contains_key("payment_intent_id"), "no PaymentIntent: {payment:?}");
    assert!(payment_intents(&id).await.is_empty(), "Stripe never saw the order");
}

#[tokio::test]
async fn an_order_below_the_smallest_card_payment_is_refused_at_checkout_before_anything_is_reserved() {
    shop();
    let _shared = CLOCK.read().await;
    let token = shop().customer_token(&testkit::unique("buyer"));
    let (_, sku) = product_on_sale(30, "USD").await;
    stock(&sku, 5).await;
    let cart = new_cart(&token).await;
    add_when_on_sale(&token, &cart, &sku, 1).await;
    let mut body = checkout_body(&cart, "pm_card_visa");
    body["shipping_method"] = json!("pickup");

    // 0.30 and GB's 20 % VAT: 0.36 USD, which no card payment can be (Stripe's least is 0.50).
    let refused = place(&token, &testkit::unique("key"), &body).await;

    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(refused.body["errors"][0]["pointer"], "/cart_id", "{}", refused.body);
    let detail = refused.body["errors"][0]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("0.36 USD is below 0.50 USD"), "{}", refused.body);
    // No order, so no OrderPlaced: nothing is ever reserved for it.
    let orders = call(Method::GET, "/orders").token(&token).send().await;
    assert_eq!(orders.body["items"], json!([]), "no order: {}", orders.body);
    // Two of them (0.72 USD) can be paid by card: placed.
    put_item(&token, &cart, &sku, json!(2)).await;
    let placed = place(&token, &testkit::unique("key"), &body).await;
    assert_eq!(placed.status, 202, "{}", placed.body);
    assert_eq!(placed.body["totals"]["total"]["amount"], 72, "{}", placed.body);
}

/// The payment service's record of an order (payment's table, read as a test may).
async fn payment_record(order_id: &str) -> Option<Item> {
    stored("PaymentTable", &format!("PAY#{order_id}"), "PAY").await
}

fn flag(item: &Item, name: &str) -> bool {
    item.get(name).and_then(|value| value.as_bool().ok()).copied() == Some(true)
}

#[tokio::test]
async fn a_cancelled_order_gives_its_limited_coupon_back() {
    shop();
    let _shared = CLOCK.read().await;
    let (first, second) = (shopper_with_cart(5, 1).await, shopper_with_cart(5, 1).await);
    let announced = Tap::new(json!({ "source": ["ferrocart.checkout"], "detail-type": ["OrderPlaced"] })).await;
    let with_coupon = |shopper: &e2e::flows::Shopper| {
        let mut body = checkout_body(&shopper.cart, "pm_card_visa");
        body["promo_code"] = json!("onceonly");
        body
    };

    let placed = place(&first.token, &testkit::unique("key"), &with_coupon(&first)).await;
    assert_eq!(placed.status, 202, "{}", placed.body);
    let refused = place(&second.token, &testkit::unique("key"), &with_coupon(&second)).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(refused.body["errors"][0]["pointer"], "/promo_code", "{}", refused.body);
    let id = placed.body["order_id"].as_str().unwrap();
    let cancelled = call(Method::POST, &format!("/orders/{id}/cancel")).token(&first.token).send().await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    let again = place(&second.token, &testkit::unique("key"), &with_coupon(&second)).await;

    assert_eq!(again.status, 202, "the redemption came back with the cancellation: {}", again.body);
    assert_eq!(again.body["promo_code"], "onceonly");
    // The refused placement wrote nothing, so it announced nothing either.
    let from_second_cart = |events: &[Value]| -> Vec<Value> {
        events.iter().filter(|e| e["detail"]["data"]["cart"]["cart_id"] == json!(second.cart)).cloned().collect()
    };
    let events = announced.collect_until(|seen| !from_second_cart(seen).is_empty()).await;
    let orders: Vec<Value> =
        from_second_cart(&events).iter().map(|e| e["detail"]["data"]["order_id"].clone()).collect();
    assert_eq!(orders, vec![again.body["order_id"].clone()], "only the accepted placement");
}

#[tokio::test]
async fn every_saga_event_sent_again_under_a_new_id_changes_nothing() {
    shop();
    let _shared = CLOCK.read().await;
    let shopper = shopper_with_cart(5, 2).await;
    let confirmed = confirmed_order(&shopper, "pm_card_visa", "confirmed").await;
    let id = confirmed["order_id"].as_str().unwrap().to_owned();
    // The saga's last step before anything ships: fulfillment's shipment, recorded on the order.
    let order = order_when(&shopper.token, &id, |o| o["shipments"].as_array().is_some_and(|s| !s.is_empty())).await;
    let order_id: OrderId = id.parse().unwrap();
    let stock_path = format!("/admin/inventory/{}", shopper.sku);
    let committed = eventually(20, || async {
        let stock = call(Method::GET, &stock_path).admin().send().await.body;
        (stock["reserved"] == 0).then_some(stock)
    })
    .await
    .expect("the sale is committed");

    // The same facts again, as a relay retry after a lost acknowledgement would send them: new
    // event ids, so every consumer's inbox lets them through and its own conditions must hold.
    let money = |v: &Value| {
        Money::new(v["amount"].as_i64().unwrap(), Currency::parse(v["currency"].as_str().unwrap()).unwrap()).unwrap()
    };
    let lines: Vec<OrderLine> = order["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| OrderLine {
            sku: Sku::parse(l["sku"].as_str().unwrap()).unwrap(),
            quantity: u32::try_from(l["quantity"].as_u64().unwrap()).unwrap(),
            unit_price: money(&l["unit_price"]),
        })
        .collect();
    let total = money(&order["totals"]["total"]);
    let placed = publish(
        Event::OrderPlaced(OrderPlaced {
            order_id,
            customer: order["customer"].as_str().unwrap().to_owned(),
            email: order["email"].as_str().unwrap().to_owned(),
            lines: lines.clone(),
            total,
            payment_method: "pm_card_visa".into(),
            cart: None,
        }),
        &id,
    )
    .await;
    let reserved = publish(
        Event::StockReserved(StockReserved {
            order_id,
            lines: lines
                .iter()
                .map(|l| ReservedLine {
                    sku: l.sku.clone(),
                    quantity: l.quantity,
                    allocations: vec![Allocation { warehouse: "main".into(), quantity: l.quantity }],
                })
                .collect(),
            expires_at: later(15),
        }),
        &id,
    )
    .await;
    let authorized = publish(
        Event::PaymentAuthorized(PaymentAuthorized {
            order_id,
            payment_intent_id: order["payment_intent_id"].as_str().unwrap().to_owned(),
            amount: total,
        }),
        &id,
    )
    .await;
    let confirmed = publish(Event::OrderConfirmed(OrderConfirmed { order_id, shipping: None }), &id).await;
    handled_by("InventoryTable", &[&placed, &confirmed]).await;
    handled_by("PaymentTable", &[&placed, &reserved]).await;
    handled_by("CheckoutTable", &[&reserved, &authorized]).await;

    let after = call(Method::GET, &format!("/orders/{id}")).token(&shopper.token).send().await.body;
    assert_eq!((&after["status"], &after["version"]), (&order["status"], &order["version"]), "order unchanged");
    assert_eq!(after["history"], order["history"]);
    assert_eq!(call(Method::GET, &stock_path).admin().send().await.body, committed, "stock unchanged");
    assert_eq!(payment_intents(&id).await.len(), 1, "one authorization");
}

/// A PaymentIntent confirmed at the Stripe emulator for `order_id`, as an authorization whose
/// invocation died right after the confirmation would leave it: the card is held.
async fn held_payment_intent(order_id: &str) -> String {
    let created = post_to_stripe(
        "/v1/payment_intents",
        &[
            ("amount", "2500"),
            ("currency", "usd"),
            ("payment_method", "pm_card_visa"),
            ("capture_method", "manual"),
            ("metadata[order_id]", order_id),
        ],
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let confirmed = post_to_stripe(&format!("/v1/payment_intents/{id}/confirm"), &[]).await;
    assert_eq!(confirmed["status"], "requires_capture", "{confirmed}");
    id
}

#[tokio::test]
async fn an_authorization_stalled_after_its_hold_is_released_by_the_sweep_once_its_order_is_cancelled() {
    use aws_sdk_dynamodb::types::AttributeValue;
    shop();
    let _exclusive = CLOCK.write().await;
    let shopper = shopper_with_cart(5, 1).await;
    shop().control("PaymentEventsFunction", "pause").await.unwrap();
    let placed = place(&shopper.token, &testkit::unique("key"), &checkout_body(&shopper.cart, "pm_card_visa")).await;
    let id = placed.body["order_id"].as_str().unwrap().to_owned();
    order_when(&shopper.token, &id, |o| o["status"] == "reserved").await;
    let cancelled = call(Method::POST, &format!("/orders/{id}/cancel")).token(&shopper.token).send().await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    // Payment claimed the authorization two minutes ago, confirmed its PaymentIntent and died;
    // every message that could resume it was dead-lettered. Only the cancellation flag landed.
    let intent = held_payment_intent(&id).await;
    let since = OffsetDateTime::now_utc().unix_timestamp() - 120;
    let s = |value: &str| AttributeValue::S(value.to_owned());
    let total = AttributeValue::M(
        [("amount".to_owned(), AttributeValue::N("2500".into())), ("currency".to_owned(), s("USD"))].into(),
    );
    shop()
        .dynamodb()
        .await
        .put_item()
        .table_name(shop().table("PaymentTable").unwrap())
        .item("pk", s(&format!("PAY#{id}")))
        .item("sk", s("PAY"))
        .item("order_id", s(&id))
        .item("total", total)
        .item("payment_method", s("pm_card_visa"))
        .item("stock_reserved", AttributeValue::Bool(true))
        .item("cancelled", AttributeValue::Bool(true))
        .item("status", s("authorizing"))
        .item("authorizing_since", AttributeValue::N(since.to_string()))
        .item("payment_intent_id", s(&intent))
        .item("gsi1pk", s(&adapters::shard::Sharded::new("AUTHORIZING", adapters::shard::SHARDS).key_for(&id)))
        .item("gsi1sk", s(&format!("{since:012}#{id}")))
        .send()
        .await
        .unwrap();

    shop().fire_schedule("PaymentSweepFunction", "StalledSweep", None).await.unwrap();

    // Still paused: only the sweep can have done this.
    let intents = payment_intents(&id).await;
    let statuses: Vec<&str> = intents.iter().filter_map(|pi| pi["status"].as_str()).collect();
    assert_eq!(statuses, vec!["canceled"], "the hold is released, not left for Stripe's 7 days");
    let payment = payment_record(&id).await.unwrap();
    assert_eq!(payment["status"].as_s().unwrap(), "failed");
    assert_eq!(payment["failure_reason"].as_s().unwrap(), "cancelled");
    assert!(!payment.contains_key("gsi1pk"), "no longer listed as authorizing: {payment:?}");
    shop().control("PaymentEventsFunction", "resume").await.unwrap();
    let order = order_when(&shopper.token, &id, |o| o["status"] == "cancelled").await;
    assert_eq!(order["cancel_reason"], "customer_cancelled", "checkout ignores the PaymentFailed");
}

/// The order's only shipment left the warehouse, as fulfillment announces it.
fn dispatch_of(order_id: OrderId) -> Event {
    Event::ShipmentDispatched(ShipmentDispatched {
        order_id,
        shipment_id: ShipmentId::new(),
        shipment_count: 1,
        warehouse: "main".into(),
        carrier: "ups".into(),
        tracking_number: "1Z999AA10123456784".into(),
        tracking_url: Some("https://www.ups.com/track?tracknum=1Z999AA10123456784".into()),
        dispatched_at: later(0),
    })
}

/// A tap on payment's capture outcomes for one order.
async fn capture_outcomes(order_id: &str) -> Tap {
    Tap::new(json!({
        "source": ["ferrocart.payment"],
        "detail-type": ["PaymentCaptured", "PaymentCaptureFailed"],
        "detail": { "data": { "order_id": [order_id] } }
    }))
    .await
}

#[tokio::test]
async fn a_dispatch_delivered_twice_and_re_sent_under_a_new_event_id_captures_once() {
    shop();
    let _shared = CLOCK.read().await;
    let shopper = shopper_with_cart(5, 2).await;
    let order = confirmed_order(&shopper, "pm_card_visa", "confirmed").await;
    let id = order["order_id"].as_str().unwrap().to_owned();
    let outcomes = capture_outcomes(&id).await;
    let events = aws_sdk_eventbridge::Client::new(&shop().aws().await);

    // Every SQS message is delivered twice already; the same envelope is published twice more,
    // and the same fact once under a new event id, as a relay retry would send it.
    let first = publish(dispatch_of(id.parse().unwrap()), &id).await;
    publish_envelope(&events, &first).await;
    let resent = publish(first.event.clone(), &id).await;
    handled_by("PaymentTable", &[&first, &resent]).await;

    let intents = payment_intents(&id).await;
    assert_eq!(intents.len(), 1, "{intents:#?}");
    assert_eq!(intents[0]["status"], "succeeded", "{:#}", intents[0]);
    assert_eq!(intents[0]["amount_received"], order["totals"]["total"]["amount"], "the whole total, once");
    let payment = payment_record(&id).await.unwrap();
    assert_eq!(payment["status"].as_s().unwrap(), "captured");
    // Waits out the tap's 15 s unless a second outcome shows up.
    let announced = outcomes.collect_until(|seen| seen.len() >= 2).await;
    let kinds: Vec<&str> = announced.iter().filter_map(|e| e["detail-type"].as_str()).collect();
    assert_eq!(kinds, vec!["PaymentCaptured"], "one capture announced");
    assert_eq!(announced[0]["detail"]["data"]["amount"], order["totals"]["total"]);
    assert_eq!(announced[0]["detail"]["data"]["payment_intent_id"], intents[0]["id"]);
}

#[tokio::test]
async fn a_capture_stripe_refuses_as_expired_is_reported_once_and_collects_nothing() {
    shop();
    let _shared = CLOCK.read().await;
    let shopper = shopper_with_cart(5, 1).await;
    let order = confirmed_order(&shopper, "pm_card_visa", "confirmed").await;
    let id = order["order_id"].as_str().unwrap().to_owned();
    let intent = order["payment_intent_id"].as_str().unwrap().to_owned();
    let outcomes = capture_outcomes(&id).await;
    // The authorization lapsed (a card's lasts about 7 days): the emulator refuses its capture.
    post_to_stripe(&format!("/_test/payment_intents/{intent}/expire_authorization"), &[]).await;

    let dispatched = publish(dispatch_of(id.parse().unwrap()), &id).await;
    handled_by("PaymentTable", &[&dispatched]).await;

    let announced = outcomes.collect_until(|seen| seen.len() >= 2).await;
    let kinds: Vec<&str> = announced.iter().filter_map(|e| e["detail-type"].as_str()).collect();
    assert_eq!(kinds, vec!["PaymentCaptureFailed"], "reported once, not retried");
    assert_eq!(announced[0]["detail"]["data"]["reason"], "charge_expired_for_capture");
    let payment = payment_record(&id).await.unwrap();
    assert_eq!(payment["status"].as_s().unwrap(), "capture_failed");
    let intents = payment_intents(&id).await;
    assert_eq!((&intents[0]["status"], &intents[0]["amount_received"]), (&json!("canceled"), &json!(0)));
}

fn dispatch_shipment(shipment: &str) -> e2e::support::Call {
    call(Method::POST, &format!("/admin/shipments/{shipment}/dispatch"))
        .admin()
        .json(&json!({ "carrier": "ups", "tracking_number": "1ZCROSS" }))
}

#[tokio::test]
async fn a_dispatch_whose_authorization_lapsed_ships_flagged_for_an_admin_and_collects_nothing() {
    shop();
    let _shared = CLOCK.read().await;
    let shopper = shopper_with_cart(5, 1).await;
    let (id, shipment) = confirmed_shipment(&shopper).await;
    let order = call(Method::GET, &format!("/orders/{id}")).token(&shopper.token).send().await.body;
    let intent = order["payment_intent_id"].as_str().unwrap().to_owned();
    // The card's authorization lapsed before the parcel left (about 7 days at Stripe).
    post_to_stripe(&format!("/_test/payment_intents/{intent}/expire_authorization"), &[]).await;

    let dispatched = dispatch_shipment(&shipment).send().await;

    assert_eq!(dispatched.status, 200, "the dispatch is not lost: {}", dispatched.body);
    let flagged = eventually(30, || async {
        let listed = call(Method::GET, "/admin/orders?flag=capture_failed&limit=100").admin().send().await;
        assert_eq!(listed.status, 200, "{}", listed.body);
        listed.body["items"].as_array().unwrap().iter().find(|o| o["order_id"] == json!(id)).cloned()
    })
    .await
    .expect("an admin finds the order under flag=capture_failed");
    assert_eq!(flagged["status"], "shipped", "shipping goes on; the payment is what needs a person");
    assert_eq!(flagged["payment"]["captured"], Value::Null);
    let intents = payment_intents(&id).await;
    assert_eq!((&intents[0]["status"], &intents[0]["amount_received"]), (&json!("canceled"), &json!(0)));
}

#[tokio::test]
async fn a_cancel_after_a_dispatch_checkout_has_not_heard_of_is_refused_and_changes_nothing() {
    shop();
    let _exclusive = CLOCK.write().await;
    let shopper = shopper_with_cart(5, 1).await;
    let (id, shipment) = confirmed_shipment(&shopper).await;
    // Checkout cannot hear of the dispatch: only fulfillment knows the parcel left.
    shop().control("CheckoutEventsFunction", "pause").await.unwrap();
    let dispatched = dispatch_shipment(&shipment).send().await;
    assert_eq!(dispatched.status, 200, "{}", dispatched.body);

    let refused = call(Method::POST, &format!("/orders/{id}/cancel")).token(&shopper.token).send().await;

    let order = call(Method::GET, &format!("/orders/{id}")).token(&shopper.token).send().await.body;
    shop().control("CheckoutEventsFunction", "resume").await.unwrap();
    assert_eq!(refused.expect_problem(409)["type"], "/problems/already-shipped", "{}", refused.body);
    assert_eq!((order["status"].as_str(), &order["cancel_reason"]), (Some("confirmed"), &Value::Null), "{order}");
    let shipped = order_when(&shopper.token, &id, |o| o["status"] == "shipped").await;
    assert_eq!(shipped["cancel_reason"], Value::Null, "the dispatch, heard late, ships the order");
}

#[tokio::test]
async fn a_dispatch_after_a_cancel_fulfillment_has_not_heard_of_is_refused_and_nothing_leaves() {
    shop();
    let _exclusive = CLOCK.write().await;
    let shopper = shopper_with_cart(5, 1).await;
    let (id, shipment) = confirmed_shipment(&shopper).await;
    // Fulfillment cannot hear of the cancellation: only the cancel's hold can stop the dispatch.
    shop().control("FulfillmentEventsFunction", "pause").await.unwrap();
    let cancelled = call(Method::POST, &format!("/orders/{id}/cancel")).token(&shopper.token).send().await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);

    let refused = dispatch_shipment(&shipment).send().await;

    shop().control("FulfillmentEventsFunction", "resume").await.unwrap();
    assert_eq!(refused.expect_problem(409)["type"], "/problems/conflict", "{}", refused.body);
    let path = format!("/admin/shipments/{shipment}");
    let closed = eventually(20, || async {
        let shipment = call(Method::GET, &path).admin().send().await.body;
        (shipment["status"] == "cancelled").then_some(shipment)
    })
    .await;
    assert!(closed.is_some(), "the shipment is cancelled with its order, never dispatched");
    let order = order_when(&shopper.token, &id, |o| o["shipments"][0]["status"] == "cancelled").await;
    assert_eq!(order["status"], "cancelled");
    let seen_by_admin = call(Method::GET, &format!("/orders/{id}")).admin().send().await.body;
    assert_eq!(seen_by_admin["flags"], json!([]), "nothing for an admin to sort out: {seen_by_admin}");
}

/// `on_hand` of `sku` in `warehouse`, by the admin stock API.
async fn on_hand_in(sku: &str, warehouse: &str) -> Option<u64> {
    let stock = call(Method::GET, &format!("/admin/inventory/{sku}")).admin().send().await.body;
    let warehouses = stock["warehouses"].as_array()?;
    warehouses.iter().find(|w| w["warehouse"] == warehouse).and_then(|w| w["on_hand"].as_u64())
}

#[tokio::test]
async fn a_return_received_delivered_twice_and_re_sent_under_a_new_event_id_is_restocked_and_refunded_once() {
    shop();
    let _shared = CLOCK.read().await;
    let shopper = shopper_with_cart(5, 2).await;
    let (id, shipment) = confirmed_shipment(&shopper).await;
    assert_eq!(dispatch_shipment(&shipment).send().await.status, 200);
    let delivered = call(Method::POST, &format!("/admin/shipments/{shipment}/deliver")).admin().send().await;
    assert_eq!(delivered.status, 200, "{}", delivered.body);
    order_when(&shopper.token, &id, |o| o["status"] == "delivered" && !o["payment"]["captured"].is_null()).await;
    let asked = call(Method::POST, &format!("/orders/{id}/returns"))
        .token(&shopper.token)
        .header("idempotency-key", &testkit::unique("ret"))
        .json(&json!({ "lines": [{ "sku": shopper.sku, "quantity": 2 }], "reason": "wrong_item" }))
        .send()
        .await;
    assert_eq!(asked.status, 201, "{}", asked.body);
    let return_id = asked.body["id"].as_str().unwrap().to_owned();
    let warehouse = testkit::unique("back").to_lowercase().replace('_', "-");
    let tap = Tap::new(json!({ "source": ["ferrocart.checkout"], "detail-type": ["ReturnReceived"] })).await;
    let refunds = payment_announces(&id, "RefundIssued").await;

    // Every message of this stack is delivered twice; the receive's one event among them.
    let received = call(Method::POST, &format!("/admin/returns/{return_id}/receive"))
        .admin()
        .json(&json!({ "warehouse": warehouse }))
        .send()
        .await;
    assert_eq!(received.status, 200, "{}", received.body);
    let mine = |e: &Value| e["detail"]["data"]["return_id"] == return_id.as_str();
    let events = tap.collect_until(|seen| seen.iter().any(mine)).await;
    let event = events.iter().find(|e| mine(e)).expect("ReturnReceived on the bus");
    let first = eventually(20, || async { on_hand_in(&shopper.sku, &warehouse).await.filter(|n| *n > 0) }).await;
    // The same fact again under a new event id, as a republish would send it.
    let fact: ReturnReceived = serde_json::from_value(event["detail"]["data"].clone()).unwrap();
    let resent = publish(Event::ReturnReceived(fact), &id).await;
    handled_by("InventoryTable", &[&resent]).await;
    handled_by("PaymentTable", &[&resent]).await;

    assert_eq!(first, Some(2), "both units back on hand in {warehouse}");
    assert_eq!(on_hand_in(&shopper.sku, &warehouse).await, Some(2), "restocked once");
    let path = format!("/admin/returns/{return_id}");
    let refunded = eventually(30, || async {
        let ret = call(Method::GET, &path).admin().send().await.body;
        (ret["status"] == "refunded").then_some(ret)
    })
    .await
    .expect("payment refunded the received return");
    // Waits out the tap's 15 s unless a second refund is announced.
    let announced = refunds.collect_until(|seen| seen.len() >= 2).await;
    assert_eq!(announced.len(), 1, "one RefundIssued: {announced:#?}");
    let issued = &announced[0]["detail"]["data"];
    assert_eq!((&issued["return_id"], &issued["amount"]), (&json!(return_id), &refunded["refund"]));
    let intent = payment_intents(&id).await[0]["id"].as_str().unwrap().to_owned();
    let made = refunds_at_stripe(&intent).await;
    assert_eq!(made.len(), 1, "one refund at Stripe for the return: {made:#?}");
    assert_eq!(
        (&made[0]["amount"], &made[0]["metadata"]["refund_id"]),
        (&refunded["refund"]["amount"], &refunded["refund_id"])
    );
    let order = call(Method::GET, &format!("/orders/{id}")).token(&shopper.token).send().await.body;
    assert_eq!(order["payment"]["refunds"].as_array().map(Vec::len), Some(1), "{order:#}");
    assert_eq!(order["payment"]["refunded"], refunded["refund"]);
}

/// A one-unit order, paid and captured: its id, its PaymentIntent, and the order as read then.
async fn captured_order() -> (String, String, Value) {
    let order = captured(&shopper_with_cart(5, 1).await).await;
    let id = order["order_id"].as_str().unwrap().to_owned();
    (id, order["payment_intent_id"].as_str().unwrap().to_owned(), order)
}

/// An admin's refund of order `id` (`body` as the refunds route takes it) under a new key.
async fn admin_refund(id: &str, body: &Value) -> e2e::support::Reply {
    call(Method::POST, &format!("/admin/orders/{id}/refunds"))
        .admin()
        .header("idempotency-key", &testkit::unique("key"))
        .json(body)
        .send()
        .await
}

/// A tap on payment's `detail_type` events for one order.
async fn payment_announces(order_id: &str, detail_type: &str) -> Tap {
    Tap::new(json!({
        "source": ["ferrocart.payment"],
        "detail-type": [detail_type],
        "detail": { "data": { "order_id": [order_id] } }
    }))
    .await
}

/// A Stripe event as Stripe sends it to the webhook, under a new event id.
fn stripe_event(event_type: &str, object: &Value) -> Value {
    json!({
        "id": testkit::unique("evt_chaos").replace('-', "_"),
        "object": "event",
        "type": event_type,
        "created": OffsetDateTime::now_utc().unix_timestamp(),
        "data": { "object": object }
    })
}

#[tokio::test]
async fn a_refund_made_in_the_stripe_dashboard_is_recorded_once_however_often_stripe_tells_of_it() {
    shop();
    let _shared = CLOCK.read().await;
    let (id, intent, order) = captured_order().await;
    let intent = intent.as_str();
    let total = order["payment"]["captured"]["amount"].as_i64().unwrap();
    let issued = payment_announces(&id, "RefundIssued").await;
    let admin = shop().admin_token();

    // Someone refunds 5.00 in the Stripe Dashboard: the emulator sends charge.refunded ~1 s later.
    let made = post_to_stripe("/v1/refunds", &[("payment_intent", intent), ("amount", "500")]).await;
    // Stripe says it more than once, and at once: the same event twice, and charge.refunded
    // under a new event id, all racing to record the refund first (and the emulator's after).
    let charge = json!({ "id": made["charge"], "object": "charge", "payment_intent": intent });
    let (again, another) = (stripe_event("charge.refunded", &charge), stripe_event("charge.refunded", &charge));
    let (a, b, c) = tokio::join!(deliver_webhook(&again), deliver_webhook(&again), deliver_webhook(&another));
    let shown = order_when(&admin, &id, |o| o["payment"]["refunds"].as_array().is_some_and(|r| !r.is_empty())).await;

    for reply in [&a, &b, &c] {
        // 409: the same event is being handled by the other delivery; Stripe would retry it.
        assert!(matches!(reply.status.as_u16(), 200 | 409), "{} {}", reply.status, reply.body);
    }
    assert_eq!(c.status, 200, "{}", c.body);
    // Waits out the tap's 15 s unless a second refund is announced.
    let announced = issued.collect_until(|seen| seen.len() >= 2).await;
    assert_eq!(announced.len(), 1, "one RefundIssued: {announced:#?}");
    // Counted once, by the delivery whose write recorded it (RefundsUnrecordedAlarm watches it).
    assert_eq!(counted_for(&id, "RefundsUnrecorded"), vec![json!(1)]);
    let data = &announced[0]["detail"]["data"];
    assert_eq!((&data["stripe_refund_id"], &data["reason"]), (&made["id"], &json!("other")));
    assert_eq!(data["amount"], json!({ "amount": 500, "currency": "USD" }));
    let refunds = shown["payment"]["refunds"].as_array().unwrap();
    assert_eq!((refunds.len(), &refunds[0]["reason"]), (1, &json!("other")), "{shown:#}");
    assert_eq!(shown["payment"]["refunded"], json!({ "amount": 500, "currency": "USD" }));
    // The Dashboard's refund counts against what is left: everything else, and nothing more.
    let rest = admin_refund(&id, &json!({ "reason": "requested_by_customer" })).await;
    assert_eq!(
        (rest.status.as_u16(), rest.body["amount"]["amount"].as_i64()),
        (201, Some(total - 500)),
        "{}",
        rest.body
    );
    let at_stripe: i64 = refunds_at_stripe(intent).await.iter().map(|r| r["amount"].as_i64().unwrap()).sum();
    assert_eq!(at_stripe, total, "refunded in full at Stripe, never more");
}

/// The values of metric `name` the shop's functions have emitted for order `id` (EMF).
fn counted_for(id: &str, name: &str) -> Vec<Value> {
    let documents = logged(shop());
    metric(&documents, name).into_iter().filter(|d| d["correlation_id"] == id).map(|d| d[name].clone()).collect()
}

#[tokio::test]
async fn a_refund_stripe_fails_after_success_told_at_once_by_every_refund_event_is_failed_and_counted_once() {
    shop();
    let _shared = CLOCK.read().await;
    let (id, intent, order) = captured_order().await;
    let intent = intent.as_str();
    let total = order["payment"]["captured"]["amount"].as_i64().unwrap();
    let refunded = admin_refund(&id, &json!({ "reason": "requested_by_customer" })).await;
    assert_eq!((refunded.status.as_u16(), &refunded.body["status"]), (201, &json!("succeeded")), "{}", refunded.body);
    let admin = shop().admin_token();
    order_when(&admin, &id, |o| o["payment"]["refunded"]["amount"] == total).await;
    let failed = payment_announces(&id, "RefundFailed").await;
    let made = refunded.body["stripe_refund_id"].as_str().unwrap();

    // Stripe fails it after success (pm_card_refundFail: the card's account closed). The emulator
    // sends charge.refund.updated ~1 s later; Stripe sends refund.updated and refund.failed too.
    // Here all three at once, one of them twice, racing to fail it first.
    let ended =
        post_to_stripe(&format!("/_test/refunds/{made}/end"), &[("status", "failed"), ("failure_reason", "declined")])
            .await;
    assert_eq!(ended["status"], "failed", "{ended}");
    let refund = json!({ "id": made, "object": "refund", "payment_intent": intent });
    let events = ["refund.failed", "refund.updated", "charge.refund.updated"].map(|kind| stripe_event(kind, &refund));
    let replies = tokio::join!(
        deliver_webhook(&events[0]),
        deliver_webhook(&events[0]),
        deliver_webhook(&events[1]),
        deliver_webhook(&events[2])
    );

    let (a, b, c, d) = replies;
    for reply in [&a, &b] {
        // 409: the same event is being handled by the other delivery; Stripe would retry it.
        assert!(matches!(reply.status.as_u16(), 200 | 409), "{} {}", reply.status, reply.body);
    }
    for reply in [&c, &d] {
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    // Waits out the tap's 15 s unless a second failure is announced.
    let announced = failed.collect_until(|seen| seen.len() >= 2).await;
    assert_eq!(announced.len(), 1, "one RefundFailed: {announced:#?}");
    assert_eq!(announced[0]["detail"]["data"]["stripe_refund_id"], json!(made));
    assert_eq!(counted_for(&id, "RefundsFailedAfterSuccess"), vec![json!(1)], "counted once");
    let shown = order_when(&admin, &id, |o| o["payment"]["refunds"][0]["status"] == "failed").await;
    assert_eq!(shown["payment"]["refunds"].as_array().map(Vec::len), Some(1), "{shown:#}");
    assert_eq!(shown["payment"]["refunds"][0]["failure_reason"], "declined", "{shown:#}");
    assert_eq!(shown["payment"]["refunded"]["amount"].as_i64().unwrap_or(0), 0, "nothing paid back: {shown:#}");
    assert_eq!(shown["flags"], json!(["refund_failed"]), "{shown:#}");
}

#[tokio::test]
async fn a_refund_pending_heard_after_its_refund_succeeded_never_shows_it_pending_again() {
    shop();
    let _shared = CLOCK.read().await;
    let (id, _, _) = captured_order().await;
    let asked = admin_refund(&id, &json!({ "amount": 600, "reason": "requested_by_customer" })).await;
    assert_eq!((asked.status.as_u16(), &asked.body["status"]), (201, &json!("succeeded")), "{}", asked.body);
    let admin = shop().admin_token();
    order_when(&admin, &id, |o| o["payment"]["refunds"][0]["status"] == "succeeded").await;

    // The refund's RefundPending reaches checkout only now, after its RefundIssued (EventBridge
    // and SQS keep no order), and then again under a new event id.
    let late = RefundPending {
        order_id: id.parse().unwrap(),
        refund_id: asked.body["id"].as_str().unwrap().parse().unwrap(),
        stripe_refund_id: asked.body["stripe_refund_id"].as_str().unwrap().to_owned(),
        amount: Money::new(600, Currency::USD).unwrap(),
        reason: RefundReason::RequestedByCustomer,
        return_id: None,
    };
    let first = publish(Event::RefundPending(late.clone()), &id).await;
    let again = publish(Event::RefundPending(late), &id).await;
    handled_by("CheckoutTable", &[&first, &again]).await;

    let shown = call(Method::GET, &format!("/orders/{id}")).token(&admin).send().await.body;
    let refunds = shown["payment"]["refunds"].as_array().unwrap();
    assert_eq!(refunds.len(), 1, "{shown:#}");
    assert_eq!((&refunds[0]["status"], &refunds[0]["refund_id"]), (&json!("succeeded"), &asked.body["id"]));
    assert_eq!(shown["payment"]["refunded"], json!({ "amount": 600, "currency": "USD" }), "{shown:#}");
    assert_eq!(shown["flags"], json!([]), "{shown:#}");
    let moments = shown["timeline"].as_array().unwrap().iter().filter(|m| m["event"] == "refund_pending").count();
    assert_eq!(moments, 1, "the moment it was pending, once: {shown:#}");
}

#[tokio::test]
async fn a_dispute_at_stripe_flags_the_order_for_an_admin_once() {
    shop();
    let _shared = CLOCK.read().await;
    let (id, intent, order) = captured_order().await;
    let intent = intent.as_str();
    let announced = payment_announces(&id, "PaymentDisputed").await;

    // The customer's bank disputes the charge: the emulator sends charge.dispute.created once.
    let dispute =
        post_to_stripe(&format!("/_test/payment_intents/{intent}/dispute"), &[("reason", "product_not_received")])
            .await;
    let listed = || async {
        let page = call(Method::GET, "/admin/orders?flag=disputed&limit=100").admin().send().await;
        assert_eq!(page.status, 200, "{}", page.body);
        let items = page.body["items"].as_array().unwrap().clone();
        items.into_iter().filter(|o| o["order_id"] == json!(id)).collect::<Vec<Value>>()
    };
    let flagged = eventually(30, || async { Some(listed().await).filter(|found| !found.is_empty()) }).await;
    // Stripe tells of the same dispute again under a new event id.
    let again = deliver_webhook(&stripe_event("charge.dispute.created", &dispute)).await;

    let flagged = flagged.expect("an admin finds the order under flag=disputed");
    assert_eq!(again.status, 200, "{}", again.body);
    // Waits out the tap's 15 s unless a second dispute is announced.
    let disputes = announced.collect_until(|seen| seen.len() >= 2).await;
    assert_eq!(disputes.len(), 1, "one PaymentDisputed: {disputes:#?}");
    assert_eq!(disputes[0]["detail"]["data"]["dispute_id"], dispute["id"]);
    assert_eq!(flagged.len(), 1);
    assert_eq!(listed().await.len(), 1, "listed once");
    assert_eq!(flagged[0]["flags"], json!(["disputed"]), "{:#}", flagged[0]);
    let seen = call(Method::GET, &format!("/orders/{id}")).admin().send().await.body;
    let recorded = seen["disputes"].as_array().unwrap();
    assert_eq!(recorded.len(), 1, "{seen:#}");
    assert_eq!((&recorded[0]["dispute_id"], &recorded[0]["reason"]), (&dispute["id"], &json!("product_not_received")));
    assert_eq!(recorded[0]["amount"], order["payment"]["captured"]);
}
