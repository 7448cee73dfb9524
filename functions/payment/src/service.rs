//! Payment use cases and the two ports they need.
//!
//! ## When an order is authorized
//!
//! Two facts must be in: the order was placed (`OrderPlaced`: total and payment method) and its
//! stock reserved (`StockReserved`). They arrive in either order and each possibly more than once,
//! so each is recorded with a commutative write that returns the whole record; whichever write
//! finds both facts (and no cancellation) *claims* the authorization with a conditional write,
//! which exactly one invocation wins.
//!
//! ## Authorizing without charging twice
//!
//! A Lambda can die between any two steps, and SQS then delivers the message again. The steps:
//!
//! 1. create the PaymentIntent, unconfirmed and with manual capture (it holds nothing yet);
//! 2. record its id on the payment (only if none is recorded);
//! 3. confirm it (this is what places the hold on the card);
//! 4. record the outcome together with its event, in one transaction, only while authorizing.
//!
//! A delivery that finds the payment authorizing resumes: with a recorded PaymentIntent it
//! retrieves it and continues at step 3 (or just records the outcome if the confirmation went
//! through); without one, it waits [`CLAIM_TIMEOUT`] for the owner to get there, then takes the
//! claim over and starts again at step 1. A PaymentIntent left behind at step 1 was never
//! confirmed, so it holds no money. Only the recorded PaymentIntent is ever confirmed, so the card
//! is held at most once. Stripe idempotency keys derived from the order back this up in Stripe,
//! where they are honoured (the local emulator honours them too; localstripe alone does not).
//!
//! ## What fails an authorization
//!
//! A decline (`card_declined`, `expired_card`, … with the issuer's decline code), a payment that
//! needs 3-D Secure (`authentication_required`: this API has no customer session in which to
//! complete the challenge, so the customer must order again with another card), and a request
//! Stripe refuses for the order's data (an unknown payment method is `payment_method_invalid`,
//! anything else is Stripe's error code, such as `amount_too_small`). Stripe being unreachable,
//! throttling us or failing (5xx) is not a failure of the payment: the message is retried.
//!
//! ## Orders with nothing to pay
//!
//! An order whose total is zero (a 100 % promotion) is never sent to Stripe, which has a minimum
//! amount: payment records its facts and stops. Checkout confirms such an order on
//! `StockReserved` without waiting for a payment.
//!
//! ## Cancellation
//!
//! `OrderCancelled` flags the payment, which stops any later claim. An authorized payment is
//! voided at Stripe (the hold is released) and announced with `PaymentVoided`; one that is still
//! authorizing is retried until it settles.

use std::fmt;

use time::{Duration, OffsetDateTime};

use domain_events::checkout::OrderPlaced;
use domain_events::payment::{PaymentAuthorized, PaymentFailed, PaymentVoided};
use domain_events::{Envelope, Event, Metadata};
use kernel::{Money, OrderId};
use lambda_glue::consumer::HandlerError;

/// How long a claim without a recorded PaymentIntent belongs to the invocation that made it.
/// Longer than the function's timeout (30 s), so the owner is surely gone when it lapses, and
/// shorter than the queue's visibility timeout (180 s), so the owner's own message, redelivered
/// after a failure, always finds the claim lapsed and can take it over.
pub const CLAIM_TIMEOUT: Duration = Duration::seconds(60);

/// `PaymentFailed.reason` when the card needs 3-D Secure.
pub const AUTHENTICATION_REQUIRED: &str = "authentication_required";
/// `PaymentFailed.reason` when Stripe does not know or cannot use the payment method.
pub const PAYMENT_METHOD_INVALID: &str = "payment_method_invalid";

/// A Stripe PaymentIntent id (`pi_…`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PaymentIntentId(String);

/// The error for a string that is not a PaymentIntent id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a Stripe PaymentIntent id (`pi_` followed by letters and digits)")]
pub struct InvalidPaymentIntentId(pub String);

impl PaymentIntentId {
    pub fn parse(id: &str) -> Result<Self, InvalidPaymentIntentId> {
        let body = id.strip_prefix("pi_").unwrap_or_default();
        // Stripe ids are at most 255 characters.
        if body.is_empty() || id.len() > 255 || !body.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(InvalidPaymentIntentId(id.to_owned()));
        }
        Ok(Self(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PaymentIntentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What `OrderPlaced` says about paying for the order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderPayment {
    pub total: Money,
    /// The Stripe payment method (`pm_…`) the storefront made from the card.
    pub payment_method: String,
}

/// Where a payment stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// Not started: a fact is missing, or the order was cancelled first.
    Pending,
    /// Claimed at `since`; `intent` once step 2 recorded it.
    Authorizing { since: OffsetDateTime, intent: Option<PaymentIntentId> },
    /// The total is held on the card.
    Authorized { intent: PaymentIntentId },
    /// The authorization failed; nothing is held.
    Failed,
    /// The authorization was cancelled; the hold is released.
    Voided { intent: PaymentIntentId },
}

/// An order's payment as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub order_id: OrderId,
    /// Present once `OrderPlaced` was recorded.
    pub order: Option<OrderPayment>,
    pub stock_reserved: bool,
    pub cancelled: bool,
    pub stage: Stage,
}

impl Payment {
    /// The order to authorize, when both facts are in and nothing stops it.
    fn ready(&self) -> Option<&OrderPayment> {
        self.order.as_ref().filter(|order| {
            self.stock_reserved && !self.cancelled && self.stage == Stage::Pending && order.total.amount() > 0
        })
    }
}

/// How an authorization ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    Authorized { intent: PaymentIntentId },
    Failed { intent: Option<PaymentIntentId>, reason: String, decline_code: Option<String> },
}

/// What a conditional write on the payment did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The condition held; the payment after the write.
    Won(Payment),
    /// The condition failed; the payment as it was.
    Lost(Payment),
}

