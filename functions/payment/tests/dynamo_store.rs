//! The DynamoDB adapter against moto (`infra/emulators/moto_server.py`): the conditions, reserved
//! words and returned items that the in-memory store in `testing.rs` takes from the model's
//! `Payment::apply`.
//!
//! One moto serves the whole test binary; each test has a table of its own, as template.yaml
//! declares it (`testkit::table`). Needs the emulators venv's Python (`make venv`), or the
//! interpreter `FERROCART_PYTHON` names.

// Test helpers outside #[test] functions may unwrap too (clippy.toml covers only the tests).
#![allow(clippy::unwrap_used)]

use time::OffsetDateTime;
use time::macros::datetime;

use domain_events::payment::{
    PaymentActionRequired, PaymentAuthorized, PaymentCaptureFailed, PaymentCaptured, PaymentFailed,
};
use domain_events::{Envelope, Event, Metadata};
use kernel::inbox::Claim as InboxClaim;
use kernel::{Currency, Money, OrderId};
use payment::dynamo::DynamoPayments;
use payment::model::{
    CANCELLED, CaptureSettlement, ClientSecret, OrderPayment, Payment, PaymentIntentId, Settlement, Stage,
};
use payment::ports::{Claim, PaymentStore, StripeEventId, WebhookInbox, Write};

const T0: OffsetDateTime = datetime!(2026-11-22 10:00 UTC);

struct Table {
    store: DynamoPayments,
    table: testkit::table::Table,
}

/// A fresh payment table, as template.yaml's `PaymentTable` (with its `Authorizing` index).
async fn table() -> Table {
    let table = testkit::table::Table::new("PaymentTable").await;
    Table { store: DynamoPayments::new(table.client.clone(), &table.name), table }
}

impl Table {
    /// The detail types in the outbox.
    async fn outbox(&self) -> Vec<String> {
        self.table.outbox().await.into_iter().map(|(detail_type, _)| detail_type).collect()
    }
}

fn order() -> OrderPayment {
    OrderPayment { total: Money::new(2500, Currency::EUR).unwrap(), payment_method: "pm_card_visa".into() }
}

fn won(claim: Claim) -> Payment {
    match claim {
        Claim::Won(payment) => payment,
        Claim::Lost(payment) => panic!("condition failed on {payment:?}"),
    }
}

fn lost(claim: Claim) -> Payment {
    match claim {
        Claim::Lost(payment) => payment,
        Claim::Won(payment) => panic!("condition held on {payment:?}"),
    }
}

fn authorized_event(order_id: OrderId, intent: &PaymentIntentId) -> Envelope {
    let event = Event::PaymentAuthorized(PaymentAuthorized {
        order_id,
        payment_intent_id: intent.to_string(),
        amount: order().total,
    });
    Envelope::new(Metadata::new(order_id.to_string()), event)
}

#[tokio::test]
async fn facts_commute_and_exactly_one_claim_wins() {
    let table = table().await;
    let order_id = OrderId::new();

    let after_stock = table.store.record_stock_reserved(order_id).await.unwrap();
    let after_order = table.store.record_order(order_id, &order()).await.unwrap();
    let mut other = order();
    other.payment_method = "pm_other".into();
    let after_duplicate = table.store.record_order(order_id, &other).await.unwrap();
    let claimed = won(table.store.claim(order_id, T0).await.unwrap());
    let second = lost(table.store.claim(order_id, T0).await.unwrap());

    assert!(after_stock.stock_reserved && after_stock.order.is_none());
    assert!(after_order.stock_reserved);
    assert_eq!(after_order.order, Some(order()));
    assert_eq!(after_duplicate.order, Some(order()), "the first recorded order stays");
    assert_eq!(claimed.stage, Stage::Authorizing { since: T0, intent: None });
    assert_eq!(second.stage, claimed.stage);
}

#[tokio::test]
async fn a_cancelled_or_incomplete_payment_cannot_be_claimed() {
    let table = table().await;
    let (cancelled, incomplete) = (OrderId::new(), OrderId::new());
    table.store.record_order(cancelled, &order()).await.unwrap();
    table.store.record_cancelled(cancelled).await.unwrap();
    table.store.record_stock_reserved(cancelled).await.unwrap();
    table.store.record_order(incomplete, &order()).await.unwrap();

    let refused = lost(table.store.claim(cancelled, T0).await.unwrap());
    let waiting = lost(table.store.claim(incomplete, T0).await.unwrap());

    assert!(refused.cancelled);
    assert_eq!(refused.stage, Stage::Pending);
    assert!(!waiting.stock_reserved);
}

