//! What an operator sees of one order: its business metrics in the functions' logs (EMF), one
//! trace header from checkout through inventory and payment, and its timeline in the local
//! cloud's journal.

use reqwest::Method;
use serde_json::Value;

use e2e::flows::{checkout_body, order_when, place, shopper_with_cart};
use e2e::support::{self, call, eventually, metric};

/// Every JSON document the functions have written to the shared log so far.
fn logged() -> Vec<Value> {
    support::logged(testkit::shop())
}

async fn confirmed_order() -> (String, Value) {
    let shopper = shopper_with_cart(5, 2).await;
    let placed = place(&shopper.token, &testkit::unique("key"), &checkout_body(&shopper.cart, "pm_card_visa")).await;
    assert_eq!(placed.status, 202, "{}", placed.body);
    let id = placed.body["order_id"].as_str().expect("order id").to_owned();
    let order = order_when(&shopper.token, &id, |o| o["status"] == "confirmed").await;
    (id, order)
}

#[tokio::test]
async fn a_confirmed_order_is_counted_with_its_value_and_saga_latency() {
    let (id, order) = confirmed_order().await;

    // The relays write the metrics as they publish; the last event may still be on its way.
    let documents = eventually(20, || async {
        let documents = logged();
        let mine = |d: &&Value| d["correlation_id"] == id.as_str();
        let confirmed = metric(&documents, "OrdersConfirmed").into_iter().any(|d| mine(&d));
        confirmed.then_some(documents)
    })
    .await
    .expect("OrdersConfirmed for the order in the logs");

    let mine = |name: &str| -> Vec<Value> {
        metric(&documents, name).into_iter().filter(|d| d["correlation_id"] == id.as_str()).cloned().collect()
    };
    assert_eq!(mine("OrdersPlaced").len(), 1, "placed once");
    let value = &mine("OrderValue")[0];
    assert_eq!(value["OrderValue"], order["totals"]["total"]["amount"], "{value}");
    assert_eq!(value["Currency"], "USD");
    assert_eq!(value["_aws"]["CloudWatchMetrics"][0]["Dimensions"], serde_json::json!([["Currency"]]));
    let latency = &mine("SagaLatency")[0];
    assert_eq!(latency["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"], "Milliseconds");
    assert!(latency["SagaLatency"].as_u64().is_some_and(|ms| ms < 60_000), "{latency}");
    for name in ["PaymentsAuthorized", "OrdersConfirmed"] {
        assert_eq!(mine(name).len(), 1, "{name} once for the order");
    }
    let text = documents.iter().map(Value::to_string).collect::<String>();
    for private in ["4242424242424242", "buyer@example.com", "Analytical Row"] {
        assert!(!text.contains(private), "`{private}` (card, e-mail, address) in a log line");
    }
}

#[tokio::test]
async fn payment_times_every_call_to_stripe_and_counts_only_failures_that_are_not_the_card() {
    confirmed_order().await;

    let documents = logged();

    let calls = metric(&documents, "StripeLatency");
    let operations: std::collections::BTreeSet<&str> = calls.iter().filter_map(|d| d["operation"].as_str()).collect();
    for operation in ["create_intent", "confirm_intent"] {
        assert!(operations.contains(operation), "no StripeLatency for {operation}: {operations:?}");
    }
    for call in calls {
        // No dimension: the Stripe error rate alarm counts every call by this metric's SampleCount.
        assert_eq!(call["_aws"]["CloudWatchMetrics"][0]["Dimensions"], serde_json::json!([[]]), "{call}");
        assert_eq!(call["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"], "Milliseconds");
    }
    for error in metric(&documents, "StripeErrors") {
        let kinds = ["api_error", "rate_limited", "connection", "authentication", "invalid_request"];
        assert!(error["Kind"].as_str().is_some_and(|kind| kinds.contains(&kind)), "{error}");
        assert_eq!(error["_aws"]["CloudWatchMetrics"][0]["Dimensions"], serde_json::json!([["Kind"], []]));
    }
}

#[tokio::test]
async fn each_consumer_reports_how_old_the_events_it_reads_are() {
    confirmed_order().await;
    let shop = testkit::shop();

    for consumer in ["InventoryEventsFunction", "PaymentEventsFunction", "CheckoutEventsFunction"] {
        let name = shop.resource(consumer).expect("a function name");
        let ages = metric(&logged(), "EventAge").into_iter().filter(|d| d["FunctionName"] == name).count();
        assert!(ages > 0, "no EventAge from {consumer} ({name})");
    }
}

