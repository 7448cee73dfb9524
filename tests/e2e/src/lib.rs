//! Ferrocart's end-to-end tests.
//!
//! Two test binaries drive the whole stack (the real function binaries behind the emulated API
//! Gateway, on a moto of their own) over HTTP:
//! - `tests/shop`: the functional contract of every domain, one module per domain;
//! - `tests/chaos`: the same stack with duplicate deliveries, crashes, paused consumers and
//!   time travel, proving the saga's idempotency and compensations.
//!
//! This library holds what both share: HTTP and event helpers ([`support`]) and shopper
//! journeys ([`flows`]).

// Test helpers fail loudly: a panic is how a test reports.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

pub mod flows;
pub mod support;
