//! The checkout saga consumer: stock and payment events move orders; a schedule times them out.

use time::OffsetDateTime;

use domain_events::inventory::ReleaseReason;
use domain_events::{Envelope, Event};
use lambda_glue::consumer::{self, HandlerError, Inbox, SqsBatchResponse, Trigger};
use lambda_glue::sweep::{Sweep, Tick};

use crate::order::SagaStep;
use crate::service::{self, CheckoutError, OrderStore, SWEEP_PAGE};

/// The longest one message (or one timeout) takes: a read and a versioned transaction, retried a few times on a race.
const PER_MESSAGE: time::Duration = time::Duration::seconds(10);

pub async fn handle(
    store: &impl OrderStore,
    inbox: &impl Inbox,
    trigger: Trigger,
) -> Result<SqsBatchResponse, HandlerError> {
    match trigger {
        Trigger::Queue { batch, deadline } => {
            Ok(consumer::consume(batch, deadline, PER_MESSAGE, inbox, |envelope| on_event(store, envelope)).await)
        }
        Trigger::Schedule { time, deadline } => {
            sweep(store, time, Sweep { name: "order-timeouts", deadline, item_budget: PER_MESSAGE }).await?;
            Ok(SqsBatchResponse::default())
        }
    }
}

/// The schedule tick: cancel every open order past its deadline, each on its own and within the
/// invocation's time (see [`lambda_glue::sweep`]).
pub async fn sweep(store: &impl OrderStore, now: OffsetDateTime, sweep: Sweep) -> Result<Tick, HandlerError> {
    let list = |after| async move { store.overdue(now, SWEEP_PAGE, after).await.map_err(HandlerError::transient) };
    let time_out = |id| async move { service::on_saga_step(store, id, SagaStep::TimedOut, now).await.map_err(failed) };
    sweep.run(list, time_out).await
}

/// The one place checkout's failures become the consumer's: an event about an order checkout
/// never placed cannot be handled by retrying; anything else may work later.
fn failed(error: CheckoutError) -> HandlerError {
    match error {
        CheckoutError::NotFound(id) => HandlerError::Permanent(format!("{id} is not an order checkout placed")),
        other => HandlerError::transient(other),
    }
}

async fn on_event(store: &impl OrderStore, envelope: Envelope) -> Result<(), HandlerError> {
    let now = OffsetDateTime::now_utc();
    let (order_id, step) = match envelope.event {
        Event::StockReserved(e) => (e.order_id, SagaStep::StockReserved),
        Event::StockRejected(e) => (e.order_id, SagaStep::StockRejected(e.reason)),
        Event::StockReleased(e) if e.reason == ReleaseReason::Expired => (e.order_id, SagaStep::ReservationExpired),
        // A release we asked for (the order is cancelled already): nothing to do.
        Event::StockReleased(_) => return Ok(()),
        Event::PaymentAuthorized(e) => {
            (e.order_id, SagaStep::PaymentAuthorized { payment_intent_id: e.payment_intent_id })
        }
        Event::PaymentFailed(e) => (e.order_id, SagaStep::PaymentFailed { reason: e.reason }),
        other => {
            return Err(HandlerError::Permanent(format!("checkout does not subscribe to {}", other.detail_type())));
        }
    };
    service::on_saga_step(store, order_id, step, now).await.map_err(failed)
}
