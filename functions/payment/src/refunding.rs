//! Refunding: an admin's request, a received return, a refund stuck halfway, and a refund made
//! at Stripe outside Ferrocart. What may be refunded is [`crate::refund`]'s to decide.
//!
//! ## One refund at Stripe, whatever crashes or repeats
//!
//! 1. *Reserve* ([`RefundStore::reserve_refund`]): the refund is written `pending` under its
//!    source (the admin's `Idempotency-Key`, the return id) and its amount added to the payment's
//!    reserved sum, in one transaction conditional on the sum staying within the captured total.
//!    The same source asking again finds this refund and carries it on instead of making another;
//!    a concurrent refund that took the room first makes the condition fail, and the refund is
//!    planned again from the payment as it is (so it is refused, or, for a return, cut).
//! 2. *Refund at Stripe* with the idempotency key `ferrocart:{refund_id}:refund` and the
//!    refund's id in the metadata. A retry of step 2 for a pending refund first lists the
//!    PaymentIntent's refunds at Stripe and takes the one carrying our id, if Stripe made it
//!    before the crash; the key covers two retries racing each other.
//! 3. *Record* what Stripe said ([`follow`]): `succeeded` → settled with `RefundIssued` in one
//!    transaction; `pending` → followed (Stripe's id and when to look again), with
//!    `RefundPending` in the same transaction the first time only (a read-back still pending
//!    writes no event); `failed` or `canceled`, or refused → `failed`, its amount given back,
//!    with `RefundFailed`.
//!
//! A refund left `pending` (the invocation died between steps 1 and 3, Stripe was down, or Stripe
//! holds it `pending`) is carried on by the same request again (an admin's retry with its key,
//! the return event's redelivery), by Stripe's webhook ([`reconcile`]) and by payment's sweep,
//! which lists the refunds due ([`Refund::due_at`]): [`REFUND_TIMEOUT`] after they were reserved,
//! or [`PENDING_RECHECK`] after Stripe last said `pending` (then read back by its `re_` id).
//!
//! A refund recorded `succeeded` that Stripe fails later (the card's account closed) is failed
//! the same way when the webhook reads it back ([`reconcile`]): its amount off the refunded and
//! reserved sums, `RefundFailed`, in one write conditional on it still succeeded, which is also
//! what makes its `RefundsFailedAfterSuccess` count once, by the call whose write failed it:
//! the webhook, or the sweep or a retry that met the failure as it read a pending refund back. A
//! succeeded refund at Stripe with no record of ours is recorded against the order
//! (`RefundIssued`, reason `other`: the money left the shop's balance, as docs/events.md
//! promises) and counted `RefundsUnrecorded` by the call whose write recorded it.
//!
//! Stripe saves an answer under the idempotency key (for 24 hours) once the request began
//! executing, 5xx included, and replays it to a retry under that key with `Idempotent-Replayed:
//! true`. A 5xx is retried under the same key (it may not have been saved, and then the retry
//! runs the request); only when Stripe replays a 5xx does the refund move on to its next
//! attempt's key ([`RefundStore::next_attempt`], conditional on the attempt it was at), looking at
//! Stripe first (step 2), so it is made once whatever the 5xx hid (see [`crate::refund`]).

use time::OffsetDateTime;

use adapters::retry::{Attempt, until_won};
use domain_events::Event;
use domain_events::checkout::ReturnReceived;
use domain_events::payment::{PaymentDisputed, RefundFailed, RefundIssued, RefundPending, RefundReason};
use kernel::page::Page;
use kernel::{Money, OrderId, RefundId};
use lambda_glue::metrics::{Metric, Unit};

use crate::authorize::envelope;
use crate::error::PaymentError;
use crate::model::{Payment, PaymentIntentId};
use crate::ports::{
    GatewayError, Recorded, RefundGateway, RefundOutcome, RefundStore, Reserved, StoreError, StripeRefund,
};
use crate::refund::{self, PendingRefund, Refund, RefundStatus, Source, Unrefundable};
pub use crate::refund::{PENDING_RECHECK, REFUND_TIMEOUT};

