//! Fulfillment's synchronous query for checkout (binary `fulfillment-query`, invoked directly):
//! `HoldForCancel`, asked before a customer cancel of a confirmed order.

use time::OffsetDateTime;

use domain_events::queries::{HoldForCancel, HoldForCancelReply};

use crate::service::{self, FulfillmentStore, StoreError};

pub async fn handle(
    store: &impl FulfillmentStore,
    query: HoldForCancel,
    now: OffsetDateTime,
) -> Result<HoldForCancelReply, StoreError> {
    service::hold_for_cancel(store, query.order_id, now).await
}
