//! Fulfillment's use cases and its storage port.
//!
//! The saga side ([`on_order_confirmed`], [`on_stock_committed`], [`on_order_cancelled`]) records
//! each fact with a write that commutes with the others and decides from what that write read
//! back; the admin side ([`dispatch`], [`deliver`]) reads a shipment, lets
//! [`Shipment::apply`] decide, and writes on the condition that the shipment is still the
//! version it read.

use time::OffsetDateTime;

use adapters::retry::{Attempt, until_won};
use domain_events::checkout::Shipping;
use domain_events::inventory::ReservedLine;
use domain_events::queries::{HOLD_FOR_CANCEL_SECONDS, HoldForCancelReply};
use domain_events::{Envelope, Event, Metadata};
use kernel::{OrderId, ShipmentId};

use crate::model::{Flag, Next, OrderFacts, PlanError, Refused, Shipment, Status, Step, Tracking, Warehouse};

pub use domain_events::fulfillment::MAX_SHIPMENTS;

/// Storage failed: the domain cannot act on it.
#[derive(Debug, thiserror::Error)]
#[error("fulfillment storage failed")]
pub struct StoreError(#[from] pub adapters::dynamo::Unavailable);

/// What a conditional write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    Done,
    /// The condition did not hold: shipments already created or the order cancelled first (for
    /// a creation), or the shipment moved since it was read (for a save).
    Lost,
    /// A dispatch found the order cancelled (fulfillment has seen `OrderCancelled`) or held for
    /// a customer cancel in progress ([`hold_for_cancel`]).
    OrderClosed,
}

/// What a save must also hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    None,
    /// For a dispatch: the order has not been cancelled (as far as fulfillment knows) and no
    /// cancel hold is live at `now`; the order then records that it has a dispatch, so a later
    /// [`hold_for_cancel`] answers [`HoldForCancelReply::AlreadyDispatched`].
    OrderOpen {
        now: OffsetDateTime,
    },
}

/// One page of a shipment listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<Shipment>,
    pub next_cursor: Option<String>,
}

/// Why a listing failed.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error(transparent)]
    Cursor(#[from] adapters::CursorError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store cannot list: built without cursor keys, or their secret cannot be read now.
    #[error(transparent)]
    Keys(#[from] adapters::KeysUnavailable),
}

impl From<adapters::dynamo::Unavailable> for PageError {
    fn from(error: adapters::dynamo::Unavailable) -> Self {
        Self::Store(StoreError(error))
    }
}

/// Which shipments a listing shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub status: Status,
    pub warehouse: Option<Warehouse>,
}

/// The storage port.
#[allow(async_fn_in_trait)]
pub trait FulfillmentStore {
    /// Records where and how the order ships (the first value stays) and returns every fact
    /// recorded so far, as the write left them.
    async fn record_shipping(&self, order_id: OrderId, shipping: &Shipping) -> Result<OrderFacts, StoreError>;
    /// Records what leaves which warehouse (the first value stays); returns every fact.
    async fn record_lines(&self, order_id: OrderId, lines: &[ReservedLine]) -> Result<OrderFacts, StoreError>;
    /// Records that the order was cancelled; returns every fact.
    async fn record_cancelled(&self, order_id: OrderId) -> Result<OrderFacts, StoreError>;
    /// Writes the order's shipments and their events in one transaction, only if the order has
    /// none yet and was not cancelled (`Lost` otherwise: nothing written).
    async fn create(&self, order_id: OrderId, shipments: &[Shipment], events: &[Envelope])
    -> Result<Write, StoreError>;
    async fn shipment(&self, id: ShipmentId) -> Result<Option<Shipment>, StoreError>;
    /// Writes `shipment` with `events`, only if it is still at version `expected` (`Lost`
    /// otherwise) and `guard` holds (`OrderClosed` otherwise).
    async fn save(
        &self,
        shipment: &Shipment,
        expected: u64,
        events: &[Envelope],
        guard: Guard,
    ) -> Result<Write, StoreError>;
    /// Holds the order's dispatches until `until`, only if none was dispatched yet
    /// (`AlreadyDispatched` otherwise: nothing written). Conditional on the order item, the same
    /// item every dispatch updates, so a hold and a dispatch cannot both win.
    async fn hold(&self, order_id: OrderId, until: OffsetDateTime) -> Result<HoldForCancelReply, StoreError>;
    /// Shipments of one status (and warehouse), oldest first.
    async fn list(&self, filter: &Filter, limit: usize, cursor: Option<&str>) -> Result<Page, PageError>;
}

