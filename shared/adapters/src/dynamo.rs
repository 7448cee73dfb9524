//! The DynamoDB toolkit every domain store is built from. Key *formats* are not here (each
//! table's layout lives in one module of the domain that owns it); what is here is how every
//! store talks to DynamoDB:
//!
//! - [`key`]: a `pk`/`sk` key (every Ferrocart table has the same key schema).
//! - [`Unavailable`]: a storage failure the domain cannot act on, carrying the SDK's whole
//!   context and whether retrying may mend it ([`Unavailable::is_transient`]); it converts from
//!   every SDK, builder and serde_dynamo error, so stores use `?`.
//! - [`ConditionFailed`]: whether a `PutItem`/`UpdateItem`/`DeleteItem` failed its condition,
//!   from the SDK's typed error variants.
//! - [`Transaction`]: `TransactWriteItems` whose actions carry labels, so a cancellation says
//!   *which* conditions failed (by label, not by position), whether it was only a conflict with
//!   another transaction, or something else.
//! - [`get_consistent`], [`query_partition`], [`batch_get`], [`page_below`]: the reads the
//!   stores share (the last one is how every sweep lists its due items).
//!
//! Retrying a lost race is [`crate::retry`].

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{BuildError, DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, CancellationReason, KeysAndAttributes, Put, TransactWriteItem};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_smithy_types::retry::ErrorKind;

/// A DynamoDB item.
pub type Item = HashMap<String, AttributeValue>;

/// A transaction action that puts `item` into `table` only where `condition` holds, `values`
/// filling its placeholders.
pub fn put_if(
    table: &str,
    item: Item,
    condition: &str,
    values: Option<Item>,
) -> Result<TransactWriteItem, Unavailable> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression(condition)
        .set_expression_attribute_values(values)
        .build()?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// `TransactWriteItems` takes at most 100 actions.
pub const MAX_TRANSACTION_ACTIONS: usize = 100;

/// The key of an item: every Ferrocart table is keyed by the strings `pk` and `sk`.
pub fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([("pk".to_owned(), AttributeValue::S(pk.into())), ("sk".to_owned(), AttributeValue::S(sk.into()))])
}

/// Storage failed in a way the domain cannot act on: throttling, the network, a request we built
/// wrongly, an item that does not read as its record. A domain's `StoreError` wraps it. Whether
/// retrying may mend it ([`Unavailable::is_transient`]) is decided where it is built: only an
/// SDK error that says so (its kind, HTTP status or error code) or a transaction conflict is.
#[derive(Debug, thiserror::Error)]
#[error("{context}")]
pub struct Unavailable {
    /// The error with its whole chain (an SDK error's own `Display` says only "service error").
    context: String,
    transient: bool,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl Unavailable {
    /// Wraps any error, keeping its context for the log. Not transient: an error that is not
    /// the SDK's says nothing about a retry (a bad timestamp, a task that panicked).
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::classified(error, false)
    }

    /// A failure we detected ourselves (an item that is not what its key says, a refused write
    /// that found no item): not transient, the same request would find it again.
    pub fn because(reason: impl Into<String>) -> Self {
        Self::new(std::io::Error::other(reason.into()))
    }

    fn classified(error: impl std::error::Error + Send + Sync + 'static, transient: bool) -> Self {
        Self { context: DisplayErrorContext(&error).to_string(), transient, source: Box::new(error) }
    }

    /// Whether the same request may succeed later: DynamoDB throttled it, failed (5xx), timed
    /// out or could not be reached, or another transaction held its items. A request DynamoDB
    /// refused as built (`ValidationException`, an item too large), an item that does not
    /// decode and a failure we detected ourselves are not: retrying meets them again.
    pub fn is_transient(&self) -> bool {
        self.transient
    }
}