/// What a conditional transaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// The change and its event were written.
    Done,
    /// The payment had already moved on (another invocation settled it): nothing was written.
    AlreadyDecided,
}

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("payment storage failed")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("the stored payment of {order_id} is inconsistent: {detail}")]
    Corrupt { order_id: OrderId, detail: String },
}

/// The storage port. Every write is conditional or commutative; none is decided by a read.
#[allow(async_fn_in_trait)]
pub trait PaymentStore {
    /// Records `OrderPlaced` (the first recorded total and payment method stay).
    async fn record_order(&self, order_id: OrderId, order: &OrderPayment) -> Result<Payment, StoreError>;
    /// Records `StockReserved`.
    async fn record_stock_reserved(&self, order_id: OrderId) -> Result<Payment, StoreError>;
    /// Records `OrderCancelled`.
    async fn record_cancelled(&self, order_id: OrderId) -> Result<Payment, StoreError>;
    /// Starts authorizing at `now`: only with both facts in, no cancellation and no stage yet.
    async fn claim(&self, order_id: OrderId, now: OffsetDateTime) -> Result<Claim, StoreError>;
    /// Takes over a claim made at `since` that never recorded a PaymentIntent: only if it is
    /// still that claim.
    async fn reclaim(&self, order_id: OrderId, since: OffsetDateTime, now: OffsetDateTime)
    -> Result<Claim, StoreError>;
    /// Step 2: records the PaymentIntent, only while authorizing and if none is recorded yet.
    async fn record_intent(&self, order_id: OrderId, intent: &PaymentIntentId) -> Result<Claim, StoreError>;
    /// Step 4: records the outcome with its event, only while authorizing (with this intent).
    async fn settle(&self, order_id: OrderId, settlement: &Settlement, event: &Envelope) -> Result<Write, StoreError>;
    /// Records the void with its event, only while authorized with this intent.
    async fn void(&self, order_id: OrderId, intent: &PaymentIntentId, event: &Envelope) -> Result<Write, StoreError>;
}

/// A decline, in Stripe's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decline {
    /// `card_declined`, `expired_card`, `incorrect_cvc`, …
    pub code: String,
    /// The issuer's reason: `generic_decline`, `insufficient_funds`, …
    pub decline_code: Option<String>,
}

/// A PaymentIntent's status, as far as payment cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntentStatus {
    RequiresConfirmation,
    /// Authorized: the amount is held until captured or cancelled.
    RequiresCapture,
    /// 3-D Secure (or another customer action) is needed.
    RequiresAction,
    /// No usable payment method; with the last attempt's decline, if there was one.
    RequiresPaymentMethod(Option<Decline>),
    Processing,
    Canceled,
    Succeeded,
    Other(String),
}

/// A PaymentIntent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub id: PaymentIntentId,
    pub status: IntentStatus,
}

/// Why a Stripe call did not give a PaymentIntent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    #[error("the card was declined ({})", .0.code)]
    Declined(Decline),
    /// Stripe refused the request for what it asked (a 4xx with an error code).
    #[error("Stripe refused the request: {code} ({message})")]
    Refused { code: String, param: Option<String>, message: String },
    /// The PaymentIntent is not in the state the request needs, or another request with the same
    /// idempotency key is running: look again later.
    #[error("conflict at Stripe: {0}")]
    Conflict(String),
    /// Stripe could not be reached, timed out, throttled us or failed (5xx): retry later.
    #[error("Stripe is unavailable: {0}")]
    Unavailable(String),
    /// Our side is wrong (credentials, an idempotency key reused with other parameters, a
    /// response we cannot read): retrying will not help.
    #[error("Stripe call is broken: {0}")]
    Misconfigured(String),
}

/// The Stripe port. Each call is idempotent per order: the adapter derives its idempotency key
/// from `order_id` and the step.
#[allow(async_fn_in_trait)]
pub trait PaymentGateway {
    /// Creates an unconfirmed PaymentIntent for the order's total, to be captured manually.
    async fn create_intent(&self, order_id: OrderId, order: &OrderPayment) -> Result<Intent, GatewayError>;
    async fn retrieve_intent(&self, intent: &PaymentIntentId) -> Result<Intent, GatewayError>;
    /// Confirms the PaymentIntent: this is what authorizes (holds) the amount.
    async fn confirm_intent(&self, order_id: OrderId, intent: &PaymentIntentId) -> Result<Intent, GatewayError>;
    /// Cancels the PaymentIntent, releasing any hold.
    async fn cancel_intent(&self, order_id: OrderId, intent: &PaymentIntentId) -> Result<Intent, GatewayError>;
}

fn from_store(error: StoreError) -> HandlerError {
    match error {
        StoreError::Unavailable(_) => HandlerError::transient(error),
        StoreError::Corrupt { .. } => HandlerError::Permanent(error.to_string()),
    }
}

fn from_gateway(error: GatewayError) -> HandlerError {
    match error {
        GatewayError::Conflict(_) | GatewayError::Unavailable(_) => HandlerError::transient(error),
        other => HandlerError::Permanent(other.to_string()),
    }
}

fn busy(order_id: OrderId) -> HandlerError {
    HandlerError::Transient(format!("another invocation is authorizing {order_id}").into())
}

fn envelope(order_id: OrderId, event: Event) -> Envelope {
    Envelope::new(Metadata::new(order_id.to_string()), event)
}

/// `OrderPlaced`: record the total and payment method; authorize if the stock is reserved.
pub async fn on_order_placed(
    store: &impl PaymentStore,
    gateway: &impl PaymentGateway,
    order: &OrderPlaced,
    now: OffsetDateTime,
) -> Result<(), HandlerError> {
    let facts = OrderPayment { total: order.total, payment_method: order.payment_method.clone() };
    let payment = store.record_order(order.order_id, &facts).await.map_err(from_store)?;
    advance(store, gateway, payment, now).await
}

