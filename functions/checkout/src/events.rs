//! The checkout saga consumer: stock, payment and fulfillment events move orders, refunds and
//! disputes are recorded on them; a schedule times them out.

use time::OffsetDateTime;

use domain_events::inventory::ReleaseReason;
use domain_events::payment::RefundReason;
use domain_events::{Envelope, Event};
use kernel::{Money, RefundId, ReturnId};
use lambda_glue::consumer::{self, HandlerError, Inbox, SqsBatchResponse, Trigger};
use lambda_glue::sweep::{Sweep, Tick};

use crate::order::{Dispatch, SagaStep, ShipmentLine};
use crate::returns::DisputeClosing;
use crate::returns::{Dispute, Refund, RefundState};
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

/// An RFC 3339 time of the contract. One that does not parse is a contract break: retrying
/// cannot help.
fn instant(raw: &str, field: &str) -> Result<OffsetDateTime, HandlerError> {
    OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .map_err(|_| HandlerError::Permanent(format!("{field} `{raw}` is not an RFC 3339 time")))
}

async fn on_event(store: &impl OrderStore, envelope: Envelope) -> Result<(), HandlerError> {
    let now = OffsetDateTime::now_utc();
    let occurred_at = envelope.metadata.occurred_at;
    let (order_id, step) = match envelope.event {
        Event::StockReserved(e) => (e.order_id, SagaStep::StockReserved),
        Event::StockRejected(e) => (e.order_id, SagaStep::StockRejected(e.reason)),
        Event::StockReleased(e) if e.reason == ReleaseReason::Expired => (e.order_id, SagaStep::ReservationExpired),
        // A release we asked for (the order is cancelled already): nothing to do.
        Event::StockReleased(_) => return Ok(()),
        Event::PaymentAuthorized(e) => {
            (e.order_id, SagaStep::PaymentAuthorized { payment_intent_id: e.payment_intent_id, amount: e.amount })
        }
        Event::PaymentFailed(e) => (e.order_id, SagaStep::PaymentFailed { reason: e.reason }),
        Event::PaymentActionRequired(e) => (
            e.order_id,
            SagaStep::PaymentActionRequired { payment_intent_id: e.payment_intent_id, client_secret: e.client_secret },
        ),
        Event::PaymentCaptured(e) => (e.order_id, SagaStep::PaymentCaptured { amount: e.amount, at: occurred_at }),
        Event::PaymentCaptureFailed(e) => {
            (e.order_id, SagaStep::PaymentCaptureFailed { reason: e.reason, at: occurred_at })
        }
        Event::ShipmentCreated(e) => {
            let lines = e.lines.into_iter().map(|l| ShipmentLine { sku: l.sku, quantity: l.quantity }).collect();
            let (shipment, count, warehouse) = (e.shipment_id, e.shipment_count, e.warehouse);
            (e.order_id, SagaStep::ShipmentCreated { shipment, count, warehouse, lines })
        }
        Event::ShipmentDispatched(e) => {
            let dispatch = Dispatch {
                shipment: e.shipment_id,
                count: e.shipment_count,
                at: instant(&e.dispatched_at, "dispatched_at")?,
                warehouse: e.warehouse,
                carrier: e.carrier,
                tracking_number: e.tracking_number,
                tracking_url: e.tracking_url,
            };
            (e.order_id, SagaStep::ShipmentDispatched(dispatch))
        }
        Event::ShipmentDelivered(e) => {
            let at = instant(&e.delivered_at, "delivered_at")?;
            (e.order_id, SagaStep::ShipmentDelivered { shipment: e.shipment_id, count: e.shipment_count, at })
        }
        Event::ShipmentCancelled(e) => {
            (e.order_id, SagaStep::ShipmentCancelled { shipment: e.shipment_id, count: e.shipment_count })
        }
        Event::RefundPending(e) => {
            let refund = announced(
                e.refund_id,
                Some(e.stripe_refund_id),
                e.amount,
                e.reason,
                e.return_id,
                occurred_at,
                RefundState::Pending,
            );
            (e.order_id, SagaStep::RefundPending(Refund { pending_at: Some(occurred_at), ..refund }))
        }
        Event::RefundIssued(e) => {
            let refund = announced(
                e.refund_id,
                Some(e.stripe_refund_id),
                e.amount,
                e.reason,
                e.return_id,
                occurred_at,
                RefundState::Succeeded,
            );
            (e.order_id, SagaStep::RefundIssued(refund))
        }
        Event::RefundFailed(e) => {
            let refund = announced(
                e.refund_id,
                e.stripe_refund_id,
                e.amount,
                e.reason,
                e.return_id,
                occurred_at,
                RefundState::Failed,
            );
            (e.order_id, SagaStep::RefundFailed(Refund { failure_reason: Some(e.failure_reason), ..refund }))
        }
        Event::PaymentDisputed(e) => {
            let dispute = Dispute {
                dispute_id: e.dispute_id,
                amount: e.amount,
                reason: e.reason,
                at: occurred_at,
                outcome: None,
                closed_at: None,
            };
            (e.order_id, SagaStep::PaymentDisputed(dispute))
        }
        Event::PaymentDisputeClosed(e) => {
            let (dispute_id, amount, reason, outcome) = (e.dispute_id, e.amount, e.reason, e.outcome);
            let closing = DisputeClosing { dispute_id, amount, reason, outcome, at: occurred_at };
            (e.order_id, SagaStep::PaymentDisputeClosed(closing))
        }
        other => {
            return Err(HandlerError::Permanent(format!("checkout does not subscribe to {}", other.detail_type())));
        }
    };
    service::on_saga_step(store, order_id, step, now).await.map_err(failed)
}

/// A refund as payment announced it at `at`, in `status`; the moments and reasons another event
/// brings are not known yet.
fn announced(
    refund_id: RefundId,
    stripe_refund_id: Option<String>,
    amount: Money,
    reason: RefundReason,
    return_id: Option<ReturnId>,
    at: OffsetDateTime,
    status: RefundState,
) -> Refund {
    Refund {
        refund_id,
        stripe_refund_id,
        amount,
        reason,
        return_id,
        at,
        status,
        pending_at: None,
        failure_reason: None,
        failed_at: None,
    }
}
