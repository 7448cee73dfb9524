//! Events inventory emits.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use kernel::{OrderId, Sku};

/// Every line of the order is reserved, each from one or more warehouses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StockReserved {
    pub order_id: OrderId,
    pub lines: Vec<ReservedLine>,
    /// When the reservation lapses unless committed (RFC 3339).
    pub expires_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReservedLine {
    pub sku: Sku,
    pub quantity: u32,
    pub allocations: Vec<Allocation>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Allocation {
    pub warehouse: String,
    pub quantity: u32,
}

/// Some lines could not be reserved; nothing was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StockRejected {
    pub order_id: OrderId,
    pub shortages: Vec<Shortage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Shortage {
    pub sku: Sku,
    pub requested: u32,
    pub available: u32,
}

/// A reservation was given back: the order was cancelled, or it expired uncommitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StockReleased {
    pub order_id: OrderId,
    /// `cancelled` or `expired`.
    pub reason: String,
}

/// A reservation became a sale: the stock left `on_hand`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StockCommitted {
    pub order_id: OrderId,
}
