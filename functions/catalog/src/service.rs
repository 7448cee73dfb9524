//! Catalog use cases and the storage port they need.
//!
//! Each function here is one thing an API route does; the handler parses the request, calls one
//! of these, and maps the result. Rules live here, storage lives behind [`CatalogStore`].

use time::OffsetDateTime;

use adapters::CursorError;
use domain_events::catalog::{ProductChanged, ProductStatus, VariantSnapshot};
use domain_events::{Envelope, Event, Metadata};
use kernel::{FieldError, ProductId, Sku};

use crate::product::{Category, Product, ProductInput, Slug, Status};

/// Largest and default page sizes of `GET /products`.
pub const MAX_LIMIT: usize = 100;
pub const DEFAULT_LIMIT: usize = 20;

/// What a listing asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub category: Option<Category>,
    /// Search words (see [`crate::product::keywords`]); every word must match.
    pub words: Vec<String>,
    pub limit: usize,
    pub cursor: Option<String>,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub items: Vec<Product>,
    pub next_cursor: Option<String>,
}

/// A category with the number of active products in it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CategorySummary {
    pub slug: String,
    pub product_count: u64,
}

/// What can go wrong in storage, in business terms.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("SKU {} already belongs to another product", sku_list(.0))]
    SkusTaken(Vec<Sku>),
    #[error("slug {0} already belongs to another product")]
    SlugTaken(Slug),
    #[error("the product changed since it was read")]
    VersionConflict,
    #[error(transparent)]
    Cursor(#[from] CursorError),
    /// The cursor signing keys could not be read: listings fail, nothing else does.
    #[error(transparent)]
    Keys(#[from] adapters::KeysUnavailable),
    #[error("catalog storage failed")]
    Unavailable(#[from] adapters::dynamo::Unavailable),
}

/// The storage port. Every write is one atomic transaction that also maintains SKU and slug
/// uniqueness and the listing indexes.
#[allow(async_fn_in_trait)]
pub trait CatalogStore {
    /// Stores a new product and its event; fails if its SKUs or slug are taken.
    async fn create(&self, product: &Product, event: &Envelope) -> Result<(), StoreError>;
    /// Replaces `old` by `new` with its event, only if the stored version is still `old.version`.
    async fn replace(&self, old: &Product, new: &Product, event: &Envelope) -> Result<(), StoreError>;
    async fn get(&self, id: ProductId) -> Result<Option<Product>, StoreError>;
    /// Active products, newest first.
    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError>;
    /// Categories with at least one active product, by slug.
    async fn categories(&self) -> Result<Vec<CategorySummary>, StoreError>;
}

/// Why a use case did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("invalid product")]
    Invalid(Vec<FieldError>),
    #[error("invalid query")]
    BadQuery(FieldError),
    #[error("no product {0}")]
    NotFound(String),
    #[error("{detail}")]
    Taken { errors: Vec<FieldError>, detail: String },
    #[error("If-Match is required to update a product")]
    PreconditionRequired,
    #[error("version {expected} is stale; the product is at version {current}")]
    StaleVersion { expected: u64, current: u64 },
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for CatalogError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::SkusTaken(_) | StoreError::SlugTaken(_) => {
                Self::Taken { errors: Vec::new(), detail: error.to_string() }
            }
            StoreError::Cursor(cursor) => Self::BadQuery(FieldError::new("query:cursor", cursor.to_string())),
            other => Self::Store(other),
        }
    }
}

/// The `If-Match` precondition of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// No `If-Match` header.
    Absent,
    /// `If-Match: *`: any current version.
    Any,
    /// `If-Match: "3"`: exactly this version.
    Version(u64),
}

/// Points a uniqueness conflict at the fields of `details` that caused it.
fn explain(details: &crate::product::ProductDetails, error: StoreError) -> CatalogError {
    let errors = match &error {
        StoreError::SkusTaken(skus) => details
            .variants
            .iter()
            .enumerate()
            .filter(|(_, variant)| skus.contains(&variant.sku))
            .map(|(index, variant)| {
                FieldError::new(
                    format!("/variants/{index}/sku"),
                    format!("SKU {} already belongs to another product", variant.sku),
                )
            })
            .collect(),
        StoreError::SlugTaken(slug) => {
            vec![FieldError::new("/slug", format!("slug {slug} already belongs to another product"))]
        }
        _ => return error.into(),
    };
    CatalogError::Taken { errors, detail: error.to_string() }
}

fn sku_list(skus: &[Sku]) -> String {
    skus.iter().map(Sku::to_string).collect::<Vec<_>>().join(", ")
}

