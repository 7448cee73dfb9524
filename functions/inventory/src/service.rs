//! Inventory use cases and the storage port.

use time::{Duration, OffsetDateTime};

use adapters::retry::{Attempt, until_won};
use domain_events::checkout::{OrderPlaced, ReturnReceived};
use domain_events::fulfillment::MAX_SHIPMENTS;
use domain_events::inventory::{
    self as contract, RejectionReason, ReleaseReason, StockCommitted, StockRejected, StockReleased, StockReserved,
};
use domain_events::{Envelope, Event, Metadata};
use kernel::page::Page;
use kernel::{OrderId, ReturnId, Sku};

use crate::stock::{AllocatedLine, MAX_ON_HAND, Request, StockLevel, Warehouse, allocate};

/// `TransactWriteItems` takes at most 100 actions; a reservation writes one per warehouse
/// allocation, plus the reservation item and its outbox event.
pub const MAX_ALLOCATIONS: usize = adapters::dynamo::MAX_TRANSACTION_ACTIONS - 2;
/// Reservations the expiry sweep lists per query.
pub const SWEEP_PAGE: usize = 25;
/// Largest number of SKUs one availability query may ask for.
pub const MAX_AVAILABILITY_SKUS: usize = 50;

/// What a conditional write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// The change and its event were written.
    Done,
    /// The reservation was already decided (a duplicate or late delivery): nothing was written.
    AlreadyDecided,
    /// Stock changed between our read and our write: read again and retry.
    StockChanged,
}

/// A reservation's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReservationStatus {
    Reserved,
    Committed,
    Released,
    Rejected,
}

/// The stock promised to one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub order_id: OrderId,
    pub status: ReservationStatus,
    pub lines: Vec<AllocatedLine>,
    /// When the hold lapses unless the order is confirmed first (meaningful while `Reserved`).
    pub held_until: OffsetDateTime,
}

/// Storage failures, in business terms.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{reserved} units are reserved; on_hand cannot go below that")]
    BelowReserved { reserved: u32 },
    #[error("inventory storage failed")]
    Unavailable(#[from] adapters::dynamo::Unavailable),
}

/// Why an order event or an expiry was not handled.
#[derive(Debug, thiserror::Error)]
pub enum SagaError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Concurrent orders kept moving the stock this event needs: later, it should work.
    #[error("stock kept changing while handling {0}")]
    Busy(OrderId),
    /// The event contradicts what inventory knows (a bug or a contract break): no retry helps.
    #[error("{0}")]
    Contract(String),
}

impl SagaError {
    /// Whether handling the event again later may succeed.
    pub fn is_transient(&self) -> bool {
        !matches!(self, Self::Contract(_))
    }
}

/// A write's outcome as a race: a lost race is tried again, anything else is decided.
fn race(write: Write) -> Attempt<Write> {
    match write {
        Write::StockChanged => Attempt::Lost,
        decided => Attempt::Done(decided),
    }
}

/// The storage port.
#[allow(async_fn_in_trait)]
pub trait InventoryStore {
    /// Where a listing of lapsed reservations goes on (the store's own, opaque to the domain).
    type Cursor;
    /// Stock of these SKUs in every warehouse, read consistently.
    async fn levels(&self, skus: &[Sku]) -> Result<Vec<StockLevel>, StoreError>;
    /// Sets `on_hand`, keeping `reserved` and recomputing `available`, only if the stock is still
    /// `read` (`None`: it did not exist): `StockChanged` if it moved since.
    async fn set_on_hand(
        &self,
        read: Option<&StockLevel>,
        sku: &Sku,
        warehouse: &Warehouse,
        on_hand: u32,
    ) -> Result<Write, StoreError>;
    async fn reservation(&self, order_id: OrderId) -> Result<Option<Reservation>, StoreError>;
    /// Takes the allocated units from `available` (each only if still there) and records the
    /// reservation with its event, atomically.
    async fn reserve(
        &self,
        order_id: OrderId,
        lines: &[AllocatedLine],
        until: OffsetDateTime,
        event: &Envelope,
    ) -> Result<Write, StoreError>;
    /// Records that the order could not be reserved, with its event.
    async fn reject(&self, order_id: OrderId, event: &Envelope) -> Result<Write, StoreError>;
    /// Gives a cancelled order's units back: held units to `available`, committed (sold, not
    /// yet shipped) units to `on_hand`. For an unknown order, records that it is released so a
    /// late `OrderPlaced` reserves nothing.
    async fn release(
        &self,
        reservation: Option<&Reservation>,
        order_id: OrderId,
        event: &Envelope,
    ) -> Result<Write, StoreError>;
    /// Turns a reserved reservation into a sale: the units leave `on_hand`.
    async fn commit(&self, reservation: &Reservation, event: &Envelope) -> Result<Write, StoreError>;
    /// Lets a lapsed hold go: its units back to `available`, only while the reservation is still
    /// `Reserved` and its `held_until` is not after `now` (`AlreadyDecided` otherwise).
    async fn expire(
        &self,
        reservation: &Reservation,
        now: OffsetDateTime,
        event: &Envelope,
    ) -> Result<Write, StoreError>;
    /// Puts returned units back on hand (and available) in `warehouse`, creating stock rows that
    /// do not exist, and records the return as restocked, atomically: `AlreadyDecided` if it was.
    async fn restock(
        &self,
        return_id: ReturnId,
        order_id: OrderId,
        warehouse: &Warehouse,
        lines: &[(Sku, u32)],
    ) -> Result<Write, StoreError>;
    /// Orders whose reservation lapsed before `now`, oldest first, at most `limit`, after `after`.
    /// The listing may be stale (an eventually consistent index): it only says where to look.
    async fn expired(
        &self,
        now: OffsetDateTime,
        limit: usize,
        after: Option<Self::Cursor>,
    ) -> Result<Page<OrderId, Self::Cursor>, StoreError>;
}

