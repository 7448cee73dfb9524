//! The cart's model: what a cart holds, what a shopper sees of it, and its limits. No I/O.

use std::collections::BTreeMap;

use serde::Serialize;
use time::OffsetDateTime;

use domain_events::queries::{Offer, PricedCart};
use kernel::{CartId, Money, Sku};

/// Most units of one SKU in a cart.
pub const MAX_QUANTITY: u32 = 99;
/// Most distinct SKUs in a cart.
pub const MAX_LINES: usize = 50;

/// A stored cart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cart {
    pub id: CartId,
    pub owner: String,
    pub lines: BTreeMap<Sku, u32>,
    pub version: u64,
    pub updated_at: OffsetDateTime,
}

/// A read-model entry: what the catalog last said about a SKU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkuOffer {
    pub sku: Sku,
    pub offer: Offer,
    pub active: bool,
}

/// A cart as shoppers see it: current titles and prices, line totals and the subtotal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CartView {
    pub id: CartId,
    pub lines: Vec<LineView>,
    pub item_count: u32,
    /// `null` for an empty cart.
    pub subtotal: Option<Money>,
    pub version: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineView {
    pub sku: Sku,
    pub quantity: u32,
    pub title: Option<String>,
    pub unit_price: Option<Money>,
    pub line_total: Option<Money>,
    /// False when the catalog no longer sells the SKU; checkout refuses such a cart.
    pub available: bool,
}

/// What the shopper sees of `cart`, priced: line totals and the subtotal of what is on sale.
pub fn view(cart: &Cart, priced: PricedCart) -> CartView {
    let mut subtotal: Option<Money> = None;
    let lines: Vec<LineView> = priced
        .lines
        .into_iter()
        .map(|line| {
            let line_total = line.offer.as_ref().and_then(|o| o.unit_price.checked_mul(line.quantity).ok());
            if let Some(total) = line_total {
                subtotal = match subtotal {
                    None => Some(total),
                    Some(sum) => sum.checked_add(total).ok().or(Some(sum)),
                };
            }
            LineView {
                sku: line.sku,
                quantity: line.quantity,
                title: line.offer.as_ref().map(|o| o.title.clone()),
                unit_price: line.offer.as_ref().map(|o| o.unit_price),
                line_total,
                available: line.offer.is_some(),
            }
        })
        .collect();
    CartView {
        id: cart.id,
        item_count: lines.iter().map(|l| l.quantity).sum(),
        lines,
        subtotal,
        version: cart.version,
        updated_at: cart.updated_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain_events::queries::PricedLine;
    use kernel::{Currency, ProductId};

    fn offer(sku: &str, amount: i64) -> SkuOffer {
        SkuOffer {
            sku: Sku::parse(sku).unwrap(),
            offer: Offer {
                product_id: ProductId::new(),
                title: format!("Title of {sku}"),
                category: "mugs".into(),
                unit_price: Money::new(amount, Currency::USD).unwrap(),
            },
            active: true,
        }
    }

    #[test]
    fn a_cart_view_totals_lines_and_flags_what_is_no_longer_sold() {
        let cart = Cart {
            id: CartId::new(),
            owner: "alice".into(),
            lines: BTreeMap::from([(Sku::parse("A").unwrap(), 2), (Sku::parse("B").unwrap(), 1)]),
            version: 3,
            updated_at: OffsetDateTime::UNIX_EPOCH,
        };
        let priced = PricedCart {
            cart_id: cart.id,
            version: 3,
            lines: vec![
                PricedLine { sku: Sku::parse("A").unwrap(), quantity: 2, offer: Some(offer("A", 1250).offer) },
                PricedLine { sku: Sku::parse("B").unwrap(), quantity: 1, offer: None },
            ],
        };

        let view = view(&cart, priced);

        assert_eq!(view.subtotal, Some(Money::new(2500, Currency::USD).unwrap()));
        assert_eq!(view.item_count, 3);
        assert_eq!(view.lines[0].line_total, Some(Money::new(2500, Currency::USD).unwrap()));
        assert!(!view.lines[1].available);
    }
}
