//! An in-memory [`FulfillmentStore`], for unit tests here and the warm benchmark (`bench/`,
//! feature `test-util`). It decides every write as the DynamoDB adapter's conditions do: facts
//! keep their first value, shipments are created once and never after a cancellation, a save
//! needs the version it read, a dispatch needs the order open (not cancelled, no live hold) and
//! a hold needs no dispatch. Listings are in the index's order (warehouse, then id), with the
//! last sort key as a plain (unsigned) cursor.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use time::OffsetDateTime;

use domain_events::checkout::Shipping;
use domain_events::inventory::ReservedLine;
use domain_events::queries::HoldForCancelReply;
use domain_events::{Envelope, Event};
use kernel::{OrderId, ShipmentId};

use crate::model::{OrderFacts, Shipment};
use crate::service::{Filter, FulfillmentStore, Guard, Page, PageError, StoreError, Write};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The order item: its facts, and what dispatches and cancel holds wrote.
#[derive(Debug, Clone, Default)]
struct OrderItem {
    facts: OrderFacts,
    dispatched: bool,
    hold_until: Option<OffsetDateTime>,
}

/// Orders' facts, shipments and the events written with them, in maps.
#[derive(Debug, Default)]
pub struct MemoryFulfillment {
    orders: Mutex<HashMap<OrderId, OrderItem>>,
    shipments: Mutex<HashMap<ShipmentId, Shipment>>,
    published: Mutex<Vec<Event>>,
}

impl MemoryFulfillment {
    /// Puts `shipment` in the store as it is (its order item created if missing).
    pub fn insert(&self, shipment: &Shipment) {
        lock(&self.orders).entry(shipment.order_id).or_default();
        lock(&self.shipments).insert(shipment.shipment_id, shipment.clone());
    }

    /// The events every write published, in order.
    pub fn published(&self) -> Vec<Event> {
        lock(&self.published).clone()
    }

    fn record(&self, order_id: OrderId, change: impl FnOnce(&mut OrderFacts)) -> OrderFacts {
        let mut orders = lock(&self.orders);
        let order = orders.entry(order_id).or_default();
        change(&mut order.facts);
        order.facts.clone()
    }

    fn publish(&self, events: &[Envelope]) {
        lock(&self.published).extend(events.iter().map(|envelope| envelope.event.clone()));
    }
}

impl FulfillmentStore for MemoryFulfillment {
    async fn record_shipping(&self, order_id: OrderId, shipping: &Shipping) -> Result<OrderFacts, StoreError> {
        Ok(self.record(order_id, |facts| {
            facts.shipping.get_or_insert_with(|| shipping.clone());
        }))
    }

    async fn record_lines(&self, order_id: OrderId, lines: &[ReservedLine]) -> Result<OrderFacts, StoreError> {
        Ok(self.record(order_id, |facts| {
            facts.lines.get_or_insert_with(|| lines.to_vec());
        }))
    }

    async fn record_cancelled(&self, order_id: OrderId) -> Result<OrderFacts, StoreError> {
        Ok(self.record(order_id, |facts| facts.cancelled = true))
    }

    async fn create(
        &self,
        order_id: OrderId,
        shipments: &[Shipment],
        events: &[Envelope],
    ) -> Result<Write, StoreError> {
        let mut orders = lock(&self.orders);
        let order = orders.entry(order_id).or_default();
        if order.facts.shipments.is_some() || order.facts.cancelled {
            return Ok(Write::Lost);
        }
        let mut stored = lock(&self.shipments);
        if shipments.iter().any(|s| stored.contains_key(&s.shipment_id)) {
            return Err(StoreError(adapters::dynamo::Unavailable::because("a shipment id is taken")));
        }
        order.facts.shipments = Some(shipments.iter().map(|s| s.shipment_id).collect());
        stored.extend(shipments.iter().map(|s| (s.shipment_id, s.clone())));
        self.publish(events);
        Ok(Write::Done)
    }

    async fn shipment(&self, id: ShipmentId) -> Result<Option<Shipment>, StoreError> {
        Ok(lock(&self.shipments).get(&id).cloned())
    }

