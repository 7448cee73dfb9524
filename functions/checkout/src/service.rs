//! Checkout and order use cases, and the ports they need.

use time::{Duration, OffsetDateTime};

use adapters::dynamo::Unavailable;
use adapters::retry::{Attempt, until_won};
use domain_events::checkout::{CartSnapshot, OrderLine as EventLine, OrderPlaced};
use domain_events::queries::{HoldForCancelReply, PricedCart};
use domain_events::{Envelope, Event, Metadata};
use kernel::page::Page as SweepPage;
use kernel::{CartId, FieldError, OrderId, ReturnId, Warehouse};

use crate::order::{CheckoutInput, Flag, Order, OrderLine, PaymentFacts, Refused, SagaStep, Status, Transition};
use crate::pricing::{self, PricingConfig, PricingError};
use crate::returns::{Return, ReturnInput, ReturnRefused, ReturnStatus};
use crate::view::OrderView;

/// What an idempotency key keeps, to answer retries: the request's fingerprint and the order
/// it placed. The reply is rebuilt from that order as it was placed ([`Order::as_placed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedReply {
    /// The [`fingerprint`] of the request it answered: a retry must match it exactly.
    pub request: String,
    pub order_id: OrderId,
}

/// The fingerprint of a request's canonical JSON body: its SHA-256 in hex (64 characters).
/// Two bodies with the same fingerprint are taken as the same request.
pub fn fingerprint(canonical_body: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, canonical_body.as_bytes());
    digest.as_ref().iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Everything one placement writes, atomically.
#[derive(Debug, Clone)]
pub struct Placement {
    pub order: Order,
    pub event: Envelope,
    pub idempotency_key: String,
    /// The request's [`fingerprint`], kept under the key with the order id.
    pub request: String,
    /// A limited coupon: its code and how many redemptions it allows.
    pub coupon_limit: Option<(String, u64)>,
}

/// How a placement write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    Done,
    /// Another request with the same key got there first.
    DuplicateKey,
    CouponExhausted,
    /// A concurrent write touched the same items: try again.
    Conflict,
}

/// How a versioned order write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    Done,
    Stale,
}

#[derive(Debug, thiserror::Error)]
#[error("checkout storage failed")]
pub struct StoreError(#[from] pub Unavailable);

/// What an order write carries along.
#[derive(Debug, Clone, Copy, Default)]
pub struct Write<'a> {
    /// Outbox events.
    pub events: &'a [Envelope],
    /// A limited coupon whose redemption goes back (the order was cancelled).
    pub returned_coupon: Option<&'a str>,
    /// Returns the change created or moved: their listing copies are written too.
    pub returns: &'a [Return],
}

/// A return as the admin listing shows it (what its index projects).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReturnSummary {
    pub id: ReturnId,
    pub order_id: OrderId,
    pub status: ReturnStatus,
    pub reason: crate::returns::ReturnReason,
    pub lines: Vec<domain_events::checkout::ReturnLine>,
    #[serde(with = "time::serde::rfc3339")]
    pub requested_at: OffsetDateTime,
    #[serde(default)]
    pub refund: Option<kernel::Money>,
}

/// A page of returns.
#[derive(Debug, Clone)]
pub struct ReturnsPage {
    pub items: Vec<ReturnSummary>,
    pub next_cursor: Option<String>,
}

/// A page of orders.
#[derive(Debug, Clone)]
pub struct Page {
    pub orders: Vec<Order>,
    pub next_cursor: Option<String>,
}

/// Why a page could not be read.
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

impl From<Unavailable> for PageError {
    fn from(error: Unavailable) -> Self {
        Self::Store(StoreError(error))
    }
}

