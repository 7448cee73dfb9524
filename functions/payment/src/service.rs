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
//! `OrderCancelled` flags the payment (the flag is never removed), which stops any later claim.
//! What happens to the money depends on how far the authorization got, and the side that comes
//! last undoes it:
//!
//! - **Not started**: nothing to undo; it never starts.
//! - **Authorized**: the cancellation voids it at Stripe (the hold is released) and announces
//!   `PaymentVoided`.
//! - **Authorizing**: the cancellation is acknowledged at once, and the authorization finishes the
//!   compensation. Whoever carries an authorization on looks at the flag before confirming: a
//!   claim's owner in what step 2's write returns, a resumed authorization in the payment it
//!   read. A cancelled payment's PaymentIntent is never confirmed; it is cancelled at Stripe
//!   instead, the payment is recorded `failed` with `PaymentFailed { reason: "cancelled" }` (see
//!   [`CANCELLED`]), and no `PaymentAuthorized` is ever announced for it.
//! - **Cancelled while Stripe confirms**: step 4 records an authorization only if the order is not
//!   cancelled. When the flag landed first, the write is refused with the payment as it is, and
//!   the authorizer cancels the PaymentIntent it just confirmed (releasing the hold) and records
//!   the failure as above. When the flag lands after step 4, the cancellation finds the payment
//!   authorized and voids it. Both writes are on one item, so one of them comes first, and the
//!   side that comes second undoes the hold.
//!
//! ## Stalled authorizations
//!
//! An authorization whose invocation died is normally resumed by its redelivered message. When
//! that message is dead-lettered (Stripe slow or down for every receive), nothing would come back
//! to it, so a sweep ([`sweep_stalled`], every minute) lists the payments still authorizing
//! [`CLAIM_TIMEOUT`] after their claim, when their owner's invocation has surely ended, and
//! carries each on exactly as a redelivery would: resume it, start it over, or, for a cancelled
//! order, cancel it at Stripe. A hold therefore outlives its order's cancellation by about
//! [`CLAIM_TIMEOUT`] and a sweep tick while Stripe answers, not Stripe's seven days.

use std::fmt;

use time::{Duration, OffsetDateTime};

use domain_events::checkout::OrderPlaced;
use domain_events::payment::{PaymentAuthorized, PaymentFailed, PaymentVoided};
use domain_events::{Envelope, Event, Metadata};
use kernel::{Money, OrderId};
use lambda_glue::consumer::HandlerError;
use lambda_glue::sweep::{Page, Sweep, Tick};

/// How long a claim without a recorded PaymentIntent belongs to the invocation that made it,
/// and how old a claim must be before the sweep finishes it. Longer than the function's timeout
/// (40 s in template.yaml), so the owner is surely gone when it lapses, and shorter than the
/// queue's visibility timeout (240 s), so the owner's own message, redelivered after a failure,
/// always finds the claim lapsed and can take it over.
pub const CLAIM_TIMEOUT: Duration = Duration::seconds(60);

/// `PaymentFailed.reason` when the order was cancelled while its payment was authorizing: the
/// PaymentIntent was cancelled at Stripe (releasing any hold its confirmation had placed) and no
/// `PaymentAuthorized` was announced.
pub const CANCELLED: &str = "cancelled";

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
    /// The authorization failed, or was abandoned because the order was cancelled; nothing is held.
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

    /// What a delivery (or the sweep) does next with the payment as it is at `now`.
    pub fn next(&self, now: OffsetDateTime) -> Next {
        match &self.stage {
            Stage::Pending if self.ready().is_some() => Next::Claim,
            Stage::Authorizing { intent, .. } if self.cancelled => Next::Abandon(intent.clone()),
            Stage::Authorizing { intent: Some(intent), .. } => Next::Resume(intent.clone()),
            Stage::Authorizing { since, intent: None } if now - *since >= CLAIM_TIMEOUT => {
                Next::Restart { since: *since }
            }
            Stage::Authorizing { intent: None, .. } => Next::Wait,
            Stage::Pending | Stage::Authorized { .. } | Stage::Failed | Stage::Voided { .. } => Next::Nothing,
        }
    }
}

