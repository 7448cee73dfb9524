//! # Ferrocart inventory
//!
//! Stock per SKU per warehouse, and the reservations that hold it for orders.
//!
//! - [`stock`]: the rules: warehouses, stock levels, and [`stock::allocate`], which decides
//!   deterministically which warehouses serve an order.
//! - [`service`]: the use cases and the [`service::InventoryStore`] port.
//! - [`dynamo`]: the DynamoDB adapter; conditional writes keep stock from going negative and
//!   make every event handler idempotent.
//! - [`api`]: `PUT/GET /admin/inventory/{sku}` and `GET /availability` (binary `inventory`).
//! - [`events`]: the saga consumer (binary `inventory-events`): `OrderPlaced` reserves every line
//!   or rejects the order, `OrderConfirmed` commits, `OrderCancelled` releases, `ReturnReceived`
//!   puts returned units back on hand (once per return), and a schedule releases reservations
//!   that were never confirmed within the hold time.
//! - `testing` (feature `test-util`): an in-memory [`service::InventoryStore`] for unit tests and
//!   the warm benchmark (`bench/`, feature `warm`); never linked into the Lambda binaries.

pub mod api;
pub mod dynamo;
pub mod events;
pub mod service;
pub mod stock;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;

/// The inventory functions' configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `INVENTORY_TABLE`.
    pub table: String,
    /// `RESERVATION_HOLD_SECONDS` (default 900): how long an unconfirmed reservation holds stock.
    pub hold: time::Duration,
}

impl Config {
    pub fn from_env() -> Result<Self, lambda_glue::ConfigError> {
        let seconds: i64 = lambda_glue::config::parsed_or("RESERVATION_HOLD_SECONDS", 900)?;
        Ok(Self { table: lambda_glue::config::required("INVENTORY_TABLE")?, hold: time::Duration::seconds(seconds) })
    }
}
