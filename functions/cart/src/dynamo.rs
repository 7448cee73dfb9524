//! The cart table: the one place that knows its key layout.
//!
//! | item        | pk           | sk      | notes                                                |
//! |-------------|--------------|---------|------------------------------------------------------|
//! | cart        | `CART#{id}`  | `CART`  | owner, `lines` map SKU → quantity, version           |
//! | offer       | `SKU#{sku}`  | `OFFER` | read model of the catalog: title, price, active      |
//! | inbox       | `INBOX#{event}` | `INBOX` | events the consumer took; see [`adapters::inbox`] |
//!
//! Carts expire by TTL (`expires_at`) 30 days after their last change; each change pushes the
//! date back. Offers are written under `product_version < :version`, so a late or duplicated
//! `ProductChanged` can never roll a price back.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use adapters::dynamo::{ConditionFailed, Item, Unavailable, batch_get, get_consistent, key};
use domain_events::catalog::{ProductChanged, ProductStatus};
use domain_events::queries::Offer;
use kernel::{CartId, Money, ProductId, Sku};

use crate::service::{Cart, CartStore, MAX_LINES, SkuOffer, StoreError};

/// Abandoned carts are deleted this long after their last change.
const CART_LIFETIME_SECS: i64 = 30 * 24 * 3600;

fn cart_key(id: CartId) -> Item {
    key(format!("CART#{id}"), "CART")
}

fn offer_key(sku: &Sku) -> Item {
    key(format!("SKU#{sku}"), "OFFER")
}

