//! The order after its confirmation: it follows its shipments and the capture, refuses a cancel
//! once a shipment has left, and flags what an admin must see.
//!
//! Fulfillment runs in this stack, so every confirmed order gets its real shipments (one per
//! warehouse its units come from). The tests read their ids from the order and either move them
//! through fulfillment's admin API (the whole lifecycle) or publish the shipment and payment
//! events themselves, in orders the API cannot produce (a delivery before its dispatch).

use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use domain_events::Event;
use domain_events::fulfillment::{ShipmentDelivered, ShipmentDispatched};
use domain_events::payment::{PaymentCaptureFailed, PaymentCaptured};
use e2e::flows::{
    Shopper, add_when_on_sale, available, captured, checkout_body, new_cart, order_when, place, product_on_sale,
    shopper_with_cart,
};
use e2e::support::{call, eventually, handled_by, post_to_stripe, publish};
use kernel::{Money, OrderId, ShipmentId};

/// A warehouse of this test only.
fn warehouse(name: &str) -> String {
    testkit::unique(name).to_lowercase().replace('_', "-")
}

/// A shopper whose cart holds 2 units of a SKU with 1 unit in each of two warehouses: the order
/// ships in two shipments.
async fn split_shopper() -> Shopper {
    let token = testkit::shop().customer_token(&testkit::unique("buyer"));
    let (_, sku) = product_on_sale(1999, "USD").await;
    for warehouse in [warehouse("east"), warehouse("west")] {
        let body = json!({ "warehouse": warehouse, "on_hand": 1 });
        let reply = call(Method::PUT, &format!("/admin/inventory/{sku}")).admin().json(&body).send().await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let cart = new_cart(&token).await;
    add_when_on_sale(&token, &cart, &sku, 2).await;
    Shopper { token, cart, sku }
}

/// Places the shopper's cart and waits until the order is confirmed and checkout has heard of
/// its `shipments` shipments.
async fn confirmed_with_shipments(shopper: &Shopper, shipments: usize) -> (String, Value) {
    let placed = place(&shopper.token, &testkit::unique("key"), &checkout_body(&shopper.cart, "pm_card_visa")).await;
    assert_eq!(placed.status, 202, "{}", placed.body);
    let id = placed.body["order_id"].as_str().unwrap().to_owned();
    let order = order_when(&shopper.token, &id, |o| {
        o["status"] == "confirmed" && o["shipments"].as_array().is_some_and(|s| s.len() == shipments)
    })
    .await;
    (id, order)
}

fn shipment_ids(order: &Value) -> Vec<String> {
    order["shipments"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect()
}

fn shipment<'a>(order: &'a Value, id: &str) -> &'a Value {
    order["shipments"].as_array().unwrap().iter().find(|s| s["id"] == id).unwrap()
}

fn events_of(order: &Value) -> Vec<String> {
    order["timeline"].as_array().unwrap().iter().map(|m| m["event"].as_str().unwrap().to_owned()).collect()
}

/// Every timeline entry has a time, and they come oldest first.
fn assert_timeline_in_order(order: &Value) {
    let times: Vec<OffsetDateTime> = order["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| OffsetDateTime::parse(m["at"].as_str().expect("a timestamp"), &Rfc3339).unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest first: {:#}", order["timeline"]);
}

fn now() -> String {
    OffsetDateTime::now_utc().format(&Rfc3339).unwrap()
}

fn total(order: &Value) -> Money {
    serde_json::from_value(order["totals"]["total"].clone()).unwrap()
}

async fn cancel(token: &str, id: &str) -> e2e::support::Reply {
    call(Method::POST, &format!("/orders/{id}/cancel")).token(token).send().await
}

/// The cancel is refused as `already-shipped` and changes nothing.
async fn assert_cancel_refused(shopper: &Shopper, id: &str, status: &str) {
    let refused = cancel(&shopper.token, id).await;
    let problem = refused.expect_problem(409);
    assert_eq!(problem["type"], "/problems/already-shipped", "{problem}");
    let order = call(Method::GET, &format!("/orders/{id}")).token(&shopper.token).send().await.body;
    assert_eq!((order["status"].as_str(), &order["cancel_reason"]), (Some(status), &Value::Null));
    assert!(!events_of(&order).contains(&"cancelled".to_owned()));
}

