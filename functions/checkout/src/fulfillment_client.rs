//! Asks fulfillment to hold an order's dispatches through its own `HoldForCancel` query,
//! invoked as a Lambda function.

use adapters::aws::Deferred;
use aws_sdk_lambda::Client;

use domain_events::queries::{HoldForCancel, HoldForCancelReply};
use kernel::OrderId;

use crate::service::{FulfillmentCallError, FulfillmentGate};

/// The Lambda implementation of [`FulfillmentGate`].
#[derive(Debug, Clone)]
pub struct LambdaFulfillment {
    client: Deferred<Client>,
    function: String,
}

impl LambdaFulfillment {
    /// `client` is built by the first query (an order read never needs it).
    pub fn new(client: Deferred<Client>, function: impl Into<String>) -> Self {
        Self { client, function: function.into() }
    }
}

impl FulfillmentGate for LambdaFulfillment {
    async fn hold_for_cancel(&self, order_id: OrderId) -> Result<HoldForCancelReply, FulfillmentCallError> {
        crate::invoke::query(self.client.get(), &self.function, &HoldForCancel { order_id })
            .await
            .map_err(FulfillmentCallError)
    }
}
