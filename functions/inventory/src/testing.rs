//! An in-memory [`InventoryStore`], for unit tests here and the warm benchmark (`bench/`,
//! feature `test-util`). Every write checks all its conditions before it changes anything, as
//! the DynamoDB adapter's transactions do: a reservation takes units only while they are
//! available and is decided once, a release or an expiry gives units back only from the status
//! it read (an expiry only once the hold lapsed), a commit only from `reserved`, a return is
//! restocked once, and an admin's count is written only over the stock it read.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use time::OffsetDateTime;

use domain_events::{Envelope, Event};
use kernel::page::Page;
use kernel::{OrderId, ReturnId, Sku};

use crate::service::{InventoryStore, Reservation, ReservationStatus, StoreError, Write};
use crate::stock::{AllocatedLine, StockLevel, Warehouse};

#[derive(Debug, Default)]
struct State {
    /// By SKU, then warehouse (in name order, as the adapter's query returns them).
    stock: BTreeMap<(Sku, Warehouse), StockLevel>,
    reservations: HashMap<OrderId, Reservation>,
    restocked: HashSet<ReturnId>,
    published: Vec<Event>,
}

impl State {
    /// The stock rows `lines` allocate from, each checked by `ok` with its quantity: `false` if
    /// one is missing or refused.
    fn all_allocations(&self, lines: &[AllocatedLine], ok: impl Fn(&StockLevel, u32) -> bool) -> bool {
        lines.iter().flat_map(|line| line.allocations.iter().map(move |a| (line, a))).all(|(line, allocation)| {
            self.stock
                .get(&(line.sku.clone(), allocation.warehouse.clone()))
                .is_some_and(|level| ok(level, allocation.quantity))
        })
    }

    fn change_allocations(&mut self, lines: &[AllocatedLine], change: impl Fn(&mut StockLevel, u32)) {
        for line in lines {
            for allocation in &line.allocations {
                let level =
                    self.stock.entry((line.sku.clone(), allocation.warehouse.clone())).or_insert_with(|| StockLevel {
                        sku: line.sku.clone(),
                        warehouse: allocation.warehouse.clone(),
                        on_hand: 0,
                        reserved: 0,
                        available: 0,
                    });
                change(level, allocation.quantity);
            }
        }
    }

    fn decided(&mut self, order_id: OrderId, status: ReservationStatus) -> Write {
        if self.reservations.contains_key(&order_id) {
            return Write::AlreadyDecided;
        }
        let reservation = Reservation { order_id, status, lines: Vec::new(), held_until: OffsetDateTime::UNIX_EPOCH };
        self.reservations.insert(order_id, reservation);
        Write::Done
    }

    /// The units of `reservation` back, from the status it was read in (`StockChanged` if it
    /// moved since, so the caller reads again).
    fn give_back(&mut self, reservation: &Reservation, lapsed_by: Option<OffsetDateTime>, event: &Envelope) -> Write {
        let stored = self.reservations.get(&reservation.order_id);
        let still = stored.is_some_and(|stored| {
            stored.status == reservation.status && lapsed_by.is_none_or(|now| stored.held_until <= now)
        });
        let held = reservation.status == ReservationStatus::Reserved;
        if !still || (held && !self.all_allocations(&reservation.lines, |level, q| level.reserved >= q)) {
            return Write::StockChanged;
        }
        self.change_allocations(&reservation.lines, |level, q| {
            level.available += q;
            if held {
                level.reserved -= q;
            } else {
                level.on_hand += q;
            }
        });
        if let Some(stored) = self.reservations.get_mut(&reservation.order_id) {
            stored.status = ReservationStatus::Released;
        }
        self.published.push(event.event.clone());
        Write::Done
    }
}

/// Stock, reservations and the events written with them, behind one lock (every write is
/// atomic, like a transaction).
#[derive(Debug, Default)]
pub struct MemoryInventory {
    state: Mutex<State>,
}

impl MemoryInventory {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A store with `on_hand` units of `sku` in `warehouse`, none reserved.
    pub fn stocked(sku: &Sku, warehouse: &Warehouse, on_hand: u32) -> Self {
        let store = Self::default();
        let level =
            StockLevel { sku: sku.clone(), warehouse: warehouse.clone(), on_hand, reserved: 0, available: on_hand };
        store.state().stock.insert((sku.clone(), warehouse.clone()), level);
        store
    }

