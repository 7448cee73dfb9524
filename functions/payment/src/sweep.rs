//! Stalled authorizations: the two steps of the scheduled sweep.
//!
//! An authorization whose invocation died is normally resumed by its redelivered message. When
//! that message is dead-lettered (Stripe slow or down for every receive), nothing would come back
//! to it, so a sweep (every minute) lists the payments still authorizing [`CLAIM_TIMEOUT`] after
//! their claim ([`list_stalled`]), when their owner's invocation has surely ended, and carries
//! each on exactly as a redelivery would ([`finish_stalled`]): resume it, start it over, or, for a
//! cancelled order, cancel it at Stripe. A hold therefore outlives its order's cancellation by
//! about [`CLAIM_TIMEOUT`] and a sweep tick while Stripe answers, not Stripe's seven days.
//!
//! Walking the pages within the invocation's time, and going on past a payment that fails, is the
//! Lambda glue's sweep loop, which `events.rs` runs over these two functions.

use time::OffsetDateTime;

use kernel::OrderId;
use kernel::page::Page;

use crate::authorize::carry_on;
use crate::error::PaymentError;
use crate::model::{CLAIM_TIMEOUT, Stage};
use crate::ports::{PaymentGateway, PaymentStore, StoreError};

/// One page of the authorizations stalled as of `now` (the tick's time), from `cursor` on.
pub async fn list_stalled<S: PaymentStore>(
    store: &S,
    now: OffsetDateTime,
    cursor: Option<S::Cursor>,
) -> Result<Page<OrderId, S::Cursor>, PaymentError> {
    Ok(store.stalled(now - CLAIM_TIMEOUT, cursor).await?)
}

/// Carries on one listed authorization, as of `now`, exactly as a redelivered message would.
pub async fn finish_stalled(
    store: &impl PaymentStore,
    gateway: &impl PaymentGateway,
    order_id: OrderId,
    now: OffsetDateTime,
) -> Result<(), PaymentError> {
    // Payments are never deleted: one the index lists and the table lacks is a broken store.
    let payment = store
        .get(order_id)
        .await?
        .ok_or_else(|| StoreError::Corrupt { order_id, detail: "listed as authorizing but not stored".into() })?;
    match &payment.stage {
        Stage::Authorizing { since, .. } if now - *since >= CLAIM_TIMEOUT => {
            tracing::warn!(%order_id, cancelled = payment.cancelled, "finishing a stalled authorization");
            carry_on(store, gateway, &payment, now).await
        }
        // The index lags the table: settled, or claimed again, since it listed the payment.
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;
    use crate::authorize::{on_order_placed, on_stock_reserved};
    use crate::cancel::on_order_cancelled;
    use crate::ports::IntentStatus;
    use crate::testing::{
        Call, FakeStore, FakeStripe, Fault, T0, VISA, authorized, failed, is_transient, placed, stalled_after_step_2,
    };

    /// Lists every stalled authorization as of `now` and finishes each: what one sweep tick does.
    async fn sweep(store: &FakeStore, stripe: &FakeStripe, now: OffsetDateTime) -> Vec<Result<(), PaymentError>> {
        let mut results = Vec::new();
        let mut cursor = None;
        loop {
            let page = list_stalled(store, now, cursor).await.unwrap();
            for order_id in page.items {
                results.push(finish_stalled(store, stripe, order_id, now).await);
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return results,
            }
        }
    }

    #[tokio::test]
    async fn the_sweep_finishes_a_stuck_authorization_whose_messages_were_dead_lettered() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        stalled_after_step_2(&store, &stripe, order_id, Fault::Unreachable).await;

        let finished = sweep(&store, &stripe, T0 + CLAIM_TIMEOUT).await;

        assert!(matches!(finished.as_slice(), [Ok(())]));
        let intent = stripe.only_intent();
        assert_eq!(stripe.confirmations(), 1);
        assert_eq!(store.events(), vec![authorized(order_id, &intent)]);
    }

    #[tokio::test]
    async fn the_sweep_restarts_a_claim_that_died_before_creating_its_intent() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        on_order_placed(&store, &stripe, &placed(order_id, VISA), T0).await.unwrap();
        stripe.fail_once(Call::Create, Fault::Unreachable);
        assert!(is_transient(on_stock_reserved(&store, &stripe, order_id, T0).await));

        sweep(&store, &stripe, T0 + CLAIM_TIMEOUT).await;

        assert_eq!(store.events(), vec![authorized(order_id, &stripe.only_intent())]);
    }

    #[tokio::test]
    async fn the_sweep_cancels_at_stripe_a_stuck_authorization_of_a_cancelled_order() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        // The confirmation went through (the card is held) but its answer was lost.
        stalled_after_step_2(&store, &stripe, order_id, Fault::AnswerLost).await;
        on_order_cancelled(&store, &stripe, order_id).await.unwrap();

        sweep(&store, &stripe, T0 + CLAIM_TIMEOUT).await;

        assert_eq!(stripe.status(&stripe.only_intent()), IntentStatus::Canceled, "the hold is released");
        assert_eq!(store.payment(order_id).stage, Stage::Failed);
        assert_eq!(store.events(), vec![failed(order_id, "cancelled", None)]);
    }

    #[tokio::test]
    async fn the_sweep_leaves_an_authorization_younger_than_the_claim_timeout_to_its_owner() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        stalled_after_step_2(&store, &stripe, order_id, Fault::Unreachable).await;
        let too_soon = T0 + CLAIM_TIMEOUT - Duration::seconds(1);

        let listed = list_stalled(&store, too_soon, None).await.unwrap();
        // As if the index still listed it: the payment itself is checked too.
        finish_stalled(&store, &stripe, order_id, too_soon).await.unwrap();

        assert!(listed.items.is_empty());
        assert_eq!(stripe.status(&stripe.only_intent()), IntentStatus::RequiresConfirmation);
        assert!(store.events().is_empty());
    }

    #[tokio::test]
    async fn a_listed_payment_the_table_lacks_is_a_broken_store_for_a_person() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());

        let result = finish_stalled(&store, &stripe, OrderId::new(), T0).await;

        assert!(matches!(result, Err(PaymentError::Store(StoreError::Corrupt { .. }))));
    }
}
