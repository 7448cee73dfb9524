//! Refunds through payment's admin API (`POST /admin/orders/{id}/refunds`), checked where an admin
//! would check them: at Stripe (the emulator's refunds of the order's PaymentIntent) and on the
//! order (`payment.refunded`, `payment.refunds`). Orders are captured the way staff capture them:
//! the first dispatch through the admin shipments API.

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::{Value, json};

use e2e::flows::{captured, confirmed_with_one_shipment, order_when, shopper_with_cart};
use e2e::support::{Call, Reply, call, payment_intents, refunds_at_stripe};

const EXCEEDS_CAPTURED: &str = "/problems/refund-exceeds-captured";

fn refund(order_id: &str, key: &str, body: &Value) -> Call {
    call(Method::POST, &format!("/admin/orders/{order_id}/refunds")).admin().header("idempotency-key", key).json(body)
}

fn amount(money: &Value) -> i64 {
    money["amount"].as_i64().unwrap_or_else(|| panic!("not money: {money}"))
}

/// The order's id and PaymentIntent.
fn ids(order: &Value) -> (String, String) {
    (order["order_id"].as_str().unwrap().to_owned(), order["payment_intent_id"].as_str().unwrap().to_owned())
}

/// The order as an admin sees it once checkout has heard of `count` refunds.
async fn with_refunds(order_id: &str, count: usize) -> Value {
    let admin = testkit::shop().admin_token();
    order_when(&admin, order_id, |o| o["payment"]["refunds"].as_array().is_some_and(|r| r.len() == count)).await
}

/// Stripe's refunds of the PaymentIntent by their id: (amount, our refund id in the metadata).
async fn at_stripe(intent: &str) -> BTreeMap<String, (i64, String)> {
    refunds_at_stripe(intent)
        .await
        .iter()
        .map(|made| {
            assert_eq!(made["status"], "succeeded", "{made}");
            let ours = made["metadata"]["refund_id"].as_str().unwrap_or("-").to_owned();
            (made["id"].as_str().unwrap().to_owned(), (made["amount"].as_i64().unwrap(), ours))
        })
        .collect()
}

fn assert_refund(reply: &Reply, order_id: &str, refunded: i64, refunded_total: i64) {
    assert_eq!(reply.status, 201, "{}", reply.body);
    let body = &reply.body;
    assert!(body["id"].as_str().is_some_and(|id| id.starts_with("rfd_")), "{body}");
    assert!(body["stripe_refund_id"].as_str().is_some_and(|id| id.starts_with("re_")), "{body}");
    assert_eq!((body["order_id"].as_str(), body["status"].as_str()), (Some(order_id), Some("succeeded")), "{body}");
    assert_eq!(body["amount"], json!({ "amount": refunded, "currency": "USD" }));
    assert_eq!(body["refunded_total"], json!({ "amount": refunded_total, "currency": "USD" }));
}

#[tokio::test]
async fn a_partial_then_a_full_refund_are_made_at_stripe_once_each_and_shown_on_the_order() {
    let shopper = shopper_with_cart(5, 2).await;
    let order = captured(&shopper).await;
    let (id, intent) = ids(&order);
    let total = amount(&order["payment"]["captured"]);
    assert_eq!(total, amount(&order["totals"]["total"]), "the whole total was captured");

    let partial_body = json!({ "amount": 500, "reason": "requested_by_customer", "note": "arrived scratched" });
    let partial = refund(&id, &testkit::unique("key"), &partial_body).send().await;
    let rest = refund(&id, &testkit::unique("key"), &json!({ "reason": "duplicate" })).send().await;
    let more = refund(&id, &testkit::unique("key"), &json!({ "amount": 1, "reason": "other" })).send().await;

    assert_refund(&partial, &id, 500, 500);
    assert_eq!(
        (partial.body["reason"].as_str(), partial.body["note"].as_str()),
        (Some("requested_by_customer"), Some("arrived scratched"))
    );
    assert_refund(&rest, &id, total - 500, total);
    assert_eq!(rest.body["reason"], "duplicate");
    assert_eq!(more.expect_problem(422)["type"], EXCEEDS_CAPTURED, "nothing is left: {}", more.body);
    // At Stripe: exactly these two refunds, adding up to what was captured.
    let made = at_stripe(&intent).await;
    let ours = |reply: &Reply| {
        let body = &reply.body;
        (
            body["stripe_refund_id"].as_str().unwrap().to_owned(),
            (amount(&body["amount"]), body["id"].as_str().unwrap().to_owned()),
        )
    };
    assert_eq!(made, BTreeMap::from([ours(&partial), ours(&rest)]), "one refund at Stripe per refund");
    assert_eq!(made.values().map(|(refunded, _)| refunded).sum::<i64>(), total);
    let pi = &payment_intents(&id).await[0];
    assert_eq!(pi["amount_received"], total, "{pi}");
    // On the order, as an admin reads it: both refunds, the sum, the timeline.
    let shown = with_refunds(&id, 2).await;
    assert_eq!(amount(&shown["payment"]["refunded"]), total);
    let listed: BTreeMap<String, (i64, String)> = shown["payment"]["refunds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["refund_id"].as_str().unwrap().to_owned(),
                (amount(&r["amount"]), r["reason"].as_str().unwrap().to_owned()),
            )
        })
        .collect();
    let expected = [(&partial, "requested_by_customer"), (&rest, "duplicate")].map(|(reply, reason)| {
        (reply.body["id"].as_str().unwrap().to_owned(), (amount(&reply.body["amount"]), reason.to_owned()))
    });
    assert_eq!(listed, BTreeMap::from(expected));
    let refunded_events = shown["timeline"].as_array().unwrap().iter().filter(|e| e["event"] == "refunded").count();
    assert_eq!(refunded_events, 2, "{:#}", shown["timeline"]);
}