/// `StockReserved`: record it; authorize if the order is known.
pub async fn on_stock_reserved(
    store: &impl PaymentStore,
    gateway: &impl PaymentGateway,
    order_id: OrderId,
    now: OffsetDateTime,
) -> Result<(), HandlerError> {
    let payment = store.record_stock_reserved(order_id).await.map_err(from_store)?;
    advance(store, gateway, payment, now).await
}

/// Moves a payment on after a fact was recorded: claim, resume, or nothing.
async fn advance(
    store: &impl PaymentStore,
    gateway: &impl PaymentGateway,
    payment: Payment,
    now: OffsetDateTime,
) -> Result<(), HandlerError> {
    let order_id = payment.order_id;
    let payment = match payment.ready() {
        Some(_) => match store.claim(order_id, now).await.map_err(from_store)? {
            Claim::Won(claimed) => return authorize(store, gateway, &claimed).await,
            Claim::Lost(current) => current,
        },
        None => payment,
    };
    match &payment.stage {
        Stage::Pending if payment.order.as_ref().is_some_and(|order| order.total.amount() == 0) => {
            tracing::info!(%order_id, "the order's total is zero: nothing to authorize");
            Ok(())
        }
        Stage::Pending => {
            tracing::info!(%order_id, placed = payment.order.is_some(), stock_reserved = payment.stock_reserved,
                cancelled = payment.cancelled, "payment waits for its facts");
            Ok(())
        }
        Stage::Authorizing { intent: Some(intent), .. } => {
            tracing::info!(%order_id, payment_intent_id = %intent, "resuming an authorization");
            resume(store, gateway, &payment, intent).await
        }
        Stage::Authorizing { since, intent: None } if now - *since >= CLAIM_TIMEOUT => {
            match store.reclaim(order_id, *since, now).await.map_err(from_store)? {
                Claim::Won(claimed) => {
                    tracing::warn!(%order_id, "an authorization stalled before creating its PaymentIntent; starting over");
                    authorize(store, gateway, &claimed).await
                }
                Claim::Lost(_) => Err(busy(order_id)),
            }
        }
        Stage::Authorizing { intent: None, .. } => Err(busy(order_id)),
        Stage::Authorized { .. } | Stage::Failed | Stage::Voided { .. } => {
            tracing::info!(%order_id, "payment already settled; duplicate delivery");
            Ok(())
        }
    }
}

fn order_of(payment: &Payment) -> Result<&OrderPayment, HandlerError> {
    payment.order.as_ref().ok_or_else(|| {
        from_store(StoreError::Corrupt { order_id: payment.order_id, detail: "authorizing without an order".into() })
    })
}

/// Steps 1 to 4, for a payment this invocation has just claimed.
async fn authorize(
    store: &impl PaymentStore,
    gateway: &impl PaymentGateway,
    payment: &Payment,
) -> Result<(), HandlerError> {
    let order_id = payment.order_id;
    let order = order_of(payment)?;
    let intent = match gateway.create_intent(order_id, order).await {
        Ok(intent) => intent,
        Err(error) => return settle_refusal(store, payment, None, error).await,
    };
    tracing::info!(%order_id, payment_intent_id = %intent.id, "PaymentIntent created");
    match store.record_intent(order_id, &intent.id).await.map_err(from_store)? {
        Claim::Won(_) => {}
        Claim::Lost(current) => match current.stage {
            // A concurrent delivery got the same PaymentIntent (Stripe replayed the create) and
            // recorded it first: carry on with it.
            Stage::Authorizing { intent: Some(recorded), .. } if recorded == intent.id => {}
            // Another invocation's PaymentIntent won; ours stays unconfirmed and holds nothing.
            Stage::Authorizing { .. } => return Err(busy(order_id)),
            _ => {
                tracing::info!(%order_id, "payment settled by another invocation");
                return Ok(());
            }
        },
    }
    confirm(store, gateway, payment, &intent.id).await
}

/// Continues an authorization whose PaymentIntent is recorded: confirm it unless that happened.
async fn resume(
    store: &impl PaymentStore,
    gateway: &impl PaymentGateway,
    payment: &Payment,
    intent: &PaymentIntentId,
) -> Result<(), HandlerError> {
    let current = gateway.retrieve_intent(intent).await.map_err(from_gateway)?;
    match current.status {
        IntentStatus::RequiresConfirmation => confirm(store, gateway, payment, intent).await,
        status => settle_status(store, payment, intent, status).await,
    }
}

/// Step 3, then step 4.
async fn confirm(
    store: &impl PaymentStore,
    gateway: &impl PaymentGateway,
    payment: &Payment,
    intent: &PaymentIntentId,
) -> Result<(), HandlerError> {
    match gateway.confirm_intent(payment.order_id, intent).await {
        Ok(confirmed) => settle_status(store, payment, intent, confirmed.status).await,
        Err(error) => settle_refusal(store, payment, Some(intent), error).await,
    }
}

/// Step 4 from the PaymentIntent's status.
async fn settle_status(
    store: &impl PaymentStore,
    payment: &Payment,
    intent: &PaymentIntentId,
    status: IntentStatus,
) -> Result<(), HandlerError> {
    let failed = |reason: &str, decline_code: Option<String>| Settlement::Failed {
        intent: Some(intent.clone()),
        reason: reason.to_owned(),
        decline_code,
    };
    let settlement = match status {
        IntentStatus::RequiresCapture => Settlement::Authorized { intent: intent.clone() },
        // There is no customer session in which to complete a 3-D Secure challenge.
        IntentStatus::RequiresAction => failed(AUTHENTICATION_REQUIRED, None),
        IntentStatus::RequiresPaymentMethod(Some(decline)) => failed(&decline.code, decline.decline_code),
        IntentStatus::RequiresPaymentMethod(None) => failed(PAYMENT_METHOD_INVALID, None),
        // Card payments leave `processing` within seconds; look again later.
        IntentStatus::Processing | IntentStatus::RequiresConfirmation => {
            return Err(HandlerError::Transient(
                format!("PaymentIntent {intent} of {} is not settled yet", payment.order_id).into(),
            ));
        }
        // Payment never captures or cancels an authorizing PaymentIntent: someone else did.
        other => {
            return Err(HandlerError::Permanent(format!(
                "PaymentIntent {intent} of {} is {other:?} while authorizing; a person must look",
                payment.order_id
            )));
        }
    };
    settle(store, payment, settlement).await
}

