//! The consumer inbox (`adapters::inbox`) on a domain table in moto: one item per handled event,
//! written once after the handler, read before it, kept as long as the dead-letter queues keep
//! messages.

use time::OffsetDateTime;

use adapters::inbox::{DynamoInbox, RETENTION_SECS};
use e2e::support::stored;
use kernel::EventId;
use lambda_glue::consumer::Inbox;

async fn inventory_inbox() -> DynamoInbox {
    let shop = testkit::shop();
    DynamoInbox::new(shop.dynamodb().await, shop.table("InventoryTable").unwrap())
}

#[tokio::test]
async fn an_event_is_unknown_until_it_is_recorded_handled_and_known_on_every_later_delivery() {
    let inbox = inventory_inbox().await;
    let event = EventId::new();

    assert!(!inbox.handled_before(event).await.unwrap(), "reading writes nothing");
    assert!(stored("InventoryTable", &format!("INBOX#{event}"), "INBOX").await.is_none());
    inbox.handled(event).await.unwrap();
    inbox.handled(event).await.unwrap();
    assert!(inbox.handled_before(event).await.unwrap(), "recorded, whoever recorded it last");

    let item = stored("InventoryTable", &format!("INBOX#{event}"), "INBOX").await.unwrap();
    let expires_at: i64 = item["expires_at"].as_n().unwrap().parse().unwrap();
    let kept = expires_at - OffsetDateTime::now_utc().unix_timestamp();
    assert!((RETENTION_SECS - 60..=RETENTION_SECS).contains(&kept), "kept {kept} s");
    let mut attributes: Vec<&str> = item.keys().map(String::as_str).collect();
    attributes.sort_unstable();
    assert_eq!(attributes, ["expires_at", "pk", "sk"], "the smallest item: one write unit");
}
