//! Refunds through payment's admin API (`POST /admin/orders/{id}/refunds`), checked where an admin
//! would check them: at Stripe (the emulator's refunds of the order's PaymentIntent) and on the
//! order (`payment.refunded`, `payment.refunds`). Orders are captured the way staff capture them:
//! the first dispatch through the admin shipments API.

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::{Value, json};

use e2e::flows::{captured, captured_paid_with, confirmed_with_one_shipment, order_when, shopper_with_cart};
use e2e::support::{Call, Reply, call, payment_intents, post_to_stripe, refunds_at_stripe, stripe_event_handled};

use crate::orders::flagged;

const EXCEEDS_CAPTURED: &str = "/problems/refund-exceeds-captured";
const REFUSED: &str = "/problems/refund-refused";
/// Stripe's test payment method whose refunds start `pending` (Stripe ends them later; the
/// emulator when told to, `POST /_test/refunds/{id}/end`).
const PENDING_REFUNDS: &str = "pm_card_pendingRefund";

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

/// Ends a refund Stripe holds `pending`, as the customer's bank does some time later: Stripe then
/// sends `charge.refund.updated` to payment's webhook.
async fn end_at_stripe(stripe_refund_id: &str, status: &str, failure_reason: Option<&str>) {
    let mut form = vec![("status", status)];
    form.extend(failure_reason.map(|reason| ("failure_reason", reason)));
    let ended = post_to_stripe(&format!("/_test/refunds/{stripe_refund_id}/end"), &form).await;
    assert_eq!(ended["status"], status, "{ended}");
}

/// A refund answered 201 while Stripe holds it `pending`: Stripe's id for it.
fn pending_at_stripe(reply: &Reply, order_id: &str, amount: i64) -> String {
    assert_eq!(reply.status, 201, "{}", reply.body);
    let body = &reply.body;
    assert_eq!((body["order_id"].as_str(), body["status"].as_str()), (Some(order_id), Some("pending")), "{body}");
    assert_eq!(body["amount"], json!({ "amount": amount, "currency": "USD" }));
    assert!(body.get("refunded_total").is_none(), "nothing is paid back yet: {body}");
    let made = body["stripe_refund_id"].as_str().unwrap_or_else(|| panic!("Stripe made it: {body}"));
    assert!(made.starts_with("re_"), "{body}");
    made.to_owned()
}

/// Stripe's statuses of the PaymentIntent's refunds by their id.
async fn statuses_at_stripe(intent: &str) -> BTreeMap<String, String> {
    let made = refunds_at_stripe(intent).await;
    made.iter().map(|r| (r["id"].as_str().unwrap().to_owned(), r["status"].as_str().unwrap().to_owned())).collect()
}

fn refunded_on(order: &Value) -> i64 {
    order["payment"]["refunded"]["amount"].as_i64().unwrap_or(0)
}

/// The order (as `token` reads it) once checkout heard the refund `refund_id` is `status`: that
/// refund as the order lists it.
async fn refund_on_order(token: &str, order_id: &str, refund_id: &Value, status: &str) -> (Value, Value) {
    let listed = |o: &Value| -> Option<Value> {
        let refunds = o["payment"]["refunds"].as_array()?;
        refunds.iter().find(|r| &r["refund_id"] == refund_id && r["status"] == status).cloned()
    };
    let order = order_when(token, order_id, |o| listed(o).is_some()).await;
    let refund = listed(&order).unwrap();
    (order, refund)
}

/// The timeline's `event` moments of the order.
fn moments<'a>(order: &'a Value, event: &str) -> Vec<&'a Value> {
    order["timeline"].as_array().unwrap().iter().filter(|m| m["event"] == event).collect()
}