/// Why an admin or shopper request failed.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("{}: {}", .0.pointer, .0.detail)]
    Invalid(kernel::FieldError),
    #[error(transparent)]
    BelowReserved(StoreError),
    /// The admin said which `on_hand` their change was based on, and it moved since.
    #[error("on_hand is {current} now, not the {expected} this change was based on")]
    OnHandChanged { expected: u32, current: u32 },
    /// Orders kept moving this stock while we tried to write it.
    #[error("the stock kept changing; try again")]
    Busy,
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for InventoryError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::BelowReserved { .. } => Self::BelowReserved(error),
            other => Self::Store(other),
        }
    }
}

/// The stock of one SKU, per warehouse and in total.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SkuStock {
    pub sku: Sku,
    pub on_hand: u32,
    pub reserved: u32,
    pub available: u32,
    pub warehouses: Vec<StockLevel>,
}

impl SkuStock {
    fn of(sku: Sku, mut warehouses: Vec<StockLevel>) -> Self {
        warehouses.sort_by(|a, b| a.warehouse.cmp(&b.warehouse));
        Self {
            on_hand: warehouses.iter().map(|w| w.on_hand).sum(),
            reserved: warehouses.iter().map(|w| w.reserved).sum(),
            available: warehouses.iter().map(|w| w.available).sum(),
            sku,
            warehouses,
        }
    }
}

pub async fn stock(store: &impl InventoryStore, sku: Sku) -> Result<SkuStock, InventoryError> {
    let levels = store.levels(std::slice::from_ref(&sku)).await?;
    Ok(SkuStock::of(sku, levels))
}

/// `PUT /admin/inventory/{sku}`: sets a warehouse's `on_hand` (a count of the shelf). With
/// `expected_on_hand` (the value the count was based on), a change of `on_hand` since — a
/// restock from a cancelled order, another admin — refuses the write instead of erasing it.
/// Orders reserving and committing meanwhile never do: the write keeps their `reserved`.
pub async fn set_stock(
    store: &impl InventoryStore,
    sku: Sku,
    warehouse: Warehouse,
    on_hand: u32,
    expected_on_hand: Option<u32>,
) -> Result<SkuStock, InventoryError> {
    if on_hand > MAX_ON_HAND {
        return Err(InventoryError::Invalid(kernel::FieldError::new(
            "/on_hand",
            format!("must be at most {MAX_ON_HAND}"),
        )));
    }
    let (sku_ref, warehouse_ref) = (&sku, &warehouse);
    let set = until_won(|| async move {
        let levels = store.levels(std::slice::from_ref(sku_ref)).await?;
        let read = levels.iter().find(|level| &level.warehouse == warehouse_ref);
        let current = read.map_or(0, |level| level.on_hand);
        if let Some(expected) = expected_on_hand.filter(|expected| *expected != current) {
            return Err(InventoryError::OnHandChanged { expected, current });
        }
        let reserved = read.map_or(0, |level| level.reserved);
        if on_hand < reserved {
            return Err(InventoryError::BelowReserved(StoreError::BelowReserved { reserved }));
        }
        // The write is conditional on everything read, so `available` is never computed from a
        // stale `reserved` and nothing that moved `on_hand` meanwhile is silently overwritten.
        Ok(race(store.set_on_hand(read, sku_ref, warehouse_ref, on_hand).await?))
    })
    .await?;
    if set.is_none() {
        return Err(InventoryError::Busy);
    }
    tracing::info!(%sku, %warehouse, on_hand, "stock set");
    stock(store, sku).await
}

