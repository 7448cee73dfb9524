//! An in-memory [`CatalogStore`], for unit tests here and the warm benchmark (`bench/`, feature
//! `test-util`). Writes are decided as the DynamoDB adapter's transaction does: a SKU or slug
//! belongs to one product, a replace needs the version it read. Listings are active products
//! newest first (ULIDs sort by time), filtered by category and search words, with cursors
//! signed and checked by [`adapters::Cursor`] as the adapter's are (under a fixed test key, or
//! the keys given to [`MemoryCatalog::with_cursor_keys`]), awaited by listings only.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use aws_sdk_dynamodb::types::AttributeValue;

use adapters::{Cursor, CursorKeys, ListingKeys};
use domain_events::{Envelope, Event};
use kernel::{ProductId, Sku};

use crate::product::{Product, Slug};
use crate::service::{CatalogStore, CategorySummary, ListQuery, Page, StoreError};

const KEY: &str = "id";

#[derive(Debug, Default)]
struct State {
    /// By id, so the newest is last.
    products: BTreeMap<ProductId, Product>,
    skus: HashMap<Sku, ProductId>,
    slugs: HashMap<Slug, ProductId>,
    published: Vec<Event>,
}

impl State {
    /// Claims `product`'s SKUs and slug, or names what another product holds (nothing written).
    fn claim(&mut self, product: &Product) -> Result<(), StoreError> {
        let taken: Vec<Sku> = product
            .skus()
            .into_iter()
            .filter(|sku| self.skus.get(*sku).is_some_and(|owner| *owner != product.id))
            .cloned()
            .collect();
        if !taken.is_empty() {
            return Err(StoreError::SkusTaken(taken));
        }
        let slug = &product.details.slug;
        if self.slugs.get(slug).is_some_and(|owner| *owner != product.id) {
            return Err(StoreError::SlugTaken(slug.clone()));
        }
        self.skus.extend(product.skus().into_iter().map(|sku| (sku.clone(), product.id)));
        self.slugs.insert(slug.clone(), product.id);
        Ok(())
    }
}

/// Products, their SKU and slug claims and the events written with them, behind one lock.
pub struct MemoryCatalog {
    state: Mutex<State>,
    cursor_keys: ListingKeys,
}

impl std::fmt::Debug for MemoryCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCatalog").finish_non_exhaustive()
    }
}

impl Default for MemoryCatalog {
    fn default() -> Self {
        let cursor_keys = CursorKeys::new(b"the in-memory catalog signs cursors with this", None);
        Self::with_cursor_keys(cursor_keys.unwrap_or_else(|| unreachable!("a key of 32 bytes or more")))
    }
}

impl MemoryCatalog {
    /// An empty catalog whose listings sign and check cursors with `cursor_keys`.
    pub fn with_cursor_keys(cursor_keys: impl Into<ListingKeys>) -> Self {
        Self { state: Mutex::default(), cursor_keys: cursor_keys.into() }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The events every write published, in order.
    pub fn published(&self) -> Vec<Event> {
        self.state().published.clone()
    }

    fn scope(query: &ListQuery) -> String {
        let category = query.category.as_ref().map_or("*", |category| category.as_str());
        format!("category={category}&q={}", query.words.join("+"))
    }
}

impl CatalogStore for MemoryCatalog {
    async fn create(&self, product: &Product, event: &Envelope) -> Result<(), StoreError> {
        let mut state = self.state();
        if state.products.contains_key(&product.id) {
            return Err(StoreError::VersionConflict);
        }
        state.claim(product)?;
        state.products.insert(product.id, product.clone());
        state.published.push(event.event.clone());
        Ok(())
    }

    async fn replace(&self, old: &Product, new: &Product, event: &Envelope) -> Result<(), StoreError> {
        let mut state = self.state();
        if state.products.get(&old.id).is_none_or(|stored| stored.version != old.version) {
            return Err(StoreError::VersionConflict);
        }
        state.claim(new)?;
        // Claims the new version gave up are free again.
        for sku in old.skus().difference(&new.skus()) {
            state.skus.remove(*sku);
        }
        if old.details.slug != new.details.slug {
            state.slugs.remove(&old.details.slug);
        }
        state.products.insert(new.id, new.clone());
        state.published.push(event.event.clone());
        Ok(())
    }