/// The storage port.
#[allow(async_fn_in_trait)]
pub trait OrderStore {
    /// Where a listing of overdue orders goes on (the store's own, opaque to the domain).
    type Cursor;
    async fn saved_reply(&self, customer: &str, key: &str) -> Result<Option<SavedReply>, StoreError>;
    async fn place(&self, placement: &Placement) -> Result<Placed, StoreError>;
    async fn get(&self, id: OrderId) -> Result<Option<Order>, StoreError>;
    /// Writes `order` and what comes with it ([`Write`]) if the stored version is still
    /// `expected`, in one transaction. What placement fixed (the customer, e-mail, lines,
    /// totals, address, shipping and payment methods, coupon, creation time and deadline) never
    /// changes afterwards, so a store may keep it apart and write it once.
    async fn save(&self, order: &Order, expected: u64, write: Write<'_>) -> Result<Saved, StoreError>;
    /// A return and its order, from the return's own item.
    async fn get_return(&self, id: ReturnId) -> Result<Option<(OrderId, Return)>, StoreError>;
    /// Returns in `status`, newest first.
    async fn returns_by_status(
        &self,
        status: ReturnStatus,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<ReturnsPage, PageError>;
    async fn by_customer(&self, customer: &str, limit: usize, cursor: Option<&str>) -> Result<Page, PageError>;
    async fn by_status(&self, status: Status, limit: usize, cursor: Option<&str>) -> Result<Page, PageError>;
    /// Orders that carry `flag`, newest first. Pages may hold fewer than `limit` (the index holds
    /// every flagged order, filtered by flag).
    async fn by_flag(&self, flag: Flag, limit: usize, cursor: Option<&str>) -> Result<Page, PageError>;
    /// Open orders whose deadline passed before `now`, oldest deadline first, at most `limit`,
    /// after `after`. The listing comes from an eventually consistent index: it says where to
    /// look, the order itself says what to do.
    async fn overdue(
        &self,
        now: OffsetDateTime,
        limit: usize,
        after: Option<Self::Cursor>,
    ) -> Result<SweepPage<OrderId, Self::Cursor>, StoreError>;
}

#[derive(Debug, thiserror::Error)]
#[error("the cart service failed")]
pub struct CartReadError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// The cart, as checkout may see it: through the cart's own query, never its table.
#[allow(async_fn_in_trait)]
pub trait CartReader {
    async fn priced_cart(&self, cart_id: CartId, customer: &str) -> Result<Option<PricedCart>, CartReadError>;
}

#[derive(Debug, thiserror::Error)]
#[error("the fulfillment service failed")]
pub struct FulfillmentCallError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// Fulfillment, as a customer cancel must ask it: through its own query, never its table.
#[allow(async_fn_in_trait)]
pub trait FulfillmentGate {
    /// Stops new dispatches of the order for a while (`Held`), unless one has left already
    /// (`AlreadyDispatched`). See `HoldForCancel` in `domain_events::queries`.
    async fn hold_for_cancel(&self, order_id: OrderId) -> Result<HoldForCancelReply, FulfillmentCallError>;
}

/// Why a checkout or order request failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error("invalid request")]
    Invalid(Vec<FieldError>),
    #[error("the Idempotency-Key was used for a different request")]
    KeyReused,
    #[error("no order {0}")]
    NotFound(String),
    #[error(transparent)]
    NotCancellable(Refused),
    #[error(transparent)]
    Return(ReturnRefused),
    #[error("no return {0}")]
    ReturnNotFound(String),
    #[error("the order kept changing")]
    Busy,
    /// The order is no longer at the version the request was decided on.
    #[error("the order changed since version {seen}: it is at version {current}")]
    Stale { seen: u64, current: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cart(#[from] CartReadError),
    #[error(transparent)]
    Fulfillment(#[from] FulfillmentCallError),
}

/// A response to send: fresh or replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub replayed: bool,
}

fn invalid(pointer: &str, detail: impl Into<String>) -> CheckoutError {
    CheckoutError::Invalid(vec![FieldError::new(pointer, detail)])
}

fn pricing_error(error: PricingError) -> CheckoutError {
    let pointer = match &error {
        PricingError::UnknownShippingMethod(_) | PricingError::ShippingUnavailable { .. } => "/shipping_method",
        PricingError::UnknownPromoCode(_) => "/promo_code",
        PricingError::Empty | PricingError::NotSold(_) | PricingError::BelowMinimum { .. } | PricingError::Money(_) => {
            "/cart_id"
        }
    };
    invalid(pointer, error.to_string())
}

/// The settings placement needs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub pricing: PricingConfig,
    /// How long an order may wait for stock and payment before it is cancelled.
    pub timeout: Duration,
    /// How long after a delivery its units may be returned (`RETURN_WINDOW_DAYS`, default 30).
    pub return_window: Duration,
}

/// `POST /checkout`: places an order once per idempotency key, however often it is retried.
///
/// The order, its `OrderPlaced` event, the saved reply and any coupon redemption are one
/// transaction whose first condition is "no reply saved under this key": concurrent duplicates
/// produce one order, and every other attempt replays the winner's reply.
/// One `POST /checkout` as received.
#[derive(Debug, Clone)]
pub struct PlaceRequest<'a> {
    /// The caller's JWT `sub`.
    pub customer: &'a str,
    /// The `Idempotency-Key` header.
    pub key: &'a str,
    /// The body in canonical JSON (keys sorted): what a retry must repeat exactly.
    pub canonical_body: &'a str,
    pub input: CheckoutInput,
}

pub async fn place_order(
    store: &impl OrderStore,
    carts: &impl CartReader,
    settings: &Settings,
    placing: PlaceRequest<'_>,
    now: OffsetDateTime,
) -> Result<Reply, CheckoutError> {
    let PlaceRequest { customer, key, canonical_body, input } = placing;
    let request_fingerprint = fingerprint(canonical_body);
    if let Some(saved) = store.saved_reply(customer, key).await? {
        return replay(store, saved, &request_fingerprint).await;
    }
    let request = input.parse().map_err(CheckoutError::Invalid)?;
    let cart = carts
        .priced_cart(request.cart_id, customer)
        .await?
        .ok_or_else(|| invalid("/cart_id", format!("you have no cart {}", request.cart_id)))?;
    let (totals, line_discounts) = pricing::priced(
        &settings.pricing,
        &cart.lines,
        &request.shipping_method,
        &request.address.country,
        request.promo_code.as_deref(),
    )
    .map_err(pricing_error)?;
    settings.pricing.chargeable(totals.total).map_err(pricing_error)?;

    let lines: Vec<OrderLine> = cart
        .lines
        .iter()
        .zip(line_discounts)
        .filter_map(|(line, discount)| {
            let offer = line.offer.as_ref()?;
            Some(OrderLine {
                sku: line.sku.clone(),
                title: offer.title.clone(),
                quantity: line.quantity,
                unit_price: offer.unit_price,
                line_total: offer.unit_price.checked_mul(line.quantity).ok()?,
                discount: (discount.amount() > 0).then_some(discount),
            })
        })
        .collect();
    let coupon_limit = request.promo_code.as_deref().and_then(|code| {
        let coupon = settings.pricing.coupon(code)?;
        Some((coupon.code.clone()?.to_uppercase(), coupon.max_redemptions?))
    });
    let order_id = OrderId::new();
    let order = Order {
        order_id,
        customer: customer.to_owned(),
        email: request.email.clone(),
        status: Status::Pending,
        cancel_reason: None,
        payment_failure: None,
        lines,
        totals,
        shipping_address: request.address.clone(),
        shipping_method: request.shipping_method.clone(),
        promo_code: request.promo_code.clone(),
        payment_method: request.payment_method.clone(),
        payment_intent_id: None,
        payment: PaymentFacts::default(),
        shipment_count: None,
        shipments: Vec::new(),
        returns: Vec::new(),
        disputes: Vec::new(),
        flags: Vec::new(),
        flag_resolutions: Vec::new(),
        capture_failure: None,
        coupon_redemption: coupon_limit.as_ref().map(|(code, _)| code.clone()),
        history: vec![Transition { status: Status::Pending, at: now }],
        version: 1,
        created_at: now,
        updated_at: now,
        deadline: now + settings.timeout,
    };
    let event = Envelope::new(
        Metadata::new(order_id.to_string()),
        Event::OrderPlaced(OrderPlaced {
            order_id,
            customer: customer.to_owned(),
            email: order.email.clone(),
            lines: order
                .lines
                .iter()
                .map(|l| EventLine { sku: l.sku.clone(), quantity: l.quantity, unit_price: l.unit_price })
                .collect(),
            total: order.totals.total,
            payment_method: order.payment_method.clone(),
            cart: Some(CartSnapshot { cart_id: cart.cart_id, version: cart.version }),
        }),
    );
    let body = placed_body(&order)?;
    let placement =
        Placement { order, event, idempotency_key: key.to_owned(), request: request_fingerprint.clone(), coupon_limit };
    // A conflict is another transaction on the same items at the same moment (a retry of this
    // very checkout, or a coupon's count): try the same placement again.
    let placement = &placement;
    let placed = until_won(|| async move {
        Ok::<_, StoreError>(match store.place(placement).await? {
            Placed::Conflict => Attempt::Lost,
            decided => Attempt::Done(decided),
        })
    })
    .await?;
    match placed.ok_or(CheckoutError::Busy)? {
        Placed::Done => {
            tracing::info!(%order_id, "order placed");
            Ok(Reply { status: 202, body, replayed: false })
        }
        Placed::DuplicateKey => {
            let saved = store.saved_reply(customer, key).await?.ok_or(CheckoutError::Busy)?;
            replay(store, saved, &request_fingerprint).await
        }
        Placed::CouponExhausted => Err(invalid("/promo_code", "this promo code has been fully redeemed")),
        Placed::Conflict => Err(CheckoutError::Busy),
    }
}

/// The body of `POST /checkout`'s 202: the order as placed, as its owner sees it.
fn placed_body(order: &Order) -> Result<String, CheckoutError> {
    serde_json::to_string(&OrderView::new(&order.as_placed(), false))
        .map_err(|e| CheckoutError::Store(StoreError(Unavailable::new(e))))
}

/// The answer to a retry: the placement's 202 again, rebuilt from the order it placed (written
/// in the same transaction as the key, so it exists).
async fn replay(store: &impl OrderStore, saved: SavedReply, request: &str) -> Result<Reply, CheckoutError> {
    if saved.request != request {
        return Err(CheckoutError::KeyReused);
    }
    let order = store.get(saved.order_id).await?.ok_or(CheckoutError::Busy)?;
    Ok(Reply { status: 202, body: placed_body(&order)?, replayed: true })
}

/// An order its customer (or an admin) may see.
pub async fn order_for(
    store: &impl OrderStore,
    id: OrderId,
    customer: &str,
    admin: bool,
) -> Result<Order, CheckoutError> {
    match store.get(id).await? {
        Some(order) if admin || order.customer == customer => Ok(order),
        _ => Err(CheckoutError::NotFound(id.to_string())),
    }
}

/// Applies a saga step with optimistic concurrency, publishing what the step emits.
async fn advance(
    store: &impl OrderStore,
    order: Order,
    step: &SagaStep,
    now: OffsetDateTime,
) -> Result<Order, CheckoutError> {
    update(store, order, |order| order.apply(step, now).map_err(CheckoutError::NotCancellable)).await
}

/// Changes an order with optimistic concurrency: `change` decides on the order as read (`None`:
/// nothing to write; `Some(events)`: write it with these events). The first attempt decides on
/// `order`, the one the caller read; after a lost race (the save is conditional on the version
/// read), on the order as it is now. Returns the order as written (or as it was, if unchanged).
async fn update(
    store: &impl OrderStore,
    order: Order,
    change: impl Fn(&mut Order) -> Result<Option<Vec<Event>>, CheckoutError>,
) -> Result<Order, CheckoutError> {
    let id = order.order_id;
    let mut first = Some(order);
    let change = &change;
    let updated = until_won(|| {
        let read = first.take();
        async move {
            let mut order = match read {
                Some(order) => order,
                None => store.get(id).await?.ok_or_else(|| CheckoutError::NotFound(id.to_string()))?,
            };
            let (expected, was_cancelled) = (order.version, order.status == Status::Cancelled);
            let returns_before = order.returns.clone();
            let events = match change(&mut order)? {
                None => return Ok::<_, CheckoutError>(Attempt::Done(order)),
                Some(events) => events,
            };
            let envelopes: Vec<Envelope> =
                events.into_iter().map(|event| Envelope::new(Metadata::new(id.to_string()), event)).collect();
            // The transition into `cancelled` happens once (the save is conditional on the version),
            // so the coupon goes back once.
            let returned_coupon = (order.status == Status::Cancelled && !was_cancelled)
                .then_some(order.coupon_redemption.as_deref())
                .flatten();
            // The admin listing's copy of every return this change touched.
            let changed: Vec<Return> = order.returns.iter().filter(|r| !returns_before.contains(r)).cloned().collect();
            let write = Write { events: &envelopes, returned_coupon, returns: &changed };
            Ok(match store.save(&order, expected, write).await? {
                Saved::Done => {
                    tracing::info!(order_id = %id, status = order.status.as_str(), "order changed");
                    Attempt::Done(order)
                }
                Saved::Stale => Attempt::Lost,
            })
        }
    })
    .await?;
    updated.ok_or(CheckoutError::Busy)
}

/// `POST /orders/{id}/returns`: the order's owner asks to send delivered units back. Another
/// customer's order is not found; lines that do not fit what was delivered (or whose window
/// closed) are refused, each named.
pub async fn request_return(
    store: &impl OrderStore,
    settings: &Settings,
    order_id: OrderId,
    customer: &str,
    input: ReturnInput,
    key: &str,
    now: OffsetDateTime,
) -> Result<(OrderId, Return), CheckoutError> {
    let order = order_for(store, order_id, customer, false).await?;
    let request = input.parse().map_err(CheckoutError::Invalid)?;
    let id = ReturnId::new();
    let window = settings.return_window;
    let order = update(store, order, |order| {
        let before = order.returns.len();
        order.request_return(id, request.clone(), key, window, now).map_err(CheckoutError::Return)?;
        // A retry that found its return changes nothing, so nothing is written.
        Ok((order.returns.len() > before).then(Vec::new))
    })
    .await?;
    let answered = order.return_requested_with(key).map_or(id, |earlier| earlier.id);
    tracing::info!(%order_id, return_id = %answered, replayed = answered != id, "return requested");
    returned(&order, answered)
}

fn returned(order: &Order, id: ReturnId) -> Result<(OrderId, Return), CheckoutError> {
    let found = order.find_return(id).cloned().ok_or_else(|| CheckoutError::ReturnNotFound(id.to_string()))?;
    Ok((order.order_id, found))
}

/// A return, for an admin: found by its own item, which names its order.
pub async fn return_for_admin(store: &impl OrderStore, id: ReturnId) -> Result<(OrderId, Return), CheckoutError> {
    store.get_return(id).await?.ok_or_else(|| CheckoutError::ReturnNotFound(id.to_string()))
}

/// Reads the order of return `id` and applies an admin's decision to it.
async fn decide_return(
    store: &impl OrderStore,
    id: ReturnId,
    decide: impl Fn(&mut Order) -> Result<Option<Vec<Event>>, ReturnRefused>,
) -> Result<(OrderId, Return), CheckoutError> {
    let (order_id, _) = return_for_admin(store, id).await?;
    let order = store.get(order_id).await?.ok_or_else(|| CheckoutError::ReturnNotFound(id.to_string()))?;
    let order = update(store, order, |order| decide(order).map_err(CheckoutError::Return)).await?;
    returned(&order, id)
}

/// `POST /admin/returns/{id}/receive`: the units are back in `warehouse`; the return's refund is
/// decided and `ReturnReceived` goes out with the order's write, once. Received again in the
/// same warehouse: the same answer, no second event.
pub async fn receive_return(
    store: &impl OrderStore,
    id: ReturnId,
    warehouse: Warehouse,
    now: OffsetDateTime,
) -> Result<(OrderId, Return), CheckoutError> {
    let received = decide_return(store, id, |order| {
        Ok(order.receive_return(id, warehouse.clone(), now)?.map(|event| vec![event]))
    })
    .await?;
    tracing::info!(order_id = %received.0, return_id = %id, "return received");
    Ok(received)
}

/// `POST /admin/returns/{id}/reject`: the return is refused; its units may be asked for again.
pub async fn reject_return(
    store: &impl OrderStore,
    id: ReturnId,
    note: String,
    now: OffsetDateTime,
) -> Result<(OrderId, Return), CheckoutError> {
    decide_return(store, id, |order| Ok(order.reject_return(id, note.clone(), now)?.then(Vec::new))).await
}

/// `POST /admin/orders/{id}/flags/{flag}/resolve`: an admin settles a flag with a note (see
/// [`Order::resolve_flag`]), having seen the order at version `seen`. A flag that is not raised
/// (resolved already, by this request's retry or another admin, or never raised) answers the
/// order as it is. A raised flag is resolved only on the order the admin saw: if it changed since
/// (a new fact may have raised the flag again: a second failed refund, a second dispute),
/// nothing is written and [`CheckoutError::Stale`] says so; the write is conditional on `seen`.
pub async fn resolve_flag(
    store: &impl OrderStore,
    id: OrderId,
    flag: Flag,
    seen: u64,
    by: &str,
    note: &str,
    now: OffsetDateTime,
) -> Result<Order, CheckoutError> {
    let read = || async { store.get(id).await?.ok_or_else(|| CheckoutError::NotFound(id.to_string())) };
    let order = read().await?;
    if !order.flags.contains(&flag) {
        return Ok(order);
    }
    if order.version != seen {
        return Err(CheckoutError::Stale { seen, current: order.version });
    }
    let mut resolved = order;
    resolved.resolve_flag(flag, by, note, now);
    match store.save(&resolved, seen, Write { events: &[], returned_coupon: None, returns: &[] }).await? {
        Saved::Done => {
            tracing::info!(order_id = %id, flag = flag.as_str(), by, "flag resolved");
            Ok(resolved)
        }
        // Changed between the read and the write: decided as above on the order as it is now.
        Saved::Stale => {
            let current = read().await?;
            if current.flags.contains(&flag) {
                Err(CheckoutError::Stale { seen, current: current.version })
            } else {
                Ok(current)
            }
        }
    }
}

/// `POST /orders/{id}/cancel`: the customer cancels until a shipment has left
/// ([`Refused::AlreadyShipped`] after). Cancelling a cancelled order answers the order as it is.
///
/// Checkout hears of a dispatch only through an event, later; so for an order that may have
/// shipments, fulfillment decides first: it holds the order's dispatches while this cancel is
/// written, or says one left already, and nothing changes. If fulfillment cannot be asked,
/// nothing is cancelled either. If the write below fails after a hold, the hold lapses and the
/// order ships as usual; once it succeeds, `OrderCancelled` closes the order at fulfillment.
pub async fn cancel(
    store: &impl OrderStore,
    fulfillment: &impl FulfillmentGate,
    id: OrderId,
    customer: &str,
    admin: bool,
    now: OffsetDateTime,
) -> Result<Order, CheckoutError> {
    let order = order_for(store, id, customer, admin).await?;
    if order.status.may_have_shipments() {
        match fulfillment.hold_for_cancel(id).await? {
            HoldForCancelReply::Held => tracing::info!(order_id = %id, "dispatches held for the cancel"),
            HoldForCancelReply::AlreadyDispatched => {
                tracing::info!(order_id = %id, "cancel refused: fulfillment dispatched a shipment");
                return Err(CheckoutError::NotCancellable(Refused::AlreadyShipped { from: order.status.as_str() }));
            }
        }
    }
    advance(store, order, &SagaStep::CustomerCancelled, now).await
}

/// The consumer side: a saga event for an order. A step the order cannot take is a late or
/// foreign echo: it is logged and acknowledged, never retried.
pub async fn on_saga_step(
    store: &impl OrderStore,
    id: OrderId,
    step: SagaStep,
    now: OffsetDateTime,
) -> Result<(), CheckoutError> {
    let order = store.get(id).await?.ok_or_else(|| CheckoutError::NotFound(id.to_string()))?;
    match advance(store, order, &step, now).await {
        Ok(_) => Ok(()),
        Err(CheckoutError::NotCancellable(refused)) => {
            tracing::warn!(order_id = %id, %refused, "saga step refused");
            Ok(())
        }
        Err(error) => Err(error),
    }
}

/// Overdue orders the timeout sweep lists per query.
pub const SWEEP_PAGE: usize = 25;

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::testing::{MemoryOrders, order_in};

