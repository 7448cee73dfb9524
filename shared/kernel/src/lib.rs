//! The Ferrocart domain kernel: the small vocabulary every domain shares.
//!
//! - [`Money`] and [`Currency`]: integer minor units with an ISO 4217 currency and checked
//!   arithmetic. There is no floating point anywhere near a price.
//! - Typed ids ([`ProductId`] and friends, made by [`typed_id!`]), the catalog-wide [`Sku`] and
//!   the [`Warehouse`] code inventory and fulfillment share.
//! - [`inbox`]: the port of the consumer inbox (which events a consumer has taken), shared by
//!   the consumer loop that drives it and the adapter that stores it.
//! - [`page::Page`]: a page of a listing and where the next one starts.
//! - [`Problem`]: an RFC 9457 problem details document. Every domain maps its errors to one of
//!   these in a single place; the Lambda glue turns it into an `application/problem+json` response.
//!
//! Everything here parses instead of validating: a value of these types is valid by construction.

pub mod id;
pub mod inbox;
pub mod money;
pub mod page;
pub mod problem;
#[cfg(feature = "schema")]
mod schema;
pub mod sku;
pub mod warehouse;

pub use id::{CartId, EventId, OrderId, ProductId, RefundId, ReturnId, ShipmentId};
pub use money::{Currency, Money, MoneyError};
pub use problem::{FieldError, Problem, ProblemKind};
pub use sku::{Sku, SkuError};
pub use warehouse::Warehouse;
