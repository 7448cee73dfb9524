//! Events payment emits.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use kernel::{Money, OrderId, RefundId, ReturnId};

/// The order total is authorized (held, not captured) on the customer's card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentAuthorized {
    pub order_id: OrderId,
    pub payment_intent_id: String,
    pub amount: Money,
}

/// Stripe's confirmation answered `requires_action`: the customer must pass 3-D Secure before
/// anything is held. The order waits (`requires_action`) until Stripe says how it went
/// (`PaymentAuthorized` or `PaymentFailed` follows) or the order times out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentActionRequired {
    pub order_id: OrderId,
    pub payment_intent_id: String,
    /// The PaymentIntent's client secret, for Stripe.js `handleNextAction`: shown to the order's
    /// owner only, never logged.
    pub client_secret: String,
}

/// The authorization failed; nothing is held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentFailed {
    pub order_id: OrderId,
    /// `card_declined`, `authentication_required`, `payment_method_invalid`, …
    pub reason: String,
    /// Stripe's decline code, when the card issuer gave one.
    pub decline_code: Option<String>,
}

/// The authorized amount was captured (collected) at Stripe, on the order's first dispatch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentCaptured {
    pub order_id: OrderId,
    pub payment_intent_id: String,
    /// What was captured: the order total.
    pub amount: Money,
}

/// A capture Stripe refused for good (the authorization lapsed, was cancelled, or the capture
/// was declined): the order shipped, or is shipping, unpaid, and a person must act.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentCaptureFailed {
    pub order_id: OrderId,
    pub payment_intent_id: String,
    /// Stripe's error code (`charge_expired_for_capture`, `payment_intent_unexpected_state`, …).
    pub reason: String,
}

/// An authorization was cancelled (voided): the hold on the card is released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentVoided {
    pub order_id: OrderId,
    pub payment_intent_id: String,
}

/// Why money is paid back: Stripe's refund reasons, plus `other` (sent to Stripe without a reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefundReason {
    RequestedByCustomer,
    Duplicate,
    Fraudulent,
    Other,
}

/// Money was paid back on the order's captured payment (an admin's refund, a received return, or
/// a refund made in Stripe's dashboard). Refunds of one order never add up to more than was
/// captured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RefundIssued {
    pub order_id: OrderId,
    pub refund_id: RefundId,
    /// Stripe's refund id (`re_…`).
    pub stripe_refund_id: String,
    pub amount: Money,
    pub reason: RefundReason,
    /// The return this refund pays back, when it was made for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_id: Option<ReturnId>,
    /// Everything refunded on the order so far, this refund included.
    pub refunded_total: Money,
}

/// Stripe accepted a refund but holds it `pending` (the card network or bank has not paid it
/// back yet; rare for cards): the customer is told it is on its way. Once per refund, with the
/// write that first records it pending at Stripe; `RefundIssued` or `RefundFailed` of the same
/// refund follows when Stripe ends it. Consumers must not let a late copy undo that end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RefundPending {
    pub order_id: OrderId,
    pub refund_id: RefundId,
    /// Stripe's refund id (`re_…`).
    pub stripe_refund_id: String,
    pub amount: Money,
    pub reason: RefundReason,
    /// The return this refund pays back, when it was made for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_id: Option<ReturnId>,
}

/// A refund did not pay the money back: Stripe refused it, or it ended `failed` or `canceled`
/// after Stripe had accepted it as `pending` (the customer's card was closed, …), or Stripe
/// failed it after it had succeeded (then it follows that refund's `RefundIssued`, and the
/// refunded total no longer counts it). Its amount is refundable again; the customer is still
/// owed it, so a person must act (refund again, or pay another way).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RefundFailed {
    pub order_id: OrderId,
    pub refund_id: RefundId,
    /// Stripe's refund id (`re_…`), when Stripe made the refund before it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe_refund_id: Option<String>,
    pub amount: Money,
    /// Why the refund was asked for.
    pub reason: RefundReason,
    /// Stripe's `failure_reason` (`lost_or_stolen_card`, `expired_or_canceled_card`, `declined`,
    /// …), `canceled`, or the error code Stripe refused the refund with (`charge_disputed`, …).
    pub failure_reason: String,
    /// The return the refund was for, when it was made for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_id: Option<ReturnId>,
}

/// The customer's bank opened a dispute (chargeback) on the order's payment: a person must
/// answer it in Stripe before its deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentDisputed {
    pub order_id: OrderId,
    pub payment_intent_id: String,
    /// Stripe's dispute id (`dp_…`).
    pub dispute_id: String,
    pub amount: Money,
    /// Stripe's dispute reason (`fraudulent`, `product_not_received`, …).
    pub reason: String,
}

/// How a dispute ended, as Stripe's dispute says once it is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DisputeOutcome {
    /// The bank decided for the shop: the disputed amount (and fee) came back.
    Won,
    /// The bank decided for the customer: the disputed amount is gone for good.
    Lost,
    /// An inquiry (a warning, not a chargeback) closed without becoming one: no money moved.
    WarningClosed,
    /// Prevented before it became a chargeback (Stripe's `prevented`): no money moved.
    Prevented,
}

impl DisputeOutcome {
    /// Stripe's dispute `status`, if it is a closed one (`needs_response`, `under_review` and
    /// the `warning_` ones still open are not).
    pub fn from_stripe(status: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(status.to_owned())).ok()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Won => "won",
            Self::Lost => "lost",
            Self::WarningClosed => "warning_closed",
            Self::Prevented => "prevented",
        }
    }

    /// The money stayed with the shop (or came back): nothing for a person to decide.
    pub fn for_the_shop(self) -> bool {
        !matches!(self, Self::Lost)
    }
}

/// A dispute on the order's payment closed (Stripe's `charge.dispute.closed`, its outcome read
/// back from Stripe): won, lost, or an inquiry that closed. Once per dispute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentDisputeClosed {
    pub order_id: OrderId,
    pub payment_intent_id: String,
    /// Stripe's dispute id (`dp_…`), as in the `PaymentDisputed` that opened it.
    pub dispute_id: String,
    pub outcome: DisputeOutcome,
    /// The disputed amount.
    pub amount: Money,
    /// Stripe's dispute reason (`fraudulent`, `product_not_received`, …).
    pub reason: String,
}
