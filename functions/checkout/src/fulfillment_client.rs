//! Asks fulfillment to hold an order's dispatches through its own `HoldForCancel` query,
//! invoked as a Lambda function.

use aws_sdk_lambda::Client;
use aws_sdk_lambda::primitives::Blob;

use domain_events::queries::{HoldForCancel, HoldForCancelReply};
use kernel::OrderId;

use crate::service::{FulfillmentCallError, FulfillmentGate};

/// The Lambda implementation of [`FulfillmentGate`].
#[derive(Debug, Clone)]
pub struct LambdaFulfillment {
    client: Client,
    function: String,
}

impl LambdaFulfillment {
    pub fn new(client: Client, function: impl Into<String>) -> Self {
        Self { client, function: function.into() }
    }
}

fn failed(error: impl std::error::Error + Send + Sync + 'static) -> FulfillmentCallError {
    FulfillmentCallError(Box::new(error))
}

impl FulfillmentGate for LambdaFulfillment {
    async fn hold_for_cancel(&self, order_id: OrderId) -> Result<HoldForCancelReply, FulfillmentCallError> {
        let query = serde_json::to_vec(&HoldForCancel { order_id }).map_err(failed)?;
        let output = self
            .client
            .invoke()
            .function_name(&self.function)
            .payload(Blob::new(query))
            .send()
            .await
            .map_err(|e| failed(aws_sdk_lambda::Error::from(e)))?;
        let payload = output.payload.map(Blob::into_inner).unwrap_or_default();
        // A function error (the query's store failed, a timeout) is an answer of no kind: the
        // cancel must not go on as if the order were held.
        if let Some(kind) = output.function_error {
            let detail = String::from_utf8_lossy(&payload).into_owned();
            return Err(failed(std::io::Error::other(format!("fulfillment query failed ({kind}): {detail}"))));
        }
        serde_json::from_slice(&payload).map_err(failed)
    }
}
