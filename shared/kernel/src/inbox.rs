//! The consumer inbox port: the record of which events a domain's consumer has handled, keyed by
//! event id, that makes a later delivery of a handled event a no-op.
//!
//! It lives here, with the vocabulary every domain shares, so both sides can use it without
//! depending on each other: the consumer loop (`lambda_glue::consumer`) drives it, and
//! `adapters::inbox::DynamoInbox` implements it on each domain's own table.
//!
//! One write per event: the consumer reads the record before it runs a handler
//! ([`Inbox::handled_before`], a read) and writes it once the handler succeeded
//! ([`Inbox::handled`]). Nothing is written before the handler, so two deliveries of one event
//! that arrive together may both run it: every handler is idempotent on its own (each state
//! change is a conditional write on the state it leaves), which is what makes that safe.

use crate::EventId;

/// What a conditional claim on an event found: the payment webhook's inbox
/// (`STRIPE#{evt_…}`, payment's own store) still claims before it handles.
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
    /// `read` or `handled`.
    pub step: &'static str,
    /// The cause with its whole context, for the log.
    pub detail: String,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// The record of which events a consumer has handled, keyed by event id.
#[allow(async_fn_in_trait)]
pub trait Inbox {
    /// Whether `event` was recorded handled (a strongly consistent read: a delivery that comes
    /// after the record was written always sees it).
    async fn handled_before(&self, event: EventId) -> Result<bool, InboxError>;
    /// Records `event` handled, after its handler succeeded: the inbox's one write per event.
    async fn handled(&self, event: EventId) -> Result<(), InboxError>;
}
