//! Partial batch responses for SQS and DynamoDB stream event sources.
//!
//! With `FunctionResponseTypes: [ReportBatchItemFailures]`, a function returns the ids of the
//! records it could not process; Lambda retries only those (for SQS: the listed messages; for a
//! stream: from the first listed sequence number on). One bad message never fails its batch.

use serde::Serialize;

/// `{"batchItemFailures": [{"itemIdentifier": "…"}]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchResponse {
    pub batch_item_failures: Vec<ItemFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemFailure {
    /// The SQS message id, or the stream record's sequence number.
    pub item_identifier: String,
}

impl BatchResponse {
    pub fn fail(&mut self, identifier: impl Into<String>) {
        self.batch_item_failures.push(ItemFailure { item_identifier: identifier.into() });
    }

    pub fn is_empty(&self) -> bool {
        self.batch_item_failures.is_empty()
    }
}