    async fn save(
        &self,
        shipment: &Shipment,
        expected: u64,
        events: &[Envelope],
        guard: Guard,
    ) -> Result<Write, StoreError> {
        let mut orders = lock(&self.orders);
        let mut shipments = lock(&self.shipments);
        if shipments.get(&shipment.shipment_id).is_none_or(|stored| stored.version != expected) {
            return Ok(Write::Lost);
        }
        if let Guard::OrderOpen { now } = guard {
            let order = orders.entry(shipment.order_id).or_default();
            if order.facts.cancelled || order.hold_until.is_some_and(|until| until >= now) {
                return Ok(Write::OrderClosed);
            }
            order.dispatched = true;
        }
        shipments.insert(shipment.shipment_id, shipment.clone());
        self.publish(events);
        Ok(Write::Done)
    }

    async fn hold(&self, order_id: OrderId, until: OffsetDateTime) -> Result<HoldForCancelReply, StoreError> {
        let mut orders = lock(&self.orders);
        let order = orders.entry(order_id).or_default();
        if order.dispatched {
            return Ok(HoldForCancelReply::AlreadyDispatched);
        }
        order.hold_until = Some(until);
        Ok(HoldForCancelReply::Held)
    }

    async fn list(&self, filter: &Filter, limit: usize, cursor: Option<&str>) -> Result<Page, PageError> {
        let sort_key = |s: &Shipment| format!("{}#{}", s.warehouse, s.shipment_id);
        let mut items: Vec<Shipment> = lock(&self.shipments)
            .values()
            .filter(|s| s.status == filter.status && filter.warehouse.as_ref().is_none_or(|w| &s.warehouse == w))
            .filter(|s| cursor.is_none_or(|after| sort_key(s).as_str() > after))
            .cloned()
            .collect();
        items.sort_by_key(sort_key);
        let more = items.len() > limit;
        items.truncate(limit);
        let next_cursor = if more { items.last().map(sort_key) } else { None };
        Ok(Page { items, next_cursor })
    }
}

#[cfg(test)]
mod tests {
    use domain_events::inventory::Allocation;
    use kernel::Sku;

    use super::*;
    use crate::model::{Status, Tracking};
    use crate::service;

    fn shipping() -> Shipping {
        serde_json::from_value(serde_json::json!({ "method": "standard", "address": {
            "name": "Alice Liddell", "line1": "1 Main St", "city": "Springfield", "region": "IL",
            "postal_code": "62701", "country": "US" } }))
        .unwrap()
    }

    fn lines() -> Vec<ReservedLine> {
        vec![ReservedLine {
            sku: Sku::parse("MUG-01-WHI").unwrap(),
            quantity: 3,
            allocations: vec![
                Allocation { warehouse: "east".into(), quantity: 2 },
                Allocation { warehouse: "west".into(), quantity: 1 },
            ],
        }]
    }

    #[tokio::test]
    async fn both_facts_create_the_shipments_once_and_a_hold_stops_a_dispatch() {
        let (store, order_id, now) = (MemoryFulfillment::default(), OrderId::new(), OffsetDateTime::now_utc());
        service::on_stock_committed(&store, order_id, &lines(), now).await.unwrap();
        service::on_order_confirmed(&store, order_id, Some(&shipping()), now).await.unwrap();
        service::on_order_confirmed(&store, order_id, Some(&shipping()), now).await.unwrap();
        let filter = Filter { status: Status::Pending, warehouse: None };
        let page = store.list(&filter, 1, None).await.unwrap();
        let rest = store.list(&filter, 10, page.next_cursor.as_deref()).await.unwrap();
        assert_eq!((page.items.len(), rest.items.len(), rest.next_cursor), (1, 1, None), "one per warehouse");
        assert_eq!(store.published().len(), 2, "created once");

        assert_eq!(service::hold_for_cancel(&store, order_id, now).await.unwrap(), HoldForCancelReply::Held);
        let tracking = Tracking::parse("UPS", "1Z999", None).unwrap();
        let refused = service::dispatch(&store, page.items[0].shipment_id, tracking, now).await;
        assert!(matches!(refused, Err(service::FulfillmentError::OrderClosed(_))), "{refused:?}");
        service::on_order_cancelled(&store, order_id, now).await.unwrap();
        let cancelled = store.list(&Filter { status: Status::Cancelled, warehouse: None }, 10, None).await.unwrap();
        assert_eq!(cancelled.items.len(), 2);
    }
}
