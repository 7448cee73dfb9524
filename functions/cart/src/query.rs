//! The cart's synchronous query for checkout (binary `cart-query`, invoked directly).

use domain_events::queries::{GetCart, GetCartReply};

use crate::service::{self, CartStore, StoreError};

pub async fn handle(store: &impl CartStore, query: GetCart) -> Result<GetCartReply, StoreError> {
    let Some(cart) = store.get(query.cart_id, &query.customer).await? else {
        return Ok(GetCartReply::NotFound);
    };
    Ok(GetCartReply::Found { cart: service::price(store, &cart).await? })
}