#[tokio::test]
async fn a_refund_stripe_holds_pending_is_shown_pending_and_paid_back_on_the_order_only_once_stripe_says_it_succeeded()
{
    let shopper = shopper_with_cart(5, 1).await;
    let order = captured_paid_with(&shopper, PENDING_REFUNDS).await;
    let (id, intent) = ids(&order);
    let (key, body) = (testkit::unique("key"), json!({ "amount": 600, "reason": "requested_by_customer" }));

    let asked = refund(&id, &key, &body).send().await;
    let made = pending_at_stripe(&asked, &id, 600);
    let while_pending = refund(&id, &key, &body).send().await;
    // Payment heard of the pending refund from Stripe too (charge.refunded, read back) before the
    // order is read: neither the answer nor the webhook may have paid anything back.
    stripe_event_handled("charge.refunded", &intent).await;
    let admin = testkit::shop().admin_token();
    let (before, listed) = refund_on_order(&admin, &id, &asked.body["id"], "pending").await;
    let as_shopper = call(Method::GET, &format!("/orders/{id}")).token(&shopper.token).send().await.body;
    end_at_stripe(&made, "succeeded", None).await;

    assert_eq!(statuses_at_stripe(&intent).await, BTreeMap::from([(made.clone(), "succeeded".to_owned())]));
    // While Stripe held it, the retry read it back still pending; the order listed it pending
    // (once, however often payment read it back), with nothing paid back yet.
    assert_eq!((while_pending.status.as_u16(), &while_pending.body), (201, &asked.body), "the same refund");
    assert_eq!(before["payment"]["refunds"].as_array().map(Vec::len), Some(1), "{before:#}");
    assert_eq!((&listed["stripe_refund_id"], amount(&listed["amount"])), (&json!(made), 600), "{before:#}");
    assert_eq!(listed["reason"], "requested_by_customer");
    assert_eq!(before["payment"]["refunded"], json!({ "amount": 0, "currency": "USD" }), "{before:#}");
    let pending_moment = moments(&before, "refund_pending");
    assert_eq!(pending_moment.len(), 1, "{before:#}");
    assert_eq!((&pending_moment[0]["at"], amount(&pending_moment[0]["amount"])), (&listed["pending_at"], 600));
    assert!(moments(&before, "refunded").is_empty(), "not paid back yet: {before:#}");
    assert_eq!(as_shopper["payment"]["refunds"][0]["status"], "pending", "the shopper sees it too: {as_shopper:#}");
    // Once Stripe says succeeded (charge.refund.updated, read back): RefundIssued reached checkout.
    let shown = order_when(&admin, &id, |o| refunded_on(o) == 600).await;
    let refunds = shown["payment"]["refunds"].as_array().unwrap();
    assert_eq!(refunds.len(), 1, "{shown:#}");
    assert_eq!((&refunds[0]["refund_id"], &refunds[0]["status"]), (&asked.body["id"], &json!("succeeded")));
    assert!(refunds[0].get("failure_reason").is_none(), "{shown:#}");
    assert_eq!(refunds[0]["pending_at"], listed["pending_at"], "when it went pending stays: {shown:#}");
    assert_eq!((moments(&shown, "refund_pending").len(), moments(&shown, "refunded").len()), (1, 1), "{shown:#}");
    assert_eq!(shown["flags"], json!([]), "{shown:#}");
    // The admin's retry now answers it succeeded, with the order's refunded total.
    assert_refund(&refund(&id, &key, &body).send().await, &id, 600, 600);
}

#[tokio::test]
async fn a_refund_that_fails_after_pending_flags_the_order_and_its_amount_can_be_refunded_again() {
    let shopper = shopper_with_cart(5, 1).await;
    let order = captured_paid_with(&shopper, PENDING_REFUNDS).await;
    let (id, intent) = ids(&order);
    let total = amount(&order["payment"]["captured"]);
    let (key, body) = (testkit::unique("key"), json!({ "reason": "requested_by_customer" }));

    let asked = refund(&id, &key, &body).send().await;
    let made = pending_at_stripe(&asked, &id, total);
    // On the order, as an admin reads it: pending first, nothing paid back, nobody flagged.
    let admin = testkit::shop().admin_token();
    let (pending, _) = refund_on_order(&admin, &id, &asked.body["id"], "pending").await;
    assert_eq!((refunded_on(&pending), &pending["flags"]), (0, &json!([])), "{pending:#}");
    end_at_stripe(&made, "failed", Some("expired_or_canceled_card")).await;

    // Then the refund failed with Stripe's reason, nothing paid back.
    let shown = order_when(&admin, &id, |o| o["payment"]["refunds"][0]["status"] == "failed").await;
    let failed = &shown["payment"]["refunds"][0];
    assert_eq!(failed["refund_id"], asked.body["id"], "{shown:#}");
    assert_eq!(failed["failure_reason"], "expired_or_canceled_card", "{shown:#}");
    assert_eq!(amount(&failed["amount"]), total);
    assert_eq!(refunded_on(&shown), 0, "{shown:#}");
    assert_eq!(shown["flags"], json!(["refund_failed"]), "{shown:#}");
    assert_eq!(shown["payment"]["refunds"].as_array().map(Vec::len), Some(1), "replaced, not added: {shown:#}");
    assert!(moments(&shown, "refunded").is_empty(), "never paid back: {shown:#}");
    assert_eq!(moments(&shown, "refund_pending").len(), 1, "{shown:#}");
    let moment = shown["timeline"].as_array().unwrap().iter().find(|m| m["event"] == "refund_failed").cloned();
    assert_eq!(moment.map(|m| m["reason"].clone()), Some(json!("expired_or_canceled_card")), "{shown:#}");
    assert!(flagged("refund_failed", &id).await.is_some(), "listed under flag=refund_failed");
    // The admin's retry with the same key says it failed; a new refund may take the whole amount.
    let replayed = refund(&id, &key, &body).send().await;
    assert_eq!(replayed.expect_problem(422)["type"], REFUSED, "{}", replayed.body);
    let again = refund(&id, &testkit::unique("key"), &body).send().await;
    let made_again = pending_at_stripe(&again, &id, total);
    end_at_stripe(&made_again, "succeeded", None).await;
    let paid = order_when(&admin, &id, |o| refunded_on(o) == total).await;
    let states: Vec<&Value> = paid["payment"]["refunds"].as_array().unwrap().iter().map(|r| &r["status"]).collect();
    assert_eq!(states, [&json!("failed"), &json!("succeeded")], "{paid:#}");
    let at_stripe = statuses_at_stripe(&intent).await;
    let expected = [(made, "failed"), (made_again, "succeeded")].map(|(id, status)| (id, status.to_owned()));
    assert_eq!(at_stripe, BTreeMap::from(expected));
}

