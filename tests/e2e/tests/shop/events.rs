//! The async plumbing: outbox → stream → relay → EventBridge → SQS, on moto.

use reqwest::Method;
use serde_json::json;

use e2e::support::{Tap, call};

#[tokio::test]
async fn every_product_change_reaches_the_bus_through_the_outbox_with_its_metadata() {
    let tap = Tap::new(json!({ "source": ["ferrocart.catalog"], "detail-type": ["ProductChanged"] })).await;
    let sku = testkit::unique("evt").to_uppercase();
    let body = json!({
        "slug": testkit::unique("evt"), "title": "Evented Mug", "category": testkit::unique("cat"), "status": "active",
        "variants": [{"sku": sku, "price": {"amount": 1200, "currency": "EUR"}}]
    });
    let created = call(Method::POST, "/admin/products").admin().json(&body).send().await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let archived = call(Method::DELETE, &format!("/admin/products/{id}")).admin().send().await;
    assert_eq!(archived.status, 200);

    let mine = |events: &[serde_json::Value]| -> Vec<serde_json::Value> {
        events.iter().filter(|e| e["detail"]["data"]["product_id"] == json!(id)).cloned().collect()
    };
    let events = tap.collect_until(|seen| mine(seen).len() >= 2).await;
    let events = mine(&events);

    assert_eq!(events.len(), 2, "one event per change: {events:#?}");
    let (first, second) = (&events[0]["detail"], &events[1]["detail"]);
    assert_eq!(first["version"], 1, "the detail layout version");
    assert_eq!(first["data"]["version"], 1);
    assert_eq!(first["data"]["status"], "active");
    assert_eq!(first["data"]["variants"][0], json!({"sku": sku, "price": {"amount": 1200, "currency": "EUR"}}));
    assert_eq!(second["data"]["version"], 2);
    assert_eq!(second["data"]["status"], "archived");
    assert_eq!(first["correlation_id"], json!(id));
    assert_ne!(first["event_id"], second["event_id"]);
    assert!(first["event_id"].as_str().unwrap().starts_with("evt_"));
}
