//! Cancellation: `OrderCancelled`, the void of an authorization, and the abandoning of one that
//! was still running.
//!
//! `OrderCancelled` flags the payment (the flag is never removed), which stops any later claim.
//! What happens to the money depends on how far the authorization got, and the side that comes
//! last undoes it:
//!
//! - **Not started**: nothing to undo; it never starts.
//! - **Awaiting 3-D Secure** (`requires_action`): the cancellation (checkout's timeout, most
//!   often) cancels the PaymentIntent at Stripe and records the payment `failed` with
//!   `PaymentFailed { reason: "cancelled" }`. A webhook that says the customer passed, arriving
//!   after that, finds the payment failed and changes nothing; one arriving before finds the order
//!   cancelled and the authorization is refused, then abandoned the same way.
//! - **Authorized**: the cancellation voids it at Stripe (the hold is released) and announces
//!   `PaymentVoided`.
//! - **Authorizing**: the cancellation is acknowledged at once, and the authorization finishes the
//!   compensation. Whoever carries an authorization on looks at the flag before confirming: a
//!   claim's owner in what step 2's write returns, a resumed authorization in the payment it
//!   read ([`Next::Abandon`](crate::model::Next::Abandon)). A cancelled payment's PaymentIntent is
//!   never confirmed; it is cancelled at Stripe instead, the payment is recorded `failed` with
//!   `PaymentFailed { reason: "cancelled" }` (see [`CANCELLED`]), and no `PaymentAuthorized` is
//!   ever announced for it.
//! - **Cancelled while Stripe confirms**: step 4 records an authorization only if the order is not
//!   cancelled. When the flag landed first, the write is refused with the payment as it is, and
//!   the authorizer cancels the PaymentIntent it just confirmed (releasing the hold) and records
//!   the failure as above. When the flag lands after step 4, the cancellation finds the payment
//!   authorized and voids it. Both writes are on one item, so one of them comes first, and the
//!   side that comes second undoes the hold.
//! - **Capturing, captured or capture failed** (the cancellation crossed the order's first
//!   dispatch, which checkout had not seen yet): the goods left, and the capture is not undone
//!   (refunds are not built). Its outcome, `PaymentCaptured` or `PaymentCaptureFailed`, reaches
//!   the cancelled order, which checkout flags `dispatched_after_cancel` for an admin.

use domain_events::Event;
use domain_events::payment::PaymentVoided;
use kernel::OrderId;

use crate::authorize::{envelope, record_settlement};
use crate::error::PaymentError;
use crate::model::{CANCELLED, Payment, PaymentIntentId, Settlement, Stage};
use crate::ports::{GatewayError, IntentStatus, PaymentGateway, PaymentStore, Write};

/// `OrderCancelled`: stop any later authorization and void one that went through.
pub async fn on_order_cancelled(
    store: &impl PaymentStore,
    gateway: &impl PaymentGateway,
    order_id: OrderId,
) -> Result<(), PaymentError> {
    let payment = store.record_cancelled(order_id).await?;
    match &payment.stage {
        Stage::Pending if payment.order.as_ref().is_some_and(|order| order.total.amount() == 0) => {
            tracing::info!(%order_id, "the order's total is zero: nothing to authorize");
            Ok(())
        }
        Stage::Pending => {
            tracing::info!(%order_id, "order cancelled before its payment started; it never will");
            Ok(())
        }
        // The flag is recorded: whoever carries the authorization on sees it and cancels at
        // Stripe instead of confirming (see the module docs); the sweep does if nobody does.
        Stage::Authorizing { .. } => {
            tracing::info!(%order_id, "order cancelled during its authorization; the authorization undoes itself");
            Ok(())
        }
        // The customer never passed 3-D Secure in time (checkout's timeout), or the order was
        // cancelled otherwise: cancel the PaymentIntent at Stripe and record the payment failed.
        Stage::AwaitingAction { intent } => abandon(store, gateway, &payment, Some(intent)).await,
        Stage::Authorized { intent } => void(store, gateway, order_id, intent).await,
        Stage::Failed | Stage::Voided { .. } => Ok(()),
        // A cancellation that crossed the order's first dispatch: the goods left, and the capture
        // is not undone. Its outcome (PaymentCaptured or PaymentCaptureFailed) reaches the
        // cancelled order, which checkout flags for an admin.
        Stage::Capturing { .. } | Stage::Captured { .. } | Stage::CaptureFailed { .. } => {
            tracing::warn!(%order_id, stage = ?payment.stage,
                "order cancelled after its first dispatch reached payment; the capture stands");
            Ok(())
        }
    }
}

async fn void(
    store: &impl PaymentStore,
    gateway: &impl PaymentGateway,
    order_id: OrderId,
    intent: &PaymentIntentId,
) -> Result<(), PaymentError> {
    cancel_at_stripe(gateway, order_id, intent).await?;
    let event =
        envelope(order_id, Event::PaymentVoided(PaymentVoided { order_id, payment_intent_id: intent.to_string() }));
    match store.void(order_id, intent, &event).await? {
        Write::Done => tracing::info!(%order_id, payment_intent_id = %intent, "authorization voided"),
        Write::Refused(_) => tracing::info!(%order_id, "authorization already voided"),
    }
    Ok(())
}