/// Available units per SKU, in the order asked, each SKU once.
pub async fn availability(store: &impl InventoryStore, skus: Vec<Sku>) -> Result<Vec<(Sku, u32)>, InventoryError> {
    let mut unique = Vec::new();
    for sku in skus {
        if !unique.contains(&sku) {
            unique.push(sku);
        }
    }
    let levels = store.levels(&unique).await?;
    Ok(unique
        .into_iter()
        .map(|sku| {
            let available = levels.iter().filter(|l| l.sku == sku).map(|l| l.available).sum();
            (sku, available)
        })
        .collect())
}

fn event(order_id: OrderId, event: Event) -> Envelope {
    Envelope::new(Metadata::new(order_id.to_string()), event)
}

/// `ReturnReceived`: the returned units go back on hand in the named warehouse, once per return
/// however often (and under whatever event id) the fact arrives: the restock is recorded under
/// the return's id in the same transaction. Announces nothing (no consumer needs it).
pub async fn restock(store: &impl InventoryStore, received: &ReturnReceived) -> Result<(), SagaError> {
    let mut lines: Vec<(Sku, u32)> = Vec::new();
    for line in &received.lines {
        match lines.iter_mut().find(|(sku, _)| *sku == line.sku) {
            Some((_, quantity)) => *quantity = quantity.saturating_add(line.quantity),
            None => lines.push((line.sku.clone(), line.quantity)),
        }
    }
    lines.retain(|(_, quantity)| *quantity > 0);
    if lines.len() > MAX_ALLOCATIONS {
        return Err(SagaError::Contract(format!("return {} has {} SKUs", received.return_id, lines.len())));
    }
    let (return_id, order_id, lines) = (received.return_id, received.order_id, &lines);
    // A conflict is another transaction on the same stock at the same moment: write again.
    let written = until_won(|| async move {
        Ok::<_, StoreError>(race(store.restock(return_id, order_id, &received.warehouse, lines).await?))
    })
    .await?;
    match written.ok_or(SagaError::Busy(order_id))? {
        Write::Done => {
            tracing::info!(%order_id, %return_id, warehouse = %received.warehouse, "returned units restocked")
        }
        _ => tracing::info!(%order_id, %return_id, "return restocked already"),
    }
    Ok(())
}

/// `OrderPlaced`: reserve every line or none.
pub async fn on_order_placed(
    store: &impl InventoryStore,
    order: &OrderPlaced,
    now: OffsetDateTime,
    hold: Duration,
) -> Result<(), SagaError> {
    let requests: Vec<Request> =
        order.lines.iter().map(|line| Request { sku: line.sku.clone(), quantity: line.quantity }).collect();
    let skus: Vec<Sku> = requests.iter().map(|r| r.sku.clone()).collect();
    let (requests, skus, order_id) = (&requests, &skus, order.order_id);
    // Another order may take stock we counted on between our read and our write: then read
    // again and decide again.
    let decided = until_won(|| async move {
        let levels = store.levels(skus).await?;
        let written = match allocate(requests, &levels) {
            Ok(lines) if writes(&lines) > MAX_ALLOCATIONS || warehouses(&lines) > MAX_SHIPMENTS => {
                // No retry can fit this in one transaction (ours, or fulfillment's that creates
                // one shipment per warehouse): refuse it now, rather than fail as a storage error
                // until the message is dead-lettered and the order times out, or strand a
                // confirmed order that can never ship.
                tracing::warn!(%order_id, writes = writes(&lines), "reservation needs too many stock writes");
                let rejected = Event::StockRejected(StockRejected {
                    order_id,
                    reason: RejectionReason::OrderTooLarge,
                    shortages: Vec::new(),
                });
                store.reject(order_id, &event(order_id, rejected)).await?
            }
            Ok(lines) => {
                let until = now + hold;
                let reserved = Event::StockReserved(StockReserved {
                    order_id,
                    lines: lines.iter().map(contract_line).collect(),
                    expires_at: until.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
                });
                store.reserve(order_id, &lines, until, &event(order_id, reserved)).await?
            }
            Err(shortages) => {
                let rejected = Event::StockRejected(StockRejected {
                    order_id,
                    reason: RejectionReason::OutOfStock,
                    shortages: shortages
                        .into_iter()
                        .map(|s| contract::Shortage { sku: s.sku, requested: s.requested, available: s.available })
                        .collect(),
                });
                store.reject(order_id, &event(order_id, rejected)).await?
            }
        };
        Ok::<_, StoreError>(race(written))
    })
    .await?;
    match decided {
        Some(Write::Done) => tracing::info!(%order_id, "reservation decided"),
        Some(_) => tracing::info!(%order_id, "reservation already decided; duplicate delivery"),
        None => return Err(SagaError::Busy(order_id)),
    }
    Ok(())
}

