//! The inventory's event consumer: order events from its SQS queue, and the expiry sweep.

use time::{Duration, OffsetDateTime};

use domain_events::{Envelope, Event};
use lambda_glue::consumer::{self, HandlerError, Inbox, SqsBatchResponse, Trigger};
use lambda_glue::sweep::Sweep;

use crate::service::{self, InventoryStore};

/// The longest one message (or one expiry) takes: reads and one transaction, retried with backoff while stock races.
const PER_MESSAGE: time::Duration = time::Duration::seconds(10);

/// Handles one invocation of the consumer function.
pub async fn handle(
    store: &impl InventoryStore,
    inbox: &impl Inbox,
    trigger: Trigger,
    hold: Duration,
) -> Result<SqsBatchResponse, HandlerError> {
    match trigger {
        Trigger::Queue { batch, deadline } => {
            Ok(consumer::consume(batch, deadline, PER_MESSAGE, inbox, |envelope| on_event(store, envelope, hold)).await)
        }
        Trigger::Schedule { time, deadline } => {
            let sweep = Sweep { name: "reservation-expiry", deadline, item_budget: PER_MESSAGE };
            service::sweep(store, time, sweep).await?;
            Ok(SqsBatchResponse::default())
        }
    }
}

async fn on_event(store: &impl InventoryStore, envelope: Envelope, hold: Duration) -> Result<(), HandlerError> {
    match envelope.event {
        Event::OrderPlaced(order) => service::on_order_placed(store, &order, OffsetDateTime::now_utc(), hold).await,
        Event::OrderConfirmed(confirmed) => service::commit(store, confirmed.order_id).await,
        Event::OrderCancelled(cancelled) => service::release(store, cancelled.order_id).await,
        other => Err(HandlerError::Permanent(format!("inventory does not subscribe to {}", other.detail_type()))),
    }
}