/// Why a refund was not made.
#[derive(Debug, thiserror::Error)]
pub enum RefundError {
    #[error("payment has no order {0}")]
    NotFound(OrderId),
    #[error("the Idempotency-Key was used for a different refund request")]
    KeyReused,
    #[error(transparent)]
    Unrefundable(#[from] Unrefundable),
    /// Other refunds kept changing the payment, or another retry of this refund is at Stripe
    /// right now: try again.
    #[error("the payment of {0} kept changing")]
    Busy(OrderId),
    /// Storage or Stripe failed; the refund, if reserved, stays pending and is carried on later.
    #[error(transparent)]
    Failed(#[from] PaymentError),
}

impl From<StoreError> for RefundError {
    fn from(error: StoreError) -> Self {
        Self::Failed(error.into())
    }
}

impl From<GatewayError> for RefundError {
    fn from(error: GatewayError) -> Self {
        Self::Failed(error.into())
    }
}

/// A refund to make.
#[derive(Debug, Clone)]
pub struct Ask {
    pub order_id: OrderId,
    pub source: Source,
    /// Minor units; everything still refundable when `None`.
    pub amount: Option<i64>,
    pub reason: RefundReason,
    pub note: Option<String>,
    /// The admin request's canonical body, which a replay under the same key must repeat.
    pub request: Option<String>,
}

/// `POST /admin/orders/{id}/refunds`: the refund as it ends (succeeded, or failed with Stripe's
/// code), once per source however often it is asked.
pub async fn request_refund(
    store: &impl RefundStore,
    gateway: &impl RefundGateway,
    ask: Ask,
    now: OffsetDateTime,
) -> Result<Refund, RefundError> {
    if let Some(existing) = store.refund(ask.order_id, &ask.source).await? {
        return replay(store, gateway, existing, &ask, now).await;
    }
    let ask = &ask;
    let reserved = until_won(|| async move {
        let payment = store.get(ask.order_id).await?.ok_or(RefundError::NotFound(ask.order_id))?;
        let planned = payment.plan_refund(ask.amount)?;
        let refund = Refund {
            refund_id: RefundId::new(),
            order_id: ask.order_id,
            source: ask.source.clone(),
            amount: planned.amount,
            reason: ask.reason,
            note: ask.note.clone(),
            return_id: None,
            status: RefundStatus::Pending,
            created_at: refund::created_at(now),
            request: ask.request.clone(),
            attempt: 0,
        };
        Ok::<_, RefundError>(match store.reserve_refund(&payment, &refund).await? {
            Reserved::Done => Attempt::Done(Ok(refund)),
            Reserved::Exists(existing) => Attempt::Done(Err(existing)),
            Reserved::Moved => Attempt::Lost,
        })
    })
    .await?
    .ok_or(RefundError::Busy(ask.order_id))?;
    match reserved {
        Ok(refund) => complete(store, gateway, refund, false, now).await,
        // A concurrent request with the same key reserved first.
        Err(existing) => replay(store, gateway, *existing, ask, now).await,
    }
}

/// The refund already made from the ask's source: refused if the ask differs, else carried on.
async fn replay(
    store: &impl RefundStore,
    gateway: &impl RefundGateway,
    existing: Refund,
    ask: &Ask,
    now: OffsetDateTime,
) -> Result<Refund, RefundError> {
    if existing.request != ask.request {
        return Err(RefundError::KeyReused);
    }
    carry_on(store, gateway, existing, now).await
}

/// A refund as it is: a pending one is finished (Stripe looked at first), others are final.
pub async fn carry_on(
    store: &impl RefundStore,
    gateway: &impl RefundGateway,
    refund: Refund,
    now: OffsetDateTime,
) -> Result<Refund, RefundError> {
    match &refund.status {
        RefundStatus::Pending => {
            tracing::info!(order_id = %refund.order_id, refund_id = %refund.refund_id, "carrying on a pending refund");
            complete(store, gateway, refund, true, now).await
        }
        RefundStatus::Processing { stripe_refund_id, .. } => {
            let made = gateway.retrieve_refund(stripe_refund_id).await?;
            follow(store, refund, made, now).await
        }
        RefundStatus::Succeeded { .. } | RefundStatus::Failed { .. } => Ok(refund),
    }
}

/// Steps 2 and 3 for a reserved refund; `look_first` for one that may have reached Stripe.
async fn complete(
    store: &impl RefundStore,
    gateway: &impl RefundGateway,
    mut refund: Refund,
    mut look_first: bool,
    now: OffsetDateTime,
) -> Result<Refund, RefundError> {
    let order_id = refund.order_id;
    let payment = store.get(order_id).await?.ok_or(RefundError::NotFound(order_id))?;
    let intent = captured_intent(&payment)?;
    // At most one move to the next attempt's key per call.
    let mut moved = false;
    let made = loop {
        let found = if look_first {
            gateway.list_refunds(&intent).await?.into_iter().find(|made| made.refund_id == Some(refund.refund_id))
        } else {
            None
        };
        if let Some(made) = found {
            break made;
        }
        match gateway.create_refund(&intent, &refund).await {
            Ok(made) => break made,
            Err(GatewayError::Refused { code, .. }) => {
                return fail(store, refund, code, None).await;
            }
            Err(GatewayError::Declined(decline)) => {
                return fail(store, refund, decline.code, None).await;
            }
            // 409 `idempotency_key_in_use`: another retry of this refund is at Stripe right now
            // and records it; this one is told to try again (it finds the refund made).
            Err(GatewayError::Conflict(conflict)) => {
                tracing::info!(%order_id, refund_id = %refund.refund_id, conflict, "refund under way at Stripe");
                return Err(RefundError::Busy(order_id));
            }
            // Stripe replayed a 5xx it saved under this key: the key is spent for 24 h (the
            // request ran no further, or made the refund: the listing finds it). Every retry
            // under it gets the same 5xx, so none can make a refund with it; the refund moves
            // to the next attempt's key, conditionally, and asks again after looking at Stripe.
            Err(error @ GatewayError::ServerError { replayed: true, .. }) => {
                if moved || !store.next_attempt(&refund).await? {
                    // Another retry moved it first (and carries it on), or this one already did.
                    tracing::warn!(%order_id, refund_id = %refund.refund_id, attempt = refund.attempt, %error,
                        "Stripe replayed a 5xx; the refund is retried later");
                    return Err(error.into());
                }
                tracing::warn!(%order_id, refund_id = %refund.refund_id, attempt = refund.attempt, %error,
                    "Stripe replayed a saved 5xx; moving to the next idempotency key");
                refund.attempt += 1;
                (moved, look_first) = (true, true);
            }
            // A 5xx Stripe did not replay may not be saved under the key (Stripe saves an answer
            // only once the request began executing): a retry under the same key may run the
            // request, so the key stays until Stripe replays a 5xx under it. Moving on now would
            // let a retry still holding this key and one holding the next each make a refund.
            Err(error @ GatewayError::ServerError { .. }) => {
                tracing::warn!(%order_id, refund_id = %refund.refund_id, attempt = refund.attempt, %error,
                    "Stripe answered 5xx; the retry asks under the same idempotency key");
                return Err(error.into());
            }
            Err(error) => return Err(error.into()),
        }
    };
    follow(store, refund, made, now).await
}

/// Step 3: records what Stripe says of our pending refund, once, with conditional writes:
/// succeeded → settled with `RefundIssued`; failed or canceled → failed with `RefundFailed`;
/// still pending → followed, to be read back [`PENDING_RECHECK`] from `now`, with
/// `RefundPending` if this is the first time (the refund was read without Stripe's id; a call
/// that read it so but lost the write to another finds it followed and announces nothing).
async fn follow(
    store: &impl RefundStore,
    refund: Refund,
    made: StripeRefund,
    now: OffsetDateTime,
) -> Result<Refund, RefundError> {
    match made.outcome() {
        RefundOutcome::Succeeded => settle(store, refund, &made.id).await,
        RefundOutcome::Failed(reason) => fail(store, refund, reason, Some(made.id)).await,
        RefundOutcome::Pending => {
            // Announced once: by the write that first records it pending at Stripe.
            let first = refund.status == RefundStatus::Pending;
            let mut following = refund;
            following.status =
                RefundStatus::Processing { stripe_refund_id: made.id.clone(), look_again_at: now + PENDING_RECHECK };
            let event = if first { Some(pending(&following)?) } else { None };
            let (following, event, order_id, made) = (&following, &event, following.order_id, &made);
            let followed = until_won(|| async move {
                Ok::<_, RefundError>(match store.follow_refund(following, event.as_ref()).await? {
                    Recorded::Done => {
                        tracing::info!(%order_id, refund_id = %following.refund_id, stripe_refund_id = made.id,
                            status = made.status, announced = first, "refund pending at Stripe; followed");
                        Attempt::Done(following.clone())
                    }
                    Recorded::Already(current) => Attempt::Done(*current),
                    // Another write on the refund at the same moment (a transaction conflict).
                    Recorded::Moved => Attempt::Lost,
                })
            })
            .await?;
            followed.ok_or(RefundError::Busy(order_id))
        }
    }
}

/// The PaymentIntent a refund of this payment goes to (the payment stays captured once it is).
fn captured_intent(payment: &Payment) -> Result<PaymentIntentId, RefundError> {
    payment.refundable().map(|(intent, _, _)| intent).map_err(|unrefundable| {
        RefundError::Failed(PaymentError::Store(StoreError::Corrupt {
            order_id: payment.order_id,
            detail: format!("a refund is pending but {unrefundable}"),
        }))
    })
}

/// Step 3, Stripe took it: `succeeded` with `RefundIssued`.
async fn settle(store: &impl RefundStore, refund: Refund, stripe_refund_id: &str) -> Result<Refund, RefundError> {
    let (refund, order_id) = (&refund, refund.order_id);
    let settled = until_won(|| async move {
        let payment = store.get(order_id).await?.ok_or(RefundError::NotFound(order_id))?;
        let settled = succeeded(&payment, refund.clone(), stripe_refund_id)?;
        let event = issued(&settled)?;
        Ok::<_, RefundError>(match store.settle_refund(&payment, &settled, &event).await? {
            Recorded::Done => {
                tracing::info!(%order_id, refund_id = %settled.refund_id, stripe_refund_id, "refund issued");
                Attempt::Done(settled)
            }
            Recorded::Already(current) => Attempt::Done(*current),
            Recorded::Moved => Attempt::Lost,
        })
    })
    .await?;
    settled.ok_or(RefundError::Busy(order_id))
}

/// `refund`, succeeded as `stripe_refund_id`, with the payment's refunded sum after it.
fn succeeded(payment: &Payment, mut refund: Refund, stripe_refund_id: &str) -> Result<Refund, RefundError> {
    let total = payment.refunds.refunded.checked_add(refund.amount.amount());
    let refunded_total = total
        .and_then(|total| Money::new(total, refund.amount.currency()).ok())
        .ok_or_else(|| StoreError::Corrupt { order_id: refund.order_id, detail: "refunded sum overflows".into() })?;
    refund.status = RefundStatus::Succeeded { stripe_refund_id: stripe_refund_id.to_owned(), refunded_total };
    Ok(refund)
}

/// The `RefundIssued` of a succeeded refund, written with its settlement.
pub fn issued(refund: &Refund) -> Result<domain_events::Envelope, RefundError> {
    let RefundStatus::Succeeded { stripe_refund_id, refunded_total } = &refund.status else {
        return Err(
            StoreError::Corrupt { order_id: refund.order_id, detail: "announcing an unsettled refund".into() }.into()
        );
    };
    let event = Event::RefundIssued(RefundIssued {
        order_id: refund.order_id,
        refund_id: refund.refund_id,
        stripe_refund_id: stripe_refund_id.clone(),
        amount: refund.amount,
        reason: refund.reason,
        return_id: refund.return_id,
        refunded_total: *refunded_total,
    });
    Ok(envelope(refund.order_id, event))
}

/// The `RefundPending` of a refund Stripe holds pending, written with the first record of it.
pub fn pending(refund: &Refund) -> Result<domain_events::Envelope, RefundError> {
    let RefundStatus::Processing { stripe_refund_id, .. } = &refund.status else {
        return Err(StoreError::Corrupt {
            order_id: refund.order_id,
            detail: "announcing a refund Stripe does not hold pending".into(),
        }
        .into());
    };
    let event = Event::RefundPending(RefundPending {
        order_id: refund.order_id,
        refund_id: refund.refund_id,
        stripe_refund_id: stripe_refund_id.clone(),
        amount: refund.amount,
        reason: refund.reason,
        return_id: refund.return_id,
    });
    Ok(envelope(refund.order_id, event))
}

/// The `RefundFailed` of a failed refund (`stripe_refund_id` when Stripe made it), written with
/// its failure.
pub fn failed(refund: &Refund, stripe_refund_id: Option<&str>) -> Result<domain_events::Envelope, RefundError> {
    let RefundStatus::Failed { reason } = &refund.status else {
        return Err(
            StoreError::Corrupt { order_id: refund.order_id, detail: "announcing a refund not failed".into() }.into()
        );
    };
    let event = Event::RefundFailed(RefundFailed {
        order_id: refund.order_id,
        refund_id: refund.refund_id,
        stripe_refund_id: stripe_refund_id.map(str::to_owned),
        amount: refund.amount,
        reason: refund.reason,
        failure_reason: reason.clone(),
        return_id: refund.return_id,
    });
    Ok(envelope(refund.order_id, event))
}

/// Step 3, Stripe refused it or it ended failed: `failed`, the amount given back, `RefundFailed`,
/// written before it is answered: a write that loses to another on the payment is tried again
/// ([`RefundError::Busy`] if it never wins; the refund stays pending and is carried on later).
/// One another call settled as `stripe_refund_id` in the meantime (Stripe said `succeeded` to
/// it, then failed the refund) is failed after success ([`fail_succeeded`]), not left settled.
async fn fail(
    store: &impl RefundStore,
    mut refund: Refund,
    reason: String,
    stripe_refund_id: Option<String>,
) -> Result<Refund, RefundError> {
    let (order_id, refund_id) = (refund.order_id, refund.refund_id);
    refund.status = RefundStatus::Failed { reason: reason.clone() };
    let event = failed(&refund, stripe_refund_id.as_deref())?;
    let (failing, event, failed_as, why) = (&refund, &event, &stripe_refund_id, &reason);
    let recorded = until_won(|| async move {
        Ok::<_, RefundError>(match store.fail_refund(failing, event).await? {
            Recorded::Done => {
                tracing::warn!(%order_id, %refund_id, stripe_refund_id = failed_as, reason = why,
                    "refund failed at Stripe; its amount is refundable again and a person must act");
                Attempt::Done(None)
            }
            Recorded::Already(current) => Attempt::Done(Some(*current)),
            // Another write on the payment at the same moment (a transaction conflict): nothing
            // was written; the refund stays pending until this write wins.
            Recorded::Moved => Attempt::Lost,
        })
    })
    .await?;
    let current = match recorded.ok_or(RefundError::Busy(order_id))? {
        None => return Ok(refund),
        Some(current) => current,
    };
    // Another call settled it as the very refund Stripe now says failed: the late failure it is.
    let succeeded = matches!(current.status, RefundStatus::Succeeded { .. });
    let failed_as = match stripe_refund_id {
        Some(failed_as) if succeeded && current.stripe_refund_id() == Some(failed_as.as_str()) => failed_as,
        _ => return Ok(current),
    };
    let source = current.source.clone();
    match fail_succeeded(store, current, reason, &failed_as).await? {
        Some(failed) => Ok(failed),
        // A redelivery or the other refund event failed it first.
        None => {
            let stored = store.refund(order_id, &source).await?;
            stored
                .ok_or_else(|| StoreError::Corrupt { order_id, detail: "a refund being failed is gone".into() }.into())
        }
    }
}

/// `ReturnReceived`: refund the return's amount once (keyed by the return id), cut to what is
/// left of the captured total; nothing when nothing is left.
pub async fn on_return_received(
    store: &impl RefundStore,
    gateway: &impl RefundGateway,
    received: &ReturnReceived,
    now: OffsetDateTime,
) -> Result<(), PaymentError> {
    let (order_id, source) = (received.order_id, Source::Return(received.return_id));
    // Checkout decides the return's share in ISO minor units; Stripe refunds some currencies only
    // in larger steps (10 fils, whole ariary): the share is rounded down to one, never up.
    let wanted = crate::stripe::chargeable_part(received.refund);
    // Checkout sends 0 for a return of an order nothing was captured for: nothing to pay back.
    if wanted.amount() <= 0 {
        tracing::info!(%order_id, return_id = %received.return_id, "return with nothing to refund");
        return Ok(());
    }
    if let Some(existing) = store.refund(order_id, &source).await? {
        return carry_on(store, gateway, existing, now).await.map_err(payment_error(order_id)).and_then(paid);
    }
    let received = &received;
    let source = &source;
    let reserved = until_won(|| async move {
        let payment = store
            .get(order_id)
            .await?
            .ok_or(PaymentError::NothingToRefund { order_id, detail: "payment has no record of the order".into() })?;
        if payment.order.as_ref().is_some_and(|order| order.total.currency() != received.refund.currency()) {
            return Err(PaymentError::NothingToRefund {
                order_id,
                detail: "the refund's currency is not the order's".into(),
            });
        }
        let planned = match payment.plan_return_refund(wanted) {
            Ok(Some(planned)) => planned,
            Ok(None) => {
                tracing::warn!(%order_id, return_id = %received.return_id, wanted = ?received.refund,
                    "return received with nothing left to refund");
                lambda_glue::metrics::count("ReturnRefundsCut", 1, ("Service", "payment-events"));
                return Ok(Attempt::Done(None));
            }
            // A return comes after a delivery, so after the dispatch that captures: the capture is
            // still on its way.
            Err(Unrefundable::NotCaptured { stage: "authorized" | "capturing" }) => {
                return Err(PaymentError::NotCapturableYet { order_id });
            }
            Err(unrefundable) => {
                return Err(PaymentError::NothingToRefund { order_id, detail: unrefundable.to_string() });
            }
        };
        if let Some(wanted) = planned.cut_from {
            tracing::warn!(%order_id, return_id = %received.return_id, ?wanted, refunded = ?planned.amount,
                "return refund cut to what is left of the captured total");
            lambda_glue::metrics::count("ReturnRefundsCut", 1, ("Service", "payment-events"));
        }
        let refund = Refund {
            refund_id: RefundId::new(),
            order_id,
            source: source.clone(),
            amount: planned.amount,
            reason: RefundReason::RequestedByCustomer,
            note: None,
            return_id: Some(received.return_id),
            status: RefundStatus::Pending,
            created_at: refund::created_at(now),
            request: None,
            attempt: 0,
        };
        Ok(match store.reserve_refund(&payment, &refund).await? {
            Reserved::Done => Attempt::Done(Some(refund)),
            Reserved::Exists(existing) => Attempt::Done(Some(*existing)),
            Reserved::Moved => Attempt::Lost,
        })
    })
    .await?
    .ok_or(PaymentError::Busy { order_id })?;
    match reserved {
        Some(refund) => carry_on(store, gateway, refund, now).await.map_err(payment_error(order_id)).and_then(paid),
        None => Ok(()),
    }
}

/// A return's refund as it ended. Stripe refusing it (the charge disputed, …) leaves the customer
/// unpaid with nobody told: it is an error for a person (the dead-letter queue, on every delivery),
/// who refunds by hand (`POST /admin/orders/{id}/refunds`) once Stripe allows it.
fn paid(refund: Refund) -> Result<(), PaymentError> {
    match refund.status {
        RefundStatus::Failed { reason } => Err(PaymentError::NothingToRefund {
            order_id: refund.order_id,
            detail: format!("Stripe refused the return's refund {} ({reason})", refund.refund_id),
        }),
        RefundStatus::Pending | RefundStatus::Processing { .. } | RefundStatus::Succeeded { .. } => Ok(()),
    }
}

/// A refund error of the order's as the consumer, the sweep and the webhook see it.
fn payment_error(order_id: OrderId) -> impl Fn(RefundError) -> PaymentError {
    move |error| match error {
        RefundError::Failed(error) => error,
        RefundError::Busy(order_id) => PaymentError::Busy { order_id },
        // Never for a refund carried on (it was planned when reserved); a person must look.
        other @ (RefundError::NotFound(_) | RefundError::KeyReused | RefundError::Unrefundable(_)) => {
            PaymentError::NothingToRefund { order_id, detail: other.to_string() }
        }
    }
}

/// One page of the pending refunds due at `now` ([`Refund::due_at`]), from `cursor` on.
pub async fn list_pending<S: RefundStore>(
    store: &S,
    now: OffsetDateTime,
    cursor: Option<S::RefundCursor>,
) -> Result<Page<PendingRefund, S::RefundCursor>, PaymentError> {
    Ok(store.due_refunds(now, cursor).await?)
}

/// Carries on one listed pending refund as of `now`, as a retry of its request would: one left
/// halfway is finished, one Stripe holds `pending` is read back from Stripe.
pub async fn finish_pending(
    store: &impl RefundStore,
    gateway: &impl RefundGateway,
    PendingRefund { order_id, source }: PendingRefund,
    now: OffsetDateTime,
) -> Result<(), PaymentError> {
    match store.refund(order_id, &source).await? {
        Some(refund) if refund.due_at().is_some_and(|due| due <= now) => {
            if refund.status == RefundStatus::Pending {
                tracing::warn!(%order_id, refund_id = %refund.refund_id, "finishing a stalled refund");
            }
            carry_on(store, gateway, refund, now).await.map(drop).map_err(payment_error(order_id))
        }
        // The index lags the table: finished (or looked at) since it listed the refund.
        _ => Ok(()),
    }
}

/// `charge.refunded`, `charge.refund.updated`, `refund.updated`, `refund.failed`: the refunds of
/// the PaymentIntent as Stripe has them now (read back, never taken from the event). Each
/// succeeded Stripe refund we do not know is recorded once (`RefundIssued`, reason `other`): a
/// refund made in the Dashboard, counted `RefundsUnrecorded`. One carrying our refund id finishes
/// our pending refund as it stands at Stripe ([`follow`]); one we recorded as succeeded that
/// Stripe has since failed is failed as a pending one would be; one we recorded as failed
/// changes nothing. Each change is counted by the write that made it, so once however often
/// Stripe delivers, or redelivers, the events about it.
pub async fn reconcile(
    store: &impl RefundStore,
    gateway: &impl RefundGateway,
    intent: &PaymentIntentId,
    now: OffsetDateTime,
) -> Result<(), PaymentError> {
    let Some(order_id) = gateway.intent_order(intent).await? else {
        tracing::info!(payment_intent_id = %intent, "refunds of a PaymentIntent that is not an order's; ignored");
        return Ok(());
    };
    // Stripe's refunds first, then ours: a refund of ours is reserved before Stripe makes it, so
    // every one Stripe lists with our refund id is in what we read after. (Read the other way
    // round, one of ours made in between would look made outside Ferrocart and count twice.)
    let mut made = gateway.list_refunds(intent).await?;
    let ours = store.refunds(order_id).await?;
    made.reverse(); // oldest first, so the refunded sums grow in Stripe's order
    for made in made {
        let known = ours.iter().find(|refund| {
            made.refund_id == Some(refund.refund_id) || refund.stripe_refund_id() == Some(made.id.as_str())
        });
        match known {
            Some(pending) if pending.is_pending() => {
                let unchanged = matches!(&pending.status, RefundStatus::Processing { .. })
                    && made.outcome() == RefundOutcome::Pending;
                if !unchanged {
                    follow(store, pending.clone(), made, now).await.map_err(payment_error(order_id))?;
                }
            }
            Some(ended) => {
                if let (RefundStatus::Succeeded { .. }, RefundOutcome::Failed(reason)) = (&ended.status, made.outcome())
                {
                    fail_succeeded(store, ended.clone(), reason, &made.id).await.map_err(payment_error(order_id))?;
                }
            }
            // Only money paid back is recorded; a Dashboard refund still pending is recorded
            // by the webhook that says it succeeded.
            None if made.outcome() == RefundOutcome::Succeeded => record_outside(store, order_id, &made, now).await?,
            None => {}
        }
    }
    Ok(())
}

/// Records a refund made at Stripe outside Ferrocart, once. The call that records it counts it:
/// `RefundsUnrecorded` (count, no dimension: `RefundsUnrecordedAlarm` watches it) and
/// `UnrecordedRefundValue` (minor units by `Currency`, as `RefundValue`), with the order id
/// (`correlation_id`) and Stripe's `re_…` as properties, for Logs Insights.
async fn record_outside(
    store: &impl RefundStore,
    order_id: OrderId,
    made: &StripeRefund,
    now: OffsetDateTime,
) -> Result<(), PaymentError> {
    let recorded = until_won(|| async move {
        let payment = store.get(order_id).await?.ok_or(PaymentError::NothingToRefund {
            order_id,
            detail: "Stripe refunded an order payment never heard of".into(),
        })?;
        let refund = Refund {
            refund_id: RefundId::new(),
            order_id,
            source: Source::Stripe(made.id.clone()),
            amount: made.amount,
            reason: RefundReason::Other,
            note: None,
            return_id: None,
            status: RefundStatus::Pending,
            created_at: refund::created_at(now),
            request: None,
            attempt: 0,
        };
        let refund = succeeded(&payment, refund, &made.id).map_err(payment_error(order_id))?;
        let event = issued(&refund).map_err(payment_error(order_id))?;
        Ok::<_, PaymentError>(match store.record_stripe_refund(&payment, &refund, &event).await? {
            Recorded::Done => {
                tracing::warn!(%order_id, stripe_refund_id = made.id, amount = ?made.amount,
                    "recorded a refund made at Stripe outside Ferrocart; a person must check it");
                let minor = u64::try_from(made.amount.amount()).unwrap_or(0);
                let (order, stripe_refund_id) = (order_id.to_string(), made.id.clone());
                Metric::count("RefundsUnrecorded")
                    .with("correlation_id", order.clone())
                    .with("stripe_refund_id", stripe_refund_id.clone())
                    .emit();
                Metric::value("UnrecordedRefundValue", Unit::None, minor)
                    .by("Currency", made.amount.currency().code())
                    .with("correlation_id", order)
                    .with("stripe_refund_id", stripe_refund_id)
                    .emit();
                Attempt::Done(())
            }
            Recorded::Already(_) => Attempt::Done(()),
            Recorded::Moved => Attempt::Lost,
        })
    })
    .await?;
    recorded.ok_or(PaymentError::Busy { order_id })
}

/// Stripe failed `refund` after saying it succeeded as `stripe_refund_id` (the card's account
/// closed, …): the money did not go back. Followed as a pending refund that fails: `failed`, its
/// amount off the refunded and reserved sums (refundable again), `RefundFailed`, in one write
/// conditional on it still succeeded as `stripe_refund_id`. The call whose write wins counts it,
/// `RefundsFailedAfterSuccess` (count, no dimension; the order id as `correlation_id` and the
/// `refund_id` as properties), whichever path met the failure. The refund this call failed,
/// `None` when another call (a redelivery, the other refund event) did first.
async fn fail_succeeded(
    store: &impl RefundStore,
    mut refund: Refund,
    reason: String,
    stripe_refund_id: &str,
) -> Result<Option<Refund>, RefundError> {
    let (order_id, refund_id) = (refund.order_id, refund.refund_id);
    refund.status = RefundStatus::Failed { reason: reason.clone() };
    let event = failed(&refund, Some(stripe_refund_id))?;
    let (refund, event, reason) = (&refund, &event, &reason);
    let recorded = until_won(|| async move {
        Ok::<_, RefundError>(match store.fail_succeeded_refund(refund, stripe_refund_id, event).await? {
            Recorded::Done => {
                tracing::error!(%order_id, %refund_id, stripe_refund_id, reason,
                    "Stripe failed a refund after it succeeded; its amount is refundable again and a person must act");
                Metric::count("RefundsFailedAfterSuccess")
                    .with("correlation_id", order_id.to_string())
                    .with("refund_id", refund_id.to_string())
                    .emit();
                Attempt::Done(Some(refund.clone()))
            }
            Recorded::Already(_) => Attempt::Done(None),
            Recorded::Moved => Attempt::Lost,
        })
    })
    .await?;
    recorded.ok_or(RefundError::Busy(order_id))
}

/// A dispute as Stripe's `charge.dispute.created` tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispute {
    /// `dp_…`
    pub id: String,
    pub intent: PaymentIntentId,
    pub amount: Money,
    pub reason: String,
}

/// `charge.dispute.created`: `PaymentDisputed`, once per dispute. The PaymentIntent is read back
/// from Stripe to find its order (and that it is ours).
pub async fn on_dispute(
    store: &impl RefundStore,
    gateway: &impl RefundGateway,
    dispute: &Dispute,
) -> Result<(), PaymentError> {
    let Some(order_id) = gateway.intent_order(&dispute.intent).await? else {
        tracing::info!(dispute_id = dispute.id, "dispute on a PaymentIntent that is not an order's; ignored");
        return Ok(());
    };
    let event = Event::PaymentDisputed(PaymentDisputed {
        order_id,
        payment_intent_id: dispute.intent.to_string(),
        dispute_id: dispute.id.clone(),
        amount: dispute.amount,
        reason: dispute.reason.clone(),
    });
    if store.record_dispute(order_id, &dispute.id, &envelope(order_id, event)).await? {
        tracing::warn!(%order_id, dispute_id = dispute.id, reason = dispute.reason, "payment disputed; a person must answer it");
    } else {
        tracing::info!(%order_id, dispute_id = dispute.id, "dispute recorded before");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kernel::{Currency, ReturnId, Warehouse};
    use time::Duration;

    use super::*;
    use crate::testing::{Call, FakeStore, FakeStripe, Fault, T0, at_once, captured_order, captured_order_of};

    fn usd(minor: i64) -> Money {
        Money::new(minor, Currency::USD).unwrap()
    }

    fn ask(order_id: OrderId, key: &str, amount: Option<i64>) -> Ask {
        Ask {
            order_id,
            source: Source::Key(key.into()),
            amount,
            reason: RefundReason::RequestedByCustomer,
            note: None,
            request: Some(format!("{{\"amount\":{amount:?}}}")),
        }
    }

    fn returned(order_id: OrderId, return_id: ReturnId, minor: i64) -> ReturnReceived {
        ReturnReceived {
            order_id,
            return_id,
            warehouse: Warehouse::parse("main").unwrap(),
            lines: Vec::new(),
            refund: usd(minor),
        }
    }

    /// What `pick` takes from the events the store announced, in order.
    fn announced<T>(store: &FakeStore, pick: impl Fn(Event) -> Option<T>) -> Vec<T> {
        store.events().into_iter().filter_map(pick).collect()
    }

    fn issued_amounts(store: &FakeStore) -> Vec<(i64, i64)> {
        announced(store, |event| match event {
            Event::RefundIssued(issued) => Some((issued.amount.amount(), issued.refunded_total.amount())),
            _ => None,
        })
    }

    fn at_stripe(stripe: &FakeStripe, intent: &PaymentIntentId) -> i64 {
        stripe.refunds_of(intent).iter().map(|made| made.amount.amount()).sum()
    }

    #[tokio::test]
    async fn a_refund_that_lost_the_room_to_a_concurrent_one_is_planned_again_and_refused() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, intent) = captured_order(&store, &stripe).await;
        // Between our read (2500 left) and our reservation, another refund reserves 2000.
        store.before_next_reserve(|payment| payment.refunds.reserved += 2000);

        let refused = request_refund(&store, &stripe, ask(order_id, "k1", Some(1000)), T0).await;

        assert!(matches!(refused, Err(RefundError::Unrefundable(Unrefundable::Exceeds { .. }))), "{refused:?}");
        assert_eq!(at_stripe(&stripe, &intent), 0);
        assert_eq!(store.payment(order_id).refunds.reserved, 2000, "nothing reserved beyond the total");
    }