/// What to do next with a payment, decided from the payment alone (see [`Payment::next`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Both facts are in and nothing stops it: claim the authorization.
    Claim,
    /// Nothing now: a fact is missing, the total is zero, the order was cancelled before the
    /// authorization started, or the payment has settled.
    Nothing,
    /// A fresh claim without a PaymentIntent: its owner is at work. Look again later.
    Wait,
    /// The claim made at `since` lapsed before recording a PaymentIntent: take it over and start
    /// again at step 1.
    Restart { since: OffsetDateTime },
    /// Continue from the recorded PaymentIntent: confirm it unless that happened.
    Resume(PaymentIntentId),
    /// The order was cancelled during the authorization: cancel the recorded PaymentIntent (if
    /// any) at Stripe instead of confirming it, and record the payment failed ([`CANCELLED`]). A
    /// PaymentIntent created but never recorded was never confirmed and holds nothing.
    Abandon(Option<PaymentIntentId>),
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// The change and its event were written.
    Done,
    /// The condition failed and nothing was written; the payment as it is. It had moved on
    /// (another invocation settled it), or, for an authorization, the order was cancelled.
    Refused(Payment),
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
    /// Where the next page of [`PaymentStore::stalled`] starts.
    type Cursor;

    /// The payment as stored (a strongly consistent read), if anything was recorded for the order.
    async fn get(&self, order_id: OrderId) -> Result<Option<Payment>, StoreError>;
    /// One page of the payments still authorizing on a claim made at `claimed_by` or earlier,
    /// oldest claim first, from `cursor` on. The listing may lag the payments by a moment.
    async fn stalled(
        &self,
        claimed_by: OffsetDateTime,
        cursor: Option<Self::Cursor>,
    ) -> Result<Page<OrderId, Self::Cursor>, StoreError>;
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
    /// Step 4: records the outcome with its event, only while authorizing (with this intent), and
    /// an authorization only if the order is not cancelled.
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

/// Moves a payment on after a fact was recorded: claim, or carry on from where it stands.
async fn advance(
    store: &impl PaymentStore,
    gateway: &impl PaymentGateway,
    payment: Payment,
    now: OffsetDateTime,
) -> Result<(), HandlerError> {
    let payment = match payment.next(now) {
        Next::Claim => match store.claim(payment.order_id, now).await.map_err(from_store)? {
            Claim::Won(claimed) => return authorize(store, gateway, &claimed).await,
            // Another delivery claimed it, or the order was cancelled, since our write.
            Claim::Lost(current) => current,
        },
        _ => payment,
    };
    carry_on(store, gateway, &payment, now).await
}

/// Does what [`Payment::next`] says, short of a first claim.
async fn carry_on(
    store: &impl PaymentStore,
    gateway: &impl PaymentGateway,
    payment: &Payment,
    now: OffsetDateTime,
) -> Result<(), HandlerError> {
    let order_id = payment.order_id;
    match payment.next(now) {
        Next::Nothing => {
            match &payment.stage {
                Stage::Pending if payment.order.as_ref().is_some_and(|order| order.total.amount() == 0) => {
                    tracing::info!(%order_id, "the order's total is zero: nothing to authorize");
                }
                Stage::Pending => {
                    tracing::info!(%order_id, placed = payment.order.is_some(), stock_reserved = payment.stock_reserved,
                        cancelled = payment.cancelled, "payment waits for its facts");
                }
                _ => tracing::info!(%order_id, "payment already settled; duplicate delivery"),
            }
            Ok(())
        }
        // A claim just lost to a payment that is still claimable cannot be: the claim's condition
        // is `ready`'s. Retrying is the safe answer if it ever is.
        Next::Claim | Next::Wait => Err(busy(order_id)),
        Next::Resume(intent) => {
            tracing::info!(%order_id, payment_intent_id = %intent, "resuming an authorization");
            resume(store, gateway, payment, &intent).await
        }
        Next::Restart { since } => match store.reclaim(order_id, since, now).await.map_err(from_store)? {
            Claim::Won(claimed) => {
                tracing::warn!(%order_id, "an authorization stalled before creating its PaymentIntent; starting over");
                authorize(store, gateway, &claimed).await
            }
            Claim::Lost(_) => Err(busy(order_id)),
        },
        Next::Abandon(intent) => abandon(store, gateway, payment, intent.as_ref()).await,
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
    let recorded = match store.record_intent(order_id, &intent.id).await.map_err(from_store)? {
        Claim::Won(recorded) => recorded,
        Claim::Lost(current) => match &current.stage {
            // A concurrent delivery got the same PaymentIntent (Stripe replayed the create) and
            // recorded it first: carry on with it.
            Stage::Authorizing { intent: Some(recorded), .. } if *recorded == intent.id => current,
            // Another invocation's PaymentIntent won; ours stays unconfirmed and holds nothing.
            Stage::Authorizing { .. } => return Err(busy(order_id)),
            _ => {
                tracing::info!(%order_id, "payment settled by another invocation");
                return Ok(());
            }
        },
    };
    // The payment as step 2 left it: a cancellation since the claim shows here, before any hold.
    if recorded.cancelled {
        return abandon(store, gateway, &recorded, Some(&intent.id)).await;
    }
    confirm(store, gateway, &recorded, &intent.id).await
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
        status => settle_status(store, gateway, payment, intent, status).await,
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
        Ok(confirmed) => settle_status(store, gateway, payment, intent, confirmed.status).await,
        Err(error) => settle_refusal(store, payment, Some(intent), error).await,
    }
}

