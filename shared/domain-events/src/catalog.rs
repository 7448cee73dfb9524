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
    /// Only active products are sellable.
    pub status: ProductStatus,
    pub title: String,
    pub category: String,
    pub variants: Vec<VariantSnapshot>,
    /// SKUs this version no longer has.
    pub removed_skus: Vec<Sku>,
}

/// Where a product is in its life, as the catalog announces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProductStatus {
    Draft,
    Active,
    Archived,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VariantSnapshot {
    pub sku: Sku,
    pub price: Money,
}
