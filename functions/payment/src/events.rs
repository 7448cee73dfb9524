//! The payment's event consumer: saga events (and `ReturnReceived`) from its SQS queue, and on
//! its schedule the two sweeps: stalled authorizations, then refunds left pending.

use time::OffsetDateTime;

use domain_events::{Envelope, Event};
use lambda_glue::consumer::{self, HandlerError, Inbox, SqsBatchResponse, Trigger};
use lambda_glue::sweep::{Sweep, Tick};

use crate::error::PaymentError;
use crate::ports::{PaymentGateway, RefundGateway, RefundStore};
use crate::{authorize, cancel, capture, refunding, sweep};

/// The longest one message, or one stalled authorization, takes. The worst path makes four Stripe
/// calls of at most 8 s each (`stripe::TIMEOUT`, one attempt per call): create (or retrieve) the
/// PaymentIntent, confirm it, then, when the order was cancelled meanwhile, cancel it and, if
/// Stripe answers the cancel with a conflict, retrieve it: 32 s. Add seven DynamoDB requests
/// (inbox read, fact, claim, PaymentIntent, refused settlement, failed settlement, inbox write),
/// milliseconds each, with 4 s for throttling retries: 36 s. template.yaml's function timeout
/// (40 s) leaves 4 s beyond one message. A dispatch stays within it: at most three Stripe calls
/// (a resumed capture retrieves the PaymentIntent, captures it, and after a conflict retrieves it
/// again: 24 s) and five DynamoDB requests (inbox read, read, capture claim, outcome, inbox write).
pub const PER_MESSAGE: time::Duration = time::Duration::seconds(36);

/// The sweep's name, in its logs and its `SweepFailures` metric.
pub const SWEEP: &str = "stalled-authorizations";
/// The pending-refund sweep's name, in its logs and its `SweepFailures` metric.
pub const REFUND_SWEEP: &str = "pending-refunds";

/// Handles one invocation of the consumer function.
pub async fn handle(
    store: &impl RefundStore,
    gateway: &(impl PaymentGateway + RefundGateway),
    inbox: &impl Inbox,
    trigger: Trigger,
) -> Result<SqsBatchResponse, HandlerError> {
    match trigger {
        Trigger::Queue { batch, deadline } => {
            Ok(consumer::consume(batch, deadline, PER_MESSAGE, inbox, |envelope| on_event(store, gateway, envelope))
                .await)
        }
        Trigger::Schedule { time, deadline } => {
            sweep_stalled(store, gateway, time, deadline).await?;
            sweep_refunds(store, gateway, time, deadline).await?;
            Ok(SqsBatchResponse::default())
        }
    }
}

/// The one place a payment error becomes the consumer's: a transient one brings the message (or
/// the sweep's item) back later, a permanent one sends it to the dead-letter queue for a person.
fn handler_error(error: PaymentError) -> HandlerError {
    if error.is_transient() { HandlerError::transient(error) } else { HandlerError::Permanent(error.to_string()) }
}

/// The stalled-authorization sweep of the tick scheduled for `now`: the glue's loop walks
/// payment's listing page by page and finishes each stalled authorization on its own.
async fn sweep_stalled(
    store: &impl RefundStore,
    gateway: &impl PaymentGateway,
    now: OffsetDateTime,
    deadline: OffsetDateTime,
) -> Result<Tick, HandlerError> {
    Sweep { name: SWEEP, deadline, item_budget: PER_MESSAGE }
        .run(
            |cursor| async move { sweep::list_stalled(store, now, cursor).await.map_err(handler_error) },
            |order_id| async move { sweep::finish_stalled(store, gateway, order_id, now).await.map_err(handler_error) },
        )
        .await
}