/// Step 4 from the PaymentIntent's status.
async fn settle_status(
    store: &impl PaymentStore,
    gateway: &impl PaymentGateway,
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
        // Payment never captures an authorizing PaymentIntent, and cancels one only for a
        // cancelled order (which never comes here): someone else did.
        other => {
            return Err(HandlerError::Permanent(format!(
                "PaymentIntent {intent} of {} is {other:?} while authorizing; a person must look",
                payment.order_id
            )));
        }
    };
    match record_settlement(store, payment, &settlement).await? {
        None => Ok(()),
        // The order was cancelled before our write: the hold we just placed is released here,
        // and the authorization is never announced.
        Some(current)
            if current.cancelled
                && matches!(&current.stage, Stage::Authorizing { intent: Some(recorded), .. } if recorded == intent) =>
        {
            tracing::info!(order_id = %payment.order_id, payment_intent_id = %intent,
                "authorized, but the order was cancelled meanwhile; releasing the hold");
            abandon(store, gateway, &current, Some(intent)).await
        }
        Some(_) => {
            tracing::info!(order_id = %payment.order_id, "payment settled by another invocation");
            Ok(())
        }
    }
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
    // A failure holds nothing, so a cancellation changes nothing about it.
    if record_settlement(store, payment, &Settlement::Failed { intent: intent.cloned(), reason, decline_code })
        .await?
        .is_some()
    {
        tracing::info!(order_id = %payment.order_id, "payment settled by another invocation");
    }
    Ok(())
}

/// Writes the outcome and its event. `Some`: the write was refused; the payment as it is.
async fn record_settlement(
    store: &impl PaymentStore,
    payment: &Payment,
    settlement: &Settlement,
) -> Result<Option<Payment>, HandlerError> {
    let order_id = payment.order_id;
    let event = match settlement {
        Settlement::Authorized { intent } => Event::PaymentAuthorized(PaymentAuthorized {
            order_id,
            payment_intent_id: intent.to_string(),
            amount: order_of(payment)?.total,
        }),
        Settlement::Failed { reason, decline_code, .. } => {
            Event::PaymentFailed(PaymentFailed { order_id, reason: reason.clone(), decline_code: decline_code.clone() })
        }
    };
    match store.settle(order_id, settlement, &envelope(order_id, event)).await.map_err(from_store)? {
        Write::Done => {
            match settlement {
                Settlement::Authorized { intent } => {
                    tracing::info!(%order_id, payment_intent_id = %intent, "payment authorized")
                }
                Settlement::Failed { intent, reason, decline_code } => tracing::info!(%order_id,
                    payment_intent_id = intent.as_ref().map(tracing::field::display), reason, decline_code,
                    "payment failed"),
            }
            Ok(None)
        }
        Write::Refused(current) => Ok(Some(current)),
    }
}