/// Why an admin request failed.
#[derive(Debug, thiserror::Error)]
pub enum FulfillmentError {
    #[error("no shipment {0}")]
    NotFound(String),
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error("the order of shipment {0} was cancelled, or its customer is cancelling it; it must not leave")]
    OrderClosed(ShipmentId),
    #[error("the shipment kept changing; try again")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a saga event was not handled.
#[derive(Debug, thiserror::Error)]
pub enum SagaError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("shipments of {0} kept changing")]
    Busy(OrderId),
    /// The event contradicts what fulfillment can do (a bug or a contract break): no retry helps.
    #[error("{0}")]
    Contract(String),
}

impl SagaError {
    pub fn is_transient(&self) -> bool {
        !matches!(self, Self::Contract(_))
    }
}

impl From<PlanError> for SagaError {
    fn from(error: PlanError) -> Self {
        Self::Contract(error.to_string())
    }
}

fn envelope(order_id: OrderId, event: Event) -> Envelope {
    Envelope::new(Metadata::new(order_id.to_string()), event)
}

/// `OrderConfirmed`: where and how the order ships. An event from before fulfillment existed
/// has no `shipping`; such an order cannot be shipped from events and is ignored with a warning.
pub async fn on_order_confirmed(
    store: &impl FulfillmentStore,
    order_id: OrderId,
    shipping: Option<&Shipping>,
    now: OffsetDateTime,
) -> Result<(), SagaError> {
    let Some(shipping) = shipping else {
        tracing::warn!(%order_id, "OrderConfirmed without shipping (written before fulfillment existed); ignored");
        return Ok(());
    };
    let facts = store.record_shipping(order_id, shipping).await?;
    create_when_ready(store, order_id, &facts, now).await
}

/// `StockCommitted`: what leaves which warehouse. An event from before fulfillment existed has
/// no lines; it is ignored with a warning.
pub async fn on_stock_committed(
    store: &impl FulfillmentStore,
    order_id: OrderId,
    lines: &[ReservedLine],
    now: OffsetDateTime,
) -> Result<(), SagaError> {
    if lines.is_empty() {
        tracing::warn!(%order_id, "StockCommitted without lines (written before fulfillment existed); ignored");
        return Ok(());
    }
    let facts = store.record_lines(order_id, lines).await?;
    create_when_ready(store, order_id, &facts, now).await
}

/// Creates the order's shipments if this fact was the second one in. Two deliveries that both
/// find both facts race on the creation's condition: one writes, the other writes nothing.
async fn create_when_ready(
    store: &impl FulfillmentStore,
    order_id: OrderId,
    facts: &OrderFacts,
    now: OffsetDateTime,
) -> Result<(), SagaError> {
    let shipments = match facts.next(order_id, now)? {
        Next::Wait => {
            tracing::info!(%order_id, "one fact recorded; waiting for the other");
            return Ok(());
        }
        Next::Nothing => {
            tracing::info!(%order_id, "shipments already created, or the order was cancelled; nothing to create");
            return Ok(());
        }
        Next::Create(shipments) => shipments,
    };
    if shipments.len() > MAX_SHIPMENTS {
        return Err(SagaError::Contract(format!(
            "{order_id} ships from {} warehouses; one transaction creates at most {MAX_SHIPMENTS}",
            shipments.len()
        )));
    }
    let events: Vec<Envelope> = shipments.iter().map(|s| envelope(order_id, s.created())).collect();
    match store.create(order_id, &shipments, &events).await? {
        Write::Done => tracing::info!(%order_id, shipments = shipments.len(), "shipments created"),
        _ => tracing::info!(%order_id, "shipments created by another delivery, or the order cancelled meanwhile"),
    }
    Ok(())
}

/// `OrderCancelled`: no shipment is created from now on, and every pending one is cancelled.
/// One that has left already cannot be: it is flagged for an admin and logged as an error
/// (the goods are gone; see docs/events.md on the race with checkout's cancel).
pub async fn on_order_cancelled(
    store: &impl FulfillmentStore,
    order_id: OrderId,
    now: OffsetDateTime,
) -> Result<(), SagaError> {
    let facts = store.record_cancelled(order_id).await?;
    for shipment_id in facts.shipments.unwrap_or_default() {
        cancel_one(store, order_id, shipment_id, now).await?;
    }
    Ok(())
}