/// The pending-refund sweep of the tick scheduled for `now`: refunds left pending past
/// [`refunding::REFUND_TIMEOUT`] (their invocation died, or Stripe failed) are carried on as a
/// retry of their request would, and refunds Stripe holds `pending` are read back from Stripe
/// every [`refunding::PENDING_RECHECK`] until they end.
async fn sweep_refunds(
    store: &impl RefundStore,
    gateway: &impl RefundGateway,
    now: OffsetDateTime,
    deadline: OffsetDateTime,
) -> Result<Tick, HandlerError> {
    Sweep { name: REFUND_SWEEP, deadline, item_budget: PER_MESSAGE }
        .run(
            |cursor| async move { refunding::list_pending(store, now, cursor).await.map_err(handler_error) },
            |pending| async move { refunding::finish_pending(store, gateway, pending, now).await.map_err(handler_error) },
        )
        .await
}

async fn on_event(
    store: &impl RefundStore,
    gateway: &(impl PaymentGateway + RefundGateway),
    envelope: Envelope,
) -> Result<(), HandlerError> {
    let now = OffsetDateTime::now_utc();
    let handled = match envelope.event {
        Event::OrderPlaced(order) => authorize::on_order_placed(store, gateway, &order, now).await,
        Event::StockReserved(reserved) => authorize::on_stock_reserved(store, gateway, reserved.order_id, now).await,
        Event::OrderCancelled(cancelled) => cancel::on_order_cancelled(store, gateway, cancelled.order_id).await,
        Event::ShipmentDispatched(dispatched) => capture::on_shipment_dispatched(store, gateway, &dispatched).await,
        Event::ReturnReceived(received) => refunding::on_return_received(store, gateway, &received, now).await,
        other => {
            return Err(HandlerError::Permanent(format!("payment does not subscribe to {}", other.detail_type())));
        }
    };
    handled.map_err(handler_error)
}

#[cfg(test)]
mod tests {
    use domain_events::checkout::{OrderConfirmed, OrderPlaced};
    use domain_events::inventory::StockReserved;
    use domain_events::{Envelope, Event, Metadata};
    use kernel::{Currency, Money, OrderId};

    use super::*;
    use crate::model::{CLAIM_TIMEOUT, PaymentIntentId};
    use crate::ports::IntentStatus;
    use crate::testing::{FakeStore, FakeStripe, Fault, T0, authorized, stalled_after_step_2};

    fn message(id: &str, event: Event) -> serde_json::Value {
        let order_id = OrderId::new();
        let envelope = Envelope::new(Metadata::new(order_id.to_string()), event);
        let body = serde_json::json!({
            "version": "0", "id": id, "detail-type": envelope.event.detail_type(),
            "source": envelope.event.source().as_str(), "time": "2026-11-22T10:00:00Z",
            "region": "us-east-1", "resources": [], "detail": envelope.detail().unwrap()
        });
        serde_json::json!({ "messageId": id, "receiptHandle": "r", "body": body.to_string(), "attributes": {},
            "messageAttributes": {}, "eventSource": "aws:sqs" })
    }

    #[tokio::test]
    async fn a_batch_authorizes_its_order_and_reports_only_the_event_payment_does_not_take() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        let placed = Event::OrderPlaced(OrderPlaced {
            order_id,
            customer: "user-1".into(),
            email: "shopper@example.com".into(),
            lines: Vec::new(),
            total: Money::new(4200, Currency::EUR).unwrap(),
            payment_method: "pm_card_visa".into(),
            cart: None,
        });
        let reserved = Event::StockReserved(StockReserved {
            order_id,
            lines: Vec::new(),
            expires_at: "2026-11-22T10:15:00Z".into(),
        });
        let confirmed = Event::OrderConfirmed(OrderConfirmed { order_id, shipping: None });
        let batch = serde_json::json!({ "Records": [
            message("placed", placed), message("reserved", reserved), message("confirmed", confirmed)
        ]});

        let deadline = OffsetDateTime::now_utc() + time::Duration::minutes(1);
        let inbox = lambda_glue::consumer::MemoryInbox::default();
        let response = handle(&store, &stripe, &inbox, Trigger::parse(batch, deadline).unwrap()).await.unwrap();

