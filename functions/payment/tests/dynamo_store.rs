//! The DynamoDB adapter against moto (`infra/emulators/moto_server.py`): the conditions, reserved
//! words and returned items that the in-memory store in `testing.rs` takes from the model's
//! `Payment::apply`.
//!
//! One moto serves the whole test binary; each test has a table of its own, as template.yaml
//! declares it (`testkit::table`). Needs the emulators venv's Python (`make venv`), or the
//! interpreter `FERROCART_PYTHON` names.

// Test helpers outside #[test] functions may unwrap too (clippy.toml covers only the tests).
#![allow(clippy::unwrap_used)]

use time::macros::datetime;
use time::{Duration, OffsetDateTime};

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
async fn the_authorizing_index_lists_lapsed_claims_once_page_by_page_and_only_while_authorizing() {
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

    // The index is sharded by order id: each shard lists oldest first, shard after shard.
    let sorted = |ids: &[OrderId]| {
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids
    };
    let listed: Vec<OrderId> = first.items.iter().chain(&second.items).copied().collect();
    assert_eq!((first.items.len(), second.items.len()), (25, 1));
    assert_eq!(sorted(&listed), sorted(&orders[2..]), "each due claim once; settled and reclaimed ones not due");
    assert_eq!(sorted(&early.items), sorted(&orders[2..4]), "a claim made at the cutoff's second is due");
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

mod refunds {
    use domain_events::payment::RefundReason;
    use kernel::RefundId;
    use payment::ports::{Recorded, RefundStore, Reserved};
    use payment::refund::{PendingRefund, Refund, RefundStatus, Source};

    use super::*;

    /// A payment captured in the table, as the saga leaves it.
    async fn captured(table: &Table) -> (OrderId, Payment) {
        let order_id = OrderId::new();
        let intent = PaymentIntentId::parse("pi_refund1").unwrap();
        table.store.record_order(order_id, &order()).await.unwrap();
        table.store.record_stock_reserved(order_id).await.unwrap();
        won(table.store.claim(order_id, T0).await.unwrap());
        won(table.store.record_intent(order_id, &intent).await.unwrap());
        let settled = Settlement::Authorized { intent: intent.clone() };
        table.store.settle(order_id, &settled, &authorized_event(order_id, &intent)).await.unwrap();
        won(table.store.start_capture(order_id, &intent).await.unwrap());
        let captured = CaptureSettlement::Captured { intent: intent.clone() };
        table.store.settle_capture(order_id, &captured, &authorized_event(order_id, &intent)).await.unwrap();
        (order_id, table.store.get(order_id).await.unwrap().unwrap())
    }

    fn refund(order_id: OrderId, key: &str, minor: i64) -> Refund {
        Refund {
            refund_id: RefundId::new(),
            order_id,
            source: Source::Key(key.into()),
            amount: Money::new(minor, Currency::EUR).unwrap(),
            reason: RefundReason::Duplicate,
            note: Some("twice".into()),
            return_id: None,
            status: RefundStatus::Pending,
            created_at: T0,
            request: Some("{}".into()),
            attempt: 0,
        }
    }

    fn issued(refund: &Refund) -> Envelope {
        payment::refunding::issued(refund).unwrap()
    }

    fn succeeded(mut refund: Refund, total: i64) -> Refund {
        refund.status = RefundStatus::Succeeded {
            stripe_refund_id: "re_1".into(),
            refunded_total: Money::new(total, Currency::EUR).unwrap(),
        };
        refund
    }

    #[tokio::test]
    async fn two_reservations_read_from_the_same_payment_never_pass_the_captured_total() {
        let table = table().await;
        let (order_id, payment) = captured(&table).await;

        // Both planned from the same read (2500 left): the second's condition sees the first.
        let first = table.store.reserve_refund(&payment, &refund(order_id, "a", 2000)).await.unwrap();
        let second = table.store.reserve_refund(&payment, &refund(order_id, "b", 1000)).await.unwrap();
        let again = table.store.reserve_refund(&payment, &refund(order_id, "a", 2000)).await.unwrap();

        assert_eq!((first, second), (Reserved::Done, Reserved::Moved));
        assert!(matches!(again, Reserved::Exists(existing) if existing.source == Source::Key("a".into())));
        let stored = table.store.get(order_id).await.unwrap().unwrap();
        assert_eq!(stored.refunds.reserved, 2000);
        let due = payment::refund::REFUND_TIMEOUT;
        assert!(table.store.due_refunds(T0 + due - Duration::seconds(1), None).await.unwrap().items.is_empty());
        let pending = table.store.due_refunds(T0 + due, None).await.unwrap();
        assert_eq!(pending.items, vec![PendingRefund { order_id, source: Source::Key("a".into()) }]);
    }

    #[tokio::test]
    async fn a_refund_settles_once_with_its_event_and_a_failed_one_gives_its_amount_back() {
        let table = table().await;
        let (order_id, payment) = captured(&table).await;
        let (a, b) = (refund(order_id, "a", 1000), refund(order_id, "b", 500));
        table.store.reserve_refund(&payment, &a).await.unwrap();
        let payment = table.store.get(order_id).await.unwrap().unwrap();
        table.store.reserve_refund(&payment, &b).await.unwrap();
        let settled = succeeded(a.clone(), 1000);

        let done = table.store.settle_refund(&payment, &settled, &issued(&settled)).await.unwrap();
        let twice = table.store.settle_refund(&payment, &settled, &issued(&settled)).await.unwrap();
        let mut refused = b.clone();
        refused.status = RefundStatus::Failed { reason: "charge_disputed".into() };
        let refused_event = payment::refunding::failed(&refused, None).unwrap();
        let failed = table.store.fail_refund(&refused, &refused_event).await.unwrap();

        assert_eq!(done, Recorded::Done);
        assert!(matches!(twice, Recorded::Already(current) if current.status == settled.status));
        assert_eq!(failed, Recorded::Done);
        let stored = table.store.get(order_id).await.unwrap().unwrap();
        assert_eq!((stored.refunds.reserved, stored.refunds.refunded), (1000, 1000));
        assert_eq!(table.store.refund(order_id, &a.source).await.unwrap(), Some(settled));
        assert_eq!(table.store.refunds(order_id).await.unwrap().len(), 2);
        assert!(
            table.store.due_refunds(T0 + Duration::days(1), None).await.unwrap().items.is_empty(),
            "out of the index"
        );
        let outbox = table.outbox().await;
        assert_eq!(outbox.iter().filter(|t| *t == "RefundIssued").count(), 1);
        assert_eq!(outbox.iter().filter(|t| *t == "RefundFailed").count(), 1);
    }

    #[tokio::test]
    async fn a_refund_stripe_fails_after_success_is_failed_once_and_its_amount_freed() {
        let table = table().await;
        let (order_id, payment) = captured(&table).await;
        let (a, b) = (refund(order_id, "a", 1000), refund(order_id, "b", 500));
        table.store.reserve_refund(&payment, &a).await.unwrap();
        let settled = succeeded(a.clone(), 1000);
        table.store.settle_refund(&payment, &settled, &issued(&settled)).await.unwrap();
        let payment = table.store.get(order_id).await.unwrap().unwrap();
        table.store.reserve_refund(&payment, &b).await.unwrap();
        let late = Refund { status: RefundStatus::Failed { reason: "lost_or_stolen_card".into() }, ..a.clone() };
        let event = payment::refunding::failed(&late, Some("re_1")).unwrap();

        let other_id = table.store.fail_succeeded_refund(&late, "re_other", &event).await.unwrap();
        let done = table.store.fail_succeeded_refund(&late, "re_1", &event).await.unwrap();
        let twice = table.store.fail_succeeded_refund(&late, "re_1", &event).await.unwrap();
        let still_pending = Refund { status: late.status.clone(), ..b.clone() };
        let not_succeeded = table.store.fail_succeeded_refund(&still_pending, "re_1", &event).await.unwrap();

        assert!(matches!(other_id, Recorded::Already(current) if current.status == settled.status));
        assert_eq!(done, Recorded::Done);
        assert!(matches!(twice, Recorded::Already(current) if current.status == late.status));
        assert!(matches!(not_succeeded, Recorded::Already(current) if current.status == RefundStatus::Pending));
        let stored = table.store.get(order_id).await.unwrap().unwrap();
        assert_eq!((stored.refunds.reserved, stored.refunds.refunded), (500, 0), "b's 500 stays reserved");
        assert_eq!(table.store.refund(order_id, &a.source).await.unwrap(), Some(late));
        let outbox = table.outbox().await;
        assert_eq!(outbox.iter().filter(|t| *t == "RefundFailed").count(), 1);
    }

    #[tokio::test]
    async fn a_refund_stripe_holds_pending_is_followed_announced_once_listed_when_due_and_moves_on_its_key_once() {
        let table = table().await;
        let (order_id, payment) = captured(&table).await;
        let a = refund(order_id, "a", 1000);
        table.store.reserve_refund(&payment, &a).await.unwrap();
        let look_again_at = T0 + Duration::minutes(15);
        let following =
            Refund { status: RefundStatus::Processing { stripe_refund_id: "re_p".into(), look_again_at }, ..a.clone() };

        let moved = table.store.next_attempt(&a).await.unwrap();
        let stale = table.store.next_attempt(&a).await.unwrap();
        let first = payment::refunding::pending(&following).unwrap();
        let followed = table.store.follow_refund(&following, Some(&first)).await.unwrap();
        // A call that read it before it was followed: its own first record (and event) loses.
        let late_first = payment::refunding::pending(&following).unwrap();
        let stale_first = table.store.follow_refund(&following, Some(&late_first)).await.unwrap();
        let other = Refund {
            status: RefundStatus::Processing { stripe_refund_id: "re_other".into(), look_again_at },
            ..a.clone()
        };
        let refused = table.store.follow_refund(&other, None).await.unwrap();
        // Read back still pending: only when to look again moves.
        let look_again_at = look_again_at + Duration::minutes(15);
        let again =
            Refund { status: RefundStatus::Processing { stripe_refund_id: "re_p".into(), look_again_at }, ..a.clone() };
        let read_back = table.store.follow_refund(&again, None).await.unwrap();

        assert_eq!((moved, stale), (true, false), "one retry moves the key on");
        assert_eq!((followed, read_back), (Recorded::Done, Recorded::Done));
        assert!(matches!(stale_first, Recorded::Already(current) if current.status == following.status));
        let stored = table.store.refund(order_id, &a.source).await.unwrap().unwrap();
        assert_eq!((stored.status.clone(), stored.attempt), (again.status.clone(), 1));
        assert!(matches!(refused, Recorded::Already(current) if current.status == following.status));
        let outbox = table.outbox().await;
        assert_eq!(outbox.iter().filter(|t| *t == "RefundPending").count(), 1, "announced once: {outbox:?}");
        let before = table.store.due_refunds(look_again_at - Duration::seconds(1), None).await.unwrap();
        let due = table.store.due_refunds(look_again_at, None).await.unwrap();
        assert!(before.items.is_empty(), "not read back before its time");
        assert_eq!(due.items, vec![PendingRefund { order_id, source: a.source.clone() }]);
    }

    #[tokio::test]
    async fn a_settle_from_a_stale_refunded_sum_is_moved_and_a_stripe_refund_is_recorded_once() {
        let table = table().await;
        let (order_id, payment) = captured(&table).await;
        let mut outside = succeeded(refund(order_id, "x", 300), 300);
        outside.source = Source::Stripe("re_dash".into());

        let recorded = table.store.record_stripe_refund(&payment, &outside, &issued(&outside)).await.unwrap();
        let again = table.store.record_stripe_refund(&payment, &outside, &issued(&outside)).await.unwrap();
        let a = refund(order_id, "a", 1000);
        let fresh = table.store.get(order_id).await.unwrap().unwrap();
        table.store.reserve_refund(&fresh, &a).await.unwrap();
        let stale = succeeded(a, 1000);
        let moved = table.store.settle_refund(&payment, &stale, &issued(&stale)).await.unwrap();

        assert_eq!(recorded, Recorded::Done);
        assert!(matches!(again, Recorded::Already(_)));
        assert_eq!(moved, Recorded::Moved, "read before the dashboard refund: its sum is stale");
        let stored = table.store.get(order_id).await.unwrap().unwrap();
        assert_eq!((stored.refunds.reserved, stored.refunds.refunded), (1300, 300));
    }

    #[tokio::test]
    async fn a_dispute_is_recorded_once() {
        let table = table().await;
        let (order_id, _) = captured(&table).await;
        let event = |id: &str| {
            let disputed = Event::PaymentDisputed(domain_events::payment::PaymentDisputed {
                order_id,
                payment_intent_id: "pi_refund1".into(),
                dispute_id: id.into(),
                amount: order().total,
                reason: "fraudulent".into(),
            });
            Envelope::new(Metadata::new(order_id.to_string()), disputed)
        };

        let first = table.store.record_dispute(order_id, "dp_1", &event("dp_1")).await.unwrap();
        let again = table.store.record_dispute(order_id, "dp_1", &event("dp_1")).await.unwrap();

        assert_eq!((first, again), (true, false));
        assert_eq!(table.outbox().await.iter().filter(|t| *t == "PaymentDisputed").count(), 1);
    }

    #[tokio::test]
    async fn a_disputes_closing_is_recorded_once_beside_its_opening() {
        let table = table().await;
        let (order_id, _) = captured(&table).await;
        let closed = || {
            let closed = Event::PaymentDisputeClosed(domain_events::payment::PaymentDisputeClosed {
                order_id,
                payment_intent_id: "pi_refund1".into(),
                dispute_id: "dp_1".into(),
                outcome: domain_events::payment::DisputeOutcome::Won,
                amount: order().total,
                reason: "fraudulent".into(),
            });
            Envelope::new(Metadata::new(order_id.to_string()), closed)
        };

        let first = table.store.record_dispute_closed(order_id, "dp_1", &closed()).await.unwrap();
        let again = table.store.record_dispute_closed(order_id, "dp_1", &closed()).await.unwrap();

        assert_eq!((first, again), (true, false));
        assert_eq!(table.outbox().await.iter().filter(|t| *t == "PaymentDisputeClosed").count(), 1);
    }
}
