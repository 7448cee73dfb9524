//! Events payment emits.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use kernel::{Money, OrderId};

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