    /// Fulfillment's answer to every hold, and the orders it was asked about.
    struct Gate {
        reply: Option<HoldForCancelReply>,
        asked: Mutex<Vec<OrderId>>,
    }

    impl Gate {
        fn answering(reply: Option<HoldForCancelReply>) -> Self {
            Self { reply, asked: Mutex::new(Vec::new()) }
        }
    }

    impl FulfillmentGate for Gate {
        async fn hold_for_cancel(&self, order_id: OrderId) -> Result<HoldForCancelReply, FulfillmentCallError> {
            self.asked.lock().unwrap().push(order_id);
            self.reply.ok_or_else(|| FulfillmentCallError(Box::new(std::io::Error::other("fulfillment timed out"))))
        }
    }

    fn stored(order: &Order) -> MemoryOrders {
        MemoryOrders::holding(order)
    }

    const NOW: OffsetDateTime = OffsetDateTime::UNIX_EPOCH;

    /// A delivered order flagged `refund_failed`, at version 3.
    fn refund_failed() -> Order {
        let mut order = order_in(Status::Delivered);
        order.flags = vec![Flag::RefundFailed];
        order
    }

    #[tokio::test]
    async fn a_flag_raised_again_after_the_admin_looked_is_not_resolved() {
        let order = refund_failed();
        let store = stored(&order);
        // A second refund fails after the admin read version 3: the order moves on, still flagged.
        let mut again = order.clone();
        again.version = 4;
        store.insert(&again);

        let stale = resolve_flag(&store, order.order_id, Flag::RefundFailed, 3, "root", "paid by hand", NOW).await;

        assert!(matches!(stale, Err(CheckoutError::Stale { seen: 3, current: 4 })), "{stale:?}");
        let kept = store.get(order.order_id).await.unwrap().unwrap();
        assert_eq!((kept.flags, kept.flag_resolutions.len(), kept.version), (vec![Flag::RefundFailed], 0, 4));
    }