/// The order was cancelled during the authorization: cancel the recorded PaymentIntent at Stripe
/// (releasing the hold if its confirmation went through) and record the payment failed with
/// [`CANCELLED`]. Without a recorded PaymentIntent there is nothing to cancel: one created but
/// not recorded was never confirmed.
async fn abandon(
    store: &impl PaymentStore,
    gateway: &impl PaymentGateway,
    payment: &Payment,
    intent: Option<&PaymentIntentId>,
) -> Result<(), HandlerError> {
    let order_id = payment.order_id;
    if let Some(intent) = intent {
        cancel_at_stripe(gateway, order_id, intent).await?;
    }
    let settlement = Settlement::Failed { intent: intent.cloned(), reason: CANCELLED.to_owned(), decline_code: None };
    match record_settlement(store, payment, &settlement).await? {
        None => tracing::info!(%order_id, "authorization abandoned: the order was cancelled"),
        // Settled by another invocation; or, with no PaymentIntent in hand, a live owner recorded
        // one meanwhile: its step 2 returned the cancellation flag, so it abandons it itself (and
        // the sweep does, should it die).
        Some(current) => tracing::info!(%order_id, stage = ?current.stage, "payment moved on meanwhile"),
    }
    Ok(())
}

/// Cancels the PaymentIntent at Stripe; done when Stripe says it is cancelled.
async fn cancel_at_stripe(
    gateway: &impl PaymentGateway,
    order_id: OrderId,
    intent: &PaymentIntentId,
) -> Result<(), HandlerError> {
    let status = match gateway.cancel_intent(order_id, intent).await {
        Ok(cancelled) => cancelled.status,
        // Already cancelled by an earlier attempt (whose idempotency key Stripe no longer keeps),
        // still processing, or captured by someone: look.
        Err(GatewayError::Conflict(_)) => gateway.retrieve_intent(intent).await.map_err(from_gateway)?.status,
        Err(error) => return Err(from_gateway(error)),
    };
    match status {
        IntentStatus::Canceled => Ok(()),
        // Card payments leave `processing` within seconds; cancel again later.
        IntentStatus::Processing => Err(HandlerError::Transient(
            format!("PaymentIntent {intent} of {order_id} is processing; it is cancelled once it settles").into(),
        )),
        status => Err(HandlerError::Permanent(format!(
            "PaymentIntent {intent} of {order_id} is {status:?}, not canceled; a person must look"
        ))),
    }
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
        // The flag is recorded: whoever carries the authorization on sees it and cancels at
        // Stripe instead of confirming (see the module docs); the sweep does if nobody does.
        Stage::Authorizing { .. } => {
            tracing::info!(%order_id, "order cancelled during its authorization; the authorization undoes itself");
            Ok(())
        }
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
    cancel_at_stripe(gateway, order_id, intent).await?;
    let event =
        envelope(order_id, Event::PaymentVoided(PaymentVoided { order_id, payment_intent_id: intent.to_string() }));
    match store.void(order_id, intent, &event).await.map_err(from_store)? {
        Write::Done => tracing::info!(%order_id, payment_intent_id = %intent, "authorization voided"),
        Write::Refused(_) => tracing::info!(%order_id, "authorization already voided"),
    }
    Ok(())
}

/// The scheduled sweep: carries on every authorization still running [`CLAIM_TIMEOUT`] after its
/// claim, as of `now` (the tick's time), exactly as a redelivered message would.
pub async fn sweep_stalled(
    store: &impl PaymentStore,
    gateway: &impl PaymentGateway,
    now: OffsetDateTime,
    sweep: Sweep,
) -> Result<Tick, HandlerError> {
    let lapsed = now - CLAIM_TIMEOUT;
    sweep
        .run(
            |cursor| async move { store.stalled(lapsed, cursor).await.map_err(from_store) },
            |order_id| finish_stalled(store, gateway, order_id, now),
        )
        .await
}

