//! Events fulfillment emits: shipments, one per warehouse that gives units to an order.
//!
//! Every event names the order's `shipment_count` (how many shipments the order has; they are
//! all created at once), so a consumer can tell "some dispatched" from "all dispatched" without
//! having seen every `ShipmentCreated` first.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use kernel::{OrderId, ShipmentId, Sku};

/// The most shipments (warehouses) one order may ship from. Fulfillment creates an order's
/// shipments in one `TransactWriteItems` (at most 100 actions): the order's facts once, and per
/// shipment the shipment and its event. Inventory refuses to reserve an order that would need
/// more (`StockRejected`, `order_too_large`), so no confirmed order is ever beyond it.
pub const MAX_SHIPMENTS: usize = (100 - 1) / 2;

/// A shipment was created for the units one warehouse gives to a confirmed order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ShipmentCreated {
    pub order_id: OrderId,
    pub shipment_id: ShipmentId,
    pub shipment_count: u32,
    pub warehouse: String,
    pub lines: Vec<ShipmentLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ShipmentLine {
    pub sku: Sku,
    pub quantity: u32,
}

/// A shipment left its warehouse with a carrier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ShipmentDispatched {
    pub order_id: OrderId,
    pub shipment_id: ShipmentId,
    pub shipment_count: u32,
    pub warehouse: String,
    pub carrier: String,
    pub tracking_number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_url: Option<String>,
    /// RFC 3339.
    pub dispatched_at: String,
}

/// A shipment reached the customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ShipmentDelivered {
    pub order_id: OrderId,
    pub shipment_id: ShipmentId,
    pub shipment_count: u32,
    /// RFC 3339.
    pub delivered_at: String,
}

/// A shipment that had not left was cancelled with its order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ShipmentCancelled {
    pub order_id: OrderId,
    pub shipment_id: ShipmentId,
    pub shipment_count: u32,
}
