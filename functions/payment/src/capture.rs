//! Capturing an order's total: `ShipmentDispatched`.
//!
//! ## What is captured, and when
//!
//! The whole authorized total, on the order's first `ShipmentDispatched`. Stripe captures a
//! PaymentIntent once: a partial capture (`amount_to_capture`) releases the rest of the hold, and
//! capturing several times needs multicapture, an enterprise feature unavailable in test mode and
//! in the local emulator. So a split order is paid in full when its first shipment leaves, and its
//! later dispatches capture nothing.
//!
//! ## Capturing without capturing twice
//!
//! 1. *claim*: the payment goes `authorized` → `capturing`, only while authorized with its
//!    PaymentIntent and the order not cancelled. Exactly one dispatch wins it; every later one
//!    (another shipment, a duplicate delivery, the same fact re-sent under a new event id) finds
//!    the payment `capturing`, `captured` or `capture_failed`.
//! 2. *capture* at Stripe, without an idempotency key: Stripe saves even a 5xx under a key for
//!    24 h, so a shared key would replay a passing outage to every retry. Stripe captures a
//!    PaymentIntent once, and every retry reads it back first.
//! 3. *record* the outcome with its event (`PaymentCaptured` or `PaymentCaptureFailed`) in one
//!    transaction, only while `capturing` that PaymentIntent.
//!
//! A delivery that finds the payment `capturing` (the claim's invocation died, or Stripe failed
//! and the message came back) *resumes* at once: it reads the PaymentIntent back; `succeeded`
//! means Stripe captured it already (a crash between steps 2 and 3), so only step 3 is left;
//! `requires_capture` means it was not, so it captures. No claim timeout is needed, unlike an
//! authorization's: Stripe itself captures a PaymentIntent at most once, and answers a second
//! capture with `payment_intent_unexpected_state`, which is read back the same way.
//!
//! ## Why captures need no sweep
//!
//! A capture can stall like an authorization: its claim is written and the invocation dies, or
//! Stripe fails on all five receives of the message, which then waits in the dead-letter queue.
//! The authorizations' sweep exists because a stalled authorization holds money for an order
//! that may be cancelled, and checkout times orders out in minutes. A stalled capture has no such
//! clock short of the authorization's own 7 days, and nothing is lost: the dispatch waits in the
//! payment dead-letter queue (kept 14 days, alarm on the first message), and redriving it, or the
//! order's next dispatch, resumes the capture from the PaymentIntent as any redelivery would
//! (every step above is safe to repeat). So SQS redelivery, then the DLQ's alarm and a redrive,
//! suffice, and `capturing` payments write no index.
//!
//! ## What fails a capture
//!
//! Stripe refusing it for good: the authorization lapsed (`charge_expired_for_capture`; card
//! authorizations last about 7 days), the PaymentIntent is not `requires_capture` (cancelled:
//! [`NOT_CAPTURABLE`]), or another 4xx with a code. The payment is recorded `capture_failed` with
//! `PaymentCaptureFailed { reason }` (Stripe's code), once, and the message is not retried: the
//! dispatch is not lost, and the order does not ship silently unpaid (checkout flags it for an
//! admin). Stripe being unreachable, timing out, throttling or failing (5xx) leaves the claim in
//! place and the message is retried.
//!
//! ## Dispatches that find no authorization to capture
//!
//! - Total zero: nothing was authorized and nothing is captured; no event.
//! - Not authorized yet (it cannot happen as the saga runs, since checkout confirms an order only
//!   on `PaymentAuthorized`, but events may overtake each other): the dispatch is retried
//!   ([`PaymentError::NotCapturableYet`]) until the authorization is recorded.
//! - Voided (the order was cancelled before the dispatch reached payment): recorded
//!   `capture_failed` with [`AUTHORIZATION_VOIDED`](crate::model::AUTHORIZATION_VOIDED) and `PaymentCaptureFailed`, without calling
//!   Stripe. A cancelled order whose void is still under way is retried until it is voided.
//! - Failed, or cancelled before any authorization: [`PaymentError::NothingToCapture`], for a
//!   person (the message dead-letters and its alarm fires).

use domain_events::Event;
use domain_events::fulfillment::ShipmentDispatched;
use domain_events::payment::{PaymentCaptureFailed, PaymentCaptured};

