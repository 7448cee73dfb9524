//! Fulfillment's event consumer: order and stock events from its SQS queue.

use time::OffsetDateTime;

use domain_events::{Envelope, Event};
use lambda_glue::consumer::{self, HandlerError, Inbox, SqsBatchResponse, Trigger};

use crate::service::{self, FulfillmentStore, SagaError};

/// The longest one message takes: a fact recorded, then one transaction (creation), or per
/// shipment of a cancelled order a read and a write, retried with backoff while they race
/// (about 1.3 s per race at worst). An order has a handful of shipments: 10 s is ample.
const PER_MESSAGE: time::Duration = time::Duration::seconds(10);

/// Handles one invocation of the consumer function.
pub async fn handle(
    store: &impl FulfillmentStore,
    inbox: &impl Inbox,
    trigger: Trigger,
) -> Result<SqsBatchResponse, HandlerError> {
    match trigger {
        Trigger::Queue { batch, deadline } => {
            Ok(consumer::consume(batch, deadline, PER_MESSAGE, inbox, |envelope| on_event(store, envelope)).await)
        }
        Trigger::Schedule { .. } => Err(HandlerError::Permanent("fulfillment-events has no schedule".to_owned())),
    }
}

async fn on_event(store: &impl FulfillmentStore, envelope: Envelope) -> Result<(), HandlerError> {
    let now = OffsetDateTime::now_utc();
    let handled = match envelope.event {
        Event::OrderConfirmed(confirmed) => {
            service::on_order_confirmed(store, confirmed.order_id, confirmed.shipping.as_ref(), now).await
        }
        Event::StockCommitted(committed) => {
            service::on_stock_committed(store, committed.order_id, &committed.lines, now).await
        }
        Event::OrderCancelled(cancelled) => service::on_order_cancelled(store, cancelled.order_id, now).await,
        other => {
            return Err(HandlerError::Permanent(format!("fulfillment does not subscribe to {}", other.detail_type())));
        }
    };
    handled.map_err(failed)
}

/// The one place fulfillment's failures become the consumer's: retry later, or give up.
fn failed(error: SagaError) -> HandlerError {
    if error.is_transient() { HandlerError::transient(error) } else { HandlerError::Permanent(error.to_string()) }
}