    #[tokio::test]
    async fn a_flag_resolved_on_the_version_seen_goes_and_a_retry_answers_the_order_as_it_is() {
        let order = refund_failed();
        let store = stored(&order);

        let resolved = resolve_flag(&store, order.order_id, Flag::RefundFailed, 3, "root", "paid", NOW).await.unwrap();
        let retried = resolve_flag(&store, order.order_id, Flag::RefundFailed, 3, "root", "paid", NOW).await.unwrap();

        assert_eq!((resolved.flags.len(), resolved.version), (0, 4));
        assert_eq!(retried, resolved, "resolved already: nothing written, whatever the version");
    }

    #[tokio::test]
    async fn a_confirmed_order_fulfillment_holds_is_cancelled_and_announced() {
        let order = order_in(Status::Confirmed);
        let (store, gate) = (stored(&order), Gate::answering(Some(HoldForCancelReply::Held)));

        let cancelled = cancel(&store, &gate, order.order_id, "alice", false, NOW).await.unwrap();

        assert_eq!(
            (cancelled.status, cancelled.cancel_reason.as_deref()),
            (Status::Cancelled, Some("customer_cancelled"))
        );
        assert_eq!(*gate.asked.lock().unwrap(), vec![order.order_id]);
        assert!(matches!(store.published().as_slice(), [Event::OrderCancelled(_)]));
    }

