//! # Ferrocart checkout and orders
//!
//! - [`order`]: the checkout request, the order and its state machine, which follows the
//!   order's shipments and capture after the confirmation.
//! - [`view`]: the order as the API shows it, with its timeline (and, for admins, its flags).
//! - [`pricing`]: totals by configuration (shipping, tax, promotions).
//! - [`returns`]: returns of delivered units, what they pay back, and the refunds and disputes
//!   the order shows.
//! - [`service`]: placement (idempotent per `Idempotency-Key`), order queries and cancellation,
//!   and the saga steps, over the [`service::OrderStore`], [`service::CartReader`] and
//!   [`service::FulfillmentGate`] ports.
//! - [`dynamo`]: the DynamoDB adapter; [`cart_client`]: the cart's `GetCart` query over Lambda;
//!   [`fulfillment_client`]: fulfillment's `HoldForCancel` query over Lambda, asked before a
//!   customer cancel of a confirmed order.
//! - [`api`]: `POST /checkout`, `GET /orders[/{id}]`, `POST /orders/{id}/cancel`,
//!   `POST /orders/{id}/returns`, `GET /admin/orders` (by status or flag), `GET /admin/returns[/{id}]`,
//!   `POST /admin/returns/{id}/receive|reject`, `GET /shipping-methods` (binary `checkout`).
//! - [`events`]: the saga consumer (stock, payment, refund, dispute and fulfillment events) and
//!   timeout sweep (binary `checkout-events`).
//! - `testing` (feature `test-util`): an in-memory [`service::OrderStore`] for unit tests and the
//!   warm benchmark; never linked into the Lambda binaries.

pub mod api;
pub mod cart_client;
pub mod dynamo;
pub mod events;
pub mod fulfillment_client;
mod invoke;
pub mod order;
pub mod pricing;
pub mod returns;
pub mod service;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod view;

use lambda_glue::ConfigError;

/// The checkout functions' configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `CHECKOUT_TABLE`.
    pub table: String,
    pub settings: service::Settings,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let pricing_json = std::env::var("PRICING_CONFIG").ok().filter(|v| !v.trim().is_empty());
        let pricing =
            pricing::PricingConfig::parse(pricing_json.as_deref().unwrap_or(pricing::PricingConfig::DEFAULT)).map_err(
                |e| ConfigError::Invalid { name: "PRICING_CONFIG", value: "(json)".to_owned(), reason: e.to_string() },
            )?;
        let timeout: i64 = lambda_glue::config::parsed_or("ORDER_TIMEOUT_SECONDS", 600)?;
        let return_window_days: u16 = lambda_glue::config::parsed_or("RETURN_WINDOW_DAYS", 30)?;
        Ok(Self {
            table: lambda_glue::config::required("CHECKOUT_TABLE")?,
            settings: service::Settings {
                pricing,
                timeout: time::Duration::seconds(timeout),
                return_window: time::Duration::days(i64::from(return_window_days)),
            },
        })
    }
}
