//! Checkout and the order saga, end to end through the HTTP API.

use reqwest::Method;
use serde_json::{Value, json};

use crate::cart::{add_when_on_sale, new_cart, product_on_sale};
use crate::support::{Reply, call, eventually};

pub async fn stock(sku: &str, on_hand: u32) {
    let reply = call(Method::PUT, &format!("/admin/inventory/{sku}"))
        .admin()
        .json(&json!({ "warehouse": "main", "on_hand": on_hand }))
        .send()
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

pub async fn available(sku: &str) -> u64 {
    call(Method::GET, &format!("/availability?skus={sku}")).send().await.body["items"][0]["available"].as_u64().unwrap()
}

/// A customer with a cart holding `quantity` of a fresh SKU that has `on_hand` in stock.
pub struct Shopper {
    pub token: String,
    pub cart: String,
    pub sku: String,
}

pub async fn shopper_with_cart(on_hand: u32, quantity: u32) -> Shopper {
    let token = testkit::shop().customer_token(&testkit::unique("buyer"));
    let (_, sku) = product_on_sale(1999, "USD").await;
    stock(&sku, on_hand).await;
    let cart = new_cart(&token).await;
    add_when_on_sale(&token, &cart, &sku, quantity).await;
    Shopper { token, cart, sku }
}

pub fn checkout_body(cart: &str, payment_method: &str) -> Value {
    json!({
        "cart_id": cart,
        "email": "buyer@example.com",
        "shipping_address": { "name": "Ada Lovelace", "line1": "12 Analytical Row", "city": "London",
                              "postal_code": "N1 9GU", "country": "GB" },
        "shipping_method": "express",
        "payment_method": payment_method
    })
}

pub async fn place(token: &str, key: &str, body: &Value) -> Reply {
    call(Method::POST, "/checkout").token(token).header("idempotency-key", key).json(body).send().await
}

/// Polls the order until `done` accepts it.
pub async fn order_when(token: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let seen = std::sync::Mutex::new(Value::Null);
    let reached = eventually(20, || async {
        let order = call(Method::GET, &format!("/orders/{id}")).token(token).send().await.body;
        *seen.lock().unwrap() = order.clone();
        done(&order).then_some(order)
    })
    .await;
    reached
        .unwrap_or_else(|| panic!("order {id} never reached the expected state; last seen: {:#}", seen.lock().unwrap()))
}

#[tokio::test]
async fn shipping_methods_are_public_and_come_from_configuration() {
    let reply = call(Method::GET, "/shipping-methods").send().await;
    assert_eq!(reply.status, 200);
    let ids: Vec<&str> = reply.body["items"].as_array().unwrap().iter().filter_map(|m| m["id"].as_str()).collect();
    assert!(ids.contains(&"standard") && ids.contains(&"express"), "{ids:?}");
}

#[tokio::test]
async fn a_checkout_answers_202_with_the_pending_order_and_its_totals() {
    let shopper = shopper_with_cart(10, 2).await;

    let reply = place(&shopper.token, &testkit::unique("key"), &checkout_body(&shopper.cart, "pm_card_visa")).await;

    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(reply.body["status"], "pending");
    let id = reply.body["order_id"].as_str().unwrap();
    assert_eq!(reply.header("location"), Some(format!("/orders/{id}").as_str()));
    let totals = &reply.body["totals"];
    assert_eq!(totals["subtotal"], json!({ "amount": 3998, "currency": "USD" }));
    assert_eq!(totals["shipping"], json!({ "amount": 1500, "currency": "USD" }));
    // 20% VAT for GB on 39.98 + 15.00 = 10.996 → 11.00
    assert_eq!(totals["tax"], json!({ "amount": 1100, "currency": "USD" }));
    assert_eq!(totals["total"], json!({ "amount": 6598, "currency": "USD" }));
    assert_eq!(reply.body["lines"][0]["sku"], json!(shopper.sku));
}

#[tokio::test]
async fn a_retried_checkout_replays_the_same_order_and_a_reused_key_with_another_body_is_refused() {
    let shopper = shopper_with_cart(10, 1).await;
    let key = testkit::unique("key");
    let body = checkout_body(&shopper.cart, "pm_card_visa");

    let first = place(&shopper.token, &key, &body).await;
    let again = place(&shopper.token, &key, &body).await;

    assert_eq!(first.status, 202, "{}", first.body);
    assert_eq!(again.status, 202);
    assert_eq!(again.body, first.body, "the same response");
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let mut other = body.clone();
    other["shipping_method"] = json!("standard");
    place(&shopper.token, &key, &other).await.expect_problem(422);
    let mine = call(Method::GET, "/orders").token(&shopper.token).send().await;
    assert_eq!(mine.body["items"].as_array().unwrap().len(), 1, "one order");
}

#[tokio::test]
async fn twenty_concurrent_retries_of_one_key_make_one_order() {
    let shopper = shopper_with_cart(10, 1).await;
    let key = testkit::unique("key");
    let body = checkout_body(&shopper.cart, "pm_card_visa");
    let attempts: Vec<_> = (0..20)
        .map(|_| {
            let (token, key, body) = (shopper.token.clone(), key.clone(), body.clone());
            tokio::spawn(async move { place(&token, &key, &body).await })
        })
        .collect();

    let mut ids = std::collections::BTreeSet::new();
    for attempt in attempts {
        let reply = attempt.await.unwrap();
        assert_eq!(reply.status, 202, "{}", reply.body);
        ids.insert(reply.body["order_id"].as_str().unwrap().to_owned());
    }

    assert_eq!(ids.len(), 1, "every retry answers with the one order: {ids:?}");
    let mine = call(Method::GET, "/orders").token(&shopper.token).send().await;
    assert_eq!(mine.body["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn an_order_beyond_the_stock_is_cancelled_as_out_of_stock_and_charges_nothing() {
    let shopper = shopper_with_cart(1, 3).await;

    let placed = place(&shopper.token, &testkit::unique("key"), &checkout_body(&shopper.cart, "pm_card_visa")).await;
    assert_eq!(placed.status, 202, "{}", placed.body);
    let id = placed.body["order_id"].as_str().unwrap();

    let order = order_when(&shopper.token, id, |o| o["status"] == "cancelled").await;
    assert_eq!(order["cancel_reason"], "out_of_stock");
    assert_eq!(order["payment_intent_id"], Value::Null, "no payment was attempted");
    assert_eq!(available(&shopper.sku).await, 1);
}

#[tokio::test]
async fn bad_checkouts_get_problem_details_and_write_nothing() {
    let shopper = shopper_with_cart(10, 1).await;
    let stranger = shopper_with_cart(10, 1).await;
    let empty_cart = new_cart(&shopper.token).await;
    let body = checkout_body(&shopper.cart, "pm_card_visa");
    let with = |pointer: &str, value: Value| {
        let mut body = body.clone();
        *body.pointer_mut(pointer).unwrap() = value;
        body
    };
    let with_promo = |code: &str| {
        let mut body = body.clone();
        body["promo_code"] = json!(code);
        body
    };
    let cases = [
        ("another customer's cart", with("/cart_id", json!(stranger.cart)), "/cart_id"),
        ("unknown cart", with("/cart_id", json!("cart_01J00000000000000000000000")), "/cart_id"),
        ("malformed cart id", with("/cart_id", json!("basket-1")), "/cart_id"),
        ("empty cart", with("/cart_id", json!(empty_cart)), "/cart_id"),
        ("bad email", with("/email", json!("nobody")), "/email"),
        ("bad country", with("/shipping_address/country", json!("Narnia")), "/shipping_address/country"),
        ("missing city", with("/shipping_address/city", json!("")), "/shipping_address/city"),
        ("unknown shipping method", with("/shipping_method", json!("teleport")), "/shipping_method"),
        (
            "card number instead of a payment method",
            with("/payment_method", json!("4242424242424242")),
            "/payment_method",
        ),
        ("unknown promo code", with_promo("FREESTUFF"), "/promo_code"),
        ("wrong type", with("/shipping_address", json!("10 Downing Street")), "/shipping_address"),
    ];
    for (name, body, pointer) in cases {
        let reply = place(&shopper.token, &testkit::unique("key"), &body).await;
        reply.expect_problem(422);
        assert!(reply.pointers().iter().any(|p| p == pointer), "{name}: expected {pointer} in {}", reply.body);
    }
    let no_key = call(Method::POST, "/checkout").token(&shopper.token).json(&body).send().await;
    no_key.expect_problem(400);
    assert_eq!(no_key.pointers(), vec!["header:Idempotency-Key"]);
    let anonymous = call(Method::POST, "/checkout").header("idempotency-key", "k").json(&body).send().await;
    assert_eq!(anonymous.status, 401);

    let mine = call(Method::GET, "/orders").token(&shopper.token).send().await;
    assert_eq!(mine.body["items"], json!([]), "nothing was written");
    assert_eq!(available(&shopper.sku).await, 10);
}

#[tokio::test]
async fn orders_are_private_to_their_customer_and_visible_to_admins() {
    let shopper = shopper_with_cart(10, 1).await;
    let placed = place(&shopper.token, &testkit::unique("key"), &checkout_body(&shopper.cart, "pm_card_visa")).await;
    let id = placed.body["order_id"].as_str().unwrap();
    let other = testkit::shop().customer_token(&testkit::unique("snoop"));

    call(Method::GET, &format!("/orders/{id}")).token(&other).send().await.expect_problem(404);
    call(Method::POST, &format!("/orders/{id}/cancel")).token(&other).send().await.expect_problem(404);
    let admin = call(Method::GET, &format!("/orders/{id}")).admin().send().await;
    assert_eq!(admin.status, 200);
    let listed = call(Method::GET, "/admin/orders?status=pending&limit=100").admin().send().await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    call(Method::GET, "/admin/orders?status=lost").admin().send().await.expect_problem(400);
    call(Method::GET, "/admin/orders?status=pending").token(&other).send().await.expect_problem(403);
}
