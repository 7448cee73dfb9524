//! 3-D Secure and Stripe's webhooks: an order whose card needs the customer's challenge waits in
//! `requires_action`, and moves on when Stripe says so through `POST /webhooks/stripe` (the Stripe
//! emulator delivers its webhooks there, signed with the local secret).

use reqwest::Method;
use serde_json::Value;

use e2e::flows::{Shopper, available, checkout_body, order_when, place, shopper_with_cart};
use e2e::support::{call, eventually, stripe_signature as signature};

/// The `StripeWebhookSigningSecret` the local cloud sets (the template has no default), which
/// both the emulator and the webhook function use.
const LOCAL_SIGNING_SECRET: &str = localcloud::LOCAL_WEBHOOK_SIGNING_SECRET;

/// Places an order paid with the 3-D Secure test card and waits until it asks for the challenge.
async fn awaiting_challenge(shopper: &Shopper) -> Value {
    let body = checkout_body(&shopper.cart, "pm_card_authenticationRequired");
    let placed = place(&shopper.token, &testkit::unique("key"), &body).await;
    assert_eq!(placed.status, 202, "{}", placed.body);
    order_when(&shopper.token, placed.body["order_id"].as_str().unwrap(), |o| o["status"] == "requires_action").await
}

/// The customer's bank challenge at the emulator (what Stripe.js `handleNextAction` leads to).
async fn challenge(order: &Value, success: bool) {
    let stripe = testkit::shop().stripe_url.clone().expect("the local cloud runs a Stripe emulator");
    let intent = order["payment_intent_id"].as_str().unwrap();
    let secret = order["payment"]["client_secret"].as_str().unwrap();
    let reply = reqwest::Client::new()
        .post(format!("{stripe}/v1/payment_intents/{intent}/_authenticate"))
        .bearer_auth("sk_test_local")
        .form(&[("client_secret", secret), ("success", if success { "true" } else { "false" })])
        .send()
        .await
        .unwrap();
    assert!(reply.status().is_success(), "{}", reply.text().await.unwrap());
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Stripe's event that the order's amount is held, as Stripe would send it.
fn capturable_event(order: &Value) -> String {
    serde_json::json!({
        "id": testkit::unique("evt_e2e").replace('-', "_"),
        "object": "event",
        "type": "payment_intent.amount_capturable_updated",
        "created": now(),
        "data": { "object": {
            "id": order["payment_intent_id"], "object": "payment_intent", "status": "requires_capture",
            "metadata": { "order_id": order["order_id"] }
        }}
    })
    .to_string()
}

async fn deliver(body: &str, signature: Option<String>) -> e2e::support::Reply {
    let mut request = call(Method::POST, "/webhooks/stripe");
    if let Some(signature) = signature {
        request = request.header("stripe-signature", &signature);
    }
    request.raw("application/json", body.to_owned()).send().await
}

fn statuses(order: &Value) -> Vec<String> {
    order["history"].as_array().unwrap().iter().map(|t| t["status"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn a_challenge_the_customer_passes_confirms_the_order_when_stripe_says_so() {
    let shopper = shopper_with_cart(5, 1).await;
    let order = awaiting_challenge(&shopper).await;
    let id = order["order_id"].as_str().unwrap();

    challenge(&order, true).await;

    let confirmed = order_when(&shopper.token, id, |o| o["status"] == "confirmed").await;
    assert_eq!(confirmed["payment"]["authorized"], order["totals"]["total"]);
    assert_eq!(confirmed["payment"].get("client_secret"), None, "the secret is gone once the challenge is over");
    let intents = e2e::support::payment_intents(id).await;
    assert_eq!(intents.len(), 1);
    assert_eq!(intents[0]["status"], "requires_capture", "held, to be captured on dispatch");
}

#[tokio::test]
async fn a_challenge_the_customer_fails_cancels_the_order_and_returns_the_stock() {
    let shopper = shopper_with_cart(5, 2).await;
    let order = awaiting_challenge(&shopper).await;
    let id = order["order_id"].as_str().unwrap();

    challenge(&order, false).await;

    let cancelled = order_when(&shopper.token, id, |o| o["status"] == "cancelled").await;
    assert_eq!(cancelled["cancel_reason"], "payment_failed");
    assert_eq!(cancelled["payment_failure"], "payment_intent_authentication_failure");
    let restocked = eventually(15, || async { (available(&shopper.sku).await == 5).then_some(()) }).await;
    assert!(restocked.is_some(), "the reserved units came back");
}

#[tokio::test]
async fn a_webhook_replayed_five_times_has_one_effect() {
    let shopper = shopper_with_cart(5, 1).await;
    let order = awaiting_challenge(&shopper).await;
    let id = order["order_id"].as_str().unwrap();
    // The amount is really held at Stripe; the emulator's own webhook races our replays.
    challenge(&order, true).await;
    let body = capturable_event(&order);

    let mut replies = Vec::new();
    for _ in 0..5 {
        replies.push(deliver(&body, Some(signature(LOCAL_SIGNING_SECRET, now(), &body))).await.status.as_u16());
    }

    assert_eq!(replies, vec![200; 5]);
    let confirmed = order_when(&shopper.token, id, |o| o["status"] == "confirmed").await;
    let path = statuses(&confirmed);
    assert_eq!(path.iter().filter(|s| *s == "confirmed").count(), 1, "{path:?}");
    assert_eq!(path.iter().filter(|s| *s == "authorized").count(), 1, "{path:?}");
}

#[tokio::test]
async fn forged_stale_and_unsigned_webhooks_are_refused_and_change_nothing() {
    let shopper = shopper_with_cart(5, 1).await;
    let order = awaiting_challenge(&shopper).await;
    let id = order["order_id"].as_str().unwrap();
    let body = capturable_event(&order);

    let forged = deliver(&body, Some(signature("whsec_attacker", now(), &body))).await;
    let stale = deliver(&body, Some(signature(LOCAL_SIGNING_SECRET, now() - 600, &body))).await;
    let unsigned = deliver(&body, None).await;

    for reply in [&forged, &stale, &unsigned] {
        reply.expect_problem(400);
    }
    let after = call(Method::GET, &format!("/orders/{id}")).token(&shopper.token).send().await.body;
    assert_eq!(after["status"], "requires_action");
    assert_eq!(after["history"], order["history"], "nothing changed");
}