/// The event announcing `product`'s new state to read models (the cart's prices).
fn product_changed(previous: Option<&Product>, product: &Product) -> Envelope {
    let removed_skus = previous
        .map(|old| old.skus().difference(&product.skus()).map(|sku| (*sku).clone()).collect())
        .unwrap_or_default();
    let status = match product.details.status {
        Status::Draft => ProductStatus::Draft,
        Status::Active => ProductStatus::Active,
        Status::Archived => ProductStatus::Archived,
    };
    Envelope::new(
        Metadata::new(product.id.to_string()),
        Event::ProductChanged(ProductChanged {
            product_id: product.id,
            version: product.version,
            status,
            title: product.details.title.clone(),
            category: product.details.category.to_string(),
            variants: product
                .details
                .variants
                .iter()
                .map(|variant| VariantSnapshot { sku: variant.sku.clone(), price: variant.price })
                .collect(),
            removed_skus,
        }),
    )
}

/// Creates a product at version 1.
pub async fn create(
    store: &impl CatalogStore,
    input: ProductInput,
    now: OffsetDateTime,
) -> Result<Product, CatalogError> {
    let details = input.parse().map_err(CatalogError::Invalid)?;
    let product = Product { id: ProductId::new(), details, version: 1, created_at: now, updated_at: now };
    store.create(&product, &product_changed(None, &product)).await.map_err(|e| explain(&product.details, e))?;
    tracing::info!(product_id = %product.id, "product created");
    Ok(product)
}

/// Replaces a product's details if the caller saw its current version.
pub async fn update(
    store: &impl CatalogStore,
    id: ProductId,
    precondition: Precondition,
    input: ProductInput,
    now: OffsetDateTime,
) -> Result<Product, CatalogError> {
    if precondition == Precondition::Absent {
        return Err(CatalogError::PreconditionRequired);
    }
    let details = input.parse().map_err(CatalogError::Invalid)?;
    let old = load(store, id).await?;
    write_new_version(store, old, precondition, |product| product.details = details, now).await
}

/// Archives a product: it disappears from the shop but keeps its SKUs and history.
/// Archiving an archived product changes nothing. `If-Match` is optional here.
pub async fn archive(
    store: &impl CatalogStore,
    id: ProductId,
    precondition: Precondition,
    now: OffsetDateTime,
) -> Result<Product, CatalogError> {
    let old = load(store, id).await?;
    if old.details.status == Status::Archived {
        return Ok(old);
    }
    write_new_version(store, old, precondition, |product| product.details.status = Status::Archived, now).await
}

async fn write_new_version(
    store: &impl CatalogStore,
    old: Product,
    precondition: Precondition,
    change: impl FnOnce(&mut Product),
    now: OffsetDateTime,
) -> Result<Product, CatalogError> {
    let expected = match precondition {
        Precondition::Version(version) => version,
        Precondition::Any | Precondition::Absent => old.version,
    };
    if old.version != expected {
        return Err(CatalogError::StaleVersion { expected, current: old.version });
    }
    let mut new = old.clone();
    change(&mut new);
    new.version = old.version + 1;
    new.updated_at = now;
    match store.replace(&old, &new, &product_changed(Some(&old), &new)).await {
        Ok(()) => {
            tracing::info!(product_id = %new.id, version = new.version, "product updated");
            Ok(new)
        }
        // Someone else wrote between our read and our write: report their version.
        Err(StoreError::VersionConflict) => {
            let current = store.get(old.id).await?.map_or(old.version + 1, |p| p.version);
            Err(CatalogError::StaleVersion { expected, current })
        }
        Err(other) => Err(explain(&new.details, other)),
    }
}

async fn load(store: &impl CatalogStore, id: ProductId) -> Result<Product, CatalogError> {
    store.get(id).await?.ok_or_else(|| CatalogError::NotFound(id.to_string()))
}

/// Any product, for admins.
pub async fn get_any(store: &impl CatalogStore, id: ProductId) -> Result<Product, CatalogError> {
    load(store, id).await
}

/// An active product, for shoppers; drafts and archived products are not found.
pub async fn get_active(store: &impl CatalogStore, id: ProductId) -> Result<Product, CatalogError> {
    let product = load(store, id).await?;
    if product.is_active() { Ok(product) } else { Err(CatalogError::NotFound(id.to_string())) }
}

pub async fn list(store: &impl CatalogStore, query: &ListQuery) -> Result<Page, CatalogError> {
    Ok(store.list(query).await?)
}

pub async fn categories(store: &impl CatalogStore) -> Result<Vec<CategorySummary>, CatalogError> {
    Ok(store.categories().await?)
}