#[tokio::test]
async fn a_refund_of_more_than_was_captured_is_refused_and_nothing_is_refunded_at_stripe() {
    let shopper = shopper_with_cart(5, 1).await;
    let order = captured(&shopper).await;
    let (id, intent) = ids(&order);
    let total = amount(&order["payment"]["captured"]);

    let over = refund(&id, &testkit::unique("key"), &json!({ "amount": total + 1, "reason": "other" })).send().await;
    let refused_at_stripe = refunds_at_stripe(&intent).await;
    let all = refund(&id, &testkit::unique("key"), &json!({ "amount": total, "reason": "other" })).send().await;

    let problem = over.expect_problem(422);
    assert_eq!(problem["type"], EXCEEDS_CAPTURED, "{problem}");
    assert_eq!(over.pointers(), vec!["/amount"], "{problem}");
    assert!(refused_at_stripe.is_empty(), "nothing refunded at Stripe: {refused_at_stripe:#?}");
    assert_refund(&all, &id, total, total);
    assert_eq!(at_stripe(&intent).await.len(), 1, "the refused refund held nothing back");
}

#[tokio::test]
async fn a_refund_replayed_with_its_idempotency_key_answers_the_same_refund_and_refunds_once_at_stripe() {
    let shopper = shopper_with_cart(5, 1).await;
    let order = captured(&shopper).await;
    let (id, intent) = ids(&order);
    let (key, body) = (testkit::unique("key"), json!({ "amount": 700, "reason": "requested_by_customer" }));

    // An admin's client retrying while its first request is still being answered, then once more.
    let (first, a, b, c) = tokio::join!(
        refund(&id, &key, &body).send(),
        refund(&id, &key, &body).send(),
        refund(&id, &key, &body).send(),
        refund(&id, &key, &body).send()
    );
    let again = refund(&id, &key, &body).send().await;
    let other_body = refund(&id, &key, &json!({ "amount": 1, "reason": "other" })).send().await;

    assert_refund(&again, &id, 700, 700);
    for replay in [&first, &a, &b, &c] {
        assert_eq!((replay.status.as_u16(), &replay.body), (201, &again.body), "the same refund");
    }
    let problem = other_body.expect_problem(422);
    assert_eq!(other_body.pointers(), vec!["header:Idempotency-Key"], "{problem}");
    let made = at_stripe(&intent).await;
    assert_eq!(made.len(), 1, "one refund at Stripe: {made:?}");
    assert_eq!(made.values().next().map(|(refunded, _)| *refunded), Some(700));
    let shown = with_refunds(&id, 1).await;
    assert_eq!(amount(&shown["payment"]["refunded"]), 700);
}

#[tokio::test]
async fn refunds_are_refused_before_the_capture_for_an_unknown_order_and_to_customers() {
    let shopper = shopper_with_cart(5, 1).await;
    let order = confirmed_with_one_shipment(&shopper).await;
    let (id, intent) = ids(&order);
    let body = json!({ "reason": "requested_by_customer" });

    let before_capture = refund(&id, &testkit::unique("key"), &body).send().await;
    let unknown = refund("ord_01JD4X6Z8Q9R2S3T4V5W6X7Y8Z", &testkit::unique("key"), &body).send().await;
    let malformed = refund("not-an-order", &testkit::unique("key"), &body).send().await;
    let without_key = call(Method::POST, &format!("/admin/orders/{id}/refunds")).admin().json(&body).send().await;
    let as_owner = call(Method::POST, &format!("/admin/orders/{id}/refunds"))
        .token(&shopper.token)
        .header("idempotency-key", &testkit::unique("key"))
        .json(&body)
        .send()
        .await;

    let problem = before_capture.expect_problem(409);
    assert_eq!(problem["type"], "/problems/refund-before-capture", "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("cancel"), "it says what to do instead: {problem}");
    unknown.expect_problem(404);
    malformed.expect_problem(404);
    assert_eq!(without_key.expect_problem(400)["errors"][0]["pointer"], "header:Idempotency-Key");
    as_owner.expect_problem(403);
    assert!(refunds_at_stripe(&intent).await.is_empty());
    let pi = &payment_intents(&id).await[0];
    assert_eq!(pi["status"], "requires_capture", "the authorization is untouched: {pi}");
    let seen = call(Method::GET, &format!("/orders/{id}")).admin().send().await.body;
    assert_eq!((&seen["payment"]["refunded"], &seen["payment"]["refunds"]), (&Value::Null, &json!([])), "{seen}");
}
