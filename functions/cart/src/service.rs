//! Cart use cases, the pricing rules, and the storage port.
//!
//! A cart stores SKUs and quantities only. Titles and prices come, at every read, from the
//! cart's read model of the catalog (fed by `ProductChanged` events), so a cart always shows
//! today's price and checkout re-prices at placement from the same source.

use std::collections::BTreeMap;

use serde::Serialize;
use time::OffsetDateTime;

use domain_events::catalog::ProductChanged;
use domain_events::checkout::OrderPlaced;
use domain_events::queries::{Offer, PricedCart, PricedLine};
use kernel::{CartId, Currency, FieldError, Money, Sku};
use lambda_glue::consumer::HandlerError;

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

/// Storage failures in business terms.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The cart does not exist or belongs to someone else (indistinguishable on purpose).
    #[error("no such cart")]
    NotFound,
    #[error("the cart has {MAX_LINES} lines already")]
    TooManyLines,
    #[error("cart storage failed")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The storage port.
#[allow(async_fn_in_trait)]
pub trait CartStore {
    async fn create(&self, cart: &Cart) -> Result<(), StoreError>;
    /// The cart, if it exists and belongs to `owner`.
    async fn get(&self, id: CartId, owner: &str) -> Result<Option<Cart>, StoreError>;
    /// Sets a line (0 removes it), only on `owner`'s cart.
    async fn set_line(
        &self,
        id: CartId,
        owner: &str,
        sku: &Sku,
        quantity: u32,
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;
    /// Read-model entries for these SKUs (missing SKUs are absent).
    async fn offers(&self, skus: &[Sku]) -> Result<Vec<SkuOffer>, StoreError>;
    /// Applies a `ProductChanged`, ignoring it where a newer version of the product was applied.
    async fn apply(&self, change: &ProductChanged) -> Result<(), StoreError>;
    /// Empties `owner`'s cart if it is still at `version` (the version that was ordered).
    /// `Ok(false)`: it changed since (or was emptied already), so it is left alone.
    async fn empty_if_unchanged(
        &self,
        id: CartId,
        owner: &str,
        version: u64,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;
}

/// Why a cart request failed.
#[derive(Debug, thiserror::Error)]
pub enum CartError {
    #[error("no cart {0}")]
    NotFound(String),
    #[error("{}: {}", .0.pointer, .0.detail)]
    Invalid(FieldError),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for CartError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => Self::NotFound(String::new()),
            StoreError::TooManyLines => {
                Self::Invalid(FieldError::new("path:sku", format!("a cart holds at most {MAX_LINES} different SKUs")))
            }
            other => Self::Store(other),
        }
    }
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

/// Prices a cart's lines from the read model.
pub async fn price(store: &impl CartStore, cart: &Cart) -> Result<PricedCart, StoreError> {
    let skus: Vec<Sku> = cart.lines.keys().cloned().collect();
    let offers = store.offers(&skus).await?;
    let lines = cart
        .lines
        .iter()
        .map(|(sku, quantity)| PricedLine {
            sku: sku.clone(),
            quantity: *quantity,
            offer: offers.iter().find(|o| &o.sku == sku && o.active).map(|o| o.offer.clone()),
        })
        .collect();
    Ok(PricedCart { cart_id: cart.id, version: cart.version, lines })
}

fn view(cart: &Cart, priced: PricedCart) -> CartView {
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

pub async fn create(store: &impl CartStore, owner: &str, now: OffsetDateTime) -> Result<CartView, CartError> {
    let cart = Cart { id: CartId::new(), owner: owner.to_owned(), lines: BTreeMap::new(), version: 1, updated_at: now };
    store.create(&cart).await?;
    tracing::info!(cart_id = %cart.id, "cart created");
    Ok(view(&cart, PricedCart { cart_id: cart.id, version: 1, lines: Vec::new() }))
}

async fn load(store: &impl CartStore, id: CartId, owner: &str) -> Result<Cart, CartError> {
    store.get(id, owner).await?.ok_or_else(|| CartError::NotFound(id.to_string()))
}

pub async fn show(store: &impl CartStore, id: CartId, owner: &str) -> Result<CartView, CartError> {
    let cart = load(store, id, owner).await?;
    let priced = price(store, &cart).await?;
    Ok(view(&cart, priced))
}

/// Sets the quantity of a SKU (0 removes it). A SKU must be on sale to be added, and a cart
/// holds one currency.
pub async fn set_quantity(
    store: &impl CartStore,
    id: CartId,
    owner: &str,
    sku: Sku,
    quantity: u32,
    now: OffsetDateTime,
) -> Result<CartView, CartError> {
    if quantity > MAX_QUANTITY {
        return Err(CartError::Invalid(FieldError::new("/quantity", format!("must be from 0 to {MAX_QUANTITY}"))));
    }
    let cart = load(store, id, owner).await?;
    if quantity > 0 {
        let offers = store.offers(std::slice::from_ref(&sku)).await?;
        let Some(offer) = offers.into_iter().find(|o| o.active) else {
            return Err(CartError::Invalid(FieldError::new("path:sku", format!("SKU {sku} is not on sale"))));
        };
        let priced = price(store, &cart).await?;
        let currency: Option<Currency> = priced
            .lines
            .iter()
            .filter(|l| l.sku != sku)
            .find_map(|l| l.offer.as_ref().map(|o| o.unit_price.currency()));
        if let Some(currency) = currency
            && currency != offer.offer.unit_price.currency()
        {
            return Err(CartError::Invalid(FieldError::new(
                "path:sku",
                format!("SKU {sku} is priced in {}, the cart in {currency}", offer.offer.unit_price.currency()),
            )));
        }
    }
    store.set_line(id, owner, &sku, quantity, now).await.map_err(|e| match e {
        StoreError::NotFound => CartError::NotFound(id.to_string()),
        other => other.into(),
    })?;
    show(store, id, owner).await
}

/// The consumer side: an order was placed from a cart. Empty it, unless the customer changed it
/// after checking out (then what is in it is a new intention) or it was emptied already (a
/// duplicate delivery).
pub async fn on_order_placed(
    store: &impl CartStore,
    order: &OrderPlaced,
    now: OffsetDateTime,
) -> Result<(), HandlerError> {
    let Some(cart) = &order.cart else { return Ok(()) };
    let emptied = store
        .empty_if_unchanged(cart.cart_id, &order.customer, cart.version, now)
        .await
        .map_err(HandlerError::transient)?;
    tracing::info!(cart_id = %cart.cart_id, order_id = %order.order_id, emptied, "cart checked out");
    Ok(())
}

/// The consumer side: keep the read model in step with the catalog.
pub async fn on_product_changed(store: &impl CartStore, change: &ProductChanged) -> Result<(), HandlerError> {
    store.apply(change).await.map_err(HandlerError::transient)?;
    tracing::info!(product_id = %change.product_id, version = change.version, "prices updated");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kernel::ProductId;

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