/// The error codes DynamoDB answers with a 400 that a retry with backoff mends (its
/// "Error handling" guide marks them "OK to retry? Yes"): the table's or index's provisioned
/// throughput or a partition's, the control plane's or the account's request rate, and an item
/// another transaction holds right now (`TransactionConflictException`, a single-item write
/// meeting a `TransactWriteItems` in flight). 5xx (`InternalServerError`, `ServiceUnavailable`)
/// are told by their status.
const RETRYABLE_CODES: [&str; 4] = [
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TransactionConflictException",
];

/// The transaction cancellation reasons a retry mends (the same guide's
/// `TransactionCanceledException`): throttling, and the conflicts [`Transaction`] reports
/// itself. `ValidationError` and `ItemCollectionSizeLimitExceeded` are not.
const RETRYABLE_CANCELLATIONS: [&str; 4] =
    ["None", "ThrottlingError", "ProvisionedThroughputExceeded", "TransactionConflict"];

/// Whether a call that failed this way may succeed if made again.
fn is_transient<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> bool {
    match error {
        // No answer in time, or one that did not parse (cut off): the call may not have run.
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        SdkError::DispatchFailure(failure) => {
            failure.is_io()
                || failure.is_timeout()
                || matches!(
                    failure.as_other(),
                    Some(ErrorKind::TransientError | ErrorKind::ThrottlingError | ErrorKind::ServerError)
                )
        }
        SdkError::ServiceError(failure) => {
            failure.raw().status().is_server_error()
                || failure.err().code().is_some_and(|code| RETRYABLE_CODES.contains(&code))
        }
        // A request that could not be built (a missing required field) fails the same again.
        _ => false,
    }
}

impl<E> From<SdkError<E, HttpResponse>> for Unavailable
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
{
    fn from(error: SdkError<E, HttpResponse>) -> Self {
        let transient = is_transient(&error);
        Self::classified(error, transient)
    }
}

impl From<aws_sdk_dynamodb::Error> for Unavailable {
    /// The service's error without its response: told by its code alone.
    fn from(error: aws_sdk_dynamodb::Error) -> Self {
        let transient = matches!(error, aws_sdk_dynamodb::Error::InternalServerError(_))
            || error.code().is_some_and(|code| RETRYABLE_CODES.contains(&code));
        Self::classified(error, transient)
    }
}

impl<L> From<TransactionError<L>> for Unavailable
where
    L: std::fmt::Debug + Send + Sync + 'static,
{
    /// A transaction that did not happen, as a storage failure: a conflict is transient, one too
    /// large or whose conditions failed is not, and an SDK failure is as it was classified.
    fn from(error: TransactionError<L>) -> Self {
        match error {
            TransactionError::Unavailable(unavailable) => unavailable,
            conflict @ TransactionError::Conflict => Self::classified(conflict, true),
            other => Self::new(other),
        }
    }
}

impl From<BuildError> for Unavailable {
    fn from(error: BuildError) -> Self {
        Self::new(error)
    }
}

impl From<serde_dynamo::Error> for Unavailable {
    fn from(error: serde_dynamo::Error) -> Self {
        Self::new(error)
    }
}

impl From<crate::outbox::OutboxError> for Unavailable {
    fn from(error: crate::outbox::OutboxError) -> Self {
        Self::new(error)
    }
}

/// Whether a single-item write failed because its condition did not hold (as opposed to
/// failing for a reason to retry or report).
pub trait ConditionFailed {
    fn is_condition_failed(&self) -> bool;
}

macro_rules! condition_failed {
    ($($error:ty),*) => {$(
        impl<R> ConditionFailed for SdkError<$error, R> {
            fn is_condition_failed(&self) -> bool {
                self.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception())
            }
        }
    )*};
}

condition_failed!(PutItemError, UpdateItemError, DeleteItemError);

/// A `TransactWriteItems` under construction, each action with a label (`L`) that names what its
/// condition means to the domain: "the order is still at the version read", "this SKU is free".
#[derive(Debug, Clone)]
pub struct Transaction<L> {
    labels: Vec<L>,
    actions: Vec<TransactWriteItem>,
}

impl<L> Default for Transaction<L> {
    fn default() -> Self {
        Self { labels: Vec::new(), actions: Vec::new() }
    }
}

