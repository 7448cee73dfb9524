//! The catalog table in DynamoDB: the one place that knows its key layout.
//!
//! | item              | pk                | sk           | notes                                   |
//! |-------------------|-------------------|--------------|-----------------------------------------|
//! | product           | `PRODUCT#{id}`    | `PRODUCT`    | the document; `ByCategory`/`Active` GSI keys only while active |
//! | SKU claim         | `SKU#{sku}`       | `SKU`        | makes a SKU unique across the catalog   |
//! | slug claim        | `SLUG#{slug}`     | `SLUG`       | makes a slug unique across the catalog  |
//! | keyword entry     | `KW#{word}`       | `P#{id}`     | one per search word of an active product |
//! | category counter  | `CATEGORIES`      | `{category}` | active products per category            |
//!
//! Every write is one `TransactWriteItems`: the product, its claims (conditional puts, so
//! uniqueness is enforced by DynamoDB and never by a read-then-write), its keyword entries, the
//! category counters and its `ProductChanged` event in the outbox ([`adapters::outbox`]) change
//! together or not at all. Listings query the two sparse GSIs or
//! the keyword entries, never Scan. Ids are ULIDs, so sorting by `P#{id}` descending lists the
//! newest products first.

use std::collections::{BTreeSet, HashMap};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};
use serde::{Deserialize, Serialize};

use adapters::dynamo::{Item, TransactionError, Unavailable, batch_get, get_consistent, key, query_partition};
use adapters::retry::{Attempt, until_won};
use adapters::{Cursor, ListingKeys, outbox};
use domain_events::Envelope;
use kernel::{ProductId, Sku};

use crate::product::{Product, Slug};
use crate::service::{CatalogStore, CategorySummary, ListQuery, Page, StoreError};

const PK: &str = "pk";
const SK: &str = "sk";
const BY_CATEGORY: &str = "ByCategory";
const ACTIVE: &str = "Active";
const GSI1_KEYS: [&str; 4] = [PK, SK, "gsi1pk", "gsi1sk"];
const GSI2_KEYS: [&str; 4] = [PK, SK, "gsi2pk", "gsi2sk"];
const TABLE_KEYS: [&str; 2] = [PK, SK];
const ACTIVE_PARTITION: &str = "ACTIVE";
const CATEGORIES_PARTITION: &str = "CATEGORIES";

/// Query pages we read to fill one filtered listing page before handing back a cursor.
const MAX_QUERY_PAGES: usize = 10;

fn product_pk(id: ProductId) -> String {
    format!("PRODUCT#{id}")
}
fn sku_pk(sku: &Sku) -> String {
    format!("SKU#{sku}")
}
fn slug_pk(slug: &Slug) -> String {
    format!("SLUG#{slug}")
}
fn keyword_pk(word: &str) -> String {
    format!("KW#{word}")
}
fn listing_sk(id: ProductId) -> String {
    format!("P#{id}")
}
fn category_pk(category: &str) -> String {
    format!("CAT#{category}")
}

/// A product as stored: the document plus its keys.
#[derive(Debug, Serialize, Deserialize)]
struct ProductRecord {
    pk: String,
    sk: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    gsi1pk: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    gsi1sk: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    gsi2pk: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    gsi2sk: Option<String>,
    #[serde(flatten)]
    product: Product,
}

impl ProductRecord {
    fn new(product: &Product) -> Self {
        let active = product.is_active();
        let listed = |value: String| active.then_some(value);
        Self {
            pk: product_pk(product.id),
            sk: "PRODUCT".to_owned(),
            gsi1pk: listed(category_pk(product.details.category.as_str())),
            gsi1sk: listed(listing_sk(product.id)),
            gsi2pk: listed(ACTIVE_PARTITION.to_owned()),
            gsi2sk: listed(listing_sk(product.id)),
            product: product.clone(),
        }
    }
}

/// A SKU or slug claim: the item whose existence makes the value taken.
#[derive(Debug, Serialize)]
struct ClaimRecord<'a> {
    pk: String,
    sk: &'static str,
    product_id: &'a ProductId,
}

/// A search entry: found by `pk = KW#{word}`, filtered by category and the other words.
#[derive(Debug, Serialize, Deserialize)]
struct KeywordRecord {
    pk: String,
    sk: String,
    product_id: ProductId,
    category: String,
    /// All the product's words, space-delimited and space-padded, so `contains(words, " w ")`
    /// matches whole words only.
    words: String,
}

#[derive(Debug, Deserialize)]
struct CategoryRecord {
    sk: String,
    product_count: u64,
}

/// What each action of a transaction is, to explain a cancellation.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    Product,
    Sku(Sku),
    Slug(Slug),
    Index,
}

