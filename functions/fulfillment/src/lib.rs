//! # Ferrocart fulfillment
//!
//! Shipments: one per warehouse that gives units to a confirmed order, dispatched and delivered
//! by staff through the admin API, cancelled with their order while they have not left.
//!
//! - [`model`]: the shipment, its state machine ([`model::Shipment::apply`]: every step in, a
//!   decision out) and when an order's shipments are created ([`model::OrderFacts::next`],
//!   [`model::plan`]), all without I/O.
//! - [`service`]: the use cases over the [`service::FulfillmentStore`] port.
//! - [`dynamo`]: the DynamoDB adapter; the facts commute and the creation is one conditional
//!   transaction, so shipments exist exactly once whatever the order and number of deliveries.
//! - [`api`]: `GET /admin/shipments[/{id}]`, `POST /admin/shipments/{id}/dispatch` and
//!   `/deliver` (binary `fulfillment`).
//! - [`events`]: the saga consumer (binary `fulfillment-events`): `OrderConfirmed` and
//!   `StockCommitted` create the shipments once both are in, `OrderCancelled` cancels the
//!   pending ones.
//! - [`query`]: `HoldForCancel`, invoked directly by checkout before a customer cancel (binary
//!   `fulfillment-query`): no dispatch while the hold lasts, or "already dispatched".
//! - `testing` (feature `test-util`): an in-memory [`service::FulfillmentStore`] for unit tests
//!   and the warm benchmark (`bench/`, feature `warm`); never linked into the Lambda binaries.

pub mod api;
pub mod dynamo;
pub mod events;
pub mod model;
pub mod query;
pub mod service;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;

/// The fulfillment functions' configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `FULFILLMENT_TABLE`.
    pub table: String,
}

impl Config {
    pub fn from_env() -> Result<Self, lambda_glue::ConfigError> {
        Ok(Self { table: lambda_glue::config::required("FULFILLMENT_TABLE")? })
    }
}