use crate::authorize::envelope;
use crate::error::PaymentError;
use crate::model::{CaptureSettlement, Dispatch, NOT_CAPTURABLE, Payment, PaymentIntentId};
use crate::ports::{Claim, GatewayError, IntentStatus, PaymentGateway, PaymentStore, StoreError, Write};

/// `ShipmentDispatched`: capture the order's total on its first dispatch.
pub async fn on_shipment_dispatched(
    store: &impl PaymentStore,
    gateway: &impl PaymentGateway,
    dispatched: &ShipmentDispatched,
) -> Result<(), PaymentError> {
    let order_id = dispatched.order_id;
    // Payment recorded OrderPlaced long before any dispatch (the saga authorizes before it
    // confirms); a payment it never heard of is not a dispatch to guess about.
    let payment = store.get(order_id).await?.ok_or_else(|| PaymentError::NothingToCapture {
        order_id,
        detail: "payment has no record of the order".to_owned(),
    })?;
    match payment.on_dispatch() {
        Dispatch::Capture(intent) => match store.start_capture(order_id, &intent).await? {
            Claim::Won(claimed) => {
                tracing::info!(%order_id, shipment_id = %dispatched.shipment_id, payment_intent_id = %intent,
                    "first dispatch: capturing the order's total");
                capture(store, gateway, &claimed, &intent).await
            }
            // Another dispatch claimed it, or the order was cancelled, since our read.
            Claim::Lost(current) => carry_on(store, gateway, &current).await,
        },
        _ => carry_on(store, gateway, &payment).await,
    }
}

/// Does what [`Payment::on_dispatch`] says, short of a first claim.
async fn carry_on(
    store: &impl PaymentStore,
    gateway: &impl PaymentGateway,
    payment: &Payment,
) -> Result<(), PaymentError> {
    let order_id = payment.order_id;
    match payment.on_dispatch() {
        Dispatch::Resume(intent) => {
            tracing::info!(%order_id, payment_intent_id = %intent, "resuming a capture");
            resume(store, gateway, payment, &intent).await
        }
        Dispatch::Refuse { intent, reason } => {
            tracing::warn!(%order_id, payment_intent_id = %intent, reason, "dispatched after the authorization was voided");
            record(store, payment, &CaptureSettlement::Failed { intent, reason }).await
        }
        Dispatch::Nothing => {
            tracing::info!(%order_id, stage = ?payment.stage, "nothing to capture: zero total, or captured already");
            Ok(())
        }
        // A claim just lost to a payment still authorized cannot be (the claim's condition is
        // `on_dispatch`'s); retrying is the safe answer if it ever is.
        Dispatch::Capture(_) | Dispatch::Wait => Err(PaymentError::NotCapturableYet { order_id }),
        Dispatch::Unpayable => Err(PaymentError::NothingToCapture { order_id, detail: format!("{:?}", payment.stage) }),
    }
}

/// Continues a claimed capture: read the PaymentIntent back, capture it unless Stripe did.
pub(crate) async fn resume(
    store: &impl PaymentStore,
    gateway: &impl PaymentGateway,
    payment: &Payment,
    intent: &PaymentIntentId,
) -> Result<(), PaymentError> {
    match gateway.retrieve_intent(intent).await?.status {
        IntentStatus::RequiresCapture => capture(store, gateway, payment, intent).await,
        status => settle_status(store, payment, intent, status).await,
    }
}

/// Step 2, then step 3.
async fn capture(
    store: &impl PaymentStore,
    gateway: &impl PaymentGateway,
    payment: &Payment,
    intent: &PaymentIntentId,
) -> Result<(), PaymentError> {
    let status = match gateway.capture_intent(payment.order_id, intent).await {
        Ok(captured) => captured.status,
        // Not capturable in its state (captured already by an attempt whose answer was lost, or
        // cancelled), or our key in use by another attempt: what Stripe holds decides.
        Err(GatewayError::Conflict(_)) => gateway.retrieve_intent(intent).await?.status,
        Err(GatewayError::Refused { code, .. }) => {
            return record(store, payment, &CaptureSettlement::Failed { intent: intent.clone(), reason: code }).await;
        }
        Err(GatewayError::Declined(decline)) => {
            let settlement = CaptureSettlement::Failed { intent: intent.clone(), reason: decline.code };
            return record(store, payment, &settlement).await;
        }
        Err(error) => return Err(error.into()),
    };
    settle_status(store, payment, intent, status).await
}

