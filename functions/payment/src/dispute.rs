//! A dispute's outcome: `charge.dispute.closed` announces `PaymentDisputeClosed` once per dispute.
//!
//! The event only says which dispute to look at. What is announced is what Stripe's dispute
//! says when read back (`GET /v1/disputes/{id}`): its status must be a closed one (`won`,
//! `lost`, `warning_closed`, `prevented`), and its PaymentIntent must be one of our orders'
//! (read back too, as `charge.dispute.created` does). A signed event Stripe does not confirm
//! (the dispute is still open, or Stripe has no such dispute) is acknowledged and changes nothing.
//!
//! `charge.dispute.funds_withdrawn` and `charge.dispute.funds_reinstated` are not followed: the
//! money moves with the outcome (withdrawn when the dispute opens, reinstated when it is won), so
//! the closed dispute's status says all the order needs.

use domain_events::Event;
use domain_events::payment::{DisputeOutcome, PaymentDisputeClosed};

use crate::authorize::envelope;
use crate::error::PaymentError;
use crate::ports::{RefundGateway, RefundStore};

/// `charge.dispute.closed` of dispute `dispute_id`: `PaymentDisputeClosed` with Stripe's outcome,
/// once per dispute.
pub async fn on_dispute_closed(
    store: &impl RefundStore,
    gateway: &impl RefundGateway,
    dispute_id: &str,
) -> Result<(), PaymentError> {
    let Some(dispute) = gateway.retrieve_dispute(dispute_id).await? else {
        tracing::warn!(dispute_id, "charge.dispute.closed for a dispute Stripe does not have; ignored");
        return Ok(());
    };
    let Some(outcome) = DisputeOutcome::from_stripe(&dispute.status) else {
        tracing::warn!(dispute_id, status = dispute.status, "Stripe says the dispute is still open; ignored");
        return Ok(());
    };
    let Some(intent) = dispute.intent else {
        tracing::info!(dispute_id, "closed dispute without a PaymentIntent; not an order's");
        return Ok(());
    };
    let Some(order_id) = gateway.intent_order(&intent).await? else {
        tracing::info!(dispute_id, "closed dispute on a PaymentIntent that is not an order's; ignored");
        return Ok(());
    };
    let event = Event::PaymentDisputeClosed(PaymentDisputeClosed {
        order_id,
        payment_intent_id: intent.to_string(),
        dispute_id: dispute.id.clone(),
        outcome,
        amount: dispute.amount,
        reason: dispute.reason,
    });
    if store.record_dispute_closed(order_id, &dispute.id, &envelope(order_id, event)).await? {
        tracing::info!(%order_id, dispute_id, outcome = outcome.as_str(), "dispute closed");
    } else {
        tracing::info!(%order_id, dispute_id, "dispute's closing recorded before");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use domain_events::Event;
    use domain_events::payment::DisputeOutcome;
    use kernel::{Currency, Money};

    use super::*;
    use crate::testing::{FakeStore, FakeStripe, captured_order};

    fn closings(store: &FakeStore) -> Vec<PaymentDisputeClosed> {
        let events = store.events().into_iter();
        events.filter_map(|event| if let Event::PaymentDisputeClosed(c) = event { Some(c) } else { None }).collect()
    }

    #[tokio::test]
    async fn a_lost_dispute_is_announced_once_with_stripes_outcome() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, intent) = captured_order(&store, &stripe).await;
        let dispute = stripe.dispute(&intent, "needs_response");
        stripe.close_dispute(&dispute, "lost");

        on_dispute_closed(&store, &stripe, &dispute).await.unwrap();
        on_dispute_closed(&store, &stripe, &dispute).await.unwrap();

        let closed = closings(&store);
        assert_eq!(closed.len(), 1, "{closed:?}");
        assert_eq!((closed[0].order_id, closed[0].outcome), (order_id, DisputeOutcome::Lost));
        assert_eq!(closed[0].amount, Money::new(2500, Currency::USD).unwrap());
    }

    #[tokio::test]
    async fn a_dispute_stripe_says_is_still_open_or_does_not_have_announces_nothing() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (_, intent) = captured_order(&store, &stripe).await;
        let open = stripe.dispute(&intent, "under_review");

        on_dispute_closed(&store, &stripe, &open).await.unwrap();
        on_dispute_closed(&store, &stripe, "dp_nobody").await.unwrap();

        assert!(closings(&store).is_empty());
    }
}
