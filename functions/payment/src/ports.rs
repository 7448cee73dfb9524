//! The two ports the use cases need: [`PaymentStore`] (DynamoDB in `dynamo.rs`) and
//! [`PaymentGateway`] (Stripe in `stripe.rs`), with the errors each may give.

use time::OffsetDateTime;

use domain_events::Envelope;
use kernel::page::Page;
use kernel::{Money, OrderId, RefundId};

use crate::model::{CaptureSettlement, ClientSecret, OrderPayment, Payment, PaymentIntentId, Settlement};
use crate::refund::{PendingRefund, Refund, Source};

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
    /// Throttling, the network, a request DynamoDB refused as built, or an item that does not
    /// read as a payment; only the first two may mend if tried again
    /// ([`adapters::dynamo::Unavailable::is_transient`]).
    #[error("payment storage failed: {0}")]
    Unavailable(#[from] adapters::dynamo::Unavailable),
    #[error("the stored payment of {order_id} is inconsistent: {detail}")]
    Corrupt { order_id: OrderId, detail: String },
}

impl StoreError {
    /// Whether trying again later may succeed: storage throttled, failing or unreachable.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(unavailable) if unavailable.is_transient())
    }
}

/// The storage port. Every write is conditional or commutative; none is decided by a read. The
/// conditions are [`Payment::apply`](crate::model::Payment::apply)'s, and what a fact does is
/// [`Payment::record`](crate::model::Payment::record)'s.
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
    /// Claims the capture, only while authorized with this intent and the order not cancelled.
    async fn start_capture(&self, order_id: OrderId, intent: &PaymentIntentId) -> Result<Claim, StoreError>;
    /// Records how the capture ended with its event: captured only while capturing this intent;
    /// failed while capturing it or while it is voided.
    async fn settle_capture(
        &self,
        order_id: OrderId,
        settlement: &CaptureSettlement,
        event: &Envelope,
    ) -> Result<Write, StoreError>;
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
    /// 3-D Secure (or another customer action) is needed; with the client secret the customer's
    /// Stripe.js completes it with.
    RequiresAction(Option<ClientSecret>),
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
    /// Stripe could not be reached, timed out or throttled us: retry later.
    #[error("Stripe is unavailable: {0}")]
    Unavailable(String),
    /// Stripe answered 5xx: retry later. Stripe saves the answer under the request's idempotency
    /// key (for 24 hours) once the request began executing, and a retry under the same key gets
    /// it again, `replayed` (Stripe's `Idempotent-Replayed: true` header). A 5xx not replayed may
    /// not have been saved: a retry under the same key may then run the request.
    #[error("Stripe failed{}: {detail}", if *replayed { " (replayed)" } else { "" })]
    ServerError { detail: String, replayed: bool },
    /// Our side is wrong (credentials, an idempotency key reused with other parameters, a
    /// response we cannot read): retrying will not help.
    #[error("Stripe call is broken: {0}")]
    Misconfigured(String),
}

impl GatewayError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Conflict(_) | Self::Unavailable(_) | Self::ServerError { .. })
    }
}

/// The Stripe port. Creating and cancelling are idempotent per order (the adapter derives the
/// idempotency key from `order_id` and the step); confirming and capturing are safe to repeat
/// because Stripe does either only once (see [`crate::stripe`]).
#[allow(async_fn_in_trait)]
pub trait PaymentGateway {
    /// Creates an unconfirmed PaymentIntent for the order's total, to be captured manually.
    async fn create_intent(&self, order_id: OrderId, order: &OrderPayment) -> Result<Intent, GatewayError>;
    async fn retrieve_intent(&self, intent: &PaymentIntentId) -> Result<Intent, GatewayError>;
    /// Confirms the PaymentIntent: this is what authorizes (holds) the amount.
    async fn confirm_intent(&self, order_id: OrderId, intent: &PaymentIntentId) -> Result<Intent, GatewayError>;
    /// Cancels the PaymentIntent, releasing any hold.
    async fn cancel_intent(&self, order_id: OrderId, intent: &PaymentIntentId) -> Result<Intent, GatewayError>;
    /// Captures the whole authorized amount (`succeeded` once done). Stripe captures a
    /// PaymentIntent once: a second capture is refused (`payment_intent_unexpected_state`).
    async fn capture_intent(&self, order_id: OrderId, intent: &PaymentIntentId) -> Result<Intent, GatewayError>;
}