fn admin_post(path: &str, body: &Value) -> e2e::support::Call {
    call(Method::POST, path).admin().json(body)
}

#[tokio::test]
async fn an_order_follows_its_two_shipments_through_the_admin_api_from_confirmed_to_delivered() {
    let shopper = split_shopper().await;
    let (id, order) = confirmed_with_shipments(&shopper, 2).await;
    let statuses: Vec<_> = order["shipments"].as_array().unwrap().iter().map(|s| s["status"].clone()).collect();
    assert_eq!(statuses, vec![json!("pending"), json!("pending")]);
    assert_eq!(order["payment"]["authorized"], json!(total(&order)));
    assert_eq!(order["payment"]["captured"], Value::Null);
    let ids = shipment_ids(&order);
    let tracking = |n: usize| json!({ "carrier": "ups", "tracking_number": format!("1Z{n}"), "tracking_url": format!("https://ups.example.com/t/1Z{n}") });

    let dispatched = admin_post(&format!("/admin/shipments/{}/dispatch", ids[0]), &tracking(0)).send().await;
    assert_eq!(dispatched.status, 200, "{}", dispatched.body);
    let partially = order_when(&shopper.token, &id, |o| o["status"] == "partially_shipped").await;
    assert_cancel_refused(&shopper, &id, "partially_shipped").await;
    let captured = order_when(&shopper.token, &id, |o| !o["payment"]["captured"].is_null()).await;
    for (n, shipment_id) in ids.iter().enumerate().skip(1) {
        let reply = admin_post(&format!("/admin/shipments/{shipment_id}/dispatch"), &tracking(n)).send().await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    order_when(&shopper.token, &id, |o| o["status"] == "shipped").await;
    for shipment_id in &ids {
        let reply = call(Method::POST, &format!("/admin/shipments/{shipment_id}/deliver")).admin().send().await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let delivered = order_when(&shopper.token, &id, |o| o["status"] == "delivered").await;

    let first = shipment(&partially, &ids[0]);
    assert_eq!((first["status"].as_str(), first["carrier"].as_str()), (Some("dispatched"), Some("ups")));
    assert_eq!(first["tracking_url"], "https://ups.example.com/t/1Z0");
    assert_eq!(captured["payment"]["captured"], json!(total(&order)), "the whole total on the first dispatch");
    for shipment_id in &ids {
        let shipment = shipment(&delivered, shipment_id);
        assert_eq!(shipment["status"], "delivered");
        assert!(shipment["warehouse"].is_string() && shipment["lines"][0]["quantity"] == 1, "{shipment}");
        assert!(shipment["dispatched_at"].is_string() && shipment["delivered_at"].is_string(), "{shipment}");
    }
    let events = events_of(&delivered);
    for step in
        ["placed", "reserved", "authorized", "confirmed", "partially_shipped", "shipped", "delivered", "captured"]
    {
        assert_eq!(events.iter().filter(|e| *e == step).count(), 1, "{step} once in {events:?}");
    }
    assert_eq!(events.iter().filter(|e| *e == "shipment_dispatched").count(), 2, "{events:?}");
    assert_eq!(events.iter().filter(|e| *e == "shipment_delivered").count(), 2, "{events:?}");
    assert_eq!(events.last().map(String::as_str), Some("delivered"));
    assert_timeline_in_order(&delivered);
    assert!(delivered.get("flags").is_none(), "flags are for admins");
    // At Stripe: one PaymentIntent, captured once, for the whole total (checkout's view would
    // hide a second capture: it ignores a repeated PaymentCaptured).
    let intents = e2e::support::payment_intents(&id).await;
    assert_eq!(intents.len(), 1, "{intents:?}");
    assert_eq!(intents[0]["status"], "succeeded");
    assert_eq!(intents[0]["amount_received"], order["totals"]["total"]["amount"], "captured once, in full");
}

#[tokio::test]
async fn shipment_and_capture_events_arriving_out_of_order_still_add_up_to_delivered() {
    let shopper = split_shopper().await;
    let (id, order) = confirmed_with_shipments(&shopper, 2).await;
    let order_id: OrderId = id.parse().unwrap();
    let ids = shipment_ids(&order);
    let (first, second): (ShipmentId, ShipmentId) = (ids[0].parse().unwrap(), ids[1].parse().unwrap());
    let dispatch = |shipment_id: ShipmentId, n: u32| {
        Event::ShipmentDispatched(ShipmentDispatched {
            order_id,
            shipment_id,
            shipment_count: 2,
            warehouse: "anywhere".into(),
            carrier: "dhl".into(),
            tracking_number: format!("JD{n}"),
            tracking_url: None,
            dispatched_at: now(),
        })
    };
    let deliver = |shipment_id: ShipmentId| {
        Event::ShipmentDelivered(ShipmentDelivered { order_id, shipment_id, shipment_count: 2, delivered_at: now() })
    };

    // The second shipment's delivery overtakes its dispatch: it left, so the order is partly shipped.
    publish(deliver(second), &id).await;
    let partially = order_when(&shopper.token, &id, |o| o["status"] == "partially_shipped").await;
    assert_cancel_refused(&shopper, &id, "partially_shipped").await;
    let payment_intent_id = order["payment_intent_id"].as_str().unwrap().to_owned();
    let capture = Event::PaymentCaptured(PaymentCaptured { order_id, payment_intent_id, amount: total(&order) });
    let capture = publish(capture, &id).await;
    handled_by("CheckoutTable", &[&capture]).await;
    let captured = call(Method::GET, &format!("/orders/{id}")).token(&shopper.token).send().await.body;
    publish(dispatch(first, 1), &id).await;
    order_when(&shopper.token, &id, |o| o["status"] == "shipped").await;
    publish(deliver(first), &id).await;
    order_when(&shopper.token, &id, |o| o["status"] == "delivered").await;
    let late = publish(dispatch(second, 2), &id).await;
    handled_by("CheckoutTable", &[&late]).await;
    let delivered = call(Method::GET, &format!("/orders/{id}")).token(&shopper.token).send().await.body;

    let early = shipment(&partially, &ids[1]);
    assert_eq!((early["status"].as_str(), &early["carrier"]), (Some("delivered"), &Value::Null));
    assert_eq!(captured["payment"]["captured"], json!(total(&order)));
    assert_eq!(captured["status"], "partially_shipped", "a capture does not move the status");
    let second_now = shipment(&delivered, &ids[1]);
    assert_eq!(delivered["status"], "delivered", "the late dispatch moves nothing back");
    assert_eq!(
        (second_now["status"].as_str(), second_now["tracking_number"].as_str()),
        (Some("delivered"), Some("JD2"))
    );
    let events = events_of(&delivered);
    assert_eq!(events.iter().filter(|e| *e == "shipment_dispatched").count(), 2, "{events:?}");
    assert_eq!(events.iter().filter(|e| *e == "captured").count(), 1, "{events:?}");
    assert_timeline_in_order(&delivered);
}

#[tokio::test]
async fn a_cancel_before_any_dispatch_still_cancels_and_its_shipment_is_cancelled_with_it() {
    let shopper = shopper_with_cart(10, 1).await;
    let (id, _) = confirmed_with_shipments(&shopper, 1).await;

    let cancelled = cancel(&shopper.token, &id).await;

    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert_eq!(
        (cancelled.body["status"].as_str(), cancelled.body["cancel_reason"].as_str()),
        (Some("cancelled"), Some("customer_cancelled"))
    );
    let order = order_when(&shopper.token, &id, |o| o["shipments"][0]["status"] == "cancelled").await;
    assert_eq!(order["status"], "cancelled");
    let restocked = eventually(20, || async { (available(&shopper.sku).await == 10).then_some(()) }).await;
    assert!(restocked.is_some(), "the committed unit is back on the shelf");
    assert_eq!(events_of(&order).last().map(String::as_str), Some("cancelled"));
}

/// The order `id` as `GET /admin/orders?flag=…` lists it, reading every page; `None` if absent.
pub(crate) async fn listed_under(flag: &str, id: &str) -> Option<Value> {
    let mut cursor = String::new();
    loop {
        let reply =
            call(Method::GET, &format!("/admin/orders?flag={flag}&limit=100&cursor={cursor}")).admin().send().await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let found = reply.body["items"].as_array().unwrap().iter().find(|o| o["order_id"] == id).cloned();
        match (found, reply.body["next_cursor"].as_str()) {
            (Some(order), _) => return Some(order),
            (None, Some(next)) => cursor = next.to_owned(),
            (None, None) => return None,
        }
    }
}

/// Every page of `GET /admin/orders?flag=…`, until `id` shows up.
pub(crate) async fn flagged(flag: &str, id: &str) -> Option<Value> {
    eventually(20, || listed_under(flag, id)).await
}

/// The order's `version` as an admin reads it now.
pub(crate) async fn admin_version(id: &str) -> u64 {
    let order = call(Method::GET, &format!("/orders/{id}")).admin().send().await.body;
    order["version"].as_u64().unwrap_or_else(|| panic!("no version: {order}"))
}

/// `POST /admin/orders/{id}/flags/{flag}/resolve` with `note`, decided on the order's `version`,
/// as an admin unless `token` is given. With no `version`, on the order as it is now, read again
/// and asked again while it answers 412 (as an admin would, while late events still change it).
pub(crate) async fn resolve(
    id: &str,
    flag: &str,
    note: Value,
    version: Option<u64>,
    token: Option<&str>,
) -> e2e::support::Reply {
    let once = |version: u64| {
        let request = call(Method::POST, &format!("/admin/orders/{id}/flags/{flag}/resolve"))
            .json(&json!({ "note": note, "version": version }));
        async move {
            match token {
                Some(token) => request.token(token).send().await,
                None => request.admin().send().await,
            }
        }
    };
    match version {
        Some(version) => once(version).await,
        None => eventually(20, || async {
            let reply = once(admin_version(id).await).await;
            (reply.status != 412).then_some(reply)
        })
        .await
        .unwrap_or_else(|| panic!("order {id} kept changing: every resolution of {flag} answered 412")),
    }
}

#[tokio::test]
async fn a_refused_capture_flags_the_order_for_admins_to_list_and_customers_do_not_see_it() {
    let shopper = shopper_with_cart(10, 1).await;
    let (id, order) = confirmed_with_shipments(&shopper, 1).await;
    let refusal = Event::PaymentCaptureFailed(PaymentCaptureFailed {
        order_id: id.parse().unwrap(),
        payment_intent_id: order["payment_intent_id"].as_str().unwrap().to_owned(),
        reason: "charge_expired_for_capture".into(),
    });

    let refusal = publish(refusal, &id).await;
    handled_by("CheckoutTable", &[&refusal]).await;

    let listed = flagged("capture_failed", &id).await.expect("listed under flag=capture_failed");
    assert_eq!(listed["flags"], json!(["capture_failed"]));
    assert_eq!(listed["capture_failure"]["reason"], "charge_expired_for_capture");
    let admin = call(Method::GET, &format!("/orders/{id}")).admin().send().await.body;
    assert!(events_of(&admin).contains(&"capture_failed".to_owned()));
    let own = call(Method::GET, &format!("/orders/{id}")).token(&shopper.token).send().await.body;
    assert!(own.get("flags").is_none() && own.get("capture_failure").is_none(), "{own}");
    assert_eq!(own["status"], "confirmed");
    let other_flag = call(Method::GET, "/admin/orders?flag=dispatched_after_cancel&limit=100").admin().send().await;
    assert!(!other_flag.body["items"].as_array().unwrap().iter().any(|o| o["order_id"] == id));
    let bogus = call(Method::GET, "/admin/orders?flag=lost").admin().send().await;
    assert_eq!(bogus.expect_problem(400)["errors"][0]["pointer"], "query:flag");
    call(Method::GET, "/admin/orders?flag=capture_failed&status=confirmed").admin().send().await.expect_problem(400);
    call(Method::GET, "/admin/orders?flag=capture_failed").token(&shopper.token).send().await.expect_problem(403);
}

#[tokio::test]
async fn a_dispatch_that_reaches_a_cancelled_order_leaves_it_cancelled_and_flags_it_for_an_admin() {
    let shopper = shopper_with_cart(10, 1).await;
    let (id, _) = confirmed_with_shipments(&shopper, 1).await;
    assert_eq!(cancel(&shopper.token, &id).await.status, 200);
    let order_id: OrderId = id.parse().unwrap();
    // A dispatch in flight when the cancel landed: fulfillment had already sent it off.
    let raced = Event::ShipmentDispatched(ShipmentDispatched {
        order_id,
        shipment_id: ShipmentId::new(),
        shipment_count: 1,
        warehouse: "main".into(),
        carrier: "ups".into(),
        tracking_number: "1ZRACE".into(),
        tracking_url: None,
        dispatched_at: now(),
    });

    let raced = publish(raced, &id).await;
    handled_by("CheckoutTable", &[&raced]).await;

    let listed = flagged("dispatched_after_cancel", &id).await.expect("listed under flag=dispatched_after_cancel");
    assert_eq!(listed["status"], "cancelled");
    assert!(listed["flags"].as_array().unwrap().contains(&json!("dispatched_after_cancel")), "{}", listed["flags"]);
    assert!(listed["shipments"].as_array().unwrap().iter().any(|s| s["tracking_number"] == "1ZRACE"));
}

#[tokio::test]
async fn an_admin_resolves_a_flag_with_a_note_and_the_order_leaves_the_flagged_listing() {
    let shopper = shopper_with_cart(10, 1).await;
    let (id, _) = confirmed_with_shipments(&shopper, 1).await;
    assert_eq!(cancel(&shopper.token, &id).await.status, 200);
    let raced = Event::ShipmentDispatched(ShipmentDispatched {
        order_id: id.parse().unwrap(),
        shipment_id: ShipmentId::new(),
        shipment_count: 1,
        warehouse: "main".into(),
        carrier: "ups".into(),
        tracking_number: "1ZFLAG".into(),
        tracking_url: None,
        dispatched_at: now(),
    });
    let raced = publish(raced, &id).await;
    handled_by("CheckoutTable", &[&raced]).await;
    flagged("dispatched_after_cancel", &id).await.expect("listed under flag=dispatched_after_cancel");

    let seen = admin_version(&id).await;

    let by_customer = resolve(&id, "dispatched_after_cancel", json!("mine"), Some(seen), Some(&shopper.token)).await;
    let unknown = resolve(&id, "lost_parcel", json!("x"), Some(seen), None).await;
    let blank = resolve(&id, "dispatched_after_cancel", json!("  "), Some(seen), None).await;
    let stale = resolve(&id, "dispatched_after_cancel", json!("on an old page"), Some(seen - 1), None).await;
    let resolved = resolve(&id, "dispatched_after_cancel", json!("parcel returned by the carrier"), None, None).await;
    let again = resolve(&id, "dispatched_after_cancel", json!("a retry"), Some(seen - 1), None).await;

    assert_eq!(by_customer.expect_problem(403)["type"], "/problems/forbidden");
    let unknown = unknown.expect_problem(400);
    assert_eq!(unknown["errors"][0]["pointer"], "path:flag");
    assert!(unknown["detail"].as_str().unwrap().contains("lost_parcel"), "{unknown}");
    assert_eq!(blank.expect_problem(422)["errors"][0]["pointer"], "/note");
    let stale = stale.expect_problem(412);
    assert_eq!(
        (&stale["type"], &stale["errors"][0]["pointer"]),
        (&json!("/problems/precondition-failed"), &json!("/version"))
    );
    let (detail, named) = (stale["detail"].as_str().unwrap(), stale["errors"][0]["detail"].as_str().unwrap());
    assert!(detail.contains(&format!("version {}", seen - 1)), "names the version sent: {stale}");
    let current: u64 = named.strip_prefix("the order is at version ").and_then(|v| v.parse().ok()).unwrap();
    assert!(current >= seen && detail.contains(&format!("version {current} now")), "and the current one: {stale}");
    assert_eq!(resolved.status, 200, "{}", resolved.body);
    let order = &resolved.body;
    assert_eq!(order["flags"], json!([]));
    let kept = &order["flag_resolutions"][0];
    assert_eq!(
        (&kept["flag"], &kept["note"]),
        (&json!("dispatched_after_cancel"), &json!("parcel returned by the carrier"))
    );
    assert_eq!(kept["by"], "test-admin", "the admin's sub");
    let moment = order["timeline"].as_array().unwrap().iter().find(|m| m["event"] == "flag_resolved").cloned();
    assert_eq!(moment.map(|m| m["note"].clone()), Some(json!("parcel returned by the carrier")));
    assert_eq!(
        (again.status.as_u16(), &again.body["flag_resolutions"]),
        (200, &order["flag_resolutions"]),
        "a retry changes nothing, whatever version it names"
    );
    assert_eq!(listed_under("dispatched_after_cancel", &id).await, None, "no longer listed");
    let own = call(Method::GET, &format!("/orders/{id}")).token(&shopper.token).send().await.body;
    assert!(own.get("flag_resolutions").is_none(), "admins only: {own}");
    assert!(!events_of(&own).contains(&"flag_resolved".to_owned()));
}

/// A captured order the customer's bank disputes at the Stripe emulator, once an admin finds it
/// under `flag=disputed`: its id and the dispute's.
async fn disputed_order() -> (String, String) {
    let shopper = shopper_with_cart(5, 1).await;
    let order = captured(&shopper).await;
    let (id, intent) = (order["order_id"].as_str().unwrap().to_owned(), order["payment_intent_id"].as_str().unwrap());
    let dispute = post_to_stripe(&format!("/_test/payment_intents/{intent}/dispute"), &[]).await;
    flagged("disputed", &id).await.expect("listed under flag=disputed");
    (id, dispute["id"].as_str().unwrap().to_owned())
}

/// The order as an admin sees it once its dispute `dispute_id` is closed.
async fn once_closed(id: &str, dispute_id: &str) -> Value {
    let admin = testkit::shop().admin_token();
    order_when(&admin, id, |o| {
        o["disputes"]
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d["dispute_id"] == dispute_id && !d["outcome"].is_null()))
    })
    .await
}