#[tokio::test]
async fn a_stalled_claim_is_taken_over_once() {
    let table = table().await;
    let order_id = OrderId::new();
    table.store.record_order(order_id, &order()).await.unwrap();
    table.store.record_stock_reserved(order_id).await.unwrap();
    won(table.store.claim(order_id, T0).await.unwrap());
    let later = T0 + time::Duration::seconds(61);

    let taken = won(table.store.reclaim(order_id, T0, later).await.unwrap());
    let too_late = lost(table.store.reclaim(order_id, T0, later).await.unwrap());

    assert_eq!(taken.stage, Stage::Authorizing { since: later, intent: None });
    assert_eq!(too_late.stage, taken.stage);
}

#[tokio::test]
async fn an_intent_is_recorded_once_and_settles_with_its_event_once() {
    let table = table().await;
    let order_id = OrderId::new();
    let (ours, theirs) = (PaymentIntentId::parse("pi_ours1").unwrap(), PaymentIntentId::parse("pi_theirs1").unwrap());
    table.store.record_order(order_id, &order()).await.unwrap();
    table.store.record_stock_reserved(order_id).await.unwrap();
    won(table.store.claim(order_id, T0).await.unwrap());

    let recorded = won(table.store.record_intent(order_id, &ours).await.unwrap());
    let refused = lost(table.store.record_intent(order_id, &theirs).await.unwrap());
    let wrong_intent = table
        .store
        .settle(order_id, &Settlement::Authorized { intent: theirs.clone() }, &authorized_event(order_id, &theirs))
        .await
        .unwrap();
    let settled = table
        .store
        .settle(order_id, &Settlement::Authorized { intent: ours.clone() }, &authorized_event(order_id, &ours))
        .await
        .unwrap();
    let failed_late =
        Settlement::Failed { intent: Some(ours.clone()), reason: "card_declined".into(), decline_code: None };
    let again = table.store.settle(order_id, &failed_late, &authorized_event(order_id, &ours)).await.unwrap();
    let after = table.store.record_stock_reserved(order_id).await.unwrap();

    assert_eq!(recorded.stage, Stage::Authorizing { since: T0, intent: Some(ours.clone()) });
    assert_eq!(refused.stage, recorded.stage);
    assert!(matches!(wrong_intent, Write::Refused(p) if p.stage == recorded.stage));
    assert_eq!(settled, Write::Done);
    assert!(matches!(again, Write::Refused(p) if p.stage == Stage::Authorized { intent: ours.clone() }));
    assert_eq!(after.stage, Stage::Authorized { intent: ours });
    assert_eq!(table.outbox().await, vec!["PaymentAuthorized"]);
}

#[tokio::test]
async fn a_failure_before_any_intent_and_a_void_are_conditional_too() {
    let table = table().await;
    let (refused, voided) = (OrderId::new(), OrderId::new());
    let intent = PaymentIntentId::parse("pi_void1").unwrap();
    for order_id in [refused, voided] {
        table.store.record_order(order_id, &order()).await.unwrap();
        table.store.record_stock_reserved(order_id).await.unwrap();
        won(table.store.claim(order_id, T0).await.unwrap());
    }
    let failure =
        Settlement::Failed { intent: None, reason: "amount_too_small".into(), decline_code: Some("x".into()) };
    let failed = table.store.settle(refused, &failure, &authorized_event(refused, &intent)).await.unwrap();
    won(table.store.record_intent(voided, &intent).await.unwrap());
    let void_too_early = table.store.void(voided, &intent, &authorized_event(voided, &intent)).await.unwrap();
    table
        .store
        .settle(voided, &Settlement::Authorized { intent: intent.clone() }, &authorized_event(voided, &intent))
        .await
        .unwrap();

    let void = table.store.void(voided, &intent, &authorized_event(voided, &intent)).await.unwrap();
    let void_again = table.store.void(voided, &intent, &authorized_event(voided, &intent)).await.unwrap();

    assert_eq!(failed, Write::Done);
    assert_eq!(table.store.record_cancelled(refused).await.unwrap().stage, Stage::Failed);
    assert!(matches!(void_too_early, Write::Refused(_)));
    assert_eq!(void, Write::Done);
    assert!(matches!(void_again, Write::Refused(p) if p.stage == Stage::Voided { intent: intent.clone() }));
    assert_eq!(table.store.record_cancelled(voided).await.unwrap().stage, Stage::Voided { intent });
    assert_eq!(table.outbox().await.len(), 3);
}