/// A Stripe event id (`evt_…`): what makes a webhook delivery a duplicate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StripeEventId(String);

impl StripeEventId {
    /// Parses `evt_` followed by letters, digits or `_` (at most 255 characters, Stripe's limit).
    pub fn parse(id: &str) -> Option<Self> {
        let body = id.strip_prefix("evt_")?;
        let valid = !body.is_empty() && id.len() <= 255 && body.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        valid.then(|| Self(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for StripeEventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The webhook's inbox: which Stripe events were handled, keyed by their id, on the payment
/// table. A claim is a conditional write (no receipt, or one in progress whose lease lapsed),
/// so two deliveries of one event never run at once and a redelivery after it was handled is
/// acknowledged without running again. (The SQS consumers' inbox, `adapters::inbox`, no longer
/// leases: it records an event once it was handled. Stripe may deliver one event more than
/// once, and a retry can overlap a slow first delivery, so this one keeps the lease.)
#[allow(async_fn_in_trait)]
pub trait WebhookInbox {
    async fn claim_notice(
        &self,
        event: &StripeEventId,
        lease_until: OffsetDateTime,
    ) -> Result<kernel::inbox::Claim, StoreError>;
    async fn notice_handled(&self, event: &StripeEventId) -> Result<(), StoreError>;
    /// Gives up this delivery's claim after it failed, so Stripe's retry may claim it at once.
    async fn release_notice(&self, event: &StripeEventId, lease_until: OffsetDateTime) -> Result<(), StoreError>;
}

/// What reserving a refund did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserved {
    /// The refund is written `pending` and its amount reserved on the payment.
    Done,
    /// A refund from the same source exists already (a replay, or a duplicate that won): it.
    Exists(Box<Refund>),
    /// The payment changed since it was read (another refund was reserved, or it is no longer
    /// captured): read it again and plan again.
    Moved,
}

/// What recording a refund's outcome did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    Done,
    /// The refund is no longer pending (or, for Stripe's own, exists already): it as it is.
    Already(Box<Refund>),
    /// The payment's refunded sum changed since it was read: read it again and retry.
    Moved,
}

/// The refunds' storage, on the payment table next to the payment. Every write is conditional.
#[allow(async_fn_in_trait)]
pub trait RefundStore: PaymentStore {
    /// Where the next page of [`RefundStore::pending_refunds`] starts.
    type RefundCursor;

    /// The order's refund from `source`, if any (a strongly consistent read).
    async fn refund(&self, order_id: OrderId, source: &Source) -> Result<Option<Refund>, StoreError>;
    /// Every refund of the order.
    async fn refunds(&self, order_id: OrderId) -> Result<Vec<Refund>, StoreError>;
    /// One page of the pending refunds due at `now` or earlier ([`Refund::due_at`]), oldest first.
    async fn due_refunds(
        &self,
        now: OffsetDateTime,
        cursor: Option<Self::RefundCursor>,
    ) -> Result<Page<PendingRefund, Self::RefundCursor>, StoreError>;
    /// Writes `refund` (pending) and adds its amount to the payment's reserved sum, only if no
    /// refund from its source exists, the payment is still captured, and the sum stays within the
    /// captured total.
    async fn reserve_refund(&self, payment: &Payment, refund: &Refund) -> Result<Reserved, StoreError>;
    /// Records `refund` (now succeeded) with its event: only while it is pending, and while the
    /// payment's refunded sum is still `payment`'s.
    async fn settle_refund(&self, payment: &Payment, refund: &Refund, event: &Envelope)
    -> Result<Recorded, StoreError>;
    /// Records `refund` (now failed) with its event (`RefundFailed`) and gives its amount back:
    /// only while it is pending.
    async fn fail_refund(&self, refund: &Refund, event: &Envelope) -> Result<Recorded, StoreError>;
    /// Records `refund` (now failed), which had succeeded as `stripe_refund_id` before Stripe
    /// failed it, with its event (`RefundFailed`), and takes its amount off the payment's
    /// refunded and reserved sums: only while it is succeeded as `stripe_refund_id`, so once.
    async fn fail_succeeded_refund(
        &self,
        refund: &Refund,
        stripe_refund_id: &str,
        event: &Envelope,
    ) -> Result<Recorded, StoreError>;
    /// Records `refund` (now [`RefundStatus::Processing`](crate::refund::RefundStatus)): Stripe's
    /// id and when to look again. With `first` (its `RefundPending`), the first time Stripe is
    /// known to hold it pending: with the event in one transaction, only while it is pending with
    /// no Stripe id. Without, a read-back still pending: only while it is pending as that id.
    async fn follow_refund(&self, refund: &Refund, first: Option<&Envelope>) -> Result<Recorded, StoreError>;
    /// Moves `refund` on to its next attempt (idempotency key) after a 5xx answer: only while it is
    /// pending at `refund.attempt` (false: another retry moved it on first).
    async fn next_attempt(&self, refund: &Refund) -> Result<bool, StoreError>;
    /// Records a refund made at Stripe outside Ferrocart (succeeded, [`Source::Stripe`]) with its
    /// event: only once, and while the payment's refunded sum is still `payment`'s.
    async fn record_stripe_refund(
        &self,
        payment: &Payment,
        refund: &Refund,
        event: &Envelope,
    ) -> Result<Recorded, StoreError>;
    /// Records a dispute with its event, once per dispute id: false when it was recorded before.
    async fn record_dispute(&self, order_id: OrderId, dispute_id: &str, event: &Envelope) -> Result<bool, StoreError>;
    /// Records a dispute's closing with its event, once per dispute id: false when it was
    /// recorded before.
    async fn record_dispute_closed(
        &self,
        order_id: OrderId,
        dispute_id: &str,
        event: &Envelope,
    ) -> Result<bool, StoreError>;
}

/// A refund as Stripe has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeRefund {
    /// `re_…`
    pub id: String,
    /// In ISO minor units of the charge's currency.
    pub amount: Money,
    /// `succeeded`, `pending`, `requires_action`, `failed`, `canceled`.
    pub status: String,
    /// Ours when payment made it: the `refund_id` metadata it set.
    pub refund_id: Option<RefundId>,
    /// Why it failed (`lost_or_stolen_card`, `expired_or_canceled_card`, `declined`, …).
    pub failure_reason: Option<String>,
}

/// Where a refund stands at Stripe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundOutcome {
    Succeeded,
    /// Not ended: `pending`, `requires_action` (or a status Stripe adds).
    Pending,
    /// `failed` or `canceled`, with Stripe's `failure_reason` (else the status).
    Failed(String),
}