#[tokio::test]
async fn a_won_dispute_clears_the_disputed_flag_by_itself() {
    let (id, dispute) = disputed_order().await;

    post_to_stripe(&format!("/_test/disputes/{dispute}/close"), &[("status", "won")]).await;

    let order = once_closed(&id, &dispute).await;
    assert_eq!(order["disputes"][0]["outcome"], "won");
    assert_eq!(order["flags"], json!([]), "{order:#}");
    assert!(events_of(&order).contains(&"dispute_closed".to_owned()));
    assert_eq!(listed_under("disputed", &id).await, None);
}

#[tokio::test]
async fn a_lost_dispute_keeps_the_flag_until_an_admin_resolves_it() {
    let (id, dispute) = disputed_order().await;

    post_to_stripe(&format!("/_test/disputes/{dispute}/close"), &[("status", "lost")]).await;

    let order = once_closed(&id, &dispute).await;
    assert_eq!(order["disputes"][0]["outcome"], "lost");
    assert_eq!(order["flags"], json!(["disputed"]), "the money is gone: the shop decides");
    let closed = order["timeline"].as_array().unwrap().iter().find(|m| m["event"] == "dispute_closed").cloned();
    assert_eq!(closed.map(|m| m["outcome"].clone()), Some(json!("lost")));
    assert!(listed_under("disputed", &id).await.is_some(), "still listed");
    let resolved = resolve(&id, "disputed", json!("lost at the bank; written off"), None, None).await;
    assert_eq!((resolved.status.as_u16(), &resolved.body["flags"]), (200, &json!([])), "{}", resolved.body);
    assert_eq!(listed_under("disputed", &id).await, None);
}