/// Step 4 from a failed create or confirm: a decline or refusal fails the payment; anything else
/// is an error for the message.
async fn settle_refusal(
    store: &impl PaymentStore,
    payment: &Payment,
    intent: Option<&PaymentIntentId>,
    error: GatewayError,
) -> Result<(), HandlerError> {
    let (reason, decline_code) = match error {
        GatewayError::Declined(decline) => (decline.code, decline.decline_code),
        GatewayError::Refused { param, .. } if param.as_deref() == Some("payment_method") => {
            (PAYMENT_METHOD_INVALID.to_owned(), None)
        }
        GatewayError::Refused { code, .. } => (code, None),
        other => return Err(from_gateway(other)),
    };
    settle(store, payment, Settlement::Failed { intent: intent.cloned(), reason, decline_code }).await
}

async fn settle(store: &impl PaymentStore, payment: &Payment, settlement: Settlement) -> Result<(), HandlerError> {
    let order_id = payment.order_id;
    let event = match &settlement {
        Settlement::Authorized { intent } => Event::PaymentAuthorized(PaymentAuthorized {
            order_id,
            payment_intent_id: intent.to_string(),
            amount: order_of(payment)?.total,
        }),
        Settlement::Failed { reason, decline_code, .. } => {
            Event::PaymentFailed(PaymentFailed { order_id, reason: reason.clone(), decline_code: decline_code.clone() })
        }
    };
    match store.settle(order_id, &settlement, &envelope(order_id, event)).await.map_err(from_store)? {
        Write::Done => match &settlement {
            Settlement::Authorized { intent } => {
                tracing::info!(%order_id, payment_intent_id = %intent, "payment authorized")
            }
            Settlement::Failed { intent, reason, decline_code } => tracing::info!(%order_id,
                payment_intent_id = intent.as_ref().map(tracing::field::display), reason, decline_code, "payment failed"),
        },
        Write::AlreadyDecided => tracing::info!(%order_id, "payment settled by another invocation"),
    }
    Ok(())
}

/// `OrderCancelled`: stop any later authorization and void one that went through.
pub async fn on_order_cancelled(
    store: &impl PaymentStore,
    gateway: &impl PaymentGateway,
    order_id: OrderId,
) -> Result<(), HandlerError> {
    let payment = store.record_cancelled(order_id).await.map_err(from_store)?;
    match &payment.stage {
        Stage::Pending if payment.order.as_ref().is_some_and(|order| order.total.amount() == 0) => {
            tracing::info!(%order_id, "the order's total is zero: nothing to authorize");
            Ok(())
        }
        Stage::Pending => {
            tracing::info!(%order_id, "order cancelled before its payment started; it never will");
            Ok(())
        }
        Stage::Authorizing { .. } => Err(HandlerError::Transient(
            format!("{order_id} is being authorized; its cancellation waits until that settles").into(),
        )),
        Stage::Authorized { intent } => void(store, gateway, order_id, intent).await,
        Stage::Failed | Stage::Voided { .. } => Ok(()),
    }
}