fn failed_event(order_id: OrderId) -> Envelope {
    let event = Event::PaymentFailed(PaymentFailed { order_id, reason: CANCELLED.into(), decline_code: None });
    Envelope::new(Metadata::new(order_id.to_string()), event)
}

/// Records both facts and claims the authorization at `at`.
async fn claimed(table: &Table, at: OffsetDateTime) -> OrderId {
    let order_id = OrderId::new();
    table.store.record_order(order_id, &order()).await.unwrap();
    table.store.record_stock_reserved(order_id).await.unwrap();
    won(table.store.claim(order_id, at).await.unwrap());
    order_id
}

#[tokio::test]
async fn an_authorization_is_refused_once_the_order_is_cancelled_and_the_refusal_shows_why() {
    let table = table().await;
    let order_id = claimed(&table, T0).await;
    let intent = PaymentIntentId::parse("pi_cancelled1").unwrap();
    won(table.store.record_intent(order_id, &intent).await.unwrap());
    table.store.record_cancelled(order_id).await.unwrap();

    let authorized = table
        .store
        .settle(order_id, &Settlement::Authorized { intent: intent.clone() }, &authorized_event(order_id, &intent))
        .await
        .unwrap();
    let abandoned = Settlement::Failed { intent: Some(intent.clone()), reason: CANCELLED.into(), decline_code: None };
    let failed = table.store.settle(order_id, &abandoned, &failed_event(order_id)).await.unwrap();

    let Write::Refused(seen) = authorized else { panic!("an authorization of a cancelled order was recorded") };
    assert!(seen.cancelled);
    assert_eq!(seen.stage, Stage::Authorizing { since: T0, intent: Some(intent) });
    assert_eq!(failed, Write::Done);
    assert_eq!(table.store.get(order_id).await.unwrap().unwrap().stage, Stage::Failed);
    assert_eq!(table.outbox().await, vec!["PaymentFailed"], "no PaymentAuthorized");
}

#[tokio::test]
async fn a_payment_is_read_as_stored_and_an_unknown_one_is_none() {
    let table = table().await;
    let order_id = claimed(&table, T0).await;

    let stored = table.store.get(order_id).await.unwrap();
    let unknown = table.store.get(OrderId::new()).await.unwrap();

    assert_eq!(stored.unwrap().stage, Stage::Authorizing { since: T0, intent: None });
    assert!(unknown.is_none());
}

#[tokio::test]
async fn the_authorizing_index_lists_lapsed_claims_oldest_first_page_by_page_and_only_while_authorizing() {
    let table = table().await;
    // 28 claims a second apart; two leave the index, so 26 are due: a page of 25 and one more.
    let mut orders = Vec::new();
    for second in 0..28 {
        orders.push(claimed(&table, T0 + time::Duration::seconds(second)).await);
    }
    let settled = orders[0];
    let intent = PaymentIntentId::parse("pi_listed1").unwrap();
    won(table.store.record_intent(settled, &intent).await.unwrap());
    table
        .store
        .settle(settled, &Settlement::Authorized { intent: intent.clone() }, &authorized_event(settled, &intent))
        .await
        .unwrap();
    let reclaimed = orders[1];
    won(table
        .store
        .reclaim(reclaimed, T0 + time::Duration::seconds(1), T0 + time::Duration::minutes(5))
        .await
        .unwrap());

    let cutoff = T0 + time::Duration::seconds(27);
    let first = table.store.stalled(cutoff, None).await.unwrap();
    let second = table.store.stalled(cutoff, first.next.clone()).await.unwrap();
    let early = table.store.stalled(T0 + time::Duration::seconds(3), None).await.unwrap();

    let listed: Vec<OrderId> = first.items.iter().chain(&second.items).copied().collect();
    assert_eq!((first.items.len(), second.items.len()), (25, 1));
    assert_eq!(listed, orders[2..].to_vec(), "oldest claim first; settled and reclaimed ones not due");
    assert_eq!(early.items, orders[2..4].to_vec(), "a claim made at the cutoff's second is due");
    assert!(early.next.is_none());
}

