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

/// The authorization failed; nothing is held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentFailed {
    pub order_id: OrderId,
    /// `card_declined`, `authentication_required`, `payment_method_invalid`, …
    pub reason: String,
    /// Stripe's decline code, when the card issuer gave one.
    pub decline_code: Option<String>,
}

/// An authorization was cancelled (voided): the hold on the card is released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentVoided {
    pub order_id: OrderId,
    pub payment_intent_id: String,
}