    /// The events every write published, in order.
    pub fn published(&self) -> Vec<Event> {
        self.state().published.clone()
    }

    /// Every stock row.
    pub fn stock(&self) -> Vec<StockLevel> {
        self.state().stock.values().cloned().collect()
    }
}

impl InventoryStore for MemoryInventory {
    /// The held-until time and order of the last reservation listed.
    type Cursor = (OffsetDateTime, OrderId);

    async fn levels(&self, skus: &[Sku]) -> Result<Vec<StockLevel>, StoreError> {
        let state = self.state();
        Ok(skus
            .iter()
            .flat_map(|sku| state.stock.iter().filter(move |((s, _), _)| s == sku).map(|(_, level)| level.clone()))
            .collect())
    }

    async fn set_on_hand(
        &self,
        read: Option<&StockLevel>,
        sku: &Sku,
        warehouse: &Warehouse,
        on_hand: u32,
    ) -> Result<Write, StoreError> {
        let mut state = self.state();
        let key = (sku.clone(), warehouse.clone());
        let unchanged = match (read, state.stock.get(&key)) {
            (None, None) => true,
            (Some(read), Some(stored)) => read.on_hand == stored.on_hand && read.reserved == stored.reserved,
            _ => false,
        };
        if !unchanged {
            return Ok(Write::StockChanged);
        }
        let reserved = read.map_or(0, |level| level.reserved);
        let level = StockLevel {
            sku: sku.clone(),
            warehouse: warehouse.clone(),
            on_hand,
            reserved,
            available: on_hand.saturating_sub(reserved),
        };
        state.stock.insert(key, level);
        Ok(Write::Done)
    }

    async fn reservation(&self, order_id: OrderId) -> Result<Option<Reservation>, StoreError> {
        Ok(self.state().reservations.get(&order_id).cloned())
    }

    async fn reserve(
        &self,
        order_id: OrderId,
        lines: &[AllocatedLine],
        until: OffsetDateTime,
        event: &Envelope,
    ) -> Result<Write, StoreError> {
        let mut state = self.state();
        if state.reservations.contains_key(&order_id) {
            return Ok(Write::AlreadyDecided);
        }
        if !state.all_allocations(lines, |level, q| level.available >= q) {
            return Ok(Write::StockChanged);
        }
        state.change_allocations(lines, |level, q| {
            level.available -= q;
            level.reserved += q;
        });
        let reservation =
            Reservation { order_id, status: ReservationStatus::Reserved, lines: lines.to_vec(), held_until: until };
        state.reservations.insert(order_id, reservation);
        state.published.push(event.event.clone());
        Ok(Write::Done)
    }

    async fn reject(&self, order_id: OrderId, event: &Envelope) -> Result<Write, StoreError> {
        let mut state = self.state();
        let written = state.decided(order_id, ReservationStatus::Rejected);
        if written == Write::Done {
            state.published.push(event.event.clone());
        }
        Ok(written)
    }

    async fn release(
        &self,
        reservation: Option<&Reservation>,
        order_id: OrderId,
        event: &Envelope,
    ) -> Result<Write, StoreError> {
        let mut state = self.state();
        let Some(reservation) = reservation else {
            // The tombstone; placed meanwhile: read it again.
            return Ok(match state.decided(order_id, ReservationStatus::Released) {
                Write::AlreadyDecided => Write::StockChanged,
                other => other,
            });
        };
        Ok(match reservation.status {
            ReservationStatus::Reserved | ReservationStatus::Committed => state.give_back(reservation, None, event),
            ReservationStatus::Released | ReservationStatus::Rejected => Write::AlreadyDecided,
        })
    }

    async fn commit(&self, reservation: &Reservation, event: &Envelope) -> Result<Write, StoreError> {
        let mut state = self.state();
        let reserved =
            state.reservations.get(&reservation.order_id).is_some_and(|r| r.status == ReservationStatus::Reserved);
        if !reserved {
            return Ok(Write::AlreadyDecided);
        }
        if !state.all_allocations(&reservation.lines, |level, q| level.reserved >= q) {
            return Ok(Write::StockChanged);
        }
        state.change_allocations(&reservation.lines, |level, q| {
            level.on_hand -= q;
            level.reserved -= q;
        });
        if let Some(stored) = state.reservations.get_mut(&reservation.order_id) {
            stored.status = ReservationStatus::Committed;
        }
        state.published.push(event.event.clone());
        Ok(Write::Done)
    }