/// An order authorized with `intent`, as payment records it.
async fn authorized(table: &Table, intent: &PaymentIntentId) -> OrderId {
    let order_id = claimed(table, T0).await;
    won(table.store.record_intent(order_id, intent).await.unwrap());
    let settled = table
        .store
        .settle(order_id, &Settlement::Authorized { intent: intent.clone() }, &authorized_event(order_id, intent))
        .await
        .unwrap();
    assert_eq!(settled, Write::Done);
    order_id
}

fn captured_event(order_id: OrderId, intent: &PaymentIntentId) -> Envelope {
    let event = Event::PaymentCaptured(PaymentCaptured {
        order_id,
        payment_intent_id: intent.to_string(),
        amount: order().total,
    });
    Envelope::new(Metadata::new(order_id.to_string()), event)
}

fn capture_failed_event(order_id: OrderId, intent: &PaymentIntentId, reason: &str) -> Envelope {
    let event = Event::PaymentCaptureFailed(PaymentCaptureFailed {
        order_id,
        payment_intent_id: intent.to_string(),
        reason: reason.into(),
    });
    Envelope::new(Metadata::new(order_id.to_string()), event)
}

#[tokio::test]
async fn a_capture_is_claimed_once_from_its_authorization_and_settles_with_its_event_once() {
    let table = table().await;
    let (ours, theirs) = (PaymentIntentId::parse("pi_cap1").unwrap(), PaymentIntentId::parse("pi_cap2").unwrap());
    let order_id = authorized(&table, &ours).await;

    let wrong_intent = lost(table.store.start_capture(order_id, &theirs).await.unwrap());
    let claimed = won(table.store.start_capture(order_id, &ours).await.unwrap());
    let again = lost(table.store.start_capture(order_id, &ours).await.unwrap());
    let captured = CaptureSettlement::Captured { intent: ours.clone() };
    let settled = table.store.settle_capture(order_id, &captured, &captured_event(order_id, &ours)).await.unwrap();
    let settled_again =
        table.store.settle_capture(order_id, &captured, &captured_event(order_id, &ours)).await.unwrap();
    let failed_late = CaptureSettlement::Failed { intent: ours.clone(), reason: "charge_expired_for_capture".into() };
    let refused = table
        .store
        .settle_capture(order_id, &failed_late, &capture_failed_event(order_id, &ours, "late"))
        .await
        .unwrap();

    assert_eq!(wrong_intent.stage, Stage::Authorized { intent: ours.clone() });
    assert_eq!(claimed.stage, Stage::Capturing { intent: ours.clone() });
    assert_eq!(again.stage, claimed.stage, "the refusal shows the capture under way");
    assert_eq!(settled, Write::Done);
    assert!(matches!(settled_again, Write::Refused(p) if p.stage == Stage::Captured { intent: ours.clone() }));
    assert!(matches!(refused, Write::Refused(_)));
    assert_eq!(table.store.get(order_id).await.unwrap().unwrap().stage, Stage::Captured { intent: ours });
    assert_eq!(table.outbox().await, vec!["PaymentAuthorized", "PaymentCaptured"]);
}

#[tokio::test]
async fn a_cancelled_order_is_never_claimed_for_capture_and_a_void_can_only_fail_one() {
    let table = table().await;
    let intent = PaymentIntentId::parse("pi_cap3").unwrap();
    let order_id = authorized(&table, &intent).await;
    table.store.record_cancelled(order_id).await.unwrap();

    let cancelled = lost(table.store.start_capture(order_id, &intent).await.unwrap());
    let void = table.store.void(order_id, &intent, &authorized_event(order_id, &intent)).await.unwrap();
    let captured = CaptureSettlement::Captured { intent: intent.clone() };
    let not_capturing =
        table.store.settle_capture(order_id, &captured, &captured_event(order_id, &intent)).await.unwrap();
    let voided = CaptureSettlement::Failed { intent: intent.clone(), reason: "authorization_voided".into() };
    let reported = table
        .store
        .settle_capture(order_id, &voided, &capture_failed_event(order_id, &intent, "authorization_voided"))
        .await
        .unwrap();

    assert!(cancelled.cancelled);
    assert_eq!(cancelled.stage, Stage::Authorized { intent: intent.clone() });
    assert_eq!(void, Write::Done);
    assert!(matches!(not_capturing, Write::Refused(p) if p.stage == Stage::Voided { intent: intent.clone() }));
    assert_eq!(reported, Write::Done);
    assert_eq!(
        table.store.get(order_id).await.unwrap().unwrap().stage,
        Stage::CaptureFailed { intent, reason: "authorization_voided".into() },
        "read back with its reason"
    );
    assert_eq!(table.outbox().await.len(), 3);
}

