//! Reads carts through the cart's own `GetCart` query, invoked as a Lambda function.

use adapters::aws::Deferred;
use aws_sdk_lambda::Client;

use domain_events::queries::{GetCart, GetCartReply, PricedCart};
use kernel::CartId;

use crate::service::{CartReadError, CartReader};

/// The Lambda implementation of [`CartReader`].
#[derive(Debug, Clone)]
pub struct LambdaCarts {
    client: Deferred<Client>,
    function: String,
}

impl LambdaCarts {
    /// `client` is built by the first query (an order read never needs it).
    pub fn new(client: Deferred<Client>, function: impl Into<String>) -> Self {
        Self { client, function: function.into() }
    }
}

impl CartReader for LambdaCarts {
    async fn priced_cart(&self, cart_id: CartId, customer: &str) -> Result<Option<PricedCart>, CartReadError> {
        let query = GetCart { cart_id, customer: customer.to_owned() };
        match crate::invoke::query(self.client.get(), &self.function, &query).await.map_err(CartReadError)? {
            GetCartReply::Found { cart } => Ok(Some(cart)),
            GetCartReply::NotFound => Ok(None),
        }
    }
}