/// The warehouses a reservation draws from: fulfillment ships once from each.
fn warehouses(lines: &[AllocatedLine]) -> usize {
    let all: std::collections::BTreeSet<_> =
        lines.iter().flat_map(|line| line.allocations.iter().map(|a| &a.warehouse)).collect();
    all.len()
}

/// The stock items a reservation writes: one per warehouse allocation.
fn writes(lines: &[AllocatedLine]) -> usize {
    lines.iter().map(|line| line.allocations.len()).sum()
}

fn contract_line(line: &AllocatedLine) -> contract::ReservedLine {
    contract::ReservedLine {
        sku: line.sku.clone(),
        quantity: line.quantity,
        allocations: line
            .allocations
            .iter()
            .map(|a| contract::Allocation { warehouse: a.warehouse.to_string(), quantity: a.quantity })
            .collect(),
    }
}

/// `OrderCancelled`: give the units back, held or sold.
pub async fn release(store: &impl InventoryStore, order_id: OrderId) -> Result<(), SagaError> {
    let released = released(order_id, ReleaseReason::Cancelled);
    let released = &released;
    let written = until_won(|| async move {
        let reservation = store.reservation(order_id).await?;
        Ok::<_, StoreError>(race(store.release(reservation.as_ref(), order_id, released).await?))
    })
    .await?;
    match written {
        Some(Write::Done) => tracing::info!(%order_id, "reservation released"),
        Some(_) => tracing::info!(%order_id, "nothing held for the order; already released"),
        None => return Err(SagaError::Busy(order_id)),
    }
    Ok(())
}

fn released(order_id: OrderId, reason: ReleaseReason) -> Envelope {
    event(order_id, Event::StockReleased(StockReleased { order_id, reason }))
}

/// The expiry of one reservation the sweep listed: only a hold that is still a hold and has
/// lapsed by `now` is released. The listing comes from an eventually consistent index, so the
/// order may have been confirmed (committed) or cancelled since; that decided it, and the
/// conditional write makes sure a commit landing between our read and our write wins too.
pub async fn expire(store: &impl InventoryStore, order_id: OrderId, now: OffsetDateTime) -> Result<(), SagaError> {
    let released = released(order_id, ReleaseReason::Expired);
    let released = &released;
    let written = until_won(|| async move {
        let reservation = store.reservation(order_id).await?;
        let Some(reservation) = reservation.filter(|r| r.status == ReservationStatus::Reserved && r.held_until <= now)
        else {
            return Ok(Attempt::Done(None));
        };
        Ok::<_, StoreError>(match store.expire(&reservation, now, released).await? {
            Write::StockChanged => Attempt::Lost,
            decided => Attempt::Done(Some(decided)),
        })
    })
    .await?;
    match written {
        Some(Some(Write::Done)) => tracing::info!(%order_id, "lapsed reservation released"),
        Some(Some(_)) => tracing::info!(%order_id, "reservation decided while expiring it; nothing released"),
        Some(None) => tracing::info!(%order_id, "listed as lapsed, but no longer a lapsed hold; nothing to release"),
        None => return Err(SagaError::Busy(order_id)),
    }
    Ok(())
}

/// `OrderConfirmed`: the reserved units are sold.
pub async fn commit(store: &impl InventoryStore, order_id: OrderId) -> Result<(), SagaError> {
    let written = until_won(|| async move {
        let Some(reservation) = store.reservation(order_id).await? else {
            return Err(SagaError::Contract(format!("{order_id} was confirmed but never reserved")));
        };
        if reservation.status != ReservationStatus::Reserved {
            if reservation.status != ReservationStatus::Committed {
                // Confirmation arrived after the hold lapsed: checkout cancels such an order, even
                // a confirmed one, on `StockReleased { reason: expired }`, and payment voids it.
                tracing::error!(%order_id, status = ?reservation.status, "confirmation for a reservation that is not held");
            }
            return Ok(Attempt::Done(Write::AlreadyDecided));
        }
        // The event names every line with its warehouses: fulfillment ships from them.
        let lines = reservation.lines.iter().map(contract_line).collect();
        let committed = event(order_id, Event::StockCommitted(StockCommitted { order_id, lines }));
        Ok(race(store.commit(&reservation, &committed).await?))
    })
    .await?;
    match written {
        Some(Write::Done) => tracing::info!(%order_id, "reservation committed"),
        Some(_) => {}
        None => return Err(SagaError::Busy(order_id)),
    }
    Ok(())
}