async fn cancel_one(
    store: &impl FulfillmentStore,
    order_id: OrderId,
    shipment_id: ShipmentId,
    now: OffsetDateTime,
) -> Result<(), SagaError> {
    let done = until_won(|| async move {
        let Some(mut shipment) = store.shipment(shipment_id).await? else {
            return Err(SagaError::Contract(format!("{order_id} names shipment {shipment_id}, which is not stored")));
        };
        let expected = shipment.version;
        let (events, outcome) = match shipment.apply(&Step::Cancel, now) {
            Ok(Some(event)) => (vec![envelope(order_id, event)], "cancelled"),
            Ok(None) => return Ok(Attempt::Done("already cancelled")),
            Err(_) if shipment.flag.is_some() => return Ok(Attempt::Done("already flagged")),
            Err(refused) => {
                tracing::error!(%order_id, %shipment_id, %refused, "order cancelled after its shipment left; flagged");
                shipment.flag = Some(Flag::CancelledAfterDispatch);
                shipment.version += 1;
                (Vec::new(), "flagged")
            }
        };
        Ok(match store.save(&shipment, expected, &events, Guard::None).await? {
            Write::Done => Attempt::Done(outcome),
            _ => Attempt::Lost,
        })
    })
    .await?;
    match done {
        Some(outcome) => tracing::info!(%order_id, %shipment_id, outcome, "cancellation handled"),
        None => return Err(SagaError::Busy(order_id)),
    }
    Ok(())
}

/// `GET /admin/shipments/{id}`.
pub async fn shipment(store: &impl FulfillmentStore, id: ShipmentId) -> Result<Shipment, FulfillmentError> {
    store.shipment(id).await?.ok_or_else(|| FulfillmentError::NotFound(id.to_string()))
}

/// `POST /admin/shipments/{id}/dispatch`.
pub async fn dispatch(
    store: &impl FulfillmentStore,
    id: ShipmentId,
    tracking: Tracking,
    now: OffsetDateTime,
) -> Result<Shipment, FulfillmentError> {
    step(store, id, Step::Dispatch(tracking), now).await
}

/// `POST /admin/shipments/{id}/deliver`.
pub async fn deliver(
    store: &impl FulfillmentStore,
    id: ShipmentId,
    now: OffsetDateTime,
) -> Result<Shipment, FulfillmentError> {
    step(store, id, Step::Deliver, now).await
}

/// Reads, decides, writes if still at the version read; a repeat writes nothing and answers
/// the shipment as it is.
async fn step(
    store: &impl FulfillmentStore,
    id: ShipmentId,
    step: Step,
    now: OffsetDateTime,
) -> Result<Shipment, FulfillmentError> {
    let step = &step;
    let done = until_won(|| async move {
        let mut shipment = self::shipment(store, id).await?;
        let expected = shipment.version;
        let Some(event) = shipment.apply(step, now)? else { return Ok(Attempt::Done(shipment)) };
        // A dispatch must not leave for an order fulfillment knows is cancelled.
        let guard = if matches!(step, Step::Dispatch(_)) { Guard::OrderOpen { now } } else { Guard::None };
        let events = [envelope(shipment.order_id, event)];
        match store.save(&shipment, expected, &events, guard).await? {
            Write::Done => {
                tracing::info!(shipment_id = %id, order_id = %shipment.order_id, status = shipment.status.as_str(), "shipment moved");
                Ok(Attempt::Done(shipment))
            }
            Write::OrderClosed => Err(FulfillmentError::OrderClosed(id)),
            Write::Lost => Ok(Attempt::Lost),
        }
    })
    .await?;
    done.ok_or(FulfillmentError::Busy)
}

/// The `HoldForCancel` query (checkout, before a customer cancel): no dispatch of the order
/// until the hold lapses, unless one left already. Holding again extends the hold; holding a
/// cancelled order, or one fulfillment has not heard of yet, is a hold all the same.
pub async fn hold_for_cancel(
    store: &impl FulfillmentStore,
    order_id: OrderId,
    now: OffsetDateTime,
) -> Result<HoldForCancelReply, StoreError> {
    let reply = store.hold(order_id, now + time::Duration::seconds(HOLD_FOR_CANCEL_SECONDS)).await?;
    tracing::info!(%order_id, ?reply, "hold for cancel");
    Ok(reply)
}
