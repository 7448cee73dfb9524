//! The cart's event consumer: `ProductChanged` keeps the prices read model current, and
//! `OrderPlaced` empties the cart that was checked out.

use domain_events::{Envelope, Event};
use lambda_glue::consumer::{self, HandlerError, Inbox, SqsBatchResponse, Trigger};

use crate::service::{self, CartStore};

/// The longest one message takes: a read-model upsert or a cart update, a few DynamoDB calls.
const PER_MESSAGE: time::Duration = time::Duration::seconds(5);

pub async fn handle(
    store: &impl CartStore,
    inbox: &impl Inbox,
    trigger: Trigger,
) -> Result<SqsBatchResponse, HandlerError> {
    match trigger {
        Trigger::Queue { batch, deadline } => {
            Ok(consumer::consume(batch, deadline, PER_MESSAGE, inbox, |envelope| on_event(store, envelope)).await)
        }
        Trigger::Schedule { .. } => Err(HandlerError::Permanent("the cart has no schedule".to_owned())),
    }
}

async fn on_event(store: &impl CartStore, envelope: Envelope) -> Result<(), HandlerError> {
    let handled = match envelope.event {
        Event::ProductChanged(change) => service::on_product_changed(store, &change).await,
        Event::OrderPlaced(order) => service::on_order_placed(store, &order, time::OffsetDateTime::now_utc()).await,
        other => {
            return Err(HandlerError::Permanent(format!("the cart does not subscribe to {}", other.detail_type())));
        }
    };
    // Every storage failure may pass: retry later.
    handled.map_err(HandlerError::transient)
}
