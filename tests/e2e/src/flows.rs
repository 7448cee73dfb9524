//! Shopper journeys the end-to-end tests build on: a product on sale, a cart, a checkout.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Reply, call, eventually};

/// Creates an active product with one variant and returns (product id, sku).
pub async fn product_on_sale(amount: i64, currency: &str) -> (String, String) {
    let sku = testkit::unique("crt").to_uppercase();
    let body = json!({
        "slug": testkit::unique("p"), "title": format!("Cart Thing {sku}"), "category": "cart-things", "status": "active",
        "variants": [{ "sku": sku, "price": { "amount": amount, "currency": currency } }]
    });
    let reply = call(Method::POST, "/admin/products").admin().json(&body).send().await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    (reply.body["id"].as_str().unwrap().to_owned(), sku)
}

pub async fn new_cart(token: &str) -> String {
    let reply = call(Method::POST, "/carts").token(token).send().await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.body["id"].as_str().unwrap().to_owned()
}

/// Sets a cart line.
pub async fn put_item(token: &str, cart: &str, sku: &str, quantity: Value) -> Reply {
    call(Method::PUT, &format!("/carts/{cart}/items/{sku}"))
        .token(token)
        .json(&json!({ "quantity": quantity }))
        .send()
        .await
}

/// Adds a SKU as soon as the cart's read model knows it (catalog events are asynchronous).
pub async fn add_when_on_sale(token: &str, cart: &str, sku: &str, quantity: u32) -> Value {
    let added = eventually(15, || async {
        let reply = put_item(token, cart, sku, json!(quantity)).await;
        (reply.status == 200).then_some(reply.body)
    })
    .await;
    added.unwrap_or_else(|| panic!("{sku} never became available to the cart"))
}

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
#[derive(Debug)]
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

/// Places the shopper's cart (Visa) and waits until the order is confirmed with its one shipment;
/// the order as its owner sees it then.
pub async fn confirmed_with_one_shipment(shopper: &Shopper) -> Value {
    confirmed_paid_with(shopper, "pm_card_visa").await
}

/// [`confirmed_with_one_shipment`], paid with the Stripe test payment method `payment_method`.
pub async fn confirmed_paid_with(shopper: &Shopper, payment_method: &str) -> Value {
    let placed = place(&shopper.token, &testkit::unique("key"), &checkout_body(&shopper.cart, payment_method)).await;
    assert_eq!(placed.status, 202, "{}", placed.body);
    let id = placed.body["order_id"].as_str().unwrap().to_owned();
    order_when(&shopper.token, &id, |o| {
        o["status"] == "confirmed" && o["shipments"].as_array().is_some_and(|s| s.len() == 1)
    })
    .await
}

/// [`confirmed_with_one_shipment`]'s order id and its shipment's id.
pub async fn confirmed_shipment(shopper: &Shopper) -> (String, String) {
    let order = confirmed_with_one_shipment(shopper).await;
    let id = |value: &Value| value.as_str().unwrap().to_owned();
    (id(&order["order_id"]), id(&order["shipments"][0]["id"]))
}

/// A confirmed order whose one shipment staff dispatched through the admin shipments API, which
/// captures the payment; the order once it shows the capture.
pub async fn captured(shopper: &Shopper) -> Value {
    captured_paid_with(shopper, "pm_card_visa").await
}

/// [`captured`], paid with the Stripe test payment method `payment_method`.
pub async fn captured_paid_with(shopper: &Shopper, payment_method: &str) -> Value {
    let order = confirmed_paid_with(shopper, payment_method).await;
    let id = order["order_id"].as_str().unwrap().to_owned();
    let shipment = order["shipments"][0]["id"].as_str().unwrap().to_owned();
    let dispatched = call(Method::POST, &format!("/admin/shipments/{shipment}/dispatch"))
        .admin()
        .json(&json!({ "carrier": "ups", "tracking_number": "1ZREFUND" }))
        .send()
        .await;
    assert_eq!(dispatched.status, 200, "{}", dispatched.body);
    order_when(&shopper.token, &id, |o| !o["payment"]["captured"].is_null()).await
}