async fn void(
    store: &impl PaymentStore,
    gateway: &impl PaymentGateway,
    order_id: OrderId,
    intent: &PaymentIntentId,
) -> Result<(), HandlerError> {
    let status = match gateway.cancel_intent(order_id, intent).await {
        Ok(cancelled) => cancelled.status,
        // Already cancelled by an earlier attempt (whose idempotency key Stripe no longer keeps),
        // or captured by someone: look.
        Err(GatewayError::Conflict(_)) => gateway.retrieve_intent(intent).await.map_err(from_gateway)?.status,
        Err(error) => return Err(from_gateway(error)),
    };
    if status != IntentStatus::Canceled {
        return Err(HandlerError::Permanent(format!(
            "PaymentIntent {intent} of {order_id} is {status:?}, not canceled; a person must look"
        )));
    }
    let event =
        envelope(order_id, Event::PaymentVoided(PaymentVoided { order_id, payment_intent_id: intent.to_string() }));
    match store.void(order_id, intent, &event).await.map_err(from_store)? {
        Write::Done => tracing::info!(%order_id, payment_intent_id = %intent, "authorization voided"),
        Write::AlreadyDecided => tracing::info!(%order_id, "authorization already voided"),
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use time::macros::datetime;

    use kernel::Currency;

    use super::*;

    const VISA: &str = "pm_card_visa";
    const DECLINED: &str = "pm_card_chargeDeclined";
    const NEEDS_3DS: &str = "pm_card_authenticationRequired";
    const UNKNOWN_CARD: &str = "pm_card_bogus";
    const T0: OffsetDateTime = datetime!(2026-11-22 10:00 UTC);

    /// The store, in memory, with the same conditions as the DynamoDB adapter.
    #[derive(Default)]
    pub(crate) struct FakeStore {
        payments: Mutex<HashMap<OrderId, Payment>>,
        events: Mutex<Vec<Event>>,
    }

    impl FakeStore {
        fn payment(&self, order_id: OrderId) -> Payment {
            self.payments.lock().unwrap()[&order_id].clone()
        }

        fn set_stage(&self, order_id: OrderId, stage: Stage) {
            self.payments.lock().unwrap().get_mut(&order_id).unwrap().stage = stage;
        }

        pub(crate) fn events(&self) -> Vec<Event> {
            self.events.lock().unwrap().clone()
        }

        fn record(&self, order_id: OrderId, change: impl FnOnce(&mut Payment)) -> Payment {
            let mut payments = self.payments.lock().unwrap();
            let payment = payments.entry(order_id).or_insert_with(|| Payment {
                order_id,
                order: None,
                stock_reserved: false,
                cancelled: false,
                stage: Stage::Pending,
            });
            change(payment);
            payment.clone()
        }

        fn conditional(
            &self,
            order_id: OrderId,
            holds: impl FnOnce(&Payment) -> bool,
            change: impl FnOnce(&mut Payment),
        ) -> Claim {
            let mut payments = self.payments.lock().unwrap();
            let payment = payments.get_mut(&order_id).unwrap();
            if !holds(payment) {
                return Claim::Lost(payment.clone());
            }
            change(payment);
            Claim::Won(payment.clone())
        }

        fn transact(
            &self,
            order_id: OrderId,
            holds: impl FnOnce(&Payment) -> bool,
            stage: Stage,
            event: &Envelope,
        ) -> Write {
            match self.conditional(order_id, holds, |payment| payment.stage = stage) {
                Claim::Won(_) => {
                    self.events.lock().unwrap().push(event.event.clone());
                    Write::Done
                }
                Claim::Lost(_) => Write::AlreadyDecided,
            }
        }
    }

    impl PaymentStore for FakeStore {
        async fn record_order(&self, order_id: OrderId, order: &OrderPayment) -> Result<Payment, StoreError> {
            Ok(self.record(order_id, |p| {
                p.order.get_or_insert_with(|| order.clone());
            }))
        }

        async fn record_stock_reserved(&self, order_id: OrderId) -> Result<Payment, StoreError> {
            Ok(self.record(order_id, |p| p.stock_reserved = true))
        }

        async fn record_cancelled(&self, order_id: OrderId) -> Result<Payment, StoreError> {
            Ok(self.record(order_id, |p| p.cancelled = true))
        }

        async fn claim(&self, order_id: OrderId, now: OffsetDateTime) -> Result<Claim, StoreError> {
            Ok(self.conditional(
                order_id,
                |p| p.stage == Stage::Pending && !p.cancelled && p.stock_reserved && p.order.is_some(),
                |p| p.stage = Stage::Authorizing { since: now, intent: None },
            ))
        }

        async fn reclaim(
            &self,
            order_id: OrderId,
            since: OffsetDateTime,
            now: OffsetDateTime,
        ) -> Result<Claim, StoreError> {
            Ok(self.conditional(
                order_id,
                |p| p.stage == Stage::Authorizing { since, intent: None },
                |p| p.stage = Stage::Authorizing { since: now, intent: None },
            ))
        }

        async fn record_intent(&self, order_id: OrderId, intent: &PaymentIntentId) -> Result<Claim, StoreError> {
            Ok(self.conditional(
                order_id,
                |p| matches!(p.stage, Stage::Authorizing { intent: None, .. }),
                |p| {
                    if let Stage::Authorizing { intent: recorded, .. } = &mut p.stage {
                        *recorded = Some(intent.clone());
                    }
                },
            ))
        }

        async fn settle(
            &self,
            order_id: OrderId,
            settlement: &Settlement,
            event: &Envelope,
        ) -> Result<Write, StoreError> {
            let (expected, stage) = match settlement {
                Settlement::Authorized { intent } => (Some(intent), Stage::Authorized { intent: intent.clone() }),
                Settlement::Failed { intent, .. } => (intent.as_ref(), Stage::Failed),
            };
            let holds =
                |p: &Payment| matches!(&p.stage, Stage::Authorizing { intent, .. } if intent.as_ref() == expected);
            Ok(self.transact(order_id, holds, stage, event))
        }

        async fn void(
            &self,
            order_id: OrderId,
            intent: &PaymentIntentId,
            event: &Envelope,
        ) -> Result<Write, StoreError> {
            let holds = |p: &Payment| p.stage == Stage::Authorized { intent: intent.clone() };
            Ok(self.transact(order_id, holds, Stage::Voided { intent: intent.clone() }, event))
        }
    }

    /// A Stripe call, to make one misbehave.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Call {
        Create,
        Confirm,
    }

    /// How a call misbehaves once.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Fault {
        /// Stripe cannot be reached: nothing happens.
        Unreachable,
        /// Stripe does the work but the answer never arrives (a timeout, or the Lambda dying).
        AnswerLost,
    }

    struct FakeIntent {
        order_id: OrderId,
        payment_method: String,
        status: IntentStatus,
    }

    /// Stripe test mode, in memory: PaymentIntents keyed by order as idempotency keys would.
    #[derive(Default)]
    pub(crate) struct FakeStripe {
        intents: Mutex<HashMap<PaymentIntentId, FakeIntent>>,
        confirmations: Mutex<u32>,
        faults: Mutex<Vec<(Call, Fault)>>,
    }

    impl FakeStripe {
        fn fail_once(&self, call: Call, fault: Fault) {
            self.faults.lock().unwrap().push((call, fault));
        }

        fn fault(&self, call: Call) -> Option<Fault> {
            let mut faults = self.faults.lock().unwrap();
            let index = faults.iter().position(|(c, _)| *c == call)?;
            Some(faults.remove(index).1)
        }

        fn intent_count(&self) -> usize {
            self.intents.lock().unwrap().len()
        }

        fn confirmations(&self) -> u32 {
            *self.confirmations.lock().unwrap()
        }

        fn status(&self, id: &PaymentIntentId) -> IntentStatus {
            self.intents.lock().unwrap()[id].status.clone()
        }

        fn only_intent(&self) -> PaymentIntentId {
            let intents = self.intents.lock().unwrap();
            assert_eq!(intents.len(), 1, "expected exactly one PaymentIntent");
            intents.keys().next().unwrap().clone()
        }

        fn lost() -> GatewayError {
            GatewayError::Unavailable("timed out".into())
        }
    }

    fn declined() -> Decline {
        Decline { code: "card_declined".into(), decline_code: Some("generic_decline".into()) }
    }

    impl PaymentGateway for FakeStripe {
        async fn create_intent(&self, order_id: OrderId, order: &OrderPayment) -> Result<Intent, GatewayError> {
            let fault = self.fault(Call::Create);
            if fault == Some(Fault::Unreachable) {
                return Err(GatewayError::Unavailable("connection refused".into()));
            }
            if order.payment_method == UNKNOWN_CARD {
                return Err(GatewayError::Refused {
                    code: "resource_missing".into(),
                    param: Some("payment_method".into()),
                    message: "No such PaymentMethod".into(),
                });
            }
            let id = PaymentIntentId::parse(&format!("pi_{}", order_id.ulid())).unwrap();
            let mut intents = self.intents.lock().unwrap();
            // The same idempotency key (`ferrocart:{order_id}:pi-create`) gives the same intent.
            intents.entry(id.clone()).or_insert_with(|| FakeIntent {
                order_id,
                payment_method: order.payment_method.clone(),
                status: IntentStatus::RequiresConfirmation,
            });
            if fault == Some(Fault::AnswerLost) {
                return Err(Self::lost());
            }
            Ok(Intent { id, status: IntentStatus::RequiresConfirmation })
        }

        async fn retrieve_intent(&self, id: &PaymentIntentId) -> Result<Intent, GatewayError> {
            Ok(Intent { id: id.clone(), status: self.status(id) })
        }

        async fn confirm_intent(&self, order_id: OrderId, id: &PaymentIntentId) -> Result<Intent, GatewayError> {
            let fault = self.fault(Call::Confirm);
            if fault == Some(Fault::Unreachable) {
                return Err(GatewayError::Unavailable("connection refused".into()));
            }
            let mut intents = self.intents.lock().unwrap();
            let intent = intents.get_mut(id).unwrap();
            assert_eq!(intent.order_id, order_id);
            if intent.status != IntentStatus::RequiresConfirmation {
                return Err(GatewayError::Conflict("payment_intent_unexpected_state".into()));
            }
            *self.confirmations.lock().unwrap() += 1;
            intent.status = match intent.payment_method.as_str() {
                DECLINED => IntentStatus::RequiresPaymentMethod(Some(declined())),
                NEEDS_3DS => IntentStatus::RequiresAction,
                _ => IntentStatus::RequiresCapture,
            };
            if fault == Some(Fault::AnswerLost) {
                return Err(Self::lost());
            }
            match &intent.status {
                IntentStatus::RequiresPaymentMethod(Some(decline)) => Err(GatewayError::Declined(decline.clone())),
                status => Ok(Intent { id: id.clone(), status: status.clone() }),
            }
        }

        async fn cancel_intent(&self, _order_id: OrderId, id: &PaymentIntentId) -> Result<Intent, GatewayError> {
            let mut intents = self.intents.lock().unwrap();
            let intent = intents.get_mut(id).unwrap();
            if matches!(intent.status, IntentStatus::Canceled | IntentStatus::Succeeded) {
                return Err(GatewayError::Conflict("payment_intent_unexpected_state".into()));
            }
            intent.status = IntentStatus::Canceled;
            Ok(Intent { id: id.clone(), status: IntentStatus::Canceled })
        }
    }

    fn placed(order_id: OrderId, payment_method: &str) -> OrderPlaced {
        OrderPlaced {
            order_id,
            customer: "user-1".into(),
            email: "shopper@example.com".into(),
            lines: Vec::new(),
            total: Money::new(2500, Currency::USD).unwrap(),
            payment_method: payment_method.into(),
            cart: None,
        }
    }

    /// Delivers OrderPlaced then StockReserved, as SQS would in the happy case.
    async fn place_and_reserve(store: &FakeStore, stripe: &FakeStripe, order_id: OrderId, payment_method: &str) {
        on_order_placed(store, stripe, &placed(order_id, payment_method), T0).await.unwrap();
        on_stock_reserved(store, stripe, order_id, T0).await.unwrap();
    }

    fn authorized(order_id: OrderId, intent: &PaymentIntentId) -> Event {
        Event::PaymentAuthorized(PaymentAuthorized {
            order_id,
            payment_intent_id: intent.to_string(),
            amount: Money::new(2500, Currency::USD).unwrap(),
        })
    }

    fn failed(order_id: OrderId, reason: &str, decline_code: Option<&str>) -> Event {
        Event::PaymentFailed(PaymentFailed {
            order_id,
            reason: reason.into(),
            decline_code: decline_code.map(str::to_owned),
        })
    }

    fn is_transient(result: Result<(), HandlerError>) -> bool {
        matches!(result, Err(HandlerError::Transient(_)))
    }

    #[tokio::test]
    async fn an_order_placed_then_reserved_is_authorized_once() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());

        on_order_placed(&store, &stripe, &placed(order_id, VISA), T0).await.unwrap();
        let before_stock = stripe.intent_count();
        on_stock_reserved(&store, &stripe, order_id, T0).await.unwrap();

        assert_eq!(before_stock, 0, "no Stripe call before the stock is reserved");
        let intent = stripe.only_intent();
        assert_eq!(stripe.status(&intent), IntentStatus::RequiresCapture);
        assert_eq!(store.payment(order_id).stage, Stage::Authorized { intent: intent.clone() });
        assert_eq!(store.events(), vec![authorized(order_id, &intent)]);
    }

    #[tokio::test]
    async fn an_order_with_nothing_to_pay_never_reaches_stripe() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        let free = OrderPlaced { total: Money::zero(Currency::USD), ..placed(order_id, VISA) };

        on_order_placed(&store, &stripe, &free, T0).await.unwrap();
        on_stock_reserved(&store, &stripe, order_id, T0).await.unwrap();
        on_order_cancelled(&store, &stripe, order_id).await.unwrap();

        assert_eq!(stripe.intent_count(), 0);
        assert_eq!(store.events(), vec![], "no authorization, failure or void to announce");
    }

    #[tokio::test]
    async fn stock_reserved_before_the_order_is_placed_is_authorized_when_the_order_arrives() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());

        on_stock_reserved(&store, &stripe, order_id, T0).await.unwrap();
        let before_order = stripe.intent_count();
        on_order_placed(&store, &stripe, &placed(order_id, VISA), T0).await.unwrap();

        assert_eq!(before_order, 0);
        let intent = stripe.only_intent();
        assert_eq!(store.events(), vec![authorized(order_id, &intent)]);
    }

    #[tokio::test]
    async fn duplicate_deliveries_after_authorization_change_nothing() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        place_and_reserve(&store, &stripe, order_id, VISA).await;

        on_order_placed(&store, &stripe, &placed(order_id, VISA), T0).await.unwrap();
        on_stock_reserved(&store, &stripe, order_id, T0).await.unwrap();
        on_stock_reserved(&store, &stripe, order_id, T0).await.unwrap();

        assert_eq!(stripe.intent_count(), 1);
        assert_eq!(stripe.confirmations(), 1);
        assert_eq!(store.events().len(), 1);
    }

    #[tokio::test]
    async fn a_duplicate_arriving_while_a_fresh_claim_has_no_intent_yet_is_retried_later() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        on_order_placed(&store, &stripe, &placed(order_id, VISA), T0).await.unwrap();
        store.record(order_id, |p| {
            p.stock_reserved = true;
            p.stage = Stage::Authorizing { since: T0, intent: None };
        });

        let result = on_stock_reserved(&store, &stripe, order_id, T0 + Duration::seconds(5)).await;

        assert!(is_transient(result));
        assert_eq!(stripe.intent_count(), 0, "the owner of the claim creates the PaymentIntent, not the duplicate");
    }

    #[tokio::test]
    async fn a_declined_card_fails_the_payment_with_stripes_codes() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());

        place_and_reserve(&store, &stripe, order_id, DECLINED).await;

        assert_eq!(store.payment(order_id).stage, Stage::Failed);
        assert_eq!(store.events(), vec![failed(order_id, "card_declined", Some("generic_decline"))]);
    }

    #[tokio::test]
    async fn a_card_that_needs_3d_secure_fails_with_authentication_required() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());

        place_and_reserve(&store, &stripe, order_id, NEEDS_3DS).await;

        assert_eq!(store.payment(order_id).stage, Stage::Failed);
        assert_eq!(store.events(), vec![failed(order_id, AUTHENTICATION_REQUIRED, None)]);
    }

    #[tokio::test]
    async fn a_payment_method_stripe_does_not_know_fails_with_payment_method_invalid() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());

        place_and_reserve(&store, &stripe, order_id, UNKNOWN_CARD).await;

        assert_eq!(stripe.intent_count(), 0);
        assert_eq!(store.events(), vec![failed(order_id, PAYMENT_METHOD_INVALID, None)]);
    }

    #[tokio::test]
    async fn stripe_being_unreachable_is_retried_and_fails_nothing() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        on_order_placed(&store, &stripe, &placed(order_id, VISA), T0).await.unwrap();
        stripe.fail_once(Call::Confirm, Fault::Unreachable);

        let first = on_stock_reserved(&store, &stripe, order_id, T0).await;
        let retry = on_stock_reserved(&store, &stripe, order_id, T0 + Duration::seconds(180)).await;

        assert!(is_transient(first));
        retry.unwrap();
        let intent = stripe.only_intent();
        assert_eq!(stripe.confirmations(), 1);
        assert_eq!(store.events(), vec![authorized(order_id, &intent)]);
    }

    #[tokio::test]
    async fn an_authorization_that_died_after_creating_its_intent_starts_over_only_once_the_claim_lapses() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        on_order_placed(&store, &stripe, &placed(order_id, VISA), T0).await.unwrap();
        stripe.fail_once(Call::Create, Fault::AnswerLost);
        let crashed = on_stock_reserved(&store, &stripe, order_id, T0).await;

        let too_soon = on_stock_reserved(&store, &stripe, order_id, T0 + Duration::seconds(30)).await;
        let after_lapse = on_stock_reserved(&store, &stripe, order_id, T0 + CLAIM_TIMEOUT).await;

        assert!(is_transient(crashed));
        assert!(is_transient(too_soon));
        after_lapse.unwrap();
        let intent = stripe.only_intent();
        assert_eq!(stripe.confirmations(), 1);
        assert_eq!(store.events(), vec![authorized(order_id, &intent)]);
    }

    #[tokio::test]
    async fn an_authorization_that_died_before_confirming_resumes_with_its_recorded_intent() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        on_order_placed(&store, &stripe, &placed(order_id, VISA), T0).await.unwrap();
        stripe.fail_once(Call::Confirm, Fault::Unreachable);
        let crashed = on_stock_reserved(&store, &stripe, order_id, T0).await;
        let recorded = stripe.only_intent();

        // Within the claim timeout: a recorded intent is resumed at once.
        on_order_placed(&store, &stripe, &placed(order_id, VISA), T0 + Duration::seconds(1)).await.unwrap();

        assert!(is_transient(crashed));
        assert_eq!(stripe.only_intent(), recorded);
        assert_eq!(stripe.confirmations(), 1);
        assert_eq!(store.events(), vec![authorized(order_id, &recorded)]);
    }

    #[tokio::test]
    async fn an_authorization_whose_confirmation_answer_was_lost_is_not_confirmed_again() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        on_order_placed(&store, &stripe, &placed(order_id, VISA), T0).await.unwrap();
        stripe.fail_once(Call::Confirm, Fault::AnswerLost);
        let crashed = on_stock_reserved(&store, &stripe, order_id, T0).await;

        on_stock_reserved(&store, &stripe, order_id, T0 + Duration::seconds(180)).await.unwrap();

        assert!(is_transient(crashed));
        assert_eq!(stripe.confirmations(), 1);
        assert_eq!(store.events(), vec![authorized(order_id, &stripe.only_intent())]);
    }

    #[tokio::test]
    async fn a_decline_whose_answer_was_lost_is_read_back_from_the_intent() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        on_order_placed(&store, &stripe, &placed(order_id, DECLINED), T0).await.unwrap();
        stripe.fail_once(Call::Confirm, Fault::AnswerLost);
        let crashed = on_stock_reserved(&store, &stripe, order_id, T0).await;

        on_stock_reserved(&store, &stripe, order_id, T0 + Duration::seconds(180)).await.unwrap();

        assert!(is_transient(crashed));
        assert_eq!(store.events(), vec![failed(order_id, "card_declined", Some("generic_decline"))]);
    }

    #[tokio::test]
    async fn a_cancellation_before_authorization_stops_it_for_good() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());

        on_order_cancelled(&store, &stripe, order_id).await.unwrap();
        place_and_reserve(&store, &stripe, order_id, VISA).await;

        assert_eq!(stripe.intent_count(), 0);
        assert_eq!(store.payment(order_id).stage, Stage::Pending);
        assert!(store.events().is_empty());
    }

    #[tokio::test]
    async fn a_cancellation_after_authorization_voids_the_hold_once() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        place_and_reserve(&store, &stripe, order_id, VISA).await;
        let intent = stripe.only_intent();

        on_order_cancelled(&store, &stripe, order_id).await.unwrap();
        on_order_cancelled(&store, &stripe, order_id).await.unwrap();

        assert_eq!(stripe.status(&intent), IntentStatus::Canceled);
        assert_eq!(store.payment(order_id).stage, Stage::Voided { intent: intent.clone() });
        let voided = Event::PaymentVoided(PaymentVoided { order_id, payment_intent_id: intent.to_string() });
        assert_eq!(store.events(), vec![authorized(order_id, &intent), voided]);
    }

    #[tokio::test]
    async fn a_void_that_stripe_already_did_is_recorded_without_cancelling_again() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        place_and_reserve(&store, &stripe, order_id, VISA).await;
        let intent = stripe.only_intent();
        stripe.cancel_intent(order_id, &intent).await.unwrap();

        on_order_cancelled(&store, &stripe, order_id).await.unwrap();

        assert_eq!(store.payment(order_id).stage, Stage::Voided { intent });
        assert_eq!(store.events().len(), 2);
    }

    #[tokio::test]
    async fn a_cancellation_during_authorization_waits_for_it_to_settle_then_voids() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        on_order_placed(&store, &stripe, &placed(order_id, VISA), T0).await.unwrap();
        stripe.fail_once(Call::Confirm, Fault::Unreachable);
        let stalled = on_stock_reserved(&store, &stripe, order_id, T0).await;

        let while_authorizing = on_order_cancelled(&store, &stripe, order_id).await;
        on_stock_reserved(&store, &stripe, order_id, T0 + Duration::seconds(180)).await.unwrap();
        let once_settled = on_order_cancelled(&store, &stripe, order_id).await;

        assert!(is_transient(stalled));
        assert!(is_transient(while_authorizing));
        once_settled.unwrap();
        assert!(matches!(store.payment(order_id).stage, Stage::Voided { .. }));
        assert_eq!(stripe.status(&stripe.only_intent()), IntentStatus::Canceled);
    }

    #[tokio::test]
    async fn a_cancellation_of_a_failed_payment_does_nothing() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        place_and_reserve(&store, &stripe, order_id, DECLINED).await;

        on_order_cancelled(&store, &stripe, order_id).await.unwrap();

        assert_eq!(store.payment(order_id).stage, Stage::Failed);
        assert_eq!(store.events().len(), 1);
    }

    #[tokio::test]
    async fn a_payment_someone_captured_while_authorizing_goes_to_a_person() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        on_order_placed(&store, &stripe, &placed(order_id, VISA), T0).await.unwrap();
        stripe.fail_once(Call::Confirm, Fault::Unreachable);
        let _ = on_stock_reserved(&store, &stripe, order_id, T0).await;
        let intent = stripe.only_intent();
        stripe.intents.lock().unwrap().get_mut(&intent).unwrap().status = IntentStatus::Succeeded;

        let result = on_stock_reserved(&store, &stripe, order_id, T0 + Duration::seconds(180)).await;

        assert!(matches!(result, Err(HandlerError::Permanent(_))));
        assert!(store.events().is_empty());
    }

    #[tokio::test]
    async fn another_invocations_recorded_intent_wins_over_ours() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        on_order_placed(&store, &stripe, &placed(order_id, VISA), T0).await.unwrap();
        let theirs = PaymentIntentId::parse("pi_theirs").unwrap();
        store.record(order_id, |p| p.stock_reserved = true);
        let claimed = match store.claim(order_id, T0).await.unwrap() {
            Claim::Won(payment) => payment,
            Claim::Lost(_) => panic!("claim lost"),
        };
        store.set_stage(order_id, Stage::Authorizing { since: T0, intent: Some(theirs.clone()) });

        let result = authorize(&store, &stripe, &claimed).await;

        assert!(is_transient(result));
        assert_eq!(stripe.confirmations(), 0, "only the recorded PaymentIntent is ever confirmed");
    }

    #[test]
    fn a_payment_intent_id_must_look_like_one() {
        assert!(PaymentIntentId::parse("pi_3MtwBwLkdIwHu7ix28a3tqPa").is_ok());
        assert!(PaymentIntentId::parse("pi_").is_err());
        assert!(PaymentIntentId::parse("ch_3MtwBwLkdIwHu7ix").is_err());
        assert!(PaymentIntentId::parse("pi_abc/../x").is_err());
    }
}