    #[tokio::test]
    async fn a_confirmed_order_with_a_shipment_checkout_has_not_heard_of_is_refused_and_unchanged() {
        let order = order_in(Status::Confirmed);
        let (store, gate) = (stored(&order), Gate::answering(Some(HoldForCancelReply::AlreadyDispatched)));

        let refused = cancel(&store, &gate, order.order_id, "alice", false, NOW).await;

        assert!(
            matches!(refused, Err(CheckoutError::NotCancellable(Refused::AlreadyShipped { from: "confirmed" }))),
            "{refused:?}"
        );
        assert_eq!(store.get(order.order_id).await.unwrap(), Some(order));
        assert!(store.published().is_empty());
    }

    #[tokio::test]
    async fn when_fulfillment_cannot_be_asked_nothing_is_cancelled() {
        let order = order_in(Status::Confirmed);
        let (store, gate) = (stored(&order), Gate::answering(None));

        let failed = cancel(&store, &gate, order.order_id, "alice", false, NOW).await;

        assert!(matches!(failed, Err(CheckoutError::Fulfillment(_))), "{failed:?}");
        assert_eq!(store.get(order.order_id).await.unwrap(), Some(order));
        assert!(store.published().is_empty());
    }

    #[tokio::test]
    async fn an_order_before_confirmation_has_no_shipments_and_cancels_without_asking_fulfillment() {
        for status in [Status::Pending, Status::Reserved, Status::RequiresAction, Status::Authorized] {
            let order = order_in(status);
            let (store, gate) = (stored(&order), Gate::answering(None));

            let cancelled = cancel(&store, &gate, order.order_id, "alice", false, NOW).await.unwrap();

            assert_eq!(cancelled.status, Status::Cancelled, "from {status:?}");
            assert!(gate.asked.lock().unwrap().is_empty(), "from {status:?}");
        }
    }