/// Why a transaction did not happen.
#[derive(Debug, thiserror::Error)]
pub enum TransactionError<L: std::fmt::Debug> {
    /// The conditions of these actions failed (by label, in request order); nothing was written.
    #[error("transaction conditions failed: {0:?}")]
    ConditionsFailed(Vec<L>),
    /// Another transaction or write touched the same items at the same time, and no condition
    /// failed: the same transaction may succeed if tried again.
    #[error("transaction conflicted with another write")]
    Conflict,
    /// More actions than one transaction takes: no retry can make it fit.
    #[error("a transaction takes at most {MAX_TRANSACTION_ACTIONS} actions, not {0}")]
    TooLarge(usize),
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}

impl<L: std::fmt::Debug + PartialEq> TransactionError<L> {
    /// True when the condition of an action labelled `label` failed.
    pub fn failed(&self, label: &L) -> bool {
        matches!(self, Self::ConditionsFailed(labels) if labels.contains(label))
    }
}

impl<L: Clone + std::fmt::Debug> Transaction<L> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an action.
    pub fn push(&mut self, label: L, action: TransactWriteItem) -> &mut Self {
        self.labels.push(label);
        self.actions.push(action);
        self
    }

    /// Runs the transaction once.
    pub async fn commit(&self, client: &Client) -> Result<(), TransactionError<L>> {
        self.run(client, |label, _| label.clone()).await
    }

    /// Runs the transaction once, like [`Transaction::commit`]; when conditions fail, each failed
    /// label comes with the item as it was when its condition failed, for an action that asked
    /// for it with `ReturnValuesOnConditionCheckFailure::AllOld` (`None` for one that did not, or
    /// that found no item). A store that decides from the refused item needs no second read.
    pub async fn commit_returning_old(&self, client: &Client) -> Result<(), TransactionError<(L, Option<Item>)>> {
        self.run(client, |label, reason| (label.clone(), reason.item().cloned())).await
    }

    /// Runs the transaction once, naming each action whose condition failed by `failed(label,
    /// its cancellation reason)`.
    async fn run<F: std::fmt::Debug>(
        &self,
        client: &Client,
        failed: impl Fn(&L, &CancellationReason) -> F,
    ) -> Result<(), TransactionError<F>> {
        if self.actions.len() > MAX_TRANSACTION_ACTIONS {
            return Err(TransactionError::TooLarge(self.actions.len()));
        }
        let sent = client.transact_write_items().set_transact_items(Some(self.actions.clone())).send().await;
        let error = match sent {
            Ok(_) => return Ok(()),
            Err(error) => error,
        };
        let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) = error.as_service_error() else {
            return Err(Unavailable::from(error).into());
        };
        // One reason per action, in request order: `None`, `ConditionalCheckFailed`,
        // `TransactionConflict`, `ThrottlingError`, …
        let reasons = cancelled.cancellation_reasons();
        let codes: Vec<&str> = reasons.iter().map(|r| r.code().unwrap_or("None")).collect();
        let failed: Vec<F> = reasons
            .iter()
            .zip(&self.labels)
            .filter(|(reason, _)| reason.code() == Some("ConditionalCheckFailed"))
            .map(|(reason, label)| failed(label, reason))
            .collect();
        if !failed.is_empty() {
            Err(TransactionError::ConditionsFailed(failed))
        } else if codes.contains(&"TransactionConflict") {
            Err(TransactionError::Conflict)
        } else {
            let transient = codes.iter().all(|code| RETRYABLE_CANCELLATIONS.contains(code));
            Err(Unavailable::classified(error, transient).into())
        }
    }
}

/// Keys one `BatchGetItem` call takes at most.
const BATCH_GET_KEYS: usize = 100;

/// `BatchGetItem` calls one [`batch_get`] has in flight at once: a page of 100 orders (200
/// keys) is read in the time of one call, while a larger read does not open a connection per
/// 100 keys.
const BATCH_GETS_AT_ONCE: usize = 4;