/// The order was cancelled during the authorization: cancel the recorded PaymentIntent at Stripe
/// (releasing the hold if its confirmation went through) and record the payment failed with
/// [`CANCELLED`]. Without a recorded PaymentIntent there is nothing to cancel: one created but
/// not recorded was never confirmed.
pub(crate) async fn abandon(
    store: &impl PaymentStore,
    gateway: &impl PaymentGateway,
    payment: &Payment,
    intent: Option<&PaymentIntentId>,
) -> Result<(), PaymentError> {
    let order_id = payment.order_id;
    if let Some(intent) = intent {
        cancel_at_stripe(gateway, order_id, intent).await?;
    }
    let settlement = Settlement::Failed { intent: intent.cloned(), reason: CANCELLED.to_owned(), decline_code: None };
    match record_settlement(store, payment, &settlement).await? {
        None => tracing::info!(%order_id, "authorization abandoned: the order was cancelled"),
        // Settled by another invocation; or, with no PaymentIntent in hand, a live owner recorded
        // one meanwhile: its step 2 returned the cancellation flag, so it abandons it itself (and
        // the sweep does, should it die).
        Some(current) => tracing::info!(%order_id, stage = ?current.stage, "payment moved on meanwhile"),
    }
    Ok(())
}

/// Cancels the PaymentIntent at Stripe; done when Stripe says it is cancelled.
pub(crate) async fn cancel_at_stripe(
    gateway: &impl PaymentGateway,
    order_id: OrderId,
    intent: &PaymentIntentId,
) -> Result<(), PaymentError> {
    let status = match gateway.cancel_intent(order_id, intent).await {
        Ok(cancelled) => cancelled.status,
        // Already cancelled by an earlier attempt (whose idempotency key Stripe no longer keeps),
        // still processing, or captured by someone: look.
        Err(GatewayError::Conflict(_)) => gateway.retrieve_intent(intent).await?.status,
        Err(error) => return Err(error.into()),
    };
    match status {
        IntentStatus::Canceled => Ok(()),
        // Card payments leave `processing` within seconds; cancel again later.
        IntentStatus::Processing => Err(PaymentError::CancelWhileProcessing { order_id, intent: intent.clone() }),
        status => Err(PaymentError::NotCancelled { order_id, intent: intent.clone(), status }),
    }
}

#[cfg(test)]
mod tests {
    use domain_events::Event;
    use time::Duration;

    use super::*;
    use crate::authorize::{on_order_placed, on_stock_reserved};
    use crate::model::CLAIM_TIMEOUT;
    use crate::testing::{
        Call, DECLINED, FakeStore, FakeStripe, Fault, T0, VISA, authorized, failed, is_transient, place_and_reserve,
        placed,
    };

