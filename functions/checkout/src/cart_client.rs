//! Reads carts through the cart's own `GetCart` query, invoked as a Lambda function.

use aws_sdk_lambda::Client;
use aws_sdk_lambda::primitives::Blob;

use domain_events::queries::{GetCart, GetCartReply, PricedCart};
use kernel::CartId;

use crate::service::{CartReadError, CartReader};

/// The Lambda implementation of [`CartReader`].
#[derive(Debug, Clone)]
pub struct LambdaCarts {
    client: Client,
    function: String,
}

impl LambdaCarts {
    pub fn new(client: Client, function: impl Into<String>) -> Self {
        Self { client, function: function.into() }
    }
}

fn failed(error: impl std::error::Error + Send + Sync + 'static) -> CartReadError {
    CartReadError(Box::new(error))
}

impl CartReader for LambdaCarts {
    async fn priced_cart(&self, cart_id: CartId, customer: &str) -> Result<Option<PricedCart>, CartReadError> {
        let query = serde_json::to_vec(&GetCart { cart_id, customer: customer.to_owned() }).map_err(failed)?;
        let output = self
            .client
            .invoke()
            .function_name(&self.function)
            .payload(Blob::new(query))
            .send()
            .await
            .map_err(|e| failed(aws_sdk_lambda::Error::from(e)))?;
        let payload = output.payload.map(Blob::into_inner).unwrap_or_default();
        if let Some(kind) = output.function_error {
            let detail = String::from_utf8_lossy(&payload).into_owned();
            return Err(failed(std::io::Error::other(format!("cart query failed ({kind}): {detail}"))));
        }
        match serde_json::from_slice(&payload).map_err(failed)? {
            GetCartReply::Found { cart } => Ok(Some(cart)),
            GetCartReply::NotFound => Ok(None),
        }
    }
}