    async fn get(&self, id: ProductId) -> Result<Option<Product>, StoreError> {
        Ok(self.state().products.get(&id).cloned())
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let scope = Self::scope(query);
        let keys = self.cursor_keys.get().await?;
        let after = match &query.cursor {
            Some(raw) => {
                let cursor = Cursor::decode(raw, &scope, &[KEY], keys)?;
                let id = cursor.start_key().remove(KEY).and_then(|value| value.as_s().ok().cloned());
                id.and_then(|id| id.parse::<ProductId>().ok())
            }
            None => None,
        };
        let state = self.state();
        let mut matching = state
            .products
            .values()
            .rev()
            .filter(|product| after.is_none_or(|after| product.id < after))
            .filter(|product| product.is_active())
            .filter(|product| query.category.as_ref().is_none_or(|category| &product.details.category == category))
            .filter(|product| {
                let keywords = product.keywords();
                query.words.iter().all(|word| keywords.contains(word))
            });
        let items: Vec<Product> = matching.by_ref().take(query.limit).cloned().collect();
        let next_cursor = match (matching.next(), items.last()) {
            (Some(_), Some(last)) => {
                let position = HashMap::from([(KEY.to_owned(), AttributeValue::S(last.id.to_string()))]);
                Cursor::after(scope, &position, &[KEY]).map(|cursor| cursor.encode(keys))
            }
            _ => None,
        };
        Ok(Page { items, next_cursor })
    }

    async fn categories(&self) -> Result<Vec<CategorySummary>, StoreError> {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for product in self.state().products.values().filter(|product| product.is_active()) {
            *counts.entry(product.details.category.as_str().to_owned()).or_default() += 1;
        }
        Ok(counts.into_iter().map(|(slug, product_count)| CategorySummary { slug, product_count }).collect())
    }
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;
    use crate::product::ProductInput;
    use crate::service::{self, CatalogError, Precondition};

    fn mug(slug: &str, sku: &str) -> ProductInput {
        serde_json::from_value(serde_json::json!({
            "slug": slug, "title": "Stoneware mug", "category": "mugs", "status": "active",
            "variants": [{ "sku": sku, "price": { "amount": 1800, "currency": "USD" } }]
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn skus_belong_to_one_product_and_a_listing_pages_newest_first() {
        let (store, now) = (MemoryCatalog::default(), OffsetDateTime::now_utc());
        let first = service::create(&store, mug("mug-one", "MUG-1"), now).await.unwrap();
        let second = service::create(&store, mug("mug-two", "MUG-2"), now).await.unwrap();
        let taken = service::create(&store, mug("mug-three", "MUG-1"), now).await;
        assert!(matches!(taken, Err(CatalogError::Taken { .. })), "{taken:?}");
        let stale = service::update(&store, first.id, Precondition::Version(2), mug("mug-one", "MUG-1"), now).await;
        assert!(matches!(stale, Err(CatalogError::StaleVersion { expected: 2, current: 1 })), "{stale:?}");

        let query = |cursor| ListQuery {
            category: Some(crate::product::Category::parse("mugs").unwrap()),
            words: vec!["mug".into()],
            limit: 1,
            cursor,
        };
        let page = service::list(&store, &query(None)).await.unwrap();
        let next = service::list(&store, &query(page.next_cursor)).await.unwrap();
        // Two ids of one millisecond sort either way, as in the table.
        let (newer, older) = if second.id > first.id { (second.id, first.id) } else { (first.id, second.id) };
        assert_eq!((page.items[0].id, next.items[0].id, next.next_cursor), (newer, older, None));
        let forged = service::list(&store, &query(Some("e30.AAAA".into()))).await;
        assert!(matches!(forged, Err(CatalogError::BadQuery(_))), "{forged:?}");
        assert_eq!(service::categories(&store).await.unwrap()[0].product_count, 2);
        assert_eq!(store.published().len(), 2);
    }
}