        let failed: Vec<_> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
        assert_eq!(failed, vec!["confirmed"]);
        assert!(matches!(store.events().as_slice(), [Event::PaymentAuthorized(e)] if e.order_id == order_id));
    }

    #[tokio::test]
    async fn a_dispatch_captures_through_the_handler_and_its_duplicate_captures_nothing() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        crate::testing::place_and_reserve(&store, &stripe, order_id, crate::testing::VISA).await;
        let dispatched = Event::ShipmentDispatched(crate::testing::dispatched(order_id, 2));
        let batch = serde_json::json!({ "Records": [message("first", dispatched.clone())] });
        let resent = serde_json::json!({ "Records": [message("resent", dispatched)] });
        let deadline = OffsetDateTime::now_utc() + time::Duration::minutes(1);
        let inbox = lambda_glue::consumer::MemoryInbox::default();

        let first = handle(&store, &stripe, &inbox, Trigger::parse(batch, deadline).unwrap()).await.unwrap();
        let again = handle(&store, &stripe, &inbox, Trigger::parse(resent, deadline).unwrap()).await.unwrap();

        assert!(first.batch_item_failures.is_empty() && again.batch_item_failures.is_empty());
        assert_eq!(stripe.captures(), 1);
        assert!(matches!(store.events().as_slice(), [_, Event::PaymentCaptured(e)] if e.order_id == order_id));
    }

    #[tokio::test]
    async fn a_schedule_tick_runs_the_stalled_authorization_sweep() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        // Claimed at T0 (10:00), its PaymentIntent created, then Stripe went away.
        stalled_after_step_2(&store, &stripe, order_id, Fault::Unreachable).await;
        let tick = serde_json::json!({ "detail-type": "Scheduled Event", "source": "aws.events",
            "time": "2026-11-22T10:01:00Z", "detail": {} });
        let deadline = OffsetDateTime::now_utc() + time::Duration::minutes(1);
        let inbox = lambda_glue::consumer::MemoryInbox::default();

        let response = handle(&store, &stripe, &inbox, Trigger::parse(tick, deadline).unwrap()).await;

        assert!(response.unwrap().batch_item_failures.is_empty());
        assert_eq!(store.events(), vec![authorized(order_id, &stripe.only_intent())], "the tick finished it");
    }

    #[tokio::test]
    async fn the_sweep_walks_every_page_and_a_payment_it_cannot_finish_stops_none_behind_it() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let orders = [OrderId::new(), OrderId::new(), OrderId::new()];
        for order_id in orders {
            stalled_after_step_2(&store, &stripe, order_id, Fault::Unreachable).await;
        }
        let captured = PaymentIntentId::parse(&format!("pi_{}", orders[0].ulid())).unwrap();
        stripe.set_status(&captured, IntentStatus::Succeeded);
        let deadline = OffsetDateTime::now_utc() + time::Duration::minutes(1);

        let tick = sweep_stalled(&store, &stripe, T0 + CLAIM_TIMEOUT, deadline).await.unwrap();
        let again = sweep_stalled(&store, &stripe, T0 + CLAIM_TIMEOUT, deadline).await.unwrap();

        assert_eq!(tick, Tick { handled: 2, failed: 1, out_of_time: false });
        assert_eq!(again, Tick { handled: 0, failed: 1, out_of_time: false }, "only the broken one is left");
        assert_eq!(store.events().len(), 2);
    }

    #[test]
    fn a_transient_payment_error_comes_back_and_a_permanent_one_goes_to_a_person() {
        let order_id = OrderId::new();
        let intent = PaymentIntentId::parse("pi_1").unwrap();

        let busy = handler_error(PaymentError::Busy { order_id });
        let captured =
            handler_error(PaymentError::ChangedElsewhere { order_id, intent, status: IntentStatus::Succeeded });

        assert!(matches!(busy, HandlerError::Transient(_)));
        assert!(matches!(captured, HandlerError::Permanent(message) if message.contains("a person must look")));
    }
}
