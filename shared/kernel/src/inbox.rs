//! The consumer inbox port: the record of which events a domain's consumer has taken, keyed by
//! event id, that makes a duplicate delivery a no-op.
//!
//! It lives here, with the vocabulary every domain shares, so both sides can use it without
//! depending on each other: the consumer loop (`lambda_glue::consumer`) drives it, and
//! `adapters::inbox::DynamoInbox` implements it on each domain's own table.

use time::OffsetDateTime;

use crate::EventId;

/// Whether an event may be handled now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// First delivery (or the earlier handler's lease lapsed): handle it.
    Claimed,
    /// Handled already: acknowledge without handling again.
    Handled,
    /// Another invocation is handling it right now: try again later.
    InProgress,
}

/// The inbox could not be read or written; the event is tried again later.
#[derive(Debug, thiserror::Error)]
#[error("inbox {step} failed: {detail}")]
pub struct InboxError {
    /// `claim`, `handled` or `release`.
    pub step: &'static str,
    /// The cause with its whole context, for the log.
    pub detail: String,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// The record of which events a consumer has handled, keyed by event id.
#[allow(async_fn_in_trait)]
pub trait Inbox {
    /// Claims `event` for this invocation until `lease_until`, unless it is handled or claimed.
    async fn claim(&self, event: EventId, lease_until: OffsetDateTime) -> Result<Claim, InboxError>;
    /// Marks a claimed event handled.
    async fn handled(&self, event: EventId) -> Result<(), InboxError>;
    /// Gives up this invocation's claim (the one leased until `lease_until`) after the handler
    /// failed, so the retry may claim the event at once.
    async fn release(&self, event: EventId, lease_until: OffsetDateTime) -> Result<(), InboxError>;
}