    #[tokio::test]
    async fn an_order_checkout_knows_shipped_or_cancelled_is_answered_without_asking_fulfillment() {
        let shipped = order_in(Status::PartiallyShipped);
        let (store, gate) = (stored(&shipped), Gate::answering(None));
        let refused = cancel(&store, &gate, shipped.order_id, "alice", false, NOW).await;
        assert!(matches!(refused, Err(CheckoutError::NotCancellable(Refused::AlreadyShipped { .. }))), "{refused:?}");

        let cancelled = order_in(Status::Cancelled);
        let store = stored(&cancelled);
        let again = cancel(&store, &gate, cancelled.order_id, "alice", false, NOW).await.unwrap();
        assert_eq!(again, cancelled, "answered as it is");
        assert!(gate.asked.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn another_customers_order_is_not_found_and_fulfillment_is_not_asked() {
        let order = order_in(Status::Confirmed);
        let (store, gate) = (stored(&order), Gate::answering(Some(HoldForCancelReply::Held)));

        let missing = cancel(&store, &gate, order.order_id, "mallory", false, NOW).await;

        assert!(matches!(missing, Err(CheckoutError::NotFound(_))), "{missing:?}");
        assert!(gate.asked.lock().unwrap().is_empty(), "no hold on an order the caller may not see");
    }
}
