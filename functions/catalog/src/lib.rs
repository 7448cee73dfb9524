//! # Ferrocart catalog
//!
//! Products, their variants and prices, behind API Gateway (`lambda_http`), in the catalog's own
//! DynamoDB table.
//!
//! - [`product`]: the product model and its rules (parse, don't validate).
//! - [`service`]: the use cases and the [`service::CatalogStore`] port.
//! - [`dynamo`]: the DynamoDB adapter, the only module that knows the table's key layout.
//! - [`api`]: the HTTP handler, dispatching on the route keys declared in template.yaml (binary
//!   `catalog`, `src/bin/api.rs`).
//! - [`Config`]: what the function reads from its environment at cold start.
//! - `testing` (feature `test-util`): an in-memory [`service::CatalogStore`] for unit tests and
//!   the warm benchmark (`bench/`, feature `warm`); never linked into the Lambda binary.
//!
//! Shoppers see only `active` products; admins (JWT group `admin`) create, update with
//! optimistic concurrency (`If-Match`), and archive them. SKUs and slugs are unique across the
//! catalog, enforced by conditional writes in the same transaction as the product.

pub mod api;
pub mod dynamo;
pub mod product;
pub mod service;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;

/// The catalog function's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `CATALOG_TABLE`: the catalog table's name (`!Ref CatalogTable` in template.yaml).
    pub table: String,
    /// `CURSOR_SECRET_ARN`: the Secrets Manager secret listing cursors are signed with
    /// (`!Ref CursorSigningSecret`), read once at cold start.
    pub cursor_secret_arn: String,
}

impl Config {
    pub fn from_env() -> Result<Self, lambda_glue::ConfigError> {
        Ok(Self {
            table: lambda_glue::config::required("CATALOG_TABLE")?,
            cursor_secret_arn: lambda_glue::config::required("CURSOR_SECRET_ARN")?,
        })
    }
}