#[tokio::test]
async fn a_refund_stripe_fails_after_it_succeeded_is_taken_off_the_order_flagged_and_refundable_again() {
    let shopper = shopper_with_cart(5, 1).await;
    let order = captured(&shopper).await;
    let (id, intent) = ids(&order);
    let total = amount(&order["payment"]["captured"]);
    let (key, body) = (testkit::unique("key"), json!({ "reason": "requested_by_customer" }));
    let asked = refund(&id, &key, &body).send().await;
    assert_refund(&asked, &id, total, total);
    let admin = testkit::shop().admin_token();
    order_when(&admin, &id, |o| refunded_on(o) == total).await;
    let made = asked.body["stripe_refund_id"].as_str().unwrap().to_owned();

    // Stripe's pm_card_refundFail: the refund succeeded, then the card's account was closed.
    end_at_stripe(&made, "failed", Some("expired_or_canceled_card")).await;

    let shown = order_when(&admin, &id, |o| o["payment"]["refunds"][0]["status"] == "failed").await;
    assert_eq!(shown["payment"]["refunds"][0]["failure_reason"], "expired_or_canceled_card", "{shown:#}");
    assert_eq!(refunded_on(&shown), 0, "nothing was paid back: {shown:#}");
    assert_eq!(shown["flags"], json!(["refund_failed"]), "{shown:#}");
    // The whole captured amount is refundable again, and is paid back by a new refund.
    let again = refund(&id, &testkit::unique("key"), &body).send().await;
    assert_refund(&again, &id, total, total);
    let paid = order_when(&admin, &id, |o| refunded_on(o) == total).await;
    let states: Vec<&Value> = paid["payment"]["refunds"].as_array().unwrap().iter().map(|r| &r["status"]).collect();
    assert_eq!(states, [&json!("failed"), &json!("succeeded")], "{paid:#}");
    let at_stripe = statuses_at_stripe(&intent).await;
    let made_again = again.body["stripe_refund_id"].as_str().unwrap().to_owned();
    let expected = [(made, "failed"), (made_again, "succeeded")].map(|(id, status)| (id, status.to_owned()));
    assert_eq!(at_stripe, BTreeMap::from(expected));
}

#[tokio::test]
async fn a_refund_stripe_answers_500_is_made_once_when_the_admin_retries_with_its_key() {
    let shopper = shopper_with_cart(5, 1).await;
    let order = captured(&shopper).await;
    let (id, intent) = ids(&order);
    let (key, body) = (testkit::unique("key"), json!({ "amount": 700, "reason": "requested_by_customer" }));
    post_to_stripe(&format!("/_test/payment_intents/{intent}/fail_next_refund"), &[]).await;

    let outage = refund(&id, &key, &body).send().await;
    let during = refunds_at_stripe(&intent).await;
    let retried = refund(&id, &key, &body).send().await;
    let again = refund(&id, &key, &body).send().await;

    // A 503 that says to try again with the same key, not an opaque 500.
    let told = (outage.status.as_u16(), outage.body["type"].as_str(), outage.headers.get("retry-after").is_some());
    assert_eq!(told, (503, Some("/problems/refund-unavailable"), true), "{} {}", outage.status, outage.body);
    assert!(during.is_empty(), "Stripe refunded nothing on its 500: {during:#?}");
    assert_refund(&retried, &id, 700, 700);
    assert_eq!((again.status.as_u16(), &again.body), (201, &retried.body), "the same refund");
    let made = at_stripe(&intent).await;
    let ours = retried.body["id"].as_str().unwrap().to_owned();
    let expected = (retried.body["stripe_refund_id"].as_str().unwrap().to_owned(), (700, ours));
    assert_eq!(made, BTreeMap::from([expected]), "exactly one refund at Stripe");
    let shown = with_refunds(&id, 1).await;
    assert_eq!((refunded_on(&shown), &shown["payment"]["refunds"][0]["status"]), (700, &json!("succeeded")));
}
