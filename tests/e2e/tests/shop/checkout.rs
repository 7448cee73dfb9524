//! Checkout and the order saga, end to end through the HTTP API.

use reqwest::Method;
use serde_json::{Value, json};

use e2e::flows::{available, checkout_body, new_cart, order_when, place, shopper_with_cart};
use e2e::support::{call, eventually};

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
    assert_eq!(first.status, 202, "{}", first.body);
    let id = first.body["order_id"].as_str().unwrap();
    // The key keeps the order id, not the response: the replay is rebuilt from the order,
    // which has moved on since.
    order_when(&shopper.token, id, |o| o["status"] == "confirmed").await;
    let again = place(&shopper.token, &key, &body).await;

    assert_eq!(again.status, 202);
    assert_eq!(again.body, first.body, "the same response: the order as it was placed");
    assert_eq!((again.body["status"].as_str(), again.body["version"].as_u64()), (Some("pending"), Some(1)));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.header("location"), first.header("location"));
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
    assert!(e2e::support::payment_intents(id).await.is_empty(), "Stripe never saw the order");
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

#[tokio::test]
async fn admins_list_orders_by_status_newest_first_page_after_page_across_the_index_shards() {
    let shoppers = tokio::join!(shopper_with_cart(10, 1), shopper_with_cart(10, 1), shopper_with_cart(10, 1));
    let mut ids = Vec::new();
    for shopper in [&shoppers.0, &shoppers.1, &shoppers.2] {
        let order = checkout_and_wait(shopper, "pm_card_visa", |o| o["status"] == "confirmed").await;
        ids.push(order["order_id"].as_str().unwrap().to_owned());
    }

    let mut listed: Vec<String> = Vec::new();
    let mut cursor = String::new();
    loop {
        let path = format!("/admin/orders?status=confirmed&limit=5&cursor={cursor}");
        let page = call(Method::GET, &path).admin().send().await;
        assert_eq!(page.status, 200, "{}", page.body);
        for order in page.body["items"].as_array().unwrap() {
            assert_eq!(order["status"], "confirmed", "{order}");
            listed.push(order["order_id"].as_str().unwrap().to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }

    let mut newest_first = listed.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    newest_first.dedup();
    assert_eq!(listed, newest_first, "every confirmed order once, newest first");
    assert!(ids.iter().all(|id| listed.contains(id)), "{ids:?} in {listed:?}");
    let pending = call(Method::GET, "/admin/orders?status=pending&limit=100").admin().send().await;
    let pending: Vec<&str> =
        pending.body["items"].as_array().unwrap().iter().filter_map(|o| o["order_id"].as_str()).collect();
    assert!(ids.iter().all(|id| !pending.contains(&id.as_str())), "a confirmed order is not listed as pending");
}

async fn checkout_and_wait(
    shopper: &e2e::flows::Shopper,
    payment_method: &str,
    settled: impl Fn(&Value) -> bool,
) -> Value {
    let placed = place(&shopper.token, &testkit::unique("key"), &checkout_body(&shopper.cart, payment_method)).await;
    assert_eq!(placed.status, 202, "{}", placed.body);
    order_when(&shopper.token, placed.body["order_id"].as_str().unwrap(), settled).await
}

#[tokio::test]
async fn a_paid_order_is_confirmed_with_its_stock_committed_and_its_card_authorized() {
    let shopper = shopper_with_cart(5, 2).await;

    let order = checkout_and_wait(&shopper, "pm_card_visa", |o| o["status"] == "confirmed").await;

    let path: Vec<&str> = order["history"].as_array().unwrap().iter().filter_map(|t| t["status"].as_str()).collect();
    assert_eq!(path, vec!["pending", "reserved", "authorized", "confirmed"]);
    let intents = e2e::support::payment_intents(order["order_id"].as_str().unwrap()).await;
    assert_eq!(intents.len(), 1, "one PaymentIntent: {intents:#?}");
    assert_eq!(intents[0]["status"], "requires_capture", "authorized, not captured");
    assert_eq!(intents[0]["amount"], order["totals"]["total"]["amount"]);
    assert_eq!(order["payment_intent_id"], intents[0]["id"]);
    let committed = eventually(10, || async {
        let stock = call(Method::GET, &format!("/admin/inventory/{}", shopper.sku)).admin().send().await.body;
        (stock["on_hand"] == 3 && stock["reserved"] == 0).then_some(stock)
    })
    .await;
    assert!(committed.is_some(), "the sale left on_hand");
    assert_eq!(available(&shopper.sku).await, 3);
    let emptied = eventually(10, || async {
        let cart = call(Method::GET, &format!("/carts/{}", shopper.cart)).token(&shopper.token).send().await.body;
        (cart["lines"] == json!([])).then_some(cart)
    })
    .await;
    assert!(emptied.is_some(), "the checked-out cart is emptied");
}

#[tokio::test]
async fn a_declined_card_cancels_the_order_and_releases_its_stock() {
    let shopper = shopper_with_cart(5, 2).await;

    let order = checkout_and_wait(&shopper, "pm_card_chargeDeclined", |o| o["status"] == "cancelled").await;

    assert_eq!(order["cancel_reason"], "payment_failed");
    assert_eq!(order["payment_failure"], "card_declined");
    let released = eventually(10, || async { (available(&shopper.sku).await == 5).then_some(()) }).await;
    assert!(released.is_some(), "the reserved units came back");
}

#[tokio::test]
async fn a_card_that_needs_3d_secure_waits_for_the_customer_with_the_client_secret() {
    let shopper = shopper_with_cart(5, 1).await;

    let order =
        checkout_and_wait(&shopper, "pm_card_authenticationRequired", |o| o["status"] == "requires_action").await;

    // The rest of the journey (the challenge passed, failed, or left): tests/shop/three_d_secure.rs.
    let secret = order["payment"]["client_secret"].as_str().unwrap_or_default();
    assert!(secret.starts_with(order["payment_intent_id"].as_str().unwrap()), "{order:#}");
    assert_eq!(order["cancel_reason"], Value::Null);
}

#[tokio::test]
async fn a_customer_cancel_after_confirmation_restocks_and_voids_the_authorization() {
    let shopper = shopper_with_cart(5, 2).await;
    let order = checkout_and_wait(&shopper, "pm_card_visa", |o| o["status"] == "confirmed").await;
    let id = order["order_id"].as_str().unwrap();

    let cancelled = call(Method::POST, &format!("/orders/{id}/cancel")).token(&shopper.token).send().await;

    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert_eq!(cancelled.body["status"], "cancelled");
    assert_eq!(cancelled.body["cancel_reason"], "customer_cancelled");
    let again = call(Method::POST, &format!("/orders/{id}/cancel")).token(&shopper.token).send().await;
    // Fulfillment's ShipmentCancelled may update the order's shipments meanwhile; the
    // cancellation itself is not repeated.
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["history"], cancelled.body["history"], "cancelling twice changes nothing");
    let restocked = eventually(15, || async { (available(&shopper.sku).await == 5).then_some(()) }).await;
    assert!(restocked.is_some(), "the units are back on the shelf");
    let voided = eventually(15, || async {
        let intents = e2e::support::payment_intents(id).await;
        (intents.len() == 1 && intents[0]["status"] == "canceled").then_some(())
    })
    .await;
    assert!(voided.is_some(), "the authorization was voided: {:#?}", e2e::support::payment_intents(id).await);
}

#[tokio::test]
async fn fifty_concurrent_checkouts_for_ten_units_confirm_exactly_ten() {
    let (_, sku) = e2e::flows::product_on_sale(500, "USD").await;
    e2e::flows::stock(&sku, 10).await;
    let mut shoppers = Vec::new();
    for _ in 0..50 {
        let token = testkit::shop().customer_token(&testkit::unique("rush"));
        let cart = new_cart(&token).await;
        e2e::flows::add_when_on_sale(&token, &cart, &sku, 1).await;
        shoppers.push((token, cart));
    }

    let placing: Vec<_> = shoppers
        .into_iter()
        .map(|(token, cart)| {
            tokio::spawn(async move {
                let placed = place(&token, &testkit::unique("key"), &checkout_body(&cart, "pm_card_visa")).await;
                assert_eq!(placed.status, 202, "{}", placed.body);
                (token, placed.body["order_id"].as_str().unwrap().to_owned())
            })
        })
        .collect();
    let mut orders = Vec::new();
    for handle in placing {
        orders.push(handle.await.unwrap());
    }
    let mut finals = Vec::new();
    for (token, id) in &orders {
        let order = order_when(token, id, |o| o["status"] == "confirmed" || o["status"] == "cancelled").await;
        finals.push(order["status"].as_str().unwrap().to_owned());
    }

    assert_eq!(finals.iter().filter(|s| *s == "confirmed").count(), 10, "{finals:?}");
    assert_eq!(finals.iter().filter(|s| *s == "cancelled").count(), 40);
    // Confirmed orders commit their reservations asynchronously (OrderConfirmed → inventory).
    let levels = || async {
        let stock = call(Method::GET, &format!("/admin/inventory/{sku}")).admin().send().await.body;
        (stock["on_hand"].as_u64(), stock["reserved"].as_u64(), stock["available"].as_u64())
    };
    let settled = eventually(20, || async { Some(levels().await).filter(|l| l.1 == Some(0)) }).await;
    assert_eq!(settled, Some((Some(0), Some(0), Some(0))), "sold out, nothing held: {:?}", levels().await);
}
