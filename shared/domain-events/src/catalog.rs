//! Events the catalog emits.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use kernel::{Money, ProductId, Sku};

/// A product was created or changed. Carries the whole sellable state, so read models (the
/// cart's prices) can upsert from it alone; `version` lets them ignore stale, out-of-order copies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProductChanged {
    pub product_id: ProductId,
    pub version: u64,
    /// `draft`, `active` or `archived`: only active products are sellable.
    pub status: String,
    pub title: String,
    pub category: String,
    pub variants: Vec<VariantSnapshot>,
    /// SKUs this version no longer has.
    pub removed_skus: Vec<Sku>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VariantSnapshot {
    pub sku: Sku,
    pub price: Money,
}