/// Step 3 from the PaymentIntent's status.
async fn settle_status(
    store: &impl PaymentStore,
    payment: &Payment,
    intent: &PaymentIntentId,
    status: IntentStatus,
) -> Result<(), PaymentError> {
    let order_id = payment.order_id;
    let settlement = match status {
        IntentStatus::Succeeded => CaptureSettlement::Captured { intent: intent.clone() },
        // Another attempt is capturing it right now, or card funds are moving: look again.
        IntentStatus::RequiresCapture | IntentStatus::Processing => {
            return Err(PaymentError::CaptureUnderWay { order_id, intent: intent.clone() });
        }
        // Cancelled (by Stripe when the authorization lapsed, or by someone), or never
        // authorized: Stripe would refuse the capture with this code.
        status => {
            tracing::warn!(%order_id, payment_intent_id = %intent, ?status, "the PaymentIntent cannot be captured");
            CaptureSettlement::Failed { intent: intent.clone(), reason: NOT_CAPTURABLE.to_owned() }
        }
    };
    record(store, payment, &settlement).await
}

/// Writes the outcome and its event; a refused write means another invocation recorded it.
async fn record(
    store: &impl PaymentStore,
    payment: &Payment,
    settlement: &CaptureSettlement,
) -> Result<(), PaymentError> {
    let order_id = payment.order_id;
    let event = match settlement {
        CaptureSettlement::Captured { intent } => {
            let amount = payment
                .order
                .as_ref()
                .ok_or_else(|| StoreError::Corrupt { order_id, detail: "captured without an order".into() })?
                .total;
            Event::PaymentCaptured(PaymentCaptured { order_id, payment_intent_id: intent.to_string(), amount })
        }
        CaptureSettlement::Failed { intent, reason } => Event::PaymentCaptureFailed(PaymentCaptureFailed {
            order_id,
            payment_intent_id: intent.to_string(),
            reason: reason.clone(),
        }),
    };
    match store.settle_capture(order_id, settlement, &envelope(order_id, event)).await? {
        Write::Done => match settlement {
            CaptureSettlement::Captured { intent } => {
                tracing::info!(%order_id, payment_intent_id = %intent, "payment captured");
            }
            CaptureSettlement::Failed { intent, reason } => {
                tracing::warn!(%order_id, payment_intent_id = %intent, reason, "capture failed; the order needs a person");
            }
        },
        Write::Refused(current) => {
            tracing::info!(%order_id, stage = ?current.stage, "capture recorded by another invocation")
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use domain_events::checkout::OrderPlaced;
    use kernel::{Money, OrderId};

    use super::*;
    use crate::authorize::{on_order_placed, on_stock_reserved};
    use crate::cancel::on_order_cancelled;
    use crate::model::Stage;
    use crate::testing::{
        Call, DECLINED, FakeStore, FakeStripe, Fault, T0, VISA, authorized, capture_failed, captured, dispatched,
        is_transient, place_and_reserve, placed, stalled_after_step_2,
    };

    const EXPIRED: &str = "charge_expired_for_capture";

    /// An order authorized at the fake Stripe, and its PaymentIntent.
    async fn authorized_order(store: &FakeStore, stripe: &FakeStripe) -> (OrderId, PaymentIntentId) {
        let order_id = OrderId::new();
        place_and_reserve(store, stripe, order_id, VISA).await;
        (order_id, stripe.only_intent())
    }

    #[tokio::test]
    async fn the_first_dispatch_captures_the_whole_total_once() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, intent) = authorized_order(&store, &stripe).await;

        on_shipment_dispatched(&store, &stripe, &dispatched(order_id, 1)).await.unwrap();

        assert_eq!(stripe.captures(), 1);
        assert_eq!(stripe.status(&intent), IntentStatus::Succeeded);
        assert_eq!(store.payment(order_id).stage, Stage::Captured { intent: intent.clone() });
        assert_eq!(store.events(), vec![authorized(order_id, &intent), captured(order_id, &intent)]);
    }

    #[tokio::test]
    async fn later_dispatches_duplicates_and_the_same_fact_under_a_new_event_id_capture_nothing() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, intent) = authorized_order(&store, &stripe).await;
        let first = dispatched(order_id, 2);
        let second = dispatched(order_id, 2);

        on_shipment_dispatched(&store, &stripe, &first).await.unwrap();
        on_shipment_dispatched(&store, &stripe, &first).await.unwrap();
        on_shipment_dispatched(&store, &stripe, &second).await.unwrap();

        assert_eq!(stripe.captures(), 1, "Stripe captures a PaymentIntent once; payment asks once");
        assert_eq!(store.events(), vec![authorized(order_id, &intent), captured(order_id, &intent)]);
    }

    #[tokio::test]
    async fn a_crash_after_stripe_captured_is_recorded_by_the_redelivery_without_capturing_again() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, intent) = authorized_order(&store, &stripe).await;
        stripe.fail_once(Call::Capture, Fault::AnswerLost);

        let crashed = on_shipment_dispatched(&store, &stripe, &dispatched(order_id, 1)).await;
        let redelivered = on_shipment_dispatched(&store, &stripe, &dispatched(order_id, 1)).await;

        assert!(is_transient(crashed));
        redelivered.unwrap();
        assert_eq!(stripe.captures(), 1);
        assert_eq!(store.payment(order_id).stage, Stage::Captured { intent: intent.clone() });
        assert_eq!(store.events(), vec![authorized(order_id, &intent), captured(order_id, &intent)]);
    }

    #[tokio::test]
    async fn an_unreachable_stripe_is_transient_and_the_retry_captures() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, intent) = authorized_order(&store, &stripe).await;
        stripe.fail_once(Call::Capture, Fault::Unreachable);

        let unreachable = on_shipment_dispatched(&store, &stripe, &dispatched(order_id, 1)).await;
        let claimed = store.payment(order_id).stage;
        let retried = on_shipment_dispatched(&store, &stripe, &dispatched(order_id, 1)).await;

        assert!(is_transient(unreachable));
        assert_eq!(claimed, Stage::Capturing { intent: intent.clone() }, "the claim stays for the retry");
        retried.unwrap();
        assert_eq!(stripe.captures(), 1);
        assert_eq!(store.events(), vec![authorized(order_id, &intent), captured(order_id, &intent)]);
    }

    #[tokio::test]
    async fn a_capture_stripe_refuses_is_reported_once_and_not_retried() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, intent) = authorized_order(&store, &stripe).await;
        stripe.fail_once(Call::Capture, Fault::Refused(EXPIRED));

        let refused = on_shipment_dispatched(&store, &stripe, &dispatched(order_id, 2)).await;
        let again = on_shipment_dispatched(&store, &stripe, &dispatched(order_id, 2)).await;

        refused.expect("a refusal is an outcome, not a failure of the message");
        again.unwrap();
        assert_eq!(stripe.captures(), 0);
        assert_eq!(
            store.payment(order_id).stage,
            Stage::CaptureFailed { intent: intent.clone(), reason: EXPIRED.into() }
        );
        assert_eq!(store.events(), vec![authorized(order_id, &intent), capture_failed(order_id, &intent, EXPIRED)]);
    }

    #[tokio::test]
    async fn a_claimed_capture_whose_payment_intent_was_cancelled_at_stripe_is_reported() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, intent) = authorized_order(&store, &stripe).await;
        stripe.fail_once(Call::Capture, Fault::Unreachable);
        assert!(is_transient(on_shipment_dispatched(&store, &stripe, &dispatched(order_id, 1)).await));
        stripe.set_status(&intent, IntentStatus::Canceled);

        on_shipment_dispatched(&store, &stripe, &dispatched(order_id, 1)).await.unwrap();

        assert_eq!(stripe.captures(), 0);
        assert_eq!(store.events()[1], capture_failed(order_id, &intent, NOT_CAPTURABLE));
    }

    #[tokio::test]
    async fn a_dispatch_that_overtakes_the_authorization_waits_for_it_then_captures() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        on_order_placed(&store, &stripe, &placed(order_id, VISA), T0).await.unwrap();

        let early = on_shipment_dispatched(&store, &stripe, &dispatched(order_id, 1)).await;
        on_stock_reserved(&store, &stripe, order_id, T0).await.unwrap();
        let retried = on_shipment_dispatched(&store, &stripe, &dispatched(order_id, 1)).await;

        assert!(matches!(early, Err(PaymentError::NotCapturableYet { .. })), "{early:?}");
        assert!(is_transient(early));
        retried.unwrap();
        assert_eq!(stripe.captures(), 1);
        assert_eq!(store.events()[1], captured(order_id, &stripe.only_intent()));
    }

    #[tokio::test]
    async fn a_dispatch_during_an_authorization_waits_for_it() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        stalled_after_step_2(&store, &stripe, order_id, Fault::Unreachable).await;

        let waiting = on_shipment_dispatched(&store, &stripe, &dispatched(order_id, 1)).await;

        assert!(is_transient(waiting));
        assert_eq!(stripe.captures(), 0);
    }

    #[tokio::test]
    async fn an_order_with_nothing_to_pay_needs_no_capture() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        let free = OrderPlaced { total: Money::zero(kernel::Currency::USD), ..placed(order_id, VISA) };
        on_order_placed(&store, &stripe, &free, T0).await.unwrap();
        on_stock_reserved(&store, &stripe, order_id, T0).await.unwrap();

        on_shipment_dispatched(&store, &stripe, &dispatched(order_id, 1)).await.unwrap();

        assert_eq!(stripe.intent_count(), 0, "Stripe never hears of it");
        assert!(store.events().is_empty());
    }

    #[tokio::test]
    async fn a_dispatch_after_the_void_is_reported_without_calling_stripe() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, intent) = authorized_order(&store, &stripe).await;
        on_order_cancelled(&store, &stripe, order_id).await.unwrap();

        on_shipment_dispatched(&store, &stripe, &dispatched(order_id, 1)).await.unwrap();
        on_shipment_dispatched(&store, &stripe, &dispatched(order_id, 1)).await.unwrap();

        assert_eq!(stripe.captures(), 0);
        let events = store.events();
        assert_eq!(events.len(), 3, "{events:?}");
        assert_eq!(events[2], capture_failed(order_id, &intent, crate::model::AUTHORIZATION_VOIDED));
    }

    #[tokio::test]
    async fn a_dispatch_of_an_order_whose_void_is_under_way_waits_for_the_void() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, intent) = authorized_order(&store, &stripe).await;
        store.record(order_id, |payment| payment.cancelled = true);

        let waiting = on_shipment_dispatched(&store, &stripe, &dispatched(order_id, 1)).await;

        assert!(is_transient(waiting));
        assert_eq!(stripe.captures(), 0, "a cancelled order is never captured");
        assert_eq!(store.payment(order_id).stage, Stage::Authorized { intent });
    }

    #[tokio::test]
    async fn a_dispatch_of_an_order_that_was_never_paid_is_for_a_person() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        place_and_reserve(&store, &stripe, order_id, DECLINED).await;

        let declined = on_shipment_dispatched(&store, &stripe, &dispatched(order_id, 1)).await;
        let unknown = on_shipment_dispatched(&store, &stripe, &dispatched(OrderId::new(), 1)).await;

        assert!(matches!(declined, Err(PaymentError::NothingToCapture { .. })), "{declined:?}");
        assert!(matches!(unknown, Err(ref error @ PaymentError::NothingToCapture { .. }) if !error.is_transient()));
        assert_eq!(stripe.captures(), 0);
    }

    #[tokio::test]
    async fn a_cancellation_that_crossed_the_first_dispatch_never_undoes_the_capture() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, intent) = authorized_order(&store, &stripe).await;
        stripe.fail_once(Call::Capture, Fault::Unreachable);
        assert!(is_transient(on_shipment_dispatched(&store, &stripe, &dispatched(order_id, 1)).await));

        let while_capturing = on_order_cancelled(&store, &stripe, order_id).await;
        on_shipment_dispatched(&store, &stripe, &dispatched(order_id, 1)).await.unwrap();
        let once_captured = on_order_cancelled(&store, &stripe, order_id).await;

        while_capturing.expect("acknowledged: the capture under way finishes");
        once_captured.expect("acknowledged: checkout flags the cancelled order on PaymentCaptured");
        assert_eq!(stripe.status(&intent), IntentStatus::Succeeded, "never voided after the capture");
        assert_eq!(store.events(), vec![authorized(order_id, &intent), captured(order_id, &intent)]);
    }
}