    #[tokio::test]
    async fn a_cancellation_before_authorization_stops_it_for_good() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());

        on_order_cancelled(&store, &stripe, order_id).await.unwrap();
        place_and_reserve(&store, &stripe, order_id, VISA).await;

        assert_eq!(stripe.intent_count(), 0);
        assert_eq!(store.payment(order_id).stage, Stage::Pending);
        assert!(store.events().is_empty());
    }

    #[tokio::test]
    async fn a_cancellation_after_authorization_voids_the_hold_once() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        place_and_reserve(&store, &stripe, order_id, VISA).await;
        let intent = stripe.only_intent();

        on_order_cancelled(&store, &stripe, order_id).await.unwrap();
        on_order_cancelled(&store, &stripe, order_id).await.unwrap();

        assert_eq!(stripe.status(&intent), IntentStatus::Canceled);
        assert_eq!(store.payment(order_id).stage, Stage::Voided { intent: intent.clone() });
        let voided = Event::PaymentVoided(PaymentVoided { order_id, payment_intent_id: intent.to_string() });
        assert_eq!(store.events(), vec![authorized(order_id, &intent), voided]);
    }

    #[tokio::test]
    async fn a_void_that_stripe_already_did_is_recorded_without_cancelling_again() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        place_and_reserve(&store, &stripe, order_id, VISA).await;
        let intent = stripe.only_intent();
        stripe.cancel_intent(order_id, &intent).await.unwrap();

        on_order_cancelled(&store, &stripe, order_id).await.unwrap();

        assert_eq!(store.payment(order_id).stage, Stage::Voided { intent });
        assert_eq!(store.events().len(), 2);
    }

    #[tokio::test]
    async fn a_cancellation_that_lands_while_the_payment_intent_is_created_stops_the_confirmation() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        on_order_placed(&store, &stripe, &placed(order_id, VISA), T0).await.unwrap();
        stripe.meanwhile(Call::Create, store.cancellation(order_id));

        on_stock_reserved(&store, &stripe, order_id, T0).await.unwrap();
        let cancelled = on_order_cancelled(&store, &stripe, order_id).await;

        cancelled.unwrap();
        assert_eq!(stripe.confirmations(), 0, "a cancelled payment's PaymentIntent is never confirmed");
        assert_eq!(stripe.status(&stripe.only_intent()), IntentStatus::Canceled);
        assert_eq!(store.payment(order_id).stage, Stage::Failed);
        assert_eq!(store.events(), vec![failed(order_id, "cancelled", None)]);
    }

    #[tokio::test]
    async fn a_cancellation_that_lands_while_stripe_is_confirming_leaves_no_hold() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        on_order_placed(&store, &stripe, &placed(order_id, VISA), T0).await.unwrap();
        stripe.meanwhile(Call::Confirm, store.cancellation(order_id));

        on_stock_reserved(&store, &stripe, order_id, T0).await.unwrap();
        on_order_cancelled(&store, &stripe, order_id).await.unwrap();

        assert_eq!(stripe.status(&stripe.only_intent()), IntentStatus::Canceled, "the hold is released");
        assert_eq!(store.payment(order_id).stage, Stage::Failed);
        assert_eq!(store.events(), vec![failed(order_id, "cancelled", None)], "no PaymentAuthorized is announced");
    }

    #[tokio::test]
    async fn a_cancellation_that_lands_right_after_the_authorization_is_recorded_voids_it() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        on_order_placed(&store, &stripe, &placed(order_id, VISA), T0).await.unwrap();
        store.after_next_settle(|payment| payment.cancelled = true);

        on_stock_reserved(&store, &stripe, order_id, T0).await.unwrap();
        on_order_cancelled(&store, &stripe, order_id).await.unwrap();

        let intent = stripe.only_intent();
        assert_eq!(stripe.status(&intent), IntentStatus::Canceled);
        assert_eq!(store.payment(order_id).stage, Stage::Voided { intent: intent.clone() });
        let voided = Event::PaymentVoided(PaymentVoided { order_id, payment_intent_id: intent.to_string() });
        assert_eq!(store.events(), vec![authorized(order_id, &intent), voided]);
    }

    #[tokio::test]
    async fn a_stalled_authorization_of_a_cancelled_order_is_cancelled_at_stripe_not_confirmed() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        on_order_placed(&store, &stripe, &placed(order_id, VISA), T0).await.unwrap();
        stripe.fail_once(Call::Confirm, Fault::Unreachable);
        let stalled = on_stock_reserved(&store, &stripe, order_id, T0).await;

        let while_authorizing = on_order_cancelled(&store, &stripe, order_id).await;
        on_stock_reserved(&store, &stripe, order_id, T0 + Duration::seconds(180)).await.unwrap();

        assert!(is_transient(stalled));
        while_authorizing.expect("the cancellation is recorded and acknowledged; the authorization finishes it");
        assert_eq!(stripe.confirmations(), 0);
        assert_eq!(stripe.status(&stripe.only_intent()), IntentStatus::Canceled);
        assert_eq!(store.payment(order_id).stage, Stage::Failed);
        assert_eq!(store.events(), vec![failed(order_id, "cancelled", None)]);
    }

    #[tokio::test]
    async fn a_stalled_authorization_whose_hold_went_through_is_released_when_its_order_was_cancelled() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        on_order_placed(&store, &stripe, &placed(order_id, VISA), T0).await.unwrap();
        stripe.fail_once(Call::Confirm, Fault::AnswerLost);
        let crashed = on_stock_reserved(&store, &stripe, order_id, T0).await;

        on_order_cancelled(&store, &stripe, order_id).await.unwrap();
        on_stock_reserved(&store, &stripe, order_id, T0 + Duration::seconds(180)).await.unwrap();

        assert!(is_transient(crashed));
        assert_eq!(stripe.status(&stripe.only_intent()), IntentStatus::Canceled);
        assert_eq!(store.events(), vec![failed(order_id, "cancelled", None)]);
    }

    #[tokio::test]
    async fn a_claim_that_died_before_recording_its_intent_is_never_restarted_for_a_cancelled_order() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        on_order_placed(&store, &stripe, &placed(order_id, VISA), T0).await.unwrap();
        stripe.fail_once(Call::Create, Fault::AnswerLost);
        let crashed = on_stock_reserved(&store, &stripe, order_id, T0).await;

        on_order_cancelled(&store, &stripe, order_id).await.unwrap();
        on_stock_reserved(&store, &stripe, order_id, T0 + CLAIM_TIMEOUT).await.unwrap();

        assert!(is_transient(crashed));
        assert_eq!(stripe.confirmations(), 0);
        // The dead invocation's PaymentIntent was never confirmed: it holds nothing.
        assert_eq!(stripe.status(&stripe.only_intent()), IntentStatus::RequiresConfirmation);
        assert_eq!(store.payment(order_id).stage, Stage::Failed);
        assert_eq!(store.events(), vec![failed(order_id, "cancelled", None)]);
    }

    #[tokio::test]
    async fn a_cancellation_of_a_failed_payment_does_nothing() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        place_and_reserve(&store, &stripe, order_id, DECLINED).await;

        on_order_cancelled(&store, &stripe, order_id).await.unwrap();

        assert_eq!(store.payment(order_id).stage, Stage::Failed);
        assert_eq!(store.events().len(), 1);
    }
}