#[tokio::test]
async fn one_trace_header_follows_the_order_through_checkout_inventory_and_payment() {
    let (id, _) = confirmed_order().await;

    let lines = logged();
    let spans = |line: &Value| line["spans"].as_array().cloned().unwrap_or_default();
    let events: Vec<Value> = lines
        .iter()
        .flat_map(spans)
        .filter(|span| span["name"] == "event" && span["correlation_id"] == id.as_str())
        .collect();
    let traces: std::collections::BTreeSet<&str> = events.iter().filter_map(|span| span["trace"].as_str()).collect();

    assert_eq!(traces.len(), 1, "one trace for the whole saga: {traces:?}");
    assert!(traces.iter().all(|t| t.starts_with("Root=1-")), "{traces:?}");
    let handled: std::collections::BTreeSet<&str> = events.iter().filter_map(|s| s["detail_type"].as_str()).collect();
    for detail_type in ["OrderPlaced", "StockReserved", "PaymentAuthorized"] {
        assert!(handled.contains(detail_type), "no log line of {detail_type} for the order: {handled:?}");
    }
    // Every line a consumer wrote for the order names the invocation it belongs to.
    let mine = lines.iter().filter(|line| spans(line).iter().any(|s| s["correlation_id"] == id.as_str()));
    for line in mine {
        assert!(spans(line).iter().any(|s| s["requestId"].is_string()), "no request id on {line}");
    }
}

#[tokio::test]
async fn the_orders_timeline_lists_every_function_that_touched_it() {
    let (id, _) = confirmed_order().await;

    // The order reads `confirmed` once checkout wrote it; its relay publishes OrderConfirmed after.
    let published = |entries: &Value| entries.to_string().contains("publish OrderConfirmed");
    let entries = eventually(20, || async {
        let entries = call(Method::GET, &format!("/_localcloud/trace/{id}")).send().await.body;
        published(&entries).then_some(entries)
    })
    .await
    .expect("the relay published OrderConfirmed");

    let entries = entries.as_array().expect("a list of invocations");
    let ran = |function: &str, handled: &str| {
        entries.iter().any(|e| {
            e["function"] == function
                && e["outcome"] == "ok"
                && e["handled"]
                    .as_array()
                    .is_some_and(|h| h.iter().any(|x| x.as_str().is_some_and(|x| x.contains(handled))))
        })
    };
    assert!(ran("CheckoutFunction", "POST /checkout"), "{entries:#?}");
    assert!(ran("InventoryEventsFunction", "OrderPlaced"), "{entries:#?}");
    assert!(ran("PaymentEventsFunction", "StockReserved"), "{entries:#?}");
    assert!(ran("CheckoutEventsFunction", "PaymentAuthorized"), "{entries:#?}");
}

#[tokio::test]
async fn make_tail_shows_the_orders_events_as_they_pass_on_the_bus_and_only_them() {
    let shop = testkit::shop();
    let bus = shop.resource("EventBus").expect("the bus");
    let tap = localcloud::tail::Tap::open(&shop.endpoint, &shop.region, bus).await.expect("a tap on the bus");
    let shopper = shopper_with_cart(5, 1).await;
    let placed = place(&shopper.token, &testkit::unique("key"), &checkout_body(&shopper.cart, "pm_card_visa")).await;
    let id = placed.body["order_id"].as_str().expect("order id").to_owned();

    let mut lines: Vec<String> = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !lines.iter().any(|line| line.contains("OrderConfirmed")) && std::time::Instant::now() < deadline {
        lines.extend(tap.next_lines(Some(&id), 1).await.expect("the tap's queue"));
    }
    tap.close().await;

    let types: Vec<&str> = ["OrderPlaced", "StockReserved", "PaymentAuthorized", "OrderConfirmed"]
        .into_iter()
        .filter(|detail_type| !lines.iter().any(|line| line.contains(detail_type)))
        .collect();
    assert!(types.is_empty(), "missing {types:?} in {lines:#?}");
    assert!(lines.iter().all(|line| line.contains(&id)), "another order's event: {lines:#?}");
    assert!(lines.iter().any(|line| line.contains("ferrocart.inventory")), "{lines:#?}");
}
