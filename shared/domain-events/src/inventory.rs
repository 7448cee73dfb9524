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

/// The order could not be reserved; nothing was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StockRejected {
    pub order_id: OrderId,
    /// Why. Absent in events written before the field existed, which were all `out_of_stock`.
    #[serde(default)]
    pub reason: RejectionReason,
    /// Every short SKU (empty unless the reason is `out_of_stock`).
    pub shortages: Vec<Shortage>,
}

/// Why an order could not be reserved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RejectionReason {
    /// Some lines need more units than all warehouses have available.
    #[default]
    OutOfStock,
    /// The stock is there, but taking it needs more stock writes than one DynamoDB transaction
    /// holds (lines split over many warehouses): the order must be placed as smaller orders.
    OrderTooLarge,
}

impl RejectionReason {
    /// The reason as it is serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OutOfStock => "out_of_stock",
            Self::OrderTooLarge => "order_too_large",
        }
    }
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
    pub reason: ReleaseReason,
}

/// Why stock was given back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReleaseReason {
    /// The order was cancelled: held units return to `available`, sold ones to the shelf.
    Cancelled,
    /// The hold lapsed before the order was confirmed.
    Expired,
}

/// A reservation became a sale: the stock left `on_hand`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StockCommitted {
    pub order_id: OrderId,
    /// Every line with the warehouses its units come from (as in `StockReserved`): fulfillment
    /// makes one shipment per warehouse. Empty in events written before fulfillment existed.
    #[serde(default)]
    pub lines: Vec<ReservedLine>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejection_reason_reads_as_it_is_serialized() {
        for reason in [RejectionReason::OutOfStock, RejectionReason::OrderTooLarge] {
            assert_eq!(serde_json::to_value(reason).ok(), Some(serde_json::json!(reason.as_str())));
        }
    }
}
