//! The payment's event consumer: saga events from its SQS queue.

use time::OffsetDateTime;

use domain_events::{Envelope, Event};
use lambda_glue::batch::BatchResponse;
use lambda_glue::consumer::{self, HandlerError, Inbox, Trigger};

use crate::service::{self, PaymentGateway, PaymentStore};

/// Handles one invocation of the consumer function.
pub async fn handle(
    store: &impl PaymentStore,
    gateway: &impl PaymentGateway,
    inbox: &impl Inbox,
    trigger: Trigger,
) -> Result<BatchResponse, HandlerError> {
    match trigger {
        Trigger::Queue { batch, deadline } => {
            Ok(consumer::consume(batch, deadline, inbox, |envelope| on_event(store, gateway, envelope)).await)
        }
        Trigger::Schedule { .. } => Err(HandlerError::Permanent("payment has no schedule".to_owned())),
    }
}

async fn on_event(
    store: &impl PaymentStore,
    gateway: &impl PaymentGateway,
    envelope: Envelope,
) -> Result<(), HandlerError> {
    let now = OffsetDateTime::now_utc();
    match envelope.event {
        Event::OrderPlaced(order) => service::on_order_placed(store, gateway, &order, now).await,
        Event::StockReserved(reserved) => service::on_stock_reserved(store, gateway, reserved.order_id, now).await,
        Event::OrderCancelled(cancelled) => service::on_order_cancelled(store, gateway, cancelled.order_id).await,
        other => Err(HandlerError::Permanent(format!("payment does not subscribe to {}", other.detail_type()))),
    }
}

#[cfg(test)]
mod tests {
    use domain_events::checkout::{OrderConfirmed, OrderPlaced};
    use domain_events::inventory::StockReserved;
    use domain_events::{Envelope, Event, Metadata};
    use kernel::{Currency, Money, OrderId};

    use super::*;
    use crate::service::tests::{FakeStore, FakeStripe};

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
        let confirmed = Event::OrderConfirmed(OrderConfirmed { order_id });
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
}
