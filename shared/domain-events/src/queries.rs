//! Synchronous contracts between domains: direct Lambda invocations where an answer is needed
//! before replying to a shopper (checkout must see the cart as it is now, not as an event
//! stream will eventually tell it; a cancel must know now whether a shipment left).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use kernel::{CartId, Money, OrderId, ProductId, Sku};

/// Checkout → cart: the cart of `customer`, priced now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GetCart {
    pub cart_id: CartId,
    /// The JWT `sub` of the caller; another customer's cart is not found.
    pub customer: String,
}

/// The cart's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum GetCartReply {
    Found { cart: PricedCart },
    NotFound,
}

/// A cart with every line priced from the catalog's current prices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PricedCart {
    pub cart_id: CartId,
    pub version: u64,
    pub lines: Vec<PricedLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PricedLine {
    pub sku: Sku,
    pub quantity: u32,
    /// `None` when the catalog no longer sells the SKU.
    pub offer: Option<Offer>,
}

/// What the catalog currently sells a SKU as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Offer {
    pub product_id: ProductId,
    pub title: String,
    pub category: String,
    pub unit_price: Money,
}

/// Checkout → fulfillment, before a customer cancel of a confirmed order: stop new dispatches
/// of `order_id` for a while (a lease, [`HOLD_FOR_CANCEL_SECONDS`]), unless one already left.
///
/// A lease rather than a cancellation: if checkout's own cancel then fails, the hold lapses and
/// the order can still ship; when it succeeds, `OrderCancelled` closes the order for good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HoldForCancel {
    pub order_id: OrderId,
}

/// How long a [`HoldForCancel`] stops dispatches: far longer than checkout's cancel takes
/// (a read and a versioned write, retried a few times within the API's 10 s timeout), short
/// enough that a failed cancel delays nothing noticeably.
pub const HOLD_FOR_CANCEL_SECONDS: i64 = 60;

/// Fulfillment's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum HoldForCancelReply {
    /// No shipment of the order has left, and none will until the hold lapses.
    Held,
    /// A shipment of the order was dispatched: the cancel must be refused.
    AlreadyDispatched,
}
