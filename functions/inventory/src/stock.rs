//! Stock and reservations: the rules, without storage.
//!
//! Stock is kept per SKU per warehouse as `on_hand` (physically there), `reserved` (promised to
//! orders not yet confirmed) and `available = on_hand - reserved` (what can still be promised).
//! [`allocate`] decides which warehouses serve an order: for each line, warehouses in name order,
//! taking as much as each can give. The same stock always gives the same answer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use kernel::Sku;

pub use kernel::Warehouse;

/// Stock of one SKU in one warehouse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLevel {
    pub sku: Sku,
    pub warehouse: Warehouse,
    pub on_hand: u32,
    pub reserved: u32,
    pub available: u32,
}

/// The largest `on_hand` an admin may set.
pub const MAX_ON_HAND: u32 = 1_000_000;

/// One requested line of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub sku: Sku,
    pub quantity: u32,
}

/// Where a line's units come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub warehouse: Warehouse,
    pub quantity: u32,
}

/// A line with its allocations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocatedLine {
    pub sku: Sku,
    pub quantity: u32,
    pub allocations: Vec<Allocation>,
}

/// A line that cannot be served in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortage {
    pub sku: Sku,
    pub requested: u32,
    pub available: u32,
}

/// Allocates every line from `levels`, or names every line that is short. Lines for the same
/// SKU are merged first, so two lines cannot both count the same units.
pub fn allocate(requests: &[Request], levels: &[StockLevel]) -> Result<Vec<AllocatedLine>, Vec<Shortage>> {
    let mut wanted: BTreeMap<&Sku, u32> = BTreeMap::new();
    for request in requests {
        *wanted.entry(&request.sku).or_default() += request.quantity;
    }
    let mut lines = Vec::with_capacity(wanted.len());
    let mut shortages = Vec::new();
    for (sku, quantity) in wanted {
        let mut sources: Vec<&StockLevel> = levels.iter().filter(|l| &l.sku == sku && l.available > 0).collect();
        sources.sort_by(|a, b| a.warehouse.cmp(&b.warehouse));
        let total: u32 = sources.iter().map(|l| l.available).sum();
        if total < quantity {
            shortages.push(Shortage { sku: sku.clone(), requested: quantity, available: total });
            continue;
        }
        let mut remaining = quantity;
        let mut allocations = Vec::new();
        for source in sources {
            if remaining == 0 {
                break;
            }
            let take = remaining.min(source.available);
            allocations.push(Allocation { warehouse: source.warehouse.clone(), quantity: take });
            remaining -= take;
        }
        lines.push(AllocatedLine { sku: sku.clone(), quantity, allocations });
    }
    if shortages.is_empty() { Ok(lines) } else { Err(shortages) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sku(s: &str) -> Sku {
        Sku::parse(s).unwrap()
    }

    fn level(s: &str, warehouse: &str, available: u32) -> StockLevel {
        StockLevel {
            sku: sku(s),
            warehouse: Warehouse::parse(warehouse).unwrap(),
            on_hand: available,
            reserved: 0,
            available,
        }
    }

    #[test]
    fn a_line_is_served_from_warehouses_in_name_order() {
        let levels = [level("A", "west", 5), level("A", "east", 2)];
        let lines = allocate(&[Request { sku: sku("A"), quantity: 4 }], &levels).unwrap();
        let served: Vec<_> = lines[0].allocations.iter().map(|a| (a.warehouse.as_str(), a.quantity)).collect();
        assert_eq!(served, vec![("east", 2), ("west", 2)]);
    }

    #[test]
    fn every_short_line_is_named_and_nothing_is_allocated() {
        let levels = [level("A", "east", 1), level("B", "east", 9)];
        let requests = [Request { sku: sku("A"), quantity: 2 }, Request { sku: sku("B"), quantity: 1 }];
        assert_eq!(allocate(&requests, &levels), Err(vec![Shortage { sku: sku("A"), requested: 2, available: 1 }]));
    }

    #[test]
    fn two_lines_of_one_sku_cannot_count_the_same_units() {
        let levels = [level("A", "east", 3)];
        let requests = [Request { sku: sku("A"), quantity: 2 }, Request { sku: sku("A"), quantity: 2 }];
        assert!(allocate(&requests, &levels).is_err());
    }
}
