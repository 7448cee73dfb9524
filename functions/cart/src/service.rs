//! Cart use cases and the storage port (the model is in [`crate::model`]).
//!
//! A cart stores SKUs and quantities only. Titles and prices come, at every read, from the
//! cart's read model of the catalog (fed by `ProductChanged` events), so a cart always shows
//! today's price and checkout re-prices at placement from the same source.

use std::collections::BTreeMap;

use time::OffsetDateTime;

use domain_events::catalog::ProductChanged;
use domain_events::checkout::OrderPlaced;
use domain_events::queries::{PricedCart, PricedLine};
use kernel::{CartId, Currency, FieldError, Sku};

use crate::model::view;
pub use crate::model::{Cart, CartView, LineView, MAX_LINES, MAX_QUANTITY, SkuOffer};

/// Storage failures in business terms.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The cart does not exist or belongs to someone else (indistinguishable on purpose).
    #[error("no such cart")]
    NotFound,
    #[error("the cart has {MAX_LINES} lines already")]
    TooManyLines,
    #[error("cart storage failed")]
    Unavailable(#[from] adapters::dynamo::Unavailable),
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
) -> Result<(), StoreError> {
    let Some(cart) = &order.cart else { return Ok(()) };
    let emptied = store.empty_if_unchanged(cart.cart_id, &order.customer, cart.version, now).await?;
    tracing::info!(cart_id = %cart.cart_id, order_id = %order.order_id, emptied, "cart checked out");
    Ok(())
}

/// The consumer side: keep the read model in step with the catalog.
pub async fn on_product_changed(store: &impl CartStore, change: &ProductChanged) -> Result<(), StoreError> {
    store.apply(change).await?;
    tracing::info!(product_id = %change.product_id, version = change.version, "prices updated");
    Ok(())
}
