//! End-to-end tests: the real function binaries behind the emulated API Gateway, on moto,
//! driven over HTTP. One binary so the stack starts once; one module per domain.

// Test helpers may fail loudly: a panic is how a test reports.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod authorization;
mod cart;
mod catalog;
mod checkout;
mod events;
mod fulfillment;
mod inbox;
mod inventory;
mod observability;
mod orders;
mod refunds;
mod returns;
mod three_d_secure;
