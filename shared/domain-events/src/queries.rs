//! Synchronous contracts between domains: direct Lambda invocations where an answer is needed
//! before replying to a shopper (checkout must see the cart as it is now, not as an event
//! stream will eventually tell it).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use kernel::{CartId, Money, ProductId, Sku};

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
