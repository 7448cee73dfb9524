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
//!
//! A lost dispute is money gone: the call that records its closing (the marker's conditional
//! write wins) emits `DisputesLost` and `DisputeLostValue` ([`metrics`]); a redelivery, or
//! another event about the same dispute, finds the marker and emits nothing. `DisputesLostAlarm`
//! (template.yaml) watches the count.

use domain_events::Event;
use domain_events::payment::{DisputeOutcome, PaymentDisputeClosed};
use lambda_glue::metrics::{Metric, Unit};

use crate::authorize::envelope;
use crate::error::PaymentError;
use crate::ports::{RefundGateway, RefundStore};

/// `charge.dispute.closed` of dispute `dispute_id`: `PaymentDisputeClosed` with Stripe's outcome,
/// once per dispute. Answers the closing this call recorded (and emitted the [`metrics`] of);
/// `None` when it was recorded before, or there is nothing to record.
pub async fn on_dispute_closed(
    store: &impl RefundStore,
    gateway: &impl RefundGateway,
    dispute_id: &str,
) -> Result<Option<PaymentDisputeClosed>, PaymentError> {
    let Some(dispute) = gateway.retrieve_dispute(dispute_id).await? else {
        tracing::warn!(dispute_id, "charge.dispute.closed for a dispute Stripe does not have; ignored");
        return Ok(None);
    };
    let Some(outcome) = DisputeOutcome::from_stripe(&dispute.status) else {
        tracing::warn!(dispute_id, status = dispute.status, "Stripe says the dispute is still open; ignored");
        return Ok(None);
    };
    let Some(intent) = dispute.intent else {
        tracing::info!(dispute_id, "closed dispute without a PaymentIntent; not an order's");
        return Ok(None);
    };
    let Some(order_id) = gateway.intent_order(&intent).await? else {
        tracing::info!(dispute_id, "closed dispute on a PaymentIntent that is not an order's; ignored");
        return Ok(None);
    };
    let closed = PaymentDisputeClosed {
        order_id,
        payment_intent_id: intent.to_string(),
        dispute_id: dispute.id.clone(),
        outcome,
        amount: dispute.amount,
        reason: dispute.reason,
    };
    let event = envelope(order_id, Event::PaymentDisputeClosed(closed.clone()));
    if !store.record_dispute_closed(order_id, &dispute.id, &event).await? {
        tracing::info!(%order_id, dispute_id, "dispute's closing recorded before");
        return Ok(None);
    }
    tracing::info!(%order_id, dispute_id, outcome = outcome.as_str(), "dispute closed");
    // Only here, once the marker's write won: a redelivery never counts a dispute twice.
    for metric in metrics(&closed) {
        metric.emit();
    }
    Ok(Some(closed))
}

/// What a recorded closing counts: a lost dispute is `DisputesLost` (no dimension, what
/// `DisputesLostAlarm` watches) and its amount `DisputeLostValue` (minor units, by `Currency`,
/// as `RefundValue`); any other outcome counts nothing. The order id is a property, not a
/// dimension, so Logs Insights finds the order behind the alarm.
pub fn metrics(closed: &PaymentDisputeClosed) -> Vec<Metric> {
    if closed.outcome != DisputeOutcome::Lost {
        return Vec::new();
    }
    let order_id = closed.order_id.to_string();
    let minor = u64::try_from(closed.amount.amount()).unwrap_or(0);
    vec![
        Metric::count("DisputesLost").with("correlation_id", order_id.clone()),
        Metric::value("DisputeLostValue", Unit::None, minor)
            .by("Currency", closed.amount.currency().code())
            .with("correlation_id", order_id),
    ]
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
    async fn a_lost_disputes_closing_processed_twice_counts_it_lost_once_with_its_amount() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, intent) = captured_order(&store, &stripe).await;
        let dispute = stripe.dispute(&intent, "needs_response");
        stripe.close_dispute(&dispute, "lost");

        let first = on_dispute_closed(&store, &stripe, &dispute).await.unwrap();
        let again = on_dispute_closed(&store, &stripe, &dispute).await.unwrap();

        // What each call emitted: the metrics of the closing it recorded, if it recorded one.
        let emitted: Vec<Metric> = [first, again].iter().flatten().flat_map(metrics).collect();
        let counted: Vec<(&str, &[u64], Vec<&str>)> = emitted
            .iter()
            .map(|m| (m.name, m.values.as_slice(), m.dimensions.iter().map(|(_, v)| v.as_str()).collect()))
            .collect();
        assert_eq!(counted, [("DisputesLost", &[1][..], vec![]), ("DisputeLostValue", &[2500][..], vec!["USD"])]);
        assert!(emitted.iter().all(|m| m.properties.contains(&("correlation_id", order_id.to_string()))));
    }

    #[tokio::test]
    async fn a_won_dispute_counts_nothing_lost() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (_, intent) = captured_order(&store, &stripe).await;
        let dispute = stripe.dispute(&intent, "needs_response");
        stripe.close_dispute(&dispute, "won");

        let closed = on_dispute_closed(&store, &stripe, &dispute).await.unwrap();

        assert_eq!(closed.as_ref().map(|c| c.outcome), Some(DisputeOutcome::Won));
        assert!(closed.iter().flat_map(metrics).next().is_none());
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