impl StripeRefund {
    pub fn outcome(&self) -> RefundOutcome {
        match self.status.as_str() {
            "succeeded" => RefundOutcome::Succeeded,
            "failed" | "canceled" => {
                RefundOutcome::Failed(self.failure_reason.clone().unwrap_or_else(|| self.status.clone()))
            }
            _ => RefundOutcome::Pending,
        }
    }
}

/// The Stripe calls refunds and disputes need.
#[allow(async_fn_in_trait)]
pub trait RefundGateway {
    /// Refunds `refund.amount` of the PaymentIntent's charge, with the idempotency key
    /// `ferrocart:{refund_id}:refund` (`…:refund:{attempt}` after the first attempt) and the
    /// metadata `order_id` and `refund_id`.
    async fn create_refund(&self, intent: &PaymentIntentId, refund: &Refund) -> Result<StripeRefund, GatewayError>;
    /// One refund as Stripe has it now (`GET /v1/refunds/{id}`).
    async fn retrieve_refund(&self, stripe_refund_id: &str) -> Result<StripeRefund, GatewayError>;
    /// Every refund of the PaymentIntent's charge, newest first.
    async fn list_refunds(&self, intent: &PaymentIntentId) -> Result<Vec<StripeRefund>, GatewayError>;
    /// The order a PaymentIntent was made for (its `order_id` metadata), read from Stripe.
    async fn intent_order(&self, intent: &PaymentIntentId) -> Result<Option<OrderId>, GatewayError>;
    /// One dispute as Stripe has it now (`GET /v1/disputes/{id}`); `None` when Stripe has none.
    async fn retrieve_dispute(&self, dispute_id: &str) -> Result<Option<StripeDispute>, GatewayError>;
}

/// A dispute as Stripe has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeDispute {
    /// `dp_…`
    pub id: String,
    /// The disputed charge's PaymentIntent.
    pub intent: Option<PaymentIntentId>,
    /// In ISO minor units of the charge's currency.
    pub amount: Money,
    /// `fraudulent`, `product_not_received`, …
    pub reason: String,
    /// `warning_needs_response`, `warning_under_review`, `warning_closed`, `needs_response`,
    /// `under_review`, `won`, `lost`, `prevented`.
    pub status: String,
}