/// The outcome of a read-model write: a failed condition means a newer version of the product
/// was applied already, so this copy is stale and skipped.
fn unless_stale<T, E>(result: Result<T, E>) -> Result<(), StoreError>
where
    E: ConditionFailed + Into<Unavailable>,
{
    match result {
        Ok(_) => Ok(()),
        Err(error) if error.is_condition_failed() => Ok(()),
        Err(error) => Err(error.into().into()),
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct CartRecord {
    pk: String,
    sk: String,
    cart_id: CartId,
    owner: String,
    lines: BTreeMap<Sku, u32>,
    version: u64,
    updated_at: i64,
    expires_at: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct OfferRecord {
    pk: String,
    sk: String,
    sku: Sku,
    product_id: ProductId,
    title: String,
    category: String,
    unit_price: Money,
    active: bool,
    product_version: u64,
}

/// The DynamoDB implementation of [`CartStore`].
#[derive(Debug, Clone)]
pub struct DynamoCarts {
    client: Client,
    table: String,
}

impl DynamoCarts {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }
}

impl CartStore for DynamoCarts {
    async fn create(&self, cart: &Cart) -> Result<(), StoreError> {
        let record = CartRecord {
            pk: format!("CART#{}", cart.id),
            sk: "CART".to_owned(),
            cart_id: cart.id,
            owner: cart.owner.clone(),
            lines: cart.lines.clone(),
            version: cart.version,
            updated_at: cart.updated_at.unix_timestamp(),
            expires_at: cart.updated_at.unix_timestamp() + CART_LIFETIME_SECS,
        };
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(serde_dynamo::to_item(record).map_err(Unavailable::from)?))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(Unavailable::from)?;
        Ok(())
    }

    async fn get(&self, id: CartId, owner: &str) -> Result<Option<Cart>, StoreError> {
        let item = get_consistent(&self.client, &self.table, cart_key(id)).await?;
        let Some(item) = item else { return Ok(None) };
        let record: CartRecord = serde_dynamo::from_item(item).map_err(Unavailable::from)?;
        if record.owner != owner {
            return Ok(None);
        }
        Ok(Some(Cart {
            id: record.cart_id,
            owner: record.owner,
            lines: record.lines,
            version: record.version,
            updated_at: OffsetDateTime::from_unix_timestamp(record.updated_at).unwrap_or(OffsetDateTime::UNIX_EPOCH),
        }))
    }

    async fn set_line(
        &self,
        id: CartId,
        owner: &str,
        sku: &Sku,
        quantity: u32,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let stamp = "version = version + :one, updated_at = :now, expires_at = :ttl";
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(cart_key(id)))
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#lines", "lines")
            .expression_attribute_names("#sku", sku.as_str())
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_owned()))
            .expression_attribute_values(":one", AttributeValue::N("1".to_owned()))
            .expression_attribute_values(":now", AttributeValue::N(now.unix_timestamp().to_string()))
            .expression_attribute_values(
                ":ttl",
                AttributeValue::N((now.unix_timestamp() + CART_LIFETIME_SECS).to_string()),
            );
        let request = if quantity == 0 {
            request.update_expression(format!("REMOVE #lines.#sku SET {stamp}")).condition_expression("#owner = :owner")
        } else {
            request
                .update_expression(format!("SET #lines.#sku = :quantity, {stamp}"))
                .expression_attribute_values(":quantity", AttributeValue::N(quantity.to_string()))
                .expression_attribute_values(":max", AttributeValue::N(MAX_LINES.to_string()))
                // `size` of a map counts its entries: a new SKU needs room, an existing one does not.
                .condition_expression("#owner = :owner AND (size(#lines) < :max OR attribute_exists(#lines.#sku))")
        };
        match request.send().await {
            Ok(_) => Ok(()),
            Err(error) if error.is_condition_failed() => match self.get(id, owner).await? {
                None => Err(StoreError::NotFound),
                Some(_) => Err(StoreError::TooManyLines),
            },
            Err(error) => Err(Unavailable::from(error).into()),
        }
    }

    async fn offers(&self, skus: &[Sku]) -> Result<Vec<SkuOffer>, StoreError> {
        if skus.is_empty() {
            return Ok(Vec::new());
        }
        let keys = skus.iter().map(offer_key).collect();
        let items = batch_get(&self.client, &self.table, keys, false).await?;
        let records: Vec<OfferRecord> = serde_dynamo::from_items(items).map_err(Unavailable::from)?;
        Ok(records
            .into_iter()
            .map(|r| SkuOffer {
                sku: r.sku,
                active: r.active,
                offer: Offer {
                    product_id: r.product_id,
                    title: r.title,
                    category: r.category,
                    unit_price: r.unit_price,
                },
            })
            .collect())
    }

    async fn empty_if_unchanged(
        &self,
        id: CartId,
        owner: &str,
        version: u64,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(cart_key(id)))
            .update_expression("SET #lines = :empty, version = version + :one, updated_at = :now")
            .condition_expression("#owner = :owner AND version = :version")
            .expression_attribute_names("#lines", "lines")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":empty", AttributeValue::M(HashMap::new()))
            .expression_attribute_values(":one", AttributeValue::N("1".to_owned()))
            .expression_attribute_values(":now", AttributeValue::N(now.unix_timestamp().to_string()))
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_owned()))
            .expression_attribute_values(":version", AttributeValue::N(version.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(error) if error.is_condition_failed() => Ok(false),
            Err(error) => Err(Unavailable::from(error).into()),
        }
    }

    async fn apply(&self, change: &ProductChanged) -> Result<(), StoreError> {
        let active = change.status == ProductStatus::Active;
        let version = AttributeValue::N(change.version.to_string());
        let product = AttributeValue::S(change.product_id.to_string());
        for variant in &change.variants {
            let record = OfferRecord {
                pk: format!("SKU#{}", variant.sku),
                sk: "OFFER".to_owned(),
                sku: variant.sku.clone(),
                product_id: change.product_id,
                title: change.title.clone(),
                category: change.category.clone(),
                unit_price: variant.price,
                active,
                product_version: change.version,
            };
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(serde_dynamo::to_item(record).map_err(Unavailable::from)?))
                .condition_expression(
                    "attribute_not_exists(pk) OR product_id <> :product OR product_version < :version",
                )
                .expression_attribute_values(":product", product.clone())
                .expression_attribute_values(":version", version.clone())
                .send()
                .await;
            unless_stale(result)?;
        }
        for sku in &change.removed_skus {
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(offer_key(sku)))
                .update_expression("SET active = :false, product_version = :version")
                .condition_expression("product_id = :product AND product_version < :version")
                .expression_attribute_values(":false", AttributeValue::Bool(false))
                .expression_attribute_values(":product", product.clone())
                .expression_attribute_values(":version", version.clone())
                .send()
                .await;
            unless_stale(result)?;
        }
        Ok(())
    }
}