/// A catalog transaction: every action labelled with what its condition protects.
type Transaction = adapters::dynamo::Transaction<Action>;

/// The DynamoDB implementation of [`CatalogStore`].
#[derive(Debug, Clone)]
pub struct DynamoCatalog {
    client: Client,
    table: String,
    cursor_keys: ListingKeys,
}

impl DynamoCatalog {
    /// `cursor_keys` sign the listings' cursors and check the ones clients send back; only
    /// listings await them (the API's are read from their secret by the first listing).
    pub fn new(client: Client, table: impl Into<String>, cursor_keys: impl Into<ListingKeys>) -> Self {
        Self { client, table: table.into(), cursor_keys: cursor_keys.into() }
    }

    /// A put, optionally only where no item has this key yet.
    fn put(&self, item: Item, only_if_new: bool) -> Result<TransactWriteItem, StoreError> {
        let mut put = Put::builder().table_name(&self.table).set_item(Some(item));
        if only_if_new {
            put = put.condition_expression("attribute_not_exists(pk)");
        }
        Ok(TransactWriteItem::builder().put(put.build().map_err(Unavailable::from)?).build())
    }

    /// A put that only succeeds while the stored product is at the version we read.
    fn put_versioned(&self, item: Item, values: Item) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("#version = :expected")
            .expression_attribute_names("#version", "version")
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(Unavailable::from)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn claim(
        &self,
        tx: &mut Transaction,
        pk: String,
        sk: &'static str,
        id: &ProductId,
        action: Action,
    ) -> Result<(), StoreError> {
        let item = serde_dynamo::to_item(ClaimRecord { pk, sk, product_id: id }).map_err(Unavailable::from)?;
        tx.push(action, self.put(item, true)?);
        Ok(())
    }