async fn finish_stalled(
    store: &impl PaymentStore,
    gateway: &impl PaymentGateway,
    order_id: OrderId,
    now: OffsetDateTime,
) -> Result<(), HandlerError> {
    // Payments are never deleted: one the index lists and the table lacks is a broken store.
    let payment = store.get(order_id).await.map_err(from_store)?.ok_or_else(|| {
        from_store(StoreError::Corrupt { order_id, detail: "listed as authorizing but not stored".into() })
    })?;
    match &payment.stage {
        Stage::Authorizing { since, .. } if now - *since >= CLAIM_TIMEOUT => {
            tracing::warn!(%order_id, cancelled = payment.cancelled, "finishing a stalled authorization");
            carry_on(store, gateway, &payment, now).await
        }
        // The index lags the table: settled, or claimed again, since it listed the payment.
        _ => Ok(()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use time::macros::datetime;

    use kernel::Currency;

    use super::*;

    const VISA: &str = "pm_card_visa";
    const DECLINED: &str = "pm_card_chargeDeclined";
    const NEEDS_3DS: &str = "pm_card_authenticationRequired";
    const UNKNOWN_CARD: &str = "pm_card_bogus";
    const T0: OffsetDateTime = datetime!(2026-11-22 10:00 UTC);

    type Payments = Arc<Mutex<HashMap<OrderId, Payment>>>;
    /// A write of another invocation, landing on the payment right after one of ours.
    type Landing = Box<dyn FnOnce(&mut Payment) + Send>;
    /// Something that happens elsewhere while Stripe is busy with a call.
    type Meanwhile = Box<dyn FnOnce() + Send>;

    /// The store, in memory, with the same conditions as the DynamoDB adapter.
    #[derive(Default)]
    pub(crate) struct FakeStore {
        payments: Payments,
        events: Mutex<Vec<Event>>,
        /// Runs on the payment right after the next settle wrote it: another invocation's write
        /// landing between two of ours.
        after_settle: Mutex<Option<Landing>>,
    }

    impl FakeStore {
        /// What `record_cancelled` writes, as a closure another call can run halfway: an
        /// `OrderCancelled` delivered at that moment.
        fn cancellation(&self, order_id: OrderId) -> impl FnOnce() + Send + 'static {
            let payments = Arc::clone(&self.payments);
            move || {
                payments.lock().unwrap().get_mut(&order_id).unwrap().cancelled = true;
            }
        }

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
            let after = self.after_settle.lock().unwrap().take();
            let change = |payment: &mut Payment| {
                payment.stage = stage;
                if let Some(after) = after {
                    after(payment);
                }
            };
            match self.conditional(order_id, holds, change) {
                Claim::Won(_) => {
                    self.events.lock().unwrap().push(event.event.clone());
                    Write::Done
                }
                Claim::Lost(current) => Write::Refused(current),
            }
        }
    }

    /// How many payments a page of [`FakeStore::stalled`] lists: few, so tests walk pages.
    const STALLED_PAGE: usize = 2;

    impl PaymentStore for FakeStore {
        /// The last listed claim's time and order, as the index's sort key orders them.
        type Cursor = (OffsetDateTime, OrderId);

        async fn get(&self, order_id: OrderId) -> Result<Option<Payment>, StoreError> {
            Ok(self.payments.lock().unwrap().get(&order_id).cloned())
        }

        async fn stalled(
            &self,
            claimed_by: OffsetDateTime,
            cursor: Option<Self::Cursor>,
        ) -> Result<Page<OrderId, Self::Cursor>, StoreError> {
            // The index holds a payment exactly while it is authorizing, keyed by its claim time
            // (whole seconds, as stored) and then its order.
            let mut listed: Vec<(OffsetDateTime, OrderId)> = self
                .payments
                .lock()
                .unwrap()
                .values()
                .filter_map(|p| match p.stage {
                    Stage::Authorizing { since, .. } => Some((since.replace_nanosecond(0).unwrap(), p.order_id)),
                    _ => None,
                })
                .filter(|(since, _)| *since <= claimed_by)
                .filter(|key| cursor.is_none_or(|after| *key > after))
                .collect();
            listed.sort();
            let next = (listed.len() > STALLED_PAGE).then(|| listed[STALLED_PAGE - 1]);
            let items = listed.into_iter().take(STALLED_PAGE).map(|(_, order_id)| order_id).collect();
            Ok(Page { items, next })
        }

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
            // An authorization is recorded only for an order that is not cancelled.
            let authorizes = matches!(settlement, Settlement::Authorized { .. });
            let holds = |p: &Payment| {
                matches!(&p.stage, Stage::Authorizing { intent, .. } if intent.as_ref() == expected)
                    && !(authorizes && p.cancelled)
            };
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
        /// Run once by the call, after Stripe did its work and before it answers: something that
        /// happens elsewhere while Stripe is busy.
        meanwhile: Mutex<Vec<(Call, Meanwhile)>>,
    }

    impl FakeStripe {
        fn meanwhile(&self, call: Call, happening: impl FnOnce() + Send + 'static) {
            self.meanwhile.lock().unwrap().push((call, Box::new(happening)));
        }

        fn run_meanwhile(&self, call: Call) {
            let happening = {
                let mut hooks = self.meanwhile.lock().unwrap();
                hooks.iter().position(|(c, _)| *c == call).map(|index| hooks.remove(index).1)
            };
            if let Some(happening) = happening {
                happening();
            }
        }

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
            drop(intents);
            self.run_meanwhile(Call::Create);
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
            let status = intent.status.clone();
            drop(intents);
            self.run_meanwhile(Call::Confirm);
            if fault == Some(Fault::AnswerLost) {
                return Err(Self::lost());
            }
            match &status {
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
    async fn a_cancellation_that_lands_while_the_payment_intent_is_created_stops_the_confirmation() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        on_order_placed(&store, &stripe, &placed(order_id, VISA), T0).await.unwrap();
        stripe.meanwhile(Call::Create, store.cancellation(order_id));

        on_stock_reserved(&store, &stripe, order_id, T0).await.unwrap();
        let cancelled = on_order_cancelled(&store, &stripe, order_id).await;

        cancelled.unwrap();
        assert_eq!(stripe.confirmations(), 0, "a cancelled payment's PaymentIntent is never confirmed");
        assert_eq!(stripe.status(&stripe.only_intent()), IntentStatus::Canceled);
        assert_eq!(store.payment(order_id).stage, Stage::Failed);
        assert_eq!(store.events(), vec![failed(order_id, "cancelled", None)]);
    }

    #[tokio::test]
    async fn a_cancellation_that_lands_while_stripe_is_confirming_leaves_no_hold() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        on_order_placed(&store, &stripe, &placed(order_id, VISA), T0).await.unwrap();
        stripe.meanwhile(Call::Confirm, store.cancellation(order_id));

        on_stock_reserved(&store, &stripe, order_id, T0).await.unwrap();
        on_order_cancelled(&store, &stripe, order_id).await.unwrap();

        assert_eq!(stripe.status(&stripe.only_intent()), IntentStatus::Canceled, "the hold is released");
        assert_eq!(store.payment(order_id).stage, Stage::Failed);
        assert_eq!(store.events(), vec![failed(order_id, "cancelled", None)], "no PaymentAuthorized is announced");
    }

    #[tokio::test]
    async fn a_cancellation_that_lands_right_after_the_authorization_is_recorded_voids_it() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        on_order_placed(&store, &stripe, &placed(order_id, VISA), T0).await.unwrap();
        *store.after_settle.lock().unwrap() = Some(Box::new(|payment: &mut Payment| payment.cancelled = true));

        on_stock_reserved(&store, &stripe, order_id, T0).await.unwrap();
        on_order_cancelled(&store, &stripe, order_id).await.unwrap();

        let intent = stripe.only_intent();
        assert_eq!(stripe.status(&intent), IntentStatus::Canceled);
        assert_eq!(store.payment(order_id).stage, Stage::Voided { intent: intent.clone() });
        let voided = Event::PaymentVoided(PaymentVoided { order_id, payment_intent_id: intent.to_string() });
        assert_eq!(store.events(), vec![authorized(order_id, &intent), voided]);
    }

    #[tokio::test]
    async fn a_stalled_authorization_of_a_cancelled_order_is_cancelled_at_stripe_not_confirmed() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        on_order_placed(&store, &stripe, &placed(order_id, VISA), T0).await.unwrap();
        stripe.fail_once(Call::Confirm, Fault::Unreachable);
        let stalled = on_stock_reserved(&store, &stripe, order_id, T0).await;

        let while_authorizing = on_order_cancelled(&store, &stripe, order_id).await;
        on_stock_reserved(&store, &stripe, order_id, T0 + Duration::seconds(180)).await.unwrap();

        assert!(is_transient(stalled));
        while_authorizing.expect("the cancellation is recorded and acknowledged; the authorization finishes it");
        assert_eq!(stripe.confirmations(), 0);
        assert_eq!(stripe.status(&stripe.only_intent()), IntentStatus::Canceled);
        assert_eq!(store.payment(order_id).stage, Stage::Failed);
        assert_eq!(store.events(), vec![failed(order_id, "cancelled", None)]);
    }

    #[tokio::test]
    async fn a_stalled_authorization_whose_hold_went_through_is_released_when_its_order_was_cancelled() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        on_order_placed(&store, &stripe, &placed(order_id, VISA), T0).await.unwrap();
        stripe.fail_once(Call::Confirm, Fault::AnswerLost);
        let crashed = on_stock_reserved(&store, &stripe, order_id, T0).await;

        on_order_cancelled(&store, &stripe, order_id).await.unwrap();
        on_stock_reserved(&store, &stripe, order_id, T0 + Duration::seconds(180)).await.unwrap();

        assert!(is_transient(crashed));
        assert_eq!(stripe.status(&stripe.only_intent()), IntentStatus::Canceled);
        assert_eq!(store.events(), vec![failed(order_id, "cancelled", None)]);
    }

    #[tokio::test]
    async fn a_claim_that_died_before_recording_its_intent_is_never_restarted_for_a_cancelled_order() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        on_order_placed(&store, &stripe, &placed(order_id, VISA), T0).await.unwrap();
        stripe.fail_once(Call::Create, Fault::AnswerLost);
        let crashed = on_stock_reserved(&store, &stripe, order_id, T0).await;

        on_order_cancelled(&store, &stripe, order_id).await.unwrap();
        on_stock_reserved(&store, &stripe, order_id, T0 + CLAIM_TIMEOUT).await.unwrap();

        assert!(is_transient(crashed));
        assert_eq!(stripe.confirmations(), 0);
        // The dead invocation's PaymentIntent was never confirmed: it holds nothing.
        assert_eq!(stripe.status(&stripe.only_intent()), IntentStatus::RequiresConfirmation);
        assert_eq!(store.payment(order_id).stage, Stage::Failed);
        assert_eq!(store.events(), vec![failed(order_id, "cancelled", None)]);
    }

    fn sweep() -> Sweep {
        Sweep {
            name: "test",
            deadline: OffsetDateTime::now_utc() + Duration::minutes(1),
            item_budget: Duration::seconds(1),
        }
    }

    /// An authorization whose invocation died after recording its PaymentIntent and whose
    /// message never comes back (dead-lettered).
    async fn stalled_after_step_2(store: &FakeStore, stripe: &FakeStripe, order_id: OrderId, fault: Fault) {
        on_order_placed(store, stripe, &placed(order_id, VISA), T0).await.unwrap();
        stripe.fail_once(Call::Confirm, fault);
        assert!(is_transient(on_stock_reserved(store, stripe, order_id, T0).await));
    }

    #[tokio::test]
    async fn the_sweep_finishes_a_stuck_authorization_whose_messages_were_dead_lettered() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        stalled_after_step_2(&store, &stripe, order_id, Fault::Unreachable).await;

        let tick = sweep_stalled(&store, &stripe, T0 + CLAIM_TIMEOUT, sweep()).await.unwrap();

        assert_eq!(tick, Tick { handled: 1, failed: 0, out_of_time: false });
        let intent = stripe.only_intent();
        assert_eq!(stripe.confirmations(), 1);
        assert_eq!(store.events(), vec![authorized(order_id, &intent)]);
    }

    #[tokio::test]
    async fn the_sweep_restarts_a_claim_that_died_before_creating_its_intent() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        on_order_placed(&store, &stripe, &placed(order_id, VISA), T0).await.unwrap();
        stripe.fail_once(Call::Create, Fault::Unreachable);
        assert!(is_transient(on_stock_reserved(&store, &stripe, order_id, T0).await));

        sweep_stalled(&store, &stripe, T0 + CLAIM_TIMEOUT, sweep()).await.unwrap();

        assert_eq!(store.events(), vec![authorized(order_id, &stripe.only_intent())]);
    }

    #[tokio::test]
    async fn the_sweep_cancels_at_stripe_a_stuck_authorization_of_a_cancelled_order() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        // The confirmation went through (the card is held) but its answer was lost.
        stalled_after_step_2(&store, &stripe, order_id, Fault::AnswerLost).await;
        on_order_cancelled(&store, &stripe, order_id).await.unwrap();

        sweep_stalled(&store, &stripe, T0 + CLAIM_TIMEOUT, sweep()).await.unwrap();

        assert_eq!(stripe.status(&stripe.only_intent()), IntentStatus::Canceled, "the hold is released");
        assert_eq!(store.payment(order_id).stage, Stage::Failed);
        assert_eq!(store.events(), vec![failed(order_id, "cancelled", None)]);
    }

    #[tokio::test]
    async fn the_sweep_leaves_an_authorization_younger_than_the_claim_timeout_to_its_owner() {
        let (store, stripe, order_id) = (FakeStore::default(), FakeStripe::default(), OrderId::new());
        stalled_after_step_2(&store, &stripe, order_id, Fault::Unreachable).await;

        let tick = sweep_stalled(&store, &stripe, T0 + CLAIM_TIMEOUT - Duration::seconds(1), sweep()).await.unwrap();

        assert_eq!(tick, Tick::default());
        assert_eq!(stripe.status(&stripe.only_intent()), IntentStatus::RequiresConfirmation);
        assert!(store.events().is_empty());
    }

    #[tokio::test]
    async fn the_sweep_walks_every_page_and_a_payment_it_cannot_finish_stops_none_behind_it() {
        let (store, stripe) = (FakeStore::default(), FakeStripe::default());
        let orders = [OrderId::new(), OrderId::new(), OrderId::new()];
        for order_id in orders {
            stalled_after_step_2(&store, &stripe, order_id, Fault::Unreachable).await;
        }
        let captured = PaymentIntentId::parse(&format!("pi_{}", orders[0].ulid())).unwrap();
        stripe.intents.lock().unwrap().get_mut(&captured).unwrap().status = IntentStatus::Succeeded;

        let tick = sweep_stalled(&store, &stripe, T0 + CLAIM_TIMEOUT, sweep()).await.unwrap();
        let again = sweep_stalled(&store, &stripe, T0 + CLAIM_TIMEOUT, sweep()).await.unwrap();

        assert_eq!(tick, Tick { handled: 2, failed: 1, out_of_time: false });
        assert_eq!(again, Tick { handled: 0, failed: 1, out_of_time: false }, "only the broken one is left");
        assert_eq!(store.events().len(), 2);
    }

    #[test]
    fn what_comes_next_is_decided_from_the_payment_alone() {
        let intent = PaymentIntentId::parse("pi_1").unwrap();
        let payment = |stage: Stage, cancelled: bool| Payment {
            order_id: OrderId::new(),
            order: Some(OrderPayment { total: Money::new(2500, Currency::USD).unwrap(), payment_method: VISA.into() }),
            stock_reserved: true,
            cancelled,
            stage,
        };
        let fresh = Stage::Authorizing { since: T0, intent: None };
        let recorded = Stage::Authorizing { since: T0, intent: Some(intent.clone()) };
        let soon = T0 + Duration::seconds(1);

        assert_eq!(payment(Stage::Pending, false).next(soon), Next::Claim);
        assert_eq!(payment(Stage::Pending, true).next(soon), Next::Nothing);
        assert_eq!(payment(fresh.clone(), false).next(soon), Next::Wait);
        assert_eq!(payment(fresh.clone(), false).next(T0 + CLAIM_TIMEOUT), Next::Restart { since: T0 });
        assert_eq!(payment(fresh, true).next(soon), Next::Abandon(None));
        assert_eq!(payment(recorded.clone(), false).next(soon), Next::Resume(intent.clone()));
        assert_eq!(payment(recorded, true).next(soon), Next::Abandon(Some(intent.clone())));
        assert_eq!(
            payment(Stage::Authorized { intent }, true).next(soon),
            Next::Nothing,
            "voiding is the cancellation's"
        );
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
