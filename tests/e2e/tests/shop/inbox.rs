//! The consumer inbox (`adapters::inbox`) on a domain table in moto: the conditional claim that
//! lets one delivery of an event run its handler and recognises every later one.

use time::{Duration, OffsetDateTime};

use adapters::inbox::{DynamoInbox, RETENTION_SECS};
use e2e::support::stored;
use kernel::EventId;
use lambda_glue::consumer::{Claim, Inbox};

async fn inventory_inbox() -> DynamoInbox {
    let shop = testkit::shop();
    DynamoInbox::new(shop.dynamodb().await, shop.table("InventoryTable").unwrap())
}

fn in_a_minute() -> OffsetDateTime {
    OffsetDateTime::now_utc() + Duration::minutes(1)
}

#[tokio::test]
async fn an_event_is_claimed_once_and_recognised_as_handled_on_every_later_delivery() {
    let inbox = inventory_inbox().await;
    let event = EventId::new();

    let lease = in_a_minute();
    assert_eq!(inbox.claim(event, lease).await.unwrap(), Claim::Claimed);
    assert_eq!(inbox.claim(event, in_a_minute()).await.unwrap(), Claim::InProgress, "a concurrent delivery waits");
    inbox.handled(event).await.unwrap();
    inbox.release(event, lease).await.unwrap();
    assert_eq!(inbox.claim(event, in_a_minute()).await.unwrap(), Claim::Handled, "release never forgets a handled one");

    let item = stored("InventoryTable", &format!("INBOX#{event}"), "INBOX").await.unwrap();
    let expires_at: i64 = item["expires_at"].as_n().unwrap().parse().unwrap();
    let kept = expires_at - OffsetDateTime::now_utc().unix_timestamp();
    assert!((RETENTION_SECS - 60..=RETENTION_SECS).contains(&kept), "kept {kept} s");
}

#[tokio::test]
async fn a_failed_or_abandoned_claim_can_be_taken_again() {
    let inbox = inventory_inbox().await;
    let (failed, crashed) = (EventId::new(), EventId::new());

    let lease = in_a_minute();
    assert_eq!(inbox.claim(failed, lease).await.unwrap(), Claim::Claimed);
    inbox.release(failed, lease).await.unwrap();
    assert_eq!(inbox.claim(failed, in_a_minute()).await.unwrap(), Claim::Claimed, "released after a failure");

    let lapsed = OffsetDateTime::now_utc() - Duration::seconds(5);
    assert_eq!(inbox.claim(crashed, lapsed).await.unwrap(), Claim::Claimed);
    let taken_over = in_a_minute() + Duration::seconds(30);
    assert_eq!(inbox.claim(crashed, taken_over).await.unwrap(), Claim::Claimed, "its invocation's deadline passed");
    inbox.release(crashed, lapsed).await.unwrap();
    assert_eq!(
        inbox.claim(crashed, in_a_minute()).await.unwrap(),
        Claim::InProgress,
        "the crashed invocation cannot release the claim that replaced its own"
    );
}

#[tokio::test]
async fn marking_an_event_handled_never_creates_an_inbox_item() {
    let inbox = inventory_inbox().await;
    let never_claimed = EventId::new();

    assert!(inbox.handled(never_claimed).await.is_err(), "no claim to complete");
    assert_eq!(inbox.claim(never_claimed, in_a_minute()).await.unwrap(), Claim::Claimed);
}