/// Reads items by key, strongly consistent or not, in `BatchGetItem` calls of at most 100 keys
/// (its limit) made at once (up to [`BATCH_GETS_AT_ONCE`] in flight), each retrying its
/// unprocessed keys with the shared backoff ([`crate::retry::delays`]). Returns the items
/// found, each call's after the one before it but in no particular order within a call
/// (DynamoDB's): callers put them in their own order by key. Keys still unprocessed after a
/// call's last attempt (sustained throttling) are an error.
pub async fn batch_get(
    client: &Client,
    table: &str,
    keys: Vec<Item>,
    consistent: bool,
) -> Result<Vec<Item>, Unavailable> {
    if keys.len() <= BATCH_GET_KEYS {
        return batch_get_call(client, table, keys, consistent).await;
    }
    let calls = keys.len().div_ceil(BATCH_GET_KEYS);
    let mut rest = keys.into_iter();
    let mut chunks = std::iter::from_fn(|| {
        let chunk: Vec<Item> = rest.by_ref().take(BATCH_GET_KEYS).collect();
        (!chunk.is_empty()).then_some(chunk)
    })
    .enumerate();
    let mut found: Vec<Vec<Item>> = vec![Vec::new(); calls];
    let mut reads = tokio::task::JoinSet::new();
    loop {
        while reads.len() < BATCH_GETS_AT_ONCE
            && let Some((n, chunk)) = chunks.next()
        {
            let (client, table) = (client.clone(), table.to_owned());
            reads.spawn(async move { (n, batch_get_call(&client, &table, chunk, consistent).await) });
        }
        // An error returns at once; dropping the set aborts the calls still in flight.
        let Some(done) = reads.join_next().await else { break };
        let (n, items) = done.map_err(Unavailable::new)?;
        found[n] = items?;
    }
    Ok(found.into_iter().flatten().collect())
}

/// One `BatchGetItem` of at most 100 keys, asked again for its unprocessed keys until none is
/// left or the backoff gives up.
async fn batch_get_call(
    client: &Client,
    table: &str,
    keys: Vec<Item>,
    consistent: bool,
) -> Result<Vec<Item>, Unavailable> {
    let mut found = Vec::with_capacity(keys.len());
    let mut pending = keys;
    let mut delays = crate::retry::delays();
    while !pending.is_empty() {
        let request = KeysAndAttributes::builder()
            .set_keys(Some(std::mem::take(&mut pending)))
            .consistent_read(consistent)
            .build()?;
        let output = client.batch_get_item().request_items(table, request).send().await?;
        if let Some(mut responses) = output.responses {
            found.extend(responses.remove(table).unwrap_or_default());
        }
        pending = output
            .unprocessed_keys
            .and_then(|mut unprocessed| unprocessed.remove(table))
            .map(|rest| rest.keys)
            .unwrap_or_default();
        if !pending.is_empty() {
            // Unprocessed keys mean throttling: back off before asking for them again.
            let delay = delays.next().ok_or_else(|| {
                let unprocessed =
                    std::io::Error::other(format!("{} keys of {table} stayed unprocessed", pending.len()));
                Unavailable::classified(unprocessed, true)
            })?;
            tokio::time::sleep(delay).await;
        }
    }
    Ok(found)
}

/// Reads one item by key with a strongly consistent read (the state a conditional write will
/// be checked against).
pub async fn get_consistent(client: &Client, table: &str, key: Item) -> Result<Option<Item>, Unavailable> {
    Ok(client.get_item().table_name(table).set_key(Some(key)).consistent_read(true).send().await?.item)
}

