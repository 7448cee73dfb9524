//! AWS adapters every Ferrocart domain shares.
//!
//! - [`aws`]: the SDK configuration, loaded once per cold start from the environment only
//!   (Lambda's credentials and region; no profile files, SSO or metadata endpoints: the trade is
//!   in the module). `AWS_ENDPOINT_URL` (set by the local cloud) points every client at the
//!   emulator; in AWS it is unset. Every client shares
//!   one HTTPS client trusting root certificates compiled into the binary, not the OS store's
//!   files (see the module for the trade).
//! - [`http`]: that client, ours rather than the SDK's: HTTP/1.1 only (no h2 linked), rustls on
//!   ring, Mozilla's roots as compiled-in trust anchors, the SDK's timeouts, error kinds and
//!   connection poisoning; payment's Stripe client sends through it too.
//! - [`cursor`]: opaque pagination cursors that wrap a DynamoDB `LastEvaluatedKey`, signed
//!   with HMAC-SHA256 under a key from the stack ([`CursorKeys`]), so an edited or forged cursor
//!   is refused before any I/O, and refused too when replayed against a different query.
//! - [`dynamo`]: the DynamoDB toolkit: keys, the storage error, typed condition failures,
//!   labelled transactions, shared reads.
//! - [`retry`]: the one policy for retrying a lost race (exponential backoff, random jitter per
//!   attempt).
//! - [`inbox`]: the record of events a domain's consumer has handled, keyed by event id (with
//!   TTL), one write per event, that makes later deliveries of a handled event no-ops.
//! - [`outbox`]: the outbox record a domain writes in the same transaction as its state change,
//!   which the relay publishes from the table's stream.
//! - [`shard`]: sparse index keys spread over [`shard::SHARDS`] partitions (`HELD#{k}`), with
//!   the sweep that reads every shard and the listing that merges them in sort-key order.
//! - [`secrets`]: Secrets Manager values read once per cold start (`AWSCURRENT`, and
//!   `AWSPREVIOUS` for keys that must survive a rotation), never printed; read when an invocation first needs them
//!   ([`secrets::OnFirstUse`]), not at init; a failed read is tried again after a backoff that
//!   grows to a few seconds.
//!
//! Key formats are *not* here: each table's key layout lives in exactly one module of the
//! domain that owns the table.

pub mod aws;
pub mod cursor;
pub mod dynamo;
pub mod http;
pub mod inbox;
pub mod outbox;
pub mod retry;
pub mod secrets;
pub mod shard;

pub use cursor::{Cursor, CursorError, CursorKeys, KeysUnavailable, ListingKeys};