#[tokio::test]
async fn a_refused_capture_is_recorded_with_stripes_code() {
    let table = table().await;
    let intent = PaymentIntentId::parse("pi_cap4").unwrap();
    let order_id = authorized(&table, &intent).await;
    won(table.store.start_capture(order_id, &intent).await.unwrap());
    let expired = CaptureSettlement::Failed { intent: intent.clone(), reason: "charge_expired_for_capture".into() };

    let failed = table
        .store
        .settle_capture(order_id, &expired, &capture_failed_event(order_id, &intent, "charge_expired_for_capture"))
        .await
        .unwrap();

    assert_eq!(failed, Write::Done);
    let stored = table.store.get(order_id).await.unwrap().unwrap();
    assert_eq!(stored.stage, Stage::CaptureFailed { intent, reason: "charge_expired_for_capture".into() });
    assert!(table.store.stalled(T0 + time::Duration::days(1), None).await.unwrap().items.is_empty());
}

fn action_required_event(order_id: OrderId, intent: &PaymentIntentId) -> Envelope {
    let event = Event::PaymentActionRequired(PaymentActionRequired {
        order_id,
        payment_intent_id: intent.to_string(),
        client_secret: format!("{intent}_secret_x"),
    });
    Envelope::new(Metadata::new(order_id.to_string()), event)
}

#[tokio::test]
async fn a_payment_awaiting_3d_secure_leaves_the_sweeps_index_and_settles_once_as_stripe_says() {
    let table = table().await;
    let order_id = claimed(&table, T0).await;
    let intent = PaymentIntentId::parse("pi_3ds").unwrap();
    won(table.store.record_intent(order_id, &intent).await.unwrap());
    let awaiting = Settlement::AwaitingAction {
        intent: intent.clone(),
        client_secret: ClientSecret::new("pi_3ds_secret_x").unwrap(),
    };

    let first = table.store.settle(order_id, &awaiting, &action_required_event(order_id, &intent)).await.unwrap();
    let again = table.store.settle(order_id, &awaiting, &action_required_event(order_id, &intent)).await.unwrap();
    let listed = table.store.stalled(T0 + time::Duration::hours(1), None).await.unwrap();
    let authorized = Settlement::Authorized { intent: intent.clone() };
    let settled = table.store.settle(order_id, &authorized, &authorized_event(order_id, &intent)).await.unwrap();

    assert_eq!(first, Write::Done);
    assert!(matches!(again, Write::Refused(p) if p.stage == Stage::AwaitingAction { intent: intent.clone() }));
    assert!(listed.items.is_empty(), "the sweep leaves it alone");
    assert_eq!(settled, Write::Done);
    assert_eq!(table.store.get(order_id).await.unwrap().unwrap().stage, Stage::Authorized { intent });
    assert_eq!(table.outbox().await, vec!["PaymentActionRequired", "PaymentAuthorized"]);
}

#[tokio::test]
async fn a_stripe_event_is_claimed_once_and_a_handled_one_is_recognised() {
    let table = table().await;
    let event = StripeEventId::parse("evt_1NirD82eZvKYlo2C").unwrap();
    let lease = OffsetDateTime::now_utc() + time::Duration::minutes(1);

    let first = table.store.claim_notice(&event, lease).await.unwrap();
    let concurrent = table.store.claim_notice(&event, lease).await.unwrap();
    table.store.release_notice(&event, lease).await.unwrap();
    let retried = table.store.claim_notice(&event, lease).await.unwrap();
    table.store.notice_handled(&event).await.unwrap();
    let redelivered = table.store.claim_notice(&event, lease).await.unwrap();

    assert_eq!(
        [first, concurrent, retried, redelivered],
        [InboxClaim::Claimed, InboxClaim::InProgress, InboxClaim::Claimed, InboxClaim::Handled]
    );
}