/// One page of an index partition's items whose sort key sorts below `below`, in index order,
/// starting after `start` (the `LastEvaluatedKey` this returned for the page before), with the
/// `LastEvaluatedKey` to go on from (`None`: no more). Every sweep lists its due items this way:
/// a sparse index whose sort key begins with the due time, read oldest first.
pub async fn page_below(
    client: &Client,
    table: &str,
    index: &str,
    (partition_key, partition): (&str, &str),
    (sort_key, below): (&str, &str),
    limit: usize,
    start: Option<Item>,
) -> Result<(Vec<Item>, Option<Item>), Unavailable> {
    let output = client
        .query()
        .table_name(table)
        .index_name(index)
        .key_condition_expression("#pk = :partition AND #sk < :below")
        .expression_attribute_names("#pk", partition_key)
        .expression_attribute_names("#sk", sort_key)
        .expression_attribute_values(":partition", AttributeValue::S(partition.to_owned()))
        .expression_attribute_values(":below", AttributeValue::S(below.to_owned()))
        .limit(i32::try_from(limit).unwrap_or(i32::MAX))
        .set_exclusive_start_key(start)
        .send()
        .await?;
    Ok((output.items.unwrap_or_default(), output.last_evaluated_key))
}

/// Reads every item of one partition (`pk = :pk`), following `LastEvaluatedKey` to the end.
/// For small partitions read whole: a SKU's warehouses, the category counters.
pub async fn query_partition(
    client: &Client,
    table: &str,
    pk: &str,
    consistent: bool,
) -> Result<Vec<Item>, Unavailable> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let output = client
            .query()
            .table_name(table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
            .consistent_read(consistent)
            .set_exclusive_start_key(start)
            .send()
            .await?;
        items.extend(output.items.unwrap_or_default());
        start = output.last_evaluated_key;
        if start.is_none() {
            return Ok(items);
        }
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::operation::get_item::GetItemError;
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    use super::*;

    /// What the SDK gives for a DynamoDB answer of `status` with `__type` `code`.
    fn answered(status: u16, code: &str) -> Unavailable {
        let error = PutItemError::generic(ErrorMetadata::builder().code(code).message("from the test").build());
        let response = HttpResponse::new(StatusCode::try_from(status).expect("a status"), SdkBody::empty());
        Unavailable::from(SdkError::service_error(error, response))
    }

    #[test]
    fn throttling_5xx_timeouts_and_lost_connections_are_transient() {
        for code in RETRYABLE_CODES {
            assert!(answered(400, code).is_transient(), "{code}");
        }
        assert!(answered(500, "InternalServerError").is_transient());
        assert!(answered(503, "ServiceUnavailable").is_transient());
        let timeout = SdkError::<GetItemError, HttpResponse>::timeout_error("no answer in 3.1 s");
        assert!(Unavailable::from(timeout).is_transient());
        let reset = SdkError::<GetItemError, HttpResponse>::dispatch_failure(ConnectorError::io("reset".into()));
        assert!(Unavailable::from(reset).is_transient());
        assert!(Unavailable::from(TransactionError::<u8>::Conflict).is_transient());
    }

    #[test]
    fn a_request_built_wrongly_an_undecodable_item_and_our_own_findings_are_not() {
        let validation = answered(400, "ValidationException");
        assert!(!validation.is_transient());
        assert!(validation.to_string().contains("ValidationException"), "the log says which: {validation}");
        assert!(!answered(400, "ConditionalCheckFailedException").is_transient());
        assert!(!answered(400, "ItemCollectionSizeLimitExceededException").is_transient());

        let item = key("ORDER#1", "PAYMENT");
        let undecodable = serde_dynamo::from_item::<_, HashMap<String, u64>>(item).expect_err("pk is a string");
        assert!(!Unavailable::from(undecodable).is_transient());

        let unbuilt = Put::builder().table_name("t").build().expect_err("a put needs its item");
        assert!(!Unavailable::from(unbuilt).is_transient());
        let misconfigured =
            SdkError::<GetItemError, HttpResponse>::dispatch_failure(ConnectorError::user("no endpoint".into()));
        assert!(!Unavailable::from(misconfigured).is_transient());
        assert!(!Unavailable::because("a refused write found no item").is_transient());
        assert!(!Unavailable::from(TransactionError::<u8>::TooLarge(101)).is_transient());
    }
}