    async fn expire(
        &self,
        reservation: &Reservation,
        now: OffsetDateTime,
        event: &Envelope,
    ) -> Result<Write, StoreError> {
        Ok(self.state().give_back(reservation, Some(now), event))
    }

    async fn restock(
        &self,
        return_id: ReturnId,
        _order_id: OrderId,
        warehouse: &Warehouse,
        lines: &[(Sku, u32)],
    ) -> Result<Write, StoreError> {
        let mut state = self.state();
        if !state.restocked.insert(return_id) {
            return Ok(Write::AlreadyDecided);
        }
        let lines: Vec<AllocatedLine> = lines
            .iter()
            .map(|(sku, quantity)| AllocatedLine {
                sku: sku.clone(),
                quantity: *quantity,
                allocations: vec![crate::stock::Allocation { warehouse: warehouse.clone(), quantity: *quantity }],
            })
            .collect();
        state.change_allocations(&lines, |level, q| {
            level.on_hand += q;
            level.available += q;
        });
        Ok(Write::Done)
    }

    async fn expired(
        &self,
        now: OffsetDateTime,
        limit: usize,
        after: Option<Self::Cursor>,
    ) -> Result<Page<OrderId, Self::Cursor>, StoreError> {
        let state = self.state();
        let mut lapsed: Vec<(OffsetDateTime, OrderId)> = state
            .reservations
            .values()
            .filter(|r| r.status == ReservationStatus::Reserved && r.held_until < now)
            .map(|r| (r.held_until, r.order_id))
            .filter(|position| after.is_none_or(|after| *position > after))
            .collect();
        lapsed.sort();
        let more = lapsed.len() > limit;
        lapsed.truncate(limit);
        let next = if more { lapsed.last().copied() } else { None };
        Ok(Page { items: lapsed.into_iter().map(|(_, order_id)| order_id).collect(), next })
    }
}

#[cfg(test)]
mod tests {
    use domain_events::checkout::{OrderLine, OrderPlaced};
    use kernel::{Currency, Money};

    use super::*;
    use crate::service;

    fn placed(order_id: OrderId, quantity: u32) -> OrderPlaced {
        OrderPlaced {
            order_id,
            customer: "alice".into(),
            email: "alice@example.com".into(),
            lines: vec![OrderLine {
                sku: Sku::parse("TEE-01").unwrap(),
                quantity,
                unit_price: Money::new(1999, Currency::USD).unwrap(),
            }],
            total: Money::new(1999 * i64::from(quantity), Currency::USD).unwrap(),
            payment_method: "pm_card_visa".into(),
            cart: None,
        }
    }

    #[tokio::test]
    async fn units_are_reserved_once_committed_or_given_back_and_never_oversold() {
        let (sku, main) = (Sku::parse("TEE-01").unwrap(), Warehouse::parse("main").unwrap());
        let store = MemoryInventory::stocked(&sku, &main, 3);
        let (first, second, third) = (OrderId::new(), OrderId::new(), OrderId::new());
        let (now, hold) = (OffsetDateTime::now_utc(), time::Duration::minutes(15));
        for _ in 0..2 {
            service::on_order_placed(&store, &placed(first, 2), now, hold).await.unwrap();
        }
        service::on_order_placed(&store, &placed(second, 2), now, hold).await.unwrap();
        assert_eq!(store.reservation(second).await.unwrap().unwrap().status, ReservationStatus::Rejected);
        service::on_order_placed(&store, &placed(third, 1), now, hold).await.unwrap();
        service::commit(&store, first).await.unwrap();
        service::release(&store, first).await.unwrap();
        service::expire(&store, third, now + hold).await.unwrap();

        let level = &store.stock()[0];
        assert_eq!((level.on_hand, level.reserved, level.available), (3, 0, 3));
        let page = store.expired(now + hold + time::Duration::SECOND, 10, None).await.unwrap();
        assert!(page.items.is_empty(), "{page:?}");
        assert_eq!(store.published().len(), 6, "2 reserved, 1 rejected, committed, released, expired: once each");
    }
}
