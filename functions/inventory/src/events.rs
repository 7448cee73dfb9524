//! The inventory's event consumer: order events from its SQS queue, and the expiry sweep.

use time::{Duration, OffsetDateTime};

use domain_events::{Envelope, Event};
use lambda_glue::consumer::{self, HandlerError, Inbox, SqsBatchResponse, Trigger};
use lambda_glue::sweep::{Sweep, Tick};

use crate::service::{self, InventoryStore, SWEEP_PAGE, SagaError};

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
            sweep(store, time, Sweep { name: "reservation-expiry", deadline, item_budget: PER_MESSAGE }).await?;
            Ok(SqsBatchResponse::default())
        }
    }
}

async fn on_event(store: &impl InventoryStore, envelope: Envelope, hold: Duration) -> Result<(), HandlerError> {
    let handled = match envelope.event {
        Event::OrderPlaced(order) => service::on_order_placed(store, &order, OffsetDateTime::now_utc(), hold).await,
        Event::OrderConfirmed(confirmed) => service::commit(store, confirmed.order_id).await,
        Event::OrderCancelled(cancelled) => service::release(store, cancelled.order_id).await,
        Event::ReturnReceived(received) => service::restock(store, &received).await,
        other => {
            return Err(HandlerError::Permanent(format!("inventory does not subscribe to {}", other.detail_type())));
        }
    };
    handled.map_err(failed)
}

/// The schedule tick: release every reservation that lapsed before `now`, each on its own and
/// within the invocation's time (see [`lambda_glue::sweep`]).
pub async fn sweep(store: &impl InventoryStore, now: OffsetDateTime, sweep: Sweep) -> Result<Tick, HandlerError> {
    let list = |after| async move { store.expired(now, SWEEP_PAGE, after).await.map_err(HandlerError::transient) };
    sweep.run(list, |order_id| async move { service::expire(store, order_id, now).await.map_err(failed) }).await
}

/// The one place inventory's failures become the consumer's: retry later, or give up.
fn failed(error: SagaError) -> HandlerError {
    if error.is_transient() { HandlerError::transient(error) } else { HandlerError::Permanent(error.to_string()) }
}
