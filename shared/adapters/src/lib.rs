//! AWS adapters every Ferrocart domain shares.
//!
//! - [`aws`]: the SDK configuration, loaded once per cold start. `AWS_ENDPOINT_URL` (set by the
//!   local cloud) points every client at the emulator; in AWS it is unset.
//! - [`cursor`]: opaque pagination cursors that wrap a DynamoDB `LastEvaluatedKey` and refuse
//!   to be replayed against a different query.
//! - [`dynamo`]: transaction outcome classification and batch reads with retry of unprocessed
//!   keys.
//! - [`inbox`]: the record of events a domain's consumer has taken, keyed by event id (with
//!   TTL), that makes duplicate deliveries no-ops.
//! - [`outbox`]: the outbox record a domain writes in the same transaction as its state change,
//!   which the relay publishes from the table's stream.
//!
//! Key formats are *not* here: each table's key layout lives in exactly one module of the
//! domain that owns the table.

pub mod aws;
pub mod cursor;
pub mod dynamo;
pub mod inbox;
pub mod outbox;

pub use cursor::{Cursor, CursorError};
