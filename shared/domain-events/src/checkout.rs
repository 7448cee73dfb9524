//! Events checkout emits: the order's side of the saga.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use kernel::{CartId, Money, OrderId, ReturnId, Sku, Warehouse};

/// An order was placed and awaits stock and payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderPlaced {
    pub order_id: OrderId,
    /// The customer (JWT `sub`).
    pub customer: String,
    pub email: String,
    pub lines: Vec<OrderLine>,
    /// What the payment must authorize.
    pub total: Money,
    /// A Stripe payment method id (`pm_…`); card data never reaches Ferrocart.
    pub payment_method: String,
    /// The cart the order was placed from, as it was priced; the cart empties it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cart: Option<CartSnapshot>,
}

/// Which cart, at which version, became the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CartSnapshot {
    pub cart_id: CartId,
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderLine {
    pub sku: Sku,
    pub quantity: u32,
    pub unit_price: Money,
}

/// Stock is reserved and payment authorized: the order will be fulfilled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderConfirmed {
    pub order_id: OrderId,
    /// Where and how the order ships: what fulfillment needs besides the warehouses' lines
    /// (`StockCommitted`). Absent in events written before fulfillment existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping: Option<Shipping>,
}

/// How and where an order ships.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Shipping {
    /// The shipping method id (`standard`, `express`, …).
    pub method: String,
    pub address: ShippingAddress,
}

/// A shipping address, as checkout validated it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ShippingAddress {
    pub name: String,
    pub line1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    pub city: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: String,
}

/// The order was cancelled; every side effect must be undone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OrderCancelled {
    pub order_id: OrderId,
    /// `out_of_stock`, `order_too_large`, `payment_failed`, `customer_cancelled`, `timeout`, `reservation_expired`.
    pub reason: String,
}

/// Returned units of a delivered order arrived at a warehouse and were accepted: inventory puts
/// them back on hand there, payment refunds `refund` (the lines' share of the order's discounts,
/// shipping excluded, and tax). Keyed by `return_id`: handled twice, it restocks and refunds once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReturnReceived {
    pub order_id: OrderId,
    pub return_id: ReturnId,
    pub warehouse: Warehouse,
    pub lines: Vec<ReturnLine>,
    /// What to pay back for the returned lines.
    pub refund: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReturnLine {
    pub sku: Sku,
    pub quantity: u32,
}
