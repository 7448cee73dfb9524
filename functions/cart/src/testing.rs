//! An in-memory [`CartStore`], for unit tests here and the warm benchmark (`bench/`, feature
//! `test-util`). It decides every write as the DynamoDB adapter's conditions do: a cart is
//! created once, only its owner changes it, a new SKU needs room ([`MAX_LINES`]), an order
//! empties the cart only at the version that was ordered, and a `ProductChanged` older than the
//! one applied (for the same product) is skipped.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use time::OffsetDateTime;

use domain_events::catalog::{ProductChanged, ProductStatus};
use domain_events::queries::Offer;
use kernel::{CartId, Sku};

use crate::service::{Cart, CartStore, MAX_LINES, SkuOffer, StoreError};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Carts and the read model of the catalog, in maps.
#[derive(Debug, Default)]
pub struct MemoryCarts {
    carts: Mutex<HashMap<CartId, Cart>>,
    /// Each SKU's offer with the product version it came from.
    offers: Mutex<HashMap<Sku, (SkuOffer, u64)>>,
}

impl MemoryCarts {
    /// Puts `cart` in the store as it is (version included).
    pub fn insert(&self, cart: &Cart) {
        lock(&self.carts).insert(cart.id, cart.clone());
    }

    /// The stored cart, whoever owns it.
    pub fn cart(&self, id: CartId) -> Option<Cart> {
        lock(&self.carts).get(&id).cloned()
    }

    /// The read model's entry for `sku` and the product version it came from.
    pub fn offer(&self, sku: &Sku) -> Option<(SkuOffer, u64)> {
        lock(&self.offers).get(sku).cloned()
    }
}

impl CartStore for MemoryCarts {
    async fn create(&self, cart: &Cart) -> Result<(), StoreError> {
        let mut carts = lock(&self.carts);
        if carts.contains_key(&cart.id) {
            // The adapter's `attribute_not_exists(pk)` fails as a storage error too.
            let exists = adapters::dynamo::Unavailable::because(format!("cart {} exists", cart.id));
            return Err(StoreError::Unavailable(exists));
        }
        carts.insert(cart.id, cart.clone());
        Ok(())
    }

    async fn get(&self, id: CartId, owner: &str) -> Result<Option<Cart>, StoreError> {
        Ok(lock(&self.carts).get(&id).filter(|cart| cart.owner == owner).cloned())
    }

    async fn set_line(
        &self,
        id: CartId,
        owner: &str,
        sku: &Sku,
        quantity: u32,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut carts = lock(&self.carts);
        let cart = carts.get_mut(&id).filter(|cart| cart.owner == owner).ok_or(StoreError::NotFound)?;
        if quantity == 0 {
            cart.lines.remove(sku);
        } else {
            if !cart.lines.contains_key(sku) && cart.lines.len() >= MAX_LINES {
                return Err(StoreError::TooManyLines);
            }
            cart.lines.insert(sku.clone(), quantity);
        }
        cart.version += 1;
        cart.updated_at = now;
        Ok(())
    }

    async fn offers(&self, skus: &[Sku]) -> Result<Vec<SkuOffer>, StoreError> {
        let offers = lock(&self.offers);
        Ok(skus.iter().filter_map(|sku| offers.get(sku).map(|(offer, _)| offer.clone())).collect())
    }

    async fn apply(&self, change: &ProductChanged) -> Result<(), StoreError> {
        let mut offers = lock(&self.offers);
        // Written unless the SKU holds this product at this version or a newer one.
        let newer = |sku: &Sku, offers: &HashMap<Sku, (SkuOffer, u64)>| {
            offers
                .get(sku)
                .is_none_or(|(offer, version)| offer.offer.product_id != change.product_id || *version < change.version)
        };
        for variant in &change.variants {
            if newer(&variant.sku, &offers) {
                let offer = SkuOffer {
                    sku: variant.sku.clone(),
                    offer: Offer {
                        product_id: change.product_id,
                        title: change.title.clone(),
                        category: change.category.clone(),
                        unit_price: variant.price,
                    },
                    active: change.status == ProductStatus::Active,
                };
                offers.insert(variant.sku.clone(), (offer, change.version));
            }
        }
        for sku in &change.removed_skus {
            if let Some((offer, version)) = offers.get_mut(sku)
                && offer.offer.product_id == change.product_id
                && *version < change.version
            {
                offer.active = false;
                *version = change.version;
            }
        }
        Ok(())
    }

    async fn empty_if_unchanged(
        &self,
        id: CartId,
        owner: &str,
        version: u64,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut carts = lock(&self.carts);
        let Some(cart) = carts.get_mut(&id).filter(|cart| cart.owner == owner && cart.version == version) else {
            return Ok(false);
        };
        cart.lines.clear();
        cart.version += 1;
        cart.updated_at = now;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use domain_events::catalog::VariantSnapshot;
    use domain_events::checkout::{CartSnapshot, OrderPlaced};
    use kernel::{Currency, Money, ProductId};

    use super::*;
    use crate::service;

    fn change(product_id: ProductId, version: u64, amount: i64) -> ProductChanged {
        ProductChanged {
            product_id,
            version,
            status: ProductStatus::Active,
            title: "Rusty Mug".into(),
            category: "mugs".into(),
            variants: vec![VariantSnapshot {
                sku: Sku::parse("MUG-01").unwrap(),
                price: Money::new(amount, Currency::USD).unwrap(),
            }],
            removed_skus: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_late_price_never_rolls_back_and_an_order_empties_the_cart_only_as_ordered() {
        let store = MemoryCarts::default();
        let (product, sku) = (ProductId::new(), Sku::parse("MUG-01").unwrap());
        service::on_product_changed(&store, &change(product, 3, 1200)).await.unwrap();
        service::on_product_changed(&store, &change(product, 2, 900)).await.unwrap();
        assert_eq!(store.offer(&sku).unwrap().0.offer.unit_price.amount(), 1200, "version 2 came late");

        let view = service::create(&store, "alice", OffsetDateTime::UNIX_EPOCH).await.unwrap();
        let cart =
            service::set_quantity(&store, view.id, "alice", sku.clone(), 2, OffsetDateTime::UNIX_EPOCH).await.unwrap();
        assert_eq!(cart.subtotal, Some(Money::new(2400, Currency::USD).unwrap()));
        assert!(matches!(service::show(&store, view.id, "bob").await, Err(service::CartError::NotFound(_))));

        let placed = |version| OrderPlaced {
            order_id: kernel::OrderId::new(),
            customer: "alice".into(),
            email: "alice@example.com".into(),
            lines: Vec::new(),
            total: Money::new(2400, Currency::USD).unwrap(),
            payment_method: "pm_card_visa".into(),
            cart: Some(CartSnapshot { cart_id: view.id, version }),
        };
        service::on_order_placed(&store, &placed(cart.version - 1), OffsetDateTime::UNIX_EPOCH).await.unwrap();
        assert_eq!(store.cart(view.id).unwrap().lines, BTreeMap::from([(sku, 2)]), "changed since: kept");
        service::on_order_placed(&store, &placed(cart.version), OffsetDateTime::UNIX_EPOCH).await.unwrap();
        assert!(store.cart(view.id).unwrap().lines.is_empty());
    }
}