    fn release(&self, tx: &mut Transaction, pk: String, sk: &str, id: ProductId) -> Result<(), StoreError> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .condition_expression("product_id = :id")
            .expression_attribute_values(":id", AttributeValue::S(id.to_string()))
            .build()
            .map_err(Unavailable::from)?;
        tx.push(Action::Index, TransactWriteItem::builder().delete(delete).build());
        Ok(())
    }

    fn index_keywords(&self, tx: &mut Transaction, product: &Product) -> Result<(), StoreError> {
        let words = product.keywords();
        let padded = format!(" {} ", words.iter().cloned().collect::<Vec<_>>().join(" "));
        for word in &words {
            let record = KeywordRecord {
                pk: keyword_pk(word),
                sk: listing_sk(product.id),
                product_id: product.id,
                category: product.details.category.to_string(),
                words: padded.clone(),
            };
            tx.push(Action::Index, self.put(serde_dynamo::to_item(record).map_err(Unavailable::from)?, false)?);
        }
        Ok(())
    }

    fn count_category(&self, tx: &mut Transaction, category: &str, delta: i64) -> Result<(), StoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(CATEGORIES_PARTITION.to_owned(), category)))
            .update_expression("ADD product_count :delta")
            .expression_attribute_values(":delta", AttributeValue::N(delta.to_string()))
            .build()
            .map_err(Unavailable::from)?;
        tx.push(Action::Index, TransactWriteItem::builder().update(update).build());
        Ok(())
    }

    /// Adds the event to the transaction's outbox write.
    fn publish(&self, tx: &mut Transaction, event: &Envelope) -> Result<(), StoreError> {
        tx.push(Action::Index, outbox::put(&self.table, event).map_err(Unavailable::from)?);
        Ok(())
    }

    /// Runs the transaction, trying it again while it only conflicts with another transaction on
    /// the same items; a failed condition is named by what its action protects.
    async fn commit(&self, tx: Transaction) -> Result<(), StoreError> {
        let tx = &tx;
        let committed = until_won(|| async move {
            match tx.commit(&self.client).await {
                Ok(()) => Ok(Attempt::Done(())),
                Err(TransactionError::Conflict) => Ok(Attempt::Lost),
                Err(failure) => Err(failure),
            }
        })
        .await;
        let failed = match committed {
            Ok(Some(())) => return Ok(()),
            Ok(None) => return Err(Unavailable::because("the transaction kept conflicting").into()),
            Err(TransactionError::ConditionsFailed(failed)) => failed,
            Err(other) => return Err(Unavailable::from(other).into()),
        };
        // DynamoDB reports a reason per action, so every taken SKU can be named at once.
        if failed.contains(&Action::Product) {
            return Err(StoreError::VersionConflict);
        }
        let taken: Vec<Sku> = failed
            .iter()
            .filter_map(|action| match action {
                Action::Sku(sku) => Some(sku.clone()),
                _ => None,
            })
            .collect();
        if !taken.is_empty() {
            return Err(StoreError::SkusTaken(taken));
        }
        if let Some(Action::Slug(slug)) = failed.iter().find(|action| matches!(action, Action::Slug(_))) {
            return Err(StoreError::SlugTaken(slug.clone()));
        }
        Err(Unavailable::from(TransactionError::ConditionsFailed(failed)).into())
    }

    /// Runs a query page by page until `limit` items (plus one, to know whether more exist)
    /// pass, returning them and the cursor after the last one returned.
    async fn collect(
        &self,
        query: impl Fn() -> QueryFluentBuilder,
        scope: &str,
        key_names: &[&str],
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<Item>, Option<String>), StoreError> {
        let keys = self.cursor_keys.get().await?;
        let mut start = match cursor {
            Some(raw) => Some(Cursor::decode(raw, scope, key_names, keys)?.start_key()),
            None => None,
        };
        let mut items = Vec::with_capacity(limit + 1);
        for _ in 0..MAX_QUERY_PAGES {
            let output = query()
                .set_exclusive_start_key(start.take())
                .scan_index_forward(false)
                .send()
                .await
                .map_err(Unavailable::from)?;
            items.extend(output.items.unwrap_or_default());
            if items.len() > limit {
                items.truncate(limit);
                let next = items.last().and_then(|last| Cursor::after(scope, last, key_names));
                return Ok((items, next.map(|c| c.encode(keys))));
            }
            match output.last_evaluated_key {
                Some(last) => start = Some(last),
                None => return Ok((items, None)),
            }
        }
        // The filter let few items through; hand back what we have and where we stopped.
        let next = start.as_ref().and_then(|last| Cursor::after(scope, last, key_names));
        Ok((items, next.map(|c| c.encode(keys))))
    }

    async fn list_by_index(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let (index, partition, scope, keys) = match &query.category {
            Some(category) => (BY_CATEGORY, category_pk(category.as_str()), format!("category={category}"), &GSI1_KEYS),
            None => (ACTIVE, ACTIVE_PARTITION.to_owned(), "active".to_owned(), &GSI2_KEYS),
        };
        let pk_name = if index == BY_CATEGORY { "gsi1pk" } else { "gsi2pk" };
        let build = || {
            self.client
                .query()
                .table_name(&self.table)
                .index_name(index)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", pk_name)
                .expression_attribute_values(":pk", AttributeValue::S(partition.clone()))
                .limit(page_size(query.limit))
        };
        let (items, next_cursor) = self.collect(build, &scope, keys, query.limit, query.cursor.as_deref()).await?;
        let records: Vec<ProductRecord> = serde_dynamo::from_items(items).map_err(Unavailable::from)?;
        Ok(Page { items: records.into_iter().map(|r| r.product).collect(), next_cursor })
    }

    async fn list_by_keywords(&self, query: &ListQuery) -> Result<Page, StoreError> {
        // Query the longest word's entries (likely the rarest) and filter by the rest.
        let mut words = query.words.clone();
        words.sort_by_key(|word| std::cmp::Reverse(word.len()));
        let Some((lead, rest)) = words.split_first() else {
            return Ok(Page { items: Vec::new(), next_cursor: None });
        };
        let mut sorted: Vec<&String> = query.words.iter().collect();
        sorted.sort();
        let category = query.category.as_ref().map(|c| c.to_string());
        let scope = format!("words={sorted:?};category={}", category.as_deref().unwrap_or(""));
        let mut filters = Vec::new();
        let mut values: Item = HashMap::from([(":pk".to_owned(), AttributeValue::S(keyword_pk(lead)))]);
        for (index, word) in rest.iter().enumerate() {
            filters.push(format!("contains(words, :w{index})"));
            values.insert(format!(":w{index}"), AttributeValue::S(format!(" {word} ")));
        }
        if let Some(category) = &category {
            filters.push("category = :category".to_owned());
            values.insert(":category".to_owned(), AttributeValue::S(category.clone()));
        }
        let build = || {
            let builder = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .set_expression_attribute_values(Some(values.clone()))
                .limit(page_size(query.limit));
            if filters.is_empty() { builder } else { builder.filter_expression(filters.join(" AND ")) }
        };
        let (items, next_cursor) =
            self.collect(build, &scope, &TABLE_KEYS, query.limit, query.cursor.as_deref()).await?;
        let entries: Vec<KeywordRecord> = serde_dynamo::from_items(items).map_err(Unavailable::from)?;
        let keys = entries.iter().map(|entry| key(product_pk(entry.product_id), "PRODUCT")).collect();
        let found = batch_get(&self.client, &self.table, keys, false).await?;
        let mut products: HashMap<ProductId, Product> = serde_dynamo::from_items::<_, ProductRecord>(found)
            .map_err(Unavailable::from)?
            .into_iter()
            .map(|record| (record.product.id, record.product))
            .collect();
        // BatchGetItem returns items in any order; keep the index order, and only active ones.
        let items =
            entries.iter().filter_map(|entry| products.remove(&entry.product_id)).filter(Product::is_active).collect();
        Ok(Page { items, next_cursor })
    }
}

