//! # Ferrocart cart
//!
//! Customers' carts. A cart holds SKUs and quantities; titles and prices come from the cart's
//! own read model of the catalog, kept current by `ProductChanged` events, so the cart never
//! reads the catalog's table.
//!
//! - [`model`]: the cart, its limits and the priced view a shopper sees (no I/O).
//! - [`service`]: use cases, pricing from the read model and the [`service::CartStore`] port.
//! - [`dynamo`]: the DynamoDB adapter.
//! - [`api`]: `POST /carts`, `GET /carts/{id}`, `PUT`/`DELETE /carts/{id}/items/{sku}` (binary `cart`).
//! - [`events`]: the consumer (binary `cart-events`): `ProductChanged` keeps the read model
//!   current; `OrderPlaced` empties the cart the order came from, unless it changed since.
//! - [`query`]: `GetCart`, invoked directly by checkout to price a cart at placement
//!   (binary `cart-query`).
//! - `testing` (feature `test-util`): an in-memory [`service::CartStore`] for unit tests and the
//!   warm benchmark (`bench/`, feature `warm`); never linked into the Lambda binaries.

pub mod api;
pub mod dynamo;
pub mod events;
pub mod model;
pub mod query;
pub mod service;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;

/// The cart functions' configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `CART_TABLE`.
    pub table: String,
}

impl Config {
    pub fn from_env() -> Result<Self, lambda_glue::ConfigError> {
        Ok(Self { table: lambda_glue::config::required("CART_TABLE")? })
    }
}

/// The store every cart binary uses, built once at cold start.
pub async fn store() -> Result<dynamo::DynamoCarts, lambda_glue::ConfigError> {
    let config = Config::from_env()?;
    let aws = adapters::aws::load_config().await;
    Ok(dynamo::DynamoCarts::new(aws_sdk_dynamodb::Client::new(&aws), config.table))
}