    #[tokio::test]
    async fn a_refund_whose_stripe_answer_was_lost_is_finished_by_its_retry_with_one_refund_at_stripe() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, intent) = captured_order(&store, &stripe).await;
        stripe.fail_once(Call::Refund, Fault::AnswerLost);

        let crashed = request_refund(&store, &stripe, ask(order_id, "k1", Some(900)), T0).await;
        let retried = request_refund(&store, &stripe, ask(order_id, "k1", Some(900)), T0).await.unwrap();

        assert!(matches!(crashed, Err(RefundError::Failed(ref error)) if error.is_transient()), "{crashed:?}");
        assert_eq!(retried.status.as_str(), "succeeded");
        assert_eq!(stripe.refunds_of(&intent).len(), 1, "one refund at Stripe");
        assert_eq!(issued_amounts(&store), vec![(900, 900)]);
    }

    #[tokio::test]
    async fn the_sweep_finishes_a_refund_left_pending_and_leaves_a_young_one_alone() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, intent) = captured_order(&store, &stripe).await;
        stripe.fail_once(Call::Refund, Fault::AnswerLost);
        let _crashed = request_refund(&store, &stripe, ask(order_id, "k1", None), T0).await;

        let too_soon = list_pending(&store, T0 + REFUND_TIMEOUT - Duration::seconds(1), None).await.unwrap();
        let due = list_pending(&store, T0 + REFUND_TIMEOUT, None).await.unwrap();
        for listed in due.items.clone() {
            finish_pending(&store, &stripe, listed, T0 + REFUND_TIMEOUT).await.unwrap();
        }

        assert!(too_soon.items.is_empty());
        assert_eq!(due.items.len(), 1);
        assert_eq!(stripe.refunds_of(&intent).len(), 1);
        assert_eq!(issued_amounts(&store), vec![(2500, 2500)]);
        assert!(list_pending(&store, T0 + REFUND_TIMEOUT, None).await.unwrap().items.is_empty());
    }

    fn failed_refunds(store: &FakeStore) -> Vec<(i64, String)> {
        announced(store, |event| match event {
            Event::RefundFailed(failed) => Some((failed.amount.amount(), failed.failure_reason)),
            _ => None,
        })
    }

    /// Lists every refund due at `now` and carries each on: what one sweep tick does.
    async fn sweep(store: &FakeStore, stripe: &FakeStripe, now: OffsetDateTime) -> usize {
        let due = list_pending(store, now, None).await.unwrap().items;
        for listed in due.clone() {
            finish_pending(store, stripe, listed, now).await.unwrap();
        }
        due.len()
    }

    /// A refund of 900 that Stripe answered `pending`, and Stripe's id for it.
    async fn pending_at_stripe(store: &FakeStore, stripe: &FakeStripe) -> (OrderId, PaymentIntentId, String) {
        let (order_id, intent) = captured_order(store, stripe).await;
        stripe.refunds_start_pending();
        request_refund(store, stripe, ask(order_id, "k1", Some(900)), T0).await.unwrap();
        let stripe_refund_id = stripe.refunds_of(&intent)[0].id.clone();
        (order_id, intent, stripe_refund_id)
    }

    #[tokio::test]
    async fn a_refund_stripe_answers_pending_is_recorded_pending_and_not_issued() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, _) = captured_order(&store, &stripe).await;
        stripe.refunds_start_pending();

        let made = request_refund(&store, &stripe, ask(order_id, "k1", Some(900)), T0).await.unwrap();

        assert_eq!(made.status.as_str(), "pending");
        assert_eq!(issued_amounts(&store), vec![], "not announced before Stripe says succeeded");
        assert_eq!(store.payment(order_id).refunds.refunded, 0);
        assert_eq!(store.payment(order_id).refunds.reserved, 900, "its amount stays taken");
    }

    /// The `RefundPending` announced, as (amount, Stripe's id).
    fn announced_pending(store: &FakeStore) -> Vec<(i64, String)> {
        announced(store, |event| match event {
            Event::RefundPending(pending) => Some((pending.amount.amount(), pending.stripe_refund_id)),
            _ => None,
        })
    }

    #[tokio::test]
    async fn a_refund_stripe_holds_pending_is_announced_pending_once_however_often_it_is_read_back() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, intent, re) = pending_at_stripe(&store, &stripe).await;

        // The sweep's read-back, Stripe's `refund.updated` twice, the admin's retry: still pending.
        sweep(&store, &stripe, T0 + PENDING_RECHECK).await;
        reconcile(&store, &stripe, &intent, T0 + PENDING_RECHECK).await.unwrap();
        reconcile(&store, &stripe, &intent, T0 + PENDING_RECHECK).await.unwrap();
        request_refund(&store, &stripe, ask(order_id, "k1", Some(900)), T0 + PENDING_RECHECK * 2).await.unwrap();
        stripe.end_refund(&re, "succeeded", None);
        sweep(&store, &stripe, T0 + PENDING_RECHECK * 3).await;

        assert_eq!(announced_pending(&store), vec![(900, re.clone())], "announced once, with Stripe's id");
        assert_eq!(issued_amounts(&store), vec![(900, 900)]);
        let kinds: Vec<_> = store.events().iter().map(Event::detail_type).filter(|t| t.starts_with("Refund")).collect();
        assert_eq!(kinds, vec!["RefundPending", "RefundIssued"], "pending first, then its end");
    }

    #[tokio::test]
    async fn a_pending_record_that_loses_to_a_concurrent_write_is_tried_again_and_announced_once() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, intent) = captured_order(&store, &stripe).await;
        stripe.refunds_start_pending();
        store.conflict_next_follows(2);

        let made = request_refund(&store, &stripe, ask(order_id, "k1", Some(900)), T0).await.unwrap();

        assert_eq!(made.status.as_str(), "pending");
        let re = stripe.refunds_of(&intent)[0].id.clone();
        assert_eq!(announced_pending(&store), vec![(900, re)]);
    }

    #[tokio::test]
    async fn a_pending_record_that_never_wins_its_write_is_busy_and_carried_on_later_announcing_once() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, intent) = captured_order(&store, &stripe).await;
        stripe.refunds_start_pending();
        store.conflict_next_follows(1_000);

        let busy = request_refund(&store, &stripe, ask(order_id, "k1", Some(900)), T0).await;

        assert!(matches!(busy, Err(RefundError::Busy(id)) if id == order_id), "{busy:?}");
        assert_eq!(store.stored_refunds(order_id)[0].status.as_str(), "pending", "not followed yet");
        assert!(announced_pending(&store).is_empty(), "nothing announced for a write that did not happen");
        store.conflict_next_follows(0);
        let retried = request_refund(&store, &stripe, ask(order_id, "k1", Some(900)), T0).await.unwrap();
        assert_eq!(retried.status.as_str(), "pending");
        assert_eq!(stripe.refunds_of(&intent).len(), 1, "the retry found Stripe's refund");
        assert_eq!(announced_pending(&store).len(), 1);
    }

    #[tokio::test]
    async fn two_calls_that_read_a_refund_before_stripe_held_it_pending_announce_it_once() {
        let (store, stripe) = (Arc::new(FakeStore::default()), Arc::new(FakeStripe::default()));
        let (order_id, intent) = captured_order(&store, &stripe).await;
        stripe.refunds_start_pending();
        stripe.fail_once(Call::Refund, Fault::AnswerLost);
        let _crashed = request_refund(&*store, &*stripe, ask(order_id, "k1", Some(900)), T0).await;
        // The admin's retry read the refund `pending` (not yet followed); while it looks at
        // Stripe, Stripe's webhook reads it the same and records it pending at Stripe first.
        let (hook_store, hook_stripe, hook_intent) = (Arc::clone(&store), Arc::clone(&stripe), intent.clone());
        stripe.meanwhile(Call::ListRefunds, move || {
            at_once(reconcile(&*hook_store, &*hook_stripe, &hook_intent, T0)).unwrap();
        });

        let retried = request_refund(&*store, &*stripe, ask(order_id, "k1", Some(900)), T0).await.unwrap();

        assert_eq!(retried.status.as_str(), "pending");
        assert_eq!(announced_pending(&store).len(), 1, "the retry's write lost to the webhook's: no second event");
        assert_eq!(stripe.refunds_of(&intent).len(), 1);
    }

    #[tokio::test]
    async fn the_sweep_reads_a_pending_refund_back_every_recheck_and_issues_it_once_it_succeeded() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, _, re) = pending_at_stripe(&store, &stripe).await;

        let too_soon = sweep(&store, &stripe, T0 + PENDING_RECHECK - Duration::seconds(1)).await;
        let still_pending = sweep(&store, &stripe, T0 + PENDING_RECHECK).await;
        let not_again_yet = sweep(&store, &stripe, T0 + PENDING_RECHECK + Duration::minutes(1)).await;
        stripe.end_refund(&re, "succeeded", None);
        let ended = sweep(&store, &stripe, T0 + PENDING_RECHECK * 2).await;
        let after = sweep(&store, &stripe, T0 + PENDING_RECHECK * 10).await;

        assert_eq!((too_soon, still_pending, not_again_yet, ended, after), (0, 1, 0, 1, 0));
        assert_eq!(issued_amounts(&store), vec![(900, 900)]);
        assert_eq!(store.stored_refunds(order_id)[0].stripe_refund_id(), Some(re.as_str()));
    }

    #[tokio::test]
    async fn a_pending_refund_that_fails_at_stripe_is_announced_once_and_its_amount_is_refundable_again() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, intent, re) = pending_at_stripe(&store, &stripe).await;
        stripe.end_refund(&re, "failed", Some("expired_or_canceled_card"));

        // What `charge.refund.updated` does, twice (Stripe delivers at least once), then the sweep.
        reconcile(&store, &stripe, &intent, T0).await.unwrap();
        reconcile(&store, &stripe, &intent, T0).await.unwrap();
        sweep(&store, &stripe, T0 + PENDING_RECHECK).await;
        let again = request_refund(&store, &stripe, ask(order_id, "k2", None), T0).await.unwrap();

        assert_eq!(failed_refunds(&store), vec![(900, "expired_or_canceled_card".to_owned())]);
        let first = store.stored_refunds(order_id).into_iter().find(|r| r.source == Source::Key("k1".into()));
        assert_eq!(first.unwrap().status, RefundStatus::Failed { reason: "expired_or_canceled_card".into() });
        assert_eq!(again.amount, usd(2500), "the whole captured total is refundable again");
    }

    #[tokio::test]
    async fn a_refund_webhook_stripe_does_not_confirm_changes_nothing() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, intent, _) = pending_at_stripe(&store, &stripe).await;

        // A forged or stale `refund.failed`: Stripe still holds the refund pending.
        reconcile(&store, &stripe, &intent, T0).await.unwrap();

        assert!(failed_refunds(&store).is_empty() && issued_amounts(&store).is_empty());
        assert_eq!(store.stored_refunds(order_id)[0].status.as_str(), "pending");
        assert_eq!(store.payment(order_id).refunds.reserved, 900);
    }

    #[tokio::test]
    async fn a_refund_that_met_a_stripe_5xx_is_retried_under_a_new_key_and_made_once() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, intent) = captured_order(&store, &stripe).await;
        stripe.fail_once(Call::Refund, Fault::ServerError { made: false });

        let outage = request_refund(&store, &stripe, ask(order_id, "k1", Some(900)), T0).await;
        let retried = request_refund(&store, &stripe, ask(order_id, "k1", Some(900)), T0).await.unwrap();
        let again = request_refund(&store, &stripe, ask(order_id, "k1", Some(900)), T0).await.unwrap();

        assert!(matches!(outage, Err(RefundError::Failed(ref error)) if error.is_transient()), "{outage:?}");
        assert_eq!((retried.status.as_str(), retried.attempt), ("succeeded", 1), "not the saved 5xx again");
        assert_eq!(again, retried);
        assert_eq!(stripe.refunds_of(&intent).len(), 1, "one refund at Stripe");
        assert_eq!(issued_amounts(&store), vec![(900, 900)]);
    }

    #[tokio::test]
    async fn a_5xx_stripe_did_not_save_is_retried_under_the_same_key() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, intent) = captured_order(&store, &stripe).await;
        stripe.fail_once(Call::Refund, Fault::ServerErrorUnsaved);

        let outage = request_refund(&store, &stripe, ask(order_id, "k1", Some(900)), T0).await;
        let stored = store.stored_refunds(order_id);
        let retried = request_refund(&store, &stripe, ask(order_id, "k1", Some(900)), T0).await.unwrap();

        assert!(matches!(outage, Err(RefundError::Failed(ref error)) if error.is_transient()), "{outage:?}");
        // A retry still holding attempt 0 would run under a key Stripe never burnt: moving on
        // here could make a second refund.
        assert_eq!(stored[0].attempt, 0, "a 5xx Stripe did not replay keeps the key");
        assert_eq!((retried.status.as_str(), retried.attempt), ("succeeded", 0));
        assert_eq!(stripe.refunds_of(&intent).len(), 1, "one refund at Stripe");
        assert_eq!(issued_amounts(&store), vec![(900, 900)]);
    }

    #[tokio::test]
    async fn a_5xx_after_stripe_made_the_refund_is_found_at_stripe_and_never_refunded_twice() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, intent) = captured_order(&store, &stripe).await;
        stripe.fail_once(Call::Refund, Fault::ServerError { made: true });

        let outage = request_refund(&store, &stripe, ask(order_id, "k1", Some(900)), T0).await;
        sweep(&store, &stripe, T0 + REFUND_TIMEOUT).await;

        assert!(outage.is_err());
        assert_eq!(stripe.refunds_of(&intent).len(), 1, "the new key was never used: the refund was found");
        assert_eq!(issued_amounts(&store), vec![(900, 900)]);
    }

    #[tokio::test]
    async fn a_refund_stripe_refuses_gives_its_amount_back() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, _) = captured_order(&store, &stripe).await;
        stripe.fail_once(Call::Refund, Fault::Refused("charge_disputed"));

        let refused = request_refund(&store, &stripe, ask(order_id, "k1", Some(2500)), T0).await.unwrap();
        let then = request_refund(&store, &stripe, ask(order_id, "k2", Some(2500)), T0).await.unwrap();

        assert_eq!(refused.status, RefundStatus::Failed { reason: "charge_disputed".into() });
        assert_eq!(then.status.as_str(), "succeeded", "the room came back");
        assert_eq!(issued_amounts(&store), vec![(2500, 2500)]);
    }

    #[tokio::test]
    async fn a_refusal_recorded_after_a_lost_race_is_written_before_it_is_answered() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, _) = captured_order(&store, &stripe).await;
        stripe.fail_once(Call::Refund, Fault::Refused("charge_disputed"));
        store.conflict_next_fails(1);

        let refused = request_refund(&store, &stripe, ask(order_id, "k1", Some(2500)), T0).await.unwrap();

        assert_eq!(refused.status, RefundStatus::Failed { reason: "charge_disputed".into() });
        assert_eq!(store.stored_refunds(order_id)[0].status, refused.status, "what the admin is told is written");
        assert_eq!(failed_refunds(&store), vec![(2500, "charge_disputed".to_owned())]);
        assert_eq!(store.payment(order_id).refunds.reserved, 0, "the amount is free again");
    }

    #[tokio::test]
    async fn a_refusal_that_never_wins_its_write_is_not_answered_failed() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, _) = captured_order(&store, &stripe).await;
        stripe.fail_once(Call::Refund, Fault::Refused("charge_disputed"));
        store.conflict_next_fails(1_000);

        let busy = request_refund(&store, &stripe, ask(order_id, "k1", Some(2500)), T0).await;

        assert!(matches!(busy, Err(RefundError::Busy(id)) if id == order_id), "{busy:?}");
        assert_eq!(store.stored_refunds(order_id)[0].status.as_str(), "pending", "carried on later");
        assert!(failed_refunds(&store).is_empty());
        assert_eq!(store.payment(order_id).refunds.reserved, 2500);
    }

    #[tokio::test]
    async fn a_return_delivered_twice_or_resent_refunds_once_and_is_cut_to_what_is_left() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, intent) = captured_order(&store, &stripe).await;
        request_refund(&store, &stripe, ask(order_id, "k1", Some(1500)), T0).await.unwrap();
        let received = returned(order_id, ReturnId::new(), 1200);

        for _ in 0..3 {
            on_return_received(&store, &stripe, &received, T0).await.unwrap();
        }

        assert_eq!(issued_amounts(&store), vec![(1500, 1500), (1000, 2500)], "cut to the 1000 left, once");
        assert_eq!(at_stripe(&stripe, &intent), 2500);
        let for_return = store.stored_refunds(order_id).into_iter().filter(|r| r.return_id.is_some()).count();
        assert_eq!(for_return, 1);
    }

    #[tokio::test]
    async fn a_return_before_the_capture_is_recorded_waits_for_it() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        crate::testing::place_and_reserve(&store, &stripe, order_id, crate::testing::VISA).await;

        let early = on_return_received(&store, &stripe, &returned(order_id, ReturnId::new(), 100), T0).await;

        assert!(matches!(early, Err(PaymentError::NotCapturableYet { .. })));
    }

    #[tokio::test]
    async fn a_dashboard_refund_is_recorded_once_and_our_own_never_twice() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, intent) = captured_order(&store, &stripe).await;
        request_refund(&store, &stripe, ask(order_id, "k1", Some(1000)), T0).await.unwrap();
        stripe.refund_in_dashboard(&intent, usd(500));

        for _ in 0..2 {
            reconcile(&store, &stripe, &intent, T0).await.unwrap();
        }

        assert_eq!(issued_amounts(&store), vec![(1000, 1000), (500, 1500)]);
        let reasons: Vec<_> = store.stored_refunds(order_id).iter().map(|refund| refund.reason).collect();
        assert!(reasons.contains(&RefundReason::Other));
        let more = request_refund(&store, &stripe, ask(order_id, "k2", None), T0).await.unwrap();
        assert_eq!(more.amount, usd(1000), "the dashboard's refund counts against the total");
    }

    /// The metrics emitted, as (name, values, dimension values).
    fn counted(emitted: &[Metric]) -> Vec<(&'static str, Vec<u64>, Vec<String>)> {
        let dimension_values = |m: &Metric| m.dimensions.iter().map(|(_, v)| v.clone()).collect();
        emitted.iter().map(|m| (m.name, m.values.clone(), dimension_values(m))).collect()
    }

    #[tokio::test]
    async fn a_dashboard_refund_seen_by_two_webhooks_is_counted_unrecorded_once_with_its_amount() {
        let captured = lambda_glue::metrics::capture::start();
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, intent) = captured_order(&store, &stripe).await;
        request_refund(&store, &stripe, ask(order_id, "k1", Some(1000)), T0).await.unwrap();
        let re = stripe.refund_in_dashboard(&intent, usd(500));

        // `charge.refunded`, then `charge.refund.updated` for the same refund (or a redelivery).
        reconcile(&store, &stripe, &intent, T0).await.unwrap();
        reconcile(&store, &stripe, &intent, T0).await.unwrap();

        let emitted = captured.take();
        assert_eq!(
            counted(&emitted),
            [("RefundsUnrecorded", vec![1], vec![]), ("UnrecordedRefundValue", vec![500], vec!["USD".to_owned()])],
            "our own refund is not counted; the dashboard's once"
        );
        for metric in emitted {
            assert!(metric.properties.contains(&("correlation_id", order_id.to_string())));
            assert!(metric.properties.contains(&("stripe_refund_id", re.clone())));
        }
    }

    #[tokio::test]
    async fn a_refund_stripe_fails_after_success_is_followed_as_a_failed_one_and_refundable_again() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, intent) = captured_order(&store, &stripe).await;
        let made = request_refund(&store, &stripe, ask(order_id, "k1", Some(900)), T0).await.unwrap();
        let re = made.stripe_refund_id().unwrap().to_owned();
        stripe.end_refund(&re, "failed", Some("expired_or_canceled_card"));

        // `charge.refund.updated` and `refund.failed` for the same failure, each maybe twice.
        for _ in 0..3 {
            reconcile(&store, &stripe, &intent, T0).await.unwrap();
        }
        let again = request_refund(&store, &stripe, ask(order_id, "k2", None), T0).await.unwrap();

        assert_eq!(failed_refunds(&store), vec![(900, "expired_or_canceled_card".to_owned())], "announced once");
        let failed =
            store.events().into_iter().find_map(|e| if let Event::RefundFailed(f) = e { Some(f) } else { None });
        assert_eq!(failed.unwrap().stripe_refund_id.as_deref(), Some(re.as_str()));
        let first = store.stored_refunds(order_id).into_iter().find(|r| r.source == Source::Key("k1".into()));
        assert_eq!(first.unwrap().status, RefundStatus::Failed { reason: "expired_or_canceled_card".into() });
        assert_eq!(again.amount, usd(2500), "the whole captured total is refundable again");
        assert_eq!(issued_amounts(&store), vec![(900, 900), (2500, 2500)], "the refunded sum lost the 900");
    }

    #[tokio::test]
    async fn a_refund_failed_after_success_is_counted_once_however_often_stripe_says_so() {
        let captured = lambda_glue::metrics::capture::start();
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, intent) = captured_order(&store, &stripe).await;
        let made = request_refund(&store, &stripe, ask(order_id, "k1", Some(900)), T0).await.unwrap();
        stripe.end_refund(made.stripe_refund_id().unwrap(), "failed", Some("lost_or_stolen_card"));

        for _ in 0..3 {
            reconcile(&store, &stripe, &intent, T0).await.unwrap();
        }

        let emitted = captured.take();
        assert_eq!(counted(&emitted), [("RefundsFailedAfterSuccess", vec![1], vec![])]);
        let refund_id = store.stored_refunds(order_id).remove(0).refund_id.to_string();
        assert!(emitted[0].properties.contains(&("correlation_id", order_id.to_string())), "{emitted:?}");
        assert!(emitted[0].properties.contains(&("refund_id", refund_id)), "{emitted:?}");
    }

    #[tokio::test]
    async fn a_late_failure_read_while_pending_is_not_lost_to_a_concurrent_settle() {
        let captured = lambda_glue::metrics::capture::start();
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, intent) = captured_order(&store, &stripe).await;
        stripe.refunds_start_pending();
        let made = request_refund(&store, &stripe, ask(order_id, "k1", Some(900)), T0).await.unwrap();
        let re = made.stripe_refund_id().unwrap().to_owned();
        // Stripe said succeeded (the admin's retry or the sweep read it so), then failed it
        // (`pm_card_refundFail`): the webhook read our refund pending, the settle landed after.
        stripe.end_refund(&re, "failed", Some("expired_or_canceled_card"));
        let settled_as = re.clone();
        store.before_next_fail(move |store| {
            let pending = store.stored_refunds(order_id).remove(0);
            at_once(settle(store, pending, &settled_as)).unwrap();
        });

        // The one `refund.failed` Stripe sends; once acked, Stripe does not send it again.
        reconcile(&store, &stripe, &intent, T0).await.unwrap();

        let refund = store.stored_refunds(order_id).remove(0);
        assert_eq!(refund.status, RefundStatus::Failed { reason: "expired_or_canceled_card".into() });
        assert_eq!(issued_amounts(&store), vec![(900, 900)], "the settle that landed first");
        assert_eq!(failed_refunds(&store), vec![(900, "expired_or_canceled_card".to_owned())]);
        assert_eq!((store.payment(order_id).refunds.refunded, store.payment(order_id).refunds.reserved), (0, 0));
        // `charge.refund.updated` and a redelivery find it failed: nothing more.
        for _ in 0..2 {
            reconcile(&store, &stripe, &intent, T0).await.unwrap();
        }
        assert_eq!(failed_refunds(&store).len(), 1, "announced once");
        assert_eq!(counted(&captured.take()), [("RefundsFailedAfterSuccess", vec![1], vec![])]);
    }

    #[tokio::test]
    async fn a_late_failure_the_sweep_reads_after_a_concurrent_settle_is_failed_and_counted_once() {
        let captured = lambda_glue::metrics::capture::start();
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, _, re) = pending_at_stripe(&store, &stripe).await;
        // Stripe said succeeded, then failed the refund: the webhook that read it succeeded
        // settles it between the sweep's read of Stripe (failed) and the sweep's write.
        stripe.end_refund(&re, "failed", Some("expired_or_canceled_card"));
        let settled_as = re.clone();
        store.before_next_fail(move |store| {
            let pending = store.stored_refunds(order_id).remove(0);
            at_once(settle(store, pending, &settled_as)).unwrap();
        });

        assert_eq!(sweep(&store, &stripe, T0 + PENDING_RECHECK).await, 1);

        let refund = store.stored_refunds(order_id).remove(0);
        assert_eq!(refund.status, RefundStatus::Failed { reason: "expired_or_canceled_card".into() });
        assert_eq!(failed_refunds(&store), vec![(900, "expired_or_canceled_card".to_owned())]);
        assert_eq!((store.payment(order_id).refunds.refunded, store.payment(order_id).refunds.reserved), (0, 0));
        let emitted = captured.take();
        assert_eq!(counted(&emitted), [("RefundsFailedAfterSuccess", vec![1], vec![])], "counted once, by the sweep");
        assert!(emitted[0].properties.contains(&("refund_id", refund.refund_id.to_string())), "{emitted:?}");
    }

    #[tokio::test]
    async fn a_dashboard_refund_stripe_fails_after_success_no_longer_counts_against_the_total() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, intent) = captured_order(&store, &stripe).await;
        let re = stripe.refund_in_dashboard(&intent, usd(500));
        reconcile(&store, &stripe, &intent, T0).await.unwrap();
        stripe.end_refund(&re, "failed", Some("declined"));

        reconcile(&store, &stripe, &intent, T0).await.unwrap();
        reconcile(&store, &stripe, &intent, T0).await.unwrap();

        assert_eq!(failed_refunds(&store), vec![(500, "declined".to_owned())]);
        assert_eq!((store.payment(order_id).refunds.reserved, store.payment(order_id).refunds.refunded), (0, 0));
    }

    #[tokio::test]
    async fn stripes_word_on_our_pending_refund_finishes_it_once() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, intent) = captured_order(&store, &stripe).await;
        stripe.fail_once(Call::Refund, Fault::AnswerLost);
        let _crashed = request_refund(&store, &stripe, ask(order_id, "k1", Some(800)), T0).await;

        reconcile(&store, &stripe, &intent, T0).await.unwrap();
        let retried = request_refund(&store, &stripe, ask(order_id, "k1", Some(800)), T0).await.unwrap();

        assert_eq!(retried.status.as_str(), "succeeded");
        assert_eq!(issued_amounts(&store), vec![(800, 800)]);
        assert_eq!(stripe.refunds_of(&intent).len(), 1);
    }

    #[tokio::test]
    async fn charge_refunded_overtaken_by_our_own_refund_records_that_refund_once() {
        let (store, stripe) = (Arc::new(FakeStore::default()), Arc::new(FakeStripe::default()));
        let (order_id, intent) = captured_order(&store, &stripe).await;
        stripe.refund_in_dashboard(&intent, usd(500));
        // The webhook read our refunds; before it lists Stripe's, an admin's refund is made whole.
        let (admin_store, admin_stripe) = (Arc::clone(&store), Arc::clone(&stripe));
        stripe.meanwhile(Call::ListRefunds, move || {
            at_once(request_refund(&*admin_store, &*admin_stripe, ask(order_id, "k1", Some(1000)), T0)).unwrap();
        });

        reconcile(&*store, &*stripe, &intent, T0).await.unwrap();

        assert_eq!(issued_amounts(&store), vec![(1000, 1000), (500, 1500)], "each refund once");
        assert_eq!(store.payment(order_id).refunds.refunded, 1500);
        let more = request_refund(&*store, &*stripe, ask(order_id, "k2", None), T0).await.unwrap();
        assert_eq!(more.amount, usd(1000), "what is left of the 2500 captured");
    }

    #[tokio::test]
    async fn a_return_refund_stripe_refuses_goes_to_a_person_on_every_delivery() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, intent) = captured_order(&store, &stripe).await;
        stripe.fail_once(Call::Refund, Fault::Refused("charge_disputed"));
        let received = returned(order_id, ReturnId::new(), 1200);

        let first = on_return_received(&store, &stripe, &received, T0).await;
        let redelivered = on_return_received(&store, &stripe, &received, T0).await;

        for outcome in [first, redelivered] {
            assert!(matches!(outcome, Err(ref error) if !error.is_transient()), "to a person: {outcome:?}");
        }
        assert_eq!(at_stripe(&stripe, &intent), 0);
        assert_eq!(store.payment(order_id).refunds.reserved, 0, "the amount is free for the admin's refund");
    }

    #[tokio::test]
    async fn a_three_decimal_return_refund_is_cut_to_what_stripe_can_refund() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let kwd = |minor| Money::new(minor, Currency::parse("KWD").unwrap()).unwrap();
        let (order_id, intent) = captured_order_of(&store, &stripe, kwd(12_340)).await;
        // Stripe charges dinars in steps of 10 fils; a return's share need not be one.
        let received = ReturnReceived { refund: kwd(4_113), ..returned(order_id, ReturnId::new(), 0) };

        on_return_received(&store, &stripe, &received, T0).await.unwrap();

        assert_eq!(stripe.refunds_of(&intent).iter().map(|made| made.amount).collect::<Vec<_>>(), vec![kwd(4_110)]);
        assert_eq!(issued_amounts(&store), vec![(4_110, 4_110)]);
    }

    #[tokio::test]
    async fn a_dispute_is_announced_once() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let (order_id, intent) = captured_order(&store, &stripe).await;
        let dispute = Dispute { id: "dp_1".into(), intent, amount: usd(2500), reason: "fraudulent".into() };

        on_dispute(&store, &stripe, &dispute).await.unwrap();
        on_dispute(&store, &stripe, &dispute).await.unwrap();

        let disputed: Vec<_> =
            store.events().into_iter().filter(|event| matches!(event, Event::PaymentDisputed(_))).collect();
        assert_eq!(disputed.len(), 1);
        assert!(matches!(&disputed[0], Event::PaymentDisputed(d) if d.order_id == order_id && d.dispute_id == "dp_1"));
    }
}
