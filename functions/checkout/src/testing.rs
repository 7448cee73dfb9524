//! An in-memory [`OrderStore`], for unit tests here and the warm benchmark (`bench/`, feature
//! `test-util`): orders in a map, a save refused unless the stored version is the expected one,
//! as the DynamoDB adapter's condition does. Placement records the order; idempotency keys and
//! listings are not kept (every listing is empty).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use time::OffsetDateTime;

use domain_events::Event;
use kernel::page::Page as SweepPage;
use kernel::{Currency, Money, OrderId, ReturnId};

use crate::order::{Address, Flag, Order, PaymentFacts, Status};
use crate::pricing::Totals;
use crate::returns::{Return, ReturnStatus};
use crate::service::{
    OrderStore, Page, PageError, Placed, Placement, ReturnsPage, Saved, SavedReply, StoreError, Write,
};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Orders in memory; a save checks the version as the DynamoDB adapter's condition does.
#[derive(Debug, Default)]
pub struct MemoryOrders {
    orders: Mutex<HashMap<OrderId, Order>>,
    published: Mutex<Vec<Event>>,
}

impl MemoryOrders {
    /// A store holding `order`.
    pub fn holding(order: &Order) -> Self {
        let store = Self::default();
        store.insert(order);
        store
    }

    /// Puts `order` in the store as it is (version included).
    pub fn insert(&self, order: &Order) {
        lock(&self.orders).insert(order.order_id, order.clone());
    }

    /// The events every save published, in order.
    pub fn published(&self) -> Vec<Event> {
        lock(&self.published).clone()
    }
}

fn empty() -> Page {
    Page { orders: Vec::new(), next_cursor: None }
}

impl OrderStore for MemoryOrders {
    type Cursor = ();
    async fn saved_reply(&self, _: &str, _: &str) -> Result<Option<SavedReply>, StoreError> {
        Ok(None)
    }
    async fn place(&self, placement: &Placement) -> Result<Placed, StoreError> {
        self.insert(&placement.order);
        Ok(Placed::Done)
    }
    async fn get(&self, id: OrderId) -> Result<Option<Order>, StoreError> {
        Ok(lock(&self.orders).get(&id).cloned())
    }
    async fn save(&self, order: &Order, expected: u64, write: Write<'_>) -> Result<Saved, StoreError> {
        let mut orders = lock(&self.orders);
        if orders.get(&order.order_id).map(|o| o.version) != Some(expected) {
            return Ok(Saved::Stale);
        }
        orders.insert(order.order_id, order.clone());
        lock(&self.published).extend(write.events.iter().map(|e| e.event.clone()));
        Ok(Saved::Done)
    }
    async fn get_return(&self, id: ReturnId) -> Result<Option<(OrderId, Return)>, StoreError> {
        let orders = lock(&self.orders);
        Ok(orders.values().find_map(|o| Some((o.order_id, o.find_return(id)?.clone()))))
    }
    async fn returns_by_status(&self, _: ReturnStatus, _: usize, _: Option<&str>) -> Result<ReturnsPage, PageError> {
        Ok(ReturnsPage { items: Vec::new(), next_cursor: None })
    }
    async fn by_customer(&self, _: &str, _: usize, _: Option<&str>) -> Result<Page, PageError> {
        Ok(empty())
    }
    async fn by_status(&self, _: Status, _: usize, _: Option<&str>) -> Result<Page, PageError> {
        Ok(empty())
    }
    async fn by_flag(&self, _: Flag, _: usize, _: Option<&str>) -> Result<Page, PageError> {
        Ok(empty())
    }
    async fn overdue(&self, _: OffsetDateTime, _: usize, _: Option<()>) -> Result<SweepPage<OrderId, ()>, StoreError> {
        Ok(SweepPage { items: Vec::new(), next: None })
    }
}

/// An order of `alice` in `status` (no lines, 25.00 USD, intent `pi_1`, version 3).
pub fn order_in(status: Status) -> Order {
    let zero = Money::zero(Currency::USD);
    Order {
        order_id: OrderId::new(),
        customer: "alice".into(),
        email: "alice@example.com".into(),
        status,
        cancel_reason: None,
        payment_failure: None,
        lines: Vec::new(),
        totals: Totals {
            subtotal: zero,
            discount: zero,
            shipping: zero,
            tax: zero,
            rounding: None,
            total: Money::new(2500, Currency::USD).unwrap_or(zero),
            promotions: vec![],
        },
        shipping_address: Address {
            name: "A".into(),
            line1: "1 Way".into(),
            line2: None,
            city: "Town".into(),
            region: None,
            postal_code: "1".into(),
            country: "US".into(),
        },
        shipping_method: "standard".into(),
        promo_code: None,
        payment_method: "pm_card_visa".into(),
        payment_intent_id: Some("pi_1".into()),
        payment: PaymentFacts::default(),
        shipment_count: None,
        shipments: Vec::new(),
        returns: Vec::new(),
        disputes: Vec::new(),
        flags: Vec::new(),
        flag_resolutions: Vec::new(),
        capture_failure: None,
        coupon_redemption: None,
        history: vec![],
        version: 3,
        created_at: OffsetDateTime::UNIX_EPOCH,
        updated_at: OffsetDateTime::UNIX_EPOCH,
        deadline: OffsetDateTime::UNIX_EPOCH,
    }
}
