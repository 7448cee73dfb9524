//! DynamoDB helpers shared by the domain stores.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};

/// A DynamoDB item.
pub type Item = HashMap<String, AttributeValue>;

/// How a `TransactWriteItems` call ended, when it did not succeed.
#[derive(Debug)]
pub enum TransactionFailure {
    /// The transaction was cancelled; `reasons[i]` is the cancellation code of the i-th action
    /// (`"None"`, `"ConditionalCheckFailed"`, `"TransactionConflict"`, …) in request order.
    Cancelled { reasons: Vec<String> },
    /// Anything else: throttling, networking, validation of our own request.
    Other(SdkError<TransactWriteItemsError>),
}

impl TransactionFailure {
    /// Indexes of the actions whose condition failed, in request order.
    pub fn failed_conditions(&self) -> Vec<usize> {
        match self {
            Self::Cancelled { reasons } => reasons
                .iter()
                .enumerate()
                .filter(|(_, code)| code.as_str() == "ConditionalCheckFailed")
                .map(|(index, _)| index)
                .collect(),
            Self::Other(_) => Vec::new(),
        }
    }

    /// True when another transaction touched the same items at the same time: safe to retry.
    pub fn is_conflict(&self) -> bool {
        match self {
            Self::Cancelled { reasons } => {
                reasons.iter().any(|code| code == "TransactionConflict")
                    && !reasons.iter().any(|code| code == "ConditionalCheckFailed")
            }
            Self::Other(_) => false,
        }
    }
}

impl From<SdkError<TransactWriteItemsError>> for TransactionFailure {
    fn from(error: SdkError<TransactWriteItemsError>) -> Self {
        if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) = error.as_service_error() {
            let reasons = cancelled
                .cancellation_reasons()
                .iter()
                .map(|reason| reason.code().unwrap_or("None").to_owned())
                .collect();
            return Self::Cancelled { reasons };
        }
        Self::Other(error)
    }
}

impl std::fmt::Display for TransactionFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cancelled { reasons } => write!(f, "transaction cancelled: {reasons:?}"),
            Self::Other(error) => {
                write!(f, "transaction failed: {}", aws_sdk_dynamodb::error::DisplayErrorContext(error))
            }
        }
    }
}

impl std::error::Error for TransactionFailure {}

/// Reads up to 100 items by key (BatchGetItem's limit), retrying unprocessed keys with backoff,
/// and returns them in no particular order.
pub async fn batch_get(client: &Client, table: &str, keys: Vec<Item>) -> Result<Vec<Item>, aws_sdk_dynamodb::Error> {
    let mut found = Vec::with_capacity(keys.len());
    let mut pending = keys;
    let mut attempt = 0_u32;
    while !pending.is_empty() {
        let request =
            KeysAndAttributes::builder().set_keys(Some(std::mem::take(&mut pending))).consistent_read(false).build()?;
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
            attempt += 1;
            // Unprocessed keys mean throttling: back off 25, 50, 100 … ms, capped at 1.6 s.
            tokio::time::sleep(Duration::from_millis(25 << attempt.min(6))).await;
        }
    }
    Ok(found)
}

/// Reads one item by key with a strongly consistent read (the state a conditional write will
/// be checked against).
pub async fn get_consistent(client: &Client, table: &str, key: Item) -> Result<Option<Item>, aws_sdk_dynamodb::Error> {
    Ok(client.get_item().table_name(table).set_key(Some(key)).consistent_read(true).send().await?.item)
}

/// Reads every item of one partition (`pk = :pk`), following `LastEvaluatedKey` to the end.
/// For small partitions read whole: a SKU's warehouses, the category counters.
pub async fn query_partition(
    client: &Client,
    table: &str,
    pk: &str,
    consistent: bool,
) -> Result<Vec<Item>, aws_sdk_dynamodb::Error> {
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