/// Items to ask DynamoDB for per query page: one more than the page so we know if more exist.
fn page_size(limit: usize) -> i32 {
    i32::try_from(limit + 1).unwrap_or(i32::MAX)
}

impl CatalogStore for DynamoCatalog {
    async fn create(&self, product: &Product, event: &Envelope) -> Result<(), StoreError> {
        let mut tx = Transaction::new();
        let item = serde_dynamo::to_item(ProductRecord::new(product)).map_err(Unavailable::from)?;
        tx.push(Action::Product, self.put(item, true)?);
        for sku in product.skus() {
            self.claim(&mut tx, sku_pk(sku), "SKU", &product.id, Action::Sku(sku.clone()))?;
        }
        let slug = &product.details.slug;
        self.claim(&mut tx, slug_pk(slug), "SLUG", &product.id, Action::Slug(slug.clone()))?;
        if product.is_active() {
            self.index_keywords(&mut tx, product)?;
            self.count_category(&mut tx, product.details.category.as_str(), 1)?;
        }
        self.publish(&mut tx, event)?;
        self.commit(tx).await
    }

    async fn replace(&self, old: &Product, new: &Product, event: &Envelope) -> Result<(), StoreError> {
        let mut tx = Transaction::new();
        let item = serde_dynamo::to_item(ProductRecord::new(new)).map_err(Unavailable::from)?;
        let values = HashMap::from([(":expected".to_owned(), AttributeValue::N(old.version.to_string()))]);
        tx.push(Action::Product, self.put_versioned(item, values)?);

        let (old_skus, new_skus) = (old.skus(), new.skus());
        for sku in old_skus.difference(&new_skus) {
            self.release(&mut tx, sku_pk(sku), "SKU", old.id)?;
        }
        for sku in new_skus.difference(&old_skus) {
            self.claim(&mut tx, sku_pk(sku), "SKU", &new.id, Action::Sku((*sku).clone()))?;
        }
        let (old_slug, new_slug) = (&old.details.slug, &new.details.slug);
        if old_slug != new_slug {
            self.release(&mut tx, slug_pk(old_slug), "SLUG", old.id)?;
            self.claim(&mut tx, slug_pk(new_slug), "SLUG", &new.id, Action::Slug(new_slug.clone()))?;
        }

        let words_of = |p: &Product| {
            if p.is_active() { p.keywords() } else { BTreeSet::new() }
        };
        let (old_words, new_words) = (words_of(old), words_of(new));
        for word in old_words.difference(&new_words) {
            let delete = Delete::builder()
                .table_name(&self.table)
                .set_key(Some(key(keyword_pk(word), listing_sk(old.id))))
                .build()
                .map_err(Unavailable::from)?;
            tx.push(Action::Index, TransactWriteItem::builder().delete(delete).build());
        }
        if new.is_active() {
            self.index_keywords(&mut tx, new)?;
        }

        let listed_in = |p: &Product| p.is_active().then(|| p.details.category.to_string());
        let (old_listed, new_listed) = (listed_in(old), listed_in(new));
        if old_listed != new_listed {
            if let Some(category) = &old_listed {
                self.count_category(&mut tx, category, -1)?;
            }
            if let Some(category) = &new_listed {
                self.count_category(&mut tx, category, 1)?;
            }
        }
        self.publish(&mut tx, event)?;
        self.commit(tx).await
    }

    async fn get(&self, id: ProductId) -> Result<Option<Product>, StoreError> {
        let item = get_consistent(&self.client, &self.table, key(product_pk(id), "PRODUCT")).await?;
        let product = item.map(|item| serde_dynamo::from_item::<_, ProductRecord>(item).map(|record| record.product));
        Ok(product.transpose().map_err(Unavailable::from)?)
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        if query.words.is_empty() { self.list_by_index(query).await } else { self.list_by_keywords(query).await }
    }

    async fn categories(&self) -> Result<Vec<CategorySummary>, StoreError> {
        let items = query_partition(&self.client, &self.table, CATEGORIES_PARTITION, false).await?;
        let records: Vec<CategoryRecord> = serde_dynamo::from_items(items).map_err(Unavailable::from)?;
        Ok(records
            .into_iter()
            .filter(|record| record.product_count > 0)
            .map(|record| CategorySummary { slug: record.sk, product_count: record.product_count })
            .collect())
    }
}
